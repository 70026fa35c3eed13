//! ONNX export (DESIGN.md §5): opset 17, one graph, fixed input size, written from Rust with
//! tract's protobuf types; metadata_props carry the contract of [`runtime::metadata`].

pub mod dft;
pub mod fold;
pub mod graph;
pub mod network;

use std::path::Path;

use prost::Message;
use runtime::metadata::{ModelMetadata, INPUT_NAME, MAP_OUTPUT_NAME, SCORE_OUTPUT_NAME};
use tract_onnx::pb::{GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto};

use crate::model::FfcAd;
use graph::{value_info, GraphBuilder};

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

/// Builds the ONNX model of `model` (eval mode: BN folded, HSAS off) with `metadata`.
pub fn build(model: &FfcAd, metadata: &ModelMetadata) -> Exported {
    let _guard = tch::no_grad_guard();
    let (h, w) = (model.config.input_height, model.config.input_width);
    let mut g = GraphBuilder::default();
    let image = g.input(INPUT_NAME, &[1, 3, h, w]);
    let (map, score) = network::ffc_ad(&mut g, &image, model);
    g.identity(&map, MAP_OUTPUT_NAME);
    g.identity(&score, SCORE_OUTPUT_NAME);
    let op_types = g.op_types();
    let macs = g.macs;
    let graph = GraphProto {
        name: format!("ffc_ad_{}", metadata.category),
        node: std::mem::take(&mut g.nodes),
        initializer: std::mem::take(&mut g.initializers),
        input: vec![value_info(INPUT_NAME, &[1, 3, h, w])],
        output: vec![value_info(MAP_OUTPUT_NAME, &[1, 1, h, w]), value_info(SCORE_OUTPUT_NAME, &[1])],
        ..Default::default()
    };
    let proto = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "ffc-ad-trainer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: metadata.to_props().into_iter().map(|(key, value)| StringStringEntryProto { key, value }).collect(),
        ..Default::default()
    };
    Exported { proto, macs, op_types }
}

/// Encodes and writes `proto` to `path`; errors name the file.
pub fn write(proto: &ModelProto, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, proto.encode_to_vec()).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}
