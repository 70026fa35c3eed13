//! SGD with Nesterov momentum and AdamW written out on tch tensors, so that their state (momentum
//! buffers, Adam moments, step count) can be saved with a resume point and training continued
//! exactly. tch's built-in optimizers keep that state inside libtorch where it cannot be read.
//!
//! Update rules as documented for `torch.optim.SGD` (dampening 0, nesterov) and
//! `torch.optim.AdamW` (amsgrad off) in PyTorch 2.x; weight decay applies to every trainable
//! tensor, as tch's optimizers do for a single parameter group.

use std::path::Path;

use tch::{nn::VarStore, Kind, Tensor};

use crate::config::{OptimizerKind, TrainConfig};

/// AdamW moment decay rates and epsilon (the PyTorch defaults, also tch's).
const ADAM_BETA1: f64 = 0.9;
const ADAM_BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

/// An optimizer over the trainable variables of one [`VarStore`], in name order.
pub struct Optimizer {
    kind: OptimizerKind,
    momentum: f64,
    weight_decay: f64,
    /// (name, variable) of every trainable variable, sorted by name.
    params: Vec<(String, Tensor)>,
    /// SGD: momentum buffer; AdamW: first moment. Same shape as the parameter; `None` until the
    /// parameter's first update.
    first: Vec<Option<Tensor>>,
    /// AdamW: second moment (unused for SGD).
    second: Vec<Option<Tensor>>,
    /// Optimisation steps taken (AdamW bias correction).
    steps: i64,
}

impl Optimizer {
    /// Optimizer of kind `cfg.optimizer` with `cfg.momentum` and `cfg.weight_decay`.
    pub fn new(vs: &VarStore, cfg: &TrainConfig) -> Self {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let empty = || params.iter().map(|_| None).collect::<Vec<_>>();
        Self { kind: cfg.optimizer, momentum: cfg.momentum, weight_decay: cfg.weight_decay, first: empty(), second: empty(), params, steps: 0 }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.steps
    }

    /// Zeroes the gradients, back-propagates `loss` and applies one update at learning rate `lr`.
    pub fn backward_step(&mut self, loss: &Tensor, lr: f64) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
        loss.backward();
        self.step(lr);
    }

    /// One update at learning rate `lr` from the gradients already stored in the variables.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let _guard = tch::no_grad_guard();
        for (i, (_, p)) in self.params.iter_mut().enumerate() {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            match self.kind {
                OptimizerKind::Sgd => {
                    // d = g + wd p; buf = m buf + d (buf = d at the first step); d += m buf.
                    let d = &g + &*p * self.weight_decay;
                    let buf = match &self.first[i] {
                        Some(buf) => buf * self.momentum + &d,
                        None => d.copy(),
                    };
                    let d = d + &buf * self.momentum;
                    self.first[i] = Some(buf);
                    let _ = p.f_sub_(&(d * lr)).expect("SGD update");
                }
                OptimizerKind::Adamw => {
                    // p *= 1 - lr wd; m, v moving averages; p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps).
                    let _ = p.f_mul_scalar_(1.0 - lr * self.weight_decay).expect("AdamW decay");
                    let m = self.first[i].take().unwrap_or_else(|| g.zeros_like()) * ADAM_BETA1 + &g * (1.0 - ADAM_BETA1);
                    let v = self.second[i].take().unwrap_or_else(|| g.zeros_like()) * ADAM_BETA2 + &g * &g * (1.0 - ADAM_BETA2);
                    let bc1 = 1.0 - ADAM_BETA1.powi(self.steps as i32);
                    let bc2 = 1.0 - ADAM_BETA2.powi(self.steps as i32);
                    let denom = v.sqrt() / bc2.sqrt() + ADAM_EPS;
                    let _ = p.f_sub_(&(&m / denom * (lr / bc1))).expect("AdamW update");
                    (self.first[i], self.second[i]) = (Some(m), Some(v));
                }
            }
        }
    }

    /// Writes the state (buffers as `first.<name>` / `second.<name>`, the step count as a
    /// one-element int64 tensor `steps`) to a `.safetensors` file. Errors name the file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut named: Vec<(String, Tensor)> = vec![("steps".into(), Tensor::from_slice(&[self.steps]))];
        for (i, (name, _)) in self.params.iter().enumerate() {
            for (prefix, t) in [("first", &self.first[i]), ("second", &self.second[i])] {
                if let Some(t) = t {
                    named.push((format!("{prefix}.{name}"), t.to_device(tch::Device::Cpu)));
                }
            }
        }
        Tensor::write_safetensors(&named, path).map_err(|e| anyhow::anyhow!("cannot write optimizer state {}: {e}", path.display()))
    }

    /// Reads the state written by [`Optimizer::save`]. Errors name the file and a buffer whose
    /// name or shape does not match this model.
    pub fn load(&mut self, path: &Path) -> anyhow::Result<()> {
        let tensors = Tensor::read_safetensors(path).map_err(|e| anyhow::anyhow!("cannot read optimizer state {}: {e}", path.display()))?;
        let index: std::collections::HashMap<&str, usize> = self.params.iter().enumerate().map(|(i, (n, _))| (n.as_str(), i)).collect();
        for (key, t) in tensors {
            if key == "steps" {
                self.steps = t.int64_value(&[0]);
                continue;
            }
            let (prefix, name) = key.split_once('.').ok_or_else(|| anyhow::anyhow!("optimizer state {}: unexpected tensor `{key}`", path.display()))?;
            let i = *index.get(name).ok_or_else(|| anyhow::anyhow!("optimizer state {}: `{key}` is not a trainable variable of this model", path.display()))?;
            let p = &self.params[i].1;
            anyhow::ensure!(
                t.size() == p.size(),
                "optimizer state {}: `{key}` has shape {:?}, the variable has {:?}",
                path.display(),
                t.size(),
                p.size()
            );
            let t = t.to_kind(Kind::Float).to_device(p.device());
            match prefix {
                "first" => self.first[i] = Some(t),
                "second" => self.second[i] = Some(t),
                _ => anyhow::bail!("optimizer state {}: unexpected tensor `{key}`", path.display()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    /// One parameter, quadratic loss 0.5 * sum(p^2) (gradient = p): updates checked against the
    /// formulas evaluated by hand.
    fn setup(kind: OptimizerKind, wd: f64) -> (nn::VarStore, Optimizer, Tensor) {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]));
        let mut cfg = TrainConfig::small();
        cfg.optimizer = kind;
        cfg.momentum = 0.9;
        cfg.weight_decay = wd;
        let opt = Optimizer::new(&vs, &cfg);
        (vs, opt, p)
    }

    fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(&t.to_kind(Kind::Double)).unwrap()
    }

    #[test]
    fn sgd_nesterov_matches_the_torch_formula() {
        let (_vs, mut opt, p) = setup(OptimizerKind::Sgd, 0.1);
        let loss = |p: &Tensor| (p * p).sum(Kind::Float) * 0.5;
        // Step 1: d = p + 0.1 p = 1.1 p; buf = d; d' = d + 0.9 buf = 2.09 p; p -= 0.1 d'.
        opt.backward_step(&loss(&p), 0.1);
        let p1: Vec<f64> = [1.0, -2.0].iter().map(|v| v * (1.0 - 0.1 * 2.09)).collect();
        assert!(values(&p).iter().zip(&p1).all(|(a, b)| (a - b).abs() < 1e-6), "{:?} vs {p1:?}", values(&p));
        // Step 2: d = 1.1 p1; buf = 0.9 * (1.1 p0) + d; p2 = p1 - 0.1 (d + 0.9 buf).
        opt.backward_step(&loss(&p), 0.1);
        let p2: Vec<f64> = [1.0f64, -2.0]
            .iter()
            .zip(&p1)
            .map(|(p0, p1)| {
                let d = 1.1 * p1;
                let buf = 0.9 * 1.1 * p0 + d;
                p1 - 0.1 * (d + 0.9 * buf)
            })
            .collect();
        assert!(values(&p).iter().zip(&p2).all(|(a, b)| (a - b).abs() < 1e-6), "{:?} vs {p2:?}", values(&p));
    }

    #[test]
    fn adamw_first_step_moves_by_lr_after_decay() {
        let (_vs, mut opt, p) = setup(OptimizerKind::Adamw, 0.01);
        opt.backward_step(&((&p * &p).sum(Kind::Float) * 0.5), 0.1);
        // Bias-corrected m / sqrt(v) = sign(g) at step 1, so p1 = p0 (1 - lr wd) - lr sign(p0).
        let want = [1.0 * (1.0 - 0.001) - 0.1, -2.0 * (1.0 - 0.001) + 0.1];
        assert!(values(&p).iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6), "{:?} vs {want:?}", values(&p));
    }

    #[test]
    fn saved_state_continues_identically() {
        for kind in [OptimizerKind::Sgd, OptimizerKind::Adamw] {
            let d = tempfile::tempdir().unwrap();
            let (vs_a, mut a, pa) = setup(kind, 0.1);
            let loss = |p: &Tensor| (p * p * p).abs().sum(Kind::Float);
            for _ in 0..3 {
                a.backward_step(&loss(&pa), 0.05);
            }
            a.save(&d.path().join("opt.safetensors")).unwrap();
            vs_a.save(d.path().join("w.safetensors")).unwrap();
            let (mut vs_b, mut b, pb) = setup(kind, 0.1);
            vs_b.load(d.path().join("w.safetensors")).unwrap();
            b.load(&d.path().join("opt.safetensors")).unwrap();
            assert_eq!(b.steps(), 3);
            for _ in 0..3 {
                a.backward_step(&loss(&pa), 0.05);
                b.backward_step(&loss(&pb), 0.05);
            }
            assert_eq!(values(&pa), values(&pb), "{kind:?}");
        }
    }

    #[test]
    fn state_of_another_model_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let (_vs, mut a, p) = setup(OptimizerKind::Sgd, 0.0);
        a.backward_step(&(&p * &p).sum(Kind::Float), 0.1);
        let f = d.path().join("opt.safetensors");
        a.save(&f).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let _q = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, 2.0, 3.0]));
        let mut b = Optimizer::new(&vs, &TrainConfig::small());
        let msg = b.load(&f).unwrap_err().to_string();
        assert!(msg.contains("opt.safetensors") && msg.contains("first.w") && msg.contains("shape"), "{msg}");
    }
}
