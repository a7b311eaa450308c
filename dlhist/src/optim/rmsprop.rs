//! RMSProp: divide the gradient by a running average of its recent magnitude.
//!
//! T. Tieleman and G. Hinton, "Lecture 6.5 - rmsprop: Divide the gradient by a running average of its
//! recent magnitude", COURSERA: Neural Networks for Machine Learning, 2012 (lecture 6e,
//! <https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf>). The centered variant,
//! which divides by an estimate of the gradient's *variance* instead of its raw second moment, is from
//! A. Graves, "Generating Sequences With Recurrent Neural Networks", 2013,
//! <https://arxiv.org/abs/1308.0850> (eqs. 38–41).
//!
//! The update follows PyTorch's `torch.optim.RMSprop`. With smoothing `α`, gradient `g`:
//!
//! ```text
//! g ← g + λ·θ                              (optional L2 weight decay)
//! s ← α·s + (1 − α)·g²                     (running mean of g², starts at 0)
//! ḡ ← α·ḡ + (1 − α)·g                      (centered only: running mean of g, starts at 0)
//! d = √s + ε        or   d = √(s − ḡ²) + ε  (centered)
//! b ← μ·b + g/d,  θ ← θ − lr·b             (with momentum μ > 0; b starts at 0)
//! θ ← θ − lr·g/d                           (without momentum)
//! ```
//!
//! Unlike Adam there is no bias correction: `s` starts at 0, so the first steps are larger than
//! `lr` (step 1 moves by `lr/√(1 − α)` = 10·lr for `α = 0.99`).

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use candle_nn::Optimizer;

use super::{ensure, float_vars};

/// Hyper-parameters of [`RmsProp`]. Defaults are PyTorch's: `lr = 1e-2`, `α = 0.99`, `ε = 1e-8`, no
/// weight decay, no momentum, not centered.
///
/// ```
/// use dlhist::optim::RmsPropConfig;
/// let cfg = RmsPropConfig::new(1e-3).momentum(0.9).centered(true);
/// assert_eq!(cfg.alpha, 0.99);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsPropConfig {
    /// Learning rate `lr`.
    pub lr: f64,
    /// Smoothing constant `α` of the running averages (Hinton's lecture uses 0.9).
    pub alpha: f64,
    /// `ε`, added to the denominator for safety.
    pub eps: f64,
    /// L2 weight decay `λ`, added to the gradient as `λ·θ`.
    pub weight_decay: f64,
    /// Momentum `μ` applied to the normalised gradient (0 disables it).
    pub momentum: f64,
    /// Normalise by the estimated variance `s − ḡ²` instead of `s`.
    pub centered: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig { lr: 1e-2, alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false }
    }
}

impl RmsPropConfig {
    /// The defaults with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        RmsPropConfig { lr, ..Default::default() }
    }

    /// Sets the smoothing constant `α`.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets `ε`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the L2 weight decay `λ`.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Sets the momentum `μ`.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Switches the centered variant on or off.
    pub fn centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }

    fn validate(&self) -> Result<()> {
        ensure(self.lr.is_finite() && self.lr >= 0.0, || format!("RMSProp: lr = {} must be finite and >= 0", self.lr))?;
        ensure((0.0..1.0).contains(&self.alpha), || format!("RMSProp: alpha = {} must be in [0, 1)", self.alpha))?;
        ensure(self.eps.is_finite() && self.eps >= 0.0, || {
            format!("RMSProp: eps = {} must be finite and >= 0", self.eps)
        })?;
        ensure(self.weight_decay.is_finite() && self.weight_decay >= 0.0, || {
            format!("RMSProp: weight_decay = {} must be finite and >= 0", self.weight_decay)
        })?;
        ensure(self.momentum.is_finite() && self.momentum >= 0.0, || {
            format!("RMSProp: momentum = {} must be finite and >= 0", self.momentum)
        })
    }
}

/// Per-parameter running averages.
#[derive(Debug)]
struct RmsState {
    square_avg: Tensor,
    grad_avg: Option<Tensor>,
    momentum_buf: Option<Tensor>,
}

/// RMSProp with optional L2 weight decay, momentum and centering (PyTorch semantics).
///
/// Implements [`candle_nn::Optimizer`]; parameters are updated in place with [`Var::set`].
///
/// ```
/// use candle_core::{Device, Var};
/// use candle_nn::Optimizer;
/// use dlhist::optim::{RmsProp, RmsPropConfig};
///
/// let w = Var::new(&[5f32], &Device::Cpu)?;
/// let mut opt = RmsProp::new(vec![w.clone()], RmsPropConfig::new(0.01))?;
/// for _ in 0..1000 {
///     opt.backward_step(&w.as_tensor().sqr()?.sum_all()?)?;
/// }
/// assert!(w.to_vec1::<f32>()?[0].abs() < 0.05);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug)]
pub struct RmsProp {
    vars: Vec<Var>,
    states: Vec<Option<RmsState>>,
    config: RmsPropConfig,
}

impl RmsProp {
    /// The hyper-parameters in use.
    pub fn config(&self) -> &RmsPropConfig {
        &self.config
    }

    /// The parameters this optimizer updates (non-float vars are dropped at construction).
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }
}

impl Optimizer for RmsProp {
    type Config = RmsPropConfig;

    /// Builds the optimizer; errors if a hyper-parameter is out of range.
    fn new(vars: Vec<Var>, config: RmsPropConfig) -> Result<Self> {
        config.validate()?;
        let vars = float_vars(vars);
        let states = (0..vars.len()).map(|_| None).collect();
        Ok(RmsProp { vars, states, config })
    }

    /// One update of every var that has a gradient in `grads`; vars without one are left alone.
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.config;
        for (var, state) in self.vars.iter().zip(self.states.iter_mut()) {
            let Some(grad) = grads.get(var) else { continue };
            let theta = var.as_tensor().detach();
            let mut g = grad.detach();
            if c.weight_decay != 0.0 {
                g = (g + theta.affine(c.weight_decay, 0.0)?)?;
            }
            let s = match state {
                Some(s) => s,
                None => state.insert(RmsState {
                    square_avg: theta.zeros_like()?,
                    grad_avg: if c.centered { Some(theta.zeros_like()?) } else { None },
                    momentum_buf: if c.momentum > 0.0 { Some(theta.zeros_like()?) } else { None },
                }),
            };
            s.square_avg = (s.square_avg.affine(c.alpha, 0.0)? + g.sqr()?.affine(1.0 - c.alpha, 0.0)?)?;
            let second_moment = match s.grad_avg.as_mut() {
                Some(grad_avg) => {
                    *grad_avg = (grad_avg.affine(c.alpha, 0.0)? + g.affine(1.0 - c.alpha, 0.0)?)?;
                    // Var[g] = E[g²] − E[g]²; rounding could push it a hair below 0, so clamp before √.
                    (&s.square_avg - grad_avg.sqr()?)?.relu()?
                }
                None => s.square_avg.clone(),
            };
            let denom = second_moment.sqrt()?.affine(1.0, c.eps)?;
            let normalised = (g / denom)?;
            let direction = match s.momentum_buf.as_mut() {
                Some(buf) => {
                    *buf = (buf.affine(c.momentum, 0.0)? + normalised)?;
                    buf.clone()
                }
                None => normalised,
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
    use crate::optim::test_util::{assert_close, run_two_steps};

    // Every test: θ = [1, −2], fixed g = [0.5, −1], lr = 0.01, α = 0.99, ε = 1e-8 (ε moves results < 1e-8).
    const G: [f64; 2] = [0.5, -1.0];

    #[test]
    fn rmsprop_two_steps() -> Result<()> {
        // Step 1: s = 0.01·g² → √s = 0.1·|g|; g/√s = 10·sign(g); θ1 = [1 − 0.1, −2 + 0.1] = [0.9, −1.9].
        // Step 2: s = 0.99·0.01·g² + 0.01·g² = 0.0199·g² → √s = 0.1410674·|g|; g/√s = 7.0888121·sign(g);
        //         θ2 = [0.9 − 0.0708881, −1.9 + 0.0708881] = [0.8291119, −1.8291119].
        let (s1, s2) = run_two_steps::<RmsProp>(RmsPropConfig::new(0.01), &G, &G)?;
        assert_close(&s1, &[0.9, -1.9], 1e-6);
        assert_close(&s2, &[0.829_111_9, -1.829_111_9], 1e-6);
        Ok(())
    }

    #[test]
    fn momentum_two_steps() -> Result<()> {
        // Step 1: b = 0 + 10·sign(g); θ1 = [0.9, −1.9].
        // Step 2: b = 0.9·10 + 7.0888121 = 16.0888121 (times sign(g)); θ2 = [0.9 − 0.1608881, −1.9 + 0.1608881]
        //         = [0.7391119, −1.7391119].
        let (s1, s2) = run_two_steps::<RmsProp>(RmsPropConfig::new(0.01).momentum(0.9), &G, &G)?;
        assert_close(&s1, &[0.9, -1.9], 1e-6);
        assert_close(&s2, &[0.739_111_9, -1.739_111_9], 1e-6);
        Ok(())
    }

    #[test]
    fn centered_two_steps() -> Result<()> {
        // Step 1: s = 0.01·g², ḡ = 0.01·g → s − ḡ² = (0.01 − 0.0001)·g² = 0.0099·g², √ = 0.0994987·|g|;
        //         g/d = 10.0503782·sign(g); θ1 = [1 − 0.1005038, −2 + 0.1005038] = [0.8994962, −1.8994962].
        // Step 2: s = 0.0199·g², ḡ = 0.99·0.01·g + 0.01·g = 0.0199·g → s − ḡ² = (0.0199 − 0.00039601)·g²
        //         = 0.01950399·g², √ = 0.1396567·|g|; g/d = 7.1604162·sign(g);
        //         θ2 = [0.8994962 − 0.0716042, −1.8994962 + 0.0716042] = [0.8278921, −1.8278921].
        let (s1, s2) = run_two_steps::<RmsProp>(RmsPropConfig::new(0.01).centered(true), &G, &G)?;
        assert_close(&s1, &[0.899_496_2, -1.899_496_2], 1e-6);
        assert_close(&s2, &[0.827_892_1, -1.827_892_1], 1e-6);
        Ok(())
    }

    #[test]
    fn weight_decay_two_steps() -> Result<()> {
        // Step 1: g' = g + 0.1·θ = [0.6, −1.2]; s = 0.01·g'², g'/√s = 10·sign; θ1 = [0.9, −1.9].
        // Step 2: g' = [0.5 + 0.09, −1 − 0.19] = [0.59, −1.19];
        //   s = 0.99·0.01·[0.36, 1.44] + 0.01·[0.3481, 1.4161] = [0.003564 + 0.003481, 0.014256 + 0.014161]
        //     = [0.007045, 0.028417];  √s = [0.0839345, 0.1685734]
        //   g'/√s = [7.0292908, −7.0592384];  θ2 = [0.9 − 0.0702929, −1.9 + 0.0705924] = [0.8297071, −1.8294076]
        let (s1, s2) = run_two_steps::<RmsProp>(RmsPropConfig::new(0.01).weight_decay(0.1), &G, &G)?;
        assert_close(&s1, &[0.9, -1.9], 1e-6);
        assert_close(&s2, &[0.829_707_1, -1.829_407_6], 1e-6);
        Ok(())
    }

    #[test]
    fn bad_configs_error() {
        assert!(RmsProp::new(vec![], RmsPropConfig::new(0.01).alpha(1.0)).is_err());
        assert!(RmsProp::new(vec![], RmsPropConfig::new(0.01).momentum(-0.5)).is_err());
        assert!(RmsProp::new(vec![], RmsPropConfig::new(-0.01)).is_err());
    }
}
