//! # Scaling laws: validation loss as a power law in model size
//!
//! J. Kaplan et al., "Scaling Laws for Neural Language Models", 2020. <https://arxiv.org/abs/2001.08361>
//!
//! Kaplan et al. found a language model's test loss to fall as a power of its number of non-embedding parameters
//! `N`, when data and training time do not limit it:
//!
//! ```text
//! L(N) = (N_c / N)^α_N        ⇔        ln L = α_N ln N_c − α_N ln N
//! ```
//!
//! a straight line on log-log axes. GPT-3 was sized by such fits. [`PowerLaw::fit`] fits the line by least squares
//! on `(ln N, ln L)` and reports `R²` on that scale; [`non_embedding_params`] counts `N` for a [`Gpt`] as Kaplan et
//! al. count it, leaving out the token and position embeddings (and our untied output layer, which GPT-2 ties to
//! the token embedding).
//!
//! [`Gpt`]: super::Gpt

use super::GptConfig;
use crate::{Error, Result};

/// `L = a · N^(−alpha)`, fitted on log-log axes.
///
/// ```
/// use dlhist::transformers::scaling::PowerLaw;
/// let n = [1e3, 1e4, 1e5];
/// let loss: Vec<f64> = n.iter().map(|&x: &f64| 5.0 * x.powf(-0.1)).collect();
/// let fit = PowerLaw::fit(&n, &loss)?;
/// assert!((fit.alpha - 0.1).abs() < 1e-9 && (fit.a - 5.0).abs() < 1e-9 && (fit.r2 - 1.0).abs() < 1e-12);
/// assert!((fit.predict(1e6) - 5.0 * 1e6f64.powf(-0.1)).abs() < 1e-9);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLaw {
    /// The loss at `N = 1`.
    pub a: f64,
    /// The exponent: each doubling of `N` multiplies the loss by `2^(−alpha)`.
    pub alpha: f64,
    /// The share of the variance of `ln L` the line explains.
    pub r2: f64,
}

impl PowerLaw {
    /// Least squares of `ln loss` on `ln n`; at least three points, all positive, not all of one size.
    pub fn fit(n: &[f64], loss: &[f64]) -> Result<Self> {
        if n.len() != loss.len() || n.len() < 3 {
            return Err(Error::Invalid(format!(
                "PowerLaw::fit needs at least 3 (size, loss) points of equal count; got {} sizes and {} losses",
                n.len(),
                loss.len()
            )));
        }
        if n.iter().chain(loss).any(|&v| !(v > 0.0 && v.is_finite())) {
            return Err(Error::Invalid(format!(
                "PowerLaw::fit: sizes and losses must be positive; got {n:?}, {loss:?}"
            )));
        }
        let (x, y): (Vec<f64>, Vec<f64>) = n.iter().zip(loss).map(|(a, b)| (a.ln(), b.ln())).unzip();
        let m = x.len() as f64;
        let (mx, my) = (x.iter().sum::<f64>() / m, y.iter().sum::<f64>() / m);
        let sxx: f64 = x.iter().map(|v| (v - mx).powi(2)).sum();
        if sxx == 0.0 {
            return Err(Error::Invalid("PowerLaw::fit: all sizes are equal".into()));
        }
        let sxy: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let slope = sxy / sxx;
        let intercept = my - slope * mx;
        let ss_tot: f64 = y.iter().map(|v| (v - my).powi(2)).sum();
        let ss_res: f64 = x.iter().zip(&y).map(|(a, b)| (b - intercept - slope * a).powi(2)).sum();
        let r2 = if ss_tot == 0.0 { 1.0 } else { 1.0 - ss_res / ss_tot };
        Ok(PowerLaw { a: intercept.exp(), alpha: -slope, r2 })
    }

    /// The fitted loss at size `n`.
    pub fn predict(&self, n: f64) -> f64 {
        self.a * n.powf(-self.alpha)
    }
}

/// The parameters of a [`super::Gpt`] outside its embeddings and output layer: per block the attention's
/// `W_qkv` and `W_O` with biases, the two feed-forward layers, two layer norms; and the final layer norm. About
/// `12 · n_layer · n_embd²`, Kaplan et al.'s approximation.
///
/// ```
/// use dlhist::transformers::{scaling::non_embedding_params, GptConfig};
/// let cfg = GptConfig { vocab_size: 100, block_size: 16, n_embd: 64, n_layer: 2, n_head: 4 };
/// assert_eq!(non_embedding_params(&cfg), 2 * (12 * 64 * 64 + 13 * 64) + 2 * 64);
/// ```
pub fn non_embedding_params(cfg: &GptConfig) -> usize {
    let c = cfg.n_embd;
    // qkv 3C² + 3C, proj C² + C, fc 4C² + 4C, proj 4C² + C, two norms 4C.
    let block = 12 * c * c + 13 * c;
    cfg.n_layer * block + 2 * c
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn the_count_matches_the_model_and_the_fit_rejects_bad_input() -> Result<()> {
        let cfg = GptConfig { vocab_size: 37, block_size: 9, n_embd: 24, n_layer: 3, n_head: 4 };
        let (vars, vb) = crate::init::seeded(0, DType::F32, &Device::Cpu);
        super::super::Gpt::new(cfg, vb)?;
        let total = crate::init::param_count(&vars);
        // Embeddings (V·C + T·C) and the output layer (C·V + V) are the rest.
        assert_eq!(total - non_embedding_params(&cfg), 37 * 24 + 9 * 24 + 24 * 37 + 37);
        assert!(PowerLaw::fit(&[1.0, 2.0], &[1.0, 2.0]).is_err());
        assert!(PowerLaw::fit(&[1.0, 2.0, 3.0], &[1.0, 0.0, 2.0]).is_err());
        assert!(PowerLaw::fit(&[2.0, 2.0, 2.0], &[1.0, 1.5, 2.0]).is_err());
        // Noisy points: R² below 1, exponent near the truth.
        let n = [1e3f64, 3e3, 1e4, 3e4, 1e5];
        let loss: Vec<f64> =
            n.iter().zip([1.02, 0.98, 1.01, 0.99, 1.0]).map(|(x, e): (&f64, f64)| 4.0 * x.powf(-0.2) * e).collect();
        let fit = PowerLaw::fit(&n, &loss)?;
        assert!(fit.r2 < 1.0 && fit.r2 > 0.95 && (fit.alpha - 0.2).abs() < 0.02, "{fit:?}");
        Ok(())
    }
}
