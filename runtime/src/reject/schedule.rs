//! The reject scheduler: the ejector sits downstream of the camera, so a reject requested at time
//! `t` raises the line at `t + delay` for `width`. Several parts can be in flight: requests wait in
//! a queue ordered by rising-edge time; overlapping (or touching) pulses merge into one longer
//! active period. A dedicated thread drives the line on the monotonic clock ([`Instant`]);
//! [`ScheduledReject::reject`] only enqueues.
//!
//! Driver write errors are counted and logged, never panicked on: after a failed write the pulse
//! is dropped and the line is driven inactive, retried (10 ms, doubling up to 1 s) until the write
//! succeeds. Later pulses are scheduled as usual.
//!
//! Long pulses and shutdown (the rule):
//! - Overlapping or touching pulses merge: the line rises at the first one's start and stays
//!   active until the latest end among them, however many parts were rejected meanwhile.
//! - A clean stop ([`RejectOutput::drain`], then [`RejectOutput::release`]) delivers every pulse
//!   already requested in full: it waits until the last one has ended, which is at most
//!   [`ScheduledReject::drain_limit`] = delay + width + 1 s after the last request.
//! - Whatever the stop, the line ends inactive. A pulse that was due but not delivered in full
//!   (still waiting, or cut short by [`RejectOutput::release`], a second signal or a panic) is
//!   counted in [`ScheduledReject::cut_pulses`] and so in [`RejectOutput::missed_pulses`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{LineDriver, RejectOutput};
use crate::shutdown::SafeLine;

/// Most pulses waiting at once; more is a fault upstream (a stuck line or a wrong delay).
pub const MAX_PENDING: usize = 4096;
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How long [`SafeLine::make_safe`] waits for the driver lock before giving up.
const SAFE_LOCK_WAIT: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Planned {
    start: Instant,
    end: Instant,
    frame_id: u64,
}

#[derive(Default)]
struct State {
    queue: BinaryHeap<Reverse<Planned>>,
    shutdown: bool,
    /// The line is active, a pulse is in progress or a write is being retried (set by the
    /// scheduler thread before it waits).
    busy: bool,
}

/// What the scheduler thread, the handle and the safe-line registry share.
struct Shared<D> {
    name: String,
    state: Mutex<State>,
    wake: Condvar,
    driver: Mutex<D>,
    /// Set by [`SafeLine::make_safe`] (panic, second signal): no more rising edges.
    halted: AtomicBool,
    write_errors: AtomicU64,
    late_pulses: AtomicU64,
    /// Pulses due but not delivered in full because the line was released or made safe.
    cut_pulses: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<D: LineDriver> Shared<D> {
    /// Writes `active` unless the line was halted meanwhile (checked under the driver lock, so a
    /// concurrent `make_safe` always writes last). Returns the level now on the line.
    fn write(&self, active: bool) -> anyhow::Result<bool> {
        let mut d = lock(&self.driver);
        let active = active && !self.halted.load(Ordering::SeqCst);
        d.set_active(active)?;
        Ok(active)
    }

    fn count_error(&self, active: bool, e: &anyhow::Error) {
        let n = self.write_errors.fetch_add(1, Ordering::Relaxed) + 1;
        let level = if active { "active" } else { "inactive" };
        tracing::error!(line = %self.name, errors = n, "reject line: cannot set {level}: {e:#}; driving it inactive");
    }
}

impl<D: LineDriver> SafeLine for Shared<D> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn make_safe(&self) -> anyhow::Result<()> {
        self.halted.store(true, Ordering::SeqCst);
        if let Ok(mut st) = self.state.try_lock() {
            let n = st.queue.len() as u64;
            if n > 0 {
                self.cut_pulses.fetch_add(n, Ordering::Relaxed);
            }
            st.queue.clear();
        }
        self.wake.notify_all();
        // try_lock in a loop: make_safe may run in a panic hook on a thread that holds the lock.
        let deadline = Instant::now() + SAFE_LOCK_WAIT;
        loop {
            match self.driver.try_lock() {
                Ok(mut d) => return d.set_active(false),
                Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner().set_active(false),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                Err(std::sync::TryLockError::WouldBlock) => {
                    anyhow::bail!("reject line {}: driver busy for {} ms, cannot set it inactive", self.name, SAFE_LOCK_WAIT.as_millis())
                }
            }
        }
    }
}

/// A reject output that pulses a [`LineDriver`] `delay` after each request, for `width`, from a
/// dedicated thread. See the [module documentation](self).
pub struct ScheduledReject<D: LineDriver> {
    shared: Arc<Shared<D>>,
    delay: Duration,
    width: Duration,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl<D: LineDriver> ScheduledReject<D> {
    /// Starts the scheduler thread for `driver` (which must be inactive, see [`LineDriver`]).
    /// `name` identifies the line in logs and errors; `delay` is camera-to-ejector time, `width` the
    /// pulse width.
    ///
    /// # Errors
    /// `width` is zero, or the thread cannot be spawned.
    pub fn new(name: &str, driver: D, delay: Duration, width: Duration) -> anyhow::Result<Self> {
        anyhow::ensure!(!width.is_zero(), "reject line {name}: pulse width must be at least 1 ms, got 0");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            driver: Mutex::new(driver),
            halted: AtomicBool::new(false),
            write_errors: AtomicU64::new(0),
            late_pulses: AtomicU64::new(0),
            cut_pulses: AtomicU64::new(0),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("reject {name}"))
            .spawn(move || run(&s))
            .map_err(|e| anyhow::anyhow!("reject line {name}: cannot start the scheduler thread: {e}"))?;
        Ok(Self { shared, delay, width, thread: Some(thread) })
    }

    /// Delay from request to rising edge.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Pulse width.
    pub fn width(&self) -> Duration {
        self.width
    }

    /// Requests a pulse for a part seen at `seen` (e.g. the frame's capture time): the line rises
    /// at `seen + delay`. Never blocks on the line (the driver is written by the scheduler thread).
    ///
    /// # Errors
    /// The scheduler was released or halted, or [`MAX_PENDING`] pulses are already waiting.
    pub fn reject_at(&mut self, frame_id: u64, seen: Instant) -> anyhow::Result<()> {
        let start = seen + self.delay;
        let p = Planned { start, end: start + self.width, frame_id };
        {
            let mut st = lock(&self.shared.state);
            anyhow::ensure!(
                !st.shutdown && !self.shared.halted.load(Ordering::SeqCst),
                "reject line {}: released, cannot reject frame {frame_id}",
                self.shared.name
            );
            anyhow::ensure!(
                st.queue.len() < MAX_PENDING,
                "reject line {}: {MAX_PENDING} pulses already waiting, cannot reject frame {frame_id}",
                self.shared.name
            );
            st.queue.push(Reverse(p));
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Pulses requested whose rising edge is still to come.
    pub fn pending(&self) -> usize {
        lock(&self.shared.state).queue.len()
    }

    /// Failed driver writes so far.
    pub fn write_errors(&self) -> u64 {
        self.shared.write_errors.load(Ordering::Relaxed)
    }

    /// Pulses skipped because the scheduler woke after their end (the part had passed the ejector).
    pub fn late_pulses(&self) -> u64 {
        self.shared.late_pulses.load(Ordering::Relaxed)
    }

    /// Pulses that were due but not delivered in full: still waiting or active when the line was
    /// released or made safe (see the rule in the [module documentation](self)).
    pub fn cut_pulses(&self) -> u64 {
        self.shared.cut_pulses.load(Ordering::Relaxed)
    }

    /// Longest a clean stop waits in [`RejectOutput::drain`] for the pulses already requested:
    /// delay + width + 1 s (a request's part was seen at the latest now, so its pulse ends by
    /// then; merged pulses end with their latest member).
    pub fn drain_limit(&self) -> Duration {
        self.delay + self.width + Duration::from_secs(1)
    }

    /// True while a pulse waits or is in progress, or the line is not known to be inactive.
    pub fn busy(&self) -> bool {
        let st = lock(&self.shared.state);
        !st.queue.is_empty() || st.busy
    }

    /// The handle to register with [`crate::shutdown::SafeLines::register`], so that a panic or a
    /// second signal puts this line inactive.
    pub fn safe_line(&self) -> Arc<dyn SafeLine> {
        self.shared.clone()
    }
}

impl<D: LineDriver> RejectOutput for ScheduledReject<D> {
    /// [`ScheduledReject::reject_at`] with `seen` = now.
    fn reject(&mut self, frame_id: u64) -> anyhow::Result<()> {
        ScheduledReject::reject_at(self, frame_id, Instant::now())
    }

    fn reject_at(&mut self, frame_id: u64, seen: Instant) -> anyhow::Result<()> {
        ScheduledReject::reject_at(self, frame_id, seen)
    }

    fn missed_pulses(&self) -> u64 {
        self.late_pulses() + self.write_errors() + self.cut_pulses()
    }

    fn drain_limit(&self) -> Duration {
        ScheduledReject::drain_limit(self)
    }

    /// Polls every 2 ms until no pulse waits or is in progress and the line is inactive (every
    /// merged period ran to its end), or `max_wait` passes, or the line was made safe.
    fn drain(&mut self, max_wait: Duration) -> usize {
        let until = Instant::now() + max_wait;
        while self.busy() && Instant::now() < until && !self.shared.halted.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.pending()
    }

    /// Drops the pulses still waiting and cuts the one in progress (both counted in
    /// [`ScheduledReject::cut_pulses`]), stops the thread (which writes the line inactive, 3 tries)
    /// and joins it. A second call does nothing.
    ///
    /// # Errors
    /// The final inactive write failed 3 times, or the thread panicked.
    fn release(&mut self) -> anyhow::Result<()> {
        let Some(thread) = self.thread.take() else { return Ok(()) };
        lock(&self.shared.state).shutdown = true;
        self.shared.wake.notify_all();
        match thread.join() {
            Ok(r) => r,
            Err(_) => {
                // The thread is gone; the driver is still here.
                self.shared.make_safe()?;
                anyhow::bail!("reject line {}: scheduler thread panicked (line set inactive)", self.shared.name)
            }
        }
    }
}

impl<D: LineDriver> Drop for ScheduledReject<D> {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::error!(line = %self.shared.name, "reject line: release on drop: {e:#}");
        }
    }
}

/// The scheduler thread. `level`: what is on the line (`None` after a failed write: unknown).
fn run<D: LineDriver>(s: &Shared<D>) -> anyhow::Result<()> {
    let mut level = Some(false);
    let mut active_until: Option<Instant> = None;
    // Ends of the pulses of the current active period (to count those cut at release).
    let mut in_progress: Vec<Instant> = Vec::new();
    let mut retry_at: Option<Instant> = None;
    let mut retry_delay = RETRY_FIRST;
    let mut st = lock(&s.state);
    loop {
        if st.shutdown {
            break;
        }
        let now = Instant::now();
        let halted = s.halted.load(Ordering::SeqCst);
        in_progress.retain(|&end| end > now);
        if halted {
            let cut = st.queue.len() + in_progress.len();
            if cut > 0 {
                s.cut_pulses.fetch_add(cut as u64, Ordering::Relaxed);
            }
            st.queue.clear();
            in_progress.clear();
            active_until = None;
        }
        while let Some(&Reverse(p)) = st.queue.peek() {
            if p.start > now {
                break;
            }
            st.queue.pop();
            if p.end > now {
                active_until = Some(active_until.map_or(p.end, |u| u.max(p.end)));
                in_progress.push(p.end);
            } else {
                let n = s.late_pulses.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(line = %s.name, frame = p.frame_id, late = n, "reject pulse skipped: scheduler woke after its end");
            }
        }
        let want = active_until.is_some_and(|u| u > now);
        if !want {
            active_until = None;
        }
        // Before the lock is dropped for a write: drain must not see an empty queue as idle.
        st.busy = want || level != Some(false);
        if level != Some(want) && retry_at.is_none_or(|r| r <= now) {
            drop(st);
            match s.write(want) {
                Ok(l) => {
                    level = Some(l);
                    retry_at = None;
                    retry_delay = RETRY_FIRST;
                }
                Err(e) => {
                    s.count_error(want, &e);
                    level = None;
                    active_until = None; // drop the pulse: the next write is the inactive retry
                    in_progress.clear(); // counted as a write error
                    if want {
                        retry_at = None; // retry inactive at once
                    } else {
                        retry_at = Some(Instant::now() + retry_delay);
                        retry_delay = (retry_delay * 2).min(RETRY_MAX);
                    }
                }
            }
            st = lock(&s.state);
            continue;
        }
        let next = [st.queue.peek().map(|p| p.0.start), active_until, retry_at.filter(|_| level != Some(want))].into_iter().flatten().min();
        st = match next {
            Some(t) => s.wake.wait_timeout(st, t.saturating_duration_since(now)).unwrap_or_else(|p| p.into_inner()).0,
            None => s.wake.wait(st).unwrap_or_else(|p| p.into_inner()),
        };
    }
    let dropped = st.queue.len();
    st.queue.clear();
    drop(st);
    let now = Instant::now();
    let cut = in_progress.iter().filter(|&&end| end > now).count();
    if dropped + cut > 0 {
        s.cut_pulses.fetch_add((dropped + cut) as u64, Ordering::Relaxed);
        tracing::warn!(line = %s.name, "reject line released with {dropped} pulse(s) still waiting (not fired) and {cut} cut short: counted as missed");
    }
    let mut last = None;
    for attempt in 0..3 {
        if attempt > 0 {
            std::thread::sleep(RETRY_FIRST);
        }
        match lock(&s.driver).set_active(false) {
            Ok(()) => return Ok(()),
            Err(e) => {
                s.count_error(false, &e);
                last = Some(e);
            }
        }
    }
    Err(last.expect("3 attempts").context(format!("reject line {}: cannot set it inactive on release (3 tries)", s.name)))
}

#[cfg(test)]
mod tests;
