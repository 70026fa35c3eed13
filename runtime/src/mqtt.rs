//! MQTT events of `runtime run` (issue 17, item 3; `[mqtt]`, off by default), published with the
//! `rumqttc` client from a thread of its own:
//! - every event, as the JSON line of `events.jsonl`, on `<prefix>/verdict` (QoS `[mqtt].qos`);
//!   drift alarms on `<prefix>/alarm`;
//! - a retained `<prefix>/status`: `{"state": "online", "model": ...}` at each connect,
//!   `"stopped"` at a clean stop, `"offline"` as the broker's last will when the line vanishes.
//!
//! **No REJECT is lost.** The publisher keeps its own ledger instead of trusting the client's
//! queue (which a broker restart without a stored session empties): a REJECT or BAD event (the
//! events that are due a reject pulse) counts as delivered only when the broker has acknowledged
//! it (PUBACK / PUBCOMP; at QoS 0 when it was written to the socket). Events not yet
//! acknowledged when the connection drops, and those that arrive while the broker is away, are
//! appended to `<output.dir>/mqtt-spool.jsonl` (bounded by `[mqtt].spool_mib`; past it a new one
//! is counted as dropped and logged), and sent oldest first after the next connect, also after a
//! restart of the runtime. OK and LATE events are not spooled: while the broker is away they are
//! dropped and counted. Delivery is at least once: an event whose acknowledgement was lost in the
//! outage arrives twice (its `frame_id` and `time_unix_ms` tell the copies apart).
//!
//! **Inspection never waits for the broker.** The line's output thread hands each event over
//! with a non-blocking send on a bounded channel; if that channel is full (the publisher is
//! stuck), a REJECT goes straight to the spool file and anything else is dropped and counted.
//!
//! With `[mqtt].tls` the connection is TLS (rustls on ring: no OpenSSL on the board), the
//! broker's certificate checked against `[mqtt].ca_file` or the system's roots, optionally with a
//! client certificate; with `username` / `password_file` the broker checks a password.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use firmware_config::MqttSection;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use rumqttc::{Connection, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};

use crate::decide::Verdict;
use crate::events::InspectionEvent;

/// Events that may wait between the output thread and the publisher.
const HANDOVER_CAPACITY: usize = 4096;
/// Publishes handed to the client and not yet acknowledged, at most (rumqttc's inflight window).
const INFLIGHT: u16 = 100;
/// Largest message sent, bytes (rumqttc's default is 10 KiB; an event is ~0.4 KiB, a
/// `models.jsonl` record ~0.5 KiB). A spooled line above it is skipped, with a log line.
const MAX_MESSAGE_BYTES: usize = 256 << 10;
/// Wait between connection attempts while the broker is away.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Counts of the publisher, for the run's summary and `/metrics`.
#[derive(Debug, Default, Clone, serde::Serialize, PartialEq, Eq)]
pub struct MqttCounts {
    /// Messages the broker acknowledged (every topic).
    pub delivered: u64,
    /// REJECT / BAD events written to the spool (the broker away, or the hand-over full).
    pub spooled: u64,
    /// Spooled events (of this run or an earlier one) sent and acknowledged after a connect.
    pub spool_sent: u64,
    /// Messages not sent: OK / LATE events, alarms and model records while the broker was away,
    /// REJECT / BAD events past the spool's cap.
    pub dropped: u64,
    /// Successful connects (the first one included).
    pub connects: u64,
}

/// The publisher's counters, live: `/metrics` of the web view exposes them
/// (`ffcad_mqtt_*`), and [`MqttPublisher::stop`] reads them for the run's summary. Clones share
/// the counters.
#[derive(Debug, Clone, Default)]
pub struct MqttMetrics {
    /// Messages the broker acknowledged (every topic).
    pub delivered: Counter,
    /// REJECT / BAD events written to the spool file.
    pub spooled: Counter,
    /// Spooled events (of this run or an earlier one) acknowledged after a connect.
    pub spool_sent: Counter,
    /// Messages not sent: OK / LATE events and model records while the broker was away,
    /// REJECT / BAD events past the spool's cap.
    pub dropped: Counter,
    /// Successful connects.
    pub connects: Counter,
    /// 1 while connected to the broker.
    pub connected: Gauge,
}

impl MqttMetrics {
    /// Registers the counters in `registry` as `mqtt_*` (Prometheus conventions).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register("mqtt_messages_delivered", "MQTT messages the broker acknowledged (every topic)", self.delivered.clone());
        registry.register("mqtt_events_spooled", "REJECT / BAD events written to the MQTT spool file while the broker was away", self.spooled.clone());
        registry.register("mqtt_spooled_events_sent", "Spooled REJECT / BAD events (of this run or an earlier one) the broker acknowledged after a connect", self.spool_sent.clone());
        registry.register("mqtt_messages_dropped", "MQTT messages not sent: OK / LATE events, alarms and model records while the broker was away, REJECT / BAD events past the spool's cap", self.dropped.clone());
        registry.register("mqtt_connects", "Successful connects to the MQTT broker", self.connects.clone());
        registry.register("mqtt_connected", "1 while connected to the MQTT broker", self.connected.clone());
    }

    /// The counts now.
    pub fn counts(&self) -> MqttCounts {
        MqttCounts { delivered: self.delivered.get(), spooled: self.spooled.get(), spool_sent: self.spool_sent.get(), dropped: self.dropped.get(), connects: self.connects.get() }
    }
}

/// One message of the ledger.
#[derive(Debug, Clone)]
struct Message {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    /// A REJECT / BAD event: spooled rather than dropped.
    keep: bool,
    /// Came from the spool (counted in `spool_sent` when acknowledged).
    from_spool: bool,
}

/// REJECT / BAD events waiting for the broker, one JSON line each, in the order they happened.
#[derive(Debug)]
struct Spool {
    path: PathBuf,
    cap_bytes: u64,
    metrics: MqttMetrics,
    full_logged: bool,
    /// The file may hold lines (a previous run's, or pushed since the last take): the publisher
    /// looks at it when idle only then, not every 20 ms.
    has_lines: bool,
}

impl Spool {
    fn bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Appends `line` (one JSON line without its `\n`); false when the spool is at its cap or
    /// cannot be written (the reason is logged once per outage).
    fn push(&mut self, line: &[u8]) -> bool {
        if self.bytes() + line.len() as u64 + 1 > self.cap_bytes {
            if !self.full_logged {
                tracing::error!("MQTT spool {} is at its cap ([mqtt].spool_mib): REJECT events from now on are not sent (they stay in events.jsonl)", self.path.display());
                self.full_logged = true;
            }
            self.metrics.dropped.inc();
            return false;
        }
        let mut record = Vec::with_capacity(line.len() + 1);
        record.extend_from_slice(line);
        record.push(b'\n');
        match std::fs::OpenOptions::new().create(true).append(true).open(&self.path).and_then(|mut f| f.write_all(&record)) {
            Ok(()) => {
                self.metrics.spooled.inc();
                self.has_lines = true;
                true
            }
            Err(e) => {
                if !self.full_logged {
                    tracing::error!("MQTT spool {}: {e}; REJECT events from now on are not sent (they stay in events.jsonl)", self.path.display());
                    self.full_logged = true;
                }
                self.metrics.dropped.inc();
                false
            }
        }
    }

    /// Takes every event line, oldest first; the file is removed. Lines that are not an event
    /// (a line cut by a crash, an edit by hand) or too large to send are skipped and counted in
    /// one log line.
    fn take(&mut self) -> Vec<Vec<u8>> {
        if !std::mem::take(&mut self.has_lines) {
            return Vec::new();
        }
        let Ok(bytes) = std::fs::read(&self.path) else { return Vec::new() };
        let _ = std::fs::remove_file(&self.path);
        self.full_logged = false;
        let is_event = |l: &[u8]| l.len() <= MAX_MESSAGE_BYTES && serde_json::from_slice::<serde_json::Value>(l).is_ok_and(|v| v.get("verdict").is_some() && v.get("frame_id").is_some());
        let (events, skipped): (Vec<&[u8]>, Vec<&[u8]>) = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).partition(|l| is_event(l));
        if !skipped.is_empty() {
            tracing::warn!("MQTT spool {}: {} lines that are not events (or over {} KiB) skipped", self.path.display(), skipped.len(), MAX_MESSAGE_BYTES >> 10);
        }
        events.into_iter().map(<[u8]>::to_vec).collect()
    }
}

fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// The broker password: the first line of `[mqtt].password_file` (empty without one).
fn password(cfg: &MqttSection) -> anyhow::Result<String> {
    Ok(match &cfg.password_file {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("mqtt.password_file {}: cannot read the broker password", p.display()))?.lines().next().unwrap_or("").to_string(),
        None => String::new(),
    })
}

/// What `runtime config check` can check of `[mqtt]` without a broker: the password file and
/// the TLS files, read and parsed as `runtime run` does. Returns what will be used.
///
/// # Errors
/// As [`MqttPublisher::start`]: a file that cannot be read or parsed, naming the key and file.
pub fn check_files(cfg: &MqttSection) -> anyhow::Result<String> {
    let mut used = Vec::new();
    if cfg.username.is_some() {
        password(cfg)?;
        used.push("a password".to_string());
    }
    if cfg.tls {
        tls_config(cfg)?;
        used.push(format!("TLS with {}", cfg.ca_file.as_ref().map_or_else(|| "the system's root certificates".to_string(), |p| p.display().to_string())));
    }
    Ok(if used.is_empty() { String::new() } else { format!(" ({})", used.join(", ")) })
}

/// The rustls client configuration of `[mqtt]`: roots from `ca_file` (else the system's), the
/// client certificate and key when given. ring is the crypto provider.
fn tls_config(cfg: &MqttSection) -> anyhow::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = |key: &str, path: &Path| -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let certs = CertificateDer::pem_file_iter(path).and_then(|it| it.collect::<Result<Vec<_>, _>>()).with_context(|| format!("mqtt.{key} {}: expected PEM certificates", path.display()))?;
        anyhow::ensure!(!certs.is_empty(), "mqtt.{key} {}: expected PEM certificates, found none", path.display());
        Ok(certs)
    };
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            for cert in certs("ca_file", path)? {
                roots.add(cert).with_context(|| format!("mqtt.ca_file {}: a certificate rustls cannot use", path.display()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(native.certs);
            anyhow::ensure!(added > 0, "mqtt.tls: no system root certificates found ({:?}); set mqtt.ca_file to the broker's CA", native.errors);
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider())).with_safe_default_protocol_versions().context("mqtt.tls: TLS versions")?.with_root_certificates(roots);
    Ok(match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = certs("client_cert_file", cert)?;
            let private = PrivateKeyDer::from_pem_file(key).with_context(|| format!("mqtt.client_key_file {}: expected a PEM private key", key.display()))?;
            builder.with_client_auth_cert(chain, private).with_context(|| format!("mqtt.client_key_file {}: does not fit mqtt.client_cert_file {}", key.display(), cert.display()))?
        }
        _ => builder.with_no_client_auth(),
    })
}

/// What reaches the publisher thread: an event of the line, or one of the client's event loop.
enum Input {
    Line(Message),
    Net(Result<Event, String>),
}

/// The line's MQTT publisher: [`MqttPublisher::publish_event`] from the output thread; a thread
/// that keeps the ledger, and one that runs the client's event loop (never cancelled mid-packet).
pub struct MqttPublisher {
    prefix: String,
    handover: SyncSender<Input>,
    spool: Arc<Mutex<Spool>>,
    metrics: MqttMetrics,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl MqttPublisher {
    /// Starts the publisher for `cfg`; `model` (the [`crate::infer::ModelId`] text) goes into the
    /// status message; the counters go to `metrics`. The connect happens in the background: a
    /// broker that is away is not an error (events are spooled until it comes), and events a
    /// previous run spooled are sent first once it is there.
    ///
    /// # Errors
    /// `[mqtt].password_file`, `ca_file`, `client_cert_file` or `client_key_file` cannot be read
    /// or holds no usable PEM certificate / key (the error names the key and file), or a thread
    /// cannot be started.
    pub fn start(cfg: &MqttSection, out_dir: &Path, model: &str, metrics: MqttMetrics) -> anyhow::Result<Arc<Self>> {
        let prefix = cfg.topic_prefix.trim_end_matches('/').to_string();
        let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
        opts.set_keep_alive(Duration::from_secs(u64::from(cfg.keepalive_s)));
        // A clean session: the ledger, not the broker's session store, decides what is resent.
        opts.set_clean_session(true);
        opts.set_inflight(INFLIGHT);
        opts.set_max_packet_size(MAX_MESSAGE_BYTES + 1024, MAX_MESSAGE_BYTES + 1024);
        opts.set_last_will(LastWill::new(format!("{prefix}/status"), serde_json::json!({"state": "offline", "model": model}).to_string(), QoS::AtLeastOnce, true));
        if let Some(user) = &cfg.username {
            opts.set_credentials(user.clone(), password(cfg)?);
        }
        if cfg.tls {
            opts.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(Arc::new(tls_config(cfg)?))));
        }
        // Room for a whole inflight window plus the status and disconnect requests.
        let (client, connection) = rumqttc::Client::new(opts, usize::from(INFLIGHT) + 8);
        let path = out_dir.join("mqtt-spool.jsonl");
        let has_lines = path.exists();
        let spool = Arc::new(Mutex::new(Spool { path, cap_bytes: u64::from(cfg.spool_mib) << 20, metrics: metrics.clone(), full_logged: false, has_lines }));
        let (handover, inputs) = std::sync::mpsc::sync_channel(HANDOVER_CAPACITY);
        let stop = Arc::new(AtomicBool::new(false));
        let (net_tx, net_stop) = (handover.clone(), Arc::clone(&stop));
        std::thread::Builder::new().name("mqtt-net".into()).spawn(move || event_loop(connection, &net_tx, &net_stop))?;
        let mut ledger = Ledger {
            client,
            qos: qos(cfg.qos),
            prefix: prefix.clone(),
            status: serde_json::json!({"state": "online", "model": model}).to_string().into_bytes(),
            endpoint: format!("{}:{}", cfg.host, cfg.port),
            spool: Arc::clone(&spool),
            connected: false,
            attempted: false,
            outbox: VecDeque::new(),
            unacked: VecDeque::new(),
            metrics: metrics.clone(),
            last_warning: None,
        };
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name("mqtt".into()).spawn(move || {
            ledger.run(&inputs, &stop2);
        })?;
        Ok(Arc::new(Self { prefix, handover, spool, metrics, stop, thread: Mutex::new(Some(thread)) }))
    }

    /// Queues `ev` for `<prefix>/verdict`. Never blocks on the network; when the publisher
    /// cannot take it, a REJECT / BAD event goes to the spool file and any other is dropped.
    pub fn publish_event(&self, ev: &InspectionEvent) {
        let Ok(payload) = serde_json::to_vec(ev) else { return };
        let keep = matches!(ev.verdict, Verdict::Reject | Verdict::Bad);
        self.send(Message { topic: format!("{}/verdict", self.prefix), payload, retain: false, keep, from_spool: false });
    }

    /// Queues `payload` (JSON) for `<prefix>/<topic>` (drift alarms), not spooled.
    pub fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.send(Message { topic: format!("{}/{topic}", self.prefix), payload, retain: false, keep: false, from_spool: false });
    }

    fn send(&self, m: Message) {
        if let Err(e) = self.handover.try_send(Input::Line(m)) {
            let (std::sync::mpsc::TrySendError::Full(Input::Line(m)) | std::sync::mpsc::TrySendError::Disconnected(Input::Line(m))) = e else { return };
            if m.keep {
                lock(&self.spool).push(&m.payload); // counts it as dropped past the cap
            } else {
                self.metrics.dropped.inc();
            }
        }
    }

    /// Publishes the retained `stopped` status, waits up to 2 s for what is in flight, spools
    /// the REJECT / BAD events still unacknowledged for the next run, disconnects and returns
    /// the counts.
    pub fn stop(&self) -> MqttCounts {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = thread.join();
        }
        self.metrics.counts()
    }
}

impl std::fmt::Debug for MqttPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttPublisher").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Runs the client's event loop, passing each event on; after an error (the broker away) waits
/// [`RETRY_EVERY`] before the next connect. Ends when the publisher stops (the client dropped
/// or `stop` set).
fn event_loop(mut connection: Connection, to_ledger: &SyncSender<Input>, stop: &AtomicBool) {
    for ev in connection.iter() {
        let failed = ev.is_err();
        if to_ledger.send(Input::Net(ev.map_err(|e| e.to_string()))).is_err() {
            return;
        }
        if failed {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(RETRY_EVERY);
        }
    }
}

/// The publisher thread's state: what is queued, what the broker has not acknowledged yet.
struct Ledger {
    client: rumqttc::Client,
    qos: QoS,
    prefix: String,
    status: Vec<u8>,
    endpoint: String,
    spool: Arc<Mutex<Spool>>,
    connected: bool,
    /// The first connect attempt has an answer.
    attempted: bool,
    /// Messages not yet handed to the client, oldest first.
    outbox: VecDeque<Message>,
    /// Handed to the client in this order; the packet id once written (`None` before), so the
    /// broker's acknowledgement finds its message.
    unacked: VecDeque<(Option<u16>, Message)>,
    metrics: MqttMetrics,
    last_warning: Option<Instant>,
}

impl Ledger {
    fn run(&mut self, inputs: &Receiver<Input>, stop: &AtomicBool) {
        let mut stopping_since: Option<Instant> = None;
        loop {
            match inputs.recv_timeout(Duration::from_millis(20)) {
                // Until the first connect attempt has an answer, events wait (they are not
                // dropped just because the line started a few ms before the broker answered).
                Ok(Input::Line(m)) if self.connected || !self.attempted => self.outbox.push_back(m),
                Ok(Input::Line(m)) => self.offline(m),
                Ok(Input::Net(ev)) => self.network(ev),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            if self.connected && self.outbox.is_empty() && self.unacked.is_empty() {
                // REJECTs the output thread spooled while the hand-over was full.
                self.queue_spool();
            }
            if stop.load(Ordering::SeqCst) && stopping_since.is_none() {
                stopping_since = Some(Instant::now());
                if self.connected {
                    self.outbox.push_back(Message { topic: format!("{}/status", self.prefix), payload: serde_json::json!({"state": "stopped"}).to_string().into_bytes(), retain: true, keep: false, from_spool: false });
                }
            }
            if let Some(since) = stopping_since {
                let drained = self.outbox.is_empty() && self.unacked.is_empty();
                if !self.connected || drained || since.elapsed() > Duration::from_secs(2) {
                    // Events of the line still in the hand-over (the line has ended).
                    while let Ok(input) = inputs.try_recv() {
                        if let Input::Line(m) = input {
                            self.offline(m);
                        }
                    }
                    if self.connected {
                        // A clean DISCONNECT: the broker does not publish the last will.
                        let _ = self.client.try_disconnect();
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    self.connection_lost();
                    return;
                }
            }
            self.hand_over();
        }
    }

    fn network(&mut self, ev: Result<Event, String>) {
        self.attempted = true;
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                self.connected = true;
                self.metrics.connects.inc();
                self.metrics.connected.set(1);
                tracing::info!("MQTT: connected to {}", self.endpoint);
                self.queue_spool();
                self.outbox.push_front(Message { topic: format!("{}/status", self.prefix), payload: self.status.clone(), retain: true, keep: false, from_spool: false });
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                // Publishes are written in the order they were handed over.
                if let Some(i) = self.unacked.iter().position(|(id, _)| id.is_none()) {
                    if self.qos == QoS::AtMostOnce && !self.unacked[i].1.retain {
                        let (_, m) = self.unacked.remove(i).expect("index from position");
                        self.delivered(&m);
                    } else {
                        self.unacked[i].0 = Some(pkid);
                    }
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => self.acknowledged(ack.pkid),
            Ok(Event::Incoming(Packet::PubComp(ack))) => self.acknowledged(ack.pkid),
            Ok(_) => {}
            Err(e) => {
                if self.connected || self.last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!("MQTT: broker {} not reachable ({e}); REJECT events are spooled to disk until it is back", self.endpoint);
                    self.last_warning = Some(Instant::now());
                }
                self.connection_lost();
            }
        }
    }

    /// Hands messages to the client while the inflight window has room.
    fn hand_over(&mut self) {
        while self.connected && self.unacked.len() < usize::from(INFLIGHT) {
            let Some(m) = self.outbox.pop_front() else { break };
            // Status messages go at QoS 1 whatever `[mqtt].qos` says: they are retained state.
            let q = if m.retain { QoS::AtLeastOnce } else { self.qos };
            match self.client.try_publish(m.topic.clone(), q, m.retain, m.payload.clone()) {
                Ok(()) => self.unacked.push_back((None, m)),
                Err(_) => {
                    self.outbox.push_front(m);
                    break;
                }
            }
        }
    }

    fn acknowledged(&mut self, pkid: u16) {
        if let Some(i) = self.unacked.iter().position(|(id, _)| *id == Some(pkid)) {
            let (_, m) = self.unacked.remove(i).expect("index from position");
            self.delivered(&m);
        }
    }

    fn delivered(&mut self, m: &Message) {
        self.metrics.delivered.inc();
        if m.from_spool {
            self.metrics.spool_sent.inc();
        }
    }

    /// Spooled events go first, oldest first, ahead of everything queued after them.
    fn queue_spool(&mut self) {
        let lines = lock(&self.spool).take();
        let topic = format!("{}/verdict", self.prefix);
        for payload in lines.into_iter().rev() {
            self.outbox.push_front(Message { topic: topic.clone(), payload, retain: false, keep: true, from_spool: true });
        }
    }

    /// The connection dropped (or the publisher stops): what the broker did not acknowledge goes
    /// to the spool (REJECT / BAD, in their order) or is dropped.
    fn connection_lost(&mut self) {
        self.connected = false;
        self.metrics.connected.set(0);
        let pending: Vec<Message> = self.unacked.drain(..).map(|(_, m)| m).chain(self.outbox.drain(..)).collect();
        for m in pending {
            self.offline(m);
        }
    }

    fn offline(&mut self, m: Message) {
        if m.retain {
            return; // status: sent again at the next connect
        }
        if m.keep {
            lock(&self.spool).push(&m.payload); // counts it as dropped past the cap
        } else {
            self.metrics.dropped.inc();
        }
    }
}
