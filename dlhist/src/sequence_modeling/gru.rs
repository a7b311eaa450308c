//! # Gated recurrent unit
//!
//! K. Cho, B. van Merriënboer, C. Gulcehre, D. Bahdanau, F. Bougares, H. Schwenk and Y. Bengio, "Learning Phrase
//! Representations using RNN Encoder-Decoder for Statistical Machine Translation", EMNLP 2014.
//! <https://arxiv.org/abs/1406.1078>
//!
//! The paper's encoder and decoder are recurrent nets built from a new hidden unit (its section 2.3, equations
//! 5-8, written there without biases) with two gates: a *reset* gate `r` and an *update* gate `z`. For unit `j`:
//!
//! ```text
//! r_j = σ([W_r x]_j + [U_r h_{t−1}]_j)                 (5)  reset
//! z_j = σ([W_z x]_j + [U_z h_{t−1}]_j)                 (6)  update
//! h_t,j = z_j h_{t−1,j} + (1 − z_j) h̃_t,j              (7)
//! h̃_t,j = φ([W x]_j + [U (r ⊙ h_{t−1})]_j)             (8)  candidate, φ = tanh
//! ```
//!
//! With `r ≈ 0` the candidate ignores the previous state and starts afresh from the input; with `z ≈ 1` the
//! unit copies its state forward. The second is the GRU's answer to the vanishing error signal of the plain
//! RNN ([`crate::sequence_modeling::Rnn`]): `∂h_t/∂h_{t−1}` contains the term `diag(z)` directly, not through a
//! matrix product, so the signal passes as many steps as the update gates stay near 1, as through the LSTM's
//! forget gate. Note the convention: `z` weights the *old* state, in the paper and in PyTorch alike. Some later
//! texts let `z` weight the candidate instead; that is the same model with `z ↔ 1 − z`, i.e. the update gate's
//! pre-activation negated.
//!
//! ## Two places for the reset gate
//!
//! In equation 8, `r` multiplies `h_{t−1}` *before* the recurrent matrix `U`. PyTorch's `nn.GRU`, candle-nn's
//! `GRU` and cuDNN apply it *after*, to the product (checked against the `nn.GRU` documentation, gates in the
//! order r, z, n):
//!
//! ```text
//! r = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)
//! z = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)
//! n = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t−1} + b_hn))        GruVariant::ResetAfter
//! n = tanh(W_in x_t + b_in + W_hn (r ⊙ h_{t−1}) + b_hn)        GruVariant::ResetBefore (equation 8)
//! h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}                              (equation 7)
//! ```
//!
//! Reset-after needs no `r` before the recurrent products, so `W_hr h`, `W_hz h` and `W_hn h` are one matrix
//! product per step; reset-before has to wait for `r` before its second product. Keras' and Burn's GRU
//! documentation (their `reset_after` options) attribute the reset-after form to the first arXiv version of
//! the paper (1406.1078v1) and reset-before to the published one. The two differ only in that line: with
//! `r = 1` they agree, and with every `r_j` equal to the same constant and `b_hn = 0` they agree too, since
//! then `r` scales `W_hn h` the same way from either side. Both variants here read the same parameters, so a
//! PyTorch GRU's weights load into either; for reset-before, `b_hn` stays outside `r`, where it acts as a
//! second input bias.

use candle_core::{IndexOp, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::fast;
use crate::layers::{check_recurrent_input, Recurrent, RecurrentState};

/// Where the GRU's reset gate enters the candidate `n` (see the [module docs](self)).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::sequence_modeling::{Gru, GruVariant};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// // The same parameters, read two ways.
/// let after = Gru::new(2, 3, GruVariant::ResetAfter, vb.pp("gru"))?;
/// let before = Gru::new(2, 3, GruVariant::ResetBefore, vb.pp("gru"))?;
/// let x = Rng::new(1).normal_tensor((1, 4, 2), 0.0, 1.0, &dev)?;
/// let diff = (after.forward(&x)? - before.forward(&x)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
/// assert!(diff > 1e-3);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GruVariant {
    /// Cho et al.'s equation 8: `n = tanh(W_in x + b_in + W_hn (r ⊙ h_{t−1}) + b_hn)`.
    ResetBefore,
    /// PyTorch's and candle-nn's GRU: `n = tanh(W_in x + b_in + r ⊙ (W_hn h_{t−1} + b_hn))`.
    ResetAfter,
}

/// One GRU layer over sequences `[B, T, I]` (batch first), hidden size `H`.
///
/// Parameters (PyTorch's `nn.GRU` names, without the layer suffix, and its init `U(−1/√H, 1/√H)`), the rows
/// of each in the gate order r, z, n: `{path}.weight_ih` `[3H, I]`, `{path}.weight_hh` `[3H, H]`,
/// `{path}.bias_ih`, `{path}.bias_hh` `[3H]`. The same for both [`GruVariant`]s.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::Recurrent;
/// use dlhist::sequence_modeling::{Gru, GruVariant};
/// let dev = Device::Cpu;
/// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let gru = Gru::new(3, 8, GruVariant::ResetAfter, vb.pp("gru"))?;
/// let x = Tensor::zeros((2, 5, 3), DType::F32, &dev)?;
/// assert_eq!(gru.forward(&x)?.dims(), &[2, 5, 8]);
/// assert_eq!(dlhist::init::param_count(&vars), 3 * 8 * (3 + 8) + 2 * 3 * 8);
/// // From a given state, returning the final one (carry it into the next chunk of a stream).
/// let start = gru.zero_state(2, DType::F32, &dev)?;
/// let (hs, end) = gru.forward_from(&x, Some(&start))?;
/// assert_eq!((hs.dims(), end.h.dims()), (&[2, 5, 8][..], &[2, 8][..]));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Gru {
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    input: usize,
    hidden: usize,
    variant: GruVariant,
}

impl Gru {
    /// A GRU layer from `input` features to `hidden` units, its parameters under `vb`.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::layers::Recurrent;
    /// use dlhist::sequence_modeling::{Gru, GruVariant};
    /// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &Device::Cpu);
    /// let gru = Gru::new(3, 5, GruVariant::ResetBefore, vb)?;
    /// assert_eq!((gru.input_size(), gru.hidden_size(), gru.variant()), (3, 5, GruVariant::ResetBefore));
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn new(input: usize, hidden: usize, variant: GruVariant, vb: VarBuilder) -> Result<Self> {
        // PyTorch's init for every recurrent layer: U(−1/√H, 1/√H), biases included.
        let k = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        Ok(Gru {
            weight_ih: vb.get_with_hints((3 * hidden, input), "weight_ih", init)?,
            weight_hh: vb.get_with_hints((3 * hidden, hidden), "weight_hh", init)?,
            bias_ih: vb.get_with_hints(3 * hidden, "bias_ih", init)?,
            bias_hh: vb.get_with_hints(3 * hidden, "bias_hh", init)?,
            input,
            hidden,
            variant,
        })
    }

    /// Where the reset gate enters the candidate.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::sequence_modeling::{Gru, GruVariant};
    /// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &Device::Cpu);
    /// assert_eq!(Gru::new(1, 2, GruVariant::ResetAfter, vb)?.variant(), GruVariant::ResetAfter);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn variant(&self) -> GruVariant {
        self.variant
    }
}

impl Recurrent for Gru {
    fn input_size(&self) -> usize {
        self.input
    }

    fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Runs `x` (`[B, T, I]`) from `state` (zero when `None`; a state with a cell is refused): every step's
    /// `h_t` (`[B, T, H]`) and the final state `h_T`.
    ///
    /// For [`GruVariant::ResetAfter`] on the CPU in f32 the recurrence runs as one op
    /// ([`crate::fast::gru_sequence`]) whose backward pass is back-propagation through time written out;
    /// otherwise (reset-before always, other dtypes and devices, or under `DLHIST_FUSED=0`) it runs step by step
    /// as the candle ops below, and candle's autograd does the back-propagation through time.
    fn forward_from(&self, x: &Tensor, state: Option<&RecurrentState>) -> Result<(Tensor, RecurrentState)> {
        let (b, t) = check_recurrent_input("Gru", self.input, self.hidden, false, x, state)?;
        let hsz = self.hidden;
        let x2 = x.reshape((b * t, self.input))?;
        let h0 = match state {
            Some(s) => s.h.clone(),
            None => Tensor::zeros((b, hsz), x.dtype(), x.device())?,
        };
        let fused = [&x2, &self.weight_ih, &self.weight_hh, &self.bias_ih, &self.bias_hh, &h0];
        if self.variant == GruVariant::ResetAfter && fast::applies(&fused) {
            // Fused: the input part x W_ihᵀ + b_ih as one fused linear op (crate::fast::linear), then the whole
            // recurrence, forward and back-propagation through time, as one op (crate::fast::gru_sequence), which
            // adds all of b_hh inside its recurrent product h_{t−1} W_hhᵀ + b_hh.
            let xp = fast::linear(&x2, &self.weight_ih, &self.bias_ih, None)?.reshape((b, t, 3 * hsz))?;
            let hs = fast::gru_sequence(&xp, &self.weight_hh, &self.bias_hh, &h0)?;
            let h = hs.narrow(1, t - 1, 1)?.squeeze(1)?;
            return Ok((hs, RecurrentState { h, c: None }));
        }
        // Plain: the equations of the module docs, one time step after another.
        let (b_hrz, b_hn) = (self.bias_hh.narrow(0, 0, 2 * hsz)?, self.bias_hh.narrow(0, 2 * hsz, hsz)?);
        // Every bias that is added outside r joins the input projection, computed for all T steps with one
        // matrix product: b_hr and b_hz always, b_hn only for reset-before. For reset-after, r multiplies
        // b_hn, so it has to stay in the step.
        let b_hn_outside = match self.variant {
            GruVariant::ResetBefore => b_hn.clone(),
            GruVariant::ResetAfter => b_hn.zeros_like()?,
        };
        let bias = (&self.bias_ih + Tensor::cat(&[&b_hrz, &b_hn_outside], 0)?)?;
        let xp = x2.matmul(&self.weight_ih.t()?)?.broadcast_add(&bias)?;
        let xp = xp.reshape((b, t, 3 * hsz))?;
        let mut h = h0;
        // Row vectors: W h is h Wᵀ for the whole batch. Rows 0..2H of W_hh feed r and z, rows 2H..3H the
        // candidate.
        let w_hh_t = self.weight_hh.t()?;
        let (w_hrz_t, w_hn_t) = (w_hh_t.narrow(1, 0, 2 * hsz)?, w_hh_t.narrow(1, 2 * hsz, hsz)?);
        let mut hs = Vec::with_capacity(t);
        for step in 0..t {
            let xs = xp.i((.., step))?;
            let (x_rz, x_n) = (xs.narrow(1, 0, 2 * hsz)?, xs.narrow(1, 2 * hsz, hsz)?);
            let (rz, n) = match self.variant {
                GruVariant::ResetAfter => {
                    // r does not enter any product: all three recurrent products W_h{r,z,n} h_{t−1} at once.
                    let hp = h.matmul(&w_hh_t)?;
                    let rz = candle_nn::ops::sigmoid(&(x_rz + hp.narrow(1, 0, 2 * hsz)?)?)?;
                    let r = rz.narrow(1, 0, hsz)?;
                    // n = tanh(W_in x + b_in + r ⊙ (W_hn h_{t−1} + b_hn))
                    let n = (x_n + (r * hp.narrow(1, 2 * hsz, hsz)?.broadcast_add(&b_hn)?)?)?.tanh()?;
                    (rz, n)
                }
                GruVariant::ResetBefore => {
                    // r must be known before the candidate's product: two matrix products in sequence.
                    let rz = candle_nn::ops::sigmoid(&(x_rz + h.matmul(&w_hrz_t)?)?)?;
                    let r = rz.narrow(1, 0, hsz)?;
                    // n = tanh(W_in x + b_in + b_hn + W_hn (r ⊙ h_{t−1})), both biases already in x_n.
                    let n = (x_n + (r * &h)?.matmul(&w_hn_t)?)?.tanh()?;
                    (rz, n)
                }
            };
            let z = rz.narrow(1, hsz, hsz)?;
            // h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}, written as n + z ⊙ (h_{t−1} − n): one op fewer.
            h = (&n + (z * (&h - &n)?)?)?;
            hs.push(h.clone());
        }
        Ok((Tensor::stack(&hs, 1)?, RecurrentState { h, c: None }))
    }
}

impl Module for Gru {
    /// Every step's output `[B, T, H]`, from the zero state.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_from(x, None)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::assert_close;

    /// `fast::testing::randn` on the device the tests run on (`DLHIST_DEVICE`).
    fn randn(shape: &[usize], seed: u64) -> Tensor {
        crate::fast::testing::randn(shape, seed).to_device(&crate::device::test_device()).expect("to the test device")
    }
    use candle_core::{DType, Var};
    use candle_nn::rnn::{GRUConfig, GRUState, RNN};
    use candle_nn::VarMap;

    const VARIANTS: [GruVariant; 2] = [GruVariant::ResetBefore, GruVariant::ResetAfter];

    /// The equations written out in f64 scalars, one example, one step and one unit at a time. `p` holds
    /// `[weight_ih, weight_hh, bias_ih, bias_hh, x, h0]`, each flattened row-major; returns `[B, T, H]` flat.
    fn naive(p: &[Vec<f64>], variant: GruVariant, (b, t, inp, hsz): (usize, usize, usize, usize)) -> Vec<f64> {
        let (wih, whh, bih, bhh, xs, h0) = (&p[0], &p[1], &p[2], &p[3], &p[4], &p[5]);
        let sig = |a: f64| 1.0 / (1.0 + (-a).exp());
        // Row `row` of W_ih times x_t, and of W_hh times a state vector.
        let wx = |row: usize, n: usize, s: usize| {
            (0..inp).map(|k| wih[row * inp + k] * xs[(n * t + s) * inp + k]).sum::<f64>()
        };
        let wh = |row: usize, v: &[f64]| (0..hsz).map(|k| whh[row * hsz + k] * v[k]).sum::<f64>();
        let mut out = vec![0.0; b * t * hsz];
        for n in 0..b {
            let mut h = h0[n * hsz..(n + 1) * hsz].to_vec();
            for s in 0..t {
                let r: Vec<f64> = (0..hsz).map(|j| sig(wx(j, n, s) + bih[j] + wh(j, &h) + bhh[j])).collect();
                let rh: Vec<f64> = r.iter().zip(&h).map(|(r, h)| r * h).collect();
                let next: Vec<f64> = (0..hsz)
                    .map(|j| {
                        let (jz, jn) = (hsz + j, 2 * hsz + j);
                        let z = sig(wx(jz, n, s) + bih[jz] + wh(jz, &h) + bhh[jz]);
                        let recurrent = match variant {
                            GruVariant::ResetAfter => r[j] * (wh(jn, &h) + bhh[jn]),
                            GruVariant::ResetBefore => wh(jn, &rh) + bhh[jn],
                        };
                        let cand = (wx(jn, n, s) + bih[jn] + recurrent).tanh();
                        (1.0 - z) * cand + z * h[j]
                    })
                    .collect();
                h = next;
                out[(n * t + s) * hsz..(n * t + s + 1) * hsz].copy_from_slice(&h);
            }
        }
        out
    }

    fn params(gru: &Gru, x: &Tensor, h0: &Tensor) -> Vec<Vec<f64>> {
        [&gru.weight_ih, &gru.weight_hh, &gru.bias_ih, &gru.bias_hh, x, h0]
            .iter()
            .map(|t| crate::fast::testing::values_f64(t))
            .collect()
    }

    fn state(h: &Tensor) -> RecurrentState {
        RecurrentState { h: h.clone(), c: None }
    }

    #[test]
    fn both_variants_match_the_equations_written_as_scalar_loops_from_a_nonzero_state() -> Result<()> {
        let dev = crate::device::test_device();
        for variant in VARIANTS {
            let (_vars, vb) = crate::init::seeded(3, DType::F32, &dev);
            let gru = Gru::new(3, 5, variant, vb)?;
            let (x, h0) = (randn(&[2, 7, 3], 4), randn(&[2, 5], 5).tanh()?);
            let (hs, last) = gru.forward_from(&x, Some(&state(&h0)))?;
            for (g, w) in
                crate::fast::testing::values_f64(&hs).iter().zip(naive(&params(&gru, &x, &h0), variant, (2, 7, 3, 5)))
            {
                assert!((g - w).abs() < 1e-5, "{variant:?}: {g} vs {w}");
            }
            assert_eq!(last.h.to_vec2::<f32>()?, hs.i((.., 6))?.to_vec2::<f32>()?);
            assert!(last.c.is_none());
        }
        Ok(())
    }

    /// Autograd's back-propagation through time against f64 central differences of the scalar loops, for every
    /// parameter, the input and the starting state, both variants.
    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let dev = crate::device::test_device();
        let (b, t, inp, hsz) = (2, 5, 3, 4);
        for variant in VARIANTS {
            let (_vars, vb) = crate::init::seeded(6, DType::F64, &dev);
            let gru = Gru::new(inp, hsz, variant, vb)?;
            let x = Var::from_tensor(&randn(&[b, t, inp], 7).to_dtype(DType::F64)?)?;
            let h0 = Var::from_tensor(&randn(&[b, hsz], 8).tanh()?.to_dtype(DType::F64)?)?;
            let r = randn(&[b, t, hsz], 9).to_dtype(DType::F64)?;
            let (hs, _) = gru.forward_from(&x, Some(&state(&h0)))?;
            let grads = (&hs * &r)?.sum_all()?.backward()?;
            let rv = crate::fast::testing::values_f64(&r);
            let loss =
                |p: &[Vec<f64>]| naive(p, variant, (b, t, inp, hsz)).iter().zip(&rv).map(|(o, w)| o * w).sum::<f64>();
            let want = crate::fast::testing::central_differences(&params(&gru, &x, &h0), loss);
            let tensors = [&gru.weight_ih, &gru.weight_hh, &gru.bias_ih, &gru.bias_hh, x.as_tensor(), h0.as_tensor()];
            let names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "x", "h0"];
            for ((t, name), w) in tensors.iter().zip(names).zip(&want) {
                let got = crate::fast::testing::values_f64(
                    grads.get(t).unwrap_or_else(|| panic!("{variant:?}: {name} has no gradient")),
                );
                for (g, w) in got.iter().zip(w) {
                    assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{variant:?} {name}: {g} vs {w}");
                }
            }
        }
        Ok(())
    }

    /// `Gru(ResetAfter)` and candle-nn 0.11's `GRU` on the very same variables (inserted under both naming
    /// schemes): outputs from a non-zero state, and the gradients of every weight, the input and the state.
    #[test]
    fn reset_after_matches_candle_nn_gru_values_and_gradients() -> Result<()> {
        let dev = crate::device::test_device();
        let (inp, hsz) = (3, 5);
        let (_vars, vb) = crate::init::seeded(11, DType::F32, &dev);
        let ours = Gru::new(inp, hsz, GruVariant::ResetAfter, vb.pp("gru"))?;
        let theirs_vars = VarMap::new();
        {
            let mut data = theirs_vars.data().lock().unwrap();
            for (name, t) in [
                ("weight_ih_l0", &ours.weight_ih),
                ("weight_hh_l0", &ours.weight_hh),
                ("bias_ih_l0", &ours.bias_ih),
                ("bias_hh_l0", &ours.bias_hh),
            ] {
                // A tensor that is a variable becomes the same Var, not a copy.
                data.insert(format!("gru.{name}"), Var::from_tensor(t)?);
            }
        }
        let theirs_vb = VarBuilder::from_varmap(&theirs_vars, DType::F32, &dev);
        let theirs = candle_nn::rnn::gru(inp, hsz, GRUConfig::default(), theirs_vb.pp("gru"))?;
        assert_eq!(theirs_vars.all_vars().len(), 4, "candle-nn's GRU created parameters of its own");

        let x = Var::from_tensor(&randn(&[3, 6, inp], 12))?;
        let h0 = Var::from_tensor(&randn(&[3, hsz], 13).tanh()?)?;
        let (hs, _) = ours.forward_from(&x, Some(&state(&h0)))?;
        let steps = theirs.seq_init(&x, &GRUState { h: h0.as_tensor().clone() })?;
        let their_hs = Tensor::stack(&steps.iter().map(|s| s.h.clone()).collect::<Vec<_>>(), 1)?;
        assert_close(&hs, &their_hs, "outputs")?;

        let r = randn(hs.dims(), 14);
        let (g_ours, g_theirs) = ((&hs * &r)?.sum_all()?.backward()?, (&their_hs * &r)?.sum_all()?.backward()?);
        let tensors = [&ours.weight_ih, &ours.weight_hh, &ours.bias_ih, &ours.bias_hh, x.as_tensor(), h0.as_tensor()];
        for (t, name) in tensors.iter().zip(["weight_ih", "weight_hh", "bias_ih", "bias_hh", "x", "h0"]) {
            assert_close(g_ours.get(t).unwrap(), g_theirs.get(t).unwrap(), name)?;
        }
        Ok(())
    }

    /// The variant switch is real, and the variants differ exactly where r enters the candidate: not at all
    /// when r = 1; not when r is one constant for every unit and b_hn = 0 (r scales W_hn h from either side);
    /// but as soon as b_hn ≠ 0 then, since reset-after scales b_hn by r and reset-before does not.
    #[test]
    fn the_variants_differ_exactly_where_the_reset_gate_enters() -> Result<()> {
        let dev = crate::device::test_device();
        let (inp, hsz) = (3, 4);
        let (vars, vb) = crate::init::seeded(15, DType::F32, &dev);
        let after = Gru::new(inp, hsz, GruVariant::ResetAfter, vb.pp("gru"))?;
        let before = Gru::new(inp, hsz, GruVariant::ResetBefore, vb.pp("gru"))?;
        let (x, h0) = (randn(&[2, 6, inp], 16), randn(&[2, hsz], 17).tanh()?);
        let gap = || -> Result<f32> {
            let (a, _) = after.forward_from(&x, Some(&state(&h0)))?;
            let (b, _) = before.forward_from(&x, Some(&state(&h0)))?;
            (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
        };
        let var = |name: &str| vars.data().lock().unwrap()[&format!("gru.{name}")].clone();
        // Sets rows `rows` of a parameter to `value` (the variables are shared by both layers).
        let set_rows = |name: &str, rows: std::ops::Range<usize>, value: f32| -> Result<()> {
            let v = var(name);
            let width = v.elem_count() / v.dims()[0];
            let mut data: Vec<f32> = v.flatten_all()?.to_vec1()?;
            data[rows.start * width..rows.end * width].iter_mut().for_each(|e| *e = value);
            v.set(&Tensor::from_vec(data, v.dims(), &dev)?)
        };
        assert!(gap()? > 1e-2, "generic weights: the variants should differ, gap {}", gap()?);

        // r = σ(40) = 1 in f32: the candidates coincide whatever the other weights.
        let saved = var("bias_ih").as_tensor().copy()?;
        set_rows("bias_ih", 0..hsz, 40.0)?;
        assert!(gap()? < 1e-6, "r = 1: gap {}", gap()?);
        var("bias_ih").set(&saved)?;

        // r = σ(0) = 1/2 for every unit: W_ir, W_hr, b_ir and b_hr zeroed.
        for name in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
            set_rows(name, 0..hsz, 0.0)?;
        }
        assert!(gap()? > 1e-3, "uniform r, b_hn ≠ 0: the variants should differ, gap {}", gap()?);
        set_rows("bias_hh", 2 * hsz..3 * hsz, 0.0)?;
        assert!(gap()? < 1e-6, "uniform r, b_hn = 0: gap {}", gap()?);
        Ok(())
    }

    #[test]
    fn chunks_with_carried_state_equal_one_call_and_detach_cuts_the_gradient() -> Result<()> {
        for variant in VARIANTS {
            let (_vars, vb) = crate::init::seeded(18, DType::F32, &crate::device::test_device());
            let gru = Gru::new(2, 6, variant, vb)?;
            let x = Var::from_tensor(&randn(&[3, 9, 2], 19))?;
            let h0 = state(&randn(&[3, 6], 20).tanh()?);
            crate::layers::assert_carried_state_continues(&gru, &x, &h0, 4, &format!("{variant:?}"))?;
        }
        Ok(())
    }

    /// The fused and plain paths of the reset-after GRU in f32: outputs, final state, and the gradients of every
    /// parameter, of the input and of the starting state; long and tiny sequences (T = 1, H = 1), strided input.
    #[test]
    fn fused_and_plain_paths_agree() -> Result<()> {
        let cases = [(32, 50, 16, false), (3, 7, 5, true), (1, 1, 1, false), (2, 4, 3, true), (5, 1, 1, true)];
        for ((b, t, h, non_contiguous), from_state) in cases.into_iter().flat_map(|c| [(c, false), (c, true)]) {
            let (vars, vb) = crate::init::seeded(21, DType::F32, &candle_core::Device::Cpu);
            let gru = Gru::new(3, h, GruVariant::ResetAfter, vb)?;
            let x = Var::from_tensor(&crate::fast::testing::randn(&[b, t, 3], 22))?;
            // Each case from the zero state and from a random one, whose gradient is checked too.
            let h0 = Var::from_tensor(&crate::fast::testing::randn(&[b, h], 23))?;
            let start = if from_state { Some((&h0, None)) } else { None };
            let what = format!("b {b} t {t} h {h} from a state {from_state}");
            crate::layers::assert_fused_and_plain_agree(&gru, &vars, &x, non_contiguous, start, &what)?;
        }
        Ok(())
    }

    #[test]
    fn bad_shapes_are_named_in_the_error() -> Result<()> {
        let dev = crate::device::test_device();
        let (_vars, vb) = crate::init::seeded(21, DType::F32, &dev);
        let gru = Gru::new(3, 4, GruVariant::ResetAfter, vb)?;
        let err = |x: &Tensor, s: Option<&RecurrentState>| gru.forward_from(x, s).unwrap_err().to_string();
        let e = err(&Tensor::zeros((2, 3), DType::F32, &dev)?, None);
        assert!(e.contains("Gru") && e.contains("[B, T, I]") && e.contains("[2, 3]"), "{e}");
        let e = err(&Tensor::zeros((2, 4, 5), DType::F32, &dev)?, None);
        assert!(e.contains("Gru over 3 input features") && e.contains("[2, 4, 5]"), "{e}");
        let x = Tensor::zeros((2, 4, 3), DType::F32, &dev)?;
        let e = err(&x, Some(&RecurrentState::zeros(3, 4, false, DType::F32, &dev)?));
        assert!(e.contains("[3, 4]") && e.contains("[2, 4]"), "{e}");
        let e = err(&x, Some(&RecurrentState::zeros(2, 4, true, DType::F32, &dev)?));
        assert!(e.contains("no cell"), "{e}");
        assert!(gru.forward(&Tensor::zeros((2, 0, 3), DType::F32, &dev)?).is_err());
        Ok(())
    }
}
