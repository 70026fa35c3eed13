//! Stage 4 (DESIGN.md §6): the verdict, the one spelling of it in code and in events.

use serde::{Deserialize, Serialize};

/// What happened to one frame. Serialised in events and summaries as `OK`, `REJECT`, `BAD`,
/// `LATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Inspected; the image score is at most the threshold: the part passes.
    Ok,
    /// Inspected; the image score is above the threshold (or NaN): a reject pulse is due.
    Reject,
    /// Could not be inspected: unreadable, truncated or undecodable file, a frame of the wrong
    /// size or pixel count, an ROI outside the frame, or inference failed. Fail-safe: a reject
    /// pulse is due unless the configuration turns that off (`reject_bad_frames`,
    /// `--reject-unreadable`), because an unchecked part must not pass as good.
    Bad,
    /// The line only: not inspected because inference was still busy with earlier frames (the
    /// frame queue was full). Never produced by [`crate::inspector::Inspector::inspect`].
    Late,
}

impl Verdict {
    /// The spelling in events: `OK`, `REJECT`, `BAD`, `LATE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Reject => "REJECT",
            Verdict::Bad => "BAD",
            Verdict::Late => "LATE",
        }
    }

    /// True for verdicts that come from running the model (`OK`, `REJECT`).
    pub fn is_inspected(self) -> bool {
        matches!(self, Verdict::Ok | Verdict::Reject)
    }

    /// Whether this verdict raises the reject line: always for `REJECT`, for `BAD` when
    /// `reject_bad` (fail-safe), never for `OK`. `LATE` frames are not pulsed (they are counted
    /// in the summary: size the frame rate and `queue_frames` so that none are late).
    pub fn pulses(self, reject_bad: bool) -> bool {
        match self {
            Verdict::Reject => true,
            Verdict::Bad => reject_bad,
            Verdict::Ok | Verdict::Late => false,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict for an inspected frame: `REJECT` when its image score is strictly above the
/// threshold, and for a NaN score (a broken frame or model: on a line, an unknown part must not
/// pass as good); `OK` otherwise.
pub fn decide(score: f32, threshold: f32) -> Verdict {
    if score > threshold || score.is_nan() {
        Verdict::Reject
    } else {
        Verdict::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_above_or_nan_rejects() {
        assert_eq!(decide(0.51, 0.5), Verdict::Reject);
        assert_eq!(decide(0.5, 0.5), Verdict::Ok);
        assert_eq!(decide(0.1, 0.5), Verdict::Ok);
        assert_eq!(decide(f32::NAN, 0.5), Verdict::Reject);
        assert_eq!(decide(f32::INFINITY, 0.5), Verdict::Reject);
    }

    #[test]
    fn verdicts_are_spelled_as_in_events_both_ways() {
        for (v, s) in [(Verdict::Ok, "OK"), (Verdict::Reject, "REJECT"), (Verdict::Bad, "BAD"), (Verdict::Late, "LATE")] {
            assert_eq!(serde_json::to_string(&v).unwrap(), format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<Verdict>(&format!("\"{s}\"")).unwrap(), v);
            assert_eq!(v.as_str(), s);
        }
        assert!(serde_json::from_str::<Verdict>("\"SKIPPED\"").is_err());
    }

    #[test]
    fn which_verdicts_pulse() {
        let table: Vec<(bool, bool, bool, bool)> = [true, false]
            .iter()
            .map(|&b| (Verdict::Ok.pulses(b), Verdict::Reject.pulses(b), Verdict::Bad.pulses(b), Verdict::Late.pulses(b)))
            .collect();
        assert_eq!(table, [(false, true, true, false), (false, true, false, false)]);
    }
}
