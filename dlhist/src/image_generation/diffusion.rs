//! # Diffusion models: destroy the data with noise, learn to undo it one small step at a time
//!
//! J. Sohl-Dickstein, E. A. Weiss, N. Maheswaranathan and S. Ganguli, *Deep Unsupervised Learning using
//! Nonequilibrium Thermodynamics*, ICML 2015, <https://arxiv.org/abs/1503.03585>; J. Ho, A. Jain and P. Abbeel,
//! *Denoising Diffusion Probabilistic Models*, NeurIPS 2020, <https://arxiv.org/abs/2006.11239>; A. Nichol and
//! P. Dhariwal, *Improved Denoising Diffusion Probabilistic Models*, ICML 2021, <https://arxiv.org/abs/2102.09672>;
//! P. Dhariwal and A. Nichol, *Diffusion Models Beat GANs on Image Synthesis*, NeurIPS 2021,
//! <https://arxiv.org/abs/2105.05233>.
//!
//! The forward process adds Gaussian noise in `T` steps with variances `β_1 … β_T`; with `α_t = 1 − β_t` and
//! `ᾱ_t = Π_{s≤t} α_s` it has a closed form at any step, and its reverse given `x_0` is Gaussian too:
//!
//! ```text
//! q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I)          q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I)
//! q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I),  μ̃_t = √ᾱ_{t−1} β_t / (1 − ᾱ_t) · x_0 + √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · x_t,
//!                                          β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t
//! ```
//!
//! A network learns the reverse step `p(x_{t−1} | x_t) = N(μ_θ(x_t, t), σ_t² I)` (here `σ_t² = β̃_t`). Ho et al.
//! have it predict the noise `ε` in `x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε` and train on `‖ε − ε_θ(x_t, t)‖²` with `t` drawn
//! uniformly ([`Parameterization::Epsilon`]); predicting `μ̃_t` itself with a squared error is the ablation they
//! compare it with ([`Parameterization::Mean`]). [`Schedule::linear`] is Ho et al.'s `β` (1e-4 to 0.02 over 1000
//! steps), [`Schedule::cosine`] Nichol & Dhariwal's `ᾱ_t = f(t)/f(0)`, `f(t) = cos²((t/T + s)/(1 + s) · π/2)`, and
//! [`Schedule::respaced`] their way of sampling with fewer steps: keep a subsequence of the `ᾱ`s and recompute the
//! `β`s between them. Classifier guidance (Dhariwal & Nichol, Algorithm 1) shifts each step's mean by
//! `s σ_t² ∇_x log p_φ(y | x_t)`, with `p_φ` a classifier trained on noisy images.
//!
//! Time steps are 0-based here: index `t` in `0 .. T` is the paper's step `t + 1`.

use std::collections::HashMap;

use candle_core::{DType, Device, Module, Result, Tensor, D};
use candle_nn::{VarBuilder, VarMap};

use crate::layers::{upsample_concat, Activation, ConvBlock, Dense, MaxPool2d};
use crate::rng::Rng;

/// A noise schedule: `β_t` and `ᾱ_t` for `t` in `0 .. T`.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    betas: Vec<f64>,
    alpha_bars: Vec<f64>,
}

impl Schedule {
    /// The schedule of the given `β`s (each in `(0, 1)`).
    pub fn from_betas(betas: Vec<f64>) -> crate::Result<Self> {
        if betas.is_empty() || betas.iter().any(|&b| b.is_nan() || b <= 0.0 || b >= 1.0) {
            return Err(crate::Error::Invalid("a noise schedule needs at least one β, each in (0, 1)".into()));
        }
        let mut alpha_bars = Vec::with_capacity(betas.len());
        let mut prod = 1.0;
        for b in &betas {
            prod *= 1.0 - b;
            alpha_bars.push(prod);
        }
        Ok(Schedule { betas, alpha_bars })
    }

    /// `β` evenly spaced from `beta_start` to `beta_end` over `steps` steps (Ho et al.: 1e-4, 0.02, 1000).
    pub fn linear(steps: usize, beta_start: f64, beta_end: f64) -> crate::Result<Self> {
        let betas =
            (0..steps).map(|i| beta_start + (beta_end - beta_start) * i as f64 / (steps.max(2) - 1) as f64).collect();
        Self::from_betas(betas)
    }

    /// Nichol & Dhariwal's cosine schedule over `steps` steps with offset `s` (0.008 in the paper), each `β`
    /// clipped at 0.999 as they do.
    pub fn cosine(steps: usize, s: f64) -> crate::Result<Self> {
        let f = |t: f64| (((t / steps as f64 + s) / (1.0 + s)) * std::f64::consts::FRAC_PI_2).cos().powi(2);
        let betas = (0..steps).map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(0.999)).collect();
        Self::from_betas(betas)
    }

    /// The number of steps `T`.
    pub fn steps(&self) -> usize {
        self.betas.len()
    }

    /// `β_t`.
    pub fn beta(&self, t: usize) -> f64 {
        self.betas[t]
    }

    /// `ᾱ_t`.
    pub fn alpha_bar(&self, t: usize) -> f64 {
        self.alpha_bars[t]
    }

    /// `ᾱ_{t−1}` (1 before the first step).
    fn alpha_bar_prev(&self, t: usize) -> f64 {
        if t == 0 {
            1.0
        } else {
            self.alpha_bars[t - 1]
        }
    }

    /// The posterior `q(x_{t−1} | x_t, x_0)`: `(coefficient of x_0, coefficient of x_t, variance β̃_t)`.
    pub fn posterior(&self, t: usize) -> (f64, f64, f64) {
        let (ab, ab_prev, beta) = (self.alpha_bars[t], self.alpha_bar_prev(t), self.betas[t]);
        let c0 = ab_prev.sqrt() * beta / (1.0 - ab);
        let ct = (1.0 - beta).sqrt() * (1.0 - ab_prev) / (1.0 - ab);
        (c0, ct, (1.0 - ab_prev) / (1.0 - ab) * beta)
    }

    /// `n` evenly spaced steps of this schedule, last one included, and the schedule that jumps between them:
    /// `β'_i = 1 − ᾱ_{τ_i} / ᾱ_{τ_{i−1}}` (Nichol & Dhariwal's respacing).
    ///
    /// ```
    /// use dlhist::image_generation::diffusion::Schedule;
    /// let s = Schedule::linear(1000, 1e-4, 0.02)?;
    /// let (kept, short) = s.respaced(50)?;
    /// assert_eq!((kept.len(), kept[49], short.steps()), (50, 999, 50));
    /// // The short chain ends at the same noise level.
    /// assert!((short.alpha_bar(49) - s.alpha_bar(999)).abs() < 1e-12);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn respaced(&self, n: usize) -> crate::Result<(Vec<usize>, Schedule)> {
        let t = self.steps();
        if n == 0 || n > t {
            return Err(crate::Error::Invalid(format!("cannot respace {t} steps to {n}")));
        }
        let kept: Vec<usize> = (0..n).map(|i| ((i + 1) * t).div_ceil(n) - 1).collect();
        let mut prev = 1.0;
        let mut betas = Vec::with_capacity(n);
        for &k in &kept {
            betas.push(1.0 - self.alpha_bars[k] / prev);
            prev = self.alpha_bars[k];
        }
        Ok((kept, Schedule::from_betas(betas)?))
    }

    /// `x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε` for a batch `x0` `[B, ..]` with one step per row `t` and noise `noise`.
    pub fn q_sample(&self, x0: &Tensor, t: &[usize], noise: &Tensor) -> Result<Tensor> {
        let a: Vec<f32> = t.iter().map(|&i| self.alpha_bars[i].sqrt() as f32).collect();
        let s: Vec<f32> = t.iter().map(|&i| (1.0 - self.alpha_bars[i]).sqrt() as f32).collect();
        let (a, s) = (per_row(a, x0)?, per_row(s, x0)?);
        x0.broadcast_mul(&a)? + noise.broadcast_mul(&s)?
    }
}

/// A `[B, 1, 1, …]` tensor of one value per row, shaped to broadcast against `like`.
fn per_row(v: Vec<f32>, like: &Tensor) -> Result<Tensor> {
    let mut shape = vec![v.len()];
    shape.extend(std::iter::repeat_n(1, like.rank() - 1));
    Tensor::from_vec(v, shape, like.device())
}

/// What the network is trained to output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parameterization {
    /// The noise `ε` (Ho et al.'s choice and `L_simple`).
    Epsilon,
    /// The posterior mean `μ̃_t` itself, with a squared error (the ablation).
    Mean,
    /// The clean data `x_0` itself, with a squared error: what DALL-E 2's diffusion prior predicts (Ramesh et al.
    /// 2022: "predict the unnoised z_i directly").
    Start,
}

/// A network that reads noisy data `x_t` and time steps `t` (`[B]`, f32 indices) and outputs a tensor shaped like
/// `x_t`: the noise or the mean, as its [`Parameterization`] says.
pub trait Denoiser {
    /// The prediction for `x` at steps `t`.
    fn predict(&self, x: &Tensor, t: &Tensor) -> Result<Tensor>;
}

/// A denoiser that also reads a condition vector per row (`cond` `[B, D]`, e.g. a CLIP embedding); a row of zeros
/// means "no condition", which is what classifier-free guidance contrasts with ([`Guided`]).
pub trait ConditionalDenoiser {
    /// The prediction for `x` at steps `t` given `cond`.
    fn predict_given(&self, x: &Tensor, t: &Tensor, cond: &Tensor) -> Result<Tensor>;
}

/// Classifier-free guidance (Ho and Salimans 2021, as GLIDE and DALL-E 2 use it): a conditional model trained with
/// its condition sometimes replaced by zeros ([`drop_condition`]) predicts both with and without it, and sampling
/// extrapolates from the unconditional prediction towards the conditional one, `ε̂ = ε(x, ∅) + s (ε(x, c) − ε(x, ∅))`.
/// `s = 1` is the plain conditional model; larger `s` trades diversity for fidelity to `c`. As a [`Denoiser`] it
/// plugs into [`sample`] unchanged.
#[derive(Debug)]
pub struct Guided<'a, M: ConditionalDenoiser> {
    /// The conditional model.
    pub model: &'a M,
    /// The condition of every row to be sampled, `[B, D]`.
    pub cond: Tensor,
    /// The guidance scale `s`.
    pub scale: f64,
}

impl<M: ConditionalDenoiser> Denoiser for Guided<'_, M> {
    fn predict(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let with = self.model.predict_given(x, t, &self.cond)?;
        if self.scale == 1.0 {
            return Ok(with);
        }
        let without = self.model.predict_given(x, t, &self.cond.zeros_like()?)?;
        &without + ((with - &without)? * self.scale)?
    }
}

/// `cond` `[B, D]` with each row replaced by zeros with probability `p` (drawn from `rng`): training a
/// [`ConditionalDenoiser`] this way teaches it the unconditional prediction too (DALL-E 2's decoder drops its CLIP
/// embedding 10% of the time).
pub fn drop_condition(cond: &Tensor, p: f32, rng: &mut Rng) -> crate::Result<Tensor> {
    let b = cond.dim(0)?;
    let keep: Vec<f32> = (0..b).map(|_| if rng.uniform() < p { 0.0 } else { 1.0 }).collect();
    Ok(cond.broadcast_mul(&Tensor::from_vec(keep, (b, 1), cond.device())?)?)
}

/// The training loss on a batch of data `x0`: draw a step per row uniformly and the noise from `rng`, make `x_t`,
/// and return the mean squared error of the model's prediction against its target.
pub fn diffusion_loss(
    model: &dyn Denoiser,
    schedule: &Schedule,
    param: Parameterization,
    x0: &Tensor,
    rng: &mut Rng,
) -> crate::Result<Tensor> {
    let b = x0.dim(0)?;
    let t: Vec<usize> = (0..b).map(|_| rng.below(schedule.steps())).collect();
    let noise = rng.normal_tensor(x0.shape(), 0.0, 1.0, x0.device())?;
    let xt = schedule.q_sample(x0, &t, &noise)?;
    let tt = Tensor::from_vec(t.iter().map(|&i| i as f32).collect::<Vec<f32>>(), b, x0.device())?;
    let target = match param {
        Parameterization::Epsilon => noise,
        Parameterization::Start => x0.clone(),
        Parameterization::Mean => {
            let c0: Vec<f32> = t.iter().map(|&i| schedule.posterior(i).0 as f32).collect();
            let ct: Vec<f32> = t.iter().map(|&i| schedule.posterior(i).1 as f32).collect();
            (x0.broadcast_mul(&per_row(c0, x0)?)? + xt.broadcast_mul(&per_row(ct, x0)?)?)?
        }
    };
    Ok((model.predict(&xt, &tt)? - target)?.sqr()?.mean_all()?)
}

/// The gradient `∇_x log p(y | x_t)` a guided sampler adds, for the current `x_t` and step `t` (`[B]`, f32).
pub type GuidanceGrad<'a> = &'a dyn Fn(&Tensor, &Tensor) -> crate::Result<Tensor>;

/// Ancestral sampling: start from `x_T ~ N(0, I)` of `shape` and apply the learned reverse step `steps` times
/// (the schedule respaced to `steps`; `Mean` models need all `T`). With `clip`, each step's estimate of `x_0` is
/// clipped to `[−1, 1]` (images). With `guidance = Some((grad, s))`, each mean is shifted by `s σ_t² grad`.
#[allow(clippy::too_many_arguments)]
pub fn sample(
    model: &dyn Denoiser,
    schedule: &Schedule,
    param: Parameterization,
    shape: &[usize],
    steps: usize,
    clip: bool,
    guidance: Option<(GuidanceGrad<'_>, f64)>,
    rng: &mut Rng,
    dev: &Device,
) -> crate::Result<Tensor> {
    if param == Parameterization::Mean && steps != schedule.steps() {
        return Err(crate::Error::Invalid(format!(
            "a mean-predicting model learned the {}-step chain's means; it cannot sample in {steps} steps",
            schedule.steps()
        )));
    }
    let (kept, short) = schedule.respaced(steps)?;
    let b = shape[0];
    let mut x = rng.normal_tensor(shape, 0.0, 1.0, dev)?;
    for i in (0..steps).rev() {
        let t = kept[i];
        let tt = Tensor::full(t as f32, b, dev)?;
        let out = model.predict(&x, &tt)?;
        let (c0, ct, var) = short.posterior(i);
        let mut mean = match param {
            Parameterization::Mean => out,
            Parameterization::Epsilon | Parameterization::Start => {
                let mut x0 = if param == Parameterization::Start {
                    out
                } else {
                    // x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t.
                    let ab = schedule.alpha_bar(t);
                    ((&x - (out * (1.0 - ab).sqrt())?)? / ab.sqrt())?
                };
                if clip {
                    x0 = x0.clamp(-1f32, 1f32)?;
                }
                // The posterior mean of the (respaced) step, given the estimate of x_0.
                ((x0 * c0)? + (&x * ct)?)?
            }
        };
        if let Some((grad, scale)) = guidance {
            mean = (mean + (grad(&x, &tt)? * (scale * var))?)?;
        }
        x = if i > 0 { (mean + (rng.normal_tensor(shape, 0.0, 1.0, dev)? * var.sqrt())?)? } else { mean };
        // Sampling needs no gradient: without this, a model made of trainable variables would keep every step's
        // activations alive for a backward pass that never comes (gigabytes for a thousand images).
        x = x.detach();
    }
    Ok(x)
}

/// Sinusoidal features of time steps `t` (`[B]`, f32): `[B, dim]`, half sines and half cosines of `t` at
/// frequencies from 1 down to 1/10000 (the Transformer's position code, as Ho et al. embed the step).
pub fn timestep_embedding(t: &Tensor, dim: usize) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half).map(|i| (-(10000f32.ln()) * i as f32 / half as f32).exp()).collect();
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    let args = t.to_dtype(DType::F32)?.unsqueeze(1)?.broadcast_mul(&freqs)?;
    Tensor::cat(&[args.sin()?, args.cos()?], 1)
}

/// The 2-D denoiser of the notebook's toy problems: `[x, emb(t)]` → three ReLU layers of `hidden` → 2.
/// Parameters `{path}.fc1` … `{path}.fc4`.
#[derive(Debug, Clone)]
pub struct MlpDenoiser {
    layers: Vec<Dense>,
    embed: usize,
}

impl MlpDenoiser {
    /// A denoiser for 2-D points with a 32-feature time embedding.
    pub fn new(hidden: usize, vb: VarBuilder) -> Result<Self> {
        let relu = Some(Activation::Relu);
        let embed = 32;
        let layers = vec![
            Dense::new(2 + embed, hidden, relu, vb.pp("fc1"))?,
            Dense::new(hidden, hidden, relu, vb.pp("fc2"))?,
            Dense::new(hidden, hidden, relu, vb.pp("fc3"))?,
            Dense::new(hidden, 2, None, vb.pp("fc4"))?,
        ];
        Ok(MlpDenoiser { layers, embed })
    }
}

impl Denoiser for MlpDenoiser {
    fn predict(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let h = Tensor::cat(&[x, &timestep_embedding(t, self.embed)?], 1)?;
        self.layers.iter().try_fold(h, |h, l| l.forward(&h))
    }
}

/// A block of the U-Net: a 3×3 convolution, plus a per-channel shift computed from the time embedding, then ReLU.
#[derive(Debug, Clone)]
struct TimedConv {
    conv: ConvBlock,
    time: Dense,
}

impl TimedConv {
    fn new(c_in: usize, c_out: usize, embed: usize, vb: VarBuilder) -> Result<Self> {
        Ok(TimedConv {
            conv: ConvBlock::new(c_in, c_out, 3, 1, Some(Activation::Relu), vb.pp("conv"))?,
            time: Dense::new(embed, c_out, None, vb.pp("time"))?,
        })
    }

    fn forward(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        // relu(conv(x) + b + shift): the shift is one number per image and channel, added before the ReLU
        // (ConvBlock::forward_with_shift; on the CPU inside the fused convolution).
        let shift = self.time.forward(emb)?;
        self.conv.forward_with_shift(x, &shift)
    }
}

/// A small U-Net for 28×28 images with a time embedding in every block (`c` channels at 28×28, `2c` below):
///
/// ```text
/// conv3 1→c; [c @28] → pool → [2c @14] → pool → [2c @7] → up ⊕ skip → [2c @14] → up ⊕ skip → [c @28] → conv3 c→1
/// ```
///
/// Parameters `{path}.time1`, `{path}.time2`, `{path}.inc`, `{path}.down1` …, `{path}.out`.
#[derive(Debug, Clone)]
pub struct UNet {
    time1: Dense,
    time2: Dense,
    inc: ConvBlock,
    down1: TimedConv,
    down2: TimedConv,
    mid: TimedConv,
    up2: TimedConv,
    up1: TimedConv,
    out: ConvBlock,
    embed: usize,
    cond: Option<Dense>,
}

impl UNet {
    /// A U-Net with `c` channels at full resolution.
    pub fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        let embed = 4 * c;
        Ok(UNet {
            cond: None,
            time1: Dense::new(c, embed, Some(Activation::Relu), vb.pp("time1"))?,
            time2: Dense::new(embed, embed, None, vb.pp("time2"))?,
            inc: ConvBlock::new(1, c, 3, 1, None, vb.pp("inc"))?,
            down1: TimedConv::new(c, c, embed, vb.pp("down1"))?,
            down2: TimedConv::new(c, 2 * c, embed, vb.pp("down2"))?,
            mid: TimedConv::new(2 * c, 2 * c, embed, vb.pp("mid"))?,
            up2: TimedConv::new(4 * c, 2 * c, embed, vb.pp("up2"))?,
            up1: TimedConv::new(3 * c, c, embed, vb.pp("up1"))?,
            out: ConvBlock::new(c, 1, 3, 1, None, vb.pp("out"))?,
            embed: c,
        })
    }

    /// A U-Net that also reads a condition vector of `cond_dim` numbers per image ([`ConditionalDenoiser`]): a
    /// linear map of it (`{path}.cond`) is added to the time embedding, so every block sees it, as DALL-E 2's
    /// decoder adds its projected CLIP embedding to the timestep embedding.
    pub fn conditioned(c: usize, cond_dim: usize, vb: VarBuilder) -> Result<Self> {
        let cond = Dense::new(cond_dim, 4 * c, None, vb.pp("cond"))?;
        Ok(UNet { cond: Some(cond), ..UNet::new(c, vb)? })
    }

    /// The network given the combined embedding `emb` `[B, 4c]`.
    fn forward_embedded(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        let pool = MaxPool2d::new(2);
        let h1 = self.down1.forward(&self.inc.forward(x)?, emb)?; // [c, 28]
        let h2 = self.down2.forward(&pool.forward(&h1)?, emb)?; // [2c, 14]
        let m = self.mid.forward(&pool.forward(&h2)?, emb)?; // [2c, 7]
        let u2 = self.up2.forward(&upsample_concat(&m, &h2)?, emb)?; // [2c, 14]
        let u1 = self.up1.forward(&upsample_concat(&u2, &h1)?, emb)?; // [c, 28]
        self.out.forward(&u1)
    }

    fn time_embedding(&self, t: &Tensor) -> Result<Tensor> {
        self.time2.forward(&self.time1.forward(&timestep_embedding(t, self.embed)?)?)
    }
}

impl ConditionalDenoiser for UNet {
    fn predict_given(&self, x: &Tensor, t: &Tensor, cond: &Tensor) -> Result<Tensor> {
        let Some(proj) = &self.cond else {
            candle_core::bail!("this U-Net was built without a condition (use UNet::conditioned)")
        };
        self.forward_embedded(x, &(self.time_embedding(t)? + proj.forward(cond)?)?)
    }
}

impl Denoiser for UNet {
    fn predict(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let emb = self.time_embedding(t)?;
        self.forward_embedded(x, &emb)
    }
}

/// A classifier of noisy 28×28 images for guidance: two timed convolutions with pooling, then a linear read-out
/// to 10 classes. Parameters `{path}.time`, `{path}.conv1`, `{path}.conv2`, `{path}.out`.
#[derive(Debug, Clone)]
pub struct NoisyClassifier {
    time: Dense,
    conv1: TimedConv,
    conv2: TimedConv,
    out: Dense,
    embed: usize,
}

impl NoisyClassifier {
    /// A classifier with `c` channels in its first block.
    pub fn new(c: usize, vb: VarBuilder) -> Result<Self> {
        let embed = 4 * c;
        Ok(NoisyClassifier {
            time: Dense::new(c, embed, Some(Activation::Relu), vb.pp("time"))?,
            conv1: TimedConv::new(1, c, embed, vb.pp("conv1"))?,
            conv2: TimedConv::new(c, 2 * c, embed, vb.pp("conv2"))?,
            out: Dense::new(2 * c * 7 * 7, 10, None, vb.pp("out"))?,
            embed: c,
        })
    }

    /// Class logits `[B, 10]` of noisy images `x` `[B, 1, 28, 28]` at steps `t` `[B]`.
    pub fn logits(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        let emb = self.time.forward(&timestep_embedding(t, self.embed)?)?;
        let pool = MaxPool2d::new(2);
        let h = pool.forward(&self.conv1.forward(x, &emb)?)?;
        let h = pool.forward(&self.conv2.forward(&h, &emb)?)?;
        self.out.forward(&h.flatten_from(1)?)
    }

    /// `∇_x log p(y | x_t)` for the classes `y` (`[B]`, u32): what guidance adds to each step's mean.
    pub fn log_prob_grad(&self, x: &Tensor, t: &Tensor, y: &Tensor) -> crate::Result<Tensor> {
        let xv = candle_core::Var::from_tensor(&x.detach())?;
        let logp = candle_nn::ops::log_softmax(&self.logits(xv.as_tensor(), t)?, D::Minus1)?;
        let picked = logp.gather(&y.unsqueeze(1)?, 1)?.sum_all()?;
        let grads = picked.backward()?;
        grads.get(&xv).cloned().ok_or_else(|| crate::Error::Invalid("no gradient reached the image".into()))
    }
}

/// An exponential moving average of a model's weights, `θ̄ ← d θ̄ + (1 − d) θ` after every step (Ho et al. sample
/// from such an average, decay 0.9999): the average of the last `1/(1 − d)` steps' weights is smoother than any one.
#[derive(Debug, Clone)]
pub struct Ema {
    decay: f64,
    shadow: HashMap<String, Tensor>,
}

impl Ema {
    /// Starts the average at the current weights of `vars`.
    pub fn new(vars: &VarMap, decay: f64) -> Result<Self> {
        let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
        let shadow = data.iter().map(|(k, v)| Ok((k.clone(), v.as_tensor().copy()?))).collect::<Result<_>>()?;
        Ok(Ema { decay, shadow })
    }

    /// Moves the average towards the current weights of `vars`.
    pub fn update(&mut self, vars: &VarMap) -> Result<()> {
        let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
        for (k, v) in data.iter() {
            if let Some(s) = self.shadow.get_mut(k) {
                *s = ((&*s * self.decay)? + (v.as_tensor().detach() * (1.0 - self.decay))?)?;
            }
        }
        Ok(())
    }

    /// A `VarBuilder` over the averaged weights, to build the model again with them.
    pub fn var_builder(&self, dev: &Device) -> VarBuilder<'static> {
        VarBuilder::from_tensors(self.shadow.clone(), DType::F32, dev)
    }
}

/// Points on a 2-D swiss roll (Sohl-Dickstein et al.'s Figure 1): angle `θ` uniform in `[1.5π, 4.5π]`, point
/// `θ (cos θ, sin θ) / 10`, plus Gaussian noise of spread `noise`: `[n, 2]`, roughly within `[−1.5, 1.5]²`.
pub fn swiss_roll(n: usize, noise: f32, rng: &mut Rng, dev: &Device) -> crate::Result<Tensor> {
    let mut v = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let th = rng.uniform_in(1.5 * std::f32::consts::PI, 4.5 * std::f32::consts::PI);
        v.push(th * th.cos() / 10.0 + noise * rng.normal());
        v.push(th * th.sin() / 10.0 + noise * rng.normal());
    }
    Ok(Tensor::from_vec(v, (n, 2), dev)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closed form `q(x_t | x_0)` equals running the one-step chain `t` times (moments, by sampling), and the
    /// posterior's mean and variance satisfy `q(x_{t−1} | x_0) = ∫ q(x_{t−1} | x_t, x_0) q(x_t | x_0)`.
    #[test]
    fn closed_form_and_posterior_are_consistent() -> crate::Result<()> {
        let s = Schedule::linear(100, 1e-4, 0.05)?;
        let dev = Device::Cpu;
        let mut rng = Rng::new(1);
        let n = 100_000;
        let x0 = Tensor::full(0.7f32, n, &dev)?;
        let mut x = x0.clone();
        for t in 0..40 {
            x = ((&x * (1.0 - s.beta(t)).sqrt())? + (rng.normal_tensor(n, 0.0, 1.0, &dev)? * s.beta(t).sqrt())?)?;
        }
        let (m, v) = (x.mean_all()?.to_scalar::<f32>()? as f64, x.var(0)?.to_scalar::<f32>()? as f64);
        let ab = s.alpha_bar(39);
        assert!((m - 0.7 * ab.sqrt()).abs() < 0.01, "mean {m} against {}", 0.7 * ab.sqrt());
        assert!((v - (1.0 - ab)).abs() < 0.01, "variance {v} against {}", 1.0 - ab);
        // Marginalizing x_t out of the posterior gives back q(x_{t−1} | x_0): mean and variance.
        for t in [1usize, 10, 99] {
            let (c0, ct, var) = s.posterior(t);
            let (ab_t, ab_p) = (s.alpha_bar(t), s.alpha_bar(t - 1));
            assert!((c0 + ct * ab_t.sqrt() - ab_p.sqrt()).abs() < 1e-12, "mean at {t}");
            assert!((var + ct * ct * (1.0 - ab_t) - (1.0 - ab_p)).abs() < 1e-12, "variance at {t}");
        }
        Ok(())
    }

    /// The cosine schedule follows its formula, ends near ᾱ = 0, and respacing to all steps changes nothing.
    #[test]
    fn cosine_schedule_and_respacing() -> crate::Result<()> {
        let s = Schedule::cosine(1000, 0.008)?;
        let f = |t: f64| (((t / 1000.0 + 0.008) / 1.008) * std::f64::consts::FRAC_PI_2).cos().powi(2);
        for t in [0usize, 100, 500, 900] {
            assert!((s.alpha_bar(t) - f(t as f64 + 1.0) / f(0.0)).abs() < 1e-9, "ᾱ at {t}");
        }
        assert!(s.alpha_bar(999) < 1e-4);
        let (kept, same) = s.respaced(1000)?;
        assert_eq!(kept, (0..1000).collect::<Vec<_>>());
        for t in [0usize, 500, 999] {
            assert!((same.beta(t) - s.beta(t)).abs() < 1e-12);
        }
        assert!(s.respaced(0).is_err() && s.respaced(1001).is_err());
        Ok(())
    }

    /// On a point mass, a model that predicts the exact noise (or the exact posterior mean) samples the point.
    #[test]
    fn sampling_with_an_oracle_recovers_the_data() -> crate::Result<()> {
        struct Oracle {
            schedule: Schedule,
            point: f32,
            param: Parameterization,
        }
        impl Denoiser for Oracle {
            fn predict(&self, x: &Tensor, t: &Tensor) -> Result<Tensor> {
                let t = t.to_vec1::<f32>()?[0] as usize;
                let ab = self.schedule.alpha_bar(t);
                let x0 = (x.ones_like()? * self.point as f64)?;
                match self.param {
                    // x_t = √ᾱ x_0 + √(1−ᾱ) ε  ⇒  ε = (x_t − √ᾱ x_0)/√(1−ᾱ)
                    Parameterization::Epsilon => (x - (x0 * ab.sqrt())?)? / (1.0 - ab).sqrt(),
                    Parameterization::Start => Ok(x0),
                    Parameterization::Mean => {
                        let (c0, ct, _) = self.schedule.posterior(t);
                        (x0 * c0)? + (x * ct)?
                    }
                }
            }
        }
        let schedule = Schedule::linear(200, 1e-4, 0.05)?;
        for (param, steps) in
            [(Parameterization::Epsilon, 20), (Parameterization::Start, 20), (Parameterization::Mean, 200)]
        {
            let oracle = Oracle { schedule: schedule.clone(), point: 0.3, param };
            let x = sample(&oracle, &schedule, param, &[64, 2], steps, false, None, &mut Rng::new(2), &Device::Cpu)?;
            let err = (x - 0.3)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(err < 1e-3, "{param:?}: {err}");
        }
        let oracle = Oracle { schedule: schedule.clone(), point: 0.3, param: Parameterization::Mean };
        let r = sample(
            &oracle,
            &schedule,
            Parameterization::Mean,
            &[4, 2],
            20,
            false,
            None,
            &mut Rng::new(2),
            &Device::Cpu,
        );
        assert!(r.is_err(), "a mean model cannot be respaced");
        Ok(())
    }

    /// The weight average moves by (1 − d) of the gap per update.
    #[test]
    fn ema_moves_towards_the_weights() -> crate::Result<()> {
        let dev = Device::Cpu;
        let vars = VarMap::new();
        let w = vars.get(2, "w", candle_nn::Init::Const(0.0), DType::F32, &dev)?;
        let mut ema = Ema::new(&vars, 0.9)?;
        let var = vars.all_vars().into_iter().next().expect("w");
        var.set(&Tensor::new(&[1f32, 2.0], &dev)?)?;
        ema.update(&vars)?;
        let avg = ema.var_builder(&dev).get(2, "w")?.to_vec1::<f32>()?;
        assert!((avg[0] - 0.1).abs() < 1e-6 && (avg[1] - 0.2).abs() < 1e-6, "{avg:?}");
        let _ = w;
        Ok(())
    }

    /// Classifier-free guidance: scale 1 is the conditional prediction, scale 0 the unconditional one (zeros as
    /// the condition), and scale s extrapolates linearly between them.
    #[test]
    fn guidance_extrapolates_from_unconditional_to_conditional() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (_vars, vb) = crate::init::seeded(5, DType::F32, &dev);
        let unet = UNet::conditioned(4, 3, vb)?;
        let x = Rng::new(1).normal_tensor((2, 1, 28, 28), 0.0, 1.0, &dev)?;
        let t = Tensor::new(&[10f32, 500.0], &dev)?;
        let cond = Rng::new(2).normal_tensor((2, 3), 0.0, 1.0, &dev)?;
        let at = |s: f64| Guided { model: &unet, cond: cond.clone(), scale: s }.predict(&x, &t);
        let (c, u) = (unet.predict_given(&x, &t, &cond)?, unet.predict_given(&x, &t, &cond.zeros_like()?)?);
        let diff =
            |a: &Tensor, b: &Tensor| -> crate::Result<f32> { Ok((a - b)?.abs()?.max_all()?.to_scalar::<f32>()?) };
        assert!(diff(&at(1.0)?, &c)? < 1e-6);
        assert!(diff(&at(0.0)?, &u)? < 1e-5);
        let want = (&u + ((&c - &u)? * 3.0)?)?;
        assert!(diff(&at(3.0)?, &want)? < 1e-5);
        assert!(diff(&c, &u)? > 1e-4, "the condition changes the prediction");
        // A U-Net built without a condition says how to get one.
        let plain = UNet::new(4, crate::init::seeded(6, DType::F32, &dev).1)?;
        let err = plain.predict_given(&x, &t, &cond).unwrap_err().to_string();
        assert!(err.contains("UNet::conditioned"), "{err}");
        Ok(())
    }

    #[test]
    fn drop_condition_zeroes_whole_rows_at_the_rate_asked() -> crate::Result<()> {
        let dev = Device::Cpu;
        let cond = Tensor::ones((4000, 3), DType::F32, &dev)?;
        let dropped = drop_condition(&cond, 0.1, &mut Rng::new(3))?;
        let rows: Vec<f32> = dropped.sum(1)?.to_vec1()?;
        assert!(rows.iter().all(|&r| r == 0.0 || r == 3.0), "rows are kept or zeroed whole");
        let share = rows.iter().filter(|&&r| r == 0.0).count() as f64 / 4000.0;
        assert!((share - 0.1).abs() < 0.02, "{share}");
        Ok(())
    }
}
