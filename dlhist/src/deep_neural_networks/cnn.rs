//! # Convolutional networks: LeNet
//!
//! Y. LeCun et al., "Backpropagation Applied to Handwritten Zip Code Recognition", Neural Computation 1(4),
//! 1989. <http://yann.lecun.com/exdb/publis/pdf/lecun-89e.pdf>
//! Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-Based Learning Applied to Document Recognition",
//! Proceedings of the IEEE 86(11), 1998. <http://vision.stanford.edu/cs598_spring07/papers/Lecun98.pdf>
//!
//! A convolutional layer is a fully connected layer with two constraints, *local receptive fields* and
//! *shared weights*: every output unit of feature map `o` looks at a `k×k` patch of every input map, with the
//! same weights at every position:
//!
//! ```text
//! y[o, i, j] = b[o] + Σ_c Σ_{u,v < k} w[o, c, u, v] · x[c, s·i + u − p, s·j + v − p]
//! ```
//!
//! (`p` zero padding, stride `s`). A 5×5 map over one channel costs 26 parameters however large the image,
//! and a feature learned at one position is detected at every position. Pooling then makes the exact
//! position matter less. That built-in assumption about images (the *inductive bias*) is why a CNN learns
//! from fewer examples than an MLP with as many weights.
//!
//! [`LeNet5`] follows the 1998 paper's architecture (C1 6@28×28, S2, C3 16@10×10, S4, C5 120, F6 84, output),
//! with average pooling for its trainable subsampling and plain tanh for its scaled tanh; [`SmallCnn`] is the
//! two-convolution network of the classic MNIST tutorials (and of the speed benchmarks).

use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::VarBuilder;

use crate::layers::{Activation, ConvBlock, Dense, MaxPool2d};

fn expect_images(x: &Tensor, who: &str, channels: usize, side: usize) -> Result<()> {
    if x.rank() != 4 || x.dims()[1] != channels || x.dims()[2] != side || x.dims()[3] != side {
        candle_core::bail!("{who} expects images [N, {channels}, {side}, {side}]; got {:?}", x.dims())
    }
    Ok(())
}

/// LeNet-5 for 28×28 single-channel images (padded by 2 to the paper's 32×32 in the first convolution).
///
/// Parameters: `{path}.c1`, `c3`, `c5` (convolutions), `f6`, `output` (linear): 61 706 in all, as in the paper
/// apart from its sparse C3 connection table (here C3 sees all six maps).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::deep_neural_networks::LeNet5;
/// let dev = Device::Cpu;
/// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let net = LeNet5::new(10, vb.pp("lenet"))?;
/// let logits = net.forward_t(&Tensor::zeros((2, 1, 28, 28), DType::F32, &dev)?, false)?;
/// assert_eq!(logits.dims(), &[2, 10]);
/// assert_eq!(dlhist::init::param_count(&vars), 61_706);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LeNet5 {
    c1: ConvBlock,
    c3: ConvBlock,
    c5: ConvBlock,
    f6: Dense,
    output: Dense,
}

impl LeNet5 {
    /// LeNet-5 with tanh units and `classes` outputs.
    pub fn new(classes: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_activation(classes, Activation::Tanh, vb)
    }

    /// LeNet-5 with another non-linearity.
    pub fn with_activation(classes: usize, activation: Activation, vb: VarBuilder) -> Result<Self> {
        let f = Some(activation);
        Ok(LeNet5 {
            c1: ConvBlock::new(1, 6, 5, 2, f, vb.pp("c1"))?, // padding 2: the paper's 32×32 input
            c3: ConvBlock::new(6, 16, 5, 0, f, vb.pp("c3"))?,
            c5: ConvBlock::new(16, 120, 5, 0, f, vb.pp("c5"))?,
            f6: Dense::new(120, 84, f, vb.pp("f6"))?,
            output: Dense::new(84, classes, None, vb.pp("output"))?,
        })
    }

    /// The first layer's six 5×5 kernels, `[6, 1, 5, 5]`.
    pub fn first_filters(&self) -> &Tensor {
        self.c1.conv().weight()
    }

    /// The feature maps after C1 (`[N, 6, 28, 28]`) and C3 (`[N, 16, 10, 10]`), after the activation.
    pub fn feature_maps(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        expect_images(x, "LeNet5", 1, 28)?;
        let c1 = self.c1.forward(x)?;
        // S2: 2×2 averaging, the paper's (trainable) subsampling without its coefficient and bias.
        let c3 = self.c3.forward(&c1.avg_pool2d(2)?)?;
        Ok((c1, c3))
    }
}

impl ModuleT for LeNet5 {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let (_, c3) = self.feature_maps(x)?;
        let c5 = self.c5.forward(&c3.avg_pool2d(2)?)?.flatten_from(1)?; // S4, then C5: [N, 120]
        self.output.forward(&self.f6.forward(&c5)?)
    }
}

/// The two-convolution CNN of the classic MNIST notebooks: `conv5×5(1→16) → ReLU → maxpool 2 →
/// conv5×5(16→32) → ReLU → maxpool 2 → linear(32·7·7 → classes)`, for 28×28 single-channel images.
///
/// Parameters: `{path}.conv1`, `{path}.conv2`, `{path}.output` (28 938 for ten classes).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::deep_neural_networks::SmallCnn;
/// let dev = Device::Cpu;
/// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let net = SmallCnn::new(10, vb)?;
/// assert_eq!(net.forward_t(&Tensor::zeros((3, 1, 28, 28), DType::F32, &dev)?, true)?.dims(), &[3, 10]);
/// assert_eq!(dlhist::init::param_count(&vars), 28_938);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SmallCnn {
    conv1: ConvBlock,
    conv2: ConvBlock,
    output: Dense,
}

impl SmallCnn {
    /// The network with `classes` outputs.
    pub fn new(classes: usize, vb: VarBuilder) -> Result<Self> {
        let relu = Some(Activation::Relu);
        Ok(SmallCnn {
            conv1: ConvBlock::new(1, 16, 5, 2, relu, vb.pp("conv1"))?,
            conv2: ConvBlock::new(16, 32, 5, 2, relu, vb.pp("conv2"))?,
            output: Dense::new(32 * 7 * 7, classes, None, vb.pp("output"))?,
        })
    }

    /// The first layer's sixteen 5×5 kernels, `[16, 1, 5, 5]`.
    pub fn first_filters(&self) -> &Tensor {
        self.conv1.conv().weight()
    }

    /// The feature maps after each convolution and its ReLU: `[N, 16, 28, 28]` and `[N, 32, 14, 14]`.
    pub fn feature_maps(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        expect_images(x, "SmallCnn", 1, 28)?;
        let a1 = self.conv1.forward(x)?;
        let a2 = self.conv2.forward(&MaxPool2d::new(2).forward(&a1)?)?;
        Ok((a1, a2))
    }
}

impl ModuleT for SmallCnn {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        expect_images(x, "SmallCnn", 1, 28)?;
        // conv → ReLU → 2×2 max-pool, twice (each one fused op on the CPU), then the linear classifier.
        let p1 = self.conv1.forward_pool(x, MaxPool2d::new(2))?;
        let p2 = self.conv2.forward_pool(&p1, MaxPool2d::new(2))?;
        self.output.forward(&p2.flatten_from(1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Result;
    use candle_core::DType;
    use candle_nn::Conv2dConfig;

    fn padded(padding: usize) -> Conv2dConfig {
        Conv2dConfig { padding, ..Default::default() }
    }

    /// The convolution of the module docs, loop by loop in f64: the reference candle's conv2d is checked against.
    fn naive_conv(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize) -> Result<Tensor> {
        let (n, c, h, wd) = x.dims4()?;
        let (o, _, k, _) = w.dims4()?;
        let xv: Vec<f64> = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let wv: Vec<f64> = w.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let bv: Vec<f64> = b.to_dtype(DType::F64)?.to_vec1()?;
        let (oh, ow) = (h + 2 * pad - k + 1, wd + 2 * pad - k + 1);
        let mut out = vec![0f64; n * o * oh * ow];
        for ni in 0..n {
            for oi in 0..o {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut acc = bv[oi];
                        for ci in 0..c {
                            for u in 0..k {
                                for v in 0..k {
                                    let (r, q) = ((i + u) as isize - pad as isize, (j + v) as isize - pad as isize);
                                    if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < wd {
                                        acc += wv[((oi * c + ci) * k + u) * k + v]
                                            * xv[((ni * c + ci) * h + r as usize) * wd + q as usize];
                                    }
                                }
                            }
                        }
                        out[((ni * o + oi) * oh + i) * ow + j] = acc;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, (n, o, oh, ow), &crate::device::test_device())?)
    }

    #[test]
    fn candle_conv2d_matches_the_definition() -> Result<()> {
        let mut rng = crate::rng::Rng::new(2);
        for (n, c, o, side, k, pad) in [(2, 1, 3, 7, 5, 2), (1, 3, 2, 6, 3, 0), (3, 2, 4, 5, 1, 0), (1, 1, 1, 4, 3, 1)]
        {
            let x = rng.normal_tensor((n, c, side, side), 0.0, 1.0, &crate::device::test_device())?;
            let w = rng.normal_tensor((o, c, k, k), 0.0, 1.0, &crate::device::test_device())?;
            let b = rng.normal_tensor(o, 0.0, 1.0, &crate::device::test_device())?;
            let layer = candle_nn::Conv2d::new(w.clone(), Some(b.clone()), padded(pad));
            let got = layer.forward(&x)?.to_dtype(DType::F64)?;
            let want = naive_conv(&x, &w, &b, pad)?;
            let err = (got - want)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(err < 1e-4, "n={n} c={c} o={o} side={side} k={k} pad={pad}: {err}");
        }
        Ok(())
    }

    /// Both networks: the fused and plain paths give the same values and gradients.
    #[test]
    fn fused_and_plain_paths_agree() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let x = crate::rng::Rng::new(4).normal_tensor((3, 1, 28, 28), 0.0, 1.0, &dev)?;
        let y = Tensor::new(&[0u32, 3, 9], &dev)?;
        for which in ["lenet", "small"] {
            let (vars, vb) = crate::init::seeded(0, DType::F32, &dev);
            let net: Box<dyn ModuleT> =
                if which == "lenet" { Box::new(LeNet5::new(10, vb)?) } else { Box::new(SmallCnn::new(10, vb)?) };
            let (fused, plain) = (net.forward_t(&x, true)?, crate::fast::plain(|| net.forward_t(&x, true))?);
            crate::fast::testing::assert_close(&fused, &plain, which)?;
            let gf = candle_nn::loss::cross_entropy(&fused, &y)?.backward()?;
            let gp = candle_nn::loss::cross_entropy(&plain, &y)?.backward()?;
            for v in vars.all_vars() {
                crate::fast::testing::assert_close(gf.get(&v).unwrap(), gp.get(&v).unwrap(), which)?;
            }
        }
        Ok(())
    }

    #[test]
    fn shapes_and_every_parameter_gets_a_gradient() -> Result<()> {
        let dev = crate::device::test_device();
        let x = crate::rng::Rng::new(1).uniform_tensor((4, 1, 28, 28), 0.0, 1.0, &dev)?;
        let y = Tensor::new(&[0u32, 3, 9, 1], &dev)?;
        for which in ["lenet", "small"] {
            let (vars, vb) = crate::init::seeded(0, DType::F32, &dev);
            let logits = if which == "lenet" {
                let net = LeNet5::new(10, vb)?;
                let (c1, c3) = net.feature_maps(&x)?;
                assert_eq!((c1.dims(), c3.dims()), (&[4, 6, 28, 28][..], &[4, 16, 10, 10][..]));
                net.forward_t(&x, true)?
            } else {
                let net = SmallCnn::new(10, vb)?;
                let (a1, a2) = net.feature_maps(&x)?;
                assert_eq!((a1.dims(), a2.dims()), (&[4, 16, 28, 28][..], &[4, 32, 14, 14][..]));
                net.forward_t(&x, true)?
            };
            let grads = candle_nn::loss::cross_entropy(&logits, &y)?.backward()?;
            for v in vars.all_vars() {
                let g: &Tensor = grads.get(&v).expect("every parameter has a gradient");
                assert!(g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0, "{which}: zero gradient for {:?}", v.dims());
            }
        }
        let (_v, vb) = crate::init::seeded(0, DType::F32, &dev);
        let e = SmallCnn::new(10, vb)?.forward_t(&Tensor::zeros((2, 784), DType::F32, &dev)?, false).unwrap_err();
        assert!(e.to_string().contains("[N, 1, 28, 28]") && e.to_string().contains("[2, 784]"), "{e}");
        Ok(())
    }
}
