//! Seeded inverted dropout.
//!
//! N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever and R. Salakhutdinov, "Dropout: A Simple Way
//! to Prevent Neural Networks from Overfitting", JMLR 15, 2014,
//! <https://jmlr.org/papers/v15/srivastava14a.html>.
//!
//! During training each activation is zeroed independently with probability `p`, so the network
//! cannot rely on any single unit (the paper's "co-adaptation"), and each mini-batch trains a
//! different thinned sub-network. The paper keeps units with probability `p` and multiplies the
//! weights by `p` at test time; here, as in PyTorch, `p` is the probability of **dropping** and the
//! survivors are scaled up during training instead ("inverted" dropout):
//!
//! ```text
//! r_i ~ Bernoulli(1 − p)          (1 = keep)
//! y_i = x_i · r_i / (1 − p)       (training;  E[y_i] = x_i)
//! y_i = x_i                       (evaluation)
//! ```
//!
//! so evaluation needs no rescaling at all. candle's CPU generator cannot be seeded, so the masks are
//! drawn from a [`crate::rng::Rng`] and are the same on every run for a given seed.

use std::sync::Mutex;

use candle_core::{ModuleT, Tensor};

use crate::rng::Rng;
use crate::{Error, Result};

fn check_p(p: f32) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "dropout probability p = {p} must be in [0, 1): it is the chance of *dropping* a unit (0.5 is the \
             paper's choice for hidden layers, 0.2 for inputs); p = 1 would drop everything"
        )))
    }
}

/// The mask-and-scale step shared by [`Dropout`] and [`dropout`]; `p` is already checked.
fn apply(x: &Tensor, p: f32, rng: &mut Rng) -> candle_core::Result<Tensor> {
    if p == 0.0 {
        return Ok(x.clone());
    }
    // Drawn on the host (seeded) and uploaded to x's device, in x's dtype.
    let keep = rng.bernoulli_tensor(x.shape(), 1.0 - p, x.device()).map_err(|e| match e {
        // Hand candle's own error back unwrapped; anything else travels as a wrapped message.
        Error::Candle(c) => c,
        other => candle_core::Error::wrap(other),
    })?;
    let mask = keep.to_dtype(x.dtype())?.affine(1.0 / (1.0 - f64::from(p)), 0.0)?;
    x * mask
}

/// Inverted dropout as a function: zeroes each element of `x` with probability `p` and scales the
/// rest by `1/(1 − p)`, drawing the mask from `rng`. `p = 0` returns `x` unchanged.
///
/// Errors if `p` is outside `[0, 1)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use dlhist::{layers::dropout, rng::Rng};
/// let x = Tensor::ones((4, 4), candle_core::DType::F32, &Device::Cpu)?;
/// let y = dropout(&x, 0.5, &mut Rng::new(0))?;
/// // Every element is either dropped (0) or kept and doubled (2).
/// assert!(y.flatten_all()?.to_vec1::<f32>()?.iter().all(|&v| v == 0.0 || v == 2.0));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn dropout(x: &Tensor, p: f32, rng: &mut Rng) -> Result<Tensor> {
    check_p(p)?;
    Ok(apply(x, p, rng)?)
}

/// A dropout layer with its own seeded generator, for use inside models.
///
/// Implements [`ModuleT`]: `forward_t(x, true)` drops, `forward_t(x, false)` is the identity. The
/// generator sits behind a [`Mutex`] because `forward_t` takes `&self`; every training call advances it,
/// so successive batches get fresh masks while a rerun with the same seed repeats them all.
///
/// ```
/// use candle_core::{Device, ModuleT, Tensor};
/// use dlhist::layers::Dropout;
/// let drop = Dropout::new(0.5, 42)?;
/// let x = Tensor::ones(8, candle_core::DType::F32, &Device::Cpu)?;
/// assert_eq!(drop.forward_t(&x, false)?.to_vec1::<f32>()?, vec![1.0; 8]); // evaluation: identity
/// let y = drop.forward_t(&x, true)?; // training: about half zeroed, the rest 2.0
/// assert!(y.to_vec1::<f32>()?.iter().all(|&v| v == 0.0 || v == 2.0));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct Dropout {
    p: f32,
    rng: Mutex<Rng>,
}

impl Dropout {
    /// A dropout layer that drops with probability `p`, its masks drawn from `Rng::new(seed)`.
    ///
    /// Errors if `p` is outside `[0, 1)`.
    pub fn new(p: f32, seed: u64) -> Result<Self> {
        check_p(p)?;
        Ok(Dropout { p, rng: Mutex::new(Rng::new(seed)) })
    }

    /// The drop probability.
    pub fn p(&self) -> f32 {
        self.p
    }
}

impl ModuleT for Dropout {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(xs.clone());
        }
        // A poisoned lock only means another thread panicked mid-draw; the generator state is still a
        // valid ChaCha state, so carry on with it rather than fail every later call.
        let mut rng = self.rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        apply(xs, self.p, &mut rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn ones(n: usize) -> Result<Tensor> {
        Ok(Tensor::ones(n, DType::F32, &crate::device::test_device())?)
    }

    #[test]
    fn same_seed_same_mask_different_seed_different_mask() -> Result<()> {
        let x = ones(64)?;
        let a = Dropout::new(0.5, 7)?.forward_t(&x, true)?.to_vec1::<f32>()?;
        let b = Dropout::new(0.5, 7)?.forward_t(&x, true)?.to_vec1::<f32>()?;
        let c = Dropout::new(0.5, 8)?.forward_t(&x, true)?.to_vec1::<f32>()?;
        assert_eq!(a, b);
        assert_ne!(a, c);
        // The functional form with the same seed draws the same mask.
        let f = dropout(&x, 0.5, &mut Rng::new(7))?.to_vec1::<f32>()?;
        assert_eq!(a, f);
        // Successive calls on one layer get fresh masks.
        let layer = Dropout::new(0.5, 7)?;
        let first = layer.forward_t(&x, true)?.to_vec1::<f32>()?;
        let second = layer.forward_t(&x, true)?.to_vec1::<f32>()?;
        assert_ne!(first, second);
        Ok(())
    }

    #[test]
    fn eval_and_p_zero_are_identity() -> Result<()> {
        let x = Tensor::new(&[1.5f32, -2.0, 3.0], &crate::device::test_device())?;
        assert_eq!(Dropout::new(0.9, 1)?.forward_t(&x, false)?.to_vec1::<f32>()?, vec![1.5, -2.0, 3.0]);
        assert_eq!(Dropout::new(0.0, 1)?.forward_t(&x, true)?.to_vec1::<f32>()?, vec![1.5, -2.0, 3.0]);
        Ok(())
    }

    #[test]
    fn inverted_scaling_preserves_the_mean() -> Result<()> {
        // 100 000 activations of 3.0 with p = 0.3: survivors become 3/0.7 = 4.2857; the mean stays ≈ 3.
        // The sample mean's standard error is 3·√(p/(1−p))/√n ≈ 0.0062, so 0.05 is ~8 standard errors.
        let x = Tensor::full(3f32, 100_000, &crate::device::test_device())?;
        let y = dropout(&x, 0.3, &mut Rng::new(5))?;
        let mean = y.mean_all()?.to_scalar::<f32>()?;
        assert!((mean - 3.0).abs() < 0.05, "mean {mean}");
        let kept = y.to_vec1::<f32>()?.iter().filter(|&&v| v != 0.0).count() as f32 / 100_000.0;
        assert!((kept - 0.7).abs() < 0.01, "kept fraction {kept}");
        assert!(y.to_vec1::<f32>()?.iter().all(|&v| v == 0.0 || (v - 3.0 / 0.7).abs() < 1e-5));
        Ok(())
    }

    #[test]
    fn f64_input_keeps_its_dtype() -> Result<()> {
        let x = Tensor::ones(16, DType::F64, &crate::device::test_device())?;
        let y = dropout(&x, 0.25, &mut Rng::new(3))?;
        assert_eq!(y.dtype(), DType::F64);
        assert!(y.to_vec1::<f64>()?.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-12));
        Ok(())
    }

    #[test]
    fn p_out_of_range_errors() -> Result<()> {
        let x = ones(4)?;
        assert!(Dropout::new(1.0, 0).is_err());
        assert!(Dropout::new(-0.1, 0).is_err());
        assert!(Dropout::new(f32::NAN, 0).is_err());
        assert!(dropout(&x, 1.5, &mut Rng::new(0)).is_err());
        assert!(matches!(dropout(&x, 1.0, &mut Rng::new(0)), Err(Error::Invalid(_))));
        Ok(())
    }
}
