//! Checkpoints: weights as `.safetensors` (tch `VarStore::save`) plus a `.json` sidecar with the
//! configuration, category and threshold calibration; and loading both back into a model
//! ([`load_model`], [`model_with_weights`]).

use std::path::{Path, PathBuf};

use runtime::metadata::{ScoreStats, ThresholdCalibration};
use serde::{Deserialize, Serialize};

use tch::{nn, Device};

use crate::config::TrainConfig;
use crate::model::FfcAd;

/// What a checkpoint holds beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointInfo {
    pub config: TrainConfig,
    pub category: String,
    pub data_root: PathBuf,
    pub threshold: f32,
    pub calibration: ThresholdCalibration,
    pub good_score_stats: ScoreStats,
    /// Held-out good images (kept for export checks).
    pub holdout: Vec<PathBuf>,
    /// The highest held-out good scores with their files (at most 5, highest first): the images
    /// that set the quantile threshold.
    #[serde(default)]
    pub highest_good_scores: Vec<runtime::threshold::HeldOutScore>,
    pub train_images: usize,
    pub steps_done: usize,
    pub wall_time_s: f64,
    pub parameters: i64,
    /// Validation curve on the held-out good images (also `validation.csv` / `.png`).
    #[serde(default)]
    pub validation: Vec<crate::curve::CurvePoint>,
}

/// Path of the JSON sidecar of a `.safetensors` checkpoint.
pub fn sidecar(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// Reads the sidecar of `weights`; errors name the file.
pub fn load_info(weights: &Path) -> anyhow::Result<CheckpointInfo> {
    anyhow::ensure!(weights.exists(), "checkpoint {} does not exist", weights.display());
    anyhow::ensure!(weights.is_file(), "checkpoint {} is not a file; expected the .safetensors file written by `trainer train`", weights.display());
    let p = sidecar(weights);
    let text = read_text(&p, "checkpoint sidecar")?;
    parse_json(&text).map_err(|e| anyhow::anyhow!("checkpoint sidecar {} is invalid: {e}", p.display()))
}

/// The text of file `p` (a JSON file of this trainer; `what` names it in errors): a file saved as
/// UTF-16 or another 8-bit encoding is named as such, with the byte where it stops being UTF-8.
pub(crate) fn read_text(p: &Path, what: &str) -> anyhow::Result<String> {
    let bytes = std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", p.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        let b = e.as_bytes();
        let kind = if b.starts_with(&[0xff, 0xfe]) || b.starts_with(&[0xfe, 0xff]) { "UTF-16 text" } else { "not UTF-8 text" };
        anyhow::anyhow!("{what} {} is {kind} (byte {} is not UTF-8); save it as UTF-8", p.display(), e.utf8_error().valid_up_to())
    })
}

/// Parses JSON `text` (a sidecar or a resume point written by this trainer, perhaps edited by
/// hand) into `T`. Errors name the key when the text is valid JSON holding a value of the wrong
/// type, with the value found: `config.model.tta = 3: expected a name in quotes, one of ...`
/// (serde_json alone says "expected value at line L column C" for a number where a name
/// belongs). Text that is not JSON (a `NaN` typed by hand, a missing comma) names the key being
/// read and quotes the line (and the one before where the error sits at a line's start, as a
/// missing or trailing comma does). A leading UTF-8 byte order mark (some editors write one) is
/// skipped.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> anyhow::Result<T> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        // serde_path_to_error writes `a.b[2].c`, "." for the top level and "?" for a key not yet read.
        let key = e.path().to_string().split('.').filter(|s| !s.is_empty() && *s != "?").collect::<Vec<_>>().join(".");
        let inner = e.into_inner();
        let Ok(whole) = serde_json::from_str::<serde_json::Value>(text) else { return not_json(text, &key, &inner) };
        // A JSON pointer is `/a/b/2/c`.
        let pointer: String = key.replace('[', ".").replace(']', "").split('.').filter(|s| !s.is_empty()).map(|s| format!("/{s}")).collect();
        if pointer.is_empty() {
            // The whole document (a missing or duplicate top-level field): the reason alone.
            return anyhow::anyhow!("{inner}");
        }
        let (line, column) = (inner.line(), inner.column());
        match whole.pointer(&pointer) {
            // An enum's variant is read by peeking at a quote: any other value is "expected value".
            Some(v) if inner.to_string().starts_with("expected value") => {
                let field = key.rsplit('.').next().unwrap_or(&key);
                let names = crate::config::names_of_key(field).map_or_else(|| "(`trainer train --help` lists them)".to_string(), |n| format!(", {n}"));
                anyhow::anyhow!("{key} = {v}: expected a name in quotes{names} (line {line} column {column})")
            }
            // An object or array (a duplicate key inside it): the reason, not the whole value.
            Some(v) if v.is_object() || v.is_array() => anyhow::anyhow!("{key}: {inner}"),
            Some(v) => anyhow::anyhow!("{key} = {v}: {inner}"),
            None => anyhow::anyhow!("{key}: {inner}"),
        }
    })
}

/// The error for text that is not JSON: `key: reason at line L column C (line L: `...`)`, with
/// the line before where the error sits at a line's start (a missing comma, a trailing comma
/// before `}`), a window of 100 characters around the column of a long line (a minified file),
/// and a hint where the quote holds a number JSON cannot write (NaN, Infinity).
fn not_json(text: &str, key: &str, inner: &serde_json::Error) -> anyhow::Error {
    let at = if key.is_empty() { String::new() } else { format!("{key}: ") };
    if text.trim().is_empty() {
        return anyhow::anyhow!("the file is empty");
    }
    let lines: Vec<&str> = text.lines().collect();
    let n = inner.line().max(1);
    let Some(line) = lines.get(n - 1) else { return anyhow::anyhow!("{at}{inner}") };
    let column = inner.column().max(1);
    let indent = line.chars().take_while(|c| c.is_whitespace()).count();
    let window = |l: &str, col: usize| -> String {
        let chars: Vec<char> = l.trim_end().chars().collect();
        let lead = chars.iter().take_while(|c| c.is_whitespace()).count();
        let from = col.saturating_sub(60).max(lead);
        let to = (from + 100).min(chars.len());
        let mut s: String = chars[from.min(to)..to].iter().collect();
        if from > lead {
            s.insert_str(0, "...");
        }
        if to < chars.len() {
            s.push_str("...");
        }
        s
    };
    let mut quote = format!("line {n}: `{}`", window(line, column));
    if column <= indent + 1 {
        // The mistake ends the previous line; serde_json notices it at this one.
        if let Some((i, prev)) = lines[..n - 1].iter().enumerate().rev().find(|(_, l)| !l.trim().is_empty()) {
            quote = format!("line {}: `{}`; {quote}", i + 1, window(prev, prev.chars().count()));
        }
    }
    let hint = if ["NaN", "Infinity"].iter().any(|w| quote.contains(w)) { "; JSON has no NaN or Infinity: write a number" } else { "" };
    anyhow::anyhow!("{at}{inner} ({quote}){hint}")
}

/// Writes the sidecar next to `weights`.
pub fn save_info(weights: &Path, info: &CheckpointInfo) -> anyhow::Result<()> {
    let p = sidecar(weights);
    std::fs::write(&p, serde_json::to_string_pretty(info)?).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))
}

/// Compares stored tensors with the model's variables by name and shape (libtorch would ignore
/// extra tensors and fail on a shape with a C++ backtrace). The error counts each kind of
/// mismatch and names the first of each.
pub fn check_fit(stored: &[(String, tch::Tensor)], vars: &std::collections::HashMap<String, tch::Tensor>) -> anyhow::Result<()> {
    let mut extra = Vec::new();
    let mut shapes = Vec::new();
    for (name, t) in stored {
        match vars.get(name) {
            None => extra.push(name.clone()),
            Some(v) if v.size() != t.size() => shapes.push(format!("{name}: {:?} in the file, {:?} in the model", t.size(), v.size())),
            Some(_) => {}
        }
    }
    let names: std::collections::HashSet<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
    let mut missing: Vec<&String> = vars.keys().filter(|k| !names.contains(k.as_str())).collect();
    missing.sort();
    extra.sort();
    shapes.sort();
    let mut problems = Vec::new();
    if let Some(s) = shapes.first() {
        problems.push(format!("{} tensors have another shape (first: {s})", shapes.len()));
    }
    if let Some(e) = extra.first() {
        problems.push(format!("{} tensors of the file are not in the model (first: {e})", extra.len()));
    }
    if let Some(m) = missing.first() {
        problems.push(format!("{} tensors of the model are not in the file (first: {m})", missing.len()));
    }
    // A part that exists or not by a config switch: name the switch.
    let strip = extra.iter().chain(missing.iter().copied()).any(|n| n.starts_with("head.strip."));
    let hint = if strip { " (`model.head_strip_pool` says whether the head has strip pooling)" } else { "" };
    anyhow::ensure!(problems.is_empty(), "{}{hint}", problems.join("; "));
    Ok(())
}

/// Rebuilds a model from a checkpoint (weights + sidecar) on `device`.
pub fn load_model(weights: &Path, device: Device) -> anyhow::Result<(nn::VarStore, FfcAd, CheckpointInfo)> {
    let info = load_info(weights)?;
    let (vs, model) = model_with_weights(weights, &info.config.model, device)?;
    Ok((vs, model, info))
}

/// Builds a model of configuration `cfg` on `device` and loads `weights` into it.
///
/// Errors name the file: unreadable, or tensors that do not fit the configuration (extra, missing
/// or of another shape — a sidecar .json that is not the one written with these weights).
pub fn model_with_weights(weights: &Path, cfg: &crate::config::ModelConfig, device: Device) -> anyhow::Result<(nn::VarStore, FfcAd)> {
    let vs = nn::VarStore::new(device);
    let model = FfcAd::new(&vs.root(), cfg).map_err(|e| anyhow::anyhow!("model configuration in {}: {e}", sidecar(weights).display()))?;
    let stored = tch::Tensor::read_safetensors(weights)
        .map_err(|e| anyhow::anyhow!("cannot read weights {}: not a complete safetensors file as `trainer train` writes (truncated, or another kind of file?): {e}", weights.display()))?;
    let mut vars = vs.variables();
    check_fit(&stored, &vars).map_err(|e| anyhow::anyhow!("weights {} do not fit the model configuration in {}: {e}", weights.display(), sidecar(weights).display()))?;
    // The file is read once: the checked tensors are copied into the model's variables (which
    // share storage with the VarStore), as `VarStore::load` would after reading it again.
    tch::no_grad(|| {
        for (name, t) in &stored {
            let var = vars.get_mut(name).expect("checked by check_fit");
            var.f_copy_(t).map_err(|e| anyhow::anyhow!("cannot load {name} from {}: {e}", weights.display()))?;
        }
        anyhow::Ok(())
    })?;
    Ok((vs, model))
}

