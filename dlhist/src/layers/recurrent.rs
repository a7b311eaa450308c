//! What every recurrent layer shares: a state carried from step to step (and from one chunk of a long stream to
//! the next), a common interface, and the bidirectional wrapper.
//!
//! A recurrent layer maps a sequence `x_1 … x_T` (batch first, `[B, T, I]`) and a starting state `s_0` to the
//! outputs `h_1 … h_T` (`[B, T, H]`) and the final state `s_T`. Passing `s_T` in as the next call's `s_0` runs a
//! stream that is longer than any one call: *truncated* back-propagation through time, where the error signal
//! stops at the chunk boundary because the carried state is [`RecurrentState::detach`]ed, while the forward
//! dynamics see the whole past.

use candle_core::{DType, Device, Result, Tensor};

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

/// Reverses a batch-first sequence `[B, T, …]` in time.
pub fn reverse_time(x: &Tensor) -> Result<Tensor> {
    let t = x.dims().get(1).copied().unwrap_or(0);
    let idx: Vec<u32> = (0..t as u32).rev().collect();
    x.index_select(&Tensor::from_vec(idx, t, x.device())?, 1)
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::IndexOp;

    #[test]
    fn reverse_time_flips_only_the_time_axis() -> Result<()> {
        let x = Tensor::arange(0f32, 12., &Device::Cpu)?.reshape((2, 3, 2))?;
        let r = reverse_time(&x)?;
        assert_eq!(r.i((1, 0))?.to_vec1::<f32>()?, vec![10., 11.]);
        assert_eq!(r.i((0, 2))?.to_vec1::<f32>()?, vec![0., 1.]);
        assert_eq!(reverse_time(&r)?.to_vec3::<f32>()?, x.to_vec3::<f32>()?);
        Ok(())
    }

    #[test]
    fn reset_where_zeroes_only_the_marked_rows_and_detach_keeps_values() -> Result<()> {
        let dev = Device::Cpu;
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

    #[test]
    fn check_input_names_the_shapes() {
        let dev = Device::Cpu;
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
