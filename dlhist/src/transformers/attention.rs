//! # Multi-head causal self-attention
//!
//! A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017. <https://arxiv.org/abs/1706.03762>
//!
//! Each of the `n_head` heads projects the sequence `X [T, C]` to queries, keys and values of size
//! `d = C / n_head`, and mixes the values with weights that compare queries to keys (the paper's equation 1),
//! with a *causal mask* so that position `t` never sees a later one (the decoder's masking, section 3.2.3):
//!
//! ```text
//! Attention(Q, K, V) = softmax(Q Kᵀ / √d + M) V,      M[t, s] = 0 if s ≤ t, −∞ otherwise
//! MultiHead(X) = Concat(head_1, ..., head_h) W_O,      head_j = Attention(X W_Qj, X W_Kj, X W_Vj)
//! ```
//!
//! [`CausalSelfAttention::forward`] holds both paths: the fused CPU op, and the equations above as candle ops,
//! line by line (taken on other devices and under `DLHIST_FUSED=0`).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::fast;
use crate::layers::Dense;

/// Multi-head causal self-attention over `[B, T, C]`: parameters `{path}.qkv` (`C → 3C`, the three projections
/// in one matrix, like PyTorch's `in_proj`) and `{path}.proj` (`W_O`, `C → C`).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::CausalSelfAttention;
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let attn = CausalSelfAttention::new(16, 4, vb)?;
/// assert_eq!(attn.forward(&Tensor::zeros((2, 5, 16), DType::F32, &dev)?)?.dims(), &[2, 5, 16]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CausalSelfAttention {
    qkv: Dense,
    proj: Dense,
    n_head: usize,
}

impl CausalSelfAttention {
    /// Attention over a stream of width `n_embd` with `n_head` heads.
    pub fn new(n_embd: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        if n_head == 0 || !n_embd.is_multiple_of(n_head) {
            candle_core::bail!("CausalSelfAttention: n_embd = {n_embd} must be a multiple of n_head = {n_head}")
        }
        Ok(CausalSelfAttention {
            qkv: Dense::new(n_embd, 3 * n_embd, None, vb.pp("qkv"))?,
            proj: Dense::new(n_embd, n_embd, None, vb.pp("proj"))?,
            n_head,
        })
    }
}

impl Module for CausalSelfAttention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let (nh, d) = (self.n_head, c / self.n_head);
        // Q, K and V of every head in one product: [B, T, 3C], queries first, then keys, then values.
        let qkv = self.qkv.forward(x)?;
        let y = if fast::applies(&[&qkv]) {
            // Fused (crate::fast::causal_self_attention): every head's softmax(Q Kᵀ/√d + M) V in one op that reads
            // Q, K, V in place from the packed projections and keeps only the probabilities for the backward pass.
            fast::causal_self_attention(&qkv, nh)?
        } else {
            // Plain: split the packed projections into heads, [B, T, 3, h, d] → [3, B, h, T, d].
            let qkv = qkv.reshape((b, t, 3, nh, d))?.permute((2, 0, 3, 1, 4))?;
            let (q, k, v) = (qkv.get(0)?.contiguous()?, qkv.get(1)?.contiguous()?, qkv.get(2)?.contiguous()?);
            // Scores S = Q Kᵀ / √d, [B, h, T, T]: how well query t matches key s. Dividing by √d keeps their
            // variance near 1 at initialization, so the softmax does not start saturated.
            let scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
            // The causal mask M: −∞ above the diagonal, so after the softmax position t gives weight 0 to s > t.
            let m: Vec<f32> = (0..t * t).map(|k| if k % t > k / t { f32::NEG_INFINITY } else { 0.0 }).collect();
            let mask = Tensor::from_vec(m, (t, t), x.device())?.to_dtype(scores.dtype())?;
            let att = candle_nn::ops::softmax(&scores.broadcast_add(&mask)?, D::Minus1)?;
            // Each position's output is its weighted mix of the values; the heads go back side by side: [B, T, C].
            att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, c))?
        };
        // W_O mixes the heads.
        self.proj.forward(&y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, IndexOp};

    fn last_dim_softmax_reference(x: &Tensor) -> Result<Tensor> {
        let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
        e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
    }

    #[test]
    fn attention_is_causal_and_matches_a_per_head_loop() -> Result<()> {
        let dev = crate::device::test_device();
        let (vars, vb) = crate::init::seeded(1, DType::F32, &dev);
        let attn = CausalSelfAttention::new(8, 2, vb)?;
        let x = crate::rng::Rng::new(2).normal_tensor((2, 5, 8), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?;
        let y = attn.forward(&x)?;
        // The same attention written head by head and row by row, without the mask: row t only sees 0..=t.
        let w = |n: &str| vars.data().lock().unwrap()[n].as_tensor().clone();
        let (wqkv, bqkv, wo, bo) = (w("qkv.weight"), w("qkv.bias"), w("proj.weight"), w("proj.bias"));
        for n in 0..2 {
            let xn = x.i(n)?;
            let qkv = xn.matmul(&wqkv.t()?)?.broadcast_add(&bqkv)?; // [T, 24]
            let mut rows = vec![];
            for t in 0..5 {
                let mut heads = vec![];
                for h in 0..2 {
                    // Column slices, packed: candle's CUDA matrix product only takes packed rows.
                    let q = qkv.i((t..t + 1, h * 4..h * 4 + 4))?.contiguous()?;
                    let k = qkv.i((0..t + 1, 8 + h * 4..8 + h * 4 + 4))?.contiguous()?;
                    let v = qkv.i((0..t + 1, 16 + h * 4..16 + h * 4 + 4))?.contiguous()?;
                    let a = last_dim_softmax_reference(&(q.matmul(&k.t()?)? / 2.0)?)?;
                    heads.push(a.matmul(&v)?);
                }
                rows.push(Tensor::cat(&heads, 1)?);
            }
            let want = Tensor::cat(&rows, 0)?.matmul(&wo.t()?)?.broadcast_add(&bo)?;
            let err = (y.i(n)? - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(err < 1e-5, "example {n}: {err}");
        }
        Ok(())
    }

    /// The fused and plain paths, long and tiny sequences, one and several heads: same values and gradients.
    #[test]
    fn fused_and_plain_paths_agree() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        for (b, t, c, nh) in [(12, 64, 128, 4), (2, 5, 6, 2), (1, 1, 1, 1), (3, 7, 9, 3), (2, 3, 4, 1)] {
            let (vars, vb) = crate::init::seeded(31, DType::F32, &dev);
            let attn = CausalSelfAttention::new(c, nh, vb)?;
            let x = candle_core::Var::from_tensor(
                &crate::rng::Rng::new(32).normal_tensor((b, t, c), 0.0, 1.5, &dev).map_err(candle_core::Error::wrap)?,
            )?;
            let (fused, plain) = (attn.forward(&x)?, fast::plain(|| attn.forward(&x))?);
            crate::fast::testing::assert_paths_agree(
                &fused,
                &plain,
                &vars,
                &[&x],
                &format!("b {b} t {t} c {c} h {nh}"),
            )?;
        }
        Ok(())
    }
}
