//! Stage 7 (DESIGN.md §6): one JSON line per inspected frame.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Per-stage latency of one frame, ms.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageLatency {
    pub load_ms: f64,
    pub preprocess_ms: f64,
    pub infer_ms: f64,
    pub decide_ms: f64,
    pub overlay_ms: f64,
}

/// What happened to one frame.
#[derive(Debug, Clone, Serialize)]
pub struct InspectionEvent {
    /// Wall-clock time, ms since the Unix epoch.
    pub time_unix_ms: u128,
    pub frame_id: u64,
    pub source: String,
    /// `OK`, `REJECT`, or `SKIPPED` for a frame that could not be inspected.
    pub verdict: String,
    pub score: Option<f32>,
    pub threshold: f32,
    /// Why a frame was skipped.
    pub error: Option<String>,
    pub latency: StageLatency,
    pub overlay: Option<String>,
}

/// Appends events as JSON lines to a file, flushing after each so nothing is lost on a crash.
pub struct EventLog {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl EventLog {
    /// Creates (truncates) `path`. Errors name the file.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let f = std::fs::File::create(path).map_err(|e| anyhow::anyhow!("cannot create event log {}: {e}", path.display()))?;
        Ok(Self { path: path.into(), file: std::io::BufWriter::new(f) })
    }

    /// Opens `path` for appending (created if absent): a restarted line keeps its history.
    /// Errors name the file.
    pub fn append(path: &Path) -> anyhow::Result<Self> {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| anyhow::anyhow!("cannot open event log {}: {e}", path.display()))?;
        Ok(Self { path: path.into(), file: std::io::BufWriter::new(f) })
    }

    /// Writes one event as a line.
    pub fn write(&mut self, ev: &InspectionEvent) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.file, ev)?;
        self.file.write_all(b"\n")?;
        self.file.flush().map_err(|e| anyhow::anyhow!("cannot write event log {}: {e}", self.path.display()))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}
