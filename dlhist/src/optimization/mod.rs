//! Section 02 of the notebooks: optimization and regularization, one file per milestone.
//!
//! | milestone | module | notebook |
//! | --- | --- | --- |
//! | Weight decay (Krogh & Hertz 1991) | [`weight_decay`]: [`l2_penalty`], [`weight_norm`], [`weight_matrices`] | `02-optimization-and-regularization/01-weight-decay/02-weight-decay.ipynb` |
//! | ReLU (Glorot, Bordes & Bengio 2011) | [`crate::layers::Activation::Relu`] | `02-optimization-and-regularization/02-relu/02-relu.ipynb` |
//! | Residual connections (He et al. 2015) | [`residual`]: [`ResidualBlock`] | `02-optimization-and-regularization/03-residuals/02-residuals.ipynb` |
//! | Dropout (Srivastava et al. 2014) | [`crate::layers::Dropout`], [`crate::layers::dropout()`] | `02-optimization-and-regularization/04-dropout/02-dropout.ipynb` |
//! | Batch normalization (Ioffe & Szegedy 2015) | [`batch_norm`]: [`BatchNorm`] | `02-optimization-and-regularization/05-batch-norm/02-batch-norm.ipynb` |
//! | Layer normalization (Ba, Kiros & Hinton 2016) | [`layer_norm`]: [`LayerNorm`] | `02-optimization-and-regularization/06-layer-norm/02-layer-norm.ipynb` |
//! | GELU (Hendrycks & Gimpel 2016) | [`mod@gelu`]: [`gelu()`], [`gelu_tanh`], [`gelu_sigmoid`], [`gelu_derivative`] | `02-optimization-and-regularization/07-gelu/02-gelu.ipynb` |
//! | Adam (Kingma & Ba 2014), AdamW (Loshchilov & Hutter 2017) | [`adam`]: [`Adam`], [`AdamW`] | `02-optimization-and-regularization/08-adam/02-adam.ipynb` |
//!
//! [`DeepMlp`] ([`deep_mlp`]) is the network the section's experiments share: fully connected blocks, plain or
//! residual, with a choice of activation, norm and dropout, so that each notebook turns one knob.
//!
//! The general-purpose tools these notebooks also use (SGD with momentum, RMSProp, learning-rate schedules,
//! gradient clipping) are not milestones; they live in [`crate::optim`].

pub mod adam;
pub mod batch_norm;
pub mod deep_mlp;
pub mod gelu;
pub mod layer_norm;
pub mod residual;
pub mod weight_decay;

pub use adam::{Adam, AdamConfig, AdamW, AdamWConfig, WeightDecay};
pub use batch_norm::BatchNorm;
pub use deep_mlp::{DeepMlp, DeepMlpConfig, Norm};
pub use gelu::{gelu, gelu_derivative, gelu_sigmoid, gelu_tanh};
pub use layer_norm::LayerNorm;
pub use residual::ResidualBlock;
pub use weight_decay::{l2_penalty, weight_matrices, weight_norm};
