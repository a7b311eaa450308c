//! Seeded generators for the synthetic sequence tasks of early recurrent-network papers.
//!
//! Recurrent nets were judged for a decade on small, made-up tasks whose difficulty is *how long*
//! something must be remembered, not how much. This module generates the ones section 03 replays:
//!
//! | generator | task | paper |
//! | --- | --- | --- |
//! | [`delayed_xor`] | output the XOR of two input bits seen `delay` steps ago | Williams & Zipser 1989 (RTRL), delay 2 |
//! | [`a_then_b`] | fire when a `b` arrives after an `a`, however long ago the `a` was | Williams & Zipser 1989 |
//! | [`oscillator`] | produce a sine wave with no input at all | Williams & Zipser 1989 |
//! | [`adding_problem`] | add the two marked numbers of a long sequence | Hochreiter & Schmidhuber 1997 (LSTM), experiment 4 |
//! | [`temporal_order`] | classify a sequence by the order of two far-apart symbols | Hochreiter & Schmidhuber 1997, experiment 6a |
//! | [`embedded_reber_string`], [`continual_reber`], [`parallel_reber_streams`] | predict the legal next symbols of embedded Reber strings, back to back with no reset | Gers, Schmidhuber & Cummins 2000 ("Learning to Forget") |
//!
//! The papers:
//! - R. J. Williams and D. Zipser, "A Learning Algorithm for Continually Running Fully Recurrent
//!   Neural Networks", Neural Computation 1(2), 1989. Its nets run *online*, on one stream that
//!   never restarts, so its tasks come as one [`Stream`].
//! - S. Hochreiter and J. Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8), 1997.
//!   Its tasks are sets of separate sequences scored at their last step, so they come as a
//!   [`Dataset`].
//! - F. A. Gers, J. Schmidhuber and F. Cummins, "Learning to Forget: Continual Prediction with
//!   LSTM", Neural Computation 12(10), 2000. Its task is a [`ReberStream`]: embedded Reber strings
//!   concatenated, so the net must learn on its own when one string ends and the next begins.
//!
//! Everything random is drawn from a [`Rng`]: the same seed gives the same data on every run.

use std::f64::consts::PI;

use candle_core::{Device, Tensor};

use super::Dataset;
use crate::rng::Rng;
use crate::{Error, Result};

// ---------------------------------------------------------------------------------------------
// Williams & Zipser 1989: one continually running stream.
// ---------------------------------------------------------------------------------------------

/// One continually running stream of inputs and targets, the setting of Williams & Zipser's
/// real-time recurrent learning: the net reads input `t`, is scored against target `t`, and
/// carries its state on to step `t + 1`; nothing ever resets it.
///
/// Inputs and targets are stored step by step (row-major `[steps, dim]`).
///
/// ```
/// use dlhist::prelude::*;
/// let s = dlhist::data::delayed_xor(100, 2, &mut Rng::new(0))?;
/// assert_eq!((s.steps, s.input_dim, s.target_dim, s.valid_from), (100, 2, 1, 2));
/// let bits = s.input(5);
/// let xor = (bits[0] != bits[1]) as u8 as f32;
/// assert_eq!(s.target(7), &[xor]); // the XOR of step 5's bits, two steps later
/// let (x, y) = s.to_tensors(&Device::Cpu)?;
/// assert_eq!((x.dims(), y.dims()), (&[1, 100, 2][..], &[1, 100, 1][..]));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// The inputs, `steps * input_dim` values: step `t` is `inputs[t * input_dim..(t + 1) * input_dim]`.
    pub inputs: Vec<f32>,
    /// The targets, `steps * target_dim` values, laid out like `inputs`.
    pub targets: Vec<f32>,
    /// The number of time steps.
    pub steps: usize,
    /// The number of input lines (0 for a task with no input, such as [`oscillator`]).
    pub input_dim: usize,
    /// The number of target lines.
    pub target_dim: usize,
    /// The first step whose target is defined. Targets before it are 0 placeholders (a delayed
    /// target has nothing to look back at yet) and must not be scored.
    pub valid_from: usize,
}

impl Stream {
    /// The inputs at step `t` (`input_dim` values).
    ///
    /// # Panics
    /// If `t >= steps`.
    ///
    /// ```
    /// let s = dlhist::data::a_then_b(50, 5, &mut dlhist::rng::Rng::new(1))?;
    /// assert_eq!(s.input(0).len(), 2);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn input(&self, t: usize) -> &[f32] {
        assert!(t < self.steps, "Stream::input({t}) on a stream of {} steps", self.steps);
        &self.inputs[t * self.input_dim..(t + 1) * self.input_dim]
    }

    /// The targets at step `t` (`target_dim` values).
    ///
    /// # Panics
    /// If `t >= steps`.
    ///
    /// ```
    /// let s = dlhist::data::oscillator(8, 8.0, 1.0)?;
    /// assert!((s.target(2)[0] - 1.0).abs() < 1e-6); // a quarter period: the crest
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn target(&self, t: usize) -> &[f32] {
        assert!(t < self.steps, "Stream::target({t}) on a stream of {} steps", self.steps);
        &self.targets[t * self.target_dim..(t + 1) * self.target_dim]
    }

    /// The stream as a batch of one sequence: inputs `[1, steps, input_dim]` and targets
    /// `[1, steps, target_dim]`, both f32 on `dev`. Score only steps `valid_from..`
    /// (`y.narrow(1, s.valid_from, s.steps - s.valid_from)`).
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// let s = dlhist::data::oscillator(30, 10.0, 0.5)?;
    /// let (x, y) = s.to_tensors(&Device::Cpu)?;
    /// assert_eq!(x.dims(), &[1, 30, 0]); // no input lines
    /// assert_eq!(y.dims(), &[1, 30, 1]);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn to_tensors(&self, dev: &Device) -> Result<(Tensor, Tensor)> {
        let x = Tensor::from_slice(&self.inputs, (1, self.steps, self.input_dim), dev)?;
        let y = Tensor::from_slice(&self.targets, (1, self.steps, self.target_dim), dev)?;
        Ok((x, y))
    }
}

/// A random bit as 0.0 or 1.0.
fn bit(rng: &mut Rng) -> f32 {
    rng.below(2) as f32
}

/// Williams & Zipser's delayed XOR: two input lines each carry a random bit at every step
/// (independent, 0 or 1 with probability 1/2), and the target at step `t` is the XOR of the two
/// bits of step `t - delay`. The paper uses `delay = 2`, so the net must both compute XOR (which
/// needs a hidden unit) and hold the answer for two steps.
///
/// Inputs `[bit 1, bit 2]` (`input_dim = 2`), one target line; `valid_from = delay`, because the first
/// `delay` steps have nothing to look back at (their targets are 0 and must not be scored).
/// Needs `steps > delay` so that at least one target is defined.
///
/// ```
/// use dlhist::prelude::*;
/// let s = dlhist::data::delayed_xor(1000, 2, &mut Rng::new(3))?;
/// let ones = s.targets[s.valid_from..].iter().filter(|&&y| y == 1.0).count();
/// assert!((400..600).contains(&ones)); // XOR of two fair bits is a fair bit
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn delayed_xor(steps: usize, delay: usize, rng: &mut Rng) -> Result<Stream> {
    if steps <= delay {
        return Err(Error::Invalid(format!(
            "delayed_xor needs more steps than the delay (so at least one target is defined): \
             pass steps > delay, got steps {steps} and delay {delay} (the paper uses delay 2)"
        )));
    }
    let inputs: Vec<f32> = (0..2 * steps).map(|_| bit(rng)).collect();
    let targets = (0..steps)
        .map(|t| match t.checked_sub(delay) {
            // Bits are exactly 0.0 or 1.0, so "differ" is XOR.
            Some(s) => (inputs[2 * s] != inputs[2 * s + 1]) as u8 as f32,
            None => 0.0,
        })
        .collect();
    Ok(Stream { inputs, targets, steps, input_dim: 2, target_dim: 1, valid_from: delay })
}

/// Share of the steps between an episode's first `a` and its `b` that carry another `a`.
const A_REPEAT_PROB: f32 = 0.25;

/// Williams & Zipser's simple sequence recognition: input lines `a` and `b`; the target is 1
/// exactly at a step where `b` is on and an `a` has been on since the last `b` (or since the
/// start), else 0. Any number of steps may separate the `a` from the `b`, so the net must latch
/// "an `a` happened" and release the latch at every `b`.
///
/// The stream is a chain of episodes, each ending with one `b` (cut at `steps`):
/// 1. a quiet lead-in of `q` steps (neither line on), `q` uniform in `0..=max_gap`;
/// 2. a gap `g` uniform in `1..=max_gap`;
/// 3. with probability 1/2 a *positive* episode: `a` at the first step after the lead-in, `b`
///    exactly `g` steps later, and each step in between carrying another `a` with probability
///    1/4 (repeated `a`s, which must not confuse the latch); the `b`'s target is 1.
///    Otherwise a *distractor*: the same timing with every `a` deleted, so the `b` arrives with
///    no `a` since the previous `b`, and its target is 0.
///
/// Because a distractor is a positive episode with its `a`s removed, when a `b` comes says
/// nothing about its target: only remembering the `a` does. About half the `b`s are positive,
/// and among them the gap from the first `a` after the previous `b` to the `b` is uniform over
/// `1..=max_gap`. At most one line is on at any step. Inputs are `[a, b]` (`input_dim = 2`), one
/// target line, `valid_from = 0`.
///
/// ```
/// use dlhist::prelude::*;
/// let s = dlhist::data::a_then_b(200, 6, &mut Rng::new(0))?;
/// let mut armed = false; // has an `a` come since the last `b`?
/// for t in 0..s.steps {
///     let (a, b) = (s.input(t)[0] == 1.0, s.input(t)[1] == 1.0);
///     assert_eq!(s.target(t)[0] == 1.0, b && armed);
///     armed = (armed || a) && !b;
/// }
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn a_then_b(steps: usize, max_gap: usize, rng: &mut Rng) -> Result<Stream> {
    if steps == 0 || max_gap == 0 {
        return Err(Error::Invalid(format!(
            "a_then_b needs steps > 0 and max_gap >= 1 (the longest a-to-b gap, in steps), \
             got steps {steps} and max_gap {max_gap}"
        )));
    }
    let mut inputs = vec![0.0f32; 2 * steps];
    let mut t = 0;
    while t < steps {
        let lead_in = rng.below(max_gap + 1);
        let gap = 1 + rng.below(max_gap);
        let positive = rng.below(2) == 1;
        let first_a = t + lead_in;
        for s in first_a..(first_a + gap).min(steps) {
            // The first a always; the steps before the b each with probability A_REPEAT_PROB.
            if positive && (s == first_a || rng.uniform() < A_REPEAT_PROB) {
                inputs[2 * s] = 1.0;
            }
        }
        let b_at = first_a + gap;
        if b_at < steps {
            inputs[2 * b_at + 1] = 1.0;
        }
        t = b_at + 1;
    }
    // Targets from the inputs by the task's rule, so they are right by definition whatever the
    // episodes looked like (a cut at `steps`, say).
    let mut targets = vec![0.0f32; steps];
    let mut armed = false;
    for (s, target) in targets.iter_mut().enumerate() {
        let (a, b) = (inputs[2 * s] == 1.0, inputs[2 * s + 1] == 1.0);
        if b {
            *target = armed as u8 as f32;
            armed = false;
        } else if a {
            armed = true;
        }
    }
    Ok(Stream { inputs, targets, steps, input_dim: 2, target_dim: 1, valid_from: 0 })
}

/// A net with no input that must produce a periodic signal, the setting of Williams & Zipser's
/// "learning to oscillate" runs: the one target line is `amplitude * sin(2 pi t / period)` for
/// `t = 0..steps`, and there are no input lines (`input_dim = 0`). Nothing is random; the net
/// can only get it right by building an oscillator out of its own recurrent dynamics.
///
/// `period` (in steps, need not be a whole number) must be positive and finite, `amplitude`
/// finite; with a logistic output unit keep `|amplitude| < 0.5` and add 0.5.
///
/// ```
/// let s = dlhist::data::oscillator(40, 20.0, 0.4)?;
/// assert_eq!(s.input_dim, 0);
/// assert!((s.target(5)[0] - 0.4).abs() < 1e-6); // t = period / 4
/// assert!((s.target(25)[0] - s.target(5)[0]).abs() < 1e-6); // one period later
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn oscillator(steps: usize, period: f32, amplitude: f32) -> Result<Stream> {
    if steps == 0 || !(period.is_finite() && period > 0.0) || !amplitude.is_finite() {
        return Err(Error::Invalid(format!(
            "oscillator needs steps > 0, a finite period > 0 (in steps) and a finite amplitude, \
             got steps {steps}, period {period}, amplitude {amplitude}"
        )));
    }
    // f64 for the phase: 2 pi t / period loses digits in f32 once t reaches the thousands.
    let targets = (0..steps).map(|t| (f64::from(amplitude) * (2.0 * PI * t as f64 / f64::from(period)).sin()) as f32);
    Ok(Stream { inputs: Vec::new(), targets: targets.collect(), steps, input_dim: 0, target_dim: 1, valid_from: 0 })
}

// ---------------------------------------------------------------------------------------------
// Hochreiter & Schmidhuber 1997: sets of sequences scored at their end.
// ---------------------------------------------------------------------------------------------

/// The adding problem, experiment 4 of Hochreiter & Schmidhuber 1997 (section 5.4).
///
/// Each of the `n` sequences is `length` pairs `(value, marker)`. Following the paper:
/// - every value is uniform in `[-1, 1]`;
/// - exactly two pairs are marked with marker 1.0: first one of the first ten pairs (its value
///   is `X1`), then one of the first `length / 2 - 1` pairs still unmarked (its value is `X2`);
/// - every other marker is 0.0, except the first and the last pair's, which are -1.0;
/// - when the first pair is the one marked for `X1`, `X1` is set to zero (in the input too,
///   so the input shows the value that counts). The paper states this for `X1` only, and so
///   does this generator: an `X2` landing on the first pair keeps its value;
/// - the target is `0.5 + (X1 + X2) / 4`, the sum scaled into `[0, 1]`.
///
/// The one change: the paper draws each sequence's length between `T` and `T + T/10`; here
/// every sequence has exactly `length` steps (`T = length`), so they stack into one tensor.
/// The minimal time lag is still about `T/2`: `X2` sits in the first half, the answer is due at
/// the end. The paper runs `T` = 100, 500 and 1000 and counts a sequence as solved when the
/// absolute error is below 0.04; always predicting 0.5 has mean squared error
/// [`adding_problem_constant_mse()`].
///
/// `x` is `[n, length, 2]` f32 (value, marker), `y` is `[n, 1]` f32. Needs `n > 0` and
/// `length >= 20`, so that the first ten pairs and the window for `X2` fit before the end.
///
/// ```
/// use dlhist::prelude::*;
/// let data = dlhist::data::adding_problem(4, 100, &mut Rng::new(0), &Device::Cpu)?;
/// assert_eq!((data.x.dims(), data.y.dims()), (&[4, 100, 2][..], &[4, 1][..]));
/// let seq = data.x.get(0)?.to_vec2::<f32>()?;
/// let marked: f32 = seq.iter().filter(|p| p[1] == 1.0).map(|p| p[0]).sum();
/// let target = data.y.get(0)?.to_vec1::<f32>()?[0];
/// assert!((target - (0.5 + marked / 4.0)).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn adding_problem(n: usize, length: usize, rng: &mut Rng, dev: &Device) -> Result<Dataset> {
    if n == 0 || length < 20 {
        return Err(Error::Invalid(format!(
            "adding_problem needs n > 0 sequences of length >= 20 (the first ten pairs and the \
             first length/2 - 1 pairs must fit; the paper uses 100 to 1000), got n {n}, length {length}"
        )));
    }
    let mut x = Vec::with_capacity(n * length * 2);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let mut values: Vec<f32> = rng.uniform_vec(length, -1.0, 1.0);
        let mut markers = vec![0.0f32; length];
        markers[0] = -1.0;
        markers[length - 1] = -1.0;
        let first = rng.below(10);
        // "One of the first T/2 - 1 still unmarked pairs": skip the pair marked for X1.
        let window = length / 2 - 1;
        let mut second = rng.below(window);
        if second >= first {
            second += 1;
        }
        if first == 0 {
            values[0] = 0.0;
        }
        markers[first] = 1.0;
        markers[second] = 1.0;
        y.push(0.5 + (values[first] + values[second]) / 4.0);
        for (v, m) in values.iter().zip(&markers) {
            x.push(*v);
            x.push(*m);
        }
    }
    Dataset::new(Tensor::from_vec(x, (n, length, 2), dev)?, Tensor::from_vec(y, (n, 1), dev)?)
}

/// The mean squared error of the best constant answer to [`adding_problem`] (always 0.5, the
/// mean target): the variance of the target, `1.9 / 48 ≈ 0.0396`, whatever the length.
///
/// Why: the target is `0.5 + (X1 + X2) / 4` with `X1`, `X2` independent and of mean zero, so its
/// variance is `(Var X1 + Var X2) / 16`. A value uniform in `[-1, 1]` has variance 1/3; `X1` is
/// zeroed one time in ten (when the first pair is marked), so `Var X1 = 0.9 / 3`. Together
/// `(0.9/3 + 1/3) / 16 = 1.9 / 48`. Without the zeroing it would be `(2/3) / 16 ≈ 0.0417`.
/// A net has learnt something only once its error is well below this.
///
/// ```
/// let mse = dlhist::data::adding_problem_constant_mse();
/// assert!((mse - 0.0396).abs() < 1e-4);
/// ```
pub fn adding_problem_constant_mse() -> f32 {
    1.9 / 48.0
}

/// The symbols of [`temporal_order`], in the order of the one-hot input lines: the four
/// distractors `a b c d`, the trigger `B` that ends a sequence, the start symbol `E`, and the two
/// relevant symbols `X`, `Y`.
///
/// ```
/// use dlhist::data::TEMPORAL_ORDER_SYMBOLS;
/// let x_line = TEMPORAL_ORDER_SYMBOLS.iter().position(|&c| c == 'X');
/// assert_eq!(x_line, Some(6)); // input line 6 is on where the sequence shows an X
/// ```
pub const TEMPORAL_ORDER_SYMBOLS: [char; 8] = ['a', 'b', 'c', 'd', 'B', 'E', 'X', 'Y'];

/// The class names of [`temporal_order`], indexed by class id: the relevant symbols in order
/// (the paper's classes Q, R, S, U).
///
/// ```
/// use dlhist::data::TEMPORAL_ORDER_CLASSES;
/// assert_eq!(TEMPORAL_ORDER_CLASSES[2], "YX"); // class 2: Y first, then X
/// ```
pub const TEMPORAL_ORDER_CLASSES: [&str; 4] = ["XX", "XY", "YX", "YY"];

/// The padded length of every [`temporal_order`] sequence: the paper's longest.
///
/// ```
/// use dlhist::prelude::*;
/// let data = dlhist::data::temporal_order(4, &mut Rng::new(0), &Device::Cpu)?;
/// assert_eq!(data.x.dims()[1], dlhist::data::TEMPORAL_ORDER_STEPS);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub const TEMPORAL_ORDER_STEPS: usize = 110;

const TO_B: usize = 4;
const TO_E: usize = 5;
const TO_X: usize = 6;
const TO_Y: usize = 7;

/// The temporal order problem with two relevant symbols, task 6a of Hochreiter & Schmidhuber
/// 1997 (section 5.6).
///
/// Following the paper, each sequence has a length `L` uniform in `100..=110`; it starts with
/// `E`, ends with `B` (the "trigger symbol", after which the class is asked for), and every other
/// element is drawn uniformly from `a b c d`, except the elements at positions `t1` (uniform in
/// `10..=20`) and `t2` (uniform in `50..=60`), which are `X` or `Y`. Positions count the start
/// symbol `E` as position 1. The class is the pair of relevant symbols in order:
/// `XX` = 0, `XY` = 1, `YX` = 2, `YY` = 3 ([`TEMPORAL_ORDER_CLASSES`]). So at least 30 steps
/// separate the two relevant symbols, and at least 40 the second one from the trigger.
///
/// Padding: to stack sequences of different lengths, each is padded *in front* to
/// [`TEMPORAL_ORDER_STEPS`] = 110 steps with all-zero rows (no symbol on). Every sequence then
/// ends, and is scored, at the last step, and the paper's timing from `E` on is untouched.
/// Sample `i` has class `i % 4`, so any prefix of the dataset is balanced (draw the X/Y order
/// fresh for each sample and shuffle when training, as [`Dataset::split`] does).
///
/// (Many reimplementations start with `B` and end with `E`; the paper has it the other way
/// round. With one-hot inputs the names do not matter.)
///
/// `x` is `[n, 110, 8]` f32, one-hot over [`TEMPORAL_ORDER_SYMBOLS`] (all zero in the padding);
/// `y` is `[n]` u32 class ids. Needs `n > 0`.
///
/// ```
/// use dlhist::prelude::*;
/// let data = dlhist::data::temporal_order(8, &mut Rng::new(0), &Device::Cpu)?;
/// assert_eq!(data.x.dims(), &[8, 110, 8]);
/// assert_eq!(data.y.to_vec1::<u32>()?, vec![0, 1, 2, 3, 0, 1, 2, 3]);
/// // The last step is the trigger B in every sequence.
/// let last = data.x.narrow(1, 109, 1)?.squeeze(1)?.to_vec2::<f32>()?;
/// assert!(last.iter().all(|row| row[4] == 1.0));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn temporal_order(n: usize, rng: &mut Rng, dev: &Device) -> Result<Dataset> {
    if n == 0 {
        return Err(Error::Invalid("temporal_order needs n > 0 sequences".into()));
    }
    const S: usize = TEMPORAL_ORDER_STEPS;
    let k = TEMPORAL_ORDER_SYMBOLS.len();
    let mut x = vec![0.0f32; n * S * k];
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let class = i % 4;
        let first = if class < 2 { TO_X } else { TO_Y };
        let second = if class % 2 == 0 { TO_X } else { TO_Y };
        let len = 100 + rng.below(11);
        let t1 = 10 + rng.below(11);
        let t2 = 50 + rng.below(11);
        let pad = S - len;
        for p in 1..=len {
            let symbol = match p {
                1 => TO_E,
                _ if p == len => TO_B,
                _ if p == t1 => first,
                _ if p == t2 => second,
                _ => rng.below(4),
            };
            x[(i * S + pad + p - 1) * k + symbol] = 1.0;
        }
        y.push(class as u32);
    }
    Dataset::new(Tensor::from_vec(x, (n, S, k), dev)?, Tensor::from_vec(y, n, dev)?)
}

// ---------------------------------------------------------------------------------------------
// Gers, Schmidhuber & Cummins 2000: the continual embedded Reber grammar.
// ---------------------------------------------------------------------------------------------

/// The seven symbols of the Reber grammar, in the order of the one-hot lines and of the bits of
/// [`ReberStream::next_legal`]: symbol id `i` is `REBER_SYMBOLS[i]`.
///
/// ```
/// use dlhist::data::{reber_ids, reber_text, REBER_SYMBOLS};
/// assert_eq!(REBER_SYMBOLS[0], 'B');
/// let ids = reber_ids("BPVVE")?;
/// assert_eq!(ids, vec![0, 4, 5, 5, 6]);
/// assert_eq!(reber_text(&ids), "BPVVE");
/// # Ok::<(), dlhist::Error>(())
/// ```
pub const REBER_SYMBOLS: [char; 7] = ['B', 'T', 'S', 'X', 'P', 'V', 'E'];

const RB: u8 = 0;
const RT: u8 = 1;
const RS: u8 = 2;
const RX: u8 = 3;
const RP: u8 = 4;
const RV: u8 = 5;
const RE: u8 = 6;

/// The Reber grammar's transition graph: from node `i` (0 is the node right after `B`), the two
/// edges `(symbol, next node)`. Node 5 has a single way out, `E`, which ends the string.
/// Written from the standard diagram; the published example strings in the tests pin it.
#[rustfmt::skip] // one row per node, like the diagram
const REBER_GRAPH: [[(u8, usize); 2]; 5] = [
    [(RT, 1), (RP, 2)],
    [(RS, 1), (RX, 3)],
    [(RT, 2), (RV, 4)],
    [(RX, 2), (RS, 5)],
    [(RP, 3), (RV, 5)],
];
const REBER_EXIT: usize = 5;

/// The id of a Reber symbol (its index in [`REBER_SYMBOLS`]), or `None` for any other character.
///
/// ```
/// assert_eq!(dlhist::data::reber_id('E'), Some(6));
/// assert_eq!(dlhist::data::reber_id('b'), None); // the symbols are upper case
/// ```
pub fn reber_id(c: char) -> Option<u8> {
    REBER_SYMBOLS.iter().position(|&s| s == c).map(|i| i as u8)
}

/// The symbol with id `id`, or `None` when `id >= 7`.
///
/// ```
/// assert_eq!(dlhist::data::reber_char(1), Some('T'));
/// assert_eq!(dlhist::data::reber_char(7), None);
/// ```
pub fn reber_char(id: u8) -> Option<char> {
    REBER_SYMBOLS.get(id as usize).copied()
}

/// Symbol ids as text (`?` for an id that is no symbol), for printing strings and predictions.
///
/// ```
/// assert_eq!(dlhist::data::reber_text(&[0, 1, 9]), "BT?");
/// ```
pub fn reber_text(ids: &[u8]) -> String {
    ids.iter().map(|&i| reber_char(i).unwrap_or('?')).collect()
}

/// Text as symbol ids; errors, naming the character, on anything outside [`REBER_SYMBOLS`].
///
/// ```
/// assert_eq!(dlhist::data::reber_ids("BTE")?, vec![0, 1, 6]);
/// assert!(dlhist::data::reber_ids("BTZ").is_err());
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn reber_ids(text: &str) -> Result<Vec<u8>> {
    text.chars()
        .map(|c| {
            reber_id(c).ok_or_else(|| {
                Error::Invalid(format!("{c:?} is not a Reber symbol; use only the letters B, T, S, X, P, V, E"))
            })
        })
        .collect()
}

/// The node reached from Reber graph node `node` by `symbol`, if that edge exists.
fn reber_edge(node: usize, symbol: u8) -> Option<usize> {
    REBER_GRAPH.get(node)?.iter().find(|&&(s, _)| s == symbol).map(|&(_, to)| to)
}

/// Whether `ids` is one (plain) Reber string: `B`, a walk through the graph, `E`.
///
/// ```
/// use dlhist::data::{is_reber, reber_ids};
/// assert!(is_reber(&reber_ids("BTSSXXTVVE")?));
/// assert!(!is_reber(&reber_ids("BTSSPXSE")?));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn is_reber(ids: &[u8]) -> bool {
    let Some((&RB, rest)) = ids.split_first() else { return false };
    let Some((&RE, walk)) = rest.split_last() else { return false };
    let mut node = 0;
    for &s in walk {
        match reber_edge(node, s) {
            Some(next) => node = next,
            None => return false,
        }
    }
    node == REBER_EXIT
}

/// Where a reader of embedded Reber strings stands; the grammar as a deterministic automaton.
/// The outer `T`/`P` is carried along, because the string must repeat it at its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReberState {
    /// Before a string (at the start, or after a final `E`): only the outer `B` may come.
    Between,
    /// After the outer `B`: the outer choice, `T` or `P`.
    Outer,
    /// After the outer choice: the inner string's `B`.
    InnerStart(u8),
    /// Inside the inner string, at graph node `.1`.
    Inner(u8, usize),
    /// After the inner `E`: only the outer choice again. The one long-lag prediction.
    Repeat(u8),
    /// After the repeated outer choice: the final `E`.
    Final,
}

impl ReberState {
    /// The state after reading `symbol`, or `None` if the grammar does not allow it here.
    fn step(self, symbol: u8) -> Option<ReberState> {
        use ReberState::*;
        match (self, symbol) {
            (Between, RB) => Some(Outer),
            (Outer, RT | RP) => Some(InnerStart(symbol)),
            (InnerStart(o), RB) => Some(Inner(o, 0)),
            (Inner(o, REBER_EXIT), RE) => Some(Repeat(o)),
            (Inner(o, node), _) => reber_edge(node, symbol).map(|next| Inner(o, next)),
            (Repeat(o), _) if symbol == o => Some(Final),
            (Final, RE) => Some(Between),
            _ => None,
        }
    }

    /// The symbols allowed next, as a bitmask (bit `i` is symbol id `i`).
    fn legal(self) -> u8 {
        (0..REBER_SYMBOLS.len() as u8).filter(|&s| self.step(s).is_some()).fold(0, |mask, s| mask | 1 << s)
    }
}

/// Appends one embedded Reber string to `out`, choosing uniformly wherever the grammar branches.
fn push_embedded_reber(rng: &mut Rng, out: &mut Vec<u8>) {
    let mut state = ReberState::Between;
    loop {
        let legal = state.legal();
        let options = legal.count_ones() as usize;
        // Draw only at real branchings, so the stream of random numbers is spent on choices.
        let pick = if options == 1 { 0 } else { rng.below(options) };
        let symbol =
            (0..REBER_SYMBOLS.len() as u8).filter(|&s| legal & (1 << s) != 0).nth(pick).expect("pick < options");
        out.push(symbol);
        state = state.step(symbol).expect("a legal symbol steps");
        if state == ReberState::Between {
            return;
        }
    }
}

/// Whether `ids` is exactly one embedded Reber string: `B`, `T` or `P`, a Reber string, the
/// same `T` or `P` again, `E`.
///
/// ```
/// use dlhist::data::{is_embedded_reber, reber_ids};
/// assert!(is_embedded_reber(&reber_ids("BTBPVVETE")?));
/// assert!(!is_embedded_reber(&reber_ids("BTBPVVEPE")?)); // the outer symbols differ
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn is_embedded_reber(ids: &[u8]) -> bool {
    let mut state = ReberState::Between;
    for (i, &s) in ids.iter().enumerate() {
        match state.step(s) {
            // Back between strings before the last symbol: a second string started.
            Some(ReberState::Between) if i + 1 < ids.len() => return false,
            Some(next) => state = next,
            None => return false,
        }
    }
    !ids.is_empty() && state == ReberState::Between
}

/// One embedded Reber string as symbol ids (see [`REBER_SYMBOLS`]): `B`, then `T` or `P` (the
/// outer choice, 1/2 each), a Reber string (`B ... E`, each branching of the graph taken with
/// probability 1/2), the outer choice again, `E`. The inner string has 8 symbols on average
/// (at least 5), the embedded one 12.
///
/// To predict the second-to-last symbol a net must remember the second one across the whole
/// inner string: the long-lag part of the task.
///
/// ```
/// use dlhist::data::{embedded_reber_string, is_embedded_reber, reber_text};
/// let s = embedded_reber_string(&mut dlhist::rng::Rng::new(4));
/// assert!(is_embedded_reber(&s));
/// let text = reber_text(&s);
/// assert_eq!(text.chars().nth(1), text.chars().rev().nth(1)); // T...TE or P...PE
/// ```
pub fn embedded_reber_string(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    push_embedded_reber(rng, &mut out);
    out
}

/// A stream of embedded Reber strings, back to back, with what a next-symbol predictor is scored
/// on at every position. All four vectors have one entry per symbol.
///
/// ```
/// use dlhist::data::{continual_reber, reber_text};
/// let s = continual_reber(3, &mut dlhist::rng::Rng::new(0));
/// assert_eq!(s.string_end.iter().filter(|&&e| e).count(), 3);
/// assert_eq!(s.hard.iter().filter(|&&h| h).count(), 3);
/// assert_eq!(s.next_legal[0], 0b0001_0010); // after the first B: T (bit 1) or P (bit 4)
/// println!("{}", reber_text(&s.symbols));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReberStream {
    /// The symbol ids (indices into [`REBER_SYMBOLS`]).
    pub symbols: Vec<u8>,
    /// Bitmask of the symbols that may legally follow position `t` (bit `i` is symbol id `i`):
    /// the multi-hot target when predicting symbol `t + 1` from symbols `..=t`. After a string's
    /// final `E` only `B` may follow.
    pub next_legal: Vec<u8>,
    /// True at each string's final `E`.
    pub string_end: Vec<bool>,
    /// True where the next symbol is the outer `T`/`P` repeating the string's second symbol
    /// (the position of the inner string's `E`): the one prediction that needs long-term memory.
    /// Once per string.
    pub hard: Vec<bool>,
}

impl ReberStream {
    /// The number of symbols.
    ///
    /// ```
    /// let s = dlhist::data::continual_reber(1, &mut dlhist::rng::Rng::new(0));
    /// assert!(s.len() >= 9); // B, T/P, at least 5 inner symbols, T/P, E
    /// ```
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// Whether the stream holds no symbols.
    ///
    /// ```
    /// assert!(dlhist::data::continual_reber(0, &mut dlhist::rng::Rng::new(0)).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The stream as a batch of one: `x` one-hot `[1, L, 7]` (the symbols) and `y` multi-hot
    /// `[1, L, 7]` ([`next_legal`](Self::next_legal): the symbols allowed next), both f32 on `dev`.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// let s = dlhist::data::continual_reber(2, &mut Rng::new(1));
    /// let (x, y) = s.to_tensors(&Device::Cpu)?;
    /// assert_eq!(x.dims(), &[1, s.len(), 7]);
    /// assert_eq!(x.sum_all()?.to_scalar::<f32>()?, s.len() as f32); // one symbol per step
    /// assert_eq!(y.get(0)?.get(0)?.to_vec1::<f32>()?, vec![0., 1., 0., 0., 1., 0., 0.]); // T or P
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn to_tensors(&self, dev: &Device) -> Result<(Tensor, Tensor)> {
        let (x, y) = self.one_hots();
        let l = self.len();
        Ok((Tensor::from_vec(x, (1, l, 7), dev)?, Tensor::from_vec(y, (1, l, 7), dev)?))
    }

    /// The one-hot inputs and multi-hot targets as flat `[L, 7]` vectors.
    fn one_hots(&self) -> (Vec<f32>, Vec<f32>) {
        let k = REBER_SYMBOLS.len();
        let mut x = vec![0.0f32; self.len() * k];
        let mut y = vec![0.0f32; self.len() * k];
        for (t, (&s, &legal)) in self.symbols.iter().zip(&self.next_legal).enumerate() {
            x[t * k + s as usize] = 1.0;
            for i in 0..k {
                y[t * k + i] = f32::from((legal >> i) & 1);
            }
        }
        (x, y)
    }

    /// The first `len` positions (all of them if the stream is shorter).
    fn truncated(&self, len: usize) -> ReberStream {
        let len = len.min(self.len());
        ReberStream {
            symbols: self.symbols[..len].to_vec(),
            next_legal: self.next_legal[..len].to_vec(),
            string_end: self.string_end[..len].to_vec(),
            hard: self.hard[..len].to_vec(),
        }
    }
}

/// `n_strings` embedded Reber strings back to back, the continual task of Gers, Schmidhuber &
/// Cummins 2000: no separator and no reset, the next string's `B` directly follows the previous
/// string's `E`. A net reading it must find the string boundaries itself and forget the finished
/// string's outer symbol, which is what the forget gate was invented for.
///
/// Besides the symbols, the stream records at every position the symbols allowed next
/// ([`ReberStream::next_legal`]), the final `E`s ([`ReberStream::string_end`]) and the long-lag
/// predictions ([`ReberStream::hard`]).
///
/// ```
/// use dlhist::data::{continual_reber, is_embedded_reber};
/// let s = continual_reber(10, &mut dlhist::rng::Rng::new(2));
/// // Cut at the string ends, it is ten embedded Reber strings.
/// let mut start = 0;
/// for t in (0..s.len()).filter(|&t| s.string_end[t]) {
///     assert!(is_embedded_reber(&s.symbols[start..=t]));
///     start = t + 1;
/// }
/// assert_eq!(start, s.len());
/// ```
pub fn continual_reber(n_strings: usize, rng: &mut Rng) -> ReberStream {
    let mut symbols = Vec::new();
    for _ in 0..n_strings {
        push_embedded_reber(rng, &mut symbols);
    }
    let (mut next_legal, mut string_end, mut hard) = (Vec::new(), Vec::new(), Vec::new());
    let mut state = ReberState::Between;
    for &s in &symbols {
        state = state.step(s).expect("generated strings follow the grammar");
        next_legal.push(state.legal());
        string_end.push(state == ReberState::Between);
        hard.push(matches!(state, ReberState::Repeat(_)));
    }
    ReberStream { symbols, next_legal, string_end, hard }
}

/// A batch of parallel continual Reber streams from [`parallel_reber_streams`]. Position `t` of
/// every tensor belongs to position `t` of the matching entry of `streams`.
///
/// ```
/// use dlhist::prelude::*;
/// let b = dlhist::data::parallel_reber_streams(4, 5, &mut Rng::new(0), &Device::Cpu)?;
/// let l = b.streams[0].len();
/// assert_eq!((b.x.dims(), b.hard.dims()), (&[4, l, 7][..], &[4, l][..]));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ReberBatch {
    /// The symbols, one-hot, `[S, L, 7]` f32.
    pub x: Tensor,
    /// The symbols allowed next, multi-hot, `[S, L, 7]` f32.
    pub y: Tensor,
    /// 1.0 where the next symbol is the long-lag outer `T`/`P` ([`ReberStream::hard`]), else 0.0,
    /// `[S, L]` f32: multiply per-step losses or hits by it to score the hard predictions alone.
    pub hard: Tensor,
    /// 1.0 at each string's final `E` ([`ReberStream::string_end`]), else 0.0, `[S, L]` f32.
    pub string_end: Tensor,
    /// The streams, each cut to `L` symbols.
    pub streams: Vec<ReberStream>,
}

/// `n_streams` independent continual Reber streams ([`continual_reber`]) of `n_strings_each`
/// strings, as one batch for training several streams in parallel.
///
/// Strings vary in length, so streams of the same number of strings do not: every stream is cut
/// to the shortest one's length `L`. The cut may end a longer stream inside a string; that costs
/// nothing on a continual task, where no position is special to the net, but it means a stream
/// in the batch may hold fewer than `n_strings_each` complete strings (count them with
/// `string_end`). Needs `n_streams > 0` and `n_strings_each > 0`.
///
/// ```
/// use dlhist::prelude::*;
/// let b = dlhist::data::parallel_reber_streams(3, 20, &mut Rng::new(1), &Device::Cpu)?;
/// let l = b.x.dims()[1];
/// assert!(b.streams.iter().all(|s| s.len() == l));
/// // The shortest stream is whole: 20 strings, 20 long-lag positions.
/// let per_stream = b.hard.sum(1)?.to_vec1::<f32>()?;
/// assert!(per_stream.iter().any(|&h| h == 20.0));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn parallel_reber_streams(
    n_streams: usize,
    n_strings_each: usize,
    rng: &mut Rng,
    dev: &Device,
) -> Result<ReberBatch> {
    if n_streams == 0 || n_strings_each == 0 {
        return Err(Error::Invalid(format!(
            "parallel_reber_streams needs n_streams > 0 and n_strings_each > 0, got {n_streams} streams \
             of {n_strings_each} strings"
        )));
    }
    let full: Vec<ReberStream> = (0..n_streams).map(|_| continual_reber(n_strings_each, rng)).collect();
    let l = full.iter().map(ReberStream::len).min().expect("n_streams > 0");
    let streams: Vec<ReberStream> = full.iter().map(|s| s.truncated(l)).collect();
    let (mut x, mut y, mut hard, mut string_end) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in &streams {
        let (sx, sy) = s.one_hots();
        x.extend(sx);
        y.extend(sy);
        hard.extend(s.hard.iter().map(|&h| f32::from(u8::from(h))));
        string_end.extend(s.string_end.iter().map(|&e| f32::from(u8::from(e))));
    }
    let k = REBER_SYMBOLS.len();
    Ok(ReberBatch {
        x: Tensor::from_vec(x, (n_streams, l, k), dev)?,
        y: Tensor::from_vec(y, (n_streams, l, k), dev)?,
        hard: Tensor::from_vec(hard, (n_streams, l), dev)?,
        string_end: Tensor::from_vec(string_end, (n_streams, l), dev)?,
        streams,
    })
}

/// Cuts parallel streams into consecutive chunks for truncated back-propagation through time: `x` `[S, L, …]` and
/// `y` `[S, L, …]` (S streams of length L) become a dataset of `⌊L / len⌋ · S` rows of `len` steps, ordered chunk
/// by chunk (rows `k·S .. (k+1)·S` are chunk `k` of every stream; a last partial chunk is dropped). Trained with
/// batches of `S` in this order (`FitConfig { batch_size: S, shuffle: false, .. }`) by a net that carries its
/// state from batch to batch ([`crate::layers::RecurrentNet::stateful`]), row `s` of each batch continues row
/// `s` of the one before.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let x = Tensor::arange(0f32, 14., &dev)?.reshape((2, 7, 1))?; // two streams: 0..7 and 7..14
/// let chunks = dlhist::data::tbptt_chunks(&x, &x, 3)?;
/// assert_eq!(chunks.len(), 4); // two chunks of 3 per stream; step 6 and 13 are dropped
/// let firsts: Vec<f32> = chunks.x.narrow(1, 0, 1)?.flatten_all()?.to_vec1()?;
/// assert_eq!(firsts, vec![0., 7., 3., 10.]);
/// assert!(dlhist::data::tbptt_chunks(&x, &x, 8).is_err()); // longer than the streams
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn tbptt_chunks(x: &Tensor, y: &Tensor, len: usize) -> Result<Dataset> {
    let (s, l) = match x.dims() {
        [s, l, ..] => (*s, *l),
        d => return Err(Error::Invalid(format!("tbptt_chunks expects streams [S, L, ...]; got x {d:?}"))),
    };
    if y.dims().len() < 2 || y.dims()[..2] != [s, l] {
        return Err(Error::Invalid(format!(
            "tbptt_chunks: x {:?} and y {:?} must start with the same [streams, steps]",
            x.dims(),
            y.dims()
        )));
    }
    if len == 0 || len > l {
        return Err(Error::Invalid(format!(
            "tbptt_chunks: chunk length must be in 1..={l} (the stream length); got {len}"
        )));
    }
    let chunks = l / len;
    let cut = |t: &Tensor| -> Result<Tensor> {
        let parts = (0..chunks).map(|k| t.narrow(1, k * len, len)).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 0)?)
    };
    Dataset::new(cut(x)?, cut(y)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    // ----- Williams & Zipser -----

    #[test]
    fn delayed_xor_bits_are_fair_and_targets_are_the_delayed_xor() -> Result<()> {
        let s = delayed_xor(40_000, 2, &mut Rng::new(1))?;
        assert_eq!((s.inputs.len(), s.targets.len(), s.valid_from), (80_000, 40_000, 2));
        for line in 0..2 {
            let ones = (0..s.steps).filter(|&t| s.input(t)[line] == 1.0).count() as f32 / s.steps as f32;
            // 40 000 fair bits: standard error 0.0025, so 0.015 is six of them.
            assert!((ones - 0.5).abs() < 0.015, "line {line} rate {ones}");
        }
        assert!(s.inputs.iter().all(|&v| v == 0.0 || v == 1.0));
        // The two lines are independent: each of the four bit pairs about a quarter of the time.
        let mut pairs = [0usize; 4];
        for t in 0..s.steps {
            pairs[(s.input(t)[0] as usize) * 2 + s.input(t)[1] as usize] += 1;
        }
        assert!(pairs.iter().all(|&c| (c as f32 / s.steps as f32 - 0.25).abs() < 0.015), "{pairs:?}");
        for t in 0..s.steps {
            let want = if t < 2 { 0.0 } else { ((s.input(t - 2)[0] + s.input(t - 2)[1]) as u32 % 2) as f32 };
            assert_eq!(s.target(t)[0], want, "step {t}");
        }
        let positive = s.targets[2..].iter().sum::<f32>() / (s.steps - 2) as f32;
        assert!((positive - 0.5).abs() < 0.015, "positive rate {positive}");
        // A target at the wrong delay would agree only half of the time.
        let wrong = (3..s.steps).filter(|&t| s.target(t)[0] == (s.input(t - 3)[0] != s.input(t - 3)[1]) as u8 as f32);
        assert!((wrong.count() as f32 / s.steps as f32 - 0.5).abs() < 0.015);

        assert_eq!(delayed_xor(10, 0, &mut Rng::new(0))?.valid_from, 0);
        assert_eq!(delayed_xor(50, 3, &mut Rng::new(7))?, delayed_xor(50, 3, &mut Rng::new(7))?);
        let msg = delayed_xor(2, 2, &mut Rng::new(0)).unwrap_err().to_string();
        assert!(msg.contains("steps > delay"), "{msg}");
        Ok(())
    }

    /// The targets that the task's rule gives for a stream's inputs, recomputed step by step.
    fn reference_targets(s: &Stream) -> Vec<f32> {
        let mut armed = false;
        (0..s.steps)
            .map(|t| {
                let (a, b) = (s.input(t)[0] == 1.0, s.input(t)[1] == 1.0);
                let y = if b && armed { 1.0 } else { 0.0 };
                armed = if b { false } else { armed || a };
                y
            })
            .collect()
    }

    #[test]
    fn a_then_b_targets_follow_the_rule_and_gaps_are_uniform() -> Result<()> {
        let max_gap = 10;
        let s = a_then_b(400_000, max_gap, &mut Rng::new(5))?;
        assert_eq!((s.input_dim, s.target_dim, s.valid_from), (2, 1, 0));
        assert_eq!(s.targets, reference_targets(&s));
        assert!((0..s.steps).all(|t| s.input(t)[0] + s.input(t)[1] <= 1.0), "a and b at the same step");

        // Walk the stream: for each b, was there an a since the last b, and how long ago was
        // the first one?
        let (mut gaps, mut distractors, mut repeated_a) = (vec![0usize; max_gap + 1], 0usize, 0usize);
        let mut first_a: Option<usize> = None;
        let mut quiet = 0;
        for t in 0..s.steps {
            let (a, b) = (s.input(t)[0] == 1.0, s.input(t)[1] == 1.0);
            if b {
                match first_a.take() {
                    Some(t0) => {
                        assert!((1..=max_gap).contains(&(t - t0)), "gap {}", t - t0);
                        gaps[t - t0] += 1;
                    }
                    None => distractors += 1,
                }
            } else if a {
                if first_a.is_some() {
                    repeated_a += 1;
                } else {
                    first_a = Some(t);
                }
            } else {
                quiet += 1;
            }
        }
        let positives: usize = gaps.iter().sum();
        let share = positives as f32 / (positives + distractors) as f32;
        assert!((share - 0.5).abs() < 0.02, "positive share of b's {share}");
        assert!(distractors > 1000 && repeated_a > 1000, "{distractors} distractors, {repeated_a} repeated a's");
        assert!(quiet > s.steps / 3, "neither line on should be common, got {quiet} quiet steps");
        // Uniform gaps: each of the 10 bins (~1700 b's) within 10% of its share, four standard
        // errors; a gap measured from the last a, or a geometric gap, would pile up at the short end.
        let expect = positives as f32 / max_gap as f32;
        for (g, &c) in gaps.iter().enumerate().skip(1) {
            assert!((c as f32 - expect).abs() < 0.1 * expect, "gap {g}: {c} vs {expect}");
        }

        assert!(a_then_b(10, 0, &mut Rng::new(0)).is_err());
        assert!(a_then_b(0, 3, &mut Rng::new(0)).is_err());
        let one = a_then_b(1000, 1, &mut Rng::new(2))?;
        assert_eq!(one.targets, reference_targets(&one));
        Ok(())
    }

    #[test]
    fn oscillator_values_and_period() -> Result<()> {
        let s = oscillator(1000, 25.0, 0.4)?;
        assert_eq!((s.input_dim, s.target_dim, s.inputs.len()), (0, 1, 0));
        for t in [0usize, 3, 10, 999] {
            let want = 0.4 * (2.0 * std::f32::consts::PI * t as f32 / 25.0).sin();
            assert!((s.target(t)[0] - want).abs() < 1e-5, "t {t}");
            assert!(s.input(t).is_empty());
        }
        for t in 0..975 {
            assert!((s.target(t)[0] - s.target(t + 25)[0]).abs() < 1e-5, "not periodic at {t}");
        }
        // Rising through zero once a period: at t = 25, 50, ..., 975 (t = 0 has no predecessor).
        let rising = (1..s.steps).filter(|&t| s.target(t - 1)[0] < 0.0 && s.target(t)[0] >= 0.0).count();
        assert_eq!(rising, 39);
        // The crest falls between samples (t = 6.25 + 25k); the nearest sample is within 0.2%.
        let max = s.targets.iter().cloned().fold(f32::MIN, f32::max);
        assert!(max <= 0.4 && max > 0.399, "max {max}");
        assert!(oscillator(10, 0.0, 1.0).is_err());
        assert!(oscillator(10, f32::NAN, 1.0).is_err());
        assert!(oscillator(0, 5.0, 1.0).is_err());
        Ok(())
    }

    #[test]
    fn streams_convert_to_tensors_step_by_step() -> Result<()> {
        let s = a_then_b(30, 4, &mut Rng::new(9))?;
        let (x, y) = s.to_tensors(&crate::device::test_device())?;
        let (x, y) = (x.squeeze(0)?.to_vec2::<f32>()?, y.squeeze(0)?.to_vec2::<f32>()?);
        for t in 0..s.steps {
            assert_eq!(x[t], s.input(t));
            assert_eq!(y[t], s.target(t));
        }
        Ok(())
    }

    // ----- Hochreiter & Schmidhuber -----

    #[test]
    fn adding_problem_marks_where_the_paper_allows_and_targets_add_up() -> Result<()> {
        let (n, length) = (20_000, 40);
        let data = adding_problem(n, length, &mut Rng::new(3), &crate::device::test_device())?;
        let x = data.x.to_vec3::<f32>()?;
        let y: Vec<f32> = data.y.flatten_all()?.to_vec1::<f32>()?;
        let mut in_first_ten = 0;
        let mut first_pair_marked = 0;
        for (seq, &target) in x.iter().zip(&y) {
            assert!(seq.iter().all(|p| (-1.0..=1.0).contains(&p[0])));
            assert!(seq.iter().all(|p| [-1.0, 0.0, 1.0].contains(&p[1])));
            let marked: Vec<usize> = (0..length).filter(|&t| seq[t][1] == 1.0).collect();
            assert_eq!(marked.len(), 2, "{marked:?}");
            // X1 among the first ten, X2 among the first T/2 - 1 unmarked: both in the first
            // half, at least one in the first ten.
            assert!(marked[0] < 10 && marked[1] < length / 2, "{marked:?}");
            in_first_ten += marked.iter().filter(|&&t| t < 10).count();
            // -1 at both ends unless marked, 0 elsewhere.
            for (t, p) in seq.iter().enumerate() {
                if !marked.contains(&t) {
                    assert_eq!(p[1], if t == 0 || t == length - 1 { -1.0 } else { 0.0 }, "marker at {t}");
                }
            }
            if marked[0] == 0 {
                first_pair_marked += 1;
            }
            let sum = seq[marked[0]][0] + seq[marked[1]][0];
            assert!((target - (0.5 + sum / 4.0)).abs() < 1e-6);
        }
        // X1 is in the first ten always; X2 lands there 9 / 19 of the time (window of 19).
        let rate = in_first_ten as f32 / n as f32;
        assert!((rate - (1.0 + 9.0 / 19.0)).abs() < 0.02, "marks in the first ten per sequence {rate}");
        // The first pair is marked by X1 (1/10) or by X2 (9/10 * 1/19), and X1 there is zero.
        let first = first_pair_marked as f32 / n as f32;
        assert!((first - (0.1 + 0.9 / 19.0)).abs() < 0.01, "first pair marked {first}");
        let x1_zeroed = x.iter().filter(|s| s[0][1] == 1.0 && s[0][0] == 0.0).count() as f32 / n as f32;
        assert!((x1_zeroed - 0.1).abs() < 0.01, "X1 zeroed {x1_zeroed}");
        // The constant predictor's MSE is the target variance, 1.9/48 = 0.0396; relative standard
        // error of the sample variance here is ~0.8%, and the value without the first-pair rule
        // (0.0417) is 5% away.
        let mean = y.iter().sum::<f32>() / n as f32;
        let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n as f32;
        assert!((mean - 0.5).abs() < 0.005, "mean target {mean}");
        let mse = adding_problem_constant_mse();
        assert!((var - mse).abs() < 0.025 * mse, "target variance {var} vs {mse}");

        assert!(adding_problem(5, 19, &mut Rng::new(0), &crate::device::test_device()).is_err());
        assert!(adding_problem(0, 100, &mut Rng::new(0), &crate::device::test_device()).is_err());
        let a = adding_problem(3, 20, &mut Rng::new(8), &crate::device::test_device())?;
        let b = adding_problem(3, 20, &mut Rng::new(8), &crate::device::test_device())?;
        assert_eq!(a.x.to_vec3::<f32>()?, b.x.to_vec3::<f32>()?);
        Ok(())
    }

    #[test]
    fn temporal_order_follows_task_6a() -> Result<()> {
        let n = 4000;
        let data = temporal_order(n, &mut Rng::new(6), &crate::device::test_device())?;
        assert_eq!(data.x.dims(), &[n, 110, 8]);
        let x = data.x.to_vec3::<f32>()?;
        let y = data.y.to_vec1::<u32>()?;
        let mut classes = [0usize; 4];
        let (mut lengths, mut t1s, mut t2s) = ([0usize; 11], [0usize; 11], [0usize; 11]);
        let mut distractors = [0usize; 4];
        for (seq, &class) in x.iter().zip(&y) {
            classes[class as usize] += 1;
            // Decode: -1 for a padding row, else the one symbol on.
            let symbols: Vec<i32> = seq
                .iter()
                .map(|row| {
                    assert!(row.iter().all(|&v| v == 0.0 || v == 1.0));
                    let on = row.iter().filter(|&&v| v == 1.0).count();
                    assert!(on <= 1, "{on} symbols at one step");
                    row.iter().position(|&v| v == 1.0).map_or(-1, |i| i as i32)
                })
                .collect();
            let pad = symbols.iter().take_while(|&&s| s == -1).count();
            let body = &symbols[pad..];
            assert!(body.iter().all(|&s| s >= 0), "padding only in front");
            lengths[body.len() - 100] += 1;
            assert_eq!((body[0], body[body.len() - 1]), (TO_E as i32, TO_B as i32));
            let relevant: Vec<usize> = (0..body.len()).filter(|&i| body[i] >= TO_X as i32).collect();
            assert_eq!(relevant.len(), 2);
            // Positions count E as 1.
            let (t1, t2) = (relevant[0] + 1, relevant[1] + 1);
            t1s[t1 - 10] += 1;
            t2s[t2 - 50] += 1;
            let order = TEMPORAL_ORDER_CLASSES[class as usize];
            let seen: String = relevant.iter().map(|&i| TEMPORAL_ORDER_SYMBOLS[body[i] as usize]).collect();
            assert_eq!(seen, order);
            for (i, &s) in body.iter().enumerate().take(body.len() - 1).skip(1) {
                if !relevant.contains(&i) {
                    assert!(s < 4, "symbol {s} at {i} should be one of a b c d");
                    distractors[s as usize] += 1;
                }
            }
        }
        assert_eq!(classes, [1000; 4]);
        assert_eq!(&y[..8], &[0, 1, 2, 3, 0, 1, 2, 3]);
        // Lengths 100..=110 and positions 10..=20, 50..=60: 11 values each, ~364 per bin.
        for hist in [lengths, t1s, t2s] {
            assert!(hist.iter().all(|&c| (c as f32 - n as f32 / 11.0).abs() < 0.2 * n as f32 / 11.0), "{hist:?}");
        }
        let total: usize = distractors.iter().sum();
        assert!(distractors.iter().all(|&c| (c as f32 / total as f32 - 0.25).abs() < 0.01), "{distractors:?}");
        assert!(temporal_order(0, &mut Rng::new(0), &crate::device::test_device()).is_err());
        Ok(())
    }

    // ----- Gers, Schmidhuber & Cummins: the Reber grammar -----

    /// How far a string gets in an independent reading of the embedded Reber grammar.
    #[derive(Debug, PartialEq)]
    enum Reading {
        Invalid,
        Prefix,
        Complete,
    }

    /// The embedded Reber grammar read directly from its definition, with the graph written as
    /// text ("from, symbol, to"): a second implementation to check the module's automaton.
    fn read_embedded(s: &[char]) -> Reading {
        const EDGES: &str = "0T1 0P2 1S1 1X3 2T2 2V4 3X2 3S5 4P3 4V5";
        let edge = |node: char, sym: char| {
            EDGES.split(' ').find_map(|e| {
                let c: Vec<char> = e.chars().collect();
                (c[0] == node && c[1] == sym).then_some(c[2])
            })
        };
        let mut i = 0;
        let mut expect = |ok: &dyn Fn(char) -> bool| -> Option<Reading> {
            match s.get(i) {
                None => Some(Reading::Prefix),
                Some(&c) if ok(c) => {
                    i += 1;
                    None
                }
                Some(_) => Some(Reading::Invalid),
            }
        };
        if let Some(r) = expect(&|c| c == 'B') {
            return r;
        }
        if let Some(r) = expect(&|c| c == 'T' || c == 'P') {
            return r;
        }
        let outer = s[1];
        if let Some(r) = expect(&|c| c == 'B') {
            return r;
        }
        let mut node = '0';
        while node != '5' {
            let Some(&c) = s.get(i) else { return Reading::Prefix };
            match edge(node, c) {
                Some(next) => node = next,
                None => return Reading::Invalid,
            }
            i += 1;
        }
        for want in ['E', outer, 'E'] {
            match s.get(i) {
                None => return Reading::Prefix,
                Some(&c) if c == want => i += 1,
                Some(_) => return Reading::Invalid,
            }
        }
        if i == s.len() {
            Reading::Complete
        } else {
            Reading::Invalid
        }
    }

    #[test]
    fn the_grammar_accepts_the_published_examples_only() -> Result<()> {
        // The Reber / non-Reber examples of the standard description of the grammar. Together
        // the accepted ones use all ten edges of the graph.
        for good in ["BTSSXXTVVE", "BPVVE", "BTXXVPSE", "BPVPXVPXVPXVVE", "BTSXXVPSE"] {
            assert!(is_reber(&reber_ids(good)?), "{good}");
            let embedded = format!("BT{good}TE");
            assert!(is_embedded_reber(&reber_ids(&embedded)?), "{embedded}");
            assert_eq!(read_embedded(&embedded.chars().collect::<Vec<_>>()), Reading::Complete);
        }
        for bad in ["BTSSPXSE", "BPTVVB", "BTXXVVSE", "BPVSPSE", "BTSSSE"] {
            assert!(!is_reber(&reber_ids(bad)?), "{bad}");
            assert!(!is_embedded_reber(&reber_ids(&format!("BP{bad}PE"))?), "{bad}");
        }
        assert_eq!(REBER_GRAPH.iter().flatten().count(), 10);
        assert!(!is_embedded_reber(&reber_ids("BPBPVVETE")?));
        assert!(!is_embedded_reber(&reber_ids("BTBPVVETEBTBPVVETE")?), "two strings are not one");
        assert!(!is_embedded_reber(&[]));
        for (i, &c) in REBER_SYMBOLS.iter().enumerate() {
            assert_eq!((reber_id(c), reber_char(i as u8)), (Some(i as u8), Some(c)));
        }
        Ok(())
    }

    #[test]
    fn embedded_strings_are_grammatical_with_fair_choices_and_the_expected_length() {
        let mut rng = Rng::new(11);
        let n = 20_000;
        let (mut outer_t, mut inner_total) = (0usize, 0usize);
        let mut inner_first_t = 0usize;
        for _ in 0..n {
            let s = embedded_reber_string(&mut rng);
            assert!(is_embedded_reber(&s));
            assert_eq!(read_embedded(&reber_text(&s).chars().collect::<Vec<_>>()), Reading::Complete);
            assert!(is_reber(&s[2..s.len() - 2]));
            outer_t += usize::from(s[1] == RT);
            inner_first_t += usize::from(s[3] == RT);
            inner_total += s.len() - 4;
        }
        // 20 000 fair choices: standard error 0.0035.
        for (what, count) in [("outer T", outer_t), ("inner first T", inner_first_t)] {
            let share = count as f32 / n as f32;
            assert!((share - 0.5).abs() < 0.02, "{what} share {share}");
        }
        // Expected symbols still to come from each graph node, with fair branchings:
        // L5 = 1 (E); L3 = 1 + (L2 + L5)/2; L4 = 1 + (L3 + L5)/2; L2 = 1 + (L2 + L4)/2, so
        // L2 = 2 + L4; L1 = 2 + L3. Solving: L3 = 13/3, L4 = 11/3, L2 = 17/3, L1 = 19/3, and
        // L0 = 1 + (L1 + L2)/2 = 7. With the leading B an inner string has 8 symbols on average.
        let mean = inner_total as f32 / n as f32;
        assert!((mean - 8.0).abs() < 0.1, "mean inner length {mean}");
    }

    #[test]
    fn continual_stream_targets_are_exactly_the_grammars_next_symbols() -> Result<()> {
        let s = continual_reber(2000, &mut Rng::new(12));
        assert_eq!(s.next_legal.len(), s.len());
        let mut start = 0; // where the current string began
        let mut strings = 0;
        for t in 0..s.len() {
            let current: Vec<char> = s.symbols[start..=t].iter().map(|&i| REBER_SYMBOLS[i as usize]).collect();
            let complete = read_embedded(&current) == Reading::Complete;
            assert_ne!(read_embedded(&current), Reading::Invalid, "{current:?}");
            // Enumerate: which of the seven symbols may come next? After a complete string only
            // the next string's B.
            let mut want = 0u8;
            for (i, &c) in REBER_SYMBOLS.iter().enumerate() {
                let ok = if complete {
                    c == 'B'
                } else {
                    let mut next = current.clone();
                    next.push(c);
                    read_embedded(&next) != Reading::Invalid
                };
                want |= u8::from(ok) << i;
            }
            assert_eq!(s.next_legal[t], want, "after {current:?}");
            assert_eq!(s.string_end[t], complete);
            if t + 1 < s.len() {
                assert_ne!(s.next_legal[t] & (1 << s.symbols[t + 1]), 0, "the stream itself is legal");
            }
            if complete {
                start = t + 1;
                strings += 1;
            }
        }
        assert_eq!((strings, start), (2000, s.len()));

        // One hard position per string, right before the repeated outer symbol.
        let mut start = 0;
        for end in (0..s.len()).filter(|&t| s.string_end[t]) {
            let hard: Vec<usize> = (start..=end).filter(|&t| s.hard[t]).collect();
            assert_eq!(hard, vec![end - 2]);
            assert_eq!(s.symbols[end - 1], s.symbols[start + 1]);
            assert_eq!(s.next_legal[end - 2], 1 << s.symbols[start + 1], "only the outer symbol may follow");
            start = end + 1;
        }
        Ok(())
    }

    #[test]
    fn reber_tensors_and_parallel_batches_line_up() -> Result<()> {
        let dev = crate::device::test_device();
        let s = continual_reber(30, &mut Rng::new(13));
        let (x, y) = s.to_tensors(&dev)?;
        let (x, y) = (x.squeeze(0)?.to_vec2::<f32>()?, y.squeeze(0)?.to_vec2::<f32>()?);
        for t in 0..s.len() {
            assert_eq!(x[t].iter().position(|&v| v == 1.0), Some(s.symbols[t] as usize));
            assert_eq!(x[t].iter().sum::<f32>(), 1.0);
            let bits: u8 = y[t].iter().enumerate().map(|(i, &v)| (v as u8) << i).sum();
            assert_eq!(bits, s.next_legal[t]);
        }
        let empty = continual_reber(0, &mut Rng::new(0));
        assert_eq!(empty.to_tensors(&dev)?.0.dims(), &[1, 0, 7]);

        let b = parallel_reber_streams(5, 40, &mut Rng::new(14), &dev)?;
        // The same draws, one stream after another, cut to the shortest.
        let mut rng = Rng::new(14);
        let full: Vec<ReberStream> = (0..5).map(|_| continual_reber(40, &mut rng)).collect();
        let l = full.iter().map(|f| f.len()).min().unwrap();
        assert_eq!(b.x.dims(), &[5, l, 7]);
        assert_eq!(b.y.dims(), &[5, l, 7]);
        assert!(full.iter().any(|f| f.len() > l), "the lengths should differ and get trimmed");
        let (hard, ends) = (b.hard.to_vec2::<f32>()?, b.string_end.to_vec2::<f32>()?);
        for (i, (f, s)) in full.iter().zip(&b.streams).enumerate() {
            assert_eq!(s, &f.truncated(l));
            let (sx, sy) = s.to_tensors(&dev)?;
            assert_eq!(b.x.get(i)?.to_vec2::<f32>()?, sx.squeeze(0)?.to_vec2::<f32>()?);
            assert_eq!(b.y.get(i)?.to_vec2::<f32>()?, sy.squeeze(0)?.to_vec2::<f32>()?);
            for t in 0..l {
                assert_eq!(hard[i][t] == 1.0, s.hard[t]);
                assert_eq!(ends[i][t] == 1.0, s.string_end[t]);
            }
        }
        assert!(parallel_reber_streams(0, 5, &mut Rng::new(0), &dev).is_err());
        assert!(parallel_reber_streams(2, 0, &mut Rng::new(0), &dev).is_err());
        Ok(())
    }
}
