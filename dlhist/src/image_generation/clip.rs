//! # Learning Transferable Visual Models From Natural Language Supervision (CLIP)
//!
//! A. Radford, J. W. Kim, C. Hallacy, A. Ramesh, G. Goh, S. Agarwal, G. Sastry, A. Askell, P. Mishkin, J. Clark,
//! G. Krueger and I. Sutskever, ICML 2021, <https://arxiv.org/abs/2103.00020>.
//!
//! Two encoders, one for images and one for text, are trained so that an image and its own caption land close
//! together in one shared space and far from the other captions of the batch. For a batch of `N` pairs, with
//! `f` the image encoder, `g` the text encoder, `W_i`, `W_t` linear projections and `t` a learned temperature
//! (the paper's Figure 3):
//!
//! ```text
//! I = normalize(W_i f(images))        T = normalize(W_t g(captions))          (each row of length 1)
//! L = e^t · I Tᵀ                                                              (N × N cosine similarities, scaled)
//! loss = ½ [ CE(L, diag) + CE(Lᵀ, diag) ]        (pick the right caption for each image, and the right image for
//!                                                 each caption: cross-entropy against the diagonal, both ways)
//! ```
//!
//! The other `N − 1` captions of the batch are the negatives; nothing says which class an image is. Zero-shot
//! classification then turns class names into prompts ("a picture of a sandal"), embeds them with `g`, and picks
//! the class whose prompt is most similar to the image: the text encoder writes the classifier's weights
//! ([`Clip::class_embeddings`], which averages several prompts per class, the paper's prompt ensembling).
//!
//! The text encoder is CLIP's: a pre-norm Transformer with a causal mask, learned positions, the QuickGELU
//! activation `x·σ(1.702x)`, and the caption read out at its end-of-text token (the token with the largest id).
//! Its parameters carry Hugging Face's names (`text_model.embeddings.token_embedding`,
//! `text_model.encoder.layers.{i}.self_attn.q_proj`, …, `text_projection`, `logit_scale`), which
//! `candle_transformers::models::clip` loads too: a test (`tests/reference_models.rs`)
//! checks both give the same text features and the same scaled logits. The image encoder is a small CNN
//! (the paper's were ResNets and ViTs, far larger): two 3×3 convolution + pooling blocks and a dense layer.
//!
//! The temperature starts at the paper's 0.07 (`t = ln(1/0.07)`) and `e^t` is capped at 100, as in the paper.

use candle_core::{DType, IndexOp, Module, Result, Tensor, D};
use candle_nn::{Init, VarBuilder, VarMap};

use crate::data::captions::{CaptionStyle, CaptionedImages, WordTokenizer};
use crate::data::Dataset;
use crate::layers::{cross_entropy, Activation, ConvBlock, Dense, MaxPool2d};
use crate::optimization::{LayerNorm, WeightDecay};
use crate::rng::Rng;
use crate::transformers::attention::{KeyMask, MultiHeadAttention};

/// The paper's starting temperature, 0.07: the logits start as cosine similarities ÷ 0.07.
pub const INIT_TEMPERATURE: f64 = 0.07;
/// The cap on the logit scale `e^t` (the paper's 100), so training cannot make the softmax arbitrarily sharp.
pub const MAX_LOGIT_SCALE: f64 = 100.0;

/// Sizes of a [`Clip`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipConfig {
    /// Word ids the text encoder knows ([`WordTokenizer::vocab_size`]).
    pub vocab: usize,
    /// Ids per caption ([`WordTokenizer::context`]).
    pub context: usize,
    /// Width of the text Transformer.
    pub text_width: usize,
    /// Its layers.
    pub text_layers: usize,
    /// Its attention heads.
    pub text_heads: usize,
    /// Channels of the image encoder's two convolutions.
    pub channels: (usize, usize),
    /// Width of the image encoder's dense layer.
    pub image_width: usize,
    /// Dimension of the shared embedding space.
    pub embed: usize,
}

impl ClipConfig {
    /// The notebook's model: a 2-layer, 64-wide, 4-head text Transformer, convolutions of 32 and 64 channels,
    /// a 128-wide image feature, a 64-dimensional shared space.
    pub fn small(vocab: usize, context: usize) -> Self {
        ClipConfig {
            vocab,
            context,
            text_width: 64,
            text_layers: 2,
            text_heads: 4,
            channels: (32, 64),
            image_width: 128,
            embed: 64,
        }
    }
}

/// `x · σ(1.702 x)`: the sigmoid approximation of GELU that CLIP's text encoder was trained with.
fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    x * candle_nn::ops::sigmoid(&(x * 1.702)?)?
}

/// One pre-norm layer of the text encoder: `x + Attn(LN₁ x)`, then `x + fc₂(QuickGELU(fc₁(LN₂ x)))`, with the
/// causal mask (position `i` reads positions `≤ i`: the end-of-text token has read the whole caption).
#[derive(Debug, Clone)]
pub struct TextLayer {
    layer_norm1: LayerNorm,
    attn: MultiHeadAttention,
    layer_norm2: LayerNorm,
    fc1: Dense,
    fc2: Dense,
}

impl TextLayer {
    /// A layer of width `width` with `heads` heads, at `vb` (Hugging Face's names: `layer_norm1`,
    /// `self_attn.{q,k,v,out}_proj`, `layer_norm2`, `mlp.fc1`, `mlp.fc2`); the MLP is 4× as wide, as CLIP's.
    pub fn new(width: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"];
        Ok(TextLayer {
            layer_norm1: LayerNorm::with_eps(width, 1e-5, vb.pp("layer_norm1"))?,
            attn: MultiHeadAttention::with_names(width, heads, vb.clone(), names)?,
            layer_norm2: LayerNorm::with_eps(width, 1e-5, vb.pp("layer_norm2"))?,
            fc1: Dense::new(width, 4 * width, None, vb.pp("mlp.fc1"))?,
            fc2: Dense::new(4 * width, width, None, vb.pp("mlp.fc2"))?,
        })
    }
}

impl Module for TextLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.layer_norm1.forward(x)?;
        let x = (x + self.attn.forward(&h, &h, &KeyMask::causal())?)?;
        let h = quick_gelu(&self.fc1.forward(&self.layer_norm2.forward(&x)?)?)?;
        x + self.fc2.forward(&h)?
    }
}

/// CLIP's text encoder: ids `[B, T]` to one feature per caption `[B, width]`, read at the end-of-text token.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    token_embedding: Tensor,
    position_embedding: Tensor,
    layers: Vec<TextLayer>,
    final_layer_norm: LayerNorm,
}

impl TextEncoder {
    /// The encoder of `cfg`'s sizes at `vb` (`embeddings.token_embedding`, `embeddings.position_embedding`,
    /// `encoder.layers.{i}`, `final_layer_norm`); embeddings start from N(0, 0.02²) and N(0, 0.01²), as CLIP's.
    pub fn new(cfg: &ClipConfig, vb: VarBuilder) -> Result<Self> {
        let w = cfg.text_width;
        let e = vb.pp("embeddings");
        let randn = |stdev| Init::Randn { mean: 0.0, stdev };
        Ok(TextEncoder {
            token_embedding: e.get_with_hints((cfg.vocab, w), "token_embedding.weight", randn(0.02))?,
            position_embedding: e.get_with_hints((cfg.context, w), "position_embedding.weight", randn(0.01))?,
            layers: (0..cfg.text_layers)
                .map(|i| TextLayer::new(w, cfg.text_heads, vb.pp(format!("encoder.layers.{i}"))))
                .collect::<Result<_>>()?,
            final_layer_norm: LayerNorm::with_eps(w, 1e-5, vb.pp("final_layer_norm"))?,
        })
    }

    /// Every position's output `[B, T, width]` (after the final layer norm).
    pub fn hidden_states(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let (ctx, w) = self.position_embedding.dims2()?;
        if t > ctx {
            candle_core::bail!("TextEncoder: captions of {t} ids, but the encoder has {ctx} positions")
        }
        let tokens = self.token_embedding.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, w))?;
        let mut x = tokens.broadcast_add(&self.position_embedding.i(..t)?)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        self.final_layer_norm.forward(&x)
    }
}

impl Module for TextEncoder {
    /// The output at each caption's end-of-text token (its largest id), `[B, width]`.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let h = self.hidden_states(ids)?;
        let (b, t, w) = h.dims3()?;
        let at = ids.argmax(D::Minus1)?.to_dtype(DType::U32)?; // [B]
                                                               // Row b·T + at[b] of the flattened states.
        let rows = (Tensor::arange(0u32, b as u32, ids.device())? * t as f64)?.add(&at)?;
        h.reshape((b * t, w))?.index_select(&rows, 0)
    }
}

/// The image encoder: two 3×3 convolution, ReLU and 2×2 max-pool blocks, then a dense ReLU layer: `[B, 1, 28, 28]`
/// to `[B, image_width]`.
#[derive(Debug, Clone)]
pub struct ImageEncoder {
    conv1: ConvBlock,
    conv2: ConvBlock,
    dense: Dense,
}

impl ImageEncoder {
    /// The encoder of `cfg`'s sizes at `vb` (`conv1`, `conv2`, `dense`).
    pub fn new(cfg: &ClipConfig, vb: VarBuilder) -> Result<Self> {
        let (c1, c2) = cfg.channels;
        let relu = Some(Activation::Relu);
        Ok(ImageEncoder {
            conv1: ConvBlock::new(1, c1, 3, 1, relu, vb.pp("conv1"))?,
            conv2: ConvBlock::new(c1, c2, 3, 1, relu, vb.pp("conv2"))?,
            dense: Dense::new(c2 * 7 * 7, cfg.image_width, relu, vb.pp("dense"))?,
        })
    }
}

impl Module for ImageEncoder {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 || x.dims()[1..] != [1, 28, 28] {
            candle_core::bail!("ImageEncoder expects images [B, 1, 28, 28]; got {:?}", x.dims())
        }
        let h = self.conv1.forward_pool(x, MaxPool2d::new(2))?;
        let h = self.conv2.forward_pool(&h, MaxPool2d::new(2))?;
        self.dense.forward(&h.flatten_from(1)?)
    }
}

/// Rows of `x` scaled to length 1.
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    x.broadcast_div(&x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)
}

/// The symmetric contrastive loss of the module docs, for logits `[N, N]` whose diagonal holds the matching
/// pairs: the mean of the cross-entropy of each row (image → captions) and of each column (caption → images).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::image_generation::clip::contrastive_loss;
/// let dev = Device::Cpu;
/// let sure = Tensor::new(&[[20f32, 0.0], [0.0, 20.0]], &dev)?; // each image picks its own caption
/// assert!(contrastive_loss(&sure)?.to_scalar::<f32>()? < 1e-6);
/// let unsure = Tensor::zeros((4, 4), DType::F32, &dev)?; // all alike: ln 4 either way
/// assert!((contrastive_loss(&unsure)?.to_scalar::<f32>()? - 4f32.ln()).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn contrastive_loss(logits: &Tensor) -> Result<Tensor> {
    let (n, m) = logits.dims2()?;
    if n != m {
        candle_core::bail!("contrastive_loss needs square logits (N images × N captions); got {:?}", logits.dims())
    }
    let diag = Tensor::arange(0u32, n as u32, logits.device())?;
    let rows = cross_entropy(logits, &diag)?;
    let cols = cross_entropy(&logits.t()?.contiguous()?, &diag)?;
    (rows + cols)? * 0.5
}

/// CLIP: the two encoders, their projections into the shared space, and the learned temperature.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::data::captions::WordTokenizer;
/// use dlhist::image_generation::clip::{Clip, ClipConfig};
/// let dev = Device::Cpu;
/// let tok = WordTokenizer::captions(12);
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let clip = Clip::new(ClipConfig::small(tok.vocab_size(), tok.context()), vb)?;
/// let images = Tensor::zeros((2, 1, 28, 28), DType::F32, &dev)?;
/// let ids = tok.encode_batch(&["a dark coat", "a picture of a bag"], &dev)?;
/// let logits = clip.logits(&clip.image_embeddings(&images)?, &clip.text_embeddings(&ids)?)?;
/// assert_eq!(logits.dims(), &[2, 2]);
/// assert!((clip.logit_scale()? - 1.0 / 0.07).abs() < 1e-3); // the paper's starting temperature
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Clip {
    image: ImageEncoder,
    text: TextEncoder,
    visual_projection: Dense,
    text_projection: Dense,
    log_scale: Tensor,
    config: ClipConfig,
}

impl Clip {
    /// A CLIP of `cfg`'s sizes at `vb`'s root: `image_model`, `text_model`, `visual_projection`,
    /// `text_projection` (both without bias) and `logit_scale` (starting at `ln(1/0.07)`).
    pub fn new(config: ClipConfig, vb: VarBuilder) -> Result<Self> {
        let proj = |fan_in, name: &str| -> Result<Dense> {
            Ok(Dense::from_linear(candle_nn::linear_no_bias(fan_in, config.embed, vb.pp(name))?, None))
        };
        let start = Init::Const((1.0 / INIT_TEMPERATURE).ln());
        Ok(Clip {
            image: ImageEncoder::new(&config, vb.pp("image_model"))?,
            text: TextEncoder::new(&config, vb.pp("text_model"))?,
            visual_projection: proj(config.image_width, "visual_projection")?,
            text_projection: proj(config.text_width, "text_projection")?,
            log_scale: vb.get_with_hints((), "logit_scale", start)?,
            config,
        })
    }

    /// The sizes.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The text encoder.
    pub fn text_encoder(&self) -> &TextEncoder {
        &self.text
    }

    /// `W_t g(ids)`: unnormalized text features `[B, embed]` (what `get_text_features` returns in Hugging Face).
    pub fn text_features(&self, ids: &Tensor) -> Result<Tensor> {
        self.text_projection.forward(&self.text.forward(ids)?)
    }

    /// `W_i f(images)`: unnormalized image features `[B, embed]`.
    pub fn image_features(&self, images: &Tensor) -> Result<Tensor> {
        self.visual_projection.forward(&self.image.forward(images)?)
    }

    /// Text embeddings: normalized text features `[B, embed]`.
    pub fn text_embeddings(&self, ids: &Tensor) -> Result<Tensor> {
        normalize(&self.text_features(ids)?)
    }

    /// Image embeddings: normalized image features `[B, embed]`.
    pub fn image_embeddings(&self, images: &Tensor) -> Result<Tensor> {
        normalize(&self.image_features(images)?)
    }

    /// Image embeddings of many images, in batches of 500, without gradients: `[N, embed]`.
    pub fn embed_images(&self, images: &Tensor) -> Result<Tensor> {
        let n = images.dim(0)?;
        let parts = (0..n)
            .step_by(500)
            .map(|s| self.image_embeddings(&images.narrow(0, s, 500.min(n - s))?).map(|e| e.detach()))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }

    /// The logit scale `e^t`, capped at [`MAX_LOGIT_SCALE`], as a tensor (part of the graph: `t` is learned).
    fn scale(&self) -> Result<Tensor> {
        self.log_scale.minimum(MAX_LOGIT_SCALE.ln())?.exp()
    }

    /// The current logit scale `e^t` (1 ÷ the temperature).
    pub fn logit_scale(&self) -> Result<f64> {
        self.scale()?.to_dtype(DType::F64)?.to_scalar::<f64>()
    }

    /// `e^t · images textsᵀ`: scaled cosine similarities `[N_images, N_texts]` of normalized embeddings.
    pub fn logits(&self, images: &Tensor, texts: &Tensor) -> Result<Tensor> {
        images.matmul(&texts.t()?)?.broadcast_mul(&self.scale()?)
    }

    /// The contrastive loss of a batch of images `[N, 1, 28, 28]` and their captions' ids `[N, T]`.
    pub fn loss(&self, images: &Tensor, ids: &Tensor) -> Result<Tensor> {
        contrastive_loss(&self.logits(&self.image_embeddings(images)?, &self.text_embeddings(ids)?)?)
    }

    /// One embedding per class: each class's prompts embedded, averaged, and normalized again (the paper's
    /// prompt ensembling, done in embedding space); `prompts[k]` are class `k`'s texts. `[K, embed]`.
    pub fn class_embeddings<S: AsRef<str>>(&self, tok: &WordTokenizer, prompts: &[Vec<S>]) -> crate::Result<Tensor> {
        let dev = self.log_scale.device();
        let mut rows = vec![];
        for (k, texts) in prompts.iter().enumerate() {
            if texts.is_empty() {
                return Err(crate::Error::Invalid(format!("class {k} has no prompt")));
            }
            let e = self.text_embeddings(&tok.encode_batch(texts, dev)?)?.detach();
            rows.push(normalize(&e.mean_keepdim(0)?)?);
        }
        Ok(Tensor::cat(&rows, 0)?)
    }

    /// Zero-shot predictions: for each image embedding `[N, embed]`, the class whose embedding `[K, embed]` is
    /// most similar.
    pub fn classify(image_embeddings: &Tensor, class_embeddings: &Tensor) -> Result<Vec<u32>> {
        image_embeddings.matmul(&class_embeddings.t()?)?.argmax(D::Minus1)?.to_vec1::<u32>()
    }

    /// Trains on `data` for `steps` steps of `cfg.batch` images, each with a fresh caption, with AdamW (decoupled
    /// weight decay `cfg.weight_decay`, none on the temperature) under a cosine-decaying learning rate. Calls
    /// `probe(step, loss)` after every step. Returns the loss of every step.
    pub fn train(
        &self,
        vars: &VarMap,
        data: &CaptionedImages,
        tok: &WordTokenizer,
        cfg: &ClipTraining,
        mut probe: impl FnMut(usize, f64) -> crate::Result<()>,
    ) -> crate::Result<Vec<f64>> {
        use candle_nn::Optimizer;
        let dev = data.images.device();
        let rows = Dataset::new(data.images.clone(), Tensor::arange(0u32, data.len() as u32, dev)?)?;
        let (scale_var, rest): (Vec<_>, Vec<_>) =
            vars.all_vars().into_iter().partition(|v| v.as_tensor().id() == self.log_scale.id());
        let adam = |vars, wd| {
            crate::optimization::Adam::new(
                vars,
                crate::optimization::AdamConfig::new(cfg.lr).weight_decay(WeightDecay::Decoupled(wd)),
            )
        };
        let (mut opt, mut opt_scale) = (adam(rest, cfg.weight_decay)?, adam(scale_var, 0.0)?);
        let schedule = crate::optim::CosineAnnealing::new(cfg.lr, 0.0, cfg.steps)?;
        let mut rng = Rng::new(cfg.seed).fork("captions");
        let mut losses = Vec::with_capacity(cfg.steps);
        crate::train::for_batches(&rows, cfg.steps, cfg.batch, cfg.seed, |step, x, y| {
            let picked: Vec<u32> = y.to_vec1()?;
            let ids = tok.encode_batch(&data.captions(&picked, cfg.style, &mut rng), dev)?;
            let loss = self.loss(x, &ids)?;
            let grads = loss.backward()?;
            for o in [&mut opt, &mut opt_scale] {
                crate::optim::apply_schedule(o, &schedule, step - 1);
                o.step(&grads)?;
            }
            let l = crate::train::scalar(&loss)?;
            if !l.is_finite() {
                return Err(crate::Error::Invalid(format!("CLIP training diverged at step {step} (loss {l})")));
            }
            losses.push(l);
            probe(step, l)
        })?;
        Ok(losses)
    }
}

/// Settings of [`Clip::train`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipTraining {
    /// Optimizer steps.
    pub steps: usize,
    /// Image-caption pairs per batch (each batch's other captions are its negatives).
    pub batch: usize,
    /// Peak learning rate (cosine decay to 0 over `steps`).
    pub lr: f64,
    /// AdamW's decoupled weight decay (not applied to the temperature).
    pub weight_decay: f64,
    /// Seeds the batch order and the captions.
    pub seed: u64,
    /// How captions name their items.
    pub style: CaptionStyle,
}

impl Default for ClipTraining {
    /// 1 000 steps of 256 pairs, learning rate 2·10⁻³, weight decay 0.1, seed 0, default captions.
    fn default() -> Self {
        ClipTraining { steps: 1000, batch: 256, lr: 2e-3, weight_decay: 0.1, seed: 0, style: CaptionStyle::default() }
    }
}

/// A linear probe: multinomial logistic regression from `features` `[N, D]` to `labels` (`classes` of them),
/// trained full-batch with Adam (learning rate 0.01, `steps` steps) and an L2 penalty `l2 · ‖W‖²` on the
/// weights; the paper's Figure 6 compares zero-shot CLIP with such probes trained on k examples per class.
/// Returns the classifier.
pub fn linear_probe(
    features: &Tensor,
    labels: &[u32],
    classes: usize,
    steps: usize,
    l2: f64,
    seed: u64,
) -> crate::Result<Dense> {
    use candle_nn::Optimizer;
    let (n, d) = features.dims2()?;
    if n != labels.len() {
        return Err(crate::Error::Invalid(format!("linear_probe: {n} feature rows but {} labels", labels.len())));
    }
    let (vars, vb) = crate::init::seeded(seed, DType::F32, features.device());
    let probe = Dense::new(d, classes, None, vb)?;
    let y = Tensor::new(labels, features.device())?;
    let weight = probe.linear().weight().clone();
    let mut opt = crate::optimization::Adam::new(vars.all_vars(), crate::optimization::AdamConfig::new(0.01))?;
    for _ in 0..steps {
        let loss = (cross_entropy(&probe.forward(features)?, &y)? + (weight.sqr()?.sum_all()? * l2)?)?;
        opt.backward_step(&loss)?;
    }
    Ok(probe)
}

/// The fraction of `predicted` equal to `labels`.
pub fn agreement(predicted: &[u32], labels: &[u32]) -> f64 {
    let hits = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    hits as f64 / labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::captions::{Measures, Tertiles};
    use candle_core::Device;

    fn tiny(dev: &Device, seed: u64) -> (VarMap, Clip, WordTokenizer) {
        let tok = WordTokenizer::captions(12);
        let (vars, vb) = crate::init::seeded(seed, DType::F32, dev);
        let cfg = ClipConfig {
            channels: (4, 8),
            image_width: 16,
            text_width: 16,
            embed: 8,
            ..ClipConfig::small(tok.vocab_size(), 12)
        };
        (vars, Clip::new(cfg, vb).unwrap(), tok)
    }

    #[test]
    fn text_feature_is_read_at_the_end_of_text_token_and_ignores_what_follows() {
        let dev = Device::Cpu;
        let (_v, clip, tok) = tiny(&dev, 1);
        let a = tok.encode_batch(&["a dark coat"], &dev).unwrap();
        let mut b: Vec<u32> = a.i(0).unwrap().to_vec1().unwrap();
        b[6] = 5; // a word after the end-of-text marker: the causal mask hides it from the marker
        let b = Tensor::new(b.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
        let (fa, fb) = (clip.text_features(&a).unwrap(), clip.text_features(&b).unwrap());
        let diff = (fa - fb).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6, "{diff}");
        let c = tok.encode_batch(&["a light coat"], &dev).unwrap();
        let fc = clip.text_features(&c).unwrap();
        let d = (clip.text_features(&a).unwrap() - fc).unwrap().abs().unwrap().max_all().unwrap();
        assert!(d.to_scalar::<f32>().unwrap() > 1e-4, "a different word changes the feature");
    }

    #[test]
    fn fused_attention_path_matches_the_plain_one() {
        // The text layers go through MultiHeadAttention, whose fused CPU path is tested against the plain one
        // in transformers::attention; here the whole encoder is compared with the fused kernels off.
        let dev = Device::Cpu;
        let (_v, clip, tok) = tiny(&dev, 2);
        let ids = tok.encode_batch(&["a photo of a wide bag", "look at a tee"], &dev).unwrap();
        let fused = clip.text_features(&ids).unwrap();
        let plain = crate::fast::plain(|| clip.text_features(&ids)).unwrap();
        let d = (fused - plain).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{d}");
    }

    #[test]
    fn training_on_two_classes_learns_their_names() {
        // Trousers and sneakers only: after 100 steps the names alone sort held-back images of the two.
        let dev = Device::Cpu;
        let data = crate::data::fashion_mnist().unwrap().test;
        let t = Tertiles::fit(&Measures::of(&data.x.narrow(0, 0, 1000).unwrap()).unwrap()).unwrap();
        let all =
            CaptionedImages::new(data.x.clone(), data.y.to_vec1().unwrap(), &t).unwrap().of_classes(&[1, 7]).unwrap();
        let (train, test) = (
            all.select(&(0..1600).collect::<Vec<_>>()).unwrap(),
            all.select(&(1600..2000).collect::<Vec<_>>()).unwrap(),
        );
        let (vars, clip, tok) = tiny(&dev, 3);
        let cfg = ClipTraining { steps: 100, batch: 64, lr: 3e-3, ..Default::default() };
        let prompts: Vec<Vec<String>> = [1usize, 7]
            .iter()
            .map(|&k| {
                vec![crate::data::captions::fill_template(
                    "look at {}",
                    &[],
                    crate::data::captions::CLASS_WORDS[k].0[0],
                )]
            })
            .collect();
        let labels: Vec<u32> = test.labels.iter().map(|&l| u32::from(l == 7)).collect();
        let zero_shot = |clip: &Clip| {
            let pred = Clip::classify(
                &clip.embed_images(&test.images).unwrap(),
                &clip.class_embeddings(&tok, &prompts).unwrap(),
            )
            .unwrap();
            agreement(&pred, &labels)
        };
        let before = zero_shot(&clip);
        let losses = clip.train(&vars, &train, &tok, &cfg, |_, _| Ok(())).unwrap();
        let (first, last) = (losses[..5].iter().sum::<f64>() / 5.0, losses[95..].iter().sum::<f64>() / 5.0);
        assert!(last < first - 0.5, "loss {first} → {last}");
        let after = zero_shot(&clip);
        assert!(after > 0.9 && after > before + 0.2, "zero-shot accuracy {before} → {after} (chance 0.5)");
        // Seeded: the same run gives the same losses.
        let (vars2, clip2, _) = tiny(&dev, 3);
        assert_eq!(clip2.train(&vars2, &train, &tok, &cfg, |_, _| Ok(())).unwrap(), losses);
    }

    #[test]
    fn logit_scale_is_capped_and_contrastive_loss_checks_shapes() {
        let dev = Device::Cpu;
        let (_v, clip, _) = tiny(&dev, 4);
        let big = Tensor::new(10f32, &dev).unwrap();
        let capped = Clip { log_scale: big, ..clip };
        assert!((capped.logit_scale().unwrap() - 100.0).abs() < 1e-3);
        let err = contrastive_loss(&Tensor::zeros((2, 3), DType::F32, &dev).unwrap()).unwrap_err().to_string();
        assert!(err.contains("[2, 3]"), "{err}");
    }

    #[test]
    fn linear_probe_separates_separable_features() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1f32, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], &dev).unwrap();
        let probe = linear_probe(&x, &[0, 0, 1, 1], 2, 200, 1e-4, 0).unwrap();
        let pred: Vec<u32> = probe.forward(&x).unwrap().argmax(D::Minus1).unwrap().to_vec1().unwrap();
        assert_eq!(pred, vec![0, 0, 1, 1]);
        assert!(linear_probe(&x, &[0, 1], 2, 1, 0.0, 0).unwrap_err().to_string().contains("4 feature rows but 2"));
    }
}
