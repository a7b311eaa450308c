//! Softmax cross-entropy in one pass, with the gradient `softmax − one-hot`.
//!
//! For logits `z [N, C]` and class ids `t [N]`:
//!
//! ```text
//! L = 1/N Σ_n (log Σ_c e^{z_nc} − z_{n t_n})          ∂L/∂z_nc = (softmax(z_n)_c − [c = t_n]) / N
//! ```
//!
//! candle's `cross_entropy` computes `log_softmax` (four passes and a broadcast), gathers, sums and scales,
//! and back-propagates through each of those. Here one pass per row computes the log-sum-exp (subtracting the
//! row's maximum first so `e^z` cannot overflow), and the backward pass writes the closed-form gradient. Rows are
//! independent, so both passes run them in parallel; the loss adds the rows' terms afterwards in row order, so
//! the result has the same bits for any number of threads.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

use super::vmath::{self, Simd};
use super::{cpu_f32, par_chunks, with_f32, SharedMut};

/// Mean softmax cross-entropy of logits `[N, C]` against class ids `[N]` (any integer dtype), as
/// `candle_nn::loss::cross_entropy`. Logits `[.., C]` of higher rank are taken as their `N` rows in order (the
/// class ids then flattened to `[N]`), with the gradient in their own shape.
///
/// f32 logits on the CPU only (see [`super::applies`]); [`crate::layers::cross_entropy`] runs candle's loss
/// elsewhere.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let logits = Tensor::new(&[[0f32, 0.], [2f32.ln(), 0.]], &dev)?;
/// let y = Tensor::new(&[1u32, 0], &dev)?;
/// // Row 0: −log ½; row 1: −log ⅔.
/// let l = dlhist::fast::softmax_cross_entropy(&logits, &y)?.to_scalar::<f32>()?;
/// assert!((l - (2f32.ln() + 1.5f32.ln()) / 2.0).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn softmax_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, c) = rows_and_classes(logits.dims())?;
    if targets.dims() != [n] {
        candle_core::bail!(
            "softmax_cross_entropy: logits {:?} need class ids [{n}], got {:?}",
            logits.dims(),
            targets.dims()
        )
    }
    if !cpu_f32(&[logits]) || !targets.device().is_cpu() {
        return Err(super::unsupported("softmax_cross_entropy", &[logits, targets]));
    }
    if n == 0 {
        candle_core::bail!("softmax_cross_entropy: no rows (logits {:?})", logits.dims())
    }
    let ids: Vec<u32> = targets.to_dtype(DType::U32)?.to_vec1()?;
    if let Some(bad) = ids.iter().find(|&&t| t as usize >= c) {
        candle_core::bail!("softmax_cross_entropy: class id {bad} out of range for {c} classes")
    }
    logits.contiguous()?.apply_op1(SoftmaxXent { ids })
}

/// `(N, C)` of logits `[.., C]`: the rows are every position of the leading dimensions (at least one).
fn rows_and_classes(dims: &[usize]) -> Result<(usize, usize)> {
    match super::rows_and_width(dims) {
        Some(nc) if dims.len() >= 2 => Ok(nc),
        _ => candle_core::bail!("softmax_cross_entropy: logits must be [.., C] with a leading dimension; got {dims:?}"),
    }
}

#[derive(Debug, Clone)]
struct SoftmaxXent {
    ids: Vec<u32>,
}

/// `(max, log Σ e^{z − max})` of one row.
fn row_lse(simd: Simd, row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (max, vmath::exp_sum(simd, row, 1.0, max).ln())
}

impl CustomOp1 for SoftmaxXent {
    fn name(&self) -> &'static str {
        "dlhist-softmax-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let z = super::slice_f32(s, l)?;
        let (_, c) = rows_and_classes(l.dims())?;
        // Each row's term in parallel (a large vocabulary makes this as costly as a matrix product), then the
        // sum in row order, in f64: a batch of thousands of rows (a GPT's B·T) would otherwise lose digits.
        let n = self.ids.len();
        let mut terms = vec![0f64; n];
        let simd = Simd::detect();
        let tp = terms.as_mut_ptr() as usize;
        par_chunks(n, (16384 / c).max(1), |r| {
            for row in r {
                let zr = &z[row * c..(row + 1) * c];
                let (max, lse) = row_lse(simd, zr);
                // SAFETY: each row's term is written by one iteration only.
                unsafe { *(tp as *mut f64).add(row) = f64::from(max + lse - zr[self.ids[row] as usize]) };
            }
        });
        let total: f64 = terms.iter().sum();
        Ok((CpuStorage::F32(vec![(total / self.ids.len() as f64) as f32]), Shape::from(())))
    }

    fn bwd(&self, z: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, c) = rows_and_classes(z.dims())?;
        let scale = grad.to_dtype(DType::F32)?.to_scalar::<f32>()? / n as f32;
        let g = with_f32(z, |z| {
            let mut g = vec![0f32; n * c];
            let gp = SharedMut(g.as_mut_ptr());
            let simd = Simd::detect();
            par_chunks(n, (16384 / c).max(1), |r| {
                for row in r {
                    let zr = &z[row * c..(row + 1) * c];
                    // SAFETY: each row of g is written by one iteration only.
                    let gr = unsafe { std::slice::from_raw_parts_mut(gp.get().add(row * c), c) };
                    let (max, lse) = row_lse(simd, zr);
                    // softmax(z) = e^{z − max − lse}, then times the upstream gradient over n.
                    vmath::exp_sum_into(simd, zr, gr, 1.0, max + lse);
                    gr.iter_mut().for_each(|gv| *gv *= scale);
                    gr[self.ids[row] as usize] -= scale;
                }
            });
            g
        })?;
        Ok(Some(Tensor::from_vec(g, z.shape(), z.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::{assert_close, strided};
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_cross_entropy_values_and_gradients() -> Result<()> {
        let mut rng = crate::rng::Rng::new(9);
        for (n, c, scale, non_contiguous) in
            [(100, 10, 1.0, false), (7, 3, 5.0, true), (1, 1, 1.0, false), (768, 65, 3.0, true), (3, 2, 100.0, false)]
        {
            let z = Var::from_tensor(&rng.normal_tensor((n, c), 0.0, scale, &Device::Cpu).unwrap())?;
            let ids: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
            let y = Tensor::from_vec(ids, n, &Device::Cpu)?;
            let zi = if non_contiguous { strided(z.as_tensor())? } else { z.as_tensor().clone() };
            let fast = softmax_cross_entropy(&zi, &y)?;
            let plain = candle_nn::loss::cross_entropy(&zi, &y)?;
            let what = format!("n {n} c {c} scale {scale}");
            assert_close(&fast, &plain, &format!("{what}: loss"))?;
            // Scale the loss so the incoming gradient is not 1.
            let gf = (fast * 3.0)?.backward()?;
            let gp = (plain * 3.0)?.backward()?;
            assert_close(gf.get(&z).unwrap(), gp.get(&z).unwrap(), &format!("{what}: dz"))?;
        }
        Ok(())
    }

    /// The parallel passes give the bits of the sequential loop they replaced (one row after another).
    #[test]
    fn parallel_rows_give_the_sequential_bits() -> Result<()> {
        let mut rng = crate::rng::Rng::new(4);
        let (n, c) = (700, 2304);
        let z = Var::from_tensor(&rng.normal_tensor((n, c), 0.0, 3.0, &Device::Cpu).unwrap())?;
        let ids: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
        let loss = softmax_cross_entropy(z.as_tensor(), &Tensor::from_vec(ids.clone(), n, &Device::Cpu)?)?;
        let grad = loss.backward()?.get(&z).unwrap().flatten_all()?.to_vec1::<f32>()?;
        let zv = z.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let mut total = 0f64;
        let mut want = vec![0f32; n * c];
        for (row, &t) in ids.iter().enumerate() {
            let zr = &zv[row * c..(row + 1) * c];
            let (max, lse) = row_lse(Simd::detect(), zr);
            total += f64::from(max + lse - zr[t as usize]);
            let scale = 1.0 / n as f32;
            let wr = &mut want[row * c..(row + 1) * c];
            vmath::exp_sum_into(Simd::detect(), zr, wr, 1.0, max + lse);
            wr.iter_mut().for_each(|w| *w *= scale);
            want[row * c + t as usize] -= scale;
        }
        assert_eq!(loss.to_scalar::<f32>()?.to_bits(), ((total / n as f64) as f32).to_bits());
        assert!(grad.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "gradients differ in bits");
        Ok(())
    }

    #[test]
    fn bad_targets_and_other_dtypes_are_errors() -> Result<()> {
        let z = Tensor::zeros((2, 3), DType::F32, &Device::Cpu)?;
        assert!(softmax_cross_entropy(&z, &Tensor::new(&[0u32, 3], &Device::Cpu)?).is_err());
        assert!(softmax_cross_entropy(&z, &Tensor::new(&[0u32], &Device::Cpu)?).is_err());
        let e = softmax_cross_entropy(&z.to_dtype(DType::F64)?, &Tensor::new(&[0i64, 2], &Device::Cpu)?).unwrap_err();
        assert!(e.to_string().contains("F64"), "{e}");
        Ok(())
    }
}
