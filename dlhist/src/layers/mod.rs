//! The shared vocabulary of layers every milestone builds its models from.
//!
//! A milestone module (`deep_neural_networks::cnn`, `transformers::gpt`, ...) composes these; it never imports
//! another milestone's file. Each layer is a small candle-nn style struct built from a `VarBuilder` path and
//! implementing `Module`, and each holds two paths side by side: a fused CPU kernel from [`crate::fast`] where
//! one serves it, and the plain candle composition with the math in comments, taken on other devices and
//! dtypes and whenever the fused kernels are switched off (`DLHIST_FUSED=0`, [`crate::fast::set_enabled`]).
//! Tests hold both to the same values and gradients.
//!
//! | item | what | first used in |
//! | --- | --- | --- |
//! | [`Activation`] | sigmoid, tanh, ReLU, GELU, ELU, leaky ReLU: the one activation type | 01 backpropagation |
//! | [`Dense`] | `f(x Wᵀ + b)` | 01 backpropagation |
//! | [`ConvBlock`] | `f(conv2d(x))`, optionally max-pooled in the same op | 01 CNN |
//! | [`MaxPool2d`], [`max_pool2d`] | max pooling, overlapping windows and padding included | 01 CNN, AlexNet |
//! | [`upsample_nearest2d`] | nearest-neighbour upsampling (each pixel repeated over a block) | 05 VAE |
//! | [`upsample_concat`] | a U-Net decoder's input: the upsampled map and the skip connection, concatenated | 05 diffusion |
//! | [`LocalResponseNorm`] | normalization across neighbouring channels | 01 AlexNet |
//! | [`Dropout`], [`dropout()`] | seeded inverted dropout (the milestone of section 02, used from AlexNet on) | 01 AlexNet, 02 dropout |
//! | [`cross_entropy`] | softmax cross-entropy against class ids | 01 backpropagation |
//! | [`Recurrent`], [`RecurrentState`] | the interface of recurrent layers, and the state carried between steps and chunks (truncated back-propagation through time) | 03 RNN |
//! | [`RecurrentNet`], [`Readout`] | a recurrent layer and a linear readout, optionally carrying its state across calls | 03 LSTM |
//! | [`Bidirectional`], [`reverse_time`] | two recurrent layers reading in opposite directions | 03 attention |
//! | [`AdditiveAttention`], [`masked_softmax`] | Bahdanau's score `vᵀ tanh(W s + U h_j)` and the softmax over a row's real (unpadded) positions | 03 attention |
//! | [`StepDecoder`], [`greedy_decode`], [`beam_search`], [`sequence_cross_entropy`], [`SequenceCrossEntropy`] | what every encoder-decoder shares: one decoder step, greedy and beam decoding, the masked teacher-forced loss | 03 seq2seq |
//! | [`smoothed_sequence_cross_entropy`], [`SmoothedSequenceCrossEntropy`], [`teacher_forced_accuracy`] | the same loss against label-smoothed targets; the share of tokens a teacher-forced pass gets right | 04 transformer |
//! | [`summed_embeddings`] | a transformer's input: token plus position (plus segment) embeddings | 04 transformer |
//! | [`LoraDense`], [`LoraConfig`] | a frozen dense layer plus a trainable low-rank update `(α/r) B A` of some of its rows, mergeable into one weight (Hu et al. 2021) | 04 LoRA |
//!
//! The normalizations and the recurrent and attention layers are milestones of their own and live with them:
//! [`crate::optimization::LayerNorm`], [`crate::optimization::BatchNorm`], [`crate::sequence_modeling::Lstm`],
//! [`crate::transformers::CausalSelfAttention`]. Later milestones may use those too.
//!
//! ```
//! use dlhist::prelude::*;
//! use dlhist::layers::{ConvBlock, Dense, MaxPool2d};
//! let dev = Device::Cpu;
//! let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
//! // A LeNet-style stack from the vocabulary.
//! let conv = ConvBlock::new(1, 4, 5, 2, Some(Activation::Relu), vb.pp("conv"))?;
//! let fc = Dense::new(4 * 14 * 14, 10, None, vb.pp("fc"))?;
//! let x = Tensor::zeros((3, 1, 28, 28), DType::F32, &dev)?;
//! let logits = fc.forward(&conv.forward_pool(&x, MaxPool2d::new(2))?.flatten_from(1)?)?;
//! assert_eq!(logits.dims(), &[3, 10]);
//! # Ok::<(), dlhist::Error>(())
//! ```

mod additive_attention;
mod conv;
mod decode;
mod dense;
mod dropout;
mod embedding;
mod lora;
mod loss;
mod lrn;
mod pool;
mod recurrent;

pub use crate::activation::{Activation, LEAKY_SLOPE};
pub use additive_attention::{masked_softmax, AdditiveAttention};
pub use conv::ConvBlock;
pub use decode::{
    beam_search, greedy_decode, length_penalty, sequence_cross_entropy, smoothed_sequence_cross_entropy,
    teacher_forced_accuracy, SequenceCrossEntropy, SmoothedSequenceCrossEntropy, StepDecoder,
};
pub use dense::Dense;
pub use dropout::{dropout, Dropout};
pub use embedding::summed_embeddings;
pub use lora::{LoraConfig, LoraDense};
pub use loss::{bernoulli_log_likelihood, cross_entropy, softplus, token_cross_entropy};
pub use lrn::LocalResponseNorm;
pub use pool::{max_pool2d, upsample_concat, upsample_nearest2d, MaxPool2d};
pub(crate) use recurrent::check_input as check_recurrent_input;
pub(crate) use recurrent::check_keep;
#[cfg(test)]
pub(crate) use recurrent::{assert_carried_state_continues, assert_fused_and_plain_agree};
pub use recurrent::{reverse_time, Bidirectional, Readout, Recurrent, RecurrentNet, RecurrentState};
