//! Text data: Tiny Shakespeare and a character vocabulary for character-level models.
//!
//! Tiny Shakespeare is the 1.1 MB concatenation of Shakespeare's plays that Andrej Karpathy
//! assembled for char-rnn ("The Unreasonable Effectiveness of Recurrent Neural Networks",
//! 2015, <https://karpathy.github.io/2015/05/21/rnn-effectiveness/>); it became the standard
//! small corpus for character-level RNNs and, later, small GPTs.

use std::path::PathBuf;

use candle_core::{Device, Tensor};

use super::locate::{locate_or_fetch, FileSpec, Roots};
use crate::{Error, Result};

/// The canonical location of Tiny Shakespeare.
const TINY_SHAKESPEARE_URL: &str =
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";
/// Its SHA-256 (the file is 1 115 394 bytes).
const TINY_SHAKESPEARE_SHA256: &str = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed";

pub(crate) fn tiny_shakespeare_spec() -> FileSpec {
    FileSpec {
        dataset: "tinyshakespeare".into(),
        file: "input.txt".into(),
        sha256: TINY_SHAKESPEARE_SHA256.into(),
        urls: vec![TINY_SHAKESPEARE_URL.into()],
        system_dirs: Vec::<PathBuf>::new(),
        system_repair: String::new(),
        other_source: String::new(),
    }
}

/// Tiny Shakespeare as one string (1 115 394 characters, 65 distinct).
///
/// Found in `$DLHIST_DATA/tinyshakespeare/input.txt` or the user cache, otherwise downloaded
/// into the cache from char-rnn's repository; checked against its SHA-256 either way.
///
/// ```no_run
/// let text = dlhist::data::tiny_shakespeare()?;
/// assert!(text.starts_with("First Citizen:"));
/// let vocab = dlhist::data::CharVocab::new(&text);
/// assert_eq!(vocab.len(), 65);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn tiny_shakespeare() -> Result<String> {
    tiny_shakespeare_in(&Roots::from_env())
}

fn tiny_shakespeare_in(roots: &Roots) -> Result<String> {
    let found = locate_or_fetch(&tiny_shakespeare_spec(), roots)?;
    // The digest already pins the bytes, so this only fails if the digest itself is wrong.
    String::from_utf8(found.bytes).map_err(|e| Error::Format {
        path: found.path,
        format: "UTF-8 text",
        reason: format!("{e}; delete it and rerun to download it again"),
    })
}

/// The sorted set of distinct characters of a text, mapping each to an id `0..len`.
///
/// Ids follow the characters' order (`'\n'` < `' '` < `'!'` < ... < `'A'` < ... < `'z'`), so
/// the same text always gives the same vocabulary.
///
/// ```
/// use dlhist::data::CharVocab;
/// let vocab = CharVocab::new("hello");
/// assert_eq!(vocab.chars(), &['e', 'h', 'l', 'o']);
/// let ids = vocab.encode("hole")?;
/// assert_eq!(ids, vec![1, 3, 2, 0]);
/// assert_eq!(vocab.decode(&ids)?, "hole");
/// assert!(vocab.encode("help").is_err()); // 'p' is not in the vocabulary
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharVocab {
    chars: Vec<char>,
}

impl CharVocab {
    /// The vocabulary of `text`'s distinct characters.
    pub fn new(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        CharVocab { chars }
    }

    /// The number of distinct characters.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether the vocabulary is empty (built from an empty text).
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The characters, in id order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The id of `c`, if it is in the vocabulary.
    pub fn id(&self, c: char) -> Option<u32> {
        // Sorted and small (65 for Shakespeare): a binary search beats hashing.
        self.chars.binary_search(&c).ok().map(|i| i as u32)
    }

    /// The character with id `id`, if there is one.
    pub fn char(&self, id: u32) -> Option<char> {
        self.chars.get(id as usize).copied()
    }

    /// The ids of `text`'s characters; an error names the first character not in the
    /// vocabulary and its position.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .enumerate()
            .map(|(pos, c)| {
                self.id(c).ok_or_else(|| {
                    Error::Invalid(format!(
                        "character {c:?} (U+{:04X}) at position {pos} is not in the vocabulary of {} characters; \
                         build the vocabulary from a text that contains it, or remove it from the input",
                        c as u32,
                        self.len()
                    ))
                })
            })
            .collect()
    }

    /// The ids of `text`'s characters that are in the vocabulary, and how many characters were left out: for
    /// reading another corpus with a model's fixed vocabulary (report the count, so that nothing is dropped
    /// silently).
    ///
    /// ```
    /// let vocab = dlhist::data::CharVocab::new("abc ");
    /// let (ids, dropped) = vocab.encode_known("a (b) c");
    /// assert_eq!((vocab.decode(&ids)?, dropped), ("a b c".to_string(), 2));
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn encode_known(&self, text: &str) -> (Vec<u32>, usize) {
        let (mut ids, mut dropped) = (Vec::with_capacity(text.len()), 0);
        for c in text.chars() {
            match self.id(c) {
                Some(id) => ids.push(id),
                None => dropped += 1,
            }
        }
        (ids, dropped)
    }

    /// `text` encoded as a u32 tensor of shape `[chars]` on `dev`.
    pub fn encode_tensor(&self, text: &str, dev: &Device) -> Result<Tensor> {
        let ids = self.encode(text)?;
        let n = ids.len();
        Ok(Tensor::from_vec(ids, n, dev)?)
    }

    /// The text spelled by `ids`; an error names the first id that is out of range.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        ids.iter()
            .enumerate()
            .map(|(pos, &id)| {
                self.char(id).ok_or_else(|| {
                    Error::Invalid(format!(
                        "id {id} at position {pos} is out of range for a vocabulary of {} characters (valid ids: 0..{})",
                        self.len(),
                        self.len()
                    ))
                })
            })
            .collect()
    }
}

/// `n` windows of `len` tokens drawn at seeded random offsets of `ids`, with the tokens that follow each
/// (`x [n, len]`, `y [n, len]`, u32, `y[i][t] = ids[s_i + t + 1]`): the batches of nanoGPT's training loop, drawn
/// once up front so that [`crate::train::fit`] can run them in order.
///
/// ```
/// use dlhist::prelude::*;
/// let ids: Vec<u32> = (0..100).collect();
/// let data = dlhist::data::random_windows(&ids, 5, 8, &mut Rng::new(0), &Device::Cpu)?;
/// let (x, y) = (data.x.to_vec2::<u32>()?, data.y.to_vec2::<u32>()?);
/// assert_eq!((x.len(), x[0].len()), (5, 8));
/// assert!(x.iter().zip(&y).all(|(a, b)| a.iter().zip(b).all(|(p, q)| q == &(p + 1))));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn random_windows(
    ids: &[u32],
    n: usize,
    len: usize,
    rng: &mut crate::rng::Rng,
    dev: &Device,
) -> Result<super::Dataset> {
    if len == 0 || ids.len() <= len {
        return Err(Error::Invalid(format!(
            "random_windows: windows of {len} tokens (plus the one after) need a text longer than {len}; it has {}",
            ids.len()
        )));
    }
    let (mut x, mut y) = (Vec::with_capacity(n * len), Vec::with_capacity(n * len));
    for _ in 0..n {
        let s = rng.below(ids.len() - len);
        x.extend_from_slice(&ids[s..s + len]);
        y.extend_from_slice(&ids[s + 1..s + len + 1]);
    }
    super::Dataset::new(Tensor::from_vec(x, (n, len), dev)?, Tensor::from_vec(y, (n, len), dev)?)
}

/// The lines of speech in a play's text: every non-empty line except the speakers' names (a paragraph's first line
/// when it ends with `:`), trimmed.
///
/// ```
/// let text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n";
/// assert_eq!(dlhist::data::text::speech_lines(text), vec!["Before we proceed any further, hear me speak.", "Speak, speak."]);
/// ```
pub fn speech_lines(text: &str) -> Vec<&str> {
    let mut out = vec![];
    let mut first_of_paragraph = true;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            first_of_paragraph = true;
            continue;
        }
        if !(first_of_paragraph && line.ends_with(':')) {
            out.push(line);
        }
        first_of_paragraph = false;
    }
    out
}

/// One speech of a play: who speaks, and the lines spoken (joined by newlines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speech {
    /// The speaker's name as the text writes it, without the colon (`"ROMEO"`, `"First Citizen"`).
    pub speaker: String,
    /// The speech itself.
    pub text: String,
}

/// The speeches of a play's text: every paragraph whose first line is a speaker's name ending in `:`, in order.
///
/// ```
/// let text = "First Citizen:\nBefore we proceed any further,\nhear me speak.\n\nAll:\nSpeak, speak.\n";
/// let s = dlhist::data::text::speeches(text);
/// assert_eq!((s.len(), s[0].speaker.as_str(), s[1].text.as_str()), (2, "First Citizen", "Speak, speak."));
/// ```
pub fn speeches(text: &str) -> Vec<Speech> {
    text.split("\n\n")
        .filter_map(|p| {
            let mut lines = p.trim().lines();
            let speaker = lines.next()?.trim().strip_suffix(':')?.to_string();
            let text = lines.map(str::trim).collect::<Vec<_>>().join("\n");
            (!text.is_empty()).then_some(Speech { speaker, text })
        })
        .collect()
}

/// A text classification set: lines and their class numbers, e.g. [`swapped_lines`]'s acceptability task or
/// [`crate::data::words::supersense_task`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledLines {
    /// The lines.
    pub lines: Vec<String>,
    /// The class of each line, from 0.
    pub labels: Vec<u32>,
}

/// A small acceptability task (in the spirit of CoLA, the Corpus of Linguistic Acceptability of BERT's GLUE
/// benchmark): is this line as written, or have two of its words been swapped? Label 1 for an original line, 0 for
/// a corrupted one.
///
/// `n` lines from `lines` with at least `min_words` words (drawn without replacement, seeded), half of them (every
/// other one, in drawn order) corrupted by swapping two different words at random positions. Errors when fewer
/// than `n` lines qualify.
///
/// ```
/// use dlhist::prelude::*;
/// let lines = ["to be or not to be", "that is the question", "whether tis nobler in the mind to suffer"];
/// let task = dlhist::data::text::swapped_lines(&lines, 2, 4, &mut Rng::new(0))?;
/// assert_eq!(task.labels, vec![1, 0]);
/// assert_ne!(task.lines[1].split(' ').collect::<Vec<_>>(), task.lines[0].split(' ').collect::<Vec<_>>());
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn swapped_lines<S: AsRef<str>>(
    lines: &[S],
    n: usize,
    min_words: usize,
    rng: &mut crate::rng::Rng,
) -> Result<LabeledLines> {
    // Only lines with two different words can be corrupted.
    let mut pool: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.as_ref().split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() >= min_words.max(2) && w.iter().any(|x| x != &w[0]))
        .collect();
    if pool.len() < n {
        return Err(Error::Invalid(format!(
            "swapped_lines: {n} lines wanted, only {} have at least {min_words} words",
            pool.len()
        )));
    }
    rng.shuffle(&mut pool);
    let (mut out, mut labels) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (k, mut words) in pool.into_iter().take(n).enumerate() {
        if k % 2 == 1 {
            loop {
                let (i, j) = (rng.below(words.len()), rng.below(words.len()));
                if words[i] != words[j] {
                    words.swap(i, j);
                    break;
                }
            }
        }
        out.push(words.join(" "));
        labels.push(u32::from(k % 2 == 0));
    }
    Ok(LabeledLines { lines: out, labels })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::download::sha256_bytes;

    #[test]
    fn vocab_round_trips_and_reports_unknowns() {
        let v = CharVocab::new("To be, or not to be:\nthat is the question.");
        assert_eq!(v.chars()[0], '\n');
        assert_eq!(v.chars()[1], ' ');
        assert!(v.chars().windows(2).all(|w| w[0] < w[1]));
        let text = "not to be";
        assert_eq!(v.decode(&v.encode(text).unwrap()).unwrap(), text);
        let msg = v.encode("toby").unwrap_err().to_string();
        assert!(msg.contains("'y'") && msg.contains("position 3"), "{msg}");
        let msg = v.decode(&[0, 99]).unwrap_err().to_string();
        assert!(msg.contains("id 99") && msg.contains("position 1"), "{msg}");
        assert_eq!(v.id('T'), Some(v.encode("T").unwrap()[0]));
        assert_eq!(v.char(v.len() as u32), None);
        let t = v.encode_tensor("to be", &crate::device::test_device()).unwrap();
        assert_eq!(t.dims(), &[5]);
        assert!(CharVocab::new("").is_empty());
    }

    #[test]
    fn non_ascii_characters_are_ordinary_entries() {
        let v = CharVocab::new("añb→");
        assert_eq!(v.len(), 4);
        assert_eq!(v.decode(&v.encode("→ñ").unwrap()).unwrap(), "→ñ");
    }

    #[test]
    fn the_spec_points_at_char_rnn_and_the_published_digest() {
        let s = tiny_shakespeare_spec();
        assert_eq!(s.urls, vec![TINY_SHAKESPEARE_URL.to_string()]);
        assert_eq!(s.sha256, "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed");
        assert_eq!((s.dataset.as_str(), s.file.as_str()), ("tinyshakespeare", "input.txt"));
    }

    #[test]
    fn a_tampered_copy_in_the_data_folder_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tinyshakespeare/input.txt");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "First Citizen:\nBefore we proceed any further, hear me speak.\n").unwrap();
        let roots = Roots { data: Some(dir.path().to_path_buf()), cache: None, offline: true, progress: false };
        let err = tiny_shakespeare_in(&roots).unwrap_err();
        assert!(matches!(err, Error::Checksum { .. }), "{err:?}");
        assert!(err.to_string().contains("tinyshakespeare/input.txt"), "{err}");
    }

    /// The mirrored copy under /work/shared/data (the project's offline setup), when present.
    #[test]
    fn mirrored_tiny_shakespeare_loads() {
        let root = PathBuf::from("/work/shared/data");
        if !root.join("tinyshakespeare/input.txt").exists() {
            eprintln!("skipped: no mirrored tinyshakespeare/input.txt under {}", root.display());
            return;
        }
        let roots = Roots { data: Some(root), cache: None, offline: true, progress: false };
        let text = tiny_shakespeare_in(&roots).unwrap();
        assert_eq!(text.len(), 1_115_394);
        assert_eq!(sha256_bytes(text.as_bytes()), TINY_SHAKESPEARE_SHA256);
        let v = CharVocab::new(&text);
        assert_eq!(v.len(), 65);
        assert_eq!(v.decode(&v.encode(&text[..200]).unwrap()).unwrap(), &text[..200]);
    }
}
