//! # T5: an encoder-decoder with RMS norm, relative position buckets and a gated-GELU feed-forward, pretrained by span corruption
//!
//! C. Raffel, N. Shazeer, A. Roberts et al., "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
//! Transformer", JMLR 2020. <https://arxiv.org/abs/1910.10683>
//! Gated GELU: N. Shazeer, "GLU Variants Improve Transformer", 2020. <https://arxiv.org/abs/2002.05202>
//!
//! T5 is the Transformer's encoder-decoder with three changes this module writes out. Its layer norm only rescales
//! (no mean is subtracted, no bias is added), by the root mean square of the features:
//!
//! ```text
//! RMSNorm(x) = x / √(mean(x²) + ε) ⊙ g
//! ```
//!
//! It has no position embeddings. Instead every attention score gets a learned bias that depends on the offset
//! `j − i` between key and query, one scalar per head and *bucket* of offsets: exact buckets for small offsets,
//! logarithmically wider ones up to `max_distance`, beyond which all offsets share the last bucket (in the encoder
//! the two directions have separate buckets). The scores are not divided by `√d`; T5 folds that scale into the
//! initialization of the query weights:
//!
//! ```text
//! Attention(Q, K, V) = softmax(Q Kᵀ + B + M) V,      B[h, i, j] = b_h[bucket(j − i)]
//! ```
//!
//! The first layer computes `B` and every layer of the stack reuses it. The feed-forward layer of T5 v1.1 is gated:
//! one projection, through a GELU, multiplies another elementwise, `FFN(x) = W_o (GELU(x W_0) ⊙ x W_1)`, with no
//! biases anywhere. (T5 v1.1 used the tanh approximation of the GELU; dlhist uses the exact one, which differs by
//! less than 1e-3.) Every sub-layer is pre-norm: `x ← x + Sublayer(RMSNorm(x))`, with a final RMS norm after the
//! stack.
//!
//! T5 pretrains by *span corruption* ([`SpanCorruption`]): contiguous spans of the input are replaced by sentinel
//! tokens, and the decoder writes out what each sentinel hid.
//!
//! The decoder ([`T5Stack`] with `decoder`) is the encoder's stack with two changes: its self-attention is causal
//! and its buckets look back only, and each layer has a cross-attention, without position bias, over the encoder's
//! states. [`T5`] joins the two with one token embedding for both sides: text in, text out.
//!
//! Parameter names follow Hugging Face's T5 (`shared`, `encoder.block.{i}.layer.0.SelfAttention.q`,
//! `decoder.block.{i}.layer.1.EncDecAttention.k`, `lm_head`, ...), so [`T5Encoder`] and [`T5`] load the same
//! safetensors as `candle_transformers::models::t5::{T5EncoderModel, T5ForConditionalGeneration}`; tests behind the
//! `transformers` feature check that both give the same hidden states and logits.

use candle_core::{Device, Module, ModuleT, Result, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};

use super::attention::{EncoderMemory, KeyMask, PrefixState};
use crate::data::pairs::unpack_inputs;
use crate::layers::{Activation, StepDecoder};

/// Sizes of a T5 stack (Hugging Face's names in the comments).
///
/// ```
/// let cfg = dlhist::transformers::t5::T5Config::small(1000);
/// assert_eq!((cfg.d_model, cfg.n_head * cfg.d_kv), (128, 128));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct T5Config {
    /// Tokens in the vocabulary (`vocab_size`).
    pub vocab_size: usize,
    /// Width of the residual stream (`d_model`).
    pub d_model: usize,
    /// Width of each head's queries, keys and values (`d_kv`).
    pub d_kv: usize,
    /// Width inside the feed-forward layer (`d_ff`).
    pub d_ff: usize,
    /// Layers of the stack (`num_layers`).
    pub n_layer: usize,
    /// Attention heads (`num_heads`).
    pub n_head: usize,
    /// Buckets of relative positions (`relative_attention_num_buckets`).
    pub num_buckets: usize,
    /// Offsets from this one on share the last bucket (`relative_attention_max_distance`).
    pub max_distance: usize,
    /// The RMS norm's ε (`layer_norm_epsilon`).
    pub eps: f64,
}

impl T5Config {
    /// A CPU-sized T5: `d_model` 128, 4 heads of 32, feed-forward 512, 2 layers, T5's 32 buckets up to distance 128.
    pub fn small(vocab_size: usize) -> Self {
        T5Config {
            vocab_size,
            d_model: 128,
            d_kv: 32,
            d_ff: 512,
            n_layer: 2,
            n_head: 4,
            num_buckets: 32,
            max_distance: 128,
            eps: 1e-6,
        }
    }
}

/// T5's layer norm (module docs): rescale by the root mean square, multiply by a learned gain `{path}.weight`.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let norm = dlhist::transformers::t5::RmsNorm::new(2, 0.0, vb)?;   // gain starts at 1
/// let y = norm.forward(&Tensor::new(&[[3f32, 4.]], &dev)?)?;       // RMS of (3, 4) is √12.5
/// let want = [3.0 / 12.5f32.sqrt(), 4.0 / 12.5f32.sqrt()];
/// assert!(y.to_vec2::<f32>()?[0].iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// A norm over the last dimension, of size `dim`, with gain initialized to 1.
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(RmsNorm { weight: vb.get_with_hints(dim, "weight", candle_nn::Init::Const(1.0))?, eps })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // mean(x²) over the features: no mean is subtracted, unlike LayerNorm.
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(ms + self.eps)?.sqrt()?)?.broadcast_mul(&self.weight)
    }
}

/// The bucket of the offset `relative = j − i` (key position minus query position), as T5 assigns them (module
/// docs). With `bidirectional`, half the buckets are for keys after the query; each half gives its first half
/// of buckets to exact offsets and spreads the rest logarithmically up to `max_distance`.
///
/// ```
/// use dlhist::transformers::t5::relative_position_bucket;
/// // 32 buckets, bidirectional: offsets 0..8 exact, keys after the query from bucket 16 on.
/// assert_eq!(relative_position_bucket(0, true, 32, 128), 0);
/// assert_eq!(relative_position_bucket(-3, true, 32, 128), 3);
/// assert_eq!(relative_position_bucket(3, true, 32, 128), 19);
/// assert_eq!(relative_position_bucket(-1000, true, 32, 128), 15);   // far away: the last bucket of its half
/// ```
pub fn relative_position_bucket(relative: i64, bidirectional: bool, num_buckets: usize, max_distance: usize) -> usize {
    let (mut buckets, mut base) = (num_buckets, 0);
    let distance = if bidirectional {
        // Keys after the query (j > i) use the upper half.
        buckets /= 2;
        if relative > 0 {
            base = buckets;
        }
        relative.unsigned_abs() as usize
    } else {
        // A decoder only looks back: offsets j − i ≤ 0, measured as i − j.
        (-relative).max(0) as usize
    };
    let max_exact = buckets / 2;
    if distance < max_exact {
        return base + distance;
    }
    // log(n / max_exact) / log(max_distance / max_exact) of the remaining buckets, computed in f32 as T5 does.
    let log_ratio = (distance as f32 / max_exact as f32).ln() / (max_distance as f32 / max_exact as f32).ln();
    let wide = max_exact + (log_ratio * (buckets - max_exact) as f32) as usize;
    base + wide.min(buckets - 1)
}

/// The learned bias `B [1, h, T, S]` of T5's attention scores: `{path}.weight`, one scalar per bucket and head.
#[derive(Debug, Clone)]
pub struct RelativePositionBias {
    table: Embedding,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
}

impl RelativePositionBias {
    /// The table of `cfg.num_buckets × cfg.n_head` biases, drawn with spread `d_model^−½` as T5 draws it;
    /// `bidirectional` for an encoder.
    pub fn new(cfg: &T5Config, bidirectional: bool, vb: VarBuilder) -> Result<Self> {
        let std = (cfg.d_model as f64).powf(-0.5);
        let weight = vb.get_with_hints(
            (cfg.num_buckets, cfg.n_head),
            "weight",
            candle_nn::Init::Randn { mean: 0.0, stdev: std },
        )?;
        Ok(RelativePositionBias {
            table: Embedding::new(weight, cfg.n_head),
            bidirectional,
            num_buckets: cfg.num_buckets,
            max_distance: cfg.max_distance,
        })
    }

    /// The bias of `t` queries at positions `offset..offset + t` over keys `0..s`, `[1, h, T, S]`.
    pub fn bias(&self, t: usize, s: usize, offset: usize, dev: &Device) -> Result<Tensor> {
        let buckets: Vec<u32> = (0..t)
            .flat_map(|i| {
                (0..s).map(move |j| {
                    let relative = j as i64 - (offset + i) as i64;
                    relative_position_bucket(relative, self.bidirectional, self.num_buckets, self.max_distance) as u32
                })
            })
            .collect();
        let ids = Tensor::from_vec(buckets, (t, s), dev)?;
        // [T, S, h] → [1, h, T, S].
        self.table.forward(&ids)?.permute((2, 0, 1))?.unsqueeze(0)
    }
}

/// T5's gated-GELU feed-forward layer, `W_o (GELU(x W_0) ⊙ x W_1)` without biases: `{path}.wi_0`, `{path}.wi_1`,
/// `{path}.wo`.
#[derive(Debug, Clone)]
pub struct GatedGelu {
    wi_0: Linear,
    wi_1: Linear,
    wo: Linear,
}

impl GatedGelu {
    /// `d_model → d_ff → d_model`, drawn as T5 draws them: spread `d_model^−½` into the layer, `d_ff^−½` out.
    pub fn new(d_model: usize, d_ff: usize, vb: VarBuilder) -> Result<Self> {
        Ok(GatedGelu {
            wi_0: linear_normal(d_model, d_ff, (d_model as f64).powf(-0.5), vb.pp("wi_0"))?,
            wi_1: linear_normal(d_model, d_ff, (d_model as f64).powf(-0.5), vb.pp("wi_1"))?,
            wo: linear_normal(d_ff, d_model, (d_ff as f64).powf(-0.5), vb.pp("wo"))?,
        })
    }
}

impl Module for GatedGelu {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // The GELU branch gates the linear one, feature by feature.
        let gate = Activation::Gelu.forward(&project(&self.wi_0, x)?)?;
        project(&self.wo, &(gate * project(&self.wi_1, x)?)?)
    }
}

/// A bias-free linear layer `{path}.weight` `[out, in]` drawn from `N(0, std²)`: T5 sets each layer's spread by
/// hand (see [`T5Attention::new`] and [`GatedGelu::new`]) instead of leaving it to a default rule.
fn linear_normal(d_in: usize, d_out: usize, std: f64, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((d_out, d_in), "weight", candle_nn::Init::Randn { mean: 0.0, stdev: std })?;
    Ok(Linear::new(w, None))
}

/// `x Wᵀ` for `x [.., in]`, as one matrix product over all rows: candle's `Linear` on a 3-D input multiplies
/// batch item by batch item, small products that leave the second core idle.
fn project(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let d_in = dims[dims.len() - 1];
    let rows = x.elem_count() / d_in;
    let y = layer.forward(&x.reshape((rows, d_in))?)?;
    let mut out = dims;
    *out.last_mut().expect("x has at least one dimension") = y.dim(1)?;
    y.reshape(out)
}

/// T5's multi-head attention: no `1/√d`, an additive position bias, and `{path}.q`, `{path}.k`, `{path}.v`,
/// `{path}.o` without biases (`n_head · d_kv` wide inside).
#[derive(Debug, Clone)]
pub struct T5Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    n_head: usize,
    d_kv: usize,
}

impl T5Attention {
    /// Attention sized by `cfg`, initialized as Mesh TensorFlow's T5 is: the queries' weights with spread
    /// `(d_model · d_kv)^−½`, keys and values `d_model^−½`, the output `(n_head · d_kv)^−½`. On inputs of unit
    /// RMS (every sub-layer reads an RMS-normed stream) the queries then have variance `1/d_kv` and the keys 1,
    /// so the scores `q · k` start at unit variance without the usual division by `√d_kv`.
    pub fn new(cfg: &T5Config, vb: VarBuilder) -> Result<Self> {
        let inner = cfg.n_head * cfg.d_kv;
        let d = cfg.d_model as f64;
        Ok(T5Attention {
            q: linear_normal(cfg.d_model, inner, (d * cfg.d_kv as f64).powf(-0.5), vb.pp("q"))?,
            k: linear_normal(cfg.d_model, inner, d.powf(-0.5), vb.pp("k"))?,
            v: linear_normal(cfg.d_model, inner, d.powf(-0.5), vb.pp("v"))?,
            o: linear_normal(inner, cfg.d_model, (inner as f64).powf(-0.5), vb.pp("o"))?,
            n_head: cfg.n_head,
            d_kv: cfg.d_kv,
        })
    }

    /// Queries from `x [B, T, C]`, keys and values from `memory [B, S, C]` (`x` itself for self-attention), the
    /// position bias `bias` (`[1, h, T, S]`, or `None` for cross-attention) and the keys `mask` hides.
    pub fn forward(&self, x: &Tensor, memory: &Tensor, bias: Option<&Tensor>, mask: &KeyMask) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let s = memory.dim(1)?;
        let heads = |y: Tensor, n: usize| y.reshape((b, n, self.n_head, self.d_kv))?.transpose(1, 2)?.contiguous();
        let q = heads(project(&self.q, x)?, t)?;
        let k = heads(project(&self.k, memory)?, s)?;
        let v = heads(project(&self.v, memory)?, s)?;
        // Scores Q Kᵀ, [B, h, T, S], unscaled: T5's initialization already keeps them near unit variance.
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(bias)?;
        }
        if let Some(m) = mask.bias(t, s, x.device())? {
            scores = scores.broadcast_add(&m.to_dtype(scores.dtype())?)?;
        }
        let y = candle_nn::ops::softmax(&scores, D::Minus1)?.matmul(&v)?;
        project(&self.o, &y.transpose(1, 2)?.reshape((b, t, self.n_head * self.d_kv))?)
    }
}

/// One layer (Hugging Face's `T5Block`), pre-norm throughout:
///
/// ```text
/// x ← x + SelfAttention(RMSNorm(x))            {path}.layer.0.SelfAttention, {path}.layer.0.layer_norm
/// x ← x + CrossAttention(RMSNorm(x), memory)   {path}.layer.1.EncDecAttention, {path}.layer.1.layer_norm (decoder only)
/// x ← x + FFN(RMSNorm(x))                      {path}.layer.{1 or 2}.DenseReluDense, its layer_norm
/// ```
#[derive(Debug, Clone)]
pub struct T5Block {
    norm_attn: RmsNorm,
    attn: T5Attention,
    cross: Option<(RmsNorm, T5Attention)>,
    norm_ff: RmsNorm,
    ff: GatedGelu,
}

impl T5Block {
    /// A layer sized by `cfg`; `cross` gives it the decoder's cross-attention.
    pub fn new(cfg: &T5Config, cross: bool, vb: VarBuilder) -> Result<Self> {
        let vb = vb.pp("layer");
        let cross = if cross {
            Some((
                RmsNorm::new(cfg.d_model, cfg.eps, vb.pp("1.layer_norm"))?,
                T5Attention::new(cfg, vb.pp("1.EncDecAttention"))?,
            ))
        } else {
            None
        };
        let ff = vb.pp(if cross.is_some() { "2" } else { "1" });
        Ok(T5Block {
            norm_attn: RmsNorm::new(cfg.d_model, cfg.eps, vb.pp("0.layer_norm"))?,
            attn: T5Attention::new(cfg, vb.pp("0.SelfAttention"))?,
            cross,
            norm_ff: RmsNorm::new(cfg.d_model, cfg.eps, ff.pp("layer_norm"))?,
            ff: GatedGelu::new(cfg.d_model, cfg.d_ff, ff.pp("DenseReluDense"))?,
        })
    }

    /// The layer on `x [B, T, C]` with the stack's position bias, the self-attention's mask, and for a decoder
    /// layer the encoder's states and their padding mask.
    pub fn forward(
        &self,
        x: &Tensor,
        bias: &Tensor,
        mask: &KeyMask,
        memory: Option<(&Tensor, &KeyMask)>,
    ) -> Result<Tensor> {
        let h = self.norm_attn.forward(x)?;
        let mut x = (x + self.attn.forward(&h, &h, Some(bias), mask)?)?;
        match (&self.cross, memory) {
            // Cross-attention has no position bias: source and target positions are not comparable.
            (Some((norm, attn)), Some((states, memory_mask))) => {
                x = (&x + attn.forward(&norm.forward(&x)?, states, None, memory_mask)?)?;
            }
            (None, None) => {}
            (Some(_), None) => candle_core::bail!("T5Block: a decoder layer needs the encoder's states"),
            (None, Some(_)) => candle_core::bail!("T5Block: an encoder layer takes no encoder states"),
        }
        let m = self.ff.forward(&self.norm_ff.forward(&x)?)?;
        x + m
    }
}

/// A stack of [`T5Block`]s under `{path}` (`encoder` or `decoder`): `{path}.block.{i}`, the position bias of block 0
/// (`{path}.block.0.layer.0.SelfAttention.relative_attention_bias`, shared by all layers: computed once, added in
/// every layer) and `{path}.final_layer_norm`. The encoder's buckets are bidirectional; the decoder's look back
/// only, and its self-attention is causal.
#[derive(Debug, Clone)]
pub struct T5Stack {
    bias: RelativePositionBias,
    blocks: Vec<T5Block>,
    final_norm: RmsNorm,
    decoder: bool,
}

impl T5Stack {
    /// An encoder stack, or with `decoder` a decoder stack, sized by `cfg`.
    pub fn new(cfg: &T5Config, decoder: bool, vb: VarBuilder) -> Result<Self> {
        Ok(T5Stack {
            bias: RelativePositionBias::new(
                cfg,
                !decoder,
                vb.pp("block.0.layer.0.SelfAttention.relative_attention_bias"),
            )?,
            blocks: (0..cfg.n_layer)
                .map(|i| T5Block::new(cfg, decoder, vb.pp(format!("block.{i}"))))
                .collect::<Result<_>>()?,
            final_norm: RmsNorm::new(cfg.d_model, cfg.eps, vb.pp("final_layer_norm"))?,
            decoder,
        })
    }

    /// The stack on embedded tokens `x [B, T, C]`: an encoder hides the padding `mask` gives; a decoder is causal
    /// (its `mask` is ignored) and attends to `memory`, the encoder's states and mask.
    pub fn forward(&self, x: &Tensor, mask: &KeyMask, memory: Option<(&Tensor, &KeyMask)>) -> Result<Tensor> {
        let t = x.dim(1)?;
        // One bias for the whole stack, computed once.
        let bias = self.bias.bias(t, t, 0, x.device())?.to_dtype(x.dtype())?;
        let causal = KeyMask::causal();
        let mask = if self.decoder { &causal } else { mask };
        let mut x = x.clone();
        for block in &self.blocks {
            x = block.forward(&x, &bias, mask, memory)?;
        }
        self.final_norm.forward(&x)
    }
}

/// T5's encoder alone (Hugging Face's `T5EncoderModel`): the token embedding `shared` and the stack `encoder`.
/// Maps token ids `[B, S]` to hidden states `[B, S, d_model]`.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::{t5::{T5Config, T5Encoder}, KeyMask};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let enc = T5Encoder::new(T5Config { n_layer: 1, ..T5Config::small(50) }, vb)?;
/// let h = enc.forward(&Tensor::new(&[[3u32, 4, 5]], &dev)?, &KeyMask::none())?;
/// assert_eq!(h.dims(), &[1, 3, 128]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct T5Encoder {
    shared: Embedding,
    stack: T5Stack,
    config: T5Config,
}

impl T5Encoder {
    /// An encoder sized by `config`, under Hugging Face's top-level names (`vb` is the model's root).
    pub fn new(config: T5Config, vb: VarBuilder) -> Result<Self> {
        Ok(T5Encoder {
            shared: candle_nn::embedding(config.vocab_size, config.d_model, vb.pp("shared"))?,
            stack: T5Stack::new(&config, false, vb.pp("encoder"))?,
            config,
        })
    }

    /// The sizes.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// Hidden states `[B, S, d_model]` of token ids `[B, S]`; `mask` hides padding.
    pub fn forward(&self, ids: &Tensor, mask: &KeyMask) -> Result<Tensor> {
        self.stack.forward(&self.shared.forward(ids)?, mask, None)
    }
}

/// The whole text-to-text model (Hugging Face's `T5ForConditionalGeneration`, T5 v1.1's untied output layer): one
/// token embedding `shared` for the encoder's and the decoder's inputs, the stacks `encoder` and `decoder`, and the
/// output layer `lm_head`. Trained on packed pairs like the other encoder-decoders
/// ([`crate::data::pairs::SeqPairs::packed`]: `forward_t` maps `[B, 2, L]` to logits `[B, T, V]`), decoded through
/// [`StepDecoder`]. Source and target share one vocabulary (text in, text out).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::greedy_decode;
/// use dlhist::transformers::t5::{T5Config, T5};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let model = T5::new(T5Config { n_layer: 1, ..T5Config::small(30) }, vb)?;
/// let src = Tensor::new(&[[3u32, 4, 5], [6, 7, 0]], &dev)?;          // the second row padded
/// let mask = Tensor::new(&[[1f32, 1., 1.], [1., 1., 0.]], &dev)?;
/// let memory = model.encode(&src, &mask)?;
/// let logits = model.decode(&Tensor::new(&[[1u32, 9], [1, 8]], &dev)?, &memory)?;
/// assert_eq!(logits.dims(), &[2, 2, 30]);
/// let out = greedy_decode(&model, model.start(&src, &mask)?, 2, 5, &dev)?;
/// assert_eq!(out.len(), 2);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct T5 {
    shared: Embedding,
    encoder: T5Stack,
    decoder: T5Stack,
    lm_head: Linear,
    config: T5Config,
}

impl T5 {
    /// A model sized by `config` (the decoder has as many layers as the encoder), under Hugging Face's names.
    pub fn new(config: T5Config, vb: VarBuilder) -> Result<Self> {
        Ok(T5 {
            shared: candle_nn::embedding(config.vocab_size, config.d_model, vb.pp("shared"))?,
            encoder: T5Stack::new(&config, false, vb.pp("encoder"))?,
            decoder: T5Stack::new(&config, true, vb.pp("decoder"))?,
            // Spread d_model^−½: the decoder's output has unit RMS, so the first logits have unit variance.
            lm_head: linear_normal(
                config.d_model,
                config.vocab_size,
                (config.d_model as f64).powf(-0.5),
                vb.pp("lm_head"),
            )?,
            config,
        })
    }

    /// The sizes.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// The encoder over source ids `[B, S]` with their 0/1 mask `[B, S]` (f32).
    pub fn encode(&self, src: &Tensor, src_mask: &Tensor) -> Result<EncoderMemory> {
        let (b, s) = src.dims2().map_err(|_| {
            candle_core::Error::Msg(format!("T5::encode expects source ids [B, S]; got {:?}", src.dims()))
        })?;
        if src_mask.dims() != [b, s] {
            candle_core::bail!("T5::encode: source {:?} needs a mask [{b}, {s}]; got {:?}", src.dims(), src_mask.dims())
        }
        self.encode_masked(src, KeyMask::from_mask(src_mask)?)
    }

    fn encode_masked(&self, src: &Tensor, mask: KeyMask) -> Result<EncoderMemory> {
        let states = self.encoder.forward(&self.shared.forward(src)?, &mask, None)?;
        Ok(EncoderMemory { states, mask })
    }

    /// Logits `[B, T, V]` of the decoder over target prefixes `tgt_in [B, T]`, attending to the encoder's memory.
    pub fn decode(&self, tgt_in: &Tensor, memory: &EncoderMemory) -> Result<Tensor> {
        let y = self.shared.forward(tgt_in)?;
        let h = self.decoder.forward(&y, &KeyMask::causal(), Some((&memory.states, &memory.mask)))?;
        project(&self.lm_head, &h)
    }

    /// The decoding state for sources `[B, S]` with mask `[B, S]`.
    pub fn start(&self, src: &Tensor, src_mask: &Tensor) -> Result<PrefixState> {
        Ok(PrefixState::new(self.encode(src, src_mask)?))
    }
}

impl ModuleT for T5 {
    /// Packed pairs `x` (`[B, 2, L]` u32) to teacher-forced logits `[B, T, V]`. No dropout: `train` changes nothing.
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let (src, _, lens, tgt_in) = unpack_inputs(x).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        self.decode(&tgt_in, &self.encode_masked(&src, KeyMask { lens: Some(lens), causal: false })?)
    }
}

impl StepDecoder for T5 {
    type State = PrefixState;

    fn step(&self, prev: &Tensor, state: &PrefixState) -> Result<(Tensor, PrefixState)> {
        let (prefix, state) = state.extend(prev)?;
        let t = prefix.dim(1)?;
        let logits = self.decode(&prefix, &state.memory)?.narrow(1, t - 1, 1)?.squeeze(1)?;
        Ok((logits, state))
    }

    fn select_rows(&self, state: &PrefixState, rows: &Tensor) -> Result<PrefixState> {
        state.select_rows(rows)
    }

    fn batch_size(&self, state: &PrefixState) -> usize {
        state.batch_size()
    }

    fn device(&self) -> Device {
        self.shared.embeddings().device().clone()
    }
}

/// T5's pretraining objective, *span corruption*: hide a share of the tokens in contiguous spans, replace each span
/// in the input by one sentinel token, and make the target the list of hidden spans, each after its sentinel, with
/// one more sentinel at the end. The encoder reads the input; the decoder writes the target.
///
/// ```text
/// tokens:  Thank you for inviting me to your party last week .
/// input:   Thank you <X> me to your party <Y> week .
/// target:  <X> for inviting <Y> last <Z>
/// ```
///
/// [`SpanCorruption::apply`] hides `max(1, round(n · noise_density))` of `n` tokens in `max(1, round(hidden /
/// mean_span))` spans, and cuts both the hidden and the kept tokens into that many pieces at random (every piece
/// at least one token long), so the spans are placed at random and their lengths average `mean_span`. Kept and
/// hidden pieces alternate, starting with kept tokens, as in T5's own code (`random_spans_noise_mask`): so the
/// sequence always ends with a span. On T5's 512-token sequences that is one span among dozens; on a short
/// sequence with a single span it means the end is what is hidden, and the objective comes close to completing the
/// text (the T5 notebook measures what that does).
///
/// ```
/// use dlhist::rng::Rng;
/// use dlhist::transformers::t5::SpanCorruption;
/// let tokens: Vec<u32> = (10..30).collect();                       // 20 tokens
/// let rule = SpanCorruption { noise_density: 0.3, mean_span: 2.0 };
/// let (input, target) = rule.apply(&tokens, &[1, 2, 3, 4], &mut Rng::new(0))?;
/// // 6 tokens hidden in 3 spans: 14 kept + 3 sentinels in, 3 sentinels + 6 tokens + 1 end sentinel out.
/// assert_eq!((input.len(), target.len()), (17, 10));
/// assert_eq!(rule.apply(&tokens, &[1, 2, 3, 4], &mut Rng::new(0))?, (input, target)); // seeded
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanCorruption {
    /// Share of the tokens hidden, in `(0, 1)`.
    pub noise_density: f64,
    /// Mean length of a hidden span, at least 1.
    pub mean_span: f64,
}

/// `total` items cut into `pieces` consecutive pieces of at least one item each, uniformly over all such cuts:
/// the lengths.
fn random_pieces(total: usize, pieces: usize, rng: &mut crate::rng::Rng) -> Vec<usize> {
    // Choose pieces − 1 distinct cut points among the total − 1 gaps between items (a partial shuffle).
    let mut gaps: Vec<usize> = (1..total).collect();
    for i in 0..pieces - 1 {
        let j = i + rng.below(gaps.len() - i);
        gaps.swap(i, j);
    }
    let mut cuts: Vec<usize> = gaps[..pieces - 1].to_vec();
    cuts.sort_unstable();
    cuts.push(total);
    let mut last = 0;
    cuts.iter().map(|&c| std::mem::replace(&mut last, c)).zip(cuts.iter()).map(|(a, &b)| b - a).collect()
}

impl SpanCorruption {
    /// The corrupted input and the target of `tokens` (at least 2), writing span `k`'s sentinel as `sentinels[k]`
    /// (at least one more sentinel than spans is needed, for the target's end).
    pub fn apply(
        &self,
        tokens: &[u32],
        sentinels: &[u32],
        rng: &mut crate::rng::Rng,
    ) -> crate::Result<(Vec<u32>, Vec<u32>)> {
        let n = tokens.len();
        if !(self.noise_density > 0.0 && self.noise_density < 1.0) || self.mean_span.is_nan() || self.mean_span < 1.0 {
            return Err(crate::Error::Invalid(format!(
                "SpanCorruption: noise_density must be in (0, 1) and mean_span at least 1; got {} and {}",
                self.noise_density, self.mean_span
            )));
        }
        if n < 2 {
            return Err(crate::Error::Invalid(format!("SpanCorruption: needs at least 2 tokens; got {n}")));
        }
        // Hidden tokens, at least one and leaving one; spans, at most as many as either side has tokens.
        let hidden = ((n as f64 * self.noise_density).round() as usize).clamp(1, n - 1);
        let spans = ((hidden as f64 / self.mean_span).round() as usize).clamp(1, hidden.min(n - hidden));
        if sentinels.len() < spans + 1 {
            return Err(crate::Error::Invalid(format!(
                "SpanCorruption: {spans} spans need {} sentinel ids; got {}",
                spans + 1,
                sentinels.len()
            )));
        }
        let hidden_lens = random_pieces(hidden, spans, rng);
        let kept_lens = random_pieces(n - hidden, spans, rng);
        let (mut input, mut target) = (Vec::with_capacity(n - hidden + spans), Vec::with_capacity(hidden + spans + 1));
        let mut at = 0;
        for (k, (&keep, &hide)) in kept_lens.iter().zip(&hidden_lens).enumerate() {
            input.extend_from_slice(&tokens[at..at + keep]);
            at += keep;
            input.push(sentinels[k]);
            target.push(sentinels[k]);
            target.extend_from_slice(&tokens[at..at + hide]);
            at += hide;
        }
        target.push(sentinels[spans]);
        Ok((input, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn buckets_follow_the_definition() {
        // Bidirectional, 32 buckets, max distance 128: each half has 16, 8 exact (0..8), then log-spaced over 8..128.
        let b = |r| relative_position_bucket(r, true, 32, 128);
        for r in 0..8 {
            assert_eq!(b(-r), r as usize);
        }
        for r in 1..8 {
            assert_eq!(b(r), 16 + r as usize);
        }
        // 8 + floor(ln(n / 8) / ln(16) · 8): n = 16 → 8 + 2 = 10; n = 64 → 8 + 6 = 14; n ≥ 128 → 15.
        assert_eq!((b(-16), b(-64), b(-127), b(-128), b(-5000)), (10, 14, 15, 15, 15));
        assert_eq!((b(16), b(64), b(5000)), (26, 30, 31));
        // Monotone in the distance within each half.
        assert!((0..300).all(|n| b(-n) <= b(-n - 1) && b(n + 1) <= b(n + 2)));
        // Causal: only the past has buckets; the future maps to 0 like the present.
        let c = |r| relative_position_bucket(r, false, 32, 128);
        assert_eq!((c(0), c(5), c(-5), c(-15), c(-16), c(-5000)), (0, 0, 5, 15, 16, 31));
    }

    /// The target's spans, put back in place of the input's sentinels, give the original; counts and the mean span
    /// length follow the rule; bad settings are errors.
    #[test]
    fn span_corruption_hides_spans_that_put_back_give_the_text() -> crate::Result<()> {
        let rule = SpanCorruption { noise_density: 0.15, mean_span: 3.0 };
        let sentinels: Vec<u32> = (1000..1020).collect();
        let mut rng = crate::rng::Rng::new(7);
        let (mut spans_seen, mut hidden_seen) = (0, 0);
        for n in [2usize, 5, 20, 64, 100] {
            for _ in 0..50 {
                let tokens: Vec<u32> = (0..n as u32).collect();
                let (input, target) = rule.apply(&tokens, &sentinels, &mut rng)?;
                let hidden = ((n as f64 * 0.15).round() as usize).clamp(1, n - 1);
                let spans = input.iter().filter(|&&t| t >= 1000).count();
                assert_eq!(target.len(), hidden + spans + 1, "n {n}");
                assert_eq!(input.len(), n - hidden + spans, "n {n}");
                assert!(input[0] < 1000, "the sequence starts with kept tokens");
                assert!(*input.last().unwrap() >= 1000, "and ends with a span");
                // Put the spans back.
                let mut rebuilt = vec![];
                for &t in &input {
                    if t >= 1000 {
                        let from = target.iter().position(|&x| x == t).unwrap() + 1;
                        rebuilt.extend(target[from..].iter().take_while(|&&x| x < 1000));
                    } else {
                        rebuilt.push(t);
                    }
                }
                assert_eq!(rebuilt, tokens, "n {n}: {input:?} / {target:?}");
                assert_eq!(*target.last().unwrap(), sentinels[spans]);
                if n == 100 {
                    spans_seen += spans;
                    hidden_seen += hidden;
                }
            }
        }
        // 15 hidden tokens of 100 in round(15 / 3) = 5 spans: a mean length of exactly 3.
        assert_eq!(hidden_seen as f64 / spans_seen as f64, 3.0);
        assert!(SpanCorruption { noise_density: 0.0, mean_span: 3.0 }.apply(&[1, 2, 3], &sentinels, &mut rng).is_err());
        assert!(SpanCorruption { noise_density: 0.5, mean_span: 0.5 }.apply(&[1, 2, 3], &sentinels, &mut rng).is_err());
        assert!(rule.apply(&[1], &sentinels, &mut rng).is_err());
        assert!(
            rule.apply(&(0..100).collect::<Vec<u32>>(), &sentinels[..3], &mut rng).is_err(),
            "5 spans, 3 sentinels"
        );
        Ok(())
    }

    /// Every way of cutting is possible and the pieces are never empty.
    #[test]
    fn random_pieces_cover_every_cut() {
        let mut rng = crate::rng::Rng::new(1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let p = random_pieces(5, 3, &mut rng);
            assert_eq!(p.iter().sum::<usize>(), 5);
            assert!(p.iter().all(|&x| x >= 1));
            seen.insert(p);
        }
        // C(4, 2) = 6 ways to cut 5 items into 3 non-empty pieces.
        assert_eq!(seen.len(), 6);
        assert_eq!(random_pieces(4, 1, &mut rng), vec![4]);
    }

    #[test]
    fn the_encoder_shares_one_bias_and_masks_padding() -> Result<()> {
        let dev = Device::Cpu;
        let (vars, vb) = crate::init::seeded(2, DType::F32, &dev);
        let cfg = T5Config { n_layer: 2, ..T5Config::small(20) };
        let enc = T5Encoder::new(cfg, vb)?;
        let names: Vec<String> = vars.data().lock().unwrap().keys().cloned().collect();
        assert_eq!(names.iter().filter(|n| n.contains("relative_attention_bias")).count(), 1, "{names:?}");
        // Padding: a sequence and the same sequence with two padded tokens give the same states on the real ones.
        let a = enc.forward(&Tensor::new(&[[5u32, 6, 7]], &dev)?, &KeyMask::none())?;
        let padded = Tensor::new(&[[5u32, 6, 7, 0, 0]], &dev)?;
        let b = enc.forward(&padded, &KeyMask { lens: Some(vec![3]), causal: false })?;
        let gap = (a - b.narrow(1, 0, 3)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(gap < 1e-5, "{gap}");
        // Gradients reach the position table.
        let loss = enc.forward(&Tensor::new(&[[1u32, 2, 3, 4]], &dev)?, &KeyMask::none())?.sqr()?.mean_all()?;
        let grads = loss.backward()?;
        let table =
            vars.data().lock().unwrap()["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].clone();
        assert!(grads.get(&table).unwrap().abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
        Ok(())
    }

    /// The decoder is causal (a later target token changes no earlier logit), source padding changes nothing,
    /// the packed training path equals encode-then-decode, and a short training run learns to copy.
    #[test]
    fn the_encoder_decoder_is_causal_ignores_padding_and_learns() -> crate::Result<()> {
        use crate::data::pairs::{SeqPairs, Vocab};
        use candle_nn::Optimizer;
        let dev = Device::Cpu;
        let (vars, vb) = crate::init::seeded(4, DType::F32, &dev);
        let cfg = T5Config { d_model: 32, d_kv: 8, d_ff: 64, n_layer: 1, ..T5Config::small(12) };
        let model = T5::new(cfg, vb)?;
        let src = Tensor::new(&[[5u32, 6, 7, 8]], &dev)?;
        let memory = model.encode(&src, &Tensor::ones((1, 4), DType::F32, &dev)?)?;
        let a = model.decode(&Tensor::new(&[[1u32, 3, 4]], &dev)?, &memory)?;
        let b = model.decode(&Tensor::new(&[[1u32, 3, 9]], &dev)?, &memory)?;
        let early = (a.narrow(1, 0, 2)? - b.narrow(1, 0, 2)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let last = (a.narrow(1, 2, 1)? - b.narrow(1, 2, 1)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(early < 1e-6 && last > 1e-4, "early {early}, last {last}");
        let padded = model.encode(
            &Tensor::new(&[[5u32, 6, 7, 8, 0, 0]], &dev)?,
            &Tensor::new(&[[1f32, 1., 1., 1., 0., 0.]], &dev)?,
        )?;
        let c = model.decode(&Tensor::new(&[[1u32, 3, 4]], &dev)?, &padded)?;
        assert!((a - &c)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-5);
        // Copy task: the target is the source.
        let v = Vocab::new((0..9).map(|i| i.to_string()))?;
        let mut rng = crate::rng::Rng::new(0);
        let rows: Vec<Vec<u32>> = (0..64).map(|_| (0..3).map(|_| 3 + rng.below(9) as u32).collect()).collect();
        let pairs = SeqPairs::new(rows.clone(), rows, v.clone(), v)?;
        let packed = pairs.packed(&(0..64).collect::<Vec<_>>(), &dev)?;
        let packed_logits = model.forward_t(&packed.x.narrow(0, 0, 2)?, true)?;
        let batch = pairs.batch(&[0, 1], &dev)?;
        let direct = model.decode(&batch.tgt_in, &model.encode(&batch.src, &batch.src_mask)?)?;
        assert!((packed_logits - direct)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-6);
        let mut opt = candle_nn::AdamW::new_lr(vars.all_vars(), 1e-2)?;
        let mask = packed.y.ne(0u32)?.to_dtype(DType::F32)?;
        let loss = |m: &T5| crate::layers::sequence_cross_entropy(&m.forward_t(&packed.x, true)?, &packed.y, &mask);
        let before = loss(&model)?.to_scalar::<f32>()?;
        for _ in 0..60 {
            opt.backward_step(&loss(&model)?)?;
        }
        let after = loss(&model)?.to_scalar::<f32>()?;
        assert!(after < 0.3 * before, "copy loss {before} → {after}");
        Ok(())
    }
}
