//! Helpers shared by the tests that run the `runtime` binary on a replay (web view, MQTT). Each
//! test binary uses a part of them.
#![allow(dead_code)]

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

/// A replay of `frames` flat grey frames of `w` x `h` px in `<dir>/replay/`, every fifth bright
/// (level 220: REJECT), the others dark (40..=46: OK), and `<dir>/model.onnx`, the brightness
/// model those verdicts come from (threshold 0.5).
pub fn write_replay(dir: &Path, frames: u32, w: u32, h: u32) {
    std::fs::create_dir_all(dir.join("replay")).unwrap();
    for i in 0..frames {
        let level = if i % 5 == 2 { 220 } else { 40 + (i % 7) as u8 };
        image::RgbImage::from_pixel(w, h, image::Rgb([level; 3])).save(dir.join("replay").join(format!("{i:03}.png"))).unwrap();
    }
    runtime::synthetic::write_brightness_model(&dir.join("model.onnx"), w, h, 0.5).unwrap();
}
