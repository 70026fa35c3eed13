//! Export parity: the tch model and tract running the exported ONNX file agree.

use runtime::infer::AnomalyModel;
use runtime::metadata::ModelMetadata;
use tch::{nn, Device, Kind, Tensor};
use trainer::config::TrainConfig;
use trainer::model::FfcAd;

/// Operators the f32 exporter may emit (all supported by tract-onnx 0.23.9, opset 17).
const ALLOWED_OPS: [&str; 20] = [
    "Add", "AveragePool", "Concat", "Conv", "ConvTranspose", "Gather", "Identity", "MatMul", "MaxPool", "Min", "Mul", "Pad", "ReduceMax", "ReduceMean", "Relu", "Reshape", "Sigmoid", "Slice", "Sub", "TopK",
];

/// Operators the int8 exporter may add (standard ONNX, supported by tract-onnx 0.23.9).
const ALLOWED_INT8_OPS: [&str; 3] = ["DequantizeLinear", "QLinearConv", "QuantizeLinear"];

/// A random-init model whose BatchNorms hold non-trivial running statistics.
fn random_model(vs: &nn::VarStore, h: i64, w: i64) -> FfcAd {
    let mut cfg = TrainConfig::small().model;
    cfg.input_height = h;
    cfg.input_width = w;
    let model = FfcAd::new(&vs.root(), &cfg).unwrap();
    for _ in 0..3 {
        let _ = model.forward_t(&Tensor::rand([2, 3, h, w], (Kind::Float, Device::Cpu)), true);
    }
    model
}

/// `n` images [3 * h * w] uniform in [0, 1), image i drawn after `tch::manual_seed(seed + i)`.
fn random_images(n: i64, seed: i64, h: i64, w: i64) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            tch::manual_seed(seed + i);
            Vec::<f32>::try_from(&Tensor::rand([3 * h * w], (Kind::Float, Device::Cpu))).unwrap()
        })
        .collect()
}

/// Runs ONNX Runtime (the venv's Python, set up by scripts/env.sh) on `model` with one input
/// [1, 3, h, w]; returns the anomaly map followed by the score.
fn onnxruntime_outputs(model: &std::path::Path, input: &[f32], h: i64, w: i64) -> Vec<f32> {
    const SCRIPT: &str = r#"
import sys, numpy as np, onnxruntime as ort
model, inp, out, h, w = sys.argv[1:6]
x = np.fromfile(inp, dtype="<f4").reshape(1, 3, int(h), int(w))
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
amap, score = sess.run(["anomaly_map", "score"], {"image": x})
np.concatenate([amap.ravel(), score.ravel()]).astype("<f4").tofile(out)
"#;
    let dir = model.parent().unwrap();
    let (inp, out) = (dir.join("ort_in.f32"), dir.join("ort_out.f32"));
    std::fs::write(&inp, input.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let python = std::env::var("VIRTUAL_ENV").map(|v| format!("{v}/bin/python")).unwrap_or_else(|_| "python3".into());
    let st = std::process::Command::new(&python)
        .args(["-c", SCRIPT, model.to_str().unwrap(), inp.to_str().unwrap(), out.to_str().unwrap(), &h.to_string(), &w.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run the tests through scripts/test.sh"));
    assert!(st.success(), "ONNX Runtime failed on {}; run the tests through scripts/test.sh", model.display());
    std::fs::read(&out).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Exports `model`, then runs tch, tract and ONNX Runtime on 2 random images and asserts that
/// the maps and scores agree within 1e-4; returns the tract model and the file's path (in `dir`).
fn assert_three_way_parity(model: &FfcAd, dir: &std::path::Path) -> (AnomalyModel, std::path::PathBuf) {
    let (h, w) = (model.config.input_height, model.config.input_width);
    let meta = ModelMetadata { category: "parity".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) };
    let exported = trainer::export::build(model, &meta);
    for op in &exported.op_types {
        assert!(ALLOWED_OPS.contains(&op.as_str()), "unexpected operator {op}");
    }
    assert!(exported.op_types.iter().any(|o| o == "MatMul"), "FourierUnits export as MatMuls");
    let path = dir.join("m.onnx");
    trainer::export::write(&exported.proto, &path).unwrap();
    let mut rt = AnomalyModel::load(&path).unwrap();
    assert_eq!(rt.input_size(), (w as u32, h as u32));
    assert_eq!(rt.metadata.category, "parity");
    let n = (h * w) as usize;
    let (mut dmap, mut dscore, mut dort) = (0.0f32, 0.0f32, 0.0f32);
    for seed in 0..2 {
        tch::manual_seed(100 + seed);
        let x = Tensor::rand([1, 3, h, w], (Kind::Float, Device::Cpu));
        let input = Vec::<f32>::try_from(&x.view([-1])).unwrap();
        let (maps, scores) = trainer::evaluate::forward_maps(model, std::slice::from_ref(&input), Device::Cpu);
        let r = rt.infer(&input).unwrap();
        assert_eq!(r.anomaly_map.len(), n);
        // ONNX Runtime on the same file: the export follows the ONNX standard, not only tract.
        let ort = onnxruntime_outputs(&path, &input, h, w);
        assert_eq!(ort.len(), n + 1);
        dort = maps[0].iter().zip(&ort).fold(dort, |m, (a, b)| m.max((a - b).abs())).max((scores[0] - ort[n]).abs());
        dmap = maps[0].iter().zip(&r.anomaly_map).fold(dmap, |m, (a, b)| m.max((a - b).abs()));
        dscore = dscore.max((scores[0] - r.score).abs());
        // The map is not constant: the comparison is not trivially satisfied.
        let spread = r.anomaly_map.iter().cloned().fold(f32::MIN, f32::max) - r.anomaly_map.iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 1e-3, "flat map, spread {spread}");
    }
    println!("parity tch vs tract: max |map| {dmap:.3e}, max |score| {dscore:.3e}; tch vs ONNX Runtime: max {dort:.3e}");
    assert!(dmap < 1e-4 && dscore < 1e-4, "tch vs tract: map {dmap}, score {dscore}");
    assert!(dort < 1e-4, "tch vs ONNX Runtime: {dort}");
    (rt, path)
}

#[test]
fn tch_and_tract_agree_on_the_exported_file() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    // A few train-mode passes give BatchNorm non-trivial running statistics to fold.
    let model = random_model(&vs, 64, 96);
    let dir = tempfile::tempdir().unwrap();
    let (mut rt, _) = assert_three_way_parity(&model, dir.path());
    // Wrong input size is a clear error.
    let msg = rt.infer(&[0.0; 10]).unwrap_err().to_string();
    assert!(msg.contains("[1, 3, 64, 96]") && msg.contains("m.onnx"), "{msg}");
}

#[test]
fn coordinate_channels_export_as_one_shared_constant_and_agree() {
    use trainer::config::CoordChannels;
    tch::manual_seed(6);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut cfg = TrainConfig::small().model;
    (cfg.input_height, cfg.input_width, cfg.coord_channels) = (64, 96, CoordChannels::EncoderAndHead);
    let model = FfcAd::new(&vs.root(), &cfg).unwrap();
    for _ in 0..3 {
        let _ = model.forward_t(&Tensor::rand([2, 3, 64, 96], (Kind::Float, Device::Cpu)), true);
    }
    // The stem sees [normalised image, y, x], the head [image, reconstruction, y, x].
    assert_eq!(vs.variables()["encoder.stem.conv.weight"].size()[1], 5);
    assert_eq!(vs.variables()["head.enc0a.conv.weight"].size()[1], 8);
    // tch, tract and ONNX Runtime agree: the graph's planes are the ones the model trained with.
    let dir = tempfile::tempdir().unwrap();
    assert_three_way_parity(&model, dir.path());
    // One initializer holds the planes for both; the runtime's input is still the image alone.
    let meta = ModelMetadata { category: "parity".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) };
    let graph = trainer::export::build(&model, &meta).proto.graph.unwrap();
    let planes: Vec<_> = graph.initializer.iter().filter(|t| t.name.starts_with("coordinates.")).collect();
    assert_eq!(planes.len(), 1, "{:?}", planes.iter().map(|t| &t.name).collect::<Vec<_>>());
    assert_eq!((planes[0].name.as_str(), planes[0].dims.as_slice()), ("coordinates.64x96", &[1i64, 2, 64, 96][..]));
    let readers: Vec<&str> = graph.node.iter().filter(|n| n.input.iter().any(|i| i == "coordinates.64x96")).map(|n| n.name.as_str()).collect();
    assert_eq!(readers.len(), 2, "{readers:?}");
    assert!(readers.iter().any(|n| n.starts_with("encoder.")) && readers.iter().any(|n| n.starts_with("head.")), "{readers:?}");
    assert_eq!(graph.input.len(), 1);
}

#[test]
fn int8_exports_use_standard_operators_and_agree_between_tract_and_onnxruntime() {
    use trainer::export::quant::QuantForm;
    tch::manual_seed(6);
    let (h, w) = (64i64, 96i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = random_model(&vs, h, w);
    let meta = ModelMetadata { category: "int8".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) };
    let inputs = random_images(4, 200, h, w);
    let ranges = trainer::export::activation_ranges(&model, &meta, &inputs).unwrap();
    // Every quantized conv has a calibrated, non-empty input and output range, keyed by the
    // convolution's variable path.
    assert!(ranges.len() > 20, "{} convolutions", ranges.len());
    assert!(ranges.values().all(|r| r.input.min <= r.input.max && r.output.min <= r.output.max));
    let vars = vs.variables();
    for name in ranges.keys() {
        assert!(vars.contains_key(&format!("{name}.weight")), "range key {name} is not a convolution of the model");
    }
    // The stem conv reads the normalised image: its input range is that of (x - mean) / std.
    let stem = &ranges["encoder.stem.conv"];
    assert!(stem.input.min < -1.5 && stem.input.max > 2.0, "{stem:?}");
    // The spectral convs and the head's first and logit convs stay f32: not quantization sites.
    assert!(!ranges.keys().any(|k| k.ends_with(".fu.conv")), "{:?}", ranges.keys().collect::<Vec<_>>());
    assert!(!ranges.contains_key("head.enc0a.conv") && !ranges.contains_key("head.out"));
    assert!(ranges.contains_key("head.enc0b.conv") && ranges.contains_key("dae.to_rgb"));
    let dir = tempfile::tempdir().unwrap();
    for form in [QuantForm::Qlinear, QuantForm::Qdq] {
        let exported = trainer::export::build_int8(&model, &meta, form, ranges.clone());
        for op in &exported.op_types {
            assert!(ALLOWED_OPS.contains(&op.as_str()) || ALLOWED_INT8_OPS.contains(&op.as_str()), "unexpected operator {op}");
        }
        let q = if form == QuantForm::Qlinear { "QLinearConv" } else { "DequantizeLinear" };
        assert!(exported.op_types.iter().any(|o| o == q), "{form:?} uses {q}");
        // Each site's int8 weights are named after its variable path.
        let graph = exported.proto.graph.as_ref().unwrap();
        let inits: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        for name in ranges.keys() {
            assert!(inits.contains(format!("{name}.weight_int8").as_str()) && inits.contains(format!("{name}.weight_scale").as_str()), "{form:?}: {name}");
        }
        if form == QuantForm::Qlinear {
            let init = |n: &str| graph.initializer.iter().find(|t| t.name == n).unwrap_or_else(|| panic!("no initializer {n}")).raw_data.clone();
            let scale = |n: &str| f32::from_le_bytes(init(n)[..4].try_into().unwrap());
            // Every QLinearConv whose (dequantized) output only ReLUs read has the ReLU fused:
            // output zero point 0, so the u8 range is [0, max].
            let readers = |v: &str| graph.node.iter().filter(|n| n.input.iter().any(|i| i == v)).collect::<Vec<_>>();
            let mut fused = 0;
            for conv in graph.node.iter().filter(|n| n.op_type == "QLinearConv") {
                let deq = readers(&conv.output[0]);
                assert!(deq.len() == 1 && deq[0].op_type == "DequantizeLinear", "{}: read by {:?}", conv.name, deq.iter().map(|n| &n.op_type).collect::<Vec<_>>());
                let after = readers(&deq[0].output[0]);
                if !after.is_empty() && after.iter().all(|n| n.op_type == "Relu") {
                    assert_eq!(init(&conv.input[7]), vec![0u8], "{}: a ReLU reads it, its output zero point must be 0", conv.name);
                    fused += 1;
                }
            }
            assert!(fused > 20, "{fused} fused Conv-ReLU pairs");
            // One in detail (head.enc0b): scale = max / 255 of its calibrated pre-ReLU range.
            let r = ranges["head.enc0b.conv"].output;
            assert!(r.min < 0.0 && r.max > 0.0, "pre-ReLU range {r:?}");
            assert_eq!(init("head.enc0b.conv.output_zero_point"), vec![0u8]);
            let s = scale("head.enc0b.conv.output_scale");
            assert!((s - r.max / 255.0).abs() <= 1e-6 * s.max(1e-6), "{s} vs {}", r.max / 255.0);
            // One a Sigmoid reads (dae.to_rgb): the whole observed range, its zero point inside.
            let r = ranges["dae.to_rgb"].output;
            let p = trainer::export::quant::u8_params(r);
            assert!(p.zero_point > 0, "{r:?}");
            assert_eq!(init("dae.to_rgb.output_zero_point"), vec![p.zero_point]);
            assert_eq!(scale("dae.to_rgb.output_scale"), p.scale);
        }
        let path = dir.path().join(format!("{form:?}.onnx"));
        trainer::export::write(&exported.proto, &path).unwrap();
        let mut rt = AnomalyModel::load(&path).unwrap();
        let (mut d_ort, mut d_f32) = (0.0f32, 0.0f32);
        for input in &inputs[..2] {
            let r = rt.infer(input).unwrap();
            let ort = onnxruntime_outputs(&path, input, h, w);
            let (maps, scores) = trainer::evaluate::forward_maps(&model, std::slice::from_ref(input), Device::Cpu);
            d_ort = r.anomaly_map.iter().zip(&ort).fold(d_ort, |m, (a, b)| m.max((a - b).abs())).max((r.score - ort[(h * w) as usize]).abs());
            d_f32 = maps[0].iter().zip(&r.anomaly_map).fold(d_f32, |m, (a, b)| m.max((a - b).abs())).max((scores[0] - r.score).abs());
        }
        println!("{form:?}: tract int8 vs ONNX Runtime int8 max {d_ort:.3e}; tract int8 vs tch f32 max {d_f32:.3e}");
        // QLinearConv: the same int8 arithmetic in both engines, a few rounding steps apart:
        // measured 1.3e-2 on the anomaly map on the CPU of BENCHMARKS.md's header (AVX-512
        // VNNI) and 5.6e-2 on one with AVX2 only (tract picks other int8 kernels there;
        // BENCHMARKS.md "int8 on the localization recipe's graph"). QDQ: ONNX Runtime fuses the Q/DQ pairs into its own
        // int8 kernels while tract dequantizes and runs f32 convolutions (measured 1.35e-1).
        let bound = if form == QuantForm::Qlinear { 0.1 } else { 0.25 };
        assert!(d_ort < bound, "{form:?}: tract vs ONNX Runtime {d_ort}");
        // Quantization changes the result, but not beyond recognition.
        assert!(d_f32 > 0.0 && d_f32 < 0.5, "{form:?}: int8 vs f32 {d_f32}");
    }
}

#[test]
fn int8_tta_ranges_cover_every_pass_and_the_copies_share_the_int8_weights() {
    use trainer::export::quant::QuantForm;
    tch::manual_seed(11);
    let (h, w) = (64i64, 96i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = random_model(&vs, h, w);
    let inputs = random_images(3, 300, h, w);
    let meta = |m: &FfcAd| ModelMetadata { category: "int8-tta".into(), ..trainer::evaluate::uncalibrated_metadata(&m.config) };
    let one = trainer::export::activation_ranges(&model, &meta(&model), &inputs).unwrap();
    model.config.tta = trainer::config::Tta::Flip;
    let both = trainer::export::activation_ranges(&model, &meta(&model), &inputs).unwrap();
    // Keyed by the variable path as without TTA; each range covers the image's own pass, and
    // some are wider (the mirrored pass reads the unmirrored coordinates).
    assert_eq!(one.keys().collect::<Vec<_>>(), both.keys().collect::<Vec<_>>());
    let mut wider = 0;
    for (k, r) in &one {
        let t = both[k];
        assert!(t.input.min <= r.input.min && t.input.max >= r.input.max && t.output.min <= r.output.min && t.output.max >= r.output.max, "{k}: {t:?} vs {r:?}");
        wider += usize::from(t.output != r.output);
    }
    assert!(wider > 0, "no range saw the mirrored pass");
    let exported = trainer::export::build_int8(&model, &meta(&model), QuantForm::Qdq, both);
    let graph = exported.proto.graph.as_ref().unwrap();
    // One int8 weight per convolution, read by the dequantization of both passes.
    let readers = graph.node.iter().filter(|n| n.input.iter().any(|i| i == "encoder.stem.conv.weight_int8")).count();
    assert_eq!(readers, 2, "encoder.stem.conv's int8 weight read once per pass");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tta-int8.onnx");
    trainer::export::write(&exported.proto, &path).unwrap();
    let mut rt = AnomalyModel::load(&path).unwrap();
    let r = rt.infer(&inputs[0]).unwrap();
    let (maps, _) = trainer::evaluate::forward_maps(&model, std::slice::from_ref(&inputs[0]), Device::Cpu);
    let d = maps[0].iter().zip(&r.anomaly_map).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("int8 TTA vs f32 TTA map: max |diff| {d:.3e}");
    // As the one-pass int8 test: quantization changes the map, not beyond recognition.
    assert!(d > 0.0 && d < 0.5, "int8 vs f32 with TTA: {d}");
}

/// A defect raises the head's logits above every good image's. The int8 map must follow them:
/// the logit conv (`head.out`) stays f32, where a QLinearConv's u8 output range, observed on good
/// images only, clipped every defect and capped the int8 map at sigmoid of the good images'
/// largest logit (RESULTS.md, session 19). QDQ never quantized conv outputs; it is checked too.
#[test]
fn int8_map_follows_logits_above_the_calibrated_range() {
    use trainer::export::quant::QuantForm;
    tch::manual_seed(8);
    let (h, w) = (64i64, 96i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = random_model(&vs, h, w);
    // A defect everywhere is the whole image's floor: the floor off, so the map shows it.
    model.config.map_floor_quantile = 0.0;
    let meta = ModelMetadata { category: "int8-cap".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) };
    let inputs = random_images(3, 300, h, w);
    let ranges = trainer::export::activation_ranges(&model, &meta, &inputs[..2]).unwrap();
    assert!(!ranges.contains_key("head.out"), "the logit conv is not an int8 site");
    // After calibration, every logit + 8: a "defect" everywhere, above any calibrated range.
    let mut bias = model.head.out.conv.bs.as_ref().expect("head.out has a bias").shallow_clone();
    tch::no_grad(|| {
        let _ = bias.g_add_scalar_(8.0);
    });
    let (maps, _) = trainer::evaluate::forward_maps(&model, std::slice::from_ref(&inputs[2]), Device::Cpu);
    let f32_max = maps[0].iter().fold(0.0f32, |m, v| m.max(*v));
    assert!(f32_max > 0.99, "f32 map max {f32_max}");
    let dir = tempfile::tempdir().unwrap();
    for form in [QuantForm::Qlinear, QuantForm::Qdq] {
        let path = dir.path().join(format!("{form:?}.onnx"));
        trainer::export::write(&trainer::export::build_int8(&model, &meta, form, ranges.clone()).proto, &path).unwrap();
        let r = AnomalyModel::load(&path).unwrap().infer(&inputs[2]).unwrap();
        let int8_max = r.anomaly_map.iter().fold(0.0f32, |m, v| m.max(*v));
        // Capped (QLinearConv before the fix), it stayed at sigmoid of the calibrated logit maximum (0.70 here).
        assert!(int8_max > 0.97 && r.score > 0.97, "{form:?}: int8 map max {int8_max}, score {} (f32 {f32_max})", r.score);
    }
}

/// Direct Gaussian filter in f64, written independently of `trainer::model::smooth`: window
/// radius ceil(3 sigma), weights exp(-(dx^2 + dy^2) / (2 sigma^2)) normalised over the window,
/// mirror borders without repeating the edge pixel (index -1 -> 1, n -> n - 2).
fn direct_gaussian(map: &[f32], h: usize, w: usize, sigma: f64) -> Vec<f64> {
    let r = (3.0 * sigma).ceil() as i64;
    let mirror = |i: i64, n: usize| -> usize {
        let n = n as i64;
        (if i < 0 { -i } else if i >= n { 2 * n - 2 - i } else { i }) as usize
    };
    let mut total = 0.0;
    for dy in -r..=r {
        for dx in -r..=r {
            total += (-((dx * dx + dy * dy) as f64) / (2.0 * sigma * sigma)).exp();
        }
    }
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for dy in -r..=r {
                for dx in -r..=r {
                    let wgt = (-((dx * dx + dy * dy) as f64) / (2.0 * sigma * sigma)).exp();
                    acc += wgt * map[mirror(y as i64 + dy, h) * w + mirror(x as i64 + dx, w)] as f64;
                }
            }
            out[y * w + x] = acc / total;
        }
    }
    out
}

#[test]
fn the_graph_smooths_the_map_as_an_independent_gaussian_filter_does() {
    tch::manual_seed(8);
    let (h, w) = (64i64, 96i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = random_model(&vs, h, w);
    // The floor comes after the smoothing (a floor does not commute with it): off here.
    model.config.map_floor_quantile = 0.0;
    let dir = tempfile::tempdir().unwrap();
    // The same weights exported raw (sigma 0) and smoothed (sigma 2): smoothing acts after the
    // sigmoid, so the smoothed graph's map is the raw graph's map filtered.
    let mut run = |sigma: f64, input: &[f32]| {
        model.config.map_sigma_px = sigma;
        let meta = trainer::evaluate::uncalibrated_metadata(&model.config);
        assert_eq!(meta.map_sigma_px, sigma as f32);
        let exported = trainer::export::build(&model, &meta);
        let path = dir.path().join(format!("sigma{sigma}.onnx"));
        trainer::export::write(&exported.proto, &path).unwrap();
        let mut rt = AnomalyModel::load(&path).unwrap();
        assert_eq!(rt.metadata.map_sigma_px, sigma as f32);
        let r = rt.infer(input).unwrap();
        // tch computes the same smoothed map.
        let (maps, _) = trainer::evaluate::forward_maps(&model, &[input.to_vec()], Device::Cpu);
        let d = maps[0].iter().zip(&r.anomaly_map).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(d < 1e-4, "sigma {sigma}: tch vs tract {d}");
        r.anomaly_map
    };
    let input = Vec::<f32>::try_from(&Tensor::rand([3 * h * w], (Kind::Float, Device::Cpu))).unwrap();
    let raw = run(0.0, &input);
    let smooth = run(2.0, &input);
    let expected = direct_gaussian(&raw, h as usize, w as usize, 2.0);
    let d = smooth.iter().zip(&expected).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    let spread = raw.iter().cloned().fold(f32::MIN, f32::max) - raw.iter().cloned().fold(f32::MAX, f32::min);
    let change = smooth.iter().zip(&raw).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("graph smoothing vs direct Gaussian: max {d:.3e} (raw map spread {spread:.3e}, smoothing changed it by up to {change:.3e})");
    assert!(spread > 1e-3 && change > 1e-4, "the smoothing must have something to do");
    assert!(d < 1e-5, "graph vs direct Gaussian {d}");
}

/// Line-mean image score written independently of `trainer::model::line_score`: the map
/// mean-pooled `pool x pool`, then for 16 orientations k * 180 / 16 degrees and every pooled
/// pixel the mean of `2 L + 1` bilinear samples along the line of `L = length / pool` pooled px
/// centred there, sample indices clamped to the map (the border pixel repeated); the max.
fn direct_line_score(map: &[f32], h: usize, w: usize, length_px: usize) -> f64 {
    let pool = length_px.div_ceil(32);
    let (ph, pw) = (h / pool, w / pool);
    let pooled: Vec<f64> = (0..ph * pw)
        .map(|i| {
            let (y, x) = (i / pw, i % pw);
            (0..pool * pool).map(|j| map[(y * pool + j / pool) * w + x * pool + j % pool] as f64).sum::<f64>() / (pool * pool) as f64
        })
        .collect();
    let at = |y: i64, x: i64| pooled[(y.clamp(0, ph as i64 - 1) as usize) * pw + x.clamp(0, pw as i64 - 1) as usize];
    let bilinear = |y: f64, x: f64| {
        let (y0, x0) = (y.floor(), x.floor());
        let (fy, fx) = (y - y0, x - x0);
        let (y0, x0) = (y0 as i64, x0 as i64);
        (1.0 - fy) * (1.0 - fx) * at(y0, x0) + fy * (1.0 - fx) * at(y0 + 1, x0) + (1.0 - fy) * fx * at(y0, x0 + 1) + fy * fx * at(y0 + 1, x0 + 1)
    };
    let l = length_px as f64 / pool as f64;
    let r = (l - 1.0) / 2.0;
    let n = (2.0 * l).round() as usize + 1;
    let mut best = f64::MIN;
    for k in 0..16 {
        let th = std::f64::consts::PI * k as f64 / 16.0;
        for y in 0..ph {
            for x in 0..pw {
                let mean = (0..n).map(|s| -r + 2.0 * r * s as f64 / (n - 1) as f64).map(|t| bilinear(y as f64 + t * th.sin(), x as f64 + t * th.cos())).sum::<f64>() / n as f64;
                best = best.max(mean);
            }
        }
    }
    best
}

#[test]
fn the_line_score_in_the_graph_is_the_best_line_mean_of_its_map() {
    tch::manual_seed(9);
    let (h, w) = (64i64, 96i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = random_model(&vs, h, w);
    model.config.score_line_px = 40;
    // The score reads the map before its floor; with the floor off the output map is that map.
    model.config.map_floor_quantile = 0.0;
    let dir = tempfile::tempdir().unwrap();
    // tch, tract and ONNX Runtime agree on map and score (the graph: AveragePool, Pad edge, Conv).
    let (mut rt, _) = assert_three_way_parity(&model, dir.path());
    assert_eq!(rt.metadata.score_line_px, 40);
    let input = Vec::<f32>::try_from(&Tensor::rand([3 * h * w], (Kind::Float, Device::Cpu))).unwrap();
    let r = rt.infer(&input).unwrap();
    let expected = direct_line_score(&r.anomaly_map, h as usize, w as usize, 40);
    let max = r.anomaly_map.iter().cloned().fold(f32::MIN, f32::max);
    println!("graph line score {} vs direct {expected} (map max {max})", r.score);
    assert!((r.score as f64 - expected).abs() < 1e-5, "graph {} vs direct {expected}", r.score);
    // Not the max of the map: the line averages it.
    assert!(max - r.score > 1e-3, "line score {} vs map max {max}", r.score);
}

#[test]
fn the_map_floor_is_removed_after_the_score_at_the_quantile_a_sort_finds() {
    tch::manual_seed(12);
    let (h, w) = (64i64, 96i64);
    let n = (h * w) as usize;
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = random_model(&vs, h, w);
    let q = model.config.map_floor_quantile;
    assert_eq!(q, 0.1, "the preset removes the floor: the parity tests above cover it");
    let dir = tempfile::tempdir().unwrap();
    // tch (kthvalue), tract and ONNX Runtime (TopK) agree on the floored map and the score.
    let (mut rt, _) = assert_three_way_parity(&model, dir.path());
    assert!((rt.metadata.map_floor_quantile - 0.1).abs() < 1e-7, "metadata {}", rt.metadata.map_floor_quantile);
    let graph = trainer::export::build(&model, &ModelMetadata { category: "floor".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) }).proto.graph.unwrap();
    let topk: Vec<&str> = graph.node.iter().filter(|nd| nd.op_type == "TopK").map(|nd| nd.name.as_str()).collect();
    assert_eq!(topk, ["floor.TopK"], "one TopK, in scope `floor`");
    // The reference: the same weights exported without the floor.
    model.config.map_floor_quantile = 0.0;
    let plain = trainer::export::build(&model, &ModelMetadata { category: "plain".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) });
    trainer::export::write(&plain.proto, &dir.path().join("plain.onnx")).unwrap();
    let mut reference = AnomalyModel::load(&dir.path().join("plain.onnx")).unwrap();
    for seed in 0..2 {
        tch::manual_seed(300 + seed);
        let input = Vec::<f32>::try_from(&Tensor::rand([3 * h * w], (Kind::Float, Device::Cpu))).unwrap();
        let (r, r0) = (rt.infer(&input).unwrap(), reference.infer(&input).unwrap());
        // The score is the map's before the floor.
        assert!((r.score - r0.score).abs() < 1e-6, "score {} vs without the floor {}", r.score, r0.score);
        // Independently: sort the map, take the value at index floor(q (n - 1)) (numpy's
        // quantile where that is whole), subtract it and clamp at 0.
        let mut sorted = r0.anomaly_map.clone();
        sorted.sort_by(f32::total_cmp);
        let i = (q * (n - 1) as f64).floor() as usize;
        let floor = sorted[i];
        let d = r.anomaly_map.iter().zip(&r0.anomaly_map).fold(0.0f32, |m, (a, b)| m.max((a - (b - floor).max(0.0)).abs()));
        let zeros = r.anomaly_map.iter().filter(|&&v| v == 0.0).count();
        println!("floor {floor:.4} (map {:.4} to {:.4}); floored map vs the sort's: max |diff| {d:.2e}; {zeros} zeros of {n}", sorted[0], sorted[n - 1]);
        assert!(floor - sorted[0] > 1e-3, "the floor moved the map: {floor} vs min {}", sorted[0]);
        assert!(d < 1e-6, "floored map vs the direct one: {d}");
        // Every pixel at or under the floor is 0: at least i + 1 of them, and none below 0.
        assert!(zeros > i && r.anomaly_map.iter().all(|&v| v >= 0.0), "{zeros} zeros, expected > {i}");
    }
}

/// `chw` [c, h, w] row-major mirrored left-right (`lr`) and / or top-bottom (`tb`).
fn mirrored(chw: &[f32], h: usize, w: usize, lr: bool, tb: bool) -> Vec<f32> {
    let mut out = vec![0.0; chw.len()];
    for c in 0..chw.len() / (h * w) {
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = (if tb { h - 1 - y } else { y }, if lr { w - 1 - x } else { x });
                out[(c * h + y) * w + x] = chw[(c * h + sy) * w + sx];
            }
        }
    }
    out
}

#[test]
fn the_tta_map_is_the_mean_of_the_mirrored_images_maps() {
    use trainer::config::Tta;
    tch::manual_seed(10);
    let (h, w) = (64i64, 96i64);
    let (hu, wu) = (h as usize, w as usize);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = random_model(&vs, h, w);
    // The floor is per image after the mean (a floor of a mean is not the mean of floors):
    // off here, tested on its own.
    model.config.map_floor_quantile = 0.0;
    let dir = tempfile::tempdir().unwrap();
    // The reference: the same weights exported with one pass.
    let meta = ModelMetadata { category: "plain".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) };
    let plain = trainer::export::build(&model, &meta);
    trainer::export::write(&plain.proto, &dir.path().join("plain.onnx")).unwrap();
    let mut one_pass = AnomalyModel::load(&dir.path().join("plain.onnx")).unwrap();
    model.config.tta = Tta::FlipVflip;
    // tch (one batch of 4), tract and ONNX Runtime (4 copies of the network) agree.
    let tta_dir = dir.path().join("tta");
    std::fs::create_dir_all(&tta_dir).unwrap();
    let (mut rt, _) = assert_three_way_parity(&model, &tta_dir);
    assert_eq!(rt.metadata.tta_passes, 4);
    let tta = trainer::export::build(&model, &ModelMetadata { category: "tta".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) });
    assert!(tta.op_types.iter().any(|o| o == "Gather"), "mirrors as Gather: {:?}", tta.op_types);
    let gathers: Vec<String> = tta.proto.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type == "Gather").map(|n| n.name.clone()).collect();
    // In: 3 mirrored copies (lr, tb, lr + tb = 2 Gathers): 4; out: the same 4 back.
    assert_eq!(gathers.len(), 8, "{gathers:?}");
    assert!(gathers.iter().all(|n| n.starts_with("tta.")), "{gathers:?}");
    // The network runs 4 times; the smoothing and the score once (on the mean map).
    let ratio = tta.macs as f64 / plain.macs as f64;
    assert!((3.9..4.0).contains(&ratio), "MACs {} vs one pass {}: x{ratio}", tta.macs, plain.macs);
    // As 4 batch-1 copies of the network reading the same initializers: each convolution of
    // passes 1-3 is named `tta.pass<i>.<path>` and reads `<path>.weight`; no initializer twice.
    let convs = |e: &trainer::export::Exported| e.proto.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type == "Conv").cloned().collect::<Vec<_>>();
    let (plain_convs, tta_convs) = (convs(&plain), convs(&tta));
    let smoothing = 2;
    assert_eq!(tta_convs.len(), 4 * (plain_convs.len() - smoothing) + smoothing);
    for i in 1..4 {
        let prefix = format!("tta.pass{i}.");
        let copies: Vec<_> = tta_convs.iter().filter(|n| n.name.starts_with(&prefix)).collect();
        assert_eq!(copies.len(), plain_convs.len() - smoothing, "pass {i}");
        for n in copies {
            assert_eq!(n.input[1], format!("{}.weight", &n.name[prefix.len()..]), "{}", n.name);
        }
    }
    let inits = &tta.proto.graph.as_ref().unwrap().initializer;
    let names: std::collections::HashSet<&str> = inits.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), inits.len(), "an initializer emitted twice");
    assert!(tta.proto.graph.as_ref().unwrap().node.iter().filter(|n| n.op_type == "Concat").all(|n| !n.name.starts_with("tta.Concat")), "no batch of copies");
    let input = Vec::<f32>::try_from(&Tensor::rand([3 * h * w], (Kind::Float, Device::Cpu))).unwrap();
    let r = rt.infer(&input).unwrap();
    // Independently: the one-pass model on each mirror, its map mirrored back, the four averaged
    // (the reflect-padded Gaussian commutes with mirrors, so smoothing before or after the mean
    // is the same map).
    let mut mean = vec![0.0f64; hu * wu];
    let mut first = Vec::new();
    for (lr, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let m = one_pass.infer(&mirrored(&input, hu, wu, lr, tb)).unwrap().anomaly_map;
        let back = mirrored(&m, hu, wu, lr, tb);
        mean.iter_mut().zip(&back).for_each(|(a, b)| *a += *b as f64 / 4.0);
        if first.is_empty() {
            first = back;
        }
    }
    let d = r.anomaly_map.iter().zip(&mean).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    let moved = r.anomaly_map.iter().zip(&first).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("TTA map vs mean of mirrored one-pass maps: max |diff| {d:.2e}; vs the one-pass map {moved:.2e}");
    assert!(d < 1e-5, "TTA map vs the mean of the mirrored maps: {d}");
    assert!(moved > 1e-3, "the passes changed nothing ({moved})");
    // The score: max of the 3x3 mean filter of that mean map.
    let k = model.config.score_filter_px as usize;
    let mut best = f64::MIN;
    for y in 0..=hu - k {
        for x in 0..=wu - k {
            let s: f64 = (0..k).flat_map(|dy| (0..k).map(move |dx| (dy, dx))).map(|(dy, dx)| mean[(y + dy) * wu + x + dx]).sum();
            best = best.max(s / (k * k) as f64);
        }
    }
    assert!((r.score as f64 - best).abs() < 1e-5, "graph score {} vs direct {best}", r.score);
}

#[test]
fn the_min_tta_map_is_the_smoothed_pixelwise_minimum_of_the_mirrored_images_raw_maps() {
    use trainer::config::{Tta, TtaReduce};
    tch::manual_seed(11);
    let (h, w) = (64i64, 96i64);
    let (hu, wu) = (h as usize, w as usize);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut model = random_model(&vs, h, w);
    // The floor comes after the minimum and the smoothing: off here, tested on its own.
    model.config.map_floor_quantile = 0.0;
    let sigma = model.config.map_sigma_px;
    assert!(sigma > 0.0, "the preset smooths: the test checks the smoothing comes after the minimum");
    let dir = tempfile::tempdir().unwrap();
    // The reference: the same weights exported with one pass and the raw map (sigma 0): a
    // Gaussian of a minimum is not the minimum of Gaussians.
    model.config.map_sigma_px = 0.0;
    let raw = trainer::export::build(&model, &ModelMetadata { category: "raw".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) });
    trainer::export::write(&raw.proto, &dir.path().join("raw.onnx")).unwrap();
    let mut one_pass = AnomalyModel::load(&dir.path().join("raw.onnx")).unwrap();
    model.config.map_sigma_px = sigma;
    model.config.tta = Tta::FlipVflip;
    model.config.tta_reduce = TtaReduce::Min;
    // tch (torch.minimum over one batch of 4), tract and ONNX Runtime (ONNX Min) agree.
    let (mut rt, _) = assert_three_way_parity(&model, dir.path());
    let graph = trainer::export::build(&model, &ModelMetadata { category: "min".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) });
    let nodes = &graph.proto.graph.as_ref().unwrap().node;
    let mins: Vec<&str> = nodes.iter().filter(|n| n.op_type == "Min").map(|n| n.name.as_str()).collect();
    assert_eq!(mins.len(), 3, "4 passes, 3 pairwise minima: {mins:?}");
    assert!(mins.iter().all(|n| n.starts_with("tta.")), "{mins:?}");
    // The passes' own nodes are `tta.pass<i>.<path>`; the combination's are the other `tta.` ones.
    let combine: Vec<&str> = nodes.iter().filter(|n| n.name.starts_with("tta.") && !n.name.starts_with("tta.pass") && n.op_type != "Gather").map(|n| n.op_type.as_str()).collect();
    assert_eq!(combine, ["Min"; 3], "the minimum and no mean");
    let input = Vec::<f32>::try_from(&Tensor::rand([3 * h * w], (Kind::Float, Device::Cpu))).unwrap();
    let r = rt.infer(&input).unwrap();
    // Independently: the raw one-pass map of each mirror, mirrored back; their minimum and
    // their mean, each smoothed by the direct Gaussian.
    let (mut min, mut mean) = (vec![f32::MAX; hu * wu], vec![0.0f32; hu * wu]);
    for (lr, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let m = one_pass.infer(&mirrored(&input, hu, wu, lr, tb)).unwrap().anomaly_map;
        let back = mirrored(&m, hu, wu, lr, tb);
        min.iter_mut().zip(&back).for_each(|(a, b)| *a = a.min(*b));
        mean.iter_mut().zip(&back).for_each(|(a, b)| *a += b / 4.0);
    }
    let (min_smoothed, mean_smoothed) = (direct_gaussian(&min, hu, wu, sigma), direct_gaussian(&mean, hu, wu, sigma));
    let diff = |x: &[f64]| r.anomaly_map.iter().zip(x).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    let (d, from_mean) = (diff(&min_smoothed), diff(&mean_smoothed));
    println!("min-TTA map vs the smoothed minimum of the mirrored raw maps: max |diff| {d:.2e}; vs the smoothed mean {from_mean:.2e}");
    assert!(d < 1e-5, "min-TTA map vs the smoothed minimum: {d}");
    assert!(from_mean > 1e-3, "the minimum is not the mean ({from_mean})");
    // Pixel by pixel under the mean (smoothing keeps the order: its weights are positive).
    assert!(r.anomaly_map.iter().zip(&mean_smoothed).all(|(a, b)| (*a as f64) <= b + 1e-6));
}

#[test]
fn strip_pooling_in_the_head_exports_under_its_variable_path_and_agrees() {
    tch::manual_seed(9);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut cfg = TrainConfig::small().model;
    (cfg.input_height, cfg.input_width, cfg.head_strip_pool) = (64, 96, true);
    let model = FfcAd::new(&vs.root(), &cfg).unwrap();
    for _ in 0..3 {
        let _ = model.forward_t(&Tensor::rand([2, 3, 64, 96], (Kind::Float, Device::Cpu)), true);
    }
    let c = cfg.head_channels(cfg.head_levels - 1);
    for part in ["rows.conv", "cols.conv", "fuse"] {
        assert_eq!(vs.variables()[&format!("head.strip.{part}.weight")].size(), vec![c, c, 1, 1], "{part}");
    }
    let dir = tempfile::tempdir().unwrap();
    assert_three_way_parity(&model, dir.path());
    let meta = ModelMetadata { category: "parity".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) };
    let graph = trainer::export::build(&model, &meta).proto.graph.unwrap();
    // The row and column means of the coarsest level (4x6 at 64x96 with 5 levels): [1, C, 4, 1] and [1, C, 1, 6].
    let means: Vec<&str> = graph.node.iter().filter(|n| n.op_type == "ReduceMean").map(|n| n.name.as_str()).collect();
    assert_eq!(means.len(), 2, "{means:?}");
    assert!(means.iter().all(|n| n.starts_with("head.strip.")), "{means:?}");
    let convs: Vec<&str> = graph.node.iter().filter(|n| n.op_type == "Conv" && n.name.starts_with("head.strip.")).map(|n| n.name.as_str()).collect();
    assert_eq!(convs, ["head.strip.rows.conv", "head.strip.cols.conv", "head.strip.fuse"]);
    // Off, the graph has no strip: the option changes the model only where it is set.
    let mut off = cfg.clone();
    off.head_strip_pool = false;
    let vs_off = nn::VarStore::new(Device::Cpu);
    let plain = FfcAd::new(&vs_off.root(), &off).unwrap();
    assert!(!vs_off.variables().keys().any(|k| k.contains("strip")));
    let plain_graph = trainer::export::build(&plain, &meta).proto.graph.unwrap();
    assert!(!plain_graph.node.iter().any(|n| n.op_type == "ReduceMean"));
}

#[test]
fn graph_names_follow_the_model_variable_paths() {
    use std::collections::{BTreeSet, HashSet};
    tch::manual_seed(8);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = random_model(&vs, 64, 96);
    let meta = ModelMetadata { category: "names".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) };
    let exported = trainer::export::build(&model, &meta);
    let graph = exported.proto.graph.unwrap();
    let vars = vs.variables();
    // Every convolution weight of the model is an initializer of the same name, and every
    // `.weight` initializer is a variable of the model (BatchNorm folded in) or the fixed
    // Gaussian filter.
    let fixed = |n: &str| n.starts_with("smooth.gaussian");
    let conv_vars: BTreeSet<&str> = vars.iter().filter(|(_, t)| t.dim() == 4).map(|(k, _)| k.as_str()).collect();
    let weight_inits: BTreeSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).filter(|n| n.ends_with(".weight") && !fixed(n)).collect();
    assert_eq!(weight_inits, conv_vars);
    assert!(conv_vars.iter().any(|n| n.contains(".ffc.l2g.weight")), "an FFC local-to-global conv: {conv_vars:?}");
    // Each Conv / ConvTranspose node is named after its variable path and reads `<path>.weight`.
    let mut convs = 0;
    for n in graph.node.iter().filter(|n| n.op_type == "Conv" || n.op_type == "ConvTranspose") {
        assert_eq!(n.input[1], format!("{}.weight", n.name), "{n:?}");
        assert!(vars.contains_key(&n.input[1]) || fixed(&n.name), "{}", n.name);
        convs += 1;
    }
    // The Gaussian is separable: a row and a column conv; the upsamplings are no convs.
    assert_eq!(convs, conv_vars.len() + 2 * usize::from(model.config.map_sigma_px > 0.0));
    // Each bilinear x2 of the decoder and the head ends in a node `<scope>.upsample`.
    let upsamplings = graph.node.iter().filter(|n| n.name.ends_with(".upsample")).count();
    let expected = model.config.decoder_widths.len() + model.config.head_levels - 1;
    assert_eq!(upsamplings, expected, "bilinear x2 nodes: one per decoder stage and head level");
    // Every other node sits under a model part or a named top-level step; names are unique.
    let parts = ["tta.", "encoder.", "dae.", "head.", "normalize.", "smooth.", "score.", "floor."];
    let mut seen = HashSet::new();
    for n in &graph.node {
        assert!(seen.insert(n.name.as_str()), "node name {} twice", n.name);
        assert!(parts.iter().any(|p| n.name.starts_with(p)) || ["anomaly_map", "score"].contains(&n.name.as_str()), "node {} ({})", n.name, n.op_type);
    }
    // The FourierUnits' DFT bases: one set per size, shared.
    let dft: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).filter(|n| n.starts_with("dft.")).collect();
    let dft_set: HashSet<&str> = dft.iter().copied().collect();
    assert_eq!(dft.len(), dft_set.len(), "each DFT basis written once: {dft:?}");
    let fourier_units = graph.node.iter().filter(|n| n.op_type == "Conv" && n.name.ends_with(".fu.conv")).count();
    assert!(fourier_units >= 2 && dft.len() < 6 * fourier_units, "{fourier_units} FourierUnits share {} bases", dft.len());
}

/// Every graph output of `model` in ONNX Runtime, by name: (name, flattened values).
fn onnxruntime_all_outputs(model: &std::path::Path, input: &[f32], h: i64, w: i64) -> Vec<(String, Vec<f32>)> {
    const SCRIPT: &str = r#"
import sys, json, numpy as np, onnxruntime as ort
model, inp, out, h, w = sys.argv[1:6]
x = np.fromfile(inp, dtype="<f4").reshape(1, 3, int(h), int(w))
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
names = [o.name for o in sess.get_outputs()]
values = sess.run(None, {"image": x})
np.concatenate([v.astype("<f4").ravel() for v in values]).tofile(out)
print(json.dumps([[n, int(v.size)] for n, v in zip(names, values)]))
"#;
    let dir = model.parent().unwrap();
    let (inp, out) = (dir.join("ort_all_in.f32"), dir.join("ort_all_out.f32"));
    std::fs::write(&inp, input.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let python = std::env::var("VIRTUAL_ENV").map(|v| format!("{v}/bin/python")).unwrap_or_else(|_| "python3".into());
    let o = std::process::Command::new(&python)
        .args(["-c", SCRIPT, model.to_str().unwrap(), inp.to_str().unwrap(), out.to_str().unwrap(), &h.to_string(), &w.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run the tests through scripts/test.sh"));
    assert!(o.status.success(), "ONNX Runtime failed: {}", String::from_utf8_lossy(&o.stderr));
    let sizes: Vec<(String, usize)> = serde_json::from_slice(&o.stdout).unwrap();
    let flat: Vec<f32> = std::fs::read(&out).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let mut at = 0;
    sizes
        .into_iter()
        .map(|(name, n)| {
            at += n;
            (name, flat[at - n..at].to_vec())
        })
        .collect()
}

/// Parity that names the node: the export with every convolution's input and output exposed (the
/// int8 calibration graph) runs in tract and in ONNX Runtime, and each convolution output, named
/// by its variable path, must agree; a failure says which convolution diverged first.
#[test]
fn every_convolution_agrees_between_tract_and_onnxruntime_by_name() {
    use tract_onnx::prelude::{tvec, Framework, InferenceModelExt, IntoRunnable, IntoTValue};
    tch::manual_seed(9);
    let (h, w) = (64i64, 96i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = random_model(&vs, h, w);
    let meta = ModelMetadata { category: "nodes".into(), ..trainer::evaluate::uncalibrated_metadata(&model.config) };
    let (exported, sites) = trainer::export::build_with(&model, &meta, trainer::export::graph::ConvMode::Record);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("record.onnx");
    trainer::export::write(&exported.proto, &path).unwrap();
    tch::manual_seed(300);
    let input = Vec::<f32>::try_from(&Tensor::rand([3 * h * w], (Kind::Float, Device::Cpu))).unwrap();
    let plan = tract_onnx::onnx().model_for_path(&path).unwrap().into_optimized().unwrap().into_runnable().unwrap();
    let outs = plan.run(tvec!(tract_onnx::prelude::Tensor::from_shape(&[1, 3, h as usize, w as usize], &input).unwrap().into_tvalue())).unwrap();
    let names: Vec<String> = exported.proto.graph.as_ref().unwrap().output.iter().map(|o| o.name.clone()).collect();
    let ort = onnxruntime_all_outputs(&path, &input, h, w);
    assert_eq!(ort.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(), names, "same outputs in the same order");
    // Relative to the tensor's scale (activations deep in the network reach tens). f32 sums in
    // another order drift with depth: measured worst 4.4e-4 (head.Concat, the DAE's
    // reconstruction), the rest <= 1.1e-4; the final map agrees to 1e-4 (test above).
    const NODE_TOL: f32 = 1e-3;
    let mut first_bad = None;
    let mut worst = (0.0f32, String::new());
    let mut all = Vec::new();
    for (site, (name, t)) in names.iter().zip(outs.iter()).enumerate().map(|(i, (n, t))| (i, (n, t))) {
        let tract: Vec<f32> = t.to_plain_array_view::<f32>().unwrap().iter().copied().collect();
        let reference = &ort[site].1;
        assert_eq!(tract.len(), reference.len(), "{name}");
        let scale = reference.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let err = tract.iter().zip(reference).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        if err > worst.0 {
            worst = (err, name.clone());
        }
        all.push((err, name.clone()));
        if err > NODE_TOL && first_bad.is_none() {
            first_bad = Some(format!("{name}: max |tract - ONNX Runtime| / scale = {err:.3e}"));
        }
    }
    assert!(sites.len() > 20 && names.len() > sites.len(), "{} sites, {} outputs", sites.len(), names.len());
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("per-node parity over {} outputs: worst {:.3e} at {}; next {:?}", names.len(), worst.0, worst.1, &all[1..6.min(all.len())]);
    assert!(first_bad.is_none(), "first diverging node: {}", first_bad.unwrap());
}
