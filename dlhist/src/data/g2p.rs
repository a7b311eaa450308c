//! Grapheme-to-phoneme conversion: spelling in, pronunciation out, from the CMU pronouncing dictionary.
//!
//! The Carnegie Mellon University Pronouncing Dictionary (<http://www.speech.cs.cmu.edu/cgi-bin/cmudict>) gives
//! North American pronunciations of about 100 000 English words and names as sequences of phonemes. Festival's
//! Debian package `festlex-cmu` ships version 0.4 as a Lisp lexicon,
//! `/usr/share/festival/dicts/cmu/cmudict-0.4.out`, one entry a line:
//!
//! ```text
//! ("aaberg" nil (((aa) 1) ((b er g) 0)))
//! ```
//!
//! the word, its part of speech (`nil` for most; `n`, `v`, `j`, … where the pronunciation depends on it), and its
//! syllables, each a list of phonemes and a stress mark (0 none, 1 primary, 2 secondary). Predicting the
//! phonemes from the letters is a real sequence-to-sequence task: letters and sounds do not correspond one to one
//! (`"phone"` has five letters and three phonemes), the mapping is mostly monotone, and English spelling makes it
//! far from trivial.
//!
//! Choices made here (and why):
//! - **Targets without stress.** Stress is a property of syllables, not phonemes; dropping it keeps the task the
//!   classic one (39-ish phoneme symbols). Each phoneme's syllable stress is kept in [`CmuEntry::stress`].
//! - **One pronunciation per word.** 0.4 lists some words twice, homographs by part of speech (`record`, noun and
//!   verb) and a few capitalised names that fold into a lowercase word. A model reading only the spelling cannot
//!   tell these apart, so the first entry in the file is kept and the others are counted in
//!   [`G2p::duplicates_dropped`]; the reported error rates are therefore against one reference each.
//! - **Letters `a`-`z` only.** Words are lowercased; a word holding any other character would be skipped and
//!   counted (0.4 has none).
//! - **A fixed split by word.** A word goes to train, validation or test by a hash of its spelling (FNV-1a,
//!   80 / 10 / 10), so the split never depends on a seed, on the file's order or on which other words exist.

use std::path::PathBuf;

use super::locate::{locate_or_fetch, FileSpec, Roots};
use super::pairs::{SeqPairs, Vocab};
use crate::{Error, Result};

/// Debian's folder of Festival's CMU lexicon (package `festlex-cmu`).
const CMU_DIR: &str = "/usr/share/festival/dicts/cmu";
/// The lexicon's file name.
const CMU_FILE: &str = "cmudict-0.4.out";
/// The SHA-256 of `cmudict-0.4.out` in Debian 12's `festlex-cmu` 2.5.0-1 (105 902 lines).
const CMU_SHA256: &str = "3b211f3371e4b57ff14525f284623ff8e84add2656690e24c885d05b62426fb6";

fn cmu_spec() -> FileSpec {
    FileSpec {
        dataset: "cmudict".into(),
        file: CMU_FILE.into(),
        sha256: CMU_SHA256.into(),
        // Festival's packaging of the dictionary has no canonical download of its own: it is found, not fetched.
        urls: vec![],
        system_dirs: vec![PathBuf::from(CMU_DIR)],
        system_repair: "reinstall Debian's package: apt-get install --reinstall festlex-cmu".into(),
        other_source: "or install Debian's package: apt install festlex-cmu (or copy cmudict-0.4.out from it into \
                       $DLHIST_DATA/cmudict/)"
            .into(),
    }
}

/// One entry of the lexicon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmuEntry {
    /// The word, lowercased.
    pub word: String,
    /// Its part of speech as the lexicon gives it (`nil` for most words).
    pub pos: String,
    /// Its phonemes, stress dropped (`["aa", "b", "er", "g"]`).
    pub phonemes: Vec<String>,
    /// The stress of each phoneme's syllable (0 none, 1 primary, 2 secondary), one per phoneme.
    pub stress: Vec<u8>,
}

/// Parses Festival's lexicon text (a header line such as `MNCL`, then one entry a line). A malformed entry is
/// an error naming its line.
///
/// ```
/// let text = "MNCL\n(\"aaberg\" nil (((aa) 1) ((b er g) 0)))\n(\"Agha\" n (((aa) 1) ((g ax) 0)))\n";
/// let e = dlhist::data::g2p::parse_cmudict(text)?;
/// assert_eq!(e[0].phonemes, vec!["aa", "b", "er", "g"]);
/// assert_eq!(e[0].stress, vec![1, 0, 0, 0]);
/// assert_eq!((e[1].word.as_str(), e[1].pos.as_str()), ("agha", "n"));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn parse_cmudict(text: &str) -> Result<Vec<CmuEntry>> {
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || !line.starts_with('(') {
            continue; // the header (MNCL) and blank lines
        }
        out.push(parse_entry(line).map_err(|why| {
            Error::Invalid(format!(
                "CMU lexicon line {}: {why}: {line:?} (expected (\"word\" pos (((ph ...) stress) ...)))",
                n + 1
            ))
        })?);
    }
    Ok(out)
}

fn parse_entry(line: &str) -> std::result::Result<CmuEntry, String> {
    let rest = line.strip_prefix("(\"").ok_or("no quoted word")?;
    let close = rest.find('"').ok_or("unterminated word")?;
    let word = rest[..close].to_lowercase();
    let rest = rest[close + 1..].trim_start();
    let (pos, sylls) = rest.split_once(char::is_whitespace).ok_or("no part of speech")?;
    let sylls = sylls.trim();
    if !sylls.starts_with("(((") || !sylls.ends_with(")))") {
        return Err("syllables are not a list of ((phonemes) stress)".into());
    }
    // Syllables `((p h o) s)`: reading the bare tokens in order, phonemes accumulate until a stress digit
    // closes their syllable.
    let (mut phonemes, mut stress, mut open) = (vec![], vec![], 0usize);
    for tok in sylls.replace(['(', ')'], " ").split_whitespace() {
        match tok.parse::<u8>() {
            Ok(s) if s <= 2 && open > 0 => {
                stress.extend(std::iter::repeat_n(s, open));
                open = 0;
            }
            Ok(_) => return Err(format!("bad stress mark {tok}")),
            Err(_) if tok.chars().all(|c| c.is_ascii_lowercase()) => {
                phonemes.push(tok.to_string());
                open += 1;
            }
            Err(_) => return Err(format!("bad phoneme {tok:?}")),
        }
    }
    if phonemes.is_empty() || open > 0 {
        return Err("no phonemes, or a syllable without a stress mark".into());
    }
    Ok(CmuEntry { word, pos: pos.to_string(), phonemes, stress })
}

/// Which part of the fixed split a word belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// 80% of the words.
    Train,
    /// 10%.
    Valid,
    /// 10%.
    Test,
}

/// The split of `word`: FNV-1a of its UTF-8 bytes, modulo 10 (0-7 train, 8 validation, 9 test). Fixed: no seed,
/// no dependence on the other words.
///
/// ```
/// use dlhist::data::g2p::{split_of, Split};
/// assert_eq!(split_of("phone"), split_of("phone"));
/// let test = ["cat", "dog", "bird", "fish", "horse", "mouse", "sheep", "goat"].iter().filter(|w| split_of(w) == Split::Test);
/// assert!(test.count() < 8);
/// ```
pub fn split_of(word: &str) -> Split {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in word.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    match h % 10 {
        0..=7 => Split::Train,
        8 => Split::Valid,
        _ => Split::Test,
    }
}

/// One part of the G2P split: letter → phoneme pairs and the words they came from (row `i` of `pairs` is
/// `words[i]`).
#[derive(Debug, Clone)]
pub struct G2pSplit {
    /// Letters (source) to phonemes (target).
    pub pairs: SeqPairs,
    /// The spelled words, row by row.
    pub words: Vec<String>,
}

/// One part of the split while it is built: sources, targets, words.
type Part = (Vec<Vec<u32>>, Vec<Vec<u32>>, Vec<String>);

/// The CMU dictionary as a grapheme-to-phoneme task, split by word.
#[derive(Debug, Clone)]
pub struct G2p {
    /// About 80% of the words.
    pub train: G2pSplit,
    /// About 10%.
    pub valid: G2pSplit,
    /// About 10%.
    pub test: G2pSplit,
    /// Entries dropped because their word appeared earlier (homographs, folded capitals).
    pub duplicates_dropped: usize,
    /// Entries dropped because their word holds a character outside `a`-`z`.
    pub non_letter_dropped: usize,
}

impl G2p {
    /// Builds the task from parsed entries (see the module's notes for the choices). The source vocabulary is
    /// `a`-`z`; the target vocabulary is every phoneme in the entries, sorted, so it does not depend on the split.
    ///
    /// ```
    /// use dlhist::data::g2p::{parse_cmudict, G2p};
    /// let text = "(\"record\" n (((r eh) 1) ((k er d) 0)))\n(\"record\" v (((r ax) 0) ((k ao r d) 1)))\n(\"a\" dt (((ax) 0)))\n(\"x-ray\" n (((eh k s) 1) ((r ey) 1)))";
    /// let g = G2p::from_entries(&parse_cmudict(text)?)?;
    /// assert_eq!((g.duplicates_dropped, g.non_letter_dropped), (1, 1));
    /// assert_eq!(g.train.pairs.len() + g.valid.pairs.len() + g.test.pairs.len(), 2);
    /// assert_eq!(g.train.pairs.src_vocab.len(), 3 + 26);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn from_entries(entries: &[CmuEntry]) -> Result<G2p> {
        let mut seen = std::collections::HashSet::new();
        let (mut duplicates_dropped, mut non_letter_dropped) = (0, 0);
        let mut kept = vec![];
        for e in entries {
            if e.word.is_empty() || !e.word.chars().all(|c| c.is_ascii_lowercase()) {
                non_letter_dropped += 1;
            } else if !seen.insert(e.word.clone()) {
                duplicates_dropped += 1;
            } else {
                kept.push(e);
            }
        }
        let letters: Vec<String> = ('a'..='z').map(String::from).collect();
        let src_vocab = Vocab::new(&letters)?;
        let mut phones: Vec<&str> = kept.iter().flat_map(|e| e.phonemes.iter().map(String::as_str)).collect();
        phones.sort_unstable();
        phones.dedup();
        let tgt_vocab = Vocab::new(&phones)?;
        let mut parts: [Part; 3] = Default::default();
        for e in kept {
            let k = match split_of(&e.word) {
                Split::Train => 0,
                Split::Valid => 1,
                Split::Test => 2,
            };
            let letters: Vec<String> = e.word.chars().map(String::from).collect();
            parts[k].0.push(src_vocab.encode(&letters)?);
            parts[k].1.push(tgt_vocab.encode(&e.phonemes)?);
            parts[k].2.push(e.word.clone());
        }
        let [train, valid, test] = parts;
        let make = |(src, tgt, words): Part| -> Result<G2pSplit> {
            Ok(G2pSplit { pairs: SeqPairs::new(src, tgt, src_vocab.clone(), tgt_vocab.clone())?, words })
        };
        Ok(G2p { train: make(train)?, valid: make(valid)?, test: make(test)?, duplicates_dropped, non_letter_dropped })
    }
}

/// The entries of Festival's CMU dictionary 0.4 (105 901 entries, 235 of them repeating a word), from Debian's
/// `festlex-cmu` (`/usr/share/festival/dicts/cmu/cmudict-0.4.out`) or `$DLHIST_DATA/cmudict/cmudict-0.4.out`,
/// checked against its SHA-256. Missing, the error lists every folder searched and says to
/// `apt install festlex-cmu`.
///
/// ```no_run
/// let entries = dlhist::data::g2p::cmudict()?;
/// assert_eq!(entries.len(), 105_901);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn cmudict() -> Result<Vec<CmuEntry>> {
    cmudict_in(&Roots::from_env())
}

fn cmudict_in(roots: &Roots) -> Result<Vec<CmuEntry>> {
    let found = locate_or_fetch(&cmu_spec(), roots)?;
    let text = String::from_utf8(found.bytes).map_err(|e| Error::Format {
        path: found.path.clone(),
        format: "UTF-8 text",
        reason: format!("{e}; reinstall festlex-cmu"),
    })?;
    parse_cmudict(&text)
}

/// The grapheme-to-phoneme task on the CMU dictionary: [`cmudict`] through [`G2p::from_entries`].
///
/// ```no_run
/// let g = dlhist::data::g2p::g2p()?;
/// println!("{} / {} / {} words", g.train.pairs.len(), g.valid.pairs.len(), g.test.pairs.len());
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn g2p() -> Result<G2p> {
    G2p::from_entries(&cmudict()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "MNCL\n\
        (\"a\" dt (((ax) 0)))\n\
        (\"a\" n (((ey) 1)))\n\
        (\"aaberg\" nil (((aa) 1) ((b er g) 0)))\n\
        (\"Agha\" n (((aa) 1) ((g ax) 0)))\n\
        (\"abracadabra\" nil (((ae) 2) ((b r ax) 0) ((k ax) 0) ((d ae) 1) ((b r ax) 0)))\n\
        (\"zzzz\" nil (((z iy z) 1)))\n";

    #[test]
    fn parses_the_fixture_and_keeps_stress_per_phoneme() -> Result<()> {
        let e = parse_cmudict(FIXTURE)?;
        assert_eq!(e.len(), 6);
        assert_eq!(e[4].phonemes.join(" "), "ae b r ax k ax d ae b r ax");
        assert_eq!(e[4].stress, vec![2, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0]);
        assert_eq!((e[3].word.as_str(), e[1].pos.as_str()), ("agha", "n"));
        for bad in ["(\"x\" nil ((x) 1))", "(\"x\" nil (((x y))))", "(\"x nil (((x) 1)))"] {
            let msg = parse_cmudict(bad).unwrap_err().to_string();
            assert!(msg.contains("line 1"), "{bad}: {msg}");
        }
        Ok(())
    }

    #[test]
    fn the_split_is_by_word_fixed_and_near_80_10_10() -> Result<()> {
        let g = G2p::from_entries(&parse_cmudict(FIXTURE)?)?;
        assert_eq!((g.duplicates_dropped, g.non_letter_dropped), (1, 0));
        let all: Vec<&String> = g.train.words.iter().chain(&g.valid.words).chain(&g.test.words).collect();
        assert_eq!(all.len(), 5);
        // "a" keeps its first pronunciation.
        for part in [&g.train, &g.valid, &g.test] {
            if let Some(i) = part.words.iter().position(|w| w == "a") {
                assert_eq!(part.pairs.tgt_vocab.decode(&part.pairs.tgt[i])?, vec!["ax"]);
                assert_eq!(part.pairs.src_vocab.decode(&part.pairs.src[i])?, vec!["a"]);
            }
        }
        let mut counts = [0usize; 3];
        for i in 0..30_000 {
            counts[split_of(&format!("w{i}")) as usize] += 1;
        }
        assert!((23_400..24_600).contains(&counts[0]) && counts[1] > 2_700 && counts[2] > 2_700, "{counts:?}");
        Ok(())
    }

    #[test]
    fn a_missing_lexicon_names_every_folder_and_the_package() {
        let tmp = tempfile::tempdir().unwrap();
        let roots =
            Roots { data: Some(tmp.path().join("data")), cache: Some(tmp.path().join("cache")), ..Default::default() };
        let mut spec = cmu_spec();
        spec.system_dirs = vec![tmp.path().join("sys")];
        let msg = locate_or_fetch(&spec, &roots).unwrap_err().to_string();
        for part in [
            "data/cmudict/cmudict-0.4.out",
            "sys/cmudict-0.4.out",
            "cache/cmudict/cmudict-0.4.out",
            "apt install festlex-cmu",
        ] {
            assert!(msg.contains(part), "{part} missing from: {msg}");
        }
        // The real call's spec searches Debian's folder.
        assert!(cmu_spec().system_dirs.contains(&PathBuf::from(CMU_DIR)));
    }

    #[test]
    fn the_installed_lexicon_when_present() -> Result<()> {
        let path = std::path::Path::new(CMU_DIR).join(CMU_FILE);
        if !path.is_file() {
            println!("skipped: {} is not installed (apt install festlex-cmu)", path.display());
            return Ok(());
        }
        let g = G2p::from_entries(&cmudict_in(&Roots { data: None, cache: None, ..Default::default() })?)?;
        let n = g.train.pairs.len() + g.valid.pairs.len() + g.test.pairs.len();
        assert_eq!(n + g.duplicates_dropped + g.non_letter_dropped, 105_901);
        assert_eq!(g.non_letter_dropped, 0);
        println!(
            "{} / {} / {} words, {} phonemes, {} duplicates dropped",
            g.train.pairs.len(),
            g.valid.pairs.len(),
            g.test.pairs.len(),
            g.train.pairs.tgt_vocab.len() - 3,
            g.duplicates_dropped
        );
        Ok(())
    }
}
