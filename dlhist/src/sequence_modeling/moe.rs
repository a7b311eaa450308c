//! # The sparsely-gated mixture of experts
//!
//! N. Shazeer, A. Mirhoseini, K. Maziarz, A. Davis, Q. Le, G. Hinton and J. Dean, "Outrageously Large Neural
//! Networks: The Sparsely-Gated Mixture-of-Experts Layer", ICLR 2017. <https://arxiv.org/abs/1701.06538>
//!
//! A layer of `n` expert networks `E_1 .. E_n` (small feed-forward nets: one ReLU hidden layer, as in the paper's
//! appendix C) and a gate that, for every input row `x` (every token), keeps only `k` of them:
//!
//! ```text
//! y = Σ_i G(x)_i E_i(x)                                                              (eq. 1)
//! G(x) = Softmax(KeepTopK(H(x), k))                                                  (eq. 3)
//! H(x)_i = (x·W_g)_i + StandardNormal() · Softplus((x·W_noise)_i)                    (eq. 4, noise in training only)
//! KeepTopK(v, k)_i = v_i if v_i is among the k largest of v, −∞ otherwise            (eq. 5)
//! ```
//!
//! `G(x)_i = 0` for all but `k` experts, and an expert whose gate is 0 is not run at all: [`dispatch`] gathers the
//! rows routed to each expert, runs the expert on those rows only and scatter-adds the weighted outputs back, so
//! the work per token is `k` experts whatever `n` is. Left alone, the gate tends to favour a few experts, which
//! then train faster and are chosen even more. Two auxiliary losses push back (section 4 and appendix A), both the
//! squared coefficient of variation `CV(v)² = Var(v) / Mean(v)²` of a per-expert quantity over a batch `X`:
//!
//! ```text
//! Importance(X) = Σ_{x∈X} G(x)                        L_importance = w_importance · CV(Importance(X))²   (eqs. 6, 7)
//! P(x, i) = Φ(((x·W_g)_i − kth_excluding(H(x), k, i)) / Softplus((x·W_noise)_i))                          (eq. 9)
//! Load(X)_i = Σ_{x∈X} P(x, i)                         L_load = w_load · CV(Load(X))²                     (eqs. 10, 11)
//! ```
//!
//! `P(x, i)` is the probability that expert `i` is among the `k` chosen for `x` if its own noise were drawn again
//! (the others' kept): a smooth stand-in for the number of rows an expert receives, which is an integer and has
//! no gradient. `kth_excluding(v, k, i)` is the `k`-th largest entry of `v` leaving out entry `i`, and `Φ` the
//! standard normal CDF ([`normal_cdf`]). The variance in `CV` is the population variance (divided by `n`). `W_g`
//! and `W_noise` start at zero (appendix A), so at first every expert is equally likely and only the noise
//! decides.
//!
//! **Mixtral's routing.** Mixtral (and `candle_transformers::models::mixtral`) take the softmax over *all*
//! experts first, keep the `k` largest probabilities and divide them by their sum. Since the softmax is
//! increasing, the same `k` experts win, and `p_i / Σ_{j∈top} p_j = e^{l_i} / Σ_{j∈top} e^{l_j}`: the same weights
//! as eq. 3 without noise. The test `dlhist/tests/moe_mixtral.rs` holds our routing and
//! [`dispatch`] to candle-transformers' block with shared weights; Mixtral's experts are gated (SwiGLU) nets, so
//! there the test runs Mixtral's expert function through our dispatch, and our ReLU experts are not compared.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Module, ModuleT, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::layers::{Activation, Dense};
use crate::rng::Rng;
use crate::sequence_modeling::Lstm;
use crate::train::Loss;

/// Sizes and loss weights of a [`SparseMoe`] layer.
///
/// ```
/// use dlhist::sequence_modeling::moe::MoeConfig;
/// let cfg = MoeConfig::new(16, 2, 64);
/// assert_eq!((cfg.experts, cfg.k, cfg.expert_hidden), (16, 2, 64));
/// assert!(cfg.noisy && cfg.w_importance > 0.0 && cfg.w_load > 0.0);
/// assert!(MoeConfig { k: 17, ..cfg }.check().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoeConfig {
    /// Number of experts `n`.
    pub experts: usize,
    /// Experts kept per row `k` (1 ≤ k ≤ n). The paper uses k ≥ 2: with k = 1 the softmax over one kept entry
    /// is the constant 1, and the gate's weights get no gradient from the task loss.
    pub k: usize,
    /// Hidden units of every expert (one ReLU layer).
    pub expert_hidden: usize,
    /// Noisy gating (eq. 4) in training; off, `H(x) = x·W_g` and the load is the plain count.
    pub noisy: bool,
    /// `w_importance` of eq. 7 (0 turns the loss off).
    pub w_importance: f64,
    /// `w_load` of eq. 11 (0 turns the loss off).
    pub w_load: f64,
}

impl MoeConfig {
    /// `experts` experts of `expert_hidden` hidden units, `k` per row, noisy gating, both balancing losses at
    /// 0.1 (the paper's language-model setting in its table 6, `w_importance = w_load = 0.1`).
    pub fn new(experts: usize, k: usize, expert_hidden: usize) -> Self {
        MoeConfig { experts, k, expert_hidden, noisy: true, w_importance: 0.1, w_load: 0.1 }
    }

    /// The same layer without the two balancing losses.
    ///
    /// ```
    /// let cfg = dlhist::sequence_modeling::moe::MoeConfig::new(4, 2, 8).without_balancing();
    /// assert_eq!((cfg.w_importance, cfg.w_load), (0.0, 0.0));
    /// ```
    pub fn without_balancing(self) -> Self {
        MoeConfig { w_importance: 0.0, w_load: 0.0, ..self }
    }

    /// Errors (saying what to change) unless `1 ≤ k ≤ experts`, `expert_hidden ≥ 1` and the weights are ≥ 0.
    pub fn check(&self) -> Result<()> {
        if self.experts == 0 || self.k == 0 || self.k > self.experts {
            candle_core::bail!(
                "a mixture of experts needs 1 <= k <= experts; got k = {} of {} experts",
                self.k,
                self.experts
            )
        }
        if self.expert_hidden == 0 {
            candle_core::bail!("experts need at least one hidden unit; got expert_hidden = 0")
        }
        if !(self.w_importance >= 0.0 && self.w_load >= 0.0) {
            candle_core::bail!(
                "the balancing weights must be >= 0; got w_importance = {}, w_load = {}",
                self.w_importance,
                self.w_load
            )
        }
        Ok(())
    }
}

/// One expert: `E(x) = ReLU(x W_1ᵀ + b_1) W_2ᵀ + b_2`, a feed-forward net with one hidden layer (parameters
/// `{path}.hidden.*`, `{path}.out.*`).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::moe::Expert;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &Device::Cpu);
/// let e = Expert::new(4, 8, 3, vb)?;
/// assert_eq!(e.forward(&Tensor::ones((5, 4), DType::F32, &Device::Cpu)?)?.dims(), &[5, 3]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Expert {
    hidden: Dense,
    out: Dense,
}

impl Expert {
    /// An expert from `input` features through `hidden` ReLU units to `output` features.
    pub fn new(input: usize, hidden: usize, output: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Expert {
            hidden: Dense::new(input, hidden, Some(Activation::Relu), vb.pp("hidden"))?,
            out: Dense::new(hidden, output, None, vb.pp("out"))?,
        })
    }
}

impl Module for Expert {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // The plain products of the two layers (candle's matmul), not `Dense::forward`'s fused kernel: an expert
        // runs on the few rows routed to it (about k·b/n), and at that size the fused kernel's hand-off to the
        // worker threads costs more than the product (256 rows × 64 → 64 → 64: 2.9 ms fused, 0.13 ms plain, on
        // two busy cores). The dense layer a mixture is compared with is an `Expert` too, so both take this path.
        let hidden = self.hidden.linear().forward(x)?.relu()?; // ReLU(x W_1ᵀ + b_1)
        self.out.linear().forward(&hidden) // · W_2ᵀ + b_2
    }
}

/// `Φ(x)`, the standard normal CDF, element-wise: `Φ(x) = ½ (1 + erf(x / √2))`, with candle's `erf` (whose
/// backward pass is the exact derivative `2/√π · e^{−u²}`, so gradients reach `x`).
///
/// ```
/// use dlhist::prelude::*;
/// let x = Tensor::new(&[0.0f64, 1.0, -2.0], &Device::Cpu)?;
/// let p = dlhist::sequence_modeling::moe::normal_cdf(&x)?.to_vec1::<f64>()?;
/// assert!((p[0] - 0.5).abs() < 1e-12 && (p[1] - 0.841_344_746).abs() < 1e-8 && (p[2] - 0.022_750_132).abs() < 1e-8);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn normal_cdf(x: &Tensor) -> Result<Tensor> {
    (x.affine(std::f64::consts::FRAC_1_SQRT_2, 0.0)?.erf()? + 1.0)? * 0.5
}

/// `Softplus(z) = ln(1 + e^z)`, element-wise, written so that it neither overflows for large `z` nor has a kink:
/// `ln(1 + e^{min(z, 30)}) + max(z − 30, 0)` (beyond 30, `ln(1 + e^z)` and `z` agree to 1e-13).
///
/// ```
/// use dlhist::prelude::*;
/// let z = Tensor::new(&[0.0f64, 100.0, -5.0], &Device::Cpu)?;
/// let s = dlhist::sequence_modeling::moe::softplus(&z)?.to_vec1::<f64>()?;
/// assert!((s[0] - 2f64.ln()).abs() < 1e-12 && (s[1] - 100.0).abs() < 1e-9 && (s[2] - (1.0 + (-5f64).exp()).ln()).abs() < 1e-12);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn softplus(z: &Tensor) -> Result<Tensor> {
    let capped = z.minimum(30.0)?;
    (capped.exp()? + 1.0)?.log()? + (z - capped)?
}

/// `CV(v)² = Var(v) / Mean(v)²` of a vector (population variance), as a differentiable scalar tensor; 0 for a
/// vector of equal entries. A mean of 0 (nothing routed at all) gives 0 rather than a division by zero.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::moe::cv_squared;
/// let even = Tensor::new(&[3.0f32, 3.0, 3.0, 3.0], &Device::Cpu)?;
/// let one = Tensor::new(&[1.0f32, 0.0, 0.0, 0.0], &Device::Cpu)?;
/// assert_eq!(cv_squared(&even)?.to_scalar::<f32>()?, 0.0);
/// assert!((cv_squared(&one)?.to_scalar::<f32>()? - 3.0).abs() < 1e-6); // n − 1 when one expert takes everything
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn cv_squared(v: &Tensor) -> Result<Tensor> {
    let v = v.flatten_all()?;
    let mean = v.mean_all()?;
    let var = v.broadcast_sub(&mean)?.sqr()?.mean_all()?;
    // 1e-10 keeps an all-zero vector at 0 instead of 0/0.
    var.broadcast_div(&(mean.sqr()? + 1e-10)?)
}

/// The coefficient of variation `std / mean` (population) of a list of numbers, as the paper reports it.
///
/// ```
/// use dlhist::sequence_modeling::moe::cv;
/// assert_eq!(cv(&[2.0, 2.0, 2.0]), 0.0);
/// assert!((cv(&[1.0, 0.0, 0.0, 0.0]) - 3f64.sqrt()).abs() < 1e-12);
/// ```
pub fn cv(values: &[f64]) -> f64 {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    if mean == 0.0 {
        0.0
    } else {
        var.sqrt() / mean
    }
}

/// The noisy top-k gate of eqs. 3-5: `W_g` and `W_noise` (`[input, experts]`, parameters `{path}.w_gate` and
/// `{path}.w_noise`, both starting at zero as in the paper's appendix A) and the seeded generator of its noise.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::moe::NoisyTopKGate;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &Device::Cpu);
/// let gate = NoisyTopKGate::new(4, 8, 2, true, 7, vb)?;
/// let x = Tensor::ones((10, 4), DType::F32, &Device::Cpu)?;
/// let r = gate.route(&x, true)?; // training: noise decides, since W_g starts at zero
/// assert_eq!(r.gates().dims(), &[10, 2]);
/// assert_eq!(r.rows_per_expert().iter().sum::<usize>(), 10 * 2);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct NoisyTopKGate {
    w_gate: Tensor,
    w_noise: Tensor,
    k: usize,
    noisy: bool,
    rng: Mutex<Rng>,
}

/// Where a batch of rows goes: each row's `k` experts and their gate values, with what the balancing losses need.
#[derive(Debug, Clone)]
pub struct Routing {
    experts: usize,
    top: Vec<Vec<u32>>,
    gates: Tensor,
    clean: Tensor,
    h: Tensor,
    noise_std: Option<Tensor>,
    threshold: Option<Tensor>,
}

impl NoisyTopKGate {
    /// A gate from `input` features over `experts` experts keeping `k`, noisy in training when `noisy`, its
    /// noise drawn from `Rng::new(seed)`.
    pub fn new(input: usize, experts: usize, k: usize, noisy: bool, seed: u64, vb: VarBuilder) -> Result<Self> {
        let w_gate = vb.get_with_hints((input, experts), "w_gate", Init::Const(0.0))?;
        let w_noise = vb.get_with_hints((input, experts), "w_noise", Init::Const(0.0))?;
        Self::from_weights(w_gate, w_noise, k, noisy, seed)
    }

    /// A gate with the given `W_g` and `W_noise` (`[input, experts]` each).
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::sequence_modeling::moe::NoisyTopKGate;
    /// let w = Tensor::zeros((3, 4), DType::F32, &Device::Cpu)?;
    /// assert!(NoisyTopKGate::from_weights(w.clone(), w.clone(), 5, false, 0).is_err()); // k > experts
    /// assert_eq!(NoisyTopKGate::from_weights(w.clone(), w, 2, false, 0)?.experts(), 4);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn from_weights(w_gate: Tensor, w_noise: Tensor, k: usize, noisy: bool, seed: u64) -> Result<Self> {
        let (_, experts) = w_gate.dims2()?;
        if w_noise.dims() != w_gate.dims() {
            candle_core::bail!(
                "W_noise must have W_g's shape [input, experts]; got W_g {:?} and W_noise {:?}",
                w_gate.dims(),
                w_noise.dims()
            )
        }
        if k == 0 || k > experts {
            candle_core::bail!("the gate keeps 1 <= k <= experts; got k = {k} of {experts} experts")
        }
        Ok(NoisyTopKGate { w_gate, w_noise, k, noisy, rng: Mutex::new(Rng::new(seed)) })
    }

    /// Number of experts `n`.
    pub fn experts(&self) -> usize {
        self.w_gate.dims()[1]
    }

    /// Experts kept per row `k`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Routes the rows of `x` (`[N, input]`): with `train` and noisy gating, eq. 4's noise is drawn (the next
    /// numbers of the gate's generator); otherwise `H(x) = x·W_g`.
    pub fn route(&self, x: &Tensor, train: bool) -> Result<Routing> {
        let (input, experts) = self.w_gate.dims2()?;
        let (n, d) = x
            .dims2()
            .map_err(|_| candle_core::Error::Msg(format!("the gate expects rows [N, {input}]; got {:?}", x.dims())))?;
        if d != input {
            candle_core::bail!("the gate over {input} features got rows {:?} ([N, {input}] expected)", x.dims())
        }
        let clean = x.matmul(&self.w_gate.to_dtype(x.dtype())?)?; // (x·W_g)_i
        let (h, noise_std) = if train && self.noisy {
            let std = softplus(&x.matmul(&self.w_noise.to_dtype(x.dtype())?)?)?.maximum(1e-6)?; // floor: P divides by it
            let normal = {
                // The gate's own seeded stream: the same seed gives the same noise on every run.
                let mut rng = self.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                Tensor::from_vec(rng.normal_vec(n * experts, 0.0, 1.0), (n, experts), x.device())?
                    .to_dtype(x.dtype())?
            };
            ((&clean + (normal * &std)?)?, Some(std))
        } else {
            (clean.clone(), None)
        };
        // KeepTopK: the ranking is a host-side sort of each row (ties go to the lower expert index).
        let hv = h.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let order: Vec<Vec<u32>> = hv
            .iter()
            .map(|row| {
                let mut idx: Vec<u32> = (0..experts as u32).collect();
                idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
                idx
            })
            .collect();
        let top: Vec<Vec<u32>> = order.iter().map(|o| o[..self.k].to_vec()).collect();
        let top_index = Tensor::from_vec(top.concat(), (n, self.k), x.device())?;
        // Softmax over the k kept entries of H: the −∞ of eq. 5 give exactly 0 and need not be computed.
        let gates = candle_nn::ops::softmax(&h.gather(&top_index, 1)?, D::Minus1)?;
        // kth_excluding(H(x), k, i) for eq. 9: the (k+1)-th largest entry of the row when i is among the k kept
        // (leaving i out moves it up), the k-th otherwise. Taken from H itself, so gradients flow through it too.
        let threshold = match &noise_std {
            Some(_) if self.k < experts => {
                let mut idx = vec![0u32; n * experts];
                for (row, o) in order.iter().enumerate() {
                    for i in 0..experts as u32 {
                        let kept = o[..self.k].contains(&i);
                        idx[row * experts + i as usize] = if kept { o[self.k] } else { o[self.k - 1] };
                    }
                }
                Some(h.gather(&Tensor::from_vec(idx, (n, experts), x.device())?, 1)?)
            }
            _ => None,
        };
        Ok(Routing { experts, top, gates, clean, h, noise_std, threshold })
    }
}

impl Routing {
    /// Number of experts `n`.
    pub fn experts(&self) -> usize {
        self.experts
    }

    /// Each row's `k` experts, in decreasing order of `H(x)`.
    pub fn top(&self) -> &[Vec<u32>] {
        &self.top
    }

    /// The gate values `G(x)` of each row's `k` experts, `[N, k]`, in the order of [`Routing::top`]
    /// (differentiable with respect to `W_g`, `W_noise` and `x`).
    pub fn gates(&self) -> &Tensor {
        &self.gates
    }

    /// `G(x)` as a full `[N, n]` matrix, zero outside each row's `k` experts.
    pub fn gate_matrix(&self) -> Result<Tensor> {
        // Σ_j onehot(top_j) · G_j, a product with a constant mask: candle 0.11's backward pass of `scatter_add`
        // fails whenever the indices are narrower than the destination, so the scatter is written as a product.
        let (n, k) = self.gates.dims2()?;
        let mut mask = vec![0f32; n * k * self.experts];
        for (row, top) in self.top.iter().enumerate() {
            for (j, &e) in top.iter().enumerate() {
                mask[(row * k + j) * self.experts + e as usize] = 1.0;
            }
        }
        let mask = Tensor::from_vec(mask, (n, k, self.experts), self.gates.device())?.to_dtype(self.gates.dtype())?;
        self.gates.unsqueeze(2)?.broadcast_mul(&mask)?.sum(1)
    }

    /// `Importance(X) = Σ_x G(x)` (eq. 6), `[n]`.
    pub fn importance(&self) -> Result<Tensor> {
        self.gate_matrix()?.sum(0)
    }

    /// The rows each expert receives: the true, integer load.
    pub fn rows_per_expert(&self) -> Vec<usize> {
        let mut rows = vec![0; self.experts];
        for t in self.top.iter().flatten() {
            rows[*t as usize] += 1;
        }
        rows
    }

    /// `P(x, i)` of eq. 9, `[N, n]`, when the routing was noisy and `k < n`; `None` otherwise (then the load is
    /// the plain count).
    pub fn prob_selected(&self) -> Result<Option<Tensor>> {
        // No noise, or k = n (every expert always chosen): no smooth estimator.
        let (Some(std), Some(threshold)) = (&self.noise_std, &self.threshold) else { return Ok(None) };
        Ok(Some(normal_cdf(&((&self.clean - threshold)? / std)?)?))
    }

    /// `Load(X)`, `[n]`: the smooth estimator `Σ_x P(x, i)` of eq. 10 for noisy routing with `k < n`, else the
    /// count of rows per expert (no gradient).
    pub fn load(&self) -> Result<Tensor> {
        match self.prob_selected()? {
            Some(p) => p.sum(0),
            None => {
                let rows: Vec<f32> = self.rows_per_expert().iter().map(|&r| r as f32).collect();
                Tensor::from_vec(rows, self.experts, self.gates.device())?.to_dtype(self.gates.dtype())
            }
        }
    }

    /// `w_importance · CV(Importance(X))² + w_load · CV(Load(X))²` (eqs. 7 and 11), a scalar tensor.
    pub fn balancing_loss(&self, w_importance: f64, w_load: f64) -> Result<Tensor> {
        let zero = Tensor::zeros((), self.gates.dtype(), self.gates.device())?;
        let imp = if w_importance > 0.0 { (cv_squared(&self.importance()?)? * w_importance)? } else { zero.clone() };
        let load = if w_load > 0.0 { (cv_squared(&self.load()?)? * w_load)? } else { zero };
        imp + load
    }

    /// The clean logits `x·W_g`, `[N, n]`.
    pub fn clean_logits(&self) -> &Tensor {
        &self.clean
    }

    /// `H(x)`, `[N, n]` (the clean logits plus the noise, when there was noise).
    pub fn noisy_logits(&self) -> &Tensor {
        &self.h
    }
}

/// Runs each expert on the rows routed to it, and only on those: for expert `e`, gathers its rows of `x`
/// (`[N, D]`), calls `run(e, rows)` (which returns `[rows, out]`), weights each output row by its gate value and
/// scatter-adds it into row `x`'s place of the `[N, out]` result. Experts that receive no rows are not called.
/// Returns the result and the number of rows each expert ran on.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::moe::{dispatch, NoisyTopKGate};
/// let dev = Device::Cpu;
/// // Expert e multiplies by e + 1; the gate prefers expert 0 for the first row and expert 2 for the second.
/// let w_g = Tensor::new(&[[5f32, 0., -5.], [-5., 0., 5.]], &dev)?;
/// let gate = NoisyTopKGate::from_weights(w_g.clone(), w_g.zeros_like()?, 1, false, 0)?;
/// let x = Tensor::new(&[[1f32, 0.], [0., 1.]], &dev)?;
/// let r = gate.route(&x, false)?;
/// let (y, rows) = dispatch(&x, &r, 2, |e, rows| rows * (e as f64 + 1.0))?;
/// assert_eq!(y.to_vec2::<f32>()?, vec![vec![1., 0.], vec![0., 3.]]);
/// assert_eq!(rows, vec![1, 0, 1]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn dispatch(
    x: &Tensor,
    routing: &Routing,
    out: usize,
    mut run: impl FnMut(usize, &Tensor) -> Result<Tensor>,
) -> Result<(Tensor, Vec<usize>)> {
    let (n, _) = x.dims2()?;
    if routing.top.len() != n {
        candle_core::bail!("dispatch: {} routed rows but x is {:?}", routing.top.len(), x.dims())
    }
    let k = routing.gates.dims()[1];
    // Per expert: which rows, and where their gate values sit in the flattened [N·k] gates.
    let mut rows: Vec<Vec<u32>> = vec![vec![]; routing.experts];
    let mut slots: Vec<Vec<u32>> = vec![vec![]; routing.experts];
    for (row, experts) in routing.top.iter().enumerate() {
        for (j, &e) in experts.iter().enumerate() {
            rows[e as usize].push(row as u32);
            slots[e as usize].push((row * k + j) as u32);
        }
    }
    let flat_gates = routing.gates.flatten_all()?;
    let mut y = Tensor::zeros((n, out), x.dtype(), x.device())?;
    for e in 0..routing.experts {
        if rows[e].is_empty() {
            continue;
        }
        let idx = Tensor::new(rows[e].as_slice(), x.device())?;
        let weights = flat_gates.index_select(&Tensor::new(slots[e].as_slice(), x.device())?, 0)?.unsqueeze(1)?;
        let ye = run(e, &x.index_select(&idx, 0)?)?;
        if ye.dims() != [rows[e].len(), out] {
            candle_core::bail!(
                "expert {e} returned {:?} for {} rows; [{}, {out}] expected",
                ye.dims(),
                rows[e].len(),
                rows[e].len()
            )
        }
        y = y.index_add(&idx, &ye.broadcast_mul(&weights)?, 0)?; // Σ_i G(x)_i E_i(x), row by row
    }
    Ok((y, rows.iter().map(Vec::len).collect()))
}

/// The balancing loss of the latest training-mode forward pass of a [`SparseMoe`], shared between the layer
/// (which writes it) and the training loss (which takes it and adds it, [`MoeLmLoss`]).
///
/// ```
/// use dlhist::prelude::*;
/// let slot = dlhist::sequence_modeling::moe::AuxLoss::default();
/// assert!(slot.take().is_none());
/// slot.set(Tensor::new(0.5f32, &Device::Cpu)?);
/// assert_eq!(slot.take().unwrap().to_scalar::<f32>()?, 0.5);
/// assert!(slot.take().is_none()); // taken once
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct AuxLoss(Arc<Mutex<Option<Tensor>>>);

impl AuxLoss {
    /// Replaces the stored loss.
    pub fn set(&self, loss: Tensor) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(loss);
    }

    /// Takes the stored loss out, if any.
    pub fn take(&self) -> Option<Tensor> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// What one forward pass of a [`SparseMoe`] routed, as numbers: `Importance(X)`, `Load(X)` (smooth in noisy
/// training, else counts) and the rows each expert received.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingStats {
    /// `Importance(X)_i`.
    pub importance: Vec<f64>,
    /// `Load(X)_i`.
    pub load: Vec<f64>,
    /// Rows expert `i` ran on.
    pub rows: Vec<usize>,
}

impl RoutingStats {
    /// `CV(Importance(X))`.
    ///
    /// ```
    /// use dlhist::sequence_modeling::moe::RoutingStats;
    /// let s = RoutingStats { importance: vec![1.0, 1.0], load: vec![2.0, 0.0], rows: vec![2, 0] };
    /// assert_eq!((s.cv_importance(), s.cv_load()), (0.0, 1.0));
    /// ```
    pub fn cv_importance(&self) -> f64 {
        cv(&self.importance)
    }

    /// `CV(Load(X))`.
    pub fn cv_load(&self) -> f64 {
        cv(&self.load)
    }
}

/// The sparsely-gated mixture-of-experts layer: a [`NoisyTopKGate`] (`{path}.gate`) and `n` [`Expert`]s
/// (`{path}.experts.{i}`), applied to every row of `[.., input]` ("convolutionally", every token on its own).
/// In training mode it leaves its balancing loss in [`SparseMoe::aux_loss`] and its routing in
/// [`SparseMoe::last_stats`]; in every mode it adds the rows each expert ran on to [`SparseMoe::usage`].
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::moe::{MoeConfig, SparseMoe};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let moe = SparseMoe::new(6, 6, MoeConfig::new(8, 2, 16), 1, vb.pp("moe"))?;
/// let x = Tensor::ones((3, 5, 6), DType::F32, &dev)?; // 15 tokens
/// assert_eq!(moe.forward_t(&x, true)?.dims(), &[3, 5, 6]);
/// assert!(moe.aux_loss().take().is_some());
/// assert_eq!(moe.usage().iter().sum::<usize>(), 15 * 2); // k expert runs per token, whatever n is
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct SparseMoe {
    gate: NoisyTopKGate,
    experts: Vec<Expert>,
    config: MoeConfig,
    output: usize,
    aux: AuxLoss,
    last: Mutex<Option<RoutingStats>>,
    usage: Mutex<Vec<usize>>,
}

impl SparseMoe {
    /// A layer from `input` to `output` features; `seed` seeds the gate's noise.
    pub fn new(input: usize, output: usize, config: MoeConfig, seed: u64, vb: VarBuilder) -> Result<Self> {
        config.check()?;
        let gate = NoisyTopKGate::new(input, config.experts, config.k, config.noisy, seed, vb.pp("gate"))?;
        let experts = (0..config.experts)
            .map(|i| Expert::new(input, config.expert_hidden, output, vb.pp("experts").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(SparseMoe {
            gate,
            experts,
            config,
            output,
            aux: AuxLoss::default(),
            last: Mutex::new(None),
            usage: Mutex::new(vec![0; config.experts]),
        })
    }

    /// The layer's settings.
    pub fn config(&self) -> MoeConfig {
        self.config
    }

    /// The gate.
    pub fn gate(&self) -> &NoisyTopKGate {
        &self.gate
    }

    /// The rows `x` (`[N, input]`) through the layer: the output `[N, output]` and the routing.
    pub fn forward_routed(&self, x: &Tensor, train: bool) -> Result<(Tensor, Routing)> {
        let routing = self.gate.route(x, train)?;
        let (y, rows) = dispatch(x, &routing, self.output, |e, rows| self.experts[e].forward(rows))?;
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        usage.iter_mut().zip(&rows).for_each(|(u, r)| *u += r);
        Ok((y, routing))
    }

    /// A handle on the balancing loss the latest training-mode forward pass left.
    pub fn aux_loss(&self) -> AuxLoss {
        self.aux.clone()
    }

    /// Importance, load and rows of the latest training-mode forward pass.
    pub fn last_stats(&self) -> Option<RoutingStats> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rows each expert ran on since the layer was built or [`SparseMoe::reset_usage`] was called.
    pub fn usage(&self) -> Vec<usize> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the usage counts back to zero.
    pub fn reset_usage(&self) {
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).iter_mut().for_each(|u| *u = 0);
    }
}

fn to_f64s(t: &Tensor) -> Result<Vec<f64>> {
    t.to_dtype(DType::F64)?.to_vec1::<f64>()
}

impl ModuleT for SparseMoe {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let input = self.gate.w_gate.dims()[0];
        if dims.last() != Some(&input) {
            candle_core::bail!("the mixture of experts over {input} features expects [.., {input}]; got {dims:?}")
        }
        let rows = x.reshape(((), input))?;
        let (y, routing) = self.forward_routed(&rows, train)?;
        if train {
            self.aux.set(routing.balancing_loss(self.config.w_importance, self.config.w_load)?);
            let stats = RoutingStats {
                importance: to_f64s(&routing.importance()?)?,
                load: to_f64s(&routing.load()?)?,
                rows: routing.rows_per_expert(),
            };
            *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats);
        }
        let mut out_dims = dims;
        *out_dims.last_mut().expect("checked above") = self.output;
        y.reshape(out_dims)
    }
}

/// The position-wise layer between the two recurrent layers of a [`MoeLm`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ffn {
    /// None: the LSTMs alone.
    Identity,
    /// One dense feed-forward net ([`Expert`]) of this many hidden units: with `k · expert_hidden` units, the
    /// compute per token of a mixture that runs `k` experts.
    Dense(usize),
    /// A [`SparseMoe`].
    Moe(MoeConfig),
}

/// A language model after the paper's section 5.1 and appendix C, shrunk to run on a CPU: one-hot tokens →
/// LSTM → `h + F(h)` (the position-wise layer with a residual connection) → LSTM (optional) → linear readout
/// of next-token scores `[B, T, vocab]`. Parameters under `{path}.lstm1`, `{path}.ffn`, `{path}.lstm2`,
/// `{path}.readout`. The paper also embeds words, applies dropout, and squashes the MoE output with a
/// sigmoid; this model does none of these.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::moe::{Ffn, MoeConfig, MoeLm};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let lm = MoeLm::new(10, 16, Ffn::Moe(MoeConfig::new(4, 2, 8)), true, 3, vb.pp("lm"))?;
/// let ids = Tensor::new(&[[1u32, 2, 3], [4, 5, 6]], &dev)?;
/// assert_eq!(lm.forward_t(&ids, false)?.dims(), &[2, 3, 10]);
/// assert!(lm.moe().is_some());
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct MoeLm {
    lstm1: Lstm,
    dense: Option<Expert>,
    moe: Option<SparseMoe>,
    lstm2: Option<Lstm>,
    readout: Dense,
    vocab: usize,
}

impl MoeLm {
    /// A model over `vocab` tokens with `hidden` LSTM units (also the width of the position-wise layer), the
    /// position-wise layer `ffn`, and a second LSTM when `second_lstm`; `seed` seeds the gate's noise.
    pub fn new(vocab: usize, hidden: usize, ffn: Ffn, second_lstm: bool, seed: u64, vb: VarBuilder) -> Result<Self> {
        let lstm1 = Lstm::new(vocab, hidden, vb.pp("lstm1"))?;
        let (dense, moe) = match ffn {
            Ffn::Identity => (None, None),
            Ffn::Dense(units) => (Some(Expert::new(hidden, units, hidden, vb.pp("ffn"))?), None),
            Ffn::Moe(cfg) => (None, Some(SparseMoe::new(hidden, hidden, cfg, seed, vb.pp("ffn"))?)),
        };
        let lstm2 = if second_lstm { Some(Lstm::new(hidden, hidden, vb.pp("lstm2"))?) } else { None };
        Ok(MoeLm { lstm1, dense, moe, lstm2, readout: Dense::new(hidden, vocab, None, vb.pp("readout"))?, vocab })
    }

    /// The mixture-of-experts layer, if the model has one.
    pub fn moe(&self) -> Option<&SparseMoe> {
        self.moe.as_ref()
    }

    /// The training loss of this model: next-token cross-entropy, plus the MoE's balancing loss in training.
    pub fn loss(&self) -> MoeLmLoss {
        MoeLmLoss { aux: self.moe.as_ref().map(SparseMoe::aux_loss) }
    }
}

impl ModuleT for MoeLm {
    /// Token ids `[B, T]` → next-token scores `[B, T, vocab]`.
    fn forward_t(&self, ids: &Tensor, train: bool) -> Result<Tensor> {
        let x = candle_nn::encoding::one_hot(ids.clone(), self.vocab, 1f32, 0f32)?;
        let h = self.lstm1.forward(&x)?;
        let h = match (&self.dense, &self.moe) {
            (Some(ffn), _) => (&h + ffn.forward(&h)?)?,
            (_, Some(moe)) => (&h + moe.forward_t(&h, train)?)?,
            _ => h,
        };
        let h = match &self.lstm2 {
            Some(lstm) => lstm.forward(&h)?,
            None => h,
        };
        self.readout.forward(&h)
    }
}

/// Cross-entropy of next-token scores `[B, T, V]` against the next tokens `[B, T]` (mean over all `B·T`), plus,
/// in training, the balancing loss its [`MoeLm`] left in the [`AuxLoss`] slot. [`crate::train::evaluate`] runs
/// the model in evaluation mode, where no balancing loss is left, so it reports the plain cross-entropy.
#[derive(Debug, Clone)]
pub struct MoeLmLoss {
    aux: Option<AuxLoss>,
}

impl Loss for MoeLmLoss {
    fn compute(&self, scores: &Tensor, next: &Tensor) -> crate::Result<Tensor> {
        let (b, t, _) = scores.dims3().map_err(|_| {
            crate::Error::Invalid(format!("language-model scores must be [B, T, V]; got {:?}", scores.dims()))
        })?;
        if next.dims() != [b, t] {
            return Err(crate::Error::Invalid(format!(
                "next tokens must be [B, T] = [{b}, {t}] to match scores {:?}; got {:?}",
                scores.dims(),
                next.dims()
            )));
        }
        let ce = crate::layers::token_cross_entropy(scores, next)?;
        Ok(match self.aux.as_ref().and_then(AuxLoss::take) {
            Some(aux) => (ce + aux.to_dtype(scores.dtype())?)?,
            None => ce,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::{central_differences, values_f64};
    use candle_core::Var;

    fn tensor(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &crate::device::test_device()).unwrap()
    }

    fn normals(n: usize, seed: u64) -> Vec<f64> {
        Rng::new(seed).normal_vec(n, 0.0, 1.0).into_iter().map(f64::from).collect()
    }

    /// With k = n and no noise, the layer is the dense softmax mixture Σ_i softmax(x·W_g)_i E_i(x).
    #[test]
    fn k_equal_to_n_without_noise_is_the_dense_softmax_mixture() -> Result<()> {
        let dev = crate::device::test_device();
        let (_vars, vb) = crate::init::seeded(1, DType::F64, &dev);
        let cfg = MoeConfig { noisy: false, ..MoeConfig::new(5, 5, 7) };
        let moe = SparseMoe::new(3, 4, cfg, 0, vb.pp("moe"))?;
        // Give W_g non-zero values so the gates differ between experts.
        let w_g = Tensor::from_vec(normals(15, 2), (3, 5), &dev)?;
        let moe = SparseMoe { gate: NoisyTopKGate::from_weights(w_g.clone(), w_g.zeros_like()?, 5, false, 0)?, ..moe };
        let x = Tensor::from_vec(normals(24, 3), (8, 3), &dev)?;
        let got = moe.forward_t(&x, true)?;
        let probs = candle_nn::ops::softmax(&x.matmul(&w_g)?, 1)?;
        let mut want = Tensor::zeros((8, 4), DType::F64, &dev)?;
        for (i, e) in moe.experts.iter().enumerate() {
            want = (want + e.forward(&x)?.broadcast_mul(&probs.narrow(1, i, 1)?)?)?;
        }
        let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f64>()?;
        assert!(diff < 1e-12, "{diff}");
        Ok(())
    }

    /// The k kept experts are the k largest entries of H(x), in order; G sums to 1 over them and is 0 elsewhere.
    #[test]
    fn top_k_routing_picks_the_k_largest() -> Result<()> {
        let dev = crate::device::test_device();
        let (n, d, e, k) = (40, 5, 9, 3);
        let w_g = Tensor::from_vec(normals(d * e, 4), (d, e), &dev)?;
        let gate = NoisyTopKGate::from_weights(w_g.clone(), w_g.zeros_like()?, k, true, 0)?;
        let x = Tensor::from_vec(normals(n * d, 5), (n, d), &dev)?;
        let r = gate.route(&x, false)?;
        let logits = x.matmul(&w_g)?.to_vec2::<f64>()?;
        let g = r.gate_matrix()?.to_vec2::<f64>()?;
        for (row, l) in logits.iter().enumerate() {
            let mut idx: Vec<usize> = (0..e).collect();
            idx.sort_by(|&a, &b| l[b].total_cmp(&l[a]));
            let want: Vec<u32> = idx[..k].iter().map(|&i| i as u32).collect();
            assert_eq!(r.top()[row], want, "row {row}");
            assert!((g[row].iter().sum::<f64>() - 1.0).abs() < 1e-12);
            for (i, gi) in g[row].iter().enumerate() {
                assert_eq!(*gi > 0.0, want.contains(&(i as u32)), "row {row} expert {i}");
            }
            // Softmax over the kept logits only.
            let z: f64 = want.iter().map(|&i| l[i as usize].exp()).sum();
            assert!((g[row][want[0] as usize] - l[want[0] as usize].exp() / z).abs() < 1e-12);
        }
        Ok(())
    }

    /// Every row runs exactly k experts: the rows the experts run on add up to N·k for 4 experts as for 16,
    /// and each expert is called on its own rows only.
    #[test]
    fn compute_scales_with_k_not_with_the_number_of_experts() -> Result<()> {
        let dev = crate::device::test_device();
        let n = 64;
        let x = Tensor::from_vec(normals(n * 6, 6).iter().map(|&v| v as f32).collect::<Vec<_>>(), (n, 6), &dev)?;
        for experts in [4, 16] {
            let (_vars, vb) = crate::init::seeded(7, DType::F32, &dev);
            let gate = NoisyTopKGate::new(6, experts, 2, true, 8, vb)?;
            let r = gate.route(&x, true)?;
            let mut called = vec![0usize; experts];
            let (_, rows) = dispatch(&x, &r, 6, |e, rows| {
                called[e] += rows.dims()[0];
                Ok(rows.clone())
            })?;
            assert_eq!(rows, called);
            assert_eq!(rows, r.rows_per_expert());
            assert_eq!(rows.iter().sum::<usize>(), n * 2, "{experts} experts");
        }
        Ok(())
    }

    /// The same seed gives the same noise, hence the same routing; another seed another; evaluation has none.
    #[test]
    fn seeded_noise_is_reproducible_and_only_in_training() -> Result<()> {
        let dev = crate::device::test_device();
        let x = Tensor::from_vec(normals(30 * 4, 9).iter().map(|&v| v as f32).collect::<Vec<_>>(), (30, 4), &dev)?;
        let w = Tensor::zeros((4, 8), DType::F32, &dev)?;
        let gate = |seed| NoisyTopKGate::from_weights(w.clone(), w.clone(), 2, true, seed).unwrap();
        let (a, b, c) = (gate(1).route(&x, true)?, gate(1).route(&x, true)?, gate(2).route(&x, true)?);
        assert_eq!(a.top(), b.top());
        assert_eq!(a.gates().to_vec2::<f32>()?, b.gates().to_vec2::<f32>()?);
        assert_ne!(a.top(), c.top());
        // Evaluation: H = x·W_g = 0 everywhere, ties to the lowest indices, the same every time.
        let e = gate(1).route(&x, false)?;
        assert!(e.top().iter().all(|t| t == &[0, 1]));
        Ok(())
    }

    /// CV² is zero for perfectly balanced routing, and both losses vanish there.
    #[test]
    fn balancing_losses_are_zero_for_balanced_routing() -> Result<()> {
        let dev = crate::device::test_device();
        // Row i prefers expert i by far, k = 1: every expert gets one row with gate 1.
        let w_g = (Tensor::eye(4, DType::F64, &dev)? * 20.0)?;
        let gate = NoisyTopKGate::from_weights(w_g.clone(), w_g.zeros_like()?, 1, false, 0)?;
        let r = gate.route(&Tensor::eye(4, DType::F64, &dev)?, true)?;
        assert_eq!(r.rows_per_expert(), vec![1, 1, 1, 1]);
        assert_eq!(r.balancing_loss(1.0, 1.0)?.to_scalar::<f64>()?, 0.0);
        // All rows to expert 0: CV² = n − 1 = 3 for each loss.
        let r = gate.route(&Tensor::new(&[[1f64, 0., 0., 0.]; 4], &dev)?, true)?;
        assert_eq!(r.rows_per_expert(), vec![4, 0, 0, 0]);
        assert!((r.balancing_loss(1.0, 1.0)?.to_scalar::<f64>()? - 6.0).abs() < 1e-6);
        Ok(())
    }

    /// P(x, i) is the probability, over a fresh draw of expert i's noise, that i is among the k kept: checked
    /// against counting over many draws.
    #[test]
    fn smooth_load_is_the_probability_of_being_selected() -> Result<()> {
        let (d, e, k) = (3, 5, 2);
        let w_g = tensor(&normals(d * e, 11), &[d, e]);
        let w_noise = (tensor(&normals(d * e, 12), &[d, e]) * 0.5)?;
        let x = tensor(&normals(d, 13), &[1, d]);
        let r = NoisyTopKGate::from_weights(w_g.clone(), w_noise.clone(), k, true, 14)?.route(&x, true)?;
        let p = r.prob_selected()?.expect("noisy, k < n").flatten_all()?.to_vec1::<f64>()?;
        let h = r.noisy_logits().flatten_all()?.to_vec1::<f64>()?;
        let clean = x.matmul(&w_g)?.flatten_all()?.to_vec1::<f64>()?;
        let std = softplus(&x.matmul(&w_noise)?)?.flatten_all()?.to_vec1::<f64>()?;
        let mut rng = Rng::new(15);
        let draws = 200_000;
        for i in 0..e {
            let mut others: Vec<f64> = (0..e).filter(|&j| j != i).map(|j| h[j]).collect();
            others.sort_by(|a, b| b.total_cmp(a));
            let kth = others[k - 1];
            let hits = (0..draws).filter(|_| clean[i] + rng.normal() as f64 * std[i] > kth).count();
            let freq = hits as f64 / draws as f64;
            assert!((freq - p[i]).abs() < 4e-3, "expert {i}: P = {} but {freq} of the draws", p[i]);
        }
        Ok(())
    }

    /// Autograd's gradients of task and balancing losses, with respect to W_g, W_noise, the experts' weights and
    /// the input, against f64 central differences (the same noise in every evaluation: a fresh gate, one seed).
    #[test]
    fn gradients_reach_the_gate_and_the_experts() -> Result<()> {
        let (n, d, e, k, h) = (6, 3, 4, 2, 5);
        let shapes: [&[usize]; 4] = [&[d, e], &[d, e], &[e, h, d], &[n, d]];
        let p: Vec<Vec<f64>> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| normals(s.iter().product(), 20 + i as u64).iter().map(|v| v * 0.7).collect())
            .collect();
        let r = normals(n * d, 30);
        // y = Σ_i G_i tanh(x W_i ᵀ)·… : experts tanh(W_e x) mapped back to d by W_eᵀ (smooth, so differences work).
        let forward = |p: &[Vec<f64>], vars: Option<&[Var]>| -> Result<Tensor> {
            let t: Vec<Tensor> = match vars {
                Some(v) => v.iter().map(|v| v.as_tensor().clone()).collect(),
                None => p.iter().zip(shapes).map(|(v, s)| tensor(v, s)).collect(),
            };
            let gate = NoisyTopKGate::from_weights(t[0].clone(), t[1].clone(), k, true, 99)?;
            let routing = gate.route(&t[3], true)?;
            let (y, _) = dispatch(&t[3], &routing, d, |i, rows| {
                let w = t[2].get(i)?; // [h, d]
                rows.matmul(&w.t()?)?.tanh()?.matmul(&w)
            })?;
            (y * tensor(&r, &[n, d]))?.sum_all()? + routing.balancing_loss(0.3, 0.7)?
        };
        let vars: Vec<Var> =
            p.iter().zip(shapes).map(|(v, s)| Var::from_tensor(&tensor(v, s))).collect::<Result<_>>()?;
        let grads = forward(&p, Some(&vars))?.backward()?;
        let want = central_differences(&p, |q| forward(q, None).unwrap().to_scalar::<f64>().unwrap());
        for ((v, w), name) in vars.iter().zip(&want).zip(["W_g", "W_noise", "experts", "x"]) {
            let got = values_f64(grads.get(v).unwrap_or_else(|| panic!("{name} has no gradient")));
            assert!(got.iter().any(|g| g.abs() > 1e-3), "{name}: all gradients ~0");
            for (g, w) in got.iter().zip(w) {
                assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "{name}: autograd {g} vs differences {w}");
            }
        }
        Ok(())
    }

    /// The language model trains through fit's loss: the balancing loss is added in training only.
    #[test]
    fn the_lm_loss_adds_the_balancing_loss_in_training_only() -> Result<()> {
        let dev = crate::device::test_device();
        let (_vars, vb) = crate::init::seeded(3, DType::F32, &dev);
        let lm = MoeLm::new(7, 8, Ffn::Moe(MoeConfig { w_importance: 10.0, ..MoeConfig::new(4, 2, 6) }), false, 1, vb)?;
        let ids = Tensor::new(&[[1u32, 2, 3, 4], [5, 6, 0, 1]], &dev)?;
        let next = Tensor::new(&[[2u32, 3, 4, 5], [6, 0, 1, 2]], &dev)?;
        let loss = lm.loss();
        let eval = loss.compute(&lm.forward_t(&ids, false)?, &next).unwrap().to_scalar::<f32>()?;
        let ce = crate::layers::cross_entropy(&lm.forward_t(&ids, false)?.reshape((8, 7))?, &next.flatten_all()?)?;
        assert_eq!(eval, ce.to_scalar::<f32>()?);
        let scores = lm.forward_t(&ids, true)?;
        let aux = lm.moe().unwrap().aux_loss().take().unwrap().to_scalar::<f32>()?;
        lm.moe().unwrap().aux_loss().set(Tensor::new(aux, &dev)?);
        let train = loss.compute(&scores, &next).unwrap().to_scalar::<f32>()?;
        let ce = crate::layers::cross_entropy(&scores.reshape((8, 7))?, &next.flatten_all()?)?.to_scalar::<f32>()?;
        assert!(aux > 0.0 && (train - (ce + aux)).abs() < 1e-5, "train {train}, cross-entropy {ce}, aux {aux}");
        assert!(loss.compute(&scores, &next).unwrap().to_scalar::<f32>()? == ce); // taken once
        Ok(())
    }
}
