//! Section 01: deep neural networks.
//!
//! | milestone | module | notebook |
//! | --- | --- | --- |
//! | Backpropagation (Rumelhart, Hinton & Williams 1986) | [`mlp`] | `notebooks/01-deep-neural-networks/01-dnn/02-dnn.ipynb` |
//! | CNN, LeNet (LeCun et al. 1989, 1998) | [`cnn`], [`pool`] | `notebooks/01-deep-neural-networks/02-cnn/03-cnn.ipynb` |
//! | AlexNet (Krizhevsky, Sutskever & Hinton 2012) | [`alexnet`] (and [`crate::data::Augmentation`]) | `notebooks/01-deep-neural-networks/03-alex-net/02-alex-net.ipynb` |
//! | U-Net (Ronneberger, Fischer & Brox 2015) | [`unet`] (and [`crate::data::cells`]) | `notebooks/01-deep-neural-networks/04-u-net/02-u-net.ipynb` |

pub mod alexnet;
pub mod cnn;
pub mod mlp;
pub mod pool;
pub mod unet;

pub use alexnet::{AlexNet, AlexNetConfig, LocalResponseNorm};
pub use cnn::{LeNet5, SmallCnn};
pub use mlp::{Activation, Mlp};
pub use pool::{max_pool2d, max_pool2d_padded, MaxPool2d};
pub use unet::{weighted_pixel_cross_entropy, UNet, UNetConfig};
