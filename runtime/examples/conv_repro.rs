//! Issue 15: the smallest graphs that reproduce tract's gap to ONNX Runtime.
//!
//! Cuts every convolution (`Conv`, `QLinearConv`) out of an exported model as a one-node ONNX
//! graph with its own weights and its input shape in the model, and times each in tract and in
//! ONNX Runtime (in process, through the `ort` crate), 1 thread each, in the same run. What the
//! table shows is which convolution shapes tract runs far below ONNX Runtime's rate, and
//! `--write DIR` keeps those one-node graphs as the reproducers a tract issue needs.
//!
//! ```sh
//! source scripts/env.sh   # ORT_DYLIB_PATH: libonnxruntime.so of the wheel in .venv/
//! cargo run --example conv_repro --features onnxruntime -- MODEL.onnx [--iterations 50] [--rows 20] [--write DIR]
//! ```
//!
//! `--help` lists the options.
//!
//! MACs per conv: `C_out x C_in / groups x k_h x k_w x H_out x W_out` (one multiply-add each).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use prost::Message;
use rand::{Rng, SeedableRng};
use tract_onnx::pb::{self, tensor_proto::DataType, tensor_shape_proto::dimension, type_proto};
use tract_onnx::prelude::*;

/// One convolution cut out of the model.
struct Cut {
    name: String,
    op: String,
    input_shape: Vec<usize>,
    kernel: (usize, usize),
    groups: usize,
    macs: u64,
    proto: pb::ModelProto,
    input_u8: bool,
}

fn value_info(name: &str, elem: DataType, shape: &[usize]) -> pb::ValueInfoProto {
    let shape = Some(pb::TensorShapeProto {
        dim: shape.iter().map(|&d| pb::tensor_shape_proto::Dimension { value: Some(dimension::Value::DimValue(d as i64)), ..Default::default() }).collect(),
    });
    pb::ValueInfoProto { name: name.into(), r#type: Some(pb::TypeProto { value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: elem as i32, shape })), ..Default::default() }), ..Default::default() }
}

fn concrete(model: &TypedModel, outlet: OutletId) -> anyhow::Result<Vec<usize>> {
    let fact = model.outlet_fact(outlet)?;
    fact.shape.as_concrete().map(|s| s.to_vec()).with_context(|| format!("shape {:?} is not concrete", fact.shape))
}

/// Every Conv / QLinearConv of `model` whose weights are initializers, as a one-node model.
fn cut_convs(model: &pb::ModelProto) -> anyhow::Result<Vec<Cut>> {
    let graph = model.graph.as_ref().context("model has no graph")?;
    let typed = tract_onnx::onnx().model_for_proto_model(model)?.into_typed()?;
    let mut cuts = Vec::new();
    for node in graph.node.iter().filter(|n| n.op_type == "Conv" || n.op_type == "QLinearConv") {
        let data = &node.input[0];
        let Some(in_outlet) = typed.find_outlet_label(data) else {
            eprintln!("skipped {}: input {data} not found in tract's graph", node.name);
            continue;
        };
        let Some(out_outlet) = typed.find_outlet_label(&node.output[0]) else {
            eprintln!("skipped {}: output not found in tract's graph", node.name);
            continue;
        };
        let (input_shape, output_shape) = (concrete(&typed, in_outlet)?, concrete(&typed, out_outlet)?);
        let initializers: Vec<pb::TensorProto> = graph.initializer.iter().filter(|t| node.input[1..].contains(&t.name)).cloned().collect();
        let weight_name = if node.op_type == "Conv" { &node.input[1] } else { &node.input[3] };
        let Some(weight) = initializers.iter().find(|t| &t.name == weight_name) else {
            eprintln!("skipped {}: weight {weight_name} is not an initializer", node.name);
            continue;
        };
        if initializers.len() != node.input[1..].iter().filter(|s| !s.is_empty()).count() {
            eprintln!("skipped {}: an input other than the data is computed, not an initializer", node.name);
            continue;
        }
        let groups = node.attribute.iter().find(|a| a.name == "group").map_or(1, |a| a.i as usize);
        let (c_out, c_in_g, kh, kw) = (weight.dims[0] as u64, weight.dims[1] as u64, weight.dims[2] as usize, weight.dims[3] as usize);
        let macs = c_out * c_in_g * (kh * kw) as u64 * output_shape[2..].iter().product::<usize>() as u64;
        let input_u8 = node.op_type == "QLinearConv";
        let elem = if input_u8 { DataType::Uint8 } else { DataType::Float };
        let one = pb::GraphProto {
            name: node.name.clone(),
            node: vec![node.clone()],
            initializer: initializers,
            input: vec![value_info(data, elem, &input_shape)],
            output: vec![value_info(&node.output[0], elem, &output_shape)],
            ..Default::default()
        };
        let proto = pb::ModelProto { ir_version: model.ir_version, opset_import: model.opset_import.clone(), graph: Some(one), ..Default::default() };
        cuts.push(Cut { name: node.name.clone(), op: node.op_type.clone(), input_shape, kernel: (kh, kw), groups, macs, proto, input_u8 });
    }
    Ok(cuts)
}

/// The input of one cut: uniform random values of its element type (seed 1), the same for both
/// engines.
enum Input {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

impl Input {
    fn random(cut: &Cut) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n: usize = cut.input_shape.iter().product();
        if cut.input_u8 { Self::U8((0..n).map(|_| rng.gen()).collect()) } else { Self::F32((0..n).map(|_| rng.gen()).collect()) }
    }
}

/// Median wall time of `run` in ms over `iterations` calls, after 3 untimed ones.
fn median_ms(iterations: usize, mut run: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut times = Vec::with_capacity(iterations);
    for i in 0..iterations + 3 {
        let t = Instant::now();
        run()?;
        if i >= 3 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn time_tract(cut: &Cut, input: &Input, iterations: usize) -> anyhow::Result<f64> {
    let plan = tract_onnx::onnx().model_for_proto_model(&cut.proto)?.into_optimized()?.into_runnable()?;
    let shape = cut.input_shape.clone();
    let input: Tensor = match input {
        Input::F32(v) => tract_ndarray::ArrayD::from_shape_vec(shape, v.clone())?.into(),
        Input::U8(v) => tract_ndarray::ArrayD::from_shape_vec(shape, v.clone())?.into(),
    };
    let mut state = plan.spawn()?;
    median_ms(iterations, || {
        state.run(tvec!(input.clone().into_tvalue()))?;
        Ok(())
    })
}

fn time_ort(env: &ort::environment::Environment, cut: &Cut, input: &Input, iterations: usize) -> anyhow::Result<f64> {
    use ort::session::{builder::GraphOptimizationLevel, Session};
    use ort::value::TensorRef;
    let bytes = cut.proto.encode_to_vec();
    // The builder's errors carry the builder, which is not Send: kept as their message.
    let e = |e: ort::Error<ort::session::builder::SessionBuilder>| anyhow::anyhow!("ONNX Runtime: {e}");
    let mut session = Session::builder(env)?.with_optimization_level(GraphOptimizationLevel::Level3).map_err(e)?.with_intra_threads(1).map_err(e)?.with_inter_threads(1).map_err(e)?.commit_from_memory(&bytes)?;
    let name = cut.proto.graph.as_ref().map(|g| g.input[0].name.clone()).unwrap_or_default();
    let shape = cut.input_shape.clone();
    median_ms(iterations, || {
        let value = match input {
            Input::F32(v) => TensorRef::from_array_view((shape.clone(), &v[..]))?.into_dyn(),
            Input::U8(v) => TensorRef::from_array_view((shape.clone(), &v[..]))?.into_dyn(),
        };
        session.run(ort::inputs![name.as_str() => value])?;
        Ok(())
    })
}

/// Issue 15: the same 3x3 convolution as a 1x1 convolution to one output block per kernel tap,
/// then the 9 blocks shifted (Slice) and summed ("kn2row": no im2col of the input patches).
/// Returns `None` where the form does not apply (not f32, not 3x3 / stride 1 / pad 1 / group 1).
fn kn2row(cut: &Cut) -> Option<pb::ModelProto> {
    let graph = cut.proto.graph.as_ref()?;
    let conv = &graph.node[0];
    let attr = |n: &str| conv.attribute.iter().find(|a| a.name == n);
    let all = |n: &str, want: i64| attr(n).map_or(true, |a| a.ints.iter().all(|&v| v == want));
    if cut.op != "Conv" || cut.kernel != (3, 3) || cut.groups != 1 || !all("strides", 1) || !all("dilations", 1) || attr("pads").map_or(true, |a| a.ints.iter().any(|&v| v != 1)) {
        return None;
    }
    let weight = graph.initializer.iter().find(|t| t.name == conv.input[1])?;
    let floats = |t: &pb::TensorProto| -> Vec<f32> { if t.float_data.is_empty() { t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect() } else { t.float_data.clone() } };
    let w = floats(weight);
    let (c_out, c_in) = (weight.dims[0] as usize, weight.dims[1] as usize);
    let (h, wd) = (cut.input_shape[2] as i64, cut.input_shape[3] as i64);
    // w1[t * c_out + o, i] = w[o, i, ky, kx], t = 3 ky + kx.
    let mut w1 = vec![0f32; 9 * c_out * c_in];
    for t in 0..9 {
        for o in 0..c_out {
            for i in 0..c_in {
                w1[(t * c_out + o) * c_in + i] = w[((o * c_in + i) * 3 + t / 3) * 3 + t % 3];
            }
        }
    }
    let f32_tensor = |name: &str, dims: Vec<i64>, v: &[f32]| pb::TensorProto { name: name.into(), dims, data_type: DataType::Float as i32, raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(), ..Default::default() };
    let i64_tensor = |name: &str, v: &[i64]| pb::TensorProto { name: name.into(), dims: vec![v.len() as i64], data_type: DataType::Int64 as i32, raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(), ..Default::default() };
    let ints = |name: &str, v: &[i64]| pb::AttributeProto { name: name.into(), r#type: pb::attribute_proto::AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() };
    let node = |op: &str, inputs: &[&str], output: &str, attribute: Vec<pb::AttributeProto>| pb::NodeProto { name: output.into(), op_type: op.into(), input: inputs.iter().map(|s| s.to_string()).collect(), output: vec![output.into()], attribute, ..Default::default() };
    let mut init = vec![f32_tensor("w_taps", vec![9 * c_out as i64, c_in as i64, 1, 1], &w1), i64_tensor("axes", &[1, 2, 3])];
    let mut nodes = vec![node("Conv", &[&conv.input[0], "w_taps"], "taps", vec![ints("pads", &[1, 1, 1, 1]), ints("kernel_shape", &[1, 1])])];
    let mut acc = String::new();
    for t in 0..9i64 {
        let (ky, kx, o) = (t / 3, t % 3, c_out as i64);
        init.push(i64_tensor(&format!("starts{t}"), &[t * o, ky, kx]));
        init.push(i64_tensor(&format!("ends{t}"), &[(t + 1) * o, ky + h, kx + wd]));
        let s = format!("tap{t}");
        nodes.push(node("Slice", &["taps", &format!("starts{t}"), &format!("ends{t}"), "axes"], &s, vec![]));
        if t > 0 {
            let sum = format!("sum{t}");
            nodes.push(node("Add", &[&acc, &s], &sum, vec![]));
            acc = sum;
        } else {
            acc = s;
        }
    }
    if let Some(b) = conv.input.get(2).filter(|s| !s.is_empty()).and_then(|n| graph.initializer.iter().find(|t| &t.name == n)) {
        init.push(f32_tensor("bias4", vec![1, c_out as i64, 1, 1], &floats(b)));
        nodes.push(node("Add", &[&acc, "bias4"], "biased", vec![]));
        acc = "biased".into();
    }
    nodes.push(node("Identity", &[&acc], &conv.output[0], vec![]));
    let g = pb::GraphProto { name: format!("{}.kn2row", graph.name), node: nodes, initializer: init, input: graph.input.clone(), output: graph.output.clone(), ..Default::default() };
    Some(pb::ModelProto { ir_version: cut.proto.ir_version, opset_import: cut.proto.opset_import.clone(), graph: Some(g), ..Default::default() })
}

/// Largest |difference| between the outputs of two one-input f32 graphs on `input` (tract).
fn max_diff(a: &pb::ModelProto, b: &pb::ModelProto, shape: &[usize], input: &[f32]) -> anyhow::Result<f32> {
    let run = |m: &pb::ModelProto| -> anyhow::Result<Vec<f32>> {
        let plan = tract_onnx::onnx().model_for_proto_model(m)?.into_optimized()?.into_runnable()?;
        let t: Tensor = tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), input.to_vec())?.into();
        let out = plan.run(tvec!(t.into_tvalue()))?;
        Ok(out[0].to_plain_array_view::<f32>()?.iter().copied().collect())
    };
    let (x, y) = (run(a)?, run(b)?);
    anyhow::ensure!(x.len() == y.len(), "outputs differ in size: {} vs {}", x.len(), y.len());
    Ok(x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max))
}

/// Every convolution of an exported model timed alone in tract and in ONNX Runtime (1 thread).
#[derive(clap::Parser)]
struct Args {
    /// Exported ONNX model (`trainer export`).
    model: PathBuf,
    /// Timed runs per convolution and engine (the median is shown).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// Table rows (the slowest in tract first); the rest are summed in one row.
    #[arg(long, default_value_t = 20)]
    rows: usize,
    /// Write each one-node graph here as `<node>.onnx` (the reproducers).
    #[arg(long)]
    write: Option<PathBuf>,
    /// Also time each f32 3x3 convolution in the kn2row form (1x1 conv to 9 tap blocks, shifted
    /// and summed) and print a second table.
    #[arg(long)]
    kn2row: bool,
}

fn main() -> anyhow::Result<()> {
    let Args { model, iterations, rows: rows_shown, write, kn2row: with_kn2row } = <Args as clap::Parser>::parse();
    let iterations = iterations as usize;
    let bytes = std::fs::read(&model).with_context(|| format!("cannot read {}", model.display()))?;
    let proto = pb::ModelProto::decode(&bytes[..]).with_context(|| format!("{} is not an ONNX model", model.display()))?;
    let cuts = cut_convs(&proto)?;
    let lib = runtime::ort_engine::library_path(None);
    let env = ort::init_from(&lib).with_context(|| format!("cannot load ONNX Runtime from {}", lib.display()))?.with_name("conv_repro").build()?;
    if let Some(dir) = &write {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    println!("{} convolutions of {}, 1 thread, median of {iterations} runs each\n", cuts.len(), model.display());
    println!("| node | op | input | kernel | groups | MMACs | tract ms | ONNX Runtime ms | tract / ORT | tract GMAC/s | ORT GMAC/s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let (mut sum_tract, mut sum_ort) = (0.0, 0.0);
    let mut rows = Vec::new();
    for cut in &cuts {
        let input = Input::random(cut);
        let tract_ms = time_tract(cut, &input, iterations).with_context(|| format!("tract on {}", cut.name))?;
        let ort_ms = time_ort(&env, cut, &input, iterations).with_context(|| format!("ONNX Runtime on {}", cut.name))?;
        sum_tract += tract_ms;
        sum_ort += ort_ms;
        if let Some(dir) = &write {
            let file = dir.join(format!("{}.onnx", cut.name.replace('/', "_")));
            std::fs::write(&file, cut.proto.encode_to_vec()).with_context(|| format!("cannot write {}", file.display()))?;
        }
        rows.push((cut, tract_ms, ort_ms));
    }
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let rest = rows.split_off(rows_shown.min(rows.len()));
    for (cut, tract_ms, ort_ms) in rows {
        let gmacs = |ms: f64| cut.macs as f64 / ms / 1e6;
        println!(
            "| {} | {} | {:?} | {}x{} | {} | {:.1} | {:.3} | {:.3} | {:.2}x | {:.1} | {:.1} |",
            cut.name, cut.op, cut.input_shape, cut.kernel.0, cut.kernel.1, cut.groups, cut.macs as f64 / 1e6, tract_ms, ort_ms, tract_ms / ort_ms, gmacs(tract_ms), gmacs(ort_ms)
        );
    }
    if !rest.is_empty() {
        let (t, o): (f64, f64) = rest.iter().fold((0.0, 0.0), |(t, o), r| (t + r.1, o + r.2));
        println!("| {} others | | | | | | {t:.3} | {o:.3} | {:.2}x | | |", rest.len(), t / o);
    }
    println!("\nall convolutions one by one: tract {sum_tract:.1} ms, ONNX Runtime {sum_ort:.1} ms, {:.2}x", sum_tract / sum_ort);
    if with_kn2row {
        println!("\n| node | input | tract conv ms | tract kn2row ms | ORT conv ms | ORT kn2row ms | max abs diff |");
        println!("|---|---|---|---|---|---|---|");
        let (mut tc, mut tk, mut oc, mut ok) = (0.0, 0.0, 0.0, 0.0);
        for cut in &cuts {
            let Some(proto) = kn2row(cut) else { continue };
            let alt = Cut { proto, name: format!("{}.kn2row", cut.name), op: cut.op.clone(), input_shape: cut.input_shape.clone(), kernel: cut.kernel, groups: 1, macs: cut.macs, input_u8: false };
            let input = Input::random(cut);
            let Input::F32(values) = &input else { continue };
            let diff = max_diff(&cut.proto, &alt.proto, &cut.input_shape, values)?;
            let t = (time_tract(cut, &input, iterations)?, time_tract(&alt, &input, iterations)?);
            let o = (time_ort(&env, cut, &input, iterations)?, time_ort(&env, &alt, &input, iterations)?);
            (tc, tk, oc, ok) = (tc + t.0, tk + t.1, oc + o.0, ok + o.1);
            println!("| {} | {:?} | {:.3} | {:.3} | {:.3} | {:.3} | {diff:.2e} |", cut.name, cut.input_shape, t.0, t.1, o.0, o.1);
        }
        println!("| all | | {tc:.1} | {tk:.1} | {oc:.1} | {ok:.1} | |");
    }
    Ok(())
}
