//! # dlhist: the history of deep learning, runnable in Rust
//!
//! The library behind the notebooks under `notebooks/`: one reference implementation of each
//! milestone's idea, plus the machinery every notebook shares (data, training loop, metrics,
//! plots, checkpoints), built on [candle](https://github.com/huggingface/candle).
//!
//! The modules follow the notebook sections:
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`deep_neural_networks`] | section 01: the MLP of backpropagation, LeNet, AlexNet, U-Net |
//! | [`optimization`] | section 02: weight decay, ReLU's experiments, residual blocks, dropout, batch and layer norm, GELU, Adam |
//! | [`sequence_modeling`] | section 03: the tanh RNN, the LSTM (the 1997 cell and the forget gate of 2000), the GRU |
//! | [`transformers`] | section 04: attention (causal, padded, cross), positions, the encoder-decoder Transformer, a small GPT |
//! | [`image_generation`] | section 05: the yardstick of generated images (Fréchet distance, inception score, precision and recall, Parzen windows), the GAN, the VAE and VQ-VAE, diffusion |
//! | [`layers`] | the shared vocabulary the milestones build from: activations, dense and convolutional layers, pooling, cross-entropy |
//! | [`optim`] | the optimizer toolbox: SGD, RMSProp, learning-rate schedules, gradient clipping |
//! | [`train`] | the one training loop (with a schedule and step hooks), losses, batching, metrics, history, experiments |
//! | [`data`] | datasets: Fashion-MNIST/MNIST, Tiny Shakespeare, synthetic generators, verified downloads |
//! | [`plot`] | figures that render inline in Jupyter (SVG) and save to files |
//! | [`fast`] | the fused CPU kernels, and the switch that turns them off (`DLHIST_FUSED=0`) |
//! | [`rng`], [`init`] | the seeded generator and parameter initializers (candle cannot seed its CPU RNG) |
//! | [`device()`], [`checkpoint`] | CPU/CUDA selection; safetensors save and load |
//!
//! The layering is one-way: a milestone module builds on [`layers`] (and on the few milestone ops later
//! milestones reuse: layer norm, the LSTM, attention), never on another section's files; [`layers`] and those
//! ops call [`fast`]; [`fast`] imports nothing above it. Every fused kernel has its plain candle composition
//! written beside its call, and `DLHIST_FUSED=0` runs everything on that plain path.
//!
//! A notebook starts with `use dlhist::prelude::*;`.
//!
//! ```
//! use dlhist::prelude::*;
//! let dev = dlhist::device()?;
//! let x = Tensor::ones((2, 3), DType::F32, &dev)?;
//! assert_eq!(x.dims(), &[2, 3]);
//! # Ok::<(), dlhist::Error>(())
//! ```
#![warn(missing_docs)]

mod activation;
pub mod checkpoint;
pub mod data;
pub mod deep_neural_networks;
pub mod device;
mod error;
pub mod fast;
pub mod image_generation;
pub mod init;
pub mod layers;
pub mod notebook;
pub mod optim;
pub mod optimization;
pub mod plot;
pub mod prelude;
pub mod rng;
pub mod sequence_modeling;
pub mod train;
pub mod transformers;

pub use device::device;
pub use error::{Error, Result};

/// candle's tensor library, re-exported so a notebook needs only `:dep dlhist`.
pub use candle_core as candle;
/// candle's layers, optimizers and `VarBuilder`, re-exported for the same reason.
pub use candle_nn;
