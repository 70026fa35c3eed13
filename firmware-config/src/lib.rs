//! Device configuration of the FFC-AD line runtime (DESIGN.md §7): one TOML file per device.
//!
//! Every field has a default; [`DeviceConfig::from_toml_str`] rejects unknown keys and invalid
//! values with an error that names the key and the allowed values. A top-level
//! `board = "rpi4" | "rpi5" | "jetson-orin-nano"` starts from that board's preset
//! ([`BoardPreset`]); every key in the file overrides it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod pixel_format;
pub use pixel_format::PixelFormat;

/// Why a configuration file was refused. Messages name the file or key and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config key `{key}` = {value}: expected {expected}")]
    Invalid { key: &'static str, value: String, expected: &'static str },
}

/// The whole device file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    /// Board preset the file started from (informational once loaded).
    pub board: Option<BoardPreset>,
    pub camera: CameraSection,
    pub roi: Option<Roi>,
    pub model: ModelSection,
    pub trigger: TriggerSection,
    pub reject: RejectSection,
    pub ready: ReadySection,
    pub output: OutputSection,
    pub logging: LoggingSection,
    pub web: WebSection,
    pub drift: DriftSection,
    pub mqtt: MqttSection,
}

/// `[mqtt]`: every event of `runtime run` published to an MQTT broker (the runtime's `mqtt`
/// module): `<topic_prefix>/verdict`, `<topic_prefix>/alarm`, a retained `<topic_prefix>/status`;
/// REJECT / BAD events spooled to disk while the broker is away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSection {
    /// Publish (default false).
    pub enabled: bool,
    /// Broker host name or IP address (default "localhost"); with `tls` it is also the name the
    /// broker's certificate must carry.
    pub host: String,
    /// Broker TCP port, 1 ..= 65535 (default 1883; MQTT over TLS is usually 8883).
    pub port: u16,
    /// Topics: `<prefix>/verdict`, `<prefix>/alarm`, retained `<prefix>/status` (default
    /// "ffcad/line"; no `#` or `+`).
    pub topic_prefix: String,
    /// MQTT client id, unique per line on one broker (default "ffcad-runtime").
    pub client_id: String,
    /// QoS of the events: 0, 1 (default) or 2. The retained status always goes at QoS 1.
    pub qos: u8,
    /// Broker user name (default none: anonymous).
    pub username: Option<String>,
    /// File whose first line is the password (with `username`).
    pub password_file: Option<PathBuf>,
    /// Cap of the REJECT spool while the broker is away, MiB (1 ..= 4096, default 16; a REJECT
    /// event is ~0.4 KiB).
    pub spool_mib: u32,
    /// MQTT keep-alive, s (5 ..= 3600, default 10): a broker that vanishes silently is noticed
    /// after about 1.5x this.
    pub keepalive_s: u32,
    /// Connect over TLS (rustls; default false).
    pub tls: bool,
    /// PEM file of the CA certificate(s) the broker's certificate is checked against (with `tls`;
    /// default: the system's root certificates).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and private key, for brokers that require client
    /// certificates (with `tls`; both or neither).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

impl Default for MqttSection {
    fn default() -> Self {
        Self {
            enabled: false,
            host: "localhost".into(),
            port: 1883,
            topic_prefix: "ffcad/line".into(),
            client_id: "ffcad-runtime".into(),
            qos: 1,
            username: None,
            password_file: None,
            spool_mib: 16,
            keepalive_s: 10,
            tls: false,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }
}

/// `[drift]`: the drift watch of `runtime run` (the runtime's `line::drift`): the median of the
/// last `window` scores against the good-image statistics stored in the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftSection {
    /// Watch for drift (default true; off by itself for a model without statistics).
    pub enabled: bool,
    /// Scores the median is taken over (20 ..= 100000, default 200).
    pub window: u32,
    /// Alarm when the median is more than k standard deviations of the good scores from their
    /// mean (1 ..= 100, default 4).
    pub k: f64,
}

impl Default for DriftSection {
    fn default() -> Self {
        Self { enabled: true, window: 200, k: 4.0 }
    }
}

/// `[web]`: the web view, JSON API and Prometheus metrics served by `runtime run` itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSection {
    /// Serve the web view (default false).
    pub enabled: bool,
    /// Address to listen on (default 127.0.0.1: this machine only). Any other address needs
    /// `token_file`.
    pub bind: String,
    /// TCP port (default 8080; 0: any free port, printed in the log at start).
    pub port: u16,
    /// File whose first line is the access token; when set, every request (the page, the API,
    /// `/metrics`) must carry it (`Authorization: Bearer <token>`, or `?token=` in the page's URL).
    pub token_file: Option<PathBuf>,
    /// Let the API change the line (mark a reject as a false reject, set the threshold). Needs
    /// `token_file`.
    pub allow_changes: bool,
    /// Frames per second the live view is refreshed with at most (0.1 ..= 30, default 5): each
    /// costs an overlay drawn beside inference.
    pub live_fps: f32,
    /// Recent rejects kept for the gallery (1 ..= 500, default 24).
    pub gallery: u32,
}

impl Default for WebSection {
    fn default() -> Self {
        Self { enabled: false, bind: "127.0.0.1".into(), port: 8080, token_file: None, allow_changes: false, live_fps: 5.0, gallery: 24 }
    }
}

impl WebSection {
    /// Whether `bind` is a loopback address (127.0.0.0/8, ::1, `localhost`).
    pub fn loopback(&self) -> bool {
        self.bind == "localhost" || self.bind.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
    }
}

/// Boards with a preset: thread count for their CPU and the usual header line for the ejector.
/// The threads (and `model.workers = 1`) are unmeasured starting points: no board was at hand;
/// `runtime bench --threads 1,2,4 --workers 1,2,4` on the board says what to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BoardPreset {
    /// Raspberry Pi 4 (4x Cortex-A72): 4 threads, reject on header pin 11 (`GPIO17`).
    Rpi4,
    /// Raspberry Pi 5 (4x Cortex-A76): 4 threads, reject on header pin 11 (`GPIO17`, RP1 chip).
    Rpi5,
    /// Jetson Orin Nano (6x Cortex-A78AE): 6 threads, reject on header pin 7 (`PAC.06`).
    JetsonOrinNano,
}

impl BoardPreset {
    /// Every preset, for help texts and tests.
    pub const ALL: [BoardPreset; 3] = [BoardPreset::Rpi4, BoardPreset::Rpi5, BoardPreset::JetsonOrinNano];

    /// The preset's configuration: GPIO reject (active-high, 40 ms), V4L2 camera at /dev/video0.
    pub fn config(self) -> DeviceConfig {
        let (threads, line) = match self {
            BoardPreset::Rpi4 | BoardPreset::Rpi5 => (4, "GPIO17"),
            BoardPreset::JetsonOrinNano => (6, "PAC.06"),
        };
        let mut c = DeviceConfig { board: Some(self), ..DeviceConfig::default() };
        c.model.threads = threads;
        c.camera.source = CameraSource::V4l2;
        c.reject.backend = RejectBackend::Gpio;
        c.reject.line = Some(line.into());
        c.reject.pulse_ms = 40;
        c
    }
}

/// Where frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraSource {
    /// A V4L2 capture device (`camera.device`).
    V4l2,
    /// A recorded image sequence (`camera.replay_dir`) played at `camera.fps`.
    Replay,
}

/// `[camera]`: the frame source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CameraSection {
    pub source: CameraSource,
    /// V4L2 device path.
    pub device: PathBuf,
    /// Requested frame size in px; the runtime uses what the driver returns.
    pub width: u32,
    pub height: u32,
    /// Requested pixel format as a fourcc: YUYV, MJPG, GREY, Y16, RGB3 or BGR3 (case-insensitive;
    /// `JPEG` = MJPG), parsed once here.
    pub fourcc: PixelFormat,
    /// Frames per second: requested from the camera, or the replay rate (0.1 ..= 1000).
    pub fps: f32,
    /// Folder of images for `source = "replay"` (played in name order).
    pub replay_dir: Option<PathBuf>,
    /// Play the replay sequence again from the start when it ends.
    pub replay_loop: bool,
    /// Longest wait for one frame before reporting a timeout, ms (10 ..= 60000).
    pub timeout_ms: u32,
    /// Wait between attempts to reopen a camera that disappeared, ms (10 ..= 60000).
    pub reopen_ms: u32,
    /// Significant bits of the 16-bit samples (8 ..= 16, LSB-aligned: a 12-bit sensor gives
    /// 0..=4095), for `fourcc = "Y16"` and for 16-bit replay images; 8-bit formats have no such
    /// key. Unset: the bit depth stored in the model (that of its training images; 16 for
    /// models without one). See the runtime's `bit_depth` module.
    pub bit_depth: Option<u8>,
    /// V4L2 controls set at open and after every reopen (`[camera.controls]`), by the name
    /// `runtime cameras` lists (the driver's name in lower case, other characters as `_`), e.g.
    /// `auto_exposure = 1` (UVC menu: 1 = manual), `exposure_time_absolute = 250`, `gain = 16`,
    /// `white_balance_automatic = false`, `focus_automatic_continuous = false`. Controls whose
    /// name contains `auto` are set first, so that a manual value is not ignored while its auto
    /// mode is still on. Each is read back and logged.
    pub controls: std::collections::BTreeMap<String, ControlValue>,
}

/// A V4L2 control value in the device file: an integer (also a menu index) or a boolean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ControlValue {
    Bool(bool),
    Int(i64),
}

impl<'de> Deserialize<'de> for ControlValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ControlValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer (a value or a menu index) or true / false")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ControlValue, E> {
                Ok(ControlValue::Bool(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ControlValue, E> {
                Ok(ControlValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ControlValue, E> {
                i64::try_from(v).map(ControlValue::Int).map_err(|_| E::custom(format!("{v} is too large for a V4L2 control")))
            }
        }
        d.deserialize_any(V)
    }
}

impl ControlValue {
    /// The value as V4L2 takes it (`true` = 1).
    pub fn as_i64(self) -> i64 {
        match self {
            Self::Bool(b) => i64::from(b),
            Self::Int(i) => i,
        }
    }
}

impl Default for CameraSection {
    fn default() -> Self {
        Self {
            source: CameraSource::V4l2,
            device: PathBuf::from("/dev/video0"),
            width: 640,
            height: 480,
            fourcc: PixelFormat::Yuyv,
            fps: 10.0,
            replay_dir: None,
            replay_loop: false,
            timeout_ms: 1000,
            reopen_ms: 1000,
            bit_depth: None,
            controls: std::collections::BTreeMap::new(),
        }
    }
}

/// `[roi]`: the region of the frame that is inspected: top-left corner `x`, `y` and size `width` x
/// `height`, px (origin top left). The runtime uses this type as its `Roi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roi {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// What starts an inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerMode {
    /// Every frame the source delivers is inspected.
    FreeRun,
    /// An edge on a GPIO input line (`trigger.line`) selects the next frame.
    Gpio,
}

/// Which edge of the trigger input counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Edge {
    Rising,
    Falling,
    Both,
}

/// `[trigger]`: part-present sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriggerSection {
    pub mode: TriggerMode,
    /// GPIO input line (name like `GPIO27`, or `gpiochip0:27`), for `mode = "gpio"`.
    pub line: Option<String>,
    pub edge: Edge,
    /// Edges closer than this to the previous accepted one are ignored, ms (0 ..= 1000).
    pub debounce_ms: u32,
}

impl Default for TriggerSection {
    fn default() -> Self {
        Self { mode: TriggerMode::FreeRun, line: None, edge: Edge::Rising, debounce_ms: 5 }
    }
}

/// `[logging]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    /// tracing level: error, warn, info, debug or trace (`RUST_LOG` overrides).
    pub level: String,
    /// Write one JSON line per frame to `<output.dir>/events.jsonl`.
    pub events: bool,
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self { level: "info".into(), events: true }
    }
}

/// `[model]`: which exported model to run and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Path of the exported ONNX file.
    pub path: PathBuf,
    /// Inference threads per worker (tract's matmul pool; ONNX Runtime's intra-op pool), 1 ..= 64.
    pub threads: u32,
    /// Inference workers judging frames in parallel, each with its own state on the model
    /// (1 ..= 16); verdicts, pulses and events stay in frame order. Workers x threads should
    /// not exceed the cores: `runtime bench --workers 1,2,4` measures which is best on a board.
    pub workers: u32,
    /// Replaces the threshold stored in the model when set (image score, > 0).
    pub threshold: Option<f32>,
    /// Known images every model must judge right before it runs (at start and at a live swap):
    /// `good/` must be OK, every other sub-folder (e.g. `crack/`, `bad/`) REJECT, the MVTec AD
    /// `test/` layout. Unset: no acceptance check beyond loading and a warm-up inference.
    pub acceptance_dir: Option<PathBuf>,
    /// Which inference engine runs the model ([`ModelEngine`]).
    pub engine: ModelEngine,
    /// `libonnxruntime.so` for `engine = "onnxruntime"` (default: `$ORT_DYLIB_PATH`, else the
    /// loader's search path).
    pub onnxruntime_lib: Option<PathBuf>,
}

/// The inference engine of `[model].engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ModelEngine {
    /// tract (pure Rust, in every build; the default).
    #[default]
    Tract,
    /// ONNX Runtime, loaded from `libonnxruntime.so` at run time; only in runtimes built with
    /// the cargo feature `onnxruntime`.
    Onnxruntime,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self { path: PathBuf::from("model.onnx"), threads: 1, workers: 1, threshold: None, acceptance_dir: None, engine: ModelEngine::Tract, onnxruntime_lib: None }
    }
}

/// Which output, if any, tells the PLC that the line is inspecting (`[ready].backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReadyBackend {
    /// No ready output.
    #[default]
    None,
    /// Recorded and logged only (tests, a bench without a PLC).
    Simulated,
    /// Linux GPIO character device.
    Gpio,
}

/// `[ready]`: an output active only while frames are being inspected (off during start, camera
/// reopen, model swap and shutdown, and while the process is down: wire it so that the
/// inactive level is what a pull resistor holds, see DEPLOY.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReadySection {
    pub backend: ReadyBackend,
    /// GPIO line name (e.g. `GPIO27`), used by the `gpio` backend.
    pub line: Option<String>,
    /// True when the PLC input reads "ready" on a low level.
    pub active_low: bool,
}

/// Which reject output drives the ejector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectBackend {
    /// Records pulses only (tests, offline inspection).
    Simulated,
    /// Linux GPIO character device.
    Gpio,
}

/// `[reject]`: the reject pulse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RejectSection {
    pub backend: RejectBackend,
    /// GPIO line name (e.g. `GPIO17`), used by the `gpio` backend.
    pub line: Option<String>,
    /// True when the ejector fires on a low level (active-low wiring).
    pub active_low: bool,
    /// Pulse width, ms (1 ..= 10000).
    pub pulse_ms: u32,
    /// Delay from the frame to the pulse (camera-to-ejector distance / conveyor speed), ms
    /// (0 ..= 60000).
    pub delay_ms: u32,
    /// Pulse the reject line for a frame that cannot be inspected (corrupt, empty, too small):
    /// fail-safe, an unchecked part must not pass as good.
    pub reject_unreadable: bool,
}

impl Default for RejectSection {
    fn default() -> Self {
        Self { backend: RejectBackend::Simulated, line: None, active_low: false, pulse_ms: 50, delay_ms: 0, reject_unreadable: true }
    }
}

/// Which frames get an overlay image (`[output].overlays`, and `runtime inspect --overlays`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OverlayMode {
    /// Every inspected frame.
    All,
    /// REJECT frames only.
    Rejects,
    /// No overlays.
    None,
}

/// `[output]`: where results go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// Folder for events, overlays and the summary.
    pub dir: PathBuf,
    pub overlays: OverlayMode,
    /// Linux framebuffer device to show the latest overlay on (e.g. `/dev/fb0`); none by default.
    pub framebuffer: Option<PathBuf>,
    /// Overlay PNGs kept in `<dir>/overlays` before the oldest are deleted (1 ..= 1000000), so a
    /// night shift cannot fill the disk. Counted per folder across restarts: the overlays earlier
    /// runs left there count.
    pub max_saved_images: u32,
    /// Size cap of `<dir>/events.jsonl` in MiB (1 ..= 65536): past it the file is renamed
    /// `events.1.jsonl` (older ones shift to `.2`, `.3`, ..), at start and while running.
    pub max_events_mib: u32,
    /// Old event files kept beside `events.jsonl` (1 ..= 100); the oldest is removed. The folder
    /// holds at most (1 + this) x `max_events_mib` MiB of events.
    pub old_events_files: u32,
    /// `runtime run` saves every REJECT frame (ROI crop, lossless PNG, no overlay) in
    /// `<dir>/frames/reject/` for review.
    pub save_rejects: bool,
    /// `runtime run` saves every this-many-th OK frame in `<dir>/frames/ok/` as new good training
    /// images (0 = none, 1 = all; 0 ..= 1000000).
    pub save_ok_every: u32,
    /// Frames kept in each of `<dir>/frames/reject/` and `<dir>/frames/ok/` before the oldest are
    /// deleted, across restarts (1 ..= 1000000).
    pub max_saved_frames: u32,
}

/// Smallest threshold accepted from a user (`model.threshold`, `--threshold`): below it a value
/// is subnormal or prints as 0.0000, and it rejects every part that scores above zero.
pub const MIN_THRESHOLD: f32 = 1e-6;

/// Why `t` cannot be a user-given threshold, if it cannot: not finite, or under [`MIN_THRESHOLD`].
pub fn threshold_problem(t: f32) -> Option<String> {
    if !t.is_finite() || t <= 0.0 {
        return Some(format!("{t}: expected a finite image score > 0 (at least {MIN_THRESHOLD:e})"));
    }
    if t < MIN_THRESHOLD {
        return Some(format!("{t:e}: expected an image score of at least {MIN_THRESHOLD:e}; a smaller one is printed as 0.0000 and rejects every part that scores above zero"));
    }
    None
}

/// Allowed values of the numeric keys, as the range checks of [`DeviceConfig::validate`] state
/// them: said with a type error ("expected u32"), which names only the Rust type.
pub const NUMERIC_KEYS: [(&str, &str); 26] = [
    ("mqtt.port", "a TCP port in 1..=65535"),
    ("mqtt.qos", "0, 1 or 2"),
    ("mqtt.spool_mib", "MiB in 1..=4096"),
    ("mqtt.keepalive_s", "seconds in 5..=3600"),
    ("drift.window", "a number of frames in 20..=100000"),
    ("drift.k", "standard deviations in 1..=100"),
    ("web.port", "a TCP port in 0..=65535 (0: any free port)"),
    ("web.live_fps", "frames per second in 0.1..=30"),
    ("web.gallery", "an integer in 1..=500"),
    ("model.threads", "an integer in 1..=64"),
    ("model.workers", "an integer in 1..=16"),
    ("model.threshold", "a finite image score of at least 1e-6"),
    ("reject.pulse_ms", "milliseconds in 1..=10000"),
    ("reject.delay_ms", "milliseconds in 0..=60000"),
    ("camera.width", "width and height in 16..=16384 px"),
    ("camera.height", "width and height in 16..=16384 px"),
    ("camera.fps", "frames per second in 0.1..=1000"),
    ("camera.timeout_ms", "milliseconds in 10..=60000"),
    ("camera.reopen_ms", "milliseconds in 10..=60000"),
    ("camera.bit_depth", "significant bits in 8..=16"),
    ("trigger.debounce_ms", "milliseconds in 0..=1000"),
    ("output.max_saved_images", "an integer in 1..=1000000"),
    ("output.save_ok_every", "an integer in 0..=1000000"),
    ("output.max_saved_frames", "an integer in 1..=1000000"),
    ("output.max_events_mib", "MiB in 1..=65536"),
    ("output.old_events_files", "an integer in 1..=100"),
];

/// Adds the allowed values to a TOML type error on a numeric key: `invalid value: integer `-1`,
/// expected u32 in `model.threads`` gets `; model.threads: expected an integer in 1..=64`.
fn with_allowed_values(message: String) -> String {
    let key = message.rsplit_once("in `").and_then(|(_, k)| k.split('`').next()).map(str::to_string);
    match key.and_then(|k| NUMERIC_KEYS.iter().find(|(n, _)| *n == k)) {
        Some((k, allowed)) if message.contains("expected") => format!("{}; {k}: expected {allowed}", message.trim_end()),
        _ => message,
    }
}

/// Default of `output.max_events_mib`.
pub const DEFAULT_MAX_EVENTS_MIB: u32 = 64;
/// Default of `output.old_events_files`.
pub const DEFAULT_OLD_EVENTS_FILES: u32 = 3;

impl Default for OutputSection {
    fn default() -> Self {
        Self { dir: PathBuf::from("inspect-out"), overlays: OverlayMode::All, framebuffer: None, max_saved_images: 1000, max_events_mib: DEFAULT_MAX_EVENTS_MIB, old_events_files: DEFAULT_OLD_EVENTS_FILES, save_rejects: false, save_ok_every: 0, max_saved_frames: 1000 }
    }
}

impl DeviceConfig {
    /// Parses and validates TOML text; `origin` names the source in errors. With a top-level
    /// `board` key, the board's preset is the base and the file's keys override it.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let parse_err = |e: toml::de::Error| ConfigError::Parse { path: origin.into(), message: with_allowed_values(e.to_string()) };
        let file: toml::Table = toml::from_str(text).map_err(parse_err)?;
        let cfg: Self = match file.get("board") {
            Some(board) => {
                let preset: BoardPreset = board.clone().try_into().map_err(|_| ConfigError::Invalid {
                    key: "board",
                    value: board.to_string(),
                    expected: "one of \"rpi4\", \"rpi5\", \"jetson-orin-nano\"",
                })?;
                let mut base = toml::Table::try_from(preset.config()).expect("presets serialise");
                merge(&mut base, file);
                base.try_into().map_err(parse_err)?
            }
            None => file.try_into().map_err(parse_err)?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read { path: path.into(), cause })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Checks value ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=16).contains(&self.model.workers) {
            return Err(ConfigError::Invalid { key: "model.workers", value: self.model.workers.to_string(), expected: "an integer in 1..=16" });
        }
        if !(1..=64).contains(&self.model.threads) {
            return Err(ConfigError::Invalid { key: "model.threads", value: self.model.threads.to_string(), expected: "an integer in 1..=64" });
        }
        if let Some(t) = self.model.threshold {
            if threshold_problem(t).is_some() {
                return Err(ConfigError::Invalid { key: "model.threshold", value: format!("{t:e}"), expected: "a finite image score of at least 1e-6" });
            }
        }
        if !(1..=10_000).contains(&self.reject.pulse_ms) {
            return Err(ConfigError::Invalid { key: "reject.pulse_ms", value: self.reject.pulse_ms.to_string(), expected: "milliseconds in 1..=10000" });
        }
        if self.reject.delay_ms > 60_000 {
            return Err(ConfigError::Invalid { key: "reject.delay_ms", value: self.reject.delay_ms.to_string(), expected: "milliseconds in 0..=60000" });
        }
        if self.reject.backend == RejectBackend::Gpio && self.reject.line.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError::Invalid { key: "reject.line", value: "(unset)".into(), expected: "a GPIO line name when reject.backend = \"gpio\"" });
        }
        let c = &self.camera;
        if !(16..=16384).contains(&c.width) || !(16..=16384).contains(&c.height) {
            return Err(ConfigError::Invalid { key: "camera.width", value: format!("{}x{}", c.width, c.height), expected: "width and height in 16..=16384 px" });
        }
        if !(c.fps.is_finite() && (0.1..=1000.0).contains(&c.fps)) {
            return Err(ConfigError::Invalid { key: "camera.fps", value: c.fps.to_string(), expected: "frames per second in 0.1..=1000" });
        }
        if !(10..=60_000).contains(&c.timeout_ms) {
            return Err(ConfigError::Invalid { key: "camera.timeout_ms", value: c.timeout_ms.to_string(), expected: "milliseconds in 10..=60000" });
        }
        if !(10..=60_000).contains(&c.reopen_ms) {
            return Err(ConfigError::Invalid { key: "camera.reopen_ms", value: c.reopen_ms.to_string(), expected: "milliseconds in 10..=60000" });
        }
        if let Some(b) = c.bit_depth {
            if !(8..=16).contains(&b) {
                return Err(ConfigError::Invalid { key: "camera.bit_depth", value: b.to_string(), expected: "significant bits in 8..=16" });
            }
            if c.source == CameraSource::V4l2 && c.fourcc != PixelFormat::Y16 {
                return Err(ConfigError::Invalid {
                    key: "camera.bit_depth",
                    value: format!("{b} with camera.fourcc = \"{}\"", c.fourcc),
                    expected: "no bit_depth for 8-bit pixel formats: it applies to fourcc = \"Y16\" and to 16-bit replay images",
                });
            }
        }
        if let Some(name) = c.controls.keys().find(|k| k.is_empty() || !k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')) {
            return Err(ConfigError::Invalid { key: "camera.controls", value: format!("camera.controls.{name}"), expected: "control names as `runtime cameras` lists them: lower case letters, digits and _" });
        }
        if c.source == CameraSource::Replay && c.replay_dir.is_none() {
            return Err(ConfigError::Invalid { key: "camera.replay_dir", value: "(unset)".into(), expected: "a folder of images when camera.source = \"replay\"" });
        }
        if let Some(r) = &self.roi {
            // A replay's frame size is that of its images, not camera.width x camera.height: it is
            // checked against the first image by `runtime config check` (and every frame is
            // checked when the line runs).
            let outside = |origin: u32, side: u32, limit: u32| u64::from(origin) + u64::from(side) > u64::from(limit);
            let outside_camera = c.source == CameraSource::V4l2 && (outside(r.x, r.width, c.width) || outside(r.y, r.height, c.height));
            if r.width < 16 || r.height < 16 || outside_camera {
                return Err(ConfigError::Invalid {
                    key: "roi",
                    value: format!("x {} y {} width {} height {}", r.x, r.y, r.width, r.height),
                    expected: "a rectangle at least 16x16 px inside camera.width x camera.height (for camera.source = \"replay\": inside the replay images, which `runtime config check` reads)",
                });
            }
        }
        if self.ready.backend == ReadyBackend::Gpio && self.ready.line.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError::Invalid { key: "ready.line", value: "(unset)".into(), expected: "a GPIO line name when ready.backend = \"gpio\"" });
        }
        if self.ready.backend == ReadyBackend::Gpio && self.ready.line == self.reject.line && self.reject.backend == RejectBackend::Gpio {
            return Err(ConfigError::Invalid { key: "ready.line", value: self.ready.line.clone().unwrap_or_default(), expected: "a GPIO line other than reject.line" });
        }
        if !(20..=100_000).contains(&self.drift.window) {
            return Err(ConfigError::Invalid { key: "drift.window", value: self.drift.window.to_string(), expected: "a number of frames in 20..=100000" });
        }
        if !(self.drift.k.is_finite() && (1.0..=100.0).contains(&self.drift.k)) {
            return Err(ConfigError::Invalid { key: "drift.k", value: self.drift.k.to_string(), expected: "standard deviations in 1..=100" });
        }
        let m = &self.mqtt;
        if m.qos > 2 {
            return Err(ConfigError::Invalid { key: "mqtt.qos", value: m.qos.to_string(), expected: "0, 1 or 2" });
        }
        if m.enabled && (m.host.is_empty() || m.port == 0 || m.client_id.is_empty() || m.topic_prefix.is_empty() || m.topic_prefix.contains(['#', '+']) || m.topic_prefix.chars().any(char::is_control)) {
            return Err(ConfigError::Invalid { key: "mqtt", value: format!("host {:?} port {} client_id {:?} topic_prefix {:?}", m.host, m.port, m.client_id, m.topic_prefix), expected: "a host, a port in 1..=65535, a client id and a topic prefix without #, + or control characters when mqtt.enabled" });
        }
        if !(1..=4096).contains(&m.spool_mib) {
            return Err(ConfigError::Invalid { key: "mqtt.spool_mib", value: m.spool_mib.to_string(), expected: "MiB in 1..=4096" });
        }
        if !(5..=3600).contains(&m.keepalive_s) {
            return Err(ConfigError::Invalid { key: "mqtt.keepalive_s", value: m.keepalive_s.to_string(), expected: "seconds in 5..=3600" });
        }
        if m.client_cert_file.is_some() != m.client_key_file.is_some() {
            return Err(ConfigError::Invalid { key: "mqtt.client_cert_file", value: format!("client_cert_file {:?}, client_key_file {:?}", m.client_cert_file, m.client_key_file), expected: "both a client certificate and its key, or neither" });
        }
        if !m.tls && (m.ca_file.is_some() || m.client_cert_file.is_some()) {
            return Err(ConfigError::Invalid { key: "mqtt.tls", value: "false".into(), expected: "true when mqtt.ca_file or a client certificate is given (they are used only over TLS)" });
        }
        if m.password_file.is_some() && m.username.is_none() {
            return Err(ConfigError::Invalid { key: "mqtt.username", value: "(unset)".into(), expected: "a user name with mqtt.password_file" });
        }
        let w = &self.web;
        if w.bind != "localhost" && w.bind.parse::<std::net::IpAddr>().is_err() {
            return Err(ConfigError::Invalid { key: "web.bind", value: w.bind.clone(), expected: "an IP address such as 127.0.0.1 (this machine only), 0.0.0.0 (every interface) or localhost" });
        }
        if w.enabled && !w.loopback() && w.token_file.is_none() {
            return Err(ConfigError::Invalid { key: "web.token_file", value: "(unset)".into(), expected: "a token file when web.bind is not a loopback address: the line's view and API would be open to the network" });
        }
        if w.allow_changes && w.token_file.is_none() {
            return Err(ConfigError::Invalid { key: "web.allow_changes", value: "true".into(), expected: "false unless web.token_file is set: changes need a token" });
        }
        if !(w.live_fps.is_finite() && (0.1..=30.0).contains(&w.live_fps)) {
            return Err(ConfigError::Invalid { key: "web.live_fps", value: w.live_fps.to_string(), expected: "frames per second in 0.1..=30" });
        }
        if !(1..=500).contains(&w.gallery) {
            return Err(ConfigError::Invalid { key: "web.gallery", value: w.gallery.to_string(), expected: "an integer in 1..=500" });
        }
        if self.trigger.mode == TriggerMode::Gpio && self.trigger.line.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError::Invalid { key: "trigger.line", value: "(unset)".into(), expected: "a GPIO line when trigger.mode = \"gpio\"" });
        }
        if self.trigger.debounce_ms > 1000 {
            return Err(ConfigError::Invalid { key: "trigger.debounce_ms", value: self.trigger.debounce_ms.to_string(), expected: "milliseconds in 0..=1000" });
        }
        if self.output.save_ok_every > 1_000_000 {
            return Err(ConfigError::Invalid { key: "output.save_ok_every", value: self.output.save_ok_every.to_string(), expected: "an integer in 0..=1000000" });
        }
        if !(1..=1_000_000).contains(&self.output.max_saved_frames) {
            return Err(ConfigError::Invalid { key: "output.max_saved_frames", value: self.output.max_saved_frames.to_string(), expected: "an integer in 1..=1000000" });
        }
        if !(1..=1_000_000).contains(&self.output.max_saved_images) {
            return Err(ConfigError::Invalid { key: "output.max_saved_images", value: self.output.max_saved_images.to_string(), expected: "an integer in 1..=1000000" });
        }
        if !(1..=65_536).contains(&self.output.max_events_mib) {
            return Err(ConfigError::Invalid { key: "output.max_events_mib", value: self.output.max_events_mib.to_string(), expected: "MiB in 1..=65536" });
        }
        if !(1..=100).contains(&self.output.old_events_files) {
            return Err(ConfigError::Invalid { key: "output.old_events_files", value: self.output.old_events_files.to_string(), expected: "an integer in 1..=100" });
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.logging.level.as_str()) {
            return Err(ConfigError::Invalid { key: "logging.level", value: self.logging.level.clone(), expected: "one of error, warn, info, debug, trace" });
        }
        Ok(())
    }
}

/// Overlays `over` onto `base`: tables merge key by key, everything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = DeviceConfig::from_toml_str("", "t").unwrap();
        assert_eq!(c, DeviceConfig::default());
        assert_eq!(c.reject.pulse_ms, 50);
        assert_eq!(c.trigger.mode, TriggerMode::FreeRun);
        assert_eq!(c.camera.device, PathBuf::from("/dev/video0"));
        // A replay needs its folder.
        let msg = DeviceConfig::from_toml_str("[camera]\nsource = \"replay\"", "t").unwrap_err().to_string();
        assert!(msg.contains("camera.replay_dir"), "{msg}");
    }

    #[test]
    fn board_presets_are_a_base_the_file_overrides() {
        for b in BoardPreset::ALL {
            let name = toml::Value::try_from(b).unwrap();
            let c = DeviceConfig::from_toml_str(&format!("board = {name}\n[reject]\ndelay_ms = 300\n[camera]\nwidth = 1280\nheight = 720"), "t").unwrap();
            assert_eq!(c.board, Some(b));
            assert_eq!(c.camera.source, CameraSource::V4l2, "{b:?}");
            assert_eq!(c.reject.backend, RejectBackend::Gpio);
            assert_eq!(c.reject.delay_ms, 300, "file overrides the preset");
            assert_eq!(c.reject.pulse_ms, 40, "preset value kept");
            assert_eq!((c.camera.width, c.camera.height), (1280, 720));
        }
        let c = DeviceConfig::from_toml_str("board = \"jetson-orin-nano\"", "t").unwrap();
        assert_eq!((c.model.threads, c.reject.line.as_deref()), (6, Some("PAC.06")));
        let c = DeviceConfig::from_toml_str("board = \"rpi4\"\n[model]\nthreads = 2", "t").unwrap();
        assert_eq!((c.model.threads, c.reject.line.as_deref()), (2, Some("GPIO17")));
        let msg = DeviceConfig::from_toml_str("board = \"rpi3\"", "t").unwrap_err().to_string();
        assert!(msg.contains("board") && msg.contains("jetson-orin-nano"), "{msg}");
    }

    #[test]
    fn full_file_parses() {
        let c = DeviceConfig::from_toml_str(
            "[model]\npath = \"m.onnx\"\nthreads = 2\nthreshold = 0.4\n[reject]\nbackend = \"gpio\"\nline = \"GPIO17\"\nactive_low = true\npulse_ms = 30\ndelay_ms = 250\n[output]\ndir = \"o\"\noverlays = \"rejects\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.model.threshold, Some(0.4));
        assert_eq!(c.reject.backend, RejectBackend::Gpio);
        assert_eq!(c.output.overlays, OverlayMode::Rejects);
        assert_eq!(c.reject.delay_ms, 250);
    }

    #[test]
    fn the_shipped_board_files_parse() {
        for b in BoardPreset::ALL {
            let name = toml::Value::try_from(b).unwrap();
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("boards/{}.toml", name.as_str().unwrap()));
            let c = DeviceConfig::load(&path).unwrap();
            assert_eq!(c.board, Some(b));
            assert_eq!(c.output.overlays, OverlayMode::Rejects);
        }
    }

    #[test]
    fn the_shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("device.example.toml");
        let c = DeviceConfig::load(&path).unwrap();
        assert_eq!(c.reject.pulse_ms, 40);
        assert!(c.reject.reject_unreadable);
    }

    #[test]
    fn camera_controls_ready_line_and_acceptance_set_parse_and_are_checked() {
        let text = "[camera.controls]\nauto_exposure = 1\nexposure_time_absolute = 250\nwhite_balance_automatic = false\n[model]\nacceptance_dir = \"/etc/ffcad/acceptance\"\n[ready]\nbackend = \"gpio\"\nline = \"GPIO27\"\nactive_low = true\n";
        let c = DeviceConfig::from_toml_str(text, "dev.toml").unwrap();
        let controls: Vec<(&str, i64)> = c.camera.controls.iter().map(|(k, v)| (k.as_str(), v.as_i64())).collect();
        assert_eq!(controls, [("auto_exposure", 1), ("exposure_time_absolute", 250), ("white_balance_automatic", 0)]);
        assert_eq!(c.camera.controls["white_balance_automatic"], ControlValue::Bool(false));
        assert_eq!(c.model.acceptance_dir.as_deref(), Some(Path::new("/etc/ffcad/acceptance")));
        assert_eq!((c.ready.backend, c.ready.line.as_deref(), c.ready.active_low), (ReadyBackend::Gpio, Some("GPIO27"), true));
        assert_eq!(DeviceConfig::default().ready.backend, ReadyBackend::None);
        let msg = DeviceConfig::from_toml_str("[ready]\nbackend = \"gpio\"\n", "dev.toml").unwrap_err().to_string();
        assert!(msg.contains("ready.line") && msg.contains("GPIO line name"), "{msg}");
        let msg = DeviceConfig::from_toml_str("[reject]\nbackend = \"gpio\"\nline = \"GPIO17\"\n[ready]\nbackend = \"gpio\"\nline = \"GPIO17\"\n", "dev.toml").unwrap_err().to_string();
        assert!(msg.contains("other than reject.line"), "{msg}");
        let msg = DeviceConfig::from_toml_str("[camera.controls]\n\"Exposure Time\" = 5\n", "dev.toml").unwrap_err().to_string();
        assert!(msg.contains("camera.controls") && msg.contains("lower case"), "{msg}");
        for bad in ["\"high\"", "1.5", "[1, 2]"] {
            let msg = DeviceConfig::from_toml_str(&format!("[camera.controls]\ngain = {bad}\n"), "dev.toml").unwrap_err().to_string();
            assert!(msg.contains("camera.controls.gain") && msg.contains("an integer (a value or a menu index) or true / false"), "{bad}: {msg}");
        }
    }

    #[test]
    fn a_replay_roi_is_not_held_to_camera_width_and_height() {
        // 1000x700 px replay images: the ROI fits them; camera.width x height (640x480) is not
        // their size (`runtime config check` checks the ROI against the first image).
        let text = "[camera]\nsource = \"replay\"\nreplay_dir = \"frames\"\n[roi]\nx = 0\ny = 0\nwidth = 1000\nheight = 700";
        let c = DeviceConfig::from_toml_str(text, "dev.toml").unwrap();
        assert_eq!(c.roi.map(|r| (r.width, r.height)), Some((1000, 700)));
        let msg = DeviceConfig::from_toml_str(&text.replace("replay\"\nreplay_dir = \"frames\"", "v4l2\""), "dev.toml").unwrap_err().to_string();
        assert!(msg.contains("roi") && msg.contains("camera.width"), "{msg}");
    }

    #[test]
    fn errors_name_key_and_allowed_values() {
        let cases = [
            ("[model]\nthreads = 0", "model.threads"),
            ("[model]\nthreshold = -1.0", "model.threshold"),
            ("[model]\nthreshold = 1e-45", "at least 1e-6"),
            ("[model]\nthreshold = 1e-7", "model.threshold"),
            ("[reject]\npulse_ms = 0", "reject.pulse_ms"),
            ("[reject]\ndelay_ms = 4294967295", "reject.delay_ms"),
            ("[reject]\nbackend = \"gpio\"", "reject.line"),
            ("[reject]\nbackend = \"relay\"", "simulated"),
            ("[output]\noverlays = \"some\"", "rejects"),
            ("[model]\nthraeds = 2", "thraeds"),
            ("[camera]\nfourcc = \"NV12\"", "camera.fourcc"),
            ("[camera]\nwidth = 8", "camera.width"),
            ("[camera]\nfps = 0.0", "camera.fps"),
            ("[camera]\ntimeout_ms = 0", "camera.timeout_ms"),
            ("[camera]\nreopen_ms = 5", "camera.reopen_ms"),
            ("[camera]\nfourcc = \"Y16\"\nbit_depth = 17", "`camera.bit_depth` = 17: expected significant bits in 8..=16"),
            ("[camera]\nfourcc = \"Y16\"\nbit_depth = -2", "camera.bit_depth: expected significant bits in 8..=16"),
            ("[camera]\nfourcc = \"YUYV\"\nbit_depth = 12", "applies to fourcc = \"Y16\""),
            ("[camera]\nsource = \"usb\"", "v4l2"),
            ("[roi]\nx = 600\ny = 0\nwidth = 100\nheight = 100", "roi"),
            ("[roi]\nx = 0\ny = 0\nwidth = 100", "height"),
            // No overflow on x + width.
            ("[roi]\nx = 4294967295\ny = 0\nwidth = 100\nheight = 100", "roi"),
            ("[camera]\nsource = \"replay\"\nreplay_dir = \"f\"\n[roi]\nx = 0\ny = 0\nwidth = 8\nheight = 100", "roi"),
            ("[trigger]\nmode = \"gpio\"", "trigger.line"),
            ("[trigger]\nedge = \"up\"", "rising"),
            ("[trigger]\ndebounce_ms = 5000", "trigger.debounce_ms"),
            ("[output]\nmax_saved_images = 0", "output.max_saved_images"),
            ("[output]\nmax_saved_frames = 0", "output.max_saved_frames"),
            ("[output]\nsave_ok_every = 2000000", "output.save_ok_every"),
            ("[output]\nsave_ok_every = -1", "output.save_ok_every: expected an integer in 0..=1000000"),
            ("[output]\nsave_rejects = 1", "save_rejects"),
            ("[output]\nmax_events_mib = 0", "output.max_events_mib"),
            // Type errors state the allowed range, not only the Rust type.
            ("[model]\nthreads = -1", "model.threads: expected an integer in 1..=64"),
            ("[model]\nthreads = \"x\"", "model.threads: expected an integer in 1..=64"),
            ("[reject]\npulse_ms = 1.5", "reject.pulse_ms: expected milliseconds in 1..=10000"),
            ("[camera]\nwidth = 99999999999", "camera.width: expected width and height in 16..=16384 px"),
            ("[output]\nmax_saved_images = true", "output.max_saved_images: expected an integer in 1..=1000000"),
            ("board = \"rpi4\"\n[model]\nthreads = -3", "model.threads: expected an integer in 1..=64"),
            ("[output]\nmax_events_mib = 70000", "1..=65536"),
            ("[output]\nold_events_files = 0", "output.old_events_files"),
            ("[logging]\nlevel = \"loud\"", "logging.level"),
            ("[mqtt]\nqos = 3", "mqtt.qos"),
            ("[mqtt]\nqos = -1", "mqtt.qos: expected 0, 1 or 2"),
            ("[mqtt]\nspool_mib = 0", "mqtt.spool_mib"),
            ("[mqtt]\nkeepalive_s = 1", "mqtt.keepalive_s"),
            ("[mqtt]\nport = 70000", "mqtt.port: expected a TCP port in 1..=65535"),
            ("[mqtt]\nenabled = true\nport = 0", "mqtt"),
            ("[mqtt]\nenabled = true\ntopic_prefix = \"line/#\"", "without #, +"),
            ("[mqtt]\nenabled = true\ntopic_prefix = \"a\\u0000b\"", "control characters"),
            ("[mqtt]\nenabled = true\nhost = \"\"", "a host"),
            ("[mqtt]\nbroker = \"x\"", "broker"),
            ("[mqtt]\nca_file = \"ca.pem\"", "mqtt.tls"),
            ("[mqtt]\ntls = true\nclient_cert_file = \"c.pem\"", "both a client certificate and its key"),
            ("[mqtt]\npassword_file = \"pw\"", "mqtt.username"),
        ];
        for (text, want) in cases {
            let msg = DeviceConfig::from_toml_str(text, "dev.toml").unwrap_err().to_string();
            assert!(msg.contains(want), "{text:?} -> {msg}");
        }
        let msg = DeviceConfig::load(Path::new("/nonexistent/dev.toml")).unwrap_err().to_string();
        assert!(msg.contains("/nonexistent/dev.toml"), "{msg}");
    }
}
