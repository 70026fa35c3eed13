//! Stage 5 (DESIGN.md §6): the reject output.
//!
//! - [`RejectOutput`]: what the inspection calls for a rejected part.
//! - [`SimulatedReject`]: records planned pulses, drives nothing (offline inspection).
//! - [`ScheduledReject`] (in [`schedule`]): the real timing: a dedicated thread raises a
//!   [`LineDriver`] `delay` after each request, for `width`, with several parts in flight.
//! - [`LineDriver`] backends: [`SimulatedLine`] (records every level write with its time, for tests
//!   and `runtime gpio-test --simulated`) and `crate::gpio::GpioLine` (the GPIO character device).

use std::time::Duration;

mod driver;
pub mod schedule;

pub use driver::{Edge, LineDriver, SimulatedLine};
pub use schedule::ScheduledReject;

/// One reject pulse as it was (or would have been) put on the line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Pulse {
    /// Frame whose verdict caused the pulse.
    pub frame_id: u64,
    /// Time from the start of the session to the rising edge, ms.
    pub at_ms: f64,
    /// Pulse width, ms.
    pub width_ms: f64,
}

/// A reject actuator: raises the reject line for one part.
pub trait RejectOutput {
    /// Requests a reject pulse for `frame_id`. Errors are reported, never panicked on.
    fn reject(&mut self, frame_id: u64) -> anyhow::Result<()>;
    /// Requests a reject pulse for a part seen at `seen` (the frame's capture time): outputs that
    /// schedule pulses count the delay from `seen`. The default ignores `seen`.
    fn reject_at(&mut self, frame_id: u64, seen: std::time::Instant) -> anyhow::Result<()> {
        let _ = seen;
        self.reject(frame_id)
    }
    /// Pulses requested but never put on the line (the decision came after the part passed the
    /// ejector, or the line write failed). Default: 0.
    fn missed_pulses(&self) -> u64 {
        0
    }
    /// Waits up to `max_wait` for pulses already requested to be put on the line in full (parts
    /// still between camera and ejector at shutdown); returns the pulses still waiting. Default:
    /// none.
    fn drain(&mut self, max_wait: std::time::Duration) -> usize {
        let _ = max_wait;
        0
    }
    /// How long [`RejectOutput::drain`] may need to deliver every pulse requested so far in full
    /// (for a scheduled line: delay + width + a margin). Default: zero.
    fn drain_limit(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Puts the line in its safe (inactive) level; called on shutdown.
    fn release(&mut self) -> anyhow::Result<()>;
}

/// Simulated reject line: records every pulse with its planned rising edge (now + delay) and width,
/// drives nothing.
#[derive(Debug)]
pub struct SimulatedReject {
    start: std::time::Instant,
    delay: Duration,
    width: Duration,
    pulses: Vec<Pulse>,
}

impl SimulatedReject {
    /// A simulated line with the given delay (camera-to-ejector distance) and pulse width.
    pub fn new(delay: Duration, width: Duration) -> Self {
        Self { start: std::time::Instant::now(), delay, width, pulses: Vec::new() }
    }

    /// Every pulse recorded so far.
    pub fn pulses(&self) -> &[Pulse] {
        &self.pulses
    }
}

impl RejectOutput for SimulatedReject {
    fn reject(&mut self, frame_id: u64) -> anyhow::Result<()> {
        let at = self.start.elapsed() + self.delay;
        self.pulses.push(Pulse { frame_id, at_ms: at.as_secs_f64() * 1e3, width_ms: self.width.as_secs_f64() * 1e3 });
        Ok(())
    }

    /// Pulses are recorded, not driven, so there is no level to restore.
    fn release(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
