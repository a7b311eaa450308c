//! # Weight decay
//!
//! A. Krogh and J. A. Hertz, "A Simple Weight Decay Can Improve Generalization", NIPS 1991.
//! <https://proceedings.neurips.cc/paper/1991/file/8eefcfdf5990e441f0fb6f3fad709e21-Paper.pdf>
//!
//! Add a penalty on the size of the weights to the error being minimized (the paper's equation 2):
//!
//! ```text
//! E(w) = E₀(w) + ½ λ Σ_i w_i²        ⇒   ∂E/∂w_i = ∂E₀/∂w_i + λ w_i
//! ```
//!
//! so every gradient step also shrinks each weight by a factor `1 − ηλ`: weights that the data does not
//! keep pushing on decay towards zero. The optimizers implement the `λ w` term directly
//! ([`crate::optim::SgdConfig::weight_decay`], [`crate::optimization::WeightDecay::L2`]); under
//! Adam, adding it to the gradient (L2) is *not* the same as shrinking the weights
//! ([`crate::optimization::WeightDecay::Decoupled`], AdamW), because Adam rescales the gradient per
//! parameter. The functions here compute the penalty and the norms that the notebooks track.

use candle_core::{DType, Result, Tensor, Var};
use candle_nn::VarMap;

/// The weight matrices and kernels of a `VarMap` (parameters with two or more dimensions), sorted by
/// name. Biases and normalization parameters are left out, as the decay is usually applied only to
/// the weights that multiply inputs.
pub fn weight_matrices(vars: &VarMap) -> Vec<Var> {
    let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut named: Vec<(&String, &Var)> = data.iter().filter(|(_, v)| v.rank() >= 2).collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

/// The penalty `½ Σ w²` over `vars`, as a scalar tensor that gradients flow through (multiply by λ
/// and add it to the loss).
///
/// ```
/// use candle_core::{Device, Var};
/// let w = Var::new(&[[3f32, 4.0]], &Device::Cpu)?;
/// let p = dlhist::optimization::l2_penalty(&[w])?;
/// assert_eq!(p.to_scalar::<f32>()?, 12.5);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn l2_penalty(vars: &[Var]) -> Result<Tensor> {
    let Some(first) = vars.first() else { candle_core::bail!("l2_penalty: no parameters given") };
    let mut total = Tensor::zeros((), first.dtype(), first.device())?;
    for v in vars {
        total = (total + v.as_tensor().sqr()?.sum_all()?.to_dtype(first.dtype())?)?;
    }
    total * 0.5
}

/// The Euclidean norm `√(Σ w²)` over all of `vars`.
pub fn weight_norm(vars: &[Var]) -> Result<f64> {
    let mut sum = 0.0;
    for v in vars {
        sum += v.as_tensor().to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
    }
    Ok(sum.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_gradient_is_the_weight_and_matrices_skip_biases() -> Result<()> {
        let dev = crate::device::test_device();
        let (vars, vb) = crate::init::seeded(0, DType::F32, &dev);
        let _l = candle_nn::linear(3, 2, vb.pp("b"))?;
        let _k = candle_nn::linear(2, 2, vb.pp("a"))?;
        let mats = weight_matrices(&vars);
        assert_eq!(mats.len(), 2);
        assert_eq!(mats[0].dims(), &[2, 2]); // "a.weight" sorts first
        let g = l2_penalty(&mats)?.backward()?;
        for m in &mats {
            let diff = (g.get(m).unwrap() - m.as_tensor())?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(diff, 0.0);
        }
        let norm = weight_norm(&mats)?;
        let want = (2.0 * l2_penalty(&mats)?.to_scalar::<f32>()? as f64).sqrt();
        assert!((norm - want).abs() < 1e-6);
        assert!(l2_penalty(&[]).is_err());
        Ok(())
    }
}
