//! # The deep MLP of the section-02 experiments
//!
//! [`DeepMlp`] stacks fully connected [`ResidualBlock`]s with the knobs the section-02 notebooks turn one at a
//! time: the activation (ReLU, GELU notebooks), residual or plain blocks (residuals), batch or layer norm after
//! each linear layer (batch norm, layer norm), and dropout (dropout). Each ingredient is its milestone's own
//! module; this file only wires them together:
//!
//! ```text
//! h₀ = act(norm(W_in x))                       input layer
//! h_{k+1} = block_k(h_k)                        residual or plain (module residual)
//! logits = W_out h_B
//! ```
//!
//! where `act` is the activation followed by dropout in training.

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::{BatchNorm, LayerNorm, ResidualBlock};
use crate::layers::{Activation, Dropout};

/// The normalization a [`DeepMlp`] applies after each hidden linear layer, before the activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Norm {
    /// None.
    #[default]
    None,
    /// [`BatchNorm`] (statistics over the batch).
    Batch,
    /// [`LayerNorm`] (statistics over the features of each example).
    Layer,
}

/// The shape and ingredients of a [`DeepMlp`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeepMlpConfig {
    /// Input features.
    pub input: usize,
    /// Width of every hidden layer.
    pub width: usize,
    /// Number of two-layer blocks between the input layer and the output layer.
    pub blocks: usize,
    /// Outputs (classes, for a classifier).
    pub output: usize,
    /// The non-linearity.
    pub activation: Activation,
    /// Add each block's input to its output (He et al.) or not (a plain network).
    pub residual: bool,
    /// Normalization after each hidden linear layer.
    pub norm: Norm,
    /// Dropout probability after each hidden activation (0 = none).
    pub dropout: f32,
    /// Seeds the dropout masks.
    pub dropout_seed: u64,
}

impl DeepMlpConfig {
    /// A plain ReLU network without normalization or dropout.
    pub fn new(input: usize, width: usize, blocks: usize, output: usize) -> Self {
        DeepMlpConfig {
            input,
            width,
            blocks,
            output,
            activation: Activation::Relu,
            residual: false,
            norm: Norm::None,
            dropout: 0.0,
            dropout_seed: 0,
        }
    }

    /// Sets the activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Residual (`true`) or plain blocks.
    pub fn residual(mut self, residual: bool) -> Self {
        self.residual = residual;
        self
    }

    /// Sets the normalization.
    pub fn norm(mut self, norm: Norm) -> Self {
        self.norm = norm;
        self
    }

    /// Dropout with probability `p`, masks seeded by `seed`.
    pub fn dropout(mut self, p: f32, seed: u64) -> Self {
        self.dropout = p;
        self.dropout_seed = seed;
        self
    }

    /// Number of weight layers: input layer, two per block, output layer.
    pub fn depth(&self) -> usize {
        2 * self.blocks + 2
    }
}

#[derive(Debug)]
enum NormLayer {
    Batch(BatchNorm),
    Layer(LayerNorm),
}

impl NormLayer {
    fn new(norm: Norm, width: usize, vb: VarBuilder) -> Result<Option<Self>> {
        Ok(match norm {
            Norm::None => None,
            Norm::Batch => Some(NormLayer::Batch(BatchNorm::new(width, vb)?)),
            Norm::Layer => Some(NormLayer::Layer(LayerNorm::new(width, vb)?)),
        })
    }
}

/// `Linear`, then the norm if any: the pre-activation of a hidden layer.
#[derive(Debug)]
struct Hidden {
    linear: Linear,
    norm: Option<NormLayer>,
}

impl Hidden {
    fn new(fan_in: usize, fan_out: usize, norm: Norm, vb: VarBuilder) -> Result<Self> {
        Ok(Hidden {
            linear: candle_nn::linear(fan_in, fan_out, vb.pp("fc"))?,
            norm: NormLayer::new(norm, fan_out, vb.pp("norm"))?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let z = self.linear.forward(x)?;
        match &self.norm {
            None => Ok(z),
            Some(NormLayer::Batch(bn)) => bn.forward_t(&z, train),
            Some(NormLayer::Layer(ln)) => ln.forward(&z),
        }
    }
}

/// A deep fully connected network: an input layer, `blocks` two-layer blocks (plain or residual), and
/// a linear output layer (logits).
///
/// Parameters: `{path}.input.fc`, `{path}.blocks.{i}.{first,second}.fc` (and `.norm` when normalized),
/// `{path}.output`.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::optimization::{DeepMlp, DeepMlpConfig, Norm};
/// let dev = Device::Cpu;
/// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let cfg = DeepMlpConfig::new(2, 8, 3, 2).residual(true).norm(Norm::Batch);
/// let net = DeepMlp::new(cfg, vb.pp("net"))?;
/// assert_eq!(net.config().depth(), 8);
/// assert_eq!(net.forward_t(&Tensor::zeros((4, 2), DType::F32, &dev)?, true)?.dims(), &[4, 2]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct DeepMlp {
    cfg: DeepMlpConfig,
    input: Hidden,
    blocks: Vec<ResidualBlock<Hidden>>,
    output: Linear,
    dropout: Option<Dropout>,
}

impl DeepMlp {
    /// Builds the network under `vb`.
    pub fn new(cfg: DeepMlpConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.input == 0 || cfg.width == 0 || cfg.output == 0 {
            candle_core::bail!("DeepMlp needs non-zero input, width and output sizes; got {cfg:?}")
        }
        let input = Hidden::new(cfg.input, cfg.width, cfg.norm, vb.pp("input"))?;
        let blocks = (0..cfg.blocks)
            .map(|i| {
                let vb = vb.pp("blocks").pp(i.to_string());
                Ok(ResidualBlock {
                    first: Hidden::new(cfg.width, cfg.width, cfg.norm, vb.pp("first"))?,
                    second: Hidden::new(cfg.width, cfg.width, cfg.norm, vb.pp("second"))?,
                    residual: cfg.residual,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let output = candle_nn::linear(cfg.width, cfg.output, vb.pp("output"))?;
        let dropout = if cfg.dropout > 0.0 {
            Some(Dropout::new(cfg.dropout, cfg.dropout_seed).map_err(|e| candle_core::Error::Msg(e.to_string()))?)
        } else {
            None
        };
        Ok(DeepMlp { cfg, input, blocks, output, dropout })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &DeepMlpConfig {
        &self.cfg
    }

    /// The linear layers from input to output (for per-layer gradient or weight statistics).
    pub fn linear_layers(&self) -> Vec<&Linear> {
        let mut out = vec![&self.input.linear];
        for block in &self.blocks {
            out.push(&block.first.linear);
            out.push(&block.second.linear);
        }
        out.push(&self.output);
        out
    }

    fn act_drop(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.cfg.activation.forward(z)?;
        match &self.dropout {
            Some(d) => d.forward_t(&h, train),
            None => Ok(h),
        }
    }

    /// Every hidden representation (after the input layer and after each block, post-activation), then
    /// the logits.
    pub fn forward_all_t(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let expected = self.cfg.input;
        if x.rank() != 2 || x.dims()[1] != expected {
            candle_core::bail!("DeepMlp expects inputs [N, {expected}]; got {:?}", x.dims())
        }
        let mut outs = Vec::with_capacity(self.blocks.len() + 2);
        let mut h = self.act_drop(&self.input.forward_t(x, train)?, train)?;
        outs.push(h.clone());
        for block in &self.blocks {
            h = block.forward_with(&h, |layer, x| layer.forward_t(x, train), |z| self.act_drop(z, train))?;
            outs.push(h.clone());
        }
        outs.push(self.output.forward(&h)?);
        Ok(outs)
    }
}

impl ModuleT for DeepMlp {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.forward_all_t(x, train)?.pop().expect("forward_all_t returns the logits last"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Result;
    use candle_core::DType;

    /// The fused and plain paths (layer norm's kernel against its composition), every norm, residual or not.
    #[test]
    fn fused_and_plain_paths_agree() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let x = crate::rng::Rng::new(3).normal_tensor((6, 5), 0.0, 1.0, &dev)?;
        for (norm, residual) in [(Norm::Layer, true), (Norm::Layer, false), (Norm::Batch, true), (Norm::None, true)] {
            let (vars, vb) = crate::init::seeded(4, DType::F32, &dev);
            let net = DeepMlp::new(DeepMlpConfig::new(5, 7, 2, 3).norm(norm).residual(residual), vb)?;
            let (fused, plain) = (net.forward_t(&x, true)?, crate::fast::plain(|| net.forward_t(&x, true))?);
            crate::fast::testing::assert_paths_agree(&fused, &plain, &vars, &[], &format!("{norm:?} {residual}"))?;
        }
        Ok(())
    }

    #[test]
    fn shapes_parameters_and_gradient_flow_for_every_variant() -> Result<()> {
        let dev = crate::device::test_device();
        for norm in [Norm::None, Norm::Batch, Norm::Layer] {
            for residual in [false, true] {
                let (vars, vb) = crate::init::seeded(0, DType::F32, &dev);
                let cfg = DeepMlpConfig::new(3, 5, 2, 4).residual(residual).norm(norm).dropout(0.2, 1);
                let net = DeepMlp::new(cfg, vb.pp("net"))?;
                let x = crate::rng::Rng::new(1).normal_tensor((6, 3), 0.0, 1.0, &dev)?;
                let all = net.forward_all_t(&x, true)?;
                assert_eq!(all.len(), 4);
                assert_eq!(all[3].dims(), &[6, 4]);
                let grads = all[3].sqr()?.sum_all()?.backward()?;
                // Every weight matrix receives a non-zero gradient.
                for layer in net.linear_layers() {
                    let g = grads.get(layer.weight()).expect("weight has a gradient");
                    assert!(g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0, "{norm:?} residual={residual}");
                }
                let weights = 3 * 5 + 4 * 5 * 5 + 5 * 4;
                let biases = 5 + 4 * 5 + 4;
                let norms = match norm {
                    Norm::None => 0,
                    Norm::Batch => 5 * 5 * 4, // γ, β, running mean and variance
                    Norm::Layer => 5 * 5 * 2,
                };
                assert_eq!(crate::init::param_count(&vars), weights + biases + norms);
            }
        }
        Ok(())
    }

    #[test]
    fn residual_block_with_zero_second_layer_is_the_identity_path() -> Result<()> {
        // With W₂ = 0 and b₂ = 0, a residual block returns relu(h) = h (h is already post-ReLU);
        // a plain block returns relu(0) = 0.
        let dev = crate::device::test_device();
        for residual in [false, true] {
            let (vars, vb) = crate::init::seeded(3, DType::F32, &dev);
            let net = DeepMlp::new(DeepMlpConfig::new(2, 4, 1, 2).residual(residual), vb)?;
            for (name, v) in vars.data().lock().unwrap().iter() {
                if name.starts_with("blocks.0.second") {
                    v.set(&v.zeros_like()?)?;
                }
            }
            let x = Tensor::new(&[[0.5f32, -1.0], [2.0, 0.3]], &dev)?;
            let all = net.forward_all_t(&x, false)?;
            let diff = (&all[1] - if residual { all[0].clone() } else { all[0].zeros_like()? })?;
            assert_eq!(diff.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
        }
        Ok(())
    }

    #[test]
    fn wrong_input_width_is_named() -> Result<()> {
        let (_v, vb) = crate::init::seeded(0, DType::F32, &crate::device::test_device());
        let net = DeepMlp::new(DeepMlpConfig::new(3, 4, 1, 2), vb)?;
        let err = net.forward_t(&Tensor::zeros((2, 5), DType::F32, &crate::device::test_device())?, false).unwrap_err();
        assert!(err.to_string().contains("[N, 3]") && err.to_string().contains("[2, 5]"), "{err}");
        Ok(())
    }
}
