//! Data sets in the MVTec AD layout (see ../shared/data/README.md):
//!
//! ```text
//! <root>/train/good/*.{png,jpg,jpeg}
//! <root>/test/good/*            normal test images
//! <root>/test/<defect_type>/*   defective test images
//! <root>/ground_truth/<defect_type>/<stem>_mask.png
//! ```
//!
//! and VisA categories split by `split_csv/1cls.csv` ([`visa`]).

use std::path::{Path, PathBuf};

pub mod visa;

use visa::VisaCategory;

/// Why a folder could not be read as a data set. Every variant names the path.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    #[error("cannot list {path}: {cause}")]
    List { path: PathBuf, cause: std::io::Error },
    #[error("{path} is not a data set in the MVTec AD layout (nor a VisA category folder beside split_csv/1cls.csv): expected {expected}")]
    NotADataset { path: PathBuf, expected: &'static str },
    /// A problem in a VisA split file; `line` is 1-based (0 = the file as a whole).
    #[error("{path}{}: {message}", line_suffix(*line))]
    Visa { path: PathBuf, line: u64, message: String },
}

fn line_suffix(line: u64) -> String {
    if line == 0 { String::new() } else { format!(", line {line}") }
}

/// One image to inspect, with what the layout says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub image: PathBuf,
    /// `Some(true)` for an image under `test/<defect_type>/`, `Some(false)` under `*/good/`,
    /// `None` when the path says nothing.
    pub is_defective: Option<bool>,
    /// Defect type (folder name) for labelled images, e.g. `pitting`, `good`.
    pub category: Option<String>,
    /// Ground-truth mask path, when the file exists.
    pub mask: Option<PathBuf>,
}

/// File extensions treated as images (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// True when `path` ends in one of [`IMAGE_EXTENSIONS`].
pub fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Image files directly inside `dir`, sorted by name.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    if !dir.exists() {
        return Err(DatasetError::Missing { path: dir.into() });
    }
    let rd = std::fs::read_dir(dir).map_err(|cause| DatasetError::List { path: dir.into(), cause })?;
    let mut out: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file() && is_image_file(p)).collect();
    out.sort();
    Ok(out)
}

/// The VisA split when `root` lacks the MVTec folder `split_dir` but is a VisA category folder;
/// a VisA root itself is an error that says to pass a category. `None`: not VisA.
fn visa_instead(root: &Path, split_dir: &Path) -> Option<Result<visa::VisaSplit, DatasetError>> {
    if root.join(visa::SPLIT_CSV).is_file() {
        return Some(Err(visa::root_not_category(root)));
    }
    if split_dir.is_dir() {
        return None;
    }
    VisaCategory::of(root).map(|cat| visa::read_split(&cat))
}

/// [`DatasetError::Missing`] when the data set folder `root` does not exist at all (a typo in
/// `--data`), rather than "not a data set".
fn missing_root(root: &Path) -> Result<(), DatasetError> {
    match root.try_exists() {
        Ok(false) => Err(DatasetError::Missing { path: root.into() }),
        _ => Ok(()),
    }
}

/// The good training images `<root>/train/good/*` (VisA: the `train` rows of the category).
///
/// Errors: [`DatasetError::Missing`] when `root` does not exist; [`DatasetError::NotADataset`]
/// when `train/good` is missing or holds no image; [`DatasetError::Visa`] for a broken VisA
/// split file.
pub fn train_good(root: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    missing_root(root)?;
    let dir = root.join("train").join("good");
    if let Some(split) = visa_instead(root, &dir) {
        return split.map(|s| s.train_good);
    }
    let not = || DatasetError::NotADataset { path: root.into(), expected: "train/good/ with PNG or JPEG images" };
    if !dir.is_dir() {
        return Err(not());
    }
    let imgs = list_images(&dir)?;
    if imgs.is_empty() {
        return Err(not());
    }
    Ok(imgs)
}

/// All test images `<root>/test/<type>/*` with labels and masks, sorted by type then name (VisA:
/// the `test` rows of the category, sorted by path).
pub fn test_samples(root: &Path) -> Result<Vec<Sample>, DatasetError> {
    missing_root(root)?;
    let dir = root.join("test");
    if let Some(split) = visa_instead(root, &dir) {
        return split.map(|s| s.test);
    }
    if !dir.is_dir() {
        return Err(DatasetError::NotADataset { path: root.into(), expected: "test/<good|defect_type>/ folders" });
    }
    collect_samples(&[dir])
}

/// Expands files and folders (recursively) into samples; labels and masks come from the MVTec
/// layout when a path has the form `<root>/test/<type>/<file>`.
///
/// - A folder that is a category root (holds `test/` and `ground_truth/`) contributes only its
///   `test/` images: masks and training images are not frames to inspect. A VisA category folder
///   contributes the `test` rows of its split file, labelled.
/// - Inside folders, image files are listed by name only (a broken or dangling file is reported
///   when it is read, not here). Symbolic links to folders are followed (a data set assembled from
///   links, e.g. `test/good -> /data/good`, keeps its labels: they come from the path as walked),
///   each real folder at most once, so a link loop cannot hang the walk. Non-image files are ignored.
/// - A path named explicitly must exist ([`DatasetError::Missing`]); it is kept whatever its
///   extension, so a decode failure is reported rather than silently ignored.
pub fn collect_samples(paths: &[PathBuf]) -> Result<Vec<Sample>, DatasetError> {
    Ok(collect_inputs(paths)?.samples)
}

/// What [`collect_inputs`] found.
#[derive(Debug, Clone, Default)]
pub struct CollectedInputs {
    /// One sample per image file, sorted by path; one file named several ways (`d/a.png`,
    /// `/abs/d/a.png`, `./d/../d/a.png`) is one sample.
    pub samples: Vec<Sample>,
    /// Files inside the walked folders that are not images by their extension (not inspected;
    /// reported so that nothing is skipped silently), sorted.
    pub ignored: Vec<PathBuf>,
}

/// [`collect_samples`], also returning the non-image files met inside folders. Errors as
/// [`collect_samples`].
pub fn collect_inputs(paths: &[PathBuf]) -> Result<CollectedInputs, DatasetError> {
    let mut files = Vec::new();
    let mut ignored = Vec::new();
    let mut labelled = Vec::new();
    let mut walked = std::collections::HashSet::new();
    for p in paths {
        if p.is_dir() && !p.join("test").is_dir() {
            if let Some(cat) = VisaCategory::of(p) {
                labelled.extend(visa::read_split(&cat)?.test);
                continue;
            }
        }
        if p.is_dir() {
            walk_dir_reporting(p, &mut files, &mut ignored, &mut walked)?;
        } else if p.exists() {
            files.push(p.to_path_buf());
        } else {
            return Err(DatasetError::Missing { path: p.into() });
        }
    }
    let mut samples: Vec<Sample> = files.into_iter().map(describe).chain(labelled).collect();
    samples.sort_by(|a, b| a.image.cmp(&b.image));
    // The same file under several spellings is inspected once (the first spelling in path order).
    let mut seen = std::collections::HashSet::new();
    samples.retain(|s| seen.insert(s.image.canonicalize().unwrap_or_else(|_| s.image.clone())));
    ignored.sort();
    ignored.dedup();
    Ok(CollectedInputs { samples, ignored })
}

/// `walked`: canonical paths of the folders already listed; a folder met again (through a link)
/// is skipped, which ends link loops.
fn walk_dir_reporting(dir: &Path, out: &mut Vec<PathBuf>, ignored: &mut Vec<PathBuf>, walked: &mut std::collections::HashSet<PathBuf>) -> Result<(), DatasetError> {
    if dir.join("test").is_dir() && dir.join("ground_truth").is_dir() {
        return walk_dir_reporting(&dir.join("test"), out, ignored, walked);
    }
    if !walked.insert(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())) {
        return Ok(());
    }
    let rd = std::fs::read_dir(dir).map_err(|cause| DatasetError::List { path: dir.into(), cause })?;
    for entry in rd.filter_map(|e| e.ok()) {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() || (kind.is_symlink() && path.is_dir()) {
            walk_dir_reporting(&path, out, ignored, walked)?;
        } else if is_image_file(&path) {
            out.push(path);
        } else {
            ignored.push(path);
        }
    }
    Ok(())
}

/// Derives label, defect type and mask from the MVTec layout.
fn describe(image: PathBuf) -> Sample {
    let parent = image.parent();
    let kind = parent.and_then(|p| p.file_name()).and_then(|n| n.to_str()).map(str::to_owned);
    let grand = parent.and_then(|p| p.parent());
    let in_split = grand.and_then(|g| g.file_name()).and_then(|n| n.to_str()).is_some_and(|n| n == "test" || n == "train");
    let (is_defective, mask) = match (&kind, in_split) {
        (Some(k), true) if k == "good" => (Some(false), None),
        (Some(k), true) => {
            let root = grand.and_then(|g| g.parent());
            let stem = image.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
            let mask = root.map(|r| r.join("ground_truth").join(k).join(format!("{stem}_mask.png"))).filter(|m| m.is_file());
            (Some(true), mask)
        }
        _ => (None, None),
    };
    Sample { image, is_defective, category: if in_split { kind } else { None }, mask }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_named_three_ways_is_one_sample_and_non_images_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        for n in ["g1.jpg", "g2.png"] {
            std::fs::write(dir.join(n), b"x").unwrap();
        }
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        std::fs::write(dir.join("scan.bmp"), b"x").unwrap();
        let abs = dir.join("g1.jpg");
        let dotted = d.path().join("d/../d/./g1.jpg");
        let c = collect_inputs(&[abs.clone(), dotted, dir.clone()]).unwrap();
        let names: Vec<String> = c.samples.iter().map(|s| s.image.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["g1.jpg", "g2.png"], "{:?}", c.samples);
        assert_eq!(c.ignored, vec![dir.join("notes.txt"), dir.join("scan.bmp")]);
    }

    #[test]
    fn a_missing_data_folder_is_said_not_to_exist() {
        let d = tempfile::tempdir().unwrap();
        let gone = d.path().join("typo");
        for msg in [train_good(&gone).unwrap_err().to_string(), test_samples(&gone).unwrap_err().to_string()] {
            assert_eq!(msg, format!("{} does not exist", gone.display()));
        }
        // An existing folder of another layout is still "not a data set".
        let msg = train_good(d.path()).unwrap_err().to_string();
        assert!(msg.contains("is not a data set") && msg.contains("train/good"), "{msg}");
    }

    #[test]
    fn labels_and_masks_follow_the_layout() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in ["train/good/a.png", "test/good/b.png", "test/crack/c.jpg", "test/crack/d.JPG", "ground_truth/crack/c_mask.png", "test/crack/notes.txt"] {
            std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
            std::fs::write(r.join(f), b"x").unwrap();
        }
        assert_eq!(train_good(r).unwrap(), vec![r.join("train/good/a.png")]);
        let s = test_samples(r).unwrap();
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s[0].image, r.join("test/crack/c.jpg"));
        assert_eq!(s[0].is_defective, Some(true));
        assert_eq!(s[0].mask, Some(r.join("ground_truth/crack/c_mask.png")));
        assert_eq!(s[1].mask, None, "d has no mask file");
        assert_eq!(s[2].is_defective, Some(false));
        assert_eq!(s[2].category.as_deref(), Some("good"));
    }

    #[test]
    fn not_a_dataset_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let msg = train_good(d.path()).unwrap_err().to_string();
        assert!(msg.contains("train/good") && msg.contains(d.path().to_str().unwrap()), "{msg}");
        let msg = collect_samples(&[d.path().join("nope")]).unwrap_err().to_string();
        assert!(msg.contains("nope") && msg.contains("does not exist"), "{msg}");
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_and_dangling_links_do_not_stop_the_walk() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a/sub")).unwrap();
        std::fs::write(r.join("a/x.png"), b"x").unwrap();
        std::os::unix::fs::symlink(r.join("a"), r.join("a/sub/up")).unwrap();
        std::os::unix::fs::symlink(r.join("nowhere.png"), r.join("a/dangling.png")).unwrap();
        let s = collect_samples(&[r.join("a")]).unwrap();
        let names: Vec<_> = s.iter().map(|s| s.image.file_name().unwrap().to_str().unwrap().to_string()).collect();
        assert_eq!(names, ["dangling.png", "x.png"], "the dangling file is kept to be reported when read");
    }

    /// A data set assembled from links (here `test/good` and one defective image) keeps every
    /// image and its label; the linked folder is walked once even when named twice.
    #[cfg(unix)]
    #[test]
    fn linked_class_folders_are_walked_with_their_labels() {
        let d = tempfile::tempdir().unwrap();
        let (src, view) = (d.path().join("src"), d.path().join("view"));
        for f in ["test/good/a.png", "test/good/b.png", "test/crack/c.png", "ground_truth/crack/c_mask.png"] {
            std::fs::create_dir_all(src.join(f).parent().unwrap()).unwrap();
            std::fs::write(src.join(f), b"x").unwrap();
        }
        std::fs::create_dir_all(view.join("test/crack")).unwrap();
        std::fs::create_dir_all(view.join("ground_truth")).unwrap();
        std::os::unix::fs::symlink(src.join("test/good"), view.join("test/good")).unwrap();
        std::os::unix::fs::symlink(src.join("test/crack/c.png"), view.join("test/crack/c.png")).unwrap();
        std::os::unix::fs::symlink(src.join("ground_truth/crack"), view.join("ground_truth/crack")).unwrap();
        let s = collect_samples(&[view.clone(), view.join("test/good")]).unwrap();
        let got: Vec<_> = s.iter().map(|s| (s.image.strip_prefix(&view).unwrap().to_str().unwrap().to_string(), s.is_defective, s.mask.is_some())).collect();
        assert_eq!(got, [("test/crack/c.png".to_string(), Some(true), true), ("test/good/a.png".into(), Some(false), false), ("test/good/b.png".into(), Some(false), false)]);
    }

    #[test]
    fn a_category_root_contributes_only_its_test_images() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in ["train/good/a.png", "test/good/b.png", "test/crack/c.png", "ground_truth/crack/c_mask.png"] {
            std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
            std::fs::write(r.join(f), b"x").unwrap();
        }
        let s = collect_samples(&[r.to_path_buf()]).unwrap();
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s.iter().all(|s| s.image.starts_with(r.join("test"))));
    }
}
