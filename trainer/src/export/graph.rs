//! A small ONNX graph builder over tract's protobuf types (`tract_onnx::pb`), tracking the shape
//! of every value (batch 1) and counting multiply-accumulates (MACs) of Conv, ConvTranspose and
//! MatMul nodes. Convolutions are written in f32 or int8 according to [`ConvMode`].
//!
//! Names trace back to the model (issue 14, item 3): a convolution's node and output value are
//! named after its variable path (`encoder.stage1.block0.ffc0.ffc.l2g`), its initializers
//! `<path>.weight` / `<path>.bias` (BatchNorm folded in: the values differ from the checkpoint's,
//! the name says where they came from) and, in int8, `<path>.weight_int8`, `<path>.weight_scale`,
//! ...; other nodes are `<module path>.<Op>` (`_2`, `_3`, .. when a module has several) under the
//! scope set with [`GraphBuilder::enter`]. Constants that do not belong to one module are shared
//! by name ([`GraphBuilder::shared_constant`], e.g. the DFT bases `dft.w64.cos`, one per size).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::quant::{quantize_bias, quantize_weights_per_channel, u8_params, ConvRanges, QuantForm};

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, NodeProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// How [`GraphBuilder::conv`] writes quantizable convolutions ("sites": every Conv asked for
/// with [`ConvPrecision::AsGraph`]).
#[derive(Debug, Clone, Default)]
pub enum ConvMode {
    /// Plain f32 Conv.
    #[default]
    F32,
    /// f32 Conv; each site is recorded in [`GraphBuilder::conv_sites`] (for calibration).
    Record,
    /// int8, with the calibrated ranges of each site keyed by its variable path.
    Quantize { form: QuantForm, ranges: BTreeMap<String, ConvRanges> },
}

/// The precision one convolution is written in, passed with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvPrecision {
    /// As the graph's [`ConvMode`] says (int8 in an int8 export): a quantization site.
    AsGraph,
    /// Always f32 (the FourierUnit's spectral conv, whose input range does not fit u8; the head's
    /// first conv `head.enc0a.conv` and logit conv `head.out`, where rounding or a good-image
    /// range hides faint defects; the fixed Gaussian filter on the map).
    F32,
}

/// A quantizable convolution: its variable path and the names of its input and output values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvSite {
    pub name: String,
    pub input: String,
    pub output: String,
}

/// One convolution's arguments, passed between the f32 and int8 writers.
struct ConvSpec<'a> {
    name: &'a str,
    x: &'a str,
    weight: &'a [f32],
    dims: [i64; 4],
    bias: Option<&'a [f32]>,
    attrs: Vec<AttributeProto>,
    out_shape: Vec<i64>,
}

/// Graph under construction.
#[derive(Default)]
pub struct GraphBuilder {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    shapes: HashMap<String, Vec<i64>>,
    /// Every name given out (values and initializers share one namespace).
    used: HashSet<String>,
    /// Module path that prefixes the names of non-conv nodes and constants.
    scope: String,
    /// Shared constants already emitted, by name.
    shared: HashSet<String>,
    /// Multiply-accumulates of the graph so far.
    pub macs: u64,
    pub conv_mode: ConvMode,
    /// Each quantizable convolution, in build order.
    pub conv_sites: Vec<ConvSite>,
    /// Quantized (uint8) versions of f32 values already emitted: several convolutions reading
    /// one tensor share one QuantizeLinear.
    quantized: HashMap<String, String>,
    /// Prefix of the names of the nodes built now: `tta.pass<i>.` while building TTA pass i >= 1
    /// (a copy of the network reading the same initializers), empty otherwise.
    pass_prefix: String,
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() }
}

fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::String as i32, s: v.as_bytes().to_vec(), ..Default::default() }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: v, ..Default::default() }
}

/// `ValueInfoProto` of an f32 tensor with fixed `dims`.
pub fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| tensor_shape_proto::Dimension { value: Some(tensor_shape_proto::dimension::Value::DimValue(d)), ..Default::default() })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Output size of a convolution / pooling window along one axis.
fn window_out(n: i64, k: i64, s: i64, p: i64) -> i64 {
    (n + 2 * p - k) / s + 1
}

impl GraphBuilder {
    /// Declares a graph input of `dims`.
    pub fn input(&mut self, name: &str, dims: &[i64]) -> String {
        let name = self.exact(name.to_string());
        self.shapes.insert(name.clone(), dims.to_vec());
        name
    }

    /// Shape of value `name` (batch first).
    pub fn shape(&self, name: &str) -> Vec<i64> {
        self.shapes.get(name).cloned().unwrap_or_else(|| panic!("unknown value {name}"))
    }

    /// Sets the module path that prefixes the next names (`""`: none); returns the previous one,
    /// for [`GraphBuilder::leave`].
    pub fn enter(&mut self, scope: &str) -> String {
        std::mem::replace(&mut self.scope, scope.to_string())
    }

    /// Restores the scope [`GraphBuilder::enter`] returned.
    pub fn leave(&mut self, previous: String) {
        self.scope = previous;
    }

    /// Starts building TTA pass `i` of [`crate::config::Tta`]: pass 0 (the image itself, and
    /// everything outside the network) keeps the names; pass i >= 1 prefixes its nodes'
    /// names with `tta.pass<i>.` and reuses the initializers (weights, int8 scales) of pass 0.
    /// tract runs the passes as batch-1 copies 1.4-1.6x faster than as one batch (BENCHMARKS.md).
    pub fn set_pass(&mut self, i: usize) {
        self.pass_prefix = if i == 0 { String::new() } else { format!("tta.pass{i}.") };
    }

    /// `<pass prefix><scope>.<hint>`, with `_2`, `_3`, .. when already taken.
    fn fresh(&mut self, hint: &str) -> String {
        let scoped = if self.scope.is_empty() { hint.to_string() } else { format!("{}.{hint}", self.scope) };
        let base = format!("{}{scoped}", self.pass_prefix);
        let mut name = base.clone();
        let mut k = 1;
        while self.used.contains(&name) {
            k += 1;
            name = format!("{base}_{k}");
        }
        self.used.insert(name.clone());
        name
    }

    /// Claims exactly `name` (a variable path); two claims of one name are a bug of the exporter.
    fn exact(&mut self, name: String) -> String {
        assert!(self.used.insert(name.clone()), "ONNX name {name} given out twice");
        name
    }

    /// Claims the name of a node named after a variable path: `name` in pass 0,
    /// `tta.pass<i>.<name>` in TTA pass i ([`GraphBuilder::set_pass`]).
    fn node_exact(&mut self, name: String) -> String {
        let name = format!("{}{name}", self.pass_prefix);
        self.exact(name)
    }

    /// f32 initializer of `dims` (row-major data), named `<scope>.<hint>`.
    pub fn constant(&mut self, hint: &str, dims: &[i64], data: &[f32]) -> String {
        let name = self.fresh(hint);
        self.f32_initializer(name, dims, data)
    }

    /// f32 initializer named exactly `name`, emitted once however often it is asked for (the
    /// caller gives the same data for the same name, e.g. `dft.w64.cos`).
    pub fn shared_constant(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        if self.shared.contains(name) {
            assert_eq!(self.shape(name), dims, "shared constant {name}");
            return name.to_string();
        }
        self.shared.insert(name.to_string());
        let name = self.exact(name.to_string());
        self.f32_initializer(name, dims, data)
    }

    fn f32_initializer(&mut self, name: String, dims: &[i64], data: &[f32]) -> String {
        assert_eq!(dims.iter().product::<i64>() as usize, data.len(), "constant {name}: dims {dims:?} vs {} values", data.len());
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: DataType::Float as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        self.shapes.insert(name.clone(), dims.to_vec());
        name
    }

    /// Initializer named exactly `name`, of any element type, from its little-endian bytes.
    /// Emitted once per name, as [`GraphBuilder::f32_initializer_exact`].
    fn typed_constant(&mut self, name: String, dims: &[i64], data_type: DataType, raw_data: Vec<u8>) -> String {
        if !self.shared.insert(name.clone()) {
            assert_eq!(self.shape(&name), dims, "initializer {name}");
            return name;
        }
        let name = self.exact(name);
        self.initializers.push(TensorProto { name: name.clone(), dims: dims.to_vec(), data_type: data_type as i32, raw_data, ..Default::default() });
        self.shapes.insert(name.clone(), dims.to_vec());
        name
    }

    /// i64 initializer (for Slice's starts/ends/axes).
    pub fn constant_i64(&mut self, hint: &str, data: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: vec![data.len() as i64],
            data_type: DataType::Int64 as i32,
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        self.shapes.insert(name.clone(), vec![data.len() as i64]);
        name
    }

    /// A node named `<scope>.<op>` (its output value has the same name).
    fn node(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>, out_shape: Vec<i64>) -> String {
        let out = self.fresh(op);
        self.node_named(out, op, inputs, attribute, out_shape)
    }

    /// A node whose node and output value are named exactly `out`.
    fn node_named(&mut self, out: String, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>, out_shape: Vec<i64>) -> String {
        self.nodes.push(NodeProto {
            op_type: op.into(),
            name: out.clone(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute,
            ..Default::default()
        });
        self.shapes.insert(out.clone(), out_shape);
        out
    }

    /// Renames a value by an `Identity` node (for the graph's output names).
    pub fn identity(&mut self, x: &str, name: &str) -> String {
        let shape = self.shape(x);
        let name = &self.exact(name.to_string());
        self.nodes.push(NodeProto { op_type: "Identity".into(), name: name.into(), input: vec![x.into()], output: vec![name.into()], ..Default::default() });
        self.shapes.insert(name.into(), shape);
        name.into()
    }

    /// Conv `name` (the module's variable path) with weight [Cout, Cin, k, k] and optional bias
    /// [Cout]; square stride and padding. Written in f32, or in int8 when `precision` is
    /// [`ConvPrecision::AsGraph`] and [`GraphBuilder::conv_mode`] quantizes; the result is always
    /// an f32 value named `name`.
    ///
    /// # Panics
    /// In [`ConvMode::Quantize`], when `ranges` has no entry for `name` (the message names it).
    #[allow(clippy::too_many_arguments)]
    pub fn conv(&mut self, name: &str, x: &str, weight: &[f32], dims: [i64; 4], bias: Option<&[f32]>, stride: i64, pad: i64, precision: ConvPrecision) -> String {
        self.conv_with(name, x, weight, dims, bias, stride, pad, precision, false)
    }

    /// [`GraphBuilder::conv`] followed by ReLU; returns the ReLU's output. In a QLinearConv
    /// export the ReLU is fused into the output quantization: the u8 output range starts at 0, so
    /// its 256 levels carry only what the ReLU keeps (over the pre-ReLU range, as before
    /// 2026-12-04, part of them were spent on negatives the ReLU drops: on the demo model the
    /// kept values were rounded 1.6-2.5x as coarsely; RESULTS.md, session 19). The ReLU node
    /// stays (a no-op on the fused output) so every form has the same graph shape.
    ///
    /// # Panics
    /// As [`GraphBuilder::conv`].
    #[allow(clippy::too_many_arguments)]
    pub fn conv_relu(&mut self, name: &str, x: &str, weight: &[f32], dims: [i64; 4], bias: Option<&[f32]>, stride: i64, pad: i64, precision: ConvPrecision) -> String {
        let y = self.conv_with(name, x, weight, dims, bias, stride, pad, precision, true);
        self.relu(&y)
    }

    #[allow(clippy::too_many_arguments)]
    fn conv_with(&mut self, name: &str, x: &str, weight: &[f32], dims: [i64; 4], bias: Option<&[f32]>, stride: i64, pad: i64, precision: ConvPrecision, relu_follows: bool) -> String {
        let s = self.shape(x);
        assert_eq!(s[1], dims[1], "conv {name}: input channels");
        let (ho, wo) = (window_out(s[2], dims[2], stride, pad), window_out(s[3], dims[3], stride, pad));
        self.macs += (s[0] * dims[0] * ho * wo * dims[1] * dims[2] * dims[3]) as u64;
        let out_shape = vec![s[0], dims[0], ho, wo];
        let attrs = vec![ints("kernel_shape", &dims[2..]), ints("strides", &[stride, stride]), ints("pads", &[pad, pad, pad, pad]), ints("dilations", &[1, 1]), int("group", 1)];
        let c = ConvSpec { name, x, weight, dims, bias, attrs, out_shape };
        if precision == ConvPrecision::F32 {
            return self.conv_f32(c);
        }
        let out = match self.conv_mode.clone() {
            ConvMode::F32 | ConvMode::Record => self.conv_f32(c),
            ConvMode::Quantize { form, ranges } => {
                let r = *ranges.get(name).unwrap_or_else(|| panic!("no calibrated int8 range for convolution {name}"));
                match form {
                    QuantForm::Qlinear => self.conv_qlinear(c, r, relu_follows),
                    QuantForm::Qdq => self.conv_qdq(c, r),
                }
            }
        };
        self.conv_sites.push(ConvSite { name: name.to_string(), input: x.to_string(), output: out.clone() });
        out
    }

    fn conv_f32(&mut self, c: ConvSpec) -> String {
        let w = self.f32_initializer_exact(format!("{}.weight", c.name), &c.dims, c.weight);
        let b = c.bias.map(|b| self.f32_initializer_exact(format!("{}.bias", c.name), &[c.dims[0]], b));
        let mut inputs = vec![c.x, w.as_str()];
        if let Some(b) = &b {
            inputs.push(b);
        }
        let out = self.node_exact(c.name.to_string());
        self.node_named(out, "Conv", &inputs, c.attrs, c.out_shape)
    }

    /// f32 initializer named exactly `name` (a variable path: `<conv>.weight`, `.bias`, int8
    /// scales), emitted once: the TTA passes read the same one (same variable, same data).
    fn f32_initializer_exact(&mut self, name: String, dims: &[i64], data: &[f32]) -> String {
        if !self.shared.insert(name.clone()) {
            assert_eq!(self.shape(&name), dims, "initializer {name}");
            return name;
        }
        let name = self.exact(name);
        self.f32_initializer(name, dims, data)
    }

    /// uint8 version of f32 value `x` with activation range `r` (one QuantizeLinear per value and
    /// range, shared by the convolutions reading it), and its (scale, zero point) initializers,
    /// named `<conv>.input_scale` / `<conv>.input_zero_point` after convolution `conv`.
    fn quantize_activation(&mut self, conv: &str, x: &str, r: super::quant::Range) -> (String, String, String) {
        let p = u8_params(r);
        let scale = self.f32_initializer_exact(format!("{conv}.input_scale"), &[], &[p.scale]);
        let zp = self.typed_constant(format!("{conv}.input_zero_point"), &[], DataType::Uint8, vec![p.zero_point]);
        let key = format!("{x}@{}@{}", p.scale, p.zero_point);
        if let Some(q) = self.quantized.get(&key) {
            return (q.clone(), scale, zp);
        }
        let shape = self.shape(x);
        let out = self.node_exact(format!("{conv}.input_quantized"));
        let q = self.node_named(out, "QuantizeLinear", &[x, &scale, &zp], vec![], shape);
        self.quantized.insert(key, q.clone());
        (q, scale, zp)
    }

    /// int8 weight initializers of convolution `conv`: values [Cout, Cin, k, k], per-channel
    /// scales and zero points [Cout].
    fn int8_weights(&mut self, conv: &str, weight: &[f32], dims: [i64; 4]) -> (String, String, String, Vec<f32>) {
        let (q, scales) = quantize_weights_per_channel(weight, dims[0] as usize);
        let w = self.typed_constant(format!("{conv}.weight_int8"), &dims, DataType::Int8, q.iter().map(|v| *v as u8).collect());
        let ws = self.f32_initializer_exact(format!("{conv}.weight_scale"), &[dims[0]], &scales);
        let wzp = self.typed_constant(format!("{conv}.weight_zero_point"), &[dims[0]], DataType::Int8, vec![0; dims[0] as usize]);
        (w, ws, wzp, scales)
    }

    /// `relu_follows`: the output range is clamped at 0 below (the ReLU fused; values under 0
    /// saturate at the zero point, which dequantizes to 0).
    fn conv_qlinear(&mut self, c: ConvSpec, r: ConvRanges, relu_follows: bool) -> String {
        let (xq, xs, xzp) = self.quantize_activation(c.name, c.x, r.input);
        let (w, ws, wzp, w_scales) = self.int8_weights(c.name, c.weight, c.dims);
        let output = if relu_follows { super::quant::Range { min: 0.0, max: r.output.max } } else { r.output };
        let y = u8_params(output);
        let ys = self.f32_initializer_exact(format!("{}.output_scale", c.name), &[], &[y.scale]);
        let yzp = self.typed_constant(format!("{}.output_zero_point", c.name), &[], DataType::Uint8, vec![y.zero_point]);
        let mut inputs = vec![xq.as_str(), &xs, &xzp, &w, &ws, &wzp, &ys, &yzp];
        let b;
        if let Some(bias) = c.bias {
            let x_scale = u8_params(r.input).scale;
            let bq = quantize_bias(bias, x_scale, &w_scales);
            b = self.typed_constant(format!("{}.bias_int32", c.name), &[c.dims[0]], DataType::Int32, bq.iter().flat_map(|v| v.to_le_bytes()).collect());
            inputs.push(&b);
        }
        let q_out = self.node_exact(format!("{}.output_quantized", c.name));
        let yq = self.node_named(q_out, "QLinearConv", &inputs, c.attrs, c.out_shape.clone());
        let out = self.node_exact(c.name.to_string());
        self.node_named(out, "DequantizeLinear", &[&yq, &ys, &yzp], vec![], c.out_shape)
    }

    fn conv_qdq(&mut self, c: ConvSpec, r: ConvRanges) -> String {
        let (xq, xs, xzp) = self.quantize_activation(c.name, c.x, r.input);
        let xd_name = self.node_exact(format!("{}.input_dequantized", c.name));
        let xd = self.node_named(xd_name, "DequantizeLinear", &[&xq, &xs, &xzp], vec![], self.shape(c.x));
        let (w, ws, wzp, _) = self.int8_weights(c.name, c.weight, c.dims);
        let wd_name = self.node_exact(format!("{}.weight_dequantized", c.name));
        let wd = self.node_named(wd_name, "DequantizeLinear", &[&w, &ws, &wzp], vec![int("axis", 0)], c.dims.to_vec());
        let b = c.bias.map(|b| self.f32_initializer_exact(format!("{}.bias", c.name), &[c.dims[0]], b));
        let mut inputs = vec![xd.as_str(), &wd];
        if let Some(b) = &b {
            inputs.push(b);
        }
        let out = self.node_exact(c.name.to_string());
        self.node_named(out, "Conv", &inputs, c.attrs, c.out_shape)
    }

    /// ConvTranspose `name` (variable path) with weight [Cin, Cout, k, k], stride = k, no
    /// padding; optional bias [Cout]. Initializers `<name>.weight` / `<name>.bias`.
    pub fn conv_transpose(&mut self, name: &str, x: &str, weight: &[f32], dims: [i64; 4], bias: Option<&[f32]>, stride: i64) -> String {
        let s = self.shape(x);
        assert_eq!(s[1], dims[0], "conv-transpose {name}: input channels");
        self.macs += (s[0] * s[2] * s[3] * dims[0] * dims[1] * dims[2] * dims[3]) as u64;
        let w = self.f32_initializer_exact(format!("{name}.weight"), &dims, weight);
        let b = bias.map(|b| self.f32_initializer_exact(format!("{name}.bias"), &[dims[1]], b));
        let mut inputs = vec![x, w.as_str()];
        if let Some(b) = &b {
            inputs.push(b);
        }
        let (ho, wo) = ((s[2] - 1) * stride + dims[2], (s[3] - 1) * stride + dims[3]);
        let attrs = vec![ints("kernel_shape", &dims[2..]), ints("strides", &[stride, stride]), ints("pads", &[0, 0, 0, 0])];
        let out = self.node_exact(name.to_string());
        self.node_named(out, "ConvTranspose", &inputs, attrs, vec![s[0], dims[1], ho, wo])
    }

    /// Numpy-style broadcast shape of two shapes.
    fn broadcast(a: &[i64], b: &[i64]) -> Vec<i64> {
        let n = a.len().max(b.len());
        (0..n)
            .map(|i| {
                let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
                let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
                da.max(db)
            })
            .collect()
    }

    fn binary(&mut self, op: &str, a: &str, b: &str) -> String {
        let shape = Self::broadcast(&self.shape(a), &self.shape(b));
        self.node(op, &[a, b], vec![], shape)
    }

    pub fn add(&mut self, a: &str, b: &str) -> String {
        self.binary("Add", a, b)
    }

    pub fn sub(&mut self, a: &str, b: &str) -> String {
        self.binary("Sub", a, b)
    }

    pub fn mul(&mut self, a: &str, b: &str) -> String {
        self.binary("Mul", a, b)
    }

    /// Element-wise minimum (ONNX `Min`, here with two inputs) with numpy broadcasting.
    pub fn min(&mut self, a: &str, b: &str) -> String {
        self.binary("Min", a, b)
    }

    /// MatMul with numpy broadcasting of the leading axes.
    pub fn matmul(&mut self, a: &str, b: &str) -> String {
        let (sa, sb) = (self.shape(a), self.shape(b));
        let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
        assert_eq!(k, sb[sb.len() - 2], "matmul inner dims {sa:?} x {sb:?}");
        let mut out = Self::broadcast(&sa[..sa.len() - 2], &sb[..sb.len() - 2]);
        self.macs += (out.iter().product::<i64>() * m * k * n) as u64;
        out.extend([m, n]);
        self.node("MatMul", &[a, b], vec![], out)
    }

    pub fn relu(&mut self, x: &str) -> String {
        let s = self.shape(x);
        self.node("Relu", &[x], vec![], s)
    }

    pub fn sigmoid(&mut self, x: &str) -> String {
        let s = self.shape(x);
        self.node("Sigmoid", &[x], vec![], s)
    }

    pub fn concat(&mut self, xs: &[&str], axis: usize) -> String {
        let mut s = self.shape(xs[0]);
        s[axis] = xs.iter().map(|x| self.shape(x)[axis]).sum();
        self.node("Concat", xs, vec![int("axis", axis as i64)], s)
    }

    /// `x` mirrored along each of `axes`: a Gather of the reversed indices per axis (tract and
    /// ONNX Runtime both run Gather; a Slice with step -1 is the other way to write it).
    pub fn flip(&mut self, x: &str, axes: &[i64]) -> String {
        let mut y = x.to_string();
        for &axis in axes {
            let s = self.shape(&y);
            let reversed: Vec<i64> = (0..s[axis as usize]).rev().collect();
            let indices = self.constant_i64("flip_indices", &reversed);
            y = self.node("Gather", &[&y, &indices], vec![int("axis", axis)], s);
        }
        y
    }

    /// `x[.., start..end, ..]` along `axis`.
    pub fn slice(&mut self, x: &str, axis: usize, start: i64, end: i64) -> String {
        let mut s = self.shape(x);
        s[axis] = end - start;
        let (st, en, ax) = (self.constant_i64("starts", &[start]), self.constant_i64("ends", &[end]), self.constant_i64("axes", &[axis as i64]));
        self.node("Slice", &[x, &st, &en, &ax], vec![], s)
    }

    pub fn max_pool(&mut self, x: &str, k: i64, stride: i64, pad: i64) -> String {
        let s = self.shape(x);
        let out = vec![s[0], s[1], window_out(s[2], k, stride, pad), window_out(s[3], k, stride, pad)];
        self.node("MaxPool", &[x], vec![ints("kernel_shape", &[k, k]), ints("strides", &[stride, stride]), ints("pads", &[pad, pad, pad, pad])], out)
    }

    /// Bilinear x2 upsampling of [N, C, H, W] -> [N, C, 2H, 2W] with `half_pixel` coordinates
    /// (PyTorch's `upsample_bilinear2d(align_corners = false)`), written as operations tract runs
    /// fast: along W, then along H ([`GraphBuilder::bilinear2x_axis`]), output 2i is
    /// (x[i-1] + 3 x[i]) / 4 and 2i+1 is (3 x[i] + x[i+1]) / 4 with the border sample repeated,
    /// the two /4 applied once at the end (node `<scope>.upsample`, a Mul by 1/16).
    /// Measured forms (BENCHMARKS.md, issue 15): ONNX `Resize` is a generic per-element kernel in
    /// tract (24 % of its time on the small graph); nearest x2 + a fixed depthwise 3x3 [1 2 1]
    /// filter was 16 % faster, but tract's depthwise convolution runs at ~1 GMAC/s, 6-10x
    /// below ONNX Runtime's, so the filter is now written as Pad, Slice, Add and Mul at the lower
    /// resolution. No weight: nothing to quantize in int8 exports.
    pub fn resize_bilinear2x(&mut self, x: &str) -> String {
        let name = self.fresh("upsample");
        let wide = self.bilinear2x_axis(x, 3);
        let both = self.bilinear2x_axis(&wide, 2);
        let s = self.shape(&both);
        let sixteenth = self.constant("upsample_scale", &[1], &[1.0 / 16.0]);
        // One multiply and one add per output value and axis, and the final scale.
        self.macs += 3 * s.iter().product::<i64>() as u64;
        self.node_named(name, "Mul", &[&both, &sixteenth], vec![], s)
    }

    /// 4x the bilinear x2 of [N, C, H, W] along `axis` (2 or 3): edge Pad 1, the neighbours as
    /// two Slices, 3 x + x[i-1] and 3 x + x[i+1], interleaved by Reshape + Concat + Reshape.
    fn bilinear2x_axis(&mut self, x: &str, axis: usize) -> String {
        let s = self.shape(x);
        let len = s[axis];
        let mut pads = vec![0i64; 8];
        (pads[axis], pads[4 + axis]) = (1, 1);
        let pads = self.constant_i64("upsample_pads", &pads);
        let mut padded_shape = s.clone();
        padded_shape[axis] += 2;
        let padded = self.node("Pad", &[x, &pads], vec![string("mode", "edge")], padded_shape);
        let prev = self.slice(&padded, axis, 0, len);
        let next = self.slice(&padded, axis, 2, len + 2);
        let three = self.constant("upsample_three", &[1], &[3.0]);
        let x3 = self.mul(x, &three);
        let (even, odd) = (self.add(&x3, &prev), self.add(&x3, &next));
        let mut phase_shape = s.clone();
        phase_shape.insert(axis + 1, 1);
        let phase = self.constant_i64("upsample_phase_shape", &phase_shape);
        let even = self.node("Reshape", &[&even, &phase], vec![], phase_shape.clone());
        let odd = self.node("Reshape", &[&odd, &phase], vec![], phase_shape);
        let both = self.concat(&[&even, &odd], axis + 1);
        let mut out = s;
        out[axis] *= 2;
        let out_shape = self.constant_i64("upsample_shape", &out);
        self.node("Reshape", &[&both, &out_shape], vec![], out)
    }

    /// Mirror padding of `r` px on each side of H and W (ONNX Pad `reflect`: the border pixel
    /// is not repeated, as PyTorch's `reflection_pad2d`).
    pub fn pad_reflect(&mut self, x: &str, r: i64) -> String {
        self.pad_spatial(x, r, "reflect")
    }

    /// Pads the two spatial axes of `x` [N, C, H, W] by `r` on each side, repeating the border
    /// pixel (ONNX Pad `edge`, as PyTorch's `replication_pad2d`).
    pub fn pad_edge(&mut self, x: &str, r: i64) -> String {
        self.pad_spatial(x, r, "edge")
    }

    /// ONNX Pad of `r` px on each side of H and W of `x` [N, C, H, W] in `mode`.
    fn pad_spatial(&mut self, x: &str, r: i64, mode: &str) -> String {
        let s = self.shape(x);
        let pads = self.constant_i64("pads", &[0, 0, r, r, 0, 0, r, r]);
        self.node("Pad", &[x, &pads], vec![string("mode", mode)], vec![s[0], s[1], s[2] + 2 * r, s[3] + 2 * r])
    }

    /// Average pool without padding.
    pub fn avg_pool(&mut self, x: &str, k: i64, stride: i64) -> String {
        let s = self.shape(x);
        let out = vec![s[0], s[1], window_out(s[2], k, stride, 0), window_out(s[3], k, stride, 0)];
        self.node("AveragePool", &[x], vec![ints("kernel_shape", &[k, k]), ints("strides", &[stride, stride]), ints("pads", &[0, 0, 0, 0])], out)
    }

    /// ReduceMax over `axes` without keeping them (opset 17: axes is an attribute).
    pub fn reduce_max(&mut self, x: &str, axes: &[i64]) -> String {
        let s = self.shape(x);
        let out: Vec<i64> = s.iter().enumerate().filter(|(i, _)| !axes.contains(&(*i as i64))).map(|(_, &d)| d).collect();
        self.node("ReduceMax", &[x], vec![ints("axes", axes), int("keepdims", 0)], out)
    }

    /// The k-th smallest value of each image of `x` [1, C, H, W] over its C H W values, as
    /// [1, 1]: Reshape to [1, C H W], TopK (`largest` 0, k constant) and ReduceMax of the k
    /// smallest. tract sorts the whole row (O(n log n) per image: BENCHMARKS.md session 37).
    pub fn kth_smallest(&mut self, x: &str, k: i64) -> String {
        let s = self.shape(x);
        let n: i64 = s[1..].iter().product();
        assert!(s[0] == 1 && (1..=n).contains(&k), "kth_smallest of {s:?}, k {k}: expected batch 1 and 1 <= k <= {n}");
        let flat_shape = self.constant_i64("flat_shape", &[1, n]);
        let flat = self.node("Reshape", &[x, &flat_shape], vec![], vec![1, n]);
        let k_input = self.constant_i64("k", &[k]);
        let values = self.fresh("TopK");
        let indices = self.fresh("TopK_indices");
        self.nodes.push(NodeProto {
            op_type: "TopK".into(),
            name: values.clone(),
            input: vec![flat, k_input],
            output: vec![values.clone(), indices.clone()],
            attribute: vec![int("axis", 1), int("largest", 0), int("sorted", 1)],
            ..Default::default()
        });
        self.shapes.insert(values.clone(), vec![1, k]);
        self.shapes.insert(indices, vec![1, k]);
        self.node("ReduceMax", &[&values], vec![ints("axes", &[1]), int("keepdims", 1)], vec![1, 1])
    }

    /// ReduceMean over one `axis`, keeping it with length 1 (opset 17: axes is an attribute):
    /// [N, C, H, W] -> [N, C, H, 1] for axis 3.
    pub fn reduce_mean_keep(&mut self, x: &str, axis: usize) -> String {
        let mut s = self.shape(x);
        s[axis] = 1;
        self.node("ReduceMean", &[x], vec![ints("axes", &[axis as i64]), int("keepdims", 1)], s)
    }

    /// Distinct operator types used, sorted.
    pub fn op_types(&self) -> Vec<String> {
        let mut ops: Vec<String> = self.nodes.iter().map(|n| n.op_type.clone()).collect();
        ops.sort();
        ops.dedup();
        ops
    }
}
