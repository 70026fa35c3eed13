//! Writes each FFC-AD module into the ONNX graph, mirroring its tch `forward_t` in eval mode
//! with BatchNorm folded into convolutions and the FourierUnit's FFTs as DFT-basis MatMuls.
//! Every function enters its module's variable path as the graph scope, so each node can be
//! followed back to the module it came from (see [`super::graph`]).

use super::dft::{half_bins, DftBasis};
use super::fold::{bn_affine, dims4, scale_output_channels, values};
use super::graph::{ConvPrecision, GraphBuilder};
use crate::config::TtaReduce;
use crate::model::dae::FfcDae;
use crate::model::ffc::{FfcBnAct, FourierUnit, SpectralTransform};
use crate::model::head::SegHead;
use crate::model::strip_pool::StripPool;
use crate::model::layers::{Conv, ConvBnAct, UpBlock};
use crate::model::resnet::{FfcBasicBlock, FfcEncoder};
use crate::model::floor::floor_rank;
use crate::model::{FfcAd, NORM_MEAN, NORM_STD};

/// Local and global value names of a split feature map.
#[derive(Clone)]
pub struct SplitNames {
    pub l: Option<String>,
    pub g: Option<String>,
}

/// The path of the module that holds `child` (`a.b.conv` -> `a.b`).
fn parent(child: &str) -> &str {
    child.rsplit_once('.').map_or("", |(p, _)| p)
}

/// Conv with its output channels scaled by `scale` and `bias` added (BN folding), in `precision`.
fn conv_scaled(g: &mut GraphBuilder, x: &str, c: &Conv, scale: Option<&[f32]>, shift: Option<&[f32]>, precision: ConvPrecision) -> String {
    let (w, dims, bias) = folded(c, scale, shift);
    g.conv(&c.name, x, &w, dims, bias.as_deref(), c.stride, c.padding, precision)
}

/// [`conv_scaled`] followed by ReLU ([`GraphBuilder::conv_relu`]: fused into an int8 output).
fn conv_scaled_relu(g: &mut GraphBuilder, x: &str, c: &Conv, scale: Option<&[f32]>, shift: Option<&[f32]>, precision: ConvPrecision) -> String {
    let (w, dims, bias) = folded(c, scale, shift);
    g.conv_relu(&c.name, x, &w, dims, bias.as_deref(), c.stride, c.padding, precision)
}

/// The weight [Cout, Cin, k, k], its dims and bias of `c` with a BN `scale` and `shift` folded in.
fn folded(c: &Conv, scale: Option<&[f32]>, shift: Option<&[f32]>) -> (Vec<f32>, [i64; 4], Option<Vec<f32>>) {
    let mut w = values(&c.conv.ws);
    let dims = dims4(&c.conv.ws);
    let mut bias = c.conv.bs.as_ref().map(values);
    if let Some(s) = scale {
        scale_output_channels(&mut w, s, 1);
        if let Some(b) = bias.as_mut() {
            b.iter_mut().zip(s).for_each(|(b, s)| *b *= s);
        }
    }
    if let Some(sh) = shift {
        let b = bias.get_or_insert_with(|| vec![0.0; sh.len()]);
        b.iter_mut().zip(sh).for_each(|(b, s)| *b += s);
    }
    (w, dims, bias)
}

fn conv_bn_act(g: &mut GraphBuilder, x: &str, m: &ConvBnAct) -> String {
    conv_bn_act_in(g, x, m, ConvPrecision::AsGraph)
}

fn conv_bn_act_in(g: &mut GraphBuilder, x: &str, m: &ConvBnAct, precision: ConvPrecision) -> String {
    let scope = g.enter(parent(&m.conv.name));
    let (s, b) = bn_affine(&m.bn);
    let y = if m.relu {
        conv_scaled_relu(g, x, &m.conv, Some(&s), Some(&b), precision)
    } else {
        conv_scaled(g, x, &m.conv, Some(&s), Some(&b), precision)
    };
    g.leave(scope);
    y
}

fn up_block(g: &mut GraphBuilder, x: &str, m: &UpBlock) -> String {
    let scope = g.enter(&m.name);
    let (s, b) = bn_affine(&m.bn);
    let y = match (&m.deconv, &m.conv) {
        (Some(deconv), _) => {
            let mut w = values(&deconv.ws);
            let dims = dims4(&deconv.ws);
            scale_output_channels(&mut w, &s, dims[0] as usize);
            let y = g.conv_transpose(&format!("{}.deconv", m.name), x, &w, dims, Some(&b), 2);
            g.relu(&y)
        }
        (None, Some(conv)) if m.conv_first() => {
            let y = conv_scaled_relu(g, x, conv, Some(&s), Some(&b), ConvPrecision::AsGraph);
            g.resize_bilinear2x(&y)
        }
        (None, Some(conv)) => {
            let up = g.resize_bilinear2x(x);
            conv_scaled_relu(g, &up, conv, Some(&s), Some(&b), ConvPrecision::AsGraph)
        }
        (None, None) => unreachable!("UpBlock has a deconv or a conv"),
    };
    g.leave(scope);
    y
}

/// The DFT bases of an `h` x `w` FourierUnit, shared by every unit of that size: the W bases
/// (`dft.w<W>.*`) depend on W only, the H bases (`dft.h<H>.*`) on H only.
struct SharedDft {
    cw: String,
    nsw: String,
    ch: String,
    sh: String,
    icw: String,
    isw: String,
}

fn shared_dft(g: &mut GraphBuilder, h: usize, w: usize) -> SharedDft {
    let d = DftBasis::new(h, w);
    let wf = half_bins(w) as i64;
    let (hh, ww) = (h as i64, w as i64);
    SharedDft {
        cw: g.shared_constant(&format!("dft.w{w}.cos"), &[ww, wf], &d.cw),
        nsw: g.shared_constant(&format!("dft.w{w}.neg_sin"), &[ww, wf], &d.nsw),
        ch: g.shared_constant(&format!("dft.h{h}.cos"), &[hh, hh], &d.ch),
        sh: g.shared_constant(&format!("dft.h{h}.sin"), &[hh, hh], &d.sh),
        icw: g.shared_constant(&format!("dft.w{w}.inverse_cos"), &[wf, ww], &d.icw),
        isw: g.shared_constant(&format!("dft.w{w}.inverse_sin"), &[wf, ww], &d.isw),
    }
}

fn fourier_unit(g: &mut GraphBuilder, x: &str, fu: &FourierUnit) -> String {
    let s = g.shape(x);
    let (c, h, w) = (s[1], s[2] as usize, s[3] as usize);
    let SharedDft { cw, nsw, ch, sh, icw, isw } = shared_dft(g, h, w);
    let scope = g.enter(parent(&fu.conv.name));
    // rfft2: along W, then along H.
    let re = g.matmul(x, &cw);
    let im = g.matmul(x, &nsw);
    let (a, b) = (g.matmul(&ch, &re), g.matmul(&sh, &im));
    let yr = g.add(&a, &b);
    let (a, b) = (g.matmul(&ch, &im), g.matmul(&sh, &re));
    let yi = g.sub(&a, &b);
    let stacked = g.concat(&[&yr, &yi], 1);
    let (scale, shift) = bn_affine(&fu.bn);
    // The spectrum's dynamic range does not fit u8: this conv stays f32 in int8 exports.
    let z = conv_scaled(g, &stacked, &fu.conv, Some(&scale), Some(&shift), ConvPrecision::F32);
    let z = g.relu(&z);
    let zr = g.slice(&z, 1, 0, c);
    let zi = g.slice(&z, 1, c, 2 * c);
    // irfft2: along H (inverse), then back to real along W.
    let (a, b) = (g.matmul(&ch, &zr), g.matmul(&sh, &zi));
    let ar = g.sub(&a, &b);
    let (a, b) = (g.matmul(&ch, &zi), g.matmul(&sh, &zr));
    let ai = g.add(&a, &b);
    let (a, b) = (g.matmul(&ar, &icw), g.matmul(&ai, &isw));
    let y = g.add(&a, &b);
    g.leave(scope);
    y
}

fn spectral_transform(g: &mut GraphBuilder, x: &str, st: &SpectralTransform, scale: Option<&[f32]>, shift: Option<&[f32]>) -> String {
    let scope = g.enter(parent(&st.conv1.name));
    let x = if st.downsample { g.avg_pool(x, 2, 2) } else { x.to_string() };
    let (s1, b1) = bn_affine(&st.bn1);
    let y = conv_scaled_relu(g, &x, &st.conv1, Some(&s1), Some(&b1), ConvPrecision::AsGraph);
    let f = fourier_unit(g, &y, &st.fu);
    let sum = g.add(&y, &f);
    let y = conv_scaled(g, &sum, &st.conv2, scale, shift, ConvPrecision::AsGraph);
    g.leave(scope);
    y
}

fn ffc_bn_act(g: &mut GraphBuilder, x: &SplitNames, m: &FfcBnAct) -> SplitNames {
    let scope = g.enter(&m.name);
    let f = &m.ffc;
    // Each output part: sum of its paths, with that part's BN scale folded into every path and
    // its shift added once.
    let mut part = |paths: Vec<(Option<&Conv>, Option<&String>)>, spectral: Option<(&SpectralTransform, Option<&String>)>, bn: &Option<tch::nn::BatchNorm>| {
        let bn = bn.as_ref()?;
        let (s, b) = bn_affine(bn);
        // A part that is one conv (the first layer, whose input has no global channels): its
        // ReLU is fused into the conv's int8 output like any Conv-BN-ReLU.
        let live: Vec<(&Conv, &String)> = paths.iter().filter_map(|(c, i)| Some(((*c)?, (*i)?))).collect();
        let spectral_live = matches!(spectral, Some((_, Some(_))));
        if m.relu && live.len() == 1 && !spectral_live {
            let (c, i) = live[0];
            return Some(conv_scaled_relu(g, i, c, Some(&s), Some(&b), ConvPrecision::AsGraph));
        }
        let mut terms: Vec<String> = Vec::new();
        for (conv, input) in paths {
            if let (Some(c), Some(i)) = (conv, input) {
                let shift = if terms.is_empty() { Some(b.as_slice()) } else { None };
                terms.push(conv_scaled(g, i, c, Some(&s), shift, ConvPrecision::AsGraph));
            }
        }
        if let Some((st, Some(i))) = spectral {
            let shift = if terms.is_empty() { Some(b.as_slice()) } else { None };
            terms.push(spectral_transform(g, i, st, Some(&s), shift));
        }
        let mut acc = terms.remove(0);
        for t in terms {
            acc = g.add(&acc, &t);
        }
        Some(if m.relu { g.relu(&acc) } else { acc })
    };
    let l = part(vec![(f.l2l.as_ref(), x.l.as_ref()), (f.g2l.as_ref(), x.g.as_ref())], None, &m.bn_l);
    let gl = part(vec![(f.l2g.as_ref(), x.l.as_ref())], f.g2g.as_ref().map(|st| (st, x.g.as_ref())), &m.bn_g);
    g.leave(scope);
    SplitNames { l, g: gl }
}

fn basic_block(g: &mut GraphBuilder, x: &SplitNames, b: &FfcBasicBlock) -> SplitNames {
    let scope = g.enter(parent(&b.layers[0].name));
    let mut y = ffc_bn_act(g, x, &b.layers[0]);
    for layer in &b.layers[1..] {
        y = ffc_bn_act(g, &y, layer);
    }
    let id = match &b.projection {
        Some(p) => ffc_bn_act(g, x, p),
        None => x.clone(),
    };
    let mut join = |a: Option<String>, b: Option<String>| {
        a.map(|a| {
            let s = g.add(&a, &b.expect("identity part"));
            g.relu(&s)
        })
    };
    let out = SplitNames { l: join(y.l, id.l), g: join(y.g, id.g) };
    g.leave(scope);
    out
}

/// The first component of a variable path (`encoder.stem.conv` -> `encoder`): the model part.
fn root(name: &str) -> &str {
    name.split('.').next().unwrap_or("")
}

/// `x` [1, C, H, W] with the coordinate planes of [`crate::model::coords`] appended, one
/// initializer `coordinates.HxW` [1, 2, H, W] shared by the encoder and the head (and by the TTA
/// passes: unmirrored, as in the tch model).
fn append_coordinates(g: &mut GraphBuilder, x: &str) -> String {
    let dims = g.shape(x);
    let (h, w) = (dims[2], dims[3]);
    let planes = g.shared_constant(&format!("coordinates.{h}x{w}"), &[1, 2, h, w], &crate::model::coords::coordinate_planes(h, w));
    g.concat(&[x, &planes], 1)
}

fn encoder(g: &mut GraphBuilder, x: &str, e: &FfcEncoder, coords: bool) -> SplitNames {
    let scope = g.enter(root(&e.stem.conv.name));
    let x = if coords { append_coordinates(g, x) } else { x.to_string() };
    g.leave(scope);
    let s = conv_bn_act(g, &x, &e.stem);
    let scope = g.enter(root(&e.stem.conv.name));
    let p = g.max_pool(&s, 3, 2, 1);
    g.leave(scope);
    let mut split = SplitNames { l: Some(p), g: None };
    for b in &e.blocks {
        split = basic_block(g, &split, b);
    }
    split
}

fn dae(g: &mut GraphBuilder, hidden: &SplitNames, d: &FfcDae) -> String {
    let scope = g.enter(root(&d.to_rgb.name));
    // HSAS is dropout: identity at inference.
    let mut s = hidden.clone();
    for b in &d.blocks {
        s = basic_block(g, &s, b);
    }
    let mut x = match (&s.l, &s.g) {
        (Some(l), Some(gl)) => g.concat(&[l, gl], 1),
        (Some(x), None) | (None, Some(x)) => x.clone(),
        (None, None) => unreachable!("hidden features with no channels"),
    };
    for u in &d.ups {
        x = up_block(g, &x, u);
    }
    let rgb = conv_scaled(g, &x, &d.to_rgb, None, None, ConvPrecision::AsGraph);
    let y = g.sigmoid(&rgb);
    g.leave(scope);
    y
}

fn head(g: &mut GraphBuilder, image: &str, recon: &str, h: &SegHead, coords: bool) -> String {
    let scope = g.enter(root(&h.out.name));
    let x = g.concat(&[image, recon], 1);
    let x = if coords { append_coordinates(g, &x) } else { x };
    let pair = |g: &mut GraphBuilder, p: &[ConvBnAct; 2], x: &str| {
        let y = conv_bn_act(g, x, &p[0]);
        conv_bn_act(g, &y, &p[1])
    };
    // The head's first conv compares the image with its reconstruction, where a faint defect is
    // a difference of a few grey levels: the size of u8 input and int8 weight rounding. It stays
    // f32 in int8 exports (< 3 % of the MACs; RESULTS.md, session 19: KolektorSDD's int8 image
    // AUROC lost 0.03 to this conv alone).
    let first = conv_bn_act_in(g, &x, &h.enc[0][0], ConvPrecision::F32);
    let mut skips = vec![conv_bn_act(g, &first, &h.enc[0][1])];
    for p in &h.enc[1..] {
        let pooled = g.max_pool(skips.last().expect("level 0"), 2, 2, 0);
        skips.push(pair(g, p, &pooled));
    }
    let mut x = skips.pop().expect("coarsest level");
    if let Some(s) = &h.strip {
        x = strip_pool(g, &x, s);
    }
    for i in (0..h.up.len()).rev() {
        let u = up_block(g, &x, &h.up[i]);
        let skip = skips.pop().expect("skip of level i");
        let c = g.concat(&[&u, &skip], 1);
        x = conv_bn_act(g, &c, &h.dec[i]);
    }
    // The logit conv stays f32: its u8 output range would come from good images only, whose
    // logits stay low, so a QLinearConv clipped every defect's logit there and capped the int8
    // map at sigmoid of the good images' largest logit (0.50 on bottle, 0.70-0.76 on the demo;
    // RESULTS.md, session 19). One output channel: < 1 % of the MACs.
    let y = conv_scaled(g, &x, &h.out, None, None, ConvPrecision::F32);
    g.leave(scope);
    y
}

/// Strip pooling (model/strip_pool.rs): ReduceMean over W and over H (kept as length 1), each
/// a 1x1 conv with BN folded, their broadcast sum, ReLU, the 1x1 `fuse` conv, Sigmoid, and the
/// gate multiplied into `x`. Its convs stay f32 in int8 exports: they run on one row or column
/// of the coarsest level (< 0.1 % of the MACs).
fn strip_pool(g: &mut GraphBuilder, x: &str, s: &StripPool) -> String {
    let scope = g.enter(&s.name);
    let row_means = g.reduce_mean_keep(x, 3);
    let rows = conv_bn_act_in(g, &row_means, &s.rows, ConvPrecision::F32);
    let col_means = g.reduce_mean_keep(x, 2);
    let cols = conv_bn_act_in(g, &col_means, &s.cols, ConvPrecision::F32);
    let sum = g.add(&rows, &cols);
    let sum = g.relu(&sum);
    let fused = conv_scaled(g, &sum, &s.fuse, None, None, ConvPrecision::F32);
    let gate = g.sigmoid(&fused);
    let y = g.mul(x, &gate);
    g.leave(scope);
    y
}

/// Gaussian smoothing of the map (model/smooth.rs): reflect padding, then the separable
/// Gaussian as a 1 x k and a k x 1 f32 conv (2k MACs per pixel rather than k^2: at sigma 2 px,
/// 26 against 169; BENCHMARKS.md "Separable Gaussian").
fn smooth(g: &mut GraphBuilder, map: &str, sigma: f64) -> String {
    if sigma <= 0.0 {
        return map.to_string();
    }
    let r = crate::model::smooth::radius(sigma);
    let k = 2 * r + 1;
    let scope = g.enter("smooth");
    let padded = g.pad_reflect(map, r);
    // A fixed filter on a [0, 1] map (no variable: named `smooth.gaussian_rows` / `_cols`):
    // kept f32 in int8 exports (not worth a requantisation).
    let g1 = crate::model::smooth::gaussian_kernel_1d(sigma);
    let rows = g.conv("smooth.gaussian_rows", &padded, &g1, [1, 1, 1, k], None, 1, 0, ConvPrecision::F32);
    let y = g.conv("smooth.gaussian_cols", &rows, &g1, [1, 1, k, 1], None, 1, 0, ConvPrecision::F32);
    g.leave(scope);
    y
}

/// The whole network: `image` [1, 3, H, W] -> (`anomaly_map` [1, 1, H, W], `score` [1]); the
/// score reads the smoothed map before its floor is removed.
/// With `tta` set, the network runs once per pass on the mirrored image (nodes of pass i >= 1
/// named `tta.pass<i>.<path>`, reading the same initializers) and the maps (after the sigmoid)
/// are mirrored back and averaged, or with `tta_reduce = min` reduced by their minimum (scope
/// `tta`), as [`FfcAd::forward_t`] does with a batch.
/// Separate batch-1 passes, not one batch: tract lowers batched 1x1 convolutions through
/// Im2col, 1.4-1.6x slower (BENCHMARKS.md, session 29).
pub fn ffc_ad(g: &mut GraphBuilder, image: &str, m: &FfcAd) -> (String, String) {
    let passes = m.config.tta.flip_dims();
    let scope = g.enter("tta");
    let copies: Vec<String> = passes.iter().map(|d| g.flip(image, d)).collect();
    g.leave(scope);
    let mut maps = Vec::new();
    for (i, copy) in copies.iter().enumerate() {
        g.set_pass(i);
        maps.push(network_pass(g, copy, m));
    }
    g.set_pass(0);
    let raw = match maps.len() {
        1 => maps.pop().expect("one pass"),
        _ => tta_combine(g, &maps, &passes, m.config.tta_reduce),
    };
    let map = smooth(g, &raw, m.config.map_sigma_px);
    let scope = g.enter("score");
    let filtered = match m.config.score_line_px {
        0 => g.avg_pool(&map, m.config.score_filter_px, 1),
        length => line_means(g, &map, length),
    };
    let score = g.reduce_max(&filtered, &[1, 2, 3]);
    g.leave(scope);
    (remove_floor(g, &map, m.config.map_floor_quantile), score)
}

/// The map's floor removed (model/floor.rs): max(0, map - its k-th smallest value), k =
/// [`floor_rank`] (H W, q), as Relu(map - ReduceMax(TopK smallest k)), scope `floor`. The
/// score is taken before it. q 0 returns the map.
fn remove_floor(g: &mut GraphBuilder, map: &str, q: f64) -> String {
    if q <= 0.0 {
        return map.to_string();
    }
    let s = g.shape(map);
    let scope = g.enter("floor");
    let floor = g.kth_smallest(map, floor_rank(s[2] * s[3], q));
    let lifted = g.sub(map, &floor);
    let y = g.relu(&lifted);
    g.leave(scope);
    y
}

/// One pass of the network: `image` [1, 3, H, W] -> anomaly probabilities (sigmoid of the
/// head's logits, before the smoothing) [1, 1, H, W].
fn network_pass(g: &mut GraphBuilder, image: &str, m: &FfcAd) -> String {
    let scope = g.enter("normalize");
    let mean = g.constant("mean", &[1, 3, 1, 1], &NORM_MEAN);
    let inv_std: Vec<f32> = NORM_STD.iter().map(|s| 1.0 / s).collect();
    let inv_std = g.constant("inv_std", &[1, 3, 1, 1], &inv_std);
    let centred = g.sub(image, &mean);
    let normalised = g.mul(&centred, &inv_std);
    g.leave(scope);
    let hidden = encoder(g, &normalised, &m.encoder, m.config.coord_channels.encoder());
    let recon = dae(g, &hidden, &m.dae);
    let logits = head(g, image, &recon, &m.head, m.config.coord_channels.head());
    let scope = g.enter("head");
    let raw = g.sigmoid(&logits);
    g.leave(scope);
    raw
}

/// The TTA passes' maps [1, 1, H, W] combined pixel by pixel ([`TtaReduce`]): their mean, or
/// their minimum (ONNX `Min`), pass i mirrored back along `passes[i]` (a mirror is its own inverse).
fn tta_combine(g: &mut GraphBuilder, maps: &[String], passes: &[Vec<i64>], reduce: TtaReduce) -> String {
    let scope = g.enter("tta");
    let mut acc = maps[0].clone();
    for (map, d) in maps.iter().zip(passes).skip(1) {
        let back = g.flip(map, d);
        acc = match reduce {
            TtaReduce::Mean => g.add(&acc, &back),
            TtaReduce::Min => g.min(&acc, &back),
        };
    }
    if reduce == TtaReduce::Mean {
        let inv = g.constant("inv_passes", &[1], &[1.0 / passes.len() as f32]);
        acc = g.mul(&acc, &inv);
    }
    g.leave(scope);
    acc
}

/// The line means of [`crate::model::line_score::line_image_score`] before its max:
/// map [1, 1, H, W] -> [1, 16, H / pool, W / pool]. A fixed filter (no variable: named
/// `score.line_kernels`), kept f32 in int8 exports like the smoothing.
fn line_means(g: &mut GraphBuilder, map: &str, length_px: i64) -> String {
    let k = crate::model::line_score::LineKernels::new(length_px);
    let pooled = g.avg_pool(map, k.pool, k.pool);
    let padded = g.pad_edge(&pooled, k.pad());
    let n = crate::model::line_score::ORIENTATIONS as i64;
    g.conv("score.line_kernels", &padded, &k.weights, [n, 1, k.side, k.side], None, 1, 0, ConvPrecision::F32)
}
