//! The one activation type every model and kernel in dlhist takes ([`crate::layers::Activation`]).
//!
//! It sits below both the layers and the kernels (it needs only candle), so both can name it.
//!
//! Each variant is the non-linearity of a milestone: the 1986 back-propagation paper's logistic sigmoid, tanh,
//! the ReLU of section 02 (Glorot, Bordes & Bengio 2011), the GELU of section 02 (Hendrycks & Gimpel 2016) and
//! the ELU it was compared with (Clevert et al. 2015).

use candle_core::{Module, Result, Tensor};

/// The non-linearity between layers.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::Activation;
/// let x = Tensor::new(&[-1f32, 0., 2.], &Device::Cpu)?;
/// assert_eq!(Activation::Relu.forward(&x)?.to_vec1::<f32>()?, vec![0., 0., 2.]);
/// # Ok::<(), dlhist::Error>(())
/// ```
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
    /// x for x > 0, [`LEAKY_SLOPE`]` · x` otherwise: a rectifier whose negative side still passes a gradient,
    /// so no unit can die. Maas, Hannun & Ng (2013) proposed it with slope 0.01; the GAN literature uses 0.2
    /// (DCGAN, Radford et al. 2015: "the slope of the leak was set to 0.2 in all models"), as section 05 does.
    LeakyRelu,
}

impl Activation {
    /// Every activation, in declaration order (to sweep them in tests and comparisons).
    pub const ALL: [Activation; 6] = [
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::Gelu,
        Activation::Elu,
        Activation::LeakyRelu,
    ];

    /// `None` (no activation) and then every activation: the choices a layer's optional activation offers.
    pub fn optional() -> impl Iterator<Item = Option<Activation>> {
        std::iter::once(None).chain(Self::ALL.map(Some))
    }
}

/// The negative-side slope of [`Activation::LeakyRelu`].
pub const LEAKY_SLOPE: f32 = 0.2;

/// `f(z)`, or `z` itself when there is no activation (a layer's optional non-linearity).
pub(crate) fn apply(f: Option<Activation>, z: Tensor) -> Result<Tensor> {
    match f {
        Some(f) => f.forward(&z),
        None => Ok(z),
    }
}

impl Module for Activation {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Sigmoid => candle_nn::ops::sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.relu(),
            // The exact GELU with erf (PyTorch's default), not the tanh approximation.
            Activation::Gelu => x.gelu_erf(),
            Activation::Elu => x.elu(1.0),
            // max(x, 0.2 x) equals the definition for a slope in (0, 1), and is two candle ops with gradients.
            Activation::LeakyRelu => x.maximum(&(x * LEAKY_SLOPE as f64)?),
        }
    }
}
