//! Adam, its L2 and decoupled (AdamW) weight decay, and optionally AMSGrad.
//!
//! D. P. Kingma and J. Ba, "Adam: A Method for Stochastic Optimization", 2014,
//! <https://arxiv.org/abs/1412.6980> (Algorithm 1). Decoupled weight decay: I. Loshchilov and
//! F. Hutter, "Decoupled Weight Decay Regularization", 2017, <https://arxiv.org/abs/1711.05101>
//! (Algorithm 2, "AdamW"). AMSGrad: S. J. Reddi, S. Kale and S. Kumar, "On the Convergence of Adam
//! and Beyond", ICLR 2018, <https://openreview.net/forum?id=ryQu7f-RZ>.
//!
//! At step `t` (counted from 1 per parameter) with gradient `g`, the update follows PyTorch's
//! `torch.optim.Adam` / `AdamW`:
//!
//! ```text
//! g ← g + λ·θ                          (WeightDecay::L2: the penalty goes through the moments)
//! θ ← θ − lr·λ·θ                       (WeightDecay::Decoupled: shrink θ directly, outside Adam)
//! m ← β1·m + (1 − β1)·g                (first moment: running mean of g)
//! v ← β2·v + (1 − β2)·g²               (second moment: running mean of g²)
//! v_max ← max(v_max, v)               (AMSGrad only; v_max then replaces v below, so the
//!                                       denominator never shrinks)
//! m̂ = m / (1 − β1ᵗ),  v̂ = v / (1 − β2ᵗ)  (bias correction: m and v start at 0)
//! θ ← θ − lr·m̂ / (√v̂ + ε)
//! ```
//!
//! Why decoupling matters: with L2 decay the term `λ·θ` is divided by `√v̂` like the rest of the
//! gradient, so weights with large gradients are barely regularized. AdamW applies the same relative
//! shrinkage to every weight. Loshchilov & Hutter scale the decay by a schedule multiplier `η_t`;
//! like PyTorch we scale it by `lr`, so a learning-rate schedule scales the decay too.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::Optimizer;

use crate::fast::{AdamMoments, AdamStep};
use crate::optim::{ensure, float_vars};

/// How [`Adam`] regularizes the weights.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum WeightDecay {
    /// No weight decay.
    #[default]
    None,
    /// Coupled L2: `λ·θ` is added to the gradient before the moments (Adam's original use,
    /// PyTorch's `Adam(weight_decay=λ)`).
    L2(f64),
    /// Decoupled: `θ ← θ − lr·λ·θ` before the Adam step (AdamW, PyTorch's `AdamW(weight_decay=λ)`).
    Decoupled(f64),
}

impl WeightDecay {
    fn coefficient(&self) -> f64 {
        match *self {
            WeightDecay::None => 0.0,
            WeightDecay::L2(l) | WeightDecay::Decoupled(l) => l,
        }
    }
}

/// Hyper-parameters of [`Adam`]. The defaults are the paper's: `lr = 1e-3`, `β1 = 0.9`,
/// `β2 = 0.999`, `ε = 1e-8`, no weight decay, no AMSGrad.
///
/// ```
/// use dlhist::optimization::{AdamConfig, WeightDecay};
/// let cfg = AdamConfig::new(3e-4).weight_decay(WeightDecay::Decoupled(0.01));
/// assert_eq!(cfg, AdamConfig::adamw(3e-4, 0.01));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate `lr` (the paper's `α`).
    pub lr: f64,
    /// Decay rate of the first moment, `β1`.
    pub beta1: f64,
    /// Decay rate of the second moment, `β2`.
    pub beta2: f64,
    /// `ε`, added to `√v̂` so the division is safe when `v̂` is 0.
    pub eps: f64,
    /// The weight-decay mode and coefficient.
    pub weight_decay: WeightDecay,
    /// Use AMSGrad's running maximum of `v̂` in the denominator.
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: WeightDecay::None, amsgrad: false }
    }
}

impl AdamConfig {
    /// The paper's defaults with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        AdamConfig { lr, ..Default::default() }
    }

    /// AdamW: the defaults with learning rate `lr` and decoupled weight decay `weight_decay`.
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        AdamConfig { lr, weight_decay: WeightDecay::Decoupled(weight_decay), ..Default::default() }
    }

    /// Sets `β1` and `β2`.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }

    /// Sets `ε`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets the weight-decay mode.
    pub fn weight_decay(mut self, weight_decay: WeightDecay) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Switches AMSGrad on or off.
    pub fn amsgrad(mut self, amsgrad: bool) -> Self {
        self.amsgrad = amsgrad;
        self
    }

    fn validate(&self) -> Result<()> {
        ensure(self.lr.is_finite() && self.lr >= 0.0, || format!("Adam: lr = {} must be finite and >= 0", self.lr))?;
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            ensure((0.0..1.0).contains(&b), || {
                format!("Adam: {name} = {b} must be in [0, 1) (0.9 / 0.999 are usual)")
            })?;
        }
        ensure(self.eps.is_finite() && self.eps >= 0.0, || {
            format!("Adam: eps = {} must be finite and >= 0", self.eps)
        })?;
        let wd = self.weight_decay.coefficient();
        ensure(wd.is_finite() && wd >= 0.0, || format!("Adam: weight decay {wd} must be finite and >= 0"))
    }
}

/// Per-parameter state: the step count and the moment estimates.
#[derive(Debug)]
struct AdamState {
    /// Steps taken by this parameter (PyTorch counts per parameter, so a var that gets no gradient
    /// for a while keeps its own bias correction).
    t: i32,
    moments: Moments,
}

/// The moment estimates `m`, `v` and AMSGrad's running maximum of the raw `v` (like PyTorch we take the max
/// before dividing by the current step's bias correction).
#[derive(Debug)]
enum Moments {
    /// On the parameter's device and dtype, updated with tensor arithmetic (CUDA, f64, f16...).
    Tensors { m: Tensor, v: Tensor, v_max: Option<Tensor> },
    /// f32 parameters on the CPU: plain vectors, updated together with the parameter in one in-place pass.
    Cpu { m: Vec<f32>, v: Vec<f32>, v_max: Option<Vec<f32>> },
}

/// Adam with bias correction, coupled L2 or decoupled (AdamW) weight decay, and optional AMSGrad.
///
/// Implements [`candle_nn::Optimizer`]. f32 parameters on the CPU are updated in one fused in-place pass
/// (moments, bias correction and the parameter together, no temporaries); others with tensor arithmetic on
/// their own device and dtype and [`Var::set`].
///
/// ```
/// use candle_core::{Device, Var};
/// use candle_nn::Optimizer;
/// use dlhist::optimization::{Adam, AdamConfig};
///
/// let w = Var::new(&[0f32, 0.0], &Device::Cpu)?;
/// let mut opt = Adam::new(vec![w.clone()], AdamConfig::new(0.1))?;
/// for _ in 0..300 {
///     // (w0 - 1)^2 + (w1 + 2)^2
///     let target = candle_core::Tensor::new(&[1f32, -2.0], &Device::Cpu)?;
///     let loss = (w.as_tensor() - target)?.sqr()?.sum_all()?;
///     opt.backward_step(&loss)?;
/// }
/// let got = w.to_vec1::<f32>()?;
/// assert!((got[0] - 1.0).abs() < 1e-2 && (got[1] + 2.0).abs() < 1e-2);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Adam {
    vars: Vec<Var>,
    states: Vec<Option<AdamState>>,
    config: AdamConfig,
    /// Use the fused CPU update where it applies (off only to test it against the tensor arithmetic).
    fused: bool,
}

impl Adam {
    /// The hyper-parameters in use.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// The parameters this optimizer updates (non-float vars are dropped at construction).
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }
}

impl Optimizer for Adam {
    type Config = AdamConfig;

    /// Builds the optimizer; errors if a hyper-parameter is out of range.
    fn new(vars: Vec<Var>, config: AdamConfig) -> Result<Self> {
        config.validate()?;
        let vars = float_vars(vars);
        let states = (0..vars.len()).map(|_| None).collect();
        Ok(Adam { vars, states, config, fused: true })
    }

    /// One update of every var that has a gradient in `grads`; vars without one are left alone and
    /// their step count does not advance.
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        let c = self.config;
        for (var, state) in self.vars.iter().zip(self.states.iter_mut()) {
            let Some(grad) = grads.get(var) else { continue };
            let s = match state {
                Some(s) => s,
                None => {
                    // The fused update runs on f32 CPU storage that starts at offset 0 (a Var's own buffer).
                    let fused = self.fused
                        && crate::fast::enabled()
                        && var.device().is_cpu()
                        && var.dtype() == DType::F32
                        && var.is_contiguous()
                        && var.layout().start_offset() == 0;
                    let moments = if fused {
                        let n = var.elem_count();
                        Moments::Cpu { m: vec![0.0; n], v: vec![0.0; n], v_max: c.amsgrad.then(|| vec![0.0; n]) }
                    } else {
                        let z = var.as_tensor().zeros_like()?;
                        Moments::Tensors { m: z.clone(), v: z.clone(), v_max: c.amsgrad.then_some(z) }
                    };
                    state.insert(AdamState { t: 0, moments })
                }
            };
            s.t += 1;
            let bc1 = 1.0 - c.beta1.powi(s.t);
            let bc2 = 1.0 - c.beta2.powi(s.t);
            match &mut s.moments {
                Moments::Cpu { m, v, v_max } => {
                    // Moments, bias correction and parameter in one in-place pass (the kernel is in crate::fast;
                    // the tensor arithmetic below is the same update, term for term).
                    let grad = grad.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
                    let (l2, shrink) = match c.weight_decay {
                        WeightDecay::None => (0.0, 1.0),
                        WeightDecay::L2(l) => (l, 1.0),
                        WeightDecay::Decoupled(l) => (0.0, 1.0 - c.lr * l),
                    };
                    let k = AdamStep { beta1: c.beta1, beta2: c.beta2, step: c.lr / bc1, bc2, eps: c.eps, l2, shrink };
                    crate::fast::adam_update(
                        var.as_tensor(),
                        &grad,
                        AdamMoments { m, v, v_max: v_max.as_deref_mut() },
                        k,
                    )?;
                }
                Moments::Tensors { m, v, v_max } => {
                    let mut theta = var.as_tensor().detach();
                    let mut g = grad.detach();
                    match c.weight_decay {
                        WeightDecay::None => {}
                        WeightDecay::L2(l) => g = (g + theta.affine(l, 0.0)?)?,
                        // Shrinking θ before the Adam step matches PyTorch's AdamW order.
                        WeightDecay::Decoupled(l) => theta = theta.affine(1.0 - c.lr * l, 0.0)?,
                    }
                    *m = (m.affine(c.beta1, 0.0)? + g.affine(1.0 - c.beta1, 0.0)?)?;
                    *v = (v.affine(c.beta2, 0.0)? + g.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
                    let v_used = match v_max.as_mut() {
                        Some(v_max) => {
                            *v_max = v_max.maximum(&*v)?;
                            v_max.clone()
                        }
                        None => v.clone(),
                    };
                    // √v̂ + ε = √v / √bc2 + ε, written as one affine so ε is added after the correction.
                    let denom = v_used.sqrt()?.affine(1.0 / bc2.sqrt(), c.eps)?;
                    let step = (m.affine(c.lr / bc1, 0.0)? / denom)?;
                    var.set(&(theta - step)?)?;
                }
            }
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

impl Adam {
    /// The same optimizer updating every parameter with tensor arithmetic, the composition the fused CPU update
    /// is tested against.
    #[cfg(test)]
    pub(crate) fn unfused(mut self) -> Self {
        self.fused = false;
        self
    }
}

/// Hyper-parameters of [`AdamW`]: PyTorch's `AdamW` defaults (`lr = 1e-3`, `β1 = 0.9`,
/// `β2 = 0.999`, `ε = 1e-8`, `weight_decay = 1e-2`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate `lr`.
    pub lr: f64,
    /// Decay rate of the first moment, `β1`.
    pub beta1: f64,
    /// Decay rate of the second moment, `β2`.
    pub beta2: f64,
    /// `ε` added to `√v̂`.
    pub eps: f64,
    /// Decoupled weight decay `λ`: each step shrinks `θ` by `lr·λ·θ`.
    pub weight_decay: f64,
    /// Use AMSGrad's running maximum of `v̂`.
    pub amsgrad: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2, amsgrad: false }
    }
}

impl AdamWConfig {
    /// The defaults with learning rate `lr` and decoupled weight decay `weight_decay`.
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        AdamWConfig { lr, weight_decay, ..Default::default() }
    }
}

impl From<AdamWConfig> for AdamConfig {
    fn from(c: AdamWConfig) -> Self {
        AdamConfig {
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: WeightDecay::Decoupled(c.weight_decay),
            amsgrad: c.amsgrad,
        }
    }
}

/// AdamW (Loshchilov & Hutter 2017): [`Adam`] with decoupled weight decay, under its own name and
/// with [`AdamWConfig`]'s defaults, so it can replace `candle_nn::AdamW` in existing code.
///
/// ```
/// use candle_core::{Device, Var};
/// use candle_nn::Optimizer;
/// use dlhist::optimization::{AdamW, AdamWConfig};
///
/// let w = Var::new(&[2f32], &Device::Cpu)?;
/// let mut opt = AdamW::new(vec![w.clone()], AdamWConfig::new(0.1, 0.5))?;
/// // Loss w, gradient 1: the decay shrinks w to 2·(1 − 0.1·0.5) = 1.9, then Adam's first step,
/// // lr·m̂/√v̂ = 0.1·1/1, moves it to 1.8.
/// opt.backward_step(&w.as_tensor().sum_all()?)?;
/// assert!((w.to_vec1::<f32>()?[0] - 1.8).abs() < 1e-6);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug)]
pub struct AdamW(Adam);

impl AdamW {
    /// The underlying [`Adam`] (its config shows `WeightDecay::Decoupled`).
    pub fn inner(&self) -> &Adam {
        &self.0
    }

    /// Unwraps into the underlying [`Adam`].
    pub fn into_inner(self) -> Adam {
        self.0
    }
}

impl Optimizer for AdamW {
    type Config = AdamWConfig;

    fn new(vars: Vec<Var>, config: AdamWConfig) -> Result<Self> {
        Ok(AdamW(Adam::new(vars, config.into())?))
    }

    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.0.step(grads)
    }

    fn learning_rate(&self) -> f64 {
        self.0.learning_rate()
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.0.set_learning_rate(lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::test_util::{assert_close, run_two_steps};

    // Every test starts from θ = [1, −2] with lr = 0.1, β1 = 0.9, β2 = 0.999, ε = 1e-8.
    // Bias corrections: step 1: 1 − 0.9 = 0.1 and 1 − 0.999 = 0.001;
    //                   step 2: 1 − 0.81 = 0.19 and 1 − 0.998001 = 0.001999.
    const G: [f64; 2] = [0.5, -1.0];

    #[test]
    fn adam_two_steps() -> Result<()> {
        // Constant g: step 1: m = 0.1·g, v = 0.001·g², so m̂ = g and v̂ = g²; update = lr·g/|g| = 0.1·sign(g)
        // (ε changes it by < 1e-8). θ1 = [0.9, −1.9].
        // Step 2: m = 0.09·g + 0.1·g = 0.19·g → m̂ = g; v = 0.000999·g² + 0.001·g² = 0.001999·g² → v̂ = g².
        // Again a step of 0.1·sign(g): θ2 = [0.8, −1.8]. (Without bias correction step 1 would move
        // 0.1·0.1·g/√(0.001·g²) = 0.316·sign(g), so these numbers do check the correction.)
        let (s1, s2) = run_two_steps::<Adam>(AdamConfig::new(0.1), &G, &G)?;
        assert_close(&s1, &[0.9, -1.9], 1e-6);
        assert_close(&s2, &[0.8, -1.8], 1e-6);
        Ok(())
    }

    #[test]
    fn coupled_l2_two_steps() -> Result<()> {
        // Step 1: g' = g + 0.1·θ = [0.6, −1.2]; as above m̂ = g', v̂ = g'², so θ1 = [0.9, −1.9].
        // Step 2: g' = [0.5 + 0.09, −1 − 0.19] = [0.59, −1.19].
        //   m = 0.9·0.1·[0.6, −1.2] + 0.1·[0.59, −1.19] = [0.054 + 0.059, −0.108 − 0.119] = [0.113, −0.227]
        //   m̂ = m / 0.19 = [0.5947368, −1.1947368]
        //   v = 0.999·0.001·[0.36, 1.44] + 0.001·[0.3481, 1.4161] = [0.00035964 + 0.0003481, 0.00143856 + 0.0014161]
        //     = [0.00070774, 0.00285466];  v̂ = v / 0.001999 = [0.3540470, 1.4280440];  √v̂ = [0.5950185, 1.1950079]
        //   m̂/√v̂ = [0.9995266, −0.9997731];  θ2 = [0.9 − 0.0999527, −1.9 + 0.0999773] = [0.8000473, −1.8000227]
        let (s1, s2) = run_two_steps::<Adam>(AdamConfig::new(0.1).weight_decay(WeightDecay::L2(0.1)), &G, &G)?;
        assert_close(&s1, &[0.9, -1.9], 1e-6);
        assert_close(&s2, &[0.800_047_3, -1.800_022_7], 1e-6);
        Ok(())
    }

    #[test]
    fn decoupled_two_steps_differs_from_coupled() -> Result<()> {
        // Step 1: θ ← θ·(1 − 0.1·0.1) = [0.99, −1.98]; then the Adam step 0.1·sign(g): θ1 = [0.89, −1.88].
        // Step 2: θ·0.99 = [0.8811, −1.8612]; minus 0.1·sign(g): θ2 = [0.7811, −1.7612].
        let (s1, s2) = run_two_steps::<Adam>(AdamConfig::adamw(0.1, 0.1), &G, &G)?;
        assert_close(&s1, &[0.89, -1.88], 1e-6);
        assert_close(&s2, &[0.7811, -1.7612], 1e-6);
        // Coupled L2 with the same λ ends at [0.8000473, −1.8000227] (test above): Adam's normalisation
        // all but cancels the L2 term, while the decoupled shrinkage survives intact.
        let (_, coupled) = run_two_steps::<Adam>(AdamConfig::new(0.1).weight_decay(WeightDecay::L2(0.1)), &G, &G)?;
        assert!((coupled[0] - s2[0]).abs() > 0.01, "coupled {coupled:?} vs decoupled {s2:?}");
        // The AdamW type is the same optimizer.
        let (w1, w2) = run_two_steps::<AdamW>(AdamWConfig::new(0.1, 0.1), &G, &G)?;
        assert_eq!((w1, w2), (s1, s2));
        Ok(())
    }

    #[test]
    fn amsgrad_two_steps() -> Result<()> {
        // g1 = [0.5, −1], g2 = 0 so that v shrinks and AMSGrad's max matters.
        // Step 1 is plain Adam: θ1 = [0.9, −1.9].
        // Step 2: m = 0.09·g1 → m̂ = 0.09/0.19·g1 = 0.4736842·g1; v = 0.999·0.001·g1² = 0.000999·g1².
        //   Adam:    v̂ = 0.000999/0.001999·g1², √v̂ = 0.7069299·|g1| → step 0.1·0.4736842/0.7069299 = 0.0670058
        //            θ2 = [0.8329942, −1.8329942]
        //   AMSGrad: v_max = 0.001·g1² (step 1's), v̂ = 0.001/0.001999·g1², √ = 0.7072836·|g1|
        //            → step 0.1·0.4736842/0.7072836 = 0.0669723; θ2 = [0.8330277, −1.8330277]
        let (a1, a2) = run_two_steps::<Adam>(AdamConfig::new(0.1), &G, &[0.0, 0.0])?;
        assert_close(&a1, &[0.9, -1.9], 1e-6);
        assert_close(&a2, &[0.832_994_2, -1.832_994_2], 1e-6);
        let (s1, s2) = run_two_steps::<Adam>(AdamConfig::new(0.1).amsgrad(true), &G, &[0.0, 0.0])?;
        assert_close(&s1, &[0.9, -1.9], 1e-6);
        assert_close(&s2, &[0.833_027_7, -1.833_027_7], 1e-6);
        Ok(())
    }

    /// The fused CPU update against the tensor arithmetic, every option, large (chunked over threads) and tiny
    /// parameters, and a non-contiguous gradient.
    #[test]
    fn fused_update_matches_the_tensor_arithmetic() -> Result<()> {
        use candle_core::Var;
        let dev = crate::device::test_device();
        let configs = [
            AdamConfig::new(1e-2),
            AdamConfig::new(1e-2).weight_decay(WeightDecay::L2(0.1)),
            AdamConfig::adamw(1e-2, 0.1),
            AdamConfig::new(1e-2).amsgrad(true).eps(1e-6),
        ];
        for config in configs {
            for shape in [(300, 250), (1, 1), (3, 7)] {
                let mut rng = crate::rng::Rng::new(7);
                let init = rng.normal_tensor(shape, 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?;
                let (a, b) = (Var::from_tensor(&init)?, Var::from_tensor(&init)?);
                let mut fused = Adam::new(vec![a.clone()], config)?;
                let mut plain = Adam::new(vec![b.clone()], config)?.unfused();
                for step in 0..4 {
                    let r = rng.normal_tensor((shape.1, shape.0), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?;
                    // The gradient of Σ (θᵀ ⊙ r)² is a transposed, non-contiguous tensor; the last step's gradient
                    // is 0 for AMSGrad's max to matter.
                    let scale = if step == 3 { 0.0 } else { 1.0 };
                    for (var, opt) in [(&a, &mut fused), (&b, &mut plain)] {
                        let loss = ((var.as_tensor().t()? * &r)?.sqr()?.sum_all()? * scale)?;
                        opt.backward_step(&loss)?;
                    }
                    crate::fast::testing::assert_close(a.as_tensor(), b.as_tensor(), &format!("{config:?} {shape:?}"))?;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn bad_configs_error() {
        assert!(Adam::new(vec![], AdamConfig::new(0.1).betas(1.0, 0.999)).is_err());
        assert!(Adam::new(vec![], AdamConfig::new(0.1).weight_decay(WeightDecay::L2(-1.0))).is_err());
        assert!(Adam::new(vec![], AdamConfig::new(f64::NAN)).is_err());
        assert!(AdamW::new(vec![], AdamWConfig::default()).is_ok());
    }
}
