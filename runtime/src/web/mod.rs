//! The web view of `runtime run` (issue 17; `[web]` in the device file, off by default): a page
//! with the live frame and its overlay, counters, latency, the score histogram against the
//! threshold and a gallery of recent rejects; a JSON API behind it; Prometheus metrics at
//! `/metrics`. Served by axum on a single-threaded tokio runtime in its own thread; the page and
//! its script are embedded in the binary (no CDN, no build step).
//!
//! Endpoints (all `GET` unless said):
//! - `/` the page;
//! - `/api/status` counters, latency p50/p95, frames/s, uptime, model, threshold and its
//!   calibration, score histogram, gallery list ([`live::LiveView::status`]);
//! - `/api/events?since=N` events with a sequence number above N (at most 500), numbers that
//!   keep growing across restarts (they continue from `state.json`'s frame count);
//! - `/api/live.jpg` the latest frame drawn with its overlay (headers `X-Frame-Id`, `X-Verdict`,
//!   `X-Score`); the page fetches it `live_fps` times a second, apart from the status;
//! - `/api/rejects/<seq>.jpg` a gallery image;
//! - `POST /api/rejects/<seq>/false` marks a reject as a false reject: its saved frame
//!   (`[output] save_rejects`) is copied to `<output.dir>/collected/train/good/` for the next
//!   retraining, and the mark is a line of `<output.dir>/operator.jsonl`;
//! - `POST /api/threshold` with `{"threshold": <image score>}` (`Content-Type: application/json`,
//!   else 415) judges the next frames by it
//!   (202; the line applies it between two frames like a model swap, `models.jsonl` records the
//!   frame, `operator.jsonl` who asked, the log a WARNING); 400 for a value that is not a finite
//!   score of at least 1e-6. Until the next swap or restart: `[model].threshold` is what lasts;
//! - `/metrics` Prometheus text exposition.
//!
//! Security: binds 127.0.0.1 unless told otherwise; another address needs `[web].token_file`,
//! and with a token every request (page, API, `/metrics`) must carry it (`Authorization: Bearer
//! <token>` or `?token=`), else 401. Changes need the token and `[web].allow_changes = true`,
//! else 403. The inference path never waits for a browser ([`live`]).

pub mod live;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{ConnectInfo, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use firmware_config::WebSection;

use crate::line::swap::LineControl;

pub use live::{LiveView, ModelView};

/// The page, embedded.
const PAGE: &str = include_str!("page.html");

/// What the handlers share.
#[derive(Clone)]
struct App {
    view: Arc<LiveView>,
    token: Option<Arc<str>>,
    allow_changes: bool,
    out_dir: PathBuf,
    /// To the line's inference thread (threshold changes).
    controls: SyncSender<LineControl>,
}

/// A running web server; dropping it (or [`WebServer::stop`]) shuts it down.
pub struct WebServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the server thread.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

/// Reads the token: the first line of `path`, at least 16 characters.
///
/// # Errors
/// The file cannot be read, or the token is shorter than 16 characters (names the file).
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("web.token_file {}: cannot read it", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    anyhow::ensure!(token.len() >= 16, "web.token_file {}: expected a token of at least 16 characters on its first line", path.display());
    Ok(token)
}

/// Binds `cfg.bind:cfg.port` now (a port in use is an error at start, not later) and serves
/// `view` on a thread of its own until the returned server is stopped.
///
/// # Errors
/// The address cannot be bound (port in use, no such address), the token file is unreadable.
pub fn serve(cfg: &WebSection, view: Arc<LiveView>, out_dir: &Path, controls: SyncSender<LineControl>) -> anyhow::Result<WebServer> {
    let token = cfg.token_file.as_deref().map(read_token).transpose()?.map(Arc::from);
    let host = if cfg.bind == "localhost" { "127.0.0.1" } else { cfg.bind.as_str() };
    let listener = std::net::TcpListener::bind((host, cfg.port)).with_context(|| format!("web view: cannot listen on {}:{} ([web].bind, [web].port)", cfg.bind, cfg.port))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let app = App { view, token, allow_changes: cfg.allow_changes, out_dir: out_dir.to_path_buf(), controls };
    let router = Router::new()
        .route("/", get(page))
        .route("/api/status", get(status))
        .route("/api/events", get(events))
        .route("/api/live.jpg", get(live_jpeg))
        .route("/api/rejects/{file}", get(reject_jpeg))
        .route("/api/rejects/{seq}/false", post(mark_false))
        .route("/api/threshold", post(set_threshold))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(app.clone(), require_token))
        .with_state(app);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let thread = std::thread::Builder::new().name("web".into()).spawn(move || {
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!("web view: {e}");
                    return;
                }
            };
            let server = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!("web view stopped: {e}");
            }
        });
    })?;
    tracing::info!("web view on http://{addr}/ (metrics at /metrics)");
    Ok(WebServer { addr, shutdown: Some(tx), thread: Some(thread) })
}

/// Constant-time comparison of the token (no early exit on the first differing byte).
fn token_matches(given: &str, want: &str) -> bool {
    given.len() == want.len() && given.bytes().zip(want.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The token of an `Authorization: Bearer <token>` value; the scheme name is case-insensitive
/// (RFC 7235 §2.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

/// 401 for a request without the token when one is configured.
async fn require_token(State(app): State<App>, req: Request, next: Next) -> Response {
    let Some(want) = app.token.as_deref() else { return next.run(req).await };
    let bearer = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token).map(str::to_string);
    let query = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")).map(str::to_string));
    match bearer.or(query) {
        Some(t) if token_matches(&t, want) => next.run(req).await,
        _ => (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "a token is required: Authorization: Bearer <token>, or ?token=<token> in the page's URL\n").into_response(),
    }
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn status(State(app): State<App>) -> Response {
    axum::Json(app.view.status()).into_response()
}

#[derive(serde::Deserialize)]
struct Since {
    since: Option<u64>,
}

async fn events(State(app): State<App>, Query(q): Query<Since>) -> Response {
    let list: Vec<serde_json::Value> = app.view.events_since(q.since).into_iter().map(|(seq, ev)| serde_json::json!({"seq": seq, "event": ev})).collect();
    axum::Json(list).into_response()
}

fn jpeg(bytes: Arc<[u8]>, frame_id: u64) -> Response {
    let mut r = (StatusCode::OK, bytes.to_vec()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&frame_id.to_string()) {
        h.insert("x-frame-id", v);
    }
    r
}

async fn live_jpeg(State(app): State<App>) -> Response {
    match app.view.live() {
        Some(l) => {
            // The page shows verdict and score with the image, from the same response.
            let mut r = jpeg(l.jpeg, l.frame_id);
            let verdict = serde_json::to_value(l.verdict).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
            if let Ok(v) = HeaderValue::from_str(&verdict) {
                r.headers_mut().insert("x-verdict", v);
            }
            if let Some(Ok(v)) = l.score.map(|s| HeaderValue::from_str(&s.to_string())) {
                r.headers_mut().insert("x-score", v);
            }
            r
        }
        None => (StatusCode::NOT_FOUND, "no frame yet\n").into_response(),
    }
}

async fn reject_jpeg(State(app): State<App>, UrlPath(file): UrlPath<String>) -> Response {
    let item = file.strip_suffix(".jpg").and_then(|s| s.parse::<u64>().ok()).and_then(|seq| app.view.gallery_item(seq));
    match item.and_then(|i| i.jpeg.map(|j| (j, i.event.frame_id))) {
        Some((j, id)) => jpeg(j, id),
        None => (StatusCode::NOT_FOUND, "no such reject in the gallery (it keeps the last [web].gallery)\n").into_response(),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.view.metrics_text()).into_response()
}

/// 403 unless the token is set and `[web].allow_changes` is on.
fn changes_refused(app: &App) -> Option<Response> {
    (!app.allow_changes || app.token.is_none()).then(|| (StatusCode::FORBIDDEN, "changes are off: set [web].token_file and [web].allow_changes = true\n").into_response())
}

/// Appends one JSON line to `<output.dir>/operator.jsonl`, the record of what operators did
/// through the web view.
fn operator_record(out_dir: &Path, line: &impl serde::Serialize) -> std::io::Result<()> {
    use std::io::Write;
    let line = serde_json::to_string(line).map_err(std::io::Error::other)? + "\n";
    std::fs::OpenOptions::new().create(true).append(true).open(out_dir.join("operator.jsonl"))?.write_all(line.as_bytes())
}

/// A threshold change in `operator.jsonl` (a struct, so f32 values print as they were given).
/// The threshold it replaced is in the `models.jsonl` record of the frame it applied at: with
/// several requests in flight, only the line knows which came first.
#[derive(serde::Serialize)]
struct ThresholdRecord {
    time_unix_ms: u128,
    action: &'static str,
    to: f32,
    by: String,
}

/// The body of `POST /api/threshold`: a JSON object `{"threshold": <number>}` and nothing else.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdChange {
    threshold: f32,
}

/// The threshold of a `POST /api/threshold` body, or why it is refused (400).
fn threshold_of(body: &[u8]) -> Result<f32, String> {
    const EXPECTED: &str = "expected a JSON body {\"threshold\": <image score>}";
    // An object only: serde would also take a one-element array for the struct.
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("{EXPECTED}: {e}"))?;
    if !value.is_object() {
        return Err(format!("{EXPECTED}, got {}", if value.is_array() { "an array" } else { "no object" }));
    }
    let change: ThresholdChange = serde_json::from_value(value).map_err(|e| format!("{EXPECTED}: {e}"))?;
    match firmware_config::threshold_problem(change.threshold) {
        Some(why) => Err(format!("threshold {why}")),
        None => Ok(change.threshold),
    }
}

/// `POST /api/threshold` with `{"threshold": <image score>}`: see the module docs.
async fn set_threshold(State(app): State<App>, ConnectInfo(client): ConnectInfo<SocketAddr>, headers: axum::http::HeaderMap, body: axum::body::Bytes) -> Response {
    if let Some(refused) = changes_refused(&app) {
        return refused;
    }
    // JSON only: the content types a browser may send cross-origin without asking are refused.
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected Content-Type: application/json\n").into_response();
    }
    let value = match threshold_of(&body) {
        Ok(v) => v,
        Err(why) => return (StatusCode::BAD_REQUEST, why + "\n").into_response(),
    };
    let by = format!("web API client {client}");
    if app.controls.try_send(LineControl::Threshold { value, by: by.clone() }).is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the line has another change (model or threshold) waiting, or has stopped; try again\n").into_response();
    }
    let record = ThresholdRecord { time_unix_ms: crate::events::now_unix_ms(), action: "threshold", to: value, by };
    if let Err(e) = operator_record(&app.out_dir, &record) {
        tracing::error!("operator.jsonl: {e}");
    }
    tracing::warn!("web API: threshold change to {value} requested by {client}");
    (StatusCode::ACCEPTED, axum::Json(serde_json::json!({"threshold": value, "applies": "from the next frame; models.jsonl records the frame and the threshold it replaced"}))).into_response()
}

/// `POST /api/rejects/<seq>/false`: see the module docs.
async fn mark_false(State(app): State<App>, UrlPath(seq): UrlPath<u64>) -> Response {
    if let Some(refused) = changes_refused(&app) {
        return refused;
    }
    let Some(item) = app.view.gallery_item(seq) else {
        return (StatusCode::NOT_FOUND, "no such reject in the gallery\n").into_response();
    };
    // The frame the line saved (save_rejects): same name as its overlay, in frames/reject/.
    let saved = item.event.overlay.as_deref().map(|o| app.out_dir.join("frames/reject").join(o.trim_start_matches("overlays/")));
    let saved = saved.filter(|p| p.is_file()).or_else(|| find_saved_frame(&app.out_dir, item.event.frame_id));
    let Some(saved) = saved else {
        return (StatusCode::CONFLICT, "the frame was not saved: set [output].save_rejects = true to collect false rejects\n").into_response();
    };
    let dir = app.out_dir.join("collected/train/good");
    let copied = dir.join(saved.file_name().unwrap_or_default());
    let result = std::fs::create_dir_all(&dir).and_then(|()| std::fs::copy(&saved, &copied)).and_then(|_| {
        operator_record(&app.out_dir, &serde_json::json!({"time_unix_ms": crate::events::now_unix_ms(), "action": "false_reject", "seq": seq, "frame_id": item.event.frame_id, "source": item.event.source, "model": item.event.model, "score": item.event.score, "copied_to": copied}))
    });
    match result {
        Ok(()) => {
            app.view.mark_false(seq);
            tracing::info!(seq, frame = item.event.frame_id, "operator marked a false reject; frame copied to {}", copied.display());
            axum::Json(serde_json::json!({"seq": seq, "copied_to": copied})).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot copy {} to {}: {e}\n", saved.display(), copied.display())).into_response(),
    }
}

/// `frames/reject/run<R>_frame_<F>[...].png` of frame `frame_id`, the newest run first.
fn find_saved_frame(out_dir: &Path, frame_id: u64) -> Option<PathBuf> {
    let needle = format!("_frame_{frame_id:08}");
    let mut hits: Vec<PathBuf> = std::fs::read_dir(out_dir.join("frames/reject")).ok()?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(&needle))).collect();
    hits.sort();
    hits.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches("abcdefghijklmnop", "abcdefghijklmnop"));
        assert!(!token_matches("abcdefghijklmnoq", "abcdefghijklmnop"));
        assert!(!token_matches("abcdefghijklmno", "abcdefghijklmnop"));
        assert!(!token_matches("", "abcdefghijklmnop"));
    }
}
