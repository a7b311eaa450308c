//! What every encoder-decoder shares: the masked sequence loss of teacher forcing, and the two ways to read a
//! sequence out of a trained decoder, greedy and beam search.
//!
//! A decoder models `p(y | x) = Π_t p(y_t | y_<t, x)`. Trained with *teacher forcing*, it sees the true prefix
//! `y_<t` at every step and is scored by the cross-entropy of each true token, averaged over the real (unpadded)
//! tokens of the batch:
//!
//! ```text
//! L = − Σ_{b,t} m_bt log p(y_bt | y_b,<t, x_b) / Σ_{b,t} m_bt        m_bt = 1 for a real token, 0 for padding
//! ```
//!
//! At test time there is no true prefix. Greedy decoding takes the most likely token at each step and feeds it
//! back; beam search (Sutskever, Vinyals & Le 2014, section 3.2; <https://arxiv.org/abs/1409.3215>) keeps the
//! `K` most likely prefixes instead, scored by their summed log-probability, and returns the best complete one,
//! optionally divided by the length penalty of Wu et al. 2016 (<https://arxiv.org/abs/1609.08144>, section 7),
//! `lp(n) = ((5 + n) / 6)^α`, so that long outputs are not lost merely for having more factors below 1.

use candle_core::{DType, Device, Result, Tensor};

use crate::data::pairs::{BOS, EOS, PAD};

/// One step of an autoregressive decoder.
pub trait StepDecoder {
    /// What the decoder carries from step to step (recurrent state, the encoder's summary, attention memory).
    type State;
    /// Logits `[B, V]` for the next token given the previous tokens `prev` `[B]` (u32) and the state, and the
    /// state after the step.
    fn step(&self, prev: &Tensor, state: &Self::State) -> Result<(Tensor, Self::State)>;
    /// The state with its batch rows picked (and repeated) by `rows` `[B']` (u32): beam search reorders with it.
    fn select_rows(&self, state: &Self::State, rows: &Tensor) -> Result<Self::State>;
    /// The number of rows `B` of `state` ([`beam_search`] learns the batch size from it).
    fn batch_size(&self, state: &Self::State) -> usize;
    /// The device the decoder's inputs go to.
    fn device(&self) -> Device;
}

/// Log-softmax of each row of `[B, V]` logits, on the CPU in f64, with [`PAD`] and [`BOS`] made impossible: a
/// decoder never emits them.
fn log_probs(logits: &Tensor) -> Result<Vec<Vec<f64>>> {
    let rows = logits.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            for id in [PAD, BOS] {
                if let Some(v) = r.get_mut(id as usize) {
                    *v = f64::NEG_INFINITY;
                }
            }
            let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + r.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            r.iter().map(|v| v - lse).collect()
        })
        .collect())
}

/// The first index of the largest value (ties go to the lower id, as `argmax` does).
fn argmax(row: &[f64]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Greedy decoding: starting from [`BOS`], feed back the most likely token (never [`PAD`] or [`BOS`]) until each
/// row emits [`EOS`] or `max_len` tokens were chosen. Returns each row's tokens, the `EOS` left out.
///
/// ```
/// use dlhist::layers::{greedy_decode, StepDecoder};
/// use dlhist::prelude::*;
/// /// Counts up from the previous token: 3, 4, 5, then EOS.
/// struct Counter;
/// impl StepDecoder for Counter {
///     type State = ();
///     fn step(&self, prev: &Tensor, _: &()) -> candle_core::Result<(Tensor, ())> {
///         let rows: Vec<Vec<f32>> = prev.to_vec1::<u32>()?.iter().map(|&p| {
///             let next = if p == 1 { 3 } else if p >= 5 { 2 } else { p + 1 };
///             (0..6).map(|v| if v == next { 1.0 } else { 0.0 }).collect()
///         }).collect();
///         Ok((Tensor::new(rows, prev.device())?, ()))
///     }
///     fn select_rows(&self, _: &(), _: &Tensor) -> candle_core::Result<()> { Ok(()) }
///     fn batch_size(&self, _: &()) -> usize { 1 }
///     fn device(&self) -> Device { Device::Cpu }
/// }
/// assert_eq!(greedy_decode(&Counter, (), 2, 10, &Device::Cpu)?, vec![vec![3, 4, 5]; 2]);
/// assert_eq!(greedy_decode(&Counter, (), 1, 2, &Device::Cpu)?, vec![vec![3, 4]]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn greedy_decode<D: StepDecoder>(
    dec: &D,
    state: D::State,
    batch: usize,
    max_len: usize,
    dev: &Device,
) -> Result<Vec<Vec<u32>>> {
    let mut out = vec![vec![]; batch];
    let mut done = vec![false; batch];
    let mut prev = vec![BOS; batch];
    let mut state = state;
    for _ in 0..max_len {
        if done.iter().all(|&d| d) {
            break;
        }
        let (logits, next) = dec.step(&Tensor::from_vec(prev.clone(), batch, dev)?, &state)?;
        if logits.dims() != [batch, logits.dims().get(1).copied().unwrap_or(0)] {
            candle_core::bail!("greedy_decode: the decoder's logits are {:?}; expected [{batch}, V]", logits.dims())
        }
        state = next;
        for (b, row) in log_probs(&logits)?.iter().enumerate() {
            let tok = argmax(row);
            prev[b] = tok;
            if done[b] {
                continue;
            }
            if tok == EOS {
                done[b] = true;
            } else {
                out[b].push(tok);
            }
        }
    }
    Ok(out)
}

/// Wu et al.'s length penalty `((5 + n) / 6)^α` for `n` decisions; 1 for every `n` when `α = 0`.
pub fn length_penalty(n: usize, alpha: f64) -> f64 {
    ((5.0 + n as f64) / 6.0).powf(alpha)
}

/// A hypothesis of beam search: its tokens (no `BOS`, no `EOS`), summed log-probability, and its row in the
/// decoder's state.
#[derive(Debug, Clone)]
struct Hyp {
    tokens: Vec<u32>,
    score: f64,
    row: usize,
}

/// Beam search over `state` (a batch of `B` rows): for each row, the `beam` most likely prefixes are extended by
/// every token, the best `beam` continuations kept, and a prefix that emits [`EOS`] (or reaches `max_len`
/// tokens) is complete. Each row returns the complete hypothesis of highest `log p / lp(n)` ([`length_penalty`]
/// with `α = length_penalty`, `n` the number of decisions, the `EOS` included), its tokens without the `EOS`.
/// A row stops searching when `beam` hypotheses are complete and no open one can still beat the best.
///
/// With `beam = 1` and `α = 0` this is [`greedy_decode`]; with a beam as large as the number of prefixes it is
/// exhaustive search.
///
/// ```
/// use dlhist::layers::{beam_search, greedy_decode, StepDecoder};
/// use dlhist::prelude::*;
/// /// First step: token 3 (p .6) or 4 (p .4). After 3: EOS (p .5) or 3 (p .5); after 4: EOS (p 1).
/// struct Trap;
/// impl StepDecoder for Trap {
///     type State = ();
///     fn step(&self, prev: &Tensor, _: &()) -> candle_core::Result<(Tensor, ())> {
///         let probs: Vec<Vec<f32>> = prev.to_vec1::<u32>()?.iter().map(|&p| match p {
///             1 => vec![0., 0., 1e-9, 0.6, 0.4],
///             3 => vec![0., 0., 0.5, 0.5, 1e-9],
///             _ => vec![0., 0., 1.0, 1e-9, 1e-9],
///         }).collect();
///         Ok((Tensor::new(probs, prev.device())?.log()?, ()))
///     }
///     fn select_rows(&self, _: &(), _: &Tensor) -> candle_core::Result<()> { Ok(()) }
///     fn batch_size(&self, _: &()) -> usize { 1 }
///     fn device(&self) -> Device { Device::Cpu }
/// }
/// // Greedy takes 3 (p .6) and ends with p .3; the beam finds 4 </s> with p .4.
/// assert_eq!(greedy_decode(&Trap, (), 1, 5, &Device::Cpu)?, vec![vec![3]]);
/// assert_eq!(beam_search(&Trap, (), 2, 5, 0.0)?, vec![vec![4]]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn beam_search<D: StepDecoder>(
    dec: &D,
    state: D::State,
    beam: usize,
    max_len: usize,
    length_penalty_alpha: f64,
) -> Result<Vec<Vec<u32>>> {
    if beam == 0 {
        candle_core::bail!("beam_search: the beam must hold at least one hypothesis")
    }
    let lp = |n: usize| length_penalty(n, length_penalty_alpha);
    let batch = dec.batch_size(&state);
    let dev = dec.device();
    // One open hypothesis per row to start with (the empty prefix, at state row b), so the first step does not
    // fill the beam with copies of one prefix.
    let mut alive: Vec<Vec<Hyp>> = (0..batch).map(|b| vec![Hyp { tokens: vec![], score: 0.0, row: b }]).collect();
    let mut finished: Vec<Vec<(f64, Vec<u32>)>> = vec![vec![]; batch];
    let mut prev: Vec<u32> = vec![BOS; batch];
    let mut state = state;
    for _ in 0..max_len {
        if alive.iter().all(Vec::is_empty) {
            break;
        }
        let (logits, next) = dec.step(&Tensor::from_vec(prev.clone(), prev.len(), &dev)?, &state)?;
        if logits.dims().first() != Some(&prev.len()) || logits.rank() != 2 {
            candle_core::bail!(
                "beam_search: the decoder's logits are {:?}; expected [{}, V]",
                logits.dims(),
                prev.len()
            )
        }
        let lps = log_probs(&logits)?;
        let (mut rows, mut new_prev) = (vec![], vec![]);
        for b in 0..batch {
            if alive[b].is_empty() {
                continue;
            }
            // Every extension of every open prefix, best first; a stable sort keeps ties in (prefix, token) order,
            // so with one hypothesis the choice is greedy's argmax.
            let mut cands: Vec<(f64, usize, u32)> = vec![];
            for (k, h) in alive[b].iter().enumerate() {
                for (v, lpv) in lps[h.row].iter().enumerate() {
                    if lpv.is_finite() {
                        cands.push((h.score + lpv, k, v as u32));
                    }
                }
            }
            cands.sort_by(|x, y| y.0.total_cmp(&x.0));
            let mut open = vec![];
            for (score, k, v) in cands {
                if open.len() == beam {
                    break;
                }
                let mut tokens = alive[b][k].tokens.clone();
                if v == EOS {
                    finished[b].push((score / lp(tokens.len() + 1), tokens));
                    continue;
                }
                tokens.push(v);
                if tokens.len() == max_len {
                    // Out of steps: complete without an end.
                    finished[b].push((score / lp(tokens.len()), tokens));
                    continue;
                }
                open.push(Hyp { tokens, score, row: alive[b][k].row });
            }
            // Done when `beam` hypotheses are complete and no open prefix can still beat the best of them: its
            // log-probability only falls, and the penalty divides it by at most lp(max_len).
            let best_done = finished[b].iter().map(|f| f.0).fold(f64::NEG_INFINITY, f64::max);
            let best_open = open.iter().map(|h| h.score).fold(f64::NEG_INFINITY, f64::max);
            let bound = if best_open < 0.0 { best_open / lp(max_len) } else { best_open };
            if finished[b].len() >= beam && best_done >= bound {
                open.clear();
            }
            for h in open.iter_mut() {
                rows.push(h.row as u32);
                new_prev.push(*h.tokens.last().expect("an open hypothesis has a token"));
                h.row = rows.len() - 1;
            }
            alive[b] = open;
        }
        if rows.is_empty() {
            break;
        }
        state = dec.select_rows(&next, &Tensor::from_vec(rows.clone(), rows.len(), &dev)?)?;
        prev = new_prev;
    }
    Ok(finished
        .into_iter()
        .map(|f| {
            // The first of equal scores: the one found first.
            let mut best: Option<(f64, Vec<u32>)> = None;
            for (s, toks) in f {
                if best.as_ref().is_none_or(|(bs, _)| s > *bs) {
                    best = Some((s, toks));
                }
            }
            best.map(|(_, t)| t).unwrap_or_default()
        })
        .collect())
}

/// Softmax cross-entropy of `logits` `[B, T, V]` against `targets` `[B, T]` (u32), averaged over the positions
/// where `mask` `[B, T]` is 1 (padding has 0): the teacher-forced loss of a sequence decoder, through
/// [`super::cross_entropy`] (and its fused kernel) on the real positions only.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// // Two rows, the second padded after one token: only three positions count.
/// let logits = Tensor::zeros((2, 2, 4), DType::F32, &dev)?;
/// let targets = Tensor::new(&[[3u32, 2], [2, 0]], &dev)?;
/// let mask = Tensor::new(&[[1f32, 1.], [1., 0.]], &dev)?;
/// let l = dlhist::layers::sequence_cross_entropy(&logits, &targets, &mask)?.to_scalar::<f32>()?;
/// assert!((l - 4f32.ln()).abs() < 1e-6); // uniform over 4 tokens
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn sequence_cross_entropy(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (b, t, _) = logits.dims3().map_err(|_| {
        candle_core::Error::Msg(format!("sequence_cross_entropy expects logits [B, T, V]; got {:?}", logits.dims()))
    })?;
    if targets.dims() != [b, t] || mask.dims() != [b, t] {
        candle_core::bail!(
            "sequence_cross_entropy: logits {:?} need targets and mask [{b}, {t}]; got {:?} and {:?}",
            logits.dims(),
            targets.dims(),
            mask.dims()
        )
    }
    let (rows, ys) = real_positions(logits, targets, mask)?;
    super::cross_entropy(&rows, &ys)
}

/// The logits `[N, V]` and targets `[N]` of the `N` real (mask 1) positions of a `[B, T, V]` batch (shapes
/// already checked).
fn real_positions(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<(Tensor, Tensor)> {
    let (b, t, v) = logits.dims3()?;
    let m = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    if let Some(bad) = m.iter().find(|&&x| x != 0.0 && x != 1.0) {
        candle_core::bail!("sequence_cross_entropy: the mask holds {bad}; it must be 1 (real token) or 0 (padding)")
    }
    let keep: Vec<u32> = m.iter().enumerate().filter(|(_, &x)| x == 1.0).map(|(i, _)| i as u32).collect();
    if keep.is_empty() {
        candle_core::bail!("sequence_cross_entropy: the mask has no real token; nothing to average")
    }
    // Gathering the real positions first means padding costs nothing in the loss and the mean is over real
    // tokens exactly, with the one (fused) softmax cross-entropy of the library.
    let idx = Tensor::from_vec(keep, m.iter().filter(|&&x| x == 1.0).count(), logits.device())?;
    let rows = logits.reshape((b * t, v))?.index_select(&idx, 0)?;
    let ys = targets.flatten_all()?.index_select(&idx.to_device(targets.device())?, 0)?;
    Ok((rows, ys))
}

/// [`sequence_cross_entropy`] against *smoothed* labels (Szegedy et al. 2016, section 7,
/// <https://arxiv.org/abs/1512.00567>; the Transformer trains with `ε = 0.1`): the target distribution puts
/// `1 − ε` on the true token and spreads `ε` evenly over all `V` tokens, so
///
/// ```text
/// L = (1 − ε) · (−log p(y)) + ε · (1/V) Σ_v (−log p(v))          averaged over the real positions
/// ```
///
/// The second term punishes a distribution that puts nearly nothing on the other tokens: the model is kept from
/// becoming arbitrarily confident, which hurts perplexity and, in the paper, helps BLEU. `ε = 0` is
/// [`sequence_cross_entropy`].
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let logits = Tensor::new(&[[[2f32, 0., 0., 0.]]], &dev)?;
/// let (y, mask) = (Tensor::new(&[[0u32]], &dev)?, Tensor::new(&[[1f32]], &dev)?);
/// let l = dlhist::layers::smoothed_sequence_cross_entropy(&logits, &y, &mask, 0.1)?.to_scalar::<f32>()?;
/// let lse = (2f32.exp() + 3.0).ln();                     // log Σ exp
/// let want = 0.9 * (lse - 2.0) + 0.1 * (lse - 0.5);      // mean logit 0.5
/// assert!((l - want).abs() < 1e-5);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn smoothed_sequence_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
    epsilon: f64,
) -> Result<Tensor> {
    if !(0.0..1.0).contains(&epsilon) {
        candle_core::bail!("smoothed_sequence_cross_entropy: epsilon must be in [0, 1); got {epsilon}")
    }
    let nll = sequence_cross_entropy(logits, targets, mask)?;
    if epsilon == 0.0 {
        return Ok(nll);
    }
    let (rows, _) = real_positions(logits, targets, mask)?;
    // (1/V) Σ_v −log p(v), averaged over the N rows.
    let uniform =
        candle_nn::ops::log_softmax(&rows.to_dtype(DType::F32)?, candle_core::D::Minus1)?.mean_all()?.neg()?;
    (nll * (1.0 - epsilon))? + (uniform * epsilon)?
}

/// The loss [`crate::train::fit`] trains an encoder-decoder with on packed sequence pairs
/// ([`crate::data::pairs::SeqPairs::packed`]): the model's logits `[B, T, V]` against `y` `[B, L]` (`L ≥ T`, the
/// target `y </s>` padded with [`PAD`]), [`sequence_cross_entropy`] over the non-padding targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SequenceCrossEntropy;

impl crate::train::Loss for SequenceCrossEntropy {
    fn compute(&self, output: &Tensor, target: &Tensor) -> crate::Result<Tensor> {
        let (y, mask) = packed_targets(output, target, "SequenceCrossEntropy")?;
        Ok(sequence_cross_entropy(output, &y, &mask)?)
    }
}

/// The targets `[B, T]` for logits `[B, T, V]` from packed targets `[B, L]` (`L ≥ T`), and their 0/1 mask.
fn packed_targets(output: &Tensor, target: &Tensor, who: &str) -> crate::Result<(Tensor, Tensor)> {
    let (b, t, _) = output
        .dims3()
        .map_err(|_| crate::Error::Invalid(format!("{who} expects logits [B, T, V]; got {:?}", output.dims())))?;
    let (tb, l) = target
        .dims2()
        .map_err(|_| crate::Error::Invalid(format!("{who} expects targets [B, L]; got {:?}", target.dims())))?;
    if tb != b || l < t {
        return Err(crate::Error::Invalid(format!(
            "{who}: logits {:?} need targets [{b}, L >= {t}]; got {:?}",
            output.dims(),
            target.dims()
        )));
    }
    let y = target.narrow(1, 0, t)?.contiguous()?;
    let mask = y.ne(PAD)?.to_dtype(DType::F32)?;
    Ok((y, mask))
}

/// The share of real target tokens a teacher-forced pass gets right: logits `[B, T, V]` against packed targets
/// `[B, L]` (`L ≥ T`, padded with [`PAD`], as [`SequenceCrossEntropy`] takes them), argmax against target at every
/// non-padding position. Cheap to track during training; greedy decoding is the stricter test (one early
/// mistake shifts everything after it).
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let logits = Tensor::new(&[[[0f32, 0., 0., 1.], [0., 0., 1., 0.]], [[0., 0., 1., 0.], [1., 0., 0., 0.]]], &dev)?;
/// let y = Tensor::new(&[[3u32, 3], [2, 0]], &dev)?;        // the second row padded after one token
/// assert!((dlhist::layers::teacher_forced_accuracy(&logits, &y)? - 2.0 / 3.0).abs() < 1e-12);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn teacher_forced_accuracy(logits: &Tensor, target: &Tensor) -> crate::Result<f64> {
    let (y, mask) = packed_targets(logits, target, "teacher_forced_accuracy")?;
    let hit = logits.argmax(candle_core::D::Minus1)?.eq(&y)?.to_dtype(DType::F32)?;
    let real = mask.sum_all()?.to_scalar::<f32>()? as f64;
    Ok((hit * &mask)?.sum_all()?.to_scalar::<f32>()? as f64 / real.max(1.0))
}

/// [`SequenceCrossEntropy`] with label smoothing `ε` ([`smoothed_sequence_cross_entropy`]), for
/// [`crate::train::fit`]. The loss `fit` reports is then the smoothed one, which stays above the plain
/// cross-entropy even for a perfect model.
///
/// ```
/// use dlhist::layers::SmoothedSequenceCrossEntropy;
/// let loss = SmoothedSequenceCrossEntropy { epsilon: 0.1 }; // the Transformer's ε_ls
/// let _for_fit: dlhist::train::SharedLoss = loss.into();
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothedSequenceCrossEntropy {
    /// The share `ε` of the target distribution spread evenly over the vocabulary.
    pub epsilon: f64,
}

impl crate::train::Loss for SmoothedSequenceCrossEntropy {
    fn compute(&self, output: &Tensor, target: &Tensor) -> crate::Result<Tensor> {
        let (y, mask) = packed_targets(output, target, "SmoothedSequenceCrossEntropy")?;
        Ok(smoothed_sequence_cross_entropy(output, &y, &mask, self.epsilon)?)
    }
}

crate::shared_loss_from!(SequenceCrossEntropy, SmoothedSequenceCrossEntropy);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    /// A hand-made decoder: the next token's logits are a fixed random table indexed by (step, previous token),
    /// the state being the step count of each row. Rows differ by an offset in the table, so batching and row
    /// selection are exercised.
    struct Table {
        logits: Vec<Vec<Vec<f32>>>, // [step][prev token + 5 * row offset][V]
        v: usize,
    }

    impl Table {
        fn new(steps: usize, v: usize, seed: u64, scale: f32) -> Self {
            let mut rng = Rng::new(seed);
            let logits = (0..steps).map(|_| (0..v * 5).map(|_| rng.normal_vec(v, 0.0, scale)).collect()).collect();
            Table { logits, v }
        }
        /// log p(token | step, prev, row) as `log_probs` computes it.
        fn lp(&self, step: usize, prev: u32, row: usize) -> Vec<f64> {
            let l = Tensor::new(self.logits[step][prev as usize + self.v * row].clone(), &crate::device::test_device())
                .unwrap();
            log_probs(&l.unsqueeze(0).unwrap()).unwrap().remove(0)
        }
    }

    impl StepDecoder for Table {
        /// (step, row of the original batch) per current row.
        type State = Vec<(usize, usize)>;
        fn step(&self, prev: &Tensor, state: &Self::State) -> Result<(Tensor, Self::State)> {
            let prev = prev.to_vec1::<u32>()?;
            assert_eq!(prev.len(), state.len());
            let rows: Vec<Vec<f32>> =
                prev.iter().zip(state).map(|(&p, &(t, r))| self.logits[t][p as usize + self.v * r].clone()).collect();
            Ok((Tensor::new(rows, &crate::device::test_device())?, state.iter().map(|&(t, r)| (t + 1, r)).collect()))
        }
        fn select_rows(&self, state: &Self::State, rows: &Tensor) -> Result<Self::State> {
            Ok(rows.to_vec1::<u32>()?.iter().map(|&i| state[i as usize]).collect())
        }
        fn batch_size(&self, state: &Self::State) -> usize {
            state.len()
        }
        fn device(&self) -> Device {
            crate::device::test_device()
        }
    }

    /// The best complete sequence by exhaustive enumeration, scored as beam_search scores.
    fn brute_force(dec: &Table, row: usize, max_len: usize, alpha: f64) -> (f64, Vec<u32>) {
        let mut best = (f64::NEG_INFINITY, vec![]);
        // Depth-first over prefixes.
        let mut stack = vec![(vec![], 0.0f64)];
        while let Some((prefix, score)) = stack.pop() {
            let prev = *prefix.last().unwrap_or(&BOS);
            let lp = dec.lp(prefix.len(), prev, row);
            for (v, l) in lp.iter().enumerate() {
                if !l.is_finite() {
                    continue;
                }
                let s = score + l;
                let mut p: Vec<u32> = prefix.clone();
                if v as u32 == EOS {
                    let norm = s / length_penalty(p.len() + 1, alpha);
                    if norm > best.0 {
                        best = (norm, p);
                    }
                    continue;
                }
                p.push(v as u32);
                if p.len() == max_len {
                    let norm = s / length_penalty(p.len(), alpha);
                    if norm > best.0 {
                        best = (norm, p);
                    }
                } else {
                    stack.push((p, s));
                }
            }
        }
        best
    }

    fn score(dec: &Table, row: usize, toks: &[u32], max_len: usize, alpha: f64) -> f64 {
        let (mut s, mut prev) = (0.0, BOS);
        for (t, &tok) in toks.iter().enumerate() {
            s += dec.lp(t, prev, row)[tok as usize];
            prev = tok;
        }
        let n = if toks.len() == max_len {
            toks.len()
        } else {
            s += dec.lp(toks.len(), prev, row)[EOS as usize];
            toks.len() + 1
        };
        s / length_penalty(n, alpha)
    }

    #[test]
    fn a_wide_beam_is_exhaustive_search_and_beam_one_is_greedy() -> Result<()> {
        // V = 6: PAD, BOS, EOS and three tokens; max_len 4: 3^4 = 81 open prefixes at most.
        for seed in 0..6 {
            let dec = Table::new(5, 6, seed, 2.0);
            let start: Vec<(usize, usize)> = (0..3).map(|r| (0, r)).collect();
            for alpha in [0.0, 0.6, 1.0] {
                let wide = beam_search(&dec, start.clone(), 81, 4, alpha)?;
                for (row, got) in wide.iter().enumerate() {
                    let (best, want) = brute_force(&dec, row, 4, alpha);
                    let mine = score(&dec, row, got, 4, alpha);
                    assert!(
                        (mine - best).abs() < 1e-9,
                        "seed {seed} α {alpha} row {row}: {got:?} {mine} vs {want:?} {best}"
                    );
                }
                // Narrow beams are not exact: each answer is a complete sequence scoring at most the optimum.
                for k in [1, 2, 3] {
                    for (row, got) in beam_search(&dec, start.clone(), k, 4, alpha)?.iter().enumerate() {
                        assert!(score(&dec, row, got, 4, alpha) <= brute_force(&dec, row, 4, alpha).0 + 1e-9);
                    }
                }
            }
            let greedy = greedy_decode(&dec, start.clone(), 3, 4, &crate::device::test_device())?;
            assert_eq!(beam_search(&dec, start.clone(), 1, 4, 0.0)?, greedy, "seed {seed}");
        }
        Ok(())
    }

    #[test]
    fn beam_search_beats_greedy_somewhere() -> Result<()> {
        // Over random tables with flat distributions, a beam of 3 finds a likelier sequence than greedy on some,
        // and on these tables never a less likely one (not a theorem: a beam can lose greedy's path).
        let (mut better, mut worse) = (0, 0);
        for seed in 0..40 {
            let dec = Table::new(5, 6, 100 + seed, 1.0);
            let start = vec![(0usize, 0usize)];
            let g = &greedy_decode(&dec, start.clone(), 1, 4, &crate::device::test_device())?[0];
            let b = &beam_search(&dec, start.clone(), 3, 4, 0.0)?[0];
            let (sg, sb) = (score(&dec, 0, g, 4, 0.0), score(&dec, 0, b, 4, 0.0));
            if sb > sg + 1e-12 {
                better += 1;
            } else if sb < sg - 1e-12 {
                worse += 1;
            }
        }
        assert!(better > 0 && worse == 0, "better {better}, worse {worse}");
        Ok(())
    }

    #[test]
    fn sequence_loss_is_the_mean_over_real_tokens_and_pads_get_no_gradient() -> crate::Result<()> {
        let dev = crate::device::test_device();
        let mut rng = Rng::new(3);
        let z = Var::from_tensor(&rng.normal_tensor((2, 3, 5), 0.0, 1.0, &dev)?)?;
        let y = Tensor::new(&[[3u32, 4, 2], [2, 0, 0]], &dev)?;
        let m = Tensor::new(&[[1f32, 1., 1.], [1., 0., 0.]], &dev)?;
        let l = sequence_cross_entropy(&z, &y, &m)?;
        // By hand: the mean of −log softmax over the four real positions.
        let zs = z.as_tensor().to_vec3::<f32>()?;
        let mut want = 0.0;
        for (b, t, c) in [(0, 0, 3), (0, 1, 4), (0, 2, 2), (1, 0, 2)] {
            let row: &Vec<f32> = &zs[b][t];
            let lse = row.iter().map(|v| (*v as f64).exp()).sum::<f64>().ln();
            want += lse - row[c] as f64;
        }
        want /= 4.0;
        assert!((l.to_scalar::<f32>()? as f64 - want).abs() < 1e-5);
        let g = l.backward()?.get(&z).unwrap().to_vec3::<f32>()?;
        assert!(g[1][1].iter().chain(&g[1][2]).all(|v| *v == 0.0));
        assert!(g[0][0].iter().any(|v| *v != 0.0));
        // The packed loss: targets wider than the logits, padding read from PAD.
        let packed = crate::train::Loss::compute(
            &SequenceCrossEntropy,
            &z,
            &Tensor::new(&[[3u32, 4, 2, 0], [2, 0, 0, 0]], &dev)?,
        )?;
        assert!((packed.to_scalar::<f32>()? - l.to_scalar::<f32>()?).abs() < 1e-7);
        assert!(sequence_cross_entropy(&z, &y, &(m.clone() * 0.5)?).is_err());
        assert!(sequence_cross_entropy(&z, &y.narrow(1, 0, 2)?, &m).unwrap_err().to_string().contains("[2, 3]"));
        Ok(())
    }
}
