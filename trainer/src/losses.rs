//! Training losses (DESIGN.md §3): reconstruction L2 + (1 - SSIM), segmentation focal (+ L1,
//! + soft Dice), each term weighted by the config.

use tch::{Kind, Reduction, Tensor};

/// Mean SSIM (Wang et al., IEEE TIP 2004) with an 11x11 Gaussian window, sigma 1.5,
/// C1 = 0.01^2, C2 = 0.03^2, for images in [0, 1]; a, b: [N, C, H, W].
pub fn ssim(a: &Tensor, b: &Tensor) -> Tensor {
    let c = a.size()[1];
    let g: Vec<f32> = (0..11).map(|i| (-((i as f32 - 5.0).powi(2)) / (2.0 * 1.5 * 1.5)).exp()).collect();
    let s: f32 = g.iter().sum();
    let g = Tensor::from_slice(&g).to_device(a.device()) / s as f64;
    let win = g.view([11, 1]).matmul(&g.view([1, 11])).view([1, 1, 11, 11]).repeat([c, 1, 1, 1]);
    let blur = |x: &Tensor| x.conv2d(&win, None::<Tensor>, [1i64, 1], [5i64, 5], [1i64, 1], c);
    let (mu_a, mu_b) = (blur(a), blur(b));
    let (mu_aa, mu_bb, mu_ab) = (&mu_a * &mu_a, &mu_b * &mu_b, &mu_a * &mu_b);
    let s_aa = blur(&(a * a)) - &mu_aa;
    let s_bb = blur(&(b * b)) - &mu_bb;
    let s_ab = blur(&(a * b)) - &mu_ab;
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let map: Tensor = (mu_ab * 2.0 + c1) * (s_ab * 2.0 + c2) / ((mu_aa + mu_bb + c1) * (s_aa + s_bb + c2));
    map.mean(Kind::Float)
}

/// Binary focal loss (Lin et al., ICCV 2017) with gamma = 2 on logits against 0/1 targets.
pub fn focal_loss(logits: &Tensor, target: &Tensor) -> Tensor {
    let bce = logits.binary_cross_entropy_with_logits::<Tensor>(target, None, None, Reduction::None);
    let pt: Tensor = (-&bce).exp();
    let weight: Tensor = (-pt + 1.0).pow_tensor_scalar(2.0);
    (weight * bce).mean(Kind::Float)
}

/// Reconstruction loss: MSE + (1 - SSIM).
pub fn reconstruction_loss(recon: &Tensor, clean: &Tensor) -> Tensor {
    recon.mse_loss(clean, Reduction::Mean) + (1.0 - ssim(recon, clean))
}

/// Soft Dice loss (Milletari et al., 3DV 2016) over the samples that hold defect pixels:
/// 1 - 2 sum(p m) / (sum(p) + sum(m) + 1), averaged over those samples; 0 when none has any.
/// logits, mask: [N, 1, H, W].
pub fn dice_loss(logits: &Tensor, mask: &Tensor) -> Tensor {
    let p = logits.sigmoid();
    let dims: &[i64] = &[1, 2, 3];
    let inter = (&p * mask).sum_dim_intlist(dims, false, Kind::Float);
    let total = p.sum_dim_intlist(dims, false, Kind::Float) + mask.sum_dim_intlist(dims, false, Kind::Float);
    let has_defect = mask.sum_dim_intlist(dims, false, Kind::Float).gt(0.0).to_kind(Kind::Float);
    let per = (-(inter * 2.0) / (total + 1.0) + 1.0) * &has_defect;
    per.sum(Kind::Float) / has_defect.sum(Kind::Float).clamp_min(1.0)
}

/// Weights of the segmentation loss terms (TrainConfig `seg_*_weight`).
#[derive(Debug, Clone, Copy)]
pub struct SegWeights {
    pub focal: f64,
    pub l1: f64,
    pub dice: f64,
}

/// Segmentation loss: focal on logits + L1 on probabilities + soft Dice on defective samples,
/// weighted. Terms with weight 0 are not computed.
pub fn segmentation_loss(logits: &Tensor, mask: &Tensor, w: SegWeights) -> Tensor {
    let mut loss = focal_loss(logits, mask) * w.focal;
    if w.l1 > 0.0 {
        loss = loss + (logits.sigmoid() - mask).abs().mean(Kind::Float) * w.l1;
    }
    if w.dice > 0.0 {
        loss = loss + dice_loss(logits, mask) * w.dice;
    }
    loss
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssim_is_one_for_identical_and_lower_for_noise() {
        tch::manual_seed(0);
        let a = Tensor::rand([1, 3, 32, 32], (Kind::Float, tch::Device::Cpu));
        assert!((ssim(&a, &a).double_value(&[]) - 1.0).abs() < 1e-5);
        let b = (&a + Tensor::randn([1, 3, 32, 32], (Kind::Float, tch::Device::Cpu)) * 0.3).clamp(0.0, 1.0);
        assert!(ssim(&a, &b).double_value(&[]) < 0.8);
    }

    #[test]
    fn dice_matches_closed_form_and_skips_clean_samples() {
        // Sample 0: logits 0 (p = 0.5) on 4 px, mask 2 px: 1 - 2 * 1 / (2 + 2 + 1) = 0.6.
        // Sample 1: no defect pixels: not counted.
        let logits = Tensor::zeros([2, 1, 2, 2], (Kind::Float, tch::Device::Cpu));
        let mask = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]).view([2, 1, 2, 2]);
        let d = dice_loss(&logits, &mask).double_value(&[]);
        assert!((d - 0.6).abs() < 1e-6, "{d}");
        let none = dice_loss(&logits, &Tensor::zeros([2, 1, 2, 2], (Kind::Float, tch::Device::Cpu))).double_value(&[]);
        assert_eq!(none, 0.0);
    }

    #[test]
    fn segmentation_loss_weights_its_terms() {
        let logits = Tensor::from_slice(&[0.0f32, 2.0, -1.0, 0.5]).view([1, 1, 2, 2]);
        let mask = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).view([1, 1, 2, 2]);
        let f = focal_loss(&logits, &mask).double_value(&[]);
        let l1 = (logits.sigmoid() - &mask).abs().mean(Kind::Float).double_value(&[]);
        let d = dice_loss(&logits, &mask).double_value(&[]);
        let got = segmentation_loss(&logits, &mask, SegWeights { focal: 5.0, l1: 0.5, dice: 2.0 }).double_value(&[]);
        assert!((got - (5.0 * f + 0.5 * l1 + 2.0 * d)).abs() < 1e-6, "{got}");
    }

    #[test]
    fn focal_matches_closed_form() {
        // logit 0 -> p = 0.5 for target 1: bce = ln 2, (1 - 0.5)^2 ln 2.
        let l = focal_loss(&Tensor::from_slice(&[0.0f32]), &Tensor::from_slice(&[1.0f32])).double_value(&[]);
        assert!((l - 0.25 * 2f64.ln()).abs() < 1e-6, "{l}");
    }
}
