//! # A small GPT: causal self-attention in pre-norm transformer blocks
//!
//! A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017. <https://arxiv.org/abs/1706.03762>
//! A. Radford, K. Narasimhan, T. Salimans and I. Sutskever, "Improving Language Understanding by Generative
//! Pre-Training", 2018. <https://cdn.openai.com/research-covers/language-unsupervised/language_understanding_paper.pdf>
//! Pre-norm blocks: A. Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019.
//! <https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf>
//!
//! A GPT predicts token `t + 1` from tokens `0..=t`, with multi-head causal self-attention
//! ([`super::attention`], where `softmax(Q Kᵀ / √d + M) V` is written out) so that position `t` never sees a
//! later one. A pre-norm block (GPT-2) normalizes before each sub-layer and adds the result to the residual stream:
//!
//! ```text
//! x ← x + MultiHead(LN_1(x))
//! x ← x + W_2 GELU(W_1 LN_2(x) + b_1) + b_2          (hidden width 4C)
//! ```
//!
//! The model: token embedding plus learned position embedding, `n_layer` blocks, a final layer norm, and a
//! linear head to `vocab_size` logits. Dividing by `√d` keeps the logits' variance near 1 at initialization, so
//! the softmax does not start saturated.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};

use super::attention::LayerCache;
use super::{CausalSelfAttention, Sampling};
use crate::layers::{Activation, Dense};
use crate::optimization::LayerNorm;
use crate::rng::Rng;

/// Sizes of a [`Gpt`].
///
/// ```
/// let cfg = dlhist::transformers::GptConfig::char_small(65);
/// assert_eq!((cfg.block_size, cfg.n_embd, cfg.n_layer, cfg.n_head), (64, 128, 4, 4));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GptConfig {
    /// Number of distinct tokens.
    pub vocab_size: usize,
    /// Longest context `T` (the position embedding's length).
    pub block_size: usize,
    /// Width of the residual stream `C`.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Attention heads per block (`n_embd` must be a multiple).
    pub n_head: usize,
}

impl GptConfig {
    /// The character model sized for a CPU (nanoGPT's CPU recipe): `T = 64, C = 128`, 4 layers, 4 heads.
    pub fn char_small(vocab_size: usize) -> Self {
        GptConfig { vocab_size, block_size: 64, n_embd: 128, n_layer: 4, n_head: 4 }
    }
}

/// A pre-norm transformer block (module docs): `{path}.ln1`, `{path}.attn`, `{path}.ln2`, `{path}.fc`
/// (`C → 4C`), `{path}.proj` (`4C → C`).
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let block = dlhist::transformers::Block::new(8, 2, vb)?;
/// assert_eq!(block.forward(&Tensor::ones((1, 3, 8), DType::F32, &dev)?)?.dims(), &[1, 3, 8]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Block {
    ln1: LayerNorm,
    attn: CausalSelfAttention,
    ln2: LayerNorm,
    fc: Dense,
    proj: Dense,
}

impl Block {
    /// A block over a stream of width `n_embd` with `n_head` heads.
    pub fn new(n_embd: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Block {
            ln1: LayerNorm::new(n_embd, vb.pp("ln1"))?,
            attn: CausalSelfAttention::new(n_embd, n_head, vb.pp("attn"))?,
            ln2: LayerNorm::new(n_embd, vb.pp("ln2"))?,
            fc: Dense::new(n_embd, 4 * n_embd, Some(Activation::Gelu), vb.pp("fc"))?,
            proj: Dense::new(4 * n_embd, n_embd, None, vb.pp("proj"))?,
        })
    }
}

impl Block {
    /// [`Module::forward`] for positions that follow those in `cache` (see [`CausalSelfAttention::forward_cached`]).
    pub fn forward_cached(&self, x: &Tensor, cache: &mut LayerCache) -> Result<Tensor> {
        let x = (x + self.attn.forward_cached(&self.ln1.forward(x)?, cache)?)?;
        let m = self.proj.forward(&self.fc.forward(&self.ln2.forward(&x)?)?)?;
        x + m
    }
}

/// The keys and values a [`Gpt`] has computed for the tokens it has read, one [`LayerCache`] per block (the *KV
/// cache* of generation).
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<LayerCache>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        KvCache::default()
    }

    /// Tokens read so far.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    /// Whether no token has been read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // x ← x + MultiHead(LN_1(x)): attention reads the normalized stream and writes back into the residual one.
        let x = (x + self.attn.forward(&self.ln1.forward(x)?)?)?;
        // x ← x + W_2 GELU(W_1 LN_2(x) + b_1) + b_2: the position-wise MLP, four times wider inside.
        let m = self.proj.forward(&self.fc.forward(&self.ln2.forward(&x)?)?)?;
        x + m
    }
}

/// The GPT of the module docs, mapping token ids `[B, T]` (u32, `T ≤ block_size`) to logits `[B, T, vocab]`.
///
/// Parameters: `{path}.tok`, `{path}.pos` (embeddings), `{path}.blocks.{i}`, `{path}.ln_f`, `{path}.head`.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::{Gpt, GptConfig};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let cfg = GptConfig { vocab_size: 11, block_size: 8, n_embd: 16, n_layer: 2, n_head: 2 };
/// let gpt = Gpt::new(cfg, vb.pp("gpt"))?;
/// let idx = Tensor::new(&[[1u32, 2, 3], [4, 5, 6]], &dev)?;
/// assert_eq!(gpt.forward(&idx)?.dims(), &[2, 3, 11]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Gpt {
    tok: Embedding,
    pos: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    head: Dense,
    config: GptConfig,
}

impl Gpt {
    /// A GPT with the given sizes.
    pub fn new(config: GptConfig, vb: VarBuilder) -> Result<Self> {
        let c = config.n_embd;
        Ok(Gpt {
            tok: candle_nn::embedding(config.vocab_size, c, vb.pp("tok"))?,
            pos: candle_nn::embedding(config.block_size, c, vb.pp("pos"))?,
            blocks: (0..config.n_layer)
                .map(|i| Block::new(c, config.n_head, vb.pp(format!("blocks.{i}"))))
                .collect::<Result<_>>()?,
            ln_f: LayerNorm::new(c, vb.pp("ln_f"))?,
            head: Dense::new(c, config.vocab_size, None, vb.pp("head"))?,
            config,
        })
    }

    /// The sizes.
    pub fn config(&self) -> &GptConfig {
        &self.config
    }

    /// The logits `[B, T_new, vocab]` of tokens `idx` `[B, T_new]` that follow the `cache.len()` tokens already
    /// read into `cache`, which then holds them too. Reading a prompt in one call and then one token per call
    /// gives the logits [`Module::forward`] gives for the whole sequence, at a fraction of the work.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::transformers::{Gpt, GptConfig, KvCache};
    /// let dev = Device::Cpu;
    /// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
    /// let gpt = Gpt::new(GptConfig { vocab_size: 5, block_size: 8, n_embd: 8, n_layer: 2, n_head: 2 }, vb)?;
    /// let full = gpt.forward(&Tensor::new(&[[1u32, 2, 3, 4]], &dev)?)?;
    /// let mut cache = KvCache::new();
    /// gpt.forward_cached(&Tensor::new(&[[1u32, 2, 3]], &dev)?, &mut cache)?;
    /// let last = gpt.forward_cached(&Tensor::new(&[[4u32]], &dev)?, &mut cache)?;
    /// let gap = (full.narrow(1, 3, 1)? - last)?.abs()?.max_all()?.to_scalar::<f32>()?;
    /// assert!(gap < 1e-5 && cache.len() == 4);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn forward_cached(&self, idx: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let (_, t) = idx.dims2()?;
        let past = cache.len();
        if t == 0 || past + t > self.config.block_size {
            candle_core::bail!(
                "Gpt::forward_cached: {past} cached + {t} new tokens must be in 1..={} (the position table's length)",
                self.config.block_size
            )
        }
        if cache.layers.is_empty() {
            cache.layers = vec![LayerCache::default(); self.blocks.len()];
        }
        // The new tokens sit at positions past..past + t.
        let positions = Tensor::arange(past as u32, (past + t) as u32, idx.device())?;
        let mut x = self.tok.forward(idx)?.broadcast_add(&self.pos.forward(&positions)?)?;
        for (block, layer) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            x = block.forward_cached(&x, layer)?;
        }
        self.head.forward(&self.ln_f.forward(&x)?)
    }

    /// Continues `prompt` (at least one token id) by `n` tokens drawn with `sampling` from `rng`; returns the new
    /// tokens only.
    ///
    /// Uses a [`KvCache`] while the text fits in `block_size` tokens. Past that, each step reads the last
    /// `block_size` tokens afresh (the learned positions cannot slide, so nothing cached can be reused), exactly
    /// as [`Gpt::generate_uncached`] does at every step; both give the same tokens for the same `rng`.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::transformers::{Gpt, GptConfig, Sampling};
    /// let dev = Device::Cpu;
    /// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
    /// let gpt = Gpt::new(GptConfig { vocab_size: 5, block_size: 4, n_embd: 8, n_layer: 1, n_head: 2 }, vb)?;
    /// let more = gpt.generate(&[1, 2], 6, &Sampling::plain(), &mut Rng::new(1))?;
    /// assert_eq!(more.len(), 6);
    /// assert_eq!(more, gpt.generate(&[1, 2], 6, &Sampling::plain(), &mut Rng::new(1))?); // seeded
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn generate(&self, prompt: &[u32], n: usize, sampling: &Sampling, rng: &mut Rng) -> crate::Result<Vec<u32>> {
        self.check_prompt(prompt)?;
        let dev = self.tok.embeddings().device().clone();
        let mut ids = prompt.to_vec();
        let mut cache = KvCache::new();
        // Read the prompt (its last block_size tokens) in one pass.
        let start = ids.len().saturating_sub(self.config.block_size);
        let mut logits = self.forward_cached(&Tensor::new(&ids[start..], &dev)?.unsqueeze(0)?, &mut cache)?;
        for i in 0..n {
            let last = logits.squeeze(0)?;
            let last = last.get(last.dims()[0] - 1)?.to_dtype(candle_core::DType::F32)?;
            ids.push(sampling.draw(&last.to_vec1::<f32>()?, rng)?);
            if i + 1 == n {
                break;
            }
            logits = if cache.len() < self.config.block_size {
                // The cache has room: only the new token goes through the network.
                let next = Tensor::new(&ids[ids.len() - 1..], &dev)?.unsqueeze(0)?;
                self.forward_cached(&next, &mut cache)?
            } else {
                // Full: read the last block_size tokens afresh, positions 0..block_size.
                cache = KvCache::new();
                let window = &ids[ids.len() - self.config.block_size..];
                self.forward_cached(&Tensor::new(window, &dev)?.unsqueeze(0)?, &mut cache)?
            };
        }
        Ok(ids[prompt.len()..].to_vec())
    }

    /// [`Gpt::generate`] without a cache: every step runs the whole window (at most the last `block_size` tokens)
    /// through the network. The reference the cache is tested against, and the baseline of its timing.
    pub fn generate_uncached(
        &self,
        prompt: &[u32],
        n: usize,
        sampling: &Sampling,
        rng: &mut Rng,
    ) -> crate::Result<Vec<u32>> {
        self.check_prompt(prompt)?;
        let dev = self.tok.embeddings().device().clone();
        let mut ids = prompt.to_vec();
        for _ in 0..n {
            let window = &ids[ids.len().saturating_sub(self.config.block_size)..];
            let x = Tensor::new(window, &dev)?.unsqueeze(0)?;
            let logits = self.forward(&x)?.squeeze(0)?.get(window.len() - 1)?.to_dtype(candle_core::DType::F32)?;
            ids.push(sampling.draw(&logits.to_vec1::<f32>()?, rng)?);
        }
        Ok(ids[prompt.len()..].to_vec())
    }

    fn check_prompt(&self, prompt: &[u32]) -> crate::Result<()> {
        match prompt.iter().find(|&&t| t as usize >= self.config.vocab_size) {
            _ if prompt.is_empty() => {
                Err(crate::Error::Invalid("Gpt::generate needs a prompt of at least one token".into()))
            }
            Some(t) => Err(crate::Error::Invalid(format!(
                "Gpt::generate: prompt token {t} is outside the vocabulary of {}",
                self.config.vocab_size
            ))),
            None => Ok(()),
        }
    }
}

impl Module for Gpt {
    fn forward(&self, idx: &Tensor) -> Result<Tensor> {
        let (_, t) = idx.dims2()?;
        if t == 0 || t > self.config.block_size {
            candle_core::bail!("Gpt: sequence length {t} must be in 1..={}", self.config.block_size)
        }
        let positions = Tensor::arange(0u32, t as u32, idx.device())?;
        let mut x = self.tok.forward(idx)?.broadcast_add(&self.pos.forward(&positions)?)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.head.forward(&self.ln_f.forward(&x)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, IndexOp};

    fn tiny() -> GptConfig {
        GptConfig { vocab_size: 7, block_size: 6, n_embd: 8, n_layer: 2, n_head: 2 }
    }

    /// The whole model's fused and plain paths: same logits, same gradients for every parameter.
    #[test]
    fn fused_and_plain_paths_agree() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let (vars, vb) = crate::init::seeded(7, DType::F32, &dev);
        let gpt = Gpt::new(tiny(), vb)?;
        let idx = Tensor::new(&[[1u32, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]], &dev)?;
        let (fused, plain) = (gpt.forward(&idx)?, crate::fast::plain(|| gpt.forward(&idx))?);
        crate::fast::testing::assert_paths_agree(&fused, &plain, &vars, &[], "gpt")
    }

    /// The cache gives the full pass's logits, and generation with it the same tokens as without, also past
    /// `block_size` where the window slides.
    #[test]
    fn kv_cache_matches_the_full_pass() -> crate::Result<()> {
        let dev = candle_core::Device::Cpu;
        let (_vars, vb) = crate::init::seeded(11, DType::F32, &dev);
        let gpt = Gpt::new(tiny(), vb)?;
        let seq = [3u32, 1, 4, 1, 5, 2];
        let full = gpt.forward(&Tensor::new(&seq[..], &dev)?.unsqueeze(0)?)?;
        for split in [1, 2, 5] {
            let mut cache = KvCache::new();
            let a = gpt.forward_cached(&Tensor::new(&seq[..split], &dev)?.unsqueeze(0)?, &mut cache)?;
            let mut parts = vec![a];
            for &tok in &seq[split..] {
                parts.push(gpt.forward_cached(&Tensor::new(&[tok], &dev)?.unsqueeze(0)?, &mut cache)?);
            }
            let gap = (Tensor::cat(&parts, 1)? - &full)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(gap < 1e-5, "prompt of {split}: {gap}");
            assert_eq!(cache.len(), 6);
            assert!(gpt.forward_cached(&Tensor::new(&[[1u32]], &dev)?, &mut cache).is_err(), "past block_size");
        }
        let s = Sampling { temperature: 0.9, top_k: Some(5), top_p: None };
        for prompt in [&[2u32][..], &[1, 2, 3, 4, 5, 6, 0]] {
            let cached = gpt.generate(prompt, 15, &s, &mut Rng::new(4))?;
            let plain = gpt.generate_uncached(prompt, 15, &s, &mut Rng::new(4))?;
            assert_eq!(cached, plain, "prompt {prompt:?}");
        }
        assert!(gpt.generate(&[], 3, &s, &mut Rng::new(0)).is_err());
        assert!(gpt.generate(&[7], 3, &s, &mut Rng::new(0)).is_err(), "token 7 of a vocabulary of 7");
        Ok(())
    }

    #[test]
    fn logits_shape_causality_and_gradients() -> Result<()> {
        let dev = crate::device::test_device();
        let (vars, vb) = crate::init::seeded(3, DType::F32, &dev);
        let gpt = Gpt::new(tiny(), vb)?;
        let a = Tensor::new(&[[1u32, 2, 3, 4, 5]], &dev)?;
        let b = Tensor::new(&[[1u32, 2, 3, 6, 0]], &dev)?;
        let (la, lb) = (gpt.forward(&a)?, gpt.forward(&b)?);
        assert_eq!(la.dims(), &[1, 5, 7]);
        // Changing token 3 must not change the logits at positions 0..=2.
        let early = (la.i((.., 0..3))? - lb.i((.., 0..3))?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(early < 1e-6, "{early}");
        let late = (la.i((.., 3..))? - lb.i((.., 3..))?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(late > 1e-4);
        let y = Tensor::new(&[2u32, 3, 4, 5, 6], &dev)?;
        let loss = candle_nn::loss::cross_entropy(&la.reshape((5, 7))?, &y)?;
        let grads = loss.backward()?;
        for v in vars.all_vars() {
            assert!(grads.get(&v).is_some(), "no gradient for {:?}", v.dims());
        }
        // The queries' and keys' rows of W_qkv get a gradient only through the softmax's backward pass.
        let qkv = vars.data().lock().unwrap()["blocks.0.attn.qkv.weight"].clone();
        let gq = grads.get(&qkv).unwrap().narrow(0, 0, 16)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert!(gq > 0.0, "no gradient reaches the queries and keys");
        assert!(gpt.forward(&Tensor::zeros((1, 7), DType::U32, &dev)?).is_err());
        assert!(CausalSelfAttention::new(10, 3, crate::init::seeded(0, DType::F32, &dev).1).is_err());
        Ok(())
    }
}
