//! The LSTM cell's element-wise part in one pass (the equations of [`crate::sequence_modeling::lstm`]).
//!
//! From the pre-activations `a = [a_i, a_f, a_g, a_o]` and `c_{t−1}`, the forward pass computes
//! `c_t = σ(a_f) c_{t−1} + σ(a_i) tanh(a_g)` and `h_t = σ(a_o) tanh(c_t)`; candle would run eleven kernels with
//! eleven temporaries per time step, and twice as many backwards. The backward pass recomputes the gates from
//! `a` (cheaper than storing them) and applies the chain rule by hand:
//!
//! ```text
//! ∂c_t   = ∂L/∂c_t + ∂L/∂h_t · o · (1 − tanh²(c_t))
//! ∂a_o   = ∂L/∂h_t · tanh(c_t) · o(1 − o)          ∂a_i = ∂c_t · g · i(1 − i)
//! ∂a_f   = ∂c_t · c_{t−1} · f(1 − f)               ∂a_g = ∂c_t · i · (1 − g²)
//! ∂c_{t−1} = ∂c_t · f
//! ```

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::{cpu_f32, slice_f32, with_f32};

/// One LSTM cell step: from gate pre-activations `[B, 4H]` (order i, f, g, o) and `c_{t−1} [B, H]`, returns
/// `[B, 2H]` holding `h_t` (first `H` columns) and `c_t` (last `H`).
///
/// f32 tensors on the CPU only (see [`super::applies`]); the cell's composition in candle ops is written out in
/// [`crate::sequence_modeling::lstm`].
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// // All pre-activations 0: i = f = o = ½, g = 0, so c_t = ½ c_{t−1} and h_t = ½ tanh(c_t).
/// let gates = Tensor::zeros((1, 4), DType::F32, &dev)?;
/// let hc = dlhist::fast::lstm_cell(&gates, &Tensor::new(&[[2f32]], &dev)?)?;
/// let v = hc.to_vec2::<f32>()?;
/// assert!((v[0][1] - 1.0).abs() < 1e-6 && (v[0][0] - 0.5 * 1f32.tanh()).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn lstm_cell(gates: &Tensor, c: &Tensor) -> Result<Tensor> {
    let (b, h) = c.dims2()?;
    if gates.dims() != [b, 4 * h] {
        candle_core::bail!("lstm_cell: gates {:?} must be [B, 4H] for a cell {:?}", gates.dims(), c.dims())
    }
    if !cpu_f32(&[gates, c]) {
        return Err(super::unsupported("lstm_cell", &[gates, c]));
    }
    gates.contiguous()?.apply_op2(&c.contiguous()?, LstmCell)
}

#[derive(Debug, Clone, Copy)]
struct LstmCell;

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl CustomOp2 for LstmCell {
    fn name(&self) -> &'static str {
        "dlhist-lstm-cell"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout, cs: &CpuStorage, cl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, c) = (slice_f32(gs, gl)?, slice_f32(cs, cl)?);
        let (b, h) = (cl.dims()[0], cl.dims()[1]);
        let mut out = vec![0f32; b * 2 * h];
        for ((row, a), c) in out.chunks_mut(2 * h).zip(a.chunks(4 * h)).zip(c.chunks(h)) {
            let (hs, cs) = row.split_at_mut(h);
            for j in 0..h {
                let (i, f, g, o) = (sigmoid(a[j]), sigmoid(a[h + j]), a[2 * h + j].tanh(), sigmoid(a[3 * h + j]));
                let cn = f * c[j] + i * g;
                cs[j] = cn;
                hs[j] = o * cn.tanh();
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, 2 * h))))
    }

    fn bwd(&self, gates: &Tensor, c: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, h) = c.dims2()?;
        let grad = grad.contiguous()?;
        let (mut ga, mut gc) = (vec![0f32; b * 4 * h], vec![0f32; b * h]);
        with_f32(gates, |a| {
            with_f32(c, |c| {
                with_f32(res, |res| {
                    with_f32(&grad, |gr| {
                        for n in 0..b {
                            let (a, c) = (&a[n * 4 * h..][..4 * h], &c[n * h..][..h]);
                            let (res, gr) = (&res[n * 2 * h..][..2 * h], &gr[n * 2 * h..][..2 * h]);
                            let (ga, gc) = (&mut ga[n * 4 * h..][..4 * h], &mut gc[n * h..][..h]);
                            for j in 0..h {
                                let (i, f, g, o) =
                                    (sigmoid(a[j]), sigmoid(a[h + j]), a[2 * h + j].tanh(), sigmoid(a[3 * h + j]));
                                let tc = res[h + j].tanh();
                                let (gh, gcn) = (gr[j], gr[h + j]);
                                let dc = gcn + gh * o * (1.0 - tc * tc);
                                ga[j] = dc * g * i * (1.0 - i);
                                ga[h + j] = dc * c[j] * f * (1.0 - f);
                                ga[2 * h + j] = dc * i * (1.0 - g * g);
                                ga[3 * h + j] = gh * tc * o * (1.0 - o);
                                gc[j] = dc * f;
                            }
                        }
                    })
                })
            })
        })????;
        let dev = c.device();
        Ok((Some(Tensor::from_vec(ga, (b, 4 * h), dev)?), Some(Tensor::from_vec(gc, (b, h), dev)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::{assert_close, strided};
    use candle_core::{DType, Device, Var};

    /// The cell as candle ops (the step the LSTM layer's plain path takes), `[h_t, c_t]` side by side.
    fn composed(a: &Tensor, c: &Tensor) -> Result<Tensor> {
        let h = c.dim(1)?;
        let gate = |k: usize| a.narrow(1, k * h, h);
        let (i, f) = (candle_nn::ops::sigmoid(&gate(0)?)?, candle_nn::ops::sigmoid(&gate(1)?)?);
        let (g, o) = (gate(2)?.tanh()?, candle_nn::ops::sigmoid(&gate(3)?)?);
        let cn = ((f * c)? + (i * g)?)?;
        Tensor::cat(&[(o * cn.tanh()?)?, cn], 1)
    }

    #[test]
    fn matches_the_candle_composition_values_and_gradients() -> Result<()> {
        let mut rng = crate::rng::Rng::new(11);
        for (b, h, non_contiguous) in [(32, 128, false), (3, 5, true), (1, 1, false), (2, 7, true)] {
            let a = Var::from_tensor(&rng.normal_tensor((b, 4 * h), 0.0, 2.0, &Device::Cpu).unwrap())?;
            let c = Var::from_tensor(&rng.normal_tensor((b, h), 0.0, 1.0, &Device::Cpu).unwrap())?;
            let (ai, ci) = if non_contiguous {
                (strided(a.as_tensor())?, strided(c.as_tensor())?)
            } else {
                (a.as_tensor().clone(), c.as_tensor().clone())
            };
            let fast = lstm_cell(&ai, &ci)?;
            // The composition in f64 (candle's ops), rounded back.
            let plain = composed(&ai.to_dtype(DType::F64)?, &ci.to_dtype(DType::F64)?)?.to_dtype(DType::F32)?;
            assert_close(&fast, &plain, &format!("b {b} h {h}: values"))?;
            let r = rng.normal_tensor(fast.dims(), 0.0, 1.0, &Device::Cpu).unwrap();
            let gf = (&fast * &r)?.sum_all()?.backward()?;
            let a64 = Var::from_tensor(&a.to_dtype(DType::F64)?)?;
            let c64 = Var::from_tensor(&c.to_dtype(DType::F64)?)?;
            let plain64 = composed(a64.as_tensor(), c64.as_tensor())?;
            let gp = (plain64 * r.to_dtype(DType::F64)?)?.sum_all()?.backward()?;
            for (v, v64, name) in [(&a, &a64, "da"), (&c, &c64, "dc")] {
                let want = gp.get(v64).unwrap().to_dtype(DType::F32)?;
                assert_close(gf.get(v).unwrap(), &want, &format!("b {b} h {h}: {name}"))?;
            }
        }
        Ok(())
    }

    #[test]
    fn f32_composition_agrees_too_and_bad_shapes_error() -> Result<()> {
        // The same check against candle's f32 ops.
        let a = crate::rng::Rng::new(2).normal_tensor((4, 12), 0.0, 1.0, &Device::Cpu).unwrap();
        let c = crate::rng::Rng::new(3).normal_tensor((4, 3), 0.0, 1.0, &Device::Cpu).unwrap();
        assert_close(&lstm_cell(&a, &c)?, &composed(&a, &c)?, "f32")?;
        assert!(lstm_cell(&a.to_dtype(DType::F64)?, &c.to_dtype(DType::F64)?).is_err());
        assert!(lstm_cell(&a, &Tensor::zeros((4, 4), DType::F32, &Device::Cpu)?).is_err());
        Ok(())
    }
}
