//! Segmentation head: a 3-level U-Net on [image, reconstruction] (6 channels) that outputs the
//! anomaly-map logits at input resolution (this project's choice, DESIGN.md §3 "localization").
//! Its skip connections stay inside the head; the hidden space of the DAE is not bypassed.

use tch::{nn, Tensor};

use super::layers::{Conv, ConvBnAct, UpBlock};

#[derive(Debug)]
pub struct SegHead {
    pub enc: [[ConvBnAct; 2]; 3],
    pub up: [UpBlock; 2],
    pub dec: [ConvBnAct; 2],
    /// 1x1 conv to one logit channel (with bias).
    pub out: Conv,
}

impl SegHead {
    pub fn new(vs: nn::Path, w: i64) -> Self {
        let cbr = |name: String, i, o| ConvBnAct::new(&vs / name, i, o, 3, 1, true);
        Self {
            enc: [
                [cbr("enc0a".into(), 6, w), cbr("enc0b".into(), w, w)],
                [cbr("enc1a".into(), w, 2 * w), cbr("enc1b".into(), 2 * w, 2 * w)],
                [cbr("enc2a".into(), 2 * w, 4 * w), cbr("enc2b".into(), 4 * w, 4 * w)],
            ],
            up: [UpBlock::new(&vs / "up1", 4 * w, 2 * w), UpBlock::new(&vs / "up0", 2 * w, w)],
            dec: [cbr("dec1".into(), 4 * w, 2 * w), cbr("dec0".into(), 2 * w, w)],
            out: Conv::new(&vs / "out", w, 1, 1, 1, true),
        }
    }

    /// image, reconstruction: [N, 3, H, W] in [0, 1] -> logits [N, 1, H, W].
    pub fn forward_t(&self, image: &Tensor, recon: &Tensor, train: bool) -> Tensor {
        let x = Tensor::cat(&[image, recon], 1);
        let pair = |p: &[ConvBnAct; 2], x: &Tensor| p[1].forward_t(&p[0].forward_t(x, train), train);
        let pool = |x: &Tensor| x.max_pool2d([2i64, 2], [2i64, 2], [0i64, 0], [1i64, 1], false);
        let e0 = pair(&self.enc[0], &x);
        let e1 = pair(&self.enc[1], &pool(&e0));
        let e2 = pair(&self.enc[2], &pool(&e1));
        let d1 = self.dec[0].forward_t(&Tensor::cat(&[self.up[0].forward_t(&e2, train), e1], 1), train);
        let d0 = self.dec[1].forward_t(&Tensor::cat(&[self.up[1].forward_t(&d1, train), e0], 1), train);
        self.out.forward(&d0)
    }
}
