//! # Reading text out of a language model: temperature, top-k and nucleus (top-p) sampling
//!
//! Temperature: divide the logits by `τ` before the softmax, `p_i ∝ exp(z_i / τ)`; `τ < 1` sharpens the
//! distribution toward the most likely token (`τ → 0` is greedy decoding), `τ > 1` flattens it.
//! Top-k (A. Fan, M. Lewis and Y. Dauphin, "Hierarchical Neural Story Generation", 2018,
//! <https://arxiv.org/abs/1805.04833>): sample only among the `k` most likely tokens. Top-p, *nucleus* sampling
//! (A. Holtzman et al., "The Curious Case of Neural Text Degeneration", 2019, <https://arxiv.org/abs/1904.09751>):
//! sample among the smallest set of most likely tokens whose probabilities add up to at least `p`, so the set is
//! small where the model is sure and large where it is not. Both cut the long tail of unlikely tokens, each of
//! which is rare but which together are drawn often enough to derail a long sample.
//!
//! Every draw comes from a [`Rng`], so a seed gives the same text again.

use crate::rng::Rng;
use crate::{Error, Result};

/// How to draw the next token from a row of logits.
///
/// ```
/// use dlhist::transformers::Sampling;
/// let s = Sampling { temperature: 0.8, top_k: Some(40), top_p: None };
/// assert_eq!(Sampling::greedy().temperature, 0.0);
/// # let _ = s;
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// `τ`; 0 takes the most likely token (greedy).
    pub temperature: f64,
    /// Keep only the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Keep only the smallest most-likely set with total probability at least `p` (in `(0, 1]`).
    pub top_p: Option<f64>,
}

impl Sampling {
    /// Plain sampling from the model's distribution (`τ = 1`, no cut).
    pub fn plain() -> Self {
        Sampling { temperature: 1.0, top_k: None, top_p: None }
    }

    /// Always the most likely token.
    pub fn greedy() -> Self {
        Sampling { temperature: 0.0, top_k: None, top_p: None }
    }

    /// The probabilities this rule draws from, for a row of logits (zeros outside the kept set).
    ///
    /// ```
    /// use dlhist::transformers::Sampling;
    /// let logits = [2.0f32, 1.0, 0.0, -1.0];
    /// let p = Sampling { temperature: 1.0, top_k: Some(2), top_p: None }.probabilities(&logits)?;
    /// assert!((p[0] + p[1] - 1.0).abs() < 1e-12 && p[2] == 0.0 && p[3] == 0.0);
    /// assert!((p[0] / p[1] - 1f64.exp()).abs() < 1e-9);     // the kept tokens keep their ratios
    /// let nucleus = Sampling { temperature: 1.0, top_k: None, top_p: Some(0.5) }.probabilities(&logits)?;
    /// assert_eq!(nucleus, vec![1.0, 0.0, 0.0, 0.0]);        // the top token alone already has 64%
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn probabilities(&self, logits: &[f32]) -> Result<Vec<f64>> {
        if logits.is_empty() {
            return Err(Error::Invalid("Sampling: an empty row of logits".into()));
        }
        if self.temperature.is_nan() || self.temperature < 0.0 {
            return Err(Error::Invalid(format!("Sampling: temperature must be >= 0; got {}", self.temperature)));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::Invalid(format!("Sampling: top_p must be in (0, 1]; got {p}")));
            }
        }
        if self.top_k == Some(0) {
            return Err(Error::Invalid("Sampling: top_k must be at least 1".into()));
        }
        // Tokens from most to least likely (ties to the lower id, so greedy matches argmax).
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        let mut probs = vec![0f64; logits.len()];
        if self.temperature == 0.0 {
            probs[order[0]] = 1.0;
            return Ok(probs);
        }
        // Softmax of z / τ, in f64, shifted by the largest logit.
        let top = logits[order[0]] as f64;
        let e: Vec<f64> = logits.iter().map(|&z| ((z as f64 - top) / self.temperature).exp()).collect();
        let total: f64 = e.iter().sum();
        let mut keep = self.top_k.unwrap_or(logits.len()).min(logits.len());
        if let Some(p) = self.top_p {
            // The smallest prefix of the sorted tokens whose mass reaches p.
            let mut mass = 0.0;
            for (n, &i) in order.iter().enumerate() {
                mass += e[i] / total;
                if mass >= p {
                    keep = keep.min(n + 1);
                    break;
                }
            }
        }
        let kept: f64 = order[..keep].iter().map(|&i| e[i]).sum();
        for &i in &order[..keep] {
            probs[i] = e[i] / kept;
        }
        Ok(probs)
    }

    /// One token drawn from a row of logits.
    pub fn draw(&self, logits: &[f32], rng: &mut Rng) -> Result<u32> {
        let probs = self.probabilities(logits)?;
        let u = rng.uniform() as f64;
        let mut acc = 0.0;
        let mut last = 0;
        for (i, &p) in probs.iter().enumerate() {
            if p > 0.0 {
                acc += p;
                last = i;
                if u < acc {
                    return Ok(i as u32);
                }
            }
        }
        // u fell in the rounding gap above the last cumulative sum: the last kept token.
        Ok(last as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_follow_the_probabilities_and_repeat_with_the_seed() -> Result<()> {
        let logits = [1.0f32, 0.0, 0.5, -2.0];
        let s = Sampling { temperature: 0.7, top_k: Some(3), top_p: None };
        let p = s.probabilities(&logits)?;
        let mut counts = [0usize; 4];
        let mut rng = Rng::new(3);
        for _ in 0..20000 {
            counts[s.draw(&logits, &mut rng)? as usize] += 1;
        }
        for i in 0..4 {
            assert!((counts[i] as f64 / 20000.0 - p[i]).abs() < 0.015, "token {i}: {counts:?} vs {p:?}");
        }
        assert_eq!(counts[3], 0, "top-k must never draw the cut token");
        let draw = |seed| -> Result<Vec<u32>> {
            let mut r = Rng::new(seed);
            (0..50).map(|_| Sampling::plain().draw(&logits, &mut r)).collect()
        };
        assert_eq!(draw(9)?, draw(9)?);
        assert_ne!(draw(9)?, draw(10)?);
        assert_eq!(Sampling::greedy().draw(&logits, &mut Rng::new(0))?, 0);
        // Higher temperature: flatter.
        let hot = Sampling { temperature: 2.0, ..Sampling::plain() }.probabilities(&logits)?;
        let cold = Sampling { temperature: 0.5, ..Sampling::plain() }.probabilities(&logits)?;
        assert!(hot[0] < cold[0] && hot[3] > cold[3]);
        for bad in [
            Sampling { temperature: -1.0, ..Sampling::plain() },
            Sampling { top_p: Some(0.0), ..Sampling::plain() },
            Sampling { top_k: Some(0), ..Sampling::plain() },
        ] {
            assert!(bad.probabilities(&logits).is_err());
        }
        Ok(())
    }
}
