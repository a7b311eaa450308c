//! # Multi-head causal self-attention
//!
//! A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017. <https://arxiv.org/abs/1706.03762>
//!
//! Each of the `n_head` heads projects the sequence `X [T, C]` to queries, keys and values of size
//! `d = C / n_head`, and mixes the values with weights that compare queries to keys (the paper's equation 1),
//! with a *causal mask* so that position `t` never sees a later one (the decoder's masking, section 3.2.3):
//!
//! ```text
//! Attention(Q, K, V) = softmax(Q Kᵀ / √d + M) V,      M[t, s] = 0 if s ≤ t, −∞ otherwise
//! MultiHead(X) = Concat(head_1, ..., head_h) W_O,      head_j = Attention(X W_Qj, X W_Kj, X W_Vj)
//! ```
//!
//! [`CausalSelfAttention::forward`] holds both paths: the fused CPU op, and the equations above as candle ops,
//! line by line (taken on other devices and under `DLHIST_FUSED=0`).
//!
//! The encoder-decoder of the paper needs two more kinds of attention, both in [`MultiHeadAttention`]: the
//! encoder's self-attention over a padded batch, where a sentence's padding must get weight zero, and the
//! decoder's *cross-attention*, whose queries come from the decoder and whose keys and values are the encoder's
//! outputs. Both are the same equation with a different mask `M`, built by [`padding_bias`] (−∞ on padded keys)
//! and [`causal_bias`] (−∞ above the diagonal); masks add, so a padded causal mask is their sum.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::fast;
use crate::layers::{Dense, LoraConfig, LoraDense};

/// Which weights of a transformer block get LoRA adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoraTargets {
    /// The attention's query and value projections, `W_q` and `W_v`: the paper's choice for GPT-3 (its
    /// section 4.2 and Table 5).
    QueryValue,
    /// Every weight matrix of the block: `W_q`, `W_k`, `W_v`, `W_O` and both layers of the feed-forward network.
    AllWeights,
}

/// Multi-head causal self-attention over `[B, T, C]`: parameters `{path}.qkv` (`C → 3C`, the three projections
/// in one matrix, like PyTorch's `in_proj`) and `{path}.proj` (`W_O`, `C → C`).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::CausalSelfAttention;
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let attn = CausalSelfAttention::new(16, 4, vb)?;
/// assert_eq!(attn.forward(&Tensor::zeros((2, 5, 16), DType::F32, &dev)?)?.dims(), &[2, 5, 16]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CausalSelfAttention {
    /// The packed projections `W_q, W_k, W_v`; LoRA adapters ([`CausalSelfAttention::with_lora`]) live here and
    /// in `proj`.
    qkv: LoraDense,
    proj: LoraDense,
    n_head: usize,
}

impl CausalSelfAttention {
    /// Attention over a stream of width `n_embd` with `n_head` heads.
    pub fn new(n_embd: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        if n_head == 0 || !n_embd.is_multiple_of(n_head) {
            candle_core::bail!("CausalSelfAttention: n_embd = {n_embd} must be a multiple of n_head = {n_head}")
        }
        Ok(CausalSelfAttention {
            qkv: LoraDense::frozen(Dense::new(n_embd, 3 * n_embd, None, vb.pp("qkv"))?),
            proj: LoraDense::frozen(Dense::new(n_embd, n_embd, None, vb.pp("proj"))?),
            n_head,
        })
    }

    /// A copy of this layer with rank-`cfg.rank` LoRA adapters, their parameters `{path}.{qkv,proj}.lora_{a,b}.{i}`
    /// from `vb`: on `W_q` and `W_v` (rows `0..C` and `2C..3C` of the packed `qkv` weight, the paper's choice) for
    /// [`LoraTargets::QueryValue`]; on `W_q`, `W_k`, `W_v` (one adapter each) and `W_O` for
    /// [`LoraTargets::AllWeights`]. The pretrained weights are shared, not copied, and stay as they are.
    pub fn with_lora(&self, cfg: LoraConfig, targets: LoraTargets, vb: VarBuilder) -> Result<Self> {
        let c = self.proj.base().linear().weight().dims()[0];
        let (rows, proj) = match targets {
            LoraTargets::QueryValue => (vec![0..c, 2 * c..3 * c], self.proj.clone()),
            LoraTargets::AllWeights => {
                (vec![0..c, c..2 * c, 2 * c..3 * c], LoraDense::full(self.proj.base().clone(), cfg, vb.pp("proj"))?)
            }
        };
        let qkv = LoraDense::new(self.qkv.base().clone(), cfg, &rows, vb.pp("qkv"))?;
        Ok(CausalSelfAttention { qkv, proj, n_head: self.n_head })
    }

    /// Folds the adapters into the weights ([`LoraDense::merge`]), or takes them back out (`merged = false`).
    pub fn set_lora_merged(&mut self, merged: bool) -> Result<()> {
        self.qkv.set_merged(merged)?;
        self.proj.set_merged(merged)
    }
}

impl Module for CausalSelfAttention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let nh = self.n_head;
        // Q, K and V of every head in one product: [B, T, 3C], queries first, then keys, then values.
        let qkv = self.qkv.forward(x)?;
        let y = if fast::applies(&[&qkv]) {
            // Fused (crate::fast::causal_self_attention): every head's softmax(Q Kᵀ/√d + M) V in one op that reads
            // Q, K, V in place from the packed projections and keeps only the probabilities for the backward pass.
            fast::causal_self_attention(&qkv, nh)?
        } else {
            // Plain: the equations as candle ops (`attend`), with nothing cached before these positions.
            self.attend(&qkv, &mut LayerCache::default())?
        };
        // W_O mixes the heads.
        self.proj.forward(&y)
    }
}

/// The keys and values one attention layer has already computed, kept between generation steps.
///
/// Generating token `t + 1` needs every earlier position's key and value, and those never change (a causal layer's
/// output at position `s` depends only on tokens `0..=s`). Keeping them, each step computes Q, K and V of the
/// newest position alone and attends over the stored keys: `O(t)` work per step instead of the `O(t²)` of running
/// the whole prefix again. [`crate::transformers::KvCache`] holds one per layer.
#[derive(Debug, Clone, Default)]
pub struct LayerCache {
    /// `[B, h, S, d]` keys and values of the `S` positions seen so far (`None` before the first call).
    kv: Option<(Tensor, Tensor)>,
}

impl LayerCache {
    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CausalSelfAttention {
    /// Self-attention of the new positions `x` `[B, T_new, C]`, which follow the `cache.len()` positions in
    /// `cache`: they see every cached key and, causally, each other. Appends their keys and values to `cache`.
    /// With an empty cache this is [`Module::forward`]'s plain path, and a prompt followed by one token at a time
    /// gives the logits a full forward pass gives.
    pub fn forward_cached(&self, x: &Tensor, cache: &mut LayerCache) -> Result<Tensor> {
        let y = self.attend(&self.qkv.forward(x)?, cache)?;
        self.proj.forward(&y)
    }

    /// The module docs' equations as candle ops, for the packed projections `qkv` `[B, T, 3C]` of positions that
    /// follow the ones in `cache` (which gets their keys and values); the heads side by side, `[B, T, C]`.
    fn attend(&self, qkv: &Tensor, cache: &mut LayerCache) -> Result<Tensor> {
        let (b, t, c3) = qkv.dims3()?;
        let (nh, c) = (self.n_head, c3 / 3);
        let d = c / nh;
        // Split the packed projections into heads, [B, T, 3, h, d] → [3, B, h, T, d].
        let qkv = qkv.reshape((b, t, 3, nh, d))?.permute((2, 0, 3, 1, 4))?;
        let (q, k, v) = (qkv.get(0)?.contiguous()?, qkv.get(1)?.contiguous()?, qkv.get(2)?.contiguous()?);
        // Cached keys and values come first, [B, h, S, d] with S = cached + T.
        let (k, v) = match cache.kv.take() {
            Some((k0, v0)) => (Tensor::cat(&[&k0, &k], 2)?, Tensor::cat(&[&v0, &v], 2)?),
            None => (k, v),
        };
        let s = k.dims()[2];
        // Scores S = Q Kᵀ / √d, [B, h, T, S]: how well query t matches key s. Dividing by √d keeps their variance
        // near 1 at initialization, so the softmax does not start saturated.
        let mut scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
        // The causal mask M: −∞ where a key comes after its query, so after the softmax it gets weight 0. New query
        // i sits at position s − t + i; a single new token sees every key and needs no mask.
        if t > 1 {
            scores = scores.broadcast_add(&causal_rect(t, s, s - t, qkv.device())?.to_dtype(scores.dtype())?)?;
        }
        let att = candle_nn::ops::softmax(&scores, D::Minus1)?;
        // Each position's output is its weighted mix of the values; the heads go back side by side: [B, T, C].
        let y = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, c))?;
        cache.kv = Some((k, v));
        Ok(y)
    }
}

/// The additive mask that hides padded keys: `[B, S]` 0/1 (1 = real token) to `[B, 1, 1, S]`, 0 on real keys
/// and −∞ on padding, broadcast over heads and queries by [`MultiHeadAttention::forward`].
///
/// Every row of the mask must hold a real token: a query that sees no key at all has no softmax.
///
/// ```
/// use dlhist::prelude::*;
/// let mask = Tensor::new(&[[1f32, 1., 0.]], &Device::Cpu)?;
/// let bias = dlhist::transformers::padding_bias(&mask)?;
/// assert_eq!(bias.dims(), &[1, 1, 1, 3]);
/// assert_eq!(bias.flatten_all()?.to_vec1::<f32>()?, vec![0.0, 0.0, f32::NEG_INFINITY]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn padding_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, s) = mask.dims2().map_err(|_| {
        candle_core::Error::Msg(format!("padding_bias expects a [B, S] mask of 1s and 0s; got {:?}", mask.dims()))
    })?;
    let m = mask.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    if let Some(r) = m.iter().position(|row| row.iter().all(|&v| v == 0.0)) {
        candle_core::bail!("padding_bias: row {r} of the mask has no real token; every sequence needs at least one")
    }
    let bias: Vec<f32> = m.iter().flatten().map(|&v| if v == 0.0 { f32::NEG_INFINITY } else { 0.0 }).collect();
    Tensor::from_vec(bias, (b, 1, 1, s), mask.device())
}

/// The additive causal mask `[1, 1, T, T]`: 0 where key `s ≤ t`, −∞ above the diagonal, so query `t` never sees
/// a later position.
///
/// ```
/// use dlhist::prelude::*;
/// let bias = dlhist::transformers::causal_bias(2, &Device::Cpu)?;
/// assert_eq!(bias.flatten_all()?.to_vec1::<f32>()?, vec![0.0, f32::NEG_INFINITY, 0.0, 0.0]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn causal_bias(t: usize, dev: &candle_core::Device) -> Result<Tensor> {
    causal_rect(t, t, 0, dev)
}

/// The causal mask of `t` queries at positions `offset..offset + t` over keys `0..s`, `[1, 1, T, S]`: query `i`
/// sees keys `0..=offset + i` (every key of a row when there are fewer).
fn causal_rect(t: usize, s: usize, offset: usize, dev: &candle_core::Device) -> Result<Tensor> {
    let m: Vec<f32> = (0..t * s).map(|k| if k % s > offset + k / s { f32::NEG_INFINITY } else { 0.0 }).collect();
    Tensor::from_vec(m, (1, 1, t, s), dev)
}

/// Which keys each query may see: example `b`'s first `lens[b]` keys (`None`: all of them; the rest is padding),
/// and with `causal` only keys `s ≤ t`. The fused kernel takes it as it is; the plain path turns it into the
/// additive mask `M` of [`padding_bias`] plus [`causal_bias`].
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::KeyMask;
/// let m = KeyMask::from_mask(&Tensor::new(&[[1f32, 1., 0.], [1., 1., 1.]], &Device::Cpu)?)?;
/// assert_eq!(m.lens, Some(vec![2, 3]));
/// assert!(KeyMask::from_mask(&Tensor::new(&[[1f32, 0., 1.]], &Device::Cpu)?).is_err()); // a hole, not padding
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMask {
    /// Real keys per example (padding after them), or `None` when no key is padding.
    pub lens: Option<Vec<usize>>,
    /// Whether query `t` is limited to keys `s ≤ t`.
    pub causal: bool,
}

impl KeyMask {
    /// No mask: every query sees every key.
    pub fn none() -> Self {
        KeyMask::default()
    }

    /// The causal mask alone.
    pub fn causal() -> Self {
        KeyMask { lens: None, causal: true }
    }

    /// From a `[B, S]` 0/1 mask whose rows are real tokens followed by padding (as [`crate::data::pairs`] pads).
    pub fn from_mask(mask: &Tensor) -> Result<Self> {
        let rows = mask.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>().map_err(|_| {
            candle_core::Error::Msg(format!("KeyMask::from_mask expects a [B, S] mask; got {:?}", mask.dims()))
        })?;
        let lens = rows
            .iter()
            .enumerate()
            .map(|(r, row)| {
                let n = row.iter().take_while(|&&v| v == 1.0).count();
                if n == 0 || row[n..].iter().any(|&v| v != 0.0) {
                    candle_core::bail!(
                        "KeyMask::from_mask: row {r} of the mask is not 1s followed by 0s (at least one 1): {row:?}"
                    )
                }
                Ok(n)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KeyMask { lens: Some(lens), causal: false })
    }

    /// The mask with its examples picked (and repeated) by `rows`, as beam search reorders a batch.
    pub fn select(&self, rows: &[usize]) -> Self {
        KeyMask { lens: self.lens.as_ref().map(|l| rows.iter().map(|&r| l[r]).collect()), causal: self.causal }
    }

    /// The additive mask for `t` queries over `s` keys, broadcastable to `[B, h, T, S]` (`None`: nothing hidden).
    pub fn bias(&self, t: usize, s: usize, dev: &candle_core::Device) -> Result<Option<Tensor>> {
        let padding = match &self.lens {
            Some(lens) => {
                // 0 on each example's first lens[b] keys, −∞ on its padding: padding_bias's values, from the lengths.
                let m: Vec<f32> = lens
                    .iter()
                    .flat_map(|&n| (0..s).map(move |j| if j < n { 0.0 } else { f32::NEG_INFINITY }))
                    .collect();
                Some(Tensor::from_vec(m, (lens.len(), 1, 1, s), dev)?)
            }
            None => None,
        };
        let causal = if self.causal { Some(causal_rect(t, s, 0, dev)?) } else { None };
        Ok(match (padding, causal) {
            (Some(p), Some(c)) => Some(p.broadcast_add(&c)?),
            (p, c) => p.or(c),
        })
    }
}

/// Multi-head attention with separate query and key/value inputs and a [`KeyMask`]: the encoder's self-attention
/// (`forward(x, x, &padding)`), the decoder's cross-attention (`forward(y, memory, &padding)`), or any masked
/// self-attention. Parameters `{path}.q`, `{path}.k`, `{path}.v` (`C → C` each) and `{path}.o` (`W_O`).
///
/// [`MultiHeadAttention::forward`] holds both paths: the fused CPU op ([`crate::fast::masked_attention`]) and the
/// equations of the module docs as candle ops. [`MultiHeadAttention::forward_with_weights`] always takes the plain
/// path, since it returns the weights.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::{KeyMask, MultiHeadAttention};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let attn = MultiHeadAttention::new(8, 2, vb)?;
/// let (queries, memory) = (Tensor::ones((1, 2, 8), DType::F32, &dev)?, Tensor::ones((1, 3, 8), DType::F32, &dev)?);
/// let padding = KeyMask::from_mask(&Tensor::new(&[[1f32, 1., 0.]], &dev)?)?;
/// let (y, weights) = attn.forward_with_weights(&queries, &memory, &padding)?;
/// assert_eq!((y.dims(), weights.dims()), (&[1, 2, 8][..], &[1, 2, 2, 3][..]));
/// // The padded key gets weight 0 from every head and query.
/// assert!(weights.narrow(3, 2, 1)?.flatten_all()?.to_vec1::<f32>()?.iter().all(|&w| w == 0.0));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MultiHeadAttention {
    q: Dense,
    k: Dense,
    v: Dense,
    o: Dense,
    n_head: usize,
}

impl MultiHeadAttention {
    /// Attention between streams of width `d_model` with `n_head` heads.
    pub fn new(d_model: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_names(d_model, n_head, vb, ["q", "k", "v", "o"])
    }

    /// The same layer with its four projections at other paths under `vb`, in the order query, key, value, output:
    /// how a model that follows another library's names (BERT's `attention.self.query`, ...) builds it.
    pub fn with_names(d_model: usize, n_head: usize, vb: VarBuilder, names: [&str; 4]) -> Result<Self> {
        if n_head == 0 || !d_model.is_multiple_of(n_head) {
            candle_core::bail!("MultiHeadAttention: d_model = {d_model} must be a multiple of n_head = {n_head}")
        }
        let dense = |name: &str| Dense::new(d_model, d_model, None, vb.pp(name));
        Ok(MultiHeadAttention {
            q: dense(names[0])?,
            k: dense(names[1])?,
            v: dense(names[2])?,
            o: dense(names[3])?,
            n_head,
        })
    }

    /// The number of heads.
    pub fn n_head(&self) -> usize {
        self.n_head
    }

    /// Queries from `x` `[B, T, C]`, keys and values from `memory` `[B, S, C]`, the keys `mask` hides left out:
    /// `[B, T, C]`.
    pub fn forward(&self, x: &Tensor, memory: &Tensor, mask: &KeyMask) -> Result<Tensor> {
        let (b, t, c, s) = self.check(x, memory)?;
        let (q, k, v) = (self.q.forward(x)?, self.k.forward(memory)?, self.v.forward(memory)?);
        if fast::applies(&[&q, &k, &v]) {
            // Fused (crate::fast::masked_attention): every head's masked softmax(Q Kᵀ/√d) V in one op that reads the
            // heads in place from the projections and keeps only the probabilities for the backward pass.
            let lens = mask.lens.clone().unwrap_or_else(|| vec![s; b]);
            return self.o.forward(&fast::masked_attention(&q, &k, &v, &lens, self.n_head, mask.causal)?);
        }
        let (y, _) = self.attend(q, k, v, mask, (b, t, c, s))?;
        self.o.forward(&y)
    }

    /// [`MultiHeadAttention::forward`] by the plain path, and the attention weights `[B, h, T, S]` (each row sums
    /// to 1; hidden keys get exactly 0).
    pub fn forward_with_weights(&self, x: &Tensor, memory: &Tensor, mask: &KeyMask) -> Result<(Tensor, Tensor)> {
        let dims = self.check(x, memory)?;
        let (q, k, v) = (self.q.forward(x)?, self.k.forward(memory)?, self.v.forward(memory)?);
        let (y, weights) = self.attend(q, k, v, mask, dims)?;
        Ok((self.o.forward(&y)?, weights))
    }

    /// `(B, T, C, S)` of `x` and `memory`, after checking them against the layer.
    fn check(&self, x: &Tensor, memory: &Tensor) -> Result<(usize, usize, usize, usize)> {
        let (b, t, c) = x.dims3()?;
        let (bm, s, cm) = memory.dims3()?;
        let width = self.q.linear().weight().dims()[1];
        if bm != b || cm != c || c != width {
            candle_core::bail!(
                "MultiHeadAttention of width {width}: queries {:?} and memory {:?} need the same batch and width",
                x.dims(),
                memory.dims()
            )
        }
        Ok((b, t, c, s))
    }

    /// The plain path from the projections `Q [B, T, C]`, `K, V [B, S, C]`: the heads side by side `[B, T, C]`
    /// (before `W_O`) and the weights `[B, h, T, S]`.
    fn attend(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: &KeyMask,
        (b, t, c, s): (usize, usize, usize, usize),
    ) -> Result<(Tensor, Tensor)> {
        let (nh, d) = (self.n_head, c / self.n_head);
        // Project, then split the width into heads: [B, L, C] → [B, h, L, d].
        let heads =
            |t_: Tensor, l: usize| -> Result<Tensor> { t_.reshape((b, l, nh, d))?.transpose(1, 2)?.contiguous() };
        let (q, k, v) = (heads(q, t)?, heads(k, s)?, heads(v, s)?);
        // S = Q Kᵀ / √d + M: scaled so the scores start with variance near 1; M is 0 or −∞ (hidden keys).
        let mut scores = (q.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
        if let Some(m) = mask.bias(t, s, scores.device())? {
            scores = scores.broadcast_add(&m.to_dtype(scores.dtype())?)?;
        }
        let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
        // Each query's mix of the values; the heads back side by side: [B, T, C] (W_O mixes them).
        let y = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, t, c))?;
        Ok((y, weights))
    }
}

/// An encoder's output for a batch of sources, which every step of an encoder-decoder's decoder attends to.
#[derive(Debug, Clone)]
pub struct EncoderMemory {
    /// The encoder's last layer, `[B, S, C]`.
    pub states: Tensor,
    /// Which source positions are real (the rest is padding).
    pub mask: KeyMask,
}

/// What an encoder-decoder that re-reads its whole prefix at every step (the Transformer, T5) carries between
/// greedy or beam steps: the encoder's memory and the decoder inputs so far.
#[derive(Debug, Clone)]
pub struct PrefixState {
    /// The encoder's output.
    pub memory: EncoderMemory,
    /// The decoder inputs so far, `[B, t]` (u32), `None` before the first step.
    pub prefix: Option<Tensor>,
}

impl PrefixState {
    /// The state before the first step.
    pub fn new(memory: EncoderMemory) -> Self {
        PrefixState { memory, prefix: None }
    }

    /// Feeds `prev` (`[B]` u32), one more token per row: the decoder inputs so far `[B, t]`, and the state that
    /// holds them.
    pub fn extend(&self, prev: &Tensor) -> Result<(Tensor, Self)> {
        let prev = prev.unsqueeze(1)?;
        let prefix = match &self.prefix {
            Some(p) => Tensor::cat(&[p, &prev], 1)?,
            None => prev,
        };
        Ok((prefix.clone(), PrefixState { memory: self.memory.clone(), prefix: Some(prefix) }))
    }

    /// The rows `rows` (`[n]` u32) of the state, memory and mask included (beam search's reordering).
    pub fn select_rows(&self, rows: &Tensor) -> Result<Self> {
        let picked: Vec<usize> = rows.to_vec1::<u32>()?.into_iter().map(|r| r as usize).collect();
        Ok(PrefixState {
            memory: EncoderMemory {
                states: self.memory.states.index_select(rows, 0)?,
                mask: self.memory.mask.select(&picked),
            },
            prefix: self.prefix.as_ref().map(|p| p.index_select(rows, 0)).transpose()?,
        })
    }

    /// The number of rows.
    pub fn batch_size(&self) -> usize {
        self.memory.states.dims()[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, IndexOp};

    fn last_dim_softmax_reference(x: &Tensor) -> Result<Tensor> {
        let e = x.broadcast_sub(&x.max_keepdim(D::Minus1)?)?.exp()?;
        e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
    }

    #[test]
    fn attention_is_causal_and_matches_a_per_head_loop() -> Result<()> {
        let dev = crate::device::test_device();
        let (vars, vb) = crate::init::seeded(1, DType::F32, &dev);
        let attn = CausalSelfAttention::new(8, 2, vb)?;
        let x = crate::rng::Rng::new(2).normal_tensor((2, 5, 8), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?;
        let y = attn.forward(&x)?;
        // The same attention written head by head and row by row, without the mask: row t only sees 0..=t.
        let w = |n: &str| vars.data().lock().unwrap()[n].as_tensor().clone();
        let (wqkv, bqkv, wo, bo) = (w("qkv.weight"), w("qkv.bias"), w("proj.weight"), w("proj.bias"));
        for n in 0..2 {
            let xn = x.i(n)?;
            let qkv = xn.matmul(&wqkv.t()?)?.broadcast_add(&bqkv)?; // [T, 24]
            let mut rows = vec![];
            for t in 0..5 {
                let mut heads = vec![];
                for h in 0..2 {
                    // Column slices, packed: candle's CUDA matrix product only takes packed rows.
                    let q = qkv.i((t..t + 1, h * 4..h * 4 + 4))?.contiguous()?;
                    let k = qkv.i((0..t + 1, 8 + h * 4..8 + h * 4 + 4))?.contiguous()?;
                    let v = qkv.i((0..t + 1, 16 + h * 4..16 + h * 4 + 4))?.contiguous()?;
                    let a = last_dim_softmax_reference(&(q.matmul(&k.t()?)? / 2.0)?)?;
                    heads.push(a.matmul(&v)?);
                }
                rows.push(Tensor::cat(&heads, 1)?);
            }
            let want = Tensor::cat(&rows, 0)?.matmul(&wo.t()?)?.broadcast_add(&bo)?;
            let err = (y.i(n)? - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(err < 1e-5, "example {n}: {err}");
        }
        Ok(())
    }

    /// The fused and plain paths, long and tiny sequences, one and several heads: same values and gradients.
    #[test]
    fn fused_and_plain_paths_agree() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        for (b, t, c, nh) in [(12, 64, 128, 4), (2, 5, 6, 2), (1, 1, 1, 1), (3, 7, 9, 3), (2, 3, 4, 1)] {
            let (vars, vb) = crate::init::seeded(31, DType::F32, &dev);
            let attn = CausalSelfAttention::new(c, nh, vb)?;
            let x = candle_core::Var::from_tensor(
                &crate::rng::Rng::new(32).normal_tensor((b, t, c), 0.0, 1.5, &dev).map_err(candle_core::Error::wrap)?,
            )?;
            let (fused, plain) = (attn.forward(&x)?, fast::plain(|| attn.forward(&x))?);
            crate::fast::testing::assert_paths_agree(
                &fused,
                &plain,
                &vars,
                &[&x],
                &format!("b {b} t {t} c {c} h {nh}"),
            )?;
        }
        Ok(())
    }

    /// The padded, causal and cross attention of MultiHeadAttention: fused and plain paths give the same values and
    /// gradients (queries, memory and every parameter), and hidden keys change nothing.
    #[test]
    fn masked_attention_fused_and_plain_paths_agree() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        // (batch, queries, keys, width, key lengths, causal)
        type Case = (usize, usize, usize, usize, Option<Vec<usize>>, bool);
        let cases: [Case; 5] = [
            (3, 7, 9, 16, Some(vec![9, 4, 1]), false), // cross-attention over padded memories
            (2, 6, 6, 8, Some(vec![6, 3]), false),     // padded self-attention shapes
            (2, 5, 5, 8, None, true),                  // causal
            (2, 5, 7, 8, Some(vec![7, 2]), true),      // causal and padded
            (1, 1, 1, 4, None, false),
        ];
        for (b, t, s, c, lens, causal) in cases {
            let (vars, vb) = crate::init::seeded(41, DType::F32, &dev);
            let attn = MultiHeadAttention::new(c, 2, vb)?;
            let mut rng = crate::rng::Rng::new(42);
            let x = candle_core::Var::from_tensor(
                &rng.normal_tensor((b, t, c), 0.0, 1.5, &dev).map_err(candle_core::Error::wrap)?,
            )?;
            let m = candle_core::Var::from_tensor(
                &rng.normal_tensor((b, s, c), 0.0, 1.5, &dev).map_err(candle_core::Error::wrap)?,
            )?;
            let mask = KeyMask { lens: lens.clone(), causal };
            let (fused, plain) = (attn.forward(&x, &m, &mask)?, fast::plain(|| attn.forward(&x, &m, &mask))?);
            crate::fast::testing::assert_paths_agree_but_zero(
                &fused,
                &plain,
                &vars,
                &[&x, &m],
                "k.bias",
                &format!("b {b} t {t} s {s} lens {lens:?} causal {causal}"),
            )?;
            // Changing a hidden key's memory row changes nothing.
            if let Some(l) = &lens {
                if l[b - 1] < s {
                    let bumped = m
                        .as_tensor()
                        .slice_assign(&[b - 1..b, s - 1..s, 0..c], &Tensor::ones((1, 1, c), DType::F32, &dev)?)?;
                    let again = attn.forward(&x, &bumped, &mask)?;
                    let diff = (again - &fused)?.abs()?.max_all()?.to_scalar::<f32>()?;
                    assert_eq!(diff, 0.0, "a padded key changed the output");
                }
            }
        }
        assert!(KeyMask::from_mask(&Tensor::zeros((1, 3), DType::F32, &dev)?).is_err());
        assert!(fast::masked_attention(
            &Tensor::zeros((1, 2, 4), DType::F32, &dev)?,
            &Tensor::zeros((1, 3, 4), DType::F32, &dev)?,
            &Tensor::zeros((1, 3, 4), DType::F32, &dev)?,
            &[4],
            2,
            false
        )
        .is_err());
        Ok(())
    }
}
