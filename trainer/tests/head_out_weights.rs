//! `model.head_out_weights = non-negative`: the head's output convolution keeps weights >= 0, at
//! initialisation and after every training step, so that logit >= bias at every pixel (a pixel
//! whose last-level ReLU features are all 0 scores the map's minimum).

mod common;

use tch::{nn, Device, Kind, Tensor};
use trainer::config::{HeadOutWeights, TrainConfig};
use trainer::model::FfcAd;
use trainer::train::{train, TrainOptions};

/// (logits [2, 1, 64, 96], output bias, smallest output weight) of a freshly drawn model on
/// random images.
fn fresh_logits(weights: HeadOutWeights, prior: f64) -> (Tensor, f64, f64) {
    tch::manual_seed(5);
    let mut cfg = TrainConfig::small().model;
    (cfg.input_height, cfg.input_width) = (64, 96);
    (cfg.head_out_weights, cfg.head_out_prior) = (weights, prior);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = FfcAd::new(&vs.root(), &cfg).unwrap();
    let x = Tensor::rand([2, 3, 64, 96], (Kind::Float, Device::Cpu));
    let logits = tch::no_grad(|| model.forward_t(&x, false).logits);
    let bias = model.head.out.conv.bs.as_ref().expect("head.out has a bias").double_value(&[0]);
    (logits, bias, model.head.out.conv.ws.min().double_value(&[]))
}

/// (smallest logit - bias, smallest output weight) of a freshly drawn model.
fn logit_floor(weights: HeadOutWeights) -> (f64, f64) {
    let (logits, bias, w_min) = fresh_logits(weights, 0.0);
    (logits.min().double_value(&[]) - bias, w_min)
}

#[test]
fn non_negative_output_weights_put_every_logit_at_or_above_the_bias() {
    let (floor, w_min) = logit_floor(HeadOutWeights::NonNegative);
    assert!(w_min >= 0.0, "initialised as |w|: smallest weight {w_min}");
    assert!(floor >= -1e-5, "logit - bias >= 0 everywhere: smallest {floor}");
    // The free head (the recipe) does go below its bias: what the option changes.
    let (free_floor, free_w_min) = logit_floor(HeadOutWeights::Free);
    assert!(free_w_min < 0.0 && free_floor < -1e-3, "a free head has negative weights ({free_w_min}) and logits below the bias ({free_floor})");
}

/// (mean anomaly probability sigmoid(logit) over the pixels, output bias) of a freshly drawn model.
fn first_probability(weights: HeadOutWeights, prior: f64) -> (f64, f64) {
    let (logits, bias, _) = fresh_logits(weights, prior);
    (logits.sigmoid().mean(Kind::Float).double_value(&[]), bias)
}

#[test]
fn a_prior_starts_every_pixel_near_it() {
    // Without the prior a non-negative head starts well above 0.5: the shock that switched it off.
    let (p_drawn, _) = first_probability(HeadOutWeights::NonNegative, 0.0);
    assert!(p_drawn > 0.6, "tch's draw, made non-negative: mean p {p_drawn}");
    for weights in [HeadOutWeights::Free, HeadOutWeights::NonNegative] {
        let (p, bias) = first_probability(weights, 0.01);
        assert!((bias + 99f64.ln()).abs() < 1e-5, "{weights:?}: bias -ln(99), got {bias}");
        // Weights N(0, 0.01^2) add a little: p stays within a factor 2 of the prior.
        assert!((0.005..0.02).contains(&p), "{weights:?}: mean p {p}, expected ~0.01");
    }
}

#[test]
fn training_keeps_the_output_weights_non_negative() {
    let root = tempfile::tempdir().unwrap();
    let data = common::good_images(root.path(), 64, 64);
    let mut cfg = TrainConfig::small();
    (cfg.model.input_height, cfg.model.input_width) = (64, 64);
    cfg.model.head_out_weights = HeadOutWeights::NonNegative;
    cfg.anomaly_probability = 1.0;
    (cfg.steps, cfg.batch_size) = (4, 2);
    let (weights, info) = train(&TrainOptions::new(data, cfg, root.path().join("out"))).unwrap();
    assert_eq!(info.config.model.head_out_weights, HeadOutWeights::NonNegative, "stored in the checkpoint");
    let (_vs, model, _) = trainer::checkpoint::load_model(&weights, Device::Cpu).unwrap();
    let w = &model.head.out.conv.ws;
    let (w_min, zeros) = (w.min().double_value(&[]), w.eq(0.0).sum(Kind::Int64).int64_value(&[]));
    assert!(w_min >= 0.0, "projected after every step: smallest weight {w_min}");
    // Steps pushed some weights below 0 and the projection clamped them to exactly 0 (drawn as
    // |w|, none starts at 0): the projection ran, not only the initialisation.
    assert!(zeros > 0, "no weight was clamped to 0 in 4 steps");
}
