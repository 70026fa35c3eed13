//! [`list_cameras`]: the V4L2 devices under `/dev/video*`, their formats and frame sizes, and
//! [`render_camera_table`] for `runtime cameras`.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use v4l::framesize::FrameSizeEnum;
use v4l::video::Capture;
use v4l::Device;

use crate::capture::format::fourcc_text;
use crate::capture::PixelFormat;

/// One `/dev/video*` node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraInfo {
    /// Device path, e.g. `/dev/video0`.
    pub path: PathBuf,
    /// Driver name (VIDIOC_QUERYCAP `driver`, e.g. `uvcvideo`); empty if it could not be queried.
    pub driver: String,
    /// Device name (VIDIOC_QUERYCAP `card`, e.g. `HD Pro Webcam C920`); empty if it could not be queried.
    pub card: String,
    /// Whether the node is a single-planar video capture device with streaming I/O (UVC cameras
    /// also expose metadata nodes, which are listed with `capture: false`).
    pub capture: bool,
    /// Capture formats the driver lists, in its order.
    pub formats: Vec<FormatInfo>,
    /// Why the node could not be opened or queried (permissions, busy, not V4L2), if so.
    pub error: Option<String>,
    /// The controls the driver lists (`[camera.controls]` keys, ranges) with their current values.
    pub controls: Vec<(crate::capture::controls::ControlInfo, Option<i64>)>,
}

/// One capture format of a device (VIDIOC_ENUM_FMT) with its frame sizes (VIDIOC_ENUM_FRAMESIZES).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatInfo {
    /// Fourcc code, e.g. `*b"YUYV"`.
    pub fourcc: [u8; 4],
    /// The driver's description, e.g. `YUYV 4:2:2`.
    pub description: String,
    /// Frame sizes in pixels; empty if the driver does not enumerate them.
    pub sizes: Vec<FrameSizeInfo>,
}

impl FormatInfo {
    /// The runtime's [`PixelFormat`] for this fourcc, `None` if the runtime cannot convert it.
    pub fn pixel_format(&self) -> Option<PixelFormat> {
        PixelFormat::from_fourcc(self.fourcc)
    }
}

/// A frame size in pixels, as drivers enumerate them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSizeInfo {
    /// One size.
    Discrete { width: u32, height: u32 },
    /// Any size from min to max in steps (continuous: step 1).
    Stepwise { min_width: u32, max_width: u32, step_width: u32, min_height: u32, max_height: u32, step_height: u32 },
}

impl fmt::Display for FrameSizeInfo {
    /// `640x480`, or `16x16..1920x1080 step 8x8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Discrete { width, height } => write!(f, "{width}x{height}"),
            Self::Stepwise { min_width, max_width, step_width, min_height, max_height, step_height } => {
                write!(f, "{min_width}x{min_height}..{max_width}x{max_height} step {step_width}x{step_height}")
            }
        }
    }
}

/// Lists the V4L2 device nodes `/dev/video<N>`, sorted by N. A node that cannot be opened or
/// queried is listed with [`CameraInfo::error`] set. An empty list means there is no `/dev/video*`.
pub fn list_cameras() -> Vec<CameraInfo> {
    video_nodes(Path::new("/dev")).into_iter().map(|p| query(&p)).collect()
}

/// The `video<N>` entries of `dir`, sorted by N; empty if `dir` cannot be read.
pub fn video_nodes(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut nodes: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix("video")?.parse::<u64>().ok()?;
            Some((n, e.path()))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| p).collect()
}

/// Queries one node; the v4l crate's panics on odd driver data become [`CameraInfo::error`].
fn query(path: &Path) -> CameraInfo {
    let mut info = CameraInfo { path: path.to_path_buf(), driver: String::new(), card: String::new(), capture: false, formats: Vec::new(), error: None, controls: Vec::new() };
    let r = catch_unwind(AssertUnwindSafe(|| query_into(path, &mut info)));
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => info.error = Some(e),
        Err(_) => info.error = Some("the v4l crate panicked on unexpected driver data".into()),
    }
    info
}

fn query_into(path: &Path, info: &mut CameraInfo) -> Result<(), String> {
    let dev = Device::with_path(path).map_err(|e| format!("cannot open: {e}"))?;
    let caps = dev.query_caps().map_err(|e| format!("VIDIOC_QUERYCAP failed: {e}"))?;
    info.driver = caps.driver;
    info.card = caps.card;
    use v4l::capability::Flags;
    info.capture = caps.capabilities.contains(Flags::VIDEO_CAPTURE) && caps.capabilities.contains(Flags::STREAMING);
    if !info.capture {
        return Ok(());
    }
    for desc in dev.enum_formats().map_err(|e| format!("VIDIOC_ENUM_FMT failed: {e}"))? {
        let sizes = dev
            .enum_framesizes(desc.fourcc)
            .unwrap_or_default()
            .into_iter()
            .map(|fs| match fs.size {
                FrameSizeEnum::Discrete(d) => FrameSizeInfo::Discrete { width: d.width, height: d.height },
                FrameSizeEnum::Stepwise(s) => FrameSizeInfo::Stepwise {
                    min_width: s.min_width,
                    max_width: s.max_width,
                    step_width: s.step_width,
                    min_height: s.min_height,
                    max_height: s.max_height,
                    step_height: s.step_height,
                },
            })
            .collect();
        info.formats.push(FormatInfo { fourcc: desc.fourcc.repr, description: desc.description, sizes });
    }
    use crate::capture::controls::{ControlDevice, V4l2Controls};
    let controls = V4l2Controls(&dev);
    // A driver without controls (or refusing the query) still lists its formats.
    for c in controls.controls().unwrap_or_default() {
        let now = if c.kind == crate::capture::controls::ControlKind::Other { None } else { controls.get(c.id).ok() };
        info.controls.push((c, now));
    }
    Ok(())
}

/// The text `runtime cameras` prints: one block per device (path, card, driver), then a table of
/// its formats (fourcc, whether the runtime converts it, description, sizes). With no devices:
/// `no V4L2 devices found (/dev/video* absent)`.
pub fn render_camera_table(cameras: &[CameraInfo]) -> String {
    if cameras.is_empty() {
        return "no V4L2 devices found (/dev/video* absent)\n".into();
    }
    let mut s = String::new();
    for cam in cameras {
        let name = if cam.card.is_empty() { "?".to_string() } else { format!("{} ({})", cam.card, cam.driver) };
        s += &format!("{}  {}\n", cam.path.display(), name);
        if let Some(e) = &cam.error {
            s += &format!("  error: {e}\n\n");
            continue;
        }
        if !cam.capture {
            s += "  not a video capture node (e.g. UVC metadata)\n\n";
            continue;
        }
        if cam.formats.is_empty() {
            s += "  no capture formats listed\n\n";
            continue;
        }
        s += "  | fourcc | runtime | description | sizes |\n  |---|---|---|---|\n";
        for f in &cam.formats {
            let sizes = if f.sizes.is_empty() { "-".to_string() } else { f.sizes.iter().map(|z| z.to_string()).collect::<Vec<_>>().join(", ") };
            let ok = if f.pixel_format().is_some() { "yes" } else { "no" };
            s += &format!("  | {} | {ok} | {} | {sizes} |\n", fourcc_text(f.fourcc), f.description);
        }
        s += "\n";
        s += &crate::capture::controls::render_controls(&cam.controls);
        s += "\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_devices_message() {
        assert_eq!(render_camera_table(&[]), "no V4L2 devices found (/dev/video* absent)\n");
    }

    #[test]
    fn table_lists_formats_and_sizes() {
        let cams = vec![
            CameraInfo {
                path: "/dev/video0".into(),
                driver: "uvcvideo".into(),
                card: "Cam".into(),
                capture: true,
                formats: vec![
                    FormatInfo { fourcc: *b"YUYV", description: "YUYV 4:2:2".into(), sizes: vec![FrameSizeInfo::Discrete { width: 640, height: 480 }, FrameSizeInfo::Discrete { width: 320, height: 240 }] },
                    FormatInfo {
                        fourcc: *b"NV12",
                        description: "Y/UV 4:2:0".into(),
                        sizes: vec![FrameSizeInfo::Stepwise { min_width: 16, max_width: 1920, step_width: 8, min_height: 16, max_height: 1080, step_height: 8 }],
                    },
                ],
                error: None,
                controls: vec![],
            },
            CameraInfo { path: "/dev/video1".into(), driver: String::new(), card: String::new(), capture: false, formats: vec![], error: Some("cannot open: Permission denied".into()), controls: vec![] },
        ];
        let t = render_camera_table(&cams);
        assert!(t.contains("/dev/video0  Cam (uvcvideo)"), "{t}");
        assert!(t.contains("| YUYV | yes | YUYV 4:2:2 | 640x480, 320x240 |"), "{t}");
        assert!(t.contains("| NV12 | no | Y/UV 4:2:0 | 16x16..1920x1080 step 8x8 |"), "{t}");
        assert!(t.contains("/dev/video1  ?\n  error: cannot open: Permission denied"), "{t}");
    }

    #[test]
    fn video_nodes_sorted_numerically() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["video10", "video2", "video0", "videox", "vbi0", "video"] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let names: Vec<String> = video_nodes(dir.path()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["video0", "video2", "video10"]);
        assert!(video_nodes(Path::new("/nonexistent-dir")).is_empty());
        // A regular file is listed with an error, not a panic.
        let info = query(&dir.path().join("video0"));
        assert!(info.error.is_some(), "{info:?}");
    }
}
