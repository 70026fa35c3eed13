//! Whether the line is really inspecting, for the outside world (issue 16, item 5; DESIGN.md §6
//! "Ready output and watchdog"): an optional GPIO *ready* line for the PLC and the systemd
//! watchdog (`Type=notify`, `WatchdogSec=`).
//!
//! The capture and inference threads stamp a [`Heartbeat`]; a health thread reads it every
//! [`HealthOptions::poll`] and decides **ready** when all of these hold:
//! - the line is not starting, swapping models or shutting down;
//! - the capture thread came back from its last wait for a frame less than `stale` ago (a camera
//!   ioctl that hangs stops this) and that wait did not end in a source error;
//! - the inference thread is idle or has been on its current frame for less than `stale` (a stuck
//!   inference stops this);
//! - in free-run (`frames_expected`), a frame was inspected less than `stale` ago: a camera that
//!   delivers nothing is not ready. With a trigger, no part is not a fault: waiting counts.
//!
//! While ready, the ready line is active and systemd gets `WATCHDOG=1` every half watchdog
//! interval; `READY=1` is sent the first time. Not ready: the ready line goes inactive and the
//! pings stop, so systemd restarts the runtime after `WatchdogSec`. At the end of the run the
//! ready line goes inactive and systemd gets `STOPPING=1`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::reject::LineDriver;
use crate::shutdown::SafeLine;

/// The ready line, shared between the health thread (which drives it) and the process-wide
/// registry of lines put inactive on a panic or a second signal ([`crate::shutdown::SafeLines`]).
pub struct ReadyLine {
    name: String,
    driver: Mutex<Box<dyn LineDriver>>,
    halted: AtomicBool,
}

impl ReadyLine {
    /// Wraps `driver`, named `name` in logs.
    pub fn new(name: &str, driver: Box<dyn LineDriver>) -> Arc<Self> {
        Arc::new(Self { name: name.into(), driver: Mutex::new(driver), halted: AtomicBool::new(false) })
    }
}

impl SafeLine for ReadyLine {
    fn name(&self) -> String {
        format!("ready line {}", self.name)
    }

    fn make_safe(&self) -> anyhow::Result<()> {
        self.halted.store(true, Ordering::SeqCst);
        self.driver.lock().unwrap_or_else(|p| p.into_inner()).set_active(false)
    }
}

/// The health thread's handle on a [`ReadyLine`]: once the line was made safe it stays inactive.
pub struct ReadyHandle(pub Arc<ReadyLine>);

impl LineDriver for ReadyHandle {
    fn set_active(&mut self, active: bool) -> anyhow::Result<()> {
        let mut d = self.0.driver.lock().unwrap_or_else(|p| p.into_inner());
        d.set_active(active && !self.0.halted.load(Ordering::SeqCst))
    }
}

/// Liveness stamps of the pipeline threads, ms since the heartbeat was created (0 = never).
#[derive(Debug)]
pub struct Heartbeat {
    origin: Instant,
    capture_returned_ms: AtomicU64,
    source_failing: AtomicBool,
    inspected_ms: AtomicU64,
    /// Start of the frame the inference thread is on (0 = idle).
    busy_since_ms: AtomicU64,
    swapping: AtomicBool,
    stopping: AtomicBool,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            capture_returned_ms: AtomicU64::new(0),
            source_failing: AtomicBool::new(false),
            inspected_ms: AtomicU64::new(0),
            busy_since_ms: AtomicU64::new(0),
            swapping: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        }
    }
}

impl Heartbeat {
    fn now_ms(&self) -> u64 {
        // +1: a stamp of 0 means "never".
        self.origin.elapsed().as_millis() as u64 + 1
    }

    /// The capture thread came back from a wait for a frame; `failed` when it ended in a source
    /// error (a reopen follows).
    pub fn capture_returned(&self, failed: bool) {
        self.capture_returned_ms.store(self.now_ms(), Ordering::Relaxed);
        self.source_failing.store(failed, Ordering::Relaxed);
    }

    /// The inference thread starts on a frame.
    pub fn inference_started(&self) {
        self.busy_since_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// The inference thread finished a frame. (With several workers the stamp is the last one
    /// started: a worker stuck while others finish frames shows as frames no longer accounted.)
    pub fn inference_finished(&self) {
        self.busy_since_ms.store(0, Ordering::Relaxed);
    }

    /// A frame judged by the model was accounted (counted, pulsed, its event sent), in frame
    /// order.
    pub fn frame_accounted(&self) {
        self.inspected_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// A model swap is being applied (`true`) or done (`false`).
    pub fn set_swapping(&self, on: bool) {
        self.swapping.store(on, Ordering::SeqCst);
    }

    /// The run is ending: never ready again.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether the line is ready (module docs), with stamps older than `stale` counting as dead.
    pub fn ready(&self, stale: Duration, frames_expected: bool) -> bool {
        let now = self.now_ms();
        let stale = stale.as_millis() as u64;
        let recent = |stamp: u64| stamp != 0 && now.saturating_sub(stamp) < stale;
        if self.stopping.load(Ordering::SeqCst) || self.swapping.load(Ordering::SeqCst) {
            return false;
        }
        if !recent(self.capture_returned_ms.load(Ordering::Relaxed)) || self.source_failing.load(Ordering::Relaxed) {
            return false;
        }
        let busy = self.busy_since_ms.load(Ordering::Relaxed);
        if busy != 0 && !recent(busy) {
            return false;
        }
        !frames_expected || recent(self.inspected_ms.load(Ordering::Relaxed))
    }
}

/// The systemd notification socket (`$NOTIFY_SOCKET`) and watchdog interval (`$WATCHDOG_USEC`),
/// through the `sd-notify` crate.
#[derive(Debug, Clone, Copy)]
pub struct Watchdog {
    /// `WatchdogSec` of the unit; pings go out every half of it.
    pub interval: Duration,
}

impl Watchdog {
    /// The watchdog systemd asks for, if the process runs under a unit with `WatchdogSec=`:
    /// `$WATCHDOG_USEC` set, and `$WATCHDOG_PID` this process or unset (as `sd_watchdog_enabled`
    /// reads them); `None` otherwise. A value that does not parse is logged and ignored.
    pub fn from_env() -> Option<Self> {
        let usec = std::env::var("WATCHDOG_USEC").ok()?;
        let Some(usec) = usec.trim().parse::<u64>().ok().filter(|u| *u > 0) else {
            tracing::warn!("WATCHDOG_USEC = {usec:?}: expected microseconds > 0; no watchdog pings");
            return None;
        };
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
                return None;
            }
        }
        Some(Self { interval: Duration::from_micros(usec) })
    }
}

/// Sends `states` to systemd when `$NOTIFY_SOCKET` is set (nothing otherwise); a failure is
/// logged, never fatal.
fn notify(states: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("systemd notification {states:?} failed: {e}");
    }
}

/// How the health thread runs.
pub struct HealthOptions {
    /// The PLC's ready input, driven active while ready (None: no ready output).
    pub ready_line: Option<Box<dyn LineDriver>>,
    /// Ping systemd while ready (None: not under a watchdog).
    pub watchdog: Option<Watchdog>,
    /// Stamps older than this are dead (a few frame periods and the camera timeout).
    pub stale: Duration,
    /// Free-run: frames should keep coming (see [`Heartbeat::ready`]).
    pub frames_expected: bool,
    /// How often readiness is decided.
    pub poll: Duration,
}

/// What the health thread saw, for the run's summary.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct HealthCounts {
    /// Times the line became ready (the first time and after every interruption).
    pub ready_transitions: u64,
    pub watchdog_pings: u64,
    /// Writes to the ready line that failed.
    pub ready_write_errors: u64,
}

/// Runs the health thread until `done`: drives the ready line and pings the watchdog from the
/// `beat` (module docs). Leaves the ready line inactive and sends `STOPPING=1` at the end.
pub fn run_health(mut opts: HealthOptions, beat: &Heartbeat, done: &AtomicBool) -> HealthCounts {
    let mut counts = HealthCounts::default();
    let mut was_ready = false;
    let mut told_systemd = false;
    let mut last_ping: Option<Instant> = None;
    let set = |line: &mut Option<Box<dyn LineDriver>>, active: bool, counts: &mut HealthCounts| {
        if let Some(l) = line.as_mut() {
            if let Err(e) = l.set_active(active) {
                counts.ready_write_errors += 1;
                tracing::error!("ready line: {e:#}");
            }
        }
    };
    set(&mut opts.ready_line, false, &mut counts);
    while !done.load(Ordering::SeqCst) {
        let ready = beat.ready(opts.stale, opts.frames_expected);
        if ready != was_ready {
            set(&mut opts.ready_line, ready, &mut counts);
            if ready {
                counts.ready_transitions += 1;
                tracing::info!("line ready: frames are being inspected");
            } else {
                tracing::warn!("line not ready: no frame inspected, a hung camera or inference, a model swap, or shutdown");
            }
            was_ready = ready;
        }
        if ready {
            if !told_systemd {
                notify(&[sd_notify::NotifyState::Ready]);
                told_systemd = true;
            }
            if let Some(w) = opts.watchdog {
                if last_ping.is_none_or(|t| t.elapsed() >= w.interval / 2) {
                    notify(&[sd_notify::NotifyState::Watchdog]);
                    counts.watchdog_pings += 1;
                    last_ping = Some(Instant::now());
                }
            }
        }
        std::thread::sleep(opts.poll);
    }
    set(&mut opts.ready_line, false, &mut counts);
    notify(&[sd_notify::NotifyState::Stopping]);
    counts
}

/// A started health thread; [`HealthThread::stop`] ends it.
pub struct HealthThread {
    done: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<HealthCounts>,
}

impl HealthThread {
    /// Starts [`run_health`] on its own thread.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn spawn(opts: HealthOptions, beat: Arc<Heartbeat>) -> anyhow::Result<Self> {
        let done = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&done);
        let handle = std::thread::Builder::new().name("health".into()).spawn(move || run_health(opts, &beat, &d))?;
        Ok(Self { done, handle })
    }

    /// Ends the thread (the ready line inactive, `STOPPING=1` sent) and returns its counts.
    pub fn stop(self) -> HealthCounts {
        self.done.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_live_capture_recent_inspection_and_no_stuck_inference() {
        let b = Heartbeat::default();
        let stale = Duration::from_millis(200);
        assert!(!b.ready(stale, true), "nothing happened yet");
        b.capture_returned(false);
        assert!(b.ready(stale, false), "trigger mode: a live capture wait is enough");
        assert!(!b.ready(stale, true), "free-run: no frame inspected yet");
        b.inference_started();
        b.inference_finished();
        b.frame_accounted();
        assert!(b.ready(stale, true));
        b.capture_returned(true);
        assert!(!b.ready(stale, true), "a source error");
        b.capture_returned(false);
        b.set_swapping(true);
        assert!(!b.ready(stale, true), "swapping");
        b.set_swapping(false);
        b.inference_started();
        assert!(b.ready(stale, false), "busy for less than stale");
        std::thread::sleep(Duration::from_millis(250));
        b.capture_returned(false);
        assert!(!b.ready(stale, false), "inference busy for longer than stale");
        b.inference_finished();
        b.frame_accounted();
        assert!(b.ready(stale, true));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!b.ready(stale, false), "capture silent for longer than stale (a hung ioctl)");
        b.capture_returned(false);
        b.inference_finished();
        b.frame_accounted();
        b.set_stopping();
        assert!(!b.ready(stale, true), "stopping");
    }
}
