//! # DALL-E: a discrete VAE and a transformer over text and image tokens; DALL-E 2: images from CLIP embeddings
//!
//! A. Ramesh, M. Pavlov, G. Goh, S. Gray, C. Voss, A. Radford, M. Chen and I. Sutskever, *Zero-Shot Text-to-Image
//! Generation*, ICML 2021, <https://arxiv.org/abs/2102.12092>; A. Ramesh, P. Dhariwal, A. Nichol, C. Chu and M. Chen,
//! *Hierarchical Text-Conditional Image Generation with CLIP Latents*, 2022, <https://arxiv.org/abs/2204.06125>.
//!
//! **DALL-E** turns an image into a grid of discrete tokens with a discrete VAE ([`DiscreteVae`], stage 1), then
//! trains one autoregressive transformer on the caption's tokens followed by the image's tokens ([`TextToImage`],
//! stage 2); generating an image is continuing a caption. The dVAE's encoder outputs logits over `K` codes at each
//! grid position; sampling a code has no gradient, so training replaces the one-hot sample by the Gumbel-softmax
//! relaxation (Jang et al. 2016; Maddison et al. 2016), with temperature `τ` annealed towards 1/16 (the paper's):
//!
//! ```text
//! y_k = exp((ℓ_k + g_k) / τ) / Σ_j exp((ℓ_j + g_j) / τ),   g_k = −log(−log u_k),  u_k ~ U(0, 1)
//! loss = −E[log p(x | y)] + β · KL(q(z | x) ‖ uniform over K)        (per image; the paper's β reached 6.6)
//! ```
//!
//! `argmax_k (ℓ_k + g_k)` is an exact sample of `softmax(ℓ)`; the relaxation softens that argmax, and as `τ → 0` it
//! becomes one-hot. The decoder reads `y` through a codebook (`E y`, a 1×1 convolution), so a hard one-hot picks one
//! code vector per position, as in a VQ-VAE. The transformer's loss weighs the caption's tokens 1/8 and the image's
//! 7/8, as the paper's.
//!
//! **DALL-E 2** ("unCLIP") generates in CLIP's embedding space: a *prior* maps a caption's CLIP text embedding to a
//! CLIP image embedding, and a *decoder* (a diffusion model) maps that image embedding to pixels. The diffusion
//! prior predicts the clean embedding directly ([`crate::image_generation::diffusion::Parameterization::Start`]);
//! the decoder adds the projected embedding to its time embedding
//! ([`crate::image_generation::diffusion::UNet::conditioned`]) and is sampled with classifier-free guidance
//! ([`crate::image_generation::diffusion::Guided`]). Encoding an image with CLIP and decoding its embedding with
//! fresh noise gives *variations*: images that keep what CLIP saw and change the rest. [`EmbeddingPrior`] is the
//! prior's network here.

use candle_core::{DType, IndexOp, Module, Result, Tensor, D};
use candle_nn::{Optimizer, VarBuilder, VarMap};

use super::diffusion::{timestep_embedding, ConditionalDenoiser};
use crate::layers::{cross_entropy, softplus, upsample_nearest2d, Activation, ConvBlock, Dense, MaxPool2d};
use crate::rng::Rng;
use crate::train::scalar;
use crate::transformers::sampling::Sampling;
use crate::transformers::{Gpt, GptConfig, KvCache};

/// The Gumbel-softmax relaxation of a sample from `softmax(logits)` along dimension `dim`, at temperature `tau`,
/// with the Gumbel noise drawn from `rng` (written out: candle's own sampler has no gradient).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::image_generation::dalle::gumbel_softmax;
/// let logits = Tensor::new(&[[0f32, 1.0, 2.0]], &Device::Cpu)?;
/// let y = gumbel_softmax(&logits, 0.5, 1, &mut Rng::new(0))?;
/// let row: Vec<f32> = y.flatten_all()?.to_vec1()?;
/// assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5); // a point of the simplex
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn gumbel_softmax(logits: &Tensor, tau: f64, dim: usize, rng: &mut Rng) -> crate::Result<Tensor> {
    if tau <= 0.0 {
        return Err(crate::Error::Invalid(format!("gumbel_softmax: the temperature must be positive, got {tau}")));
    }
    let u = rng.uniform_tensor(logits.shape(), 1e-10, 1.0 - 1e-7, logits.device())?;
    let g = u.log()?.neg()?.log()?.neg()?; // −log(−log u)
    Ok(candle_nn::ops::softmax(&((logits + g)? / tau)?, dim)?)
}

/// The temperature at `step` of `steps` when annealing exponentially from `start` to `end`.
///
/// ```
/// use dlhist::image_generation::dalle::annealed_tau;
/// assert_eq!(annealed_tau(0, 100, 1.0, 1.0 / 16.0), 1.0);
/// assert!((annealed_tau(100, 100, 1.0, 1.0 / 16.0) - 0.0625).abs() < 1e-12);
/// assert!((annealed_tau(50, 100, 1.0, 1.0 / 16.0) - 0.25).abs() < 1e-12); // halfway in log scale
/// ```
pub fn annealed_tau(step: usize, steps: usize, start: f64, end: f64) -> f64 {
    let frac = step.min(steps) as f64 / steps.max(1) as f64;
    start * (end / start).powf(frac)
}

/// Sizes of a [`DiscreteVae`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiscreteVaeConfig {
    /// Codes `K` at each position of the 7×7 grid.
    pub codes: usize,
    /// Dimension of each code's vector in the codebook.
    pub code_dim: usize,
    /// Channels of the inner convolutions.
    pub channels: usize,
    /// Weight `β` of the KL term.
    pub beta: f64,
}

impl DiscreteVaeConfig {
    /// `K` = 64 codes of dimension 32, 64 channels, `β` = 1.
    pub fn small() -> Self {
        DiscreteVaeConfig { codes: 64, code_dim: 32, channels: 64, beta: 1.0 }
    }
}

/// The terms of the dVAE's loss on a batch, each a mean per image.
#[derive(Debug, Clone)]
pub struct DvaeLoss {
    /// `recon + β · kl`, the tensor to differentiate.
    pub loss: Tensor,
    /// Reconstruction: the Bernoulli negative log-likelihood of the grey pixels, in nats per image.
    pub recon: f64,
    /// KL of the encoder's distribution from the uniform prior, in nats per image (at most 49 ln K).
    pub kl: f64,
}

/// DALL-E's stage 1 for 28×28 images: a 7×7 grid of tokens, each one of `K` codes.
///
/// ```text
/// encoder: conv3 1→C/2, pool → conv3 C/2→C, pool → conv1 C→K        (logits [B, K, 7, 7])
/// decoder: conv1 K→d (the codebook) → conv3 d→C, up → conv3 C→C/2, up → conv3 C/2→1 (pixel logits)
/// ```
///
/// Parameters `enc1`, `enc2`, `enc_out`, `codebook`, `dec1`, `dec2`, `dec_out`.
#[derive(Debug, Clone)]
pub struct DiscreteVae {
    enc1: ConvBlock,
    enc2: ConvBlock,
    enc_out: ConvBlock,
    codebook: ConvBlock,
    dec1: ConvBlock,
    dec2: ConvBlock,
    dec_out: ConvBlock,
    config: DiscreteVaeConfig,
}

impl DiscreteVae {
    /// A dVAE of `config`'s sizes at `vb`.
    pub fn new(config: DiscreteVaeConfig, vb: VarBuilder) -> Result<Self> {
        let (c, k, d) = (config.channels, config.codes, config.code_dim);
        let relu = Some(Activation::Relu);
        Ok(DiscreteVae {
            enc1: ConvBlock::new(1, c / 2, 3, 1, relu, vb.pp("enc1"))?,
            enc2: ConvBlock::new(c / 2, c, 3, 1, relu, vb.pp("enc2"))?,
            enc_out: ConvBlock::new(c, k, 1, 0, None, vb.pp("enc_out"))?,
            codebook: ConvBlock::new(k, d, 1, 0, None, vb.pp("codebook"))?,
            dec1: ConvBlock::new(d, c, 3, 1, relu, vb.pp("dec1"))?,
            dec2: ConvBlock::new(c, c / 2, 3, 1, relu, vb.pp("dec2"))?,
            dec_out: ConvBlock::new(c / 2, 1, 3, 1, None, vb.pp("dec_out"))?,
            config,
        })
    }

    /// The sizes.
    pub fn config(&self) -> &DiscreteVaeConfig {
        &self.config
    }

    /// The encoder's logits over the codes, `[B, K, 7, 7]`, for images `[B, 1, 28, 28]` in `[0, 1]`.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() != 4 || x.dims()[1..] != [1, 28, 28] {
            candle_core::bail!("DiscreteVae expects images [B, 1, 28, 28]; got {:?}", x.dims())
        }
        let h = self.enc1.forward_pool(x, MaxPool2d::new(2))?;
        let h = self.enc2.forward_pool(&h, MaxPool2d::new(2))?;
        self.enc_out.forward(&h)
    }

    /// Pixel logits `[B, 1, 28, 28]` from (soft or one-hot) code weights `y` `[B, K, 7, 7]`.
    pub fn decode_weights(&self, y: &Tensor) -> Result<Tensor> {
        let h = upsample_nearest2d(&self.dec1.forward(&self.codebook.forward(y)?)?, 14, 14)?;
        let h = upsample_nearest2d(&self.dec2.forward(&h)?, 28, 28)?;
        self.dec_out.forward(&h)
    }

    /// The negative evidence lower bound (its two terms and their weighted sum) of images `x` in `[0, 1]`, with the
    /// codes relaxed at temperature `tau`.
    pub fn loss(&self, x: &Tensor, tau: f64, rng: &mut Rng) -> crate::Result<DvaeLoss> {
        let b = x.dim(0)?;
        let logits = self.logits(x)?;
        let y = gumbel_softmax(&logits, tau, 1, rng)?;
        let px = self.decode_weights(&y)?;
        // Bernoulli log-likelihood of grey values: x log σ(l) + (1 − x) log(1 − σ(l)) = x l − softplus(l).
        let recon = (softplus(&px)? - (x * &px)?)?.sum_all()?.affine(1.0 / b as f64, 0.0)?;
        // KL(q ‖ uniform) = Σ_k q_k (log q_k + log K), summed over the 49 positions.
        let log_q = candle_nn::ops::log_softmax(&logits, 1)?;
        let k = self.config.codes as f64;
        let kl = (log_q.exp()? * (log_q + k.ln())?)?.sum_all()?.affine(1.0 / b as f64, 0.0)?;
        let loss = (&recon + (&kl * self.config.beta)?)?;
        Ok(DvaeLoss { loss, recon: scalar(&recon)?, kl: scalar(&kl)? })
    }

    /// Each image's most likely code at each position, in raster order: `[B, 49]` u32.
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        self.logits(x)?.argmax(1)?.reshape((b, 49))
    }

    /// Images `[B, 1, 28, 28]` (pixel means in `[0, 1]`) decoded from codes `[B, 49]`.
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let b = codes.dim(0)?;
        let k = self.config.codes;
        let one_hot = candle_nn::encoding::one_hot(codes.flatten_all()?, k, 1f32, 0f32)?; // [B·49, K]
        let y = one_hot.reshape((b, 7, 7, k))?.permute((0, 3, 1, 2))?.contiguous()?;
        candle_nn::ops::sigmoid(&self.decode_weights(&y)?)
    }

    /// Trains with Adam (rate `lr`) for `steps` steps of `batch` images of `data` (`[N, 1, 28, 28]`), annealing
    /// `τ` from 1 to 1/16; calls `probe(step, τ, &loss)` after every step. Returns the loss of every step.
    #[allow(clippy::too_many_arguments)]
    pub fn train(
        &self,
        vars: &VarMap,
        data: &crate::data::Dataset,
        steps: usize,
        batch: usize,
        lr: f64,
        seed: u64,
        mut probe: impl FnMut(usize, f64, &DvaeLoss) -> crate::Result<()>,
    ) -> crate::Result<Vec<f64>> {
        let mut opt = crate::optimization::Adam::new(vars.all_vars(), crate::optimization::AdamConfig::new(lr))?;
        let mut rng = Rng::new(seed).fork("gumbel");
        let mut losses = Vec::with_capacity(steps);
        crate::train::for_batches(data, steps, batch, seed, |step, x, _| {
            let tau = annealed_tau(step - 1, steps, 1.0, 1.0 / 16.0);
            let l = self.loss(x, tau, &mut rng)?;
            opt.backward_step(&l.loss)?;
            let v = scalar(&l.loss)?;
            if !v.is_finite() {
                return Err(crate::Error::Invalid(format!("dVAE training diverged at step {step} (loss {v})")));
            }
            losses.push(v);
            probe(step, tau, &l)
        })?;
        Ok(losses)
    }
}

/// DALL-E's stage 2: a GPT over one stream of tokens, the caption's word ids (`0 .. text_vocab`) followed by its
/// image's 49 codes (shifted to `text_vocab .. text_vocab + K`). Parameters are the [`Gpt`]'s.
#[derive(Debug, Clone)]
pub struct TextToImage {
    gpt: Gpt,
    text_vocab: usize,
    context: usize,
    codes: usize,
}

impl TextToImage {
    /// A transformer of `n_layer` layers, `n_head` heads and width `n_embd` for captions of `context` ids from a
    /// vocabulary of `text_vocab` and images of 49 codes out of `codes`.
    pub fn new(
        text_vocab: usize,
        context: usize,
        codes: usize,
        n_layer: usize,
        n_head: usize,
        n_embd: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let config = GptConfig { vocab_size: text_vocab + codes, block_size: context + 49, n_embd, n_layer, n_head };
        Ok(TextToImage { gpt: Gpt::new(config, vb)?, text_vocab, context, codes })
    }

    /// The combined stream `[B, context + 49]` of captions `text` `[B, context]` and image codes `[B, 49]`.
    pub fn stream(&self, text: &Tensor, codes: &Tensor) -> Result<Tensor> {
        let shifted = (codes.to_dtype(DType::U32)? + self.text_vocab as f64)?;
        Tensor::cat(&[&text.to_dtype(DType::U32)?, &shifted], 1)
    }

    /// `(loss, text loss, image loss)`: next-token cross-entropy over the stream, the caption's positions weighted
    /// 1/8 and the image's 7/8 (the paper's weights).
    pub fn loss(&self, text: &Tensor, codes: &Tensor) -> crate::Result<(Tensor, f64, f64)> {
        let s = self.stream(text, codes)?;
        let (b, n) = s.dims2()?;
        let logits = self.gpt.forward(&s.narrow(1, 0, n - 1)?)?; // [B, n − 1, V]
        let target = s.narrow(1, 1, n - 1)?;
        let v = self.text_vocab + self.codes;
        let ce = |from: usize, len: usize| -> Result<Tensor> {
            let l = logits.narrow(1, from, len)?.reshape((b * len, v))?;
            cross_entropy(&l, &target.narrow(1, from, len)?.flatten_all()?)
        };
        // Targets 0 .. context − 1 are caption tokens; context − 1 .. n − 1 are the 49 image codes.
        let text_loss = ce(0, self.context - 1)?;
        let image_loss = ce(self.context - 1, 49)?;
        let loss = ((&text_loss * 0.125)? + (&image_loss * 0.875)?)?;
        Ok((loss, scalar(&text_loss)?, scalar(&image_loss)?))
    }

    /// For each caption of `text` `[B, context]`, 49 image codes `[B, 49]` drawn one at a time with `sampling`
    /// (only image codes are allowed), reading the caption and the codes so far through the key-value cache.
    pub fn sample(&self, text: &Tensor, sampling: &Sampling, rng: &mut Rng) -> crate::Result<Tensor> {
        let (b, t) = text.dims2()?;
        if t != self.context {
            return Err(crate::Error::Invalid(format!("captions of {t} ids; this model reads {}", self.context)));
        }
        let mut cache = KvCache::new();
        let mut logits = self.gpt.forward_cached(&text.to_dtype(DType::U32)?, &mut cache)?.i((.., t - 1, ..))?;
        let mut codes: Vec<Vec<u32>> = vec![Vec::with_capacity(49); b];
        for pos in 0..49 {
            let rows: Vec<Vec<f32>> = logits.narrow(1, self.text_vocab, self.codes)?.to_vec2()?;
            let next: Vec<u32> = rows.iter().map(|r| sampling.draw(r, rng)).collect::<crate::Result<_>>()?;
            for (c, &n) in codes.iter_mut().zip(&next) {
                c.push(n);
            }
            if pos < 48 {
                let ids: Vec<u32> = next.iter().map(|&n| n + self.text_vocab as u32).collect();
                let ids = Tensor::from_vec(ids, (b, 1), text.device())?;
                logits = self.gpt.forward_cached(&ids, &mut cache)?.i((.., 0, ..))?;
            }
        }
        Ok(Tensor::from_vec(codes.concat(), (b, 49), text.device())?)
    }
}

/// The network of DALL-E 2's diffusion prior here: an MLP from the noisy image embedding `x_t`, the condition
/// (the caption's CLIP text embedding) and the step's sinusoidal features to the clean image embedding
/// ([`crate::image_generation::diffusion::Parameterization::Start`]). The paper's prior is a Transformer; an MLP
/// is enough for one embedding and one condition. Parameters `fc1` … `fc4`.
#[derive(Debug, Clone)]
pub struct EmbeddingPrior {
    layers: Vec<Dense>,
    time_features: usize,
}

impl EmbeddingPrior {
    /// A prior for `dim`-dimensional embeddings with `hidden` units per layer.
    pub fn new(dim: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let time_features = 32;
        let relu = Some(Activation::Relu);
        Ok(EmbeddingPrior {
            layers: vec![
                Dense::new(2 * dim + time_features, hidden, relu, vb.pp("fc1"))?,
                Dense::new(hidden, hidden, relu, vb.pp("fc2"))?,
                Dense::new(hidden, hidden, relu, vb.pp("fc3"))?,
                Dense::new(hidden, dim, None, vb.pp("fc4"))?,
            ],
            time_features,
        })
    }
}

impl ConditionalDenoiser for EmbeddingPrior {
    fn predict_given(&self, x: &Tensor, t: &Tensor, cond: &Tensor) -> Result<Tensor> {
        let h = Tensor::cat(&[x, cond, &timestep_embedding(t, self.time_features)?], D::Minus1)?;
        self.layers.iter().try_fold(h, |h, l| l.forward(&h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn gumbel_softmax_samples_the_softmax_and_hardens_as_tau_falls() {
        let dev = Device::Cpu;
        let p = [0.1f32, 0.2, 0.7];
        let logits = Tensor::new(&p.map(f32::ln), &dev).unwrap().unsqueeze(0).unwrap().repeat((20000, 1)).unwrap();
        let mut rng = Rng::new(1);
        // The argmax of the perturbed logits is distributed as softmax(logits): the relaxation at low τ counts it.
        let y = gumbel_softmax(&logits, 0.01, 1, &mut rng).unwrap();
        let picks: Vec<u32> = y.argmax(1).unwrap().to_vec1().unwrap();
        for (k, &pk) in p.iter().enumerate() {
            let share = picks.iter().filter(|&&i| i as usize == k).count() as f32 / picks.len() as f32;
            assert!((share - pk).abs() < 0.015, "code {k}: {share} against {pk}");
        }
        let max_at = |tau: f64, rng: &mut Rng| -> f32 {
            let y = gumbel_softmax(&logits, tau, 1, rng).unwrap();
            y.max(1).unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap()
        };
        let (soft, hard) = (max_at(5.0, &mut rng), max_at(1.0 / 16.0, &mut rng));
        assert!(soft < 0.6 && hard > 0.95, "mean largest weight {soft} at τ = 5, {hard} at τ = 1/16");
        assert!(gumbel_softmax(&logits, 0.0, 1, &mut rng).is_err());
    }

    #[test]
    fn dvae_shapes_kl_bounds_and_decoding() {
        let dev = Device::Cpu;
        let (_vars, vb) = crate::init::seeded(0, DType::F32, &dev);
        let cfg = DiscreteVaeConfig { codes: 8, code_dim: 4, channels: 8, beta: 1.0 };
        let dvae = DiscreteVae::new(cfg, vb).unwrap();
        let x = Rng::new(2).uniform_tensor((3, 1, 28, 28), 0.0, 1.0, &dev).unwrap();
        assert_eq!(dvae.logits(&x).unwrap().dims(), &[3, 8, 7, 7]);
        let l = dvae.loss(&x, 1.0, &mut Rng::new(3)).unwrap();
        assert!(l.kl >= -1e-4 && l.kl <= 49.0 * 8f64.ln() + 1e-3, "{}", l.kl);
        assert!(l.recon > 0.0);
        let codes = dvae.encode(&x).unwrap();
        assert_eq!(codes.dims(), &[3, 49]);
        let img = dvae.decode(&codes).unwrap();
        assert_eq!(img.dims(), &[3, 1, 28, 28]);
        // Decoding the hard codes equals decoding their one-hot weights.
        let y = candle_nn::encoding::one_hot(codes.flatten_all().unwrap(), 8, 1f32, 0f32).unwrap();
        let y = y.reshape((3, 7, 7, 8)).unwrap().permute((0, 3, 1, 2)).unwrap().contiguous().unwrap();
        let direct = candle_nn::ops::sigmoid(&dvae.decode_weights(&y).unwrap()).unwrap();
        let d = (img - direct).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-6);
        assert!(dvae.logits(&Tensor::zeros((1, 1, 14, 14), DType::F32, &dev).unwrap()).is_err());
    }

    #[test]
    fn dvae_learns_to_reconstruct() {
        let dev = Device::Cpu;
        let data = crate::data::fashion_mnist().unwrap().test.take(256).unwrap();
        let (vars, vb) = crate::init::seeded(1, DType::F32, &dev);
        let dvae = DiscreteVae::new(DiscreteVaeConfig { codes: 16, code_dim: 8, channels: 16, beta: 1.0 }, vb).unwrap();
        let losses = dvae.train(&vars, &data, 60, 32, 3e-3, 0, |_, _, _| Ok(())).unwrap();
        let (first, last) = (losses[..5].iter().sum::<f64>() / 5.0, losses[55..].iter().sum::<f64>() / 5.0);
        assert!(last < 0.8 * first, "loss {first} → {last}");
    }

    #[test]
    fn text_to_image_stream_loss_and_sampling() {
        let dev = Device::Cpu;
        let (vars, vb) = crate::init::seeded(2, DType::F32, &dev);
        let t2i = TextToImage::new(10, 4, 6, 1, 2, 16, vb).unwrap();
        let text = Tensor::new(&[[3u32, 4, 9, 0], [5, 9, 0, 0]], &dev).unwrap();
        let codes = Tensor::from_vec((0..98).map(|i| (i % 6) as u32).collect::<Vec<u32>>(), (2, 49), &dev).unwrap();
        let s = t2i.stream(&text, &codes).unwrap();
        assert_eq!(s.dims(), &[2, 53]);
        assert_eq!(s.i((0, 4)).unwrap().to_scalar::<u32>().unwrap(), 10, "code 0 follows the text vocabulary");
        let (loss, text_loss, image_loss) = t2i.loss(&text, &codes).unwrap();
        let want = 0.125 * text_loss + 0.875 * image_loss;
        assert!((loss.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-4);
        // A few steps on this one pair make its codes likely; sampling then only ever yields image codes.
        let mut opt =
            crate::optimization::Adam::new(vars.all_vars(), crate::optimization::AdamConfig::new(1e-2)).unwrap();
        for _ in 0..60 {
            opt.backward_step(&t2i.loss(&text, &codes).unwrap().0).unwrap();
        }
        let sampled = t2i.sample(&text, &Sampling::greedy(), &mut Rng::new(0)).unwrap();
        assert_eq!(sampled.dims(), &[2, 49]);
        let got: Vec<u32> = sampled.flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<u32> = codes.flatten_all().unwrap().to_vec1().unwrap();
        let same = got.iter().zip(&want).filter(|(a, b)| a == b).count();
        assert!(same > 80, "greedy sampling recovers the memorized codes ({same} of 98)");
        assert!(t2i.sample(&text.narrow(1, 0, 3).unwrap(), &Sampling::greedy(), &mut Rng::new(0)).is_err());
    }

    #[test]
    fn embedding_prior_shapes() {
        let dev = Device::Cpu;
        let (_v, vb) = crate::init::seeded(3, DType::F32, &dev);
        let prior = EmbeddingPrior::new(8, 32, vb).unwrap();
        let x = Tensor::zeros((5, 8), DType::F32, &dev).unwrap();
        let t = Tensor::full(3f32, 5, &dev).unwrap();
        assert_eq!(prior.predict_given(&x, &t, &x).unwrap().dims(), &[5, 8]);
    }
}
