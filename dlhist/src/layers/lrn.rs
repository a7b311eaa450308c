//! Local response normalization (AlexNet's "brightness normalization").
//!
//! A. Krizhevsky, I. Sutskever and G. E. Hinton, "ImageNet Classification with Deep Convolutional Neural
//! Networks", NeurIPS 2012, section 3.3. At every position, each channel's activity is divided by the summed
//! squares of its `n` neighbouring channels, a form of lateral inhibition: units that fire together compete.
//!
//! ```text
//! b[i] = a[i] / (k + α Σ_{j = max(0, i − n/2)}^{min(N − 1, i + n/2)} a[j]²)^β,     k = 2, n = 5, α = 1e-4, β = 0.75
//! ```

use candle_core::{Module, Result, Tensor};

use crate::fast;

/// Local response normalization across channels of `[N, C, H, W]` (the paper's equation, section 3.3).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::LocalResponseNorm;
/// let lrn = LocalResponseNorm::alexnet();
/// let x = Tensor::ones((1, 3, 1, 1), DType::F64, &Device::Cpu)?;
/// // Channel 0 sees channels 0..=2 (n = 5 is clipped at the edge): 1 / (2 + 1e-4·3)^0.75.
/// let y = lrn.forward(&x)?.flatten_all()?.to_vec1::<f64>()?;
/// assert!((y[0] - (2.0f64 + 3e-4).powf(-0.75)).abs() < 1e-12);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalResponseNorm {
    /// `n`, the number of adjacent channels summed over (centred on the channel).
    pub size: usize,
    /// `α`, the weight of the sum of squares.
    pub alpha: f64,
    /// `β`, the exponent.
    pub beta: f64,
    /// `k`, the constant that keeps the denominator away from zero.
    pub k: f64,
}

impl LocalResponseNorm {
    /// The paper's hyper-parameters: `n = 5, α = 1e-4, β = 0.75, k = 2`.
    pub fn alexnet() -> Self {
        LocalResponseNorm { size: 5, alpha: 1e-4, beta: 0.75, k: 2.0 }
    }
}

impl Module for LocalResponseNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 {
            candle_core::bail!("LocalResponseNorm expects [N, C, H, W]; got {:?}", x.dims())
        }
        if fast::applies(&[x]) {
            // Fused (crate::fast::local_response_norm): one sweep per image forward, two backward, with the
            // denominators recomputed per plane instead of stored.
            return fast::local_response_norm(x, self.size, self.alpha, self.beta, self.k);
        }
        // Plain: the equation as tensor ops.
        let (c, half) = (x.dims()[1], self.size / 2);
        // Zero-pad the channel axis by n/2 on both sides, so every channel has a full window; the padding adds
        // nothing to the sum, which is exactly the clipping at the edges in the paper's bounds.
        let sq = x.sqr()?.pad_with_zeros(1, half, half)?;
        // Σ_j a[j]² over the window: n shifted slices of the padded squares, added.
        let mut sum = sq.narrow(1, 0, c)?;
        for offset in 1..(2 * half + 1) {
            sum = (sum + sq.narrow(1, offset, c)?)?;
        }
        // (k + α Σ)^β, then divide.
        let denom = ((sum * self.alpha)? + self.k)?.powf(self.beta)?;
        x / denom
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::{assert_same_values_and_grads, randn, strided};
    use crate::Result;
    use candle_core::{DType, Var};

    /// The paper's formula, loop by loop, in f64.
    fn naive_lrn(x: &Tensor, l: &LocalResponseNorm) -> Result<Vec<f64>> {
        let (n, c, h, w) = x.dims4()?;
        let v: Vec<f64> = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let at = |b: usize, ch: usize, p: usize| v[(b * c + ch) * h * w + p];
        let mut out = vec![];
        for b in 0..n {
            for i in 0..c {
                for p in 0..h * w {
                    let lo = i.saturating_sub(l.size / 2);
                    let hi = (i + l.size / 2).min(c - 1);
                    let s: f64 = (lo..=hi).map(|j| at(b, j, p).powi(2)).sum();
                    out.push(at(b, i, p) / (l.k + l.alpha * s).powf(l.beta));
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn plain_path_matches_the_formula_and_finite_differences() -> Result<()> {
        // Large activations and a large α, so the normalization is far from the identity (f64: the plain path).
        let l = LocalResponseNorm { size: 5, alpha: 0.1, beta: 0.75, k: 2.0 };
        for shape in [(2, 7, 3, 2), (1, 1, 2, 2), (1, 3, 1, 1)] {
            let x = crate::rng::Rng::new(3)
                .normal_tensor(shape, 0.0, 5.0, &crate::device::test_device())?
                .to_dtype(DType::F64)?;
            let got: Vec<f64> = l.forward(&x)?.flatten_all()?.to_vec1()?;
            for (g, w) in got.iter().zip(&naive_lrn(&x, &l)?) {
                assert!((g - w).abs() < 1e-12, "{shape:?}: {g} vs {w}");
            }
        }
        let x = crate::rng::Rng::new(4)
            .normal_tensor((1, 6, 2, 2), 0.0, 3.0, &crate::device::test_device())?
            .to_dtype(DType::F64)?;
        let var = Var::from_tensor(&x)?;
        let g: Vec<f64> =
            l.forward(var.as_tensor())?.sum_all()?.backward()?.get(&var).unwrap().flatten_all()?.to_vec1()?;
        let base: Vec<f64> = x.flatten_all()?.to_vec1()?;
        for i in 0..base.len() {
            let f = |d: f64| -> Result<f64> {
                let mut b = base.clone();
                b[i] += d;
                Ok(l.forward(&Tensor::from_vec(b, (1, 6, 2, 2), &crate::device::test_device())?)?
                    .sum_all()?
                    .to_scalar()?)
            };
            let fd = (f(1e-6)? - f(-1e-6)?) / 2e-6;
            assert!((fd - g[i]).abs() < 1e-6, "element {i}: {fd} vs {}", g[i]);
        }
        Ok(())
    }

    #[test]
    fn fused_and_plain_paths_agree() -> Result<()> {
        // The paper's and other exponents, windows wider than the channel count, odd and tiny planes, strided.
        let cases: [(&[usize], usize, f64, f64, f64); 8] = [
            (&[2, 7, 3, 5], 5, 0.1, 0.75, 2.0),
            (&[1, 1, 1, 1], 5, 0.1, 0.75, 2.0),
            (&[1, 3, 1, 1], 5, 0.3, 0.75, 1.0),
            (&[3, 9, 5, 3], 3, 0.05, 0.5, 1.0),
            (&[2, 6, 4, 4], 4, 0.2, 0.6, 2.0),
            (&[1, 4, 2, 7], 1, 0.5, 1.3, 1.5),
            (&[2, 32, 7, 7], 5, 1e-4, 0.75, 2.0),
            (&[1, 2, 3, 3], 11, 0.2, 0.75, 0.5),
        ];
        for (seed, (shape, size, alpha, beta, k)) in cases.into_iter().enumerate() {
            for non_contiguous in [false, true] {
                let v = Var::from_tensor(&(randn(shape, seed as u64) * 3.0)?)?;
                let x = if non_contiguous { strided(v.as_tensor())? } else { v.as_tensor().clone() };
                let l = LocalResponseNorm { size, alpha, beta, k };
                let (fused, plain) = (l.forward(&x)?, fast::plain(|| l.forward(&x))?);
                let what = format!("{shape:?} n={size} α={alpha} β={beta} k={k} strided {non_contiguous}");
                assert_same_values_and_grads(&fused, &plain, &[(&v, "dx")], &what)?;
            }
        }
        Ok(())
    }
}
