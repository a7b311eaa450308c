//! # Batch normalization
//!
//! S. Ioffe and C. Szegedy, "Batch Normalization: Accelerating Deep Network Training by Reducing
//! Internal Covariate Shift", ICML 2015. <https://arxiv.org/abs/1502.03167>
//!
//! Each feature (each channel, for images) is standardized with the statistics of the current
//! mini-batch, then rescaled by a learned gain γ and shift β (the paper's Algorithm 1):
//!
//! ```text
//! μ_B = 1/m Σ x_i          σ²_B = 1/m Σ (x_i − μ_B)²
//! x̂_i = (x_i − μ_B) / √(σ²_B + ε)
//! y_i = γ x̂_i + β
//! ```
//!
//! At inference the batch statistics are replaced by running averages collected during training
//! (`running ← (1 − momentum)·running + momentum·batch`, PyTorch's convention, with the unbiased
//! variance `m/(m−1)·σ²_B`), so a prediction does not depend on what else is in the batch.

use std::sync::Mutex;

use candle_core::{DType, ModuleT, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};

/// Batch normalization over the feature axis 1 of `[N, C]` or `[N, C, ...]` inputs (statistics over
/// every other axis), with learned γ (`{path}.weight`, init 1) and β (`{path}.bias`, init 0), and
/// running statistics `{path}.running_mean` / `{path}.running_var` kept in the same `VarMap` so that
/// checkpoints carry them (optimizers skip them: they never receive a gradient).
///
/// `forward_t(x, true)` normalizes with the batch's statistics and updates the running ones;
/// `forward_t(x, false)` uses the running ones.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::optimization::BatchNorm;
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let bn = BatchNorm::new(3, vb.pp("bn"))?;
/// let x = Tensor::new(&[[1f32, 10., -4.], [3., 30., -2.]], &dev)?;
/// let y = bn.forward_t(&x, true)?;
/// // Each column now has mean 0 and (biased) variance ≈ 1: here exactly ±1.
/// assert!(y.to_vec2::<f32>()?.iter().flatten().all(|v| (v.abs() - 1.0).abs() < 1e-4));
/// // The running mean moved 10% of the way to the batch mean [2, 20, -3].
/// assert_eq!(bn.running_mean()?.to_vec1::<f32>()?, vec![0.2, 2.0, -0.3]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    momentum: f64,
    eps: f64,
    // Serializes the read-modify-write of the running statistics when one model is shared by threads.
    update: Mutex<()>,
}

impl BatchNorm {
    /// Batch norm over `num_features` features with PyTorch's defaults (ε = 1e-5, momentum 0.1).
    pub fn new(num_features: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_options(num_features, 1e-5, 0.1, vb)
    }

    /// Batch norm with the given ε (added to the variance) and momentum of the running statistics.
    pub fn with_options(num_features: usize, eps: f64, momentum: f64, vb: VarBuilder) -> Result<Self> {
        if !(0.0..=1.0).contains(&momentum) || eps.is_nan() || eps < 0.0 {
            candle_core::bail!("BatchNorm: momentum must be in [0, 1] and eps >= 0; got momentum {momentum}, eps {eps}")
        }
        let weight = vb.get_with_hints(num_features, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(num_features, "bias", Init::Const(0.0))?;
        // A VarBuilder hands out Tensors; wrap the running statistics' storage in Vars so `set` updates
        // the very tensors the VarMap saves.
        let running_mean = Var::from_tensor(&vb.get_with_hints(num_features, "running_mean", Init::Const(0.0))?)?;
        let running_var = Var::from_tensor(&vb.get_with_hints(num_features, "running_var", Init::Const(1.0))?)?;
        Ok(BatchNorm { weight, bias, running_mean, running_var, momentum, eps, update: Mutex::new(()) })
    }

    /// The running mean used in evaluation mode.
    pub fn running_mean(&self) -> Result<Tensor> {
        self.running_mean.as_tensor().copy()
    }

    /// The running (unbiased) variance used in evaluation mode.
    pub fn running_var(&self) -> Result<Tensor> {
        self.running_var.as_tensor().copy()
    }

    /// The learned gain γ and shift β.
    pub fn affine(&self) -> (&Tensor, &Tensor) {
        (&self.weight, &self.bias)
    }

    fn num_features(&self) -> usize {
        self.weight.dims()[0]
    }

    /// `[C]` → `[1, C, 1, ...]`, so it broadcasts against an input of rank `rank`.
    fn per_feature(t: &Tensor, rank: usize) -> Result<Tensor> {
        let mut shape = vec![1; rank];
        shape[1] = t.dims()[0];
        t.reshape(shape)
    }
}

impl ModuleT for BatchNorm {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let c = self.num_features();
        if x.rank() < 2 || x.dims()[1] != c {
            candle_core::bail!("BatchNorm over {c} features expects input [N, {c}, ...]; got {:?}", x.dims())
        }
        let rank = x.rank();
        // Move the feature axis last and flatten the rest: statistics are over every other axis.
        let flat = if rank == 2 { x.clone() } else { x.transpose(1, rank - 1)?.flatten_to(rank - 2)? };
        let (mean, var) = if train {
            let m = flat.dims()[0];
            if m < 2 {
                candle_core::bail!(
                    "BatchNorm in training mode needs more than one value per feature to estimate a variance; \
                     got input {:?}. Use a batch of at least 2, or evaluation mode",
                    x.dims()
                )
            }
            let mean = flat.mean(0)?;
            let var = flat.broadcast_sub(&mean)?.sqr()?.mean(0)?; // biased, as the paper normalizes with
            {
                let _guard = self.update.lock().unwrap_or_else(|p| p.into_inner());
                let unbiased = (var.detach() * (m as f64 / (m as f64 - 1.0)))?;
                let mo = self.momentum;
                let rm = ((self.running_mean.as_tensor() * (1.0 - mo))? + (mean.detach() * mo)?)?;
                let rv = ((self.running_var.as_tensor() * (1.0 - mo))? + (unbiased * mo)?)?;
                self.running_mean.set(&rm.to_dtype(self.running_mean.dtype())?)?;
                self.running_var.set(&rv.to_dtype(self.running_var.dtype())?)?;
            }
            (mean, var)
        } else {
            (self.running_mean.as_tensor().clone(), self.running_var.as_tensor().clone())
        };
        let dtype = x.dtype();
        let scale = (self.weight.to_dtype(DType::F64)? / (var.to_dtype(DType::F64)? + self.eps)?.sqrt()?)?;
        let shift = (self.bias.to_dtype(DType::F64)? - (mean.to_dtype(DType::F64)? * &scale)?)?;
        // y = γ (x − μ)/σ + β  =  x·(γ/σ) + (β − μ γ/σ): one multiply and one add over the big tensor.
        let scale = Self::per_feature(&scale.to_dtype(dtype)?, rank)?;
        let shift = Self::per_feature(&shift.to_dtype(dtype)?, rank)?;
        x.broadcast_mul(&scale)?.broadcast_add(&shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Result;

    fn rand(shape: &[usize], seed: u64) -> Result<Tensor> {
        crate::rng::Rng::new(seed).normal_tensor(shape, 0.5, 2.0, &crate::device::test_device())
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn matches_candle_nn_in_train_and_eval_for_2d_and_4d() -> Result<()> {
        for shape in [vec![7, 3], vec![4, 5, 3, 2], vec![2, 1, 1, 1]] {
            let c = shape[1];
            let (_m, vb) = crate::init::seeded(0, DType::F32, &crate::device::test_device());
            let ours = BatchNorm::new(c, vb.pp("ours"))?;
            let cfg = candle_nn::BatchNormConfig { eps: 1e-5, remove_mean: true, affine: true, momentum: 0.1 };
            let vm = candle_nn::VarMap::new();
            let theirs = candle_nn::batch_norm(
                c,
                cfg,
                VarBuilder::from_varmap(&vm, DType::F32, &crate::device::test_device()).pp("bn"),
            )?;
            for step in 0..3 {
                let x = rand(&shape, step)?;
                let a = ours.forward_t(&x, true)?;
                let b = theirs.forward_t(&x, true)?;
                assert!(max_diff(&a, &b) < 1e-5, "train {shape:?}: {}", max_diff(&a, &b));
            }
            assert!(max_diff(&ours.running_mean()?, theirs.running_mean()) < 1e-6);
            assert!(max_diff(&ours.running_var()?, theirs.running_var()) < 1e-5);
            let x = rand(&shape, 9)?;
            let (a, b) = (ours.forward_t(&x, false)?, theirs.forward_t(&x, false)?);
            assert!(max_diff(&a, &b) < 1e-5, "eval {shape:?}: {}", max_diff(&a, &b));
        }
        Ok(())
    }

    #[test]
    fn gradients_match_the_formula_composed_by_hand() -> Result<()> {
        // The same function written the paper's way (no folding into scale/shift), differentiated by candle.
        let dev = crate::device::test_device();
        let x = Var::from_tensor(&rand(&[6, 4], 3)?)?;
        let (vars, vb) = crate::init::seeded(1, DType::F32, &dev);
        let bn = BatchNorm::new(4, vb)?;
        let w = Tensor::new(&[0.3f32, -1.0, 2.0, 0.5], &dev)?;
        let loss_of = |y: &Tensor| y.sqr()?.broadcast_mul(&w)?.sum_all();
        let g_ours = loss_of(&bn.forward_t(x.as_tensor(), true)?)?.backward()?;
        let mean = x.as_tensor().mean_keepdim(0)?;
        let centered = x.as_tensor().broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(0)?;
        let manual = centered.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
        let g_manual = loss_of(&manual)?.backward()?;
        assert!(max_diff(g_ours.get(&x).unwrap(), g_manual.get(&x).unwrap()) < 1e-5);
        // γ receives a gradient; the running statistics do not.
        let data = vars.data().lock().unwrap();
        assert!(g_ours.get(data.get("weight").unwrap()).is_some());
        assert!(g_ours.get(data.get("running_mean").unwrap()).is_none());
        Ok(())
    }

    #[test]
    fn bad_shapes_and_single_example_batches_are_named() -> Result<()> {
        let (_m, vb) = crate::init::seeded(0, DType::F32, &crate::device::test_device());
        let bn = BatchNorm::new(3, vb)?;
        let err = bn.forward_t(&Tensor::zeros((2, 4), DType::F32, &crate::device::test_device())?, true).unwrap_err();
        assert!(err.to_string().contains("[2, 4]"), "{err}");
        let err = bn.forward_t(&Tensor::zeros((1, 3), DType::F32, &crate::device::test_device())?, true).unwrap_err();
        assert!(err.to_string().contains("at least 2"), "{err}");
        // Evaluation mode is fine with one example.
        assert_eq!(
            bn.forward_t(&Tensor::zeros((1, 3), DType::F32, &crate::device::test_device())?, false)?.dims(),
            &[1, 3]
        );
        Ok(())
    }
}
