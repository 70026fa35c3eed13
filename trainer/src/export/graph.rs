//! A small ONNX graph builder over tract's protobuf types (`tract_onnx::pb`), tracking the shape
//! of every value (batch 1) and counting multiply-accumulates (MACs) of Conv, ConvTranspose and
//! MatMul nodes.

use std::collections::HashMap;

use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, NodeProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// Graph under construction.
#[derive(Default)]
pub struct GraphBuilder {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    shapes: HashMap<String, Vec<i64>>,
    counter: usize,
    /// Multiply-accumulates of the graph so far.
    pub macs: u64,
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() }
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
        self.shapes.insert(name.into(), dims.to_vec());
        name.into()
    }

    /// Shape of value `name` (batch first).
    pub fn shape(&self, name: &str) -> Vec<i64> {
        self.shapes.get(name).cloned().unwrap_or_else(|| panic!("unknown value {name}"))
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// f32 initializer of `dims` (row-major data).
    pub fn constant(&mut self, hint: &str, dims: &[i64], data: &[f32]) -> String {
        assert_eq!(dims.iter().product::<i64>() as usize, data.len(), "constant {hint}: dims {dims:?} vs {} values", data.len());
        let name = self.fresh(hint);
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

    fn node(&mut self, op: &str, inputs: &[&str], attribute: Vec<AttributeProto>, out_shape: Vec<i64>) -> String {
        let out = self.fresh(&op.to_lowercase());
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
        self.nodes.push(NodeProto { op_type: "Identity".into(), name: name.into(), input: vec![x.into()], output: vec![name.into()], ..Default::default() });
        self.shapes.insert(name.into(), shape);
        name.into()
    }

    /// Conv with weight [Cout, Cin, k, k] and optional bias [Cout]; square stride and padding.
    pub fn conv(&mut self, x: &str, weight: &[f32], dims: [i64; 4], bias: Option<&[f32]>, stride: i64, pad: i64) -> String {
        let s = self.shape(x);
        assert_eq!(s[1], dims[1], "conv input channels");
        let (ho, wo) = (window_out(s[2], dims[2], stride, pad), window_out(s[3], dims[3], stride, pad));
        self.macs += (dims[0] * ho * wo * dims[1] * dims[2] * dims[3]) as u64;
        let w = self.constant("w", &dims, weight);
        let b = bias.map(|b| self.constant("b", &[dims[0]], b));
        let mut inputs = vec![x, w.as_str()];
        if let Some(b) = &b {
            inputs.push(b);
        }
        let attrs = vec![ints("kernel_shape", &dims[2..]), ints("strides", &[stride, stride]), ints("pads", &[pad, pad, pad, pad]), ints("dilations", &[1, 1]), int("group", 1)];
        self.node("Conv", &inputs, attrs, vec![s[0], dims[0], ho, wo])
    }

    /// ConvTranspose with weight [Cin, Cout, k, k], stride = k, no padding; optional bias [Cout].
    pub fn conv_transpose(&mut self, x: &str, weight: &[f32], dims: [i64; 4], bias: Option<&[f32]>, stride: i64) -> String {
        let s = self.shape(x);
        assert_eq!(s[1], dims[0], "conv-transpose input channels");
        self.macs += (s[2] * s[3] * dims[0] * dims[1] * dims[2] * dims[3]) as u64;
        let w = self.constant("wt", &dims, weight);
        let b = bias.map(|b| self.constant("bt", &[dims[1]], b));
        let mut inputs = vec![x, w.as_str()];
        if let Some(b) = &b {
            inputs.push(b);
        }
        let (ho, wo) = ((s[2] - 1) * stride + dims[2], (s[3] - 1) * stride + dims[3]);
        let attrs = vec![ints("kernel_shape", &dims[2..]), ints("strides", &[stride, stride]), ints("pads", &[0, 0, 0, 0])];
        self.node("ConvTranspose", &inputs, attrs, vec![s[0], dims[1], ho, wo])
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

    /// Distinct operator types used, sorted.
    pub fn op_types(&self) -> Vec<String> {
        let mut ops: Vec<String> = self.nodes.iter().map(|n| n.op_type.clone()).collect();
        ops.sort();
        ops.dedup();
        ops
    }
}
