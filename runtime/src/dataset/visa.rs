//! VisA (Zou et al., "SPot-the-Difference Self-Supervised Pre-training for Anomaly Detection and
//! Segmentation", ECCV 2022) in its original layout, split by `split_csv/1cls.csv`:
//!
//! ```text
//! <root>/split_csv/1cls.csv                 object,split,label,image,mask
//! <root>/<object>/Data/Images/Normal/*.JPG  (paths in the CSV are relative to <root>)
//! <root>/<object>/Data/Images/Anomaly/*.JPG
//! <root>/<object>/Data/Masks/Anomaly/*.png  0 = good, any other value = defect
//! ```
//!
//! A category is addressed by its folder, `<root>/<object>`; the CSV beside it decides which
//! images are for training (`split = train`, all `normal`) and which are test images.

use std::path::{Path, PathBuf};

use super::{DatasetError, Sample};

/// Path of the split file relative to the VisA root.
pub const SPLIT_CSV: &str = "split_csv/1cls.csv";

/// A VisA category: the data set root and the object name (`candle`, `pcb1`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisaCategory {
    pub root: PathBuf,
    pub object: String,
}

impl VisaCategory {
    /// `Some` when `dir` is `<root>/<object>` with `<root>/split_csv/1cls.csv` present.
    pub fn of(dir: &Path) -> Option<Self> {
        let dir = dir.canonicalize().ok()?;
        let root = dir.parent()?;
        let object = dir.file_name()?.to_str()?.to_string();
        root.join(SPLIT_CSV).is_file().then(|| Self { root: root.to_path_buf(), object })
    }
}

/// The error for a VisA root passed where a category folder belongs.
pub fn root_not_category(root: &Path) -> DatasetError {
    DatasetError::Visa {
        path: root.join(SPLIT_CSV),
        line: 0,
        message: format!("{} is a VisA root; pass one category folder, e.g. {}", root.display(), root.join("candle").display()),
    }
}

/// The images of one category as the split file assigns them.
#[derive(Debug, Clone, PartialEq)]
pub struct VisaSplit {
    /// `train` rows (all labelled `normal`), sorted.
    pub train_good: Vec<PathBuf>,
    /// `test` rows: `normal` as good, `anomaly` as defective with its mask; sorted by image.
    pub test: Vec<Sample>,
}

/// Reads the rows of `cat.object` from `<root>/split_csv/1cls.csv`.
///
/// Errors ([`DatasetError::Visa`] naming the CSV and line): a header without the columns
/// `object, split, label, image, mask`, a split other than `train`/`test`, a label other than
/// `normal`/`anomaly`, a `train` row labelled `anomaly`, an `anomaly` row without a mask, a listed
/// image or mask that does not exist, and no row for the object.
pub fn read_split(cat: &VisaCategory) -> Result<VisaSplit, DatasetError> {
    let csv_path = cat.root.join(SPLIT_CSV);
    let err = |line: u64, message: String| DatasetError::Visa { path: csv_path.clone(), line, message };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(&csv_path)
        .map_err(|e| err(0, e.to_string()))?;
    let headers = reader.headers().map_err(|e| err(1, e.to_string()))?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| err(1, format!("no column `{name}`; expected the header object,split,label,image,mask")));
    let (c_object, c_split, c_label, c_image, c_mask) = (column("object")?, column("split")?, column("label")?, column("image")?, column("mask")?);
    let mut split = VisaSplit { train_good: Vec::new(), test: Vec::new() };
    for record in reader.records() {
        let record = record.map_err(|e| err(e.position().map_or(0, |p| p.line()), e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("");
        if field(c_object) != cat.object {
            continue;
        }
        let existing = |rel: &str, what: &str| {
            let p = cat.root.join(rel);
            if p.is_file() { Ok(p) } else { Err(err(line, format!("{what} {} does not exist", p.display()))) }
        };
        let image = existing(field(c_image), "image")?;
        let defective = match field(c_label) {
            "normal" => false,
            "anomaly" => true,
            other => return Err(err(line, format!("label `{other}`: expected `normal` or `anomaly`"))),
        };
        match field(c_split) {
            "train" if defective => return Err(err(line, "a train row labelled `anomaly`: training uses good images only".into())),
            "train" => split.train_good.push(image),
            "test" => {
                let mask = match (defective, field(c_mask)) {
                    (true, "") => return Err(err(line, "an `anomaly` row without a mask".into())),
                    (true, m) => Some(existing(m, "mask")?),
                    (false, _) => None,
                };
                let category = Some(if defective { "anomaly" } else { "good" }.to_string());
                split.test.push(Sample { image, is_defective: Some(defective), category, mask });
            }
            other => return Err(err(line, format!("split `{other}`: expected `train` or `test`"))),
        }
    }
    if split.train_good.is_empty() && split.test.is_empty() {
        return Err(err(0, format!("no row for object `{}`", cat.object)));
    }
    split.train_good.sort();
    split.test.sort_by(|a, b| a.image.cmp(&b.image));
    Ok(split)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VisA root with object `candle`: 2 train normals, 1 test normal, 1 anomaly with mask,
    /// plus a row of another object.
    fn visa(csv: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in ["candle/Data/Images/Normal/0000.JPG", "candle/Data/Images/Normal/0001.JPG", "candle/Data/Images/Normal/0002.JPG", "candle/Data/Images/Anomaly/000.JPG", "candle/Data/Masks/Anomaly/000.png"] {
            std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
            std::fs::write(r.join(f), b"x").unwrap();
        }
        std::fs::create_dir_all(r.join("split_csv")).unwrap();
        std::fs::write(r.join(SPLIT_CSV), csv).unwrap();
        let cat = r.join("candle");
        (d, cat)
    }

    const GOOD_CSV: &str = "object,split,label,image,mask\n\
        candle,train,normal,candle/Data/Images/Normal/0001.JPG,\n\
        candle,train,normal,candle/Data/Images/Normal/0000.JPG,\n\
        candle,test,normal,candle/Data/Images/Normal/0002.JPG,\n\
        candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png\n\
        pcb1,train,normal,pcb1/Data/Images/Normal/0000.JPG,\n";

    #[test]
    fn the_split_file_assigns_train_and_test_images() {
        let (_d, dir) = visa(GOOD_CSV);
        let cat = VisaCategory::of(&dir).expect("a VisA category");
        assert_eq!(cat.object, "candle");
        let s = read_split(&cat).unwrap();
        let r = &cat.root;
        assert_eq!(s.train_good, [r.join("candle/Data/Images/Normal/0000.JPG"), r.join("candle/Data/Images/Normal/0001.JPG")]);
        assert_eq!(s.test.len(), 2);
        assert_eq!(s.test[0].image, r.join("candle/Data/Images/Anomaly/000.JPG"));
        assert_eq!((s.test[0].is_defective, s.test[0].mask.clone()), (Some(true), Some(r.join("candle/Data/Masks/Anomaly/000.png"))));
        assert_eq!((s.test[1].is_defective, s.test[1].category.as_deref(), s.test[1].mask.clone()), (Some(false), Some("good"), None));
        // The generic entry points see the same split.
        assert_eq!(super::super::train_good(&dir).unwrap(), s.train_good);
        assert_eq!(super::super::test_samples(&dir).unwrap(), s.test);
        assert_eq!(super::super::collect_samples(&[dir.clone()]).unwrap(), s.test);
        assert!(VisaCategory::of(r).is_none(), "the root itself is not a category");
        let msg = super::super::train_good(r).unwrap_err().to_string();
        assert!(msg.contains("VisA root") && msg.contains("category folder"), "{msg}");
    }

    #[test]
    fn broken_split_files_name_the_line_and_what_was_expected() {
        let cases = [
            ("object,split,image,mask\n", "no column `label`"),
            ("object,split,label,image,mask\ncandle,val,normal,candle/Data/Images/Normal/0000.JPG,\n", "line 2"),
            ("object,split,label,image,mask\ncandle,test,bad,candle/Data/Images/Normal/0000.JPG,\n", "label `bad`"),
            ("object,split,label,image,mask\ncandle,train,anomaly,candle/Data/Images/Anomaly/000.JPG,x\n", "good images only"),
            ("object,split,label,image,mask\ncandle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,\n", "without a mask"),
            ("object,split,label,image,mask\ncandle,test,normal,candle/Data/Images/Normal/9999.JPG,\n", "9999.JPG does not exist"),
            ("object,split,label,image,mask\npcb1,train,normal,pcb1/x.JPG,\n", "no row for object `candle`"),
        ];
        for (csv, want) in cases {
            let (_d, dir) = visa(csv);
            let msg = read_split(&VisaCategory::of(&dir).unwrap()).unwrap_err().to_string();
            assert!(msg.contains("1cls.csv") && msg.contains(want), "{csv:?}: {msg}");
        }
    }
}
