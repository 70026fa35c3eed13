//! The web view, JSON API and `/metrics` of `runtime run` (issue 17), through the real binary on a
//! looping replay: the token is required on every endpoint, counters and the live frame move,
//! `/metrics` parses with a real Prometheus text parser, events are numbered across restarts, a
//! reject marked false in the gallery lands in the collect folder, a threshold change through the
//! API applies between two frames and is recorded, changes without `allow_changes` are refused,
//! and stalled clients cost the line nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;

const W: u32 = 64;
const H: u32 = 48;
const TOKEN: &str = "s3cret-line-token-2026";

/// One HTTP/1.1 request on a fresh connection: (status, headers lower-cased, body).
fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    http_with(addr, method, path, token, "")
}

/// As [`http`], with a JSON request body.
fn http_with(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a whole HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (st, _, body) = http(addr, "GET", path, Some(TOKEN));
    assert_eq!(st, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn start(config: &Path, log: &Path) -> (Child, SocketAddr) {
    let (child, addr) = common::start_with_web(config, log);
    (child, addr.parse().unwrap())
}

use common::stop;

fn config(dir: &Path, allow_changes: bool) -> std::path::PathBuf {
    let p = dir.join(format!("device-{allow_changes}.toml"));
    std::fs::write(
        &p,
        format!(
            "[camera]\nsource = \"replay\"\nreplay_dir = {:?}\nreplay_loop = true\nfps = 60\n\n[model]\npath = {:?}\n\n[reject]\nbackend = \"simulated\"\n\n[output]\ndir = {:?}\noverlays = \"none\"\nsave_rejects = true\n\n[web]\nenabled = true\nport = 0\ntoken_file = {:?}\nallow_changes = {allow_changes}\nlive_fps = 10\n",
            dir.join("replay"),
            dir.join("model.onnx"),
            dir.join("out"),
            dir.join("token")
        ),
    )
    .unwrap();
    p
}

#[test]
fn the_web_view_api_and_metrics_show_the_running_line_behind_a_token() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    common::write_replay(dir, 30, W, H);
    let label = runtime::infer::ModelId::of(&dir.join("model.onnx"), &std::fs::read(dir.join("model.onnx")).unwrap()).to_string();
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let cfg = config(dir, true);
    let (child, addr) = start(&cfg, &dir.join("run1.log"));

    // Every endpoint refuses a request without the token, /metrics included.
    for (m, p) in [("GET", "/"), ("GET", "/api/status"), ("GET", "/metrics"), ("GET", "/api/live.jpg"), ("GET", "/api/events?since=0"), ("POST", "/api/rejects/1/false"), ("POST", "/api/threshold")] {
        assert_eq!(http(addr, m, p, None).0, 401, "{m} {p} without a token");
        assert_eq!(http(addr, m, p, Some("wrong-token-wrong-token")).0, 401, "{m} {p} with a wrong token");
    }
    let (st, head, page) = http(addr, "GET", &format!("/?token={TOKEN}"), None);
    assert_eq!(st, 200);
    assert!(head.contains("text/html") && String::from_utf8_lossy(&page).contains("/api/status"));

    // Stalled clients: connections that send half a request and never read.
    let stalled: Vec<TcpStream> = (0..16).map(|_| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /api/live.jpg HTTP/1.1\r\nHost: x\r\n").unwrap();
        s
    }).collect();

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s = json(addr, "/api/status");
        if s["counters"]["inspected"].as_u64().unwrap() >= 60 && !s["gallery"].as_array().unwrap().is_empty() {
            break s;
        }
        assert!(Instant::now() < deadline, "the line did not move: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(stalled);
    let c = &status["counters"];
    assert_eq!(status["model"]["model"], label.as_str());
    assert!((status["model"]["threshold"].as_f64().unwrap() - 0.5).abs() < 1e-6);
    assert!(c["ok"].as_u64().unwrap() > 0 && c["reject"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(c["ok"].as_u64().unwrap() + c["reject"].as_u64().unwrap() + c["bad"].as_u64().unwrap() + c["late"].as_u64().unwrap(), c["frames"].as_u64().unwrap());
    assert!(status["frames_per_s"].as_f64().unwrap() > 10.0, "{status}");
    let hist: u64 = status["score_histogram"]["counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).sum();
    assert!(hist > 0);

    // The live frame is a JPEG and changes.
    let (st, head, jpg) = http(addr, "GET", "/api/live.jpg", Some(TOKEN));
    assert_eq!(st, 200);
    assert!(head.contains("content-type: image/jpeg"), "{head}");
    let img = image::load_from_memory_with_format(&jpg, image::ImageFormat::Jpeg).unwrap();
    // The overlay of a small frame is drawn enlarged, same aspect ratio.
    assert!(img.width() >= W && img.width() * H == img.height() * W, "{}x{}", img.width(), img.height());
    let id1: u64 = head.split("x-frame-id: ").nth(1).unwrap().lines().next().unwrap().trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (_, head2, _) = http(addr, "GET", "/api/live.jpg", Some(TOKEN));
    let id2: u64 = head2.split("x-frame-id: ").nth(1).unwrap().lines().next().unwrap().trim().parse().unwrap();
    assert!(id2 > id1, "the live frame moves: {id1} then {id2}");

    // /metrics, parsed by a Prometheus text parser.
    let (st, _, body) = http(addr, "GET", "/metrics", Some(TOKEN));
    assert_eq!(st, 200);
    let text = String::from_utf8(body).unwrap();
    let scrape = common::parse_metrics(&text);
    let value = |name: &str, label: Option<(&str, &str)>| common::sample(&scrape, name, label).unwrap_or_else(|| panic!("no {name} {label:?} in\n{text}"));
    assert!(value("ffcad_frames_total", Some(("verdict", "ok"))) >= c["ok"].as_f64().unwrap());
    assert!(value("ffcad_frames_total", Some(("verdict", "reject"))) >= c["reject"].as_f64().unwrap());
    assert_eq!(value("ffcad_threshold", None), 0.5);
    assert_eq!(value("ffcad_model_info", Some(("model", label.as_str()))), 1.0);
    assert!(value("ffcad_uptime_seconds", None) > 0.0);
    assert!(scrape.samples.iter().any(|s| s.metric == "ffcad_inference_seconds_count" || s.metric == "ffcad_inference_seconds"), "latency histogram");

    // Events by sequence number: since=N gives only later ones, in order.
    let first = json(addr, "/api/events");
    let seqs: Vec<u64> = first.as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "consecutive numbers");
    let last = *seqs.last().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let later = json(addr, &format!("/api/events?since={last}"));
    let later: Vec<u64> = later.as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(!later.is_empty() && later[0] == last + 1, "{later:?} after {last}");

    // A reject in the gallery: its image, then marked false -> the frame is collected.
    let seq = status["gallery"][0]["seq"].as_u64().unwrap();
    let (st, _, jpg) = http(addr, "GET", &format!("/api/rejects/{seq}.jpg"), Some(TOKEN));
    assert_eq!(st, 200);
    image::load_from_memory_with_format(&jpg, image::ImageFormat::Jpeg).unwrap();
    let (st, _, body) = http(addr, "POST", &format!("/api/rejects/{seq}/false"), Some(TOKEN));
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let collected: Vec<_> = std::fs::read_dir(dir.join("out/collected/train/good")).unwrap().collect();
    assert_eq!(collected.len(), 1);
    let op = std::fs::read_to_string(dir.join("out/operator.jsonl")).unwrap();
    let op: serde_json::Value = serde_json::from_str(op.lines().next().unwrap()).unwrap();
    assert_eq!((op["action"].as_str(), op["seq"].as_u64()), (Some("false_reject"), Some(seq)));
    let s = json(addr, "/api/status");
    assert!(s["gallery"].as_array().unwrap().iter().any(|g| g["seq"] == seq && g["marked_false"] == true));

    // A threshold change: bad values refused (400), a good one applies between two frames; the
    // bright frames (score ~0.86) pass under 0.95. models.jsonl says after which frame,
    // operator.jsonl who asked; the page's threshold follows.
    for bad in ["{\"threshold\": -1}", "{\"threshold\": 0}", "{\"threshold\": \"high\"}", "0.9", "", "[0.5]", "{\"threshold\": 0.5, \"x\": 1}", "{\"threshold\": 1e39}"] {
        let (st, _, body) = http_with(addr, "POST", "/api/threshold", Some(TOKEN), bad);
        assert_eq!(st, 400, "{bad:?}: {}", String::from_utf8_lossy(&body));
    }
    // A form post (what a browser may send cross-origin without asking) is not JSON: 415.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let form = "{\"threshold\": 0.9}";
    write!(s, "POST /api/threshold HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}", form.len()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 415"), "{raw}");
    let (st, _, body) = http_with(addr, "POST", "/api/threshold", Some(TOKEN), "{\"threshold\": 0.95}");
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&body));
    let deadline = Instant::now() + Duration::from_secs(30);
    while (json(addr, "/api/status")["model"]["threshold"].as_f64().unwrap() - 0.95).abs() > 1e-6 {
        assert!(Instant::now() < deadline, "the page shows the new threshold");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let change = std::fs::read_to_string(dir.join("out/models.jsonl")).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).find(|c| c["action"] == "threshold").expect("a threshold line in models.jsonl");
    assert_eq!((change["previous"].as_str(), change["threshold"].as_f64()), (Some("threshold 0.5"), Some(0.95)), "{change}");
    let after = change["after_frame"].as_u64().unwrap();
    let events: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("out/events.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (before, since): (Vec<_>, Vec<_>) = events.iter().filter(|e| e["verdict"] != "LATE").partition(|e| e["frame_id"].as_u64().unwrap() <= after);
    assert!(before.iter().all(|e| e["threshold"].as_f64() == Some(0.5)), "frames up to {after} judged by 0.5");
    assert!(since.len() >= 10 && since.iter().all(|e| e["threshold"].as_f64() == Some(0.95) && e["verdict"] == "OK"), "frames after {after} judged by 0.95, all OK");
    let op = std::fs::read_to_string(dir.join("out/operator.jsonl")).unwrap();
    let op: serde_json::Value = serde_json::from_str(op.lines().last().unwrap()).unwrap();
    assert_eq!((op["action"].as_str(), op["to"].as_f64()), (Some("threshold"), Some(0.95)), "{op}");
    assert!(op["by"].as_str().unwrap().contains("127.0.0.1"), "{op}");
    let last_run1 = json(addr, "/api/status")["last_seq"].as_u64().unwrap();
    stop(child);

    // Run 2 on the same folder, changes off: refused; numbers go on from run 1's.
    let cfg2 = config(dir, false);
    let (child, addr) = start(&cfg2, &dir.join("run2.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let (ev, s) = loop {
        let s = json(addr, "/api/status");
        if !s["gallery"].as_array().unwrap().is_empty() {
            break (json(addr, "/api/events"), s);
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    };
    let first_run2 = ev[0]["seq"].as_u64().unwrap();
    assert!(first_run2 > last_run1, "run 2 numbers from {first_run2}, run 1 ended at {last_run1}");
    let seq = s["gallery"][0]["seq"].as_u64().unwrap();
    let (st, _, body) = http(addr, "POST", &format!("/api/rejects/{seq}/false"), Some(TOKEN));
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&body));
    let (st, _, body) = http_with(addr, "POST", "/api/threshold", Some(TOKEN), "{\"threshold\": 0.7}");
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&body));
    stop(child);
    println!("WEB: run 1 {} frames judged at {:.0} frames/s seen by the page; events {first_run2}.. after {last_run1}; live frames {id1} -> {id2}", c["inspected"], status["frames_per_s"].as_f64().unwrap());
}

#[test]
fn the_web_view_is_refused_open_to_the_network_without_a_token() {
    let work = tempfile::tempdir().unwrap();
    let p = work.path().join("d.toml");
    std::fs::write(&p, "[web]\nenabled = true\nbind = \"0.0.0.0\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runtime")).args(["config", "check", p.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("web.token_file"), "{err}");
    std::fs::write(&p, "[web]\nenabled = true\nallow_changes = true\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runtime")).args(["config", "check", p.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("web.allow_changes"), "{err}");
}
