//! The convolutional block: convolution, activation, and optionally max pooling.
//!
//! Y. LeCun et al., "Backpropagation Applied to Handwritten Zip Code Recognition", Neural Computation 1(4),
//! 1989 (section 01's CNN notebook explains why the layer works). Every output unit of map `o` looks at a
//! `k×k` patch of every input map, with the same weights at every position:
//!
//! ```text
//! y[o, i, j] = f( b[o] + Σ_c Σ_{u,v < k} w[o, c, u, v] · x[c, s·i + u − p, s·j + v − p] )
//! ```
//!
//! (`p` zero padding, stride `s`), followed by max pooling where the network pools.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, VarBuilder};

use super::{Activation, MaxPool2d};
use crate::fast;

/// `f(conv2d(x))`, with max pooling after it when asked ([`ConvBlock::forward_pool`]).
///
/// Parameters `{path}.weight` `[out, in, k, k]` and `{path}.bias` `[out]` (candle-nn's `conv2d`).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::{ConvBlock, MaxPool2d};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let block = ConvBlock::new(1, 8, 5, 2, Some(Activation::Relu), vb.pp("conv1"))?;
/// let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &dev)?;
/// assert_eq!(block.forward(&x)?.dims(), &[2, 8, 28, 28]);
/// assert_eq!(block.forward_pool(&x, MaxPool2d::new(2))?.dims(), &[2, 8, 14, 14]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConvBlock {
    conv: Conv2d,
    activation: Option<Activation>,
}

impl ConvBlock {
    /// A `kernel×kernel` convolution from `c_in` to `c_out` channels with zero `padding` on every side,
    /// stride 1, then `activation`.
    pub fn new(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
        activation: Option<Activation>,
        vb: VarBuilder,
    ) -> Result<Self> {
        let cfg = Conv2dConfig { padding, ..Default::default() };
        Ok(ConvBlock { conv: candle_nn::conv2d(c_in, c_out, kernel, cfg, vb)?, activation })
    }

    /// The convolution (its kernels are `conv().weight()`).
    pub fn conv(&self) -> &Conv2d {
        &self.conv
    }

    /// `pool(f(conv2d(x)))`. With non-overlapping windows the three run as one fused op on the CPU
    /// ([`crate::fast::conv2d_pool`]): the full-size activation never becomes a tensor of the autograd graph.
    pub fn forward_pool(&self, x: &Tensor, pool: MaxPool2d) -> Result<Tensor> {
        let tiles = pool.stride == pool.kernel && pool.padding == 0;
        match self.fused_bias(x) {
            Some(b) if tiles => {
                let cfg = self.conv.config();
                fast::conv2d_pool(x, self.conv.weight(), b, cfg.padding, cfg.stride, self.activation, pool.kernel)
            }
            _ => pool.forward(&self.forward(x)?),
        }
    }

    /// `f(conv2d(x) + shift)`: the convolution with a per-image, per-channel `shift` `[N, out]` added to its
    /// bias before the activation (a conditioning signal, as the DDPM U-Net's time embedding). On the CPU the
    /// shift joins the bias inside the fused kernel ([`crate::fast::conv2d`] with an `[N, out]` bias), so the
    /// full-size sum is never a tensor of the autograd graph.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::layers::ConvBlock;
    /// let dev = Device::Cpu;
    /// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
    /// let block = ConvBlock::new(1, 4, 3, 1, Some(Activation::Relu), vb)?;
    /// let x = Tensor::ones((2, 1, 5, 5), DType::F32, &dev)?;
    /// let shift = Tensor::new(&[[0f32, 0., 0., 0.], [-100., -100., -100., -100.]], &dev)?;
    /// let y = block.forward_with_shift(&x, &shift)?;
    /// // The second image's large negative shift sends every ReLU to 0.
    /// assert_eq!(y.get(1)?.sum_all()?.to_scalar::<f32>()?, 0.0);
    /// assert_eq!(y.get(0)?.to_vec3::<f32>()?, block.forward(&x.get(0)?.unsqueeze(0)?)?.get(0)?.to_vec3::<f32>()?);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn forward_with_shift(&self, x: &Tensor, shift: &Tensor) -> Result<Tensor> {
        let out = self.conv.weight().dims()[0];
        if x.rank() != 4 || shift.dims() != [x.dims()[0], out] {
            candle_core::bail!(
                "ConvBlock::forward_with_shift: shift {:?} for input {:?}, expected [N, {out}]",
                shift.dims(),
                x.dims()
            )
        }
        if let Some(b) = self.fused_bias(x) {
            if fast::applies(&[shift]) {
                // Fused: a bias per image and channel, b + shift, inside the convolution's own pass.
                let cfg = self.conv.config();
                return fast::conv2d(
                    x,
                    self.conv.weight(),
                    &shift.broadcast_add(b)?,
                    cfg.padding,
                    cfg.stride,
                    self.activation,
                );
            }
        }
        // Plain: candle's convolution with its bias, plus the shift broadcast over the positions, then f.
        let z = self.conv.forward(x)?.broadcast_add(&shift.unsqueeze(2)?.unsqueeze(3)?)?;
        crate::activation::apply(self.activation, z)
    }

    /// The bias, when the fused kernel can run this convolution on `x` (a plain convolution with a bias, f32 on
    /// the CPU, kernels switched on).
    fn fused_bias(&self, x: &Tensor) -> Option<&Tensor> {
        let cfg = self.conv.config();
        let b = self.conv.bias()?;
        let plain_conv = cfg.dilation == 1 && cfg.groups == 1 && cfg.cudnn_fwd_algo.is_none();
        (plain_conv && fast::applies(&[x, self.conv.weight(), b])).then_some(b)
    }
}

impl Module for ConvBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.conv.weight();
        if x.rank() != 4 || x.dims()[1] != w.dims()[1] {
            candle_core::bail!(
                "ConvBlock over {} channels expects [N, {}, H, W]; got {:?}",
                w.dims()[1],
                w.dims()[1],
                x.dims()
            )
        }
        if let Some(b) = self.fused_bias(x) {
            // Fused (crate::fast::conv2d): im2col and one matrix product per image, with the bias and ReLU/tanh
            // applied in the same pass and a backward pass written out by hand.
            let cfg = self.conv.config();
            return fast::conv2d(x, w, b, cfg.padding, cfg.stride, self.activation);
        }
        // Plain: candle's convolution (weights and bias), then the activation.
        crate::activation::apply(self.activation, self.conv.forward(x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::assert_paths_agree;
    use candle_core::{DType, Var};

    /// Both paths, with and without pooling, every activation: the same values and gradients.
    #[test]
    fn fused_and_plain_paths_agree() -> crate::Result<()> {
        let dev = candle_core::Device::Cpu;
        let acts = Activation::optional();
        for act in acts {
            for pool in [None, Some(MaxPool2d::new(2)), Some(MaxPool2d::with_stride(3, 2, 1))] {
                let (vars, vb) = crate::init::seeded(5, DType::F32, &dev);
                let block = ConvBlock::new(3, 4, 3, 1, act, vb)?;
                let x = Var::from_tensor(&crate::rng::Rng::new(6).normal_tensor((2, 3, 8, 10), 0.0, 1.0, &dev)?)?;
                let run = || match pool {
                    Some(p) => block.forward_pool(&x, p),
                    None => block.forward(&x),
                };
                let (fused, plain) = (run()?, fast::plain(run)?);
                assert_paths_agree(&fused, &plain, &vars, &[&x], &format!("{act:?} {pool:?}"))?;
            }
        }
        let (_, vb) = crate::init::seeded(0, DType::F32, &dev);
        let e = ConvBlock::new(3, 4, 3, 1, None, vb)?.forward(&Tensor::zeros((2, 1, 5, 5), DType::F32, &dev)?);
        assert!(e.unwrap_err().to_string().contains("[2, 1, 5, 5]"));
        Ok(())
    }

    /// `forward_with_shift`, fused and plain, every activation: the same values, and the same gradients for the
    /// parameters, the input and the shift.
    #[test]
    fn shifted_paths_agree() -> crate::Result<()> {
        let dev = candle_core::Device::Cpu;
        for act in Activation::optional() {
            let (vars, vb) = crate::init::seeded(7, DType::F32, &dev);
            let block = ConvBlock::new(3, 4, 3, 1, act, vb)?;
            let x = Var::from_tensor(&crate::rng::Rng::new(8).normal_tensor((2, 3, 8, 10), 0.0, 1.0, &dev)?)?;
            let shift = Var::from_tensor(&crate::rng::Rng::new(9).normal_tensor((2, 4), 0.0, 1.0, &dev)?)?;
            let run = || block.forward_with_shift(&x, &shift);
            let (fused, plain) = (run()?, fast::plain(run)?);
            assert_paths_agree(&fused, &plain, &vars, &[&x, &shift], &format!("shifted {act:?}"))?;
        }
        let (_, vb) = crate::init::seeded(0, DType::F32, &dev);
        let block = ConvBlock::new(3, 4, 3, 1, None, vb)?;
        let e = block.forward_with_shift(
            &Tensor::zeros((2, 3, 5, 5), DType::F32, &dev)?,
            &Tensor::zeros((2, 3), DType::F32, &dev)?,
        );
        assert!(e.unwrap_err().to_string().contains("expected [N, 4]"));
        Ok(())
    }
}
