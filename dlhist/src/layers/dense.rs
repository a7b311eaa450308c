//! The fully connected layer: `y = f(x Wᵀ + b)`.
//!
//! Rosenblatt's perceptron with a differentiable `f`, the unit every network in the history is built from
//! (Rumelhart, Hinton & Williams 1986 train stacks of them by back-propagation, section 01).

use candle_core::{Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::Activation;
use crate::fast;

/// A linear layer followed by an optional activation: `f(x Wᵀ + b)` for `x [.., in]`, `W [out, in]`, `b [out]`.
///
/// Parameters `{path}.weight`, `{path}.bias` (candle-nn's and PyTorch's names and initialization, so checkpoints
/// and `candle_nn::linear` interchange).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::Dense;
/// let dev = Device::Cpu;
/// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let layer = Dense::new(3, 2, Some(Activation::Relu), vb.pp("fc"))?;
/// let y = layer.forward(&Tensor::ones((4, 3), DType::F32, &dev)?)?;
/// assert_eq!(y.dims(), &[4, 2]);
/// assert!(y.min_all()?.to_scalar::<f32>()? >= 0.0);
/// assert_eq!(dlhist::init::param_count(&vars), 3 * 2 + 2);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dense {
    linear: Linear,
    activation: Option<Activation>,
}

impl Dense {
    /// A layer from `fan_in` to `fan_out` features with activation `activation` (`None`: the affine map alone,
    /// as for a network's output logits).
    pub fn new(fan_in: usize, fan_out: usize, activation: Option<Activation>, vb: VarBuilder) -> Result<Self> {
        Ok(Dense { linear: candle_nn::linear(fan_in, fan_out, vb)?, activation })
    }

    /// A layer from weights already made (`linear`: `W [out, in]` and optional `b [out]`), e.g. a pretrained or a
    /// merged weight.
    pub fn from_linear(linear: Linear, activation: Option<Activation>) -> Self {
        Dense { linear, activation }
    }

    /// The affine part, `x Wᵀ + b` (to read the weights, or to take the pre-activation `z`).
    pub fn linear(&self) -> &Linear {
        &self.linear
    }

    /// The activation applied after the affine map, if any.
    pub fn activation(&self) -> Option<Activation> {
        self.activation
    }
}

impl Module for Dense {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.linear.weight();
        let fan_in = w.dims()[1];
        if x.dims().last() != Some(&fan_in) {
            candle_core::bail!("Dense layer of {fan_in} inputs expects [.., {fan_in}]; got {:?}", x.dims())
        }
        if let Some(b) = self.linear.bias().filter(|b| fast::applies(&[x, w, b])) {
            // Fused (crate::fast::linear): one matrix product with the bias and ReLU/tanh/GELU applied while the
            // output is in cache, and a backward pass that needs no saved pre-activation for ReLU and tanh.
            return fast::linear(x, w, b, self.activation);
        }
        // Plain: z = x Wᵀ + b (candle-nn's Linear), then y = f(z).
        crate::activation::apply(self.activation, self.linear.forward(x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::assert_paths_agree;
    use candle_core::{DType, Var};

    /// Both paths, every activation, 2-D and 3-D inputs: same values and gradients (inputs and parameters).
    #[test]
    fn fused_and_plain_paths_agree() -> crate::Result<()> {
        let dev = candle_core::Device::Cpu;
        for act in Activation::optional() {
            for shape in [vec![6, 5], vec![2, 3, 5]] {
                let (vars, vb) = crate::init::seeded(2, DType::F32, &dev);
                let layer = Dense::new(5, 4, act, vb)?;
                let x = Var::from_tensor(&crate::rng::Rng::new(3).normal_tensor(shape.as_slice(), 0.0, 1.0, &dev)?)?;
                let fused = layer.forward(&x)?;
                let plain = fast::plain(|| layer.forward(&x))?;
                assert_paths_agree(&fused, &plain, &vars, &[&x], &format!("{act:?} {shape:?}"))?;
            }
        }
        Ok(())
    }

    #[test]
    fn wrong_width_names_the_shapes() {
        let (_, vb) = crate::init::seeded(0, DType::F32, &crate::device::test_device());
        let layer = Dense::new(3, 2, None, vb).unwrap();
        let e = layer
            .forward(&Tensor::zeros((2, 4), DType::F32, &crate::device::test_device()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("[.., 3]") && e.contains("[2, 4]"), "{e}");
    }
}
