//! Layer normalization and the causal softmax of attention, one pass per row each.
//!
//! Layer norm over the last axis of size `H` (the equations of [`crate::optimization::layer_norm`]), with
//! `x̂ = (x − μ)/σ` and the incoming gradient `g`:
//!
//! ```text
//! y = γ ⊙ x̂ + β
//! ∂L/∂x = (1/σ) (ĝ − mean(ĝ) − x̂ · mean(ĝ ⊙ x̂)),   ĝ = g ⊙ γ        ∂L/∂γ = Σ_rows g ⊙ x̂     ∂L/∂β = Σ_rows g
//! ```
//!
//! The causal softmax of scores `S [.., T, T]` scaled by `c` (attention's `1/√d`), row `t` seeing columns
//! `0..=t` only:
//!
//! ```text
//! P[t, s] = e^{c S[t,s]} / Σ_{s' ≤ t} e^{c S[t,s']}  (s ≤ t),  0 otherwise
//! ∂L/∂S[t, s] = c · P[t, s] (G[t, s] − Σ_{s'} G[t, s'] P[t, s'])
//! ```
//!
//! candle composes the first from eight tensor ops and the second from a mask, a broadcast add, and a softmax of
//! five ops; each writes and reads a full tensor.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor, D};

use super::vmath::{self, Simd};
use super::{cpu_f32, par_block_sums, par_chunks, slice_f32, with_f32, SharedMut};

/// Layer normalization of `x [.., H]` with gain `w [H]` and bias `b [H]`, `ε` added to the variance: what
/// [`crate::optimization::LayerNorm`] computes (it calls this).
///
/// f32 tensors on the CPU only (see [`super::applies`]); the layer runs its composition elsewhere.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let x = Tensor::new(&[[1f32, 2., 3., 4.]], &dev)?;
/// let (w, b) = (Tensor::ones(4, DType::F32, &dev)?, Tensor::zeros(4, DType::F32, &dev)?);
/// let y = dlhist::fast::layer_norm(&x, &w, &b, 0.0)?.to_vec2::<f32>()?;
/// // Mean 2.5, variance 1.25.
/// assert!((y[0][0] + 1.5 / 1.25f32.sqrt()).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let h = w.dims1()?;
    if x.dims().last() != Some(&h) || b.dims() != [h] {
        candle_core::bail!("layer_norm: input {:?}, gain {:?}, bias {:?} do not fit", x.dims(), w.dims(), b.dims())
    }
    if !cpu_f32(&[x, w, b]) {
        return Err(super::unsupported("layer_norm", &[x, w, b]));
    }
    if h == 0 {
        candle_core::bail!("layer_norm: no features to normalize over (input {:?})", x.dims())
    }
    let op = LayerNormOp { eps: eps as f32, stats: Mutex::new(vec![]) };
    x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)
}

#[derive(Debug)]
struct LayerNormOp {
    eps: f32,
    /// `(μ, 1/σ)` of every row, from the forward pass for the backward pass.
    stats: Mutex<Vec<(f32, f32)>>,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "dlhist-layer-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (slice_f32(xs, xl)?, slice_f32(ws, wl)?, slice_f32(bs, bl)?);
        let h = w.len();
        let rows = x.len() / h;
        let mut y = vec![0f32; x.len()];
        let mut stats = vec![(0f32, 0f32); rows];
        let (yp, sp) = (SharedMut(y.as_mut_ptr()), stats.as_mut_ptr() as usize);
        par_chunks(rows, (4096 / h).max(1), |r| {
            for row in r {
                let xr = &x[row * h..(row + 1) * h];
                // Two passes over the row (mean, then the centred second moment): as exact as the composition.
                let mean = xr.iter().sum::<f32>() / h as f32;
                let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
                let rstd = 1.0 / (var + self.eps).sqrt();
                // SAFETY: each row is written by one iteration only.
                let yr = unsafe { std::slice::from_raw_parts_mut(yp.get().add(row * h), h) };
                for (((o, v), g), bb) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                    *o = (v - mean) * rstd * g + bb;
                }
                unsafe { *(sp as *mut (f32, f32)).add(row) = (mean, rstd) };
            }
        });
        *self.stats.lock().map_err(|_| candle_core::Error::Msg("layer_norm: poisoned lock".into()))? = stats;
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let h = w.elem_count();
        let rows = x.elem_count() / h;
        let grad = grad.contiguous()?;
        let stats = self.stats.lock().map_err(|_| candle_core::Error::Msg("layer_norm: poisoned lock".into()))?;
        let mut gx = vec![0f32; x.elem_count()];
        let gxp = SharedMut(gx.as_mut_ptr());
        let mut sums = with_f32(x, |x| {
            with_f32(w, |w| {
                with_f32(&grad, |g| {
                    // ∂gain and ∂bias are summed per fixed block of rows, then over blocks in order.
                    par_block_sums(rows, (4096 / h).max(1), 2 * h, |r, slot| {
                        let (gw, gb) = slot.split_at_mut(h);
                        for row in r {
                            let (mean, rstd) = stats[row];
                            let (xr, gr) = (&x[row * h..(row + 1) * h], &g[row * h..(row + 1) * h]);
                            let (mut m1, mut m2) = (0f32, 0f32);
                            for k in 0..h {
                                let xh = (xr[k] - mean) * rstd;
                                let gh = gr[k] * w[k];
                                m1 += gh;
                                m2 += gh * xh;
                                gw[k] += gr[k] * xh;
                                gb[k] += gr[k];
                            }
                            let (m1, m2) = (m1 / h as f32, m2 / h as f32);
                            // SAFETY: each row is written by one iteration only.
                            let out = unsafe { std::slice::from_raw_parts_mut(gxp.get().add(row * h), h) };
                            for k in 0..h {
                                let xh = (xr[k] - mean) * rstd;
                                out[k] = rstd * (gr[k] * w[k] - m1 - xh * m2);
                            }
                        }
                    })
                })
            })
        })???;
        let gb = sums.split_off(h);
        let gw = sums;
        let dev = x.device();
        let gx = if x.track_op() { Some(Tensor::from_vec(gx, x.shape(), dev)?) } else { None };
        Ok((gx, Some(Tensor::from_vec(gw, h, dev)?), Some(Tensor::from_vec(gb, h, dev)?)))
    }
}

/// The causal softmax of the module docs: `softmax(scale · S + M)` over the last axis of square score
/// matrices `S [.., T, T]`, `M` masking every column after the row's own position.
///
/// f32 on the CPU takes the one-pass path; anything else runs the candle composition (mask added to the scaled
/// scores, then `candle_nn::ops::softmax`).
///
/// ```
/// use dlhist::prelude::*;
/// let s = Tensor::zeros((1, 3, 3), DType::F32, &Device::Cpu)?;
/// let p = dlhist::fast::causal_softmax(&s, 1.0)?.to_vec3::<f32>()?;
/// // Equal scores: row t spreads evenly over its t + 1 visible positions.
/// assert_eq!(p[0][0], vec![1.0, 0.0, 0.0]);
/// assert_eq!(p[0][1], vec![0.5, 0.5, 0.0]);
/// assert!((p[0][2][2] - 1.0 / 3.0).abs() < 1e-7);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn causal_softmax(scores: &Tensor, scale: f64) -> Result<Tensor> {
    let dims = scores.dims();
    let t = *dims.last().unwrap_or(&0);
    if dims.len() < 2 || dims[dims.len() - 2] != t {
        candle_core::bail!("causal_softmax expects scores [.., T, T]; got {dims:?}")
    }
    if !cpu_f32(&[scores]) {
        return Err(super::unsupported("causal_softmax", &[scores]));
    }
    if t == 0 {
        candle_core::bail!("causal_softmax: empty scores {dims:?}")
    }
    scores.contiguous()?.apply_op1(CausalSoftmax { scale: scale as f32 })
}

#[derive(Debug, Clone, Copy)]
struct CausalSoftmax {
    scale: f32,
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "dlhist-causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice_f32(s, l)?;
        let t = *l.dims().last().expect("rank >= 2");
        let rows = x.len() / t;
        let mut y = vec![0f32; x.len()];
        let yp = SharedMut(y.as_mut_ptr());
        let c = self.scale;
        let simd = Simd::detect();
        par_chunks(rows, (4096 / t).max(1), |r| {
            for row in r {
                // Row `row` of a [T, T] matrix is position row % T: it sees columns 0..=row % T.
                let visible = row % t + 1;
                let xr = &x[row * t..row * t + visible];
                // SAFETY: each row is written by one iteration only.
                let yr = unsafe { std::slice::from_raw_parts_mut(yp.get().add(row * t), t) };
                let max = xr.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v * c));
                let inv = 1.0 / vmath::exp_sum_into(simd, xr, yr, c, max);
                yr[..visible].iter_mut().for_each(|o| *o *= inv);
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _s: &Tensor, p: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let t = p.dim(D::Minus1)?;
        let rows = p.elem_count() / t;
        let grad = grad.contiguous()?;
        let mut gs = vec![0f32; p.elem_count()];
        let gp = SharedMut(gs.as_mut_ptr());
        let c = self.scale;
        with_f32(p, |p| {
            with_f32(&grad, |g| {
                par_chunks(rows, (4096 / t).max(1), |r| {
                    for row in r {
                        let visible = row % t + 1;
                        let (pr, gr) = (&p[row * t..row * t + visible], &g[row * t..row * t + visible]);
                        let dot: f32 = pr.iter().zip(gr).map(|(a, b)| a * b).sum();
                        // SAFETY: each row is written by one iteration only.
                        let out = unsafe { std::slice::from_raw_parts_mut(gp.get().add(row * t), visible) };
                        for ((o, pv), gv) in out.iter_mut().zip(pr).zip(gr) {
                            *o = c * pv * (gv - dot);
                        }
                    }
                })
            })
        })??;
        Ok(Some(Tensor::from_vec(gs, p.shape(), p.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::{assert_close, strided};
    use candle_core::{Device, Var};

    fn randn(shape: &[usize], seed: u64, std: f32) -> Tensor {
        crate::rng::Rng::new(seed).normal_tensor(shape, 0.0, std, &Device::Cpu).unwrap()
    }

    /// ∂gain and ∂bias over many rows (several blocks, several threads) have the same bits on every run.
    #[test]
    fn gain_and_bias_gradients_are_the_same_bits_on_every_run() -> Result<()> {
        let x = randn(&[600, 48], 31, 1.0);
        let (w, b) = (Var::from_tensor(&randn(&[48], 32, 1.0))?, Var::from_tensor(&randn(&[48], 33, 1.0))?);
        let weights = randn(&[600, 48], 34, 1.0);
        let run = || -> Result<Vec<u32>> {
            let grads = (layer_norm(&x, &w, &b, 1e-5)? * &weights)?.sum_all()?.backward()?;
            let mut bits = vec![];
            for v in [&w, &b] {
                bits.extend(grads.get(v).unwrap().to_vec1::<f32>()?.iter().map(|f| f.to_bits()));
            }
            Ok(bits)
        };
        let first = run()?;
        for _ in 0..8 {
            assert!(run()? == first, "the gain or bias gradient changed between identical runs");
        }
        Ok(())
    }

    #[test]
    fn layer_norm_f32_agrees_with_candles_f32_ops() -> Result<()> {
        let x = randn(&[6, 10], 5, 1.0);
        let (w, b) = (randn(&[10], 6, 1.0), randn(&[10], 7, 1.0));
        let mean = x.mean_keepdim(D::Minus1)?;
        let c = x.broadcast_sub(&mean)?;
        let var = c.sqr()?.mean_keepdim(D::Minus1)?;
        let want = c.broadcast_div(&(var + 1e-5)?.sqrt()?)?.broadcast_mul(&w)?.broadcast_add(&b)?;
        assert_close(&layer_norm(&x, &w, &b, 1e-5)?, &want, "f32")
    }

    #[test]
    fn causal_softmax_matches_mask_plus_softmax_values_and_gradients() -> Result<()> {
        for (shape, scale, non_contiguous) in [
            (vec![12, 4, 64, 64], 0.17, false),
            (vec![3, 5, 5], 1.0, true),
            (vec![1, 1], 2.0, false),
            (vec![2, 2, 7, 7], 0.5, true),
        ] {
            let s = Var::from_tensor(&randn(&shape, 8, 3.0))?;
            let si = if non_contiguous { strided(s.as_tensor())? } else { s.as_tensor().clone() };
            let fast = causal_softmax(&si, scale)?;
            let t = *shape.last().unwrap();
            let m: Vec<f32> = (0..t * t).map(|k| if k % t > k / t { f32::NEG_INFINITY } else { 0.0 }).collect();
            let mask = Tensor::from_vec(m, (t, t), &Device::Cpu)?;
            let plain = candle_nn::ops::softmax(&(&si * scale)?.broadcast_add(&mask)?, D::Minus1)?;
            assert_close(&fast, &plain, &format!("{shape:?} values"))?;
            let r = randn(fast.dims(), 9, 1.0);
            let gf = (&fast * &r)?.sum_all()?.backward()?;
            let gp = (&plain * &r)?.sum_all()?.backward()?;
            assert_close(gf.get(&s).unwrap(), gp.get(&s).unwrap(), &format!("{shape:?} ds"))?;
        }
        assert!(causal_softmax(&randn(&[2, 3], 1, 1.0), 1.0).is_err());
        Ok(())
    }
}
