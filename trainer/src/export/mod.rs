//! ONNX export (DESIGN.md §5): opset 17, one graph, fixed input size, written from Rust with
//! tract's protobuf types; metadata_props carry the contract of [`runtime::metadata`].

pub mod dft;
pub mod fold;
pub mod graph;
pub mod network;
pub mod quant;

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use runtime::metadata::{ModelMetadata, INPUT_NAME, MAP_OUTPUT_NAME, SCORE_OUTPUT_NAME};
use tract_onnx::pb::{GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto};

use crate::model::FfcAd;
use graph::{value_info, ConvMode, ConvSite, GraphBuilder};
use quant::{ConvRanges, QuantForm, Range};

/// ONNX opset of exported graphs.
pub const OPSET: i64 = 17;

/// An exported graph and what it costs.
pub struct Exported {
    pub proto: ModelProto,
    /// Multiply-accumulates of one forward pass (Conv, ConvTranspose, MatMul; the FourierUnit
    /// counted as its DFT-basis MatMuls). FLOPs = 2 x MACs.
    pub macs: u64,
    /// Distinct ONNX operator types in the graph.
    pub op_types: Vec<String>,
}

/// Builds the f32 ONNX model of `model` (eval mode: BN folded, HSAS off) with `metadata`.
pub fn build(model: &FfcAd, metadata: &ModelMetadata) -> Exported {
    build_with(model, metadata, ConvMode::F32).0
}

/// Builds the ONNX model with convolutions written as `mode` says; also returns the quantizable
/// convolutions (variable path, input and output value names), in build order. Node and
/// initializer names follow the model's variable paths ([`graph`]).
pub fn build_with(model: &FfcAd, metadata: &ModelMetadata, mode: ConvMode) -> (Exported, Vec<ConvSite>) {
    let _guard = tch::no_grad_guard();
    let (h, w) = (model.config.input_height, model.config.input_width);
    let mut g = GraphBuilder::default();
    g.conv_mode = mode;
    let image = g.input(INPUT_NAME, &[1, 3, h, w]);
    let (map, score) = network::ffc_ad(&mut g, &image, model);
    g.identity(&map, MAP_OUTPUT_NAME);
    g.identity(&score, SCORE_OUTPUT_NAME);
    let op_types = g.op_types();
    let macs = g.macs;
    let mut output = vec![value_info(MAP_OUTPUT_NAME, &[1, 1, h, w]), value_info(SCORE_OUTPUT_NAME, &[1])];
    if matches!(g.conv_mode, ConvMode::Record) {
        // Expose every site's input and output so calibration can observe them.
        let mut seen = std::collections::HashSet::new();
        for name in g.conv_sites.iter().flat_map(|s| [&s.input, &s.output]) {
            if name != INPUT_NAME && seen.insert(name.clone()) {
                output.push(value_info(name, &g.shape(name)));
            }
        }
    }
    let sites = std::mem::take(&mut g.conv_sites);
    let graph = GraphProto {
        name: format!("ffc_ad_{}", metadata.category),
        node: std::mem::take(&mut g.nodes),
        initializer: std::mem::take(&mut g.initializers),
        input: vec![value_info(INPUT_NAME, &[1, 3, h, w])],
        output,
        ..Default::default()
    };
    let proto = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "ffc-ad-trainer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: ModelMetadata { macs, ..metadata.clone() }.to_props().into_iter().map(|(key, value)| StringStringEntryProto { key, value }).collect(),
        ..Default::default()
    };
    (Exported { proto, macs, op_types }, sites)
}

/// Observes the input and output range of every quantizable convolution of `model` by running
/// its f32 export in tract on `inputs` (planar CHW RGB in [0, 1], model input size; good
/// images): the int8 activation ranges, keyed by the convolution's variable path.
///
/// Errors: tract cannot build or run the calibration graph; a convolution whose observed range
/// is not finite (named).
pub fn activation_ranges(model: &FfcAd, metadata: &ModelMetadata, inputs: &[Vec<f32>]) -> anyhow::Result<BTreeMap<String, ConvRanges>> {
    use tract_onnx::prelude::*;
    anyhow::ensure!(!inputs.is_empty(), "int8 activation ranges need at least one good training image (--int8-range-images)");
    let (exported, sites) = build_with(model, metadata, ConvMode::Record);
    let graph = exported.proto.graph.as_ref().expect("graph");
    let names: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let plan = tract_onnx::onnx().model_for_proto_model(&exported.proto)?.into_optimized()?.into_runnable()?;
    let (h, w) = (model.config.input_height as usize, model.config.input_width as usize);
    let mut observed: std::collections::HashMap<String, Range> = names.iter().map(|n| (n.clone(), Range::EMPTY)).collect();
    let mut input_range = Range::EMPTY;
    for chw in inputs {
        input_range.merge(chw);
        let x = Tensor::from_shape(&[1, 3, h, w], chw)?;
        let outs = plan.run(tvec!(x.into_tvalue()))?;
        for (name, t) in names.iter().zip(outs.iter()) {
            let view = t.to_plain_array_view::<f32>()?;
            let r = observed.get_mut(name).expect("output observed");
            r.merge(view.as_slice().expect("contiguous output"));
        }
    }
    observed.insert(INPUT_NAME.to_string(), input_range);
    let mut ranges: BTreeMap<String, ConvRanges> = BTreeMap::new();
    for s in &sites {
        let mut r = ConvRanges { input: observed[&s.input], output: observed[&s.output] };
        // The TTA passes run each convolution once per pass: its int8 ranges cover them all.
        if let Some(seen) = ranges.get(&s.name) {
            r = ConvRanges { input: r.input.union(seen.input), output: r.output.union(seen.output) };
        }
        for (what, v) in [("input", r.input), ("output", r.output)] {
            anyhow::ensure!(v.min.is_finite() && v.max.is_finite(), "int8 calibration: convolution {} has no finite {what} range ({}..{}) over {} images", s.name, v.min, v.max, inputs.len());
        }
        ranges.insert(s.name.clone(), r);
    }
    Ok(ranges)
}

/// Builds the int8 ONNX model of `model` in `form` from the activation `ranges` of
/// [`activation_ranges`], keyed by convolution.
pub fn build_int8(model: &FfcAd, metadata: &ModelMetadata, form: QuantForm, ranges: BTreeMap<String, ConvRanges>) -> Exported {
    build_with(model, metadata, ConvMode::Quantize { form, ranges }).0
}

/// Encodes and writes `proto` to `path`; errors name the file.
pub fn write(proto: &ModelProto, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, proto.encode_to_vec()).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}
