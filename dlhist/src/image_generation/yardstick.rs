//! # The classifier behind section 05's yardstick
//!
//! The measures of [`super::metrics`] read images through a trained classifier: the papers use Inception v3 on
//! ImageNet, and we use this small convolutional network on Fashion-MNIST, trained once by
//! `cargo run --release -p dlhist --example train_yardstick` (fixed seed) and stored in `assets/models/` with its
//! SHA-256 and test accuracy (the `.json` beside it). Its 64 features before the class scores are what the Fréchet
//! distance compares: a narrow layer, so that a covariance can be estimated from a few thousand samples.
//!
//! ```text
//! conv 5×5 (1 → 32) → ReLU → max-pool 2 → conv 5×5 (32 → 64) → ReLU → max-pool 2
//!   → dense (64·7·7 → 64) → ReLU  =: features      → dense (64 → 10) = class scores
//! ```

use std::path::PathBuf;

use candle_core::{DType, Device, Module, ModuleT, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::metrics::{frechet_distance, FeatureStats};
use crate::layers::{Activation, ConvBlock, Dense, MaxPool2d};

/// The width of the feature layer.
pub const FEATURES: usize = 64;
/// The stored classifier's file name, in the project's `assets/models/`.
pub const YARDSTICK_FILE: &str = "fashion-yardstick.safetensors";
/// Its SHA-256, as `examples/train_yardstick.rs` wrote it.
pub const YARDSTICK_SHA256: &str = "10e1673eb3a927ac00cd88c4def3bacc0d875d3177219099c12974054acf9afe";

/// The network of the module docs. Parameters `{path}.conv1`, `{path}.conv2`, `{path}.hidden`, `{path}.output`.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::image_generation::yardstick::{FeatureNet, FEATURES};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let net = FeatureNet::new(vb)?;
/// let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &dev)?;
/// assert_eq!(net.features(&x)?.dims(), &[2, FEATURES]);
/// assert_eq!(net.forward_t(&x, false)?.dims(), &[2, 10]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FeatureNet {
    conv1: ConvBlock,
    conv2: ConvBlock,
    hidden: Dense,
    output: Dense,
}

impl FeatureNet {
    /// A network with fresh weights from `vb`.
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let relu = Some(Activation::Relu);
        Ok(FeatureNet {
            conv1: ConvBlock::new(1, 32, 5, 2, relu, vb.pp("conv1"))?,
            conv2: ConvBlock::new(32, 64, 5, 2, relu, vb.pp("conv2"))?,
            hidden: Dense::new(64 * 7 * 7, FEATURES, relu, vb.pp("hidden"))?,
            output: Dense::new(FEATURES, 10, None, vb.pp("output"))?,
        })
    }

    /// The features of images `x` `[N, 1, 28, 28]` (pixels in [0, 1], as the data loader gives them): `[N, 64]`.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1..] != [1, 28, 28] {
            candle_core::bail!("FeatureNet expects images [N, 1, 28, 28]; got {dims:?}")
        }
        let p1 = self.conv1.forward_pool(x, MaxPool2d::new(2))?;
        let p2 = self.conv2.forward_pool(&p1, MaxPool2d::new(2))?;
        self.hidden.forward(&p2.flatten_from(1)?)
    }
}

impl ModuleT for FeatureNet {
    /// Class scores `[N, 10]` (no dropout or batch norm: `train` changes nothing).
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        self.output.forward(&self.features(x)?)
    }
}

/// The stored, trained [`FeatureNet`] with what section 05 asks of it.
#[derive(Debug, Clone)]
pub struct Yardstick {
    net: FeatureNet,
    /// The file the weights came from.
    pub path: PathBuf,
}

impl Yardstick {
    /// Where the stored classifier is: `assets/models/` beside the dlhist crate.
    pub fn path() -> PathBuf {
        let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        crate_dir.parent().unwrap_or(crate_dir).join("assets").join("models").join(YARDSTICK_FILE)
    }

    /// The stored classifier on `dev`, checked against its SHA-256.
    pub fn load(dev: &Device) -> crate::Result<Self> {
        let path = Self::path();
        let remake = "make it with `cargo run --release -p dlhist --example train_yardstick`, or restore it with \
                      `git checkout assets/models`";
        let tensors =
            crate::checkpoint::load_verified(&path, YARDSTICK_SHA256, "the yardstick classifier", remake, dev)?;
        let net = FeatureNet::new(VarBuilder::from_tensors(tensors, DType::F32, dev))?;
        Ok(Yardstick { net, path })
    }

    /// The network.
    pub fn net(&self) -> &FeatureNet {
        &self.net
    }

    /// The features of `images` `[N, 1, 28, 28]`, computed 500 at a time: `[N, 64]`.
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        self.batched(images, |x| self.net.features(x))
    }

    /// The class probabilities of `images`: `[N, 10]`.
    pub fn probabilities(&self, images: &Tensor) -> Result<Tensor> {
        self.batched(images, |x| candle_nn::ops::softmax(&self.net.forward_t(x, false)?, D::Minus1))
    }

    /// The Fréchet distance between two sets of images, through their features.
    pub fn frechet(&self, a: &Tensor, b: &Tensor) -> crate::Result<f64> {
        let (fa, fb) = (FeatureStats::of(&self.features(a)?)?, FeatureStats::of(&self.features(b)?)?);
        frechet_distance(&fa, &fb)
    }

    fn batched(&self, images: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let n = images.dim(0)?;
        let parts =
            (0..n).step_by(500).map(|s| f(&images.narrow(0, s, (n - s).min(500))?)).collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }
}
