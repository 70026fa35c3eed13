//! Loads images of a data set into tensors with the runtime's preprocessing, so training sees
//! exactly what the line will see.

use std::path::{Path, PathBuf};

use anyhow::Context;
use runtime::bit_depth::BitDepth;
use runtime::preprocess::{load_image, to_model_input};
use tch::Tensor;

/// Good images at model size for training and held-out evaluation: every file is decoded once at
/// construction (so a broken file fails the run before training starts, naming the file) and
/// kept in memory while the decoded images fit in `budget_bytes`; the rest are decoded again each
/// time they are drawn. Peak memory is therefore bounded by the budget, not by the size of the
/// data set.
pub struct ImageCache {
    paths: Vec<PathBuf>,
    width: u32,
    height: u32,
    depth: BitDepth,
    /// Planar CHW RGB f32 in [0, 1] per image, `None` for images beyond the budget.
    cached: Vec<Option<Vec<f32>>>,
}

impl ImageCache {
    /// Bytes one decoded image takes at `width` x `height` px (3 f32 planes).
    pub fn image_bytes(width: u32, height: u32) -> usize {
        3 * (width * height) as usize * std::mem::size_of::<f32>()
    }

    /// Decodes every image of `paths` once (16-bit samples at `depth` significant bits; progress
    /// bar `label`) and keeps the first ones that fit in `budget_bytes`. Errors name the
    /// unreadable file, or the file with a sample above `2^depth - 1`.
    pub fn new(paths: Vec<PathBuf>, width: u32, height: u32, depth: BitDepth, budget_bytes: usize, label: &'static str, progress: bool) -> anyhow::Result<Self> {
        let keep = budget_bytes / Self::image_bytes(width, height);
        let bar = runtime::progress::bar(paths.len() as u64, label, progress);
        let mut cached = Vec::with_capacity(paths.len());
        for (i, p) in paths.iter().enumerate() {
            let chw = decode(p, width, height, depth)?;
            cached.push((i < keep).then_some(chw));
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(Self { paths, width, height, depth, cached })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// True when there is no image.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Images held decoded in memory.
    pub fn cached_images(&self) -> usize {
        self.cached.iter().filter(|c| c.is_some()).count()
    }

    /// The images `indices` as one tensor [B, 3, H, W] on the CPU. Errors name a file that
    /// became unreadable since construction.
    pub fn batch(&self, indices: &[usize]) -> anyhow::Result<Tensor> {
        let per = Self::image_bytes(self.width, self.height) / std::mem::size_of::<f32>();
        let mut data = Vec::with_capacity(indices.len() * per);
        for &i in indices {
            match &self.cached[i] {
                Some(chw) => data.extend_from_slice(chw),
                None => data.extend_from_slice(&decode(&self.paths[i], self.width, self.height, self.depth)?),
            }
        }
        Ok(Tensor::from_slice(&data).view([indices.len() as i64, 3, self.height as i64, self.width as i64]))
    }
}

fn decode(path: &Path, width: u32, height: u32, depth: BitDepth) -> anyhow::Result<Vec<f32>> {
    let img = load_image(path, depth).with_context(|| "in the training data".to_string())?;
    Ok(to_model_input(&img, None, width, height).chw)
}

/// Splits the good training images into (train, held-out) deterministically: every k-th image is
/// held out so that the held-out set spans the whole folder. At least 4 images are held out and
/// at least 4 kept.
pub fn holdout_split(paths: &[PathBuf], fraction: f64) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    anyhow::ensure!(paths.len() >= 8, "need at least 8 good training images, found {}", paths.len());
    let n_hold = ((paths.len() as f64 * fraction).round() as usize).clamp(4, paths.len() - 4);
    let step = paths.len() as f64 / n_hold as f64;
    let held: std::collections::BTreeSet<usize> = (0..n_hold).map(|i| (i as f64 * step) as usize).collect();
    let (mut train, mut hold) = (Vec::new(), Vec::new());
    for (i, p) in paths.iter().enumerate() {
        if held.contains(&i) { hold.push(p.clone()) } else { train.push(p.clone()) }
    }
    Ok((train, hold))
}

/// Category name of a data set root: its folder name.
pub fn category_of(root: &Path) -> String {
    root.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".into())
}

/// `path` made absolute with symlinks resolved, also when it does not exist yet: its longest
/// existing ancestor is canonicalized and the rest appended (`..` in the rest is resolved
/// lexically).
fn resolve(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf()) };
    let mut existing = abs.as_path();
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    let base = loop {
        if let Ok(c) = existing.canonicalize() {
            break c;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => break existing.to_path_buf(),
        }
    };
    let mut out = base;
    for part in rest.iter().rev() {
        if *part == ".." {
            out.pop();
        } else if *part != "." {
            out.push(part);
        }
    }
    out
}

/// Refuses an output folder inside the data folder (issue 12): outputs such as `validation.png`
/// written under `DATA/train/good` would be read back as good training images by the next run.
///
/// # Errors
/// `out` is `data` or lies under it (after resolving symlinks, `.` and `..`); the message names
/// both paths.
pub fn refuse_out_inside_data(data: &Path, out: &Path) -> anyhow::Result<()> {
    let (d, o) = (resolve(data), resolve(out));
    anyhow::ensure!(
        !o.starts_with(&d),
        "--out {} lies inside the data folder --data {} ({} in {}): outputs written there (validation.png, checkpoints) would be taken for data by the next run; choose an output folder outside the data set",
        out.display(),
        data.display(),
        o.display(),
        d.display()
    );
    Ok(())
}

/// The folders that creating `--out` will create (the folder and its missing parents), so that a
/// run that fails leaves none of them behind empty (issue 12, finding 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedOut {
    /// Deepest first.
    dirs: Vec<PathBuf>,
}

impl CreatedOut {
    /// Records which of `out` and its parents do not exist yet.
    pub fn before(out: &Path) -> Self {
        let mut dirs = Vec::new();
        let mut p = Some(out);
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            dirs.push(d.to_path_buf());
            p = d.parent();
        }
        Self { dirs }
    }

    /// Removes the recorded folders that are empty, deepest first; stops at the first one that
    /// holds something (a resume point, a checkpoint) and so keeps it and its parents.
    pub fn remove_empty(&self) {
        for d in &self.dirs {
            if std::fs::remove_dir(d).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_leaves_no_empty_out_folder_it_created() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("a/b/run1");
        let created = CreatedOut::before(&out);
        std::fs::create_dir_all(&out).unwrap();
        created.remove_empty();
        assert!(!d.path().join("a").exists(), "a, a/b and a/b/run1 were created by the run and are empty");
        // A folder that existed before is kept, empty or not.
        std::fs::create_dir(d.path().join("kept")).unwrap();
        let created = CreatedOut::before(&d.path().join("kept"));
        created.remove_empty();
        assert!(d.path().join("kept").is_dir());
        // What the run wrote (a resume point) keeps the folder and its parents.
        let out = d.path().join("c/run2");
        let created = CreatedOut::before(&out);
        std::fs::create_dir_all(out.join("resume")).unwrap();
        created.remove_empty();
        assert!(out.join("resume").is_dir());
    }

    #[test]
    fn cache_keeps_what_fits_and_decodes_the_rest_identically() {
        let d = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..5u8)
            .map(|i| {
                let p = d.path().join(format!("{i}.png"));
                image::RgbImage::from_fn(40, 20, |x, y| image::Rgb([i * 40, x as u8 * 5, y as u8 * 10])).save(&p).unwrap();
                p
            })
            .collect();
        let all = ImageCache::new(paths.clone(), 32, 32, BitDepth::FULL, usize::MAX, "load", false).unwrap();
        // Budget for 2 images: the other 3 are decoded on demand.
        let two = ImageCache::new(paths.clone(), 32, 32, BitDepth::FULL, 2 * ImageCache::image_bytes(32, 32) + 100, "load", false).unwrap();
        assert_eq!((all.cached_images(), two.cached_images(), ImageCache::new(paths.clone(), 32, 32, BitDepth::FULL, 0, "load", false).unwrap().cached_images()), (5, 2, 0));
        let idx = [4, 0, 3, 3];
        let (a, b) = (all.batch(&idx).unwrap(), two.batch(&idx).unwrap());
        assert_eq!(a.size(), [4, 3, 32, 32]);
        assert_eq!(Vec::<f32>::try_from(a.flatten(0, -1)).unwrap(), Vec::<f32>::try_from(b.flatten(0, -1)).unwrap());
        // Image 4: red channel = 160/255 everywhere.
        assert!((a.double_value(&[0, 0, 5, 5]) - 160.0 / 255.0).abs() < 1e-6);
        // A broken file fails construction with its name.
        std::fs::write(&paths[2], b"not a png").unwrap();
        let msg = format!("{:#}", ImageCache::new(paths, 32, 32, BitDepth::FULL, 0, "load", false).err().unwrap());
        assert!(msg.contains("2.png"), "{msg}");
    }

    #[test]
    fn twelve_bit_training_images_are_read_at_the_configured_depth() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("y12.png");
        // A 12-bit sensor's mid grey, LSB-aligned in a 16-bit PNG.
        image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(32, 32, image::Luma([2048u16])).save(&p).unwrap();
        let at12 = ImageCache::new(vec![p.clone()], 32, 32, BitDepth::new(12).unwrap(), usize::MAX, "load", false).unwrap();
        let at16 = ImageCache::new(vec![p.clone()], 32, 32, BitDepth::FULL, usize::MAX, "load", false).unwrap();
        let (a, b) = (at12.batch(&[0]).unwrap(), at16.batch(&[0]).unwrap());
        // round(2048 * 65535 / 4095) = 32776, over 65535; read as 16-bit it is 2048 / 65535.
        assert!((a.double_value(&[0, 1, 9, 9]) - 32776.0 / 65535.0).abs() < 1e-6);
        assert!((b.double_value(&[0, 1, 9, 9]) - 2048.0 / 65535.0).abs() < 1e-6);
        // A value above 4095 is not 12-bit data: the run stops before training, naming the file.
        image::ImageBuffer::<image::Luma<u16>, _>::from_pixel(32, 32, image::Luma([60000u16])).save(&p).unwrap();
        let msg = format!("{:#}", ImageCache::new(vec![p], 32, 32, BitDepth::new(12).unwrap(), 0, "load", false).err().unwrap());
        assert!(msg.contains("y12.png") && msg.contains("60000") && msg.contains("4095"), "{msg}");
    }

    #[test]
    fn holdout_is_spread_deterministic_and_disjoint() {
        let paths: Vec<PathBuf> = (0..20).map(|i| PathBuf::from(format!("{i:02}.png"))).collect();
        let (train, hold) = holdout_split(&paths, 0.1).unwrap();
        // 10 % of 20 is 2, raised to the minimum of 4, every 5th image.
        let names: Vec<_> = hold.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(names, ["00.png", "05.png", "10.png", "15.png"]);
        assert_eq!(train.len(), 16);
        assert!(train.iter().all(|p| !hold.contains(p)));
        let msg = holdout_split(&paths[..5], 0.1).unwrap_err().to_string();
        assert!(msg.contains("at least 8") && msg.contains("found 5"), "{msg}");
    }

    #[test]
    fn outputs_inside_the_data_folder_are_refused_naming_both() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("bottle");
        std::fs::create_dir_all(data.join("train/good")).unwrap();
        std::os::unix::fs::symlink(&data, d.path().join("link")).unwrap();
        for out in [data.join("train/good"), data.clone(), data.join("runs/new/deeper"), data.join("train/../x"), d.path().join("link/train")] {
            let msg = refuse_out_inside_data(&data, &out).unwrap_err().to_string();
            assert!(msg.contains(&out.display().to_string()) && msg.contains(&data.display().to_string()), "{msg}");
        }
        for out in [d.path().join("out"), d.path().join("bottle-out/x"), d.path().to_path_buf(), data.join("../elsewhere")] {
            refuse_out_inside_data(&data, &out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
        }
    }
}
