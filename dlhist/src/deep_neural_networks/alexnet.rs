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
//! - **local response normalization** (section 3.3), across `n` adjacent channels at each position:
//!
//!   ```text
//!   b[i] = a[i] / (k + α Σ_{j = max(0, i − n/2)}^{min(N − 1, i + n/2)} a[j]²)^β,     k = 2, n = 5, α = 1e-4, β = 0.75
//!   ```
//!
//! - **overlapping max pooling** (section 3.4): 3×3 windows 2 apart ([`super::max_pool2d_padded`]);
//! - **dropout** with p = 0.5 in the first two fully connected layers (section 4.2);
//! - **data augmentation** by random crops and horizontal flips (section 4.1), which is applied to the data,
//!   not the network: see [`crate::data::Augmentation`].

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder};

use super::cnn::{conv_act, conv_act_pool};
use super::mlp::linear_act;
use super::{Activation, MaxPool2d};
use crate::optimization::Dropout;

/// Local response normalization across channels of `[N, C, H, W]` (the paper's equation, section 3.3).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::deep_neural_networks::LocalResponseNorm;
/// let lrn = LocalResponseNorm::alexnet();
/// let x = Tensor::ones((1, 3, 1, 1), DType::F64, &Device::Cpu)?;
/// // Channel 0 sees channels 0..=2 (n = 5 is clipped at the edge): 1 / (2 + 1e-4·3)^0.75.
/// let y = lrn.forward(&x)?.flatten_all()?.to_vec1::<f64>()?;
/// assert!((y[0] - (2.0f64 + 3e-4).powf(-0.75)).abs() < 1e-12);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalResponseNorm {
    /// `n`, the number of adjacent channels summed over (centred on the channel).
    pub size: usize,
    /// `α`, the weight of the sum of squares.
    pub alpha: f64,
    /// `β`, the exponent.
    pub beta: f64,
    /// `k`, the constant that keeps the denominator away from zero.
    pub k: f64,
}

impl LocalResponseNorm {
    /// The paper's hyper-parameters: `n = 5, α = 1e-4, β = 0.75, k = 2`.
    pub fn alexnet() -> Self {
        LocalResponseNorm { size: 5, alpha: 1e-4, beta: 0.75, k: 2.0 }
    }
}

impl Module for LocalResponseNorm {
    /// The fused kernel [`crate::fast::local_response_norm`] for f32 on the CPU, the candle composition of the
    /// formula otherwise.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 {
            candle_core::bail!("LocalResponseNorm expects [N, C, H, W]; got {:?}", x.dims())
        }
        crate::fast::local_response_norm(x, self.size, self.alpha, self.beta, self.k)
    }
}

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
    convs: Vec<Conv2d>,
    fcs: Vec<Linear>,
    pool: MaxPool2d,
    last_pool: MaxPool2d,
    lrn: Option<LocalResponseNorm>,
    dropout: Option<Dropout>,
}

impl AlexNet {
    /// Builds the network under `vb`.
    pub fn new(cfg: AlexNetConfig, vb: VarBuilder) -> Result<Self> {
        let same = Conv2dConfig { padding: 1, ..Default::default() };
        let mut convs = vec![];
        let mut fan_in = 1;
        for (i, &c) in cfg.channels.iter().enumerate() {
            convs.push(candle_nn::conv2d(fan_in, c, 3, same, vb.pp(format!("conv{}", i + 1)))?);
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
            candle_nn::linear(flat, cfg.hidden, vb.pp("fc1"))?,
            candle_nn::linear(cfg.hidden, cfg.hidden, vb.pp("fc2"))?,
            candle_nn::linear(cfg.hidden, cfg.classes, vb.pp("fc3"))?,
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
        self.convs[0].weight()
    }

    fn drop(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match &self.dropout {
            Some(d) => d.forward_t(x, train),
            None => Ok(x.clone()),
        }
    }
}

impl ModuleT for AlexNet {
    /// Each convolution runs with its bias and activation fused ([`crate::fast::conv2d`]), and with the
    /// following 2×2 pool too where no LRN sits in between ([`crate::fast::conv2d_pool`]); the fully connected
    /// layers run with theirs ([`crate::fast::linear`]). Other activations and devices run the plain layers.
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if x.rank() != 4 || x.dims()[1..] != [1, 28, 28] {
            candle_core::bail!("AlexNet expects images [N, 1, 28, 28]; got {:?}", x.dims())
        }
        let f = self.cfg.activation;
        let mut h = x.clone();
        for (i, conv) in self.convs.iter().enumerate() {
            let pool = match i {
                0 | 1 => Some(self.pool),
                4 => Some(self.last_pool),
                _ => None,
            };
            let lrn = if i < 2 { self.lrn } else { None };
            h = match (pool, lrn) {
                // Non-overlapping windows straight after the activation: one op for all three.
                (Some(p), None) if p.stride == p.kernel && p.padding == 0 => conv_act_pool(conv, &h, f, p.kernel)?,
                (pool, lrn) => {
                    let mut a = conv_act(conv, &h, f)?;
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
        h = linear_act(&self.fcs[0], &self.drop(&h, train)?, Some(f))?;
        h = linear_act(&self.fcs[1], &self.drop(&h, train)?, Some(f))?;
        linear_act(&self.fcs[2], &h, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Result;
    use candle_core::{DType, Device, Var};

    /// The paper's formula, loop by loop, in f64.
    fn naive_lrn(x: &Tensor, l: &LocalResponseNorm) -> Result<Vec<f64>> {
        let (n, c, h, w) = x.dims4()?;
        let v: Vec<f64> = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let at = |b: usize, ch: usize, p: usize| v[(b * c + ch) * h * w + p];
        let mut out = vec![];
        for b in 0..n {
            for i in 0..c {
                for p in 0..h * w {
                    let lo = i.saturating_sub(l.size / 2);
                    let hi = (i + l.size / 2).min(c - 1);
                    let s: f64 = (lo..=hi).map(|j| at(b, j, p).powi(2)).sum();
                    out.push(at(b, i, p) / (l.k + l.alpha * s).powf(l.beta));
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn lrn_matches_the_formula_and_has_gradients() -> Result<()> {
        // Large activations and a large α, so the normalization is far from the identity.
        let l = LocalResponseNorm { size: 5, alpha: 0.1, beta: 0.75, k: 2.0 };
        for shape in [(2, 7, 3, 2), (1, 1, 2, 2), (1, 3, 1, 1)] {
            let x = crate::rng::Rng::new(3).normal_tensor(shape, 0.0, 5.0, &Device::Cpu)?.to_dtype(DType::F64)?;
            let got: Vec<f64> = l.forward(&x)?.flatten_all()?.to_vec1()?;
            let want = naive_lrn(&x, &l)?;
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "{shape:?}: {g} vs {w}");
            }
        }
        // Gradient against central differences.
        let x = crate::rng::Rng::new(4).normal_tensor((1, 6, 2, 2), 0.0, 3.0, &Device::Cpu)?.to_dtype(DType::F64)?;
        let var = Var::from_tensor(&x)?;
        let g: Vec<f64> =
            l.forward(var.as_tensor())?.sum_all()?.backward()?.get(&var).unwrap().flatten_all()?.to_vec1()?;
        let base: Vec<f64> = x.flatten_all()?.to_vec1()?;
        for i in 0..base.len() {
            let f = |d: f64| -> Result<f64> {
                let mut b = base.clone();
                b[i] += d;
                Ok(l.forward(&Tensor::from_vec(b, (1, 6, 2, 2), &Device::Cpu)?)?.sum_all()?.to_scalar()?)
            };
            let fd = (f(1e-6)? - f(-1e-6)?) / 2e-6;
            assert!((fd - g[i]).abs() < 1e-6, "element {i}: {fd} vs {}", g[i]);
        }
        Ok(())
    }

    /// The forward pass as it was before the fused kernels: candle-nn's layers, the activation, the LRN formula
    /// as tensor ops and the pools, one after the other.
    fn plain_forward(net: &AlexNet, x: &Tensor) -> candle_core::Result<Tensor> {
        let f = net.cfg.activation;
        let mut h = x.clone();
        for (i, conv) in net.convs.iter().enumerate() {
            h = f.forward(&conv.forward(&h)?)?;
            if i < 2 {
                if let Some(l) = &net.lrn {
                    h = crate::fast::lrn::composed(&h, l.size, l.alpha, l.beta, l.k)?;
                }
                h = net.pool.forward(&h)?;
            }
        }
        h = net.last_pool.forward(&h)?.flatten_from(1)?;
        h = f.forward(&net.fcs[0].forward(&h)?)?;
        h = f.forward(&net.fcs[1].forward(&h)?)?;
        net.fcs[2].forward(&h)
    }

    #[test]
    fn fused_forward_matches_the_plain_composition_in_values_and_gradients() -> Result<()> {
        let dev = Device::Cpu;
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
                    let (fast, plain) = (net.forward_t(&x, true)?, plain_forward(&net, &x)?);
                    let vars = vars.all_vars();
                    let names: Vec<String> = vars.iter().map(|v| format!("parameter {:?}", v.dims())).collect();
                    let named: Vec<_> = vars.iter().zip(&names).map(|(v, n)| (v, n.as_str())).collect();
                    let what = format!("{activation:?} lrn {lrn} overlapping {overlapping_pool}");
                    crate::fast::testing::assert_same_values_and_grads(&fast, &plain, &named, &what)?;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn every_variant_has_the_same_map_sizes_and_trains() -> Result<()> {
        let dev = Device::Cpu;
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
            assert_eq!(net.fcs[0].weight().dims(), &[12, 45]);
            let grads = candle_nn::loss::cross_entropy(&net.forward_t(&x, true)?, &y)?.backward()?;
            for v in vars.all_vars() {
                assert!(grads.get(&v).is_some(), "no gradient for a parameter of shape {:?}", v.dims());
            }
        }
        Ok(())
    }
}
