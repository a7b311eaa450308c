//! # AlexNet's ingredients, at a scale a laptop CPU trains in minutes
//!
//! A. Krizhevsky, I. Sutskever and G. E. Hinton, "ImageNet Classification with Deep Convolutional Neural
//! Networks", NeurIPS 2012.
//! <https://papers.nips.cc/paper_files/paper/2012/file/c399862d3b9d6b76c8436e924a68c45b-Paper.pdf>
//!
//! The paper's network is five convolutional and three fully connected layers, and its section 3-4 list
//! what made it train well and generalize; each is a switch of [`AlexNetConfig`]:
//!
//! - **ReLU** `f(x) = max(0, x)` instead of tanh (section 3.1: 25% training error on CIFAR-10 six times
//!   sooner);
//! - **local response normalization** (section 3.3), across `n` adjacent channels at each position
//!   ([`crate::layers::LocalResponseNorm`], where the equation is written out):
//!
//!   ```text
//!   b[i] = a[i] / (k + α Σ_{j = max(0, i − n/2)}^{min(N − 1, i + n/2)} a[j]²)^β,     k = 2, n = 5, α = 1e-4, β = 0.75
//!   ```
//!
//! - **overlapping max pooling** (section 3.4): 3×3 windows 2 apart ([`crate::layers::MaxPool2d`]);
//! - **dropout** with p = 0.5 in the first two fully connected layers (section 4.2);
//! - **data augmentation** by random crops and horizontal flips (section 4.1), which is applied to the data,
//!   not the network: see [`crate::data::Augmentation`].
//!
//! The network is written with the shared layers ([`crate::layers`]): every convolution is a
//! [`ConvBlock`], the classifier three [`Dense`] layers. Each runs a fused CPU kernel by default and its
//! plain candle composition under `DLHIST_FUSED=0`; the tests hold the whole network's two paths together.

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{Activation, ConvBlock, Dense, Dropout, LocalResponseNorm, MaxPool2d};

/// The switches of [`AlexNet`]: each of the paper's ingredients, on or off, and the widths.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlexNetConfig {
    /// The non-linearity (the paper: ReLU; its baseline: tanh).
    pub activation: Activation,
    /// Local response normalization after the first two convolutions.
    pub lrn: bool,
    /// 3×3 pooling windows 2 apart (padded to keep the map sizes of the non-overlapping 2×2 variant).
    pub overlapping_pool: bool,
    /// Dropout probability before the first two fully connected layers (0 = none; the paper: 0.5).
    pub dropout: f32,
    /// Seeds the dropout masks.
    pub dropout_seed: u64,
    /// Channels of the five convolutions.
    pub channels: [usize; 5],
    /// Width of the two hidden fully connected layers.
    pub hidden: usize,
    /// Outputs.
    pub classes: usize,
}

impl AlexNetConfig {
    /// Every ingredient on, at a size for 28×28 grey images: channels 32-64-96-96-64, hidden 256.
    pub fn full(classes: usize) -> Self {
        AlexNetConfig {
            activation: Activation::Relu,
            lrn: true,
            overlapping_pool: true,
            dropout: 0.5,
            dropout_seed: 0,
            channels: [32, 64, 96, 96, 64],
            hidden: 256,
            classes,
        }
    }
}

/// A scaled-down AlexNet for `[N, 1, 28, 28]` images: five 3×3 convolutions (pooling after the first,
/// second and fifth: 28 → 14 → 7 → 3) and three fully connected layers.
///
/// Parameters: `{path}.conv{1..5}`, `{path}.fc{1..3}`.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::deep_neural_networks::{AlexNet, AlexNetConfig};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let mut cfg = AlexNetConfig::full(10);
/// cfg.channels = [4, 8, 8, 8, 8];
/// cfg.hidden = 16;
/// let net = AlexNet::new(cfg, vb)?;
/// assert_eq!(net.forward_t(&Tensor::zeros((2, 1, 28, 28), DType::F32, &dev)?, true)?.dims(), &[2, 10]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct AlexNet {
    cfg: AlexNetConfig,
    convs: Vec<ConvBlock>,
    fcs: Vec<Dense>,
    pool: MaxPool2d,
    last_pool: MaxPool2d,
    lrn: Option<LocalResponseNorm>,
    dropout: Option<Dropout>,
}

impl AlexNet {
    /// Builds the network under `vb`.
    pub fn new(cfg: AlexNetConfig, vb: VarBuilder) -> Result<Self> {
        let f = Some(cfg.activation);
        let mut convs = vec![];
        let mut fan_in = 1;
        for (i, &c) in cfg.channels.iter().enumerate() {
            // 3×3 kernels padded by one: "same" convolutions, so only the pools change the map size.
            convs.push(ConvBlock::new(fan_in, c, 3, 1, f, vb.pp(format!("conv{}", i + 1)))?);
            fan_in = c;
        }
        // Overlapping 3×3/2 windows, padded by one on even sides so both variants give 14, 7, then 3.
        let (pool, last_pool) = if cfg.overlapping_pool {
            (MaxPool2d::with_stride(3, 2, 1), MaxPool2d::with_stride(3, 2, 0))
        } else {
            (MaxPool2d::new(2), MaxPool2d::new(2))
        };
        let side = last_pool.out_size(pool.out_size(pool.out_size(28)));
        let flat = cfg.channels[4] * side * side;
        let fcs = vec![
            Dense::new(flat, cfg.hidden, f, vb.pp("fc1"))?,
            Dense::new(cfg.hidden, cfg.hidden, f, vb.pp("fc2"))?,
            Dense::new(cfg.hidden, cfg.classes, None, vb.pp("fc3"))?,
        ];
        let dropout = if cfg.dropout > 0.0 {
            Some(Dropout::new(cfg.dropout, cfg.dropout_seed).map_err(|e| candle_core::Error::Msg(e.to_string()))?)
        } else {
            None
        };
        let lrn = cfg.lrn.then(LocalResponseNorm::alexnet);
        Ok(AlexNet { cfg, convs, fcs, pool, last_pool, lrn, dropout })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &AlexNetConfig {
        &self.cfg
    }

    /// The first convolution's kernels, `[C1, 1, 3, 3]`.
    pub fn first_filters(&self) -> &Tensor {
        self.convs[0].conv().weight()
    }

    fn drop(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match &self.dropout {
            Some(d) => d.forward_t(x, train),
            None => Ok(x.clone()),
        }
    }
}

impl AlexNet {
    /// Runs the network; with `keep`, also collects each hidden layer's output right after its non-linearity
    /// (before LRN and pooling), the unit values whose saturation or silence one measures.
    fn run(&self, x: &Tensor, train: bool, mut keep: Option<&mut Vec<Tensor>>) -> Result<Tensor> {
        if x.rank() != 4 || x.dims()[1..] != [1, 28, 28] {
            candle_core::bail!("AlexNet expects images [N, 1, 28, 28]; got {:?}", x.dims())
        }
        let mut h = x.clone();
        for (i, conv) in self.convs.iter().enumerate() {
            // The paper pools after conv1, conv2 and conv5, and normalizes (LRN) after conv1 and conv2 only.
            let pool = match i {
                0 | 1 => Some(self.pool),
                4 => Some(self.last_pool),
                _ => None,
            };
            let lrn = if i < 2 { self.lrn } else { None };
            h = match (pool, lrn, keep.is_some()) {
                // Pool straight after the activation: ConvBlock runs the three as one op where it can.
                (Some(p), None, false) => conv.forward_pool(&h, p)?,
                (pool, lrn, _) => {
                    let mut a = conv.forward(&h)?;
                    if let Some(k) = keep.as_deref_mut() {
                        k.push(a.clone());
                    }
                    if let Some(lrn) = lrn {
                        a = lrn.forward(&a)?;
                    }
                    match pool {
                        Some(p) => p.forward(&a)?,
                        None => a,
                    }
                }
            };
        }
        h = h.flatten_from(1)?;
        // Dropout before the first two fully connected layers (section 4.2).
        for fc in &self.fcs[..2] {
            h = fc.forward(&self.drop(&h, train)?)?;
            if let Some(k) = keep.as_deref_mut() {
                k.push(h.clone());
            }
        }
        self.fcs[2].forward(&h)
    }

    /// The outputs of the seven hidden layers in evaluation mode, each right after its non-linearity: conv1 to
    /// conv5 as `[N, C, H, W]` maps (before LRN and pooling), then fc6 and fc7 as `[N, hidden]`, and last the
    /// logits `[N, classes]`. What one inspects to count saturated tanh units or silent ReLUs.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::deep_neural_networks::{AlexNet, AlexNetConfig};
    /// let dev = Device::Cpu;
    /// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
    /// let cfg = AlexNetConfig { channels: [4, 8, 8, 8, 8], hidden: 16, ..AlexNetConfig::full(10) };
    /// let outs = AlexNet::new(cfg, vb)?.forward_all(&Tensor::ones((2, 1, 28, 28), DType::F32, &dev)?)?;
    /// let dims: Vec<&[usize]> = outs.iter().map(|t| t.dims()).collect();
    /// assert_eq!(dims, [&[2, 4, 28, 28][..], &[2, 8, 14, 14], &[2, 8, 7, 7], &[2, 8, 7, 7], &[2, 8, 7, 7], &[2, 16], &[2, 16], &[2, 10]]);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn forward_all(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut outs = Vec::with_capacity(8);
        let logits = self.run(x, false, Some(&mut outs))?;
        outs.push(logits);
        Ok(outs)
    }
}

impl ModuleT for AlexNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.run(x, train, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Result;
    use candle_core::DType;

    #[test]
    fn fused_and_plain_paths_agree_in_values_and_gradients() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let x = crate::rng::Rng::new(2).normal_tensor((3, 1, 28, 28), 0.0, 1.0, &dev)?;
        for activation in [Activation::Relu, Activation::Tanh] {
            for lrn in [true, false] {
                for overlapping_pool in [true, false] {
                    // Large α, so the LRN is far from a constant scale; training mode with dropout off.
                    let cfg = AlexNetConfig {
                        activation,
                        lrn,
                        overlapping_pool,
                        dropout: 0.0,
                        channels: [4, 6, 8, 8, 5],
                        hidden: 12,
                        ..AlexNetConfig::full(10)
                    };
                    let (vars, vb) = crate::init::seeded(0, DType::F32, &dev);
                    let mut net = AlexNet::new(cfg, vb)?;
                    if let Some(l) = &mut net.lrn {
                        l.alpha = 0.1;
                    }
                    let (fast, plain) = (net.forward_t(&x, true)?, crate::fast::plain(|| net.forward_t(&x, true))?);
                    let what = format!("{activation:?} lrn {lrn} overlapping {overlapping_pool}");
                    crate::fast::testing::assert_paths_agree(&fast, &plain, &vars, &[], &what)?;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn forward_all_ends_with_the_logits_of_forward_t() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let x = crate::rng::Rng::new(3).normal_tensor((2, 1, 28, 28), 0.0, 1.0, &dev)?;
        let cfg = AlexNetConfig { channels: [4, 6, 8, 8, 5], hidden: 12, ..AlexNetConfig::full(10) };
        let (_vars, vb) = crate::init::seeded(0, DType::F32, &dev);
        let net = AlexNet::new(cfg, vb)?;
        let outs = net.forward_all(&x)?;
        assert_eq!(outs.len(), 8);
        let diff = (&outs[7] - net.forward_t(&x, false)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "forward_all's logits differ from forward_t's by {diff}");
        // ReLU outputs are non-negative everywhere.
        for o in &outs[..7] {
            assert!(o.min_all()?.to_scalar::<f32>()? >= 0.0);
        }
        Ok(())
    }

    #[test]
    fn every_variant_has_the_same_map_sizes_and_trains() -> Result<()> {
        let dev = crate::device::test_device();
        let x = crate::rng::Rng::new(1).uniform_tensor((3, 1, 28, 28), 0.0, 1.0, &dev)?;
        let y = Tensor::new(&[1u32, 2, 3], &dev)?;
        for (relu, lrn, overlap, dropout) in
            [(true, true, true, 0.5), (false, false, false, 0.0), (true, false, true, 0.0)]
        {
            let mut cfg = AlexNetConfig::full(10);
            cfg.activation = if relu { Activation::Relu } else { Activation::Tanh };
            cfg.lrn = lrn;
            cfg.overlapping_pool = overlap;
            cfg.dropout = dropout;
            cfg.channels = [4, 6, 8, 8, 5];
            cfg.hidden = 12;
            let (vars, vb) = crate::init::seeded(0, DType::F32, &dev);
            let net = AlexNet::new(cfg, vb)?;
            // fc1 sees 5 channels of 3×3 whichever pooling is used.
            assert_eq!(net.fcs[0].linear().weight().dims(), &[12, 45]);
            let grads = candle_nn::loss::cross_entropy(&net.forward_t(&x, true)?, &y)?.backward()?;
            for v in vars.all_vars() {
                assert!(grads.get(&v).is_some(), "no gradient for a parameter of shape {:?}", v.dims());
            }
        }
        Ok(())
    }
}
