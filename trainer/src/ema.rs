//! Exponential moving average (EMA) of the model's weights, the averaged copy evaluated, calibrated
//! and saved instead of the last step's weights. The decay after `n` updates is
//! `min(decay, (1 + n) / (10 + n))`, TensorFlow's `tf.train.ExponentialMovingAverage` with
//! `num_updates`: the set decay is reached only after `(10 decay - 1) / (1 - decay)` updates
//! (0.99: 890 steps, 0.995: 1790), so on shorter runs every decay above `(1 + n) / (10 + n)` gives
//! the same average (800 steps: 0.989, an average over roughly the last 90 steps). BatchNorm
//! running statistics are averaged too, as timm's `ModelEmaV2` does, so that the averaged weights
//! run with matching statistics.

use std::path::Path;

use tch::{nn::VarStore, Kind, Tensor};

/// Averaged copies of every variable of one [`VarStore`] (trainable weights and BatchNorm
/// buffers), in name order.
pub struct WeightAverage {
    decay: f64,
    /// Updates so far (the decay ramps up with it).
    updates: i64,
    /// (name, the live variable, its average). Same shape, kind and device as the variable.
    vars: Vec<(String, Tensor, Tensor)>,
}

impl WeightAverage {
    /// Starts the averages at the current values of `vs`; `decay` in (0, 1).
    pub fn new(vs: &VarStore, decay: f64) -> Self {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let vars = vars.into_iter().map(|(n, v)| {
            let avg = v.detach().copy();
            (n, v, avg)
        });
        Self { decay, updates: 0, vars: vars.collect() }
    }

    /// Updates so far.
    pub fn updates(&self) -> i64 {
        self.updates
    }

    /// The decay the next update uses: `min(decay, (1 + n) / (10 + n))` after `n` updates, so that
    /// the average is not dominated by the random initial weights early in training.
    pub fn next_decay(&self) -> f64 {
        self.decay_after(self.updates)
    }

    /// The decay the last update used (the next one's before any update).
    pub fn last_decay(&self) -> f64 {
        self.decay_after((self.updates - 1).max(0))
    }

    fn decay_after(&self, updates: i64) -> f64 {
        let n = updates as f64;
        self.decay.min((1.0 + n) / (10.0 + n))
    }

    /// One update after an optimisation step: `avg = d avg + (1 - d) w` for every floating-point
    /// variable (integer buffers are copied).
    pub fn update(&mut self) {
        let d = self.next_decay();
        self.updates += 1;
        let _guard = tch::no_grad_guard();
        for (_, v, avg) in &mut self.vars {
            if is_float(v.kind()) {
                let _ = avg.f_mul_scalar_(d).and_then(|mut a| a.f_add_(&(v.detach() * (1.0 - d)))).expect("EMA update");
            } else {
                avg.copy_(v);
            }
        }
    }

    /// Exchanges the live weights and their averages in place: after one call the model runs
    /// with the averaged weights, after a second one with the trained weights again, bit for bit.
    pub fn swap(&mut self) {
        let _guard = tch::no_grad_guard();
        for (_, v, avg) in &mut self.vars {
            let live = v.detach().copy();
            v.copy_(avg);
            avg.copy_(&live);
        }
    }

    /// Runs `f` with the averaged weights in the model, then puts the trained weights back.
    pub fn with_average<T>(&mut self, f: impl FnOnce() -> T) -> T {
        self.swap();
        let out = f();
        self.swap();
        out
    }

    /// Writes the averages (`avg.<name>`) and the update count (`updates`, one int64) to a
    /// `.safetensors` file. Errors name the file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut named: Vec<(String, Tensor)> = vec![("updates".into(), Tensor::from_slice(&[self.updates]))];
        named.extend(self.vars.iter().map(|(n, _, a)| (format!("avg.{n}"), a.to_device(tch::Device::Cpu))));
        Tensor::write_safetensors(&named, path).map_err(|e| anyhow::anyhow!("cannot write weight averages {}: {e}", path.display()))
    }

    /// Reads what [`WeightAverage::save`] wrote. Errors name the file and a tensor that is
    /// missing or does not match this model's variable, or an update count that is not one
    /// non-negative integer.
    pub fn load(&mut self, path: &Path) -> anyhow::Result<()> {
        let tensors: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(path).map_err(|e| anyhow::anyhow!("cannot read weight averages {}: {e}", path.display()))?.into_iter().collect();
        let updates = tensors.get("updates").ok_or_else(|| anyhow::anyhow!("weight averages {}: no `updates` tensor", path.display()))?;
        let updates = match (updates.numel(), updates.f_int64_value(&[0])) {
            (1, Ok(n)) if n >= 0 => n,
            _ => anyhow::bail!("weight averages {}: `updates` must be one integer >= 0, got {updates:?}", path.display()),
        };
        let _guard = tch::no_grad_guard();
        for (name, _, avg) in &mut self.vars {
            let t = tensors.get(&format!("avg.{name}")).ok_or_else(|| anyhow::anyhow!("weight averages {}: no average of `{name}`", path.display()))?;
            anyhow::ensure!(t.size() == avg.size(), "weight averages {}: `{name}` has shape {:?}, the model {:?}", path.display(), t.size(), avg.size());
            avg.copy_(t);
        }
        self.updates = updates;
        Ok(())
    }
}

fn is_float(kind: Kind) -> bool {
    matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device};

    fn store() -> (nn::VarStore, Tensor, Tensor) {
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().var_copy("w", &Tensor::from_slice(&[1.0f32, -2.0]));
        let b = vs.root().var_copy("b", &Tensor::from_slice(&[4.0f32]));
        (vs, w, b)
    }

    fn set(t: &Tensor, values: &[f32]) {
        let _g = tch::no_grad_guard();
        let mut t = t.shallow_clone();
        t.copy_(&Tensor::from_slice(values));
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.detach()).unwrap()
    }

    #[test]
    fn averages_follow_the_ramped_decay() {
        let (vs, w, _) = store();
        let mut ema = WeightAverage::new(&vs, 0.9);
        // Decays 1/10, 2/11, then capped at 0.9 from n = 80 on: computed by hand.
        assert!((ema.next_decay() - 0.1).abs() < 1e-12);
        set(&w, &[3.0, 0.0]);
        ema.update(); // avg = 0.1 * [1, -2] + 0.9 * [3, 0] = [2.8, -0.2]
        assert!((ema.next_decay() - 2.0 / 11.0).abs() < 1e-12);
        set(&w, &[0.0, 1.0]);
        ema.update(); // avg = 2/11 * [2.8, -0.2] + 9/11 * [0, 1]
        assert!((ema.last_decay() - 2.0 / 11.0).abs() < 1e-12);
        ema.swap();
        let got = values(&w);
        let want = [2.0 / 11.0 * 2.8, 2.0 / 11.0 * -0.2 + 9.0 / 11.0];
        assert!((got[0] - want[0] as f32).abs() < 1e-6 && (got[1] - want[1] as f32).abs() < 1e-6, "{got:?} vs {want:?}");
        ema.updates = 1000;
        assert!((ema.next_decay() - 0.9).abs() < 1e-12);
    }

    #[test]
    fn swapping_twice_restores_the_trained_weights_exactly() {
        let (vs, w, b) = store();
        let mut ema = WeightAverage::new(&vs, 0.5);
        set(&w, &[0.1, 0.7]);
        set(&b, &[-3.0]);
        ema.update();
        let seen = ema.with_average(|| (values(&w), values(&b)));
        assert_ne!(seen.0, vec![0.1, 0.7], "the average differs from the live weights");
        assert_eq!(values(&w), vec![0.1, 0.7]);
        assert_eq!(values(&b), vec![-3.0]);
    }

    #[test]
    fn save_and_load_round_trip_and_refuse_another_model() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ema.safetensors");
        let (vs, w, _) = store();
        let mut ema = WeightAverage::new(&vs, 0.99);
        set(&w, &[5.0, 5.0]);
        ema.update();
        ema.update();
        ema.save(&path).unwrap();
        let (vs2, w2, _) = store();
        let mut other = WeightAverage::new(&vs2, 0.99);
        other.load(&path).unwrap();
        assert_eq!(other.updates, 2);
        ema.swap();
        other.swap();
        assert_eq!(values(&w), values(&w2));

        let vs3 = nn::VarStore::new(Device::Cpu);
        let _ = vs3.root().var_copy("w", &Tensor::from_slice(&[1.0f32, 2.0, 3.0]));
        let _ = vs3.root().var_copy("b", &Tensor::from_slice(&[0.0f32]));
        let err = WeightAverage::new(&vs3, 0.99).load(&path).err().expect("shape mismatch refused").to_string();
        assert!(err.contains("`w` has shape [2], the model [3]") && err.contains("ema.safetensors"), "{err}");

        // A count that would make the decay divide by zero (n = -10) is refused, not used.
        let mut named: Vec<(String, Tensor)> = Tensor::read_safetensors(&path).unwrap().into_iter().filter(|(n, _)| n != "updates").collect();
        named.push(("updates".into(), Tensor::from_slice(&[-10i64])));
        let bad = dir.path().join("bad.safetensors");
        Tensor::write_safetensors(&named, &bad).unwrap();
        let err = WeightAverage::new(&vs2, 0.99).load(&bad).err().expect("negative count refused").to_string();
        assert!(err.contains("`updates` must be one integer >= 0") && err.contains("bad.safetensors"), "{err}");
    }
}
