//! Timing tests on [`SimulatedLine`]: rising edges at request + delay, widths, parts in flight,
//! merging, write errors, release. Errors against the plan are printed (`--nocapture`).

use std::time::{Duration, Instant};

use super::ScheduledReject;
use crate::reject::{LineDriver, RejectOutput, SimulatedLine};

/// How late an edge may come, ms: the scheduler thread's wake-up latency on the machine running
/// the tests (a property of the host, not of the scheduler). 5 ms natively; the environment
/// variable `REJECT_TIMING_TOLERANCE_MS` raises it where the clock is emulated (`scripts/cross.sh`
/// runs these tests under qemu-user, where a retried edge, three wake-ups in a row, was 6.4 ms
/// late). An edge earlier than planned fails whatever the tolerance: the scheduler never fires
/// early.
fn tol_ms() -> f64 {
    match std::env::var("REJECT_TIMING_TOLERANCE_MS") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("REJECT_TIMING_TOLERANCE_MS={v:?}: expected a number of ms")),
        Err(_) => 5.0,
    }
}

/// Float slack for "not early", ms (the edges are recorded after the scheduler saw them due).
const EARLY_SLACK_MS: f64 = 0.01;

/// True when an edge `error` ms off its plan is within the tolerance: never early, at most
/// [`tol_ms`] late.
fn on_time(error: f64) -> bool {
    error > -EARLY_SLACK_MS && error < tol_ms()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn sched(line: &SimulatedLine, delay_ms: u64, width_ms: u64) -> ScheduledReject<SimulatedLine> {
    ScheduledReject::new("test", line.clone(), Duration::from_millis(delay_ms), Duration::from_millis(width_ms)).unwrap()
}

/// Checks each active period against `(start_ms, end_ms)` measured from `base` (ms since the line's
/// start); returns the largest absolute error, ms.
fn check_periods(test: &str, line: &SimulatedLine, base: Duration, expected: &[(f64, f64)]) -> f64 {
    let got = line.active_periods();
    assert_eq!(got.len(), expected.len(), "{test}: active periods {got:?}, expected {expected:?} (ms after {base:?})");
    let mut worst: f64 = 0.0;
    for (i, ((rise, fall), (e_rise, e_fall))) in got.iter().zip(expected).enumerate() {
        let fall = fall.unwrap_or_else(|| panic!("{test}: period {i} never ended: {got:?}"));
        let (r, f) = (ms(*rise) - ms(base), ms(fall) - ms(base));
        let (er, ef) = (r - e_rise, f - e_fall);
        eprintln!("{test}: pulse {i}: rise {r:.3} ms (error {er:+.3}), fall {f:.3} ms (error {ef:+.3}), width {:.3} ms (error {:+.3})", f - r, (f - r) - (e_fall - e_rise));
        assert!(
            on_time(er) && on_time(ef),
            "{test}: pulse {i}: rise {r:.3} ms / fall {f:.3} ms, expected {e_rise} / {e_fall} ms (never early, at most {} ms late)",
            tol_ms()
        );
        worst = worst.max(er.abs()).max(ef.abs());
    }
    worst
}

#[test]
fn pulse_starts_after_delay_with_configured_width() {
    let line = SimulatedLine::new();
    let mut s = sched(&line, 30, 20);
    let base = line.start().elapsed();
    s.reject(7).unwrap();
    std::thread::sleep(Duration::from_millis(80));
    check_periods("single", &line, base, &[(30.0, 50.0)]);
    assert_eq!(s.write_errors(), 0);
    assert_eq!(s.late_pulses(), 0);
}

#[test]
fn three_parts_in_flight() {
    let line = SimulatedLine::new();
    let mut s = sched(&line, 60, 10);
    let seen = Instant::now();
    let base = seen - line.start();
    for k in 0..3u32 {
        s.reject_at(u64::from(k), seen + Duration::from_millis(15) * k).unwrap();
    }
    assert_eq!(s.pending(), 3, "all three parts are between camera and ejector");
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(s.pending(), 0);
    check_periods("in-flight", &line, base, &[(60.0, 70.0), (75.0, 85.0), (90.0, 100.0)]);
}

#[test]
fn requests_out_of_order_fire_in_time_order() {
    let line = SimulatedLine::new();
    let mut s = sched(&line, 40, 5);
    let seen = Instant::now();
    let base = seen - line.start();
    s.reject_at(2, seen + Duration::from_millis(20)).unwrap();
    s.reject_at(1, seen).unwrap();
    std::thread::sleep(Duration::from_millis(90));
    check_periods("out-of-order", &line, base, &[(40.0, 45.0), (60.0, 65.0)]);
}

#[test]
fn overlapping_pulses_merge_into_one_active_period() {
    let line = SimulatedLine::new();
    let mut s = sched(&line, 30, 30);
    let seen = Instant::now();
    let base = seen - line.start();
    s.reject_at(1, seen).unwrap();
    s.reject_at(2, seen + Duration::from_millis(10)).unwrap(); // overlaps the first by 20 ms
    s.reject_at(3, seen + Duration::from_millis(40)).unwrap(); // touches the second's end
    std::thread::sleep(Duration::from_millis(130));
    check_periods("overlap", &line, base, &[(30.0, 100.0)]);
    // One rising and one falling write: the merge raises nothing twice.
    assert_eq!(line.edges().iter().filter(|e| e.active).count(), 1, "{:?}", line.edges());
}

/// Fails the writes whose 0-based index is in `fail`, records the others.
struct FailingLine {
    inner: SimulatedLine,
    fail: Vec<usize>,
    calls: usize,
}

impl LineDriver for FailingLine {
    fn set_active(&mut self, active: bool) -> anyhow::Result<()> {
        let n = self.calls;
        self.calls += 1;
        anyhow::ensure!(!self.fail.contains(&n), "injected failure on write {n} (active = {active})");
        self.inner.set_active(active)
    }
}

#[test]
fn failed_rising_edge_is_counted_and_later_pulses_still_fire() {
    let line = SimulatedLine::new();
    let driver = FailingLine { inner: line.clone(), fail: vec![0], calls: 0 };
    let mut s = ScheduledReject::new("failing", driver, Duration::from_millis(20), Duration::from_millis(10)).unwrap();
    let seen = Instant::now();
    let base = seen - line.start();
    s.reject_at(1, seen).unwrap();
    s.reject_at(2, seen + Duration::from_millis(30)).unwrap();
    std::thread::sleep(Duration::from_millis(90));
    assert_eq!(s.write_errors(), 1);
    let edges = line.edges();
    // The failed raise is followed at once by an inactive write (the retry to the safe level).
    assert!(!edges[0].active && on_time(edges[0].at_ms() - ms(base) - 20.0), "{edges:?}");
    check_periods("failed-rise", &line, base, &[(50.0, 60.0)]);
}

#[test]
fn failed_falling_edge_is_retried_until_inactive() {
    let line = SimulatedLine::new();
    // write 0: rise ok; 1 and 2: the fall fails twice; 3: the retry succeeds (10 + 20 ms later).
    let driver = FailingLine { inner: line.clone(), fail: vec![1, 2], calls: 0 };
    let mut s = ScheduledReject::new("failing", driver, Duration::from_millis(10), Duration::from_millis(10)).unwrap();
    let seen = Instant::now();
    let base = seen - line.start();
    s.reject_at(1, seen).unwrap();
    s.reject_at(2, seen + Duration::from_millis(60)).unwrap();
    std::thread::sleep(Duration::from_millis(110));
    assert_eq!(s.write_errors(), 2);
    // Active from 10 ms until the second retry (20 + 10 + 20 ms = 50 ms), then the next part.
    check_periods("failed-fall", &line, base, &[(10.0, 50.0), (70.0, 80.0)]);
    assert!(!line.is_active());
}

#[test]
fn late_pulse_is_skipped_and_counted() {
    let line = SimulatedLine::new();
    let mut s = sched(&line, 10, 10);
    s.reject_at(1, Instant::now() - Duration::from_secs(1)).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(s.late_pulses(), 1);
    assert!(line.edges().is_empty(), "{:?}", line.edges());
}

#[test]
fn reject_does_not_wait_for_a_slow_driver() {
    struct SlowLine;
    impl LineDriver for SlowLine {
        fn set_active(&mut self, _: bool) -> anyhow::Result<()> {
            std::thread::sleep(Duration::from_millis(50));
            Ok(())
        }
    }
    let mut s = ScheduledReject::new("slow", SlowLine, Duration::ZERO, Duration::from_millis(5)).unwrap();
    s.reject(1).unwrap();
    std::thread::sleep(Duration::from_millis(10)); // the thread is now inside the 50 ms write
    let t = Instant::now();
    for k in 2..100 {
        s.reject(k).unwrap();
    }
    let took = t.elapsed();
    eprintln!("98 rejects during a 50 ms driver write took {:.3} ms", ms(took));
    assert!(took < Duration::from_millis(20), "reject() waited for the driver: {took:?}");
}

#[test]
fn line_inactive_after_release_with_a_pulse_active() {
    let line = SimulatedLine::new();
    let mut s = sched(&line, 0, 1000);
    s.reject(1).unwrap();
    s.reject(2).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(line.is_active());
    s.release().unwrap();
    assert!(!line.is_active(), "{:?}", line.edges());
    let n = line.edges().len();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(line.edges().len(), n, "the thread wrote after release");
    assert!(s.reject(3).is_err(), "reject after release must fail");
    s.release().unwrap(); // idempotent
}

#[test]
fn line_inactive_after_drop_with_pulses_waiting() {
    let line = SimulatedLine::new();
    {
        let mut s = sched(&line, 0, 1000);
        s.reject(1).unwrap();
        s.reject_at(2, Instant::now() + Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(line.is_active());
    }
    assert!(!line.is_active(), "{:?}", line.edges());
    assert_eq!(line.active_periods().len(), 1);
}

#[test]
fn zero_width_is_an_error() {
    let e = ScheduledReject::new("zero", SimulatedLine::new(), Duration::ZERO, Duration::ZERO).err().unwrap();
    assert!(format!("{e:#}").contains("pulse width"), "{e:#}");
}

#[test]
fn long_merged_pulses_are_delivered_in_full_by_drain() {
    let line = SimulatedLine::new();
    let mut s = sched(&line, 60, 250);
    assert_eq!(s.drain_limit(), Duration::from_millis(60 + 250 + 1000));
    let seen = Instant::now();
    let base = seen - line.start();
    for k in 0..5u32 {
        s.reject_at(u64::from(k), seen + Duration::from_millis(20) * k).unwrap();
    }
    // Stop right away, as `runtime run` does at the end of the source: wait, then release.
    assert_eq!(s.drain(s.drain_limit()), 0);
    let waited = seen.elapsed();
    s.release().unwrap();
    // One period: the first rise at 60 ms, active until the last part's end (80 + 60 + 250 ms).
    check_periods("merged", &line, base, &[(60.0, 390.0)]);
    assert!(waited >= Duration::from_millis(388), "drain returned at {waited:?}, before the merged pulse ended");
    assert_eq!(s.missed_pulses(), 0);
    assert!(!line.is_active());
}

#[test]
fn pulses_cut_or_never_fired_at_release_are_missed() {
    let line = SimulatedLine::new();
    let mut s = sched(&line, 20, 400);
    let seen = Instant::now();
    s.reject_at(0, seen).unwrap(); // active from 20 ms to 420 ms
    s.reject_at(1, seen + Duration::from_millis(300)).unwrap(); // due at 320 ms
    assert!(s.drain(Duration::from_millis(100)) > 0, "the second pulse still waits after 100 ms");
    s.release().unwrap();
    assert!(!line.is_active(), "line left active");
    assert_eq!(line.active_periods().len(), 1);
    assert_eq!(s.cut_pulses(), 2, "one cut short, one never fired");
    assert_eq!(s.missed_pulses(), 2);
}
