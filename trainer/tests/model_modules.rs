//! FFC building blocks against independent computations: the FourierUnit against a direct DFT,
//! gradients through every FFC path, output shapes on non-square inputs.

use tch::{nn, Device, Kind, Tensor};
use trainer::config::TrainConfig;
use trainer::model::ffc::{Ffc, FourierUnit, Split};
use trainer::model::layers::BN_EPS;
use trainer::model::FfcAd;

/// Direct evaluation of FourierUnit in f64: rfft2 (ortho) by the DFT sum, stack [re; im] on
/// channels, 1x1 conv `m` ([2C, 2C] row-major), eval-mode BN with default statistics
/// (scale 1/sqrt(1 + eps)), ReLU, then inverse along H (complex) and the real inverse along W
/// (imaginary parts of DC and Nyquist bins ignored, as in C2R transforms).
fn direct_fourier_unit(x: &[f64], c: usize, h: usize, w: usize, m: &[f64]) -> Vec<f64> {
    use std::f64::consts::PI;
    let wf = w / 2 + 1;
    let norm = 1.0 / ((h * w) as f64).sqrt();
    // spec[ch][ky][kx] = (re, im)
    let mut stacked = vec![0.0; 2 * c * h * wf];
    for ch in 0..c {
        for ky in 0..h {
            for kx in 0..wf {
                let (mut re, mut im) = (0.0, 0.0);
                for y in 0..h {
                    for xx in 0..w {
                        let a = -2.0 * PI * ((ky * y) as f64 / h as f64 + (kx * xx) as f64 / w as f64);
                        let v = x[(ch * h + y) * w + xx];
                        re += v * a.cos();
                        im += v * a.sin();
                    }
                }
                stacked[(ch * h + ky) * wf + kx] = re * norm;
                stacked[((c + ch) * h + ky) * wf + kx] = im * norm;
            }
        }
    }
    let bn = 1.0 / (1.0 + BN_EPS).sqrt();
    let mut z = vec![0.0; 2 * c * h * wf];
    for o in 0..2 * c {
        for p in 0..h * wf {
            let s: f64 = (0..2 * c).map(|i| m[o * 2 * c + i] * stacked[i * h * wf + p]).sum();
            z[o * h * wf + p] = (s * bn).max(0.0);
        }
    }
    let mut out = vec![0.0; c * h * w];
    for ch in 0..c {
        for y in 0..h {
            // inverse along H for each kx: A[kx] = sum_ky Z[ky][kx] e^{+2 pi i ky y / H}
            let a: Vec<(f64, f64)> = (0..wf)
                .map(|kx| {
                    (0..h).fold((0.0, 0.0), |(ar, ai), ky| {
                        let t = 2.0 * PI * (ky * y) as f64 / h as f64;
                        let (zr, zi) = (z[(ch * h + ky) * wf + kx], z[((c + ch) * h + ky) * wf + kx]);
                        (ar + zr * t.cos() - zi * t.sin(), ai + zr * t.sin() + zi * t.cos())
                    })
                })
                .collect();
            for xx in 0..w {
                let mut v = 0.0;
                for (kx, (ar, ai)) in a.iter().enumerate() {
                    let t = 2.0 * PI * (kx * xx) as f64 / w as f64;
                    let edge = kx == 0 || (w % 2 == 0 && kx == w / 2);
                    let k = if edge { 1.0 } else { 2.0 };
                    v += k * (ar * t.cos() - if edge { 0.0 } else { ai * t.sin() });
                }
                out[(ch * h + y) * w + xx] = v * norm;
            }
        }
    }
    out
}

#[test]
fn fourier_unit_matches_direct_dft_even_and_odd_widths() {
    for (h, w) in [(6usize, 8usize), (5, 7)] {
        tch::manual_seed(3);
        let c = 2;
        let vs = nn::VarStore::new(Device::Cpu);
        let mut fu = FourierUnit::new(vs.root(), c as i64);
        let m: Vec<f32> = (0..4 * c * c).map(|i| ((i * 37 % 11) as f32 - 5.0) / 7.0).collect();
        tch::no_grad(|| fu.conv.conv.ws.copy_(&Tensor::from_slice(&m).view([2 * c as i64, 2 * c as i64, 1, 1])));
        let x = Tensor::randn([1, c as i64, h as i64, w as i64], (Kind::Float, Device::Cpu));
        let got = Vec::<f32>::try_from(&fu.forward_t(&x, false).view([-1])).unwrap();
        let xs: Vec<f64> = Vec::<f32>::try_from(&x.view([-1])).unwrap().into_iter().map(f64::from).collect();
        let md: Vec<f64> = m.iter().map(|&v| v as f64).collect();
        let want = direct_fourier_unit(&xs, c, h, w, &md);
        let err = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-4, "{h}x{w}: max abs error {err}");
        assert!(want.iter().any(|v| v.abs() > 0.1), "non-trivial output");
    }
}

#[test]
fn gradients_flow_through_every_ffc_path() {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let ffc = Ffc::new(vs.root(), 8, 8, 3, 2, 0.5, 0.5);
    let x = Split {
        l: Some(Tensor::randn([2, 4, 12, 20], (Kind::Float, Device::Cpu))),
        g: Some(Tensor::randn([2, 4, 12, 20], (Kind::Float, Device::Cpu))),
    };
    let y = ffc.forward_t(&x, true);
    assert_eq!(y.l.as_ref().unwrap().size(), [2, 4, 6, 10]);
    assert_eq!(y.g.as_ref().unwrap().size(), [2, 4, 6, 10]);
    let loss = y.l.unwrap().pow_tensor_scalar(2).sum(Kind::Float) + y.g.unwrap().pow_tensor_scalar(2).sum(Kind::Float);
    loss.backward();
    let vars = vs.variables();
    for name in ["l2l.weight", "l2g.weight", "g2l.weight", "g2g.conv1.weight", "g2g.fu.conv.weight", "g2g.conv2.weight"] {
        let v = vars.get(name).unwrap_or_else(|| panic!("no variable {name}: {:?}", vars.keys()));
        let g = v.grad().abs().sum(Kind::Float).double_value(&[]);
        assert!(g > 0.0, "no gradient reaches {name}");
    }
}

#[test]
fn shapes_on_non_square_inputs() {
    tch::manual_seed(2);
    let mut cfg = TrainConfig::small().model;
    cfg.input_height = 64;
    cfg.input_width = 96;
    let vs = nn::VarStore::new(Device::Cpu);
    let model = FfcAd::new(&vs.root(), &cfg).unwrap();
    let x = Tensor::rand([2, 3, 64, 96], (Kind::Float, Device::Cpu));
    let hidden = model.encoder.forward_t(&x, false);
    let (hl, hg) = (hidden.l.as_ref().unwrap().size(), hidden.g.as_ref().unwrap().size());
    assert_eq!((hl[2], hl[3], hl[1] + hg[1]), (4, 6, 128), "stride 16, 128 channels");
    let out = model.forward_t(&x, true);
    assert_eq!(out.recon.size(), [2, 3, 64, 96]);
    assert_eq!(out.logits.size(), [2, 1, 64, 96]);
    assert_eq!(model.image_score(&out.anomaly_map).size(), [2]);
    // The old recipe's encoder: stride 32, and both forms of every other recipe knob build.
    let legacy = trainer::config::TrainConfig::small_legacy().model;
    let legacy = trainer::config::ModelConfig { input_height: 64, input_width: 96, ..legacy };
    let vs_legacy = nn::VarStore::new(Device::Cpu);
    let old = FfcAd::new(&vs_legacy.root(), &legacy).unwrap();
    let h32 = old.encoder.forward_t(&x, false);
    assert_eq!(h32.l.as_ref().unwrap().size()[2..], [2, 3], "stride 32");
    assert_eq!(old.forward_t(&x, false).anomaly_map.size(), [2, 1, 64, 96]);
    let mn = out.recon.min().double_value(&[]);
    let mx = out.recon.max().double_value(&[]);
    assert!((0.0..=1.0).contains(&mn) && (0.0..=1.0).contains(&mx));
    // Ablations build and run: plain encoder, no DAE blocks, 1-D dropout, 3 layers per block.
    cfg.ffc_encoder = false;
    cfg.dae_blocks = 0;
    cfg.hsas_kind = trainer::config::DropoutKind::D1;
    cfg.ffc_layers_per_block = 3;
    let vs = nn::VarStore::new(Device::Cpu);
    let plain = FfcAd::new(&vs.root(), &cfg).unwrap();
    assert_eq!(plain.forward_t(&x, true).logits.size(), [2, 1, 64, 96]);
    let bad = { let mut c = cfg.clone(); c.input_width = 100; c };
    let msg = FfcAd::new(&vs.root(), &bad).unwrap_err().to_string();
    assert!(msg.contains("multiples of 32"), "{msg}");
}
