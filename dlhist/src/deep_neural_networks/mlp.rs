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
use candle_nn::{Linear, VarBuilder};

/// The non-linearity between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// The logistic function 1 / (1 + e^-x), the 1986 paper's choice.
    Sigmoid,
    /// tanh: a zero-centred sigmoid.
    #[default]
    Tanh,
    /// max(0, x) (Glorot et al. 2011; section 02).
    Relu,
    /// x Φ(x) (Hendrycks & Gimpel 2016; section 02).
    Gelu,
    /// x for x > 0, e^x − 1 otherwise (Clevert et al. 2015; compared with GELU in section 02).
    Elu,
}

impl Activation {
    /// The fused kernel's version of this activation, if it has one (see [`crate::fast`]).
    pub(crate) fn fused(self) -> Option<crate::fast::Act> {
        match self {
            Activation::Relu => Some(crate::fast::Act::Relu),
            Activation::Tanh => Some(crate::fast::Act::Tanh),
            Activation::Gelu => Some(crate::fast::Act::Gelu),
            _ => None,
        }
    }
}

/// `f(layer(x))`, with the bias and activation fused into the matrix product where [`crate::fast::linear`] can
/// (`f = None` means no activation).
pub(crate) fn linear_act(layer: &Linear, x: &Tensor, f: Option<Activation>) -> Result<Tensor> {
    let Some(bias) = layer.bias() else {
        let y = layer.forward(x)?;
        return f.map_or(Ok(y.clone()), |f| f.forward(&y));
    };
    match f {
        None => crate::fast::linear(x, layer.weight(), bias, crate::fast::Act::Identity),
        Some(f) => match f.fused() {
            Some(act) => crate::fast::linear(x, layer.weight(), bias, act),
            None => f.forward(&crate::fast::linear(x, layer.weight(), bias, crate::fast::Act::Identity)?),
        },
    }
}

impl Module for Activation {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Sigmoid => candle_nn::ops::sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu_erf(),
            Activation::Elu => x.elu(1.0),
        }
    }
}

/// A fully connected network: `Linear -> f -> Linear -> f -> ... -> Linear` (no activation on the
/// output, so it returns logits or raw regression values).
///
/// Parameters are named `{path}.{i}.weight` / `{path}.{i}.bias` for layer `i`.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::deep_neural_networks::{Activation, Mlp};
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
    layers: Vec<Linear>,
    activation: Activation,
}

impl Mlp {
    /// An MLP with layer widths `sizes` (input first, output last; at least two entries).
    pub fn new(sizes: &[usize], activation: Activation, vb: VarBuilder) -> Result<Self> {
        if sizes.len() < 2 {
            candle_core::bail!("Mlp::new needs at least an input and an output size, got {sizes:?}")
        }
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| candle_nn::linear(w[0], w[1], vb.pp(i.to_string())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp { layers, activation })
    }

    /// The linear layers, input side first.
    pub fn layers(&self) -> &[Linear] {
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
        for (i, layer) in self.layers.iter().enumerate() {
            h = linear_act(layer, &h, (i + 1 < self.layers.len()).then_some(self.activation))?;
            outs.push(h.clone());
        }
        Ok(outs)
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let in_dim = self.layers[0].weight().dims()[1];
        if x.dims().last() != Some(&in_dim) {
            candle_core::bail!("Mlp expects inputs [.., {in_dim}]; got {:?}", x.dims())
        }
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            // No non-linearity after the last layer: the loss (softmax cross-entropy, MSE) supplies its own.
            // Bias and activation are fused into the product on the CPU (crate::fast::linear).
            h = linear_act(layer, &h, (i + 1 < self.layers.len()).then_some(self.activation))?;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn forward_matches_a_hand_computed_network() -> Result<()> {
        let dev = Device::Cpu;
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
        let dev = Device::Cpu;
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

    /// The fused forward (and its gradients) against the candle-nn composition it replaced, every activation.
    #[test]
    fn fused_layers_match_the_plain_composition() -> Result<()> {
        let dev = Device::Cpu;
        for act in [Activation::Relu, Activation::Tanh, Activation::Sigmoid, Activation::Gelu, Activation::Elu] {
            let (vars, vb) = crate::init::seeded(2, DType::F32, &dev);
            let mlp = Mlp::new(&[5, 9, 4, 3], act, vb)?;
            let x = Var::from_tensor(
                &crate::rng::Rng::new(3).normal_tensor((6, 5), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?,
            )?;
            let fused = mlp.forward(&x)?;
            let mut h = x.as_tensor().clone();
            for (i, layer) in mlp.layers().iter().enumerate() {
                h = layer.forward(&h)?;
                if i + 1 < mlp.layers().len() {
                    h = act.forward(&h)?;
                }
            }
            crate::fast::testing::assert_close(&fused, &h, &format!("{act:?} values"))?;
            let (gf, gp) = (fused.sqr()?.sum_all()?.backward()?, h.sqr()?.sum_all()?.backward()?);
            let mut all = vars.all_vars();
            all.push(x.clone());
            for v in all {
                crate::fast::testing::assert_close(gf.get(&v).unwrap(), gp.get(&v).unwrap(), &format!("{act:?}"))?;
            }
        }
        Ok(())
    }

    #[test]
    fn bad_sizes_and_inputs_are_errors() {
        let dev = Device::Cpu;
        let (_, vb) = crate::init::seeded(0, DType::F32, &dev);
        assert!(Mlp::new(&[3], Activation::Relu, vb.clone()).is_err());
        let mlp = Mlp::new(&[3, 2], Activation::Relu, vb).unwrap();
        let e = mlp.forward(&Tensor::zeros((2, 4), DType::F32, &dev).unwrap()).unwrap_err().to_string();
        assert!(e.contains("[.., 3]") && e.contains("[2, 4]"), "{e}");
    }
}
