//! Learning-rate schedules: constant, step decay, cosine annealing (with optional warm restarts),
//! linear warm-up in front of any other schedule, and the Transformer's warm-up then inverse square root.
//!
//! Cosine annealing is from I. Loshchilov and F. Hutter, "SGDR: Stochastic Gradient Descent with Warm
//! Restarts", 2016, <https://arxiv.org/abs/1608.03983>, eq. (5):
//!
//! ```text
//! η_t = η_min + ½·(η_max − η_min)·(1 + cos(π·T_cur / T_i))
//! ```
//!
//! where `T_cur` counts the steps since the last restart and `T_i` is the length of the current cycle.
//! Linear warm-up is the "gradual warm-up" of P. Goyal et al., "Accurate, Large Minibatch SGD:
//! Training ImageNet in 1 Hour", 2017, <https://arxiv.org/abs/1706.02677>: early updates, taken while
//! the weights are still random and the Adam/momentum statistics are empty, are the ones most likely
//! to diverge, so the rate climbs from small to its peak first.
//!
//! The Transformer's schedule is from A. Vaswani et al., "Attention Is All You Need", 2017,
//! <https://arxiv.org/abs/1706.03762>, eq. (3), with the paper's step counting from 1:
//!
//! ```text
//! lrate = d_model^−0.5 · min(step^−0.5, step · warmup_steps^−1.5)
//! ```
//!
//! A schedule is a pure function of the step ([`LrSchedule::lr_at`]); [`apply_schedule`] writes it into
//! any [`candle_nn::Optimizer`], so nothing here holds a mutable counter that can drift.

use candle_nn::Optimizer;

use crate::{Error, Result};

/// A learning rate as a function of the optimizer step.
///
/// Steps count from **0**: `lr_at(0)` is the rate for the first update.
///
/// ```
/// use dlhist::optim::{CosineAnnealing, LrSchedule};
/// let s = CosineAnnealing::new(0.1, 0.0, 100)?.with_warmup(10);
/// assert!(s.lr_at(0) < s.lr_at(9));        // warming up
/// assert_eq!(s.lr_at(10), 0.1);            // hand-over: the cosine's step 0
/// assert!(s.lr_at(110).abs() < 1e-12);     // the cosine's step 100: the floor
/// # Ok::<(), dlhist::Error>(())
/// ```
pub trait LrSchedule {
    /// The learning rate for step `step` (0 is the first update).
    fn lr_at(&self, step: usize) -> f64;

    /// The rates for steps `0..steps`, e.g. to plot the schedule.
    fn lrs(&self, steps: usize) -> Vec<f64> {
        (0..steps).map(|s| self.lr_at(s)).collect()
    }

    /// Puts a linear warm-up of `warmup_steps` steps in front of this schedule.
    fn with_warmup(self, warmup_steps: usize) -> LinearWarmup<Self>
    where
        Self: Sized,
    {
        LinearWarmup::new(warmup_steps, self)
    }
}

impl<S: LrSchedule + ?Sized> LrSchedule for Box<S> {
    fn lr_at(&self, step: usize) -> f64 {
        (**self).lr_at(step)
    }
}

impl<S: LrSchedule + ?Sized> LrSchedule for &S {
    fn lr_at(&self, step: usize) -> f64 {
        (**self).lr_at(step)
    }
}

/// Sets `optimizer`'s learning rate to `schedule.lr_at(step)` and returns that rate.
///
/// Call it before each `step` / `backward_step`:
///
/// ```
/// use candle_core::{Device, Var};
/// use candle_nn::Optimizer;
/// use dlhist::optim::{apply_schedule, Sgd, SgdConfig, StepDecay};
///
/// let w = Var::new(&[1f32], &Device::Cpu)?;
/// let mut opt = Sgd::new(vec![w.clone()], SgdConfig::new(1.0))?;
/// let schedule = StepDecay::new(0.1, 10, 0.5)?;
/// for step in 0..25 {
///     let lr = apply_schedule(&mut opt, &schedule, step);
///     opt.backward_step(&w.as_tensor().sqr()?.sum_all()?)?;
///     assert_eq!(lr, opt.learning_rate());
/// }
/// assert_eq!(opt.learning_rate(), 0.025); // steps 20..29 use 0.1 · 0.5²
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn apply_schedule<O: Optimizer, S: LrSchedule + ?Sized>(optimizer: &mut O, schedule: &S, step: usize) -> f64 {
    let lr = schedule.lr_at(step);
    optimizer.set_learning_rate(lr);
    lr
}

fn check_rate(what: &str, lr: f64) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(Error::Invalid(format!("{what} = {lr}: a learning rate must be finite and >= 0")))
    }
}

/// The same rate at every step.
///
/// ```
/// use dlhist::optim::{ConstantLr, LrSchedule};
/// assert_eq!(ConstantLr(0.01).lr_at(12345), 0.01);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConstantLr(pub f64);

impl LrSchedule for ConstantLr {
    fn lr_at(&self, _step: usize) -> f64 {
        self.0
    }
}

/// Step decay: `lr = base_lr · γ^⌊step / step_size⌋`, i.e. multiply by `γ` every `step_size` steps
/// (the staircase used to train AlexNet and ResNet).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepDecay {
    base_lr: f64,
    step_size: usize,
    gamma: f64,
}

impl StepDecay {
    /// Starts at `base_lr` and multiplies by `gamma` after every `step_size` steps.
    ///
    /// Errors if `step_size` is 0 or a rate/factor is negative or not finite.
    pub fn new(base_lr: f64, step_size: usize, gamma: f64) -> Result<Self> {
        check_rate("StepDecay base_lr", base_lr)?;
        if step_size == 0 {
            return Err(Error::Invalid("StepDecay step_size = 0: the decay interval must be at least 1 step".into()));
        }
        if !(gamma.is_finite() && gamma >= 0.0) {
            return Err(Error::Invalid(format!("StepDecay gamma = {gamma} must be finite and >= 0 (e.g. 0.1)")));
        }
        Ok(StepDecay { base_lr, step_size, gamma })
    }
}

impl LrSchedule for StepDecay {
    fn lr_at(&self, step: usize) -> f64 {
        let k = step / self.step_size;
        // powi takes an i32; beyond that many decays the rate is 0 (or base_lr for γ = 1) anyway.
        self.base_lr * self.gamma.powi(i32::try_from(k).unwrap_or(i32::MAX))
    }
}

/// Cosine annealing from `base_lr` down to `min_lr` over `t_max` steps (SGDR eq. 5).
///
/// Without restarts the rate is `base_lr` at step 0, `min_lr` at step `t_max`, and stays at
/// `min_lr` afterwards. With [`CosineAnnealing::with_warm_restarts`] it jumps back to `base_lr` at
/// the end of each cycle, the cycles growing by a factor `t_mult`.
///
/// ```
/// use dlhist::optim::{CosineAnnealing, LrSchedule};
/// let s = CosineAnnealing::new(1.0, 0.0, 10)?;
/// assert_eq!(s.lr_at(0), 1.0);
/// assert!((s.lr_at(5) - 0.5).abs() < 1e-12);
/// assert_eq!(s.lr_at(10), 0.0);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineAnnealing {
    base_lr: f64,
    min_lr: f64,
    t_max: usize,
    /// `Some(t_mult)` for SGDR's warm restarts.
    restarts: Option<usize>,
}

impl CosineAnnealing {
    /// Anneals from `base_lr` to the floor `min_lr` over `t_max` steps, then stays at `min_lr`.
    ///
    /// Errors if `t_max` is 0 or `min_lr > base_lr` or a rate is negative or not finite.
    pub fn new(base_lr: f64, min_lr: f64, t_max: usize) -> Result<Self> {
        check_rate("CosineAnnealing base_lr", base_lr)?;
        check_rate("CosineAnnealing min_lr", min_lr)?;
        if min_lr > base_lr {
            return Err(Error::Invalid(format!(
                "CosineAnnealing: the floor min_lr = {min_lr} is above base_lr = {base_lr}; swap them"
            )));
        }
        if t_max == 0 {
            return Err(Error::Invalid("CosineAnnealing t_max = 0: the annealing needs at least 1 step".into()));
        }
        Ok(CosineAnnealing { base_lr, min_lr, t_max, restarts: None })
    }

    /// SGDR: restart at `base_lr` after each cycle; the first cycle lasts `t_max` steps and each
    /// following one `t_mult` times longer than the one before (`t_mult = 1`: equal cycles).
    ///
    /// ```
    /// use dlhist::optim::{CosineAnnealing, LrSchedule};
    /// let s = CosineAnnealing::new(1.0, 0.0, 10)?.with_warm_restarts(2)?;
    /// assert_eq!(s.lr_at(10), 1.0); // second cycle (20 steps) starts
    /// assert_eq!(s.lr_at(30), 1.0); // third cycle (40 steps) starts
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn with_warm_restarts(mut self, t_mult: usize) -> Result<Self> {
        if t_mult == 0 {
            return Err(Error::Invalid("CosineAnnealing t_mult = 0: cycles must grow by a factor >= 1".into()));
        }
        self.restarts = Some(t_mult);
        Ok(self)
    }

    /// `(T_cur, T_i)`: steps since the last restart and the length of the current cycle.
    fn position(&self, step: usize) -> (usize, usize) {
        match self.restarts {
            None => (step.min(self.t_max), self.t_max),
            Some(1) => (step % self.t_max, self.t_max),
            Some(mult) => {
                let (mut start, mut len) = (0usize, self.t_max);
                // At most log_mult(step) iterations; saturating so a huge step cannot overflow.
                while step - start >= len {
                    start = start.saturating_add(len);
                    len = len.saturating_mul(mult);
                }
                (step - start, len)
            }
        }
    }
}

impl LrSchedule for CosineAnnealing {
    fn lr_at(&self, step: usize) -> f64 {
        let (t_cur, t_i) = self.position(step);
        if t_cur == t_i {
            // Exactly the floor at the end (cos(π) + 1 is not exactly 0 in floating point).
            return self.min_lr;
        }
        let progress = t_cur as f64 / t_i as f64;
        self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// Linear warm-up for `warmup_steps` steps, then hands over to `inner`.
///
/// With peak `η = inner.lr_at(0)`:
/// `lr_at(s) = η·(s + 1)/W` for `s < W` (so the first update already moves, at `η/W`, and step
/// `W − 1` reaches `η`), and `lr_at(s) = inner.lr_at(s − W)` afterwards: the inner schedule's clock
/// starts when the warm-up ends, so a cosine over `T` steps still spans `T` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearWarmup<S> {
    warmup_steps: usize,
    inner: S,
}

impl<S: LrSchedule> LinearWarmup<S> {
    /// Warm up linearly for `warmup_steps` steps (0: no warm-up), then follow `inner`.
    pub fn new(warmup_steps: usize, inner: S) -> Self {
        LinearWarmup { warmup_steps, inner }
    }

    /// The schedule that takes over after the warm-up.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: LrSchedule> LrSchedule for LinearWarmup<S> {
    fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            self.inner.lr_at(0) * (step + 1) as f64 / self.warmup_steps as f64
        } else {
            self.inner.lr_at(step - self.warmup_steps)
        }
    }
}

/// The Transformer's schedule (module docs): a linear climb for `warmup` steps, then decay as `1/√step`.
/// Our step `s` (from 0) is the paper's `s + 1`, so `lr_at(warmup − 1)` is the peak.
///
/// ```
/// use dlhist::optim::{InverseSqrtWarmup, LrSchedule};
/// let s = InverseSqrtWarmup::vaswani(512, 4000); // the paper's base model
/// let paper = |n: f64| 512f64.powf(-0.5) * n.powf(-0.5).min(n * 4000f64.powf(-1.5));
/// assert!((s.lr_at(0) - paper(1.0)).abs() < 1e-15);
/// assert!((s.lr_at(3999) - paper(4000.0)).abs() < 1e-15);     // the peak, about 7e-4
/// assert!((s.lr_at(15999) - s.lr_at(3999) / 2.0).abs() < 1e-15); // 4× the steps, half the rate
/// let mine = InverseSqrtWarmup::with_peak(1e-3, 100);
/// assert!((mine.lr_at(99) - 1e-3).abs() < 1e-15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InverseSqrtWarmup {
    scale: f64,
    warmup: usize,
}

impl InverseSqrtWarmup {
    /// The paper's schedule: `scale = d_model^−0.5`.
    pub fn vaswani(d_model: usize, warmup: usize) -> Self {
        InverseSqrtWarmup { scale: (d_model.max(1) as f64).powf(-0.5), warmup: warmup.max(1) }
    }

    /// The same shape with its peak (reached at step `warmup − 1`) set to `peak_lr`: how the notebooks tune it.
    pub fn with_peak(peak_lr: f64, warmup: usize) -> Self {
        let warmup = warmup.max(1);
        InverseSqrtWarmup { scale: peak_lr * (warmup as f64).sqrt(), warmup }
    }

    /// The highest rate of the schedule.
    pub fn peak(&self) -> f64 {
        self.lr_at(self.warmup - 1)
    }
}

impl LrSchedule for InverseSqrtWarmup {
    fn lr_at(&self, step: usize) -> f64 {
        let n = (step + 1) as f64;
        self.scale * n.powf(-0.5).min(n * (self.warmup as f64).powf(-1.5))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::{Sgd, SgdConfig};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn constant_is_constant() {
        let s = ConstantLr(0.3);
        assert!(s.lrs(50).iter().all(|&lr| lr == 0.3));
    }

    #[test]
    fn step_decay_staircase() -> Result<()> {
        // base 0.1, ×0.5 every 3 steps: steps 0-2 → 0.1, 3-5 → 0.05, 6-8 → 0.025.
        let s = StepDecay::new(0.1, 3, 0.5)?;
        assert_eq!(s.lr_at(0), 0.1);
        assert_eq!(s.lr_at(2), 0.1);
        assert!(close(s.lr_at(3), 0.05));
        assert!(close(s.lr_at(5), 0.05));
        assert!(close(s.lr_at(6), 0.025));
        assert!(StepDecay::new(0.1, 0, 0.5).is_err());
        assert!(StepDecay::new(0.1, 3, -0.5).is_err());
        Ok(())
    }

    #[test]
    fn cosine_endpoints_midpoint_and_floor() -> Result<()> {
        // base 0.1, floor 0.01, T = 100: lr(0) = 0.1; lr(50) = 0.01 + 0.045·(1 + cos(π/2)) = 0.055;
        // lr(25) = 0.01 + 0.045·(1 + cos(π/4)) = 0.01 + 0.045·1.7071068 = 0.0868198; lr(100) = 0.01, and it stays.
        let s = CosineAnnealing::new(0.1, 0.01, 100)?;
        assert_eq!(s.lr_at(0), 0.1);
        assert!(close(s.lr_at(50), 0.055));
        assert!((s.lr_at(25) - 0.086_819_8).abs() < 1e-7);
        assert_eq!(s.lr_at(100), 0.01);
        assert_eq!(s.lr_at(1000), 0.01);
        // Monotone non-increasing on the way down.
        let lrs = s.lrs(101);
        assert!(lrs.windows(2).all(|w| w[1] <= w[0]));
        assert!(CosineAnnealing::new(0.01, 0.1, 100).is_err());
        assert!(CosineAnnealing::new(0.1, 0.0, 0).is_err());
        Ok(())
    }

    #[test]
    fn cosine_warm_restarts() -> Result<()> {
        // t_mult = 1, T = 4: step 4 restarts at base, step 6 is the midpoint of the second cycle.
        let s = CosineAnnealing::new(1.0, 0.0, 4)?.with_warm_restarts(1)?;
        assert_eq!(s.lr_at(4), 1.0);
        assert!(close(s.lr_at(6), 0.5));
        // t_mult = 2, T0 = 4: cycles [0, 4), [4, 12), [12, 28). Step 8 is T_cur = 4 of 8: the midpoint.
        let s = CosineAnnealing::new(1.0, 0.0, 4)?.with_warm_restarts(2)?;
        assert!(close(s.lr_at(2), 0.5));
        assert_eq!(s.lr_at(4), 1.0);
        assert!(close(s.lr_at(8), 0.5));
        assert_eq!(s.lr_at(12), 1.0);
        assert!(close(s.lr_at(20), 0.5));
        assert!(s.lr_at(usize::MAX).is_finite());
        assert!(CosineAnnealing::new(1.0, 0.0, 4)?.with_warm_restarts(0).is_err());
        Ok(())
    }

    #[test]
    fn warmup_ramps_then_hands_over() -> Result<()> {
        // W = 4 in front of step decay (0.2, ×0.1 every 10): 0.05, 0.1, 0.15, 0.2, then the decay's step 0.
        let s = StepDecay::new(0.2, 10, 0.1)?.with_warmup(4);
        assert!(close(s.lr_at(0), 0.05));
        assert!(close(s.lr_at(1), 0.1));
        assert!(close(s.lr_at(3), 0.2));
        assert!(close(s.lr_at(4), 0.2)); // inner step 0
        assert!(close(s.lr_at(13), 0.2)); // inner step 9
        assert!(close(s.lr_at(14), 0.02)); // inner step 10: first decay, 10 steps after the hand-over
                                           // Warm-up then cosine: the cosine's endpoints shift by W.
        let c = LinearWarmup::new(5, CosineAnnealing::new(0.1, 0.0, 20)?);
        assert_eq!(c.lr_at(5), 0.1);
        assert!(close(c.lr_at(15), 0.05));
        assert_eq!(c.lr_at(25), 0.0);
        // Zero warm-up is the inner schedule; a boxed schedule composes too.
        let boxed: Box<dyn LrSchedule> = Box::new(ConstantLr(0.7));
        assert_eq!(LinearWarmup::new(0, boxed).lr_at(0), 0.7);
        Ok(())
    }

    #[test]
    fn apply_schedule_sets_the_optimizer_rate() -> Result<()> {
        let mut opt = Sgd::new(vec![], SgdConfig::new(1.0))?;
        let s = CosineAnnealing::new(0.4, 0.0, 8)?;
        let lr = apply_schedule(&mut opt, &s, 4);
        assert!(close(lr, 0.2));
        assert_eq!(opt.learning_rate(), lr);
        Ok(())
    }
}
