//! Input size chosen from the data (issue 13): a tall part must not be squashed into a wide
//! default shape. The model input keeps the training images' median aspect ratio at the preset's
//! pixel budget, both sides rounded to multiples of 32 (the encoder's needs), at least 64 px.

use std::path::{Path, PathBuf};

/// A chosen input size and what it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChosenSize {
    pub height: i64,
    pub width: i64,
    /// Median width / height of the images, and how many were measured.
    pub median_aspect: f64,
    pub images: usize,
}

/// Rounds `v` px to the nearest multiple of 32, at least 64.
fn round32(v: f64) -> i64 {
    (((v / 32.0).round() as i64) * 32).max(64)
}

/// Size for aspect ratio `aspect` (width / height) at about `budget_px` pixels:
/// h = sqrt(budget / aspect), w = h x aspect, each rounded by 32 (at least 64).
pub fn size_for(aspect: f64, budget_px: i64) -> (i64, i64) {
    let h = (budget_px as f64 / aspect).sqrt();
    (round32(h), round32(h * aspect))
}

/// Reads the dimensions (headers only, no decoding) of `paths` and chooses the size at
/// `budget_px`. Errors name an unreadable image; an empty list is an error.
pub fn choose(paths: &[PathBuf], budget_px: i64) -> anyhow::Result<ChosenSize> {
    anyhow::ensure!(!paths.is_empty(), "no training images to choose the input size from");
    let mut aspects = paths
        .iter()
        .map(|p| {
            let (w, h) = image::image_dimensions(p).map_err(|e| anyhow::anyhow!("cannot read the size of {}: {e}", p.display()))?;
            anyhow::ensure!(w > 0 && h > 0, "{}: image of {w}x{h} px", p.display());
            Ok(w as f64 / h as f64)
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    aspects.sort_by(f64::total_cmp);
    let n = aspects.len();
    let median = if n % 2 == 1 { aspects[n / 2] } else { 0.5 * (aspects[n / 2 - 1] + aspects[n / 2]) };
    let (height, width) = size_for(median, budget_px);
    Ok(ChosenSize { height, width, median_aspect: median, images: n })
}

/// [`choose`] over the good training images of the data set at `data_root`.
pub fn choose_for_data(data_root: &Path, budget_px: i64) -> anyhow::Result<ChosenSize> {
    choose(&runtime::dataset::train_good(data_root)?, budget_px)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_keep_the_aspect_at_the_budget() {
        // Square (MVTec bottle): 128 x 128 at 128^2.
        assert_eq!(size_for(1.0, 128 * 128), (128, 128));
        // BSData ~384x157 (aspect 2.45): h = sqrt(16384 / 2.45) = 81.8 -> 96, w = 200 -> 192.
        assert_eq!(size_for(384.0 / 157.0, 128 * 128), (96, 192));
        // KolektorSDD ~203x512 (tall, aspect 0.4): h = 202.4 -> 192, w = 81 -> 96.
        assert_eq!(size_for(203.0 / 512.0, 128 * 128), (192, 96));
        // Very wide parts keep at least 64 px of height.
        assert_eq!(size_for(10.0, 128 * 128), (64, 416));
    }

    #[test]
    fn median_of_mixed_images_from_headers() {
        let d = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (i, (w, h)) in [(300u32, 100u32), (200, 100), (210, 100), (50, 100), (220, 100)].into_iter().enumerate() {
            let p = d.path().join(format!("{i}.png"));
            image::RgbImage::new(w, h).save(&p).unwrap();
            paths.push(p);
        }
        let c = choose(&paths, 128 * 128).unwrap();
        assert_eq!(c.images, 5);
        assert!((c.median_aspect - 2.1).abs() < 1e-12, "{}", c.median_aspect);
        assert_eq!((c.height, c.width), size_for(2.1, 128 * 128));
        let broken = d.path().join("broken.png");
        std::fs::write(&broken, b"not a png").unwrap();
        let e = choose(&[broken.clone()], 128 * 128).unwrap_err().to_string();
        assert!(e.contains("broken.png"), "{e}");
    }
}
