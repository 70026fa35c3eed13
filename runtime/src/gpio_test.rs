//! `runtime gpio-test`: pulses the reject line through the same scheduler the inspection uses, and
//! prints what it did (with `--simulated`, every recorded edge and its timing error).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::gpio::{GpioLine, LineSpec};
use crate::reject::{LineDriver, RejectOutput, ScheduledReject, SimulatedLine};
use crate::shutdown::SafeLines;

/// What `gpio-test` does.
#[derive(Debug, Clone)]
pub struct GpioTestOptions {
    /// The reject line (see [`LineSpec::parse`]).
    pub line: String,
    /// The ejector fires on a low level.
    pub active_low: bool,
    /// Pulse width, ms (≥ 1).
    pub pulse_ms: u32,
    /// Delay from request to rising edge, ms.
    pub delay_ms: u32,
    /// Number of pulses (≥ 1).
    pub count: u32,
    /// Time between requests, ms.
    pub interval_ms: u32,
    /// Use [`SimulatedLine`] instead of the GPIO line.
    pub simulated: bool,
}

/// Runs the test: requests `count` pulses `interval_ms` apart, waits for the last one, releases the
/// line; stops early (line released) when `stop` sets. Prints progress to stdout; returns the
/// final report (for `--simulated`: the edges with their times, ms since the line was created).
///
/// # Errors
/// Bad line spec; the GPIO line cannot be found or requested (e.g. "no GPIO line named `REJECT` on
/// any of /dev/gpiochip*: no gpiochip devices found"); the line cannot be released.
pub fn run(opts: &GpioTestOptions, safe: &SafeLines, stop: &AtomicBool) -> anyhow::Result<String> {
    anyhow::ensure!(opts.pulse_ms >= 1 && opts.count >= 1, "--pulse-ms and --count must be at least 1");
    let spec = LineSpec::parse(&opts.line)?;
    if opts.simulated {
        let line = SimulatedLine::new();
        let (requests, errors) = pulse(opts, &format!("{spec} (simulated)"), line.clone(), safe, stop)?;
        Ok(simulated_report(opts, &line, &requests, errors))
    } else {
        let driver = GpioLine::open(&spec, opts.active_low)?;
        let name = driver.line().to_string();
        let (requests, errors) = pulse(opts, &name, driver, safe, stop)?;
        Ok(format!("{} pulse(s) on {name}, {errors} write error(s); line released inactive\n", requests.len()))
    }
}

/// Drives the pulses; returns the request times and the write-error count.
fn pulse<D: LineDriver>(opts: &GpioTestOptions, name: &str, driver: D, safe: &SafeLines, stop: &AtomicBool) -> anyhow::Result<(Vec<Instant>, u64)> {
    let (delay, width) = (Duration::from_millis(opts.delay_ms.into()), Duration::from_millis(opts.pulse_ms.into()));
    let mut s = ScheduledReject::new(name, driver, delay, width)?;
    safe.register(&s.safe_line());
    println!(
        "pulsing {name}{}: {} x {} ms, every {} ms, {} ms after each request",
        if opts.active_low { ", active-low" } else { "" },
        opts.count,
        opts.pulse_ms,
        opts.interval_ms,
        opts.delay_ms
    );
    let mut requests = Vec::new();
    for k in 0..opts.count {
        if k > 0 && !sleep_unless(stop, Duration::from_millis(opts.interval_ms.into())) {
            break;
        }
        let t = Instant::now();
        s.reject_at(u64::from(k), t)?;
        requests.push(t);
        println!("  pulse {} requested", k + 1);
    }
    if let Some(last) = requests.last() {
        let end = *last + delay + width + Duration::from_millis(5);
        sleep_unless(stop, end.saturating_duration_since(Instant::now()));
    }
    if stop.load(Ordering::SeqCst) {
        println!("  interrupted: releasing the line");
    }
    let errors = s.write_errors();
    s.release()?;
    Ok((requests, errors))
}

/// Sleeps `d` in 10 ms steps; false when `stop` set.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(10)));
    }
    false
}

fn simulated_report(opts: &GpioTestOptions, line: &SimulatedLine, requests: &[Instant], errors: u64) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let mut out = String::from("recorded edges (ms since the line was created):\n");
    for e in line.edges() {
        let _ = writeln!(out, "  {:>10.3} ms  {}", e.at_ms(), if e.active { "active" } else { "inactive" });
    }
    let periods = line.active_periods();
    let _ = writeln!(out, "pulses (planned rise = request + {} ms):", opts.delay_ms);
    if periods.len() != requests.len() {
        let _ = writeln!(out, "  {} requests overlapped into {} active period(s) (merged)", requests.len(), periods.len());
    }
    for (k, (rise, fall)) in periods.iter().enumerate() {
        let planned = requests.get(k).filter(|_| periods.len() == requests.len()).map(|r| ms(*r - line.start()) + f64::from(opts.delay_ms));
        let fall = fall.map(ms).unwrap_or(f64::NAN);
        let _ = write!(out, "  {}: rise {:.3} ms, fall {fall:.3} ms, width {:.3} ms", k + 1, ms(*rise), fall - ms(*rise));
        if let Some(p) = planned {
            let _ = write!(out, " (rise error {:+.3} ms, width error {:+.3} ms)", ms(*rise) - p, fall - ms(*rise) - f64::from(opts.pulse_ms));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{errors} write error(s); line {} after release", if line.is_active() { "ACTIVE" } else { "inactive" });
    out
}
