//! Phrases: joining word pairs that occur together far more often than chance (Mikolov et al. 2013b, section 4).
//!
//! The paper scores a bigram `a b` by
//!
//! ```text
//! score(a, b) = (count(a b) − δ) / (count(a) · count(b))
//! ```
//!
//! where the discount δ keeps pairs of rare words (which co-occur a few times by accident yet have tiny
//! counts in the denominator) from scoring high. Pairs above a threshold become one token `a_b`; running 2-4
//! passes with a falling threshold builds longer phrases (`new_york` then `new_york_times`). Like word2vec.c's
//! `word2phrase`, we multiply the score by the number of words in the corpus, so that the threshold does not
//! depend on the corpus's size: the score is then count(ab)·N / (count(a)·count(b)), a ratio of observed to
//! expected co-occurrences, minus the discount.

use std::collections::HashMap;

use crate::{Error, Result};

/// Settings of one phrase pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhraseConfig {
    /// Words and bigrams seen fewer times than this are never joined.
    pub min_count: u64,
    /// The paper's discount δ, subtracted from the bigram's count.
    pub delta: f64,
    /// Bigrams scoring above this are joined (the score is scaled by the corpus's length, see [`phrase_score`]).
    pub threshold: f64,
}

impl Default for PhraseConfig {
    /// `min_count` 5, δ = 5, threshold 100 (word2vec.c's word2phrase uses `min_count` as δ, with these defaults).
    fn default() -> Self {
        PhraseConfig { min_count: 5, delta: 5.0, threshold: 100.0 }
    }
}

/// A joined bigram.
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase {
    /// The first token (itself a phrase after an earlier pass, e.g. `new_york`).
    pub first: String,
    /// The second token.
    pub second: String,
    /// How often the pair occurs in the corpus the pass read.
    pub count: u64,
    /// Its score ([`phrase_score`]).
    pub score: f64,
}

impl Phrase {
    /// The joined token, `first_second`.
    pub fn joined(&self) -> String {
        format!("{}_{}", self.first, self.second)
    }
}

/// What a phrase pass returns: the corpus with the chosen pairs joined, and those pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct PhrasePass {
    /// The corpus, each occurrence of a joined pair replaced by one `a_b` token.
    pub words: Vec<String>,
    /// Every pair that was joined at least once, highest score first.
    pub phrases: Vec<Phrase>,
}

/// The phrase score of Mikolov et al. 2013b, scaled by the corpus's length `total`:
/// `(count_ab − δ) / (count_a · count_b) · total`.
///
/// ```
/// use dlhist::sequence_modeling::word2vec::phrase_score;
/// // "new york" 90 times in a million words, "new" 100 times, "york" 95 times: about 9000 times chance.
/// let s = phrase_score(90, 100, 95, 5.0, 1_000_000);
/// assert!((s - 85.0 / 9500.0 * 1e6).abs() < 1e-6);
/// ```
pub fn phrase_score(count_ab: u64, count_a: u64, count_b: u64, delta: f64, total: u64) -> f64 {
    (count_ab as f64 - delta) / (count_a as f64 * count_b as f64) * total as f64
}

/// One pass over `words`: counts every word and every adjacent pair, then walks the corpus left to right and
/// joins a pair whose score exceeds `cfg.threshold` (the second word of a joined pair cannot start another
/// pair in the same pass, as in word2phrase).
///
/// ```
/// use dlhist::sequence_modeling::word2vec::{phrase_pass, PhraseConfig};
/// // Filler words whose pairs each occur only a few times, and "new york" planted 100 times.
/// let mut words = vec![];
/// for i in 0..300 {
///     words.extend([format!("w{}", i % 37), format!("v{}", i % 41)]);
///     if i % 3 == 0 {
///         words.extend(["new".to_string(), "york".to_string()]);
///     }
/// }
/// let pass = phrase_pass(&words, &PhraseConfig { min_count: 5, delta: 5.0, threshold: 2.0 })?;
/// assert_eq!(pass.phrases.iter().map(|p| p.joined()).collect::<Vec<_>>(), ["new_york"]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn phrase_pass<S: AsRef<str>>(words: &[S], cfg: &PhraseConfig) -> Result<PhrasePass> {
    if words.is_empty() {
        return Err(Error::Invalid("phrase_pass: the corpus is empty".into()));
    }
    if !(cfg.threshold.is_finite() && cfg.delta.is_finite()) {
        return Err(Error::Invalid(format!("phrase_pass: threshold and delta must be finite; got {cfg:?}")));
    }
    // Intern the words so that bigrams are u64 keys, not string pairs.
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut names: Vec<&str> = vec![];
    let seq: Vec<u32> = words
        .iter()
        .map(|w| {
            let w = w.as_ref();
            *ids.entry(w).or_insert_with(|| {
                names.push(w);
                names.len() as u32 - 1
            })
        })
        .collect();
    let mut unigram = vec![0u64; names.len()];
    for &i in &seq {
        unigram[i as usize] += 1;
    }
    let key = |a: u32, b: u32| (u64::from(a) << 32) | u64::from(b);
    let mut bigram: HashMap<u64, u64> = HashMap::new();
    for p in seq.windows(2) {
        *bigram.entry(key(p[0], p[1])).or_insert(0) += 1;
    }
    let total = seq.len() as u64;
    let score = |a: u32, b: u32| -> Option<(u64, f64)> {
        let (ca, cb) = (unigram[a as usize], unigram[b as usize]);
        if ca < cfg.min_count || cb < cfg.min_count {
            return None;
        }
        let cab = *bigram.get(&key(a, b))?;
        if cab < cfg.min_count {
            return None;
        }
        let s = phrase_score(cab, ca, cb, cfg.delta, total);
        (s > cfg.threshold).then_some((cab, s))
    };
    let mut out = Vec::with_capacity(seq.len());
    let mut joined: HashMap<u64, (u64, f64)> = HashMap::new();
    let mut i = 0;
    while i < seq.len() {
        if i + 1 < seq.len() {
            if let Some(found) = score(seq[i], seq[i + 1]) {
                out.push(format!("{}_{}", names[seq[i] as usize], names[seq[i + 1] as usize]));
                joined.insert(key(seq[i], seq[i + 1]), found);
                i += 2;
                continue;
            }
        }
        out.push(names[seq[i] as usize].to_string());
        i += 1;
    }
    let mut phrases: Vec<Phrase> = joined
        .into_iter()
        .map(|(k, (count, score))| Phrase {
            first: names[(k >> 32) as usize].to_string(),
            second: names[(k & 0xffff_ffff) as usize].to_string(),
            count,
            score,
        })
        .collect();
    phrases.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.joined().cmp(&b.joined())));
    Ok(PhrasePass { words: out, phrases })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn a_planted_bigram_is_found_and_chance_pairs_are_not() {
        // 20 words drawn uniformly, with "hong kong" planted 300 times: only the planted pair scores high.
        let mut rng = Rng::new(3);
        let mut words: Vec<String> = vec![];
        for i in 0..20_000 {
            if i % 60 == 0 {
                words.extend(["hong".to_string(), "kong".to_string()]);
            }
            words.push(format!("w{}", rng.below(20)));
        }
        let pass = phrase_pass(&words, &PhraseConfig { min_count: 5, delta: 5.0, threshold: 10.0 }).unwrap();
        let joined: Vec<String> = pass.phrases.iter().map(Phrase::joined).collect();
        assert_eq!(joined, vec!["hong_kong".to_string()], "{:?}", &pass.phrases[..pass.phrases.len().min(5)]);
        assert_eq!(pass.words.iter().filter(|w| *w == "hong_kong").count(), 334);
        assert_eq!(pass.words.len(), words.len() - 334, "each join removes one token");
        // A second pass sees the joined token as one word.
        assert!(phrase_pass(&pass.words, &PhraseConfig::default()).is_ok());
        let e = phrase_pass::<String>(&[], &PhraseConfig::default()).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }
}
