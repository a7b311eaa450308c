//! Section 01: deep neural networks.
//!
//! | milestone | module | notebook |
//! | --- | --- | --- |
//! | Backpropagation (Rumelhart, Hinton & Williams 1986) | [`mlp`] | `notebooks/01-deep-neural-networks/01-dnn/02-dnn.ipynb` |

pub mod mlp;

pub use mlp::{Activation, Mlp};
