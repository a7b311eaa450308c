//! Words: English corpora for word embeddings, and the standard sets that judge them.
//!
//! | function | what it gives | where it comes from |
//! | --- | --- | --- |
//! | [`gcide()`] | the Webster 1913 dictionary (GCIDE 0.48) as 4.3 million lowercase words | Debian's `dict-gcide` package |
//! | [`text8()`] | the first 10⁸ bytes of English Wikipedia, cleaned to lowercase words, the standard word2vec benchmark | downloaded from Matt Mahoney's site |
//! | [`english_corpus()`] | whichever of the two is installed (GCIDE first), so a notebook runs offline where Debian's package is | |
//! | [`word_similarity()`] | WordSim353 (353 pairs) or SimLex-999 (999 pairs) with human similarity scores | gensim's test data |
//! | [`analogy_questions()`] | the 19 544 analogy questions of Mikolov et al. 2013a, in 14 sections | gensim's test data |
//!
//! Every corpus is a flat stream of lowercase `[a-z]+` tokens, the normalization text8 itself uses (text8 spells
//! digits out; [`gcide()`] drops them), so that the same word2vec settings apply to both.
//!
//! The evaluation sets are the files `gensim/test/test_data/{wordsim353.tsv, simlex999.txt, questions-words.txt}`
//! of gensim 4.4.0: found in `$DLHIST_DATA/word-benchmarks/` or the user cache (`cargo xtask setup` installs them
//! there from gensim's wheel on PyPI), otherwise downloaded from gensim's repository; verified by SHA-256 either way.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::locate::{locate_or_fetch, FileSpec, Roots};
use crate::{Error, Result};

/// A corpus as a flat stream of lowercase words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordCorpus {
    /// A short name for tables and prose: `"GCIDE (Webster 1913)"` or `"text8"`.
    pub name: String,
    /// The file it was read from.
    pub source: PathBuf,
    /// The words, in corpus order, each a non-empty run of `a`-`z`.
    pub words: Vec<String>,
}

impl WordCorpus {
    /// The number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether the corpus has no words.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The corpus cut to its first `n` words (all of them if it has fewer): quick mode trains on a prefix.
    ///
    /// ```
    /// use dlhist::data::words::WordCorpus;
    /// let c = WordCorpus { name: "toy".into(), source: "toy.txt".into(), words: vec!["a".into(), "b".into()] };
    /// assert_eq!(c.prefix(1).words, vec!["a".to_string()]);
    /// assert_eq!(c.prefix(5).len(), 2);
    /// ```
    pub fn prefix(&self, n: usize) -> WordCorpus {
        WordCorpus {
            name: self.name.clone(),
            source: self.source.clone(),
            words: self.words[..n.min(self.len())].to_vec(),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// GCIDE, the Webster 1913 dictionary

/// Debian's folder of dictd databases.
const GCIDE_DIR: &str = "/usr/share/dictd";
/// The SHA-256 of `gcide.dict.dz` in Debian 12's `dict-gcide` 0.48.5+nmu2 (13 527 370 bytes).
const GCIDE_SHA256: &str = "3e6b2cdcbc1b3664c2f1466e3c8e44012e815c4c67fa83fa61f39777cd6e8517";

fn gcide_spec() -> FileSpec {
    FileSpec {
        dataset: "gcide".into(),
        file: "gcide.dict.dz".into(),
        sha256: GCIDE_SHA256.into(),
        // No plain download of this exact file exists (GNU publishes GCIDE's sources, Debian builds the
        // dictd database from them), so it is found, never fetched: text8 is the corpus that downloads.
        urls: vec![],
        system_dirs: vec![PathBuf::from(GCIDE_DIR)],
        system_repair: "reinstall Debian's package: apt-get install --reinstall dict-gcide (dlhist expects \
                        version 0.48.5+nmu2, Debian 12), or use text8 (dlhist::data::words::text8)"
            .into(),
        other_source: "or install Debian's package: apt-get install dict-gcide (or copy gcide.dict.dz \
                       from it into $DLHIST_DATA/gcide/), or use text8 instead (dlhist::data::words::text8)"
            .into(),
    }
}

/// The Webster 1913 dictionary (GCIDE 0.48, with WordNet 1.5 additions) as 4.29 million lowercase words (189 157 distinct),
/// from Debian's `dict-gcide` package (`/usr/share/dictd/gcide.dict.dz`, a dictzip file, which reads as gzip).
///
/// What is kept is the prose of the dictionary: headwords, definitions, usage notes and quotations. What is
/// dropped, because it is not English text: the licence preamble, pronunciations (`\Ab`di*ca"tion\`),
/// everything in square brackets (etymologies such as `[L. abdicatio]`, sources such as `[1913 Webster]`, labels
/// such as `[Obs.]`), the attributions of quotations (`--Shak.`), the `Syn:` labels and every digit. What is
/// left is lowercased and split into runs of `a`-`z` ([`tokenize`]).
///
/// ```no_run
/// let corpus = dlhist::data::words::gcide()?;
/// assert!(corpus.len() > 4_000_000);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn gcide() -> Result<WordCorpus> {
    gcide_in(&Roots::from_env())
}

fn gcide_in(roots: &Roots) -> Result<WordCorpus> {
    let found = locate_or_fetch(&gcide_spec(), roots)?;
    let text = gunzip_text(&found.bytes, &found.path)?;
    Ok(WordCorpus { name: "GCIDE (Webster 1913)".into(), source: found.path, words: gcide_words(&text) })
}

/// Inflates gzip (dictzip is gzip with an index in an extra header field) into text. GCIDE is mostly ASCII with a
/// few Latin-1 bytes; those are not letters `a`-`z` either way, so a lossy conversion loses no word.
fn gunzip_text(bytes: &[u8], path: &Path) -> Result<String> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut raw).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        format: "gzip-compressed text",
        reason: e.to_string(),
    })?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// Whether a line starts a dictionary entry: a headword at column 0 followed by a pronunciation in backslashes
/// (`Abdication \Ab`di*ca"tion\, n.`). The first such line ends the preamble.
fn is_entry_head(line: &str) -> bool {
    !line.starts_with(char::is_whitespace) && line.find(" \\").is_some_and(|i| line[i + 2..].contains('\\'))
}

/// The words of GCIDE's text: see [`gcide()`] for what is kept.
fn gcide_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut lines = text.lines().skip_while(|l| !is_entry_head(l));
    let mut clean = String::new();
    for line in lines.by_ref() {
        clean.clear();
        strip_markup(line, &mut clean);
        words.extend(tokenize(&clean));
    }
    words
}

/// Appends `line` to `out` without pronunciations (`\...\`), bracketed spans (`[...]`), a `Syn:` label and a
/// quotation's attribution (`--Name` to the end of the line; a bare `--` is GCIDE's dash and stays).
fn strip_markup(line: &str, out: &mut String) {
    strip_markup_from(line, &mut Markup::default(), out)
}

/// Where [`strip_markup_from`] is: inside a pronunciation, and how many brackets deep.
#[derive(Debug, Default)]
struct Markup {
    in_pron: bool,
    depth: usize,
}

/// [`strip_markup`] starting from `state` and leaving it where the line ends, for spans that continue on the next
/// line (an etymology in brackets often does).
fn strip_markup_from(line: &str, state: &mut Markup, out: &mut String) {
    let line = line.trim_start().strip_prefix("Syn:").unwrap_or(line);
    let Markup { in_pron, depth } = state;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if *depth == 0 => *in_pron = !*in_pron,
            '[' if !*in_pron => *depth += 1,
            ']' if !*in_pron && *depth > 0 => *depth -= 1,
            '-' if !*in_pron && *depth == 0 && line[i..].starts_with("--") => {
                // "--Shak." attributes a quotation; "-- a phrase" is a dash inside the definition.
                if line[i + 2..].starts_with(|c: char| c.is_ascii_uppercase()) {
                    break;
                }
                chars.next();
                out.push(' ');
            }
            _ if !*in_pron && *depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.push(' ');
}

/// The Webster 1913 dictionary (GCIDE, as in [`gcide()`]) as running prose with its capitals and punctuation: one
/// entry per line, the headword followed by its definitions, usage notes and quotations, e.g. `Abjurer, n. One who
/// abjures.` It drops what [`gcide()`] drops (pronunciations, bracketed etymologies and sources, attributions,
/// `Syn:` labels) and also the sense numbers (`1.`, `2.`) and the braces GCIDE puts around cross-references.
/// About 24 million characters.
///
/// ```no_run
/// let prose = dlhist::data::words::gcide_prose()?;
/// assert!(prose.lines().any(|l| l.starts_with("Abjurer, n. One who abjures.")));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn gcide_prose() -> Result<String> {
    let found = locate_or_fetch(&gcide_spec(), &Roots::from_env())?;
    Ok(gcide_entries(&gunzip_text(&found.bytes, &found.path)?))
}

/// GCIDE's text as one cleaned line per entry (see [`gcide_prose`]).
fn gcide_entries(text: &str) -> String {
    let (mut out, mut entry, mut state) = (String::new(), String::new(), Markup::default());
    let flush = |entry: &mut String, out: &mut String| {
        let words: Vec<&str> = entry
            .split_whitespace()
            // Sense numbers ("1.", "12.") and the braces around cross-references are layout, not prose.
            .filter(|w| !(w.ends_with('.') && w.len() > 1 && w[..w.len() - 1].bytes().all(|b| b.is_ascii_digit())))
            .collect();
        let line = words.join(" ").replace(['{', '}'], "").replace(" ,", ",");
        if !line.is_empty() {
            out.push_str(&line);
            out.push('\n');
        }
        entry.clear();
    };
    for line in text.lines().skip_while(|l| !is_entry_head(l)) {
        if is_entry_head(line) {
            flush(&mut entry, &mut out);
            state = Markup::default();
        }
        strip_markup_from(line, &mut state, &mut entry);
    }
    flush(&mut entry, &mut out);
    out
}

/// Lowercase runs of ASCII letters: `"Don't stop--now!"` gives `don`, `t`, `stop`, `now`. Letters with accents
/// and every other character separate words, as in text8's cleaning.
///
/// ```
/// use dlhist::data::words::tokenize;
/// assert_eq!(tokenize("Don't stop--NOW, 1913!"), vec!["don", "t", "stop", "now"]);
/// ```
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| !w.is_empty()).map(str::to_ascii_lowercase).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// text8

/// Matt Mahoney's text8: the first 10⁸ bytes of an English Wikipedia dump, cleaned to lowercase letters and
/// single spaces, zipped (31 344 016 bytes).
const TEXT8_URL: &str = "http://mattmahoney.net/dc/text8.zip";
/// The SHA-256 of `text8.zip`.
const TEXT8_ZIP_SHA256: &str = "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232";
/// The SHA-256 of the file `text8` inside it (100 000 000 bytes), checked after inflating.
const TEXT8_SHA256: &str = "6e890197040d37d85beb962ae1f041ff1d9a9ca8d20c7d99c85027eebf51dca7";

pub(crate) fn text8_spec() -> FileSpec {
    FileSpec {
        dataset: "text8".into(),
        file: "text8.zip".into(),
        sha256: TEXT8_ZIP_SHA256.into(),
        urls: vec![TEXT8_URL.into()],
        system_dirs: vec![],
        system_repair: String::new(),
        other_source: String::new(),
    }
}

/// text8, the standard word2vec benchmark corpus: the first 10⁸ bytes of English Wikipedia cleaned to lowercase
/// letters and single spaces (about 17 million words). Found in `$DLHIST_DATA/text8/text8.zip` or the user cache, otherwise
/// downloaded from <http://mattmahoney.net/dc/text8.zip>; the zip and the text inside it are both checked
/// against their SHA-256.
///
/// ```no_run
/// let corpus = dlhist::data::words::text8()?;
/// assert!(corpus.words.iter().all(|w| w.bytes().all(|b| b.is_ascii_lowercase())));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn text8() -> Result<WordCorpus> {
    text8_in(&Roots::from_env())
}

fn text8_in(roots: &Roots) -> Result<WordCorpus> {
    let found = locate_or_fetch(&text8_spec(), roots)?;
    let bytes = unzip_member(&found.bytes, "text8", &found.path)?;
    let actual = super::download::sha256_bytes(&bytes);
    if actual != TEXT8_SHA256 {
        return Err(Error::Checksum {
            path: format!("text8 inside {} (delete the zip and rerun to download it again)", found.path.display()),
            expected: TEXT8_SHA256.into(),
            actual,
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| Error::Format {
        path: found.path.clone(),
        format: "ASCII text",
        reason: e.to_string(),
    })?;
    Ok(WordCorpus { name: "text8".into(), source: found.path, words: tokenize(&text) })
}

/// The bytes of the member `name` of a zip archive, stored or deflated (the two methods zip tools write by
/// default). Reads the central directory, which has the sizes even when the local header defers them.
fn unzip_member(zip: &[u8], name: &str, path: &Path) -> Result<Vec<u8>> {
    let bad = |reason: String| Error::Format { path: path.to_path_buf(), format: "zip archive", reason };
    let u16_at = |i: usize| zip.get(i..i + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |i: usize| zip.get(i..i + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    // The end-of-central-directory record: signature PK\5\6, within the last 22 + 65535 (comment) bytes.
    let eocd = (0..zip.len().saturating_sub(21))
        .rev()
        .take(22 + 65_535)
        .find(|&i| zip[i..].starts_with(b"PK\x05\x06"))
        .ok_or_else(|| bad("no end-of-central-directory record (truncated download?)".into()))?;
    let entries = u16_at(eocd + 10).ok_or_else(|| bad("truncated end record".into()))?;
    let mut at = u32_at(eocd + 16).ok_or_else(|| bad("truncated end record".into()))?;
    let mut names = Vec::new();
    for _ in 0..entries {
        if !zip.get(at..).is_some_and(|b| b.starts_with(b"PK\x01\x02")) {
            return Err(bad(format!("no central directory entry at byte {at}")));
        }
        let field = |off: usize| u16_at(at + off).ok_or_else(|| bad("truncated directory entry".into()));
        let (method, name_len, extra_len, comment_len) = (field(10)?, field(28)?, field(30)?, field(32)?);
        let compressed = u32_at(at + 20).ok_or_else(|| bad("truncated directory entry".into()))?;
        let local = u32_at(at + 42).ok_or_else(|| bad("truncated directory entry".into()))?;
        let entry_name = zip.get(at + 46..at + 46 + name_len).ok_or_else(|| bad("truncated file name".into()))?;
        let entry_name = String::from_utf8_lossy(entry_name).into_owned();
        if entry_name == name {
            // The local header repeats the name and has its own extra field, then the data follows.
            let data_at = local + 30 + u16_at(local + 26).unwrap_or(0) + u16_at(local + 28).unwrap_or(0);
            let data = zip.get(data_at..data_at + compressed).ok_or_else(|| bad(format!("{name} is truncated")))?;
            return match method {
                0 => Ok(data.to_vec()),
                8 => {
                    let mut out = Vec::new();
                    flate2::read::DeflateDecoder::new(data)
                        .read_to_end(&mut out)
                        .map_err(|e| bad(format!("{name}: {e}")))?;
                    Ok(out)
                }
                m => Err(bad(format!("{name} uses compression method {m}; only stored (0) and deflate (8) are read"))),
            };
        }
        names.push(entry_name);
        at += 46 + name_len + extra_len + comment_len;
    }
    Err(bad(format!("no member {name:?}; it holds {names:?}")))
}

/// The corpus a notebook uses when the user does not choose: GCIDE where Debian's `dict-gcide` is installed
/// (or the file is in `$DLHIST_DATA/gcide/`), otherwise text8 (found or downloaded). The corpus's `name` says
/// which one it was; if neither can be had, the error names both ways to get one.
///
/// ```no_run
/// let corpus = dlhist::data::words::english_corpus()?;
/// println!("training on {} ({} words)", corpus.name, corpus.len());
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn english_corpus() -> Result<WordCorpus> {
    english_corpus_in(&Roots::from_env())
}

fn english_corpus_in(roots: &Roots) -> Result<WordCorpus> {
    // Only a missing GCIDE falls through to text8: a corrupt one is an error the user should see.
    match gcide_in(&Roots { offline: true, ..roots.clone() }) {
        Err(Error::NotFound { searched, .. }) => text8_in(roots).map_err(|t8| Error::NotFound {
            what: "an English corpus (GCIDE or text8)".into(),
            searched,
            hint: format!(
                "Install Debian's dict-gcide (apt-get install dict-gcide) for GCIDE; text8 could not be had \
                 either: {t8}"
            ),
        }),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// WordNet's parts of speech

/// Debian's folder of WordNet 3.0's database files (package `wordnet-base`).
const WORDNET_DIR: &str = "/usr/share/wordnet";
/// WordNet 3.0's index files in Debian 12's `wordnet-base` 1:3.0-37, with their SHA-256.
const WORDNET_INDEXES: [(PartOfSpeech, &str, &str); 4] = [
    (PartOfSpeech::Noun, "index.noun", "a490d99d93d017bf4822fe2f0ffa51fd73911ce271dc7535fade21f8814b5a04"),
    (PartOfSpeech::Verb, "index.verb", "e2ac24816c3a8289dcb72aaa9cf8db81fdf25ec34d792bfc96ac5b7a20c8b4ae"),
    (PartOfSpeech::Adjective, "index.adj", "c9865d7b4d1f805bdef82ccdcea5282436e23083e6f6f1b33e716327c4eda810"),
    (PartOfSpeech::Adverb, "index.adv", "6f5465ed5758fe9c8a2f7ec17b1300f3aa875756c70ff7cba162f7e71bcf88ea"),
];

/// One of WordNet's four open word classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartOfSpeech {
    /// A noun (`index.noun`).
    Noun,
    /// A verb (`index.verb`).
    Verb,
    /// An adjective (`index.adj`).
    Adjective,
    /// An adverb (`index.adv`).
    Adverb,
}

impl PartOfSpeech {
    /// The class as a lowercase English word: `"noun"`, `"verb"`, `"adjective"`, `"adverb"`.
    ///
    /// ```
    /// assert_eq!(dlhist::data::words::PartOfSpeech::Adverb.name(), "adverb");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            PartOfSpeech::Noun => "noun",
            PartOfSpeech::Verb => "verb",
            PartOfSpeech::Adjective => "adjective",
            PartOfSpeech::Adverb => "adverb",
        }
    }
}

fn wordnet_spec(file: &str, sha256: &str) -> FileSpec {
    FileSpec {
        dataset: "wordnet".into(),
        file: file.into(),
        sha256: sha256.into(),
        // Princeton publishes WordNet 3.0 as one tarball, not as these files: they are found, never fetched.
        urls: vec![],
        system_dirs: vec![PathBuf::from(WORDNET_DIR)],
        system_repair: "reinstall Debian's package: apt-get install --reinstall wordnet-base (dlhist expects \
                        WordNet 3.0, package version 1:3.0-37)"
            .into(),
        other_source: "or install Debian's package: apt-get install wordnet-base (or copy WordNet 3.0's index.* and \
                       data.* files of nouns, verbs, adjectives and adverbs into $DLHIST_DATA/wordnet/)"
            .into(),
    }
}

/// Every single-word lemma of WordNet 3.0 with the classes it is listed under, from Debian's `wordnet-base`
/// (`/usr/share/wordnet/index.{noun,verb,adj,adv}`, verified by SHA-256). Lemmas of several words
/// (`ice_cream`) and any holding a character other than `a`-`z` are left out. "run" is a noun and a verb.
///
/// ```no_run
/// use dlhist::data::words::{parts_of_speech, PartOfSpeech};
/// let pos = parts_of_speech()?;
/// assert_eq!(pos["run"], vec![PartOfSpeech::Noun, PartOfSpeech::Verb]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn parts_of_speech() -> Result<std::collections::BTreeMap<String, Vec<PartOfSpeech>>> {
    parts_of_speech_in(&Roots::from_env())
}

fn parts_of_speech_in(roots: &Roots) -> Result<std::collections::BTreeMap<String, Vec<PartOfSpeech>>> {
    let mut out: std::collections::BTreeMap<String, Vec<PartOfSpeech>> = Default::default();
    for (pos, file, sha) in WORDNET_INDEXES {
        let found = locate_or_fetch(&wordnet_spec(file, sha), roots)?;
        let text = String::from_utf8_lossy(&found.bytes);
        for lemma in wordnet_lemmas(&text) {
            out.entry(lemma.to_string()).or_default().push(pos);
        }
    }
    Ok(out)
}

/// The single-word lemmas of one WordNet index file: each entry line starts with its lemma; the licence header's
/// lines start with spaces.
fn wordnet_lemmas(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split(' ').next())
        .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
}

// ---------------------------------------------------------------------------------------------------------------
// WordNet's synsets and their glosses

/// WordNet 3.0's data files in Debian 12's `wordnet-base` 1:3.0-37, with their SHA-256.
const WORDNET_DATA: [(PartOfSpeech, &str, &str); 4] = [
    (PartOfSpeech::Noun, "data.noun", "fea17d2f9656611334eac790e5d69e47645fa180c4aa481fb4cd9b3520754ca2"),
    (PartOfSpeech::Verb, "data.verb", "adcf43e35b581e8036d8b5a52d63d9cd3d3b4870b2720d3c03c799df44777bc2"),
    (PartOfSpeech::Adjective, "data.adj", "c89120dfc1f046ddff4a631bf9b7e9fa1a36b5e86565a23bf82dbe14f30b88a7"),
    (PartOfSpeech::Adverb, "data.adv", "444a63bf3955080ab7524f5079cfc07ff9bc682cb98bdb1db73b0fb9829f1139"),
];

/// WordNet's 45 lexicographer files, by number: each synset was written into one of them, so the name is a coarse
/// semantic class of the synset, its *supersense* (`noun.animal`, `verb.motion`, ...). The list is WordNet's
/// `lexnames(5WN)`.
pub const LEXNAMES: [&str; 45] = [
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
];

/// One WordNet synset: a set of synonymous lemmas, its supersense and its gloss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synset {
    /// The word class of the data file it comes from.
    pub pos: PartOfSpeech,
    /// Its lexicographer file, one of [`LEXNAMES`], e.g. `"noun.animal"`.
    pub lexname: &'static str,
    /// Its lemmas in WordNet's order, with spaces for WordNet's underscores and without the adjective position
    /// markers: `["tea", "afternoon tea", "teatime"]`.
    pub lemmas: Vec<String>,
    /// The gloss as WordNet prints it: the definition, then any example sentences in double quotes after `; `.
    pub gloss: String,
}

impl Synset {
    /// The definition alone: the gloss up to its first quoted example.
    ///
    /// ```
    /// use dlhist::data::words::{PartOfSpeech, Synset};
    /// let s = Synset { pos: PartOfSpeech::Noun, lexname: "noun.food", lemmas: vec!["dinner".into()],
    ///     gloss: "the main meal of the day served in the evening or at midday; \"dinner will be at 8\"".into() };
    /// assert_eq!(s.definition(), "the main meal of the day served in the evening or at midday");
    /// ```
    pub fn definition(&self) -> &str {
        let end = self.gloss.find('"').unwrap_or(self.gloss.len());
        self.gloss[..end].trim_end().trim_end_matches(';').trim_end()
    }
}

impl Synset {
    /// The synset as one line of prose: its first lemma, a colon, its gloss (`tea: a light midafternoon meal of
    /// tea and sandwiches or cakes; "an Englishman would ..."`), the pretraining text of the BERT notebook.
    pub fn text(&self) -> String {
        format!("{}: {}", self.lemmas[0], self.gloss)
    }
}

/// WordNet's synsets in two parts, drawn at random: the *held-out* ones, whose glosses no pretrained model reads
/// (the test set of any task built on them), and the rest, for pretraining and for labeled training examples.
#[derive(Debug, Clone)]
pub struct GlossSplit {
    /// The synsets a model may pretrain on, in a random order.
    pub pretrain: Vec<Synset>,
    /// The held-out synsets, in a random order.
    pub held_out: Vec<Synset>,
}

impl GlossSplit {
    /// Shuffles `synsets` with `rng` and holds out the first `held_out_share` of them (rounded down).
    ///
    /// ```
    /// use dlhist::data::words::{GlossSplit, PartOfSpeech, Synset};
    /// use dlhist::prelude::*;
    /// let s = |w: &str| Synset { pos: PartOfSpeech::Noun, lexname: "noun.food", lemmas: vec![w.into()], gloss: w.into() };
    /// let split = GlossSplit::new((0..10).map(|i| s(&i.to_string())).collect(), 0.2, &mut Rng::new(0));
    /// assert_eq!((split.pretrain.len(), split.held_out.len()), (8, 2));
    /// ```
    pub fn new(mut synsets: Vec<Synset>, held_out_share: f64, rng: &mut crate::rng::Rng) -> Self {
        rng.shuffle(&mut synsets);
        let n = ((synsets.len() as f64) * held_out_share.clamp(0.0, 1.0)) as usize;
        let pretrain = synsets.split_off(n);
        GlossSplit { pretrain, held_out: synsets }
    }
}

/// A supersense classification task: the definitions ([`Synset::definition`], without the lemmas) of `per_class`
/// synsets of each of `classes` (lexicographer names such as `"noun.animal"`) in `synsets`, the first ones of each
/// class after skipping `skip` of them (so that a training and a validation set drawn from the same synsets do not
/// overlap), labeled by the class's position in `classes`. Errors, naming the class, when one has fewer than
/// `skip + per_class` synsets.
///
/// ```
/// use dlhist::data::words::{supersense_task, PartOfSpeech, Synset};
/// let s = |lex, g: &str| Synset { pos: PartOfSpeech::Noun, lexname: lex, lemmas: vec!["x".into()], gloss: g.into() };
/// let all = [s("noun.food", "a meal"), s("noun.animal", "a beast"), s("noun.food", "a drink; \"tea\"")];
/// let task = supersense_task(&all, &["noun.animal", "noun.food"], 0, 1)?;
/// assert_eq!((task.lines, task.labels), (vec!["a beast".to_string(), "a meal".to_string()], vec![0, 1]));
/// assert_eq!(supersense_task(&all, &["noun.food"], 1, 1)?.lines, vec!["a drink".to_string()]);
/// assert!(supersense_task(&all, &["noun.animal"], 0, 2).is_err());
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn supersense_task(
    synsets: &[Synset],
    classes: &[&str],
    skip: usize,
    per_class: usize,
) -> Result<super::text::LabeledLines> {
    let mut out = super::text::LabeledLines { lines: vec![], labels: vec![] };
    for (c, &class) in classes.iter().enumerate() {
        let mine: Vec<&Synset> = synsets.iter().filter(|s| s.lexname == class).skip(skip).take(per_class).collect();
        if mine.len() < per_class {
            return Err(crate::Error::Invalid(format!(
                "supersense_task: {per_class} synsets of {class} wanted after the first {skip}, {} found (is it one \
                 of LEXNAMES?)",
                mine.len()
            )));
        }
        out.lines.extend(mine.iter().map(|s| s.definition().to_string()));
        out.labels.extend(std::iter::repeat_n(c as u32, per_class));
    }
    Ok(out)
}

/// Every synset of WordNet 3.0 with its supersense and gloss (117 659 of them: 82 115 nouns, 13 767 verbs, 18 156
/// adjectives, 3 621 adverbs), from Debian's `wordnet-base` (`/usr/share/wordnet/data.{noun,verb,adj,adv}`,
/// verified by SHA-256), in file order. The glosses are English prose written to a pattern (a genus, then what sets
/// the thing apart), and the supersenses are labels a person gave each synset, which makes WordNet a small labeled
/// corpus: the BERT notebook pretrains on glosses and fine-tunes on supersenses.
///
/// ```no_run
/// let synsets = dlhist::data::words::wordnet_synsets()?;
/// let dinner = synsets.iter().find(|s| s.lemmas[0] == "dinner").unwrap();
/// assert_eq!(dinner.lexname, "noun.food");
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn wordnet_synsets() -> Result<Vec<Synset>> {
    wordnet_synsets_in(&Roots::from_env())
}

fn wordnet_synsets_in(roots: &Roots) -> Result<Vec<Synset>> {
    let mut out = Vec::new();
    for (pos, file, sha) in WORDNET_DATA {
        let found = locate_or_fetch(&wordnet_spec(file, sha), roots)?;
        let text = String::from_utf8_lossy(&found.bytes);
        for (k, line) in text.lines().enumerate().filter(|(_, l)| !l.starts_with(' ')) {
            out.push(parse_synset(pos, line).ok_or_else(|| {
                crate::Error::Invalid(format!(
                    "{}:{}: not a WordNet 3.0 data line (offset, lexicographer file, type, words, pointers, \
                     | gloss); reinstall Debian's wordnet-base",
                    found.path.display(),
                    k + 1
                ))
            })?);
        }
    }
    Ok(out)
}

/// One line of a WordNet data file: `offset lex_filenum ss_type w_cnt (word lex_id)×w_cnt p_cnt ... | gloss`, with
/// `w_cnt` in hexadecimal (wndb(5WN)).
fn parse_synset(pos: PartOfSpeech, line: &str) -> Option<Synset> {
    let (fields, gloss) = line.split_once(" | ")?;
    let mut f = fields.split(' ');
    let _offset = f.next()?;
    let lexname = *LEXNAMES.get(f.next()?.parse::<usize>().ok()?)?;
    let _ss_type = f.next()?;
    let words = usize::from_str_radix(f.next()?, 16).ok()?;
    let mut lemmas = Vec::with_capacity(words);
    for _ in 0..words {
        let word = f.next()?;
        // Adjectives may carry a position marker: `galore(ip)`, `elect(p)`.
        let word = word.split_once('(').map_or(word, |(w, _)| w);
        lemmas.push(word.replace('_', " "));
        let _lex_id = f.next()?;
    }
    (!lemmas.is_empty()).then(|| Synset { pos, lexname, lemmas, gloss: gloss.trim().to_string() })
}

// ---------------------------------------------------------------------------------------------------------------
// Evaluation sets: word similarity and analogies

/// gensim's release whose test data dlhist pins.
const GENSIM_VERSION: &str = "4.4.0";

fn benchmark_spec(file: &str, sha256: &str) -> FileSpec {
    FileSpec {
        dataset: "word-benchmarks".into(),
        file: file.into(),
        sha256: sha256.into(),
        urls: vec![format!(
            "https://raw.githubusercontent.com/piskvorky/gensim/{GENSIM_VERSION}/gensim/test/test_data/{file}"
        )],
        system_dirs: vec![],
        system_repair: String::new(),
        other_source: format!(
            "or run `cargo xtask setup`, which installs it from gensim {GENSIM_VERSION}'s wheel on PyPI \
             (gensim/test/test_data/{file})"
        ),
    }
}

/// The evaluation files, with the SHA-256 of each in gensim 4.4.0.
pub(crate) fn benchmark_specs() -> Vec<FileSpec> {
    vec![
        benchmark_spec("wordsim353.tsv", "f92a022fc2537793a15bc3a8c162ebcd74990e033a228bb6388cb71e4c0b1e1d"),
        benchmark_spec("simlex999.txt", "d5e0501971478a511430ee880bd0121e94ac701ba86d90544d83e6d2ba3db05d"),
        benchmark_spec("questions-words.txt", "8c29b3332afc46f3fb8be04cb5297bf96f39aa7131272dff57869b4485b22a36"),
    ]
}

/// Whether WordSim353, SimLex-999 and the analogy questions are all installed and intact (in `$DLHIST_DATA` or
/// the user cache); `cargo xtask setup` installs them when not. Never downloads.
///
/// ```
/// // True after `cargo xtask setup`; either way, asking is cheap and never touches the network.
/// let _ = dlhist::data::words::benchmarks_installed();
/// ```
pub fn benchmarks_installed() -> bool {
    let roots = Roots { offline: true, progress: false, ..Roots::from_env() };
    benchmark_specs().iter().all(|spec| locate_or_fetch(spec, &roots).is_ok())
}

/// A word-similarity test set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimilaritySet {
    /// WordSim353 (Finkelstein et al. 2002): 353 pairs rated 0-10 by people for how related they are.
    WordSim353,
    /// SimLex-999 (Hill, Reichart & Korhonen 2015): 999 pairs rated 0-10 for similarity proper, where words that
    /// are related but not alike score low; harder for embeddings trained on co-occurrence.
    SimLex999,
}

impl SimilaritySet {
    fn file(self) -> &'static str {
        match self {
            SimilaritySet::WordSim353 => "wordsim353.tsv",
            SimilaritySet::SimLex999 => "simlex999.txt",
        }
    }
}

/// Two words and the mean human score of how alike they are.
#[derive(Debug, Clone, PartialEq)]
pub struct WordPair {
    /// The first word, lowercase.
    pub a: String,
    /// The second word, lowercase.
    pub b: String,
    /// The human score (0-10).
    pub score: f32,
}

/// The pairs of a word-similarity set with their human scores, in file order; words lowercased.
///
/// ```no_run
/// use dlhist::data::words::{word_similarity, SimilaritySet};
/// let pairs = word_similarity(SimilaritySet::WordSim353)?;
/// assert_eq!(pairs.len(), 353);
/// assert_eq!((pairs[0].a.as_str(), pairs[0].b.as_str()), ("love", "sex"));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn word_similarity(set: SimilaritySet) -> Result<Vec<WordPair>> {
    word_similarity_in(set, &Roots::from_env())
}

fn word_similarity_in(set: SimilaritySet, roots: &Roots) -> Result<Vec<WordPair>> {
    let spec = benchmark_specs().into_iter().find(|s| s.file == set.file()).expect("every set has a spec");
    let found = locate_or_fetch(&spec, roots)?;
    parse_pairs(&String::from_utf8_lossy(&found.bytes), &found.path)
}

/// `word<TAB>word<TAB>score` lines; `#` starts a comment line.
fn parse_pairs(text: &str, path: &Path) -> Result<Vec<WordPair>> {
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let score = match fields.as_slice() {
            [_, _, s] => s.trim().parse::<f32>().ok(),
            _ => None,
        };
        let Some(score) = score else {
            return Err(Error::Format {
                path: path.to_path_buf(),
                format: "word<TAB>word<TAB>score lines",
                reason: format!("line {}: {line:?}", n + 1),
            });
        };
        pairs.push(WordPair { a: fields[0].to_lowercase(), b: fields[1].to_lowercase(), score });
    }
    Ok(pairs)
}

/// One section of the analogy questions, e.g. `capital-common-countries` or `gram3-comparative`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalogySection {
    /// The section's name as in the file (the five semantic sections come first; the grammatical ones start
    /// with `gram`).
    pub name: String,
    /// Questions `[a, b, c, d]`, lowercase: `a` is to `b` as `c` is to `d` (`athens greece baghdad iraq`).
    pub questions: Vec<[String; 4]>,
}

impl AnalogySection {
    /// Whether the section is one of the syntactic (`gram…`) ones, rather than semantic.
    pub fn is_syntactic(&self) -> bool {
        self.name.starts_with("gram")
    }
}

/// The analogy questions of Mikolov et al. 2013a ("Efficient Estimation of Word Representations in Vector
/// Space"): 8 869 semantic and 10 675 syntactic questions in 14 sections, lowercased.
///
/// ```no_run
/// let sections = dlhist::data::words::analogy_questions()?;
/// assert_eq!(sections.len(), 14);
/// let total: usize = sections.iter().map(|s| s.questions.len()).sum();
/// assert_eq!(total, 19_544);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn analogy_questions() -> Result<Vec<AnalogySection>> {
    analogy_questions_in(&Roots::from_env())
}

fn analogy_questions_in(roots: &Roots) -> Result<Vec<AnalogySection>> {
    let spec = benchmark_specs().into_iter().find(|s| s.file == "questions-words.txt").expect("has a spec");
    let found = locate_or_fetch(&spec, roots)?;
    parse_analogies(&String::from_utf8_lossy(&found.bytes), &found.path)
}

/// `: section` lines, then `a b c d` lines.
fn parse_analogies(text: &str, path: &Path) -> Result<Vec<AnalogySection>> {
    let mut sections: Vec<AnalogySection> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix(':') {
            sections.push(AnalogySection { name: name.trim().to_string(), questions: vec![] });
            continue;
        }
        let words: Vec<String> = line.split_whitespace().map(str::to_lowercase).collect();
        let bad = |reason: &str| Error::Format {
            path: path.to_path_buf(),
            format: "analogy questions (`: section` lines, then four words a line)",
            reason: format!("line {}: {reason}: {line:?}", n + 1),
        };
        let question: [String; 4] = words.try_into().map_err(|_| bad("not four words"))?;
        sections
            .last_mut()
            .ok_or_else(|| bad("a question before the first `: section` line"))?
            .questions
            .push(question);
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::download::sha256_bytes;
    use crate::data::download::tests::{ok, Server};
    use std::io::Write;

    fn gzip(text: &str) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    /// A few lines in GCIDE's layout, preamble included.
    const GCIDE_FIXTURE: &str = "\n00-database-url\n   ftp://ftp.gnu.org/gnu/gcide\n\
        GCIDE is free software; you can redistribute it\n\
        Alleyway \\Al\"ley*way`\\n.\n   An alley.\n   [1913 Webster]\n\n\
        All hail \\All` hail\"\\ [All + hail, interj.]\n   All health; -- a phrase of salutation or welcome.\n\
        \x20  [1913 Webster]\n\n         Whiles I stood rapt, came missives     --Shak.\n\
        \x20  Syn: {alley}, lane\n        [WordNet 1.5 +PJC]\n\n10th \\10th\\ adj.\n   1. coming next\n";

    #[test]
    fn gcide_keeps_the_prose_and_drops_markup_preamble_and_digits() {
        let words = gcide_words(GCIDE_FIXTURE);
        let expected = "alleyway n an alley all hail all health a phrase of salutation or welcome whiles i stood rapt \
                        came missives alley lane th adj coming next";
        assert_eq!(words.join(" "), expected);
    }

    #[test]
    fn gcide_prose_is_one_clean_line_per_entry() {
        let text =
            "Abjure \\Ab*jure\"\\, v. t. [imp. & p. p. {Abjured}; p. pr. & vb.\n   n. {Abjuring}.] [L. abjurare.]\n\
                    \x20  1. To renounce upon oath; to forswear. See {Jury}.\n      [1913 Webster]\n\n\
                    \x20  2. To renounce with solemnity. \"Magic I here abjure.\" --Shak.\n      [1913 Webster]\n\n\
                    Abjurer \\Ab*jur\"er\\, n.\n   One who abjures.\n   [1913 Webster]\n";
        assert_eq!(
            gcide_entries(text),
            "Abjure, v. t. To renounce upon oath; to forswear. See Jury. To renounce with solemnity. \
             \"Magic I here abjure.\"\nAbjurer, n. One who abjures.\n"
        );
        // The word stream is what it was: brackets still end with their line there.
        assert_eq!(gcide_words("Abjurer \\Ab*jur\"er\\, n. [R.\n   x] One.\n")[..3], ["abjurer", "n", "x"]);
    }

    #[test]
    fn gcide_is_found_in_the_system_folder_verified_and_gunzipped() {
        let tmp = tempfile::tempdir().unwrap();
        let bytes = gzip(GCIDE_FIXTURE);
        std::fs::write(tmp.path().join("gcide.dict.dz"), &bytes).unwrap();
        let mut spec = gcide_spec();
        spec.system_dirs = vec![tmp.path().to_path_buf()];
        spec.sha256 = sha256_bytes(&bytes);
        let roots = Roots { data: None, cache: None, offline: true, progress: false };
        let found = locate_or_fetch(&spec, &roots).unwrap();
        let text = gunzip_text(&found.bytes, &found.path).unwrap();
        assert_eq!(gcide_words(&text)[0], "alleyway");
        // Garbage is a format error naming the file.
        let err = gunzip_text(b"not gzip", Path::new("x.dz")).unwrap_err().to_string();
        assert!(err.contains("x.dz") && err.contains("gzip"), "{err}");
    }

    #[test]
    fn wordnet_index_lines_give_single_word_lemmas_and_a_missing_file_names_the_package() {
        let text = "  1 This software and database is being provided\n  2 under the following license.\n\
                    dog n 7 5 @ ~ #m #p %p 7 1 02084071\nice_cream n 1 2 @ ~ 1 0 07614500\nzap v 2 2 @ + 2 0 01\n";
        assert_eq!(wordnet_lemmas(text).collect::<Vec<_>>(), vec!["dog", "zap"]);
        let tmp = tempfile::tempdir().unwrap();
        let roots = Roots::offline_in(tmp.path());
        let mut spec = wordnet_spec("index.noun", WORDNET_INDEXES[0].2);
        spec.system_dirs = vec![tmp.path().join("sys")];
        let msg = locate_or_fetch(&spec, &roots).unwrap_err().to_string();
        assert!(msg.contains("apt-get install wordnet-base") && msg.contains("index.noun"), "{msg}");
    }

    #[test]
    fn missing_gcide_says_which_package_to_install_and_where_it_looked() {
        let tmp = tempfile::tempdir().unwrap();
        let roots = Roots::offline_in(tmp.path());
        let mut spec = gcide_spec();
        spec.system_dirs = vec![tmp.path().join("sys")];
        let msg = locate_or_fetch(&spec, &roots).unwrap_err().to_string();
        assert!(msg.contains("apt-get install dict-gcide") && msg.contains("text8"), "{msg}");
        assert!(msg.contains(&tmp.path().join("sys").join("gcide.dict.dz").display().to_string()), "{msg}");
    }

    /// A zip archive holding `files` (name, bytes, deflated?), written the way zip tools do.
    fn zip(files: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, data, deflate) in files {
            let body = if *deflate {
                let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(data).unwrap();
                enc.finish().unwrap()
            } else {
                data.to_vec()
            };
            let method: u16 = if *deflate { 8 } else { 0 };
            let offset = out.len() as u32;
            // Local header; the CRC is left 0 (the reader checks SHA-256 instead).
            out.extend_from_slice(b"PK\x03\x04");
            out.extend_from_slice(&[20, 0, 0, 0]);
            out.extend_from_slice(&method.to_le_bytes());
            out.extend_from_slice(&[0; 8]);
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&body);
            central.extend_from_slice(b"PK\x01\x02");
            central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
            central.extend_from_slice(&method.to_le_bytes());
            central.extend_from_slice(&[0; 8]);
            central.extend_from_slice(&(body.len() as u32).to_le_bytes());
            central.extend_from_slice(&(data.len() as u32).to_le_bytes());
            central.extend_from_slice(&(name.len() as u16).to_le_bytes());
            central.extend_from_slice(&[0; 12]);
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let central_at = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(b"PK\x05\x06");
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(files.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&central_at.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    #[test]
    fn unzip_reads_stored_and_deflated_members_and_names_what_it_holds() {
        let text = b" anarchism originated as a term of abuse".repeat(50);
        let archive = zip(&[("readme", b"hello", false), ("text8", &text, true)]);
        let p = Path::new("t.zip");
        assert_eq!(unzip_member(&archive, "text8", p).unwrap(), text);
        assert_eq!(unzip_member(&archive, "readme", p).unwrap(), b"hello");
        let msg = unzip_member(&archive, "nope", p).unwrap_err().to_string();
        assert!(msg.contains("\"readme\"") && msg.contains("\"text8\""), "{msg}");
        let msg = unzip_member(&archive[..archive.len() - 30], "text8", p).unwrap_err().to_string();
        assert!(msg.contains("t.zip"), "{msg}");
    }

    #[test]
    fn text8_is_downloaded_from_a_loopback_server_verified_and_split() {
        let text = b" anarchism originated as a term of abuse first used against";
        let archive = zip(&[("text8", text, true)]);
        let server = Server::start(vec![ok(&archive, "application/zip")]);
        let tmp = tempfile::tempdir().unwrap();
        let roots = Roots { data: None, cache: Some(tmp.path().to_path_buf()), offline: false, progress: false };
        let mut spec = text8_spec();
        spec.urls = vec![format!("{}/dc/text8.zip", server.url)];
        spec.sha256 = sha256_bytes(&archive);
        let found = locate_or_fetch(&spec, &roots).unwrap();
        assert_eq!(found.path, tmp.path().join("text8/text8.zip"));
        assert_eq!(server.finish(), vec!["GET /dc/text8.zip HTTP/1.1".to_string()]);
        // The member must still match text8's own digest: a right zip with wrong content is refused.
        std::fs::write(tmp.path().join("text8/text8.zip"), &archive).unwrap();
        let err = text8_in(&Roots { offline: true, ..roots }).unwrap_err().to_string();
        assert!(err.contains("text8.zip"), "{err}");
        assert_eq!(tokenize(std::str::from_utf8(text).unwrap())[..3], ["anarchism", "originated", "as"]);
    }

    #[test]
    fn english_corpus_names_both_sources_when_neither_is_there() {
        let tmp = tempfile::tempdir().unwrap();
        let roots = Roots::offline_in(tmp.path());
        // GCIDE's system folder is real, so this only checks the case where Debian's package is absent.
        if Path::new(GCIDE_DIR).join("gcide.dict.dz").exists() {
            let corpus = english_corpus_in(&roots).unwrap();
            assert!(corpus.name.starts_with("GCIDE") && corpus.len() > 4_000_000);
            return;
        }
        let msg = english_corpus_in(&roots).unwrap_err().to_string();
        assert!(msg.contains("dict-gcide") && msg.contains("text8.zip"), "{msg}");
    }

    #[test]
    fn similarity_pairs_and_analogies_parse_and_bad_lines_are_named() {
        let p = Path::new("f.txt");
        let pairs = parse_pairs("# header\nTiger\tcat\t7.35\nold\tnew\t1.58\n", p).unwrap();
        assert_eq!(pairs[0], WordPair { a: "tiger".into(), b: "cat".into(), score: 7.35 });
        assert_eq!(pairs.len(), 2);
        let msg = parse_pairs("tiger cat 7.35\n", p).unwrap_err().to_string();
        assert!(msg.contains("line 1") && msg.contains("f.txt"), "{msg}");

        let text =
            ": capital-common-countries\nAthens Greece Baghdad Iraq\n: gram3-comparative\nbad worse big bigger\n";
        let sections = parse_analogies(text, p).unwrap();
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[0].questions[0], ["athens", "greece", "baghdad", "iraq"].map(String::from));
        assert!(!sections[0].is_syntactic() && sections[1].is_syntactic());
        let msg = parse_analogies("athens greece baghdad iraq\n", p).unwrap_err().to_string();
        assert!(msg.contains("before the first"), "{msg}");
        let msg = parse_analogies(": s\nathens greece\n", p).unwrap_err().to_string();
        assert!(msg.contains("not four words"), "{msg}");
    }

    #[test]
    fn evaluation_sets_download_from_a_loopback_server_and_are_verified() {
        let body = b"# WordSim\nlove\tsex\t6.77\n";
        let server = Server::start(vec![ok(body, "text/plain")]);
        let tmp = tempfile::tempdir().unwrap();
        let roots = Roots { data: None, cache: Some(tmp.path().to_path_buf()), offline: false, progress: false };
        let mut spec = benchmark_spec("wordsim353.tsv", &sha256_bytes(body));
        assert!(spec.urls[0].ends_with("/gensim/4.4.0/gensim/test/test_data/wordsim353.tsv"));
        spec.urls = vec![format!("{}/wordsim353.tsv", server.url)];
        let found = locate_or_fetch(&spec, &roots).unwrap();
        assert_eq!(parse_pairs(&String::from_utf8_lossy(&found.bytes), &found.path).unwrap()[0].score, 6.77);
        server.finish();
    }

    /// The real files, where setup installed them: counts as published.
    #[test]
    fn installed_evaluation_sets_have_their_published_sizes() {
        let roots = Roots { offline: true, ..Roots::from_env() };
        let Ok(ws) = word_similarity_in(SimilaritySet::WordSim353, &roots) else {
            eprintln!("word benchmarks not installed (cargo xtask setup); skipped");
            return;
        };
        assert_eq!(ws.len(), 353);
        assert_eq!(word_similarity_in(SimilaritySet::SimLex999, &roots).unwrap().len(), 999);
        let sections = analogy_questions_in(&roots).unwrap();
        let semantic: usize = sections.iter().filter(|s| !s.is_syntactic()).map(|s| s.questions.len()).sum();
        let syntactic: usize = sections.iter().filter(|s| s.is_syntactic()).map(|s| s.questions.len()).sum();
        assert_eq!((sections.len(), semantic, syntactic), (14, 8869, 10675));
    }

    /// The real dictionary, where Debian's package is installed: size and the commonest words.
    #[test]
    fn installed_gcide_is_millions_of_english_words() {
        let roots = Roots { offline: true, progress: false, ..Roots::from_env() };
        let Ok(corpus) = gcide_in(&roots) else {
            eprintln!("dict-gcide not installed; skipped");
            return;
        };
        let mut counts = std::collections::HashMap::<&str, usize>::new();
        for w in &corpus.words {
            *counts.entry(w.as_str()).or_default() += 1;
        }
        let mut top: Vec<_> = counts.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        eprintln!("GCIDE: {} words, {} distinct; top: {:?}", corpus.len(), counts.len(), &top[..12]);
        assert!((4_000_000..6_000_000).contains(&corpus.len()), "{}", corpus.len());
        // Ordinary English, not markup: "the" and "of" lead, and no pronunciation residue like "ca" is common.
        assert!(top[..3].iter().any(|(w, _)| **w == "the") && top[..5].iter().any(|(w, _)| **w == "of"));
        assert!(counts.get("webster").copied().unwrap_or(0) < 1000, "source tags leaked: {:?}", counts.get("webster"));
    }

    /// WordNet data lines as wndb(5WN) describes them, with a hexadecimal word count, adjective markers and a
    /// gloss with examples.
    #[test]
    fn wordnet_data_lines_parse_into_synsets() {
        let line = "07575510 13 n 03 tea 1 afternoon_tea 0 teatime 0 002 @ 07573696 n 0000 ;r 08860123 n 0000 | a \
                    light midafternoon meal of tea and sandwiches or cakes; \"an Englishman would interrupt a war\"  ";
        let s = parse_synset(PartOfSpeech::Noun, line).unwrap();
        assert_eq!(s.lexname, "noun.food");
        assert_eq!(s.lemmas, ["tea", "afternoon tea", "teatime"]);
        assert_eq!(s.definition(), "a light midafternoon meal of tea and sandwiches or cakes");
        assert!(s.gloss.ends_with("war\""));
        // 0x0b = 11 words would need 22 more fields: too few is a parse failure, not a short lemma list.
        assert!(parse_synset(PartOfSpeech::Noun, "00000001 05 n 0b cat 0 000 | a cat").is_none());
        let adj = parse_synset(PartOfSpeech::Adjective, "01 44 s 01 galore(ip) 0 000 | in abundance").unwrap();
        assert_eq!((adj.lexname, adj.lemmas[0].as_str(), adj.definition()), ("adj.ppl", "galore", "in abundance"));
        assert!(parse_synset(PartOfSpeech::Noun, "00000001 45 n 01 cat 0 000 | a cat").is_none(), "no file 45");
    }

    /// The real WordNet, where Debian's package is installed: the published synset counts, and supersenses that
    /// match what the glosses say.
    #[test]
    fn installed_wordnet_has_its_synsets_and_supersenses() {
        let roots = Roots { offline: true, progress: false, ..Roots::from_env() };
        let Ok(synsets) = wordnet_synsets_in(&roots) else {
            eprintln!("wordnet-base not installed; skipped");
            return;
        };
        let count = |pos| synsets.iter().filter(|s| s.pos == pos).count();
        let counts = [PartOfSpeech::Noun, PartOfSpeech::Verb, PartOfSpeech::Adjective, PartOfSpeech::Adverb].map(count);
        // WordNet 3.0's published statistics (wnstats(7WN)): 82 115 noun, 13 767 verb, 18 156 adjective and 3 621
        // adverb synsets.
        assert_eq!(counts, [82_115, 13_767, 18_156, 3_621]);
        let dinner = synsets.iter().find(|s| s.lemmas[0] == "dinner").unwrap();
        assert_eq!(dinner.lexname, "noun.food");
        let cat = synsets.iter().find(|s| s.lemmas.first().is_some_and(|l| l == "cat") && s.pos == PartOfSpeech::Noun);
        assert_eq!(cat.unwrap().lexname, "noun.animal");
        assert!(synsets.iter().all(|s| s.lexname.starts_with(match s.pos {
            PartOfSpeech::Noun => "noun.",
            PartOfSpeech::Verb => "verb.",
            PartOfSpeech::Adjective => "adj.",
            PartOfSpeech::Adverb => "adv.",
        })));
    }
}
