//! Helpers shared by the tests that run the `runtime` binary with its web view.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `runtime run --config <config>` with stderr in `log` and returns it with the web view's
/// address as the log names it (`web view on http://<addr>/`, `[web].port = 0`).
pub fn start_with_web(config: &Path, log: &Path) -> (Child, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_runtime")).args(["run", "--config", config.to_str().unwrap()]).stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("web view on http://").nth(1) {
            return (child, rest.split('/').next().unwrap().to_string());
        }
        assert!(Instant::now() < deadline, "no web view within 60 s:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM to `child`; asserts a clean exit.
pub fn stop(mut child: Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}
