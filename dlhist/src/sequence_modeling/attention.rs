//! # RNNsearch: an encoder-decoder that learns where to look
//!
//! D. Bahdanau, K. Cho and Y. Bengio, "Neural Machine Translation by Jointly Learning to Align and Translate",
//! ICLR 2015 (arXiv 2014). <https://arxiv.org/abs/1409.0473>
//!
//! The encoder-decoders of 2014 (Sutskever et al.; Cho et al.) squeeze the whole source sentence into one
//! fixed-length vector, and their quality falls as sentences grow. RNNsearch keeps one vector per source word
//! instead and lets the decoder choose, at every output step, which of them to read (section 3):
//!
//! ```text
//! h_j = [h→_j ; h←_j]                                  a bidirectional GRU's states: word j in its context
//! e_ij = vᵀ tanh(W s_{i−1} + U h_j)                    how well output i matches input j        (eq. 6)
//! α_ij = exp(e_ij) / Σ_k exp(e_ik)                     the alignment: a distribution over inputs (eq. 6)
//! c_i = Σ_j α_ij h_j                                   the context vector of step i             (eq. 5)
//! s_i = GRU([E y_{i−1} ; c_i], s_{i−1})                the decoder state                        (eq. 4)
//! p(y_i | y_<i, x) = softmax(W_o [s_i ; c_i ; E y_{i−1}])   the output, g(y_{i−1}, s_i, c_i)   (eq. 4)
//! s_0 = tanh(W_s h←_1)                                 the start state (appendix A.2.2)
//! ```
//!
//! The score is [`AdditiveAttention`] (in [`crate::layers`], where later models may reuse it). Here `W_o`
//! reads the three vectors linearly; the paper puts a maxout layer in between (appendix A.2.2), which we leave
//! out: on a small task it adds parameters, not a different idea. The recurrent layers are dlhist's
//! [`Gru`] (PyTorch's reset-after form, whose fused kernel trains fastest on the CPU).
//!
//! Batches are padded (rows of different lengths), so two things take care:
//! - the attention softmax runs over each row's real positions only ([`crate::layers::masked_softmax`]);
//! - the backward half of the encoder reads each row from *its own* last word, not from the padding: a plain
//!   time reversal ([`crate::layers::Bidirectional`], built for unpadded streams) would feed a short row's pads
//!   to the backward GRU before its words and change every `h←_j`. The encoder here is the same two GRUs,
//!   with each row reversed within its length.
//!
//! With that, a row's outputs do not depend on how much padding its batch added (a test holds this).
//!
//! Where does the attention look? [`alignment_offsets`] measures, for data whose true alignment is known, how
//! far each output's argmax lies from the word it translates. The annotations are contextual: `h←_{j−1}` has just
//! read word `j`, and `h→_{j+1}` read it one step earlier, so the likelihood is served as well by a neighbour as
//! by word `j` itself. `RnnSearchConfig::bidirectional = false` keeps only the forward half, an ablation that
//! shows which neighbour the attention then prefers.

use candle_core::{DType, Device, IndexOp, Module, ModuleT, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};

use crate::data::pairs::unpack_inputs;
use crate::layers::{Activation, AdditiveAttention, Dense, Recurrent, RecurrentState, StepDecoder};
use crate::sequence_modeling::{Gru, GruVariant};

/// The sizes of an [`RnnSearch`].
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::attention::{RnnSearch, RnnSearchConfig};
/// let cfg = RnnSearchConfig { src_vocab: 10, tgt_vocab: 12, embed: 8, hidden: 16, align: 16, bidirectional: true };
/// let (both, vb) = dlhist::init::seeded(0, DType::F32, &Device::Cpu);
/// RnnSearch::new(cfg, vb)?;
/// let (forward, vb) = dlhist::init::seeded(0, DType::F32, &Device::Cpu);
/// RnnSearch::new(RnnSearchConfig { bidirectional: false, ..cfg }, vb)?;
/// // Without the backward GRU: its weights, and narrower annotations for the attention, decoder and readout.
/// assert!(dlhist::init::param_count(&forward) < dlhist::init::param_count(&both));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RnnSearchConfig {
    /// Source vocabulary size (the reserved ids included).
    pub src_vocab: usize,
    /// Target vocabulary size (the reserved ids included).
    pub tgt_vocab: usize,
    /// Word embedding width `m`, on both sides.
    pub embed: usize,
    /// Units `n` of each encoder direction and of the decoder (the paper: 1000).
    pub hidden: usize,
    /// Units `n'` of the alignment layer (the paper: 1000).
    pub align: usize,
    /// The paper's bidirectional annotations `h_j = [h→_j ; h←_j]` (`true`), or the forward states alone,
    /// `h_j = h→_j`, with the decoder started from the last one, `s_0 = tanh(W_s h→_m)` (`false`): an ablation
    /// that shows what the backward half does to where the attention looks.
    pub bidirectional: bool,
}

/// What the encoder leaves for the decoder: the annotations `h_j` (`[B, S, 2n]`; `[B, S, n]` forward-only), their projections `U h_j`
/// (`[B, S, n']`), and the source mask (`[B, S]`, 1 real / 0 padding).
#[derive(Debug, Clone)]
pub struct Memory {
    /// The annotations `h_j = [h→_j ; h←_j]`, `[B, S, 2n]` (or `h→_j`, `[B, S, n]`, without the backward half).
    pub annotations: Tensor,
    /// `U h_j`, computed once per sentence, `[B, S, n']`.
    pub keys: Tensor,
    /// 1 at real source positions, 0 at padding, `[B, S]`.
    pub mask: Tensor,
}

/// The decoder's state between steps: `s_{i−1}` (`[B, n]`) and the encoder's [`Memory`] of each row.
#[derive(Debug, Clone)]
pub struct RnnSearchState {
    /// The decoder state `s_{i−1}`, `[B, n]`.
    pub s: Tensor,
    /// The memory the decoder attends to.
    pub memory: Memory,
}

/// Teacher-forced outputs of [`RnnSearch::forward_with_attention`].
#[derive(Debug, Clone)]
pub struct Attended {
    /// Logits `[B, T, V]`.
    pub logits: Tensor,
    /// The attention weights `α_ij`, `[B, T, S]`: row `i` of sentence `b` is where output `i` looked.
    pub weights: Tensor,
}

/// RNNsearch (see the [module docs](self)): a bidirectional GRU encoder, additive attention and a GRU decoder
/// fed the context of every step.
///
/// Parameters under the builder's path: `src_embed`, `tgt_embed`, `enc_fwd`, `enc_bwd` (GRUs of `n` units),
/// `init` (`W_s`), `attention` (`W`, `U`, `v`), `decoder` (a GRU from `m + 2n` inputs to `n` units), `out`
/// (`W_o`). As a [`ModuleT`] it reads packed pairs ([`crate::data::pairs::SeqPairs::packed`]) and returns the
/// logits of teacher forcing, so [`crate::train::fit`] trains it with
/// [`crate::layers::SequenceCrossEntropy`].
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::data::pairs::{SeqPairs, Vocab};
/// use dlhist::sequence_modeling::attention::{RnnSearch, RnnSearchConfig};
/// let dev = Device::Cpu;
/// let v = Vocab::new(["a", "b", "c"])?;
/// let pairs = SeqPairs::new(vec![vec![3, 4, 5], vec![4]], vec![vec![5, 4], vec![3]], v.clone(), v)?;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let cfg = RnnSearchConfig { src_vocab: 6, tgt_vocab: 6, embed: 8, hidden: 16, align: 12, bidirectional: true };
/// let model = RnnSearch::new(cfg, vb)?;
/// let b = pairs.batch(&[0, 1], &dev)?;
/// let out = model.forward_with_attention(&b.src, &b.src_mask, &b.src_lens, &b.tgt_in)?;
/// assert_eq!((out.logits.dims(), out.weights.dims()), (&[2, 3, 6][..], &[2, 3, 3][..]));
/// // Row 1 has one source word: all its attention is on it.
/// assert_eq!(out.weights.i((1, .., 0))?.to_vec1::<f32>()?, vec![1.0; 3]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RnnSearch {
    cfg: RnnSearchConfig,
    src_embed: Embedding,
    tgt_embed: Embedding,
    enc_fwd: Gru,
    enc_bwd: Option<Gru>,
    init: Dense,
    attention: AdditiveAttention,
    decoder: Gru,
    out: Dense,
}

/// Flat row indices `b·S + j'` that reverse each row `b` of a `[B, S, …]` batch within its first `lens[b]`
/// positions and leave its padding in place. The permutation is its own inverse.
fn reverse_within_lengths(lens: &[usize], s: usize, dev: &Device) -> Result<Tensor> {
    check_lengths(lens, s)?;
    let idx: Vec<u32> = lens
        .iter()
        .enumerate()
        .flat_map(|(b, &l)| (0..s).map(move |j| (b * s + if j < l { l - 1 - j } else { j }) as u32))
        .collect();
    Tensor::from_vec(idx, lens.len() * s, dev)
}

/// Every row's source length must lie in `1..=s`: a row has at least one word and no more than the batch holds.
fn check_lengths(lens: &[usize], s: usize) -> Result<()> {
    match lens.iter().enumerate().find(|&(_, &l)| l == 0 || l > s) {
        Some((b, l)) => candle_core::bail!("RnnSearch: row {b} has source length {l}; lengths must lie in 1..={s}"),
        None => Ok(()),
    }
}

impl RnnSearch {
    /// The model of `cfg`, its parameters under `vb`.
    pub fn new(cfg: RnnSearchConfig, vb: VarBuilder) -> Result<Self> {
        let (m, n) = (cfg.embed, cfg.hidden);
        // The width of one annotation: both directions, or the forward one alone.
        let a = if cfg.bidirectional { 2 * n } else { n };
        Ok(RnnSearch {
            cfg,
            src_embed: candle_nn::embedding(cfg.src_vocab, m, vb.pp("src_embed"))?,
            tgt_embed: candle_nn::embedding(cfg.tgt_vocab, m, vb.pp("tgt_embed"))?,
            enc_fwd: Gru::new(m, n, GruVariant::ResetAfter, vb.pp("enc_fwd"))?,
            enc_bwd: match cfg.bidirectional {
                true => Some(Gru::new(m, n, GruVariant::ResetAfter, vb.pp("enc_bwd"))?),
                false => None,
            },
            init: Dense::new(n, n, Some(Activation::Tanh), vb.pp("init"))?,
            attention: AdditiveAttention::new(n, a, cfg.align, vb.pp("attention"))?,
            decoder: Gru::new(m + a, n, GruVariant::ResetAfter, vb.pp("decoder"))?,
            out: Dense::new(n + a + m, cfg.tgt_vocab, None, vb.pp("out"))?,
        })
    }

    /// The sizes the model was built with.
    pub fn config(&self) -> RnnSearchConfig {
        self.cfg
    }

    /// Encodes sources `src` (`[B, S]` u32, padded with 0) of lengths `lens`: the annotations, their
    /// projections and the mask, and the decoder's start state `s_0 = tanh(W_s h←_1)`.
    pub fn encode(&self, src: &Tensor, mask: &Tensor, lens: &[usize]) -> Result<RnnSearchState> {
        let (b, s) = src.dims2().map_err(|_| {
            candle_core::Error::Msg(format!("RnnSearch::encode expects source ids [B, S]; got {:?}", src.dims()))
        })?;
        if mask.dims() != [b, s] || lens.len() != b {
            candle_core::bail!(
                "RnnSearch::encode: source {:?} needs a mask [{b}, {s}] and {b} lengths; got {:?} and {}",
                src.dims(),
                mask.dims(),
                lens.len()
            )
        }
        check_lengths(lens, s)?;
        let x = self.src_embed.forward(src)?; // [B, S, m]
        let (hf, _) = self.enc_fwd.forward_from(&x, None)?;
        let (annotations, s0) = match &self.enc_bwd {
            Some(enc_bwd) => {
                // The backward GRU reads each row from its last real word back to its first (see the module docs).
                let rev = reverse_within_lengths(lens, s, src.device())?;
                let flip = |t: &Tensor| -> Result<Tensor> {
                    let d = t.dims()[2];
                    t.reshape((b * s, d))?.index_select(&rev, 0)?.reshape((b, s, d))
                };
                let (hb_rev, _) = enc_bwd.forward_from(&flip(&x)?, None)?;
                let hb = flip(&hb_rev)?;
                // The backward GRU's state after reading back to word 1 is h←_1; the paper starts the decoder
                // from it.
                // (`contiguous`: a slice across rows has a row stride of S·n, and candle's CUDA matrix product
                // only takes packed rows.)
                (Tensor::cat(&[&hf, &hb], 2)?, self.init.forward(&hb.i((.., 0, ..))?.contiguous()?)?)
                // h_j = [h→_j ; h←_j]
            }
            None => {
                // The forward state that has read the whole row is at the row's own last word, not at S − 1.
                let last: Vec<u32> = lens.iter().enumerate().map(|(r, &l)| (r * s + l - 1) as u32).collect();
                let last = Tensor::from_vec(last, b, src.device())?;
                let n = self.cfg.hidden;
                (hf.clone(), self.init.forward(&hf.reshape((b * s, n))?.index_select(&last, 0)?)?)
            }
        };
        // U h_j does not depend on the output step i: computing it here, once, instead of inside every step saves
        // T − 1 of T products of the [B·S, 2n] × [2n, n'] size, the largest of the attention (appendix A.1.2).
        let keys = self.attention.project_keys(&annotations)?;
        Ok(RnnSearchState { s: s0, memory: Memory { annotations, keys, mask: mask.clone() } })
    }

    /// One decoder step from the embedded previous tokens `e` (`[B, m]`) and state `s_{i−1}`: the new state
    /// `s_i`, the context `c_i` and the attention weights `α_i` (`[B, S]`).
    fn step_embedded(&self, e: &Tensor, state: &RnnSearchState) -> Result<(Tensor, Tensor, Tensor)> {
        let mem = &state.memory;
        // α_ij from s_{i−1}: the decoder decides where to look before it reads y_{i−1} into its state.
        let (c, alpha) = self.attention.attend(&state.s, &mem.keys, &mem.annotations, &mem.mask)?;
        let input = Tensor::cat(&[e, &c], 1)?.unsqueeze(1)?; // [E y_{i−1} ; c_i] as one time step
        let (_, next) = self.decoder.forward_from(&input, Some(&RecurrentState { h: state.s.clone(), c: None }))?;
        Ok((next.h, c, alpha))
    }

    /// Teacher forcing: logits `[B, T, V]` for the decoder inputs `tgt_in` (`[B, T]` u32, `<s> y_1 … y_{T−1}`)
    /// and the attention weights `[B, T, S]` of every step.
    pub fn forward_with_attention(
        &self,
        src: &Tensor,
        src_mask: &Tensor,
        src_lens: &[usize],
        tgt_in: &Tensor,
    ) -> Result<Attended> {
        let mut state = self.encode(src, src_mask, src_lens)?;
        let (b, t) = tgt_in.dims2().map_err(|_| {
            candle_core::Error::Msg(format!("RnnSearch expects decoder inputs [B, T]; got {:?}", tgt_in.dims()))
        })?;
        if b != src_lens.len() {
            candle_core::bail!("RnnSearch: {} sources but decoder inputs {:?}", src_lens.len(), tgt_in.dims())
        }
        let emb = self.tgt_embed.forward(tgt_in)?; // every E y_{i−1} at once, [B, T, m]
        let (mut states, mut contexts, mut weights) = (vec![], vec![], vec![]);
        for i in 0..t {
            // One column of [B, T, m], packed for the GPU's matrix products (see above).
            let (s, c, alpha) = self.step_embedded(&emb.i((.., i, ..))?.contiguous()?, &state)?;
            state.s = s.clone();
            states.push(s);
            contexts.push(c);
            weights.push(alpha);
        }
        // The readout needs no recurrence: one product for all T steps.
        let features = Tensor::cat(&[Tensor::stack(&states, 1)?, Tensor::stack(&contexts, 1)?, emb], 2)?;
        Ok(Attended { logits: self.out.forward(&features)?, weights: Tensor::stack(&weights, 1)? })
    }

    /// The start state for decoding the sources of a [`crate::data::pairs::PairBatch`] (or any padded `[B, S]`
    /// ids with their mask and lengths): hand it to [`crate::layers::greedy_decode`] or
    /// [`crate::layers::beam_search`].
    pub fn start(&self, src: &Tensor, src_mask: &Tensor, src_lens: &[usize]) -> Result<RnnSearchState> {
        self.encode(src, src_mask, src_lens)
    }

    /// The attention weights `[B, S]` a decoding step would use from `state`, without taking the step: what
    /// output position `i` reads while it is decoded greedily.
    pub fn weights(&self, state: &RnnSearchState) -> Result<Tensor> {
        let mem = &state.memory;
        Ok(self.attention.attend(&state.s, &mem.keys, &mem.annotations, &mem.mask)?.1)
    }
}

impl ModuleT for RnnSearch {
    /// Packed pairs `x` (`[B, 2, L]` u32) to teacher-forced logits `[B, T, V]`.
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let (src, mask, lens, tgt_in) = unpack_inputs(x).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Ok(self.forward_with_attention(&src, &mask, &lens, &tgt_in)?.logits)
    }
}

impl StepDecoder for RnnSearch {
    type State = RnnSearchState;

    fn step(&self, prev: &Tensor, state: &RnnSearchState) -> Result<(Tensor, RnnSearchState)> {
        let e = self.tgt_embed.forward(prev)?;
        let (s, c, _) = self.step_embedded(&e, state)?;
        let logits = self.out.forward(&Tensor::cat(&[&s, &c, &e], 1)?)?;
        Ok((logits, RnnSearchState { s, memory: state.memory.clone() }))
    }

    fn select_rows(&self, state: &RnnSearchState, rows: &Tensor) -> Result<RnnSearchState> {
        let m = &state.memory;
        Ok(RnnSearchState {
            s: state.s.index_select(rows, 0)?,
            memory: Memory {
                annotations: m.annotations.index_select(rows, 0)?,
                keys: m.keys.index_select(rows, 0)?,
                mask: m.mask.index_select(rows, 0)?,
            },
        })
    }

    fn batch_size(&self, state: &RnnSearchState) -> usize {
        state.s.dims()[0]
    }

    fn device(&self) -> Device {
        self.src_embed.embeddings().device().clone()
    }
}

/// For every real target token, how far its attention argmax lies from the source position it truly comes from:
/// `argmax_j α_ij − alignment[b][i]` (0 on the true word, −1 on the word before it, …). `weights` are
/// `[B, T, S]` (teacher-forced, [`Attended::weights`]); `alignment[b]` holds the true positions of row `b`'s real
/// target tokens (the `</s>` step and padding are not scored). Offsets come row by row, token by token.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::attention::alignment_offsets;
/// // One sentence, three decoder steps over two source words; the first two target tokens come from word 0.
/// let w = Tensor::new(&[[[0.9f32, 0.1], [0.2, 0.8], [0.5, 0.5]]], &Device::Cpu)?; // [1, 3, 2]
/// assert_eq!(alignment_offsets(&w, &[vec![0, 0]])?, vec![0, 1]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn alignment_offsets(weights: &Tensor, alignment: &[Vec<u32>]) -> Result<Vec<i64>> {
    let (b, t, _) = weights.dims3()?;
    if alignment.len() != b || alignment.iter().any(|a| a.len() > t) {
        candle_core::bail!(
            "alignment_offsets: weights {:?} need {b} alignments of at most {t} tokens; got {} (longest {})",
            weights.dims(),
            alignment.len(),
            alignment.iter().map(Vec::len).max().unwrap_or(0)
        )
    }
    let argmax = weights.argmax(2)?.to_dtype(DType::U32)?.to_vec2::<u32>()?;
    Ok(argmax
        .iter()
        .zip(alignment)
        .flat_map(|(row, al)| al.iter().enumerate().map(|(i, &j)| row[i] as i64 - j as i64))
        .collect())
}

/// The share of target tokens whose attention argmax is the source position they truly come from, as
/// `(matched, scored)`: the zeros among [`alignment_offsets`].
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::attention::alignment_matches;
/// let w = Tensor::new(&[[[0.9f32, 0.1], [0.2, 0.8], [0.5, 0.5]]], &Device::Cpu)?; // [1, 3, 2]
/// assert_eq!(alignment_matches(&w, &[vec![0, 0]])?, (1, 2));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn alignment_matches(weights: &Tensor, alignment: &[Vec<u32>]) -> Result<(usize, usize)> {
    let offsets = alignment_offsets(weights, alignment)?;
    Ok((offsets.iter().filter(|&&d| d == 0).count(), offsets.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::pairs::{SeqPairs, Vocab};
    use crate::layers::{beam_search, greedy_decode};

    fn toy() -> (candle_nn::VarMap, RnnSearch, SeqPairs) {
        toy_with(true)
    }

    fn toy_with(bidirectional: bool) -> (candle_nn::VarMap, RnnSearch, SeqPairs) {
        let v = Vocab::new(["a", "b", "c", "d"]).unwrap();
        let pairs = SeqPairs::new(
            vec![vec![3, 4, 5, 6, 3], vec![4, 5], vec![6]],
            vec![vec![5, 4], vec![3, 3, 6], vec![4]],
            v.clone(),
            v,
        )
        .unwrap();
        let (vars, vb) = crate::init::seeded(3, DType::F32, &crate::device::test_device());
        let cfg = RnnSearchConfig { src_vocab: 7, tgt_vocab: 7, embed: 5, hidden: 6, align: 4, bidirectional };
        (vars, RnnSearch::new(cfg, vb).unwrap(), pairs)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn a_row_does_not_depend_on_its_batch_padding() -> crate::Result<()> {
        for bidirectional in [true, false] {
            a_row_does_not_depend_on_its_batch_padding_with(bidirectional)?;
        }
        Ok(())
    }

    fn a_row_does_not_depend_on_its_batch_padding_with(bidirectional: bool) -> crate::Result<()> {
        let (_vars, model, pairs) = toy_with(bidirectional);
        let dev = crate::device::test_device();
        // Row 1 alone (no padding) and in a batch padded to row 0's five source words.
        let alone = pairs.batch(&[1], &dev)?;
        let padded = pairs.batch(&[0, 1], &dev)?;
        let a = model.forward_with_attention(&alone.src, &alone.src_mask, &alone.src_lens, &alone.tgt_in)?;
        let p = model.forward_with_attention(&padded.src, &padded.src_mask, &padded.src_lens, &padded.tgt_in)?;
        let t = alone.tgt_in.dims()[1];
        assert!(max_diff(&a.logits.i(0)?, &p.logits.i((1, ..t))?) < 1e-5);
        assert!(max_diff(&a.weights.i(0)?, &p.weights.i((1, ..t, ..2))?) < 1e-6);
        let pad_weight = p.weights.i((1, .., 2..))?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(pad_weight, 0.0, "padding gets no attention");
        // The weights are distributions over the real positions.
        let sums = p.weights.sum(2)?.flatten_all()?.to_vec1::<f32>()?;
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
        Ok(())
    }

    #[test]
    fn the_backward_encoder_reads_each_row_from_its_own_end() -> crate::Result<()> {
        let (_vars, model, pairs) = toy();
        let dev = crate::device::test_device();
        let padded = pairs.batch(&[0, 1], &dev)?;
        let st = model.encode(&padded.src, &padded.src_mask, &padded.src_lens)?;
        // h←_1 of row 1 by hand: the backward GRU over its two words, last word first.
        let x = model.src_embed.forward(&Tensor::new(&[[5u32, 4]], &dev)?)?;
        let (hb, _) = model.enc_bwd.as_ref().unwrap().forward_from(&x, None)?;
        let n = model.cfg.hidden;
        let got = st.memory.annotations.i((1, 0, n..))?;
        assert!(max_diff(&got, &hb.i((0, 1))?) < 1e-6);
        assert!(max_diff(&st.s.i(1)?, &model.init.forward(&hb.i((.., 1))?)?.i(0)?) < 1e-6);
        assert!(reverse_within_lengths(&[3, 0], 3, &dev).is_err());
        assert_eq!(reverse_within_lengths(&[2, 3], 3, &dev)?.to_vec1::<u32>()?, vec![1, 0, 2, 5, 4, 3]);
        Ok(())
    }

    #[test]
    fn forward_only_annotations_are_the_forward_states_and_start_from_each_rows_end() -> crate::Result<()> {
        let (vars, model, pairs) = toy_with(false);
        let dev = crate::device::test_device();
        assert!(!vars.data().lock().unwrap().keys().any(|k| k.starts_with("enc_bwd")), "no backward GRU");
        let padded = pairs.batch(&[0, 1], &dev)?;
        let st = model.encode(&padded.src, &padded.src_mask, &padded.src_lens)?;
        assert_eq!(st.memory.annotations.dims(), &[2, 5, 6]);
        // Row 1 has two words: s_0 comes from h→_2, not from the forward state after three pads.
        let x = model.src_embed.forward(&Tensor::new(&[[4u32, 5]], &dev)?)?;
        let (hf, _) = model.enc_fwd.forward_from(&x, None)?;
        assert!(max_diff(&st.memory.annotations.i((1, ..2))?, &hf.i(0)?) < 1e-6);
        assert!(max_diff(&st.s.i(1)?, &model.init.forward(&hf.i((.., 1))?)?.i(0)?) < 1e-6);
        Ok(())
    }

    #[test]
    fn stepping_reproduces_teacher_forcing_and_decoders_run() -> crate::Result<()> {
        let (_vars, model, pairs) = toy();
        let dev = crate::device::test_device();
        let b = pairs.batch(&[0, 1, 2], &dev)?;
        let tf = model.forward_with_attention(&b.src, &b.src_mask, &b.src_lens, &b.tgt_in)?;
        let mut state = model.start(&b.src, &b.src_mask, &b.src_lens)?;
        for i in 0..b.tgt_in.dims()[1] {
            let w = model.weights(&state)?;
            let (logits, next) = model.step(&b.tgt_in.i((.., i))?.contiguous()?, &state)?;
            assert!(max_diff(&logits, &tf.logits.i((.., i))?) < 1e-5, "step {i}");
            assert!(max_diff(&w, &tf.weights.i((.., i))?) < 1e-6, "step {i}");
            state = next;
        }
        let start = model.start(&b.src, &b.src_mask, &b.src_lens)?;
        let greedy = greedy_decode(&model, start.clone(), 3, 6, &dev)?;
        let beam1 = beam_search(&model, start.clone(), 1, 6, 0.0)?;
        assert_eq!(greedy, beam1, "a beam of one is greedy");
        assert_eq!(beam_search(&model, start, 3, 6, 0.0)?.len(), 3);
        Ok(())
    }

    #[test]
    fn packed_input_trains_and_every_parameter_gets_a_gradient() -> crate::Result<()> {
        let (vars, model, pairs) = toy();
        let data = pairs.packed(&[0, 1, 2], &crate::device::test_device())?;
        let logits = model.forward_t(&data.x, true)?;
        let loss = crate::train::Loss::compute(&crate::layers::SequenceCrossEntropy, &logits, &data.y)?;
        let grads = loss.backward()?;
        for (name, v) in vars.data().lock().unwrap().iter() {
            let g = grads.get(v).unwrap_or_else(|| panic!("{name} has no gradient"));
            assert!(g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0, "{name}");
        }
        Ok(())
    }

    #[test]
    fn alignment_matches_refuses_mismatched_shapes() {
        let w = Tensor::zeros((2, 3, 4), DType::F32, &crate::device::test_device()).unwrap();
        assert!(alignment_matches(&w, &[vec![0]]).is_err());
        assert!(alignment_offsets(&w, &[vec![0; 4], vec![]]).unwrap_err().to_string().contains("[2, 3, 4]"));
        assert_eq!(alignment_matches(&w, &[vec![0, 0], vec![1]]).unwrap(), (2, 3));
    }
}
