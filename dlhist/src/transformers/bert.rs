//! # BERT: a Transformer encoder pretrained by filling in masked words
//!
//! J. Devlin, M.-W. Chang, K. Lee and K. Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers for
//! Language Understanding", NAACL 2019. <https://arxiv.org/abs/1810.04805>
//! Y. Liu et al., "RoBERTa: A Robustly Optimized BERT Pretraining Approach", 2019.
//! <https://arxiv.org/abs/1907.11692>
//!
//! BERT is the Transformer's encoder alone ([`super::transformer`], post-LN, GELU in the feed-forward layers) over
//! the sum of three embeddings: the token, its position (learned) and its segment (sentence A or B):
//!
//! ```text
//! h⁰ = Dropout(LN(E_tok[x_t] + E_pos[t] + E_seg[s_t]))
//! g  = LN(hˡ + MultiHead(hˡ))          hˡ⁺¹ = LN(g + GELU(g W₁ + b₁) W₂ + b₂)
//! ```
//!
//! A left-to-right language model cannot look at the words after the one it predicts. BERT's *masked language
//! model* can: choose 15% of the tokens, hide them, and predict each from both sides,
//!
//! ```text
//! L_MLM = −(1/|M|) Σ_{i ∈ M} log p(x_i | x̃),      p(· | x̃) = softmax(LN(GELU(h_i W + b)) E_tokᵀ + c)
//! ```
//!
//! where `x̃` is the input with the chosen positions `M` corrupted: 80% become `[MASK]`, 10% a random token and 10%
//! stay as they are ([`MaskingRule`]; the paper's section 3.1: `[MASK]` never occurs when the model is later
//! fine-tuned, so it must also learn to check tokens it can see). The output layer shares its matrix with the
//! token embedding.
//!
//! Fine-tuning puts one layer on the final state of the first token, `[CLS]`, through BERT's "pooler"
//! (`tanh(h_CLS W_p + b_p)`), and trains everything on the labeled task ([`BertClassifier`]).
//!
//! RoBERTa's first finding is about when the mask is drawn. BERT drew each sequence's mask once, when the data was
//! prepared (duplicated ten times with ten masks); RoBERTa draws a new mask every time a sequence is used
//! (*dynamic* masking, [`Masking`]).
//!
//! Parameters follow Hugging Face's names (`bert.embeddings.word_embeddings`, `bert.encoder.layer.0.attention.
//! self.query`, ..., `cls.predictions.transform.dense`), which `candle_transformers::models::bert` loads too: a
//! test (`tests/reference_models.rs`) checks that both give the same hidden states. Two
//! departures from the original, both for speed on a CPU: no dropout on the attention weights, and the
//! output layer is computed only at the positions that are predicted.
//!
//! With [`BertConfig::causal`] the same model is a left-to-right language model (a causal mask in every layer):
//! the paper's ablation "LTR & No NSP" (its Table 5). Its classifier reads the last token instead of `[CLS]`,
//! which sees nothing but itself under a causal mask.

use candle_core::{DType, Device, Module, ModuleT, Result, Tensor};
use candle_nn::{Embedding, Init, Linear, VarBuilder};

use super::attention::{KeyMask, MultiHeadAttention};
use super::transformer::{dropout, NormPlacement};
use crate::data::pairs::row_lengths;
use crate::data::wordpiece::{CLS, MASK, PAD, SPECIAL_TOKENS};
use crate::data::Dataset;
use crate::layers::{summed_embeddings, Activation, Dense, Dropout};
use crate::optimization::LayerNorm;
use crate::rng::Rng;

/// Sizes and choices of a [`Bert`].
///
/// ```
/// let cfg = dlhist::transformers::BertConfig::small(3000);
/// assert_eq!((cfg.hidden, cfg.n_layer, cfg.n_head, cfg.intermediate), (128, 4, 4, 512));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BertConfig {
    /// Vocabulary size (special tokens included).
    pub vocab_size: usize,
    /// Width of every layer, `H`.
    pub hidden: usize,
    /// Encoder layers, `L`.
    pub n_layer: usize,
    /// Attention heads, `A` (`hidden` must be a multiple).
    pub n_head: usize,
    /// Inner width of the feed-forward layers (the paper: `4H`).
    pub intermediate: usize,
    /// Longest input, in tokens (rows of the position table).
    pub max_len: usize,
    /// Segments (rows of the segment table; BERT: 2).
    pub type_vocab: usize,
    /// Dropout on the embeddings and on each sub-layer's output.
    pub dropout: f32,
    /// The layer norms' ε (BERT: 1e-12).
    pub layer_norm_eps: f64,
    /// A causal mask in every layer: a left-to-right language model instead of a bidirectional encoder.
    pub causal: bool,
    /// Where the layer norms sit: after each residual sum as in BERT ([`NormPlacement::Post`]), or before each
    /// sub-layer with one more norm after the last layer (`{path}.encoder.final_norm`), which trains faster from
    /// scratch.
    pub norm: NormPlacement,
    /// Seed of the dropout masks.
    pub seed: u64,
}

impl BertConfig {
    /// A CPU-sized BERT in BERT-base's proportions: `H = 128`, `L = 4`, `A = 4`, inner width 512, inputs up to 128
    /// tokens, two segments, dropout 0.1, ε = 1e-12, bidirectional.
    pub fn small(vocab_size: usize) -> Self {
        BertConfig {
            vocab_size,
            hidden: 128,
            n_layer: 4,
            n_head: 4,
            intermediate: 512,
            max_len: 128,
            type_vocab: 2,
            dropout: 0.1,
            layer_norm_eps: 1e-12,
            causal: false,
            norm: NormPlacement::Post,
            seed: 0,
        }
    }
}

/// An embedding table drawn from N(0, 0.02²), BERT's `initializer_range`: small, so the tied output layer starts
/// with logits near 0.
fn embedding(n: usize, h: usize, vb: VarBuilder) -> Result<Embedding> {
    Ok(Embedding::new(vb.get_with_hints((n, h), "weight", Init::Randn { mean: 0.0, stdev: 0.02 })?, h))
}

/// One encoder layer (`{path}.attention.self.{query,key,value}`, `{path}.attention.output.{dense,LayerNorm}`,
/// `{path}.intermediate.dense`, `{path}.output.{dense,LayerNorm}`).
#[derive(Debug)]
pub struct BertLayer {
    attn: MultiHeadAttention,
    attn_ln: LayerNorm,
    up: Dense,
    down: Dense,
    out_ln: LayerNorm,
    drop: Dropout,
    norm: NormPlacement,
}

impl BertLayer {
    /// A layer of `cfg`'s sizes; `seed` draws its dropout masks.
    pub fn new(cfg: &BertConfig, seed: u64, vb: VarBuilder) -> Result<Self> {
        let (h, eps) = (cfg.hidden, cfg.layer_norm_eps);
        Ok(BertLayer {
            attn: MultiHeadAttention::with_names(
                h,
                cfg.n_head,
                vb.clone(),
                ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"],
            )?,
            attn_ln: LayerNorm::with_eps(h, eps, vb.pp("attention.output.LayerNorm"))?,
            up: Dense::new(h, cfg.intermediate, Some(Activation::Gelu), vb.pp("intermediate.dense"))?,
            down: Dense::new(cfg.intermediate, h, None, vb.pp("output.dense"))?,
            out_ln: LayerNorm::with_eps(h, eps, vb.pp("output.LayerNorm"))?,
            drop: dropout(cfg.dropout, seed)?,
            norm: cfg.norm,
        })
    }

    /// `[B, T, H]` to `[B, T, H]`; `mask` hides the padding (and the future, when causal).
    pub fn forward_t(&self, x: &Tensor, mask: &KeyMask, train: bool) -> Result<Tensor> {
        let attend = |h: &Tensor| self.attn.forward(h, h, mask);
        let feed = |h: &Tensor| self.down.forward(&self.up.forward(h)?);
        match self.norm {
            // Post-LN, as in BERT and the Transformer paper: the norm after each residual sum.
            NormPlacement::Post => {
                let g = self.attn_ln.forward(&(x + self.drop.forward_t(&attend(x)?, train)?)?)?;
                self.out_ln.forward(&(&g + self.drop.forward_t(&feed(&g)?, train)?)?)
            }
            // Pre-LN: each sub-layer reads a normalized copy and adds to an untouched residual stream.
            NormPlacement::Pre => {
                let g = (x + self.drop.forward_t(&attend(&self.attn_ln.forward(x)?)?, train)?)?;
                &g + self.drop.forward_t(&feed(&self.out_ln.forward(&g)?)?, train)?
            }
        }
    }
}

/// The encoder of the module docs: token ids `[B, T]` to hidden states `[B, T, H]`.
///
/// Parameters: `{path}.embeddings.{word_embeddings,position_embeddings,token_type_embeddings,LayerNorm}` and
/// `{path}.encoder.layer.{i}` ([`BertLayer`]); built at `bert` by [`BertForMaskedLm`] and [`BertClassifier`].
#[derive(Debug)]
pub struct Bert {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    emb_ln: LayerNorm,
    drop: Dropout,
    layers: Vec<BertLayer>,
    final_norm: Option<LayerNorm>,
    config: BertConfig,
}

impl Bert {
    /// An encoder of the given configuration.
    pub fn new(config: BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = config.hidden;
        if config.n_head == 0 || !h.is_multiple_of(config.n_head) {
            candle_core::bail!("Bert: hidden = {h} must be a multiple of n_head = {}", config.n_head)
        }
        let e = vb.pp("embeddings");
        Ok(Bert {
            word: embedding(config.vocab_size, h, e.pp("word_embeddings"))?,
            position: embedding(config.max_len, h, e.pp("position_embeddings"))?,
            token_type: embedding(config.type_vocab, h, e.pp("token_type_embeddings"))?,
            emb_ln: LayerNorm::with_eps(h, config.layer_norm_eps, e.pp("LayerNorm"))?,
            drop: dropout(config.dropout, config.seed.wrapping_add(1))?,
            layers: (0..config.n_layer)
                .map(|i| {
                    let seed = config.seed.wrapping_add(100 + i as u64);
                    BertLayer::new(&config, seed, vb.pp(format!("encoder.layer.{i}")))
                })
                .collect::<Result<_>>()?,
            final_norm: match config.norm {
                NormPlacement::Pre => Some(LayerNorm::with_eps(h, config.layer_norm_eps, vb.pp("encoder.final_norm"))?),
                NormPlacement::Post => None,
            },
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The token embedding `[V, H]`, which the masked-LM head reuses as its output matrix.
    pub fn word_embeddings(&self) -> &Tensor {
        self.word.embeddings()
    }

    /// Hidden states `[B, T, H]` of ids `[B, T]` (u32) whose first `lens[b]` tokens are real (the rest padding),
    /// with segment ids `types` `[B, T]` (all segment 0 when `None`).
    pub fn forward_t(&self, ids: &Tensor, types: Option<&Tensor>, lens: &[usize], train: bool) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if t == 0 || t > self.config.max_len || lens.len() != b || lens.iter().any(|&n| n == 0 || n > t) {
            candle_core::bail!(
                "Bert: ids {:?} need 1..={} positions and one length in 1..=T per row; lengths {lens:?}",
                ids.dims(),
                self.config.max_len
            )
        }
        let dev = ids.device();
        let types = match types {
            Some(s) => s.clone(),
            None => Tensor::zeros((b, t), DType::U32, dev)?,
        };
        // E[ids] + S[types] + P[0..T]: token, segment and position embeddings summed.
        let x = summed_embeddings(&self.word, ids, Some((&self.token_type, &types)), &self.position)?;
        let mut x = self.drop.forward_t(&self.emb_ln.forward(&x)?, train)?;
        let mask = KeyMask { lens: Some(lens.to_vec()), causal: self.config.causal };
        for layer in &self.layers {
            x = layer.forward_t(&x, &mask, train)?;
        }
        match &self.final_norm {
            Some(ln) => ln.forward(&x),
            None => Ok(x),
        }
    }
}

/// Ids `[B, T]` (u32, [`PAD`]-padded), cut to the longest row, and each row's length.
fn real_tokens(ids: &Tensor) -> crate::Result<(Tensor, Vec<usize>)> {
    let lens = row_lengths(&ids.to_vec2::<u32>()?, "BERT input")?;
    let t = lens.iter().copied().max().unwrap_or(0).max(1);
    Ok((ids.narrow(1, 0, t)?.contiguous()?, lens))
}

/// The state at flat positions `rows` (indices into `[B·T]`) of hidden states `[B, T, H]`: `[M, H]`.
fn gather_rows(hidden: &Tensor, rows: Vec<u32>) -> Result<Tensor> {
    let (b, t, h) = hidden.dims3()?;
    let n = rows.len();
    hidden.reshape((b * t, h))?.index_select(&Tensor::from_vec(rows, n, hidden.device())?, 0)
}

/// BERT with its masked-language-model head (`{path}.bert`, `{path}.cls.predictions.transform.{dense,LayerNorm}`,
/// `{path}.cls.predictions.bias`; the output matrix is the token embedding).
///
/// As a [`ModuleT`] it reads a packed batch `x` `[B, 2, T]` (u32): row 0 the corrupted ids, row 1 a 1 at every
/// position to predict. Its output is the logits `[M, V]` of the `M` flagged positions in row-major order,
/// which [`MaskedTokenCrossEntropy`] scores against targets `[B, T]` ([`mlm_stream`], [`lm_stream`]).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::{BertConfig, BertForMaskedLm};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let cfg = BertConfig { hidden: 16, n_layer: 1, n_head: 2, intermediate: 32, ..BertConfig::small(20) };
/// let model = BertForMaskedLm::new(cfg, vb)?;
/// // Two rows of five tokens, the second padded after three; predict two positions of row 0 and one of row 1.
/// let x = Tensor::new(&[[[2u32, 4, 7, 4, 9], [0, 1, 0, 1, 0]], [[2, 8, 4, 0, 0], [0, 0, 1, 0, 0]]], &dev)?;
/// assert_eq!(model.forward_t(&x, false)?.dims(), &[3, 20]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct BertForMaskedLm {
    bert: Bert,
    transform: Dense,
    transform_ln: LayerNorm,
    bias: Tensor,
}

impl BertForMaskedLm {
    /// The model of the given configuration.
    pub fn new(config: BertConfig, vb: VarBuilder) -> Result<Self> {
        let (h, p) = (config.hidden, vb.pp("cls.predictions"));
        Ok(BertForMaskedLm {
            bert: Bert::new(config, vb.pp("bert"))?,
            transform: Dense::new(h, h, Some(Activation::Gelu), p.pp("transform.dense"))?,
            transform_ln: LayerNorm::with_eps(h, config.layer_norm_eps, p.pp("transform.LayerNorm"))?,
            bias: p.get_with_hints(config.vocab_size, "bias", Init::Const(0.0))?,
        })
    }

    /// The encoder.
    pub fn bert(&self) -> &Bert {
        &self.bert
    }

    /// Vocabulary logits `[N, V]` of hidden states `[N, H]`: `LN(GELU(h W + b)) Eᵀ + c`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let z = self.transform_ln.forward(&self.transform.forward(hidden)?)?;
        // The output layer is a dense layer whose weight is the token embedding E (tied weights): E is [V, H], a
        // dense layer's [out, in] layout, so `Dense` computes z Eᵀ + c as one fused op where it can (the plain
        // path is candle-nn's Linear: the matmul with Eᵀ and the broadcast add). Fused, the gradient of E comes
        // out of one matrix product in E's own layout, and c's from the same pass: no transposed copy, no
        // separate reduction over the rows (the same numbers, bit for bit, measured at this model's sizes).
        let out = Linear::new(self.bert.word_embeddings().clone(), Some(self.bias.clone()));
        Dense::from_linear(out, None).forward(&z)
    }
}

/// The packed batch's ids `[B, T]`, lengths and flagged flat positions, cut to the longest row.
fn unpack_flags(x: &Tensor) -> crate::Result<(Tensor, Vec<usize>, Vec<u32>)> {
    let bad = || {
        crate::Error::Invalid(format!(
            "a masked-LM batch is u32 [B, 2, T] (ids; 1 where a token is predicted), as mlm_stream builds it; got {:?} {:?}",
            x.dtype(),
            x.dims()
        ))
    };
    let (_, two, _) = x.dims3().map_err(|_| bad())?;
    if two != 2 || x.dtype() != DType::U32 {
        return Err(bad());
    }
    let (ids, lens) = real_tokens(&x.narrow(1, 0, 1)?.squeeze(1)?)?;
    let t = ids.dims()[1];
    let flags = x.narrow(1, 1, 1)?.squeeze(1)?.narrow(1, 0, t)?.to_vec2::<u32>()?;
    let rows = flags
        .iter()
        .enumerate()
        .flat_map(|(b, row)| row.iter().enumerate().filter(|(_, &f)| f == 1).map(move |(j, _)| (b * t + j) as u32))
        .collect();
    Ok((ids, lens, rows))
}

impl ModuleT for BertForMaskedLm {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (ids, lens, rows) = unpack_flags(x).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let hidden = self.bert.forward_t(&ids, None, &lens, train)?;
        // Only the predicted positions (15% of the tokens) go through the output layer: the vocabulary-wide
        // matrix product is the model's most expensive one.
        self.logits(&gather_rows(&hidden, rows)?)
    }
}

/// Cross-entropy of the logits `[M, V]` of a [`BertForMaskedLm`] against targets `[B, T]` (u32) whose non-[`PAD`]
/// entries, in row-major order, are the `M` tokens to predict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaskedTokenCrossEntropy;

impl crate::train::Loss for MaskedTokenCrossEntropy {
    fn compute(&self, output: &Tensor, target: &Tensor) -> crate::Result<Tensor> {
        let wanted: Vec<u32> = target.flatten_all()?.to_vec1::<u32>()?.into_iter().filter(|&t| t != PAD).collect();
        if output.rank() != 2 || output.dims()[0] != wanted.len() {
            return Err(crate::Error::Invalid(format!(
                "masked-token cross-entropy: logits {:?} need one row per target token; the targets {:?} hold {}",
                output.dims(),
                target.dims(),
                wanted.len()
            )));
        }
        let n = wanted.len();
        Ok(crate::layers::cross_entropy(output, &Tensor::from_vec(wanted, n, output.device())?)?)
    }
}

crate::shared_loss_from!(MaskedTokenCrossEntropy);

/// BERT's corruption rule for the masked language model: a `rate` of the tokens is chosen; of those, a share
/// `mask` becomes `[MASK]`, a share `random` a random token, and the rest stays unchanged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskingRule {
    /// Share of the tokens predicted (BERT: 0.15).
    pub rate: f64,
    /// Share of those replaced by `[MASK]` (0.8).
    pub mask: f64,
    /// Share of those replaced by a random token (0.1).
    pub random: f64,
}

impl Default for MaskingRule {
    fn default() -> Self {
        MaskingRule { rate: 0.15, mask: 0.8, random: 0.1 }
    }
}

impl MaskingRule {
    /// The corrupted copy of `tokens` and the targets (the original token where one is predicted, [`PAD`]
    /// elsewhere). Special tokens are never chosen; as in BERT's data preparation, exactly
    /// `max(1, round(rate · n))` of the `n` other tokens are, and random replacements are drawn from the
    /// non-special ids below `vocab_size`.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::transformers::MaskingRule;
    /// let tokens: Vec<u32> = std::iter::once(2).chain(10..50).collect(); // [CLS] and 40 words
    /// let (input, target) = MaskingRule::default().apply(&tokens, 100, &mut Rng::new(0));
    /// assert_eq!(target.iter().filter(|&&t| t != 0).count(), 6); // round(0.15 · 40)
    /// assert_eq!(input[0], 2); // [CLS] is never chosen
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn apply(&self, tokens: &[u32], vocab_size: usize, rng: &mut Rng) -> (Vec<u32>, Vec<u32>) {
        let special = SPECIAL_TOKENS.len() as u32;
        let mut eligible: Vec<usize> = (0..tokens.len()).filter(|&i| tokens[i] >= special).collect();
        let (mut input, mut target) = (tokens.to_vec(), vec![PAD; tokens.len()]);
        if eligible.is_empty() {
            return (input, target);
        }
        let n = ((eligible.len() as f64 * self.rate).round() as usize).clamp(1, eligible.len());
        rng.shuffle(&mut eligible);
        for &i in &eligible[..n] {
            target[i] = tokens[i];
            let u = rng.uniform() as f64;
            if u < self.mask {
                input[i] = MASK;
            } else if u < self.mask + self.random {
                input[i] = special + rng.below(vocab_size - special as usize) as u32;
            } // else: the token stays, and is still predicted
        }
        (input, target)
    }
}

/// When a pretraining sequence's mask is drawn (RoBERTa, section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masking {
    /// Drawn once per copy of the data: epoch `e` uses mask `e mod copies` (BERT: 10 copies over 40 epochs).
    Static {
        /// Distinct masks per sequence.
        copies: usize,
    },
    /// Drawn afresh every time the sequence is used.
    Dynamic,
}

/// A token stream cut into pretraining sequences of `len` tokens: `[CLS]` and the next `len − 1` tokens, the
/// last piece dropped when shorter.
///
/// ```
/// let ids: Vec<u32> = (10..20).collect();
/// assert_eq!(dlhist::transformers::bert::pretraining_chunks(&ids, 4), vec![vec![2, 10, 11, 12], vec![2, 13, 14, 15], vec![2, 16, 17, 18]]);
/// ```
pub fn pretraining_chunks(ids: &[u32], len: usize) -> Vec<Vec<u32>> {
    if len < 2 {
        return vec![];
    }
    ids.chunks_exact(len - 1).map(|c| std::iter::once(CLS).chain(c.iter().copied()).collect()).collect()
}

/// Packs rows of `(ids, flags, targets)` (each `T` long) into a [`Dataset`]: `x` `[N, 2, T]`, `y` `[N, T]`.
fn pack(rows: Vec<(Vec<u32>, Vec<u32>, Vec<u32>)>, t: usize, dev: &Device) -> crate::Result<Dataset> {
    let n = rows.len();
    let (mut x, mut y) = (Vec::with_capacity(n * 2 * t), Vec::with_capacity(n * t));
    for (ids, flags, targets) in rows {
        if ids.len() != t || flags.len() != t || targets.len() != t {
            return Err(crate::Error::Invalid(format!("pretraining sequences must all be {t} tokens long")));
        }
        x.extend(ids);
        x.extend(flags);
        y.extend(targets);
    }
    Dataset::new(Tensor::from_vec(x, (n, 2, t), dev)?, Tensor::from_vec(y, (n, t), dev)?)
}

fn check_chunks(chunks: &[Vec<u32>]) -> crate::Result<usize> {
    let t = chunks.first().map_or(0, |c| c.len());
    if t < 2 || chunks.iter().any(|c| c.len() != t) {
        return Err(crate::Error::Invalid(format!(
            "pretraining needs sequences of one length of at least 2 tokens ({} given; see pretraining_chunks)",
            chunks.len()
        )));
    }
    Ok(t)
}

/// `epochs` passes over `chunks` in a seeded order per epoch, each sequence corrupted by `rule` with its mask
/// drawn as `masking` says: the masked-LM training data of [`BertForMaskedLm`], in the order
/// [`crate::train::fit`] should run it (`shuffle: false`).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::bert::{mlm_stream, pretraining_chunks, Masking, MaskingRule};
/// let chunks = pretraining_chunks(&(5..100).collect::<Vec<u32>>(), 20);
/// let st = mlm_stream(&chunks, 4, Masking::Static { copies: 1 }, &MaskingRule::default(), 100, 0, &Device::Cpu)?;
/// assert_eq!(st.x.dims(), &[4 * chunks.len(), 2, 20]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn mlm_stream(
    chunks: &[Vec<u32>],
    epochs: usize,
    masking: Masking,
    rule: &MaskingRule,
    vocab_size: usize,
    seed: u64,
    dev: &Device,
) -> crate::Result<Dataset> {
    let t = check_chunks(chunks)?;
    if let Masking::Static { copies: 0 } = masking {
        return Err(crate::Error::Invalid("Masking::Static needs at least one copy".into()));
    }
    let root = Rng::new(seed);
    let mut rows = Vec::with_capacity(epochs * chunks.len());
    for e in 0..epochs {
        let copy = match masking {
            Masking::Static { copies } => e % copies,
            Masking::Dynamic => e,
        };
        for i in root.fork(&format!("order-{e}")).permutation(chunks.len()) {
            let i = i as usize;
            let mut rng = root.fork(&format!("mask-{i}-{copy}"));
            let (input, target) = rule.apply(&chunks[i], vocab_size, &mut rng);
            let flags = target.iter().map(|&t| u32::from(t != PAD)).collect();
            rows.push((input, flags, target));
        }
    }
    pack(rows, t, dev)
}

/// `epochs` passes over `chunks` as a left-to-right language model's data: every position but the last predicts
/// the next token (for a [`BertForMaskedLm`] with [`BertConfig::causal`]).
pub fn lm_stream(chunks: &[Vec<u32>], epochs: usize, seed: u64, dev: &Device) -> crate::Result<Dataset> {
    let t = check_chunks(chunks)?;
    let root = Rng::new(seed);
    let mut rows = Vec::with_capacity(epochs * chunks.len());
    for e in 0..epochs {
        for i in root.fork(&format!("order-{e}")).permutation(chunks.len()) {
            let c = &chunks[i as usize];
            let flags = (0..t).map(|j| u32::from(j + 1 < t)).collect();
            let targets = (0..t).map(|j| if j + 1 < t { c[j + 1] } else { PAD }).collect();
            rows.push((c.clone(), flags, targets));
        }
    }
    pack(rows, t, dev)
}

/// A classification set for [`BertClassifier`]: each text as `[CLS]` and its WordPiece ids (cut to `max_len`
/// tokens in all), padded with [`PAD`] to the longest: `x` `[N, T]` u32, `y` the labels `[N]` u32.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::data::wordpiece::WordPieceVocab;
/// let vocab = WordPieceVocab::train(&["to be or not to be"], 40)?;
/// let d = dlhist::transformers::bert::classification_set(&vocab, &["to be", "not to be"], &[1, 0], 16, &Device::Cpu)?;
/// assert_eq!(d.x.to_vec2::<u32>()?[0][0], dlhist::data::wordpiece::CLS);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn classification_set<S: AsRef<str>>(
    vocab: &crate::data::wordpiece::WordPieceVocab,
    texts: &[S],
    labels: &[u32],
    max_len: usize,
    dev: &Device,
) -> crate::Result<Dataset> {
    if texts.len() != labels.len() || texts.is_empty() || max_len < 2 {
        return Err(crate::Error::Invalid(format!(
            "classification_set: {} texts and {} labels (need as many, at least one) and max_len {max_len} >= 2",
            texts.len(),
            labels.len()
        )));
    }
    let rows: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| Ok(std::iter::once(CLS).chain(vocab.encode(t.as_ref())?).take(max_len).collect()))
        .collect::<crate::Result<_>>()?;
    let t = rows.iter().map(Vec::len).max().unwrap_or(1);
    let n = rows.len();
    let x: Vec<u32> = rows
        .into_iter()
        .flat_map(|mut r| {
            r.resize(t, PAD);
            r
        })
        .collect();
    Dataset::new(Tensor::from_vec(x, (n, t), dev)?, Tensor::new(labels, dev)?)
}

/// BERT fine-tuned to classify a sequence (`{path}.bert`, `{path}.bert.pooler.dense`, `{path}.classifier`):
/// ids `[B, T]` (u32, `[CLS]` first, [`PAD`]-padded) to class logits `[B, classes]`, through BERT's pooler
/// (`tanh(s W_p + b_p)`) of a summary `s` of the final states chosen by [`Pooling`]: the `[CLS]` state by default
/// (the last real token's when the encoder is causal), or the mean over the real tokens.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::{BertClassifier, BertConfig, Pooling};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let cfg = BertConfig { hidden: 16, n_layer: 1, n_head: 2, intermediate: 32, ..BertConfig::small(20) };
/// let clf = BertClassifier::with_pooling(cfg, 3, Pooling::Mean, vb)?;
/// let ids = Tensor::new(&[[2u32, 7, 8, 9], [2, 7, 0, 0]], &dev)?;
/// assert_eq!(clf.forward_t(&ids, false)?.dims(), &[2, 3]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct BertClassifier {
    bert: Bert,
    pooler: Dense,
    drop: Dropout,
    classifier: Dense,
    pooling: Pooling,
}

/// Which final states a [`BertClassifier`] reads. BERT reads `[CLS]`, whose state its next-sentence task trains
/// during pretraining; a model pretrained on masked words alone never has a target at `[CLS]`, and the mean over
/// the tokens is the usual alternative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token's, `[CLS]` (BERT's choice); the last real token's when the encoder is causal.
    First,
    /// The mean over the real tokens.
    Mean,
}

impl BertClassifier {
    /// A classifier into `classes` classes; load pretrained weights into its `bert.` variables with
    /// [`crate::checkpoint::copy_prefix`].
    pub fn new(config: BertConfig, classes: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_pooling(config, classes, Pooling::First, vb)
    }

    /// [`BertClassifier::new`] reading the states that `pooling` says.
    pub fn with_pooling(config: BertConfig, classes: usize, pooling: Pooling, vb: VarBuilder) -> Result<Self> {
        let h = config.hidden;
        Ok(BertClassifier {
            pooling,
            bert: Bert::new(config, vb.pp("bert"))?,
            pooler: Dense::new(h, h, Some(Activation::Tanh), vb.pp("bert.pooler.dense"))?,
            drop: dropout(config.dropout, config.seed.wrapping_add(2))?,
            classifier: Dense::new(h, classes, None, vb.pp("classifier"))?,
        })
    }

    /// The encoder.
    pub fn bert(&self) -> &Bert {
        &self.bert
    }
}

impl ModuleT for BertClassifier {
    fn forward_t(&self, ids: &Tensor, train: bool) -> Result<Tensor> {
        let (ids, lens) = real_tokens(ids).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let hidden = self.bert.forward_t(&ids, None, &lens, train)?;
        let t = ids.dims()[1];
        let summary = match self.pooling {
            Pooling::First => {
                let rows = lens
                    .iter()
                    .enumerate()
                    .map(|(b, &n)| (b * t + if self.bert.config.causal { n - 1 } else { 0 }) as u32)
                    .collect();
                gather_rows(&hidden, rows)?
            }
            Pooling::Mean => {
                // Weights 1/n on each row's n real tokens, 0 on its padding: [B, 1, T] × [B, T, H].
                let w: Vec<f32> =
                    lens.iter().flat_map(|&n| (0..t).map(move |j| if j < n { 1.0 / n as f32 } else { 0.0 })).collect();
                let w = Tensor::from_vec(w, (lens.len(), 1, t), hidden.device())?.to_dtype(hidden.dtype())?;
                w.matmul(&hidden)?.squeeze(1)?
            }
        };
        let pooled = self.pooler.forward(&summary)?;
        self.classifier.forward(&self.drop.forward_t(&pooled, train)?)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The stored pretrained model

/// The file name of the BERT pretrained on WordNet's glosses, in the project's `assets/models/`.
pub const WORDNET_MLM_FILE: &str = "bert-wordnet-mlm.safetensors";
/// Its SHA-256, as written by `examples/pretrain_bert.rs`.
pub const WORDNET_MLM_SHA256: &str = "78315f340cc0b23cf89ad915df31326bd607cf3d2bad102d03752d1bb8568717";
/// The file name of the left-to-right model of the same size pretrained on the same glosses (the paper's "LTR"
/// ablation), in `assets/models/`.
pub const WORDNET_LTR_FILE: &str = "bert-wordnet-ltr.safetensors";
/// Its SHA-256, as written by `examples/pretrain_bert.rs -- --ltr`.
pub const WORDNET_LTR_SHA256: &str = "c8f8364f618a88983d2dbc0c65d6743af014a7707014d1686f5749b68b32e539";
/// The file name of its WordPiece vocabulary (Hugging Face's `tokenizer.json`), in `assets/models/`.
pub const WORDNET_VOCAB_FILE: &str = "bert-wordnet-vocab.json";
/// The SHA-256 of the vocabulary it was trained with: its tokens in id order, one per line
/// ([`vocab_fingerprint`]).
pub const WORDNET_VOCAB_SHA256: &str = "4d83fa01df1b207eaeac01e559122b600af35d3d8cbb8eb2080433365b22f265";

/// A fingerprint of a vocabulary: the SHA-256 of its tokens in id order, each followed by a newline. Two
/// vocabularies with the same fingerprint give every token the same id.
///
/// ```
/// use dlhist::data::wordpiece::WordPieceVocab;
/// let a = WordPieceVocab::train(&["to be or not to be"], 40)?;
/// let b = WordPieceVocab::train(&["to be or not to be"], 40)?;
/// assert_eq!(dlhist::transformers::bert::vocab_fingerprint(&a), dlhist::transformers::bert::vocab_fingerprint(&b));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn vocab_fingerprint(vocab: &crate::data::wordpiece::WordPieceVocab) -> String {
    let mut text = String::new();
    for id in 0..vocab.len() as u32 {
        text.push_str(&vocab.token(id).unwrap_or_default());
        text.push('\n');
    }
    crate::data::download::sha256_bytes(text.as_bytes())
}

/// A BERT pretrained on WordNet's glosses for longer than a notebook can afford, stored in `assets/models/` with its
/// SHA-256: the masked LM ([`PretrainedBert::wordnet_mlm`]) or its left-to-right twin
/// ([`PretrainedBert::wordnet_ltr`]). The BERT notebook fine-tunes both beside the models it pretrains itself.
///
/// Made by `cargo run --release -p dlhist --example pretrain_bert` (and `-- --ltr`); the recipe is in that file, and a
/// record of each run with its held-out losses in `assets/models/bert-wordnet-{mlm,ltr}.json`. The same machine
/// gives the same bytes again. Loading checks the file's SHA-256 and that the vocabulary given is the one the model
/// was trained with.
#[derive(Debug, Clone)]
pub struct PretrainedBert {
    /// The model's sizes.
    pub config: BertConfig,
    /// The file the weights came from.
    pub path: std::path::PathBuf,
    tensors: std::collections::HashMap<String, Tensor>,
}

impl PretrainedBert {
    /// The sizes of the stored model for a vocabulary of `vocab_size` tokens: [`BertConfig::small`] with two
    /// layers, pre-LN and inputs of up to 32 tokens, the BERT notebook's model.
    ///
    /// ```
    /// let cfg = dlhist::transformers::bert::PretrainedBert::wordnet_config(4000);
    /// assert_eq!((cfg.hidden, cfg.n_layer, cfg.max_len, cfg.dropout), (128, 2, 32, 0.1));
    /// ```
    pub fn wordnet_config(vocab_size: usize) -> BertConfig {
        BertConfig { n_layer: 2, max_len: 32, norm: NormPlacement::Pre, ..BertConfig::small(vocab_size) }
    }

    /// The masked LM pretrained on WordNet's glosses ([`crate::data::words::GlossSplit`]'s pretraining part,
    /// `GlossSplit::new(wordnet_synsets()?, 0.1, &mut Rng::new(2018).fork("wordnet-split"))`), whose vocabulary
    /// must be `vocab` (the WordPiece vocabulary of 4000 tokens learned on those glosses).
    pub fn wordnet_mlm(vocab: &crate::data::wordpiece::WordPieceVocab) -> crate::Result<Self> {
        Self::check_vocab(vocab)?;
        Self::load(
            crate::checkpoint::models_dir().join(WORDNET_MLM_FILE),
            WORDNET_MLM_SHA256,
            Self::wordnet_config(vocab.len()),
        )
    }

    /// The stored vocabulary of the stored model (`assets/models/bert-wordnet-vocab.json`), checked by its
    /// fingerprint: the vocabulary `WordPieceVocab::train(&lines, 4000)` learns from the pretraining glosses, without
    /// the seconds that takes.
    pub fn wordnet_vocab() -> crate::Result<crate::data::wordpiece::WordPieceVocab> {
        let path = crate::checkpoint::models_dir().join(WORDNET_VOCAB_FILE);
        if !path.is_file() {
            return Err(crate::Error::NotFound {
                what: "the stored BERT's vocabulary".into(),
                searched: vec![path],
                hint: "make it with `cargo run --release -p dlhist --example pretrain_bert -- --vocab`, or restore it \
                       with `git checkout assets/models`"
                    .into(),
            });
        }
        let vocab = crate::data::wordpiece::WordPieceVocab::load(&path)?;
        let found = vocab_fingerprint(&vocab);
        if found != WORDNET_VOCAB_SHA256 {
            return Err(crate::Error::Checksum {
                path: path.display().to_string(),
                expected: WORDNET_VOCAB_SHA256.into(),
                actual: found,
            });
        }
        Ok(vocab)
    }

    /// The left-to-right model pretrained on the same glosses with the same vocabulary (`pretrain_bert -- --ltr`):
    /// [`PretrainedBert::wordnet_config`] with a causal mask.
    pub fn wordnet_ltr(vocab: &crate::data::wordpiece::WordPieceVocab) -> crate::Result<Self> {
        Self::check_vocab(vocab)?;
        let config = BertConfig { causal: true, ..Self::wordnet_config(vocab.len()) };
        Self::load(crate::checkpoint::models_dir().join(WORDNET_LTR_FILE), WORDNET_LTR_SHA256, config)
    }

    fn check_vocab(vocab: &crate::data::wordpiece::WordPieceVocab) -> crate::Result<()> {
        let found = vocab_fingerprint(vocab);
        if found != WORDNET_VOCAB_SHA256 {
            return Err(crate::Error::Invalid(format!(
                "the stored BERT was pretrained with another vocabulary (fingerprint {WORDNET_VOCAB_SHA256}, this one \
                 {found}): learn it with WordPieceVocab::train(&lines, 4000) on the pretraining glosses, as \
                 examples/pretrain_bert.rs does"
            )));
        }
        Ok(())
    }

    /// A masked LM of sizes `config` from the safetensors file `path`, whose SHA-256 must be `sha256`; its
    /// parameter names are [`BertForMaskedLm`]'s.
    pub fn load(path: std::path::PathBuf, sha256: &str, config: BertConfig) -> crate::Result<Self> {
        let remake = "make it with `cargo run --release -p dlhist --example pretrain_bert`, or restore it with \
                      `git checkout assets/models`";
        let tensors = crate::checkpoint::load_verified(&path, sha256, "the pretrained BERT", remake, &Device::Cpu)?;
        let pretrained = PretrainedBert { config, path, tensors };
        // Building it once checks every name and shape, so a wrong file fails here and not in a later cell.
        pretrained.masked_lm(&Device::Cpu)?;
        Ok(pretrained)
    }

    /// The held-out loss measured while it was pretrained, as `(step, nats)` pairs from step 0 (the record
    /// `examples/pretrain_bert.rs` writes beside the weights, `held_out_loss_by_step` in the `.json` file).
    pub fn held_out_curve(&self) -> crate::Result<Vec<(usize, f64)>> {
        let path = self.path.with_extension("json");
        let text = std::fs::read_to_string(&path).map_err(|e| crate::Error::io("cannot read", &path, e))?;
        let bad = |reason: String| crate::Error::Format { path: path.clone(), format: "JSON record", reason };
        let record: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let points =
            record["held_out_loss_by_step"].as_array().ok_or_else(|| bad("no held_out_loss_by_step".into()))?;
        points
            .iter()
            .map(|p| match (p[0].as_u64(), p[1].as_f64()) {
                (Some(step), Some(loss)) => Ok((step as usize, loss)),
                _ => Err(bad(format!("held_out_loss_by_step holds {p}, not [step, loss]"))),
            })
            .collect()
    }

    /// The pretrained model on `dev` (a [`BertForMaskedLm`], causal for the left-to-right one), with its parameters
    /// as variables (copy them into a classifier with [`crate::checkpoint::copy_prefix`] and the prefix `"bert."`).
    pub fn masked_lm(&self, dev: &Device) -> crate::Result<(candle_nn::VarMap, BertForMaskedLm)> {
        let vars = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, dev);
        let model = BertForMaskedLm::new(self.config, vb)?;
        let mut data = vars.data().lock().map_err(|_| crate::Error::Invalid("VarMap lock poisoned".into()))?;
        if data.len() != self.tensors.len() {
            return Err(crate::Error::Invalid(format!(
                "{}: {} tensors, the model has {}",
                self.path.display(),
                self.tensors.len(),
                data.len()
            )));
        }
        for (name, var) in data.iter_mut() {
            let t = self
                .tensors
                .get(name)
                .ok_or_else(|| crate::Error::Invalid(format!("{}: no tensor {name}", self.path.display())))?;
            if t.dims() != var.dims() {
                return Err(crate::Error::Invalid(format!(
                    "{}: {name} is {:?}, the model wants {:?}",
                    self.path.display(),
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_device(dev)?)?;
        }
        drop(data);
        Ok((vars, model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Loss;

    fn tiny(causal: bool) -> BertConfig {
        BertConfig {
            hidden: 16,
            n_layer: 2,
            n_head: 2,
            intermediate: 32,
            max_len: 12,
            causal,
            dropout: 0.0,
            ..BertConfig::small(30)
        }
    }

    /// The stored model is the one whose SHA-256 is recorded; a saved model loads back with the same weights and
    /// its record's curve; a missing or changed file, or another vocabulary, says what to do.
    #[test]
    fn the_stored_pretrained_bert_is_checked() -> crate::Result<()> {
        let stored = crate::checkpoint::models_dir().join(WORDNET_MLM_FILE);
        assert_eq!(crate::data::download::sha256_file(&stored)?, WORDNET_MLM_SHA256);
        let vocab = PretrainedBert::wordnet_vocab()?;
        assert_eq!((vocab.len(), vocab_fingerprint(&vocab).as_str()), (4000, WORDNET_VOCAB_SHA256));
        PretrainedBert::wordnet_mlm(&vocab)?;
        let ltr = PretrainedBert::wordnet_ltr(&vocab)?;
        assert!(ltr.config.causal);
        assert_eq!(crate::data::download::sha256_file(&ltr.path)?, WORDNET_LTR_SHA256);
        let dev = Device::Cpu;
        let tmp = tempfile::tempdir().unwrap();
        let (vars, vb) = crate::init::seeded(5, DType::F32, &dev);
        let _model = BertForMaskedLm::new(tiny(false), vb)?;
        let path = tmp.path().join("tiny.safetensors");
        crate::checkpoint::save(&vars, &path)?;
        std::fs::write(path.with_extension("json"), r#"{"held_out_loss_by_step": [[0, 3.4], [10, 2.5]]}"#).unwrap();
        let sha = crate::data::download::sha256_file(&path)?;
        let loaded = PretrainedBert::load(path.clone(), &sha, tiny(false))?;
        assert_eq!(loaded.held_out_curve()?, vec![(0, 3.4), (10, 2.5)]);
        let (copy, _) = loaded.masked_lm(&dev)?;
        let name = "bert.embeddings.word_embeddings.weight";
        let weights = |v: &candle_nn::VarMap| v.data().lock().unwrap()[name].as_tensor().to_vec2::<f32>();
        assert_eq!(weights(&copy)?, weights(&vars)?);
        // Another size does not load.
        let wider = PretrainedBert::load(path.clone(), &sha, BertConfig { hidden: 32, ..tiny(false) }).unwrap_err();
        assert!(wider.to_string().contains("shape") || wider.to_string().contains("is ["), "{wider}");
        let missing = PretrainedBert::load(tmp.path().join("none.safetensors"), "00", tiny(false)).unwrap_err();
        assert!(missing.to_string().contains("pretrain_bert"), "{missing}");
        std::fs::write(&path, b"not a model").unwrap();
        let changed = PretrainedBert::load(path, &sha, tiny(false)).unwrap_err();
        assert!(changed.to_string().contains("checksum mismatch"), "{changed}");
        let other_vocab = crate::data::wordpiece::WordPieceVocab::train(&["to be or not to be"], 40)?;
        let wrong = PretrainedBert::wordnet_mlm(&other_vocab).unwrap_err();
        assert!(wrong.to_string().contains("another vocabulary"), "{wrong}");
        Ok(())
    }

    #[test]
    fn masking_follows_the_80_10_10_rule() {
        let tokens: Vec<u32> = std::iter::once(CLS).chain((0..400).map(|i| 5 + (i % 25))).collect();
        let (mut masked, mut random, mut kept, mut chosen) = (0, 0, 0, 0);
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let (input, target) = MaskingRule::default().apply(&tokens, 30, &mut rng);
            assert_eq!(input[0], CLS);
            for (i, &t) in target.iter().enumerate() {
                if t == PAD {
                    assert_eq!(input[i], tokens[i], "an unchosen token changed");
                    continue;
                }
                chosen += 1;
                assert_eq!(t, tokens[i]);
                match input[i] {
                    MASK => masked += 1,
                    x if x == tokens[i] => kept += 1,
                    x => {
                        assert!((5..30).contains(&x));
                        random += 1
                    }
                }
            }
        }
        assert_eq!(chosen, 200 * 60);
        let share = |n: usize| n as f64 / chosen as f64;
        // A random replacement equal to the original (1 in 25) counts as kept.
        assert!((share(masked) - 0.8).abs() < 0.01, "{}", share(masked));
        assert!((share(random) - 0.1 * 24.0 / 25.0).abs() < 0.01, "{}", share(random));
        assert!((share(kept) - (0.1 + 0.1 / 25.0)).abs() < 0.01, "{}", share(kept));
    }

    #[test]
    fn static_masks_repeat_and_dynamic_ones_do_not() -> crate::Result<()> {
        let dev = Device::Cpu;
        let chunks = pretraining_chunks(&(5..105).collect::<Vec<u32>>(), 11);
        let masks = |m: Masking| -> crate::Result<Vec<Vec<Vec<u32>>>> {
            // Each epoch's rows, sorted back into chunk order by their first real token.
            let d = mlm_stream(&chunks, 3, m, &MaskingRule::default(), 200, 9, &dev)?;
            let y = d.y.to_vec2::<u32>()?;
            let x = d.x.narrow(1, 0, 1)?.squeeze(1)?.to_vec2::<u32>()?;
            Ok((0..3)
                .map(|e| {
                    let mut rows: Vec<(u32, Vec<u32>)> = (0..chunks.len())
                        .map(|r| {
                            let k = e * chunks.len() + r;
                            let first = (1..11).map(|j| if y[k][j] != PAD { y[k][j] } else { x[k][j] }).next().unwrap();
                            (first, y[k].iter().map(|&t| u32::from(t != PAD)).collect())
                        })
                        .collect();
                    rows.sort();
                    rows.into_iter().map(|r| r.1).collect()
                })
                .collect())
        };
        let st = masks(Masking::Static { copies: 1 })?;
        assert!(st[0] == st[1] && st[1] == st[2]);
        let two = masks(Masking::Static { copies: 2 })?;
        assert!(two[0] == two[2] && two[0] != two[1]);
        let dy = masks(Masking::Dynamic)?;
        assert!(dy[0] != dy[1] && dy[1] != dy[2]);
        assert!(mlm_stream(&chunks, 1, Masking::Static { copies: 0 }, &MaskingRule::default(), 200, 0, &dev).is_err());
        Ok(())
    }

    #[test]
    fn masked_lm_loss_and_padding_and_causality() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (vars, vb) = crate::init::seeded(4, DType::F32, &dev);
        let model = BertForMaskedLm::new(tiny(false), vb)?;
        let x = Tensor::new(&[[[2u32, 4, 7, 4, 9], [0, 1, 0, 1, 0]], [[2, 8, 4, 0, 0], [0, 0, 1, 0, 0]]], &dev)?;
        let y = Tensor::new(&[[0u32, 6, 0, 12, 0], [0, 0, 20, 0, 0]], &dev)?;
        let logits = model.forward_t(&x, false)?;
        let loss = MaskedTokenCrossEntropy.compute(&logits, &y)?;
        // Embeddings drawn at 0.02 give near-uniform predictions at the start: loss ≈ ln V.
        let l = loss.to_scalar::<f32>()?;
        assert!((l - 30f32.ln()).abs() < 0.05, "{l}");
        let grads = loss.backward()?;
        for (name, v) in vars.data().lock().unwrap().iter() {
            assert!(grads.get(v).is_some(), "no gradient for {name}");
        }
        assert!(MaskedTokenCrossEntropy.compute(&logits, &Tensor::new(&[[0u32, 6, 0, 0, 0], [0; 5]], &dev)?).is_err());
        // Padding is invisible: the second row alone, without its padding, gives the same predictions.
        let alone = model.forward_t(&Tensor::new(&[[[2u32, 8, 4], [0, 0, 1]]], &dev)?, false)?;
        let diff = (alone - logits.narrow(0, 2, 1)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");

        // A causal encoder: changing a later token leaves earlier states alone.
        let (_, vb) = crate::init::seeded(5, DType::F32, &dev);
        let ltr = Bert::new(tiny(true), vb)?;
        let a = ltr.forward_t(&Tensor::new(&[[2u32, 5, 6, 7]], &dev)?, None, &[4], false)?;
        let b = ltr.forward_t(&Tensor::new(&[[2u32, 5, 6, 9]], &dev)?, None, &[4], false)?;
        let early = (a.narrow(1, 0, 3)? - b.narrow(1, 0, 3)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let late = (a.narrow(1, 3, 1)? - b.narrow(1, 3, 1)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(early == 0.0 && late > 1e-4, "{early} {late}");
        Ok(())
    }

    /// Sequences of doubled random tokens (`a a b b c c ...`): a masked token is its twin's copy, which only
    /// attention to the neighbours can tell. Far below the unigram loss (ln 20) after a short training.
    #[test]
    fn masked_lm_learns_to_use_context() -> crate::Result<()> {
        let dev = Device::Cpu;
        let mut rng = Rng::new(1);
        let ids: Vec<u32> = (0..3000)
            .flat_map(|_| {
                let t = 5 + rng.below(20) as u32;
                [t, t]
            })
            .collect();
        let chunks: Vec<Vec<u32>> =
            ids.chunks_exact(10).map(|c| std::iter::once(CLS).chain(c.iter().copied()).collect()).collect();
        let data = mlm_stream(&chunks, 40, Masking::Dynamic, &MaskingRule::default(), 25, 0, &dev)?;
        let (vars, vb) = crate::init::seeded(2, DType::F32, &dev);
        let cfg = BertConfig { vocab_size: 25, dropout: 0.0, ..tiny(false) };
        let model = BertForMaskedLm::new(cfg, vb)?;
        let mut opt = <crate::optimization::Adam as candle_nn::Optimizer>::new(
            vars.all_vars(),
            crate::optimization::AdamConfig::new(3e-3),
        )?;
        let fc = crate::train::FitConfig {
            batch_size: 32,
            shuffle: false,
            max_steps: Some(940),
            loss: MaskedTokenCrossEntropy.into(),
            progress_every_s: None,
            ..Default::default()
        };
        let h = crate::train::fit(&model, &mut opt, &data, None, &fc)?;
        let (_, losses) = h.step_series("loss");
        let last: f64 = losses[losses.len() - 20..].iter().sum::<f64>() / 20.0;
        // Measured: a plateau near the unigram loss for about 250 steps, then 0.76 over the last 20 of 940 steps
        // (the model must learn which neighbour is the twin, a question of position parity).
        assert!(last < 1.5, "loss {last} (unigram: {})", 20f64.ln());
        Ok(())
    }

    #[test]
    fn lm_stream_predicts_the_next_token() -> crate::Result<()> {
        let chunks = pretraining_chunks(&(5..25).collect::<Vec<u32>>(), 5);
        let d = lm_stream(&chunks, 2, 0, &Device::Cpu)?;
        let (x, y) = (d.x.to_vec3::<u32>()?, d.y.to_vec2::<u32>()?);
        for (row, tgt) in x.iter().zip(&y) {
            assert_eq!(row[1], vec![1, 1, 1, 1, 0]);
            assert_eq!(&tgt[..4], &row[0][1..]);
        }
        Ok(())
    }

    #[test]
    fn classifier_reads_cls_or_the_last_token() -> crate::Result<()> {
        let dev = Device::Cpu;
        for (causal, pooling) in [(false, Pooling::First), (true, Pooling::First), (false, Pooling::Mean)] {
            let (_, vb) = crate::init::seeded(6, DType::F32, &dev);
            let clf = BertClassifier::with_pooling(tiny(causal), 3, pooling, vb)?;
            let ids = Tensor::new(&[[2u32, 7, 8, 9], [2, 7, 0, 0]], &dev)?;
            let out = clf.forward_t(&ids, false)?;
            assert_eq!(out.dims(), &[2, 3]);
            // Row 1 alone, unpadded, gives the same logits.
            let alone = clf.forward_t(&Tensor::new(&[[2u32, 7]], &dev)?, false)?;
            let diff = (alone - out.narrow(0, 1, 1)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-5, "causal {causal}: {diff}");
        }
        Ok(())
    }
}
