//! # Where a token is: sinusoidal and learned positions
//!
//! A. Vaswani et al., "Attention Is All You Need", NeurIPS 2017, section 3.5. <https://arxiv.org/abs/1706.03762>
//!
//! Attention is a weighted average over a *set*: permute the keys and values together and the output does not
//! change. A model built only from attention and position-wise layers therefore cannot tell "dog bites man" from
//! "man bites dog" unless the position of each token is written into its vector. The paper adds to each input
//! embedding a vector that depends only on the position `pos`:
//!
//! ```text
//! PE(pos, 2i)     = sin(pos / 10000^(2i / d_model))
//! PE(pos, 2i + 1) = cos(pos / 10000^(2i / d_model))
//! ```
//!
//! Each pair of columns is a clock hand turning at its own speed, wavelengths from `2π` to `10000·2π`. For any
//! fixed offset `k`, `PE(pos + k)` is a rotation of `PE(pos)`, the same rotation for every `pos` (the angle-sum
//! identities), so "the token `k` places back" is a linear function a head can learn once; and the table is
//! defined for any length, longer than any seen in training. The paper also tried a learned table (one trained
//! vector per position) and reports nearly identical results (its Table 3, row E).

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Embedding, Init, Module, VarBuilder};

/// The sinusoidal table `PE [len, d_model]` of the module docs (`d_model` even).
///
/// ```
/// use dlhist::prelude::*;
/// let pe = dlhist::transformers::sinusoidal_positions(3, 4, &Device::Cpu)?.to_vec2::<f32>()?;
/// assert_eq!(pe[0], vec![0.0, 1.0, 0.0, 1.0]);                       // sin 0, cos 0 in every pair
/// assert!((pe[1][0] - 1f32.sin()).abs() < 1e-6);                      // the fastest clock: angle = pos
/// assert!((pe[2][3] - (2.0f32 / 100.0).cos()).abs() < 1e-6);          // pair i = 1: angle = pos / 10000^(2/4)
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn sinusoidal_positions(len: usize, d_model: usize, dev: &Device) -> Result<Tensor> {
    if d_model == 0 || !d_model.is_multiple_of(2) {
        candle_core::bail!("sinusoidal_positions: d_model = {d_model} must be even (sine and cosine columns pair up)")
    }
    let mut pe = vec![0f32; len * d_model];
    for pos in 0..len {
        for i in 0..d_model / 2 {
            // Computed in f64: at pos 5000 the angle needs more digits than f32 keeps to land on the right phase.
            let angle = pos as f64 / 10000f64.powf(2.0 * i as f64 / d_model as f64);
            pe[pos * d_model + 2 * i] = angle.sin() as f32;
            pe[pos * d_model + 2 * i + 1] = angle.cos() as f32;
        }
    }
    Tensor::from_vec(pe, (len, d_model), dev)
}

/// How a model writes positions into its token vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionKind {
    /// The fixed table of [`sinusoidal_positions`] (the paper's choice).
    Sinusoidal,
    /// One trained vector per position, up to a maximum length (the paper's Table 3, row E; GPT's choice).
    Learned,
    /// Nothing: the model sees a bag of tokens (the ablation that shows why positions are needed).
    None,
}

/// Positions added to `[B, T, C]` token vectors: parameters `{path}.weight` (`[max_len, C]`) for
/// [`PositionKind::Learned`], none otherwise.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::{PositionKind, Positions};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let pos = Positions::new(PositionKind::Sinusoidal, 16, 4, vb)?;
/// let x = Tensor::zeros((2, 3, 4), DType::F32, &dev)?;
/// assert_eq!(pos.forward(&x)?.get(1)?.to_vec2::<f32>()?[0], vec![0.0, 1.0, 0.0, 1.0]);
/// assert!(pos.forward(&Tensor::zeros((1, 17, 4), DType::F32, &dev)?).is_ok()); // sinusoids extrapolate
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Positions {
    kind: PositionKind,
    table: Option<Embedding>,
    d_model: usize,
    max_len: usize,
}

impl Positions {
    /// Positions of the given kind for streams of width `d_model`; a learned table has `max_len` rows, drawn
    /// from N(0, 1/2), the mean square of a sinusoidal entry, so both kinds start at the same scale.
    pub fn new(kind: PositionKind, max_len: usize, d_model: usize, vb: VarBuilder) -> Result<Self> {
        let table = match kind {
            PositionKind::Learned => {
                let w =
                    vb.get_with_hints((max_len, d_model), "weight", Init::Randn { mean: 0.0, stdev: 0.5f64.sqrt() })?;
                Some(Embedding::new(w, d_model))
            }
            _ => None,
        };
        if kind == PositionKind::Sinusoidal && !d_model.is_multiple_of(2) {
            candle_core::bail!("Positions: sinusoidal positions need an even width; got d_model = {d_model}")
        }
        Ok(Positions { kind, table, d_model, max_len })
    }

    /// The kind.
    pub fn kind(&self) -> PositionKind {
        self.kind
    }

    /// The `[T, C]` vectors of positions `offset..offset + T`, or `None` for [`PositionKind::None`].
    pub fn table(&self, offset: usize, t: usize, dev: &Device, dtype: DType) -> Result<Option<Tensor>> {
        match self.kind {
            PositionKind::None => Ok(None),
            PositionKind::Sinusoidal => {
                Ok(Some(sinusoidal_positions(offset + t, self.d_model, dev)?.narrow(0, offset, t)?.to_dtype(dtype)?))
            }
            PositionKind::Learned => {
                if offset + t > self.max_len {
                    candle_core::bail!(
                        "Positions: a learned table of {} positions cannot place positions up to {}; build the model \
                         with a larger max_len",
                        self.max_len,
                        offset + t
                    )
                }
                let ids = Tensor::arange(offset as u32, (offset + t) as u32, dev)?;
                Ok(Some(self.table.as_ref().expect("a learned kind has a table").forward(&ids)?))
            }
        }
    }
}

impl Module for Positions {
    /// `x + PE[0..T]` for `x` `[B, T, C]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, t, c) = x.dims3()?;
        if c != self.d_model {
            candle_core::bail!(
                "Positions of width {} expects [B, T, {}]; got {:?}",
                self.d_model,
                self.d_model,
                x.dims()
            )
        }
        match self.table(0, t, x.device(), x.dtype())? {
            Some(pe) => x.broadcast_add(&pe),
            None => Ok(x.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper's reason for sinusoids: PE(pos + k) is one fixed linear map (a rotation of each sine-cosine
    /// pair by the angle k·ω_i) applied to PE(pos), whatever pos is.
    #[test]
    fn an_offset_is_the_same_rotation_at_every_position() -> Result<()> {
        let (d, k) = (8, 5);
        let pe = sinusoidal_positions(60, d, &Device::Cpu)?.to_vec2::<f32>()?;
        for pos in [0, 7, 31, 50] {
            for i in 0..d / 2 {
                let w = 1.0 / 10000f64.powf(2.0 * i as f64 / d as f64);
                let (s, c) = ((k as f64 * w).sin() as f32, (k as f64 * w).cos() as f32);
                let (sp, cp) = (pe[pos][2 * i], pe[pos][2 * i + 1]);
                // sin(a + b) = sin a cos b + cos a sin b;  cos(a + b) = cos a cos b − sin a sin b
                assert!((pe[pos + k][2 * i] - (sp * c + cp * s)).abs() < 1e-5);
                assert!((pe[pos + k][2 * i + 1] - (cp * c - sp * s)).abs() < 1e-5);
            }
        }
        Ok(())
    }

    #[test]
    fn learned_tables_refuse_positions_past_their_end_and_none_adds_nothing() -> Result<()> {
        let dev = crate::device::test_device();
        let (_vars, vb) = crate::init::seeded(0, DType::F32, &dev);
        let learned = Positions::new(PositionKind::Learned, 4, 6, vb.pp("l"))?;
        let x = Tensor::ones((2, 4, 6), DType::F32, &dev)?;
        assert_eq!(learned.forward(&x)?.dims(), &[2, 4, 6]);
        let err = learned.forward(&Tensor::ones((1, 5, 6), DType::F32, &dev)?).unwrap_err().to_string();
        assert!(err.contains("max_len"), "{err}");
        let none = Positions::new(PositionKind::None, 4, 6, vb.pp("n"))?;
        assert_eq!(none.forward(&x)?.to_vec3::<f32>()?, x.to_vec3::<f32>()?);
        assert!(Positions::new(PositionKind::Sinusoidal, 4, 5, vb.pp("s")).is_err());
        assert!(learned.forward(&Tensor::ones((1, 2, 5), DType::F32, &dev)?).is_err());
        Ok(())
    }
}
