//! Device configuration of the FFC-AD line runtime (DESIGN.md §7): one TOML file per device.
//!
//! Every field has a default; [`DeviceConfig::from_toml_str`] rejects unknown keys and invalid
//! values with an error that names the key and the allowed values. Camera, trigger and board
//! presets arrive with the line runtime (issue 5); this is the part `runtime inspect` uses.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a configuration file was refused. Messages name the file or key and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config key `{key}` = {value}: expected {expected}")]
    Invalid { key: &'static str, value: String, expected: &'static str },
}

/// The whole device file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    pub model: ModelSection,
    pub reject: RejectSection,
    pub output: OutputSection,
}

/// `[model]`: which exported model to run and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Path of the exported ONNX file.
    pub path: PathBuf,
    /// Inference threads (1 ..= 64).
    pub threads: u32,
    /// Replaces the threshold stored in the model when set (image score, > 0).
    pub threshold: Option<f32>,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self { path: PathBuf::from("model.onnx"), threads: 1, threshold: None }
    }
}

/// Which reject output drives the ejector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectBackend {
    /// Records pulses only (tests, offline inspection).
    Simulated,
    /// Linux GPIO character device.
    Gpio,
}

/// `[reject]`: the reject pulse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RejectSection {
    pub backend: RejectBackend,
    /// GPIO line name (e.g. `GPIO17`), used by the `gpio` backend.
    pub line: Option<String>,
    /// True when the ejector fires on a low level (active-low wiring).
    pub active_low: bool,
    /// Pulse width, ms (1 ..= 10000).
    pub pulse_ms: u32,
    /// Delay from the frame to the pulse (camera-to-ejector distance / conveyor speed), ms
    /// (0 ..= 60000).
    pub delay_ms: u32,
    /// Pulse the reject line for a frame that cannot be inspected (corrupt, empty, too small):
    /// fail-safe, an unchecked part must not pass as good.
    pub reject_unreadable: bool,
}

impl Default for RejectSection {
    fn default() -> Self {
        Self { backend: RejectBackend::Simulated, line: None, active_low: false, pulse_ms: 50, delay_ms: 0, reject_unreadable: true }
    }
}

/// Which frames get an overlay image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlayMode {
    All,
    Rejects,
    None,
}

/// `[output]`: where results go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// Folder for events, overlays and the summary.
    pub dir: PathBuf,
    pub overlays: OverlayMode,
}

impl Default for OutputSection {
    fn default() -> Self {
        Self { dir: PathBuf::from("inspect-out"), overlays: OverlayMode::All }
    }
}

impl DeviceConfig {
    /// Parses and validates TOML text; `origin` names the source in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError::Parse { path: origin.into(), message: e.to_string() })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read { path: path.into(), cause })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Checks value ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=64).contains(&self.model.threads) {
            return Err(ConfigError::Invalid { key: "model.threads", value: self.model.threads.to_string(), expected: "an integer in 1..=64" });
        }
        if let Some(t) = self.model.threshold {
            if !(t.is_finite() && t > 0.0) {
                return Err(ConfigError::Invalid { key: "model.threshold", value: t.to_string(), expected: "a finite image score > 0" });
            }
        }
        if !(1..=10_000).contains(&self.reject.pulse_ms) {
            return Err(ConfigError::Invalid { key: "reject.pulse_ms", value: self.reject.pulse_ms.to_string(), expected: "milliseconds in 1..=10000" });
        }
        if self.reject.delay_ms > 60_000 {
            return Err(ConfigError::Invalid { key: "reject.delay_ms", value: self.reject.delay_ms.to_string(), expected: "milliseconds in 0..=60000" });
        }
        if self.reject.backend == RejectBackend::Gpio && self.reject.line.as_deref().unwrap_or("").is_empty() {
            return Err(ConfigError::Invalid { key: "reject.line", value: "(unset)".into(), expected: "a GPIO line name when reject.backend = \"gpio\"" });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = DeviceConfig::from_toml_str("", "t").unwrap();
        assert_eq!(c, DeviceConfig::default());
        assert_eq!(c.reject.pulse_ms, 50);
    }

    #[test]
    fn full_file_parses() {
        let c = DeviceConfig::from_toml_str(
            "[model]\npath = \"m.onnx\"\nthreads = 2\nthreshold = 0.4\n[reject]\nbackend = \"gpio\"\nline = \"GPIO17\"\nactive_low = true\npulse_ms = 30\ndelay_ms = 250\n[output]\ndir = \"o\"\noverlays = \"rejects\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.model.threshold, Some(0.4));
        assert_eq!(c.reject.backend, RejectBackend::Gpio);
        assert_eq!(c.output.overlays, OverlayMode::Rejects);
        assert_eq!(c.reject.delay_ms, 250);
    }

    #[test]
    fn the_shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("device.example.toml");
        let c = DeviceConfig::load(&path).unwrap();
        assert_eq!(c.reject.pulse_ms, 40);
        assert!(c.reject.reject_unreadable);
    }

    #[test]
    fn errors_name_key_and_allowed_values() {
        let cases = [
            ("[model]\nthreads = 0", "model.threads"),
            ("[model]\nthreshold = -1.0", "model.threshold"),
            ("[reject]\npulse_ms = 0", "reject.pulse_ms"),
            ("[reject]\ndelay_ms = 4294967295", "reject.delay_ms"),
            ("[reject]\nbackend = \"gpio\"", "reject.line"),
            ("[reject]\nbackend = \"relay\"", "simulated"),
            ("[output]\noverlays = \"some\"", "rejects"),
            ("[model]\nthraeds = 2", "thraeds"),
        ];
        for (text, want) in cases {
            let msg = DeviceConfig::from_toml_str(text, "dev.toml").unwrap_err().to_string();
            assert!(msg.contains(want), "{text:?} -> {msg}");
        }
        let msg = DeviceConfig::load(Path::new("/nonexistent/dev.toml")).unwrap_err().to_string();
        assert!(msg.contains("/nonexistent/dev.toml"), "{msg}");
    }
}
