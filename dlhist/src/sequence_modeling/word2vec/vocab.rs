//! The vocabulary: every word seen at least `min_count` times, most frequent first.

use std::collections::HashMap;

use crate::{Error, Result};

/// The words a model has vectors for, with their corpus counts, sorted by count (descending; ties
/// alphabetically, so the order does not depend on hashing).
///
/// Word ids are positions in this order: id 0 is the most frequent word. "The top N words" (analogy
/// evaluation) is therefore ids `0..N`.
///
/// ```
/// use dlhist::sequence_modeling::word2vec::Vocab;
/// let words: Vec<String> = "the cat and the dog and the bird".split(' ').map(String::from).collect();
/// let vocab = Vocab::build(&words, 2)?;
/// assert_eq!(vocab.words(), ["the", "and"]); // cat, dog and bird occur once: below min_count
/// assert_eq!(vocab.count(0), 3);
/// assert_eq!(vocab.id("and"), Some(1));
/// assert_eq!(vocab.encode(&words), vec![0, 1, 0, 1, 0]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    words: Vec<String>,
    counts: Vec<u64>,
    index: HashMap<String, u32>,
}

impl Vocab {
    /// Counts `words` and keeps those seen at least `min_count` times (`min_count` 0 counts as 1).
    ///
    /// Errors on an empty corpus, and when no word reaches `min_count` (lower it).
    pub fn build<S: AsRef<str>>(words: &[S], min_count: u64) -> Result<Vocab> {
        if words.is_empty() {
            return Err(Error::Invalid(
                "word2vec: the corpus is empty; give it a stream of words (e.g. dlhist::data::words::gcide()?.words)"
                    .into(),
            ));
        }
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for w in words {
            *counts.entry(w.as_ref()).or_insert(0) += 1;
        }
        let min_count = min_count.max(1);
        let mut kept: Vec<(&str, u64)> = counts.into_iter().filter(|&(_, c)| c >= min_count).collect();
        if kept.is_empty() {
            return Err(Error::Invalid(format!(
                "word2vec: no word of the {} in the corpus occurs {min_count} times or more; lower min_count",
                words.len()
            )));
        }
        kept.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        Ok(Vocab::from_counts(kept.into_iter().map(|(w, c)| (w.to_string(), c)).collect()))
    }

    /// A vocabulary from `(word, count)` pairs, kept in the order given (so give them most frequent first if the
    /// order matters to you, as it does for analogy evaluation's "top N words"). A repeated word keeps its first
    /// id.
    pub fn from_counts(pairs: Vec<(String, u64)>) -> Vocab {
        let mut index = HashMap::with_capacity(pairs.len());
        let (mut words, mut counts) = (Vec::with_capacity(pairs.len()), Vec::with_capacity(pairs.len()));
        for (w, c) in pairs {
            if index.contains_key(&w) {
                continue;
            }
            index.insert(w.clone(), words.len() as u32);
            words.push(w);
            counts.push(c);
        }
        Vocab { words, counts, index }
    }

    /// The number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether there are no words (never true for a vocabulary from [`Vocab::build`]).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The words, most frequent first.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The corpus count of every word, in id order.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The id of `word`, if it is in the vocabulary.
    pub fn id(&self, word: &str) -> Option<u32> {
        self.index.get(word).copied()
    }

    /// The word with id `id`. Panics if `id >= len()`.
    pub fn word(&self, id: u32) -> &str {
        &self.words[id as usize]
    }

    /// The corpus count of word `id`. Panics if `id >= len()`.
    pub fn count(&self, id: u32) -> u64 {
        self.counts[id as usize]
    }

    /// The number of corpus words the vocabulary covers (the sum of its counts).
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The ids of the words of `words` that are in the vocabulary, in order; the others are dropped, as
    /// word2vec.c and gensim drop them before training (a dropped word does not leave a gap in the windows).
    pub fn encode<S: AsRef<str>>(&self, words: &[S]) -> Vec<u32> {
        words.iter().filter_map(|w| self.id(w.as_ref())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sort_and_errors() {
        let words: Vec<&str> = "b a c a b a".split(' ').collect();
        let v = Vocab::build(&words, 1).unwrap();
        assert_eq!(v.words(), ["a", "b", "c"]);
        assert_eq!(v.counts(), [3, 2, 1]);
        assert_eq!(v.total(), 6);
        assert_eq!(v.id("zebra"), None);
        let empty: Vec<String> = vec![];
        let e = Vocab::build(&empty, 1).unwrap_err().to_string();
        assert!(e.contains("corpus is empty"), "{e}");
        let e = Vocab::build(&words, 10).unwrap_err().to_string();
        assert!(e.contains("lower min_count"), "{e}");
    }
}
