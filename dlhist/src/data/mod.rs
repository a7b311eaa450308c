//! Datasets: loaders for the real ones, generators for the synthetic ones, and the verified
//! downloader behind them.
//!
//! Everything a model trains on is a [`Dataset`]: a feature tensor `x` and a target tensor `y`
//! with the same leading (sample) dimension.
//!
//! | function | what it gives |
//! | --- | --- |
//! | [`fashion_mnist()`], [`mnist()`] | 60 000 + 10 000 grayscale 28x28 images, 10 classes ([`ImageClassification`]) |
//! | [`tiny_shakespeare`] | 1.1 MB of Shakespeare as one `String`, with [`CharVocab`] for character models |
//! | [`two_moons`], [`spirals`], [`blobs`] | seeded 2-D classification toys |
//! | [`captions::CaptionedImages`], [`captions::WordTokenizer`] | Fashion-MNIST with captions made from class names and attributes measured from the pixels, and their word tokenizer (for CLIP and DALL-E) |
//! | [`Augmentation`] | random crops and horizontal flips of image batches |
//! | [`cells`] | generated cell images with segmentation masks and U-Net border weights |
//! | [`words::english_corpus`], [`words::gcide`], [`words::text8`] | English as a stream of lowercase words (the Webster 1913 dictionary from Debian's `dict-gcide`, or text8) |
//! | [`words::word_similarity`], [`words::analogy_questions`] | WordSim353, SimLex-999 and the analogy questions of Mikolov et al. 2013a ([`words`]) |
//! | [`gpt2_bpe::Gpt2Bpe`] | GPT-2's byte-level BPE tokenizer from OpenAI's own files, verified |
//! | [`wordpiece::WordPieceVocab`] | BERT's sub-word vocabulary, trained on any text with the `tokenizers` crate |
//! | [`words::parts_of_speech`] | WordNet 3.0's word classes (Debian's `wordnet-base`) |
//! | [`word_tasks::WordTasks`] | two labeled tasks on a corpus's frequent words, as text-to-text pairs: part of speech (WordNet) and syllable count (CMU) |
//! | [`g2p::g2p`] | the CMU pronouncing dictionary (Debian's `festlex-cmu`) as letters → phonemes, split by word |
//! | [`pairs::SeqPairs`], [`pairs::Vocab`], [`pairs::PairBatch`] | paired token sequences (source, target) and padded, length-bucketed batches for encoder-decoders |
//! | [`TranslationTask`] | a seeded synthetic translation task with known word alignments (a lexicon, adjective-noun swaps, one-to-two expansions) for attention models |
//! | [`delayed_xor`], [`a_then_b`], [`oscillator`], [`adding_problem`], [`temporal_order`], [`continual_reber`] | seeded sequence tasks of Williams & Zipser 1989, Hochreiter & Schmidhuber 1997 and Gers et al. 2000 ([`sequences`]) |
//!
//! ## Where the files come from
//! Each file is looked for in `$DLHIST_DATA/<dataset>/`, then in system folders (Debian's
//! `dataset-fashion-mnist` package installs `/usr/share/datasets/fashion-mnist/`), then in the
//! user cache (`~/.cache/dlhist/<dataset>/` on Linux); if it is nowhere, it is downloaded into
//! the cache. Every file, found or downloaded, is checked against its published SHA-256.
//! `DLHIST_OFFLINE=1` turns downloading off (a missing file is then an error listing every
//! folder searched).

mod augment;
pub mod captions;
pub mod download;
pub mod g2p;
pub mod gpt2_bpe;
mod locate;
pub mod mnist;
pub mod pairs;
mod segmentation;
pub mod sequences;
pub mod synthetic;
pub mod text;
mod translation;
pub mod word_tasks;
pub mod wordpiece;
pub mod words;

pub use augment::Augmentation;
pub use mnist::{fashion_mnist, mnist, ImageClassification};
pub use segmentation::{cells, Cells, CellsConfig};
pub use sequences::{
    a_then_b, adding_problem, adding_problem_constant_mse, continual_reber, delayed_xor, embedded_reber_string,
    is_embedded_reber, is_reber, oscillator, parallel_reber_streams, reber_char, reber_id, reber_ids, reber_text,
    tbptt_chunks, temporal_order, ReberBatch, ReberStream, Stream, REBER_SYMBOLS, TEMPORAL_ORDER_CLASSES,
    TEMPORAL_ORDER_STEPS, TEMPORAL_ORDER_SYMBOLS,
};
pub use synthetic::{blobs, spirals, two_moons};
pub use text::{random_windows, tiny_shakespeare, CharVocab};
pub use translation::{TranslationTask, Translations, WordClass};

use candle_core::{Device, Tensor};

/// Installs the datasets dlhist would download (Tiny Shakespeare, text8, the word-similarity and analogy sets) from a local mirror folder laid out like
/// `$DLHIST_DATA` (`<dir>/<dataset>/<file>`) into the user cache, so that machines without the web find them:
/// each file is checked against its SHA-256 and written atomically; files the mirror lacks are skipped. Returns
/// the cache paths written (none when everything was already there). `cargo xtask setup` calls it with
/// `$DLHIST_MIRROR`, or `../shared/data` next to the project when that folder exists.
///
/// ```
/// let empty = std::env::temp_dir().join("dlhist-doc-empty-mirror");
/// std::fs::create_dir_all(&empty)?;
/// assert!(dlhist::data::install_mirror(&empty)?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn install_mirror(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut specs = vec![text::tiny_shakespeare_spec(), words::text8_spec()];
    specs.extend(words::benchmark_specs());
    specs.extend(gpt2_bpe::specs());
    locate::install_mirror_into(&specs, dir, &locate::Roots::from_env())
}

use crate::rng::Rng;
use crate::{Error, Result};

/// The environment variable naming a folder that holds datasets as `<dataset>/<file>`
/// (`fashion-mnist/`, `mnist/`, `tinyshakespeare/`), searched before anything else.
pub const DATA_ENV: &str = "DLHIST_DATA";

/// The environment variable that forbids downloads when set to `1` (or `true`/`yes`/`on`).
pub const OFFLINE_ENV: &str = "DLHIST_OFFLINE";

/// Samples and their targets: `x` is `[N, ...]` f32 features, `y` is `[N]` u32 class labels
/// or `[N, ...]` f32 regression targets. Row `i` of `x` goes with row `i` of `y`.
///
/// ```
/// use dlhist::data::Dataset;
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let x = Tensor::arange(0f32, 12., &dev)?.reshape((6, 2))?;
/// let y = Tensor::new(&[0u32, 1, 0, 1, 0, 1], &dev)?;
/// let data = Dataset::new(x, y)?;
/// let (train, valid) = data.split(0.5, &mut Rng::new(0))?;
/// assert_eq!((train.len(), valid.len()), (3, 3));
/// assert_eq!(data.take(2)?.y.to_vec1::<u32>()?, vec![0, 1]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Features, `[N, ...]`.
    pub x: Tensor,
    /// Targets, `[N]` (class indices) or `[N, ...]`.
    pub y: Tensor,
}

impl Dataset {
    /// Pairs `x` and `y`; errors, naming both shapes, unless both have at least one dimension
    /// and the same size along the first.
    pub fn new(x: Tensor, y: Tensor) -> Result<Self> {
        match (x.dims().first(), y.dims().first()) {
            (Some(nx), Some(ny)) if nx == ny => Ok(Dataset { x, y }),
            _ => Err(Error::Invalid(format!(
                "a dataset needs x and y with the same number of samples (first dimension), got x {:?} and y {:?}",
                x.dims(),
                y.dims()
            ))),
        }
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.x.dims().first().copied().unwrap_or(0)
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the dataset on `dev` (a no-op copy of handles when it is already there).
    pub fn to_device(&self, dev: &Device) -> Result<Self> {
        Ok(Dataset { x: self.x.to_device(dev)?, y: self.y.to_device(dev)? })
    }

    /// The samples at `indices`, in that order (repeats allowed).
    pub fn subset(&self, indices: &[u32]) -> Result<Self> {
        let n = self.len();
        if let Some(bad) = indices.iter().find(|&&i| i as usize >= n) {
            return Err(Error::Invalid(format!(
                "subset index {bad} is out of range for a dataset of {n} samples (valid: 0..{n})"
            )));
        }
        if indices.is_empty() {
            // An empty view: candle's CUDA backend cannot copy an empty slice to the GPU ("invalid argument").
            return self.take(0);
        }
        let idx = Tensor::from_slice(indices, indices.len(), self.x.device())?;
        let y_idx =
            if self.y.device().same_device(self.x.device()) { idx.clone() } else { idx.to_device(self.y.device())? };
        Ok(Dataset { x: self.x.index_select(&idx, 0)?, y: self.y.index_select(&y_idx, 0)? })
    }

    /// The first `n` samples (all of them if there are fewer): a quick way to shrink a run.
    pub fn take(&self, n: usize) -> Result<Self> {
        let n = n.min(self.len());
        Ok(Dataset { x: self.x.narrow(0, 0, n)?, y: self.y.narrow(0, 0, n)? })
    }

    /// Shuffles the samples with `rng`, then cuts them in two: the first part holds
    /// `round(frac * len)` samples, the second the rest. `frac` must lie in `[0, 1]`.
    pub fn split(&self, frac: f64, rng: &mut Rng) -> Result<(Dataset, Dataset)> {
        if !(0.0..=1.0).contains(&frac) {
            return Err(Error::Invalid(format!(
                "split fraction must lie in [0, 1] (it is the share of samples in the first part), got {frac}"
            )));
        }
        let order = rng.permutation(self.len());
        let k = ((frac * self.len() as f64).round() as usize).min(self.len());
        Ok((self.subset(&order[..k])?, self.subset(&order[k..])?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        let x = Tensor::arange(0f32, (3 * n) as f32, &crate::device::test_device()).unwrap().reshape((n, 3)).unwrap();
        let y = Tensor::arange(0u32, n as u32, &crate::device::test_device()).unwrap();
        Dataset::new(x, y).unwrap()
    }

    #[test]
    fn new_rejects_mismatched_lengths_naming_both_shapes() {
        let x = Tensor::zeros((4, 2), candle_core::DType::F32, &crate::device::test_device()).unwrap();
        let y = Tensor::zeros(5, candle_core::DType::U32, &crate::device::test_device()).unwrap();
        let msg = Dataset::new(x.clone(), y).unwrap_err().to_string();
        assert!(msg.contains("[4, 2]") && msg.contains("[5]"), "{msg}");
        let scalar = Tensor::new(1u32, &crate::device::test_device()).unwrap();
        assert!(Dataset::new(x, scalar).is_err());
    }

    #[test]
    fn subset_take_and_len() {
        let d = toy(5);
        assert_eq!(d.len(), 5);
        assert!(!d.is_empty());
        let s = d.subset(&[4, 0, 4]).unwrap();
        assert_eq!(s.y.to_vec1::<u32>().unwrap(), vec![4, 0, 4]);
        assert_eq!(s.x.to_vec2::<f32>().unwrap()[0], vec![12.0, 13.0, 14.0]);
        let msg = d.subset(&[5]).unwrap_err().to_string();
        assert!(msg.contains("out of range"), "{msg}");
        assert_eq!(d.take(2).unwrap().y.to_vec1::<u32>().unwrap(), vec![0, 1]);
        assert_eq!(d.take(99).unwrap().len(), 5);
        let empty = d.subset(&[]).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.x.dims(), &[0, 3]);
    }

    #[test]
    fn split_is_a_seeded_partition() {
        let d = toy(10);
        let (a, b) = d.split(0.7, &mut Rng::new(3)).unwrap();
        assert_eq!((a.len(), b.len()), (7, 3));
        let mut all: Vec<u32> = a.y.to_vec1::<u32>().unwrap();
        all.extend(b.y.to_vec1::<u32>().unwrap());
        assert_ne!(all, (0..10).collect::<Vec<u32>>(), "split must shuffle");
        // x rows still match their labels after the shuffle.
        let ax = a.x.to_vec2::<f32>().unwrap();
        for (row, label) in ax.iter().zip(a.y.to_vec1::<u32>().unwrap()) {
            assert_eq!(row[0], (3 * label) as f32);
        }
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<u32>>());
        let (a2, _) = d.split(0.7, &mut Rng::new(3)).unwrap();
        assert_eq!(a.y.to_vec1::<u32>().unwrap(), a2.y.to_vec1::<u32>().unwrap());
        assert!(d.split(1.5, &mut Rng::new(0)).is_err());
        let (all_in_first, none) = d.split(1.0, &mut Rng::new(0)).unwrap();
        assert_eq!((all_in_first.len(), none.len()), (10, 0));
    }
}
