//! # The multi-layer perceptron trained by back-propagation
//!
//! D. E. Rumelhart, G. E. Hinton and R. J. Williams, "Learning Internal Representations by Error
//! Propagation", in *Parallel Distributed Processing*, vol. 1, ch. 8, MIT Press, 1986.
//! <https://stanford.edu/~jlmcc/papers/PDP/Volume%201/Chap8_PDP86.pdf>
//!
//! A layer computes `h = f(W x + b)`. Back-propagation is the chain rule applied from the loss
//! backwards; the paper's *generalized delta rule* names the error signal of each unit:
//!
//! ```text
//! output layer:  δ_j = (t_j - o_j) f'(net_j)
//! hidden layer:  δ_j = f'(net_j) Σ_k δ_k w_kj
//! update:        Δw_ji = η δ_j o_i
//! ```
//!
//! candle's autograd computes exactly these products when we call `loss.backward()`; the notebook
//! builds them by hand on scalars first, then uses this module.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{Activation, Dense};

/// A fully connected network: `Linear -> f -> Linear -> f -> ... -> Linear` (no activation on the
/// output, so it returns logits or raw regression values).
///
/// Parameters are named `{path}.{i}.weight` / `{path}.{i}.bias` for layer `i`.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::deep_neural_networks::Mlp;
/// let dev = Device::Cpu;
/// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let mlp = Mlp::new(&[2, 16, 16, 2], Activation::Tanh, vb.pp("mlp"))?;
/// let y = mlp.forward(&Tensor::zeros((5, 2), DType::F32, &dev)?)?;
/// assert_eq!(y.dims(), &[5, 2]);
/// assert_eq!(dlhist::init::param_count(&vars), 2 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Mlp {
    layers: Vec<Dense>,
    activation: Activation,
}

impl Mlp {
    /// An MLP with layer widths `sizes` (input first, output last; at least two entries).
    pub fn new(sizes: &[usize], activation: Activation, vb: VarBuilder) -> Result<Self> {
        if sizes.len() < 2 {
            candle_core::bail!("Mlp::new needs at least an input and an output size, got {sizes:?}")
        }
        let last = sizes.len() - 2;
        let layers = sizes
            .windows(2)
            .enumerate()
            // No non-linearity after the last layer: the loss (softmax cross-entropy, MSE) supplies its own.
            .map(|(i, w)| Dense::new(w[0], w[1], (i < last).then_some(activation), vb.pp(i.to_string())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp { layers, activation })
    }

    /// The layers, input side first (each one's affine part is [`Dense::linear`]).
    pub fn layers(&self) -> &[Dense] {
        &self.layers
    }

    /// The activation between layers.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// The output of every layer after its activation (the hidden representations), then the output.
    pub fn forward_all(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut outs = Vec::with_capacity(self.layers.len());
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h)?;
            outs.push(h.clone());
        }
        Ok(outs)
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let in_dim = self.layers[0].linear().weight().dims()[1];
        if x.dims().last() != Some(&in_dim) {
            candle_core::bail!("Mlp expects inputs [.., {in_dim}]; got {:?}", x.dims())
        }
        // h ← f(W h + b) layer by layer; the last layer has no f.
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.forward(&h)?;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Var};

    #[test]
    fn forward_matches_a_hand_computed_network() -> Result<()> {
        let dev = crate::device::test_device();
        let (vars, vb) = crate::init::seeded(0, DType::F32, &dev);
        let mlp = Mlp::new(&[2, 2, 1], Activation::Relu, vb)?;
        let set = |name: &str, t: Tensor| vars.data().lock().unwrap()[name].set(&t);
        set("0.weight", Tensor::new(&[[1f32, -1.], [2., 0.5]], &dev)?)?;
        set("0.bias", Tensor::new(&[0f32, -1.], &dev)?)?;
        set("1.weight", Tensor::new(&[[3f32, -2.]], &dev)?)?;
        set("1.bias", Tensor::new(&[0.5f32], &dev)?)?;
        // x = (1, 2): hidden = relu((1-2+0, 2+1-1)) = (0, 2); out = 3*0 - 2*2 + 0.5 = -3.5
        let y = mlp.forward(&Tensor::new(&[[1f32, 2.]], &dev)?)?;
        assert_eq!(y.to_vec2::<f32>()?, vec![vec![-3.5]]);
        let all = mlp.forward_all(&Tensor::new(&[[1f32, 2.]], &dev)?)?;
        assert_eq!(all[0].to_vec2::<f32>()?, vec![vec![0.0, 2.0]]);
        Ok(())
    }

    #[test]
    fn gradients_reach_every_layer() -> Result<()> {
        let dev = crate::device::test_device();
        let (vars, vb) = crate::init::seeded(1, DType::F32, &dev);
        let mlp = Mlp::new(&[3, 8, 8, 2], Activation::Tanh, vb)?;
        let x = crate::rng::Rng::new(0).normal_tensor((4, 3), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?;
        let grads = mlp.forward(&x)?.sqr()?.sum_all()?.backward()?;
        let vs: Vec<Var> = vars.all_vars();
        assert_eq!(vs.len(), 6);
        for v in vs {
            let g = grads.get(&v).expect("every parameter gets a gradient");
            assert!(g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
        }
        Ok(())
    }

    /// The fused and plain paths: same values and gradients, every activation.
    #[test]
    fn fused_and_plain_paths_agree() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        for act in [
            Activation::Relu,
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Gelu,
            Activation::Elu,
            Activation::LeakyRelu,
        ] {
            let (vars, vb) = crate::init::seeded(2, DType::F32, &dev);
            let mlp = Mlp::new(&[5, 9, 4, 3], act, vb)?;
            let x = Var::from_tensor(
                &crate::rng::Rng::new(3).normal_tensor((6, 5), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?,
            )?;
            let (fused, plain) = (mlp.forward(&x)?, crate::fast::plain(|| mlp.forward(&x))?);
            crate::fast::testing::assert_paths_agree(&fused, &plain, &vars, &[&x], &format!("{act:?}"))?;
        }
        Ok(())
    }

    #[test]
    fn bad_sizes_and_inputs_are_errors() {
        let dev = crate::device::test_device();
        let (_, vb) = crate::init::seeded(0, DType::F32, &dev);
        assert!(Mlp::new(&[3], Activation::Relu, vb.clone()).is_err());
        let mlp = Mlp::new(&[3, 2], Activation::Relu, vb).unwrap();
        let e = mlp.forward(&Tensor::zeros((2, 4), DType::F32, &dev).unwrap()).unwrap_err().to_string();
        assert!(e.contains("[.., 3]") && e.contains("[2, 4]"), "{e}");
    }
}
