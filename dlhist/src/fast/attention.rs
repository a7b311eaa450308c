//! Multi-head causal self-attention from the packed projections, one op (the equations of
//! [`crate::transformers::attention`]).
//!
//! For each example `b` and head `h`, with `Q, K, V [T, d]` read in place from the columns of `qkv [B, T, 3C]`
//! and `c = 1/√d`:
//!
//! ```text
//! forward:   P = causal_softmax(c Q Kᵀ)          Y_h = P V       (written into columns h·d.. of y [B, T, C])
//! backward:  ∂P = ∂Y_h Vᵀ    ∂S = c P ⊙ (∂P − rowsum(∂P ⊙ P))
//!            ∂Q = ∂S K       ∂K = ∂Sᵀ Q       ∂V = Pᵀ ∂Y_h      (written into the same columns of ∂qkv)
//! ```
//!
//! As tensor ops this is a reshape and permute of `qkv`, three copies to make `Q`, `K`, `V` contiguous, two
//! batched products, the softmax, a transpose and a copy back, each a node of the autograd graph whose gradient
//! candle allocates, zeroes and adds. Here the matrix products read and write the packed layouts through
//! strides, and only `P` is kept for the backward pass.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::gemm::gemm_raw;
use super::vmath::{self, Simd};
use super::{cpu_f32, par_chunks, slice_f32, with_f32, SharedMut};

/// Causal self-attention of `qkv [B, T, 3C]` (queries, keys and values side by side, each split into `n_head`
/// heads of `C / n_head` columns) to `[B, T, C]` (the heads side by side, before the output projection).
///
/// f32 tensors on the CPU only (see [`super::applies`]); [`crate::transformers::CausalSelfAttention`] runs the
/// composition (`permute`, `matmul`, mask, softmax, `matmul`) elsewhere and shows it line by line.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// // One head of width 1; values 1, 2, 3: position t averages the values up to t (equal scores).
/// let qkv = Tensor::new(&[[[0f32, 0., 1.], [0., 0., 2.], [0., 0., 3.]]], &dev)?;
/// let y = dlhist::fast::causal_self_attention(&qkv, 1)?.flatten_all()?.to_vec1::<f32>()?;
/// assert_eq!(y, vec![1.0, 1.5, 2.0]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn causal_self_attention(qkv: &Tensor, n_head: usize) -> Result<Tensor> {
    let (_, t, c3) = qkv.dims3()?;
    let c = c3 / 3;
    if !c3.is_multiple_of(3) || n_head == 0 || !c.is_multiple_of(n_head) || t == 0 {
        candle_core::bail!("causal_self_attention: {:?} is not [B, T, 3C] with C a multiple of {n_head}", qkv.dims())
    }
    if !cpu_f32(&[qkv]) {
        return Err(super::unsupported("causal_self_attention", &[qkv]));
    }
    qkv.contiguous()?.apply_op1(Attention { n_head, probs: Mutex::new(vec![]) })
}

#[derive(Debug)]
struct Attention {
    n_head: usize,
    /// `P` of every (example, head), `[B·n_head, T, T]`, for the backward pass.
    probs: Mutex<Vec<f32>>,
}

/// Sizes, with the strides of the packed layouts.
#[derive(Clone, Copy)]
struct Dims {
    t: usize,
    c: usize,
    nh: usize,
    hd: usize,
}

impl Dims {
    /// Offset of head `h`'s block `which` (0: Q, 1: K, 2: V) of example `b` in `qkv`.
    fn qkv_at(&self, b: usize, h: usize, which: usize) -> usize {
        b * self.t * 3 * self.c + which * self.c + h * self.hd
    }

    /// Offset of head `h` of example `b` in `y`.
    fn y_at(&self, b: usize, h: usize) -> usize {
        b * self.t * self.c + h * self.hd
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "dlhist-causal-self-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = slice_f32(s, l)?;
        let (b, t, c3) = (l.dims()[0], l.dims()[1], l.dims()[2]);
        let c = c3 / 3;
        let d = Dims { t, c, nh: self.n_head, hd: c / self.n_head };
        let scale = 1.0 / (d.hd as f32).sqrt();
        let mut y = vec![0f32; b * t * c];
        let mut probs = vec![0f32; b * d.nh * t * t];
        let (yp, pp) = (SharedMut(y.as_mut_ptr()), SharedMut(probs.as_mut_ptr()));
        let (rs3, rs) = (c3 as isize, c as isize);
        let simd = Simd::detect();
        par_chunks(b * d.nh, 1, |pairs| {
            for pair in pairs {
                let (bi, h) = (pair / d.nh, pair % d.nh);
                // SAFETY: pair owns P[pair] and columns h·d.. of example bi's rows in y; reads stay in qkv.
                unsafe {
                    let p = pp.get().add(pair * t * t);
                    let q = qkv.as_ptr().add(d.qkv_at(bi, h, 0));
                    let k = qkv.as_ptr().add(d.qkv_at(bi, h, 1));
                    let v = qkv.as_ptr().add(d.qkv_at(bi, h, 2));
                    // S = Q Kᵀ into P's buffer (Kᵀ: element (d, s) at K[s, d]).
                    gemm_raw((t, t, d.hd), p, t as isize, q, (rs3, 1), k, (1, rs3), false);
                    let pr = std::slice::from_raw_parts_mut(p, t * t);
                    for (row, r) in pr.chunks_mut(t).enumerate() {
                        let visible = &mut r[..row + 1];
                        let max = visible.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x * scale));
                        let inv = 1.0 / vmath::exp_sum_in_place(simd, visible, scale, max);
                        visible.iter_mut().for_each(|x| *x *= inv);
                        r[row + 1..].fill(0.0);
                    }
                    // Y_h = P V
                    gemm_raw((t, d.hd, t), yp.get().add(d.y_at(bi, h)), rs, p, (t as isize, 1), v, (rs3, 1), false);
                }
            }
        });
        *self.probs.lock().map_err(|_| candle_core::Error::Msg("attention: poisoned lock".into()))? = probs;
        Ok((CpuStorage::F32(y), Shape::from((b, t, c))))
    }

    fn bwd(&self, qkv: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (b, t, c3) = qkv.dims3()?;
        let c = c3 / 3;
        let d = Dims { t, c, nh: self.n_head, hd: c / self.n_head };
        let scale = 1.0 / (d.hd as f32).sqrt();
        let grad = grad.contiguous()?;
        let probs = self.probs.lock().map_err(|_| candle_core::Error::Msg("attention: poisoned lock".into()))?;
        let mut gqkv = vec![0f32; b * t * c3];
        let gp = SharedMut(gqkv.as_mut_ptr());
        let (rs3, rs) = (c3 as isize, c as isize);
        with_f32(qkv, |qkv| {
            with_f32(&grad, |gy| {
                par_chunks(b * d.nh, 1, |pairs| {
                    let mut ds = vec![0f32; t * t];
                    for pair in pairs {
                        let (bi, h) = (pair / d.nh, pair % d.nh);
                        let p = &probs[pair * t * t..(pair + 1) * t * t];
                        // SAFETY: pair owns head h's columns of example bi's rows in ∂qkv; reads stay in bounds.
                        unsafe {
                            let q = qkv.as_ptr().add(d.qkv_at(bi, h, 0));
                            let k = qkv.as_ptr().add(d.qkv_at(bi, h, 1));
                            let v = qkv.as_ptr().add(d.qkv_at(bi, h, 2));
                            let dy = gy.as_ptr().add(d.y_at(bi, h));
                            // ∂P = ∂Y_h Vᵀ
                            gemm_raw((t, t, d.hd), ds.as_mut_ptr(), t as isize, dy, (rs, 1), v, (1, rs3), false);
                            for (row, (dr, pr)) in ds.chunks_mut(t).zip(p.chunks(t)).enumerate() {
                                let n = row + 1;
                                let dot: f32 = dr[..n].iter().zip(&pr[..n]).map(|(a, b)| a * b).sum();
                                for (x, pv) in dr[..n].iter_mut().zip(&pr[..n]) {
                                    *x = scale * pv * (*x - dot);
                                }
                                dr[n..].fill(0.0);
                            }
                            let (dq, dk, dv) = (
                                gp.get().add(d.qkv_at(bi, h, 0)),
                                gp.get().add(d.qkv_at(bi, h, 1)),
                                gp.get().add(d.qkv_at(bi, h, 2)),
                            );
                            let tt = t as isize;
                            // ∂Q = ∂S K;  ∂K = ∂Sᵀ Q;  ∂V = Pᵀ ∂Y_h
                            gemm_raw((t, d.hd, t), dq, rs3, ds.as_ptr(), (tt, 1), k, (rs3, 1), false);
                            gemm_raw((t, d.hd, t), dk, rs3, ds.as_ptr(), (1, tt), q, (rs3, 1), false);
                            gemm_raw((t, d.hd, t), dv, rs3, p.as_ptr(), (1, tt), dy, (rs, 1), false);
                        }
                    }
                })
            })
        })??;
        Ok(Some(Tensor::from_vec(gqkv, (b, t, c3), qkv.device())?))
    }
}
