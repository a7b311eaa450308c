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

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::fast;

/// One LSTM layer over sequences `[B, T, I]` (batch first), hidden size `H`, initial state zero.
///
/// Parameters (PyTorch's names and init `U(−1/√H, 1/√H)`): `{path}.weight_ih` `[4H, I]`, `{path}.weight_hh`
/// `[4H, H]`, `{path}.bias_ih`, `{path}.bias_hh` `[4H]`.
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
}

impl Lstm {
    /// An LSTM layer from `input` features to `hidden` units.
    pub fn new(input: usize, hidden: usize, vb: VarBuilder) -> Result<Self> {
        let k = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        Ok(Lstm {
            weight_ih: vb.get_with_hints((4 * hidden, input), "weight_ih", init)?,
            weight_hh: vb.get_with_hints((4 * hidden, hidden), "weight_hh", init)?,
            bias_ih: vb.get_with_hints(4 * hidden, "bias_ih", init)?,
            bias_hh: vb.get_with_hints(4 * hidden, "bias_hh", init)?,
            hidden,
        })
    }

    /// The hidden size `H`.
    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Runs the sequence and returns every step's output `[B, T, H]` and the final `(h_T, c_T)`, each `[B, H]`.
    ///
    /// On the CPU in f32 the recurrence runs as one op ([`crate::fast::lstm_sequence`]) whose backward pass is
    /// back-propagation through time written out; otherwise (or under `DLHIST_FUSED=0`) it runs step by step as
    /// the candle ops of the module docs, and candle's autograd does the back-propagation through time.
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
        let (b, t, i) = x
            .dims3()
            .map_err(|_| candle_core::Error::Msg(format!("Lstm expects sequences [B, T, I]; got {:?}", x.dims())))?;
        if i != self.weight_ih.dims()[1] {
            candle_core::bail!("Lstm over {} input features got input {:?}", self.weight_ih.dims()[1], x.dims())
        }
        if t == 0 {
            candle_core::bail!("Lstm needs at least one time step; got {:?}", x.dims())
        }
        let (hsz, h4) = (self.hidden, 4 * self.hidden);
        // The input projection does not depend on the recurrence: one matrix product for all T steps instead
        // of T small ones. Both biases are folded in here once.
        let bias = (&self.bias_ih + &self.bias_hh)?;
        let x2 = x.reshape((b * t, i))?;
        let xp = if fast::applies(&[&x2, &self.weight_ih, &bias]) {
            fast::linear(&x2, &self.weight_ih, &bias, None)?
        } else {
            x2.matmul(&self.weight_ih.t()?)?.broadcast_add(&bias)?
        }
        .reshape((b, t, h4))?;
        if fast::applies(&[&xp, &self.weight_hh]) {
            // Fused (crate::fast::lstm_sequence): the whole recurrence, forward and back-propagation through
            // time, as one op. Rows 0..T hold h_1..h_T, row T the final cell.
            let out = fast::lstm_sequence(&xp, &self.weight_hh)?;
            let hs = out.narrow(1, 0, t)?;
            let h = out.narrow(1, t - 1, 1)?.squeeze(1)?;
            let c = out.narrow(1, t, 1)?.squeeze(1)?;
            return Ok((hs, (h, c)));
        }
        // Plain: the cell equations of the module docs, one time step after another.
        let w_hh_t = self.weight_hh.t()?;
        let mut h = Tensor::zeros((b, hsz), xp.dtype(), xp.device())?;
        let mut c = h.clone();
        let mut hs = Vec::with_capacity(t);
        for step in 0..t {
            // The four pre-activations [a_i, a_f, a_g, a_o]: the input part precomputed, plus W_hh h_{t−1}.
            let a = (xp.narrow(1, step, 1)?.squeeze(1)? + h.matmul(&w_hh_t)?)?;
            let gate = |k: usize| a.narrow(1, k * hsz, hsz);
            let input_gate = candle_nn::ops::sigmoid(&gate(0)?)?;
            let forget_gate = candle_nn::ops::sigmoid(&gate(1)?)?;
            let candidate = gate(2)?.tanh()?;
            let output_gate = candle_nn::ops::sigmoid(&gate(3)?)?;
            // The constant error carousel: the cell's only recurrence is this gated sum, so ∂c_t/∂c_{t−1} = f.
            c = ((forget_gate * &c)? + (input_gate * candidate)?)?;
            h = (output_gate * c.tanh()?)?;
            hs.push(h.clone());
        }
        Ok((Tensor::stack(&hs, 1)?, (h, c)))
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
    use candle_core::{DType, Device, IndexOp};

    /// The equations written out in f64 scalars, one example and one step at a time.
    fn naive(lstm: &Lstm, x: &Tensor) -> Vec<f64> {
        let v = |t: &Tensor| t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let (wih, whh, bih, bhh) = (v(&lstm.weight_ih), v(&lstm.weight_hh), v(&lstm.bias_ih), v(&lstm.bias_hh));
        let (b, t, inp) = x.dims3().unwrap();
        let hsz = lstm.hidden;
        let xs = v(x);
        let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
        let mut out = vec![0.0; b * t * hsz];
        for n in 0..b {
            let (mut h, mut c) = (vec![0.0; hsz], vec![0.0; hsz]);
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
                let pres: Vec<f64> = (0..4 * hsz).map(pre).collect();
                for j in 0..hsz {
                    let (i, f, g, o) =
                        (sig(pres[j]), sig(pres[hsz + j]), pres[2 * hsz + j].tanh(), sig(pres[3 * hsz + j]));
                    c[j] = f * c[j] + i * g;
                    h[j] = o * c[j].tanh();
                }
                out[(n * t + s) * hsz..(n * t + s + 1) * hsz].copy_from_slice(&h);
            }
        }
        out
    }

    #[test]
    fn matches_the_equations_written_as_scalar_loops() -> Result<()> {
        let dev = Device::Cpu;
        let (_vars, vb) = crate::init::seeded(3, DType::F32, &dev);
        let lstm = Lstm::new(3, 5, vb)?;
        let x = crate::rng::Rng::new(4).normal_tensor((2, 7, 3), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?;
        let got: Vec<f32> = lstm.forward(&x)?.flatten_all()?.to_vec1()?;
        for (g, w) in got.iter().zip(naive(&lstm, &x)) {
            assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
        }
        Ok(())
    }

    /// The fused f32 layer against the same layer in f64, which runs the plain step-by-step path: outputs, final
    /// state and every gradient.
    #[test]
    fn fused_sequence_matches_the_composition_values_and_gradients() -> Result<()> {
        let dev = Device::Cpu;
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
        let dev = Device::Cpu;
        for (b, t, h, non_contiguous) in [(32, 50, 16, false), (3, 7, 5, true), (1, 1, 1, false), (2, 4, 3, true)] {
            let (vars, vb) = crate::init::seeded(21, DType::F32, &dev);
            let lstm = Lstm::new(3, h, vb)?;
            let x = candle_core::Var::from_tensor(
                &crate::rng::Rng::new(22).normal_tensor((b, t, 3), 0.0, 1.0, &dev).map_err(candle_core::Error::wrap)?,
            )?;
            let xi = if non_contiguous { crate::fast::testing::strided(x.as_tensor())? } else { x.as_tensor().clone() };
            let run = || -> Result<Tensor> {
                let (hs, (_h, c)) = lstm.forward_with_state(&xi)?;
                Tensor::cat(&[hs.flatten_from(1)?, c], 1)
            };
            let (fused, plain) = (run()?, crate::fast::plain(run)?);
            crate::fast::testing::assert_paths_agree(&fused, &plain, &vars, &[&x], &format!("b {b} t {t} h {h}"))?;
        }
        Ok(())
    }

    #[test]
    fn shapes_and_gradients_reach_every_parameter_and_the_first_input() -> Result<()> {
        let dev = Device::Cpu;
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
