//! The output line under the reject scheduler: the [`LineDriver`] trait and [`SimulatedLine`], a
//! driver that records every level write with its time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One output line at its logical level: `true` = active (ejector fires), whatever the wiring
/// (active-high or active-low is the driver's business).
///
/// A driver starts inactive: [`crate::reject::ScheduledReject`] assumes so and writes only changes.
pub trait LineDriver: Send + 'static {
    /// Sets the logical level of the line.
    ///
    /// # Errors
    /// The write failed (device gone, I/O error, injected failure); the level is then unknown.
    fn set_active(&mut self, active: bool) -> anyhow::Result<()>;
}

/// One level write recorded by [`SimulatedLine`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Edge {
    /// Time of the write since the line was created ([`SimulatedLine::start`]).
    pub at: Duration,
    /// Level written: `true` = active.
    pub active: bool,
}

impl Edge {
    /// [`Edge::at`] in ms.
    pub fn at_ms(&self) -> f64 {
        self.at.as_secs_f64() * 1e3
    }
}

/// A simulated line: drives nothing, records every [`LineDriver::set_active`] call with its
/// time (monotonic clock, since [`SimulatedLine::start`]). Clones share one record, so a test keeps
/// a clone while the scheduler thread owns the driver.
#[derive(Debug, Clone)]
pub struct SimulatedLine {
    start: Instant,
    edges: Arc<Mutex<Vec<Edge>>>,
}

impl Default for SimulatedLine {
    fn default() -> Self {
        Self::new()
    }
}

impl SimulatedLine {
    /// A new, inactive simulated line; its clock starts now.
    pub fn new() -> Self {
        Self { start: Instant::now(), edges: Arc::new(Mutex::new(Vec::new())) }
    }

    /// The instant the record's times are measured from.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Every level write so far, in order.
    pub fn edges(&self) -> Vec<Edge> {
        self.edges.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The level last written (`false` when nothing was written: a line starts inactive).
    pub fn is_active(&self) -> bool {
        self.edges().last().is_some_and(|e| e.active)
    }

    /// The active periods as `(rising, falling)` times since [`SimulatedLine::start`]; a period
    /// still active has `falling = None`. Repeated writes of one level are one period.
    pub fn active_periods(&self) -> Vec<(Duration, Option<Duration>)> {
        let mut out: Vec<(Duration, Option<Duration>)> = Vec::new();
        let mut active = false;
        for e in self.edges() {
            if e.active && !active {
                out.push((e.at, None));
            } else if !e.active && active {
                if let Some(last) = out.last_mut() {
                    last.1 = Some(e.at);
                }
            }
            active = e.active;
        }
        out
    }
}

impl LineDriver for SimulatedLine {
    /// Records the write; never fails.
    fn set_active(&mut self, active: bool) -> anyhow::Result<()> {
        let at = self.start.elapsed();
        self.edges.lock().unwrap_or_else(|p| p.into_inner()).push(Edge { at, active });
        Ok(())
    }
}
