//! Export parity: the tch model and tract running the exported ONNX file agree.

use runtime::infer::AnomalyModel;
use runtime::metadata::ModelMetadata;
use tch::{nn, Device, Kind, Tensor};
use trainer::config::TrainConfig;
use trainer::model::FfcAd;

/// Operators the exporter may emit (all supported by tract-onnx 0.23.9, opset 17).
const ALLOWED_OPS: [&str; 14] =
    ["Add", "AveragePool", "Concat", "Conv", "ConvTranspose", "Identity", "MatMul", "MaxPool", "Mul", "ReduceMax", "Relu", "Sigmoid", "Slice", "Sub"];

#[test]
fn tch_and_tract_agree_on_the_exported_file() {
    tch::manual_seed(5);
    let mut cfg = TrainConfig::small().model;
    cfg.input_height = 64;
    cfg.input_width = 96;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = FfcAd::new(&vs.root(), &cfg).unwrap();
    // A few train-mode passes give BatchNorm non-trivial running statistics to fold.
    for _ in 0..3 {
        let _ = model.forward_t(&Tensor::rand([2, 3, 64, 96], (Kind::Float, Device::Cpu)), true);
    }
    let meta = ModelMetadata { category: "parity".into(), ..trainer::evaluate::uncalibrated_metadata(&cfg) };
    let exported = trainer::export::build(&model, &meta);
    for op in &exported.op_types {
        assert!(ALLOWED_OPS.contains(&op.as_str()), "unexpected operator {op}");
    }
    assert!(exported.op_types.iter().any(|o| o == "MatMul"), "FourierUnits export as MatMuls");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    trainer::export::write(&exported.proto, &path).unwrap();
    let rt = AnomalyModel::load(&path).unwrap();
    assert_eq!(rt.input_size(), (96, 64));
    assert_eq!(rt.metadata.category, "parity");
    let (mut dmap, mut dscore) = (0.0f32, 0.0f32);
    for seed in 0..2 {
        tch::manual_seed(100 + seed);
        let x = Tensor::rand([1, 3, 64, 96], (Kind::Float, Device::Cpu));
        let input = Vec::<f32>::try_from(&x.view([-1])).unwrap();
        let (maps, scores) = trainer::evaluate::forward_maps(&model, std::slice::from_ref(&input), Device::Cpu);
        let r = rt.infer(&input).unwrap();
        assert_eq!(r.anomaly_map.len(), 64 * 96);
        dmap = maps[0].iter().zip(&r.anomaly_map).fold(dmap, |m, (a, b)| m.max((a - b).abs()));
        dscore = dscore.max((scores[0] - r.score).abs());
        // The map is not constant: the comparison is not trivially satisfied.
        let spread = r.anomaly_map.iter().cloned().fold(f32::MIN, f32::max) - r.anomaly_map.iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 1e-3, "flat map, spread {spread}");
    }
    println!("parity tch vs tract: max |map| {dmap:.3e}, max |score| {dscore:.3e}");
    assert!(dmap < 1e-4 && dscore < 1e-4, "tch vs tract: map {dmap}, score {dscore}");
    // Wrong input size is a clear error.
    let msg = rt.infer(&[0.0; 10]).unwrap_err().to_string();
    assert!(msg.contains("[1, 3, 64, 96]") && msg.contains("m.onnx"), "{msg}");
}
