//! Section 04: transformers.
//!
//! | milestone | module |
//! | --- | --- |
//! | The transformer's multi-head attention, causal, padded and cross (Vaswani et al. 2017) | [`attention`] |
//! | Sinusoidal and learned positions (Vaswani et al. 2017, section 3.5) | [`positions`] |
//! | The encoder-decoder Transformer, post- and pre-LN (Vaswani et al. 2017) | [`transformer`] |
//! | BERT: masked-language-model pretraining and fine-tuning (Devlin et al. 2018; Liu et al. 2019) | [`bert`] |
//! | A small GPT (Radford et al. 2018, 2019) built from the causal attention, with a KV cache | [`gpt`] |
//! | Temperature, top-k and nucleus sampling | [`sampling`] |
//! | Loss as a power law in model size (Kaplan et al. 2020) | [`scaling`] |
//! | In-context learning: a task given only by examples (Brown et al. 2020) | [`in_context`] |
//! | LoRA adapters on a GPT's queries and values (Hu et al. 2021; the adapter itself is [`crate::layers::LoraDense`]), and the character GPT pretrained on Tiny Shakespeare that LoRA and RLHF start from | [`gpt::Gpt::with_lora`], [`gpt::PretrainedGpt`] |
//! | T5: the text-to-text encoder-decoder with RMS norm, relative position buckets, gated GELU, and span corruption (Raffel et al. 2019) | [`t5`] |
//! | Learning from human preferences: the Bradley-Terry reward model, KL-shaped rewards, generalized advantage estimation and PPO's clipped loss (Christiano et al. 2017; Ziegler et al. 2019; Schulman et al. 2016, 2017) | [`rlhf`] |
//! | Cart-pole (Barto, Sutton and Anderson 1983): the small control task on which PPO's clipping is compared with the plain policy gradient | [`control`] |
//! | The Vision Transformer: patches as tokens, a class token, attention maps and attention distance (Dosovitskiy et al. 2020) | [`vit`] |

pub mod attention;
pub mod bert;
pub mod control;
pub mod gpt;
pub mod in_context;
pub mod positions;
pub mod rlhf;
pub mod sampling;
pub mod scaling;
pub mod t5;
pub mod transformer;
pub mod vit;

pub use attention::{
    causal_bias, padding_bias, CausalSelfAttention, EncoderMemory, KeyMask, LayerCache, LoraTargets,
    MultiHeadAttention, PrefixState,
};
pub use bert::{
    Bert, BertClassifier, BertConfig, BertForMaskedLm, BertLayer, MaskedTokenCrossEntropy, Masking, MaskingRule,
    Pooling,
};
pub use gpt::{Block, Gpt, GptConfig, KvCache, PretrainedGpt};
pub use positions::{sinusoidal_positions, PositionKind, Positions};
pub use sampling::Sampling;
pub use transformer::{
    DecoderLayer, EncoderLayer, NormPlacement, Transformer, TransformerConfig, TransformerOutput, TransformerState,
};
pub use vit::{PatchEmbedding, Vit, VitConfig, VitLayer};
