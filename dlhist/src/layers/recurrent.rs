//! What every recurrent layer shares: a state carried from step to step (and from one chunk of a long stream to
//! the next), a common interface, and the bidirectional wrapper.
//!
//! A recurrent layer maps a sequence `x_1 … x_T` (batch first, `[B, T, I]`) and a starting state `s_0` to the
//! outputs `h_1 … h_T` (`[B, T, H]`) and the final state `s_T`. Passing `s_T` in as the next call's `s_0` runs a
//! stream that is longer than any one call: *truncated* back-propagation through time, where the error signal
//! stops at the chunk boundary because the carried state is [`RecurrentState::detach`]ed, while the forward
//! dynamics see the whole past.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

/// The state a recurrent layer carries between steps: the output `h` (`[B, H]`) and, for an LSTM, the cell `c`.
#[derive(Debug, Clone)]
pub struct RecurrentState {
    /// The last output `h_t`, `[B, H]`.
    pub h: Tensor,
    /// The LSTM's cell `c_t`, `[B, H]`; `None` for layers without one (tanh RNN, GRU).
    pub c: Option<Tensor>,
}

impl RecurrentState {
    /// All zeros: `h` of `[batch, hidden]`, and a cell of the same shape when `with_cell`.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::layers::RecurrentState;
    /// let s = RecurrentState::zeros(2, 3, true, DType::F32, &Device::Cpu)?;
    /// assert_eq!((s.h.dims(), s.c.as_ref().map(|c| c.dims().to_vec())), (&[2, 3][..], Some(vec![2, 3])));
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn zeros(batch: usize, hidden: usize, with_cell: bool, dtype: DType, dev: &Device) -> Result<Self> {
        let h = Tensor::zeros((batch, hidden), dtype, dev)?;
        let c = if with_cell { Some(h.clone()) } else { None };
        Ok(RecurrentState { h, c })
    }

    /// The same values cut from the graph that produced them: the next chunk's gradients stop here, which is
    /// what makes back-propagation through time *truncated* (and keeps memory bounded on an endless stream).
    pub fn detach(&self) -> Self {
        RecurrentState { h: self.h.detach(), c: self.c.as_ref().map(Tensor::detach) }
    }

    /// Zeroes the state of the batch rows where `keep` (`[B]`, 1 keep / 0 reset, the state's dtype) is 0: a
    /// stream that starts a new sequence there begins from the zero state, as a freshly built net would.
    pub fn reset_where(&self, keep: &Tensor) -> Result<Self> {
        let k = keep.unsqueeze(1)?;
        Ok(RecurrentState {
            h: self.h.broadcast_mul(&k)?,
            c: match &self.c {
                Some(c) => Some(c.broadcast_mul(&k)?),
                None => None,
            },
        })
    }

    /// The batch size `B`.
    pub fn batch_size(&self) -> usize {
        self.h.dims().first().copied().unwrap_or(0)
    }
}

/// A recurrent layer over batch-first sequences: [`crate::sequence_modeling::Rnn`],
/// [`crate::sequence_modeling::Lstm`], [`crate::sequence_modeling::Gru`].
pub trait Recurrent {
    /// Features per input step `I`.
    fn input_size(&self) -> usize;
    /// Units `H`: the width of each output step and of the state.
    fn hidden_size(&self) -> usize;
    /// Whether the state has a cell besides `h` (the LSTM's `c`).
    fn has_cell(&self) -> bool {
        false
    }
    /// The zero state for `batch` sequences.
    fn zero_state(&self, batch: usize, dtype: DType, dev: &Device) -> Result<RecurrentState> {
        RecurrentState::zeros(batch, self.hidden_size(), self.has_cell(), dtype, dev)
    }
    /// Runs `x` (`[B, T, I]`) from `state` (the zero state when `None`); returns every step's output
    /// `[B, T, H]` and the final state.
    fn forward_from(&self, x: &Tensor, state: Option<&RecurrentState>) -> Result<(Tensor, RecurrentState)>;

    /// Like [`Recurrent::forward_from`], but zeroing the state of row `b` before step `t` wherever `keep[b, t]`
    /// is 0 (`keep`: `[B, T]`, 1 keep / 0 reset, the input's dtype): a stream of concatenated sequences run as
    /// if the net were restarted at each sequence's start. The default runs one step per call.
    fn forward_resetting(
        &self,
        x: &Tensor,
        state: Option<&RecurrentState>,
        keep: &Tensor,
    ) -> Result<(Tensor, RecurrentState)> {
        let (b, t) =
            check_input("forward_resetting", self.input_size(), self.hidden_size(), self.has_cell(), x, state)?;
        check_keep("forward_resetting", (b, t), keep)?;
        let mut s = match state {
            Some(s) => s.clone(),
            None => self.zero_state(b, x.dtype(), x.device())?,
        };
        let mut hs = Vec::with_capacity(t);
        for step in 0..t {
            s = s.reset_where(&keep.narrow(1, step, 1)?.squeeze(1)?)?;
            let (h, next) = self.forward_from(&x.narrow(1, step, 1)?, Some(&s))?;
            hs.push(h);
            s = next;
        }
        Ok((Tensor::cat(&hs, 1)?, s))
    }
}

/// Checks a recurrent layer's input `[B, T, I]` and starting state against the layer; returns `(B, T)`.
pub(crate) fn check_input(
    layer: &str,
    input: usize,
    hidden: usize,
    has_cell: bool,
    x: &Tensor,
    state: Option<&RecurrentState>,
) -> Result<(usize, usize)> {
    let (b, t, i) = x.dims3().map_err(|_| {
        candle_core::Error::Msg(format!("{layer} expects sequences [B, T, I] (batch first); got {:?}", x.dims()))
    })?;
    if i != input {
        candle_core::bail!("{layer} over {input} input features got input {:?} ([B, T, I] with I = {i})", x.dims())
    }
    if t == 0 {
        candle_core::bail!("{layer} needs at least one time step; got {:?}", x.dims())
    }
    if let Some(s) = state {
        if s.h.dims() != [b, hidden] {
            candle_core::bail!("{layer}: the state's h is {:?}; this input needs [{b}, {hidden}]", s.h.dims())
        }
        match (&s.c, has_cell) {
            (Some(c), true) if c.dims() != [b, hidden] => {
                candle_core::bail!("{layer}: the state's c is {:?}; this input needs [{b}, {hidden}]", c.dims())
            }
            (None, true) => candle_core::bail!("{layer} needs a state with a cell c (RecurrentState::c is None)"),
            (Some(_), false) => candle_core::bail!("{layer} has no cell; pass a state with c = None"),
            _ => {}
        }
    }
    Ok((b, t))
}

/// Checks a reset mask `keep` against the input's `(B, T)`.
pub(crate) fn check_keep(layer: &str, (b, t): (usize, usize), keep: &Tensor) -> Result<()> {
    if keep.dims() != [b, t] {
        candle_core::bail!("{layer}: keep must be [B, T] = [{b}, {t}] (1 keep, 0 reset); got {:?}", keep.dims())
    }
    Ok(())
}

/// Reverses a batch-first sequence `[B, T, …]` in time.
pub fn reverse_time(x: &Tensor) -> Result<Tensor> {
    let t = x.dims().get(1).copied().unwrap_or(0);
    let idx: Vec<u32> = (0..t as u32).rev().collect();
    // index_select wants a contiguous source; a layer's outputs are often a view (a narrow of a larger result).
    x.contiguous()?.index_select(&Tensor::from_vec(idx, t, x.device())?, 1)
}

/// Two recurrent layers reading the sequence in opposite directions, their outputs concatenated per step:
/// `[h→_t ; h←_t]`, `[B, T, 2H]` (Schuster & Paliwal 1997; the encoder of Bahdanau et al. 2014). Step `t`'s
/// output then summarizes the whole sequence, the past through `h→_t` and the future through `h←_t`.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::{Bidirectional, Recurrent};
/// use dlhist::sequence_modeling::Lstm;
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let bi = Bidirectional::new(Lstm::new(3, 4, vb.pp("fwd"))?, Lstm::new(3, 4, vb.pp("bwd"))?)?;
/// let (hs, (fwd, bwd)) = bi.forward_both(&Tensor::ones((2, 5, 3), DType::F32, &dev)?)?;
/// assert_eq!(hs.dims(), &[2, 5, 8]);
/// assert_eq!((fwd.h.dims(), bwd.h.dims()), (&[2, 4][..], &[2, 4][..]));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Bidirectional<R> {
    forward: R,
    backward: R,
}

impl<R: Recurrent> Bidirectional<R> {
    /// Wraps a forward and a backward layer of the same sizes.
    pub fn new(forward: R, backward: R) -> Result<Self> {
        if (forward.input_size(), forward.hidden_size()) != (backward.input_size(), backward.hidden_size()) {
            candle_core::bail!(
                "Bidirectional: the forward layer maps {} -> {} features, the backward {} -> {}; build both alike",
                forward.input_size(),
                forward.hidden_size(),
                backward.input_size(),
                backward.hidden_size()
            )
        }
        Ok(Bidirectional { forward, backward })
    }

    /// Every step's `[h→_t ; h←_t]` (`[B, T, 2H]`) and both final states: the forward layer's after step `T`,
    /// the backward layer's after reading back to step 1.
    pub fn forward_both(&self, x: &Tensor) -> Result<(Tensor, (RecurrentState, RecurrentState))> {
        let (hf, sf) = self.forward.forward_from(x, None)?;
        // The backward layer reads x_T … x_1; flipping its outputs back lines h←_t up with x_t.
        let (hb, sb) = self.backward.forward_from(&reverse_time(x)?, None)?;
        Ok((Tensor::cat(&[hf, reverse_time(&hb)?], 2)?, (sf, sb)))
    }
}

impl<R: Recurrent> candle_core::Module for Bidirectional<R> {
    /// Every step's `[h→_t ; h←_t]`, `[B, T, 2H]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_both(x)?.0)
    }
}

/// What a [`RecurrentNet`] reads out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readout {
    /// The last step's output only: `[B, O]` (a label or a value per sequence: the adding problem).
    Last,
    /// Every step's output: `[B, T, O]` (a prediction per step: the next symbol of a stream).
    EveryStep,
}

/// A recurrent layer with a linear readout `y = W h + b`: the whole model of the section's small experiments.
///
/// Run *stateful* ([`RecurrentNet::stateful`]), each call continues from the state the previous call ended in,
/// detached: feed it consecutive chunks of parallel streams (batch row `b` of chunk `k + 1` continuing row `b`
/// of chunk `k`, e.g. [`crate::train::FitConfig::shuffle`] off) and training is truncated back-propagation
/// through time. [`RecurrentNet::reset_on`] restarts a row's state before every step whose input has a given
/// feature set: the net is told where each sequence in the stream begins.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::{RecurrentNet, Readout};
/// use dlhist::sequence_modeling::Lstm;
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let net = RecurrentNet::new(Lstm::new(2, 8, vb.pp("lstm"))?, 1, Readout::Last, vb.pp("out"))?;
/// let y = net.forward_t(&Tensor::zeros((4, 10, 2), DType::F32, &dev)?, false)?;
/// assert_eq!(y.dims(), &[4, 1]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub struct RecurrentNet {
    rnn: Box<dyn Recurrent>,
    out: super::Dense,
    readout: Readout,
    carry: Option<std::cell::RefCell<Option<RecurrentState>>>,
    reset_feature: Option<usize>,
}

impl std::fmt::Debug for RecurrentNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecurrentNet")
            .field("input", &self.rnn.input_size())
            .field("hidden", &self.rnn.hidden_size())
            .field("readout", &self.readout)
            .field("stateful", &self.carry.is_some())
            .field("reset_feature", &self.reset_feature)
            .finish()
    }
}

impl RecurrentNet {
    /// `rnn` followed by a linear readout to `outputs` values (parameters `{path}.weight`, `{path}.bias`).
    pub fn new(rnn: impl Recurrent + 'static, outputs: usize, readout: Readout, vb: VarBuilder) -> Result<Self> {
        let out = super::Dense::new(rnn.hidden_size(), outputs, None, vb)?;
        Ok(RecurrentNet { rnn: Box::new(rnn), out, readout, carry: None, reset_feature: None })
    }

    /// Carry the state from each call to the next (detached, so gradients stop at the call's start).
    pub fn stateful(mut self) -> Self {
        self.carry = Some(std::cell::RefCell::new(None));
        self
    }

    /// Restart a row's state before every step whose input feature `feature` is non-zero (a start symbol).
    pub fn reset_on(mut self, feature: usize) -> Self {
        self.reset_feature = Some(feature);
        self
    }

    /// Forgets the carried state: the next call starts from zero (a new set of streams).
    pub fn reset_state(&self) {
        if let Some(c) = &self.carry {
            c.replace(None);
        }
    }

    /// The carried state, if stateful and a call has run.
    pub fn state(&self) -> Option<RecurrentState> {
        self.carry.as_ref().and_then(|c| c.borrow().clone())
    }

    /// The recurrent layer.
    pub fn rnn(&self) -> &dyn Recurrent {
        self.rnn.as_ref()
    }

    /// Every step's recurrent output `[B, T, H]` (before the readout), continuing a stateful net's stream.
    pub fn hidden(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dims().first().copied().unwrap_or(0);
        // A carried state from a different number of streams cannot continue them: start fresh.
        let start = self.state().filter(|s| s.batch_size() == b);
        let (hs, end) = match self.reset_feature {
            Some(k) => {
                if k >= self.rnn.input_size() {
                    candle_core::bail!("reset_on({k}): the input has only {} features", self.rnn.input_size())
                }
                let keep = x.narrow(2, k, 1)?.squeeze(2)?.eq(0.0)?.to_dtype(x.dtype())?;
                self.rnn.forward_resetting(x, start.as_ref(), &keep)?
            }
            None => self.rnn.forward_from(x, start.as_ref())?,
        };
        if let Some(c) = &self.carry {
            c.replace(Some(end.detach()));
        }
        Ok(hs)
    }
}

impl candle_core::ModuleT for RecurrentNet {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let hs = self.hidden(x)?;
        match self.readout {
            Readout::Last => {
                let t = hs.dims()[1];
                // `contiguous`: the last step of [B, T, H] has a row stride of T·H, and candle's CUDA matrix
                // product only takes packed rows (a no-op copy of B·H values on the CPU).
                self.out.forward(&hs.narrow(1, t - 1, 1)?.squeeze(1)?.contiguous()?)
            }
            Readout::EveryStep => self.out.forward(&hs),
        }
    }
}

/// Test helper: the fused and the plain path of `layer` on `x` (given strided when `non_contiguous`), from the
/// zero state or from `start` (`h_0`, and `c_0` for an LSTM): the same outputs and final state, and the same
/// gradients of every parameter in `vars`, of `x` and of the starting state.
#[cfg(test)]
pub(crate) fn assert_fused_and_plain_agree(
    layer: &dyn Recurrent,
    vars: &candle_nn::VarMap,
    x: &candle_core::Var,
    non_contiguous: bool,
    start: Option<(&candle_core::Var, Option<&candle_core::Var>)>,
    what: &str,
) -> Result<()> {
    let xi = if non_contiguous { crate::fast::testing::strided(x.as_tensor())? } else { x.as_tensor().clone() };
    let state = start.map(|(h, c)| RecurrentState { h: h.as_tensor().clone(), c: c.map(|c| c.as_tensor().clone()) });
    let run = || -> Result<Tensor> {
        let (hs, end) = layer.forward_from(&xi, state.as_ref())?;
        let mut parts = vec![hs.flatten_from(1)?, end.h];
        parts.extend(end.c);
        Tensor::cat(&parts, 1)
    };
    let (fused, plain) = (run()?, crate::fast::plain(run)?);
    let mut inputs = vec![x];
    if let Some((h, c)) = start {
        inputs.push(h);
        inputs.extend(c);
    }
    crate::fast::testing::assert_paths_agree(&fused, &plain, vars, &inputs, what)
}

/// Test helper: running `x` (`[B, T, I]`, T ≥ 2) from `start` in two chunks split at `split`, the state carried
/// across, gives the outputs and final state of one call; and the second chunk's gradient reaches the first
/// chunk's inputs through the carried state and not through the detached one.
#[cfg(test)]
pub(crate) fn assert_carried_state_continues(
    layer: &dyn Recurrent,
    x: &candle_core::Var,
    start: &RecurrentState,
    split: usize,
    what: &str,
) -> Result<()> {
    use crate::fast::testing::assert_close;
    let t = x.dims()[1];
    let (whole, end) = layer.forward_from(x, Some(start))?;
    let (a, mid) = layer.forward_from(&x.narrow(1, 0, split)?, Some(start))?;
    let (b, end2) = layer.forward_from(&x.narrow(1, split, t - split)?, Some(&mid))?;
    assert_close(&Tensor::cat(&[a, b], 1)?, &whole, &format!("{what}: chunked outputs"))?;
    assert_close(&end2.h, &end.h, &format!("{what}: final h"))?;
    if let (Some(c2), Some(c)) = (&end2.c, &end.c) {
        assert_close(c2, c, &format!("{what}: final c"))?;
    }
    // Only the second chunk enters the loss: through the carried state the error reaches the first chunk's
    // inputs; through the detached state it does not.
    for detach in [false, true] {
        let (_, mid) = layer.forward_from(&x.narrow(1, 0, split)?, Some(start))?;
        let carried = if detach { mid.detach() } else { mid };
        let (b, _) = layer.forward_from(&x.narrow(1, split, t - split)?, Some(&carried))?;
        let grads = b.sum_all()?.backward()?;
        let gx = grads.get(x).expect("x is a variable");
        let first = gx.narrow(1, 0, split)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        let second = gx.narrow(1, split, t - split)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert!(second > 0.0, "{what}: no gradient in the second chunk");
        assert_eq!(first == 0.0, detach, "{what}: first chunk's input gradient {first}, detach {detach}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::IndexOp;

    #[test]
    fn reverse_time_flips_only_the_time_axis() -> Result<()> {
        let x = Tensor::arange(0f32, 12., &crate::device::test_device())?.reshape((2, 3, 2))?;
        let r = reverse_time(&x)?;
        assert_eq!(r.i((1, 0))?.to_vec1::<f32>()?, vec![10., 11.]);
        assert_eq!(r.i((0, 2))?.to_vec1::<f32>()?, vec![0., 1.]);
        assert_eq!(reverse_time(&r)?.to_vec3::<f32>()?, x.to_vec3::<f32>()?);
        Ok(())
    }

    #[test]
    fn reset_where_zeroes_only_the_marked_rows_and_detach_keeps_values() -> Result<()> {
        let dev = crate::device::test_device();
        let s = RecurrentState {
            h: Tensor::ones((3, 2), DType::F32, &dev)?,
            c: Some(Tensor::ones((3, 2), DType::F32, &dev)?),
        };
        let r = s.reset_where(&Tensor::new(&[1f32, 0., 1.], &dev)?)?;
        assert_eq!(r.h.sum(1)?.to_vec1::<f32>()?, vec![2., 0., 2.]);
        assert_eq!(r.c.unwrap().sum(1)?.to_vec1::<f32>()?, vec![2., 0., 2.]);
        assert_eq!(s.detach().h.to_vec2::<f32>()?, s.h.to_vec2::<f32>()?);
        assert_eq!(s.batch_size(), 3);
        Ok(())
    }

    /// A stateful net fed a stream in chunks reads out what one call on the whole stream reads out; reset_on
    /// restarts rows exactly where the marked feature is set; the default resetting loop agrees with Lstm's own.
    #[test]
    fn stateful_net_continues_streams_and_reset_on_restarts_them() -> Result<()> {
        use crate::sequence_modeling::{Gru, GruVariant, Lstm};
        use candle_core::{IndexOp, ModuleT};
        let dev = crate::device::test_device();
        let x = crate::rng::Rng::new(1).normal_tensor((2, 9, 3), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?;
        let (_vars, vb) = crate::init::seeded(2, DType::F32, &dev);
        let whole = RecurrentNet::new(Lstm::new(3, 4, vb.pp("rnn"))?, 2, Readout::EveryStep, vb.pp("out"))?;
        let chunked =
            RecurrentNet::new(Lstm::new(3, 4, vb.pp("rnn"))?, 2, Readout::EveryStep, vb.pp("out"))?.stateful();
        let want = whole.forward_t(&x, false)?;
        let a = chunked.forward_t(&x.narrow(1, 0, 4)?, false)?;
        let b = chunked.forward_t(&x.narrow(1, 4, 5)?, false)?;
        crate::fast::testing::assert_close(&Tensor::cat(&[a, b], 1)?, &want, "chunked stream")?;
        chunked.reset_state();
        assert!(chunked.state().is_none());
        // Feature 0 set at step 5 of row 1 only: that row restarts there, row 0 runs on.
        let mut flags = vec![0f32; 2 * 9 * 3];
        flags[(9 + 5) * 3] = 1.0;
        let xr = Tensor::cat(&[Tensor::from_vec(flags, (2, 9, 3), &dev)?.narrow(2, 0, 1)?, x.narrow(2, 1, 2)?], 2)?;
        let net = RecurrentNet::new(Lstm::new(3, 4, vb.pp("rnn"))?, 2, Readout::EveryStep, vb.pp("out"))?.reset_on(0);
        let got = net.forward_t(&xr, false)?;
        crate::fast::testing::assert_close(&got.i(0..1)?, &whole.forward_t(&xr.i(0..1)?, false)?, "row 0")?;
        crate::fast::testing::assert_close(
            &got.i((1..2, 5..9))?,
            &whole.forward_t(&xr.i((1..2, 5..9))?, false)?,
            "row 1",
        )?;
        // The trait's default loop (a GRU has no loop of its own) agrees with a restart by hand.
        let gru = Gru::new(3, 4, GruVariant::ResetAfter, vb.pp("gru"))?;
        let keep = Tensor::new(&[[1f32, 1., 0., 1.]], &dev)?;
        let (hs, _) = gru.forward_resetting(&x.i((0..1, 0..4))?, None, &keep)?;
        let (fresh, _) = gru.forward_from(&x.i((0..1, 2..4))?, None)?;
        crate::fast::testing::assert_close(&hs.i((.., 2..4))?, &fresh, "default resetting loop")?;
        Ok(())
    }

    /// The backward half of a bidirectional layer at step t has read x_T … x_t: it equals the backward layer run
    /// on the reversed sequence, flipped back; the forward half is the forward layer alone.
    #[test]
    fn bidirectional_reads_both_ways_and_lines_the_steps_up() -> Result<()> {
        use crate::sequence_modeling::Lstm;
        use candle_core::IndexOp;
        let dev = crate::device::test_device();
        let (_vars, vb) = crate::init::seeded(3, DType::F32, &dev);
        let (f, b) = (Lstm::new(2, 3, vb.pp("f"))?, Lstm::new(2, 3, vb.pp("b"))?);
        let bi = Bidirectional::new(f.clone(), b.clone())?;
        let x = crate::rng::Rng::new(4).normal_tensor((2, 5, 2), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?;
        let hs = bi.forward(&x)?;
        crate::fast::testing::assert_close(&hs.i((.., .., 0..3))?, &f.forward(&x)?, "forward half")?;
        // Step 4's backward output has read only x_4; step 0's has read the whole sequence backwards.
        let last_only = b.forward(&x.i((.., 4..5))?)?;
        crate::fast::testing::assert_close(&hs.i((.., 4..5, 3..6))?, &last_only, "backward half at the end")?;
        let whole = b.forward(&reverse_time(&x)?)?;
        crate::fast::testing::assert_close(&hs.i((.., 0, 3..6))?, &whole.i((.., 4))?, "backward half at the start")?;
        assert!(Bidirectional::new(f, Lstm::new(2, 4, vb.pp("other"))?).is_err());
        Ok(())
    }

    #[test]
    fn check_input_names_the_shapes() {
        let dev = crate::device::test_device();
        let x = Tensor::zeros((2, 4, 3), DType::F32, &dev).unwrap();
        assert_eq!(check_input("L", 3, 5, false, &x, None).unwrap(), (2, 4));
        let e = check_input("L", 2, 5, false, &x, None).unwrap_err().to_string();
        assert!(e.contains("[2, 4, 3]"), "{e}");
        let bad = RecurrentState::zeros(3, 5, false, DType::F32, &dev).unwrap();
        let e = check_input("L", 3, 5, false, &x, Some(&bad)).unwrap_err().to_string();
        assert!(e.contains("[3, 5]") && e.contains("[2, 5]"), "{e}");
        let no_cell = RecurrentState::zeros(2, 5, false, DType::F32, &dev).unwrap();
        assert!(check_input("L", 3, 5, true, &x, Some(&no_cell)).is_err());
        assert!(check_input("L", 3, 5, false, &Tensor::zeros((2, 3), DType::F32, &dev).unwrap(), None).is_err());
    }
}
