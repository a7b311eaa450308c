//! # U-Net: convolutional networks for segmentation
//!
//! O. Ronneberger, P. Fischer and T. Brox, "U-Net: Convolutional Networks for Biomedical Image
//! Segmentation", MICCAI 2015. <https://arxiv.org/abs/1505.04597>
//!
//! A classifier throws away *where* to keep *what*; a segmentation network must say what is at every
//! pixel. The U-Net's contracting path (convolutions and 2×2 max pooling) gathers context at ever coarser
//! resolution; its expanding path (2×2 up-convolutions) returns to full resolution, and at each level it
//! concatenates the contracting path's feature maps of the same size (the *skip connections*), so the
//! fine detail that pooling discarded is available again where the boundaries are drawn.
//!
//! Training uses a per-pixel softmax cross-entropy weighted by a map `w` (the paper's equations 1 and 2):
//!
//! ```text
//! E = Σ_x w(x) · (−log p_{ℓ(x)}(x))
//! w(x) = w_c(x) + w₀ · exp(−(d₁(x) + d₂(x))² / 2σ²)
//! ```
//!
//! where `w_c` balances the class frequencies and `d₁`, `d₂` are the distances to the nearest and second
//! nearest cell: the thin background gaps between touching cells get large weights, which forces the
//! network to separate them ([`crate::data::cells`] computes the map).
//!
//! Differences from the paper, for small images: convolutions are padded ("same"), so no cropping is needed
//! before concatenation and the output has the input's size; widths start at `base` instead of 64.

use candle_core::{DType, Module, ModuleT, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, VarBuilder};

use crate::layers::MaxPool2d;
use crate::train::Loss;

/// The shape of a [`UNet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UNetConfig {
    /// Image channels.
    pub in_channels: usize,
    /// Classes per pixel (2: background and cell).
    pub classes: usize,
    /// Channels at full resolution; each level down doubles them (the paper: 64).
    pub base: usize,
    /// Number of 2×2 poolings (the paper: 4). The image side must be divisible by `2^depth`.
    pub depth: usize,
    /// Concatenate the contracting path's maps into the expanding path (the U-Net); `false` gives a plain
    /// encoder-decoder, the ablation.
    pub skip: bool,
}

impl UNetConfig {
    /// A U-Net with skip connections for single-channel images and two classes.
    pub fn new(base: usize, depth: usize) -> Self {
        UNetConfig { in_channels: 1, classes: 2, base, depth, skip: true }
    }
}

/// Two 3×3 convolutions, each followed by ReLU.
#[derive(Debug, Clone)]
struct DoubleConv(Conv2d, Conv2d);

impl DoubleConv {
    fn new(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        let same = Conv2dConfig { padding: 1, ..Default::default() };
        Ok(DoubleConv(
            candle_nn::conv2d(c_in, c_out, 3, same, vb.pp("a"))?,
            candle_nn::conv2d(c_out, c_out, 3, same, vb.pp("b"))?,
        ))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.1.forward(&self.0.forward(x)?.relu()?)?.relu()
    }
}

/// The U-Net (or, with `skip: false`, the same encoder-decoder without skip connections).
///
/// Parameters: `{path}.down.{l}.{a,b}`, `{path}.bottom.{a,b}`, `{path}.up.{l}` (up-convolution),
/// `{path}.dec.{l}.{a,b}`, `{path}.head` (1×1 convolution to class scores).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::deep_neural_networks::{UNet, UNetConfig};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let net = UNet::new(UNetConfig::new(4, 2), vb.pp("unet"))?;
/// let logits = net.forward_t(&Tensor::zeros((2, 1, 16, 16), DType::F32, &dev)?, false)?;
/// assert_eq!(logits.dims(), &[2, 2, 16, 16]); // a score per class per pixel
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct UNet {
    cfg: UNetConfig,
    down: Vec<DoubleConv>,
    bottom: DoubleConv,
    up: Vec<ConvTranspose2d>,
    dec: Vec<DoubleConv>,
    head: Conv2d,
}

impl UNet {
    /// Builds the network under `vb`.
    pub fn new(cfg: UNetConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.base == 0 || cfg.classes == 0 || cfg.in_channels == 0 {
            candle_core::bail!("UNet needs non-zero channels and classes; got {cfg:?}")
        }
        let ch = |level: usize| cfg.base << level;
        let mut down = vec![];
        let mut c_in = cfg.in_channels;
        for l in 0..cfg.depth {
            down.push(DoubleConv::new(c_in, ch(l), vb.pp("down").pp(l.to_string()))?);
            c_in = ch(l);
        }
        let bottom = DoubleConv::new(c_in, ch(cfg.depth), vb.pp("bottom"))?;
        let up_cfg = ConvTranspose2dConfig { stride: 2, ..Default::default() };
        let mut up = vec![];
        let mut dec = vec![];
        for l in 0..cfg.depth {
            up.push(candle_nn::conv_transpose2d(ch(l + 1), ch(l), 2, up_cfg, vb.pp("up").pp(l.to_string()))?);
            let dec_in = if cfg.skip { 2 * ch(l) } else { ch(l) };
            dec.push(DoubleConv::new(dec_in, ch(l), vb.pp("dec").pp(l.to_string()))?);
        }
        let head = candle_nn::conv2d(ch(0), cfg.classes, 1, Conv2dConfig::default(), vb.pp("head"))?;
        Ok(UNet { cfg, down, bottom, up, dec, head })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// Predicted class per pixel, `[N, H, W]` u32.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, false)?.argmax(1)
    }
}

impl ModuleT for UNet {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let div = 1usize << self.cfg.depth;
        if x.rank() != 4
            || x.dims()[1] != self.cfg.in_channels
            || !x.dims()[2].is_multiple_of(div)
            || !x.dims()[3].is_multiple_of(div)
        {
            candle_core::bail!(
                "UNet with depth {} expects [N, {}, H, W] with H and W divisible by {div}; got {:?}",
                self.cfg.depth,
                self.cfg.in_channels,
                x.dims()
            )
        }
        // Contracting path: keep each level's maps for the skip connections.
        let mut skips = vec![];
        let mut h = x.clone();
        for block in &self.down {
            h = block.forward(&h)?;
            skips.push(h.clone());
            h = MaxPool2d::new(2).forward(&h)?;
        }
        h = self.bottom.forward(&h)?;
        // Expanding path, deepest level first.
        for l in (0..self.cfg.depth).rev() {
            h = self.up[l].forward(&h)?;
            if self.cfg.skip {
                h = Tensor::cat(&[&skips[l], &h], 1)?;
            }
            h = self.dec[l].forward(&h)?;
        }
        self.head.forward(&h)
    }
}

/// Per-pixel softmax cross-entropy of `logits` `[N, C, H, W]` against class ids `targets` `[N, H, W]`,
/// weighted by `weights` `[N, H, W]` and averaged over pixels: `mean_x w(x) · (−log p_{ℓ(x)}(x))`.
/// With all weights 1 it is the plain pixel-wise cross-entropy.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::deep_neural_networks::weighted_pixel_cross_entropy;
/// let dev = Device::Cpu;
/// let logits = Tensor::zeros((1, 2, 2, 2), DType::F32, &dev)?; // p = ½ everywhere
/// let targets = Tensor::zeros((1, 2, 2), DType::U32, &dev)?;
/// let weights = Tensor::new(&[[[1f32, 1.], [1., 5.]]], &dev)?;
/// let loss = weighted_pixel_cross_entropy(&logits, &targets, &weights)?.to_scalar::<f32>()?;
/// assert!((loss - 2.0 * std::f32::consts::LN_2).abs() < 1e-6); // (1 + 1 + 1 + 5)/4 · ln 2
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn weighted_pixel_cross_entropy(logits: &Tensor, targets: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let (n, _c, h, w) = logits.dims4().map_err(|_| {
        candle_core::Error::Msg(format!(
            "weighted_pixel_cross_entropy expects logits [N, C, H, W]; got {:?}",
            logits.dims()
        ))
    })?;
    if targets.dims() != [n, h, w] || weights.dims() != [n, h, w] {
        candle_core::bail!(
            "weighted_pixel_cross_entropy: logits {:?} need targets and weights of shape [{n}, {h}, {w}]; got {:?} and {:?}",
            logits.dims(),
            targets.dims(),
            weights.dims()
        )
    }
    let log_p = candle_nn::ops::log_softmax(logits, 1)?;
    // Pick −log p of the true class at every pixel.
    let picked = log_p.gather(&targets.to_dtype(DType::U32)?.unsqueeze(1)?.contiguous()?, 1)?.squeeze(1)?;
    (picked.neg()? * weights.to_dtype(logits.dtype())?)?.mean_all()
}

/// [`weighted_pixel_cross_entropy`] as a training loss ([`crate::train::Loss`]): targets `[N, 2, H, W]` hold the
/// class id (channel 0) and the weight (channel 1) of every pixel, as [`crate::data::Cells::dataset`] lays them
/// out.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::deep_neural_networks::WeightedPixelCrossEntropy;
/// let dev = Device::Cpu;
/// let logits = Tensor::zeros((1, 2, 1, 2), DType::F32, &dev)?; // p = ½ everywhere
/// let targets = Tensor::new(&[[[[1f32, 0.]], [[1., 3.]]]], &dev)?; // classes 1, 0; weights 1, 3
/// let loss = WeightedPixelCrossEntropy.compute(&logits, &targets)?.to_scalar::<f32>()?;
/// assert!((loss - 2.0 * std::f32::consts::LN_2).abs() < 1e-6); // (1 + 3)/2 · ln 2
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct WeightedPixelCrossEntropy;

crate::shared_loss_from!(WeightedPixelCrossEntropy);

impl Loss for WeightedPixelCrossEntropy {
    fn compute(&self, output: &Tensor, target: &Tensor) -> crate::Result<Tensor> {
        let (n, _, h, w) = output.dims4().map_err(|_| {
            crate::Error::Invalid(format!(
                "weighted pixel cross-entropy expects logits [N, C, H, W]; got {:?}",
                output.dims()
            ))
        })?;
        if target.dims() != [n, 2, h, w] {
            return Err(crate::Error::Invalid(format!(
                "weighted pixel cross-entropy expects targets [N, 2, H, W] = [{n}, 2, {h}, {w}] (class ids, weights) \
                 for logits {:?}; got {:?}",
                output.dims(),
                target.dims()
            )));
        }
        let classes = target.narrow(1, 0, 1)?.squeeze(1)?.to_dtype(DType::U32)?;
        let weights = target.narrow(1, 1, 1)?.squeeze(1)?;
        Ok(weighted_pixel_cross_entropy(output, &classes, &weights)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Result;

    #[test]
    fn shapes_parameters_and_gradients_with_and_without_skips() -> Result<()> {
        let dev = crate::device::test_device();
        let x = crate::rng::Rng::new(0).uniform_tensor((2, 1, 8, 8), 0.0, 1.0, &dev)?;
        let t = Tensor::from_vec((0..128u32).map(|i| (i / 3) % 2).collect::<Vec<_>>(), (2, 8, 8), &dev)?;
        let w = Tensor::ones((2, 8, 8), DType::F32, &dev)?;
        let mut counts = vec![];
        for skip in [true, false] {
            let (vars, vb) = crate::init::seeded(1, DType::F32, &dev);
            let net = UNet::new(UNetConfig { skip, ..UNetConfig::new(2, 2) }, vb)?;
            let logits = net.forward_t(&x, true)?;
            assert_eq!(logits.dims(), &[2, 2, 8, 8]);
            let grads = weighted_pixel_cross_entropy(&logits, &t, &w)?.backward()?;
            for v in vars.all_vars() {
                assert!(grads.get(&v).is_some(), "skip={skip}: no gradient for {:?}", v.dims());
            }
            counts.push(crate::init::param_count(&vars));
            assert_eq!(net.predict(&x)?.dims(), &[2, 8, 8]);
        }
        // The skips double the first decoder convolution's input channels: c·c·9 more weights per level (c = 2, 4).
        assert_eq!(counts[0] - counts[1], 2 * 2 * 9 + 4 * 4 * 9);
        let (_v, vb) = crate::init::seeded(1, DType::F32, &dev);
        let e = UNet::new(UNetConfig::new(2, 2), vb)?.forward_t(&Tensor::zeros((1, 1, 6, 6), DType::F32, &dev)?, false);
        assert!(e.unwrap_err().to_string().contains("divisible by 4"));
        Ok(())
    }

    #[test]
    fn weighted_loss_matches_the_formula_by_hand() -> Result<()> {
        let dev = crate::device::test_device();
        let mut rng = crate::rng::Rng::new(3);
        let logits = rng.normal_tensor((2, 3, 2, 2), 0.0, 2.0, &dev)?;
        let targets = Tensor::new(&[[[0u32, 1], [2, 1]], [[2, 2], [0, 1]]], &dev)?;
        let weights = rng.uniform_tensor((2, 2, 2), 0.5, 3.0, &dev)?;
        let got = weighted_pixel_cross_entropy(&logits, &targets, &weights)?.to_scalar::<f32>()? as f64;
        let lv: Vec<f64> = logits.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let tv: Vec<u32> = targets.flatten_all()?.to_vec1()?;
        let wv: Vec<f64> = weights.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let mut want = 0.0;
        for b in 0..2 {
            for p in 0..4 {
                let z: Vec<f64> = (0..3).map(|c| lv[(b * 3 + c) * 4 + p]).collect();
                let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
                want += wv[b * 4 + p] * (lse - z[tv[b * 4 + p] as usize]);
            }
        }
        want /= 8.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // The same through the training-loss interface, targets packed as [N, 2, H, W].
        let packed = Tensor::stack(&[targets.to_dtype(DType::F32)?, weights.clone()], 1)?;
        let via_loss = WeightedPixelCrossEntropy.compute(&logits, &packed)?.to_scalar::<f32>()? as f64;
        assert!((via_loss - want).abs() < 1e-5, "{via_loss} vs {want}");
        let e = WeightedPixelCrossEntropy.compute(&logits, &targets.to_dtype(DType::F32)?).unwrap_err().to_string();
        assert!(e.contains("[2, 2, 2, 2]") && e.contains("[2, 2, 2]"), "{e}");
        Ok(())
    }
}
