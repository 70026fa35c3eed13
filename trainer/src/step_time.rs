//! Where a training step's time goes, per phase, so that a slow run says whether the host (data,
//! defect synthesis, kernel launches) or the device limits it.
//!
//! Why: on a lent H200 the `paper` preset trained at 68 images/s with the GPU idle most of the time
//! (RESULTS.md, session 17). CUDA runs asynchronously: the forward and backward phases measure the
//! host's time to queue the work, and the loss read-back at the end of a step waits for the device
//! to finish it. A large read-back share means the device limits; large forward/backward shares
//! with a small read-back mean the host does.

use std::time::{Duration, Instant};

/// The phases of one optimisation step, in order (the order of `PHASES`: `phase as usize` indexes
/// both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Batch assembly from the decoded-image cache, augmentation, copy to the device.
    Data,
    /// Synthetic defects (Rust masks and textures, blended on the device).
    Synthesis,
    /// Forward pass and losses (queued, on CUDA).
    Forward,
    /// Backward pass and optimizer update (queued, on CUDA).
    Backward,
    /// Reading the losses back to the host: waits for the device to finish the step.
    ReadBack,
    /// The held-out evaluations every 5 % of the steps (amortised over the steps).
    Validation,
}

const PHASES: [(Phase, &str); 6] = [
    (Phase::Data, "data"),
    (Phase::Synthesis, "synthesis"),
    (Phase::Forward, "forward"),
    (Phase::Backward, "backward+update"),
    (Phase::ReadBack, "loss read-back"),
    (Phase::Validation, "validation"),
];

/// Accumulated wall time per [`Phase`] over the steps of this session (a resumed run counts
/// from its resume).
#[derive(Debug, Default, Clone)]
pub struct StepTimes {
    total: [Duration; 6],
    steps: usize,
}

impl StepTimes {
    /// Adds `d` to `phase`.
    pub fn add(&mut self, phase: Phase, d: Duration) {
        self.total[phase as usize] += d;
    }

    /// Adds the time since `since` to `phase` and returns now: chains the phases of a step.
    pub fn lap(&mut self, phase: Phase, since: Instant) -> Instant {
        let now = Instant::now();
        self.add(phase, now - since);
        now
    }

    /// Counts one finished step.
    pub fn step_done(&mut self) {
        self.steps += 1;
    }

    /// Mean time of `phase` per step, ms (0 before the first step).
    pub fn mean_ms(&self, phase: Phase) -> f64 {
        if self.steps == 0 { 0.0 } else { self.total[phase as usize].as_secs_f64() * 1e3 / self.steps as f64 }
    }

    /// One line: `step time 231.0 ms mean over 900 steps: data 3.1 ms (1 %), synthesis ...`: the
    /// sum of the phases (index sampling, logging and resume points are outside them).
    pub fn summary(&self) -> String {
        let sum: f64 = PHASES.iter().map(|(p, _)| self.mean_ms(*p)).sum();
        let parts: Vec<String> = PHASES
            .iter()
            .map(|(p, name)| {
                let ms = self.mean_ms(*p);
                format!("{name} {ms:.1} ms ({:.0} %)", if sum > 0.0 { 100.0 * ms / sum } else { 0.0 })
            })
            .collect();
        format!("step time {sum:.1} ms mean over {} steps: {}", self.steps, parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_index_their_names() {
        for (i, (phase, _)) in PHASES.iter().enumerate() {
            assert_eq!(*phase as usize, i);
        }
    }

    #[test]
    fn means_and_shares_per_phase() {
        let mut t = StepTimes::default();
        assert_eq!(t.mean_ms(Phase::Data), 0.0);
        for _ in 0..4 {
            t.add(Phase::Data, Duration::from_millis(2));
            t.add(Phase::Forward, Duration::from_millis(6));
            t.step_done();
        }
        t.add(Phase::Validation, Duration::from_millis(8));
        assert!((t.mean_ms(Phase::Data) - 2.0).abs() < 1e-9);
        assert!((t.mean_ms(Phase::Forward) - 6.0).abs() < 1e-9);
        assert!((t.mean_ms(Phase::Validation) - 2.0).abs() < 1e-9);
        assert_eq!(
            t.summary(),
            "step time 10.0 ms mean over 4 steps: data 2.0 ms (20 %), synthesis 0.0 ms (0 %), forward 6.0 ms (60 %), \
             backward+update 0.0 ms (0 %), loss read-back 0.0 ms (0 %), validation 2.0 ms (20 %)"
        );
        let start = Instant::now() - Duration::from_millis(40);
        let before = Instant::now();
        let now = t.lap(Phase::Synthesis, start);
        assert!(now >= before, "lap returns the time it was called, not `since`");
        assert!(t.mean_ms(Phase::Synthesis) >= 10.0, "40 ms over 4 steps");
    }
}
