//! Counters that survive restarts and power cuts: `<out_dir>/state.json` holds the totals of every
//! run of the line in that folder. It is read when a run starts, saved by the output thread every
//! [`super::LineOptions::state_every`] while the run goes on (so a kill or a power cut loses at
//! most that much counting) and saved with the run's full counters when it ends. Every save is
//! atomic and durable ([`crate::output::write_atomic`]: temporary file, fsync, rename).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::LineCounters;
use crate::decide::Verdict;

/// Totals over every run of the line in one output folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LineTotals {
    /// Runs started (a killed run counts).
    pub runs: u64,
    pub frames: u64,
    pub inspected: u64,
    pub ok: u64,
    pub rejected: u64,
    pub late: u64,
    pub bad: u64,
    /// Only runs that ended count here: a killed run's missed pulses are not known.
    pub pulses_missed: u64,
    pub output_write_errors: u64,
}

impl LineTotals {
    /// Reads `path`. A missing file is a first run (zeros); an unreadable or corrupt one is moved
    /// aside to `<path>.corrupt` and counting starts again from zero, with a warning.
    pub fn load(path: &Path) -> Self {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(e) => {
                tracing::warn!("cannot read the line's counters {}: {e}; counting from zero", path.display());
                return Self::default();
            }
        };
        match serde_json::from_str(&text) {
            Ok(t) => t,
            Err(e) => {
                let aside = path.with_extension("json.corrupt");
                let _ = std::fs::rename(path, &aside);
                tracing::warn!("the line's counters {} do not parse ({e}); moved to {}, counting from zero", path.display(), aside.display());
                Self::default()
            }
        }
    }

    /// Writes the totals to `path` atomically and durably.
    ///
    /// # Errors
    /// The write failed (the message names the file).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::output::write_atomic(path, json.as_bytes(), true)
    }

    /// Counts one event by its verdict (`OK`, `REJECT`, `LATE`, `BAD`).
    pub fn count_event(&mut self, verdict: Verdict) {
        self.frames += 1;
        match verdict {
            Verdict::Ok => {
                self.inspected += 1;
                self.ok += 1;
            }
            Verdict::Reject => {
                self.inspected += 1;
                self.rejected += 1;
            }
            Verdict::Late => self.late += 1,
            Verdict::Bad => self.bad += 1,
        }
    }

    /// These totals plus one whole run's counters.
    pub fn plus_run(&self, c: &LineCounters) -> Self {
        Self {
            runs: self.runs,
            frames: self.frames + c.frames,
            inspected: self.inspected + c.inspected,
            ok: self.ok + c.ok,
            rejected: self.rejected + c.rejected,
            late: self.late + c.late,
            bad: self.bad + c.bad,
            pulses_missed: self.pulses_missed + c.pulses_missed,
            output_write_errors: self.output_write_errors + c.output_write_errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_corrupt_files_start_from_zero_and_saves_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        assert_eq!(LineTotals::load(&p), LineTotals::default());
        let t = LineTotals { runs: 3, frames: 10, inspected: 8, ok: 6, rejected: 2, late: 1, bad: 1, pulses_missed: 1, output_write_errors: 4 };
        t.save(&p).unwrap();
        assert_eq!(LineTotals::load(&p), t);
        std::fs::write(&p, b"{\"runs\": 3, \"fram").unwrap();
        assert_eq!(LineTotals::load(&p), LineTotals::default());
        assert!(d.path().join("state.json.corrupt").exists() && !p.exists(), "moved aside");
        let mut e = LineTotals::default();
        for v in [Verdict::Ok, Verdict::Reject, Verdict::Late, Verdict::Bad, Verdict::Ok] {
            e.count_event(v);
        }
        assert_eq!((e.frames, e.inspected, e.ok, e.rejected, e.late, e.bad), (5, 3, 2, 1, 1, 1));
    }
}
