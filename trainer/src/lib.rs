//! FFC-AD trainer: data, the FFC-AD model in tch (libtorch), HSAS, synthetic defects, training,
//! threshold calibration, evaluation and ONNX export.

pub mod ablation;
pub mod augment;
pub mod autosize;
pub mod checkpoint;
pub mod commands;
pub mod config;
pub mod cuda;
pub mod curve;
pub mod data;
pub mod ema;
pub mod evaluate;
pub mod export;
pub mod heap;
pub mod losses;
pub mod model;
pub mod optimizer;
mod partial_output;
pub mod recalibrate;
pub mod resume;
pub mod smoothing;
pub mod step_time;
pub mod synth;
pub mod synthetic_test;
pub mod train;
