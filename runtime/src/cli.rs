//! What both command-line programs (`runtime`, `trainer`) do around their work: logging to stderr
//! (colours only on a terminal, level from `RUST_LOG`, default `info`) and the exit code.

use std::io::IsTerminal;

/// Sets up logging, runs `body`, prints `error: <chain>` on failure; exit code 0 or 1.
pub fn run_main(body: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match body() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
