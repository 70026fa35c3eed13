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

/// Appends events as JSON lines to a file.
///
/// Each event is built as one complete line in memory (JSON + `\n`) and written with one write
/// on a file opened for appending, so a line is either whole or cut at its end. A write that fails
/// (ENOSPC, EIO) is undone: the file is truncated back to the end of the last whole line, so the
/// next event never continues a cut one. The data is synced to the device at most once per
/// second ([`SYNC_INTERVAL`]): a power cut loses the events of about the last second, never a
/// line in the middle of the file. [`EventLog::append`] repairs a torn last line left by a power
/// cut or a crash before appending.
pub struct EventLog {
    path: PathBuf,
    file: std::fs::File,
    /// End of the last whole line written (regular files only).
    len: u64,
    /// A failed write could not be undone yet: repair before the next write.
    torn: bool,
    /// A regular file (not e.g. `/dev/full` or a pipe): truncation and repair apply.
    regular: bool,
    last_sync: std::time::Instant,
}

/// Longest time between two syncs of the event log to the device.
pub const SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How far from its end [`EventLog::append`] looks for a torn last line, bytes.
const REPAIR_WINDOW: u64 = 1 << 20;

impl EventLog {
    /// Creates (truncates) `path`. Errors name the file.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let f = std::fs::File::create(path).map_err(|e| anyhow::anyhow!("cannot create event log {}: {e}", path.display()))?;
        Self::from_file(path, f)
    }

    /// Opens `path` for appending (created if absent): a restarted line keeps its history. A torn
    /// last line (one without its `\n`, or one that is not JSON, e.g. the zeros a power cut can
    /// leave) is removed first, with a warning; a whole JSON object that only lacks its `\n` gets
    /// it. Errors name the file.
    pub fn append(path: &Path) -> anyhow::Result<Self> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open event log {}: {e}", path.display()))?;
        if f.metadata().map(|m| m.is_file()).unwrap_or(false) {
            match repair_torn_tail(&mut f) {
                Ok(Repair::None) => {}
                Ok(Repair::Terminated) => tracing::warn!("event log {}: the last event lacked its line end (power cut?); added it", path.display()),
                Ok(Repair::Dropped(n)) => tracing::warn!("event log {}: removed a torn last line of {n} bytes (power cut or full disk)", path.display()),
                Err(e) => anyhow::bail!("cannot repair the end of event log {}: {e}", path.display()),
            }
        }
        Self::from_file(path, f)
    }

    fn from_file(path: &Path, file: std::fs::File) -> anyhow::Result<Self> {
        let meta = file.metadata().map_err(|e| anyhow::anyhow!("cannot read event log {}: {e}", path.display()))?;
        Ok(Self { path: path.into(), len: meta.len(), regular: meta.is_file(), torn: false, file, last_sync: std::time::Instant::now() })
    }

    /// Path of the log.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event as a line (one write of the whole line).
    ///
    /// # Errors
    /// The write failed (the message names the file and the cause, e.g. no space left on the
    /// device); the file is left ending with a whole line whenever the file system allows.
    pub fn write(&mut self, ev: &InspectionEvent) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(ev)?;
        line.push(b'\n');
        if self.torn {
            self.undo_partial_write().map_err(|e| anyhow::anyhow!("cannot write event log {}: a failed write could not be undone: {e}", self.path.display()))?;
        }
        if let Err(e) = self.file.write_all(&line) {
            if self.regular {
                self.torn = true;
                let _ = self.undo_partial_write();
            }
            anyhow::bail!("cannot write event log {}: {e}", self.path.display());
        }
        self.len += line.len() as u64;
        if self.last_sync.elapsed() >= SYNC_INTERVAL {
            self.last_sync = std::time::Instant::now();
            if let Err(e) = self.file.sync_data() {
                anyhow::bail!("cannot sync event log {}: {e}", self.path.display());
            }
        }
        Ok(())
    }

    /// Truncates the file to the end of the last whole line.
    fn undo_partial_write(&mut self) -> std::io::Result<()> {
        if self.regular {
            use std::io::{Seek, SeekFrom};
            self.file.set_len(self.len)?;
            // A log opened by `create` has no O_APPEND: write on from the truncated end.
            self.file.seek(SeekFrom::Start(self.len))?;
        }
        self.torn = false;
        Ok(())
    }
}

/// What [`repair_torn_tail`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    /// The file ended with a whole JSON line (or was empty).
    None,
    /// The last line was a whole JSON value without its `\n`: the `\n` was added.
    Terminated,
    /// This many bytes at the end (torn or unparsable lines) were removed.
    Dropped(u64),
}

/// Makes a JSON-lines file opened for reading and appending end with a whole line that parses as
/// JSON: a last line without `\n` that parses gets its `\n`; trailing lines that do not parse
/// (cut, zeros after a power cut, empty) are truncated away, looking at most 1 MiB back.
pub fn repair_torn_tail(file: &mut std::fs::File) -> std::io::Result<Repair> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(Repair::None);
    }
    let off = len.saturating_sub(REPAIR_WINDOW);
    let mut buf = Vec::with_capacity((len - off) as usize);
    file.seek(SeekFrom::Start(off))?;
    Read::take(&mut *file, len - off).read_to_end(&mut buf)?;
    let parses = |l: &[u8]| !l.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok();
    let mut end = buf.len();
    if buf.last() != Some(&b'\n') {
        let start = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if (start > 0 || off == 0) && parses(&buf[start..]) {
            file.write_all(b"\n")?;
            return Ok(Repair::Terminated);
        }
        end = start;
    }
    // Now buf[..end] ends with '\n' (or is empty): drop whole lines from the end that do not parse.
    while end > 0 {
        let start = buf[..end - 1].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if start == 0 && off > 0 {
            break; // the line begins before the window: keep it
        }
        if parses(&buf[start..end - 1]) {
            break;
        }
        end = start;
    }
    let keep = off + end as u64;
    if keep == len {
        return Ok(Repair::None);
    }
    file.set_len(keep)?;
    Ok(Repair::Dropped(len - keep))
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(frame_id: u64) -> InspectionEvent {
        InspectionEvent {
            time_unix_ms: 1_700_000_000_000 + frame_id as u128,
            frame_id,
            source: format!("frame {frame_id}"),
            verdict: "OK".into(),
            score: Some(0.25),
            threshold: 0.5,
            error: None,
            latency: StageLatency::default(),
            overlay: None,
        }
    }

    fn ids(path: &Path) -> Vec<u64> {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "ends with a whole line: {text:?}");
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("line {l:?}: {e}"))["frame_id"].as_u64().unwrap()).collect()
    }

    #[test]
    fn a_log_cut_at_any_byte_of_its_last_line_is_repaired_before_appending() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("events.jsonl");
        let mut log = EventLog::create(&path).unwrap();
        for i in 0..3 {
            log.write(&ev(i)).unwrap();
        }
        drop(log);
        let full = std::fs::read(&path).unwrap();
        let last_start = full[..full.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        for cut in last_start..=full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let mut log = EventLog::append(&path).unwrap();
            log.write(&ev(9)).unwrap();
            drop(log);
            // Cut inside the line: the event is lost; only its '\n' missing: it is kept.
            let want: Vec<u64> = if cut >= full.len() - 1 { vec![0, 1, 2, 9] } else { vec![0, 1, 9] };
            assert_eq!(ids(&path), want, "cut at byte {cut} of {}", full.len());
        }
    }

    #[test]
    fn zeros_and_garbage_after_a_power_cut_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("events.jsonl");
        let mut log = EventLog::create(&path).unwrap();
        log.write(&ev(0)).unwrap();
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        let good = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 300]);
        bytes.extend_from_slice(b"\n{\"frame_id\": 1, \"cut\n\n");
        std::fs::write(&path, &bytes).unwrap();
        let mut f = std::fs::OpenOptions::new().read(true).append(true).open(&path).unwrap();
        assert_eq!(repair_torn_tail(&mut f).unwrap(), Repair::Dropped(bytes.len() as u64 - good));
        assert_eq!(repair_torn_tail(&mut f).unwrap(), Repair::None);
        assert_eq!(ids(&path), vec![0]);
    }

    #[test]
    fn a_full_device_is_an_error_naming_the_file_never_a_panic() {
        let mut log = EventLog::append(Path::new("/dev/full")).unwrap();
        for i in 0..3 {
            let msg = log.write(&ev(i)).unwrap_err().to_string();
            assert!(msg.contains("/dev/full") && msg.contains("No space left"), "{msg}");
        }
    }

    #[test]
    fn a_failed_write_is_undone_so_the_next_line_starts_clean() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("events.jsonl");
        let mut log = EventLog::create(&path).unwrap();
        log.write(&ev(0)).unwrap();
        // Simulate a short write that the file system reported as an error.
        use std::io::Write as _;
        log.file.write_all(b"{\"frame_id\": 1, \"sou").unwrap();
        log.torn = true;
        log.write(&ev(2)).unwrap();
        assert_eq!(ids(&path), vec![0, 2]);
    }
}
