//! Live model swap (issue 16, item 3; DESIGN.md §6 "Model swap"): a new model file is loaded and
//! checked beside the running line, then handed to the inference thread, which switches to it
//! between two frames. The frame being judged when the new model arrives finishes on the old
//! one; every event names the model that judged it ([`crate::events::InspectionEvent::model`]).
//!
//! How a swap is asked for: replace the file at `[model].path` (copy to a temporary name in the
//! same folder, then `mv` over it) and send `SIGHUP` (`runtime reload --config FILE` does that).
//! `SIGUSR1` (`runtime rollback --config FILE`) returns to the model that ran before the last swap.
//!
//! A candidate runs only when all of these hold ([`check_candidate`]):
//! 1. the file loads in tract and its metadata is valid (a half-copied file fails here);
//! 2. an inspector can be built with the device file's threshold override and ROI;
//! 3. a warm-up inference on a mid-grey frame gives a finite score;
//! 4. with `[model].acceptance_dir`, every image there is judged right: `good/` OK, every other
//!    sub-folder REJECT.
//!
//! Otherwise the swap is refused with one log line that says why, and the running model goes on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use firmware_config::DeviceConfig;
use image::{DynamicImage, Rgb, RgbImage};
use serde::Serialize;

use crate::decide::Verdict;
use crate::infer::AnomalyModel;
use crate::inspector::Inspector;

/// A checked model for the line, and what checking it took.
pub struct CheckedModel {
    pub inspector: Inspector,
    /// Load (tract plan) + warm-up + acceptance set, ms.
    pub check_ms: f64,
    /// Acceptance images judged (all right).
    pub accepted_images: usize,
}

/// Loads `cfg.model.path` and checks it as the module docs say (1-4).
///
/// # Errors
/// The first check that failed, naming the file: the load error, the inspector error, the
/// warm-up failure, or the acceptance images judged wrong (up to 5 named, and how many in all).
pub fn check_candidate(cfg: &DeviceConfig) -> anyhow::Result<CheckedModel> {
    let t = Instant::now();
    let path = &cfg.model.path;
    let model = AnomalyModel::load_engine(path, cfg.model.threads as usize, cfg.model.engine, cfg.model.onnxruntime_lib.as_deref())?;
    let bit_depth = crate::preflight::line_bit_depth(cfg, &model.metadata)?;
    let mut inspector = Inspector::new(model, cfg.model.threshold, cfg.roi).with_context(|| format!("{}", path.display()))?;
    warm_up(&mut inspector).with_context(|| format!("model {}: warm-up inference", path.display()))?;
    let accepted_images = match &cfg.model.acceptance_dir {
        Some(dir) => acceptance(&mut inspector, dir, bit_depth).with_context(|| format!("model {}: acceptance set {}", path.display(), dir.display()))?,
        None => 0,
    };
    Ok(CheckedModel { inspector, check_ms: t.elapsed().as_secs_f64() * 1e3, accepted_images })
}

/// One inference on a mid-grey frame just large enough for the ROI (the model input size
/// without one): builds tract's buffers before the first real frame and shows the plan runs.
fn warm_up(inspector: &mut Inspector) -> anyhow::Result<()> {
    let (w, h) = match inspector.roi() {
        Some(r) => (r.x + r.width, r.y + r.height),
        None => inspector.model().input_size(),
    };
    let frame = DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, Rgb([128, 128, 128])));
    let outcome = inspector.inspect(&frame, "warm-up frame");
    match (outcome.verdict, outcome.score) {
        (Verdict::Ok | Verdict::Reject, Some(s)) if s.is_finite() => Ok(()),
        _ => anyhow::bail!("{}", outcome.reason.unwrap_or_else(|| format!("score {:?} is not a finite number", outcome.score))),
    }
}

/// Judges every image under `dir` (`good/` must be OK, any other sub-folder REJECT); returns how
/// many were judged.
fn acceptance(inspector: &mut Inspector, dir: &Path, bit_depth: crate::bit_depth::BitDepth) -> anyhow::Result<usize> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    let mut judged = 0usize;
    let mut wrong = Vec::new();
    for folder in &folders {
        let expect_good = folder.file_name().is_some_and(|n| n == "good");
        let want = if expect_good { Verdict::Ok } else { Verdict::Reject };
        for image in crate::dataset::list_images(folder)? {
            let name = image.display().to_string();
            let got = match crate::preprocess::load_image(&image, bit_depth) {
                Ok(img) => {
                    let o = inspector.inspect(&img, &name);
                    (o.verdict, o.score)
                }
                Err(e) => anyhow::bail!("{e}"),
            };
            judged += 1;
            if got.0 != want {
                let score = got.1.map(|s| format!("{s:.4}")).unwrap_or_else(|| "none".into());
                wrong.push(format!("{name}: {} (score {score}, threshold {:.4}), expected {}", got.0, inspector.threshold(), want));
            }
        }
    }
    if judged == 0 {
        anyhow::bail!("no images: expected good/ and defect sub-folders of images");
    }
    if !wrong.is_empty() {
        let shown: Vec<&str> = wrong.iter().take(5).map(String::as_str).collect();
        anyhow::bail!("{} of {judged} images judged wrong: {}", wrong.len(), shown.join("; "));
    }
    Ok(judged)
}

/// What the model watcher asks of the inference thread.
pub enum LineControl {
    /// Judge the next frames with this checked model; keep the running one for a rollback.
    Swap(Box<CheckedModel>),
    /// A candidate failed its checks: count it and record why (the running model goes on).
    Refused { path: PathBuf, reason: String },
    /// Return to the model that ran before the last swap.
    Rollback,
    /// Judge the next frames by this threshold (the web API, `POST /api/threshold`); `by` says
    /// who asked (the client's address). Until the next swap or restart: the device file's
    /// `[model].threshold` is what lasts.
    Threshold { value: f32, by: String },
    /// A control asked for by `runtime reload` / `runtime rollback`: their request ids go into
    /// the record, so each client finds the answer to its own request.
    Requested { control: Box<LineControl>, requests: Vec<String> },
}

/// One line of `models.jsonl` in the output folder: every model change of the line (start, swap,
/// rollback) and every refused candidate, in order.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelChange {
    pub time_unix_ms: u128,
    /// `start`, `swap`, `rollback`, `refused`, `unchanged` (the file is the model already
    /// running: nothing swapped, the rollback target kept), `rollback_refused` (no earlier
    /// model), `threshold` (the running model judges by a new threshold; `previous` says the old
    /// one, `reason` who set it) or `threshold_refused`.
    pub action: String,
    /// The model judging frames after this change ([`crate::infer::ModelId::label`]).
    pub model: String,
    /// The model before it (a swap, a rollback) or the refused file (`refused`).
    pub previous: Option<String>,
    /// SHA-256 of the model now running.
    pub sha256: String,
    /// The threshold the model now running judges by, and how it was calibrated (its metadata).
    pub threshold: f32,
    pub calibration: serde_json::Value,
    /// The last frame judged before the change (None: no frame yet).
    pub after_frame: Option<u64>,
    /// Time the candidate's checks took beside the line, ms (swaps and the start).
    pub check_ms: Option<f64>,
    /// Time the inference thread spent switching, during which the next frame waited, ms.
    pub switch_ms: Option<f64>,
    /// Why a candidate was refused.
    pub reason: Option<String>,
    /// Request ids of the `runtime reload` / `rollback` clients this answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<String>,
}

/// Requests raised by signals: `SIGHUP` = reload `[model].path`, `SIGUSR1` = roll back.
#[derive(Clone, Default)]
pub struct SwapRequests {
    pub reload: Arc<AtomicBool>,
    pub rollback: Arc<AtomicBool>,
}

impl SwapRequests {
    /// Flags set by `SIGHUP` (reload) and `SIGUSR1` (rollback), registered once per process
    /// (later calls return the same flags). `runtime run` calls this first thing: until then
    /// these signals would end the process. A request that arrives while the line starts is
    /// handled once it runs.
    ///
    /// # Errors
    /// The signal handlers cannot be installed.
    pub fn from_signals() -> anyhow::Result<Self> {
        static FLAGS: std::sync::OnceLock<Result<SwapRequests, String>> = std::sync::OnceLock::new();
        FLAGS
            .get_or_init(|| {
                let r = Self::default();
                signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&r.reload)).map_err(|e| format!("cannot install the SIGHUP handler: {e}"))?;
                signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&r.rollback)).map_err(|e| format!("cannot install the SIGUSR1 handler: {e}"))?;
                Ok(r)
            })
            .clone()
            .map_err(|e| anyhow::anyhow!(e))
    }
}

/// `<output>/requests/`: one empty file `<id>.reload` or `<id>.rollback` per waiting
/// `runtime reload` / `rollback` client.
pub fn requests_dir(out_dir: &Path) -> PathBuf {
    out_dir.join("requests")
}

/// Takes (removes) the waiting requests of `kind` (`reload` or `rollback`): their ids.
fn take_requests(out_dir: &Path, kind: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(requests_dir(out_dir)) else { return Vec::new() };
    let mut ids = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == kind) {
            if let Some(id) = p.file_stem().map(|s| s.to_string_lossy().into_owned()) {
                if std::fs::remove_file(&p).is_ok() {
                    ids.push(id);
                }
            }
        }
    }
    ids.sort();
    ids
}

/// Watches `requests` every `poll` until `shutdown` or until the inference thread is gone: a
/// reload checks `cfg.model.path` here (beside the line) and sends the result; a rollback is
/// passed on. Runs on its own thread ([`spawn_model_watcher`]).
fn watch(cfg: &DeviceConfig, requests: &SwapRequests, controls: &SyncSender<LineControl>, shutdown: &AtomicBool, poll: Duration) {
    let out = &cfg.output.dir;
    while !shutdown.load(Ordering::Relaxed) {
        let control = if requests.reload.swap(false, Ordering::SeqCst) {
            let ids = take_requests(out, "reload");
            tracing::info!("reload requested: checking {}", cfg.model.path.display());
            let control = match check_candidate(cfg) {
                Ok(m) => {
                    for w in model_warnings(cfg, m.inspector.model()) {
                        tracing::warn!("{w}");
                    }
                    LineControl::Swap(Box::new(m))
                }
                Err(e) => LineControl::Refused { path: cfg.model.path.clone(), reason: format!("{e:#}") },
            };
            Some(LineControl::Requested { control: Box::new(control), requests: ids })
        } else if requests.rollback.swap(false, Ordering::SeqCst) {
            Some(LineControl::Requested { control: Box::new(LineControl::Rollback), requests: take_requests(out, "rollback") })
        } else {
            None
        };
        match control {
            Some(c) => {
                if controls.send(c).is_err() {
                    return;
                }
            }
            None => std::thread::sleep(poll),
        }
    }
}

/// What `runtime run` warns about for the model at start and for one swapped in: a model trained
/// on the other colour than the camera's frames, or at another bit depth than the device file's.
pub fn model_warnings(cfg: &DeviceConfig, model: &AnomalyModel) -> Vec<String> {
    let replay_first = match (&cfg.camera.source, &cfg.camera.replay_dir) {
        (firmware_config::CameraSource::Replay, Some(dir)) => crate::preflight::first_replay_image(dir).ok(),
        _ => None,
    };
    crate::preflight::grey_camera_warning(cfg, &cfg.model.path, &model.metadata, replay_first.as_ref()).into_iter().chain(crate::preflight::bit_depth_warning(cfg, &cfg.model.path, &model.metadata)).collect()
}

/// Starts the thread that checks new models for the line ([`watch`], every 50 ms).
///
/// # Errors
/// The thread cannot be started.
pub fn spawn_model_watcher(cfg: DeviceConfig, requests: SwapRequests, controls: SyncSender<LineControl>, shutdown: Arc<AtomicBool>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    Ok(std::thread::Builder::new().name("model-watch".into()).spawn(move || watch(&cfg, &requests, &controls, &shutdown, Duration::from_millis(50)))?)
}

/// `<output>/runtime.pid`: the pid of the `runtime run` writing to that folder, for
/// `runtime reload` and `runtime rollback`.
pub fn pid_file(out_dir: &Path) -> PathBuf {
    out_dir.join("runtime.pid")
}

/// The pid of the `runtime run` writing to `out_dir` (its pid file), checked to be a live process
/// of this same program (`/proc/<pid>/exe`): a pid file left by a killed run may name a pid the
/// system gave to another process since.
///
/// # Errors
/// No pid file (no runtime ran there, or it ended), a pid file that does not hold a pid above 1,
/// no such process, or a process that is not this program (a stale file).
pub fn running_line_pid(out_dir: &Path) -> anyhow::Result<u32> {
    let path = pid_file(out_dir);
    let text = std::fs::read_to_string(&path).with_context(|| format!("no running line writes to {}: cannot read {}", out_dir.display(), path.display()))?;
    let pid: u32 = text.trim().parse().ok().filter(|p| *p > 1).with_context(|| format!("{}: expected a process id above 1, found {:?}", path.display(), text.trim()))?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
    let me = std::env::current_exe().ok().and_then(|p| p.canonicalize().ok());
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().trim_end_matches(" (deleted)").to_string());
    match (exe, me) {
        (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!("{}: process {pid} is not running; the line it named has ended (remove the stale file)", path.display()),
        (Ok(exe), Some(me)) if exe != me && name(&exe) != name(&me) => {
            anyhow::bail!("{}: process {pid} is {}, not a runtime; the line it named has ended (remove the stale file)", path.display(), exe.display())
        }
        _ => Ok(pid),
    }
}

/// Whether process `pid` still exists.
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// Sends `signal` to the `runtime run` whose output folder is `out_dir` ([`running_line_pid`]).
///
/// # Errors
/// As [`running_line_pid`]; the signal could not be sent.
pub fn signal_running_line(out_dir: &Path, signal: i32) -> anyhow::Result<u32> {
    let pid = running_line_pid(out_dir)?;
    let path = pid_file(out_dir);
    // SAFETY: kill(2) with a pid and a signal number has no memory effects.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if rc != 0 {
        anyhow::bail!("{}: process {pid} is not running ({}); the line it named has ended", path.display(), std::io::Error::last_os_error());
    }
    Ok(pid)
}
