//! # LoRA: a frozen dense layer plus a trainable low-rank update
//!
//! E. J. Hu, Y. Shen, P. Wallis, Z. Allen-Zhu, Y. Li, S. Wang, L. Wang and W. Chen, "LoRA: Low-Rank Adaptation of
//! Large Language Models", 2021 (ICLR 2022). <https://arxiv.org/abs/2106.09685>
//!
//! Fine-tuning changes a pretrained weight `W₀ [d, k]` by some `ΔW`. LoRA bets that the change a new task needs has
//! low rank, and trains it in factored form while `W₀` stays frozen (the paper's equation 3):
//!
//! ```text
//! h = W₀ x + ΔW x = W₀ x + (α / r) · B A x,      A [r, k] random Gaussian,  B [d, r] zero,  r ≪ min(d, k)
//! ```
//!
//! - `B = 0` at the start, so the adapted layer computes exactly what the pretrained one did: training starts from
//!   the pretrained model, not from a perturbed copy of it. `A` must not be zero as well: with both zero every
//!   gradient (`∂L/∂B = g (A x)ᵀ`, `∂L/∂A = Bᵀ g xᵀ`) is zero and nothing ever moves.
//! - `α / r` scales the update so that changing `r` does not change how far a step moves the output, and the
//!   learning rate tuned for one rank carries over to the others (the paper sets `α` to the first `r` it tries).
//! - Trainable parameters: `r (d + k)` in place of `d k`.
//! - Nothing is added at inference: [`LoraDense::merge`] folds the update into one weight, `W = W₀ + (α/r) B A`.
//!
//! [`LoraDense::forward_factored`] computes the equation as written, with two thin products: the plain path. The fused
//! path builds `W₀ + (α/r) B A` and runs one fused product, which is faster at our sizes.
//!
//! [`LoraDense`] may adapt only some rows of `W₀`, as when the queries, keys and values share one packed matrix and
//! only the queries' and values' rows are adapted (the paper's choice for GPT-3, its section 4.2).

use std::ops::Range;

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder};

use super::Dense;

/// The rank `r` and the scale `α` of low-rank adapters; the update is multiplied by `α / r`.
///
/// ```
/// let cfg = dlhist::layers::LoraConfig::new(4, 8.0);
/// assert_eq!(cfg.scale(), 2.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraConfig {
    /// The rank `r` of the update `B A`.
    pub rank: usize,
    /// `α`: the update is scaled by `α / r`.
    pub alpha: f64,
}

impl LoraConfig {
    /// Rank `rank` with scale `alpha`.
    pub fn new(rank: usize, alpha: f64) -> Self {
        LoraConfig { rank, alpha }
    }

    /// The factor `α / r` that multiplies `B A x`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// One low-rank update of the output rows `rows` of a weight: `B [rows.len(), r] · A [r, k]`.
#[derive(Debug, Clone)]
struct Adapter {
    rows: Range<usize>,
    a: Tensor,
    b: Tensor,
}

/// A [`Dense`] layer whose weight is frozen, plus trainable low-rank updates of some of its output rows (module
/// docs). Without adapters ([`LoraDense::frozen`]) it is the dense layer itself.
///
/// The adapters' parameters are `{path}.lora_a.{i}` (`[r, k]`, Gaussian with standard deviation `1/√k`) and
/// `{path}.lora_b.{i}` (`[len, r]`, zero), one pair per adapted row range `i`. Freezing is by construction: train
/// with an optimizer over the variables of the `VarBuilder` the adapters came from, and build the base layer from
/// tensors that are not variables (or leave its variables out of the optimizer).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::{Dense, LoraConfig, LoraDense};
/// let dev = Device::Cpu;
/// let (_base_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let base = Dense::new(8, 6, None, vb.pp("fc"))?;
/// let (lora_vars, lora_vb) = dlhist::init::seeded(1, DType::F32, &dev);
/// // Adapt output rows 0..2 and 4..6 with rank 2.
/// let layer = LoraDense::new(base.clone(), LoraConfig::new(2, 2.0), &[0..2, 4..6], lora_vb.pp("fc"))?;
/// assert_eq!(dlhist::init::param_count(&lora_vars), 2 * (2 * 8 + 2 * 2));
/// // B starts at zero: the adapted layer computes what the pretrained one did.
/// let x = Tensor::ones((3, 8), DType::F32, &dev)?;
/// let gap = (layer.forward(&x)? - base.forward(&x)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
/// assert_eq!(gap, 0.0);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LoraDense {
    base: Dense,
    adapters: Vec<Adapter>,
    scale: f64,
    /// `W₀ + (α/r) B A` as one dense layer, while merged (see [`LoraDense::merge`]).
    merged: Option<Dense>,
}

impl LoraDense {
    /// The dense layer `base` with no adapter: computes exactly `base.forward`.
    pub fn frozen(base: Dense) -> Self {
        LoraDense { base, adapters: vec![], scale: 0.0, merged: None }
    }

    /// `base` with one rank-`cfg.rank` adapter per range of output rows in `rows` (each within `0..d` and not
    /// overlapping another), its parameters from `vb` (see the type's docs).
    pub fn new(base: Dense, cfg: LoraConfig, rows: &[Range<usize>], vb: VarBuilder) -> Result<Self> {
        let w = base.linear().weight();
        let (d, k) = w.dims2()?;
        if cfg.rank == 0 || !(cfg.alpha.is_finite() && cfg.alpha > 0.0) {
            candle_core::bail!(
                "LoraDense: rank {} and alpha {} must be positive (the update is scaled by alpha / rank)",
                cfg.rank,
                cfg.alpha
            )
        }
        let mut sorted: Vec<&Range<usize>> = rows.iter().collect();
        sorted.sort_by_key(|r| r.start);
        for (i, r) in sorted.iter().enumerate() {
            if r.is_empty() || r.end > d || (i > 0 && sorted[i - 1].end > r.start) {
                candle_core::bail!(
                    "LoraDense: the adapted rows {rows:?} must be non-empty, non-overlapping ranges within 0..{d} \
                     (the layer has {d} outputs)"
                )
            }
        }
        let mut adapters: Vec<Adapter> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                // A random, B zero: ΔW = B A starts at zero, and the gradient of B (g (A x)ᵀ) does not.
                let a = vb.get_with_hints(
                    (cfg.rank, k),
                    &format!("lora_a.{i}"),
                    Init::Randn { mean: 0.0, stdev: 1.0 / (k as f64).sqrt() },
                )?;
                let b = vb.get_with_hints((r.len(), cfg.rank), &format!("lora_b.{i}"), Init::Const(0.0))?;
                Ok(Adapter { rows: r.clone(), a, b })
            })
            .collect::<Result<_>>()?;
        // In row order, so that the forward pass lays the updates side by side.
        adapters.sort_by_key(|a| a.rows.start);
        Ok(LoraDense { base, adapters, scale: cfg.scale(), merged: None })
    }

    /// `base` with one rank-`cfg.rank` adapter over all its output rows.
    pub fn full(base: Dense, cfg: LoraConfig, vb: VarBuilder) -> Result<Self> {
        let rows = base.linear().weight().dims2()?.0;
        Self::new(base, cfg, std::slice::from_ref(&(0..rows)), vb)
    }

    /// The frozen layer `W₀`.
    pub fn base(&self) -> &Dense {
        &self.base
    }

    /// The update `ΔW = (α/r) · B A` as a full `[d, k]` matrix, zero in the rows no adapter touches.
    pub fn delta_weight(&self) -> Result<Tensor> {
        let w = self.base.linear().weight();
        let (d, k) = w.dims2()?;
        // The adapted row ranges, in order, with zero rows between them; differentiable in A and B.
        let (mut blocks, mut at) = (Vec::with_capacity(2 * self.adapters.len() + 1), 0);
        for ad in &self.adapters {
            if ad.rows.start > at {
                blocks.push(Tensor::zeros((ad.rows.start - at, k), w.dtype(), w.device())?);
            }
            blocks.push((ad.b.matmul(&ad.a)? * self.scale)?);
            at = ad.rows.end;
        }
        if d > at {
            blocks.push(Tensor::zeros((d - at, k), w.dtype(), w.device())?);
        }
        if blocks.len() == 1 {
            return Ok(blocks.pop().expect("one block"));
        }
        Tensor::cat(&blocks, 0)
    }

    /// Folds the update into the weight, `W = W₀ + (α/r) B A`, so that [`Module::forward`] is one product again,
    /// with no cost for the adapters (the paper's "no additional inference latency"). The merged weight is a
    /// constant: [`LoraDense::unmerge`] before training the adapters further.
    pub fn merge(&mut self) -> Result<()> {
        if self.adapters.is_empty() {
            return Ok(());
        }
        let lin = self.base.linear();
        let w = (lin.weight() + self.delta_weight()?)?.detach();
        self.merged = Some(Dense::from_linear(Linear::new(w, lin.bias().cloned()), self.base.activation()));
        Ok(())
    }

    /// Back to `W₀` plus the separate update; `W₀` itself was never changed, so this is exact.
    pub fn unmerge(&mut self) {
        self.merged = None;
    }

    /// [`LoraDense::merge`] when `merged`, else [`LoraDense::unmerge`].
    pub fn set_merged(&mut self, merged: bool) -> Result<()> {
        if merged {
            self.merge()
        } else {
            self.unmerge();
            Ok(())
        }
    }

    /// Whether the update is folded into the weight.
    pub fn is_merged(&self) -> bool {
        self.merged.is_some()
    }
}

impl LoraDense {
    /// The paper's equation as written, `f(W₀ x + b + (α/r) B (A x))`: two thin products per adapted range of rows
    /// (`A x` is `[N, r]`), never the `[d, k]` matrix `B A`. This is [`Module::forward`]'s plain path; its fused
    /// path builds `W₀ + (α/r) B A` instead (see there), and the tests hold the two equal.
    pub fn forward_factored(&self, x: &Tensor) -> Result<Tensor> {
        // h = W₀ x + b: the frozen layer without its activation, which comes after the update.
        let h = Dense::from_linear(self.base.linear().clone(), None).forward(x)?;
        let d = h.dims().last().copied().unwrap_or(0);
        let k = self.base.linear().weight().dims()[1];
        let x2 = x.reshape(((), k))?;
        let n = x2.dims()[0];
        let (mut pieces, mut at) = (Vec::with_capacity(2 * self.adapters.len() + 1), 0);
        for ad in &self.adapters {
            if ad.rows.start > at {
                pieces.push(Tensor::zeros((n, ad.rows.start - at), x.dtype(), x.device())?);
            }
            // The scale multiplies the thin [N, r] product, the cheaper place.
            pieces.push((x2.matmul(&ad.a.t()?)? * self.scale)?.matmul(&ad.b.t()?)?);
            at = ad.rows.end;
        }
        if d > at {
            // Rows no adapter touches get no update.
            pieces.push(Tensor::zeros((n, d - at), x.dtype(), x.device())?);
        }
        let update = Tensor::cat(&pieces, 1)?.reshape(h.shape())?;
        crate::activation::apply(self.base.activation(), (h + update)?)
    }
}

impl Module for LoraDense {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(merged) = &self.merged {
            return merged.forward(x);
        }
        if self.adapters.is_empty() {
            return self.base.forward(x);
        }
        if !crate::fast::applies(&[x]) {
            // Plain: the paper's equation as written (`forward_factored`), on other devices and under
            // DLHIST_FUSED=0.
            return self.forward_factored(x);
        }
        // Fused: f((W₀ + (α/r) B A) x + b). The update is built as a [d, k] matrix in the graph (r d k
        // multiplications, nothing next to the N d k of the product itself) and the layer runs as one fused
        // product, activation included; the gradient reaches A and B through the sum. On a CPU at our sizes this
        // takes half the time of the two thin products (measured: 600 training steps of the LoRA notebook's model
        // with every weight adapted, 30 s against 56 s), whose many small operations cost more than the flops they
        // save.
        let lin = self.base.linear();
        let w = (lin.weight() + self.delta_weight()?)?;
        Dense::from_linear(Linear::new(w, lin.bias().cloned()), self.base.activation()).forward(x)
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // one range of rows is a list of one
mod tests {
    use super::*;
    use crate::init::seeded;
    use candle_core::{DType, Device, Var};
    use candle_nn::Optimizer;

    fn base(dev: &Device) -> Result<Dense> {
        let (_, vb) = seeded(3, DType::F32, dev);
        Dense::new(5, 9, None, vb.pp("fc"))
    }

    fn max_gap(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    /// Starts equal to the base; after training, the update touches only the adapted rows, merging gives the
    /// same outputs, and unmerging goes back to the separate update.
    #[test]
    fn starts_at_the_base_adapts_only_its_rows_and_merges_exactly() -> crate::Result<()> {
        let dev = Device::Cpu;
        let base = base(&dev)?;
        let (vars, vb) = seeded(4, DType::F32, &dev);
        let mut layer = LoraDense::new(base.clone(), LoraConfig::new(2, 4.0), &[6..9, 0..3], vb.pp("fc"))?;
        let x = crate::rng::Rng::new(5).normal_tensor((2, 4, 5), 0.0, 1.0, &dev)?;
        assert_eq!(max_gap(&layer.forward(&x)?, &base.forward(&x)?)?, 0.0);
        // A few steps towards a random target move B off zero.
        let target = crate::rng::Rng::new(6).normal_tensor((2, 4, 9), 0.0, 1.0, &dev)?;
        let mut opt = candle_nn::SGD::new(vars.all_vars(), 0.1)?;
        for _ in 0..5 {
            opt.backward_step(&(layer.forward(&x)? - &target)?.sqr()?.mean_all()?)?;
        }
        let moved = (layer.forward(&x)? - base.forward(&x)?)?;
        let per_row = moved.abs()?.sum((0, 1))?.to_vec1::<f32>()?;
        assert!(per_row[..3].iter().chain(&per_row[6..]).all(|&v| v > 1e-4), "{per_row:?}");
        assert!(per_row[3..6].iter().all(|&v| v == 0.0), "{per_row:?}");
        // The update is (α/r) B A in the adapted rows.
        let dw = layer.delta_weight()?;
        let by_hand = x.broadcast_matmul(&dw.t()?)?;
        assert!(max_gap(&moved, &by_hand)? < 1e-5);
        let unmerged = layer.forward(&x)?;
        assert!(max_gap(&layer.forward_factored(&x)?, &unmerged)? < 1e-5, "the two formulations agree");
        layer.merge()?;
        assert!(layer.is_merged());
        assert!(max_gap(&layer.forward(&x)?, &unmerged)? < 1e-5);
        layer.unmerge();
        assert_eq!(max_gap(&layer.forward(&x)?, &unmerged)?, 0.0);
        Ok(())
    }

    /// The built-weight forward pass and the factored one give A and B the same gradients.
    #[test]
    fn both_formulations_give_the_same_gradients() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (vars, vb) = seeded(4, DType::F32, &dev);
        let mut layer = LoraDense::new(base(&dev)?, LoraConfig::new(3, 3.0), &[2..5, 7..9], vb)?;
        let x = crate::rng::Rng::new(5).normal_tensor((4, 5), 0.0, 1.0, &dev)?;
        // Move B off zero first, so that A's gradient is not zero too.
        let mut opt = candle_nn::SGD::new(vars.all_vars(), 0.3)?;
        opt.backward_step(&layer.forward(&x)?.sin()?.sum_all()?)?;
        let (g1, g2) = (
            layer.forward(&x)?.sin()?.sum_all()?.backward()?,
            layer.forward_factored(&x)?.sin()?.sum_all()?.backward()?,
        );
        for v in vars.all_vars() {
            let (a, b) = (g1.get(&v).expect("gradient"), g2.get(&v).expect("gradient"));
            assert!(max_gap(a, b)? < 1e-4, "{:?}", v.dims());
            assert!(a.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
        }
        layer.unmerge();
        Ok(())
    }

    /// With an activation, the update goes inside it: f(W₀ x + b + ΔW x); merged or not, the same.
    #[test]
    fn an_activation_comes_after_the_update() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (_, vb) = seeded(3, DType::F32, &dev);
        let base = Dense::new(5, 4, Some(crate::layers::Activation::Gelu), vb.pp("fc"))?;
        let (vars, vb) = seeded(4, DType::F32, &dev);
        let mut layer = LoraDense::new(base.clone(), LoraConfig::new(2, 2.0), &[0..4], vb)?;
        let x = crate::rng::Rng::new(5).normal_tensor((3, 5), 0.0, 1.0, &dev)?;
        let mut opt = candle_nn::SGD::new(vars.all_vars(), 0.5)?;
        for _ in 0..3 {
            opt.backward_step(&layer.forward(&x)?.sqr()?.mean_all()?)?;
        }
        let lin = base.linear();
        let z = (x.matmul(&(lin.weight() + layer.delta_weight()?)?.t()?)?.broadcast_add(lin.bias().unwrap()))?;
        let by_hand = crate::activation::apply(Some(crate::layers::Activation::Gelu), z)?;
        let y = layer.forward(&x)?;
        assert!(max_gap(&y, &by_hand)? < 1e-5);
        assert!(max_gap(&layer.forward_factored(&x)?, &by_hand)? < 1e-5);
        assert!(max_gap(&y, &base.forward(&x)?)? > 1e-3, "the adapters moved");
        layer.merge()?;
        assert!(max_gap(&layer.forward(&x)?, &y)? < 1e-5);
        Ok(())
    }

    /// Gradients reach A and B only; a base built from plain tensors gets none, a base of variables is left to
    /// the optimizer that is not handed them.
    #[test]
    fn only_the_adapters_are_trained() -> crate::Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&crate::rng::Rng::new(1).normal_tensor((4, 3), 0.0, 1.0, &dev)?)?;
        let base = Dense::from_linear(Linear::new(w.as_tensor().clone(), None), None);
        let (vars, vb) = seeded(2, DType::F32, &dev);
        let layer = LoraDense::new(base, LoraConfig::new(1, 1.0), &[1..3], vb)?;
        let x = crate::rng::Rng::new(3).normal_tensor((6, 3), 0.0, 1.0, &dev)?;
        let before = w.as_tensor().to_vec2::<f32>()?;
        let mut opt = candle_nn::AdamW::new_lr(vars.all_vars(), 0.1)?;
        for _ in 0..3 {
            opt.backward_step(&layer.forward(&x)?.sqr()?.mean_all()?)?;
        }
        assert_eq!(w.as_tensor().to_vec2::<f32>()?, before);
        assert_eq!(vars.all_vars().len(), 2);
        Ok(())
    }

    #[test]
    fn bad_rows_and_ranks_say_what_is_wrong() {
        let dev = Device::Cpu;
        let (_, vb) = seeded(0, DType::F32, &dev);
        let e = LoraDense::new(base(&dev).unwrap(), LoraConfig::new(2, 2.0), &[0..4, 3..6], vb.clone())
            .unwrap_err()
            .to_string();
        assert!(e.contains("non-overlapping") && e.contains("0..9"), "{e}");
        let e = LoraDense::new(base(&dev).unwrap(), LoraConfig::new(0, 2.0), &[0..4], vb).unwrap_err().to_string();
        assert!(e.contains("rank 0"), "{e}");
    }
}
