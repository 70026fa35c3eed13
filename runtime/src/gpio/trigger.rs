//! The trigger input: a part sensor on a GPIO input line, with edge detection and debounce
//! (in the kernel where the chip supports it, and always in software by event timestamp).

use std::path::PathBuf;
use std::time::{Duration, Instant};

// Which edges make an event: the device file's `trigger.edge` type itself (rising = inactive to
// active, falling = active to inactive, both).
use firmware_config::Edge;
use gpiocdev::line::{EdgeDetection, EdgeKind};

use super::{request_error, resolve, LineSpec};


/// One accepted edge of the trigger input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerEvent {
    /// Kernel timestamp of the edge, ns (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    /// `true` for a rising edge (inactive to active, logical level).
    pub rising: bool,
    /// When the event was read, for [`crate::reject::ScheduledReject::reject_at`].
    pub received: Instant,
}

/// Software debounce: an edge less than `period` after the last accepted edge (either kind) is
/// dropped. Pure over the timestamps it is fed, so it is tested without hardware.
#[derive(Debug, Clone)]
pub struct Debouncer {
    period_ns: u64,
    last_ns: Option<u64>,
}

impl Debouncer {
    /// A filter with the given period (zero: accept every edge).
    pub fn new(period: Duration) -> Self {
        Self { period_ns: u64::try_from(period.as_nanos()).unwrap_or(u64::MAX), last_ns: None }
    }

    /// Whether an edge at `timestamp_ns` (monotonic, ns) is accepted; an accepted edge restarts the
    /// period. A timestamp before the last accepted one counts as 0 ns after it.
    pub fn accept(&mut self, timestamp_ns: u64) -> bool {
        let ok = self.last_ns.is_none_or(|last| timestamp_ns.saturating_sub(last) >= self.period_ns);
        if ok {
            self.last_ns = Some(timestamp_ns);
        }
        ok
    }
}

/// The timestamps (ns) of `timestamps_ns` that pass a [`Debouncer`] with `period`.
pub fn debounce(timestamps_ns: &[u64], period: Duration) -> Vec<u64> {
    let mut d = Debouncer::new(period);
    timestamps_ns.iter().copied().filter(|&t| d.accept(t)).collect()
}

/// A GPIO input line with edge detection, for a part sensor.
pub struct GpioTrigger {
    req: gpiocdev::Request,
    chip: PathBuf,
    offset: u32,
    debouncer: Debouncer,
}

impl GpioTrigger {
    /// Requests the line as an input with edge detection. `active_low` inverts the logical level
    /// (so `Rising` is the sensor becoming active). `debounce` (zero: none) is asked of the kernel;
    /// if the kernel refuses it the line is requested without, and the software filter alone
    /// applies.
    ///
    /// # Errors
    /// The line cannot be found (see [`super::GpioLine::open`]) or requested (busy, permissions).
    pub fn open(spec: &LineSpec, active_low: bool, edge: Edge, debounce: Duration) -> anyhow::Result<Self> {
        let line = resolve(spec)?;
        let request = |hw_debounce: bool| {
            let mut b = gpiocdev::Request::builder();
            b.on_chip(&line.chip).with_consumer("ffc-ad-trigger").with_line(line.offset).as_input();
            if active_low {
                b.as_active_low();
            }
            b.with_edge_detection(match edge {
                Edge::Rising => EdgeDetection::RisingEdge,
                Edge::Falling => EdgeDetection::FallingEdge,
                Edge::Both => EdgeDetection::BothEdges,
            });
            if hw_debounce && !debounce.is_zero() {
                b.with_debounce_period(debounce);
            }
            b.request()
        };
        let req = match request(true) {
            Ok(r) => r,
            Err(e) if !debounce.is_zero() => {
                tracing::warn!("{line}: kernel debounce refused ({e}); software debounce only");
                request(false).map_err(|e| request_error(&line, "input with edge detection", e))?
            }
            Err(e) => return Err(request_error(&line, "input with edge detection", e)),
        };
        Ok(Self { req, chip: line.chip, offset: line.offset, debouncer: Debouncer::new(debounce) })
    }

    /// Waits up to `timeout` for an accepted edge; `Ok(None)` on timeout. Edges dropped by the
    /// software debounce do not end the wait.
    ///
    /// # Errors
    /// Reading the line's events failed (device gone).
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<Option<TriggerEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ready = self.req.wait_edge_event(left).map_err(|e| self.read_error(e))?;
            if !ready {
                return Ok(None);
            }
            let ev = self.req.read_edge_event().map_err(|e| self.read_error(e))?;
            let received = Instant::now();
            if self.debouncer.accept(ev.timestamp_ns) {
                return Ok(Some(TriggerEvent { timestamp_ns: ev.timestamp_ns, rising: ev.kind == EdgeKind::Rising, received }));
            }
            tracing::trace!(offset = self.offset, "trigger edge at {} ns dropped by debounce", ev.timestamp_ns);
        }
    }

    fn read_error(&self, e: gpiocdev::Error) -> anyhow::Error {
        anyhow::anyhow!("trigger line {} of {}: cannot read edge events: {e}", self.offset, self.chip.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn debounce_drops_edges_within_the_period_of_the_last_accepted() {
        // A contact bouncing for 3 ms, a clean edge 20 ms later, one exactly one period after.
        let ts = [0, MS / 2, MS, 3 * MS, 20 * MS, 25 * MS, 30 * MS];
        assert_eq!(debounce(&ts, Duration::from_millis(10)), vec![0, 20 * MS, 30 * MS]);
    }

    #[test]
    fn zero_period_accepts_every_edge_and_backwards_time_is_dropped() {
        let ts = [5, 5, 6];
        assert_eq!(debounce(&ts, Duration::ZERO), ts.to_vec());
        let mut d = Debouncer::new(Duration::from_millis(1));
        assert!(d.accept(10 * MS));
        assert!(!d.accept(9 * MS), "a timestamp going backwards is within the period");
        assert!(d.accept(11 * MS));
    }

    #[test]
    fn no_chip_gives_a_clear_error() {
        if !gpiocdev::chip::chips().unwrap_or_default().is_empty() {
            eprintln!("skipped: this machine has GPIO chips");
            return;
        }
        let e = GpioTrigger::open(&LineSpec::parse("SENSOR").unwrap(), false, Edge::Rising, Duration::from_millis(5)).err().unwrap();
        assert_eq!(format!("{e:#}"), "no GPIO line named `SENSOR` on any of /dev/gpiochip*: no gpiochip devices found");
    }
}
