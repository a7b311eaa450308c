//! Paired token sequences (a source and a target per example) and padded mini-batches of them: the data of every
//! encoder-decoder (sequence-to-sequence) model, from grapheme-to-phoneme conversion to translation.
//!
//! Ids 0, 1 and 2 of every [`Vocab`] are reserved: [`PAD`] fills a batch's short rows up to its longest row,
//! [`BOS`] starts the decoder's input and [`EOS`] ends its target. A target `y_1 … y_n` is fed to the decoder
//! as `<s> y_1 … y_n` (teacher forcing: the true previous token at every step) and scored against
//! `y_1 … y_n </s>`, so the model learns both the tokens and where to stop.
//!
//! Two ways to batch: [`SeqPairs::batch`] builds a [`PairBatch`] of chosen rows; [`SeqPairs::packed`] lays rows
//! out as one [`Dataset`] (`x = [N, 2, L]`: source and decoder input; `y = [N, L]`: decoder target) that
//! [`crate::train::fit`] can shuffle and batch like any other, and that a model unpacks with
//! [`unpack_inputs`]. [`SeqPairs::bucketed_batches`] orders rows so each batch holds sequences of similar
//! length (less padding, so fewer wasted steps), and [`SeqPairs::training_stream`] packs that order for `fit`.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::Dataset;
use crate::rng::Rng;
use crate::{Error, Result};

/// The padding id: fills a batch's shorter rows; never a real token.
pub const PAD: u32 = 0;
/// The begin-of-sequence id: the decoder's first input.
pub const BOS: u32 = 1;
/// The end-of-sequence id: the decoder's last target, after which decoding stops.
pub const EOS: u32 = 2;
/// The names of the reserved ids 0, 1, 2.
pub const RESERVED: [&str; 3] = ["<pad>", "<s>", "</s>"];

/// A token vocabulary: ids 0, 1, 2 are `<pad>`, `<s>`, `</s>`, then the given tokens in order.
///
/// ```
/// use dlhist::data::pairs::{Vocab, EOS};
/// let v = Vocab::new(["a", "b", "c"])?;
/// assert_eq!(v.len(), 6);
/// assert_eq!(v.encode(&["c", "a"])?, vec![5, 3]);
/// assert_eq!(v.decode(&[3, 4, EOS])?, vec!["a", "b", "</s>"]);
/// assert!(v.encode(&["z"]).unwrap_err().to_string().contains("\"z\""));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// A vocabulary of the reserved ids followed by `tokens` (ids 3, 4, …); errors on a repeated token or one
    /// that spells a reserved name.
    pub fn new<S: AsRef<str>>(tokens: impl IntoIterator<Item = S>) -> Result<Self> {
        let mut all: Vec<String> = RESERVED.iter().map(|s| s.to_string()).collect();
        let mut ids: HashMap<String, u32> = all.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
        for t in tokens {
            let t = t.as_ref().to_string();
            if ids.contains_key(&t) {
                return Err(Error::Invalid(format!(
                    "Vocab::new: token {t:?} is given twice or is a reserved name ({RESERVED:?}); pass each token once"
                )));
            }
            ids.insert(t.clone(), all.len() as u32);
            all.push(t);
        }
        Ok(Vocab { tokens: all, ids })
    }

    /// The id of `token`, if it is in the vocabulary.
    pub fn id(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// The token of `id`, if there is one.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The number of ids, the three reserved ones included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary holds only the reserved ids.
    pub fn is_empty(&self) -> bool {
        self.tokens.len() == RESERVED.len()
    }

    /// Every token by id, the reserved names first.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The ids of `tokens`; an unknown token is an error naming it.
    pub fn encode<S: AsRef<str>>(&self, tokens: &[S]) -> Result<Vec<u32>> {
        tokens
            .iter()
            .map(|t| {
                self.id(t.as_ref()).ok_or_else(|| {
                    Error::Invalid(format!(
                        "token {:?} is not in this vocabulary of {} tokens (build the vocabulary from data that holds it)",
                        t.as_ref(),
                        self.len()
                    ))
                })
            })
            .collect()
    }

    /// The tokens of `ids`; an id past the end is an error naming it.
    pub fn decode(&self, ids: &[u32]) -> Result<Vec<String>> {
        ids.iter()
            .map(|&i| {
                self.token(i).map(str::to_string).ok_or_else(|| {
                    Error::Invalid(format!("id {i} is out of range for this vocabulary (ids 0..{})", self.len()))
                })
            })
            .collect()
    }

    /// The tokens of `ids` joined by `sep`, stopping at the first [`EOS`] and skipping [`PAD`] and [`BOS`]:
    /// how a decoded sequence is printed.
    pub fn render(&self, ids: &[u32], sep: &str) -> String {
        let mut out = vec![];
        for &i in ids {
            match i {
                EOS => break,
                PAD | BOS => {}
                _ => out.push(self.token(i).unwrap_or("<?>")),
            }
        }
        out.join(sep)
    }
}

/// Source and target sequences of token ids, row `i` of one going with row `i` of the other. Neither holds the
/// reserved ids: [`SeqPairs::batch`] adds [`BOS`], [`EOS`] and [`PAD`].
#[derive(Debug, Clone)]
pub struct SeqPairs {
    /// Source sequences (e.g. a word's letters).
    pub src: Vec<Vec<u32>>,
    /// Target sequences (e.g. its phonemes).
    pub tgt: Vec<Vec<u32>>,
    /// The source vocabulary.
    pub src_vocab: Vocab,
    /// The target vocabulary.
    pub tgt_vocab: Vocab,
}

/// A padded mini-batch of [`SeqPairs`]: `B` rows, sources of at most `S` tokens, targets of at most `T − 1`.
#[derive(Debug, Clone)]
pub struct PairBatch {
    /// Source ids `[B, S]` (u32), padded with [`PAD`] after each row's end.
    pub src: Tensor,
    /// `[B, S]` f32: 1 at real source tokens, 0 at padding.
    pub src_mask: Tensor,
    /// The decoder's input `[B, T]` (u32): `<s> y_1 … y_n`, padded.
    pub tgt_in: Tensor,
    /// The decoder's target `[B, T]` (u32): `y_1 … y_n </s>`, padded.
    pub tgt_out: Tensor,
    /// `[B, T]` f32: 1 where `tgt_out` is a real token (the `</s>` included), 0 at padding.
    pub tgt_mask: Tensor,
    /// Each row's source length (its count of 1s in `src_mask`).
    pub src_lens: Vec<usize>,
    /// Each row's target length `n + 1` (its count of 1s in `tgt_mask`).
    pub tgt_lens: Vec<usize>,
}

/// Rows padded to one width: `[rows.len(), width]` u32 and the matching 0/1 f32 mask.
fn pad_rows(rows: &[Vec<u32>], width: usize, dev: &Device) -> Result<(Tensor, Tensor)> {
    let mut ids = vec![PAD; rows.len() * width];
    let mut mask = vec![0f32; rows.len() * width];
    for (r, row) in rows.iter().enumerate() {
        ids[r * width..r * width + row.len()].copy_from_slice(row);
        mask[r * width..r * width + row.len()].fill(1.0);
    }
    Ok((Tensor::from_vec(ids, (rows.len(), width), dev)?, Tensor::from_vec(mask, (rows.len(), width), dev)?))
}

impl PairBatch {
    /// The batch of the given rows: sources padded to the longest, targets framed by `<s>` / `</s>` and padded.
    /// Errors on an empty selection, an empty source or a reserved id inside a sequence.
    pub fn new(src: &[Vec<u32>], tgt: &[Vec<u32>], dev: &Device) -> Result<Self> {
        if src.is_empty() || src.len() != tgt.len() {
            return Err(Error::Invalid(format!(
                "PairBatch::new needs as many sources as targets, at least one; got {} and {}",
                src.len(),
                tgt.len()
            )));
        }
        for (i, s) in src.iter().enumerate() {
            if s.is_empty() {
                return Err(Error::Invalid(format!("source {i} is empty; every source needs at least one token")));
            }
        }
        for (i, seq) in src.iter().chain(tgt).enumerate() {
            if let Some(bad) = seq.iter().find(|&&t| t <= EOS) {
                return Err(Error::Invalid(format!(
                    "sequence {i} holds the reserved id {bad} (0 <pad>, 1 <s>, 2 </s>); pass plain token ids, the batch adds them"
                )));
            }
        }
        let s_width = src.iter().map(Vec::len).max().unwrap_or(0);
        let t_width = tgt.iter().map(Vec::len).max().unwrap_or(0) + 1;
        let (src_t, src_mask) = pad_rows(src, s_width, dev)?;
        let tgt_in: Vec<Vec<u32>> =
            tgt.iter().map(|y| std::iter::once(BOS).chain(y.iter().copied()).collect()).collect();
        let tgt_out: Vec<Vec<u32>> =
            tgt.iter().map(|y| y.iter().copied().chain(std::iter::once(EOS)).collect()).collect();
        let (tgt_in, _) = pad_rows(&tgt_in, t_width, dev)?;
        let (tgt_out, tgt_mask) = pad_rows(&tgt_out, t_width, dev)?;
        Ok(PairBatch {
            src: src_t,
            src_mask,
            tgt_in,
            tgt_out,
            tgt_mask,
            src_lens: src.iter().map(Vec::len).collect(),
            tgt_lens: tgt.iter().map(|y| y.len() + 1).collect(),
        })
    }

    /// The batch size `B`.
    pub fn len(&self) -> usize {
        self.src_lens.len()
    }

    /// Whether the batch has no rows (never true for a batch built by [`PairBatch::new`]).
    pub fn is_empty(&self) -> bool {
        self.src_lens.is_empty()
    }
}

/// Each row's count of non-[`PAD`] ids in `[B, L]` u32 ids; errors unless every row is a prefix of real ids
/// followed only by padding.
pub(crate) fn row_lengths(ids: &[Vec<u32>], what: &str) -> Result<Vec<usize>> {
    ids.iter()
        .enumerate()
        .map(|(r, row)| {
            let n = row.iter().take_while(|&&t| t != PAD).count();
            if row[n..].iter().any(|&t| t != PAD) {
                return Err(Error::Invalid(format!("{what} row {r} has a real token after padding: {row:?}")));
            }
            Ok(n)
        })
        .collect()
}

/// The model's inputs from a packed `x` (`[B, 2, L]` u32, see [`SeqPairs::packed`]), each cut to the batch's
/// longest row: the source `[B, S]`, its 0/1 mask `[B, S]` (f32), each row's source length, and the decoder
/// input `[B, T]`.
///
/// ```
/// use dlhist::data::pairs::{unpack_inputs, SeqPairs, Vocab};
/// use dlhist::prelude::*;
/// let v = Vocab::new(["a", "b"])?;
/// let pairs = SeqPairs::new(vec![vec![3, 4, 4], vec![3]], vec![vec![4], vec![3, 3]], v.clone(), v)?;
/// let packed = pairs.packed(&[1], &Device::Cpu)?; // one short row: the rest is padding
/// let (src, mask, lens, tgt_in) = unpack_inputs(&packed.x)?;
/// assert_eq!((src.dims(), mask.dims(), lens, tgt_in.dims()), (&[1, 1][..], &[1, 1][..], vec![1], &[1, 3][..]));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn unpack_inputs(x: &Tensor) -> Result<(Tensor, Tensor, Vec<usize>, Tensor)> {
    let (b, two, _) = x.dims3().map_err(|_| packed_shape_error(x))?;
    if two != 2 || x.dtype() != candle_core::DType::U32 || b == 0 {
        return Err(packed_shape_error(x));
    }
    let src = x.narrow(1, 0, 1)?.squeeze(1)?;
    let tgt = x.narrow(1, 1, 1)?.squeeze(1)?;
    let src_lens = row_lengths(&src.to_vec2::<u32>()?, "packed source")?;
    let tgt_lens = row_lengths(&tgt.to_vec2::<u32>()?, "packed decoder input")?;
    let s = src_lens.iter().copied().max().unwrap_or(0).max(1);
    let t = tgt_lens.iter().copied().max().unwrap_or(0).max(1);
    let src = src.narrow(1, 0, s)?.contiguous()?;
    let mask = src.ne(PAD)?.to_dtype(candle_core::DType::F32)?;
    Ok((src, mask, src_lens, tgt.narrow(1, 0, t)?.contiguous()?))
}

fn packed_shape_error(x: &Tensor) -> Error {
    Error::Invalid(format!(
        "a packed sequence-pair batch is u32 [B, 2, L] (source; decoder input), B >= 1, as SeqPairs::packed builds it; got {:?} {:?}",
        x.dtype(),
        x.dims()
    ))
}

impl SeqPairs {
    /// Pairs sources and targets; errors on different counts, an empty source, a reserved id inside a sequence
    /// or an id outside its vocabulary.
    pub fn new(src: Vec<Vec<u32>>, tgt: Vec<Vec<u32>>, src_vocab: Vocab, tgt_vocab: Vocab) -> Result<Self> {
        if src.len() != tgt.len() {
            return Err(Error::Invalid(format!(
                "SeqPairs::new: {} sources but {} targets; pass one target per source",
                src.len(),
                tgt.len()
            )));
        }
        for (side, seqs, vocab) in [("source", &src, &src_vocab), ("target", &tgt, &tgt_vocab)] {
            for (i, s) in seqs.iter().enumerate() {
                if side == "source" && s.is_empty() {
                    return Err(Error::Invalid(format!("source {i} is empty; every source needs at least one token")));
                }
                if let Some(bad) = s.iter().find(|&&t| t <= EOS || t as usize >= vocab.len()) {
                    return Err(Error::Invalid(format!(
                        "{side} {i} holds id {bad}: outside the vocabulary's real tokens 3..{} (ids 0-2 are reserved)",
                        vocab.len()
                    )));
                }
            }
        }
        Ok(SeqPairs { src, tgt, src_vocab, tgt_vocab })
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.src.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.src.is_empty()
    }

    fn check_rows(&self, rows: &[usize]) -> Result<()> {
        if let Some(bad) = rows.iter().find(|&&r| r >= self.len()) {
            return Err(Error::Invalid(format!("row {bad} is out of range for {} sequence pairs", self.len())));
        }
        Ok(())
    }

    /// The padded batch of `rows` (in that order) on `dev`.
    ///
    /// ```
    /// use dlhist::data::pairs::{SeqPairs, Vocab};
    /// use dlhist::prelude::*;
    /// let v = Vocab::new(["a", "b"])?;
    /// let pairs = SeqPairs::new(vec![vec![3, 4, 4], vec![3]], vec![vec![4], vec![3, 3]], v.clone(), v)?;
    /// let b = pairs.batch(&[0, 1], &Device::Cpu)?;
    /// assert_eq!(b.src.to_vec2::<u32>()?, vec![vec![3, 4, 4], vec![3, 0, 0]]);
    /// assert_eq!(b.tgt_in.to_vec2::<u32>()?, vec![vec![1, 4, 0], vec![1, 3, 3]]);
    /// assert_eq!(b.tgt_out.to_vec2::<u32>()?, vec![vec![4, 2, 0], vec![3, 3, 2]]);
    /// assert_eq!(b.tgt_mask.to_vec2::<f32>()?, vec![vec![1., 1., 0.], vec![1., 1., 1.]]);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn batch(&self, rows: &[usize], dev: &Device) -> Result<PairBatch> {
        self.check_rows(rows)?;
        let src: Vec<Vec<u32>> = rows.iter().map(|&r| self.src[r].clone()).collect();
        let tgt: Vec<Vec<u32>> = rows.iter().map(|&r| self.tgt[r].clone()).collect();
        PairBatch::new(&src, &tgt, dev)
    }

    /// The pairs at `rows`, in that order (repeats allowed), with the same vocabularies.
    ///
    /// # Panics
    /// If a row is out of range.
    pub fn subset(&self, rows: &[usize]) -> SeqPairs {
        SeqPairs {
            src: rows.iter().map(|&r| self.src[r].clone()).collect(),
            tgt: rows.iter().map(|&r| self.tgt[r].clone()).collect(),
            src_vocab: self.src_vocab.clone(),
            tgt_vocab: self.tgt_vocab.clone(),
        }
    }

    /// The first `n` pairs (all if fewer): a quick way to shrink a run.
    pub fn take(&self, n: usize) -> SeqPairs {
        self.subset(&(0..n.min(self.len())).collect::<Vec<_>>())
    }

    /// The longest source.
    pub fn max_src_len(&self) -> usize {
        self.src.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// The longest target (without `</s>`).
    pub fn max_tgt_len(&self) -> usize {
        self.tgt.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// The rows cut into batches of `batch_size` whose sequences have similar lengths, in a seeded random order
    /// (epoch `epoch` of the stream seeded by `seed`): the rows are shuffled, cut into pools of 50 batches,
    /// each pool sorted by (source, target) length and cut into batches, and the batches shuffled. Padding then
    /// costs little while every batch still mixes examples from the whole set.
    ///
    /// ```
    /// use dlhist::data::pairs::{SeqPairs, Vocab};
    /// let v = Vocab::new(["a"])?;
    /// let src: Vec<Vec<u32>> = (1..=40).map(|n| vec![3; n % 7 + 1]).collect();
    /// let pairs = SeqPairs::new(src.clone(), src, v.clone(), v)?;
    /// let batches = pairs.bucketed_batches(8, 0, 0)?;
    /// assert_eq!(batches.len(), 5);
    /// let mut all: Vec<usize> = batches.concat();
    /// all.sort();
    /// assert_eq!(all, (0..40).collect::<Vec<_>>());
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn bucketed_batches(&self, batch_size: usize, seed: u64, epoch: usize) -> Result<Vec<Vec<usize>>> {
        if batch_size == 0 {
            return Err(Error::Invalid("bucketed_batches: batch_size must be at least 1".into()));
        }
        let mut rng = Rng::new(seed).fork(&format!("pairs-epoch-{epoch}"));
        let order: Vec<usize> = rng.permutation(self.len()).into_iter().map(|i| i as usize).collect();
        let mut batches = vec![];
        for pool in order.chunks(batch_size * 50) {
            let mut pool = pool.to_vec();
            // Stable: equal lengths keep their shuffled order.
            pool.sort_by_key(|&r| (self.src[r].len(), self.tgt[r].len()));
            batches.extend(pool.chunks(batch_size).map(<[usize]>::to_vec));
        }
        rng.shuffle(&mut batches);
        Ok(batches)
    }

    /// `rows` as one [`Dataset`] that [`crate::train::fit`] can batch: `x` is `[N, 2, L]` u32 (channel 0 the
    /// source, channel 1 the decoder input `<s> y`), `y` is `[N, L]` u32 (the target `y </s>`), every row padded
    /// with [`PAD`] to `L`, the longest of all. A model reads `x` with [`unpack_inputs`]; a loss finds the real
    /// targets as the non-[`PAD`] entries of `y`.
    pub fn packed(&self, rows: &[usize], dev: &Device) -> Result<Dataset> {
        self.check_rows(rows)?;
        let l = rows.iter().map(|&r| self.src[r].len().max(self.tgt[r].len() + 1)).max().unwrap_or(1).max(1);
        let (n, mut x, mut y) = (rows.len(), vec![PAD; rows.len() * 2 * l], vec![PAD; rows.len() * l]);
        for (i, &r) in rows.iter().enumerate() {
            let (s, t) = (&self.src[r], &self.tgt[r]);
            x[i * 2 * l..i * 2 * l + s.len()].copy_from_slice(s);
            let dec = &mut x[i * 2 * l + l..i * 2 * l + l + t.len() + 1];
            dec[0] = BOS;
            dec[1..].copy_from_slice(t);
            y[i * l..i * l + t.len()].copy_from_slice(t);
            y[i * l + t.len()] = EOS;
        }
        Dataset::new(Tensor::from_vec(x, (n, 2, l), dev)?, Tensor::from_vec(y, (n, l), dev)?)
    }

    /// `epochs` passes over all pairs in [`SeqPairs::bucketed_batches`] order (epoch `e` uses stream `e` of
    /// `seed`), packed as one [`Dataset`]: train on it with `fit` and `FitConfig { epochs: 1, shuffle: false,
    /// batch_size, .. }` (the same `batch_size`), and every batch `fit` cuts is one length bucket.
    ///
    /// Every batch but an epoch's last is full, so the cuts line up only when `len()` is a multiple of
    /// `batch_size`; otherwise this errors and says so (take a subset of such a size).
    pub fn training_stream(&self, batch_size: usize, epochs: usize, seed: u64, dev: &Device) -> Result<Dataset> {
        if batch_size == 0 || !self.len().is_multiple_of(batch_size) {
            return Err(Error::Invalid(format!(
                "training_stream: {} pairs do not cut into batches of {batch_size}; use a multiple of the batch size (e.g. pairs.take({}))",
                self.len(),
                self.len() / batch_size.max(1) * batch_size.max(1)
            )));
        }
        let mut rows = vec![];
        for e in 0..epochs {
            rows.extend(self.bucketed_batches(batch_size, seed, e)?.concat());
        }
        self.packed(&rows, dev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> SeqPairs {
        let v = Vocab::new(["a", "b", "c"]).unwrap();
        let src = vec![vec![3, 4, 5, 3], vec![4], vec![5, 5], vec![3, 3, 3, 3, 3]];
        let tgt = vec![vec![5], vec![3, 4, 5], vec![4, 4], vec![]];
        SeqPairs::new(src, tgt, v.clone(), v).unwrap()
    }

    #[test]
    fn vocab_reserves_three_ids_and_rejects_repeats() {
        let v = Vocab::new(["x", "y"]).unwrap();
        assert_eq!((v.id("<pad>"), v.id("<s>"), v.id("</s>"), v.id("x")), (Some(PAD), Some(BOS), Some(EOS), Some(3)));
        assert_eq!(v.token(4), Some("y"));
        assert_eq!(v.token(5), None);
        assert!(Vocab::new(["x", "x"]).is_err());
        assert!(Vocab::new(["</s>"]).is_err());
        assert!(v.decode(&[7]).unwrap_err().to_string().contains("id 7"));
        assert_eq!(v.render(&[BOS, 3, 4, EOS, 3], " "), "x y");
        assert!(Vocab::new(Vec::<String>::new()).unwrap().is_empty());
    }

    #[test]
    fn batch_pads_frames_and_masks() -> Result<()> {
        let p = toy();
        let b = p.batch(&[3, 1], &crate::device::test_device())?;
        assert_eq!(b.src.to_vec2::<u32>()?, vec![vec![3, 3, 3, 3, 3], vec![4, 0, 0, 0, 0]]);
        assert_eq!(b.src_mask.to_vec2::<f32>()?[1], vec![1., 0., 0., 0., 0.]);
        assert_eq!(b.tgt_in.to_vec2::<u32>()?, vec![vec![BOS, 0, 0, 0], vec![BOS, 3, 4, 5]]);
        assert_eq!(b.tgt_out.to_vec2::<u32>()?, vec![vec![EOS, 0, 0, 0], vec![3, 4, 5, EOS]]);
        assert_eq!((b.src_lens.clone(), b.tgt_lens.clone(), b.len()), (vec![5, 1], vec![1, 4], 2));
        assert!(p.batch(&[9], &crate::device::test_device()).is_err());
        assert!(PairBatch::new(&[vec![1]], &[vec![3]], &crate::device::test_device()).is_err(), "reserved id inside");
        assert!(SeqPairs::new(vec![vec![]], vec![vec![3]], p.src_vocab.clone(), p.tgt_vocab.clone()).is_err());
        assert!(SeqPairs::new(vec![vec![9]], vec![vec![3]], p.src_vocab.clone(), p.tgt_vocab.clone()).is_err());
        Ok(())
    }

    #[test]
    fn packed_rows_unpack_to_the_batch() -> Result<()> {
        let p = toy();
        let d = p.packed(&[0, 1, 2, 3], &crate::device::test_device())?;
        assert_eq!(d.x.dims(), &[4, 2, 5]);
        for rows in [vec![0usize, 1], vec![2], vec![3, 0, 2]] {
            let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
            let sub = d.subset(&idx)?;
            let (src, mask, lens, tgt_in) = unpack_inputs(&sub.x)?;
            let b = p.batch(&rows, &crate::device::test_device())?;
            assert_eq!(src.to_vec2::<u32>()?, b.src.to_vec2::<u32>()?);
            assert_eq!(mask.to_vec2::<f32>()?, b.src_mask.to_vec2::<f32>()?);
            assert_eq!(lens, b.src_lens);
            assert_eq!(tgt_in.to_vec2::<u32>()?, b.tgt_in.to_vec2::<u32>()?);
            let t = b.tgt_out.dims()[1];
            assert_eq!(sub.y.narrow(1, 0, t)?.to_vec2::<u32>()?, b.tgt_out.to_vec2::<u32>()?);
        }
        assert!(
            unpack_inputs(&Tensor::zeros((2, 3, 4), candle_core::DType::U32, &crate::device::test_device())?).is_err()
        );
        let gap = Tensor::new(&[[[3u32, 0, 3], [1, 3, 0]]], &crate::device::test_device())?;
        assert!(unpack_inputs(&gap).unwrap_err().to_string().contains("after padding"));
        Ok(())
    }

    #[test]
    fn bucketed_batches_are_a_seeded_partition_of_similar_lengths() -> Result<()> {
        let v = Vocab::new(["a"])?;
        let mut rng = Rng::new(1);
        let src: Vec<Vec<u32>> = (0..1000).map(|_| vec![3; 1 + rng.below(20)]).collect();
        let p = SeqPairs::new(src.clone(), src, v.clone(), v)?;
        let a = p.bucketed_batches(10, 5, 0)?;
        assert_eq!(a, p.bucketed_batches(10, 5, 0)?);
        assert_ne!(a, p.bucketed_batches(10, 5, 1)?);
        let mut all = a.concat();
        all.sort();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        // Padding within a batch: random batches of 10 from lengths 1-20 spread about 15; buckets about 1.
        let spread: f64 = a
            .iter()
            .map(|b| {
                let l: Vec<usize> = b.iter().map(|&r| p.src[r].len()).collect();
                (l.iter().max().unwrap() - l.iter().min().unwrap()) as f64
            })
            .sum::<f64>()
            / a.len() as f64;
        assert!(spread < 2.0, "mean spread {spread}");
        let stream = p.training_stream(10, 2, 5, &crate::device::test_device())?;
        assert_eq!(stream.len(), 2000);
        assert!(p.take(999).training_stream(10, 1, 5, &crate::device::test_device()).is_err());
        Ok(())
    }
}
