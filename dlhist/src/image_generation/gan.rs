//! # Generative Adversarial Nets
//!
//! I. J. Goodfellow, J. Pouget-Abadie, M. Mirza, B. Xu, D. Warde-Farley, S. Ozair, A. Courville and Y. Bengio,
//! *Generative Adversarial Nets*, NIPS 2014, <https://arxiv.org/abs/1406.2661>.
//!
//! Two networks play a game. The discriminator `D` reads an image and says how likely it is to be real; the
//! generator `G` turns noise `z` into an image and is trained to make `D` wrong. The value of the game (the
//! paper's equation 1):
//!
//! ```text
//! min_G max_D  V(D, G) = E_x~data[ log D(x) ] + E_z~N(0, I)[ log(1 − D(G(z))) ]
//! ```
//!
//! `D(x) = σ(ℓ(x))` with `ℓ` the discriminator's logit, and every loss here is written on `ℓ`
//! (`log σ(ℓ) = −softplus(−ℓ)`, `log(1 − σ(ℓ)) = −softplus(ℓ)`), so it stays finite when `D` is certain:
//!
//! ```text
//! D's loss                      softplus(−ℓ(x)) + softplus(ℓ(G(z)))        binary cross-entropy, real 1, fake 0
//! G's loss, minimax             log(1 − D(G(z)))  = −softplus(ℓ)           ∂/∂ℓ = −σ(ℓ)     → 0 when D rejects
//! G's loss, non-saturating      −log D(G(z))      =  softplus(−ℓ)          ∂/∂ℓ = −(1 − σ(ℓ)) → −1 when D rejects
//! ```
//!
//! Early in training `D` rejects the generator's samples with confidence (`ℓ ≪ 0`), and there the minimax
//! loss's gradient vanishes: the paper's section 3 recommends maximizing `log D(G(z))` instead, "the same fixed
//! point of the dynamics of G and D" with "much stronger gradients early in learning". [`GeneratorLoss`] holds
//! both, and [`GanStats::g_grad_norm`] measures what reaches the generator.
//!
//! The networks are the original repository's fully connected pair (`hidden` = 256 there):
//!
//! ```text
//! G: z (latent) → hidden → 2·hidden → 4·hidden → 784, leaky ReLU (slope 0.2) between, tanh out (pixels in [−1, 1])
//! D: 784 → 4·hidden → 2·hidden → hidden → 1 logit, leaky ReLU and dropout (0.3) after each hidden layer
//! ```

use candle_core::{DType, Device, Module, ModuleT, Result, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap};

use crate::data::Dataset;
use crate::layers::{softplus, Activation, Dense, Dropout};
use crate::optim::{Sgd, SgdConfig};
use crate::optimization::{Adam, AdamConfig};
use crate::rng::Rng;

/// Pixels per image (28 × 28 Fashion-MNIST).
pub const PIXELS: usize = 28 * 28;

/// The sizes and training rule of a [`Gan`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GanConfig {
    /// Dimension of the noise `z ~ N(0, I)` the generator reads.
    pub latent: usize,
    /// Width of the narrowest hidden layer (the others are 2× and 4× it).
    pub hidden: usize,
    /// The discriminator's dropout probability.
    pub dropout: f32,
    /// How both networks are updated.
    pub optimizer: GanOptimizer,
}

impl GanConfig {
    /// The original repository's networks (latent 100, hidden 256, dropout 0.3) with DCGAN's Adam (rate 2e-4,
    /// `β1` 0.5: Radford et al. 2015 found the default 0.9 made training oscillate).
    pub fn original() -> Self {
        GanConfig { latent: 100, hidden: 256, dropout: 0.3, optimizer: GanOptimizer::Adam { lr: 2e-4, beta1: 0.5 } }
    }
}

/// The update rule of both networks (each gets its own optimizer state).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GanOptimizer {
    /// Adam with rate `lr`, first-moment decay `beta1` and `β2` = 0.999. It divides each step by the gradient's
    /// running scale, so a loss whose gradients are small still moves the weights at the rate's pace.
    Adam {
        /// The learning rate.
        lr: f64,
        /// `β1`.
        beta1: f64,
    },
    /// SGD with momentum, as the 2014 paper trained ("We used momentum in our experiments"): a step is
    /// proportional to the gradient, so a saturating loss moves the weights little.
    Momentum {
        /// The learning rate.
        lr: f64,
        /// The momentum factor `μ`.
        momentum: f64,
    },
}

impl GanOptimizer {
    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            GanOptimizer::Adam { lr, .. } | GanOptimizer::Momentum { lr, .. } => *lr,
        }
    }

    fn build(&self, vars: Vec<candle_core::Var>) -> crate::Result<Box<dyn Step>> {
        Ok(match *self {
            GanOptimizer::Adam { lr, beta1 } => Box::new(Adam::new(vars, AdamConfig::new(lr).betas(beta1, 0.999))?),
            GanOptimizer::Momentum { lr, momentum } => Box::new(Sgd::new(vars, SgdConfig::new(lr).momentum(momentum))?),
        })
    }
}

/// The one method of candle's `Optimizer` a [`Gan`] needs, object-safe so both rules fit one field.
trait Step {
    fn apply(&mut self, grads: &candle_core::backprop::GradStore) -> Result<()>;
}

impl<O: Optimizer> Step for O {
    fn apply(&mut self, grads: &candle_core::backprop::GradStore) -> Result<()> {
        self.step(grads)
    }
}

/// The generator: noise `[N, latent]` to images `[N, 784]` with pixels in `[−1, 1]`.
/// Parameters `{path}.fc1` … `{path}.fc4`.
#[derive(Debug, Clone)]
pub struct Generator {
    layers: Vec<Dense>,
}

impl Generator {
    /// A generator with fresh weights from `vb`.
    pub fn new(config: &GanConfig, vb: VarBuilder) -> Result<Self> {
        let h = config.hidden;
        let leaky = Some(Activation::LeakyRelu);
        let sizes = [(config.latent, h, leaky), (h, 2 * h, leaky), (2 * h, 4 * h, leaky), (4 * h, PIXELS, None)];
        let mut layers = vec![];
        for (i, (fan_in, fan_out, act)) in sizes.into_iter().enumerate() {
            // tanh on the last layer, matching data scaled to [−1, 1].
            let act = if i == 3 { Some(Activation::Tanh) } else { act };
            layers.push(Dense::new(fan_in, fan_out, act, vb.pp(format!("fc{}", i + 1)))?);
        }
        Ok(Generator { layers })
    }
}

impl Module for Generator {
    fn forward(&self, z: &Tensor) -> Result<Tensor> {
        self.layers.iter().try_fold(z.clone(), |x, layer| layer.forward(&x))
    }
}

/// The discriminator: images `[N, 784]` (pixels in `[−1, 1]`) to logits `[N]`, `D = σ(logit)`.
/// Parameters `{path}.fc1` … `{path}.fc4`.
#[derive(Debug)]
pub struct Discriminator {
    layers: Vec<Dense>,
    dropout: Dropout,
}

impl Discriminator {
    /// A discriminator with fresh weights from `vb`, its dropout masks drawn from `seed`.
    pub fn new(config: &GanConfig, seed: u64, vb: VarBuilder) -> crate::Result<Self> {
        let h = config.hidden;
        let leaky = Some(Activation::LeakyRelu);
        let sizes = [(PIXELS, 4 * h, leaky), (4 * h, 2 * h, leaky), (2 * h, h, leaky), (h, 1, None)];
        let layers = sizes
            .into_iter()
            .enumerate()
            .map(|(i, (fan_in, fan_out, act))| Dense::new(fan_in, fan_out, act, vb.pp(format!("fc{}", i + 1))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Discriminator { layers, dropout: Dropout::new(config.dropout, seed)? })
    }
}

impl ModuleT for Discriminator {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let last = self.layers.len() - 1;
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i < last {
                h = self.dropout.forward_t(&h, train)?;
            }
        }
        h.squeeze(1)
    }
}

/// The discriminator's loss, averaged over the batch: `−log D(x) − log(1 − D(G(z)))`, from the logits of real
/// and of generated images.
pub fn discriminator_loss(real_logits: &Tensor, fake_logits: &Tensor) -> Result<Tensor> {
    softplus(&real_logits.neg()?)?.mean_all()? + softplus(fake_logits)?.mean_all()?
}

/// Which loss the generator minimizes (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorLoss {
    /// The game's own: minimize `log(1 − D(G(z)))`, whose gradient vanishes when `D` rejects `G(z)`.
    Minimax,
    /// The paper's practical choice: minimize `−log D(G(z))`.
    NonSaturating,
}

impl GeneratorLoss {
    /// The loss on the discriminator's logits of generated images, averaged over the batch.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::image_generation::gan::GeneratorLoss;
    /// // D is sure the sample is fake: D(G(z)) = σ(−8) ≈ 0.0003.
    /// let logit = Var::new(&[-8f32], &Device::Cpu)?;
    /// for (loss, slope) in [(GeneratorLoss::Minimax, 0.0003), (GeneratorLoss::NonSaturating, 0.9997)] {
    ///     let grads = loss.loss(logit.as_tensor())?.backward()?;
    ///     let g = grads.get(&logit).unwrap().to_vec1::<f32>()?[0];
    ///     assert!((g.abs() - slope).abs() < 1e-4, "{loss:?}: {g}");
    /// }
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn loss(&self, fake_logits: &Tensor) -> Result<Tensor> {
        match self {
            GeneratorLoss::Minimax => softplus(fake_logits)?.neg()?.mean_all(),
            GeneratorLoss::NonSaturating => softplus(&fake_logits.neg()?)?.mean_all(),
        }
    }
}

/// What one [`Gan::step`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GanStats {
    /// The discriminator's loss (before its update); `2 ln 2 ≈ 1.386` when it cannot tell real from fake.
    pub d_loss: f64,
    /// The generator's loss (before its update).
    pub g_loss: f64,
    /// The mean `D(x)` over the real batch.
    pub d_real: f64,
    /// The mean `D(G(z))` over the generated batch of the generator's update.
    pub d_fake: f64,
    /// The norm of the gradient of the generator's loss over all its parameters: what the game teaches it.
    pub g_grad_norm: f64,
}

/// A generator, a discriminator and their two optimizers.
pub struct Gan {
    /// The generator.
    pub generator: Generator,
    /// The discriminator.
    pub discriminator: Discriminator,
    /// The generator's loss.
    pub loss: GeneratorLoss,
    config: GanConfig,
    g_vars: VarMap,
    d_vars: VarMap,
    g_opt: Box<dyn Step>,
    d_opt: Box<dyn Step>,
    rng: Rng,
}

impl std::fmt::Debug for Gan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gan").field("config", &self.config).field("loss", &self.loss).finish_non_exhaustive()
    }
}

impl Gan {
    /// Fresh networks drawn from `seed` (weights, dropout masks and the noise of every step), on `dev`.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::image_generation::gan::{Gan, GanConfig, GeneratorLoss};
    /// let config = GanConfig { hidden: 8, latent: 4, ..GanConfig::original() };
    /// let mut gan = Gan::new(config, GeneratorLoss::NonSaturating, 0, &Device::Cpu)?;
    /// let real = Tensor::zeros((6, 784), DType::F32, &Device::Cpu)?;
    /// let stats = gan.step(&real)?;
    /// assert!(stats.d_real > 0.0 && stats.d_real < 1.0 && stats.g_grad_norm > 0.0);
    /// assert_eq!(gan.sample(3, &mut Rng::new(1))?.dims(), &[3, 1, 28, 28]);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn new(config: GanConfig, loss: GeneratorLoss, seed: u64, dev: &Device) -> crate::Result<Self> {
        let rng = Rng::new(seed);
        let (g_vars, g_vb) = crate::init::seeded(rng.fork("generator").seed(), DType::F32, dev);
        let (d_vars, d_vb) = crate::init::seeded(rng.fork("discriminator").seed(), DType::F32, dev);
        let generator = Generator::new(&config, g_vb)?;
        let discriminator = Discriminator::new(&config, rng.fork("dropout").seed(), d_vb)?;
        let g_opt = config.optimizer.build(g_vars.all_vars())?;
        let d_opt = config.optimizer.build(d_vars.all_vars())?;
        Ok(Gan { generator, discriminator, loss, config, g_vars, d_vars, g_opt, d_opt, rng: rng.fork("noise") })
    }

    /// The configuration.
    pub fn config(&self) -> &GanConfig {
        &self.config
    }

    /// The generator's variables (to save it, or count them).
    pub fn generator_vars(&self) -> &VarMap {
        &self.g_vars
    }

    /// The discriminator's variables.
    pub fn discriminator_vars(&self) -> &VarMap {
        &self.d_vars
    }

    /// `n` noise vectors `z ~ N(0, I)`: `[n, latent]`.
    pub fn noise(&self, n: usize, rng: &mut Rng, dev: &Device) -> crate::Result<Tensor> {
        rng.normal_tensor((n, self.config.latent), 0.0, 1.0, dev)
    }

    /// The noise of the next training step, from the run's own stream.
    fn own_noise(&mut self, n: usize, dev: &Device) -> crate::Result<Tensor> {
        self.rng.normal_tensor((n, self.config.latent), 0.0, 1.0, dev)
    }

    /// One round of the game on a batch of real images `[B, 784]` with pixels in `[−1, 1]`: one update of `D`
    /// (real against a fresh generated batch), then one of `G` (through the updated `D`, on new noise). The
    /// paper's Algorithm 1 with `k = 1`, as the paper's experiments and the original notebook use.
    pub fn step(&mut self, real: &Tensor) -> crate::Result<GanStats> {
        let b = real.dim(0)?;
        if real.dims() != [b, PIXELS] {
            return Err(crate::Error::Invalid(format!(
                "Gan::step expects real images [B, {PIXELS}] in [-1, 1]; got {:?}",
                real.dims()
            )));
        }
        let dev = real.device().clone();
        // The discriminator's turn. `detach` keeps the generator out of this backward pass.
        let z = self.own_noise(b, &dev)?;
        let fake = self.generator.forward(&z)?.detach();
        let real_logits = self.discriminator.forward_t(real, true)?;
        let fake_logits = self.discriminator.forward_t(&fake, true)?;
        let d_loss = discriminator_loss(&real_logits, &fake_logits)?;
        let d_value = d_loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !d_value.is_finite() {
            return Err(crate::Error::Invalid(format!(
                "the game diverged: the discriminator's loss is {d_value}; lower the learning rate"
            )));
        }
        self.d_opt.apply(&d_loss.backward()?)?;
        // The generator's turn: its loss flows back through D (whose gradients are computed and thrown away).
        let z = self.own_noise(b, &dev)?;
        let logits = self.discriminator.forward_t(&self.generator.forward(&z)?, true)?;
        let g_loss = self.loss.loss(&logits)?;
        let grads = g_loss.backward()?;
        let mut sq = 0.0;
        for var in self.g_vars.all_vars() {
            if let Some(g) = grads.get(&var) {
                sq += g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            }
        }
        self.g_opt.apply(&grads)?;
        let mean = |t: &Tensor| -> Result<f64> { t.mean_all()?.to_dtype(DType::F64)?.to_scalar::<f64>() };
        Ok(GanStats {
            d_loss: d_value,
            g_loss: mean(&g_loss)?,
            d_real: mean(&candle_nn::ops::sigmoid(&real_logits)?)?,
            d_fake: mean(&candle_nn::ops::sigmoid(&logits)?)?,
            g_grad_norm: sq.sqrt(),
        })
    }

    /// Trains for `steps` rounds on shuffled batches of `batch` images of `data` (`x` as the data loader gives
    /// it, `[N, 1, 28, 28]` or `[N, 784]` with pixels in `[0, 1]`; rescaled to `[−1, 1]` here), epoch after epoch
    /// in the order seeded by `seed`. Calls `probe(step, &gan, &stats)` after every step (step counts from 1),
    /// for logging, snapshots and measurements.
    pub fn train(
        &mut self,
        data: &Dataset,
        steps: usize,
        batch: usize,
        seed: u64,
        mut probe: impl FnMut(usize, &Gan, &GanStats) -> crate::Result<()>,
    ) -> crate::Result<()> {
        crate::train::for_batches(data, steps, batch, seed, |step, x, _| {
            let real = x.flatten_from(1)?.affine(2.0, -1.0)?;
            let stats = self.step(&real)?;
            probe(step, self, &stats)
        })?;
        Ok(())
    }

    /// `n` generated images `[n, 1, 28, 28]` with pixels in `[0, 1]` (as the data loader gives real ones, and as
    /// the yardstick reads them), from noise drawn from `rng`.
    pub fn sample(&self, n: usize, rng: &mut Rng) -> crate::Result<Tensor> {
        let dev = self.g_vars.all_vars().first().map(|v| v.device().clone()).unwrap_or(Device::Cpu);
        let z = self.noise(n, rng, &dev)?;
        self.images(&z)
    }

    /// The images `[n, 1, 28, 28]` (pixels in `[0, 1]`) the generator makes from noise `z` `[n, latent]`.
    pub fn images(&self, z: &Tensor) -> crate::Result<Tensor> {
        let n = z.dim(0)?;
        Ok(((self.generator.forward(z)? + 1.0)? * 0.5)?.reshape((n, 1, 28, 28))?)
    }

    /// How sure the discriminator is that each of `images` `[N, 1, 28, 28]` (pixels in `[0, 1]`) is real: `D(x)`,
    /// `[N]`, dropout off.
    pub fn judge(&self, images: &Tensor) -> crate::Result<Tensor> {
        let x = images.flatten_from(1)?.affine(2.0, -1.0)?;
        Ok(candle_nn::ops::sigmoid(&self.discriminator.forward_t(&x, false)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `softplus` equals `ln(1 + eˣ)` where that is computable, and stays finite where `eˣ` overflows.
    #[test]
    fn softplus_is_stable() -> Result<()> {
        let x = Tensor::new(&[-100f32, -3.0, 0.0, 2.5, 100.0], &Device::Cpu)?;
        let y = softplus(&x)?.to_vec1::<f32>()?;
        let want = [0.0, (1.0f32 + (-3f32).exp()).ln(), 2f32.ln(), (1.0f32 + 2.5f32.exp()).ln(), 100.0];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
        Ok(())
    }

    /// The losses are the binary cross-entropies they are said to be.
    #[test]
    fn losses_match_their_probability_forms() -> Result<()> {
        let real = Tensor::new(&[1.5f32, -0.5], &Device::Cpu)?;
        let fake = Tensor::new(&[-2f32, 0.3], &Device::Cpu)?;
        let d = |l: f32| 1.0 / (1.0 + (-l).exp());
        let d_loss = discriminator_loss(&real, &fake)?.to_scalar::<f32>()?;
        let want = -(d(1.5).ln() + d(-0.5).ln()) / 2.0 - ((1.0 - d(-2.0)).ln() + (1.0 - d(0.3)).ln()) / 2.0;
        assert!((d_loss - want).abs() < 1e-6, "{d_loss} {want}");
        let mm = GeneratorLoss::Minimax.loss(&fake)?.to_scalar::<f32>()?;
        let ns = GeneratorLoss::NonSaturating.loss(&fake)?.to_scalar::<f32>()?;
        assert!((mm - ((1.0 - d(-2.0)).ln() + (1.0 - d(0.3)).ln()) / 2.0).abs() < 1e-6);
        assert!((ns + (d(-2.0).ln() + d(0.3).ln()) / 2.0).abs() < 1e-6);
        Ok(())
    }

    /// A seed repeats a run to the last bit; on a toy distribution (every real image the same), the generator
    /// moves its samples towards it.
    #[test]
    fn training_is_seeded_and_moves_samples_to_the_data() -> crate::Result<()> {
        let dev = Device::Cpu;
        let adam = GanOptimizer::Adam { lr: 2e-3, beta1: 0.5 };
        let config = GanConfig { latent: 8, hidden: 16, optimizer: adam, ..GanConfig::original() };
        // "Data": 64 copies of one image, a bright square on a dark ground.
        let img: Vec<f32> =
            (0..PIXELS).map(|i| if (i / 28 % 28) / 7 == 1 && (i % 28) / 7 == 1 { 1.0 } else { 0.0 }).collect();
        let x = Tensor::from_vec(img.repeat(64), (64, PIXELS), &dev)?;
        let data = Dataset::new(x.clone(), Tensor::zeros(64, DType::U32, &dev)?)?;
        let run = |seed| -> crate::Result<(Vec<f32>, f64)> {
            let mut gan = Gan::new(config, GeneratorLoss::NonSaturating, seed, &dev)?;
            let dist = |gan: &Gan| -> crate::Result<f64> {
                let s = gan.sample(32, &mut Rng::new(5))?.flatten_from(1)?;
                Ok(s.broadcast_sub(&x.narrow(0, 0, 1)?)?.abs()?.mean_all()?.to_scalar::<f32>()? as f64)
            };
            let before = dist(&gan)?;
            gan.train(&data, 200, 16, seed, |_, _, _| Ok(()))?;
            let after = dist(&gan)?;
            println!("seed {seed}: mean pixel error {before:.3} → {after:.3}");
            assert!(after < 0.5 * before, "mean pixel error {before} → {after}");
            let s = gan.sample(2, &mut Rng::new(9))?.flatten_all()?.to_vec1::<f32>()?;
            Ok((s, after))
        };
        let (a, _) = run(3)?;
        let (b, _) = run(3)?;
        let (c, _) = run(4)?;
        assert_eq!(a, b, "same seed, same samples");
        assert_ne!(a, c, "another seed, other samples");
        Ok(())
    }
}
