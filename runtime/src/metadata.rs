//! The export contract's `metadata_props` (DESIGN.md §5): what the trainer writes into the ONNX
//! file and the runtime reads back. Each field is one key, prefixed `ffcad.`; structured values
//! are JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bit_depth::BitDepth;

/// Version of this contract that the trainer writes.
///
/// - 2 (this round of work): adds `bit_depth`; `map_sigma_px` and `input_colour` are written by
///   every trainer since.
/// - 1: the first version. Still read, with the stated defaults for what it lacks:
///   `bit_depth` 16 (full-range 16-bit samples, as those runtimes read them), `map_sigma_px` 0
///   (the map was not smoothed), `input_colour` unknown (no colour check). Its scores and
///   verdicts are unchanged by the upgrade (pinned in `runtime/tests/pinned_verdicts.rs`).
///
/// Any other version is refused with a message that says to re-export the model.
pub const FORMAT_VERSION: u32 = 2;

/// Format versions this runtime reads (older ones with the defaults listed at [`FORMAT_VERSION`]).
pub const READABLE_VERSIONS: [u32; 2] = [1, 2];

/// Names of the graph's input and outputs.
pub const INPUT_NAME: &str = "image";
pub const MAP_OUTPUT_NAME: &str = "anomaly_map";
pub const SCORE_OUTPUT_NAME: &str = "score";

/// How the deployed threshold was obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdCalibration {
    /// e.g. `quantile` of held-out good image scores.
    pub method: String,
    /// Target false-reject rate on good parts (fraction, not %).
    pub target_false_reject_rate: f64,
    /// Number of held-out good images the threshold was computed from.
    pub good_images: usize,
}

/// Summary of image scores of held-out good images (same score as the graph's `score` output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreStats {
    pub count: usize,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

impl ScoreStats {
    /// Statistics of `scores` (population std); all zero for an empty slice.
    pub fn of(scores: &[f32]) -> Self {
        if scores.is_empty() {
            return Self { count: 0, mean: 0.0, std: 0.0, min: 0.0, max: 0.0 };
        }
        let n = scores.len() as f64;
        let mean = scores.iter().map(|&s| s as f64).sum::<f64>() / n;
        let var = scores.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / n;
        let min = scores.iter().fold(f64::INFINITY, |a, &s| a.min(s as f64));
        let max = scores.iter().fold(f64::NEG_INFINITY, |a, &s| a.max(s as f64));
        Self { count: scores.len(), mean, std: var.sqrt(), min, max }
    }
}

/// Everything the runtime needs to know about an exported model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    pub format_version: u32,
    /// Data set category the model was trained for, e.g. `ball_screw`.
    pub category: String,
    /// Model input height and width in px.
    pub input_height: u32,
    pub input_width: u32,
    /// Per-channel RGB mean and std applied inside the graph to inputs in [0, 1].
    pub norm_mean: [f32; 3],
    pub norm_std: [f32; 3],
    /// Side in px of the mean filter applied to the anomaly map before the max (image score).
    pub score_filter_px: u32,
    /// Length in px of the line of the line-mean image score (0: the score is the max of the
    /// `score_filter_px` mean-filtered map). The score comes out of the graph either way; this
    /// says which one it is. Models exported before this key existed: absent = 0.
    #[serde(default)]
    pub score_line_px: u32,
    /// Standard deviation in px of the Gaussian that smooths the anomaly map inside the graph
    /// (the `anomaly_map` output is already smoothed; the score filter acts on it). Models
    /// exported before this key existed output the raw map: absent = 0.
    #[serde(default)]
    pub map_sigma_px: f32,
    /// Quantile of the map's floor removed per image inside the graph: the `anomaly_map` output
    /// is max(0, smoothed map - its q-quantile over the image), while the score reads the
    /// smoothed map before it (trainer `model::floor`). Models exported before this key existed
    /// output the smoothed map: absent = 0.
    #[serde(default)]
    pub map_floor_quantile: f32,
    /// Network passes per image of the map's test-time augmentation: 1 (none), 2 (the image and
    /// one mirror) or 4 (the image, both mirrors and the half turn), run as copies of the network
    /// inside the graph, the maps mirrored back and averaged before the smoothing (latency grows about in
    /// proportion). Models exported before this key existed: absent = 1.
    #[serde(default = "one_pass")]
    pub tta_passes: u32,
    /// Image score above which a part is rejected.
    pub threshold: f32,
    pub threshold_calibration: ThresholdCalibration,
    pub good_score_stats: ScoreStats,
    /// Training configuration (JSON object, as the trainer wrote it).
    pub train_config: serde_json::Value,
    /// Metrics measured by the trainer (JSON object; may be empty).
    pub metrics: serde_json::Value,
    /// `git describe` of the trainer's source, or `unknown`.
    pub git_revision: String,
    /// Numeric format of the graph: `f32` or `int8`.
    pub precision: String,
    /// Multiply-accumulates of one forward pass (Conv, ConvTranspose, MatMul); 0 if unknown.
    /// FLOPs = 2 x MACs.
    #[serde(default)]
    pub macs: u64,
    /// Whether the training images were grey or colour (issue 12, finding 6): the runtime warns
    /// when the camera's frames are of the other kind. Models exported before this key existed:
    /// absent = [`InputColour::Unknown`].
    #[serde(default)]
    pub input_colour: InputColour,
    /// Significant bits of the 16-bit samples of the training images (LSB-aligned; see
    /// [`crate::bit_depth`]); 16 for 8-bit images and full-range 16-bit ones. The runtime reads
    /// `Y16` frames and 16-bit files at this depth unless `[camera].bit_depth` or `--bit-depth`
    /// says otherwise. Version 1 models: absent = 16.
    #[serde(default)]
    pub bit_depth: BitDepth,
}

/// The colour of the images a model was trained on (`ffcad.input_colour`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputColour {
    /// Colour images (three channels; grey images among them make it colour still).
    Rgb,
    /// Every training image checked had one colour channel (grey, or grey + alpha).
    Grey,
    /// Not recorded (models exported before the key existed) or not determinable at export.
    #[default]
    Unknown,
}

impl std::fmt::Display for InputColour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Rgb => "rgb",
            Self::Grey => "grey",
            Self::Unknown => "unknown",
        })
    }
}

/// Errors reading metadata back.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("model metadata key `{0}` is missing; was this file exported by the FFC-AD trainer?")]
    Missing(String),
    #[error("model metadata key `{key}` holds `{value}`: {why}")]
    Invalid { key: String, value: String, why: String },
    #[error("model format version {found} is not supported (this runtime reads versions 1 and {FORMAT_VERSION}); re-export the model with this release's trainer")]
    Version { found: u32 },
}

const PREFIX: &str = "ffcad.";

/// Every field optional: decodes one key at a time to find which value is malformed.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Probe {
    format_version: Option<u32>,
    category: Option<String>,
    input_height: Option<u32>,
    input_width: Option<u32>,
    norm_mean: Option<[f32; 3]>,
    norm_std: Option<[f32; 3]>,
    score_filter_px: Option<u32>,
    score_line_px: Option<u32>,
    map_sigma_px: Option<f32>,
    map_floor_quantile: Option<f32>,
    tta_passes: Option<u32>,
    threshold: Option<f32>,
    threshold_calibration: Option<ThresholdCalibration>,
    good_score_stats: Option<ScoreStats>,
    train_config: Option<serde_json::Value>,
    metrics: Option<serde_json::Value>,
    git_revision: Option<String>,
    precision: Option<String>,
    macs: Option<u64>,
    input_colour: Option<InputColour>,
    bit_depth: Option<BitDepth>,
}

fn one_pass() -> u32 {
    1
}

impl ModelMetadata {
    /// How the graph scores an image, in words for reports: the image score's rule, the map's
    /// smoothing and its TTA passes.
    pub fn scoring(&self) -> String {
        let score = match self.score_line_px {
            0 => format!("max of the {0}x{0} px mean-filtered anomaly map", self.score_filter_px),
            l => format!("max over 16 orientations of the anomaly map's mean along a {l} px line"),
        };
        // The mode's name and how the passes are combined are in the trainer's config
        // (`model.tta`, `model.tta_reduce`: absent before session 30 = the mean), when the file has one.
        let mode = self.train_config.pointer("/model/tta").and_then(|v| v.as_str()).map(|m| format!(" {m}")).unwrap_or_default();
        let reduce = match self.train_config.pointer("/model/tta_reduce").and_then(|v| v.as_str()) {
            Some("min") => "minimum",
            _ => "mean",
        };
        let tta = match self.tta_passes {
            0 | 1 => String::new(),
            n => format!(", {reduce} of {n} TTA passes{mode}"),
        };
        let map = if self.map_sigma_px > 0.0 { format!("map smoothed with sigma {} px", self.map_sigma_px) } else { "raw map (no smoothing)".to_string() };
        let floor = if self.map_floor_quantile > 0.0 { format!(", its {}-quantile removed per image after the score", self.map_floor_quantile) } else { String::new() };
        format!("{score}; {map}{tta}{floor}")
    }

    /// Encodes every field as one `ffcad.<field>` key with a JSON value.
    pub fn to_props(&self) -> Vec<(String, String)> {
        let v = serde_json::to_value(self).expect("metadata serialises");
        v.as_object()
            .expect("metadata is an object")
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }))
            .collect()
    }

    /// Decodes from `metadata_props` key/value pairs (unknown keys are ignored).
    ///
    /// Errors: a missing key, a value of the wrong type, or an unsupported format version.
    pub fn from_props<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, MetadataError> {
        let map: BTreeMap<&str, &str> = props.into_iter().filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|k| (k, v))).collect();
        let version = map.get("format_version").ok_or_else(|| MetadataError::Missing(format!("{PREFIX}format_version")))?;
        let found: u32 = version.parse().map_err(|e: std::num::ParseIntError| MetadataError::Invalid {
            key: format!("{PREFIX}format_version"),
            value: version.to_string(),
            why: e.to_string(),
        })?;
        if !READABLE_VERSIONS.contains(&found) {
            return Err(MetadataError::Version { found });
        }
        // Defaults are for version 1 files only: a version 2 file without these keys is broken.
        if found >= 2 {
            if let Some(key) = ["map_sigma_px", "input_colour", "bit_depth"].into_iter().find(|k| !map.contains_key(k)) {
                return Err(MetadataError::Missing(format!("{PREFIX}{key}")));
            }
        }
        let mut obj = serde_json::Map::new();
        for (k, v) in &map {
            // Strings were stored bare; everything else as JSON.
            let val = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_string()));
            obj.insert(k.to_string(), val);
        }
        for key in ["category", "git_revision", "precision"] {
            if let Some(s) = map.get(key) {
                obj.insert(key.into(), serde_json::Value::String(s.to_string()));
            }
        }
        // Decode field by field first, so a bad value names its key.
        for (k, v) in &obj {
            let probe = serde_json::json!({ k.as_str(): v });
            if let Err(e) = serde_json::from_value::<Probe>(probe) {
                return Err(MetadataError::Invalid { key: format!("{PREFIX}{k}"), value: map.get(k.as_str()).unwrap_or(&"").to_string(), why: e.to_string() });
            }
        }
        let meta: Self = serde_json::from_value(serde_json::Value::Object(obj)).map_err(|e| {
            let msg = e.to_string();
            match msg.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
                Some(field) => MetadataError::Missing(format!("{PREFIX}{field}")),
                None => MetadataError::Invalid { key: "ffcad.*".into(), value: String::new(), why: msg },
            }
        })?;
        meta.validate()?;
        Ok(meta)
    }

    /// Range checks on values the runtime relies on.
    pub fn validate(&self) -> Result<(), MetadataError> {
        let bad = |key: &str, value: String, why: &str| Err(MetadataError::Invalid { key: format!("{PREFIX}{key}"), value, why: why.into() });
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return bad("threshold", self.threshold.to_string(), "expected a finite image score > 0");
        }
        if self.input_height == 0 || self.input_width == 0 {
            return bad("input_height", format!("{}x{}", self.input_height, self.input_width), "expected a size > 0");
        }
        if self.norm_std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return bad("norm_std", format!("{:?}", self.norm_std), "expected three finite values > 0");
        }
        if !["f32", "int8"].contains(&self.precision.as_str()) {
            return bad("precision", self.precision.clone(), "expected `f32` or `int8`");
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) fn example() -> ModelMetadata {
    ModelMetadata {
        format_version: FORMAT_VERSION,
        category: "12".into(),
        input_height: 64,
        input_width: 160,
        norm_mean: [0.485, 0.456, 0.406],
        norm_std: [0.229, 0.224, 0.225],
        score_filter_px: 7,
        score_line_px: 0,
        map_sigma_px: 0.0,
        map_floor_quantile: 0.0,
        tta_passes: 1,
        threshold: 0.25,
        threshold_calibration: ThresholdCalibration { method: "quantile".into(), target_false_reject_rate: 0.01, good_images: 10 },
        good_score_stats: ScoreStats::of(&[0.1, 0.2]),
        train_config: serde_json::json!({"seed": 1}),
        metrics: serde_json::json!({}),
        git_revision: "abc".into(),
        precision: "f32".into(),
        macs: 1234,
        input_colour: InputColour::Rgb,
        bit_depth: BitDepth::FULL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_every_field_even_numeric_looking_strings() {
        let m = example();
        let props = m.to_props();
        assert!(props.iter().any(|(k, v)| k == "ffcad.threshold" && v == "0.25"));
        let back = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn tta_passes_default_to_one_and_the_scoring_line_names_rule_sigma_and_passes() {
        let m = ModelMetadata { map_sigma_px: 2.0, tta_passes: 4, score_line_px: 160, train_config: serde_json::json!({"model": {"tta": "flip-vflip"}}), ..example() };
        // A file exported before the key: one pass.
        let props: Vec<_> = m.to_props().into_iter().filter(|(k, _)| k != "ffcad.tta_passes").collect();
        assert_eq!(ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap().tta_passes, 1);
        let back = ModelMetadata::from_props(m.to_props().iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back.tta_passes, 4);
        assert_eq!(back.scoring(), "max over 16 orientations of the anomaly map's mean along a 160 px line; map smoothed with sigma 2 px, mean of 4 TTA passes flip-vflip");
        assert_eq!(example().scoring(), "max of the 7x7 px mean-filtered anomaly map; raw map (no smoothing)");
        // Without the trainer's config: the passes alone.
        let bare = ModelMetadata { tta_passes: 2, train_config: serde_json::json!({}), ..example() };
        assert!(bare.scoring().ends_with(", mean of 2 TTA passes"), "{}", bare.scoring());
        let min = ModelMetadata { train_config: serde_json::json!({"model": {"tta": "half-turn", "tta_reduce": "min"}}), tta_passes: 2, ..example() };
        assert!(min.scoring().ends_with(", minimum of 2 TTA passes half-turn"), "{}", min.scoring());
        // The map's floor: stored, read back, named; absent in older files = 0 (no floor).
        let floored = ModelMetadata { map_floor_quantile: 0.1, ..example() };
        let back = ModelMetadata::from_props(floored.to_props().iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back.map_floor_quantile, 0.1);
        assert!(back.scoring().ends_with("raw map (no smoothing), its 0.1-quantile removed per image after the score"), "{}", back.scoring());
        let props: Vec<_> = floored.to_props().into_iter().filter(|(k, _)| k != "ffcad.map_floor_quantile").collect();
        assert_eq!(ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap().map_floor_quantile, 0.0);
    }

    #[test]
    fn missing_and_wrong_version_are_named() {
        let m = example();
        let props: Vec<_> = m.to_props().into_iter().filter(|(k, _)| k != "ffcad.threshold").collect();
        let err = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err();
        assert!(err.to_string().contains("ffcad.threshold"), "{err}");
        let err = ModelMetadata::from_props([("ffcad.format_version", "7")]).unwrap_err();
        assert!(err.to_string().contains("version 7"), "{err}");
        let mut props = m.to_props();
        props.iter_mut().find(|(k, _)| k == "ffcad.threshold").unwrap().1 = "abc".into();
        let err = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err().to_string();
        assert!(err.contains("ffcad.threshold") && err.contains("abc"), "{err}");
        props.iter_mut().find(|(k, _)| k == "ffcad.threshold").unwrap().1 = "-1".into();
        let err = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err().to_string();
        assert!(err.contains("ffcad.threshold") && err.contains("> 0"), "{err}");
        let err = ModelMetadata::from_props([("other", "1")]).unwrap_err();
        assert!(err.to_string().contains("ffcad.format_version"), "{err}");
    }

    #[test]
    fn input_colour_round_trips_and_is_unknown_for_older_models() {
        for c in [InputColour::Rgb, InputColour::Grey, InputColour::Unknown] {
            let m = ModelMetadata { input_colour: c, ..example() };
            let props = m.to_props();
            assert!(props.iter().any(|(k, v)| k == "ffcad.input_colour" && *v == c.to_string()), "{props:?}");
            let back = ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
            assert_eq!(back.input_colour, c);
        }
        // Version 1 files may lack the key; version 2 files must have it (tested below).
        let mut old: Vec<_> = example().to_props().into_iter().filter(|(k, _)| k != "ffcad.input_colour").collect();
        old.iter_mut().find(|(k, _)| k == "ffcad.format_version").unwrap().1 = "1".into();
        let back = ModelMetadata::from_props(old.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back.input_colour, InputColour::Unknown);
        let mut bad = example().to_props();
        bad.iter_mut().find(|(k, _)| k == "ffcad.input_colour").unwrap().1 = "purple".into();
        let err = ModelMetadata::from_props(bad.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err().to_string();
        assert!(err.contains("ffcad.input_colour") && err.contains("purple"), "{err}");
    }

    #[test]
    fn version_1_models_load_with_the_stated_defaults_and_version_2_must_be_complete() {
        let v2 = example().to_props();
        assert!(v2.iter().any(|(k, v)| k == "ffcad.format_version" && v == "2"), "{v2:?}");
        assert!(v2.iter().any(|(k, v)| k == "ffcad.bit_depth" && v == "16"), "{v2:?}");
        let m12 = ModelMetadata { bit_depth: BitDepth::new(12).unwrap(), ..example() };
        let back = ModelMetadata::from_props(m12.to_props().iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back.bit_depth.bits(), 12);
        // A version 1 file as the first trainers wrote it: none of the later keys.
        let later = ["ffcad.map_sigma_px", "ffcad.input_colour", "ffcad.bit_depth"];
        let mut v1: Vec<_> = v2.iter().filter(|(k, _)| !later.contains(&k.as_str())).cloned().collect();
        v1.iter_mut().find(|(k, _)| k == "ffcad.format_version").unwrap().1 = "1".into();
        let old = ModelMetadata::from_props(v1.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!((old.bit_depth, old.map_sigma_px, old.input_colour), (BitDepth::FULL, 0.0, InputColour::Unknown));
        for key in later {
            let cut: Vec<_> = v2.iter().filter(|(k, _)| k != key).collect();
            let err = ModelMetadata::from_props(cut.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("missing"), "{key}: {err}");
        }
        let mut bad = v2.clone();
        bad.iter_mut().find(|(k, _)| k == "ffcad.bit_depth").unwrap().1 = "20".into();
        let err = ModelMetadata::from_props(bad.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err().to_string();
        assert!(err.contains("ffcad.bit_depth") && err.contains("20") && err.contains("8 ..= 16"), "{err}");
        let mut v3 = v2;
        v3.iter_mut().find(|(k, _)| k == "ffcad.format_version").unwrap().1 = "3".into();
        let err = ModelMetadata::from_props(v3.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap_err().to_string();
        assert!(err.contains("version 3") && err.contains("re-export"), "{err}");
    }
}
