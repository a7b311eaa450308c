//! Section 04: transformers.
//!
//! | milestone | module |
//! | --- | --- |
//! | The transformer's multi-head causal self-attention (Vaswani et al. 2017) | [`attention`] |
//! | A small GPT (Radford et al. 2018, 2019) built from it | [`gpt`] |

pub mod attention;
pub mod gpt;

pub use attention::CausalSelfAttention;
pub use gpt::{Block, Gpt, GptConfig};
