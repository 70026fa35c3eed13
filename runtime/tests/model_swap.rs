//! Live model swap, rollback, the ready line and the systemd watchdog through the real `runtime`
//! binary (issue 16, items 3 and 5): `runtime run` on a looping replay, under a `NOTIFY_SOCKET`
//! this test owns (these machines do not run systemd as PID 1), while `runtime reload` and
//! `runtime rollback` swap models in: a good one, a half-copied file, one that fails the
//! acceptance set, then back. The synthetic brightness model (no training) makes every verdict
//! known.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

const W: u32 = 64;
const H: u32 = 48;

fn put_model(from: &Path, to: &Path) {
    // As DEPLOY.md says: copy next to it, then rename over it (atomic on one file system).
    let tmp = to.with_extension("incoming");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn label(path: &Path, name: &str) -> String {
    let id = runtime::infer::ModelId::of(Path::new(name), &std::fs::read(path).unwrap());
    id.to_string()
}

fn runtime_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runtime")).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn reload_refuses_broken_models_rolls_back_and_the_watchdog_sees_a_live_line() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // Replay: 30 frames, every fifth bright (REJECT under every good model here).
    let replay = dir.join("replay");
    std::fs::create_dir_all(&replay).unwrap();
    for i in 0..30u32 {
        let level = if i % 5 == 2 { 220 } else { 40 };
        image::RgbImage::from_pixel(W, H, image::Rgb([level; 3])).save(replay.join(format!("{i:03}.png"))).unwrap();
    }
    let accept = dir.join("acceptance");
    for (folder, level) in [("good", 40u8), ("crack", 220u8)] {
        std::fs::create_dir_all(accept.join(folder)).unwrap();
        image::RgbImage::from_pixel(W, H, image::Rgb([level; 3])).save(accept.join(folder).join("0.png")).unwrap();
    }
    let (a, b, c) = (dir.join("a.onnx"), dir.join("b.onnx"), dir.join("c.onnx"));
    runtime::synthetic::write_brightness_model(&a, W, H, 0.5).unwrap();
    runtime::synthetic::write_brightness_model(&b, W, H, 0.6).unwrap();
    // Judges the good acceptance image REJECT: must never run.
    runtime::synthetic::write_brightness_model(&c, W, H, 0.1).unwrap();
    let model = dir.join("model.onnx");
    put_model(&a, &model);
    let (label_a, label_b) = (label(&a, "model.onnx"), label(&b, "model.onnx"));
    let out = dir.join("out");
    let config = dir.join("device.toml");
    std::fs::write(
        &config,
        format!(
            "[camera]\nsource = \"replay\"\nreplay_dir = {:?}\nreplay_loop = true\nfps = 100\n\n[model]\npath = {:?}\nacceptance_dir = {:?}\n\n[reject]\nbackend = \"simulated\"\n\n[ready]\nbackend = \"simulated\"\n\n[output]\ndir = {:?}\noverlays = \"none\"\n",
            replay, model, accept, out
        ),
    )
    .unwrap();

    // The systemd side: a datagram socket the runtime notifies, every message time-stamped.
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let t0 = Instant::now();
    let messages: Arc<Mutex<Vec<(Duration, String)>>> = Arc::default();
    let (m2, stop) = (messages.clone(), Arc::new(std::sync::atomic::AtomicBool::new(false)));
    let stop2 = stop.clone();
    let listener = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(n) = sock.recv(&mut buf) {
                m2.lock().unwrap().push((t0.elapsed(), text(&buf[..n]).trim().to_string()));
            }
        }
    });
    let log = std::fs::File::create(dir.join("run.log")).unwrap();
    // systemd sets WATCHDOG_PID to the service's pid: `exec` keeps the shell's pid ($$).
    let mut child = common::dies_with_test(&mut Command::new("sh"))
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" run --config \"$1\"", env!("CARGO_BIN_EXE_runtime"), config.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "600000")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    // A reload asked for while the line is still starting neither kills it nor gets lost: it
    // is handled once the line runs (the same file: nothing to swap).
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGHUP) }, 0);
    let has = |m: &str| messages.lock().unwrap().iter().any(|(_, s)| s.contains(m));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !has("READY=1") {
        assert!(Instant::now() < deadline, "no READY=1 within 60 s; log:\n{}", std::fs::read_to_string(dir.join("run.log")).unwrap());
        assert!(child.try_wait().unwrap().is_none(), "runtime exited early; log:\n{}", std::fs::read_to_string(dir.join("run.log")).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    let cfg = config.to_str().unwrap();
    // The early reload's answer (`unchanged`) before the file is replaced.
    while std::fs::read_to_string(out.join("models.jsonl")).unwrap_or_default().lines().count() < 2 {
        assert!(Instant::now() < deadline, "the reload sent during start was not handled:\n{}", std::fs::read_to_string(dir.join("run.log")).unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }

    // 1. A good model: swapped in.
    put_model(&b, &model);
    let r = runtime_cmd(&["reload", "--config", cfg]);
    assert!(r.status.success(), "reload of a good model: {}{}", text(&r.stdout), text(&r.stderr));
    assert!(text(&r.stdout).contains(&format!("swap: now running {label_b} (was {label_a})")), "{}", text(&r.stdout));
    std::thread::sleep(Duration::from_millis(300));
    // The same file again: nothing swapped, and the rollback target (A) is kept.
    let r = runtime_cmd(&["reload", "--config", cfg]);
    assert!(r.status.success() && text(&r.stdout).contains(&format!("unchanged: {} is the model already running; still running {label_b}", model.display())), "{}{}", text(&r.stdout), text(&r.stderr));

    // 2. A half-copied file (written in place): refused, B keeps running.
    let bytes = std::fs::read(&b).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let r = runtime_cmd(&["reload", "--config", cfg]);
    let err = text(&r.stderr);
    assert!(!r.status.success() && err.contains("refused") && err.contains("model.onnx") && err.contains(&format!("still runs {label_b}")), "{err}");

    // 3. A model that judges a known good image REJECT: refused.
    put_model(&c, &model);
    let r = runtime_cmd(&["reload", "--config", cfg]);
    let err = text(&r.stderr);
    assert!(!r.status.success() && err.contains("1 of 2 images judged wrong") && err.contains("good/0.png: REJECT"), "{err}");
    std::thread::sleep(Duration::from_millis(300));

    // 4. Rollback: back to A.
    let r = runtime_cmd(&["rollback", "--config", cfg]);
    assert!(r.status.success(), "rollback: {}{}", text(&r.stdout), text(&r.stderr));
    assert!(text(&r.stdout).contains(&format!("rollback: now running {label_a} (was {label_b})")), "{}", text(&r.stdout));
    std::thread::sleep(Duration::from_millis(1500));

    // SIGTERM: a clean stop.
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    listener.join().unwrap();
    let run_log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    assert!(status.success(), "runtime run: {status}; log:\n{run_log}");
    assert!(!out.join("runtime.pid").exists(), "the pid file is removed at exit");
    let r = runtime_cmd(&["rollback", "--config", cfg]);
    assert!(!r.status.success() && text(&r.stderr).contains("runtime.pid"), "no line running: {}", text(&r.stderr));
    // A pid file left by a killed run that names another program, or pid 1: refused, nothing
    // signalled.
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(out.join("runtime.pid"), format!("{}\n", sleeper.id())).unwrap();
    let r = runtime_cmd(&["reload", "--config", cfg]);
    assert!(!r.status.success() && text(&r.stderr).contains("not a runtime"), "{}", text(&r.stderr));
    assert!(sleeper.try_wait().unwrap().is_none(), "the other process was not signalled");
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
    std::fs::write(out.join("runtime.pid"), "1\n").unwrap();
    let r = runtime_cmd(&["rollback", "--config", cfg]);
    assert!(!r.status.success() && text(&r.stderr).contains("expected a process id above 1"), "{}", text(&r.stderr));

    // systemd saw READY=1 first, watchdog pings every <= 0.3 s (half of 0.6 s) while frames
    // flowed, and STOPPING=1 last.
    let msgs = messages.lock().unwrap().clone();
    assert_eq!(msgs.first().map(|m| m.1.as_str()), Some("READY=1"), "{msgs:?}");
    assert_eq!(msgs.last().map(|m| m.1.as_str()), Some("STOPPING=1"), "{msgs:?}");
    let pings: Vec<Duration> = msgs.iter().filter(|m| m.1 == "WATCHDOG=1").map(|m| m.0).collect();
    assert!(pings.len() >= 5, "{msgs:?}");
    let worst_gap = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(worst_gap < Duration::from_millis(600), "a gap of {worst_gap:?} between watchdog pings on a live line (WatchdogSec 0.6 s): systemd would have restarted it");

    // models.jsonl: the whole story, in order.
    let changes: Vec<serde_json::Value> = std::fs::read_to_string(out.join("models.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let story: Vec<(String, String)> = changes.iter().map(|v| (v["action"].as_str().unwrap().to_string(), v["model"].as_str().unwrap().to_string())).collect();
    let want: Vec<(String, String)> = [("start", &label_a), ("unchanged", &label_a), ("swap", &label_b), ("unchanged", &label_b), ("refused", &label_b), ("refused", &label_b), ("rollback", &label_a)]
        .iter()
        .map(|(a, m)| (a.to_string(), m.to_string()))
        .collect();
    assert_eq!(story, want, "{run_log}");

    // Every judged event names its model: A, then B, then A again, and its verdict is the one
    // that model gives (the bright frames REJECT under both).
    let events = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    let mut models_seen: Vec<String> = Vec::new();
    let mut judged = 0;
    for l in events.lines() {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        if e["verdict"] == "LATE" {
            continue;
        }
        judged += 1;
        let m = e["model"].as_str().unwrap_or_else(|| panic!("an event without a model: {l}")).to_string();
        assert!(m == label_a || m == label_b, "{l}");
        let bright = e["score"].as_f64().unwrap() > 0.7;
        assert_eq!(e["verdict"] == "REJECT", bright, "{l}");
        if models_seen.last() != Some(&m) {
            models_seen.push(m);
        }
    }
    assert_eq!(models_seen, [label_a.clone(), label_b.clone(), label_a.clone()], "model order in events.jsonl");
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let c = &s["counters"];
    assert_eq!((c["model_swaps"].as_u64(), c["swaps_refused"].as_u64(), c["rollbacks"].as_u64()), (Some(1), Some(2), Some(1)), "{s}");
    assert_eq!(s["model_id"].as_str(), Some(label_a.as_str()), "{s}");
    assert!(s["health"]["ready_transitions"].as_u64().unwrap() >= 1, "{s}");
    assert!(run_log.contains("line ready"), "{run_log}");
    let swap_ms: Vec<f64> = changes.iter().filter(|v| v["action"] == "swap" || v["action"] == "rollback").map(|v| v["switch_ms"].as_f64().unwrap()).collect();
    println!("SWAP: {judged} judged frames; models {:?}; switch (frames waited) {swap_ms:.3?} ms; check beside the line {:?} ms; {} watchdog pings, worst gap {worst_gap:?}", models_seen, changes.iter().filter_map(|v| v["check_ms"].as_f64()).collect::<Vec<_>>(), pings.len());
}
