//! [`ReopeningSource`]: wraps a source made by a factory and opens it again after a disconnect.

use std::time::{Duration, Instant};

use crate::capture::{CaptureError, Frame, FrameSource};

/// A [`FrameSource`] that (re)opens its inner source with `factory` whenever it is closed: at the
/// first [`next_frame`](FrameSource::next_frame), and after an error for which
/// [`CaptureError::needs_reopen`] is true (camera unplugged, stream broken). Open attempts are at
/// least `retry_every` apart; failed attempts that are [`CaptureError::Open`] or
/// [`CaptureError::Disconnected`] are logged and retried, other factory errors (e.g. a format the
/// camera refuses) are returned. Waiting for the device counts against the caller's timeout:
/// while it is absent `next_frame` returns `Ok(None)` after `timeout`.
///
/// Frame ids are renumbered from 0 across reopens (also in [`CaptureError::BadFrame`]), so they
/// stay unique and increasing for the life of the wrapper.
pub struct ReopeningSource<S, F> {
    factory: F,
    source: Option<S>,
    retry_every: Duration,
    last_attempt: Option<Instant>,
    next_id: u64,
    opens: u64,
    last_error: Option<String>,
}

impl<S, F> ReopeningSource<S, F>
where
    S: FrameSource,
    F: FnMut() -> Result<S, CaptureError>,
{
    /// A wrapper that opens with `factory`, retrying every `retry_every` while it fails. Nothing
    /// is opened until the first `next_frame` (call [`open_now`](Self::open_now) to fail early).
    pub fn new(factory: F, retry_every: Duration) -> Self {
        Self { factory, source: None, retry_every, last_attempt: None, next_id: 0, opens: 0, last_error: None }
    }

    /// Opens the inner source now (one attempt); an error is returned as is.
    pub fn open_now(&mut self) -> Result<(), CaptureError> {
        self.last_attempt = Some(Instant::now());
        let s = (self.factory)()?;
        self.opens += 1;
        self.source = Some(s);
        Ok(())
    }

    /// Successful opens so far (1 after the first open; each reopen adds 1).
    pub fn opens(&self) -> u64 {
        self.opens
    }

    /// Whether an inner source is open now.
    pub fn is_open(&self) -> bool {
        self.source.is_some()
    }

    /// The inner source, if open.
    pub fn inner(&self) -> Option<&S> {
        self.source.as_ref()
    }

    fn take_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }
}

impl<S, F> FrameSource for ReopeningSource<S, F>
where
    S: FrameSource,
    F: FnMut() -> Result<S, CaptureError>,
{
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            if let Some(src) = self.source.as_mut() {
                let remaining = deadline.saturating_duration_since(now);
                match src.next_frame(remaining) {
                    Ok(Some(mut frame)) => {
                        frame.id = self.take_id();
                        return Ok(Some(frame));
                    }
                    Ok(None) => return Ok(None),
                    Err(CaptureError::BadFrame { device, reason, file, .. }) => {
                        return Err(CaptureError::BadFrame { device, frame_id: self.take_id(), reason, file });
                    }
                    Err(e) if e.needs_reopen() => {
                        tracing::warn!("{e}; reopening every {} ms", self.retry_every.as_millis());
                        self.source = None;
                        self.last_attempt = Some(Instant::now());
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            // Closed: wait for the next attempt slot, within the caller's timeout.
            let next_try = self.last_attempt.map_or(now, |t| t + self.retry_every);
            if next_try > now {
                if next_try > deadline {
                    std::thread::sleep(deadline.saturating_duration_since(now));
                    return Ok(None);
                }
                std::thread::sleep(next_try - now);
            }
            match self.open_now() {
                Ok(()) => {
                    if self.opens > 1 {
                        tracing::info!("reopened: {}", self.source.as_ref().map(|s| s.describe()).unwrap_or_default());
                    }
                    self.last_error = None;
                }
                Err(e @ (CaptureError::Open { .. } | CaptureError::Disconnected { .. })) => {
                    let msg = e.to_string();
                    if self.last_error.as_deref() != Some(&msg) {
                        tracing::warn!("{msg}; retrying every {} ms", self.retry_every.as_millis());
                    }
                    self.last_error = Some(msg);
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn describe(&self) -> String {
        match &self.source {
            Some(s) => format!("{} (reopened on disconnect)", s.describe()),
            None => format!("closed source, reopening every {} ms ({})", self.retry_every.as_millis(), self.last_error.as_deref().unwrap_or("not opened yet")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    /// Plays back a script of results, then times out.
    struct Fake {
        script: VecDeque<Result<Option<u8>, CaptureError>>,
        inner_id: u64,
    }

    impl FrameSource for Fake {
        fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Frame>, CaptureError> {
            let r = self.script.pop_front().unwrap_or(Ok(None));
            let id = self.inner_id;
            self.inner_id += 1;
            r.map(|o| o.map(|v| Frame { id, width: 1, height: 1, rgb: vec![v; 3], captured_at: Instant::now(), file: None }))
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn gone() -> CaptureError {
        CaptureError::Disconnected { device: "/dev/fake".into(), reason: "ENODEV".into() }
    }

    fn open_fail() -> CaptureError {
        CaptureError::Open { device: "/dev/fake".into(), reason: "no such device node".into() }
    }

    #[test]
    fn reopens_after_disconnect_and_keeps_ids_increasing() {
        // Opening: 1st ok (2 frames, then unplugged), 2nd and 3rd fail, 4th ok (2 frames).
        let attempts = Rc::new(RefCell::new(0));
        let a = attempts.clone();
        let factory = move || {
            *a.borrow_mut() += 1;
            match *a.borrow() {
                1 => Ok(Fake { script: VecDeque::from([Ok(Some(1)), Ok(Some(2)), Err(gone())]), inner_id: 0 }),
                2 | 3 => Err(open_fail()),
                _ => Ok(Fake { script: VecDeque::from([Ok(Some(3)), Ok(Some(4))]), inner_id: 0 }),
            }
        };
        let mut src = ReopeningSource::new(factory, Duration::from_millis(5));
        let mut got = Vec::new();
        for _ in 0..50 {
            if let Some(f) = src.next_frame(Duration::from_millis(20)).unwrap() {
                got.push((f.id, f.rgb[0]));
            }
            if got.len() == 4 {
                break;
            }
        }
        assert_eq!(got, vec![(0, 1), (1, 2), (2, 3), (3, 4)]);
        assert_eq!(*attempts.borrow(), 4);
        assert_eq!(src.opens(), 2);
        assert!(src.is_open());
        assert!(src.describe().contains("fake"));
    }

    #[test]
    fn absent_device_times_out_without_error() {
        let attempts = Rc::new(RefCell::new(0u32));
        let a = attempts.clone();
        let factory = move || -> Result<Fake, CaptureError> {
            *a.borrow_mut() += 1;
            Err(open_fail())
        };
        let mut src = ReopeningSource::new(factory, Duration::from_millis(10));
        let t = Instant::now();
        assert!(src.next_frame(Duration::from_millis(35)).unwrap().is_none());
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(35) && waited < Duration::from_millis(500), "{waited:?}");
        // Attempts at ~0, 10, 20, 30 ms.
        let n = *attempts.borrow();
        assert!((2..=5).contains(&n), "{n} attempts");
        assert!(!src.is_open());
        assert!(src.describe().contains("no such device node"));
    }

    #[test]
    fn bad_frames_pass_through_renumbered_and_format_errors_are_returned() {
        let factory = || {
            Ok(Fake {
                script: VecDeque::from([Ok(Some(1)), Err(CaptureError::BadFrame { device: "/dev/fake".into(), frame_id: 99, reason: "short".into(), file: None }), Ok(Some(2))]),
                inner_id: 0,
            })
        };
        let mut src = ReopeningSource::new(factory, Duration::from_millis(1));
        assert_eq!(src.next_frame(Duration::from_millis(5)).unwrap().unwrap().id, 0);
        match src.next_frame(Duration::from_millis(5)) {
            Err(CaptureError::BadFrame { frame_id, .. }) => assert_eq!(frame_id, 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(src.next_frame(Duration::from_millis(5)).unwrap().unwrap().id, 2);
        assert_eq!(src.opens(), 1);

        let factory = || -> Result<Fake, CaptureError> {
            Err(CaptureError::Format { device: "/dev/fake".into(), requested: "640x480 YUYV".into(), reason: "refused".into() })
        };
        let mut src = ReopeningSource::new(factory, Duration::from_millis(1));
        assert!(matches!(src.next_frame(Duration::from_millis(5)), Err(CaptureError::Format { .. })));
    }
}
