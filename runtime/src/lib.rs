//! FFC-AD line runtime library: the stages of DESIGN.md §6 as small modules, shared with the
//! trainer so that export checks use the same preprocessing, scoring and metrics.

pub mod alloc_count;
pub mod bench;
pub mod bit_depth;
pub mod calibrate;
pub mod collect;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod dataset;
pub mod decide;
pub mod evaluation;
pub mod events;
pub mod extremes;
pub mod framebuffer;
pub mod gpio;
pub mod gpio_test;
pub mod infer;
pub mod inspect;
pub mod inspector;
pub mod line;
pub mod metadata;
pub mod metrics;
pub mod mqtt;
#[cfg(feature = "onnxruntime")]
pub mod ort_engine;
pub mod output;
pub mod overlay;
pub mod preflight;
pub mod preprocess;
pub mod progress;
pub mod reject;
pub mod shutdown;
pub mod synthetic;
pub mod threshold;
pub mod web;
