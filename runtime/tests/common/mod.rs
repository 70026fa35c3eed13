//! Helpers shared by the tests that run the `runtime` binary on a replay (web view, MQTT). Each
//! test binary uses a part of them.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `cmd` set to get SIGKILL when the thread that spawns it ends (Linux `PR_SET_PDEATHSIG`): a
/// test that panics before it stops its line or broker leaves no process running behind it
/// (libtest runs each test on a thread of its own; with one test thread, when the process ends).
pub fn dies_with_test(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Starts `runtime run --config <config>` with stderr in `log` and returns it with the web view's
/// address as the log names it (`web view on http://<addr>/`, `[web].port = 0`).
pub fn start_with_web(config: &Path, log: &Path) -> (Child, String) {
    let child = dies_with_test(Command::new(env!("CARGO_BIN_EXE_runtime")).args(["run", "--config", config.to_str().unwrap()])).stdout(Stdio::null()).stderr(std::fs::File::create(log).unwrap()).spawn().unwrap();
    let addr = web_address(log);
    (child, addr)
}

/// The web view's address once the line's `log` names it (`web view on http://<addr>/`).
pub fn web_address(log: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("web view on http://").nth(1) {
            return rest.split('/').next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no web view within 60 s:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET /metrics` of the web view at `addr` (no token), parsed by a Prometheus text parser.
pub fn scrape(addr: &str) -> prometheus_parse::Scrape {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    parse_metrics(body)
}

/// Prometheus text exposition `text` parsed by a Prometheus text parser.
pub fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `name` in `scrape`; with `label` (name, value), of the sample that
/// carries it.
pub fn sample(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    scrape.samples.iter().find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v))).map(|s| match s.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    })
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
