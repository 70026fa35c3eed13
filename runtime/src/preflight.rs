//! Checks of a device configuration against this machine that need more than the config file:
//! used by `runtime config check` (each one an `ok` or `PROBLEM` line) and, for the grey-camera
//! warning, by `runtime run` at start (issue 12, findings 6 and 7).
//!
//! - [`read_image_header`]: size and colour of an image file from its header (nothing decoded),
//!   for the first image of a replay folder, whose size is the replay's frame size.
//! - [`roi_problem`]: the `[roi]` against a real frame size.
//! - [`output_dir_problem`]: whether the runtime user can create files in `output.dir`.
//! - [`grey_camera_warning`]: frames and model of different colour: a grey camera (`camera.fourcc`
//!   GREY or Y16, or grey replay images) with a colour-trained model or one that does not record its
//!   training colour, or a colour camera with a grey-trained model.
//! - [`line_bit_depth`] / [`bit_depth_warning`]: the bit depth the line reads 16-bit samples at,
//!   and a warning when `[camera].bit_depth` disagrees with the model's training images.

use std::path::{Path, PathBuf};

use firmware_config::{CameraSource, DeviceConfig, Roi};
use image::ImageDecoder;

use crate::bit_depth::BitDepth;
use crate::metadata::{InputColour, ModelMetadata};
use crate::preprocess::PreprocessError;

/// The bit depth the line reads `Y16` frames and 16-bit replay images at: `[camera].bit_depth`
/// when set, else the model's (`ffcad.bit_depth`, that of its training images).
///
/// # Errors
/// `camera.bit_depth` outside 8 ..= 16 (the config check refuses it first), naming the key.
pub fn line_bit_depth(cfg: &DeviceConfig, meta: &ModelMetadata) -> anyhow::Result<BitDepth> {
    match cfg.camera.bit_depth {
        Some(b) => BitDepth::new(b).map_err(|e| anyhow::anyhow!("camera.bit_depth: {e}")),
        None => Ok(meta.bit_depth),
    }
}

/// A warning when `[camera].bit_depth` is set and differs from the bit depth the model's training
/// images were read at, when the trainer was told one (`--bit-depth`, stored below 16): frames
/// and training images then differ in brightness by `2^|difference|`, and good parts score as
/// defects (or defects as good). A model at 16 (the default, also that of every model trained on
/// 8-bit images) says nothing about the camera: no warning.
pub fn bit_depth_warning(cfg: &DeviceConfig, model_path: &Path, meta: &ModelMetadata) -> Option<String> {
    let camera = cfg.camera.bit_depth?;
    let model = meta.bit_depth.bits();
    (model < 16 && camera != model).then(|| {
        format!(
            "camera.bit_depth = {camera} but {} was trained on {model}-bit images (ffcad.bit_depth): 16-bit samples are read as {camera}-bit, so frames come out {}x {} than the training images; \
             set camera.bit_depth = {model} (or remove the key) if the sensor is {model}-bit, or retrain with --bit-depth {camera}",
            model_path.display(),
            1u32 << camera.abs_diff(model),
            if camera < model { "brighter" } else { "darker" },
        )
    })
}

/// What an image file's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageHeader {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    /// One channel (grey or grey + alpha, 8 or 16 bit).
    pub grey: bool,
}

/// Reads the size and colour type of the image at `path` from its header; nothing is decoded.
///
/// # Errors
/// The file cannot be read, or it is not a PNG or JPEG with a readable header (the error names
/// the file).
pub fn read_image_header(path: &Path) -> Result<ImageHeader, PreprocessError> {
    let decode_err = |cause| PreprocessError::Decode { path: path.into(), cause };
    let reader = image::ImageReader::open(path).map_err(|cause| PreprocessError::Read { path: path.into(), cause })?;
    let reader = reader.with_guessed_format().map_err(|cause| PreprocessError::Read { path: path.into(), cause })?;
    let decoder = reader.into_decoder().map_err(decode_err)?;
    let (width, height) = decoder.dimensions();
    let grey = decoder.color_type().channel_count() <= 2;
    Ok(ImageHeader { path: path.into(), width, height, grey })
}

/// The first image (in name order, as the replay plays them) of a replay folder, by its header.
///
/// # Errors
/// The folder cannot be read or holds no PNG/JPEG file, or the first one's header is unreadable.
pub fn first_replay_image(dir: &Path) -> anyhow::Result<ImageHeader> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read the replay folder {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && crate::dataset::is_image_file(p))
        .collect();
    files.sort();
    let first = files.first().ok_or_else(|| anyhow::anyhow!("no PNG or JPEG images in the replay folder {}", dir.display()))?;
    Ok(read_image_header(first)?)
}

/// Why `roi` cannot be inspected in frames of `width` x `height` px, if it cannot; `frames`
/// says where that size comes from (e.g. the first replay image). The message names the key and
/// the size expected.
pub fn roi_problem(roi: &Roi, width: u32, height: u32, frames: &str) -> Option<String> {
    let (right, bottom) = (u64::from(roi.x) + u64::from(roi.width), u64::from(roi.y) + u64::from(roi.height));
    if right > u64::from(width) || bottom > u64::from(height) {
        return Some(format!(
            "roi x {} y {} width {} height {} does not fit the {width}x{height} px frames of {frames}: expected x + width <= {width} and y + height <= {height}",
            roi.x, roi.y, roi.width, roi.height
        ));
    }
    None
}

/// Why the runtime user cannot write into `dir` (`output.dir`), if it cannot: a temporary file is
/// created and removed in it, or, when it does not exist yet (the runtime creates it), in its
/// nearest existing parent. The message names `output.dir` and what was expected.
pub fn output_dir_problem(dir: &Path) -> Option<String> {
    if dir.exists() && !dir.is_dir() {
        return Some(format!("output.dir = {}: exists and is not a folder; expected a folder the runtime can write", dir.display()));
    }
    let mut probe_in = dir.to_path_buf();
    while !probe_in.exists() {
        match probe_in.parent() {
            Some(p) if !p.as_os_str().is_empty() => probe_in = p.to_path_buf(),
            _ => {
                probe_in = PathBuf::from(".");
                break;
            }
        }
    }
    let probe = probe_in.join(format!(".ffcad-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            None
        }
        Err(e) => {
            let what = if probe_in == dir { String::new() } else { format!(" (it does not exist; its parent {} is where it would be created)", probe_in.display()) };
            Some(format!("output.dir = {}{what}: cannot create a file in {}: {e}; expected a folder the runtime user can write", dir.display(), probe_in.display()))
        }
    }
}

/// Whether the frames of `cfg` are grey, and why: `camera.fourcc` GREY or Y16 for a V4L2 camera,
/// a grey first image for a replay (`replay_first`, see [`first_replay_image`]). `None`: colour
/// or not known.
pub fn grey_frames(cfg: &DeviceConfig, replay_first: Option<&ImageHeader>) -> Option<String> {
    match cfg.camera.source {
        CameraSource::V4l2 => cfg.camera.fourcc.is_grey().then(|| format!("camera.fourcc = \"{}\" is a grey pixel format", cfg.camera.fourcc)),
        CameraSource::Replay => replay_first.filter(|h| h.grey).map(|h| format!("the replay images are grey (the first one, {}, has one channel)", h.path.display())),
    }
}

/// Whether the frames of `cfg` are known to be colour, and why: any other `camera.fourcc` for a
/// V4L2 camera, a colour first image for a replay. `None`: grey or not known (a replay folder
/// whose first image could not be read).
pub fn colour_frames(cfg: &DeviceConfig, replay_first: Option<&ImageHeader>) -> Option<String> {
    match cfg.camera.source {
        CameraSource::V4l2 => (!cfg.camera.fourcc.is_grey()).then(|| format!("camera.fourcc = \"{}\" is a colour pixel format", cfg.camera.fourcc)),
        CameraSource::Replay => replay_first.filter(|h| !h.grey).map(|h| format!("the replay images are colour (the first one, {}, has colour channels)", h.path.display())),
    }
}

/// The warning for frames and a model of different colour (issue 12, finding 6), from the
/// model's `ffcad.input_colour` ([`InputColour`]):
///
/// - grey frames and a model trained on colour images: a colour-trained model rejects every good
///   part seen by a grey camera;
/// - colour frames and a model trained on grey images;
/// - grey frames and a model that does not record its training colour (exported before the key
///   existed): it may be either, so the grey camera is flagged as before.
///
/// `None` when frames and model agree, or when a colour camera meets an older model.
pub fn grey_camera_warning(cfg: &DeviceConfig, model_path: &Path, meta: &ModelMetadata, replay_first: Option<&ImageHeader>) -> Option<String> {
    let model = format!("the model {} (category {})", model_path.display(), meta.category);
    match meta.input_colour {
        InputColour::Grey => {
            let why = colour_frames(cfg, replay_first)?;
            Some(format!(
                "{why}, but {model} was trained on grey images (ffcad.input_colour = grey): colour frames differ from what it learned and may be rejected or \
                 scored unreliably. Use a grey format (camera.fourcc = GREY or Y16) or a model trained on colour images, or check it with `runtime inspect` \
                 on images of good parts from this camera before running the line"
            ))
        }
        InputColour::Rgb => {
            let why = grey_frames(cfg, replay_first)?;
            Some(format!(
                "{why}: each frame's one channel is copied to R, G and B, but {model} was trained on colour images (ffcad.input_colour = rgb): \
                 it is likely to reject every good part. Use a colour format (camera.fourcc = YUYV, MJPG, RGB3 or BGR3) or a model trained on grey images"
            ))
        }
        InputColour::Unknown => {
            let why = grey_frames(cfg, replay_first)?;
            Some(format!(
                "{why}: each frame's one channel is copied to R, G and B, but {model} does not record whether it was trained on grey or colour images \
                 (it has no ffcad.input_colour; re-export it with this trainer to record it). A model trained on colour images rejects every good part on a grey camera: check it with \
                 `runtime inspect` on grey images of good parts before running the line, or use a colour format (camera.fourcc = YUYV, MJPG, RGB3 or BGR3)"
            ))
        }
    }
}

/// Why `image` does not match the colour of the model's training images, if it does not: a grey
/// image (one colour channel, with or without alpha) for a model trained on colour images, or a
/// colour one for a model trained on grey images. A model that does not record its colour
/// ([`InputColour::Unknown`]) matches everything. Same rule as the trainer's, by channel count.
pub fn colour_mismatch(model: InputColour, image: &image::DynamicImage) -> Option<&'static str> {
    let grey = image.color().channel_count() <= 2;
    match (model, grey) {
        (InputColour::Rgb, true) => Some("a grey image, and the model was trained on colour images"),
        (InputColour::Grey, false) => Some("a colour image, and the model was trained on grey images"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_config::PixelFormat;

    fn png(path: &Path, w: u32, h: u32, grey: bool) {
        if grey {
            image::GrayImage::new(w, h).save(path).unwrap();
        } else {
            image::RgbImage::new(w, h).save(path).unwrap();
        }
    }

    #[test]
    fn headers_give_size_and_colour_of_the_first_replay_image() {
        let d = tempfile::tempdir().unwrap();
        png(&d.path().join("b.png"), 40, 30, false);
        png(&d.path().join("a.png"), 96, 64, true);
        std::fs::write(d.path().join("notes.txt"), b"not an image").unwrap();
        let h = first_replay_image(d.path()).unwrap();
        assert_eq!((h.path.file_name().unwrap().to_str(), h.width, h.height, h.grey), (Some("a.png"), 96, 64, true));
        let h = read_image_header(&d.path().join("b.png")).unwrap();
        assert_eq!((h.width, h.height, h.grey), (40, 30, false));
        std::fs::write(d.path().join("c.png"), b"garbage").unwrap();
        let msg = read_image_header(&d.path().join("c.png")).unwrap_err().to_string();
        assert!(msg.contains("c.png"), "{msg}");
        let empty = tempfile::tempdir().unwrap();
        let msg = first_replay_image(empty.path()).unwrap_err().to_string();
        assert!(msg.contains("no PNG or JPEG") && msg.contains(&empty.path().display().to_string()), "{msg}");
    }

    #[test]
    fn roi_is_checked_against_the_real_frame_size() {
        let roi = Roi { x: 0, y: 16, width: 128, height: 48 };
        assert_eq!(roi_problem(&roi, 128, 64, "x"), None);
        let msg = roi_problem(&roi, 96, 64, "frames/0000.png").unwrap();
        assert!(msg.contains("roi x 0 y 16 width 128 height 48") && msg.contains("96x64 px") && msg.contains("frames/0000.png") && msg.contains("x + width <= 96"), "{msg}");
        let far = Roi { x: u32::MAX, y: 0, width: 16, height: 16 };
        assert!(roi_problem(&far, 640, 480, "x").is_some(), "no overflow");
    }

    #[test]
    fn output_dir_writable_or_named() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(output_dir_problem(d.path()), None);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "the probe file was removed");
        // Absent: created by the runtime, so its parent must be writable.
        assert_eq!(output_dir_problem(&d.path().join("new/deeper")), None);
        assert!(!d.path().join("new").exists(), "the check creates no folder");
        let file = d.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let msg = output_dir_problem(&file).unwrap();
        assert!(msg.contains("output.dir") && msg.contains("not a folder"), "{msg}");
        // /proc refuses new files even to root.
        let msg = output_dir_problem(Path::new("/proc")).unwrap();
        assert!(msg.contains("output.dir = /proc") && msg.contains("cannot create a file") && msg.contains("runtime user can write"), "{msg}");
    }

    #[test]
    fn grey_cameras_warn_while_the_model_does_not_say_grey() {
        let meta = ModelMetadata { input_colour: InputColour::Unknown, ..crate::metadata::example() };
        let mut cfg = DeviceConfig::default();
        assert_eq!(cfg.camera.fourcc, PixelFormat::Yuyv);
        assert_eq!(grey_camera_warning(&cfg, Path::new("m.onnx"), &meta, None), None);
        for f in [PixelFormat::Grey, PixelFormat::Y16] {
            cfg.camera.fourcc = f;
            let w = grey_camera_warning(&cfg, Path::new("m.onnx"), &meta, None).unwrap();
            assert!(w.contains(&format!("camera.fourcc = \"{f}\"")) && w.contains("m.onnx") && w.contains("grey or colour") && w.contains("YUYV"), "{w}");
        }
        cfg.camera.source = CameraSource::Replay;
        let grey = ImageHeader { path: "frames/a.png".into(), width: 96, height: 64, grey: true };
        let w = grey_camera_warning(&cfg, Path::new("m.onnx"), &meta, Some(&grey)).unwrap();
        assert!(w.contains("replay images are grey") && w.contains("frames/a.png"), "{w}");
        let colour = ImageHeader { grey: false, ..grey };
        assert_eq!(grey_camera_warning(&cfg, Path::new("m.onnx"), &meta, Some(&colour)), None, "a replay's fourcc does not matter");
    }

    #[test]
    fn warns_only_on_a_real_colour_mismatch_when_the_model_records_its_colour() {
        let rgb = ModelMetadata { input_colour: InputColour::Rgb, ..crate::metadata::example() };
        let grey_model = ModelMetadata { input_colour: InputColour::Grey, ..crate::metadata::example() };
        let mut cfg = DeviceConfig::default();
        // Colour camera: fine with a colour model, flagged with a grey one.
        assert_eq!(grey_camera_warning(&cfg, Path::new("m.onnx"), &rgb, None), None);
        let w = grey_camera_warning(&cfg, Path::new("g.onnx"), &grey_model, None).unwrap();
        assert!(w.contains("camera.fourcc = \"YUYV\" is a colour pixel format") && w.contains("g.onnx") && w.contains("trained on grey images") && w.contains("GREY or Y16"), "{w}");
        // Grey camera: fine with a grey model, flagged with a colour one.
        for f in [PixelFormat::Grey, PixelFormat::Y16] {
            cfg.camera.fourcc = f;
            assert_eq!(grey_camera_warning(&cfg, Path::new("g.onnx"), &grey_model, None), None, "{f}");
            let w = grey_camera_warning(&cfg, Path::new("m.onnx"), &rgb, None).unwrap();
            assert!(w.contains(&format!("camera.fourcc = \"{f}\" is a grey pixel format")) && w.contains("trained on colour images") && w.contains("input_colour = rgb"), "{w}");
        }
        // Replay: the first image decides; an unreadable one (None) gives no warning.
        cfg.camera.source = CameraSource::Replay;
        let grey = ImageHeader { path: "frames/a.png".into(), width: 96, height: 64, grey: true };
        let colour = ImageHeader { grey: false, ..grey.clone() };
        assert_eq!(grey_camera_warning(&cfg, Path::new("g.onnx"), &grey_model, Some(&grey)), None);
        assert_eq!(grey_camera_warning(&cfg, Path::new("m.onnx"), &rgb, Some(&colour)), None);
        assert_eq!(grey_camera_warning(&cfg, Path::new("g.onnx"), &grey_model, None), None);
        let w = grey_camera_warning(&cfg, Path::new("g.onnx"), &grey_model, Some(&colour)).unwrap();
        assert!(w.contains("replay images are colour") && w.contains("frames/a.png"), "{w}");
        let w = grey_camera_warning(&cfg, Path::new("m.onnx"), &rgb, Some(&grey)).unwrap();
        assert!(w.contains("replay images are grey") && w.contains("trained on colour images"), "{w}");
    }

    #[test]
    fn bit_depth_comes_from_the_config_else_the_model_and_a_mismatch_is_said() {
        let meta12 = ModelMetadata { bit_depth: BitDepth::new(12).unwrap(), ..crate::metadata::example() };
        let mut cfg = DeviceConfig::default();
        cfg.camera.fourcc = PixelFormat::Y16;
        assert_eq!(line_bit_depth(&cfg, &meta12).unwrap().bits(), 12, "unset: the model's");
        assert_eq!(bit_depth_warning(&cfg, Path::new("m.onnx"), &meta12), None);
        cfg.camera.bit_depth = Some(12);
        assert_eq!(bit_depth_warning(&cfg, Path::new("m.onnx"), &meta12), None);
        cfg.camera.bit_depth = Some(16);
        assert_eq!(line_bit_depth(&cfg, &meta12).unwrap().bits(), 16, "set: the config's");
        let w = bit_depth_warning(&cfg, Path::new("m.onnx"), &meta12).unwrap();
        assert!(w.contains("camera.bit_depth = 16") && w.contains("m.onnx") && w.contains("12-bit") && w.contains("16x darker"), "{w}");
        cfg.camera.bit_depth = Some(10);
        let w = bit_depth_warning(&cfg, Path::new("m.onnx"), &meta12).unwrap();
        assert!(w.contains("4x brighter"), "{w}");
        // A model at the default 16 (trained on 8-bit or full-range images): the camera's depth
        // is the user's to set, no warning.
        cfg.camera.bit_depth = Some(12);
        assert_eq!(bit_depth_warning(&cfg, Path::new("m.onnx"), &crate::metadata::example()), None);
        cfg.camera.bit_depth = Some(40);
        assert!(line_bit_depth(&cfg, &meta12).unwrap_err().to_string().contains("camera.bit_depth"));
    }

    #[test]
    fn colour_mismatch_by_channel_count() {
        use image::DynamicImage;
        let grey = DynamicImage::ImageLuma8(image::GrayImage::new(2, 2));
        let grey_alpha = DynamicImage::ImageLumaA16(image::ImageBuffer::new(2, 2));
        let rgb = DynamicImage::ImageRgb8(image::RgbImage::new(2, 2));
        assert!(colour_mismatch(InputColour::Rgb, &grey).unwrap().contains("grey image"));
        assert!(colour_mismatch(InputColour::Rgb, &grey_alpha).is_some());
        assert_eq!(colour_mismatch(InputColour::Rgb, &rgb), None);
        assert!(colour_mismatch(InputColour::Grey, &rgb).unwrap().contains("colour image"));
        assert_eq!(colour_mismatch(InputColour::Grey, &grey), None);
        assert_eq!(colour_mismatch(InputColour::Unknown, &grey), None);
        assert_eq!(colour_mismatch(InputColour::Unknown, &rgb), None);
    }
}
