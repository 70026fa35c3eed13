//! Stage 7 (DESIGN.md §6): one JSON line per inspected frame.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decide::Verdict;

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
    /// What the frame was: the image file (`inspect`, a replay in `run`), or `frame <id>` for a
    /// camera frame.
    pub source: String,
    /// `OK`, `REJECT`, `BAD` (could not be inspected) or `LATE` (the line only: inference was
    /// busy); see [`Verdict`] for each.
    pub verdict: Verdict,
    /// Image score of an inspected frame; `None` for `BAD` and `LATE` (and a NaN score).
    pub score: Option<f32>,
    /// The threshold the frame was judged by.
    pub threshold: f32,
    /// Why a frame is `BAD` or `LATE`, naming the file or frame.
    pub error: Option<String>,
    pub latency: StageLatency,
    /// The overlay file written for the frame, if any (relative to the output folder on the line,
    /// a path for `runtime inspect`).
    pub overlay: Option<String>,
    /// The model the frame was judged by, `<file name>@<first 12 hex digits of its SHA-256>`
    /// ([`crate::infer::ModelId`]); on the line a model swap changes it from one frame to the
    /// next. `None` for `LATE` frames, which no model judged.
    pub model: Option<String>,
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
///
/// With a [`Rotation`] ([`EventLog::with_rotation`]) the log is capped by size across restarts:
/// before a line that would take the file past `max_bytes`, and at start when the file left by
/// earlier runs is already at the cap, `events.jsonl` becomes `events.1.jsonl`, `events.1.jsonl`
/// becomes `events.2.jsonl` and so on up to `keep` old files, the oldest removed. Rotation happens
/// between whole lines, so no line is ever split across two files.
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
    rotation: Option<Rotation>,
    /// A rotation failed: not tried again before this time (the log grows meanwhile).
    rotate_retry_at: Option<std::time::Instant>,
}

/// Size cap of an event log ([`EventLog::with_rotation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Largest size of the current file, bytes (a single line longer than this still gets a file
    /// of its own).
    pub max_bytes: u64,
    /// Old files kept (`events.1.jsonl` newest .. `events.<keep>.jsonl` oldest), at least 1.
    pub keep: usize,
}

/// How long a failed rotation waits before the next try.
const ROTATE_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// Name of the `n`-th old file of the log at `path`: `events.jsonl` -> `events.<n>.jsonl`.
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{n}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{n}"),
    };
    path.with_file_name(name)
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
        Ok(Self { path: path.into(), len: meta.len(), regular: meta.is_file(), torn: false, file, last_sync: std::time::Instant::now(), rotation: None, rotate_retry_at: None })
    }

    /// Caps the log by size ([`Rotation`]); a file already at `max_bytes` (left by earlier runs)
    /// is rotated now.
    ///
    /// # Errors
    /// The rotation at start failed (renaming or creating a file; the message names it). The log
    /// stays usable and appends to the current file; the rotation is tried again later.
    pub fn with_rotation(mut self, rotation: Rotation) -> (Self, Option<anyhow::Error>) {
        let rotation = Rotation { keep: rotation.keep.max(1), ..rotation };
        self.rotation = Some(rotation);
        let err = if self.regular && self.len > 0 && self.len >= rotation.max_bytes { self.try_rotate().err() } else { None };
        (self, err)
    }

    /// Rotates unless a rotation failed less than [`ROTATE_RETRY`] ago.
    fn try_rotate(&mut self) -> anyhow::Result<()> {
        if self.rotate_retry_at.is_some_and(|t| std::time::Instant::now() < t) {
            return Ok(());
        }
        self.rotate().inspect_err(|_| self.rotate_retry_at = Some(std::time::Instant::now() + ROTATE_RETRY))
    }

    /// `events.jsonl` -> `events.1.jsonl` -> ... -> `events.<keep>.jsonl` (removed), then a new
    /// empty `events.jsonl`.
    fn rotate(&mut self) -> anyhow::Result<()> {
        let keep = self.rotation.map_or(1, |r| r.keep);
        let _ = self.file.sync_data();
        // After a rotation whose new file could not be created, the current file was renamed already.
        if self.path.exists() {
            let oldest = rotated_path(&self.path, keep);
            match std::fs::remove_file(&oldest) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => anyhow::bail!("cannot rotate event log: cannot remove the oldest {}: {e}", oldest.display()),
                _ => {}
            }
            for n in (1..keep).rev() {
                let from = rotated_path(&self.path, n);
                if from.exists() {
                    let to = rotated_path(&self.path, n + 1);
                    std::fs::rename(&from, &to).map_err(|e| anyhow::anyhow!("cannot rotate event log: cannot rename {} to {}: {e}", from.display(), to.display()))?;
                }
            }
            let to = rotated_path(&self.path, 1);
            std::fs::rename(&self.path, &to).map_err(|e| anyhow::anyhow!("cannot rotate event log: cannot rename {} to {}: {e}", self.path.display(), to.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| anyhow::anyhow!("cannot rotate event log: cannot create {} (events go on into {}): {e}", self.path.display(), rotated_path(&self.path, 1).display()))?;
        let meta = file.metadata().map_err(|e| anyhow::anyhow!("cannot read event log {}: {e}", self.path.display()))?;
        self.file = file;
        self.len = meta.len();
        self.torn = false;
        self.rotate_retry_at = None;
        tracing::info!("event log {} reached its size cap: the previous events are in {}", self.path.display(), rotated_path(&self.path, 1).display());
        Ok(())
    }

    /// Path of the log.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one event as a line (one write of the whole line).
    ///
    /// # Errors
    /// The write failed (the message names the file and the cause, e.g. no space left on the
    /// device); the file is left ending with a whole line whenever the file system allows. Or a
    /// rotation due before this line failed (the message names the file): the line was still
    /// written, to the current file.
    pub fn write(&mut self, ev: &InspectionEvent) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(ev)?;
        line.push(b'\n');
        let mut rotate_err = None;
        if let Some(r) = self.rotation {
            if self.regular && !self.torn && self.len > 0 && self.len + line.len() as u64 > r.max_bytes {
                rotate_err = self.try_rotate().err();
            }
        }
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
        match rotate_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
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
            verdict: Verdict::Ok,
            score: Some(0.25),
            threshold: 0.5,
            error: None,
            latency: StageLatency::default(),
            overlay: None,
            model: Some("m.onnx@0123456789ab".into()),
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

    #[test]
    fn rotated_names_keep_the_extension() {
        assert_eq!(rotated_path(Path::new("/o/events.jsonl"), 1), Path::new("/o/events.1.jsonl"));
        assert_eq!(rotated_path(Path::new("/o/events.jsonl"), 12), Path::new("/o/events.12.jsonl"));
        assert_eq!(rotated_path(Path::new("log"), 2), Path::new("log.2"));
    }

    #[test]
    fn the_log_is_capped_by_size_while_running_and_across_restarts() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("events.jsonl");
        let line_len = serde_json::to_vec(&ev(100)).unwrap().len() as u64 + 1;
        // Room for 4 lines of this length per file, 2 old files kept.
        let rot = Rotation { max_bytes: 4 * line_len + line_len / 2, keep: 2 };
        let (mut log, err) = EventLog::append(&path).unwrap().with_rotation(rot);
        assert!(err.is_none());
        for i in 100..130 {
            log.write(&ev(i)).unwrap();
        }
        drop(log);
        // 30 events, 4 a file: 100..=119 rotated away and removed (the oldest), then 2 old files.
        assert_eq!(ids(&path), vec![128, 129]);
        assert_eq!(ids(&rotated_path(&path, 1)), vec![124, 125, 126, 127]);
        assert_eq!(ids(&rotated_path(&path, 2)), vec![120, 121, 122, 123]);
        assert!(!rotated_path(&path, 3).exists(), "only 2 old files kept");
        let mut names: Vec<String> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["events.1.jsonl", "events.2.jsonl", "events.jsonl"]);
        for p in [path.clone(), rotated_path(&path, 1), rotated_path(&path, 2)] {
            assert!(std::fs::metadata(&p).unwrap().len() <= rot.max_bytes, "{} over the cap", p.display());
        }

        // A restart finds the file at its cap (left by a run with a larger cap): rotated at start.
        let mut log = EventLog::append(&path).unwrap();
        for i in 130..140 {
            log.write(&ev(i)).unwrap();
        }
        drop(log);
        let (mut log, err) = EventLog::append(&path).unwrap().with_rotation(rot);
        assert!(err.is_none());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "rotated at start");
        assert_eq!(ids(&rotated_path(&path, 1)), (128..140).collect::<Vec<_>>());
        assert_eq!(ids(&rotated_path(&path, 2)), vec![124, 125, 126, 127]);
        log.write(&ev(140)).unwrap();
        drop(log);
        assert_eq!(ids(&path), vec![140]);
        // A restart below the cap appends.
        let (mut log, _) = EventLog::append(&path).unwrap().with_rotation(rot);
        log.write(&ev(141)).unwrap();
        assert_eq!(ids(&path), vec![140, 141]);
    }

    #[test]
    fn a_failed_rotation_never_loses_the_event_and_names_the_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("events.jsonl");
        // A folder where the oldest old file would be removed: the rotation fails.
        std::fs::create_dir(rotated_path(&path, 1)).unwrap();
        std::fs::write(rotated_path(&path, 1).join("x"), b"x").unwrap();
        let (mut log, err) = EventLog::append(&path).unwrap().with_rotation(Rotation { max_bytes: 10, keep: 1 });
        assert!(err.is_none(), "empty log: nothing to rotate at start");
        log.write(&ev(0)).unwrap();
        let msg = log.write(&ev(1)).unwrap_err().to_string();
        assert!(msg.contains("cannot rotate event log") && msg.contains("events.1.jsonl"), "{msg}");
        // Not retried at every event; the events are all in the current file.
        log.write(&ev(2)).unwrap();
        assert_eq!(ids(&path), vec![0, 1, 2]);
    }
}
