//! Gradient clipping: rescale the whole gradient when its global norm is too large, or clamp each
//! component.
//!
//! R. Pascanu, T. Mikolov and Y. Bengio, "On the difficulty of training recurrent neural networks",
//! ICML 2013, <https://arxiv.org/abs/1211.5063>, Algorithm 1:
//!
//! ```text
//! ‖g‖ = √(Σ_vars Σ_i g_i²)                 (one norm over *all* parameters together)
//! if ‖g‖ > max_norm:  g ← g · max_norm / ‖g‖
//! ```
//!
//! Rescaling keeps the gradient's *direction* and only shortens the step, which is what tames the
//! exploding gradients of recurrent networks without biasing the descent direction. Clamping each
//! component ([`clip_grad_value`]) is cruder: it changes the direction.

use std::collections::HashSet;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use crate::{Error, Result};

/// Σ g² of one gradient, as f64 on the host.
fn sum_of_squares(g: &Tensor) -> Result<f64> {
    Ok(match g.dtype() {
        DType::F64 => g.sqr()?.sum_all()?.to_scalar::<f64>()?,
        // Half precision would overflow when squared and summed; f32 is enough for a norm.
        _ => f64::from(g.to_dtype(DType::F32)?.sqr()?.sum_all()?.to_scalar::<f32>()?),
    })
}

/// The gradients in `grads` of the distinct `vars` that have one.
fn present<'a>(grads: &'a GradStore, vars: &'a [Var]) -> impl Iterator<Item = (&'a Var, &'a Tensor)> {
    // A var listed twice must count once in the norm and be scaled once.
    let mut seen = HashSet::new();
    vars.iter().filter(move |v| seen.insert(v.as_tensor().id())).filter_map(|v| grads.get(v).map(|g| (v, g)))
}

/// The global L2 norm of the gradients of `vars` (vars without a gradient are skipped).
///
/// ```
/// use candle_core::{Device, Var};
/// let w = Var::new(&[3f32, 4.0], &Device::Cpu)?;
/// let grads = w.as_tensor().sum_all()?.backward()?; // gradient [1, 1]
/// assert!((dlhist::optim::grad_norm(&grads, &[w])? - 2f64.sqrt()).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn grad_norm(grads: &GradStore, vars: &[Var]) -> Result<f64> {
    let mut total = 0.0;
    for (_, g) in present(grads, vars) {
        total += sum_of_squares(g)?;
    }
    Ok(total.sqrt())
}

/// Global-norm clipping (Pascanu et al. 2013): if the norm of all the gradients of `vars` together
/// exceeds `max_norm`, scales every one of them by `max_norm / norm` so the global norm becomes
/// `max_norm`; otherwise leaves them untouched.
///
/// Returns the total norm **before** clipping (worth logging: spikes show instabilities). Vars
/// without a gradient are skipped. If the norm is not finite (a NaN or ∞ gradient), the gradients are
/// left as they are and the non-finite norm is returned, so the caller can skip the step.
/// Errors if `max_norm` is negative or not finite.
///
/// ```
/// use candle_core::{Device, Var};
/// use candle_nn::Optimizer;
/// use dlhist::optim::{clip_grad_norm, Sgd, SgdConfig};
///
/// let w = Var::new(&[3f32, 4.0], &Device::Cpu)?;
/// let mut opt = Sgd::new(vec![w.clone()], SgdConfig::new(0.1))?;
/// let loss = w.as_tensor().sqr()?.sum_all()?; // gradient 2w = [6, 8], norm 10
/// let mut grads = loss.backward()?;
/// let norm = clip_grad_norm(&mut grads, &[w.clone()], 1.0)?;
/// assert!((norm - 10.0).abs() < 1e-5);
/// opt.step(&grads)?; // steps with the clipped gradient [0.6, 0.8]
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    if !(max_norm.is_finite() && max_norm >= 0.0) {
        return Err(Error::Invalid(format!(
            "clip_grad_norm: max_norm = {max_norm} must be finite and >= 0 (e.g. 1.0)"
        )));
    }
    let total = grad_norm(grads, vars)?;
    if total.is_finite() && total > max_norm {
        let scale = max_norm / total;
        let scaled: Vec<(Var, Tensor)> =
            present(grads, vars).map(|(v, g)| Ok((v.clone(), g.affine(scale, 0.0)?))).collect::<Result<_>>()?;
        for (v, g) in scaled {
            grads.insert(v.as_tensor(), g);
        }
    }
    Ok(total)
}

/// Value clipping: clamps every gradient component of `vars` to `[-clip_value, clip_value]`.
/// Vars without a gradient are skipped. Errors if `clip_value` is negative or not finite.
///
/// ```
/// use candle_core::{Device, Var};
/// let w = Var::new(&[3f32, -4.0, 0.1], &Device::Cpu)?;
/// let mut grads = w.as_tensor().sqr()?.sum_all()?.backward()?; // [6, -8, 0.2]
/// dlhist::optim::clip_grad_value(&mut grads, &[w.clone()], 1.0)?;
/// assert_eq!(grads.get(&w).unwrap().to_vec1::<f32>()?, vec![1.0, -1.0, 0.2]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn clip_grad_value(grads: &mut GradStore, vars: &[Var], clip_value: f64) -> Result<()> {
    if !(clip_value.is_finite() && clip_value >= 0.0) {
        return Err(Error::Invalid(format!("clip_grad_value: clip_value = {clip_value} must be finite and >= 0")));
    }
    let clamped: Vec<(Var, Tensor)> =
        present(grads, vars).map(|(v, g)| Ok((v.clone(), g.clamp(-clip_value, clip_value)?))).collect::<Result<_>>()?;
    for (v, g) in clamped {
        grads.insert(v.as_tensor(), g);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(pairs: &[(&Var, &[f32])]) -> Result<GradStore> {
        let mut grads = GradStore::default();
        for (v, g) in pairs {
            grads.insert(v.as_tensor(), Tensor::new(*g, &crate::device::test_device())?);
        }
        Ok(grads)
    }

    #[test]
    fn large_gradients_are_scaled_to_max_norm() -> Result<()> {
        let dev = crate::device::test_device();
        let a = Var::new(&[0f32, 0.0], &dev)?;
        let b = Var::new(&[0f32], &dev)?;
        let c = Var::new(&[0f32], &dev)?; // no gradient: skipped, not an error
                                          // Global norm √(3² + 4² + 12²) = √169 = 13; clip to 6.5 → every component halves.
        let mut grads = store(&[(&a, &[3.0, 4.0]), (&b, &[12.0])])?;
        let norm = clip_grad_norm(&mut grads, &[a.clone(), b.clone(), c.clone(), a.clone()], 6.5)?;
        assert!((norm - 13.0).abs() < 1e-6, "norm before clipping {norm}");
        let ga = grads.get(&a).unwrap().to_vec1::<f32>()?;
        let gb = grads.get(&b).unwrap().to_vec1::<f32>()?;
        assert_eq!(ga, vec![1.5, 2.0]);
        assert_eq!(gb, vec![6.0]);
        assert!((grad_norm(&grads, &[a, b, c])? - 6.5).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn small_gradients_are_untouched() -> Result<()> {
        let a = Var::new(&[0f32, 0.0], &crate::device::test_device())?;
        let mut grads = store(&[(&a, &[0.3, 0.4])])?;
        let norm = clip_grad_norm(&mut grads, std::slice::from_ref(&a), 1.0)?;
        assert!((norm - 0.5).abs() < 1e-7);
        assert_eq!(grads.get(&a).unwrap().to_vec1::<f32>()?, vec![0.3, 0.4]);
        Ok(())
    }

    #[test]
    fn non_finite_norm_leaves_gradients_and_reports_it() -> Result<()> {
        let a = Var::new(&[0f32, 0.0], &crate::device::test_device())?;
        let mut grads = store(&[(&a, &[f32::INFINITY, 1.0])])?;
        let norm = clip_grad_norm(&mut grads, std::slice::from_ref(&a), 1.0)?;
        assert!(norm.is_infinite());
        assert_eq!(grads.get(&a).unwrap().to_vec1::<f32>()?[1], 1.0);
        Ok(())
    }

    #[test]
    fn value_clipping_clamps_components() -> Result<()> {
        let a = Var::new(&[0f32, 0.0, 0.0], &crate::device::test_device())?;
        let mut grads = store(&[(&a, &[2.0, -0.5, -3.0])])?;
        clip_grad_value(&mut grads, std::slice::from_ref(&a), 1.0)?;
        assert_eq!(grads.get(&a).unwrap().to_vec1::<f32>()?, vec![1.0, -0.5, -1.0]);
        Ok(())
    }

    #[test]
    fn bad_thresholds_error() -> Result<()> {
        let a = Var::new(&[0f32], &crate::device::test_device())?;
        let mut grads = store(&[(&a, &[1.0])])?;
        assert!(clip_grad_norm(&mut grads, std::slice::from_ref(&a), -1.0).is_err());
        assert!(clip_grad_norm(&mut grads, std::slice::from_ref(&a), f64::NAN).is_err());
        assert!(clip_grad_value(&mut grads, &[a], -0.1).is_err());
        Ok(())
    }
}
