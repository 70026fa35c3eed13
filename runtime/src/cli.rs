//! What both command-line programs (`runtime`, `trainer`) do around their work: logging to stderr
//! (colours only on a terminal; level from `RUST_LOG`, else the device file's `logging.level`
//! once it is read, else `info`) and the exit code.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::{layer::SubscriberExt, reload, util::SubscriberInitExt, EnvFilter, Registry};

static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Sets up logging, runs `body`, prints `error: <chain>` on failure; exit code 0 or 1.
pub fn run_main(body: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    let (filter, handle) = reload::Layer::new(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    if tracing_subscriber::registry().with(filter).with(fmt).try_init().is_ok() {
        let _ = LEVEL.set(handle);
    }
    match body() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Applies a configured level (`logging.level`: error, warn, info, debug, trace; validated by
/// the config) unless `RUST_LOG` is set, which overrides it. Returns whether the level changed.
/// A no-op outside [`run_main`].
pub fn apply_log_level(level: &str) -> bool {
    if std::env::var_os("RUST_LOG").is_some() {
        return false;
    }
    match (LEVEL.get(), EnvFilter::try_new(level)) {
        (Some(handle), Ok(filter)) => handle.reload(filter).is_ok(),
        _ => false,
    }
}
