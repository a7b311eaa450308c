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

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor, D};
use candle_nn::{Embedding, VarBuilder, VarMap};

use crate::layers::{Activation, ConvBlock, Dense, MaxPool2d, Recurrent};
use crate::rng::Rng;
use crate::sequence_modeling::Lstm;

/// The sizes of a [`VqVae`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VqVaeConfig {
    /// Channels of the inner convolutions `C`.
    pub channels: usize,
    /// Dimension of each code vector `d`.
    pub code_dim: usize,
    /// Codebook size `K` (each level has its own codebook).
    pub codes: usize,
    /// The commitment weight `β`.
    pub beta: f64,
    /// 1 (VQ-VAE, a 7×7 grid of codes) or 2 (VQ-VAE-2: 7×7 top and 14×14 bottom grids).
    pub levels: usize,
}

impl VqVaeConfig {
    /// One level, `C` = 64, `d` = 16, `K` = 128, `β` = 0.25 (the paper's).
    pub fn small() -> Self {
        VqVaeConfig { channels: 64, code_dim: 16, codes: 128, beta: 0.25, levels: 1 }
    }
}

/// A codebook and the nearest-neighbour quantization of the module docs. Parameter `{path}.codebook` `[K, d]`.
#[derive(Debug, Clone)]
pub struct VectorQuantizer {
    codebook: Tensor,
    beta: f64,
}

/// What [`VectorQuantizer::quantize`] returns.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// `z_q` with the straight-through gradient: `z_e + sg(z_q − z_e)`, `[N, d, H, W]`.
    pub z_q: Tensor,
    /// The chosen code at each position, `[N, H, W]` (u32).
    pub indices: Tensor,
    /// `‖sg(z_e) − e‖² + β ‖z_e − sg(e)‖²`, averaged over positions and dimensions.
    pub vq_loss: Tensor,
}

impl VectorQuantizer {
    /// `codes` code vectors of dimension `dim`, drawn uniformly from `±1/codes` (the common starting point).
    pub fn new(codes: usize, dim: usize, beta: f64, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / codes as f64;
        let codebook =
            vb.get_with_hints((codes, dim), "codebook", candle_nn::Init::Uniform { lo: -bound, up: bound })?;
        Ok(VectorQuantizer { codebook, beta })
    }

    /// The codebook `[K, d]`.
    pub fn codebook(&self) -> &Tensor {
        &self.codebook
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
        let chosen = self.codebook.index_select(&indices, 0)?; // [N·H·W, d], gradients flow to the codebook
        let codebook_loss = (flat.detach() - &chosen)?.sqr()?.mean_all()?;
        let commitment = (&flat - chosen.detach())?.sqr()?.mean_all()?;
        let vq_loss = (codebook_loss + (commitment * self.beta)?)?;
        // Straight-through: the forward value of the chosen codes, the gradient of the encoder's output.
        let st = (&flat + (chosen - &flat)?.detach())?;
        let z_q = st.reshape((n, h, w, d))?.permute((0, 3, 1, 2))?.contiguous()?;
        Ok(Quantized { z_q, indices: indices.reshape((n, h, w))?, vq_loss })
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
            top_vq: VectorQuantizer::new(config.codes, d, config.beta, vb.pp("top_vq"))?,
            top_up: if two { Some(ConvBlock::new(d, c, 3, 1, relu, vb.pp("top_up"))?) } else { None },
            bottom_out: if two { Some(ConvBlock::new(2 * c, d, 1, 0, None, vb.pp("bottom_out"))?) } else { None },
            bottom_vq: if two {
                Some(VectorQuantizer::new(config.codes, d, config.beta, vb.pp("bottom_vq"))?)
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
                let context = top_up.forward(&top.z_q.upsample_nearest2d(14, 14)?)?; // [N, C, 14, 14]
                let bottom_e = bottom_out.forward(&Tensor::cat(&[&h, &context], 1)?)?; // [N, d, 14, 14]
                let bottom = bottom_vq.quantize(&bottom_e)?;
                let both = Tensor::cat(&[&bottom.z_q, &top.z_q.upsample_nearest2d(14, 14)?], 1)?;
                Ok(VqOutput {
                    reconstruction: self.decode_14(&both)?,
                    vq_loss: (top.vq_loss + bottom.vq_loss)?,
                    top: top.indices,
                    bottom: Some(bottom.indices),
                })
            }
            _ => {
                let z_e = self.top_out.forward(&pool.forward(&h)?)?; // [N, d, 7, 7]
                let q = self.top_vq.quantize(&z_e)?;
                Ok(VqOutput {
                    reconstruction: self.decode_7(&q.z_q)?,
                    vq_loss: q.vq_loss,
                    top: q.indices,
                    bottom: None,
                })
            }
        }
    }

    /// Sets every codebook to encoder outputs of images `x` at positions drawn from `rng` (a data-dependent start,
    /// the usual cure for codes that the uniform start leaves too far from the encoder's outputs ever to be chosen).
    /// `vars` must hold this model's variables (found by their names ending in `top_vq.codebook` and
    /// `bottom_vq.codebook`); the bottom level is initialized after the top, from the top's quantized context.
    pub fn init_codebooks(&self, vars: &VarMap, x: &Tensor, rng: &mut Rng) -> crate::Result<()> {
        let codes = self.config.codes;
        let set = |suffix: &str, z_e: &Tensor, rng: &mut Rng| -> crate::Result<()> {
            let d = z_e.dim(1)?;
            let rows = z_e.permute((0, 2, 3, 1))?.reshape(((), d))?;
            let n = rows.dim(0)?;
            let picks: Vec<u32> = (0..codes).map(|_| rng.below(n) as u32).collect();
            let chosen = rows.index_select(&Tensor::from_vec(picks, codes, x.device())?, 0)?.detach();
            let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
            let found: Vec<_> = data.iter().filter(|(k, _)| k.ends_with(suffix)).collect();
            match found.as_slice() {
                [(_, var)] => Ok(var.set(&chosen)?),
                _ => Err(crate::Error::Invalid(format!(
                    "init_codebooks: expected one variable named …{suffix} in the VarMap, found {}",
                    found.len()
                ))),
            }
        };
        let pool = MaxPool2d::new(2);
        let h = self.enc2.forward(&self.enc1.forward_pool(x, MaxPool2d::new(2))?)?;
        let top_e = match &self.top_conv {
            Some(top_conv) => self.top_out.forward(&top_conv.forward(&pool.forward(&h)?)?)?,
            None => self.top_out.forward(&pool.forward(&h)?)?,
        };
        set("top_vq.codebook", &top_e, rng)?;
        if let (Some(top_up), Some(bottom_out)) = (&self.top_up, &self.bottom_out) {
            let top = self.top_vq.quantize(&top_e)?;
            let context = top_up.forward(&top.z_q.upsample_nearest2d(14, 14)?)?;
            let bottom_e = bottom_out.forward(&Tensor::cat(&[&h, &context], 1)?)?;
            set("bottom_vq.codebook", &bottom_e, rng)?;
        }
        Ok(())
    }

    /// One level: images from a grid of codes `[N, 7, 7]` (u32).
    pub fn decode_codes(&self, codes: &Tensor) -> crate::Result<Tensor> {
        if self.config.levels != 1 {
            return Err(crate::Error::Invalid("decode_codes decodes a one-level VqVae's 7×7 codes".into()));
        }
        Ok(self.decode_7(&self.top_vq.lookup(codes)?)?)
    }

    fn decode_7(&self, z_q: &Tensor) -> Result<Tensor> {
        let h = self.dec1.forward(z_q)?.upsample_nearest2d(14, 14)?;
        self.decode_from_14(&self.dec2.forward(&h)?)
    }

    fn decode_14(&self, z: &Tensor) -> Result<Tensor> {
        self.decode_from_14(&self.dec2.forward(&self.dec1.forward(z)?)?)
    }

    fn decode_from_14(&self, h: &Tensor) -> Result<Tensor> {
        // The last block works at full size; a sigmoid keeps pixels in [0, 1] like the data.
        candle_nn::ops::sigmoid(&self.dec3.forward(&h.upsample_nearest2d(28, 28)?)?)
    }
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
        let logits = self.logits(&seq)?;
        crate::layers::cross_entropy(&logits.reshape((n * h * w, self.codes))?, &seq.flatten_all()?)
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
        for levels in [1, 2] {
            let (vars, vb) = crate::init::seeded(4, DType::F32, &dev);
            let cfg = VqVaeConfig { channels: 8, code_dim: 4, codes: 16, levels, ..VqVaeConfig::small() };
            let model = VqVae::new(cfg, vb)?;
            let before = perplexity(&model.forward(&x)?.top, 16)?;
            model.init_codebooks(&vars, &x, &mut Rng::new(5))?;
            let out = model.forward(&x)?;
            let after = perplexity(&out.top, 16)?;
            assert!(after > before && after > 4.0, "{levels} level(s): perplexity {before} → {after}");
            if let Some(bottom) = out.bottom {
                assert!(perplexity(&bottom, 16)? > 4.0);
            }
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
