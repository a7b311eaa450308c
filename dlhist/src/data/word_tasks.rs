//! Two small labeled tasks on English words, for a text-to-text model: name a word's part of speech (`pos`) and
//! count its syllables (`syllables`). The labels come from real lexicons: WordNet 3.0's word classes
//! ([`super::words::parts_of_speech`]) and the CMU pronouncing dictionary's phonemes ([`super::g2p::cmudict`]).
//!
//! The words are the frequent words of an English corpus (the Webster 1913 dictionary in the T5 notebook), so a
//! model pretrained on that corpus has read every one of them, and they are split once into training and test
//! words: a test word never appears in any task's training pairs.
//!
//! Everything is spelled in one character vocabulary ([`vocab`]): the letters, the space, the colon, the digits,
//! and sentinel tokens `<X0>`, `<X1>`, ... for span corruption. Source and target share it, as T5's do.

use std::collections::{BTreeMap, HashMap};

use super::g2p::CmuEntry;
use super::pairs::{SeqPairs, Vocab};
use super::words::{PartOfSpeech, WordCorpus};
use crate::rng::Rng;
use crate::{Error, Result};

/// The number of sentinel tokens in [`vocab`].
pub const SENTINELS: usize = 16;

/// The character vocabulary of the tasks and of span corruption: the reserved ids, space, `:`, `a`-`z`, `0`-`9`,
/// then the sentinels `<X0>` … `<X15>`.
///
/// ```
/// let v = dlhist::data::word_tasks::vocab()?;
/// assert_eq!(v.len(), 3 + 2 + 26 + 10 + 16);
/// assert_eq!(v.render(&v.encode(&["f", "i", "x", ":"])?, ""), "fix:");
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn vocab() -> Result<Vocab> {
    let chars = [' ', ':'].into_iter().chain('a'..='z').chain('0'..='9').map(String::from);
    Vocab::new(chars.chain((0..SENTINELS).map(|k| format!("<X{k}>"))))
}

/// The ids of the sentinels `<X0>` … in `vocab` (as made by [`vocab`]).
pub fn sentinel_ids(vocab: &Vocab) -> Result<Vec<u32>> {
    (0..SENTINELS)
        .map(|k| {
            vocab.id(&format!("<X{k}>")).ok_or_else(|| {
                Error::Invalid(format!("the vocabulary has no sentinel <X{k}>; build it with word_tasks::vocab()"))
            })
        })
        .collect()
}

/// `text` as ids of `vocab`, one per character; a character outside it is an error that names it.
pub fn encode_chars(vocab: &Vocab, text: &str) -> Result<Vec<u32>> {
    vocab.encode(&text.chars().map(String::from).collect::<Vec<_>>())
}

/// `n` stretches of running text from `words`, each as many consecutive words, from a random start, as fit in
/// `max_chars` characters with single spaces between them (at least one word; a longer word is cut).
///
/// ```
/// use dlhist::rng::Rng;
/// let words: Vec<String> = "the cat sat on the mat".split(' ').map(String::from).collect();
/// let w = dlhist::data::word_tasks::text_windows(&words, 7, 20, &mut Rng::new(0));
/// assert!(w.iter().all(|s| s.len() <= 7 && !s.starts_with(' ') && !s.ends_with(' ')));
/// assert!(w.contains(&"cat sat".to_string()));
/// ```
pub fn text_windows(words: &[String], max_chars: usize, n: usize, rng: &mut Rng) -> Vec<String> {
    (0..n)
        .map(|_| {
            let mut at = rng.below(words.len());
            let mut s: String = words[at].chars().take(max_chars).collect();
            at += 1;
            while at < words.len() && s.len() + 1 + words[at].len() <= max_chars {
                s.push(' ');
                s.push_str(&words[at]);
                at += 1;
            }
            s
        })
        .collect()
}

/// The number of syllables of a pronunciation: its vowel phonemes (Festival's lowercase ARPAbet, stress dropped).
///
/// ```
/// let p = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
/// assert_eq!(dlhist::data::word_tasks::syllables(&p("hh ae p iy")), 2);
/// assert_eq!(dlhist::data::word_tasks::syllables(&p("s t r eh ng k th s")), 1);
/// ```
pub fn syllables(phonemes: &[String]) -> usize {
    const VOWELS: [&str; 16] =
        ["aa", "ae", "ah", "ao", "aw", "ax", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"];
    phonemes.iter().filter(|p| VOWELS.contains(&p.as_str())).count()
}

/// One of the tasks; its [`WordTask::prefix`] is all that tells the model which one to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WordTask {
    /// Name the word's class in WordNet: `pos: happily` → `adverb`.
    PartOfSpeech,
    /// Count the word's syllables in the CMU dictionary: `syllables: happily` → `3`.
    Syllables,
}

impl WordTask {
    /// Both tasks.
    pub const ALL: [WordTask; 2] = [WordTask::PartOfSpeech, WordTask::Syllables];

    /// The text before the colon: `pos`, `syllables`.
    pub fn prefix(self) -> &'static str {
        match self {
            WordTask::PartOfSpeech => "pos",
            WordTask::Syllables => "syllables",
        }
    }
}

/// Which half of the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Words for fine-tuning.
    Train,
    /// Held-out words for evaluation.
    Test,
}

/// The words and labels of the tasks (module docs).
#[derive(Debug, Clone)]
pub struct WordTasks {
    train: Vec<String>,
    test: Vec<String>,
    pos: HashMap<String, PartOfSpeech>,
    syllables: HashMap<String, usize>,
}

impl WordTasks {
    /// The tasks over the `top` most frequent words of `corpus` with 4 to 10 letters, a fifth of them held out
    /// (drawn by `rng`), labelled from WordNet's `parts` (only words of exactly one class get a `pos` label) and
    /// the CMU entries `cmu` (a word's first pronunciation).
    pub fn new(
        corpus: &WordCorpus,
        top: usize,
        parts: &BTreeMap<String, Vec<PartOfSpeech>>,
        cmu: &[CmuEntry],
        rng: &mut Rng,
    ) -> Result<Self> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for w in &corpus.words {
            if (4..=10).contains(&w.len()) {
                *counts.entry(w.as_str()).or_default() += 1;
            }
        }
        let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
        // Most frequent first; ties in alphabetical order, so the list does not depend on the hash map's order.
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut words: Vec<String> = by_count.iter().take(top).map(|(w, _)| w.to_string()).collect();
        if words.len() < 50 {
            return Err(Error::Invalid(format!(
                "WordTasks: the corpus {} has only {} words of 4 to 10 letters; need at least 50",
                corpus.name,
                words.len()
            )));
        }
        words.sort();
        rng.shuffle(&mut words);
        let test = words.split_off(words.len() * 4 / 5);
        let pos = parts.iter().filter(|(_, p)| p.len() == 1).map(|(w, p)| (w.clone(), p[0])).collect();
        let mut syllable_counts = HashMap::new();
        for e in cmu {
            syllable_counts.entry(e.word.clone()).or_insert_with(|| syllables(&e.phonemes));
        }
        Ok(WordTasks { train: words, test, pos, syllables: syllable_counts })
    }

    /// [`WordTasks::new`] over the 6000 most frequent words of `corpus`, with WordNet and the CMU dictionary
    /// loaded from where they are installed.
    pub fn build(corpus: &WordCorpus, rng: &mut Rng) -> Result<Self> {
        Self::new(corpus, 6000, &super::words::parts_of_speech()?, &super::g2p::cmudict()?, rng)
    }

    /// The words of a split.
    pub fn words(&self, split: Split) -> &[String] {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    /// The words of `split` that `task` has a label for, in split order.
    pub fn eligible(&self, task: WordTask, split: Split) -> Vec<&str> {
        self.words(split)
            .iter()
            .filter(|w| match task {
                WordTask::PartOfSpeech => self.pos.contains_key(*w),
                WordTask::Syllables => self.syllables.contains_key(*w),
            })
            .map(String::as_str)
            .collect()
    }

    /// The answer to `task` on `word` (`"adverb"`, `"3"`), or `None` if the lexicons give none.
    pub fn label(&self, task: WordTask, word: &str) -> Option<String> {
        match task {
            WordTask::PartOfSpeech => self.pos.get(word).map(|p| p.name().to_string()),
            WordTask::Syllables => self.syllables.get(word).map(|n| n.to_string()),
        }
    }

    /// The example of `task` on `word`, as text: the source `"{prefix}: {word}"` and the target. Errors if the task
    /// has no label for the word.
    pub fn example(&self, task: WordTask, word: &str) -> Result<(String, String)> {
        let target = self
            .label(task, word)
            .ok_or_else(|| Error::Invalid(format!("WordTasks: no {} label for {word:?}", task.prefix())))?;
        Ok((format!("{}: {word}", task.prefix()), target))
    }

    /// Up to `per_task` examples of each of `tasks` from the words of `split` (each word at most once per task,
    /// drawn by `rng`), encoded in `vocab` ([`vocab`]), tasks interleaved in one shuffled set.
    pub fn pairs(
        &self,
        tasks: &[WordTask],
        split: Split,
        per_task: usize,
        vocab: &Vocab,
        rng: &mut Rng,
    ) -> Result<SeqPairs> {
        let mut rows = vec![];
        for &task in tasks {
            let mut words = self.eligible(task, split);
            rng.shuffle(&mut words);
            for w in words.into_iter().take(per_task) {
                rows.push(self.example(task, w)?);
            }
        }
        rng.shuffle(&mut rows);
        let (src, tgt): (Vec<_>, Vec<_>) = rows
            .iter()
            .map(|(s, t)| Ok((encode_chars(vocab, s)?, encode_chars(vocab, t)?)))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        SeqPairs::new(src, tgt, vocab.clone(), vocab.clone())
    }

    /// One line per task: how many training and test words it has labels for.
    pub fn summary(&self) -> String {
        WordTask::ALL
            .iter()
            .map(|&t| {
                format!(
                    "{}: {} training words, {} test words",
                    t.prefix(),
                    self.eligible(t, Split::Train).len(),
                    self.eligible(t, Split::Test).len()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
