//! WordPiece: the sub-word vocabulary of BERT, trained with the `tokenizers` crate.
//!
//! Y. Wu et al., "Google's Neural Machine Translation System", 2016 (its wordpiece model),
//! <https://arxiv.org/abs/1609.08144>; J. Devlin et al., "BERT", 2018 (a 30 000-token WordPiece vocabulary),
//! <https://arxiv.org/abs/1810.04805>.
//!
//! A word-level vocabulary cannot spell a word it has not seen; a character vocabulary makes sequences long. A
//! sub-word vocabulary keeps frequent words whole and splits rare ones into pieces, so every word has a spelling
//! and the common ones cost one token: `"unfold"` may become `un ##fold`, where `##` marks a piece that continues
//! a word. Tokenizing is greedy longest-match-first: take the longest vocabulary entry that starts the word, then
//! the longest `##` entry that continues it, and so on.
//!
//! The vocabulary is learned from text, bottom up. Every word starts as its characters (`r ##e ##s ...`); then,
//! again and again, one adjacent pair `(a, b)` is merged into a new piece ([`MergeRule`]). Byte-pair encoding
//! merges the most frequent pair. WordPiece as described for Google's systems merges the pair that raises the
//! likelihood of the corpus the most under a model of independent pieces, which is the pair with the highest
//!
//! ```text
//! score(a, b) = count(ab) / (count(a) · count(b))
//! ```
//!
//! (the pair whose parts are most often seen together). On Tiny Shakespeare the likelihood score spends a
//! 4000-token vocabulary on rare letter pairs and leaves common words in pieces (`sp ##e ##ak`), while frequency
//! keeps them whole, so [`WordPieceVocab::train`] merges by frequency, as the `tokenizers` crate's own
//! `WordPieceTrainer` does (byte-pair encoding's rule, WordPiece's `##` format); [`WordPieceVocab::train_with`]
//! offers both. Ties go to the pair whose pieces were made first, so training is reproducible.
//!
//! Text is lower-cased and split on whitespace and punctuation first (BERT's "uncased" normalizer and
//! pre-tokenizer), and tokenizing runs in Hugging Face's `tokenizers` crate (already compiled into candle). We
//! learn the vocabulary ourselves rather than with that crate's trainer because its tie-breaks follow the
//! iteration order of a randomly seeded hash map: two runs on the same text give different vocabularies.
//!
//! The five special tokens come first, so their ids are fixed: `[PAD]` 0, `[UNK]` 1, `[CLS]` 2, `[SEP]` 3,
//! `[MASK]` 4.

use std::path::Path;

use std::collections::{BTreeMap, HashMap};

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{
    AddedToken, NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer,
    Tokenizer,
};

use crate::{Error, Result};

/// The special tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
/// Id of `[PAD]`, the padding after a sequence's end.
pub const PAD: u32 = 0;
/// Id of `[UNK]`, a character the vocabulary cannot spell.
pub const UNK: u32 = 1;
/// Id of `[CLS]`, the first token of every input, whose final state a classifier reads.
pub const CLS: u32 = 2;
/// Id of `[SEP]`, the end of a segment.
pub const SEP: u32 = 3;
/// Id of `[MASK]`, the token a masked language model fills in.
pub const MASK: u32 = 4;

/// A trained WordPiece vocabulary and its tokenizer.
///
/// ```
/// use dlhist::data::wordpiece::{WordPieceVocab, CLS};
/// let text = ["to be, or not to be", "that is the question", "to sleep, perchance to dream"];
/// let vocab = WordPieceVocab::train(&text, 60)?;
/// let ids = vocab.encode("To be, or not")?;
/// assert_eq!(vocab.decode(&ids), "to be, or not"); // lower-cased, punctuation split off and re-attached
/// assert!(vocab.len() <= 60 && vocab.token(CLS) == Some("[CLS]".into()));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Clone)]
pub struct WordPieceVocab {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for WordPieceVocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordPieceVocab").field("len", &self.len()).finish()
    }
}

fn tok_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("WordPiece: {what}: {e}"))
}

impl WordPieceVocab {
    /// Learns a vocabulary of at most `vocab_size` tokens (special tokens and every character seen included) from
    /// `texts`, merging the most frequent pair first ([`MergeRule::Frequency`], module docs). Deterministic: the
    /// same texts give the same vocabulary, in the same id order.
    pub fn train<S: AsRef<str>>(texts: &[S], vocab_size: usize) -> Result<Self> {
        Self::train_with(texts, vocab_size, MergeRule::Frequency)
    }

    /// [`WordPieceVocab::train`] with the choice of merge rule.
    pub fn train_with<S: AsRef<str>>(texts: &[S], vocab_size: usize, rule: MergeRule) -> Result<Self> {
        if vocab_size <= SPECIAL_TOKENS.len() {
            return Err(Error::Invalid(format!(
                "WordPieceVocab::train: vocab_size = {vocab_size} leaves no room beside the {} special tokens",
                SPECIAL_TOKENS.len()
            )));
        }
        // Words as the tokenizer will see them: normalized (lower-cased) and split on spaces and punctuation.
        // A BTreeMap keeps every later step in a fixed order.
        let (normalizer, pre) = normalizer();
        let mut word_counts: BTreeMap<String, u64> = BTreeMap::new();
        for text in texts {
            let mut n = NormalizedString::from(text.as_ref());
            normalizer.normalize(&mut n).map_err(|e| tok_err("cannot normalize", e))?;
            let mut p = PreTokenizedString::from(n);
            pre.pre_tokenize(&mut p).map_err(|e| tok_err("cannot split into words", e))?;
            for (w, _, _) in p.get_splits(OffsetReferential::Original, OffsetType::Byte) {
                *word_counts.entry(w.to_string()).or_default() += 1;
            }
        }
        let tokens = learn_wordpieces(&word_counts, vocab_size - SPECIAL_TOKENS.len(), rule);
        let vocab: serde_json::Map<String, serde_json::Value> = SPECIAL_TOKENS
            .iter()
            .map(|s| s.to_string())
            .chain(tokens)
            .enumerate()
            .map(|(i, t)| (t, i.into()))
            .collect();
        // The model from its serialized form (the crate's builder wants its own hash-map type).
        let json = serde_json::json!({
            "type": "WordPiece",
            "vocab": vocab,
            "unk_token": SPECIAL_TOKENS[UNK as usize],
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
        });
        let model: WordPiece =
            serde_json::from_str(&json.to_string()).map_err(|e| tok_err("cannot build the model", e))?;
        let mut tokenizer = Self::pipeline(model);
        let specials: Vec<AddedToken> = SPECIAL_TOKENS.iter().map(|s| AddedToken::from(s.to_string(), true)).collect();
        tokenizer.add_special_tokens(specials).map_err(|e| tok_err("cannot add the special tokens", e))?;
        Ok(WordPieceVocab { tokenizer })
    }

    /// The normalizer, pre-tokenizer and decoder of BERT's uncased model around `model`.
    fn pipeline(model: WordPiece) -> Tokenizer {
        let mut tokenizer = Tokenizer::new(model);
        let (normalizer, pre) = normalizer();
        tokenizer.with_normalizer(Some(normalizer)).expect("the BERT normalizer is valid");
        tokenizer.with_pre_tokenizer(Some(pre));
        tokenizer.with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
        tokenizer
    }

    /// Number of tokens (ids are `0..len`).
    pub fn len(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Whether the vocabulary is empty (never, once trained).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of a token (`"##ing"` for a continuation piece).
    pub fn id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// The token of an id.
    pub fn token(&self, id: u32) -> Option<String> {
        self.tokenizer.id_to_token(id)
    }

    /// The ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, false).map_err(|e| tok_err("cannot encode", e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The pieces of `text` as strings (`["un", "##fold"]`).
    pub fn pieces(&self, text: &str) -> Result<Vec<String>> {
        let enc = self.tokenizer.encode(text, false).map_err(|e| tok_err("cannot encode", e))?;
        Ok(enc.get_tokens().to_vec())
    }

    /// Text from ids: pieces joined, `##` continuations glued to their word, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.tokenizer.decode(ids, true).unwrap_or_default()
    }

    /// Saves the tokenizer as Hugging Face's `tokenizer.json` (written atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = self.tokenizer.to_string(true).map_err(|e| tok_err("cannot serialize", e))?;
        crate::data::download::write_atomic(path, json.as_bytes())
    }

    /// Loads a tokenizer saved by [`WordPieceVocab::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let tokenizer = Tokenizer::from_file(path).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            format: "tokenizer.json",
            reason: format!("{e}; save the vocabulary again with WordPieceVocab::save"),
        })?;
        Ok(WordPieceVocab { tokenizer })
    }
}

/// Which adjacent pair of pieces a vocabulary learner merges next (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeRule {
    /// The most frequent pair, `count(ab)`: byte-pair encoding's rule, and what the `tokenizers` crate's
    /// `WordPieceTrainer` does.
    Frequency,
    /// The pair whose parts most often occur together, `count(ab) / (count(a) · count(b))`: WordPiece's
    /// likelihood score. On a small corpus it merges rare letters first and leaves common words in pieces.
    Likelihood,
}

/// BERT's uncased normalizer (clean control characters, lower-case, strip accents) and its pre-tokenizer (split on
/// whitespace and punctuation).
fn normalizer() -> (BertNormalizer, BertPreTokenizer) {
    (BertNormalizer::new(true, true, Some(true), true), BertPreTokenizer)
}

/// WordPiece's merges (module docs) over `word_counts`: the alphabet (word-initial characters and `##` continuing
/// ones, in character order), then the merged pieces in the order they were made, `n_tokens` at most in all.
fn learn_wordpieces(word_counts: &BTreeMap<String, u64>, n_tokens: usize, rule: MergeRule) -> Vec<String> {
    // Symbols by id; each word as a sequence of symbol ids.
    let mut symbols: Vec<String> = vec![];
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut alphabet: Vec<String> = word_counts
        .keys()
        .flat_map(|w| w.chars().enumerate().map(|(i, c)| if i == 0 { c.to_string() } else { format!("##{c}") }))
        .collect();
    alphabet.sort();
    alphabet.dedup();
    for s in alphabet {
        ids.insert(s.clone(), symbols.len() as u32);
        symbols.push(s);
    }
    let mut words: Vec<(Vec<u32>, f64)> = word_counts
        .iter()
        .map(|(w, &c)| {
            let seq = w
                .chars()
                .enumerate()
                .map(|(i, ch)| ids[&if i == 0 { ch.to_string() } else { format!("##{ch}") }])
                .collect();
            (seq, c as f64)
        })
        .collect();
    // Counts of every symbol and adjacent pair, weighted by word frequency, and which words hold each pair; a
    // merge then updates only the words it touches.
    let mut sym_count = vec![0f64; symbols.len()];
    let mut pair_count: HashMap<(u32, u32), f64> = HashMap::new();
    let mut holders: HashMap<(u32, u32), Vec<usize>> = HashMap::new();
    let count = |seq: &[u32], c: f64, sym: &mut Vec<f64>, pairs: &mut HashMap<(u32, u32), f64>| {
        for (i, &s) in seq.iter().enumerate() {
            if sym.len() <= s as usize {
                sym.resize(s as usize + 1, 0.0);
            }
            sym[s as usize] += c;
            if i + 1 < seq.len() {
                *pairs.entry((s, seq[i + 1])).or_default() += c;
            }
        }
    };
    for (w, (seq, c)) in words.iter().enumerate() {
        count(seq, *c, &mut sym_count, &mut pair_count);
        for p in seq.windows(2) {
            holders.entry((p[0], p[1])).or_default().push(w);
        }
    }
    while symbols.len() < n_tokens {
        // The best pair by score; among equal scores the one with the smallest ids (made first).
        let best = pair_count
            .iter()
            .filter(|(_, &n)| n >= 1.5) // a pair seen once is not a pattern (counts are sums of whole numbers)
            .map(|(&(a, b), &n)| {
                let score = match rule {
                    MergeRule::Frequency => n,
                    MergeRule::Likelihood => n / (sym_count[a as usize] * sym_count[b as usize]),
                };
                (score, (a, b))
            })
            .max_by(|x, y| x.0.total_cmp(&y.0).then(y.1.cmp(&x.1)));
        let Some((_, (a, b))) = best else { break };
        let merged = format!("{}{}", symbols[a as usize], symbols[b as usize].trim_start_matches("##"));
        let id = match ids.get(&merged) {
            Some(&id) => id,
            None => {
                ids.insert(merged.clone(), symbols.len() as u32);
                symbols.push(merged);
                symbols.len() as u32 - 1
            }
        };
        let mut touched = holders.remove(&(a, b)).unwrap_or_default();
        touched.dedup();
        for w in touched {
            let (seq, c) = &mut words[w];
            if !seq.windows(2).any(|p| p == [a, b]) {
                continue;
            }
            // Take the word's old counts out, merge, put the new ones in.
            count(seq, -*c, &mut sym_count, &mut pair_count);
            let mut i = 0;
            while i + 1 < seq.len() {
                if seq[i] == a && seq[i + 1] == b {
                    seq[i] = id;
                    seq.remove(i + 1);
                }
                i += 1;
            }
            count(seq, *c, &mut sym_count, &mut pair_count);
            for p in seq.windows(2) {
                if p.contains(&id) {
                    holders.entry((p[0], p[1])).or_default().push(w);
                }
            }
        }
        pair_count.retain(|_, n| *n > 0.5);
    }
    symbols
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let lines = [
            "Before we proceed any further, hear me speak.",
            "Speak, speak. You are all resolved rather to die than to famish?",
            "Resolved. resolved. First, you know Caius Marcius is chief enemy to the people.",
            "We know't, we know't. Let us kill him, and we'll have corn at our own price.",
        ];
        (0..20).flat_map(|_| lines.iter().map(|s| s.to_string())).collect()
    }

    #[test]
    fn trains_deterministically_with_fixed_special_ids() -> Result<()> {
        let (a, b) = (WordPieceVocab::train(&corpus(), 120)?, WordPieceVocab::train(&corpus(), 120)?);
        assert_eq!(a.len(), b.len());
        for id in 0..a.len() as u32 {
            assert_eq!(a.token(id), b.token(id), "id {id}");
        }
        assert_eq!((a.id("[PAD]"), a.id("[MASK]")), (Some(PAD), Some(MASK)));
        // With room enough, the corpus's words become whole tokens; an unseen word is spelled in pieces, never
        // [UNK], and decodes back.
        let big = WordPieceVocab::train(&corpus(), 1000)?;
        assert_eq!(big.pieces("Resolved")?, vec!["resolved"]);
        let unseen = big.encode("unresolvedness")?;
        assert!(unseen.len() > 1 && !unseen.contains(&UNK), "{:?}", big.pieces("unresolvedness")?);
        assert_eq!(big.decode(&unseen), "unresolvedness");
        assert!(a.len() <= 120 && a.len() > 60);
        assert!(WordPieceVocab::train(&corpus(), 5).is_err());
        Ok(())
    }

    #[test]
    fn saves_and_loads() -> Result<()> {
        let v = WordPieceVocab::train(&corpus(), 100)?;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        v.save(&path)?;
        let w = WordPieceVocab::load(&path)?;
        let s = "Hear me speak, you know Marcius.";
        assert_eq!(v.encode(s)?, w.encode(s)?);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(WordPieceVocab::load(&path), Err(Error::Format { .. })));
        Ok(())
    }
}
