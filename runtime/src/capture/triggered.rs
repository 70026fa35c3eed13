//! [`TriggeredSource`]: a frame source gated by a [`Trigger`] (a part sensor on a GPIO input line),
//! so that only the first frame at or after each trigger is inspected.

use std::time::{Duration, Instant};

use super::{CaptureError, Frame, FrameSource};
use crate::gpio::GpioTrigger;

/// Something that says when a part is under the camera.
pub trait Trigger: Send {
    /// Waits at most `timeout` for the next trigger; `Ok(None)` on timeout. Returns when the
    /// trigger happened (monotonic clock).
    fn wait(&mut self, timeout: Duration) -> anyhow::Result<Option<Instant>>;
}

impl Trigger for GpioTrigger {
    fn wait(&mut self, timeout: Duration) -> anyhow::Result<Option<Instant>> {
        Ok(GpioTrigger::wait(self, timeout)?.map(|e| e.received))
    }
}

/// Inspects only the first frame captured at or after each trigger; frames in between are
/// discarded (in trigger mode they show no part). The inner source is read continuously, so no
/// stale frame waits in the driver's buffers when the trigger comes.
pub struct TriggeredSource<S> {
    inner: S,
    trigger: Box<dyn Trigger>,
    /// A trigger not yet matched with a frame.
    pending: Option<Instant>,
    /// Frames discarded while waiting for a trigger.
    pub discarded: u64,
}

impl<S: FrameSource> TriggeredSource<S> {
    pub fn new(inner: S, trigger: Box<dyn Trigger>) -> Self {
        Self { inner, trigger, pending: None, discarded: 0 }
    }
}

impl<S: FrameSource> FrameSource for TriggeredSource<S> {
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let frame = self.inner.next_frame(left)?;
            // Poll after the frame: a trigger that fired while it was on its way still counts.
            if self.pending.is_none() {
                match self.trigger.wait(Duration::ZERO) {
                    Ok(t) => self.pending = t,
                    Err(e) => return Err(CaptureError::Stream { device: "trigger".into(), reason: format!("{e:#}") }),
                }
            }
            match (frame, self.pending) {
                (Some(f), Some(t)) if f.captured_at >= t => {
                    self.pending = None;
                    return Ok(Some(f));
                }
                (Some(_), _) => self.discarded += 1,
                (None, _) => return Ok(None),
            }
        }
    }

    fn describe(&self) -> String {
        format!("{} (triggered)", self.inner.describe())
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    /// Frames every 10 ms from t0, ids from 0.
    struct Clocked {
        next: u64,
        t0: Instant,
    }

    impl FrameSource for Clocked {
        fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Frame>, CaptureError> {
            let due = self.t0 + Duration::from_millis(10 * self.next);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let f = Frame { id: self.next, width: 1, height: 1, rgb: vec![0, 0, 0], captured_at: Instant::now(), file: None };
            self.next += 1;
            Ok(Some(f))
        }
        fn describe(&self) -> String {
            "clocked".into()
        }
    }

    /// Fires at the given offsets from t0.
    struct Scripted {
        t0: Instant,
        at: std::collections::VecDeque<Duration>,
    }

    impl Trigger for Scripted {
        fn wait(&mut self, timeout: Duration) -> anyhow::Result<Option<Instant>> {
            let Some(&next) = self.at.front() else {
                std::thread::sleep(timeout);
                return Ok(None);
            };
            let due = self.t0 + next;
            if due > Instant::now() + timeout {
                std::thread::sleep(timeout);
                return Ok(None);
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            self.at.pop_front();
            Ok(Some(due))
        }
    }

    #[test]
    fn each_trigger_selects_the_next_frame() {
        let t0 = Instant::now();
        let trigger = Scripted { t0, at: [35, 105].into_iter().map(Duration::from_millis).collect() };
        let mut s = TriggeredSource::new(Clocked { next: 0, t0 }, Box::new(trigger));
        let a = s.next_frame(Duration::from_secs(1)).unwrap().unwrap();
        let b = s.next_frame(Duration::from_secs(1)).unwrap().unwrap();
        // Frames come at 0, 10, 20, ... ms: the first at or after 35 ms is frame 4, after 105 ms frame 11.
        assert_eq!((a.id, b.id), (4, 11));
        assert!(s.discarded >= 6, "{}", s.discarded);
        assert!(s.next_frame(Duration::from_millis(20)).unwrap().is_none(), "no trigger, no frame");
    }
}
