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

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder, VarMap};

use super::attention::{LayerCache, LoraTargets};
use super::{CausalSelfAttention, Sampling};
use crate::data::CharVocab;
use crate::layers::{Activation, Dense, LoraConfig, LoraDense};
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
    fc: LoraDense,
    proj: LoraDense,
}

impl Block {
    /// A block over a stream of width `n_embd` with `n_head` heads.
    pub fn new(n_embd: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Block {
            ln1: LayerNorm::new(n_embd, vb.pp("ln1"))?,
            attn: CausalSelfAttention::new(n_embd, n_head, vb.pp("attn"))?,
            ln2: LayerNorm::new(n_embd, vb.pp("ln2"))?,
            fc: LoraDense::frozen(Dense::new(n_embd, 4 * n_embd, Some(Activation::Gelu), vb.pp("fc"))?),
            proj: LoraDense::frozen(Dense::new(4 * n_embd, n_embd, None, vb.pp("proj"))?),
        })
    }
}

impl Block {
    /// This block with LoRA adapters on the weights `targets` names ([`CausalSelfAttention::with_lora`]; with
    /// [`LoraTargets::AllWeights`], also `{path}.fc` and `{path}.proj`).
    pub fn with_lora(&self, cfg: LoraConfig, targets: LoraTargets, vb: VarBuilder) -> Result<Self> {
        let attn = self.attn.with_lora(cfg, targets, vb.pp("attn"))?;
        let adapt = |layer: &LoraDense, name: &str| LoraDense::full(layer.base().clone(), cfg, vb.pp(name));
        Ok(match targets {
            LoraTargets::QueryValue => Block { attn, ..self.clone() },
            LoraTargets::AllWeights => {
                Block { attn, fc: adapt(&self.fc, "fc")?, proj: adapt(&self.proj, "proj")?, ..self.clone() }
            }
        })
    }

    /// Folds this block's LoRA updates into its weights, or takes them back out.
    fn set_lora_merged(&mut self, merged: bool) -> Result<()> {
        self.attn.set_lora_merged(merged)?;
        self.fc.set_merged(merged)?;
        self.proj.set_merged(merged)
    }

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

    /// This model with rank-`cfg.rank` LoRA adapters ([`crate::layers::LoraDense`]) on the weights `targets` names
    /// in every block (the query and value projections, or every weight matrix), their parameters
    /// `{path}.blocks.{i}.attn.qkv.lora_{a,b}.{j}` (and so on) from `vb`. Embeddings, norms and the head stay frozen.
    /// Every other weight is shared with `self`, not copied: train with an optimizer over `vb`'s variables alone
    /// and the pretrained model stays as it was. At first the adapted model computes exactly what `self` does.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::layers::LoraConfig;
    /// use dlhist::transformers::{Gpt, GptConfig, LoraTargets};
    /// let dev = Device::Cpu;
    /// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
    /// let gpt = Gpt::new(GptConfig { vocab_size: 11, block_size: 8, n_embd: 16, n_layer: 2, n_head: 2 }, vb)?;
    /// let (lora_vars, lora_vb) = dlhist::init::seeded(1, DType::F32, &dev);
    /// let tuned = gpt.with_lora(LoraConfig::new(2, 2.0), LoraTargets::QueryValue, lora_vb)?;
    /// // Per block: A and B for the queries and for the values, (16 + 16) · 2 each.
    /// assert_eq!(dlhist::init::param_count(&lora_vars), 2 * 2 * (16 + 16) * 2);
    /// let idx = Tensor::new(&[[1u32, 2, 3]], &dev)?;
    /// assert_eq!((tuned.forward(&idx)? - gpt.forward(&idx)?)?.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn with_lora(&self, cfg: LoraConfig, targets: LoraTargets, vb: VarBuilder) -> Result<Self> {
        let blocks = (self.blocks.iter().enumerate())
            .map(|(i, b)| b.with_lora(cfg, targets, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Gpt { blocks, ..self.clone() })
    }

    /// Folds every block's LoRA update into its weights (`merged = true`: one product per projection again, as
    /// fast as the model without adapters) or takes it back out (`false`, to train the adapters further).
    pub fn set_lora_merged(&mut self, merged: bool) -> Result<()> {
        self.blocks.iter_mut().try_for_each(|b| b.set_lora_merged(merged))
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

/// The character GPT pretrained on Tiny Shakespeare, stored in the project's `assets/models/` for the notebooks that
/// start from a pretrained model (LoRA, RLHF).
///
/// Made by `cargo run --release -p dlhist --example pretrain_char_gpt`, which trains [`GptConfig::char_small`]
/// on the first 90% of Tiny Shakespeare (the recipe is in that file) and writes the file, its SHA-256 and its
/// validation loss; the same machine gives the same bytes again. Loading checks the SHA-256 recorded here.
#[derive(Debug, Clone)]
pub struct PretrainedGpt {
    /// The model's sizes.
    pub config: GptConfig,
    /// Its character vocabulary (Tiny Shakespeare's 65 characters).
    pub vocab: CharVocab,
    /// The file the weights came from.
    pub path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

/// The file name of the pretrained character model, in the project's `assets/models/`.
pub const CHAR_SHAKESPEARE_FILE: &str = "char-gpt-shakespeare.safetensors";
/// Its SHA-256, as written by `examples/pretrain_char_gpt.rs`.
pub const CHAR_SHAKESPEARE_SHA256: &str = "3e6875fc7c235034a2203b64a5fd4d109000acb6c8662829c5afbe85967a9a82";

impl PretrainedGpt {
    /// The folder of the stored models: `assets/models/` beside the dlhist crate.
    pub fn models_dir() -> PathBuf {
        crate::checkpoint::models_dir()
    }

    /// The character model pretrained on Tiny Shakespeare (the type's docs), checked against its SHA-256.
    pub fn char_shakespeare() -> crate::Result<Self> {
        let path = Self::models_dir().join(CHAR_SHAKESPEARE_FILE);
        let vocab = CharVocab::new(&crate::data::tiny_shakespeare()?);
        Self::load(path, CHAR_SHAKESPEARE_SHA256, GptConfig::char_small(vocab.len()), vocab)
    }

    /// A GPT of sizes `config` from the safetensors file `path`, whose SHA-256 must be `sha256`; its parameter
    /// names are [`Gpt`]'s (what [`crate::checkpoint::save`] writes for a model built at the root path).
    pub fn load(path: PathBuf, sha256: &str, config: GptConfig, vocab: CharVocab) -> crate::Result<Self> {
        let remake = "make it with `cargo run --release -p dlhist --example pretrain_char_gpt`, or restore it with \
                      `git checkout assets/models`";
        let tensors = crate::checkpoint::load_verified(&path, sha256, "the pretrained model", remake, &Device::Cpu)?;
        let pretrained = PretrainedGpt { config, vocab, path, tensors };
        // Building it once checks every name and shape, so a wrong file fails here and not in a later cell.
        pretrained.frozen(&Device::Cpu)?;
        Ok(pretrained)
    }

    /// The pretrained weights by parameter name (`"blocks.0.attn.qkv.weight"`, ...), on the CPU.
    pub fn tensors(&self) -> &HashMap<String, Tensor> {
        &self.tensors
    }

    /// The pretrained model with its weights as constants on `dev`: nothing in it can be trained, and no gradient
    /// is computed for it (the frozen base of LoRA).
    pub fn frozen(&self, dev: &Device) -> crate::Result<Gpt> {
        let tensors = self.tensors.iter().map(|(k, t)| Ok((k.clone(), t.to_device(dev)?))).collect::<Result<_>>()?;
        Ok(Gpt::new(self.config, VarBuilder::from_tensors(tensors, DType::F32, dev))?)
    }

    /// The pretrained model as variables that start at the pretrained weights (full fine-tuning): returns them
    /// and the model.
    pub fn trainable(&self, dev: &Device) -> crate::Result<(VarMap, Gpt)> {
        let vars = VarMap::new();
        let gpt = Gpt::new(self.config, VarBuilder::from_varmap(&vars, DType::F32, dev))?;
        for (name, var) in vars.data().lock().expect("the VarMap's lock").iter() {
            let t = self
                .tensors
                .get(name)
                .ok_or_else(|| crate::Error::Invalid(format!("{} has no tensor {name}", self.path.display())))?;
            var.set(&t.to_device(dev)?)?;
        }
        Ok((vars, gpt))
    }
}

impl Gpt {
    /// The final hidden states `[B, T, C]` of tokens `idx` `[B, T]`: the last block's output after the final layer
    /// norm, which the output head turns into logits (and a reward or value head into one number per position,
    /// [`crate::transformers::rlhf::ScalarGpt`]).
    pub fn hidden_states(&self, idx: &Tensor) -> Result<Tensor> {
        let (_, t) = idx.dims2()?;
        if t == 0 || t > self.config.block_size {
            candle_core::bail!("Gpt: sequence length {t} must be in 1..={}", self.config.block_size)
        }
        // Token embedding plus learned position embedding.
        let mut x = crate::layers::summed_embeddings(&self.tok, idx, None, &self.pos)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.ln_f.forward(&x)
    }
}

impl Module for Gpt {
    fn forward(&self, idx: &Tensor) -> Result<Tensor> {
        self.head.forward(&self.hidden_states(idx)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, IndexOp};
    use candle_nn::Optimizer;

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

    /// Adapters on every weight: the model starts at the base, only the adapters train, merging keeps the logits.
    #[test]
    fn lora_starts_at_the_base_trains_only_adapters_and_merges() -> crate::Result<()> {
        let dev = candle_core::Device::Cpu;
        let (base_vars, vb) = crate::init::seeded(7, DType::F32, &dev);
        let gpt = Gpt::new(tiny(), vb)?;
        let idx = Tensor::new(&[[1u32, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]], &dev)?;
        let y = Tensor::new(&[[2u32, 3, 4, 5, 6, 0], [5, 4, 3, 2, 1, 0]], &dev)?;
        for (targets, per_block) in [
            (LoraTargets::QueryValue, 2 * 2 * (8 + 8)),
            (LoraTargets::AllWeights, 2 * (4 * (8 + 8) + (8 + 32) + (32 + 8))),
        ] {
            let (vars, vb) = crate::init::seeded(8, DType::F32, &dev);
            let mut tuned = gpt.with_lora(LoraConfig::new(2, 4.0), targets, vb)?;
            assert_eq!(crate::init::param_count(&vars), 2 * per_block, "{targets:?}");
            let gap = (tuned.forward(&idx)? - gpt.forward(&idx)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(gap, 0.0);
            let before: Vec<Vec<f32>> =
                base_vars.all_vars().iter().map(|v| v.flatten_all()?.to_vec1()).collect::<Result<_>>()?;
            let mut opt = candle_nn::AdamW::new_lr(vars.all_vars(), 0.05)?;
            for _ in 0..5 {
                let logits = tuned.forward(&idx)?;
                opt.backward_step(&candle_nn::loss::cross_entropy(&logits.reshape((12, 7))?, &y.flatten_all()?)?)?;
            }
            let after: Vec<Vec<f32>> =
                base_vars.all_vars().iter().map(|v| v.flatten_all()?.to_vec1()).collect::<Result<_>>()?;
            assert_eq!(before, after, "the base model must not change");
            let unmerged = tuned.forward(&idx)?;
            assert!(
                (&unmerged - gpt.forward(&idx)?)?.abs()?.max_all()?.to_scalar::<f32>()? > 1e-3,
                "{targets:?} learned"
            );
            tuned.set_lora_merged(true)?;
            let merged = tuned.forward(&idx)?;
            assert!((merged - &unmerged)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-5);
            tuned.set_lora_merged(false)?;
            assert_eq!((tuned.forward(&idx)? - &unmerged)?.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
        }
        Ok(())
    }

    /// The stored model is the one whose SHA-256 is recorded; a missing or changed file says what to do.
    #[test]
    fn the_stored_pretrained_model_is_checked() -> crate::Result<()> {
        let path = PretrainedGpt::models_dir().join(CHAR_SHAKESPEARE_FILE);
        assert_eq!(crate::data::download::sha256_file(&path)?, CHAR_SHAKESPEARE_SHA256);
        let vocab = CharVocab::new("ab");
        let cfg = GptConfig { vocab_size: 2, ..tiny() };
        let tmp = tempfile::tempdir().unwrap();
        let missing = PretrainedGpt::load(tmp.path().join("none.safetensors"), "00", cfg, vocab.clone()).unwrap_err();
        assert!(missing.to_string().contains("pretrain_char_gpt"), "{missing}");
        let other = tmp.path().join("other.safetensors");
        std::fs::write(&other, b"not a model").unwrap();
        let changed = PretrainedGpt::load(other, CHAR_SHAKESPEARE_SHA256, cfg, vocab).unwrap_err();
        assert!(changed.to_string().contains("checksum mismatch"), "{changed}");
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
