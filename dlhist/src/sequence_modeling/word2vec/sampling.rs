//! The two random choices of word2vec: which words to drop (subsampling) and which to use as negatives.

use rand::RngCore;

use crate::rng::Rng;
use crate::{Error, Result};

/// The probability that one occurrence of a word with corpus frequency `count / total` is *kept* when
/// subsampling with threshold `sample` (t): word2vec.c's formula, which gensim also uses,
///
/// ```text
/// keep(w) = (sqrt(f(w) / t) + 1) · t / f(w),   f(w) = count(w) / total   (capped at 1)
/// ```
///
/// The paper (Mikolov et al. 2013b, equation 5) writes the *discard* probability as `1 − sqrt(t / f(w))`, i.e.
/// keep = sqrt(t / f). The released code keeps a little more: at f = 100 t the paper keeps 10% of the
/// occurrences and the code 11%; at f = t the paper keeps all of them and the code too (the cap). Both leave
/// words rarer than about t untouched and cut the most frequent ones by orders of magnitude. `sample = 0` turns
/// subsampling off (keep everything).
///
/// ```
/// use dlhist::sequence_modeling::word2vec::keep_probability;
/// assert_eq!(keep_probability(10, 1_000_000, 1e-3), 1.0); // a rare word is always kept
/// let the = keep_probability(60_000, 1_000_000, 1e-3); // 6% of the corpus
/// assert!((the - ((60.0f64).sqrt() + 1.0) / 60.0).abs() < 1e-12);
/// assert_eq!(keep_probability(60_000, 1_000_000, 0.0), 1.0);
/// ```
pub fn keep_probability(count: u64, total: u64, sample: f64) -> f64 {
    if sample <= 0.0 || count == 0 || total == 0 {
        return 1.0;
    }
    let ratio = sample * total as f64 / count as f64; // t / f(w)
    (((1.0 / ratio).sqrt() + 1.0) * ratio).min(1.0)
}

/// Draws negative samples from the unigram distribution raised to a power (0.75 in the paper), in O(1) per draw
/// with Walker's alias method: two arrays of the vocabulary's size instead of word2vec.c's table of 10⁸
/// entries, and exact probabilities instead of the table's rounding for rare words.
///
/// ```
/// use dlhist::rng::Rng;
/// use dlhist::sequence_modeling::word2vec::NegativeSampler;
/// let sampler = NegativeSampler::new(&[81, 16, 1], 0.75)?; // weights 27 : 8 : 1
/// assert!((sampler.probability(0) - 27.0 / 36.0).abs() < 1e-12);
/// let mut rng = Rng::new(0);
/// let hits = (0..36_000).filter(|_| sampler.sample(&mut rng) == 2).count();
/// assert!((800..1200).contains(&hits), "{hits}"); // about 1 in 36
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NegativeSampler {
    /// Per slot, the chance (scaled to 2³²) of keeping the slot's own word rather than its alias.
    keep: Vec<u64>,
    /// Per slot, the word drawn otherwise.
    alias: Vec<u32>,
    /// The exact probability of each word, for inspection and tests.
    probs: Vec<f64>,
}

impl NegativeSampler {
    /// The sampler for word counts `counts` (ids are positions) raised to `power`.
    ///
    /// Errors when `counts` is empty or all zero, or `power` is not finite.
    pub fn new(counts: &[u64], power: f64) -> Result<NegativeSampler> {
        let weights: Vec<f64> = counts.iter().map(|&c| (c as f64).powf(power)).collect();
        let sum: f64 = weights.iter().sum();
        if counts.is_empty() || !power.is_finite() || sum <= 0.0 || !sum.is_finite() {
            return Err(Error::Invalid(format!(
                "NegativeSampler needs at least one positive count and a finite power; got {} counts, power {power}",
                counts.len()
            )));
        }
        let n = counts.len();
        let probs: Vec<f64> = weights.iter().map(|w| w / sum).collect();
        // Vose's construction: scale to mean 1, pair each under-full slot with an over-full word.
        let mut scaled: Vec<f64> = probs.iter().map(|p| p * n as f64).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| scaled[i] < 1.0);
        let mut keep = vec![1u64 << 32; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            keep[s] = (scaled[s] * (1u64 << 32) as f64) as u64;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Whatever is left (rounding) keeps its own word with certainty.
        Ok(NegativeSampler { keep, alias, probs })
    }

    /// The number of words.
    pub fn len(&self) -> usize {
        self.probs.len()
    }

    /// Whether there are no words (never true for a sampler that [`NegativeSampler::new`] returned).
    pub fn is_empty(&self) -> bool {
        self.probs.is_empty()
    }

    /// The probability of drawing word `id`.
    pub fn probability(&self, id: u32) -> f64 {
        self.probs[id as usize]
    }

    /// One draw.
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> u32 {
        self.sample_bits(rng.next_u64())
    }

    /// One draw from 64 random bits: the high half picks a slot, the low half tosses its coin.
    #[inline(always)]
    pub(crate) fn sample_bits(&self, bits: u64) -> u32 {
        let slot = (((bits >> 32) * self.keep.len() as u64) >> 32) as usize;
        if (bits & 0xffff_ffff) < self.keep[slot] {
            slot as u32
        } else {
            self.alias[slot]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_frequencies_follow_count_to_the_three_quarters() {
        let counts: Vec<u64> = vec![10_000, 3_000, 1_000, 300, 100, 30, 10, 1];
        let sampler = NegativeSampler::new(&counts, 0.75).unwrap();
        let z: f64 = counts.iter().map(|&c| (c as f64).powf(0.75)).sum();
        let mut rng = Rng::new(17);
        let draws = 2_000_000;
        let mut seen = vec![0u64; counts.len()];
        for _ in 0..draws {
            seen[sampler.sample(&mut rng) as usize] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let expected = (c as f64).powf(0.75) / z;
            assert!((sampler.probability(i as u32) - expected).abs() < 1e-12);
            let got = seen[i] as f64 / draws as f64;
            // Five binomial standard deviations.
            let sd = (expected * (1.0 - expected) / draws as f64).sqrt();
            assert!((got - expected).abs() < 5.0 * sd + 1e-9, "word {i}: {got} vs {expected}");
        }
        // 0.75 flattens the distribution: the rarest word is drawn far more often than its unigram share.
        assert!(sampler.probability(7) > 3.0 / counts.iter().sum::<u64>() as f64);
        assert!(NegativeSampler::new(&[], 0.75).is_err());
        assert!(NegativeSampler::new(&[0, 0], 0.75).is_err());
    }

    #[test]
    fn subsampling_keeps_rare_words_and_thins_frequent_ones() {
        let total = 1_000_000;
        for count in [1, 10, 100, 1000] {
            assert_eq!(keep_probability(count, total, 1e-3), 1.0, "count {count}");
        }
        let frequent = keep_probability(100_000, total, 1e-3); // f = 100 t
        assert!((frequent - 0.11).abs() < 1e-12, "{frequent}");
        assert!(keep_probability(100_000, total, 1e-5) < 0.011);
    }
}
