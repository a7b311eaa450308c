//! Section 04: transformers.
//!
//! | milestone | module |
//! | --- | --- |
//! | The transformer's causal self-attention (Vaswani et al. 2017) in a GPT (Radford et al. 2018, 2019) | [`gpt`] |

pub mod gpt;

pub use gpt::{Block, CausalSelfAttention, Gpt, GptConfig};
