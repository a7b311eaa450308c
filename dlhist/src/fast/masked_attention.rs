//! Multi-head attention with separate queries, keys and values, padded keys and an optional causal mask, one op
//! (the equations of [`crate::transformers::MultiHeadAttention`]: the encoder's padded self-attention and the
//! decoder's cross-attention).
//!
//! For each example `b` and head `h`, with `Q [T, d]` read in place from columns `h·d..` of `q [B, T, C]`, `K, V
//! [S, d]` from the same columns of `k, v [B, S, C]`, `c = 1/√d`, and key `s` visible to query `t` when
//! `s < len_b` (and `s ≤ t` when causal):
//!
//! ```text
//! forward:   P = masked_softmax(c Q Kᵀ)          Y_h = P V       (written into columns h·d.. of y [B, T, C])
//! backward:  ∂P = ∂Y_h Vᵀ    ∂S = c P ⊙ (∂P − rowsum(∂P ⊙ P))
//!            ∂Q = ∂S K       ∂K = ∂Sᵀ Q       ∂V = Pᵀ ∂Y_h      (written into the same columns of ∂q, ∂k, ∂v)
//! ```
//!
//! Hidden keys get probability exactly 0, so they receive no gradient. Only `P` is kept for the backward pass.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::gemm::gemm_raw;
use super::vmath::{self, Simd};
use super::{cpu_f32, par_chunks, slice_f32, with_f32, SharedMut};

/// Attention of queries `q [B, T, C]` over keys `k` and values `v` `[B, S, C]`, each split into `n_head` heads of
/// `C / n_head` columns, to `[B, T, C]` (the heads side by side, before the output projection). Example `b` sees
/// its first `key_lens[b]` keys only (`1 ≤ key_lens[b] ≤ S`), and with `causal` query `t` sees keys `s ≤ t` only.
///
/// f32 tensors on the CPU only (see [`super::applies`]); [`crate::transformers::MultiHeadAttention`] runs the
/// composition (projections split into heads, `matmul`, additive mask, softmax, `matmul`) elsewhere.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// // One head of width 1, equal scores: query 0 averages the values of the two real keys (1 and 3), not the pad.
/// let q = Tensor::new(&[[[0f32]]], &dev)?;
/// let k = Tensor::new(&[[[0f32], [0.], [0.]]], &dev)?;
/// let v = Tensor::new(&[[[1f32], [3.], [100.]]], &dev)?;
/// let y = dlhist::fast::masked_attention(&q, &k, &v, &[2], 1, false)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![2.0]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn masked_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_lens: &[usize],
    n_head: usize,
    causal: bool,
) -> Result<Tensor> {
    let (b, t, c) = q.dims3()?;
    let (bk, s, ck) = k.dims3()?;
    if bk != b || ck != c || v.dims() != k.dims() || n_head == 0 || !c.is_multiple_of(n_head) || t == 0 || s == 0 {
        candle_core::bail!(
            "masked_attention: q {:?}, k {:?}, v {:?} must be [B, T, C], [B, S, C], [B, S, C] with C a multiple of {n_head}",
            q.dims(),
            k.dims(),
            v.dims()
        )
    }
    if key_lens.len() != b || key_lens.iter().any(|&l| l == 0 || l > s) {
        candle_core::bail!("masked_attention: {b} key lengths in 1..={s} needed; got {key_lens:?}")
    }
    if !cpu_f32(&[q, k, v]) {
        return Err(super::unsupported("masked_attention", &[q, k, v]));
    }
    let op = MaskedAttention { n_head, causal, key_lens: key_lens.to_vec(), probs: Mutex::new(vec![]) };
    q.contiguous()?.apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

#[derive(Debug)]
struct MaskedAttention {
    n_head: usize,
    causal: bool,
    key_lens: Vec<usize>,
    /// `P` of every (example, head), `[B·n_head, T, S]`, for the backward pass.
    probs: Mutex<Vec<f32>>,
}

/// The heads of one call: how many, and their width.
#[derive(Clone, Copy)]
struct Dims {
    nh: usize,
    hd: usize,
}

impl MaskedAttention {
    /// How many keys query `row` of example `bi` sees.
    fn visible(&self, bi: usize, row: usize) -> usize {
        let len = self.key_lens[bi];
        if self.causal {
            len.min(row + 1)
        } else {
            len
        }
    }
}

impl CustomOp3 for MaskedAttention {
    fn name(&self) -> &'static str {
        "dlhist-masked-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (slice_f32(qs, ql)?, slice_f32(ks, kl)?, slice_f32(vs, vl)?);
        let (b, t, c) = (ql.dims()[0], ql.dims()[1], ql.dims()[2]);
        let s = kl.dims()[1];
        let d = Dims { nh: self.n_head, hd: c / self.n_head };
        let scale = 1.0 / (d.hd as f32).sqrt();
        let mut y = vec![0f32; b * t * c];
        let mut probs = vec![0f32; b * d.nh * t * s];
        let (yp, pp) = (SharedMut(y.as_mut_ptr()), SharedMut(probs.as_mut_ptr()));
        let rs = c as isize;
        let simd = Simd::detect();
        par_chunks(b * d.nh, 1, |pairs| {
            for pair in pairs {
                let (bi, h) = (pair / d.nh, pair % d.nh);
                // SAFETY: pair owns P[pair] and columns h·d.. of example bi's rows in y; reads stay in q, k, v.
                unsafe {
                    let p = pp.get().add(pair * t * s);
                    let qh = q.as_ptr().add(bi * t * c + h * d.hd);
                    let kh = k.as_ptr().add(bi * s * c + h * d.hd);
                    let vh = v.as_ptr().add(bi * s * c + h * d.hd);
                    // S = Q Kᵀ into P's buffer (Kᵀ: element (d, s) at K[s, d]).
                    gemm_raw((t, s, d.hd), p, s as isize, qh, (rs, 1), kh, (1, rs), false);
                    let pr = std::slice::from_raw_parts_mut(p, t * s);
                    for (row, r) in pr.chunks_mut(s).enumerate() {
                        let n = self.visible(bi, row);
                        let seen = &mut r[..n];
                        let max = seen.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x * scale));
                        let inv = 1.0 / vmath::exp_sum_in_place(simd, seen, scale, max);
                        seen.iter_mut().for_each(|x| *x *= inv);
                        r[n..].fill(0.0);
                    }
                    // Y_h = P V
                    gemm_raw(
                        (t, d.hd, s),
                        yp.get().add(bi * t * c + h * d.hd),
                        rs,
                        p,
                        (s as isize, 1),
                        vh,
                        (rs, 1),
                        false,
                    );
                }
            }
        });
        *self.probs.lock().map_err(|_| candle_core::Error::Msg("masked attention: poisoned lock".into()))? = probs;
        Ok((CpuStorage::F32(y), Shape::from((b, t, c))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, c) = q.dims3()?;
        let s = k.dims()[1];
        let d = Dims { nh: self.n_head, hd: c / self.n_head };
        let scale = 1.0 / (d.hd as f32).sqrt();
        let grad = grad.contiguous()?;
        let probs = self.probs.lock().map_err(|_| candle_core::Error::Msg("masked attention: poisoned lock".into()))?;
        let (mut gq, mut gk, mut gv) = (vec![0f32; b * t * c], vec![0f32; b * s * c], vec![0f32; b * s * c]);
        let (gqp, gkp, gvp) = (SharedMut(gq.as_mut_ptr()), SharedMut(gk.as_mut_ptr()), SharedMut(gv.as_mut_ptr()));
        let rs = c as isize;
        with_f32(q, |q| {
            with_f32(k, |k| {
                with_f32(v, |v| {
                    with_f32(&grad, |gy| {
                        par_chunks(b * d.nh, 1, |pairs| {
                            let mut ds = vec![0f32; t * s];
                            for pair in pairs {
                                let (bi, h) = (pair / d.nh, pair % d.nh);
                                let p = &probs[pair * t * s..(pair + 1) * t * s];
                                let (qo, ko) = (bi * t * c + h * d.hd, bi * s * c + h * d.hd);
                                // SAFETY: pair owns head h's columns of example bi's rows in ∂q, ∂k, ∂v; reads stay
                                // in bounds.
                                unsafe {
                                    let (qh, kh, vh) = (q.as_ptr().add(qo), k.as_ptr().add(ko), v.as_ptr().add(ko));
                                    let dy = gy.as_ptr().add(qo);
                                    // ∂P = ∂Y_h Vᵀ
                                    gemm_raw(
                                        (t, s, d.hd),
                                        ds.as_mut_ptr(),
                                        s as isize,
                                        dy,
                                        (rs, 1),
                                        vh,
                                        (1, rs),
                                        false,
                                    );
                                    for (row, (dr, pr)) in ds.chunks_mut(s).zip(p.chunks(s)).enumerate() {
                                        let n = self.visible(bi, row);
                                        let dot: f32 = dr[..n].iter().zip(&pr[..n]).map(|(a, b)| a * b).sum();
                                        for (x, pv) in dr[..n].iter_mut().zip(&pr[..n]) {
                                            *x = scale * pv * (*x - dot);
                                        }
                                        dr[n..].fill(0.0);
                                    }
                                    let ss = s as isize;
                                    // ∂Q = ∂S K;  ∂K = ∂Sᵀ Q;  ∂V = Pᵀ ∂Y_h
                                    gemm_raw(
                                        (t, d.hd, s),
                                        gqp.get().add(qo),
                                        rs,
                                        ds.as_ptr(),
                                        (ss, 1),
                                        kh,
                                        (rs, 1),
                                        false,
                                    );
                                    gemm_raw(
                                        (s, d.hd, t),
                                        gkp.get().add(ko),
                                        rs,
                                        ds.as_ptr(),
                                        (1, ss),
                                        qh,
                                        (rs, 1),
                                        false,
                                    );
                                    gemm_raw(
                                        (s, d.hd, t),
                                        gvp.get().add(ko),
                                        rs,
                                        p.as_ptr(),
                                        (1, ss),
                                        dy,
                                        (rs, 1),
                                        false,
                                    );
                                }
                            }
                        })
                    })
                })
            })
        })????;
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(gq, (b, t, c), dev)?),
            Some(Tensor::from_vec(gk, (b, s, c), dev)?),
            Some(Tensor::from_vec(gv, (b, s, c), dev)?),
        ))
    }
}
