//! The ready line and the systemd watchdog when the camera hangs (issue 16, item 5): a camera
//! ioctl that blocks for 1.5 s stops the watchdog pings (so systemd would restart the runtime)
//! and drops the ready line; both come back with the frames. In its own test binary because it
//! sets `NOTIFY_SOCKET` for the process.

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime::capture::{CaptureError, Frame, FrameSource};
use runtime::line::health::{HealthOptions, Watchdog};
use runtime::line::{run_line_with, LineHooks, LineOptions};
use runtime::reject::{ScheduledReject, SimulatedLine};

const FRAMES: u64 = 300;
const HANG_AT: u64 = 100;
const HANG: Duration = Duration::from_millis(1500);

/// Dark 32x16 frames every 10 ms; before frame [`HANG_AT`] the "ioctl" blocks for [`HANG`].
struct HangingCamera {
    next: u64,
}

impl FrameSource for HangingCamera {
    fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        if self.next == FRAMES {
            return Err(CaptureError::EndOfStream { device: "hanging".into() });
        }
        std::thread::sleep(if self.next == HANG_AT { HANG } else { Duration::from_millis(10) });
        let f = Frame { id: self.next, width: 32, height: 16, rgb: vec![40; 3 * 32 * 16], captured_at: Instant::now(), file: None };
        self.next += 1;
        Ok(Some(f))
    }

    fn describe(&self) -> String {
        "camera that hangs once".into()
    }
}

#[test]
fn a_hung_camera_stops_the_watchdog_and_drops_the_ready_line() {
    let work = tempfile::tempdir().unwrap();
    let sock_path = work.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    // SAFETY (edition 2021: safe fn): set before any thread of this test binary reads it.
    std::env::set_var("NOTIFY_SOCKET", &sock_path);
    let t0 = Instant::now();
    let messages: Arc<Mutex<Vec<(Duration, String)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let (m2, d2) = (messages.clone(), done.clone());
    let listener = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while !d2.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(n) = sock.recv(&mut buf) {
                m2.lock().unwrap().push((t0.elapsed(), String::from_utf8_lossy(&buf[..n]).trim().to_string()));
            }
        }
    });

    let model = work.path().join("m.onnx");
    runtime::synthetic::write_brightness_model(&model, 32, 16, 0.5).unwrap();
    let inspector = runtime::inspector::Inspector::new(runtime::infer::AnomalyModel::load(&model).unwrap(), None, None).unwrap();
    let mut reject = ScheduledReject::new("sim", SimulatedLine::new(), Duration::ZERO, Duration::from_millis(5)).unwrap();
    let ready = SimulatedLine::new();
    let health = HealthOptions {
        ready_line: Some(Box::new(ready.clone())),
        watchdog: Some(Watchdog { interval: Duration::from_millis(400) }),
        stale: Duration::from_millis(300),
        frames_expected: true,
        poll: Duration::from_millis(10),
    };
    let opts = LineOptions::new(&work.path().join("out"));
    let hooks = LineHooks { controls: None, health: Some(health) };
    let summary = run_line_with(Box::new(HangingCamera { next: 0 }), inspector, &mut reject, &opts, Arc::new(AtomicBool::new(false)), hooks).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    listener.join().unwrap();

    assert_eq!(summary.counters.inspected, FRAMES, "{:?}", summary.counters);
    let msgs = messages.lock().unwrap().clone();
    assert_eq!(msgs.iter().filter(|m| m.1 == "READY=1").count(), 1, "READY=1 once: {msgs:?}");
    assert_eq!(msgs.last().map(|m| m.1.as_str()), Some("STOPPING=1"), "{msgs:?}");
    let pings: Vec<Duration> = msgs.iter().filter(|m| m.1 == "WATCHDOG=1").map(|m| m.0).collect();
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    // Before and after the hang the pings come every ~200 ms (half the interval); during it
    // none: one gap longer than the 400 ms systemd would wait, and only one.
    let long: Vec<&Duration> = gaps.iter().filter(|g| **g > Duration::from_millis(400)).collect();
    assert_eq!(long.len(), 1, "one silence, during the hang: gaps {gaps:?}");
    assert!(*long[0] >= HANG - Duration::from_millis(400), "silence {:?} while the camera hung {HANG:?}", long[0]);
    assert!(pings.len() >= 6, "pings resumed after the hang: {pings:?}");

    // The ready line: active, inactive during the hang, active again, inactive at the end.
    let periods = ready.active_periods();
    assert_eq!(periods.len(), 2, "ready periods {periods:?}");
    let off = periods[1].0 - periods[0].1.unwrap();
    assert!(off >= HANG - Duration::from_millis(400) && off <= HANG + Duration::from_millis(300), "ready off for {off:?} during a {HANG:?} hang");
    assert!(!ready.is_active(), "ready inactive after the run");
    assert_eq!(summary.health.ready_transitions, 2, "{:?}", summary.health);
    println!("HEALTH: {} pings, gaps max {:?}; ready periods {periods:?}; ready off {off:?} for a {HANG:?} hang", pings.len(), gaps.iter().max());
}
