//! Leaving the reject line at its safe level whatever happens (DESIGN.md §6: "the process never
//! leaves the reject line in an undefined state").
//!
//! - [`SafeLines`]: a process-wide registry of lines ([`SafeLine`]) put inactive on normal exit
//!   (when the guard drops), on panic (a panic hook chained before the previous hook) and on a second
//!   SIGINT/SIGTERM.
//! - [`install_handlers`]: SIGINT/SIGTERM set a shutdown flag the caller polls, so the normal exit
//!   path runs; a second signal releases every registered line and exits (code 128 + signal).
//!
//! The registry holds weak references: a line dropped normally (which releases itself) leaves it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock, Weak};

/// A line that can be put at its safe level from any thread, at any time.
pub trait SafeLine: Send + Sync {
    /// The line, for logs (e.g. `/dev/gpiochip0:17 (GPIO17)`).
    fn name(&self) -> String;
    /// Puts the line inactive and stops anything that would raise it again.
    ///
    /// # Errors
    /// The inactive write failed, or the line could not be reached in time.
    fn make_safe(&self) -> anyhow::Result<()>;
}

static REGISTRY: Mutex<Vec<Weak<dyn SafeLine>>> = Mutex::new(Vec::new());
static PANIC_HOOK: Once = Once::new();

/// Guard for the process-wide registry of lines to release. Create one at the start of `main`
/// ([`SafeLines::install`]) and keep it until the end: dropping it releases every registered line.
#[must_use = "dropping the guard releases the lines at once"]
pub struct SafeLines {
    _private: (),
}

impl SafeLines {
    /// Installs the panic hook (once per process; it releases every registered line, then runs the
    /// previous hook) and returns the guard.
    pub fn install() -> SafeLines {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let n = release_all();
                if n > 0 {
                    eprintln!("panic: {n} reject line(s) set inactive");
                }
                previous(info);
            }));
        });
        SafeLines { _private: () }
    }

    /// Adds `line` to the registry (held weakly).
    pub fn register(&self, line: &Arc<dyn SafeLine>) {
        let mut r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
        r.retain(|w| w.strong_count() > 0);
        r.push(Arc::downgrade(line));
    }
}

impl Drop for SafeLines {
    fn drop(&mut self) {
        release_all();
    }
}

/// Puts every registered line still alive inactive; errors are logged (stderr: this may run in a
/// panic hook). Returns how many lines were set inactive. Never blocks on the registry lock (a
/// panic while it is held skips the release rather than deadlocking).
pub fn release_all() -> usize {
    let lines: Vec<Arc<dyn SafeLine>> = match REGISTRY.try_lock() {
        Ok(r) => r.iter().filter_map(Weak::upgrade).collect(),
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().iter().filter_map(Weak::upgrade).collect(),
        Err(std::sync::TryLockError::WouldBlock) => {
            eprintln!("reject lines: registry busy, cannot release them");
            return 0;
        }
    };
    let mut ok = 0;
    for l in lines {
        match l.make_safe() {
            Ok(()) => ok += 1,
            Err(e) => eprintln!("reject line {}: cannot set it inactive: {e:#}", l.name()),
        }
    }
    ok
}

/// Installs SIGINT and SIGTERM handlers (once per process; later calls return the same flag).
/// The first signal sets the returned flag: poll it and leave through the normal exit path. A
/// second signal releases every registered line ([`release_all`]) and exits with 128 + signal.
///
/// If the handlers cannot be installed the error is logged and the flag never sets.
pub fn install_handlers() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        if let Err(e) = spawn_signal_thread(Arc::clone(&flag)) {
            tracing::error!("cannot install SIGINT/SIGTERM handlers: {e:#}");
        }
        flag
    })
    .clone()
}

fn spawn_signal_thread(flag: Arc<AtomicBool>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            if !flag.swap(true, Ordering::SeqCst) {
                tracing::warn!("signal {sig}: shutting down (again to stop at once)");
            } else {
                let n = release_all();
                eprintln!("signal {sig} again: {n} reject line(s) set inactive, exiting");
                std::process::exit(128 + sig);
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::reject::{RejectOutput, ScheduledReject, SimulatedLine};

    #[test]
    fn panic_hook_puts_an_active_line_inactive() {
        let guard = SafeLines::install();
        let line = SimulatedLine::new();
        let mut s = ScheduledReject::new("panic-test", line.clone(), Duration::ZERO, Duration::from_secs(10)).unwrap();
        guard.register(&s.safe_line());
        s.reject(1).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert!(line.is_active(), "pulse should be active before the panic");
        let r = std::panic::catch_unwind(|| panic!("simulated crash during a reject pulse"));
        assert!(r.is_err());
        assert!(!line.is_active(), "the panic hook must set the line inactive: {:?}", line.edges());
        // Halted: no more pulses, and a reject is refused.
        assert!(s.reject(2).is_err());
        std::thread::sleep(Duration::from_millis(20));
        assert!(!line.is_active());
        std::mem::forget(guard); // other tests may have lines registered
    }

    #[test]
    fn install_handlers_returns_one_flag() {
        let a = install_handlers();
        let b = install_handlers();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!a.load(Ordering::SeqCst));
    }
}
