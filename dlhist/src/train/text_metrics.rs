//! Metrics of generated token sequences: edit distance, token and sequence error rates, and corpus BLEU.
//!
//! - The *Levenshtein distance* between a hypothesis and a reference is the fewest insertions, deletions and
//!   substitutions that turn one into the other (Levenshtein 1966), computed by the usual dynamic program.
//! - The *token error rate* of a corpus is the sum of those distances over the sum of reference lengths: the
//!   phoneme error rate (PER) of grapheme-to-phoneme conversion, the word error rate of speech recognition.
//! - The *sequence error rate* is the fraction of hypotheses that differ from their reference at all: for G2P,
//!   the word error rate (WER), a word being wrong if any of its phonemes is.
//! - *BLEU* (Papineni et al. 2002, <https://aclanthology.org/P02-1040/>) is the geometric mean of the clipped
//!   n-gram precisions `p_1 … p_4` of the whole corpus times a brevity penalty,
//!   `BLEU = BP · exp(¼ Σ_n log p_n)`, `BP = min(1, exp(1 − r/c))` for hypothesis length `c` and reference
//!   length `r`. [`corpus_bleu`] follows sacrebleu's default (Post 2018, <https://aclanthology.org/W18-6319/>):
//!   an n-gram order whose matches are zero gets precision `1 / (2^k · total_n)` for the `k`-th such order
//!   (sacrebleu's `exp` smoothing, from NIST's mteval), and the score is on a 0-100 scale. Our sequences are
//!   already tokens, which is sacrebleu with `tokenize='none'` on space-joined tokens.

use std::collections::HashMap;

use crate::{Error, Result};

/// The Levenshtein distance between two token sequences: the fewest insertions, deletions and substitutions that
/// turn `hyp` into `reference`.
///
/// ```
/// use dlhist::train::edit_distance;
/// assert_eq!(edit_distance(&[1, 2, 3], &[1, 3]), 1);
/// assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
/// assert_eq!(edit_distance::<u32>(&[], &[4, 5]), 2);
/// ```
pub fn edit_distance<T: PartialEq>(hyp: &[T], reference: &[T]) -> usize {
    // One row of the table at a time: d[j] = distance between hyp[..i] and reference[..j].
    let mut d: Vec<usize> = (0..=reference.len()).collect();
    for (i, h) in hyp.iter().enumerate() {
        let mut diag = d[0]; // d[i-1][j-1]
        d[0] = i + 1;
        for (j, r) in reference.iter().enumerate() {
            let sub = diag + usize::from(h != r);
            diag = d[j + 1];
            d[j + 1] = sub.min(d[j + 1] + 1).min(d[j] + 1);
        }
    }
    d[reference.len()]
}

fn check_pairs(what: &str, hyps: usize, refs: usize) -> Result<()> {
    if hyps != refs {
        return Err(Error::Invalid(format!(
            "{what}: {hyps} hypotheses but {refs} references; pass one reference each"
        )));
    }
    if hyps == 0 {
        return Err(Error::Invalid(format!("{what}: no sequences to score")));
    }
    Ok(())
}

/// The corpus token error rate: `Σ edit_distance(hyp_i, ref_i) / Σ |ref_i|` (the phoneme error rate of G2P).
/// Can exceed 1 when hypotheses are much longer than their references.
///
/// ```
/// use dlhist::train::token_error_rate;
/// let refs = vec![vec![1, 2, 3], vec![4]];
/// let hyps = vec![vec![1, 2, 9], vec![4]];
/// assert_eq!(token_error_rate(&hyps, &refs)?, 0.25); // 1 edit over 4 reference tokens
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn token_error_rate<T: PartialEq>(hyps: &[Vec<T>], refs: &[Vec<T>]) -> Result<f64> {
    check_pairs("token_error_rate", hyps.len(), refs.len())?;
    let total: usize = refs.iter().map(Vec::len).sum();
    if total == 0 {
        return Err(Error::Invalid("token_error_rate: every reference is empty; the rate is undefined".into()));
    }
    let edits: usize = hyps.iter().zip(refs).map(|(h, r)| edit_distance(h, r)).sum();
    Ok(edits as f64 / total as f64)
}

/// The fraction of hypotheses that are not exactly their reference (the word error rate of G2P).
///
/// ```
/// use dlhist::train::sequence_error_rate;
/// assert_eq!(sequence_error_rate(&[vec![1, 2], vec![3]], &[vec![1, 2], vec![4]])?, 0.5);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn sequence_error_rate<T: PartialEq>(hyps: &[Vec<T>], refs: &[Vec<T>]) -> Result<f64> {
    check_pairs("sequence_error_rate", hyps.len(), refs.len())?;
    let wrong = hyps.iter().zip(refs).filter(|(h, r)| h != r).count();
    Ok(wrong as f64 / hyps.len() as f64)
}

/// How often each n-gram of `s` occurs.
fn ngram_counts<T: Eq + std::hash::Hash>(s: &[T], n: usize) -> HashMap<&[T], usize> {
    let mut m: HashMap<&[T], usize> = HashMap::new();
    for g in s.windows(n) {
        *m.entry(g).or_default() += 1;
    }
    m
}

/// Corpus BLEU (0-100) of `hyps` against one reference each, 4-grams, brevity penalty and sacrebleu's default
/// `exp` smoothing: equal to `sacrebleu.corpus_bleu([" ".join(h) ...], [[" ".join(r) ...]], tokenize="none")`.
///
/// ```
/// use dlhist::train::corpus_bleu;
/// let r = vec![vec!["the", "cat", "sat", "on", "the", "mat"]];
/// assert!((corpus_bleu(&r, &r)? - 100.0).abs() < 1e-9);
/// let short = vec![vec!["the", "cat"]];
/// assert!(corpus_bleu(&short, &r)? < 10.0); // brevity penalty and missing 3- and 4-grams
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn corpus_bleu<T: Eq + std::hash::Hash + Clone>(hyps: &[Vec<T>], refs: &[Vec<T>]) -> Result<f64> {
    const ORDER: usize = 4;
    check_pairs("corpus_bleu", hyps.len(), refs.len())?;
    let (mut correct, mut total) = ([0usize; ORDER], [0usize; ORDER]);
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    for (h, r) in hyps.iter().zip(refs) {
        sys_len += h.len();
        ref_len += r.len();
        for n in 1..=ORDER {
            let (hc, rc) = (ngram_counts(h, n), ngram_counts(r, n));
            // Clipped matches: an n-gram counts at most as often as the reference has it.
            correct[n - 1] += hc.iter().map(|(g, c)| (*c).min(rc.get(g).copied().unwrap_or(0))).sum::<usize>();
            total[n - 1] += h.len().saturating_sub(n - 1);
        }
    }
    // sacrebleu's BLEU.compute_bleu with smooth_method='exp'. Not one matching n-gram of any order: 0, unsmoothed.
    if correct.iter().all(|&c| c == 0) {
        return Ok(0.0);
    }
    let mut log_sum = 0.0;
    let mut smooth = 1.0;
    for n in 0..ORDER {
        let p = if total[n] == 0 {
            // No n-grams of this order at all: sacrebleu stops, its precision stays 0 and my_log(0) zeroes BLEU.
            return Ok(0.0);
        } else if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
        log_sum += p.ln();
    }
    let bp = if sys_len < ref_len {
        if sys_len == 0 {
            0.0
        } else {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        }
    } else {
        1.0
    };
    Ok(bp * (log_sum / ORDER as f64).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: the minimum over all alignments, by recursion, for tiny inputs.
    fn slow_distance(a: &[u8], b: &[u8]) -> usize {
        match (a, b) {
            ([], _) => b.len(),
            (_, []) => a.len(),
            ([x, ra @ ..], [y, rb @ ..]) => {
                let sub = slow_distance(ra, rb) + usize::from(x != y);
                sub.min(slow_distance(ra, b) + 1).min(slow_distance(a, rb) + 1)
            }
        }
    }

    #[test]
    fn edit_distance_matches_brute_force() {
        let mut rng = crate::rng::Rng::new(0);
        for _ in 0..300 {
            let a: Vec<u8> = (0..rng.below(7)).map(|_| rng.below(3) as u8).collect();
            let b: Vec<u8> = (0..rng.below(7)).map(|_| rng.below(3) as u8).collect();
            assert_eq!(edit_distance(&a, &b), slow_distance(&a, &b), "{a:?} {b:?}");
            assert_eq!(edit_distance(&a, &b), edit_distance(&b, &a));
        }
        assert!(token_error_rate::<u8>(&[vec![]], &[vec![]]).is_err());
        assert!(sequence_error_rate(&[vec![1]], &[]).is_err());
    }

    /// Each fixture line: the tab-separated hypothesis and reference corpora are `|`-separated sentences of
    /// space-separated tokens, then sacrebleu's score. `fixtures/sacrebleu.tsv` says the command that made it.
    #[test]
    fn corpus_bleu_matches_sacrebleu() -> Result<()> {
        let text = include_str!("fixtures/sacrebleu.tsv");
        let mut cases = 0;
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let cols: Vec<&str> = line.split('\t').collect();
            let corpus = |s: &str| -> Vec<Vec<String>> {
                s.split('|').map(|sent| sent.split_whitespace().map(str::to_string).collect()).collect()
            };
            let (hyps, refs, want): (_, _, f64) = (corpus(cols[0]), corpus(cols[1]), cols[2].parse().unwrap());
            let got = corpus_bleu(&hyps, &refs)?;
            assert!((got - want).abs() < 1e-9, "{line}: ours {got}, sacrebleu {want}");
            cases += 1;
        }
        assert!(cases >= 10, "only {cases} fixture lines");
        Ok(())
    }
}
