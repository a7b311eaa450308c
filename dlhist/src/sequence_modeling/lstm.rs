//! # Long short-term memory
//!
//! S. Hochreiter and J. Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8), 1735-1780, 1997.
//! <https://www.bioinf.jku.at/publications/older/2604.pdf>
//! The forget gate: F. A. Gers, J. Schmidhuber and F. Cummins, "Learning to Forget: Continual Prediction with
//! LSTM", Neural Computation 12(10), 2000. <https://doi.org/10.1162/089976600300015015>
//!
//! A plain recurrent net multiplies its error signal by the same recurrent weights at every step back in time,
//! so the signal vanishes or explodes. The LSTM carries a *cell* `c` whose only recurrence is an element-wise,
//! gated sum (the paper's "constant error carousel"): with the forget gate open, `∂c_t/∂c_{t−1} = f_t ≈ 1`.
//! With input `x_t`, previous output `h_{t−1}` and cell `c_{t−1}` (PyTorch's `nn.LSTM` layout, gates in the
//! order i, f, g, o):
//!
//! ```text
//! [a_i, a_f, a_g, a_o] = W_ih x_t + b_ih + W_hh h_{t−1} + b_hh      (four pre-activations of size H)
//! i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)              (input, forget, candidate, output)
//! c_t = f ⊙ c_{t−1} + i ⊙ g
//! h_t = o ⊙ tanh(c_t)
//! ```
//!
//! The 1997 cell has no forget gate: `c_t = c_{t−1} + i ⊙ g`, so `∂c_t/∂c_{t−1} = 1` exactly, and error flows
//! back undiminished for any number of steps, but the cell can only grow or shrink by what the input gate lets
//! in, never be wiped. On a stream that never resets, `c` drifts without bound and the output saturates; the
//! forget gate of 2000 is the fix ([`LstmConfig::forget_gate`]). The 1997 paper squashes the cell input with a
//! logistic scaled to `[−2, 2]` and the cell output to `[−1, 1]`; we use `tanh` for both, as later work does.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::fast;
use crate::layers::{check_recurrent_input, Recurrent, RecurrentState};

/// Which LSTM cell, and where its gate biases start.
///
/// The default is the cell of Gers et al. (with the forget gate), every bias drawn like PyTorch's. The bias
/// offsets are added to the drawn initial `bias_ih` when the layer's parameters are created (not when they are
/// loaded from a checkpoint). The 1997 paper started output gates at negative biases so that cells stay shut
/// until they are useful, and Gers et al. open the forget gates at the start (positive bias), so that the cells
/// remember by default and learn when to forget.
///
/// ```
/// use dlhist::sequence_modeling::LstmConfig;
/// let c1997 = LstmConfig::hochreiter_1997();
/// assert!(!c1997.forget_gate);
/// assert_eq!(LstmConfig { forget_bias: 1.0, ..Default::default() }.gates(), 4);
/// assert_eq!(c1997.gates(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LstmConfig {
    /// With the forget gate (Gers, Schmidhuber & Cummins 2000, and PyTorch's `nn.LSTM`); without it, the 1997
    /// cell `c_t = c_{t−1} + i ⊙ g`, whose parameters then hold three gates (i, g, o) instead of four.
    pub forget_gate: bool,
    /// Added to the input gate's initial bias.
    pub input_bias: f64,
    /// Added to the forget gate's initial bias (ignored without a forget gate).
    pub forget_bias: f64,
    /// Added to the output gate's initial bias.
    pub output_bias: f64,
}

impl Default for LstmConfig {
    fn default() -> Self {
        LstmConfig { forget_gate: true, input_bias: 0.0, forget_bias: 0.0, output_bias: 0.0 }
    }
}

impl LstmConfig {
    /// The 1997 cell: input and output gates, the constant error carousel, no forget gate.
    pub fn hochreiter_1997() -> Self {
        LstmConfig { forget_gate: false, ..Default::default() }
    }

    /// Gate pre-activations per unit: 4 (i, f, g, o) with the forget gate, 3 (i, g, o) without.
    pub fn gates(&self) -> usize {
        if self.forget_gate {
            4
        } else {
            3
        }
    }
}

/// One LSTM layer over sequences `[B, T, I]` (batch first), hidden size `H`.
///
/// Parameters (PyTorch's names and init `U(−1/√H, 1/√H)`): `{path}.weight_ih` `[GH, I]`, `{path}.weight_hh`
/// `[GH, H]`, `{path}.bias_ih`, `{path}.bias_hh` `[GH]`, with `G = 4` gates (i, f, g, o) or, for the 1997
/// cell, `G = 3` (i, g, o).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::Lstm;
/// let dev = Device::Cpu;
/// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let lstm = Lstm::new(3, 8, vb.pp("lstm"))?;
/// let hs = lstm.forward(&Tensor::zeros((2, 5, 3), DType::F32, &dev)?)?;
/// assert_eq!(hs.dims(), &[2, 5, 8]);
/// assert_eq!(dlhist::init::param_count(&vars), 4 * 8 * (3 + 8) + 2 * 4 * 8);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Lstm {
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    hidden: usize,
    config: LstmConfig,
}

impl Lstm {
    /// An LSTM layer (with the forget gate, PyTorch's init) from `input` features to `hidden` units.
    pub fn new(input: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_config(input, hidden, LstmConfig::default(), vb)
    }

    /// An LSTM layer of the cell and bias offsets `config` chooses.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::sequence_modeling::{Lstm, LstmConfig};
    /// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &Device::Cpu);
    /// let cfg = LstmConfig { output_bias: -2.0, ..LstmConfig::hochreiter_1997() };
    /// let lstm = Lstm::with_config(2, 4, cfg, vb)?;
    /// assert_eq!(dlhist::init::param_count(&vars), 3 * 4 * (2 + 4) + 2 * 3 * 4);
    /// // Output-gate biases start near −2 (the drawn bias lies within ±1/√H = ±0.5 of it).
    /// let b: Vec<f32> = vars.data().lock().unwrap()["bias_ih"].as_tensor().narrow(0, 8, 4)?.to_vec1()?;
    /// assert!(b.iter().all(|&v| (-2.5..=-1.5).contains(&v)));
    /// # let _ = lstm;
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn with_config(input: usize, hidden: usize, config: LstmConfig, vb: VarBuilder) -> Result<Self> {
        let g = config.gates();
        let k = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        // Offsets go on only when this call creates the bias; a loaded or shared one is used as it is.
        let fresh = !vb.contains_tensor("bias_ih");
        let bias_ih = vb.get_with_hints(g * hidden, "bias_ih", init)?;
        let offsets: Vec<f64> = if config.forget_gate {
            vec![config.input_bias, config.forget_bias, 0.0, config.output_bias]
        } else {
            vec![config.input_bias, 0.0, config.output_bias]
        };
        if fresh && offsets.iter().any(|&o| o != 0.0) {
            let per_unit: Vec<f64> = offsets.iter().flat_map(|&o| std::iter::repeat_n(o, hidden)).collect();
            let shifted = (&bias_ih + Tensor::new(per_unit, bias_ih.device())?.to_dtype(bias_ih.dtype())?)?;
            // Written into the variable's own storage, so the optimizer trains the shifted values.
            bias_ih.slice_set(&shifted, 0, 0)?;
        }
        Ok(Lstm {
            weight_ih: vb.get_with_hints((g * hidden, input), "weight_ih", init)?,
            weight_hh: vb.get_with_hints((g * hidden, hidden), "weight_hh", init)?,
            bias_ih,
            bias_hh: vb.get_with_hints(g * hidden, "bias_hh", init)?,
            hidden,
            config,
        })
    }

    /// The hidden size `H`.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// The cell and initialization this layer was built with.
    pub fn config(&self) -> LstmConfig {
        self.config
    }

    /// Runs the sequence from the zero state and returns every step's output `[B, T, H]` and the final
    /// `(h_T, c_T)`, each `[B, H]`.
    ///
    /// On the CPU in f32 the recurrence runs as one op ([`crate::fast::lstm_sequence_from`], either cell, any
    /// starting state) whose backward pass is back-propagation through time written out;
    /// otherwise (or under `DLHIST_FUSED=0`) it runs step by step as the candle ops of the module docs, and
    /// candle's autograd does the back-propagation through time.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// let dev = Device::Cpu;
    /// let (_vars, vb) = dlhist::init::seeded(1, DType::F32, &dev);
    /// let lstm = dlhist::sequence_modeling::Lstm::new(1, 4, vb)?;
    /// let (hs, (h, c)) = lstm.forward_with_state(&Tensor::ones((3, 6, 1), DType::F32, &dev)?)?;
    /// // The last output is the final hidden state.
    /// let last = hs.narrow(1, 5, 1)?.squeeze(1)?;
    /// assert_eq!((last - &h)?.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
    /// assert_eq!(c.dims(), &[3, 4]);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn forward_with_state(&self, x: &Tensor) -> Result<(Tensor, (Tensor, Tensor))> {
        let (hs, s) = self.run(x, None, None)?;
        let c = s.c.expect("an LSTM state has a cell");
        Ok((hs, (s.h, c)))
    }

    /// The whole layer: input checks, the projection of every step's input, then the fused or the plain
    /// recurrence.
    fn run(
        &self,
        x: &Tensor,
        state: Option<&RecurrentState>,
        keep: Option<&Tensor>,
    ) -> Result<(Tensor, RecurrentState)> {
        let (b, t) = check_recurrent_input("Lstm", self.weight_ih.dims()[1], self.hidden, true, x, state)?;
        let i = x.dims()[2];
        let (hsz, gh) = (self.hidden, self.config.gates() * self.hidden);
        // The input projection does not depend on the recurrence: one matrix product for all T steps instead
        // of T small ones. Both biases are folded in here once.
        let bias = (&self.bias_ih + &self.bias_hh)?;
        let x2 = x.reshape((b * t, i))?;
        // [B·T, GH], batch-major: row b·T + t is sequence b's step t.
        let xp_rows = if fast::applies(&[&x2, &self.weight_ih, &bias]) {
            fast::linear(&x2, &self.weight_ih, &bias, None)?
        } else {
            x2.matmul(&self.weight_ih.t()?)?.broadcast_add(&bias)?
        };
        if keep.is_none() {
            // The starting state as one [B, 2, H] tensor: h_0 in row 0, c_0 in row 1.
            let start = match state {
                Some(s) => Tensor::stack(&[&s.h, s.c.as_ref().expect("checked: an LSTM state has a cell")], 1)?,
                None => Tensor::zeros((b, 2, hsz), xp_rows.dtype(), xp_rows.device())?,
            };
            if fast::applies(&[&xp_rows, &self.weight_hh, &start]) {
                // Fused (crate::fast::lstm_sequence_from): the whole recurrence, forward and back-propagation
                // through time, as one op, for either cell. Rows 0..T hold h_1..h_T, row T the final cell. It
                // takes the projections as the dense layer left them: a reshape to [B, T, GH] in between would
                // cost the backward pass a zero-filled copy and an add over all of them (candle's accumulator).
                let out = fast::lstm_sequence_from(&xp_rows, &self.weight_hh, &start, self.config.forget_gate)?;
                let hs = out.narrow(1, 0, t)?;
                let h = out.narrow(1, t - 1, 1)?.squeeze(1)?;
                let c = out.narrow(1, t, 1)?.squeeze(1)?;
                return Ok((hs, RecurrentState { h, c: Some(c) }));
            }
        }
        // Plain: the cell equations of the module docs, one time step after another.
        let xp = xp_rows.reshape((b, t, gh))?;
        let w_hh_t = self.weight_hh.t()?;
        let (mut h, mut c) = match state {
            Some(s) => (s.h.clone(), s.c.clone().expect("checked: an LSTM state has a cell")),
            None => {
                let z = Tensor::zeros((b, hsz), xp.dtype(), xp.device())?;
                (z.clone(), z)
            }
        };
        let mut hs = Vec::with_capacity(t);
        for step in 0..t {
            if let Some(keep) = keep {
                // A sequence starts here in the rows where keep is 0: back to the zero state.
                let k = keep.narrow(1, step, 1)?;
                h = h.broadcast_mul(&k)?;
                c = c.broadcast_mul(&k)?;
            }
            // The gates' pre-activations: the input part precomputed, plus W_hh h_{t−1}.
            let a = (xp.narrow(1, step, 1)?.squeeze(1)? + h.matmul(&w_hh_t)?)?;
            let gate = |k: usize| a.narrow(1, k * hsz, hsz);
            let input_gate = candle_nn::ops::sigmoid(&gate(0)?)?;
            let written = (input_gate * gate(gh / hsz - 2)?.tanh()?)?;
            let output_gate = candle_nn::ops::sigmoid(&gate(gh / hsz - 1)?)?;
            c = if self.config.forget_gate {
                // Learning to forget: the carousel's self-connection becomes the gate f, so ∂c_t/∂c_{t−1} = f.
                let forget_gate = candle_nn::ops::sigmoid(&gate(1)?)?;
                ((forget_gate * &c)? + written)?
            } else {
                // The constant error carousel of 1997: a self-connection of weight exactly 1.
                (&c + written)?
            };
            h = (output_gate * c.tanh()?)?;
            hs.push(h.clone());
        }
        Ok((Tensor::stack(&hs, 1)?, RecurrentState { h, c: Some(c) }))
    }
}

impl Recurrent for Lstm {
    fn input_size(&self) -> usize {
        self.weight_ih.dims()[1]
    }

    fn hidden_size(&self) -> usize {
        self.hidden
    }

    fn has_cell(&self) -> bool {
        true
    }

    fn zero_state(&self, batch: usize, dtype: DType, dev: &Device) -> Result<RecurrentState> {
        RecurrentState::zeros(batch, self.hidden, true, dtype, dev)
    }

    fn forward_from(&self, x: &Tensor, state: Option<&RecurrentState>) -> Result<(Tensor, RecurrentState)> {
        self.run(x, state, None)
    }

    /// Runs the sequence from `state` (zero when `None`) in one plain loop, zeroing the state of row `b` before step `t` wherever
    /// `keep[b, t]` is 0 (`keep`: `[B, T]`, 1 keep / 0 reset, the input's dtype). A stream of concatenated
    /// sequences is then processed as if the net were restarted at each sequence's start: the control of
    /// Gers et al.'s continual experiments, where a 1997 LSTM is told where strings end.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::layers::Recurrent;
    /// let dev = Device::Cpu;
    /// let (_vars, vb) = dlhist::init::seeded(2, DType::F32, &dev);
    /// let lstm = dlhist::sequence_modeling::Lstm::new(1, 3, vb)?;
    /// let x = Tensor::ones((1, 6, 1), DType::F32, &dev)?;
    /// // A reset before step 3: steps 3..6 see a fresh net, so they repeat steps 0..3.
    /// let keep = Tensor::new(&[[1f32, 1., 1., 0., 1., 1.]], &dev)?;
    /// let (hs, _) = lstm.forward_resetting(&x, None, &keep)?;
    /// let (a, b) = (hs.narrow(1, 0, 3)?, hs.narrow(1, 3, 3)?);
    /// assert!((a - b)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-7);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    fn forward_resetting(
        &self,
        x: &Tensor,
        state: Option<&RecurrentState>,
        keep: &Tensor,
    ) -> Result<(Tensor, RecurrentState)> {
        let (b, t) = check_recurrent_input("Lstm", self.weight_ih.dims()[1], self.hidden, true, x, state)?;
        crate::layers::check_keep("Lstm", (b, t), keep)?;
        self.run(x, state, Some(keep))
    }
}

impl Module for Lstm {
    /// Every step's output `[B, T, H]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_with_state(x)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, IndexOp};

    /// The equations written out in f64 scalars, one example and one step at a time, from the starting state
    /// `(h0, c0)` (`[B·H]` each; zeros when `None`), for either cell.
    fn naive(lstm: &Lstm, x: &Tensor, start: Option<(Vec<f64>, Vec<f64>)>) -> Vec<f64> {
        let v = |t: &Tensor| t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let (wih, whh, bih, bhh) = (v(&lstm.weight_ih), v(&lstm.weight_hh), v(&lstm.bias_ih), v(&lstm.bias_hh));
        let (b, t, inp) = x.dims3().unwrap();
        let hsz = lstm.hidden;
        let gates = lstm.config.gates();
        let xs = v(x);
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        let mut out = vec![0.0; b * t * hsz];
        for n in 0..b {
            let (mut h, mut c) = match &start {
                Some((h0, c0)) => (h0[n * hsz..(n + 1) * hsz].to_vec(), c0[n * hsz..(n + 1) * hsz].to_vec()),
                None => (vec![0.0; hsz], vec![0.0; hsz]),
            };
            for s in 0..t {
                let pre = |r: usize| {
                    let mut a = bih[r] + bhh[r];
                    for k in 0..inp {
                        a += wih[r * inp + k] * xs[(n * t + s) * inp + k];
                    }
                    for k in 0..hsz {
                        a += whh[r * hsz + k] * h[k];
                    }
                    a
                };
                let pres: Vec<f64> = (0..gates * hsz).map(pre).collect();
                for j in 0..hsz {
                    let p = |g: usize| pres[g * hsz + j];
                    if gates == 4 {
                        let (i, f, g, o) = (sig(p(0)), sig(p(1)), p(2).tanh(), sig(p(3)));
                        c[j] = f * c[j] + i * g;
                        h[j] = o * c[j].tanh();
                    } else {
                        let (i, g, o) = (sig(p(0)), p(1).tanh(), sig(p(2)));
                        c[j] += i * g;
                        h[j] = o * c[j].tanh();
                    }
                }
                out[(n * t + s) * hsz..(n * t + s + 1) * hsz].copy_from_slice(&h);
            }
        }
        out
    }

    fn randn(seed: u64, shape: &[usize]) -> Result<Tensor> {
        randn_on(seed, shape, &crate::device::test_device())
    }

    fn randn_on(seed: u64, shape: &[usize], dev: &candle_core::Device) -> Result<Tensor> {
        crate::rng::Rng::new(seed).normal_tensor(shape, 0.0, 1.0, dev).map_err(candle_core::Error::wrap)
    }

    #[test]
    fn matches_the_equations_written_as_scalar_loops() -> Result<()> {
        let dev = crate::device::test_device();
        let x = randn(4, &[2, 7, 3])?;
        for config in [LstmConfig::default(), LstmConfig::hochreiter_1997()] {
            let (_vars, vb) = crate::init::seeded(3, DType::F32, &dev);
            let lstm = Lstm::with_config(3, 5, config, vb)?;
            let got: Vec<f32> = lstm.forward(&x)?.flatten_all()?.to_vec1()?;
            for (g, w) in got.iter().zip(naive(&lstm, &x, None)) {
                assert!((*g as f64 - w).abs() < 1e-5, "{config:?}: {g} vs {w}");
            }
            // From a non-zero state too.
            let (h0, c0) = (randn(5, &[2, 5])?, randn(6, &[2, 5])?);
            let state = RecurrentState { h: h0.clone(), c: Some(c0.clone()) };
            let got: Vec<f32> = lstm.forward_from(&x, Some(&state))?.0.flatten_all()?.to_vec1()?;
            let f64s = |t: &Tensor| t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
            for (g, w) in got.iter().zip(naive(&lstm, &x, Some((f64s(&h0), f64s(&c0))))) {
                assert!((*g as f64 - w).abs() < 1e-5, "{config:?} from a state: {g} vs {w}");
            }
        }
        Ok(())
    }

    /// Our layer against candle-nn's LSTM holding the very same variables: outputs and every weight's gradient.
    #[test]
    fn matches_candle_nn_lstm_values_and_gradients() -> Result<()> {
        use candle_nn::rnn::{LSTMConfig, RNN};
        let dev = crate::device::test_device();
        let (vars, vb) = crate::init::seeded(11, DType::F32, &dev);
        let ours = Lstm::new(3, 6, vb)?;
        // The same Var objects under candle-nn's names.
        let theirs_map = candle_nn::VarMap::new();
        for (name, var) in vars.data().lock().unwrap().iter() {
            theirs_map.data().lock().unwrap().insert(format!("{name}_l0"), var.clone());
        }
        let theirs = candle_nn::rnn::lstm(
            3,
            6,
            LSTMConfig::default(),
            candle_nn::VarBuilder::from_varmap(&theirs_map, DType::F32, &dev),
        )?;
        let x = randn(12, &[4, 9, 3])?;
        let r = randn(13, &[4, 9, 6])?;
        for fused in [true, false] {
            let run = || ours.forward(&x);
            let hs = if fused { run()? } else { fast::plain(run)? };
            let states = theirs.seq(&x)?;
            let hs_theirs = Tensor::stack(&states.iter().map(|s| s.h().clone()).collect::<Vec<_>>(), 1)?;
            crate::fast::testing::assert_close(&hs, &hs_theirs, "h")?;
            let (g1, g2) = ((&hs * &r)?.sum_all()?.backward()?, (&hs_theirs * &r)?.sum_all()?.backward()?);
            for (name, var) in vars.data().lock().unwrap().iter() {
                crate::fast::testing::assert_close(g1.get(var).unwrap(), g2.get(var).unwrap(), name)?;
            }
        }
        Ok(())
    }

    /// A stream cut into chunks with the state carried across gives what one call on the whole stream gives;
    /// a detached state stops the gradient at the cut.
    #[test]
    fn carried_state_continues_the_stream_and_detach_truncates_the_gradient() -> Result<()> {
        let dev = crate::device::test_device();
        for config in [LstmConfig::default(), LstmConfig::hochreiter_1997()] {
            let (_vars, vb) = crate::init::seeded(14, DType::F32, &dev);
            let lstm = Lstm::with_config(2, 4, config, vb)?;
            let x = candle_core::Var::from_tensor(&randn(15, &[3, 10, 2])?)?;
            let start = lstm.zero_state(3, DType::F32, &dev)?;
            crate::layers::assert_carried_state_continues(&lstm, &x, &start, 6, &format!("{config:?}"))?;
        }
        Ok(())
    }

    #[test]
    fn resets_restart_each_row_where_keep_is_zero() -> Result<()> {
        let dev = crate::device::test_device();
        let (_vars, vb) = crate::init::seeded(16, DType::F32, &dev);
        let lstm = Lstm::with_config(2, 3, LstmConfig::hochreiter_1997(), vb)?;
        let x = randn(17, &[2, 8, 2])?;
        // Row 0 restarts at step 5, row 1 never.
        let keep = Tensor::new(&[[1f32, 1., 1., 1., 1., 0., 1., 1.], [1.; 8]], &dev)?;
        let start = lstm.zero_state(2, DType::F32, &dev)?;
        let (hs, _) = lstm.forward_resetting(&x, Some(&start), &keep)?;
        let (fresh, _) = lstm.forward_from(&x.i((0..1, 5..8))?, None)?;
        crate::fast::testing::assert_close(&hs.i((0..1, 5..8))?, &fresh, "restarted row")?;
        crate::fast::testing::assert_close(&hs.i(1..2)?, &lstm.forward(&x.i(1..2)?)?, "kept row")?;
        let e = lstm.forward_resetting(&x, None, &Tensor::ones((2, 7), DType::F32, &dev)?).unwrap_err();
        assert!(e.to_string().contains("[2, 8]"), "{e}");
        Ok(())
    }

    #[test]
    fn bias_offsets_apply_when_created_not_when_loaded() -> Result<()> {
        let dev = crate::device::test_device();
        let cfg = LstmConfig { forget_bias: 1.0, output_bias: -2.0, input_bias: 0.5, forget_gate: true };
        let (vars, vb) = crate::init::seeded(18, DType::F32, &dev);
        let lstm = Lstm::with_config(2, 4, cfg, vb.clone())?;
        let (_plain_vars, plain_vb) = crate::init::seeded(18, DType::F32, &dev);
        let plain = Lstm::new(2, 4, plain_vb)?;
        let diff: Vec<f32> = (&lstm.bias_ih - &plain.bias_ih)?.to_vec1()?;
        let want: Vec<f32> = [0.5f32, 1.0, 0.0, -2.0].iter().flat_map(|&o| [o; 4]).collect();
        for (d, w) in diff.iter().zip(&want) {
            assert!((d - w).abs() < 1e-6, "{d} vs {w}");
        }
        // The variable itself holds the shifted values (the optimizer trains them) ...
        let stored = vars.data().lock().unwrap()["bias_ih"].as_tensor().to_vec1::<f32>()?;
        assert_eq!(stored, lstm.bias_ih.to_vec1::<f32>()?);
        // ... and building the layer again on the same variables shifts nothing twice.
        let again = Lstm::with_config(2, 4, cfg, vb)?;
        assert_eq!(again.bias_ih.to_vec1::<f32>()?, lstm.bias_ih.to_vec1::<f32>()?);
        Ok(())
    }

    /// The fused f32 layer against the same layer in f64, which runs the plain step-by-step path: outputs, final
    /// state and every gradient.
    #[test]
    fn fused_sequence_matches_the_composition_values_and_gradients() -> Result<()> {
        let dev = crate::device::test_device();
        let (v32, vb32) = crate::init::seeded(8, DType::F32, &dev);
        let (v64, vb64) = crate::init::seeded(8, DType::F64, &dev);
        let (l32, l64) = (Lstm::new(3, 7, vb32)?, Lstm::new(3, 7, vb64)?);
        let x = candle_core::Var::from_tensor(
            &crate::rng::Rng::new(9).normal_tensor((4, 11, 3), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?,
        )?;
        let x64 = candle_core::Var::from_tensor(&x.to_dtype(DType::F64)?)?;
        let (hs, (h, c)) = l32.forward_with_state(&x)?;
        let (hs64, (h64, c64)) = l64.forward_with_state(&x64)?;
        let f32s = |t: &Tensor| t.to_dtype(DType::F32);
        for (a, b, what) in [(&hs, &hs64, "hs"), (&h, &h64, "h"), (&c, &c64, "c")] {
            crate::fast::testing::assert_close(a, &f32s(b)?, what)?;
        }
        let r = crate::rng::Rng::new(10).normal_tensor(hs.dims(), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?;
        let loss32 = ((&hs * &r)?.sum_all()? + c.sum_all()?)?;
        let loss64 = ((&hs64 * r.to_dtype(DType::F64)?)?.sum_all()? + c64.sum_all()?)?;
        let (g32, g64) = (loss32.backward()?, loss64.backward()?);
        let d32 = v32.data().lock().unwrap().clone();
        let d64 = v64.data().lock().unwrap().clone();
        for (name, var) in d32.iter() {
            let want = f32s(g64.get(&d64[name]).unwrap())?;
            crate::fast::testing::assert_close(g32.get(var).unwrap(), &want, name)?;
        }
        crate::fast::testing::assert_close(g32.get(&x).unwrap(), &f32s(g64.get(&x64).unwrap())?, "dx")?;
        Ok(())
    }

    /// The fused and plain paths in f32: outputs, final state, and the gradients of every parameter and of the
    /// input, long and tiny sequences, strided input.
    #[test]
    fn fused_and_plain_paths_agree() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let cases = [(32, 50, 16, false), (3, 7, 5, true), (1, 1, 1, false), (2, 4, 3, true)];
        for config in [LstmConfig::default(), LstmConfig::hochreiter_1997()] {
            for (k, (b, t, h, non_contiguous)) in cases.into_iter().enumerate() {
                let (vars, vb) = crate::init::seeded(21, DType::F32, &dev);
                let lstm = Lstm::with_config(3, h, config, vb)?;
                let x = candle_core::Var::from_tensor(&randn_on(22, &[b, t, 3], &dev)?)?;
                // Every other case starts from a random state, whose gradient is checked too.
                let (h0, c0) = (
                    candle_core::Var::from_tensor(&randn_on(23, &[b, h], &dev)?)?,
                    candle_core::Var::from_tensor(&randn_on(24, &[b, h], &dev)?)?,
                );
                let start = if k % 2 == 1 { Some((&h0, Some(&c0))) } else { None };
                let what = format!("{config:?} b {b} t {t} h {h}");
                crate::layers::assert_fused_and_plain_agree(&lstm, &vars, &x, non_contiguous, start, &what)?;
            }
        }
        Ok(())
    }

    #[test]
    fn shapes_and_gradients_reach_every_parameter_and_the_first_input() -> Result<()> {
        let dev = crate::device::test_device();
        let (vars, vb) = crate::init::seeded(5, DType::F32, &dev);
        let lstm = Lstm::new(2, 6, vb)?;
        let x = candle_core::Var::from_tensor(
            &crate::rng::Rng::new(6).normal_tensor((3, 9, 2), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?,
        )?;
        let (hs, (h, c)) = lstm.forward_with_state(&x)?;
        assert_eq!((hs.dims(), h.dims(), c.dims()), (&[3, 9, 6][..], &[3, 6][..], &[3, 6][..]));
        // Only the last output enters the loss: the gradient must still reach step 0 through the cell.
        let grads = hs.i((.., 8))?.sum_all()?.backward()?;
        for v in vars.all_vars() {
            assert!(grads.get(&v).unwrap().abs()?.sum_all()?.to_scalar::<f32>()? > 0.0, "{:?}", v.dims());
        }
        let gx = grads.get(&x).unwrap().i((.., 0))?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert!(gx > 0.0);
        assert!(lstm.forward(&Tensor::zeros((2, 3), DType::F32, &dev)?).is_err());
        assert!(lstm.forward(&Tensor::zeros((2, 3, 5), DType::F32, &dev)?).is_err());
        Ok(())
    }
}
