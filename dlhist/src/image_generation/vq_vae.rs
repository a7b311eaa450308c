//! # Neural Discrete Representation Learning (VQ-VAE), and its two-level successor (VQ-VAE-2)
//!
//! A. van den Oord, O. Vinyals and K. Kavukcuoglu, *Neural Discrete Representation Learning*, NeurIPS 2017,
//! <https://arxiv.org/abs/1711.00937>; A. Razavi, A. van den Oord and O. Vinyals, *Generating Diverse
//! High-Fidelity Images with VQ-VAE-2*, NeurIPS 2019, <https://arxiv.org/abs/1906.00446>.
//!
//! The encoder's output at each position, `z_e`, is replaced by its nearest entry of a learned codebook
//! `e_1 … e_K`; the decoder sees only the chosen entries, so an image becomes a small grid of integers. Nearest
//! neighbour has no gradient, so the paper copies the decoder's gradient straight through to the encoder
//! (`z_e + sg(z_q − z_e)`: the value of `z_q`, the gradient of `z_e`), and adds two terms to move codebook and
//! encoder towards each other (the paper's equation 3, `sg` = stop-gradient):
//!
//! ```text
//! L = ‖x − D(z_q)‖²  +  ‖sg(z_e) − e‖²  +  β ‖z_e − sg(e)‖²        (β = 0.25 in the paper)
//!     reconstruction    codebook          commitment
//! ```
//!
//! The paper's appendix offers a second way to learn the codebook ([`CodebookUpdate::Ema`], which VQ-VAE-2 uses):
//! drop the codebook term and set each code to the running mean of the encoder outputs it is chosen for, with
//! exponential moving averages of the count `N_k` and the sum `m_k` of those outputs (decay `γ`):
//!
//! ```text
//! N_k ← γ N_k + (1 − γ) n_k        m_k ← γ m_k + (1 − γ) Σ_{i: k chosen} z_e,i        e_k = m_k / N_k
//! ```
//!
//! New images come from a second model, an autoregressive prior over the grid of codes ([`CodePrior`]: an LSTM
//! over the codes in raster order, the simplest member of the PixelRNN family the paper's PixelCNN belongs to),
//! decoded by `D`. VQ-VAE-2 quantizes at two scales: a top grid for global structure, and a bottom grid, twice as
//! fine, encoded with the top level's decoding as context; the decoder reads both ([`VqVaeConfig::levels`] = 2).
//!
//! Networks for 28×28 images (`C` channels, codes of dimension `d`), max-pooling to go down and nearest-neighbour
//! upsampling to go up:
//!
//! ```text
//! one level:  x → conv3 1→32, pool → conv3 32→C, pool → conv1 C→d  = z_e 7×7 → quantize
//!             z_q → conv3 d→C, up → conv3 C→32, up → conv3 32→1 = x̂
//! two levels: h = conv3 1→32, pool → conv3 32→C                            (14×14)
//!             top:    pool(h) → conv3 C→C → conv1 C→d → quantize            (7×7)
//!             bottom: [h, up(conv3 d→C (top_q))] → conv1 2C→d → quantize    (14×14)
//!             x̂ = conv3 C→32 ([bottom_q ⊕ up(top_q) → conv3 2d→C]), up → conv3 32→1
//! ```

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor, Var, D};
use candle_nn::{Embedding, VarBuilder};

use crate::layers::{upsample_nearest2d, Activation, ConvBlock, Dense, MaxPool2d, Recurrent};
use crate::rng::Rng;
use crate::sequence_modeling::Lstm;

/// The sizes of a [`VqVae`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VqVaeConfig {
    /// Channels of the inner convolutions `C`.
    pub channels: usize,
    /// Dimension of each code vector `d`.
    pub code_dim: usize,
    /// Codebook size `K` of the top (or only) level.
    pub codes: usize,
    /// Codebook size of the bottom level (two levels only).
    pub bottom_codes: usize,
    /// The commitment weight `β`.
    pub beta: f64,
    /// 1 (VQ-VAE, a 7×7 grid of codes) or 2 (VQ-VAE-2: 7×7 top and 14×14 bottom grids).
    pub levels: usize,
    /// How the codebooks learn (every level the same way).
    pub update: CodebookUpdate,
}

/// How a [`VectorQuantizer`]'s codebook learns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CodebookUpdate {
    /// By the optimizer, through the codebook term `‖sg(z_e) − e‖²` of the loss (the paper's equation 3).
    Loss,
    /// By exponential moving averages with decay `γ` (the paper's appendix; γ = 0.99 there), applied by
    /// [`VectorQuantizer::ema_update`] after each step: the loss keeps only the commitment term, and the codebook
    /// gets no gradient, so an optimizer handed it leaves it alone.
    Ema {
        /// The decay `γ` of the running counts and sums, in `[0, 1)`.
        decay: f64,
    },
}

impl VqVaeConfig {
    /// One level, `C` = 64, `d` = 16, `K` = 128, `β` = 0.25 (the paper's).
    pub fn small() -> Self {
        VqVaeConfig {
            channels: 64,
            code_dim: 16,
            codes: 128,
            bottom_codes: 128,
            beta: 0.25,
            levels: 1,
            update: CodebookUpdate::Loss,
        }
    }
}

/// A codebook and the nearest-neighbour quantization of the module docs. Parameter `{path}.codebook` `[K, d]`.
///
/// Clones share the codebook (and the moving averages of [`CodebookUpdate::Ema`]): an update through one is seen
/// by all.
#[derive(Debug, Clone)]
pub struct VectorQuantizer {
    codebook: Var,
    beta: f64,
    ema: Option<EmaState>,
}

/// The running statistics of [`CodebookUpdate::Ema`]: training state, not parameters, so they live outside the
/// `VarMap` (a saved model holds the codebook itself).
#[derive(Debug, Clone)]
struct EmaState {
    decay: f64,
    counts: Var, // N_k, [K]
    sums: Var,   // m_k, [K, d]
}

/// Added to each running count before the codes are divided by them (Laplace smoothing), so a code that has not
/// been chosen for a long time is not divided by a count that has decayed to zero.
const EMA_EPSILON: f64 = 1e-5;

/// What [`VectorQuantizer::quantize`] returns.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// `z_q` with the straight-through gradient: `z_e + sg(z_q − z_e)`, `[N, d, H, W]`.
    pub z_q: Tensor,
    /// The chosen code at each position, `[N, H, W]` (u32).
    pub indices: Tensor,
    /// `‖sg(z_e) − e‖² + β ‖z_e − sg(e)‖²`, averaged over positions and dimensions (only the commitment term
    /// `β ‖z_e − sg(e)‖²` for [`CodebookUpdate::Ema`]).
    pub vq_loss: Tensor,
    /// The encoder outputs, one position per row, detached: `[N·H·W, d]` (what [`VectorQuantizer::ema_update`]
    /// averages).
    pub z_e_rows: Tensor,
}

impl VectorQuantizer {
    /// `codes` code vectors of dimension `dim`, drawn uniformly from `±1/codes` (the common starting point),
    /// learned by the codebook term of the loss.
    pub fn new(codes: usize, dim: usize, beta: f64, vb: VarBuilder) -> Result<Self> {
        Self::with_update(codes, dim, beta, CodebookUpdate::Loss, vb)
    }

    /// As [`VectorQuantizer::new`], with the codebook learned as `update` says. The moving averages of
    /// [`CodebookUpdate::Ema`] start with a count of 1 and a sum equal to each code: every code begins as the mean
    /// of one observation, itself, so the first updates move it towards the data instead of towards zero.
    pub fn with_update(codes: usize, dim: usize, beta: f64, update: CodebookUpdate, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / codes as f64;
        let book = vb.get_with_hints((codes, dim), "codebook", candle_nn::Init::Uniform { lo: -bound, up: bound })?;
        // A tensor from a VarMap is a variable already: this shares its storage, so `set` updates the VarMap's copy.
        let codebook = Var::from_tensor(&book)?;
        let ema = match update {
            CodebookUpdate::Loss => None,
            CodebookUpdate::Ema { decay } => {
                if !(0.0..1.0).contains(&decay) {
                    candle_core::bail!("CodebookUpdate::Ema: the decay must lie in [0, 1), not {decay}")
                }
                Some(EmaState {
                    decay,
                    counts: Var::ones(codes, book.dtype(), book.device())?,
                    sums: Var::from_tensor(&book.copy()?)?,
                })
            }
        };
        Ok(VectorQuantizer { codebook, beta, ema })
    }

    /// The codebook `[K, d]`.
    pub fn codebook(&self) -> &Tensor {
        self.codebook.as_tensor()
    }

    /// Replaces the codebook by `codes` `[K, d]` (and restarts the moving averages on them).
    pub fn set_codebook(&self, codes: &Tensor) -> Result<()> {
        if codes.dims() != self.codebook.dims() {
            candle_core::bail!("set_codebook: codebook {:?}, new codes {:?}", self.codebook.dims(), codes.dims())
        }
        let codes = codes.detach().to_dtype(self.codebook.dtype())?;
        self.codebook.set(&codes)?;
        if let Some(ema) = &self.ema {
            ema.counts.set(&ema.counts.ones_like()?)?;
            ema.sums.set(&codes)?;
        }
        Ok(())
    }

    /// One step of [`CodebookUpdate::Ema`] from the outputs of a [`VectorQuantizer::quantize`] on a training
    /// batch (module docs; nothing for [`CodebookUpdate::Loss`]). Call it once per training step, never on
    /// evaluation batches: it moves the codes.
    pub fn ema_update(&self, q: &Quantized) -> Result<()> {
        let Some(ema) = &self.ema else { return Ok(()) };
        let (codes, _) = self.codebook.dims2()?;
        let idx = q.indices.flatten_all()?;
        let rows = q.z_e_rows.to_dtype(self.codebook.dtype())?;
        // n_k and Σ z_e for this batch: scatter each position into the row of its code.
        let ones = Tensor::ones(rows.dim(0)?, rows.dtype(), rows.device())?;
        let chosen = Tensor::zeros(codes, rows.dtype(), rows.device())?.index_add(&idx, &ones, 0)?;
        let summed = self.codebook.zeros_like()?.index_add(&idx, &rows, 0)?;
        let g = ema.decay;
        let counts = ((ema.counts.as_tensor() * g)? + (chosen * (1.0 - g))?)?;
        let sums = ((ema.sums.as_tensor() * g)? + (summed * (1.0 - g))?)?;
        ema.counts.set(&counts)?;
        ema.sums.set(&sums)?;
        // Laplace smoothing keeps the total count and lifts every count by about ε.
        let total = counts.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let smoothed = ((counts + EMA_EPSILON)? * (total / (total + codes as f64 * EMA_EPSILON)))?;
        self.codebook.set(&sums.broadcast_div(&smoothed.unsqueeze(1)?)?)
    }

    /// Quantizes encoder outputs `z_e` `[N, d, H, W]` (module docs).
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::image_generation::vq_vae::VectorQuantizer;
    /// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &Device::Cpu);
    /// let vq = VectorQuantizer::new(4, 2, 0.25, vb)?;
    /// let z_e = Tensor::zeros((1, 2, 3, 3), DType::F32, &Device::Cpu)?;
    /// let q = vq.quantize(&z_e)?;
    /// assert_eq!(q.z_q.dims(), &[1, 2, 3, 3]);
    /// assert_eq!(q.indices.dims(), &[1, 3, 3]);
    /// // Every position picks the same code, the one nearest the origin.
    /// let idx = q.indices.flatten_all()?.to_vec1::<u32>()?;
    /// assert!(idx.iter().all(|&i| i == idx[0]));
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn quantize(&self, z_e: &Tensor) -> Result<Quantized> {
        let (n, d, h, w) = z_e.dims4()?;
        if d != self.codebook.dim(1)? {
            candle_core::bail!(
                "quantize: codes of dimension {}, encoder output {:?}",
                self.codebook.dim(1)?,
                z_e.dims()
            )
        }
        // Positions as rows: [N·H·W, d].
        let flat = z_e.permute((0, 2, 3, 1))?.reshape((n * h * w, d))?;
        // ‖z − e‖² = ‖z‖² − 2 z·e + ‖e‖²; ‖z‖² is the same for every code, so the argmin ignores it.
        let scores =
            (flat.matmul(&self.codebook.t()?)? * -2.0)?.broadcast_add(&self.codebook.sqr()?.sum(1)?.unsqueeze(0)?)?;
        let indices = scores.argmin(1)?; // [N·H·W]
        let commitment = |chosen: &Tensor| (&flat - chosen.detach())?.sqr()?.mean_all()? * self.beta;
        let (chosen, vq_loss) = match self.ema {
            None => {
                let chosen = self.codebook.index_select(&indices, 0)?; // [N·H·W, d], gradients reach the codebook
                let codebook_loss = (flat.detach() - &chosen)?.sqr()?.mean_all()?;
                let vq_loss = (codebook_loss + commitment(&chosen)?)?;
                (chosen, vq_loss)
            }
            // The moving averages move the codes; the loss only holds the encoder to them.
            Some(_) => {
                let chosen = self.codebook.as_tensor().detach().index_select(&indices, 0)?;
                let vq_loss = commitment(&chosen)?;
                (chosen, vq_loss)
            }
        };
        // Straight-through: the forward value of the chosen codes, the gradient of the encoder's output.
        let st = (&flat + (chosen - &flat)?.detach())?;
        let z_q = st.reshape((n, h, w, d))?.permute((0, 3, 1, 2))?.contiguous()?;
        Ok(Quantized { z_q, indices: indices.reshape((n, h, w))?, vq_loss, z_e_rows: flat.detach() })
    }

    /// The code vectors for a grid of indices `[N, H, W]`: `[N, d, H, W]`.
    pub fn lookup(&self, indices: &Tensor) -> Result<Tensor> {
        let (n, h, w) = indices.dims3()?;
        let d = self.codebook.dim(1)?;
        self.codebook
            .index_select(&indices.flatten_all()?, 0)?
            .reshape((n, h, w, d))?
            .permute((0, 3, 1, 2))?
            .contiguous()
    }
}

/// The perplexity of code use, `exp(−Σ_k p_k ln p_k)` over the codes' frequencies in `indices`: the number of
/// equally used codes that would give the same entropy (1 if one code is used, `K` if all are used evenly).
pub fn perplexity(indices: &Tensor, codes: usize) -> crate::Result<f64> {
    let idx = indices.flatten_all()?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    let mut counts = vec![0usize; codes];
    for &i in &idx {
        let slot = counts
            .get_mut(i as usize)
            .ok_or_else(|| crate::Error::Invalid(format!("perplexity: code {i} is outside a codebook of {codes}")))?;
        *slot += 1;
    }
    let n = idx.len().max(1) as f64;
    let h: f64 = counts.iter().filter(|&&c| c > 0).map(|&c| c as f64 / n).map(|p| -p * p.ln()).sum();
    Ok(h.exp())
}

/// The encoder, quantizer(s) and decoder of the module docs.
#[derive(Debug, Clone)]
pub struct VqVae {
    config: VqVaeConfig,
    enc1: ConvBlock,
    enc2: ConvBlock,
    // one level: conv1 C→d at 7×7; two levels: the top encoder's conv3 C→C and conv1 C→d
    top_conv: Option<ConvBlock>,
    top_out: ConvBlock,
    top_vq: VectorQuantizer,
    // two levels only: the top code's decoding for the bottom encoder, and the bottom projection and codebook
    top_up: Option<ConvBlock>,
    bottom_out: Option<ConvBlock>,
    bottom_vq: Option<VectorQuantizer>,
    dec1: ConvBlock,
    dec2: ConvBlock,
    dec3: ConvBlock,
}

/// What [`VqVae::forward`] returns.
#[derive(Debug, Clone)]
pub struct VqOutput {
    /// The reconstruction `[N, 1, 28, 28]`.
    pub reconstruction: Tensor,
    /// The sum of the levels' codebook and commitment terms.
    pub vq_loss: Tensor,
    /// The top (or only) level's codes `[N, 7, 7]`.
    pub top: Tensor,
    /// The bottom level's codes `[N, 14, 14]`, for two levels.
    pub bottom: Option<Tensor>,
    /// Each level's quantization, top first (for [`VqVae::update_codebooks`]).
    pub quantized: Vec<Quantized>,
}

impl VqOutput {
    /// The training loss: reconstruction MSE against `x` plus the quantizers' terms.
    pub fn loss(&self, x: &Tensor) -> Result<Tensor> {
        (&self.reconstruction - x)?.sqr()?.mean_all()? + &self.vq_loss
    }
}

impl VqVae {
    /// A model with fresh weights from `vb`.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::image_generation::vq_vae::{VqVae, VqVaeConfig};
    /// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &Device::Cpu);
    /// let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
    /// for levels in [1, 2] {
    ///     let cfg = VqVaeConfig { channels: 8, code_dim: 4, codes: 16, levels, ..VqVaeConfig::small() };
    ///     let out = VqVae::new(cfg, vb.pp(levels))?.forward(&x)?;
    ///     assert_eq!(out.reconstruction.dims(), &[2, 1, 28, 28]);
    ///     assert_eq!(out.top.dims(), &[2, 7, 7]);
    ///     assert_eq!(out.bottom.map(|b| b.dims().to_vec()), (levels == 2).then(|| vec![2, 14, 14]));
    /// }
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn new(config: VqVaeConfig, vb: VarBuilder) -> crate::Result<Self> {
        if !(1..=2).contains(&config.levels) {
            return Err(crate::Error::Invalid(format!("VqVae has 1 or 2 levels, not {}", config.levels)));
        }
        let (c, d, relu) = (config.channels, config.code_dim, Some(Activation::Relu));
        let two = config.levels == 2;
        Ok(VqVae {
            config,
            enc1: ConvBlock::new(1, 32, 3, 1, relu, vb.pp("enc1"))?,
            enc2: ConvBlock::new(32, c, 3, 1, relu, vb.pp("enc2"))?,
            top_conv: if two { Some(ConvBlock::new(c, c, 3, 1, relu, vb.pp("top_conv"))?) } else { None },
            top_out: ConvBlock::new(c, d, 1, 0, None, vb.pp("top_out"))?,
            top_vq: VectorQuantizer::with_update(config.codes, d, config.beta, config.update, vb.pp("top_vq"))?,
            top_up: if two { Some(ConvBlock::new(d, c, 3, 1, relu, vb.pp("top_up"))?) } else { None },
            bottom_out: if two { Some(ConvBlock::new(2 * c, d, 1, 0, None, vb.pp("bottom_out"))?) } else { None },
            bottom_vq: if two {
                Some(VectorQuantizer::with_update(
                    config.bottom_codes,
                    d,
                    config.beta,
                    config.update,
                    vb.pp("bottom_vq"),
                )?)
            } else {
                None
            },
            dec1: ConvBlock::new(if two { 2 * d } else { d }, c, 3, 1, relu, vb.pp("dec1"))?,
            dec2: ConvBlock::new(c, 32, 3, 1, relu, vb.pp("dec2"))?,
            dec3: ConvBlock::new(32, 1, 3, 1, None, vb.pp("dec3"))?,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VqVaeConfig {
        &self.config
    }

    /// The top (or only) level's quantizer.
    pub fn top_quantizer(&self) -> &VectorQuantizer {
        &self.top_vq
    }

    /// Encodes, quantizes and decodes images `x` `[N, 1, 28, 28]` (pixels in `[0, 1]`).
    pub fn forward(&self, x: &Tensor) -> Result<VqOutput> {
        let h = self.enc2.forward(&self.enc1.forward_pool(x, MaxPool2d::new(2))?)?; // [N, C, 14, 14]
        let pool = MaxPool2d::new(2);
        match (&self.top_conv, &self.top_up, &self.bottom_out, &self.bottom_vq) {
            (Some(top_conv), Some(top_up), Some(bottom_out), Some(bottom_vq)) => {
                let top_e = self.top_out.forward(&top_conv.forward(&pool.forward(&h)?)?)?; // [N, d, 7, 7]
                let top = self.top_vq.quantize(&top_e)?;
                let context = top_up.forward(&upsample_nearest2d(&top.z_q, 14, 14)?)?; // [N, C, 14, 14]
                let bottom_e = bottom_out.forward(&Tensor::cat(&[&h, &context], 1)?)?; // [N, d, 14, 14]
                let bottom = bottom_vq.quantize(&bottom_e)?;
                let both = Tensor::cat(&[&bottom.z_q, &upsample_nearest2d(&top.z_q, 14, 14)?], 1)?;
                Ok(VqOutput {
                    reconstruction: self.decode_14(&both)?,
                    vq_loss: (&top.vq_loss + &bottom.vq_loss)?,
                    top: top.indices.clone(),
                    bottom: Some(bottom.indices.clone()),
                    quantized: vec![top, bottom],
                })
            }
            _ => {
                let z_e = self.top_out.forward(&pool.forward(&h)?)?; // [N, d, 7, 7]
                let q = self.top_vq.quantize(&z_e)?;
                Ok(VqOutput {
                    reconstruction: self.decode_7(&q.z_q)?,
                    vq_loss: q.vq_loss.clone(),
                    top: q.indices.clone(),
                    bottom: None,
                    quantized: vec![q],
                })
            }
        }
    }

    /// Sets every codebook to encoder outputs of images `x` at positions drawn from `rng` (a data-dependent start,
    /// the usual cure for codes that the uniform start leaves too far from the encoder's outputs ever to be chosen).
    /// The bottom level is initialized after the top, from the top's quantized context.
    pub fn init_codebooks(&self, x: &Tensor, rng: &mut Rng) -> crate::Result<()> {
        let pick = |z_e: &Tensor, codes: usize, rng: &mut Rng| -> Result<Tensor> {
            let d = z_e.dim(1)?;
            let rows = z_e.permute((0, 2, 3, 1))?.reshape(((), d))?;
            let n = rows.dim(0)?;
            let picks: Vec<u32> = (0..codes).map(|_| rng.below(n) as u32).collect();
            rows.index_select(&Tensor::from_vec(picks, codes, x.device())?, 0)
        };
        let pool = MaxPool2d::new(2);
        let h = self.enc2.forward(&self.enc1.forward_pool(x, MaxPool2d::new(2))?)?;
        let top_e = match &self.top_conv {
            Some(top_conv) => self.top_out.forward(&top_conv.forward(&pool.forward(&h)?)?)?,
            None => self.top_out.forward(&pool.forward(&h)?)?,
        };
        self.top_vq.set_codebook(&pick(&top_e, self.config.codes, rng)?)?;
        if let (Some(top_up), Some(bottom_out), Some(bottom_vq)) = (&self.top_up, &self.bottom_out, &self.bottom_vq) {
            let top = self.top_vq.quantize(&top_e)?;
            let context = top_up.forward(&upsample_nearest2d(&top.z_q, 14, 14)?)?;
            let bottom_e = bottom_out.forward(&Tensor::cat(&[&h, &context], 1)?)?;
            bottom_vq.set_codebook(&pick(&bottom_e, self.config.bottom_codes, rng)?)?;
        }
        Ok(())
    }

    /// One step of the moving-average codebook updates ([`CodebookUpdate::Ema`]) from a training batch's
    /// [`VqOutput`]; nothing for [`CodebookUpdate::Loss`]. Call it after each optimizer step.
    pub fn update_codebooks(&self, out: &VqOutput) -> crate::Result<()> {
        let quantizers = std::iter::once(&self.top_vq).chain(self.bottom_vq.as_ref());
        if out.quantized.len() != self.config.levels {
            return Err(crate::Error::Invalid(format!(
                "update_codebooks: an output with {} level(s) for a model with {}",
                out.quantized.len(),
                self.config.levels
            )));
        }
        for (vq, q) in quantizers.zip(&out.quantized) {
            vq.ema_update(q)?;
        }
        Ok(())
    }

    /// Images from grids of codes: `top` `[N, 7, 7]` (u32), and for two levels `bottom` `[N, 14, 14]` too. With
    /// codes from different images at the two levels, this shows what each level carries.
    pub fn decode_codes(&self, top: &Tensor, bottom: Option<&Tensor>) -> crate::Result<Tensor> {
        match (&self.bottom_vq, bottom) {
            (None, None) => Ok(self.decode_7(&self.top_vq.lookup(top)?)?),
            (Some(bottom_vq), Some(bottom)) => {
                let both = Tensor::cat(
                    &[&bottom_vq.lookup(bottom)?, &upsample_nearest2d(&self.top_vq.lookup(top)?, 14, 14)?],
                    1,
                )?;
                Ok(self.decode_14(&both)?)
            }
            _ => Err(crate::Error::Invalid(format!(
                "decode_codes: a {}-level VqVae decodes {} grid(s) of codes",
                self.config.levels, self.config.levels
            ))),
        }
    }

    /// What each level of a two-level model carries, measured on images `x`: the reconstruction error (MSE against
    /// `x`) with each image's own codes, and with one level's codes taken from the next image in `x` (the last
    /// takes the first's) while the other level keeps its own. A level that carries much of the image raises the
    /// error a lot when swapped; one the decoder ignores changes nothing.
    pub fn level_swap_errors(&self, x: &Tensor) -> crate::Result<LevelSwap> {
        let out = self.forward(x)?;
        let bottom = out
            .bottom
            .as_ref()
            .ok_or_else(|| crate::Error::Invalid("level_swap_errors needs a two-level VqVae (levels = 2)".into()))?;
        let n = x.dim(0)?;
        if n < 2 {
            return Err(crate::Error::Invalid(format!("level_swap_errors needs at least 2 images, got {n}")));
        }
        // Image i gets image i+1's codes.
        let next = |codes: &Tensor| Tensor::cat(&[&codes.narrow(0, 1, n - 1)?, &codes.narrow(0, 0, 1)?], 0);
        let mse = |y: &Tensor| -> crate::Result<f64> {
            Ok((y - x)?.sqr()?.mean_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
        };
        Ok(LevelSwap {
            own: mse(&out.reconstruction)?,
            top_swapped: mse(&self.decode_codes(&next(&out.top)?, Some(bottom))?)?,
            bottom_swapped: mse(&self.decode_codes(&out.top, Some(&next(bottom)?))?)?,
        })
    }

    fn decode_7(&self, z_q: &Tensor) -> Result<Tensor> {
        let h = upsample_nearest2d(&self.dec1.forward(z_q)?, 14, 14)?;
        self.decode_from_14(&self.dec2.forward(&h)?)
    }

    fn decode_14(&self, z: &Tensor) -> Result<Tensor> {
        self.decode_from_14(&self.dec2.forward(&self.dec1.forward(z)?)?)
    }

    fn decode_from_14(&self, h: &Tensor) -> Result<Tensor> {
        // The last block works at full size; a sigmoid keeps pixels in [0, 1] like the data.
        candle_nn::ops::sigmoid(&self.dec3.forward(&upsample_nearest2d(h, 28, 28)?)?)
    }
}

/// What [`VqVae::level_swap_errors`] measures: reconstruction errors (MSE) with the images' own codes, and with
/// one level's codes swapped for another image's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelSwap {
    /// Both levels the image's own.
    pub own: f64,
    /// The top codes another image's.
    pub top_swapped: f64,
    /// The bottom codes another image's.
    pub bottom_swapped: f64,
}

/// An autoregressive prior over a one-level [`VqVae`]'s 7×7 grids of codes, read in raster order: a code
/// embedding, an LSTM and a read-out to the next code's logits. Parameters `{path}.embed`, `{path}.lstm`,
/// `{path}.out`.
#[derive(Debug, Clone)]
pub struct CodePrior {
    embed: Embedding,
    lstm: Lstm,
    out: Dense,
    codes: usize,
}

impl CodePrior {
    /// A prior over `codes` codes (plus a start symbol) with an LSTM of `hidden` units.
    pub fn new(codes: usize, embed: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(CodePrior {
            embed: candle_nn::embedding(codes + 1, embed, vb.pp("embed"))?,
            lstm: Lstm::new(embed, hidden, vb.pp("lstm"))?,
            out: Dense::new(hidden, codes, None, vb.pp("out"))?,
            codes,
        })
    }

    /// The next-code logits `[N, T, K]` for code sequences `[N, T]` (u32): position `t` predicts code `t` from
    /// the start symbol and codes `0 .. t`.
    pub fn logits(&self, seq: &Tensor) -> Result<Tensor> {
        let (n, t) = seq.dims2()?;
        let start = Tensor::full(self.codes as u32, (n, 1), seq.device())?;
        let inputs = Tensor::cat(&[&start, &seq.narrow(1, 0, t - 1)?], 1)?;
        self.out.forward(&self.lstm.forward(&self.embed.forward(&inputs)?)?)
    }

    /// The mean negative log-likelihood per code (nats) of code grids `[N, 7, 7]`: the training loss.
    pub fn loss(&self, grids: &Tensor) -> Result<Tensor> {
        let (n, h, w) = grids.dims3()?;
        let seq = grids.reshape((n, h * w))?;
        crate::layers::token_cross_entropy(&self.logits(&seq)?, &seq)
    }

    /// `n` new grids `[n, 7, 7]`, each code drawn from the prior's distribution given the ones before it
    /// (temperature 1), from `rng`.
    pub fn sample(&self, n: usize, side: usize, rng: &mut Rng, dev: &Device) -> crate::Result<Tensor> {
        let mut prev = Tensor::full(self.codes as u32, (n, 1), dev)?;
        let mut state = None;
        let mut out: Vec<Tensor> = Vec::with_capacity(side * side);
        for _ in 0..side * side {
            let (h, s) = self.lstm.forward_from(&self.embed.forward(&prev)?, state.as_ref())?;
            state = Some(s);
            let probs = candle_nn::ops::softmax(&self.out.forward(&h.i((.., 0))?)?, D::Minus1)?;
            let rows = probs.to_dtype(DType::F64)?.to_vec2::<f64>()?;
            let drawn: Vec<u32> = rows
                .iter()
                .map(|p| {
                    let u = rng.uniform() as f64;
                    let mut acc = 0.0;
                    p.iter()
                        .position(|&q| {
                            acc += q;
                            acc > u
                        })
                        .unwrap_or(p.len() - 1) as u32
                })
                .collect();
            prev = Tensor::from_vec(drawn, (n, 1), dev)?;
            out.push(prev.clone());
        }
        Ok(Tensor::cat(&out, 1)?.reshape((n, side, side))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// The straight-through estimator: the output equals the chosen code, the gradient reaches `z_e` unchanged,
    /// and the codebook term's gradient reaches the chosen code only.
    #[test]
    fn straight_through_and_codebook_gradients() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (vars, vb) = crate::init::seeded(0, DType::F32, &dev);
        let vq = VectorQuantizer::new(3, 2, 0.25, vb)?;
        let z = Var::from_tensor(&Tensor::new(&[0.3f32, -0.2], &dev)?.reshape((1, 2, 1, 1))?)?;
        let q = vq.quantize(z.as_tensor())?;
        let k = q.indices.flatten_all()?.to_vec1::<u32>()?[0] as usize;
        let code = vq.codebook().i(k)?.to_vec1::<f32>()?;
        // z + (e − z) equals e up to one rounding.
        for (a, b) in q.z_q.flatten_all()?.to_vec1::<f32>()?.iter().zip(&code) {
            assert!((a - b).abs() < 1e-6, "{a} against the code's {b}");
        }
        // d(sum z_q)/dz = 1 everywhere (straight through).
        let grads = q.z_q.sum_all()?.backward()?;
        assert_eq!(grads.get(&z).expect("z has a gradient").flatten_all()?.to_vec1::<f32>()?, vec![1.0, 1.0]);
        // The codebook term moves only the chosen code.
        let grads = q.vq_loss.backward()?;
        let book = vars.all_vars().into_iter().next().expect("the codebook");
        let g = grads.get(&book).expect("the codebook has a gradient").to_vec2::<f32>()?;
        for (row, gr) in g.iter().enumerate() {
            assert_eq!(gr.iter().any(|v| *v != 0.0), row == k, "row {row}: {gr:?}");
        }
        Ok(())
    }

    /// Initializing the codebooks from the data puts every code on an encoder output: all codes are then in use
    /// on the images they were drawn from, where the uniform start uses a few.
    #[test]
    fn codebooks_start_on_the_data() -> crate::Result<()> {
        let dev = Device::Cpu;
        let x = Rng::new(3).uniform_tensor((16, 1, 28, 28), 0.0, 1.0, &dev)?;
        for (levels, update) in
            [(1, CodebookUpdate::Loss), (2, CodebookUpdate::Loss), (2, CodebookUpdate::Ema { decay: 0.9 })]
        {
            let (vars, vb) = crate::init::seeded(4, DType::F32, &dev);
            let cfg = VqVaeConfig {
                channels: 8,
                code_dim: 4,
                codes: 16,
                bottom_codes: 16,
                levels,
                update,
                ..VqVaeConfig::small()
            };
            let model = VqVae::new(cfg, vb)?;
            let before = perplexity(&model.forward(&x)?.top, 16)?;
            model.init_codebooks(&x, &mut Rng::new(5))?;
            // The VarMap holds the new codebooks (what a saved model would store).
            let stored = vars.data().lock().expect("the VarMap")["top_vq.codebook"].as_tensor().clone();
            assert_eq!(stored.to_vec2::<f32>()?, model.top_quantizer().codebook().to_vec2::<f32>()?);
            let out = model.forward(&x)?;
            let after = perplexity(&out.top, 16)?;
            assert!(after > before && after > 4.0, "{levels} level(s): perplexity {before} → {after}");
            if let Some(bottom) = out.bottom {
                assert!(perplexity(&bottom, 16)? > 4.0);
            }
        }
        Ok(())
    }

    /// The moving-average update by hand: codes 0 and 10 in one dimension, outputs 1, 2 and 9, decay 0.5. Counts
    /// 1 → 0.5 + 0.5·2 = 1.5 and 0.5 + 0.5·1 = 1; sums 0 → 0.5·3 = 1.5 and 5 + 4.5 = 9.5; codes 1.0 and 9.5.
    #[test]
    fn ema_update_by_hand() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (vars, vb) = crate::init::seeded(0, DType::F32, &dev);
        let vq = VectorQuantizer::with_update(2, 1, 0.25, CodebookUpdate::Ema { decay: 0.5 }, vb)?;
        vq.set_codebook(&Tensor::new(&[[0f32], [10.0]], &dev)?)?;
        let z = Var::from_tensor(&Tensor::new(&[1f32, 2.0, 9.0], &dev)?.reshape((1, 1, 1, 3))?)?;
        let q = vq.quantize(z.as_tensor())?;
        assert_eq!(q.indices.flatten_all()?.to_vec1::<u32>()?, vec![0, 0, 1]);
        // The loss is the commitment term alone: 0.25 · mean((1−0)², (2−0)², (9−10)²) = 0.5.
        assert!((q.vq_loss.to_scalar::<f32>()? - 0.5).abs() < 1e-6);
        // No gradient reaches the codebook; the encoder output gets the commitment gradient.
        let grads = q.vq_loss.backward()?;
        let book = vars.all_vars().into_iter().next().expect("the codebook");
        assert!(grads.get(&book).is_none());
        assert!(grads.get(&z).is_some());
        vq.ema_update(&q)?;
        let codes = vq.codebook().flatten_all()?.to_vec1::<f32>()?;
        assert!((codes[0] - 1.0).abs() < 1e-4 && (codes[1] - 9.5).abs() < 1e-4, "{codes:?}");
        // The VarMap's codebook is the same storage.
        assert_eq!(book.as_tensor().flatten_all()?.to_vec1::<f32>()?, codes);
        Ok(())
    }

    /// Repeated moving-average updates on points from four clusters bring each code to its cluster's mean, as
    /// k-means would; the loss-updated quantizer ignores `ema_update`.
    #[test]
    fn ema_codes_converge_to_cluster_means() -> crate::Result<()> {
        let dev = Device::Cpu;
        let centres = [[-3f32, -3.0], [-3.0, 3.0], [3.0, -3.0], [3.0, 3.0]];
        let mut rng = Rng::new(9);
        let mut points = vec![];
        for i in 0..400 {
            let c = centres[i % 4];
            points.extend([c[0] + 0.5 * rng.normal(), c[1] + 0.5 * rng.normal()]);
        }
        // [N, d, H, W] with 400 positions along W.
        let z = Tensor::from_vec(points, (400, 2), &dev)?.t()?.reshape((1, 2, 1, 400))?;
        for update in [CodebookUpdate::Ema { decay: 0.8 }, CodebookUpdate::Loss] {
            let (_vars, vb) = crate::init::seeded(0, DType::F32, &dev);
            let vq = VectorQuantizer::with_update(4, 2, 0.25, update, vb)?;
            let start = Tensor::new(&[[-1f32, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]], &dev)?;
            vq.set_codebook(&start)?;
            for _ in 0..60 {
                vq.ema_update(&vq.quantize(&z)?)?;
            }
            let codes = vq.codebook().to_vec2::<f32>()?;
            for (code, centre) in codes.iter().zip(&centres) {
                let off = ((code[0] - centre[0]).powi(2) + (code[1] - centre[1]).powi(2)).sqrt();
                match update {
                    CodebookUpdate::Ema { .. } => assert!(off < 0.2, "code {code:?} against centre {centre:?}"),
                    CodebookUpdate::Loss => assert!(off > 2.0, "the loss-updated codebook moved: {code:?}"),
                }
            }
        }
        Ok(())
    }

    /// Two-level decoding from codes: the output of the encoder's own codes is its reconstruction; the wrong
    /// number of grids is an error that says how many the model takes.
    #[test]
    fn decoding_codes_of_one_and_two_levels() -> crate::Result<()> {
        let dev = Device::Cpu;
        let x = Rng::new(3).uniform_tensor((3, 1, 28, 28), 0.0, 1.0, &dev)?;
        for levels in [1, 2] {
            let (_vars, vb) = crate::init::seeded(4, DType::F32, &dev);
            let cfg = VqVaeConfig { channels: 8, code_dim: 4, codes: 16, levels, ..VqVaeConfig::small() };
            let model = VqVae::new(cfg, vb)?;
            let out = model.forward(&x)?;
            let decoded = model.decode_codes(&out.top, out.bottom.as_ref())?;
            let diff = (decoded - &out.reconstruction)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff < 1e-6, "{levels} level(s): {diff}");
            let wrong = if levels == 1 { Some(&out.top) } else { None };
            let err = model.decode_codes(&out.top, wrong).expect_err("wrong number of grids").to_string();
            assert!(err.contains(&format!("{levels}-level")), "{err}");
        }
        Ok(())
    }

    /// Perplexity: 1 for one code, K for K codes used evenly.
    #[test]
    fn perplexity_counts_codes_in_use() -> crate::Result<()> {
        let dev = Device::Cpu;
        let one = Tensor::new(&[[3u32, 3, 3, 3]], &dev)?;
        assert!((perplexity(&one, 8)? - 1.0).abs() < 1e-12);
        let four = Tensor::new(&[[0u32, 1, 2, 3]], &dev)?;
        assert!((perplexity(&four, 8)? - 4.0).abs() < 1e-9);
        assert!(perplexity(&four, 2).is_err());
        Ok(())
    }

    /// The prior learns a deterministic pattern of codes, and sampling then reproduces it.
    #[test]
    fn the_prior_learns_and_samples_a_pattern() -> crate::Result<()> {
        use candle_nn::Optimizer;
        let dev = Device::Cpu;
        let (vars, vb) = crate::init::seeded(2, DType::F32, &dev);
        let prior = CodePrior::new(5, 8, 32, vb)?;
        // Every grid is 0 1 2 3 4 0 1 2 ... (position mod 5).
        let grid: Vec<u32> = (0..9).map(|i| i % 5).collect();
        let data = Tensor::from_vec(grid.repeat(16), (16, 3, 3), &dev)?;
        let mut opt = crate::optimization::Adam::new(vars.all_vars(), crate::optimization::AdamConfig::new(1e-2))?;
        for _ in 0..200 {
            opt.backward_step(&prior.loss(&data)?)?;
        }
        let loss = prior.loss(&data)?.to_scalar::<f32>()?;
        assert!(loss < 0.05, "loss {loss}");
        let s = prior.sample(4, 3, &mut Rng::new(1), &dev)?.flatten_from(1)?.to_vec2::<u32>()?;
        assert!(s.iter().all(|row| *row == grid), "{s:?}");
        Ok(())
    }
}
