//! # Gaussian Error Linear Units
//!
//! D. Hendrycks and K. Gimpel, "Gaussian Error Linear Units (GELUs)", 2016.
//! <https://arxiv.org/abs/1606.08415>
//!
//! ReLU gates its input by its sign; GELU gates it by the probability that a standard normal variable
//! falls below it, `GELU(x) = x Φ(x)`, a smooth gate that lets small negative inputs through a little:
//!
//! ```text
//! exact:    x Φ(x) = ½ x (1 + erf(x / √2))
//! tanh:     ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))      (the paper's fast approximation)
//! sigmoid:  x σ(1.702 x)                                   (a cruder one)
//! slope:    d/dx x Φ(x) = Φ(x) + x φ(x),   φ(x) = e^(−x²/2) / √(2π)
//! ```
//!
//! These functions write the formulas out on tensors (candle's autograd differentiates them), so the
//! notebook can compare each against candle's fused `gelu_erf` / `gelu` kernels.

use std::f64::consts::{FRAC_1_SQRT_2, PI};

use candle_core::{Result, Tensor};

/// Exact GELU, `½ x (1 + erf(x/√2))`.
///
/// ```
/// use dlhist::prelude::*;
/// let x = Tensor::new(&[-1f64, 0.0, 1.0], &Device::Cpu)?;
/// let y = dlhist::optimization::gelu(&x)?.to_vec1::<f64>()?;
/// assert!((y[2] - 0.841344746).abs() < 1e-8 && y[1] == 0.0 && (y[0] + 0.158655254).abs() < 1e-8);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    let phi = ((x * FRAC_1_SQRT_2)?.erf()? + 1.0)?; // 2Φ(x)
    (x * phi)? * 0.5
}

/// The tanh approximation `½ x (1 + tanh(√(2/π)(x + 0.044715 x³)))` (what candle's `gelu` and
/// GPT-2 compute).
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    let inner = ((x + (x.powf(3.0)? * 0.044715)?)? * (2.0 / PI).sqrt())?;
    (x * (inner.tanh()? + 1.0)?)? * 0.5
}

/// The sigmoid approximation `x σ(1.702 x)`.
pub fn gelu_sigmoid(x: &Tensor) -> Result<Tensor> {
    x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
}

/// The derivative of exact GELU, `Φ(x) + x φ(x)`.
///
/// ```
/// use dlhist::prelude::*;
/// let x = Tensor::new(&[0f64], &Device::Cpu)?;
/// assert_eq!(dlhist::optimization::gelu_derivative(&x)?.to_vec1::<f64>()?, vec![0.5]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn gelu_derivative(x: &Tensor) -> Result<Tensor> {
    let cdf = (((x * FRAC_1_SQRT_2)?.erf()? + 1.0)? * 0.5)?;
    let pdf = ((x.sqr()? * -0.5)?.exp()? * (1.0 / (2.0 * PI).sqrt()))?;
    cdf + (x * pdf)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
    }

    fn grid() -> Result<Tensor> {
        Tensor::arange_step(-6.0f64, 6.0, 0.01, &crate::device::test_device())
    }

    #[test]
    fn formulas_match_candles_kernels() -> Result<()> {
        let x = grid()?;
        assert!(max_diff(&gelu(&x)?, &x.gelu_erf()?) < 1e-12);
        assert!(max_diff(&gelu_tanh(&x)?, &x.gelu()?) < 1e-12);
        // The tanh approximation is within 5e-4 of the exact function; the sigmoid one within 0.03.
        let tanh_err = max_diff(&gelu_tanh(&x)?, &gelu(&x)?);
        assert!(tanh_err > 1e-5 && tanh_err < 5e-4, "{tanh_err}");
        let sig_err = max_diff(&gelu_sigmoid(&x)?, &gelu(&x)?);
        assert!(sig_err > 1e-3 && sig_err < 0.03, "{sig_err}");
        Ok(())
    }

    #[test]
    fn derivative_matches_autograd_and_works_in_f32() -> Result<()> {
        let x = Var::from_tensor(&grid()?)?;
        let grads = gelu(x.as_tensor())?.sum_all()?.backward()?;
        assert!(max_diff(grads.get(&x).unwrap(), &gelu_derivative(x.as_tensor())?) < 1e-10);
        let xf = grid()?.to_dtype(candle_core::DType::F32)?;
        let yf = gelu(&xf)?.to_dtype(candle_core::DType::F64)?;
        assert!(max_diff(&yf, &gelu(&grid()?)?) < 1e-5);
        Ok(())
    }
}
