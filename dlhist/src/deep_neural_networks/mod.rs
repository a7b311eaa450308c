//! Section 01: deep neural networks.
//!
//! | milestone | module | notebook |
//! | --- | --- | --- |
//! | Backpropagation (Rumelhart, Hinton & Williams 1986) | [`mlp`] | `notebooks/01-deep-neural-networks/01-dnn/02-dnn.ipynb` |
//! | CNN, LeNet (LeCun et al. 1989, 1998) | [`cnn`] (and [`crate::layers::ConvBlock`], [`crate::layers::MaxPool2d`]) | `notebooks/01-deep-neural-networks/02-cnn/03-cnn.ipynb` |
//! | AlexNet (Krizhevsky, Sutskever & Hinton 2012) | [`alexnet`] (and [`crate::layers::LocalResponseNorm`], [`crate::data::Augmentation`]) | `notebooks/01-deep-neural-networks/03-alex-net/02-alex-net.ipynb` |
//! | U-Net (Ronneberger, Fischer & Brox 2015) | [`unet`] (and [`crate::data::cells`]) | `notebooks/01-deep-neural-networks/04-u-net/02-u-net.ipynb` |

pub mod alexnet;
pub mod cnn;
pub mod mlp;
pub mod unet;

pub use alexnet::{AlexNet, AlexNetConfig};
pub use cnn::{LeNet5, SmallCnn};
pub use mlp::Mlp;
pub use unet::{weighted_pixel_cross_entropy, UNet, UNetConfig, WeightedPixelCrossEntropy};
