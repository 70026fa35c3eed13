//! A tiny model that honours the export contract (DESIGN.md §5) without training: the anomaly map
//! is the mean of the three input channels and the score its maximum, so a frame's brightness
//! sets its verdict. For tests of the line and of `runtime inspect` (disk faults, pulses, soaks)
//! that must not wait for the trainer; it loads through the same [`crate::infer::AnomalyModel`]
//! path as a real export.

use std::path::Path;

use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::bit_depth::BitDepth;
use crate::metadata::{ModelMetadata, ScoreStats, ThresholdCalibration, FORMAT_VERSION, INPUT_NAME, MAP_OUTPUT_NAME, SCORE_OUTPUT_NAME};

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims.iter().map(|&d| tensor_shape_proto::Dimension { value: Some(tensor_shape_proto::dimension::Value::DimValue(d)), ..Default::default() }).collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: DataType::Float as i32, shape: Some(TensorShapeProto { dim }) })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto { op_type: op.into(), name: output.into(), input: inputs.iter().map(|s| s.to_string()).collect(), output: vec![output.into()], attribute, ..Default::default() }
}

/// Writes the brightness model for `width` x `height` px inputs with `threshold` to `path`: a
/// frame whose brightest pixel (mean of R, G, B in [0, 1]) exceeds `threshold` is REJECT. Its
/// metadata says full-range (16-bit) samples.
///
/// # Errors
/// The file cannot be written.
pub fn write_brightness_model(path: &Path, width: u32, height: u32, threshold: f32) -> anyhow::Result<()> {
    write_brightness_model_at_depth(path, width, height, threshold, BitDepth::FULL)
}

/// [`write_brightness_model`] whose metadata records `bit_depth` as its training images' bit
/// depth (`ffcad.bit_depth`), as a trainer run with `--bit-depth` writes it.
///
/// # Errors
/// The file cannot be written.
pub fn write_brightness_model_at_depth(path: &Path, width: u32, height: u32, threshold: f32, bit_depth: BitDepth) -> anyhow::Result<()> {
    write_brightness_model_with(path, width, height, threshold, bit_depth, ScoreStats::of(&[]))
}

/// [`write_brightness_model`] with good-image score statistics `good` in its metadata (what
/// calibration stores; the drift watch compares recent scores with them).
///
/// # Errors
/// The file cannot be written.
pub fn write_brightness_model_with(path: &Path, width: u32, height: u32, threshold: f32, bit_depth: BitDepth, good: ScoreStats) -> anyhow::Result<()> {
    let (w, h) = (i64::from(width), i64::from(height));
    let ints = |name: &str, v: &[i64]| AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() };
    let int = |name: &str, v: i64| AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: v, ..Default::default() };
    let graph = GraphProto {
        name: "brightness".into(),
        node: vec![
            node("ReduceMean", &[INPUT_NAME], MAP_OUTPUT_NAME, vec![ints("axes", &[1]), int("keepdims", 1)]),
            node("ReduceMax", &[MAP_OUTPUT_NAME], "max", vec![ints("axes", &[1, 2, 3]), int("keepdims", 0)]),
            node("Reshape", &["max", "score_shape"], SCORE_OUTPUT_NAME, vec![]),
        ],
        initializer: vec![TensorProto {
            name: "score_shape".into(),
            dims: vec![1],
            data_type: DataType::Int64 as i32,
            raw_data: 1i64.to_le_bytes().to_vec(),
            ..Default::default()
        }],
        input: vec![value_info(INPUT_NAME, &[1, 3, h, w])],
        output: vec![value_info(MAP_OUTPUT_NAME, &[1, 1, h, w]), value_info(SCORE_OUTPUT_NAME, &[1])],
        ..Default::default()
    };
    let metadata = ModelMetadata {
        format_version: FORMAT_VERSION,
        category: "synthetic-brightness".into(),
        input_height: height,
        input_width: width,
        norm_mean: [0.0; 3],
        norm_std: [1.0; 3],
        score_filter_px: 1,
        score_line_px: 0,
        map_sigma_px: 0.0,
        map_floor_quantile: 0.0,
        tta_passes: 1,
        threshold,
        threshold_calibration: ThresholdCalibration { method: "fixed".into(), target_false_reject_rate: 0.0, good_images: 0 },
        good_score_stats: good,
        train_config: serde_json::json!({}),
        metrics: serde_json::json!({}),
        git_revision: "synthetic".into(),
        precision: "f32".into(),
        macs: 0,
        input_colour: crate::metadata::InputColour::Unknown,
        bit_depth,
    };
    let proto = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "ffc-ad-runtime-synthetic".into(),
        graph: Some(graph),
        metadata_props: metadata.to_props().into_iter().map(|(key, value)| StringStringEntryProto { key, value }).collect(),
        ..Default::default()
    };
    std::fs::write(path, proto.encode_to_vec()).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brightness_sets_the_score() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.onnx");
        write_brightness_model(&p, 32, 16, 0.5).unwrap();
        let mut m = crate::infer::AnomalyModel::load(&p).unwrap();
        assert_eq!((m.input_size(), m.metadata.threshold), ((32, 16), 0.5));
        let mut chw = vec![0.2f32; 3 * 32 * 16];
        chw[5] = 0.8; // R of pixel 5; its mean is (0.8 + 0.2 + 0.2) / 3 = 0.4
        let out = m.infer(&chw).unwrap();
        assert!((out.score - 0.4).abs() < 1e-6, "{}", out.score);
        assert_eq!(out.anomaly_map.len(), 32 * 16);
        assert!((out.anomaly_map[0] - 0.2).abs() < 1e-6);
    }
}
