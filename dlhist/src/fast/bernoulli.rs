//! The log-likelihood of binary data under Bernoulli probabilities given as logits, summed along the last
//! dimension, in one pass (PyTorch's `binary_cross_entropy_with_logits`, negated and summed).
//!
//! For logits `ℓ [.., P]` and data `x [.., P]` (pixels in `[0, 1]`), with `σ` the logistic function:
//!
//! ```text
//! L = Σ_p x_p log σ(ℓ_p) + (1 − x_p) log(1 − σ(ℓ_p)) = Σ_p x_p ℓ_p − softplus(ℓ_p)
//! ∂L/∂ℓ_p = x_p − σ(ℓ_p)        ∂L/∂x_p = ℓ_p
//! ```
//!
//! Written in candle (`x·ℓ − (relu(ℓ) + log(1 + e^−|ℓ|))`, then a sum), the loss is nine element-wise ops over
//! the whole `[B, P]` batch, and the backward pass goes through each of them, and through candle's zero-filled
//! accumulator for every edge: for the VAE of the VAE notebook (a 500-unit MLP on 784 pixels) that was a fifth of
//! a training step. Here one pass per row computes the sum, and the backward pass writes `x − σ(ℓ)` directly.
//! Rows run in parallel; each row's sum has a fixed order, so the result has the same bits at any thread count.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::vmath::{self, Simd};
use super::{cpu_f32, par_chunks, rows_and_width, slice_f32, with_f32, Uninit};

/// `Σ x ℓ − softplus(ℓ)` over the last dimension of logits `ℓ` and data `x` (the same shape `[.., P]`): the
/// log-likelihood of `x` under independent Bernoulli variables with probabilities `σ(ℓ)`, shape `[..]`.
/// Differentiable in both (the data's gradient is only computed when it tracks one).
///
/// f32 tensors on the CPU only (see [`super::applies`]);
/// [`crate::layers::bernoulli_log_likelihood`] runs the candle composition elsewhere.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let logits = Tensor::new(&[[0f32, 3f32.ln()]], &dev)?; // σ = ½ and ¾
/// let x = Tensor::new(&[[1f32, 0.]], &dev)?;
/// // log ½ + log(1 − ¾)
/// let ll = dlhist::fast::bernoulli_log_likelihood(&logits, &x)?.to_vec1::<f32>()?;
/// assert!((ll[0] - (0.5f32.ln() + 0.25f32.ln())).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn bernoulli_log_likelihood(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    if logits.dims() != x.dims() || logits.rank() == 0 {
        candle_core::bail!(
            "bernoulli_log_likelihood: logits {:?} and data {:?} must have the same shape [.., P]",
            logits.dims(),
            x.dims()
        )
    }
    if !cpu_f32(&[logits, x]) {
        return Err(super::unsupported("bernoulli_log_likelihood", &[logits, x]));
    }
    logits.contiguous()?.apply_op2(&x.contiguous()?, BernoulliLl)
}

#[derive(Debug, Clone, Copy)]
struct BernoulliLl;

/// Rows per parallel task: about 16K elements each.
fn rows_per_task(p: usize) -> usize {
    (16384 / p.max(1)).max(1)
}

impl CustomOp2 for BernoulliLl {
    fn name(&self) -> &'static str {
        "dlhist-bernoulli-log-likelihood"
    }

    fn cpu_fwd(&self, ls: &CpuStorage, ll: &Layout, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (l, x) = (slice_f32(ls, ll)?, slice_f32(xs, xl)?);
        let dims = ll.dims();
        let (rows, p) = rows_and_width(dims).expect("checked in bernoulli_log_likelihood: rank >= 1");
        let simd = Simd::detect();
        let mut out = Uninit::<f32>::new(rows);
        let w = out.writer();
        par_chunks(rows, rows_per_task(p), |r| {
            // SAFETY: this range of rows is written by this call only.
            let o = unsafe { w.block(r.start, r.len()) };
            for (row, slot) in r.zip(o) {
                slot.write(vmath::bernoulli_ll_row(simd, &l[row * p..][..p], &x[row * p..][..p]));
            }
        });
        // SAFETY: par_chunks covered 0..rows and each row's slot was written.
        let out = unsafe { out.assume_init() };
        Ok((CpuStorage::F32(out), Shape::from(&dims[..dims.len() - 1])))
    }

    fn bwd(&self, l: &Tensor, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, p) = rows_and_width(l.dims()).expect("checked in bernoulli_log_likelihood: rank >= 1");
        let g = grad.contiguous()?;
        let simd = Simd::detect();
        // ∂/∂ℓ = g_row (x − σ(ℓ)): every element written, so the buffer starts uninitialized.
        let gl = with_f32(l, |l| {
            with_f32(x, |x| {
                with_f32(&g, |g| {
                    let mut out = Uninit::<f32>::new(rows * p);
                    let w = out.writer();
                    par_chunks(rows, rows_per_task(p), |r| {
                        for row in r {
                            // SAFETY: row `row` is written by this iteration only.
                            let o: &mut [MaybeUninit<f32>] = unsafe { w.block(row * p, p) };
                            vmath::bernoulli_ll_grad_row(simd, &l[row * p..][..p], &x[row * p..][..p], g[row], o);
                        }
                    });
                    // SAFETY: every row was written in full.
                    unsafe { out.assume_init() }
                })
            })
        })???;
        let gl = Tensor::from_vec(gl, l.shape(), l.device())?;
        // ∂/∂x = g_row ℓ, only where the data itself came out of a computation that wants it.
        let gx = if x.track_op() { Some(l.broadcast_mul(&g.unsqueeze(g.rank())?)?) } else { None };
        Ok((Some(gl), gx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::{assert_close, strided};
    use candle_core::{Device, Var, D};

    /// The candle composition the kernel replaces.
    fn plain(l: &Tensor, x: &Tensor) -> candle_core::Result<Tensor> {
        let softplus = (l.relu()? + (l.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
        (x.mul(l)? - softplus)?.sum(D::Minus1)
    }

    #[test]
    fn matches_the_candle_composition_in_values_and_gradients() -> Result<()> {
        let mut rng = crate::rng::Rng::new(3);
        for (shape, scale, non_contiguous) in [
            (vec![100, 784], 3.0, false),
            (vec![7, 5], 30.0, true),
            (vec![1, 1], 1.0, false),
            (vec![3, 4, 9], 100.0, false),
            (vec![64, 33], 0.01, true),
        ] {
            let l = Var::from_tensor(&rng.normal_tensor(shape.as_slice(), 0.0, scale, &Device::Cpu).unwrap())?;
            // Data in [0, 1]: binary pixels and, for the last shapes, grey levels.
            let u = rng.uniform_tensor(shape.as_slice(), 0.0, 1.0, &Device::Cpu).unwrap();
            let x =
                if scale > 50.0 { Var::from_tensor(&u)? } else { Var::from_tensor(&u.ge(0.5)?.to_dtype(l.dtype())?)? };
            let li = if non_contiguous { strided(l.as_tensor())? } else { l.as_tensor().clone() };
            let what = format!("{shape:?} scale {scale}");
            let fast = bernoulli_log_likelihood(&li, x.as_tensor())?;
            let slow = plain(&li, x.as_tensor())?;
            assert_close(&fast, &slow, &format!("{what}: values"))?;
            // Weights make the incoming gradient differ per row.
            let wts = rng.normal_tensor(fast.shape(), 0.0, 1.0, &Device::Cpu).unwrap();
            let gf = (fast * &wts)?.sum_all()?.backward()?;
            let gp = (slow * &wts)?.sum_all()?.backward()?;
            assert_close(gf.get(&l).unwrap(), gp.get(&l).unwrap(), &format!("{what}: d logits"))?;
            assert_close(gf.get(&x).unwrap(), gp.get(&x).unwrap(), &format!("{what}: d data"))?;
        }
        Ok(())
    }

    /// Extreme logits give finite values and the limits of the gradient, as the composition does.
    #[test]
    fn extreme_logits_stay_finite() -> Result<()> {
        let l = Var::new(&[[-1e4f32, 1e4, 0.0, -90.0, 90.0]], &Device::Cpu)?;
        let x = Tensor::new(&[[0f32, 1.0, 1.0, 1.0, 0.0]], &Device::Cpu)?;
        let ll = bernoulli_log_likelihood(l.as_tensor(), &x)?;
        // Two certain right answers (0), log ½, and two confident wrong ones (−90 each).
        let want = 0.5f32.ln() - 180.0;
        let got = ll.to_vec1::<f32>()?[0];
        assert!((got - want).abs() < 1e-4, "{got} against {want}");
        let g = ll.sum_all()?.backward()?.get(&l).unwrap().flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(g, vec![0.0, 0.0, 0.5, 1.0, -1.0]);
        Ok(())
    }

    /// The rows' parallel split does not change a bit.
    #[test]
    fn same_bits_as_one_row_at_a_time() -> Result<()> {
        let mut rng = crate::rng::Rng::new(8);
        let l = rng.normal_tensor((300, 784), 0.0, 4.0, &Device::Cpu).unwrap();
        let x = rng.uniform_tensor((300, 784), 0.0, 1.0, &Device::Cpu).unwrap().ge(0.5)?.to_dtype(l.dtype())?;
        let all = bernoulli_log_likelihood(&l, &x)?.to_vec1::<f32>()?;
        for row in [0, 57, 299] {
            let one = bernoulli_log_likelihood(&l.narrow(0, row, 1)?, &x.narrow(0, row, 1)?)?.to_vec1::<f32>()?;
            assert_eq!(all[row].to_bits(), one[0].to_bits(), "row {row}");
        }
        Ok(())
    }

    #[test]
    fn shape_mismatch_and_other_dtypes_are_errors() -> Result<()> {
        let l = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu)?;
        let e = bernoulli_log_likelihood(&l, &Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu)?);
        assert!(e.unwrap_err().to_string().contains("[2, 4]"));
        let e = bernoulli_log_likelihood(&l.to_dtype(candle_core::DType::F64)?, &l.to_dtype(candle_core::DType::F64)?);
        assert!(e.unwrap_err().to_string().contains("F64"));
        Ok(())
    }
}
