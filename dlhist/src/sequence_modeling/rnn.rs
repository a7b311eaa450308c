//! # Fully recurrent networks: the tanh RNN
//!
//! R. J. Williams and D. Zipser, "A Learning Algorithm for Continually Running Fully Recurrent Neural
//! Networks", Neural Computation 1(2), 270-280, 1989. <https://doi.org/10.1162/neco.1989.1.2.270>
//! J. L. Elman, "Finding Structure in Time", Cognitive Science 14(2), 179-211, 1990.
//! <https://doi.org/10.1207/s15516709cog1402_1>
//!
//! Williams and Zipser train a network in which every unit feeds every unit, one time step to the next, while
//! it runs: *real-time recurrent learning* (RTRL) carries the sensitivity of each unit to each weight forward
//! in time next to the state, so the gradient is ready at every step without storing the past (at a cost of
//! O(n⁴) operations per step for n units). Elman's "simple recurrent network" copies the hidden layer into
//! context units that feed it back at the next step; PyTorch calls this layer an "Elman RNN" (`nn.RNN`).
//! Both compute the same map from the previous state and the current input to the next state, with input
//! `x_t`, previous state `h_{t−1}` and PyTorch's parameter names:
//!
//! ```text
//! h_t = tanh(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)
//! ```
//!
//! What differs is how the gradient is computed, not the function: here candle's autograd runs
//! back-propagation through time over the steps of a call, and a state carried from one call to the next
//! ([`crate::layers::RecurrentState`]) gives the truncated variant once it is detached. RTRL would give the
//! same gradient, forward in time.
//!
//! ## Why the error signal vanishes or explodes
//!
//! One step back in time multiplies the error signal by the Jacobian
//!
//! ```text
//! ∂h_t/∂h_{t−1} = diag(1 − h_t²) W_hh
//! ```
//!
//! so the signal reaching step `s` from step `t` has gone through `t − s` such factors. Since
//! `0 < 1 − h² ≤ 1`, its norm is at most `‖W_hh‖^{t−s}`: when the largest singular value of `W_hh` is below
//! 1 the signal shrinks geometrically with the distance and long-range dependencies cannot be learned
//! (Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013); when it is well above 1 and the units stay
//! out of saturation, the product can grow geometrically instead and a single step of gradient descent
//! overshoots. The LSTM ([`crate::sequence_modeling::Lstm`]) and the GRU ([`crate::sequence_modeling::Gru`])
//! add a path whose Jacobian is a gate instead of a matrix product.

use candle_core::{IndexOp, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::fast;
use crate::layers::{check_recurrent_input, Recurrent, RecurrentState};

/// One fully recurrent tanh layer over sequences `[B, T, I]` (batch first), hidden size `H`:
/// `h_t = tanh(W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)`.
///
/// Parameters (PyTorch's `nn.RNN` names, without the layer suffix, and its init `U(−1/√H, 1/√H)`):
/// `{path}.weight_ih` `[H, I]`, `{path}.weight_hh` `[H, H]`, `{path}.bias_ih`, `{path}.bias_hh` `[H]`.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::Rnn;
/// let dev = Device::Cpu;
/// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let rnn = Rnn::new(3, 8, vb.pp("rnn"))?;
/// let hs = rnn.forward(&Tensor::zeros((2, 5, 3), DType::F32, &dev)?)?;
/// assert_eq!(hs.dims(), &[2, 5, 8]);
/// assert_eq!(dlhist::init::param_count(&vars), 8 * (3 + 8) + 2 * 8);
/// # Ok::<(), dlhist::Error>(())
/// ```
///
/// A stream longer than one call runs in chunks through [`Recurrent::forward_from`]; the outputs are those of
/// one call on the whole stream, and detaching the carried state truncates back-propagation at each boundary:
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::Recurrent;
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(1, DType::F32, &dev);
/// let rnn = dlhist::sequence_modeling::Rnn::new(2, 4, vb)?;
/// let stream = Rng::new(2).normal_tensor((3, 12, 2), 0.0, 1.0, &dev)?;
/// let (whole, _) = rnn.forward_from(&stream, None)?;
/// let mut state = None;
/// let mut chunks = vec![];
/// for c in 0..3 {
///     let (hs, s) = rnn.forward_from(&stream.narrow(1, 4 * c, 4)?, state.as_ref())?;
///     chunks.push(hs);
///     state = Some(s.detach());
/// }
/// let diff = (Tensor::cat(&chunks, 1)? - whole)?.abs()?.max_all()?.to_scalar::<f32>()?;
/// assert!(diff < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Rnn {
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    input: usize,
    hidden: usize,
}

impl Rnn {
    /// A tanh RNN layer from `input` features to `hidden` units, its parameters under `vb`.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::layers::Recurrent;
    /// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &Device::Cpu);
    /// let rnn = dlhist::sequence_modeling::Rnn::new(3, 5, vb.pp("rnn"))?;
    /// assert_eq!((rnn.input_size(), rnn.hidden_size(), rnn.has_cell()), (3, 5, false));
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn new(input: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        // PyTorch's init for every recurrent layer: U(−1/√H, 1/√H), biases included.
        let k = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        Ok(Rnn {
            weight_ih: vb.get_with_hints((hidden, input), "weight_ih", init)?,
            weight_hh: vb.get_with_hints((hidden, hidden), "weight_hh", init)?,
            bias_ih: vb.get_with_hints(hidden, "bias_ih", init)?,
            bias_hh: vb.get_with_hints(hidden, "bias_hh", init)?,
            input,
            hidden,
        })
    }
}

impl Recurrent for Rnn {
    fn input_size(&self) -> usize {
        self.input
    }

    fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Runs `x` (`[B, T, I]`) from `state` (zero when `None`; a state with a cell is refused): every step's
    /// `h_t` (`[B, T, H]`) and the final state `h_T`.
    ///
    /// On the CPU in f32 the recurrence runs as one op ([`crate::fast::rnn_sequence`]) whose backward pass is
    /// back-propagation through time written out; otherwise (or under `DLHIST_FUSED=0`) it runs step by step as
    /// the candle ops below, and candle's autograd does the back-propagation through time.
    fn forward_from(&self, x: &Tensor, state: Option<&RecurrentState>) -> Result<(Tensor, RecurrentState)> {
        let (b, t) = check_recurrent_input("Rnn", self.input, self.hidden, false, x, state)?;
        // The input part W_ih x_t + b_ih + b_hh does not depend on the recurrence: one matrix product for all
        // T steps instead of T small ones, both biases folded in once.
        let bias = (&self.bias_ih + &self.bias_hh)?;
        let x2 = x.reshape((b * t, self.input))?;
        let h0 = match state {
            Some(s) => s.h.clone(),
            None => Tensor::zeros((b, self.hidden), x.dtype(), x.device())?,
        };
        if fast::applies(&[&x2, &self.weight_ih, &self.weight_hh, &bias, &h0]) {
            // Fused: the input part as one fused linear op (crate::fast::linear), then the whole recurrence,
            // forward and back-propagation through time, as one op (crate::fast::rnn_sequence).
            let xp = fast::linear(&x2, &self.weight_ih, &bias, None)?.reshape((b, t, self.hidden))?;
            let hs = fast::rnn_sequence(&xp, &self.weight_hh, &h0)?;
            let h = hs.narrow(1, t - 1, 1)?.squeeze(1)?;
            return Ok((hs, RecurrentState { h, c: None }));
        }
        // Plain: the equation of the module docs, one time step after another.
        let xp = x2.matmul(&self.weight_ih.t()?)?.broadcast_add(&bias)?;
        let xp = xp.reshape((b, t, self.hidden))?;
        let mut h = h0;
        // Row vectors: W_hh h_{t−1} is h_{t−1} W_hhᵀ for the whole batch at once.
        let w_hh_t = self.weight_hh.t()?;
        let mut hs = Vec::with_capacity(t);
        for step in 0..t {
            // The only sequential work: h_t = tanh(input part + W_hh h_{t−1}).
            h = (xp.i((.., step))? + h.matmul(&w_hh_t)?)?.tanh()?;
            hs.push(h.clone());
        }
        Ok((Tensor::stack(&hs, 1)?, RecurrentState { h, c: None }))
    }
}

impl Module for Rnn {
    /// Every step's output `[B, T, H]`, from the zero state.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_from(x, None)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fast::testing::randn` on the device the tests run on (`DLHIST_DEVICE`).
    fn randn(shape: &[usize], seed: u64) -> Tensor {
        crate::fast::testing::randn(shape, seed).to_device(&crate::device::test_device()).expect("to the test device")
    }
    use candle_core::{DType, Var};

    /// The equation written out in f64 scalars, one example and one step at a time. `p` holds
    /// `[weight_ih, weight_hh, bias_ih, bias_hh, x, h0]`, each flattened row-major; returns `[B, T, H]` flat.
    fn naive(p: &[Vec<f64>], (b, t, inp, hsz): (usize, usize, usize, usize)) -> Vec<f64> {
        let (wih, whh, bih, bhh, xs, h0) = (&p[0], &p[1], &p[2], &p[3], &p[4], &p[5]);
        let mut out = vec![0.0; b * t * hsz];
        for n in 0..b {
            let mut h = h0[n * hsz..(n + 1) * hsz].to_vec();
            for s in 0..t {
                let next: Vec<f64> = (0..hsz)
                    .map(|j| {
                        let mut a = bih[j] + bhh[j];
                        for k in 0..inp {
                            a += wih[j * inp + k] * xs[(n * t + s) * inp + k];
                        }
                        for k in 0..hsz {
                            a += whh[j * hsz + k] * h[k];
                        }
                        a.tanh()
                    })
                    .collect();
                h = next;
                out[(n * t + s) * hsz..(n * t + s + 1) * hsz].copy_from_slice(&h);
            }
        }
        out
    }

    fn params(rnn: &Rnn, x: &Tensor, h0: &Tensor) -> Vec<Vec<f64>> {
        [&rnn.weight_ih, &rnn.weight_hh, &rnn.bias_ih, &rnn.bias_hh, x, h0]
            .iter()
            .map(|t| crate::fast::testing::values_f64(t))
            .collect()
    }

    #[test]
    fn matches_the_equation_written_as_scalar_loops_from_a_nonzero_state() -> Result<()> {
        let dev = crate::device::test_device();
        let (_vars, vb) = crate::init::seeded(3, DType::F32, &dev);
        let rnn = Rnn::new(3, 5, vb)?;
        let (x, h0) = (randn(&[2, 7, 3], 4), randn(&[2, 5], 5).tanh()?);
        let (hs, last) = rnn.forward_from(&x, Some(&RecurrentState { h: h0.clone(), c: None }))?;
        let want = naive(&params(&rnn, &x, &h0), (2, 7, 3, 5));
        for (g, w) in crate::fast::testing::values_f64(&hs).iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        // The final state is the last output.
        assert_eq!(last.h.to_vec2::<f32>()?, hs.i((.., 6))?.to_vec2::<f32>()?);
        assert!(last.c.is_none());
        Ok(())
    }

    /// Autograd's back-propagation through time against f64 central differences of the scalar loops, for every
    /// parameter, the input and the starting state.
    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let dev = crate::device::test_device();
        let (b, t, inp, hsz) = (2, 5, 3, 4);
        let (_vars, vb) = crate::init::seeded(6, DType::F64, &dev);
        let rnn = Rnn::new(inp, hsz, vb)?;
        let x = Var::from_tensor(&randn(&[b, t, inp], 7).to_dtype(DType::F64)?)?;
        let h0 = Var::from_tensor(&randn(&[b, hsz], 8).tanh()?.to_dtype(DType::F64)?)?;
        let r = randn(&[b, t, hsz], 9).to_dtype(DType::F64)?;
        let (hs, _) = rnn.forward_from(&x, Some(&RecurrentState { h: h0.as_tensor().clone(), c: None }))?;
        let grads = (&hs * &r)?.sum_all()?.backward()?;
        let rv = crate::fast::testing::values_f64(&r);
        let loss = |p: &[Vec<f64>]| naive(p, (b, t, inp, hsz)).iter().zip(&rv).map(|(o, w)| o * w).sum::<f64>();
        let want = crate::fast::testing::central_differences(&params(&rnn, &x, &h0), loss);
        let tensors = [&rnn.weight_ih, &rnn.weight_hh, &rnn.bias_ih, &rnn.bias_hh, x.as_tensor(), h0.as_tensor()];
        let names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "x", "h0"];
        for ((t, name), w) in tensors.iter().zip(names).zip(&want) {
            let got =
                crate::fast::testing::values_f64(grads.get(t).unwrap_or_else(|| panic!("{name} has no gradient")));
            for (g, w) in got.iter().zip(w) {
                assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{name}: {g} vs {w}");
            }
        }
        Ok(())
    }

    #[test]
    fn chunks_with_carried_state_equal_one_call_and_detach_cuts_the_gradient() -> Result<()> {
        let (_vars, vb) = crate::init::seeded(10, DType::F32, &crate::device::test_device());
        let rnn = Rnn::new(2, 6, vb)?;
        let x = Var::from_tensor(&randn(&[3, 9, 2], 11))?;
        let h0 = RecurrentState { h: randn(&[3, 6], 12).tanh()?, c: None };
        crate::layers::assert_carried_state_continues(&rnn, &x, &h0, 4, "Rnn")
    }

    /// The fused and plain paths in f32: outputs, final state, and the gradients of every parameter, of the input
    /// and of the starting state; long and tiny sequences (T = 1, H = 1), strided input.
    #[test]
    fn fused_and_plain_paths_agree() -> Result<()> {
        let cases = [(32, 50, 16, false), (3, 7, 5, true), (1, 1, 1, false), (2, 4, 3, true), (5, 1, 1, true)];
        for ((b, t, h, non_contiguous), from_state) in cases.into_iter().flat_map(|c| [(c, false), (c, true)]) {
            let (vars, vb) = crate::init::seeded(21, DType::F32, &candle_core::Device::Cpu);
            let rnn = Rnn::new(3, h, vb)?;
            let x = Var::from_tensor(&crate::fast::testing::randn(&[b, t, 3], 22))?;
            // Each case from the zero state and from a random one, whose gradient is checked too.
            let h0 = Var::from_tensor(&crate::fast::testing::randn(&[b, h], 23))?;
            let start = if from_state { Some((&h0, None)) } else { None };
            let what = format!("b {b} t {t} h {h} from a state {from_state}");
            crate::layers::assert_fused_and_plain_agree(&rnn, &vars, &x, non_contiguous, start, &what)?;
        }
        Ok(())
    }

    #[test]
    fn bad_shapes_are_named_in_the_error() -> Result<()> {
        let dev = crate::device::test_device();
        let (_vars, vb) = crate::init::seeded(13, DType::F32, &dev);
        let rnn = Rnn::new(3, 4, vb)?;
        let err = |x: &Tensor, s: Option<&RecurrentState>| rnn.forward_from(x, s).unwrap_err().to_string();
        let e = err(&Tensor::zeros((2, 3), DType::F32, &dev)?, None);
        assert!(e.contains("Rnn") && e.contains("[B, T, I]") && e.contains("[2, 3]"), "{e}");
        let e = err(&Tensor::zeros((2, 4, 5), DType::F32, &dev)?, None);
        assert!(e.contains("Rnn over 3 input features") && e.contains("[2, 4, 5]"), "{e}");
        let x = Tensor::zeros((2, 4, 3), DType::F32, &dev)?;
        let e = err(&x, Some(&RecurrentState::zeros(3, 4, false, DType::F32, &dev)?));
        assert!(e.contains("[3, 4]") && e.contains("[2, 4]"), "{e}");
        let e = err(&x, Some(&RecurrentState::zeros(2, 4, true, DType::F32, &dev)?));
        assert!(e.contains("no cell"), "{e}");
        assert!(rnn.forward(&Tensor::zeros((2, 0, 3), DType::F32, &dev)?).is_err());
        Ok(())
    }
}
