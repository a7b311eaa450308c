//! # Layer normalization
//!
//! J. L. Ba, J. R. Kiros and G. E. Hinton, "Layer Normalization", 2016.
//! <https://arxiv.org/abs/1607.06450>
//!
//! Batch norm averages each unit over the mini-batch; layer norm averages over the `H` units of one
//! layer for *one* example (the paper's equation 4), so training and inference compute the same
//! function, batch size 1 works, and a recurrent network can normalize every time step:
//!
//! ```text
//! μ = 1/H Σ_i a_i        σ = √(1/H Σ_i (a_i − μ)² + ε)
//! h_i = g_i (a_i − μ) / σ + b_i
//! ```

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};

use crate::fast;

/// Layer normalization over the last axis of size `size`, with a learned gain (`{path}.weight`,
/// init 1) and bias (`{path}.bias`, init 0). ε = 1e-5 by default.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::optimization::LayerNorm;
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let ln = LayerNorm::new(4, vb.pp("ln"))?;
/// // One example is enough: statistics are over its own 4 features.
/// let y = ln.forward(&Tensor::new(&[[1f32, 2., 3., 4.]], &dev)?)?;
/// let row = &y.to_vec2::<f32>()?[0];
/// assert!(row.iter().sum::<f32>().abs() < 1e-5);
/// assert!((row.iter().map(|v| v * v).sum::<f32>() / 4.0 - 1.0).abs() < 1e-4);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Layer norm over a last axis of `size` features, ε = 1e-5.
    pub fn new(size: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_eps(size, 1e-5, vb)
    }

    /// Layer norm with the given ε added to the variance.
    pub fn with_eps(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        if eps.is_nan() || eps < 0.0 {
            candle_core::bail!("LayerNorm: eps must be >= 0, got {eps}")
        }
        let weight = vb.get_with_hints(size, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(size, "bias", Init::Const(0.0))?;
        Ok(LayerNorm { weight, bias, eps })
    }

    /// The learned gain g and bias b.
    pub fn affine(&self) -> (&Tensor, &Tensor) {
        (&self.weight, &self.bias)
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.weight.dims()[0];
        if x.dims().last() != Some(&h) {
            candle_core::bail!("LayerNorm over {h} features expects input [.., {h}]; got {:?}", x.dims())
        }
        if h > 0 && fast::applies(&[x, &self.weight, &self.bias]) {
            // Fused (crate::fast::layer_norm): μ and σ in one pass per row, the backward pass in closed form.
            return fast::layer_norm(x, &self.weight, &self.bias, self.eps);
        }
        // Plain: the paper's equation 4 over the last axis, row by row. Statistics in f32 at least (half-precision
        // sums over a wide layer lose the mean), f64 kept as f64.
        let dtype = x.dtype();
        let xw = x.to_dtype(if dtype == DType::F64 { dtype } else { DType::F32 })?;
        let mu = xw.mean_keepdim(D::Minus1)?; // μ = 1/H Σ_i a_i
        let centered = xw.broadcast_sub(&mu)?; // a_i − μ
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?; // 1/H Σ_i (a_i − μ)²
        let sigma = (var + self.eps)?.sqrt()?; // σ, with ε inside the root as PyTorch does
        let normed = centered.broadcast_div(&sigma)?.to_dtype(dtype)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias) // h_i = g_i (a_i − μ)/σ + b_i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Result;
    use candle_core::Var;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn matches_candle_nn_values_and_a_hand_composition_in_gradients() -> Result<()> {
        let dev = crate::device::test_device();
        for shape in [vec![5, 7], vec![2, 3, 1], vec![1, 16], vec![3, 2, 9]] {
            let h = *shape.last().unwrap();
            let x = Var::from_tensor(&crate::rng::Rng::new(4).normal_tensor(shape.as_slice(), 1.0, 3.0, &dev)?)?;
            let (_m, vb) = crate::init::seeded(0, DType::F32, &dev);
            let ours = LayerNorm::new(h, vb)?;
            let theirs = candle_nn::LayerNorm::new(ours.weight.clone(), ours.bias.clone(), 1e-5);
            let a = ours.forward(x.as_tensor())?;
            assert!(max_diff(&a, &theirs.forward(x.as_tensor())?) < 1e-5, "{shape:?}");
            // candle-nn's fused layer-norm kernel has no backward pass, so the gradient reference is the
            // equation composed from elementary ops in f64. The loss weights differ per element, so the
            // normalization's full Jacobian matters.
            let w = crate::rng::Rng::new(5).normal_tensor(shape.as_slice(), 0.0, 1.0, &dev)?;
            let ga = (a * &w)?.sum_all()?.backward()?;
            let x64 = Var::from_tensor(&x.as_tensor().to_dtype(DType::F64)?)?;
            let mean = x64.as_tensor().mean_keepdim(D::Minus1)?;
            let c = x64.as_tensor().broadcast_sub(&mean)?;
            let sd = (c.sqr()?.mean_keepdim(D::Minus1)? + 1e-5)?.sqrt()?;
            let manual = c.broadcast_div(&sd)?;
            let gb = (manual * w.to_dtype(DType::F64)?)?.sum_all()?.backward()?;
            let gb = gb.get(&x64).unwrap().to_dtype(DType::F32)?;
            assert!(max_diff(ga.get(&x).unwrap(), &gb) < 1e-4, "{shape:?}: {}", max_diff(ga.get(&x).unwrap(), &gb));
        }
        Ok(())
    }

    /// The fused and plain paths: same values and gradients of input, gain and bias, for wide, tiny, strided and
    /// 3-D inputs.
    #[test]
    fn fused_and_plain_paths_agree() -> Result<()> {
        use crate::fast::testing::{assert_paths_agree, strided};
        let dev = candle_core::Device::Cpu;
        for (shape, non_contiguous) in
            [(vec![12, 64, 128], false), (vec![5, 7], true), (vec![1, 1], false), (vec![3, 2, 33], true)]
        {
            let h = *shape.last().unwrap();
            let (vars, vb) = crate::init::seeded(0, DType::F32, &dev);
            let ln = LayerNorm::new(h, vb)?;
            // Gain and bias away from 1 and 0, so their gradients matter.
            for (name, var) in vars.data().lock().unwrap().iter() {
                var.set(&crate::rng::Rng::new(name.len() as u64).normal_tensor(h, 0.5, 1.0, &dev)?)?;
            }
            let x = Var::from_tensor(&(crate::rng::Rng::new(1).normal_tensor(shape.as_slice(), 0.5, 2.0, &dev)?))?;
            let xi = if non_contiguous { strided(x.as_tensor())? } else { x.as_tensor().clone() };
            let (fused, plain) = (ln.forward(&xi)?, fast::plain(|| ln.forward(&xi))?);
            assert_paths_agree(&fused, &plain, &vars, &[&x], &format!("{shape:?}"))?;
        }
        Ok(())
    }

    #[test]
    fn non_contiguous_input_and_bad_shape() -> Result<()> {
        let dev = crate::device::test_device();
        let (_m, vb) = crate::init::seeded(0, DType::F32, &dev);
        let ln = LayerNorm::new(3, vb)?;
        let x = crate::rng::Rng::new(1).normal_tensor((3, 4), 0.0, 1.0, &dev)?;
        let t = x.t()?; // [4, 3], strided
        assert!(max_diff(&ln.forward(&t)?, &ln.forward(&t.contiguous()?)?) < 1e-6);
        let err = ln.forward(&x).unwrap_err();
        assert!(err.to_string().contains("[3, 4]"), "{err}");
        Ok(())
    }
}
