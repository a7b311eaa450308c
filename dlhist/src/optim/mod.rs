//! The optimizer toolbox: SGD (with momentum), RMSProp, learning-rate schedules, gradient clipping and the max-norm
//! constraint.
//!
//! These are the tools every later notebook reaches for; none of them is a milestone of its own (Adam is:
//! it lives with section 02 in [`crate::optimization::Adam`]). The optimizers implement
//! [`candle_nn::Optimizer`], so they drop into any code written for candle's own `SGD` / `AdamW` (`new(vars,
//! config)`, `step(&grads)`, `backward_step(&loss)`, `learning_rate`, `set_learning_rate`). Their updates follow
//! PyTorch's definitions, so numbers can be checked against `torch.optim`; each file documents its equations
//! and cites its paper.
//!
//! | item | idea | paper |
//! | --- | --- | --- |
//! | [`Sgd`] / [`SgdConfig`] | SGD, heavy-ball and Nesterov momentum, L2 decay, dampening | Polyak 1964; Sutskever et al. 2013 |
//! | [`RmsProp`] / [`RmsPropConfig`] | divide by a running RMS of the gradient; centered variant | Tieleman & Hinton 2012; Graves 2013 |
//! | [`LrSchedule`], [`ConstantLr`], [`StepDecay`], [`CosineAnnealing`], [`LinearWarmup`], [`apply_schedule`] | learning-rate schedules (step counts from 0) | Loshchilov & Hutter 2016 (SGDR); Goyal et al. 2017 (warm-up) |
//! | [`clip_grad_norm`], [`clip_grad_value`], [`grad_norm`] | gradient clipping by global norm or by value | Pascanu et al. 2013 |
//! | [`max_norm`] | project each unit's incoming weights into a ball after every step | Srivastava et al. 2014 |
//!
//! Every update is done in place on the [`candle_core::Var`]s with `Var::set`, with arithmetic on
//! each parameter's own device and dtype (f32 and f64 are tested). [`crate::train::FitConfig`] takes a
//! schedule directly; outside `fit`, [`apply_schedule`] sets the rate before each step.
//!
//! A training step with warm-up, cosine decay and clipping:
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use candle_nn::Optimizer;
//! use dlhist::optim::{apply_schedule, clip_grad_norm, CosineAnnealing, LrSchedule, Sgd, SgdConfig};
//!
//! let dev = Device::Cpu;
//! let w = Var::new(&[0f32, 0.0], &dev)?;
//! let target = Tensor::new(&[1f32, -1.0], &dev)?;
//! let mut opt = Sgd::new(vec![w.clone()], SgdConfig::new(0.1).momentum(0.9))?;
//! let schedule = CosineAnnealing::new(0.1, 0.0, 200)?.with_warmup(20);
//! for step in 0..220 {
//!     apply_schedule(&mut opt, &schedule, step);
//!     let loss = (w.as_tensor() - &target)?.sqr()?.sum_all()?;
//!     let mut grads = loss.backward()?;
//!     clip_grad_norm(&mut grads, &[w.clone()], 1.0)?;
//!     opt.step(&grads)?;
//! }
//! let got = w.to_vec1::<f32>()?;
//! assert!((got[0] - 1.0).abs() < 1e-2 && (got[1] + 1.0).abs() < 1e-2, "{got:?}");
//! # Ok::<(), dlhist::Error>(())
//! ```

mod clip;
mod max_norm;
mod rmsprop;
mod schedule;
mod sgd;

pub use clip::{clip_grad_norm, clip_grad_value, grad_norm};
pub use max_norm::max_norm;
pub use rmsprop::{RmsProp, RmsPropConfig};
pub use schedule::{
    apply_schedule, ConstantLr, CosineAnnealing, InverseSqrtWarmup, LinearWarmup, LrSchedule, StepDecay,
};
pub use sgd::{Sgd, SgdConfig};

use candle_core::Var;

/// `Ok(())` if `ok`, else a candle error with `msg()`. The [`candle_nn::Optimizer`] trait fixes the
/// error type of `new` to candle's, so configuration errors travel as `candle_core::Error::Msg`
/// (and convert into [`crate::Error::Candle`] under `?`).
pub(crate) fn ensure(ok: bool, msg: impl FnOnce() -> String) -> candle_core::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(candle_core::Error::Msg(msg()))
    }
}

/// Keeps the float vars: integer tensors cannot take a gradient step (candle's optimizers do the same).
pub(crate) fn float_vars(vars: Vec<Var>) -> Vec<Var> {
    vars.into_iter().filter(|v| v.dtype().is_float()).collect()
}

#[cfg(test)]
pub(crate) mod test_util {
    use candle_core::backprop::GradStore;
    use candle_core::{Device, Result, Tensor, Var};
    use candle_nn::Optimizer;

    /// A gradient store holding `values` (cast to the var's dtype) as the gradient of `var`.
    pub fn fixed_grads(var: &Var, values: &[f64]) -> Result<GradStore> {
        let mut grads = GradStore::default();
        let g = Tensor::new(values, var.device())?.to_dtype(var.dtype())?;
        grads.insert(var.as_tensor(), g);
        Ok(grads)
    }

    /// Two steps of `O` on the f32 parameter θ = [1, −2] with gradients `g1` then `g2`; returns θ after
    /// each step.
    pub fn run_two_steps<O: Optimizer>(config: O::Config, g1: &[f64], g2: &[f64]) -> Result<(Vec<f32>, Vec<f32>)> {
        let theta = Var::new(&[1f32, -2.0], &Device::Cpu)?;
        let mut opt = O::new(vec![theta.clone()], config)?;
        opt.step(&fixed_grads(&theta, g1)?)?;
        let after1 = theta.to_vec1::<f32>()?;
        opt.step(&fixed_grads(&theta, g2)?)?;
        Ok((after1, theta.to_vec1::<f32>()?))
    }

    /// Panics with both vectors if any element differs by more than `tol`.
    pub fn assert_close(got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "length: got {got:?}, want {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() <= tol, "got {got:?}, want {want:?} (tolerance {tol})");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optimization::{Adam, AdamConfig, AdamW, AdamWConfig, WeightDecay};
    use candle_core::Tensor;
    use candle_nn::Optimizer;

    /// Minimises the ill-conditioned quadratic f(θ) = ½·(1·(θ0 − 3)² + 10·(θ1 + 1)²) from θ = 0 for
    /// `steps` steps, the learning rate cosine-annealed from `lr` to 0; returns (initial loss, final
    /// loss, final θ).
    fn minimise<O: Optimizer>(config: O::Config, lr: f64, steps: usize) -> crate::Result<(f32, f32, Vec<f32>)> {
        let dev = crate::device::test_device();
        let theta = Var::new(&[0f32, 0.0], &dev)?;
        let curvature = Tensor::new(&[1f32, 10.0], &dev)?;
        let centre = Tensor::new(&[3f32, -1.0], &dev)?;
        let loss_of = |t: &Tensor| -> candle_core::Result<Tensor> {
            ((t - &centre)?.sqr()? * &curvature)?.sum_all()?.affine(0.5, 0.0)
        };
        let mut opt = O::new(vec![theta.clone()], config)?;
        let schedule = CosineAnnealing::new(lr, 0.0, steps)?;
        let initial = loss_of(theta.as_tensor())?.to_scalar::<f32>()?;
        for step in 0..steps {
            apply_schedule(&mut opt, &schedule, step);
            opt.backward_step(&loss_of(theta.as_tensor())?)?;
        }
        let last = loss_of(theta.as_tensor())?.to_scalar::<f32>()?;
        Ok((initial, last, theta.to_vec1::<f32>()?))
    }

    fn assert_converged((initial, last, theta): (f32, f32, Vec<f32>), name: &str) {
        // Initial loss ½·(9 + 10) = 9.5; the optimum is θ = [3, −1] with loss 0.
        assert_eq!(initial, 9.5);
        assert!(last < 1e-4, "{name}: final loss {last}, θ = {theta:?}");
        assert!((theta[0] - 3.0).abs() < 1e-2 && (theta[1] + 1.0).abs() < 1e-2, "{name}: θ = {theta:?}");
    }

    #[test]
    fn every_optimizer_minimises_a_quadratic() -> crate::Result<()> {
        // lr·curvature must stay below 2 for (momentum-free) SGD to be stable: 0.1·10 = 1.
        assert_converged(minimise::<Sgd>(SgdConfig::new(0.1), 0.1, 300)?, "SGD");
        assert_converged(minimise::<Sgd>(SgdConfig::new(0.02).momentum(0.9), 0.02, 300)?, "momentum");
        assert_converged(minimise::<Sgd>(SgdConfig::new(0.02).momentum(0.9).nesterov(true), 0.02, 300)?, "Nesterov");
        assert_converged(minimise::<Sgd>(SgdConfig::new(0.02).momentum(0.9).dampening(0.5), 0.02, 300)?, "dampened");
        assert_converged(minimise::<Adam>(AdamConfig::new(0.1), 0.1, 500)?, "Adam");
        assert_converged(minimise::<Adam>(AdamConfig::new(0.1).amsgrad(true), 0.1, 500)?, "AMSGrad");
        // Small decay so the regularised optimum stays within the tolerance of [3, −1].
        assert_converged(
            minimise::<Adam>(AdamConfig::new(0.1).weight_decay(WeightDecay::L2(1e-4)), 0.1, 500)?,
            "Adam + L2",
        );
        assert_converged(minimise::<AdamW>(AdamWConfig::new(0.1, 1e-4), 0.1, 500)?, "AdamW");
        assert_converged(minimise::<RmsProp>(RmsPropConfig::new(0.05), 0.05, 500)?, "RMSProp");
        assert_converged(minimise::<RmsProp>(RmsPropConfig::new(0.01).momentum(0.9), 0.01, 500)?, "RMSProp momentum");
        assert_converged(minimise::<RmsProp>(RmsPropConfig::new(0.05).centered(true), 0.05, 500)?, "RMSProp centered");
        Ok(())
    }
}
