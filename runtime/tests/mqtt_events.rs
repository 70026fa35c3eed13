//! MQTT events of `runtime run` against a real broker (issue 17, item 3): Debian's mosquitto,
//! started by these tests on a free loopback port (`scripts/install.sh` installs it).
//! - While the broker is up, every event arrives on `<prefix>/verdict` in order, equal to its line
//!   in `events.jsonl`, and the retained status says `online`, then `stopped`.
//! - The broker hangs (SIGSTOP), is killed (SIGKILL: no goodbye) and restarted mid-run: no REJECT
//!   event is lost, not even those written to it and never acknowledged.
//! - A run without any broker spools its REJECTs to disk; the next run sends them first.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

mod common;
use serde_json::Value;

const PREFIX: &str = "ffcad/test";
const W: u32 = 64;
const H: u32 = 48;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn mosquitto() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" }
}

/// Starts mosquitto on `port` with a persistence file in `dir`, saved every second, so the plant
/// subscriber's session (its subscription) survives even a killed broker.
fn start_broker(dir: &Path, port: u16) -> Child {
    broker_with(dir, &format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\n", dir.display()), port)
}

/// Starts mosquitto with the configuration `conf`; returns once `port` listens.
fn broker_with(dir: &Path, conf_text: &str, port: u16) -> Child {
    let conf = dir.join("mosquitto.conf");
    // Started as root, mosquitto would drop to user `mosquitto`, which cannot read the test's
    // private temporary folder (persistence, keys); as any other user this line does nothing.
    std::fs::write(&conf, format!("user root\n{conf_text}")).unwrap();
    let log = dir.join("mosquitto.log");
    let child = common::dies_with_test(Command::new(mosquitto()).arg("-c").arg(&conf)).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().expect("mosquitto (Debian package `mosquitto`; scripts/install.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not listen on port {port}: {}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
}

/// The plant's side: a QoS 1 subscriber to `<prefix>/#` with a persistent session, recording
/// (topic, JSON) in arrival order.
struct Plant {
    received: Arc<Mutex<Vec<(String, Value)>>>,
    done: Arc<AtomicBool>,
    client: Client,
    thread: std::thread::JoinHandle<()>,
}

impl Plant {
    fn subscribe(port: u16) -> Self {
        let mut opts = MqttOptions::new("plant-scada", "127.0.0.1", port);
        opts.set_clean_session(false);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut conn) = Client::new(opts, 64);
        let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let (r2, c2, d2) = (received.clone(), client.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => c2.try_subscribe(format!("{PREFIX}/#"), QoS::AtLeastOnce).unwrap(),
                    Ok(Event::Incoming(Packet::Publish(p))) => r2.lock().unwrap().push((p.topic.clone(), serde_json::from_slice(&p.payload).unwrap_or(Value::Null))),
                    Ok(_) => {}
                    Err(_) if d2.load(Ordering::SeqCst) => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        Self { received, done, client, thread }
    }

    fn on(&self, topic: &str) -> Vec<Value> {
        let topic = format!("{PREFIX}/{topic}");
        self.received.lock().unwrap().iter().filter(|(t, _)| *t == topic).map(|(_, v)| v.clone()).collect()
    }

    fn wait_for(&self, what: &str, log: &Path, ok: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok(self) {
            assert!(Instant::now() < deadline, "{what} within 30 s; runtime log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn close(self) -> Vec<(String, Value)> {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.client.try_disconnect();
        drop(self.client);
        self.thread.join().unwrap();
        Arc::try_unwrap(self.received).unwrap().into_inner().unwrap()
    }
}

/// A replay of `frames` flat frames, every fifth bright (REJECT under the brightness model), and
/// a device file that publishes to the broker on `port`.
fn line_files(dir: &Path, port: u16, frames: u32, fps: u32) -> PathBuf {
    line_files_with(dir, port, frames, fps, "")
}

/// As [`line_files`], with `extra` appended to the `[mqtt]` section.
fn line_files_with(dir: &Path, port: u16, frames: u32, fps: u32, extra: &str) -> PathBuf {
    common::write_replay(dir, frames, W, H);
    let config = dir.join("device.toml");
    std::fs::write(
        &config,
        format!(
            "[camera]\nsource = \"replay\"\nreplay_dir = {:?}\nreplay_loop = true\nfps = {fps}\n\n[model]\npath = {:?}\n\n[reject]\nbackend = \"simulated\"\ndelay_ms = 100\n\n[output]\ndir = {:?}\noverlays = \"none\"\n\n[mqtt]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\ntopic_prefix = \"{PREFIX}\"\nclient_id = \"line-under-test\"\n{extra}",
            dir.join("replay"),
            dir.join("model.onnx"),
            dir.join("out")
        ),
    )
    .unwrap();
    config
}

fn start_line(config: &Path, log: &Path, max_frames: Option<u64>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runtime"));
    common::dies_with_test(&mut cmd);
    cmd.args(["run", "--config", config.to_str().unwrap()]);
    if let Some(n) = max_frames {
        cmd.args(["--max-frames", &n.to_string()]);
    }
    cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(log).unwrap()).spawn().unwrap()
}

/// Stops the line with SIGTERM; its stdout (the summary) after a clean exit.
fn stop_line(run: Child) -> String {
    signal(&run, libc::SIGTERM);
    finish(run)
}

fn finish(run: Child) -> String {
    let out = run.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    stdout
}

fn events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("out/events.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The `mqtt` line of the run summary as (delivered, spooled, spool_sent, dropped, connects).
fn summary_counts(stdout: &str) -> [u64; 5] {
    let line = stdout.lines().find(|l| l.starts_with("mqtt")).unwrap_or_else(|| panic!("no mqtt line in the summary:\n{stdout}"));
    let numbers: Vec<u64> = line.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
    numbers.try_into().unwrap_or_else(|_| panic!("five counts expected: {line}"))
}

#[test]
fn every_event_arrives_in_order_and_no_reject_is_lost_when_the_broker_is_killed() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let port = free_port();
    let broker = start_broker(dir, port);
    let plant = Plant::subscribe(port);
    plant.wait_for("the subscriber connected", Path::new("/dev/null"), |p| p.client.try_publish(format!("{PREFIX}/probe"), QoS::AtLeastOnce, false, "{}").is_ok() && !p.on("probe").is_empty());
    // The broker saves the subscription within a second (autosave_interval 1).
    std::thread::sleep(Duration::from_millis(1500));
    // With the web view: its /metrics shows the publisher's counters.
    let config = line_files_with(dir, port, 30, 50, "\n[web]\nenabled = true\nport = 0\n");
    let log = dir.join("run.log");
    let run = start_line(&config, &log, None);
    let web = common::web_address(&log);
    plant.wait_for("30 events from the line", &log, |p| p.on("verdict").len() >= 30);

    // Up to here nothing was lost: the first 30 messages are the first 30 lines of events.jsonl.
    let first: Vec<Value> = plant.on("verdict")[..30].to_vec();

    // The broker hangs for 1 s (it reads nothing and acknowledges nothing: the line's last
    // events are written but unacknowledged), then dies without a word, and is back 2 s later.
    signal(&broker, libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(1));
    signal(&broker, libc::SIGKILL);
    let mut broker = broker;
    broker.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let broker = start_broker(dir, port);
    let after = plant.on("verdict").len();
    plant.wait_for("50 more events after the broker came back", &log, |p| p.on("verdict").len() >= after + 50);
    // /metrics while the line runs: two connects, connected now, the outage's REJECTs spooled
    // and (within a few acknowledgements) all sent since.
    let deadline = Instant::now() + Duration::from_secs(10);
    let live = loop {
        let m = common::scrape(&web);
        let get = |n: &str| common::sample(&m, n, None).unwrap_or_else(|| panic!("no {n} in /metrics"));
        let live = [get("ffcad_mqtt_messages_delivered_total"), get("ffcad_mqtt_events_spooled_total"), get("ffcad_mqtt_spooled_events_sent_total"), get("ffcad_mqtt_messages_dropped_total"), get("ffcad_mqtt_connects_total"), get("ffcad_mqtt_connected")];
        if live[1] == live[2] || Instant::now() > deadline {
            break live;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = stop_line(run);
    std::thread::sleep(Duration::from_millis(300));
    let got = plant.close();
    signal(&broker, libc::SIGTERM);

    let events = events(dir);
    assert_eq!(first, events[..30].to_vec(), "the first 30 events, in order, with the fields of events.jsonl");
    let verdicts: Vec<&Value> = got.iter().filter(|(t, _)| *t == format!("{PREFIX}/verdict")).map(|(_, v)| v).collect();
    let got_rejects: BTreeSet<u64> = verdicts.iter().filter(|v| v["verdict"] == "REJECT").map(|v| v["frame_id"].as_u64().unwrap()).collect();
    let rejects: Vec<u64> = events.iter().filter(|e| e["verdict"] == "REJECT").map(|e| e["frame_id"].as_u64().unwrap()).collect();
    let lost: Vec<&u64> = rejects.iter().filter(|f| !got_rejects.contains(f)).collect();
    assert!(lost.is_empty(), "{} of {} REJECT events never reached the broker: {lost:?}\n{stdout}", lost.len(), rejects.len());
    // Every message is one of the events, unchanged.
    let by_frame: std::collections::HashMap<u64, &Value> = events.iter().map(|e| (e["frame_id"].as_u64().unwrap(), e)).collect();
    for v in &verdicts {
        assert_eq!(Some(v), by_frame.get(&v["frame_id"].as_u64().unwrap()), "a message that is not its events.jsonl line");
    }
    let [delivered, spooled, spool_sent, dropped, connects] = summary_counts(&stdout);
    assert_eq!(connects, 2, "{stdout}");
    let [m_delivered, m_spooled, m_spool_sent, m_dropped, m_connects, m_connected] = live;
    assert_eq!((m_connects, m_connected), (2.0, 1.0), "/metrics: connects and connected while the line ran");
    assert!(m_spooled > 0.0 && m_spool_sent == m_spooled, "/metrics: {m_spooled} spooled, {m_spool_sent} of them sent");
    assert!(m_delivered >= 80.0 && m_delivered <= delivered as f64 && m_dropped > 0.0 && m_dropped <= dropped as f64, "/metrics {live:?} against the summary: {stdout}");
    assert!(spooled > 0 && spool_sent == spooled, "REJECTs spooled while the broker was away, all sent later: {stdout}");
    // What the line did not deliver it counted: OK events of the outage.
    assert!(dropped > 0 && delivered + dropped >= events.len() as u64, "delivered {delivered} + dropped {dropped} < {} events", events.len());
    let statuses: Vec<String> = got.iter().filter(|(t, _)| *t == format!("{PREFIX}/status")).map(|(_, v)| v["state"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(statuses.first().map(String::as_str), Some("online"), "{statuses:?}");
    assert_eq!(statuses.last().map(String::as_str), Some("stopped"), "{statuses:?}");
    println!("{} events, {} REJECT all received; {}", events.len(), rejects.len(), stdout.lines().find(|l| l.starts_with("mqtt")).unwrap());
}

#[test]
fn rejects_of_a_run_without_a_broker_are_sent_first_by_the_next_run() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let port = free_port();
    let config = line_files(dir, port, 20, 100);
    let log = dir.join("run.log");

    // No broker at all: 20 frames, 4 REJECTs, all spooled; 16 OK events and the model's start
    // record dropped.
    let stdout = finish(start_line(&config, &log, Some(20)));
    let [delivered, spooled, _, dropped, connects] = summary_counts(&stdout);
    assert_eq!((delivered, spooled, dropped, connects), (0, 4, 16 + 1, 0), "{stdout}");
    let spool = std::fs::read_to_string(dir.join("out/mqtt-spool.jsonl")).unwrap();
    let first_run: Vec<Value> = events(dir);
    let spooled_lines: Vec<Value> = spool.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let first_rejects: Vec<Value> = first_run.iter().filter(|e| e["verdict"] == "REJECT").cloned().collect();
    assert_eq!(spooled_lines, first_rejects, "the spool holds the REJECT lines of events.jsonl, in order");
    // Lines that are not events (an edit by hand, a torn tail) are skipped, never published.
    std::fs::write(dir.join("out/mqtt-spool.jsonl"), format!("{spool}garbage {{{{\n[1,2,3]\n{{\"verdict\": \"REJ")).unwrap();

    // The broker is there for the next run: the spooled REJECTs come first, then the new events.
    let broker = start_broker(dir, port);
    let plant = Plant::subscribe(port);
    plant.wait_for("the subscriber connected", &log, |p| p.client.try_publish(format!("{PREFIX}/probe"), QoS::AtLeastOnce, false, "{}").is_ok() && !p.on("probe").is_empty());
    let stdout = finish(start_line(&config, &log, Some(10)));
    std::thread::sleep(Duration::from_millis(300));
    let got = plant.close();
    signal(&broker, libc::SIGTERM);
    let verdicts: Vec<Value> = got.iter().filter(|(t, _)| *t == format!("{PREFIX}/verdict")).map(|(_, v)| v.clone()).collect();
    assert_eq!(verdicts[..4].to_vec(), first_rejects, "the spooled REJECTs first, in order");
    assert_eq!(verdicts.len(), 4 + 10, "then the 10 events of the second run");
    let [delivered, _, spool_sent, dropped, connects] = summary_counts(&stdout);
    assert_eq!((spool_sent, dropped, connects), (4, 0, 1), "{stdout}");
    assert_eq!(delivered, 4 + 10 + 2 + 1, "4 spooled + 10 events + online and stopped status + the model's start record: {stdout}");
    assert!(!dir.join("out/mqtt-spool.jsonl").exists(), "the spool is emptied once sent");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl (Debian package `openssl`)");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA `<name>-ca.pem` and, signed by it, a certificate for 127.0.0.1 (`<name>-server.pem`,
/// `<name>-server.key`).
fn certificates(dir: &Path, name: &str) {
    let (ca_key, ca, key, csr, cert) = (format!("{name}-ca.key"), format!("{name}-ca.pem"), format!("{name}-server.key"), format!("{name}-server.csr"), format!("{name}-server.pem"));
    openssl(dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", &format!("/CN={name} test CA")]);
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
    std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
    openssl(dir, &["x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial", "-out", &cert, "-days", "2", "-extfile", "san.ext"]);
}

#[test]
fn over_tls_with_a_password_the_events_arrive_and_a_broker_of_another_ca_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    certificates(dir, "plant");
    certificates(dir, "other");
    let out = Command::new("mosquitto_passwd").args(["-b", "-c"]).arg(dir.join("passwd")).args(["line7", "s3cret-pw"]).output().expect("mosquitto_passwd (Debian package `mosquitto`)");
    assert!(out.status.success(), "{out:?}");
    std::fs::write(dir.join("line-password"), "s3cret-pw\n").unwrap();
    // The plant subscribes on a plain loopback listener; the line must use TLS and a password.
    let (plain, tls) = (free_port(), free_port());
    let d = dir.display();
    let broker = broker_with(
        dir,
        &format!("per_listener_settings true\nlistener {plain} 127.0.0.1\nallow_anonymous true\nlistener {tls} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwd\ncafile {d}/plant-ca.pem\ncertfile {d}/plant-server.pem\nkeyfile {d}/plant-server.key\n"),
        tls,
    );
    let plant = Plant::subscribe(plain);
    plant.wait_for("the subscriber connected", Path::new("/dev/null"), |p| p.client.try_publish(format!("{PREFIX}/probe"), QoS::AtLeastOnce, false, "{}").is_ok() && !p.on("probe").is_empty());
    let log = dir.join("run.log");
    let tls_keys = |ca: &str| format!("tls = true\nca_file = \"{d}/{ca}\"\nusername = \"line7\"\npassword_file = \"{d}/line-password\"\n");

    let config = line_files_with(dir, tls, 10, 100, &tls_keys("plant-ca.pem"));
    let stdout = finish(start_line(&config, &log, Some(10)));
    let [delivered, spooled, _, dropped, connects] = summary_counts(&stdout);
    assert_eq!((delivered, spooled, dropped, connects), (10 + 2 + 1, 0, 0, 1), "10 events + online and stopped + the model's start record, over TLS: {stdout}");
    plant.wait_for("the 10 events at the plant", &log, |p| p.on("verdict").len() >= 10);
    let model = plant.on("model");
    assert_eq!((model.len(), model[0]["action"].as_str()), (1, Some("start")), "the models.jsonl line of the start: {model:?}");

    // A broker whose certificate another CA signed: no connection, REJECTs kept in the spool.
    std::fs::create_dir_all(dir.join("other")).unwrap();
    let config = line_files_with(&dir.join("other"), tls, 10, 100, &tls_keys("other-ca.pem"));
    let log2 = dir.join("run-other.log");
    let stdout = finish(start_line(&config, &log2, Some(10)));
    let [delivered, spooled, _, _, connects] = summary_counts(&stdout);
    assert_eq!((delivered, spooled, connects), (0, 2, 0), "{stdout}");
    let text = std::fs::read_to_string(&log2).unwrap();
    assert!(text.contains("not reachable") && text.to_lowercase().contains("certificate"), "the log says why: {text}");

    // A CA file that is not PEM stops the start, naming the key and the file.
    std::fs::write(dir.join("not-a-ca.pem"), "hello\n").unwrap();
    let config = line_files_with(&dir.join("other"), tls, 10, 100, &tls_keys("not-a-ca.pem"));
    let out = Command::new(env!("CARGO_BIN_EXE_runtime")).args(["run", "--config", config.to_str().unwrap(), "--max-frames", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("mqtt.ca_file") && err.contains("not-a-ca.pem"), "{err}");
    assert!(!dir.join("other/out/runtime.pid").exists(), "a failed start leaves no pid file for `runtime reload` to find");
    // `config check` finds it before a start does.
    let out = Command::new(env!("CARGO_BIN_EXE_runtime")).args(["config", "check", config.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("PROBLEM mqtt files") && text.contains("not-a-ca.pem"), "{text}");
    let config = line_files_with(&dir.join("other"), tls, 10, 100, &tls_keys("plant-ca.pem"));
    let out = Command::new(env!("CARGO_BIN_EXE_runtime")).args(["config", "check", config.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("ok      mqtt files") && text.contains("a password, TLS with"), "{text}");
    drop(plant.close());
    signal(&broker, libc::SIGTERM);
}
