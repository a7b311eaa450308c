//! The RNN encoder-decoder: one recurrent net reads the source into a fixed-size vector, another writes the target
//! from it.
//!
//! - Sutskever, Vinyals & Le, "Sequence to Sequence Learning with Neural Networks", NIPS 2014,
//!   <https://arxiv.org/abs/1409.3215>: deep LSTMs, the encoder's final state starting the decoder, the source
//!   fed in reverse, beam search.
//! - Cho, van Merriënboer, Gulcehre, Bahdanau, Bougares, Schwenk & Bengio, "Learning Phrase Representations using
//!   RNN Encoder–Decoder for Statistical Machine Translation", EMNLP 2014, <https://arxiv.org/abs/1406.1078>: the
//!   gated recurrent unit, and a summary vector `c` that the decoder sees at every step.
//!
//! The model factorizes the probability of a target `y_1 … y_n` given a source `x_1 … x_m` (Sutskever et al.'s
//! equation 1):
//!
//! ```text
//! p(y_1 … y_n | x_1 … x_m) = Π_t p(y_t | v, y_1 … y_{t−1})
//! v = s_m,  s_i = f_enc(E_x x_i, s_{i−1}),  s_0 = 0                           (the encoder's final state)
//! d_0 = v,  d_t = f_dec([E_y y_{t−1}; c], d_{t−1}),  p(y_t | …) = softmax(W_o d_t + b_o)
//! ```
//!
//! where `f_enc`, `f_dec` are any [`Recurrent`] layers (LSTM, GRU, tanh RNN), `E_x`, `E_y` embedding tables, and
//! `c` is present only in Cho et al.'s variant ([`Seq2SeqConfig::feed_context`]): the encoder's final output
//! `h_m` concatenated to every decoder input, so the summary need not survive in the decoder's state alone.
//! (Cho et al. also feed `c` to the output layer and start the decoder from `tanh(V c)`; here the decoder starts
//! from the encoder's state and reads `c` through its input, which gives the output layer `c` through `d_t`.)
//!
//! Reversing the source ([`Seq2SeqConfig::reverse_source`]) puts `x_1` next to `y_1`: Sutskever et al. found it
//! made the first target words easier and the optimization better (their section 3.3).
//!
//! Padding: rows of a batch have different source lengths, and the final state must be read at each row's own
//! end, without the encoder ever reading a [`crate::data::pairs::PAD`]. [`Seq2Seq::encode`] runs the encoder once per distinct
//! length in the batch, on the rows of that length cut to it (length-bucketed batches make that one or two runs),
//! and puts the final states back in row order.

use std::collections::BTreeMap;

use candle_core::{Device, Module, ModuleT, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};

use crate::data::pairs::unpack_inputs;
use crate::layers::{reverse_time, Dense, Recurrent, RecurrentState, StepDecoder};
use crate::sequence_modeling::{Gru, GruVariant, Lstm, Rnn};

/// The recurrent layer of the encoder and the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cell {
    /// The LSTM with a forget gate ([`Lstm`]): Sutskever et al.'s choice.
    Lstm,
    /// The GRU ([`Gru`], the reset-after form whose fused kernel makes it fast; Cho et al. wrote the reset gate
    /// before the recurrent product, a difference the GRU notebook measures as small).
    Gru,
    /// The tanh RNN ([`Rnn`]).
    Rnn,
}

impl Cell {
    /// A layer of this kind mapping `input` features to `hidden` units, parameters under `vb`.
    pub fn build(self, input: usize, hidden: usize, vb: VarBuilder) -> Result<Box<dyn Recurrent>> {
        Ok(match self {
            Cell::Lstm => Box::new(Lstm::new(input, hidden, vb)?),
            Cell::Gru => Box::new(Gru::new(input, hidden, GruVariant::ResetAfter, vb)?),
            Cell::Rnn => Box::new(Rnn::new(input, hidden, vb)?),
        })
    }
}

/// Sizes and switches of a [`Seq2Seq`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seq2SeqConfig {
    /// Source vocabulary size (reserved ids included).
    pub src_vocab: usize,
    /// Target vocabulary size (reserved ids included).
    pub tgt_vocab: usize,
    /// Embedding width of source and target tokens.
    pub embed: usize,
    /// Units of the encoder and the decoder.
    pub hidden: usize,
    /// The recurrent layer of both.
    pub cell: Cell,
    /// Read each source backwards (Sutskever et al.).
    pub reverse_source: bool,
    /// Feed the encoder's summary `c` to every decoder step (Cho et al.).
    pub feed_context: bool,
}

impl Default for Seq2SeqConfig {
    fn default() -> Self {
        Seq2SeqConfig {
            src_vocab: 29,
            tgt_vocab: 45,
            embed: 64,
            hidden: 128,
            cell: Cell::Lstm,
            reverse_source: false,
            feed_context: false,
        }
    }
}

/// The decoder's state between steps: the recurrent state, and the encoder's summary `c` (`[B, H]`).
#[derive(Debug, Clone)]
pub struct Seq2SeqState {
    /// The decoder's recurrent state (`h`, and `c` for an LSTM).
    pub rnn: RecurrentState,
    /// The encoder's summary: its last output `h_m`, `[B, H]`.
    pub context: Tensor,
}

/// An RNN encoder-decoder. As a [`ModuleT`] it reads packed pairs ([`crate::data::pairs::SeqPairs::packed`]) and
/// returns teacher-forced logits `[B, T, V]`, so [`crate::train::fit`] trains it with
/// [`crate::layers::SequenceCrossEntropy`]; as a [`StepDecoder`] it decodes greedily or by beam search.
///
/// Parameters: `{path}.src_emb`, `{path}.tgt_emb`, `{path}.encoder`, `{path}.decoder`, `{path}.out`.
///
/// ```
/// use dlhist::data::pairs::{SeqPairs, Vocab};
/// use dlhist::layers::greedy_decode;
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::seq2seq::{Cell, Seq2Seq, Seq2SeqConfig};
/// let dev = Device::Cpu;
/// let v = Vocab::new(["a", "b", "c"])?;
/// let pairs = SeqPairs::new(vec![vec![3, 4], vec![5]], vec![vec![4, 4, 3], vec![5]], v.clone(), v)?;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let cfg = Seq2SeqConfig { src_vocab: 6, tgt_vocab: 6, embed: 8, hidden: 16, cell: Cell::Gru, ..Default::default() };
/// let model = Seq2Seq::new(cfg, vb)?;
/// let data = pairs.packed(&[0, 1], &dev)?;
/// assert_eq!(model.forward_t(&data.x, true)?.dims(), &[2, 4, 6]); // 3 phonemes + </s>
/// let b = pairs.batch(&[0, 1], &dev)?;
/// let start = model.start_state(&b.src, &b.src_lens)?;
/// assert_eq!(greedy_decode(&model, start, 2, 5, &dev)?.len(), 2);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub struct Seq2Seq {
    src_emb: Embedding,
    tgt_emb: Embedding,
    encoder: Box<dyn Recurrent>,
    decoder: Box<dyn Recurrent>,
    out: Dense,
    config: Seq2SeqConfig,
}

impl std::fmt::Debug for Seq2Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seq2Seq").field("config", &self.config).finish()
    }
}

impl Seq2Seq {
    /// Builds the model with encoder and decoder of `config.cell`.
    pub fn new(config: Seq2SeqConfig, vb: VarBuilder) -> Result<Self> {
        let dec_in = config.embed + if config.feed_context { config.hidden } else { 0 };
        let encoder = config.cell.build(config.embed, config.hidden, vb.pp("encoder"))?;
        let decoder = config.cell.build(dec_in, config.hidden, vb.pp("decoder"))?;
        Self::from_parts(encoder, decoder, config, vb)
    }

    /// Builds the model around a given encoder and decoder (any [`Recurrent`] layers: the encoder maps
    /// `config.embed` features to `config.hidden` units, the decoder `config.embed` (+ `config.hidden` with
    /// `feed_context`) to `config.hidden`, with the same kind of state). `config.cell` is then only a label.
    pub fn from_parts(
        encoder: Box<dyn Recurrent>,
        decoder: Box<dyn Recurrent>,
        config: Seq2SeqConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        let dec_in = config.embed + if config.feed_context { config.hidden } else { 0 };
        if (encoder.input_size(), encoder.hidden_size()) != (config.embed, config.hidden)
            || (decoder.input_size(), decoder.hidden_size()) != (dec_in, config.hidden)
            || encoder.has_cell() != decoder.has_cell()
        {
            candle_core::bail!(
                "Seq2Seq: encoder {}->{} and decoder {}->{} (cells: {}, {}) do not fit embed {} / hidden {} / feed_context {}: \
                 the encoder needs {}->{}, the decoder {dec_in}->{}, and both the same kind of state",
                encoder.input_size(),
                encoder.hidden_size(),
                decoder.input_size(),
                decoder.hidden_size(),
                encoder.has_cell(),
                decoder.has_cell(),
                config.embed,
                config.hidden,
                config.feed_context,
                config.embed,
                config.hidden,
                config.hidden
            )
        }
        Ok(Seq2Seq {
            src_emb: candle_nn::embedding(config.src_vocab, config.embed, vb.pp("src_emb"))?,
            tgt_emb: candle_nn::embedding(config.tgt_vocab, config.embed, vb.pp("tgt_emb"))?,
            encoder,
            decoder,
            out: Dense::new(config.hidden, config.tgt_vocab, None, vb.pp("out"))?,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Seq2SeqConfig {
        &self.config
    }

    /// The encoder's final state for sources `src` (`[B, S]` u32, [`crate::data::pairs::PAD`]-padded after each row's end) of true
    /// lengths `lens`: each row read from the zero state over its own tokens only (reversed with
    /// `reverse_source`), never over padding.
    pub fn encode(&self, src: &Tensor, lens: &[usize]) -> Result<RecurrentState> {
        let (b, s) = src.dims2()?;
        if lens.len() != b || lens.iter().any(|&l| l == 0 || l > s) {
            candle_core::bail!("Seq2Seq::encode: sources {:?} need {b} lengths in 1..={s}; got {lens:?}", src.dims())
        }
        let emb = self.src_emb.forward(src)?; // [B, S, E]
                                              // Rows grouped by length: one encoder run per length, on exactly that many steps.
        let mut groups: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        for (r, &l) in lens.iter().enumerate() {
            groups.entry(l).or_default().push(r as u32);
        }
        if groups.len() == 1 {
            let x = emb.narrow(1, 0, lens[0])?;
            let x = if self.config.reverse_source { reverse_time(&x)? } else { x };
            return Ok(self.encoder.forward_from(&x, None)?.1);
        }
        let (mut hs, mut cs, mut order) = (vec![], vec![], vec![]);
        for (l, rows) in groups {
            let idx = Tensor::from_vec(rows.clone(), rows.len(), src.device())?;
            let x = emb.index_select(&idx, 0)?.narrow(1, 0, l)?;
            let x = if self.config.reverse_source { reverse_time(&x)? } else { x };
            let (_, st) = self.encoder.forward_from(&x, None)?;
            hs.push(st.h);
            cs.extend(st.c);
            order.extend(rows);
        }
        // order[k] is the batch row of the k-th stacked state; invert it to put rows back in place.
        let mut inverse = vec![0u32; b];
        for (k, &r) in order.iter().enumerate() {
            inverse[r as usize] = k as u32;
        }
        let inverse = Tensor::from_vec(inverse, b, src.device())?;
        let h = Tensor::cat(&hs, 0)?.index_select(&inverse, 0)?;
        let c = if cs.is_empty() { None } else { Some(Tensor::cat(&cs, 0)?.index_select(&inverse, 0)?) };
        Ok(RecurrentState { h, c })
    }

    /// The encoder's summary of each source, `[B, H]`: its final output `h_m` (the vector Cho et al. project in
    /// their figures of phrase representations).
    pub fn summary(&self, src: &Tensor, lens: &[usize]) -> Result<Tensor> {
        Ok(self.encode(src, lens)?.h)
    }

    /// The decoder's starting state for sources `src` of lengths `lens`: what [`crate::layers::greedy_decode`]
    /// and [`crate::layers::beam_search`] start from.
    pub fn start_state(&self, src: &Tensor, lens: &[usize]) -> Result<Seq2SeqState> {
        let rnn = self.encode(src, lens)?;
        Ok(Seq2SeqState { context: rnn.h.clone(), rnn })
    }

    /// The decoder's input at each step: the previous token's embedding, and `c` with `feed_context`.
    fn decoder_input(&self, prev: &Tensor, context: &Tensor) -> Result<Tensor> {
        let e = self.tgt_emb.forward(prev)?; // [B, T, E]
        if !self.config.feed_context {
            return Ok(e);
        }
        let (b, t, _) = e.dims3()?;
        let c = context.unsqueeze(1)?.broadcast_as((b, t, self.config.hidden))?;
        Tensor::cat(&[&e, &c], 2)
    }

    /// Teacher-forced logits `[B, T, V]` for decoder inputs `tgt_in` (`[B, T]`, `<s> y …`) from `state`.
    pub fn decode_teacher_forced(&self, tgt_in: &Tensor, state: &Seq2SeqState) -> Result<Tensor> {
        let x = self.decoder_input(tgt_in, &state.context)?;
        // Padding after a row's end is read too, but only after its last real step, so it changes nothing the
        // loss looks at (the mask drops those positions).
        let (hs, _) = self.decoder.forward_from(&x, Some(&state.rnn))?;
        self.out.forward(&hs)
    }

    /// Teacher-forced logits `[B, T, V]` for sources `src` (`[B, S]`, lengths `lens`) and decoder inputs `tgt_in`.
    pub fn forward_pairs(&self, src: &Tensor, lens: &[usize], tgt_in: &Tensor) -> Result<Tensor> {
        self.decode_teacher_forced(tgt_in, &self.start_state(src, lens)?)
    }
}

impl ModuleT for Seq2Seq {
    /// Logits `[B, T, V]` for a packed batch `x` (`[B, 2, L]`, see [`crate::data::pairs::SeqPairs::packed`]).
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let (src, _mask, lens, tgt_in) = unpack_inputs(x).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        self.forward_pairs(&src, &lens, &tgt_in)
    }
}

impl StepDecoder for Seq2Seq {
    type State = Seq2SeqState;

    fn step(&self, prev: &Tensor, state: &Seq2SeqState) -> Result<(Tensor, Seq2SeqState)> {
        let x = self.decoder_input(&prev.unsqueeze(1)?, &state.context)?; // [B, 1, I]
        let (h, rnn) = self.decoder.forward_from(&x, Some(&state.rnn))?;
        Ok((self.out.forward(&h.squeeze(1)?)?, Seq2SeqState { rnn, context: state.context.clone() }))
    }

    fn select_rows(&self, state: &Seq2SeqState, rows: &Tensor) -> Result<Seq2SeqState> {
        // index_select needs a contiguous source; the fused layers' states are often views of a larger output.
        let pick = |t: &Tensor| t.contiguous()?.index_select(rows, 0);
        Ok(Seq2SeqState {
            rnn: RecurrentState { h: pick(&state.rnn.h)?, c: state.rnn.c.as_ref().map(pick).transpose()? },
            context: pick(&state.context)?,
        })
    }

    fn batch_size(&self, state: &Seq2SeqState) -> usize {
        state.context.dims()[0]
    }

    fn device(&self) -> Device {
        self.tgt_emb.embeddings().device().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::pairs::{SeqPairs, Vocab, PAD};
    use crate::fast::testing::assert_close;
    use crate::init::seeded;
    use candle_core::DType;

    fn model(cell: Cell, reverse: bool, feed: bool) -> (candle_nn::VarMap, Seq2Seq) {
        let (vars, vb) = seeded(3, DType::F32, &crate::device::test_device());
        let cfg = Seq2SeqConfig {
            src_vocab: 8,
            tgt_vocab: 7,
            embed: 5,
            hidden: 6,
            cell,
            reverse_source: reverse,
            feed_context: feed,
        };
        (vars, Seq2Seq::new(cfg, vb).unwrap())
    }

    #[test]
    fn padding_does_not_change_a_sources_encoding() -> crate::Result<()> {
        let dev = crate::device::test_device();
        for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
            for reverse in [false, true] {
                let (_v, m) = model(cell, reverse, false);
                let alone = Tensor::new(&[[3u32, 4, 5]], &dev)?;
                let a = m.encode(&alone, &[3])?;
                let batch = Tensor::new(&[[6u32, 6, 6, 6, 6], [3, 4, 5, PAD, PAD], [7, PAD, PAD, PAD, PAD]], &dev)?;
                let b = m.encode(&batch, &[5, 3, 1])?;
                let what = format!("{cell:?} reverse {reverse}");
                assert_close(&b.h.narrow(0, 1, 1)?, &a.h, &what)?;
                if let (Some(bc), Some(ac)) = (&b.c, &a.c) {
                    assert_close(&bc.narrow(0, 1, 1)?, ac, &what)?;
                }
                // By hand: the encoder over the embedded tokens in reading order.
                let toks = if reverse { vec![5u32, 4, 3] } else { vec![3u32, 4, 5] };
                let x = m.src_emb.forward(&Tensor::new(toks, &dev)?.unsqueeze(0)?)?;
                assert_close(&m.encoder.forward_from(&x, None)?.1.h, &a.h, &what)?;
                assert!(m.encode(&alone, &[4]).is_err());
            }
        }
        Ok(())
    }

    #[test]
    fn teacher_forced_logits_match_stepwise_decoding() -> crate::Result<()> {
        let dev = crate::device::test_device();
        let v = Vocab::new(["a", "b", "c", "d"])?;
        let pairs = SeqPairs::new(vec![vec![3, 4, 6], vec![5]], vec![vec![4, 4, 3], vec![6]], v.clone(), v)?;
        for (cell, feed) in [(Cell::Lstm, true), (Cell::Gru, false), (Cell::Rnn, true)] {
            let (_v, m) = model(cell, true, feed);
            let b = pairs.batch(&[0, 1], &dev)?;
            let forced = m.forward_pairs(&b.src, &b.src_lens, &b.tgt_in)?;
            let packed = pairs.packed(&[0, 1], &dev)?;
            assert_close(&m.forward_t(&packed.x, false)?, &forced, "packed")?;
            let mut state = m.start_state(&b.src, &b.src_lens)?;
            for t in 0..b.tgt_in.dims()[1] {
                let (logits, next) = m.step(&b.tgt_in.narrow(1, t, 1)?.squeeze(1)?, &state)?;
                assert_close(&logits, &forced.narrow(1, t, 1)?.squeeze(1)?, &format!("{cell:?} step {t}"))?;
                state = next;
            }
            // select_rows picks and repeats rows of every part of the state.
            let s0 = m.start_state(&b.src, &b.src_lens)?;
            let picked = m.select_rows(&s0, &Tensor::new(&[1u32, 1, 0], &dev)?)?;
            assert_eq!(m.batch_size(&picked), 3);
            assert_close(&picked.rnn.h.narrow(0, 2, 1)?, &s0.rnn.h.narrow(0, 0, 1)?, "select")?;
        }
        Ok(())
    }

    #[test]
    fn mismatched_parts_are_refused_naming_the_sizes() {
        let (_v, vb) = seeded(0, DType::F32, &crate::device::test_device());
        let cfg = Seq2SeqConfig { embed: 4, hidden: 8, ..Default::default() };
        let enc = Cell::Lstm.build(4, 8, vb.pp("e")).unwrap();
        let dec = Cell::Gru.build(4, 8, vb.pp("d")).unwrap();
        let msg = Seq2Seq::from_parts(enc, dec, cfg, vb.pp("m")).unwrap_err().to_string();
        assert!(msg.contains("same kind of state"), "{msg}");
    }
}
