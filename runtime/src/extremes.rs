//! The images a user should look at first after `runtime inspect`: the good (or unlabelled)
//! images the model finds least normal, and the defective images it scores lowest. On a test set
//! they are the false rejects and missed defects to come; on a folder of training images
//! (`runtime inspect DATA/train`) the first list names "good" parts that may be worn or
//! defective (RESULTS.md, session 34: BSData's training set holds the wear run's last days).

use serde::Serialize;

use crate::decide::Verdict;

/// How many images each list of [`Extremes`] names by default (`runtime inspect --list`).
pub const LISTED: usize = 5;

/// One image of a list: its path as inspected, its image score, its verdict at the run's
/// threshold and the overlay `runtime inspect` wrote for it (None with `--overlays none`, or
/// `rejects` and an OK image).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoredImage {
    pub image: String,
    pub score: f32,
    pub verdict: Verdict,
    pub overlay: Option<String>,
}

/// One inspected image as [`Extremes::from_scores`] takes it: `is_defective` is `None` for an
/// image whose path gives no label, `score` is `None` for an image not inspected (BAD).
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    pub image: &'a str,
    pub is_defective: Option<bool>,
    pub score: Option<f32>,
    pub overlay: Option<&'a str>,
}

/// The `n` (default [`LISTED`]) highest-scoring images not labelled defective (`*/good/` or
/// unlabelled), highest first, and the `n` lowest-scoring defective images, lowest first. Images that
/// were not inspected (`BAD`, no score) are in neither list; ties keep input order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Extremes {
    pub least_normal_good: Vec<ScoredImage>,
    pub lowest_defective: Vec<ScoredImage>,
}

impl Extremes {
    /// From the inspected images in inspection order, `n` images per list at most; each
    /// verdict is [`crate::decide::decide`] at `threshold` (REJECT above it).
    pub fn from_scores<'a>(scored: impl IntoIterator<Item = Scored<'a>>, n: usize, threshold: f32) -> Self {
        let (mut good, mut defective) = (Vec::new(), Vec::new());
        for Scored { image, is_defective, score, overlay } in scored {
            let Some(score) = score.filter(|s| s.is_finite()) else { continue };
            let item = ScoredImage { image: image.to_string(), score, verdict: crate::decide::decide(score, threshold), overlay: overlay.map(str::to_string) };
            if is_defective == Some(true) { defective.push(item) } else { good.push(item) }
        }
        // Stable sorts: equal scores stay in inspection order.
        good.sort_by(|a, b| b.score.total_cmp(&a.score));
        defective.sort_by(|a, b| a.score.total_cmp(&b.score));
        good.truncate(n);
        defective.truncate(n);
        Self { least_normal_good: good, lowest_defective: defective }
    }

    /// Text for the inspect report: one line per image with its score, verdict, path and the
    /// file name of its overlay (in the run's `overlays/`); empty lists are left out.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (title, list) in [
            ("least normal good images (highest scores; REJECT = a false reject; among training images: worn or defective parts?)", &self.least_normal_good),
            ("defective images scored lowest (OK = a missed defect)", &self.lowest_defective),
        ] {
            if list.is_empty() {
                continue;
            }
            out.push_str(&format!("{title}:\n"));
            for i in list {
                let verdict = if i.verdict == Verdict::Reject { "REJECT" } else { "OK" };
                let overlay = i.overlay.as_deref().and_then(|o| o.rsplit('/').next()).map(|o| format!("  (overlay {o})")).unwrap_or_default();
                out.push_str(&format!("  {:.4}  {verdict:<6}  {}{overlay}\n", i.score, i.image));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_hold_the_extreme_scores_of_each_label_in_order() {
        let scored = vec![
            ("g1", Some(false), Some(0.2)),
            ("u1", None, Some(0.9)),
            ("d1", Some(true), Some(0.1)),
            ("g2", Some(false), Some(0.6)),
            ("bad", Some(false), None),
            ("nan", Some(true), Some(f32::NAN)),
            ("d2", Some(true), Some(0.8)),
            ("g3", Some(false), Some(0.6)),
            ("g4", Some(false), Some(0.05)),
            ("g5", Some(false), Some(0.3)),
            ("g6", Some(false), Some(0.4)),
        ];
        let scored_at = |n| Extremes::from_scores(scored.iter().map(|&(image, is_defective, score)| Scored { image, is_defective, score, overlay: (image == "u1").then_some("out/overlays/run1_frame_00000001_u1.png") }), n, 0.5);
        let e = scored_at(LISTED);
        let names = |v: &[ScoredImage]| v.iter().map(|i| i.image.clone()).collect::<Vec<_>>();
        // Unlabelled images count as not defective; ties (g2, g3) keep inspection order; g4 is 6th.
        assert_eq!(names(&e.least_normal_good), ["u1", "g2", "g3", "g6", "g5"]);
        assert_eq!(names(&e.lowest_defective), ["d1", "d2"]);
        assert_eq!((e.least_normal_good[0].verdict, e.least_normal_good[4].verdict), (Verdict::Reject, Verdict::Ok));
        assert_eq!(e.least_normal_good[0].overlay.as_deref(), Some("out/overlays/run1_frame_00000001_u1.png"));
        let text = e.render();
        assert!(text.contains("  0.9000  REJECT  u1  (overlay run1_frame_00000001_u1.png)\n") && text.contains("  0.3000  OK      g5\n") && text.contains("  0.8000  REJECT  d2\n"), "{text}");
        assert!(!text.contains("bad") && !text.contains("nan"), "{text}");
        let two = scored_at(2);
        assert_eq!((names(&two.least_normal_good), names(&two.lowest_defective)), (vec!["u1".to_string(), "g2".into()], vec!["d1".to_string(), "d2".into()]));
        assert_eq!(scored_at(0), Extremes::default(), "--list 0: no lists");
    }

    #[test]
    fn a_folder_without_defective_images_prints_one_list() {
        let e = Extremes::from_scores([Scored { image: "a.png", is_defective: Some(false), score: Some(0.5), overlay: None }], LISTED, 0.5);
        assert!(e.lowest_defective.is_empty());
        let text = e.render();
        assert!(text.starts_with("least normal good images") && text.contains("0.5000  OK      a.png"), "at the threshold the part passes: {text}");
        assert!(!text.contains("defective images scored lowest"), "{text}");
        assert_eq!(Extremes::from_scores(std::iter::empty(), LISTED, 0.5).render(), "");
    }
}
