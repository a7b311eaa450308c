//! A synthetic translation task whose word alignments are known.
//!
//! Bahdanau, Cho and Bengio (2014) show two things on English-French: that an encoder-decoder with attention
//! keeps its quality on long sentences where a fixed-vector encoder-decoder loses it (their Figure 2), and that
//! the attention weights line target words up with the source words they translate (their Figure 3). Real
//! corpora have no ground-truth alignment to check the second claim against, and their sentences are too long
//! and too many for a CPU notebook. This task has both properties the claims need, at a size a laptop trains:
//!
//! - a **lexicon**: every source word has a fixed translation of one target word, or of two (a *one-to-two
//!   expansion*, as a French verb form may need two English words);
//! - a **reordering**: an adjective followed by a noun comes out noun first (`red cat` → `chat rouge`), so the
//!   alignment is not the diagonal;
//! - **lengths** from 5 to 50 source words, drawn uniformly, so accuracy can be read per length bucket.
//!
//! Each target token records the position of the source token it translates: the ground-truth alignment that an
//! attention model's weights are checked against. Source and target words are distinct strings (target words
//! are seeded pseudo-words), and the model sees only ids in two separate vocabularies, so nothing can be copied.
//!
//! ```
//! use dlhist::data::pairs::{EOS, PAD};
//! use dlhist::data::TranslationTask;
//! let task = TranslationTask::new(0);
//! let data = task.sample(100, 5, 50, 1)?;
//! assert_eq!(data.len(), 100);
//! // Every target token names the source position it came from.
//! for (src, (tgt, align)) in data.src.iter().zip(data.tgt.iter().zip(&data.alignment)) {
//!     assert_eq!(tgt.len(), align.len());
//!     assert!(align.iter().all(|&j| (j as usize) < src.len()));
//!     assert!(!src.contains(&PAD) && !tgt.contains(&EOS));
//! }
//! let pairs = data.pairs();
//! assert_eq!(pairs.src.len(), 100);
//! # Ok::<(), dlhist::Error>(())
//! ```

use super::pairs::{SeqPairs, Vocab, RESERVED};
use crate::rng::Rng;
use crate::{Error, Result};

/// The part of speech of a source word, which decides how it is translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordClass {
    /// A noun: one target word; after an adjective, it moves in front of it.
    Noun,
    /// An adjective: one target word; before a noun, it moves behind it.
    Adjective,
    /// Any other word (verbs, function words): one target word, in place.
    Other,
    /// A word that becomes two target words, in place.
    Expanding,
}

// Source words: real English, so heatmaps read easily. The counts set the task's vocabulary.
const NOUNS: [&str; 24] = [
    "cat", "dog", "house", "tree", "river", "bird", "car", "book", "table", "child", "road", "hill", "boat", "horse",
    "garden", "window", "letter", "city", "friend", "door", "stone", "song", "cloud", "apple",
];
const ADJECTIVES: [&str; 12] =
    ["red", "big", "old", "small", "green", "quiet", "dark", "happy", "long", "cold", "bright", "young"];
const OTHERS: [&str; 16] = [
    "the", "a", "sees", "likes", "near", "and", "with", "under", "takes", "finds", "on", "eats", "this", "very",
    "from", "is",
];
const EXPANDING: [&str; 8] = ["cannot", "won't", "into", "tonight", "nobody", "everywhere", "outside", "maybe"];

// Syllables the target pseudo-words are built from.
const ONSETS: [&str; 12] = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t"];
const VOWELS: [&str; 5] = ["a", "e", "i", "o", "u"];

/// The lexicon and the grammar of the synthetic translation task; one seed fixes the target words, and
/// [`TranslationTask::sample`] draws sentence pairs from it (train and test sets from the same task, different
/// sampling seeds).
///
/// Source ids and target ids each start after the three specials ([`super::pairs::PAD`], [`super::pairs::BOS`],
/// [`super::pairs::EOS`]).
///
/// ```
/// use dlhist::data::{TranslationTask, WordClass};
/// let task = TranslationTask::new(3);
/// assert_eq!(task.src_vocab_size(), 3 + 60);
/// assert_eq!(task.tgt_vocab_size(), 3 + 24 + 12 + 16 + 2 * 8);
/// let red = task.src_id("red").unwrap();
/// assert_eq!(task.class(red), Some(WordClass::Adjective));
/// assert_eq!(task.translation(red).len(), 1);
/// assert_eq!(task.translation(task.src_id("cannot").unwrap()).len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct TranslationTask {
    seed: u64,
    src_words: Vec<String>,
    tgt_words: Vec<String>,
    classes: Vec<Option<WordClass>>,
    // For each source id, the target ids it becomes (empty for the specials).
    lexicon: Vec<Vec<u32>>,
}

/// Sentence pairs drawn from a [`TranslationTask`]: source and target token ids (no specials; the batching of
/// [`SeqPairs`] adds them) and, for every target token, the index of the source token it translates.
#[derive(Debug, Clone)]
pub struct Translations {
    /// Source sentences, ids in the task's source vocabulary.
    pub src: Vec<Vec<u32>>,
    /// Target sentences, ids in the task's target vocabulary.
    pub tgt: Vec<Vec<u32>>,
    /// `alignment[n][i]`: the position in `src[n]` of the word that target token `i` translates.
    pub alignment: Vec<Vec<u32>>,
    src_vocab: Vocab,
    tgt_vocab: Vocab,
}

impl TranslationTask {
    /// The task for `seed`: the source lexicon is fixed, the target pseudo-words and which target word
    /// translates which source word are drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed).fork("translation-lexicon");
        let mut src_words: Vec<String> = RESERVED.iter().map(|s| s.to_string()).collect();
        let mut classes = vec![None; RESERVED.len()];
        for (words, class) in [
            (&NOUNS[..], WordClass::Noun),
            (&ADJECTIVES[..], WordClass::Adjective),
            (&OTHERS[..], WordClass::Other),
            (&EXPANDING[..], WordClass::Expanding),
        ] {
            for w in words {
                src_words.push(w.to_string());
                classes.push(Some(class));
            }
        }
        let n_tgt: usize = classes.iter().flatten().map(|c| if *c == WordClass::Expanding { 2 } else { 1 }).sum();
        // Distinct pseudo-words of two or three syllables, drawn without repeats.
        let mut made = std::collections::BTreeSet::new();
        let mut pseudo = Vec::with_capacity(n_tgt);
        while pseudo.len() < n_tgt {
            let syllables = 2 + rng.below(2);
            let w: String = (0..syllables)
                .map(|_| format!("{}{}", ONSETS[rng.below(ONSETS.len())], VOWELS[rng.below(VOWELS.len())]))
                .collect();
            if made.insert(w.clone()) {
                pseudo.push(w);
            }
        }
        let mut tgt_words: Vec<String> = RESERVED.iter().map(|s| s.to_string()).collect();
        tgt_words.extend(pseudo);
        // Which target id translates which source word: a seeded permutation, so ids carry no hint.
        let order = rng.permutation(n_tgt);
        let mut next = order.iter().map(|&k| k + RESERVED.len() as u32);
        let lexicon = classes
            .iter()
            .map(|c| match c {
                None => vec![],
                Some(WordClass::Expanding) => vec![next.next().unwrap(), next.next().unwrap()],
                Some(_) => vec![next.next().unwrap()],
            })
            .collect();
        TranslationTask { seed, src_words, tgt_words, classes, lexicon }
    }

    /// The seed the task was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Source vocabulary size, the three specials included.
    pub fn src_vocab_size(&self) -> usize {
        self.src_words.len()
    }

    /// Target vocabulary size, the three specials included.
    pub fn tgt_vocab_size(&self) -> usize {
        self.tgt_words.len()
    }

    /// The id of source word `word`, if it is in the lexicon.
    pub fn src_id(&self, word: &str) -> Option<u32> {
        self.src_words.iter().position(|w| w == word).filter(|&i| i >= RESERVED.len()).map(|i| i as u32)
    }

    /// The class of source id `id` (`None` for the specials and out-of-range ids).
    pub fn class(&self, id: u32) -> Option<WordClass> {
        self.classes.get(id as usize).copied().flatten()
    }

    /// The target ids source id `id` translates to, in order (empty for the specials).
    pub fn translation(&self, id: u32) -> &[u32] {
        self.lexicon.get(id as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Translates a source sentence: the target ids and, for each, the position of its source word.
    ///
    /// ```
    /// use dlhist::data::TranslationTask;
    /// let task = TranslationTask::new(0);
    /// let src: Vec<u32> = ["the", "red", "cat", "cannot", "swim"].iter().filter_map(|w| task.src_id(w)).collect();
    /// let (tgt, align) = task.translate(&src)?;
    /// // "the" stays, "red cat" swaps, "cannot" becomes two words ("swim" is not in the lexicon).
    /// assert_eq!(align, vec![0, 2, 1, 3, 3]);
    /// assert_eq!(tgt[1], task.translation(src[2])[0]);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn translate(&self, src: &[u32]) -> Result<(Vec<u32>, Vec<u32>)> {
        let mut tgt = Vec::with_capacity(src.len() * 2);
        let mut align = Vec::with_capacity(src.len() * 2);
        let mut j = 0;
        while j < src.len() {
            let class = self.class(src[j]).ok_or_else(|| {
                Error::Invalid(format!(
                    "source token {} at position {j} is not a word of the task's lexicon (ids {}..{})",
                    src[j],
                    RESERVED.len(),
                    self.src_words.len()
                ))
            })?;
            // Adjective-noun inversion: the noun's translation comes first.
            if class == WordClass::Adjective && j + 1 < src.len() && self.class(src[j + 1]) == Some(WordClass::Noun) {
                tgt.extend_from_slice(self.translation(src[j + 1]));
                align.push(j as u32 + 1);
                tgt.extend_from_slice(self.translation(src[j]));
                align.push(j as u32);
                j += 2;
                continue;
            }
            for &t in self.translation(src[j]) {
                tgt.push(t);
                align.push(j as u32);
            }
            j += 1;
        }
        Ok((tgt, align))
    }

    /// Draws `n` sentence pairs with source lengths uniform in `min_len..=max_len` (seeded by `seed`).
    ///
    /// A sentence is a run of units: an adjective-noun phrase (30%), a lone noun (20%), another word (35%) or an
    /// expanding word (15%), each word drawn uniformly from its class; a two-word phrase that would overshoot
    /// the length is replaced by a lone noun.
    pub fn sample(&self, n: usize, min_len: usize, max_len: usize, seed: u64) -> Result<Translations> {
        if min_len == 0 || min_len > max_len {
            return Err(Error::Invalid(format!(
                "sentence lengths need 1 <= min_len <= max_len; got min_len {min_len}, max_len {max_len}"
            )));
        }
        let ids_of = |class: WordClass| -> Vec<u32> {
            (0..self.classes.len() as u32).filter(|&i| self.class(i) == Some(class)).collect()
        };
        let (nouns, adjectives, others, expanding) = (
            ids_of(WordClass::Noun),
            ids_of(WordClass::Adjective),
            ids_of(WordClass::Other),
            ids_of(WordClass::Expanding),
        );
        let mut rng = Rng::new(seed).fork("translation-sentences");
        let mut out = Translations {
            src: Vec::with_capacity(n),
            tgt: Vec::with_capacity(n),
            alignment: Vec::with_capacity(n),
            src_vocab: Vocab::new(self.src_words[RESERVED.len()..].iter().cloned())?,
            tgt_vocab: Vocab::new(self.tgt_words[RESERVED.len()..].iter().cloned())?,
        };
        for _ in 0..n {
            let len = min_len + rng.below(max_len - min_len + 1);
            let mut src = Vec::with_capacity(len);
            while src.len() < len {
                let u = rng.uniform();
                let pick = |rng: &mut Rng, ids: &[u32]| ids[rng.below(ids.len())];
                if u < 0.30 && src.len() + 2 <= len {
                    src.push(pick(&mut rng, &adjectives));
                    src.push(pick(&mut rng, &nouns));
                } else if u < 0.50 {
                    src.push(pick(&mut rng, &nouns));
                } else if u < 0.85 {
                    src.push(pick(&mut rng, &others));
                } else {
                    src.push(pick(&mut rng, &expanding));
                }
            }
            let (tgt, align) = self.translate(&src)?;
            out.src.push(src);
            out.tgt.push(tgt);
            out.alignment.push(align);
        }
        Ok(out)
    }

    /// The source word of id `id` (the specials' names for 0..3).
    pub fn src_word(&self, id: u32) -> &str {
        self.src_words.get(id as usize).map(String::as_str).unwrap_or("?")
    }

    /// The target word of id `id` (the specials' names for 0..3).
    pub fn tgt_word(&self, id: u32) -> &str {
        self.tgt_words.get(id as usize).map(String::as_str).unwrap_or("?")
    }
}

impl Translations {
    /// The number of sentence pairs.
    pub fn len(&self) -> usize {
        self.src.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.src.is_empty()
    }

    /// The pairs as [`SeqPairs`] (for batching and training), vocabularies included.
    pub fn pairs(&self) -> SeqPairs {
        SeqPairs {
            src: self.src.clone(),
            tgt: self.tgt.clone(),
            src_vocab: self.src_vocab.clone(),
            tgt_vocab: self.tgt_vocab.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::pairs::{BOS, EOS, PAD};

    #[test]
    fn lexicon_is_a_seeded_injection_into_distinct_target_words() {
        let task = TranslationTask::new(5);
        let mut seen = std::collections::BTreeSet::new();
        for id in RESERVED.len() as u32..task.src_vocab_size() as u32 {
            let t = task.translation(id);
            let want = if task.class(id) == Some(WordClass::Expanding) { 2 } else { 1 };
            assert_eq!(t.len(), want, "{}", task.src_word(id));
            for &k in t {
                assert!(k as usize >= RESERVED.len() && (k as usize) < task.tgt_vocab_size());
                assert!(seen.insert(k), "target id {k} used twice");
            }
        }
        assert_eq!(seen.len(), task.tgt_vocab_size() - RESERVED.len(), "every target word is used");
        let words: std::collections::BTreeSet<&str> =
            (0..task.tgt_vocab_size() as u32).map(|i| task.tgt_word(i)).collect();
        assert_eq!(words.len(), task.tgt_vocab_size(), "target words are distinct");
        assert!(NOUNS.iter().all(|w| !words.contains(w)), "no target word is a source word");
        // Same seed, same lexicon; another seed, another.
        let again = TranslationTask::new(5);
        let other = TranslationTask::new(6);
        let all =
            |t: &TranslationTask| (3..t.src_vocab_size() as u32).map(|i| t.translation(i).to_vec()).collect::<Vec<_>>();
        assert_eq!(all(&task), all(&again));
        assert_ne!(all(&task), all(&other));
        assert_eq!((PAD, BOS, EOS), (0, 1, 2));
    }

    #[test]
    fn samples_have_the_asked_lengths_and_a_complete_alignment() {
        let task = TranslationTask::new(0);
        let data = task.sample(400, 5, 50, 9).unwrap();
        let lens: Vec<usize> = data.src.iter().map(Vec::len).collect();
        assert!(lens.iter().all(|&l| (5..=50).contains(&l)));
        assert!(lens.contains(&5) && lens.contains(&50), "both ends of the range are drawn");
        let (mut swaps, mut expansions) = (0, 0);
        for n in 0..data.len() {
            let (src, tgt, al) = (&data.src[n], &data.tgt[n], &data.alignment[n]);
            assert_eq!(tgt.len(), al.len());
            // Every source word is translated: each position appears once, twice for an expanding word.
            let mut count = vec![0usize; src.len()];
            for &j in al {
                count[j as usize] += 1;
            }
            for (j, &c) in count.iter().enumerate() {
                assert_eq!(c, task.translation(src[j]).len(), "sentence {n}, position {j}");
            }
            // Each target token is the lexicon's translation of the word it is aligned to.
            let mut k_in_word = 0;
            for i in 0..tgt.len() {
                let j = al[i] as usize;
                k_in_word = if i > 0 && al[i - 1] as usize == j { k_in_word + 1 } else { 0 };
                assert_eq!(tgt[i], task.translation(src[j])[k_in_word]);
                // The alignment only goes backwards where an adjective-noun pair swapped.
                if i > 0 && al[i] < al[i - 1] {
                    assert_eq!(al[i] + 1, al[i - 1]);
                    assert_eq!(task.class(src[j]), Some(WordClass::Adjective));
                    assert_eq!(task.class(src[j + 1]), Some(WordClass::Noun));
                    swaps += 1;
                }
                if k_in_word == 1 {
                    expansions += 1;
                }
            }
        }
        assert!(swaps > 1000 && expansions > 500, "swaps {swaps}, expansions {expansions}");
        // Seeded: the same seed gives the same sentences, another seed others.
        assert_eq!(task.sample(400, 5, 50, 9).unwrap().src, data.src);
        assert_ne!(task.sample(400, 5, 50, 10).unwrap().src, data.src);
    }

    #[test]
    fn bad_lengths_and_unknown_words_are_refused() {
        let task = TranslationTask::new(0);
        assert!(task.sample(3, 0, 5, 0).unwrap_err().to_string().contains("min_len"));
        assert!(task.sample(3, 6, 5, 0).is_err());
        assert!(task.translate(&[PAD]).unwrap_err().to_string().contains("not a word"));
    }

    #[test]
    fn pairs_keep_the_vocabularies() {
        let task = TranslationTask::new(1);
        let data = task.sample(10, 5, 8, 0).unwrap();
        let p = data.pairs();
        assert_eq!(p.src, data.src);
        assert_eq!(p.tgt, data.tgt);
        assert_eq!(p.src_vocab.len(), task.src_vocab_size());
        assert_eq!(p.tgt_vocab.len(), task.tgt_vocab_size());
    }
}
