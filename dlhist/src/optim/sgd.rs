//! Stochastic gradient descent with momentum, Nesterov momentum, L2 weight decay and dampening.
//!
//! Momentum is Polyak's *heavy ball*: B. T. Polyak, "Some methods of speeding up the convergence of
//! iteration methods", USSR Computational Mathematics and Mathematical Physics 4(5), 1964,
//! <https://doi.org/10.1016/0041-5553(64)90137-5>. Its use for deep networks, and the Nesterov variant
//! written as a momentum method, come from I. Sutskever, J. Martens, G. Dahl and G. Hinton, "On the
//! importance of initialization and momentum in deep learning", ICML 2013,
//! <https://proceedings.mlr.press/v28/sutskever13.html>.
//!
//! The update follows PyTorch's `torch.optim.SGD`, so numbers can be compared one to one. With
//! gradient `g`, parameters `θ`, learning rate `lr`, momentum `μ`, dampening `τ` and weight decay `λ`:
//!
//! ```text
//! g ← g + λ·θ                       (L2 weight decay folded into the gradient)
//! v ← g                             (first step: the buffer starts as the gradient)
//! v ← μ·v + (1 − τ)·g               (later steps)
//! θ ← θ − lr·v                      (classical momentum)
//! θ ← θ − lr·(g + μ·v)              (Nesterov momentum)
//! ```
//!
//! With `μ = 0` this is plain SGD, `θ ← θ − lr·g`.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use candle_nn::Optimizer;

use super::{ensure, float_vars};

/// Hyper-parameters of [`Sgd`]. Build with [`SgdConfig::new`] and the chainable setters.
///
/// ```
/// use dlhist::optim::SgdConfig;
/// let cfg = SgdConfig::new(0.1).momentum(0.9).nesterov(true).weight_decay(5e-4);
/// assert_eq!(cfg.momentum, 0.9);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate `lr`.
    pub lr: f64,
    /// Momentum factor `μ` (0 disables momentum).
    pub momentum: f64,
    /// Dampening `τ`: the share of the new gradient *removed* when adding it to the momentum buffer.
    pub dampening: f64,
    /// L2 weight decay `λ`, added to the gradient as `λ·θ`.
    pub weight_decay: f64,
    /// Use Nesterov momentum (needs `momentum > 0` and `dampening == 0`).
    pub nesterov: bool,
}

impl SgdConfig {
    /// Plain SGD with learning rate `lr`: no momentum, no dampening, no weight decay.
    pub fn new(lr: f64) -> Self {
        SgdConfig { lr, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }

    /// Sets the momentum factor `μ`.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets the dampening `τ`.
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }

    /// Sets the L2 weight decay `λ`.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Switches Nesterov momentum on or off.
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    fn validate(&self) -> Result<()> {
        ensure(self.lr.is_finite() && self.lr >= 0.0, || format!("SGD: lr = {} must be finite and >= 0", self.lr))?;
        ensure(self.momentum.is_finite() && self.momentum >= 0.0, || {
            format!("SGD: momentum = {} must be finite and >= 0 (0.9 is usual)", self.momentum)
        })?;
        ensure((0.0..=1.0).contains(&self.dampening), || {
            format!("SGD: dampening = {} must be in [0, 1]", self.dampening)
        })?;
        ensure(self.weight_decay.is_finite() && self.weight_decay >= 0.0, || {
            format!("SGD: weight_decay = {} must be finite and >= 0", self.weight_decay)
        })?;
        ensure(!self.nesterov || (self.momentum > 0.0 && self.dampening == 0.0), || {
            format!(
                "SGD: Nesterov momentum needs momentum > 0 and dampening = 0 (got momentum {}, dampening {}); \
                 set a momentum or turn nesterov off",
                self.momentum, self.dampening
            )
        })
    }
}

/// Stochastic gradient descent with optional (Nesterov) momentum, L2 weight decay and dampening.
///
/// Implements [`candle_nn::Optimizer`], so `backward_step` comes for free. Parameters are updated in
/// place with [`Var::set`]; the momentum buffers live on each parameter's own device and dtype.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use candle_nn::Optimizer;
/// use dlhist::optim::{Sgd, SgdConfig};
///
/// // Minimise (w - 3)^2 with heavy-ball momentum.
/// let w = Var::new(&[0f32], &Device::Cpu)?;
/// let mut opt = Sgd::new(vec![w.clone()], SgdConfig::new(0.05).momentum(0.9))?;
/// for _ in 0..200 {
///     let loss = w.as_tensor().affine(1.0, -3.0)?.sqr()?.sum_all()?;
///     opt.backward_step(&loss)?;
/// }
/// assert!((w.to_vec1::<f32>()?[0] - 3.0).abs() < 1e-3);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<Var>,
    /// One momentum buffer per var; `None` until the var's first gradient arrives (PyTorch starts the
    /// buffer at the first gradient rather than at zero, so step 1 is not damped).
    buffers: Vec<Option<Tensor>>,
    config: SgdConfig,
}

impl Sgd {
    /// The hyper-parameters in use.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    /// The parameters this optimizer updates (non-float vars are dropped at construction).
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }
}

impl Optimizer for Sgd {
    type Config = SgdConfig;

    /// Builds the optimizer; errors if a hyper-parameter is out of range.
    fn new(vars: Vec<Var>, config: SgdConfig) -> Result<Self> {
        config.validate()?;
        let vars = float_vars(vars);
        let buffers = vec![None; vars.len()];
        Ok(Sgd { vars, buffers, config })
    }

    /// One update of every var that has a gradient in `grads`; vars without one are left alone.
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.config;
        for (var, buffer) in self.vars.iter().zip(self.buffers.iter_mut()) {
            let Some(grad) = grads.get(var) else { continue };
            // Detached so that the arithmetic below records no autograd graph.
            let theta = var.as_tensor().detach();
            let mut g = grad.detach();
            if c.weight_decay != 0.0 {
                // L2 penalty λ/2·‖θ‖² has gradient λ·θ.
                g = (g + theta.affine(c.weight_decay, 0.0)?)?;
            }
            let direction = if c.momentum != 0.0 {
                let v = match buffer.take() {
                    None => g.clone(),
                    Some(v) => (v.affine(c.momentum, 0.0)? + g.affine(1.0 - c.dampening, 0.0)?)?,
                };
                let d = if c.nesterov { (&g + v.affine(c.momentum, 0.0)?)? } else { v.clone() };
                *buffer = Some(v);
                d
            } else {
                g
            };
            var.set(&(theta - direction.affine(c.lr, 0.0)?)?)?;
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::test_util::{assert_close, fixed_grads, run_two_steps};

    /// Runs two SGD steps from θ = [1, −2] with the fixed gradient g = [0.5, −1].
    fn two_steps(cfg: SgdConfig) -> Result<(Vec<f32>, Vec<f32>)> {
        run_two_steps::<Sgd>(cfg, &[0.5, -1.0], &[0.5, -1.0])
    }

    #[test]
    fn plain_sgd_two_steps() -> Result<()> {
        // θ1 = [1, −2] − 0.1·[0.5, −1] = [0.95, −1.9]; θ2 = [0.95, −1.9] − 0.1·[0.5, −1] = [0.9, −1.8].
        let (s1, s2) = two_steps(SgdConfig::new(0.1))?;
        assert_close(&s1, &[0.95, -1.9], 1e-6);
        assert_close(&s2, &[0.9, -1.8], 1e-6);
        Ok(())
    }

    #[test]
    fn momentum_two_steps() -> Result<()> {
        // Step 1: v = g = [0.5, −1]; θ1 = [1, −2] − 0.1·v = [0.95, −1.9].
        // Step 2: v = 0.9·[0.5, −1] + [0.5, −1] = [0.95, −1.9]; θ2 = [0.95 − 0.095, −1.9 + 0.19] = [0.855, −1.71].
        let (s1, s2) = two_steps(SgdConfig::new(0.1).momentum(0.9))?;
        assert_close(&s1, &[0.95, -1.9], 1e-6);
        assert_close(&s2, &[0.855, -1.71], 1e-6);
        Ok(())
    }

    #[test]
    fn nesterov_two_steps_and_differs_from_momentum() -> Result<()> {
        // Step 1: v = g; d = g + 0.9·v = 1.9·g = [0.95, −1.9]; θ1 = [1 − 0.095, −2 + 0.19] = [0.905, −1.81].
        // Step 2: v = 0.9·g + g = 1.9·g; d = g + 0.9·1.9·g = 2.71·g = [1.355, −2.71];
        //         θ2 = [0.905 − 0.1355, −1.81 + 0.271] = [0.7695, −1.539].
        let (s1, s2) = two_steps(SgdConfig::new(0.1).momentum(0.9).nesterov(true))?;
        assert_close(&s1, &[0.905, -1.81], 1e-6);
        assert_close(&s2, &[0.7695, -1.539], 1e-6);
        let (_, plain) = two_steps(SgdConfig::new(0.1).momentum(0.9))?;
        assert!((plain[0] - s2[0]).abs() > 0.05, "Nesterov {s2:?} vs momentum {plain:?}");
        Ok(())
    }

    #[test]
    fn weight_decay_two_steps() -> Result<()> {
        // Step 1: d = g + 0.1·θ = [0.5 + 0.1, −1 − 0.2] = [0.6, −1.2]; θ1 = [1 − 0.06, −2 + 0.12] = [0.94, −1.88].
        // Step 2: d = [0.5 + 0.094, −1 − 0.188] = [0.594, −1.188]; θ2 = [0.94 − 0.0594, −1.88 + 0.1188]
        //         = [0.8806, −1.7612].
        let (s1, s2) = two_steps(SgdConfig::new(0.1).weight_decay(0.1))?;
        assert_close(&s1, &[0.94, -1.88], 1e-6);
        assert_close(&s2, &[0.8806, -1.7612], 1e-6);
        Ok(())
    }

    #[test]
    fn momentum_with_weight_decay_two_steps() -> Result<()> {
        // Step 1: d = [0.6, −1.2] (as above); v = d; θ1 = [0.94, −1.88].
        // Step 2: d = [0.594, −1.188]; v = 0.9·[0.6, −1.2] + d = [0.54 + 0.594, −1.08 − 1.188] = [1.134, −2.268];
        //         θ2 = [0.94 − 0.1134, −1.88 + 0.2268] = [0.8266, −1.6532].
        let (s1, s2) = two_steps(SgdConfig::new(0.1).momentum(0.9).weight_decay(0.1))?;
        assert_close(&s1, &[0.94, -1.88], 1e-6);
        assert_close(&s2, &[0.8266, -1.6532], 1e-6);
        Ok(())
    }

    #[test]
    fn dampening_two_steps() -> Result<()> {
        // Step 1: the buffer starts at g undamped; θ1 = [0.95, −1.9].
        // Step 2: v = 0.9·g + (1 − 0.5)·g = 1.4·g = [0.7, −1.4]; θ2 = [0.95 − 0.07, −1.9 + 0.14] = [0.88, −1.76].
        let (s1, s2) = two_steps(SgdConfig::new(0.1).momentum(0.9).dampening(0.5))?;
        assert_close(&s1, &[0.95, -1.9], 1e-6);
        assert_close(&s2, &[0.88, -1.76], 1e-6);
        Ok(())
    }

    #[test]
    fn f64_parameters_work_too() -> Result<()> {
        // Same as momentum_two_steps, in f64.
        let w = Var::new(&[1f64, -2.0], &crate::device::test_device())?;
        let mut opt = Sgd::new(vec![w.clone()], SgdConfig::new(0.1).momentum(0.9))?;
        for _ in 0..2 {
            opt.step(&fixed_grads(&w, &[0.5, -1.0])?)?;
        }
        let got = w.to_vec1::<f64>()?;
        assert!((got[0] - 0.855).abs() < 1e-12 && (got[1] + 1.71).abs() < 1e-12, "{got:?}");
        Ok(())
    }

    #[test]
    fn vars_without_gradient_are_untouched_and_lr_is_settable() -> Result<()> {
        let dev = crate::device::test_device();
        let a = Var::new(&[1f32, 2.0], &dev)?;
        let b = Var::new(&[3f32], &dev)?;
        let mut opt = Sgd::new(vec![a.clone(), b.clone()], SgdConfig::new(0.1))?;
        opt.set_learning_rate(0.5);
        assert_eq!(opt.learning_rate(), 0.5);
        opt.step(&fixed_grads(&a, &[1.0, 1.0])?)?;
        assert_close(&a.to_vec1::<f32>()?, &[0.5, 1.5], 1e-6);
        assert_eq!(b.to_vec1::<f32>()?, vec![3.0]);
        Ok(())
    }

    #[test]
    fn bad_configs_error() {
        assert!(Sgd::new(vec![], SgdConfig::new(-1.0)).is_err());
        assert!(Sgd::new(vec![], SgdConfig::new(0.1).nesterov(true)).is_err());
        assert!(Sgd::new(vec![], SgdConfig::new(0.1).momentum(0.9).dampening(0.1).nesterov(true)).is_err());
        assert!(Sgd::new(vec![], SgdConfig::new(0.1).dampening(1.5)).is_err());
        assert!(Sgd::new(vec![], SgdConfig::new(0.1).momentum(0.9).nesterov(true)).is_ok());
    }
}
