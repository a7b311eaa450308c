//! A whole LSTM sequence as one op: the recurrence forward, back-propagation through time backward.
//!
//! With the input projection `A_x = x W_ihᵀ + b` done for all steps at once (one product, outside), what is
//! left per step is `a_t = A_x[:, t] + h_{t−1} W_hhᵀ` and the cell of [`super::lstm_cell`]. Run step by step as
//! tensor ops, every step's slice `A_x[:, t]` is a view whose backward pass (in candle) pads its gradient to
//! the full `[B, T, 4H]` and adds it up: `T` full-size tensors per sequence, quadratic in `T`. Here the forward
//! loop keeps the gates and cells, and the backward loop runs backwards in time:
//!
//! ```text
//! ∂h_t = ∂L/∂h_t + ∂a_{t+1} W_hh           (the recurrent path)
//! ∂a_t = cell backward (module lstm_cell)   ∂c_{t−1} = ∂c_t ⊙ f_t
//! ∂W_hh = Σ_t ∂a_tᵀ h_{t−1}               (one product over all steps at the end)
//! ```

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use super::gemm::{matmul, par_matmul, Stored};
use super::{cpu_f32, slice_f32, with_f32};

/// Runs the LSTM recurrence over precomputed input projections `xp [B, T, 4H]` (`x W_ihᵀ + b_ih + b_hh`, gates
/// in the order i, f, g, o) with recurrent weights `w_hh [4H, H]`, from a zero state. Returns `[B, T + 1, H]`:
/// `h_1 … h_T` in rows `0..T`, then the final cell `c_T` in row `T`.
///
/// f32 on the CPU runs the single op of the module docs; anything else steps through [`super::lstm_cell`].
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// // Zero weights and inputs: every gate is ½ and g = 0, so the state stays 0.
/// let out = dlhist::fast::lstm_sequence(&Tensor::zeros((2, 3, 8), DType::F32, &dev)?, &Tensor::zeros((8, 2), DType::F32, &dev)?)?;
/// assert_eq!(out.dims(), &[2, 4, 2]);
/// assert_eq!(out.abs()?.sum_all()?.to_scalar::<f32>()?, 0.0);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn lstm_sequence(xp: &Tensor, w_hh: &Tensor) -> Result<Tensor> {
    let (b, t, h4) = xp.dims3()?;
    let (wr, h) = w_hh.dims2()?;
    if wr != 4 * h || h4 != 4 * h || t == 0 {
        candle_core::bail!(
            "lstm_sequence: projections {:?} and recurrent weights {:?} do not fit",
            xp.dims(),
            w_hh.dims()
        )
    }
    if cpu_f32(&[xp, w_hh]) {
        xp.contiguous()?.apply_op2(&w_hh.contiguous()?, LstmSeq { cache: Mutex::new(None) })
    } else {
        let w_t = w_hh.t()?;
        let mut hp = Tensor::zeros((b, h), xp.dtype(), xp.device())?;
        let mut c = hp.clone();
        let mut outs = Vec::with_capacity(t + 1);
        for step in 0..t {
            let hc = super::lstm_cell(&(xp.narrow(1, step, 1)?.squeeze(1)? + hp.matmul(&w_t)?)?, &c)?;
            (hp, c) = (hc.narrow(1, 0, h)?, hc.narrow(1, h, h)?);
            outs.push(hp.clone());
        }
        outs.push(c);
        Tensor::stack(&outs, 1)
    }
}

/// What the forward pass keeps for the backward pass, time-major.
#[derive(Debug)]
struct Cache {
    /// The gates after their non-linearities, `[T, B, 4H]`.
    acts: Vec<f32>,
    /// `c_0 … c_T`, `[T + 1, B, H]` (`c_0 = 0`).
    cells: Vec<f32>,
    /// `h_0 … h_{T−1}`, `[T, B, H]` (`h_0 = 0`): each step's recurrent input.
    h_in: Vec<f32>,
}

#[derive(Debug)]
struct LstmSeq {
    cache: Mutex<Option<Cache>>,
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl CustomOp2 for LstmSeq {
    fn name(&self) -> &'static str {
        "dlhist-lstm-sequence"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (xp, w) = (slice_f32(xs, xl)?, slice_f32(ws, wl)?);
        let (b, t, h4) = (xl.dims()[0], xl.dims()[1], xl.dims()[2]);
        let h = h4 / 4;
        let mut acts = vec![0f32; t * b * h4];
        let mut cells = vec![0f32; (t + 1) * b * h];
        let mut h_in = vec![0f32; t * b * h];
        let mut out = vec![0f32; b * (t + 1) * h];
        for s in 0..t {
            let a = &mut acts[s * b * h4..(s + 1) * b * h4];
            for n in 0..b {
                a[n * h4..(n + 1) * h4].copy_from_slice(&xp[(n * t + s) * h4..(n * t + s + 1) * h4]);
            }
            if s > 0 {
                // a_t += h_{t−1} W_hhᵀ
                par_matmul(a, &h_in[s * b * h..(s + 1) * b * h], Stored::AsIs, w, Stored::Transposed, (b, h4, h), true);
            }
            let (before, after) = cells.split_at_mut((s + 1) * b * h);
            let (c_prev, c_next) = (&before[s * b * h..], &mut after[..b * h]);
            for n in 0..b {
                let ar = &mut a[n * h4..(n + 1) * h4];
                for j in 0..h {
                    let (i, f, g, o) =
                        (sigmoid(ar[j]), sigmoid(ar[h + j]), ar[2 * h + j].tanh(), sigmoid(ar[3 * h + j]));
                    (ar[j], ar[h + j], ar[2 * h + j], ar[3 * h + j]) = (i, f, g, o);
                    let c = f * c_prev[n * h + j] + i * g;
                    c_next[n * h + j] = c;
                    let hv = o * c.tanh();
                    out[(n * (t + 1) + s) * h + j] = hv;
                    if s + 1 < t {
                        h_in[((s + 1) * b + n) * h + j] = hv;
                    }
                }
            }
        }
        for n in 0..b {
            out[(n * (t + 1) + t) * h..(n * (t + 1) + t + 1) * h]
                .copy_from_slice(&cells[(t * b + n) * h..(t * b + n + 1) * h]);
        }
        *self.cache.lock().map_err(|_| candle_core::Error::Msg("lstm_sequence: poisoned lock".into()))? =
            Some(Cache { acts, cells, h_in });
        Ok((CpuStorage::F32(out), Shape::from((b, t + 1, h))))
    }

    fn bwd(&self, xp: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, t, h4) = xp.dims3()?;
        let h = h4 / 4;
        let grad = grad.contiguous()?;
        let cache = self.cache.lock().map_err(|_| candle_core::Error::Msg("lstm_sequence: poisoned lock".into()))?;
        let Some(Cache { acts, cells, h_in }) = cache.as_ref() else {
            candle_core::bail!("lstm_sequence: backward before forward")
        };
        // ∂a for every step, time-major [T, B, 4H].
        let mut da = vec![0f32; t * b * h4];
        let mut gw = vec![0f32; h4 * h];
        with_f32(w, |w| {
            with_f32(&grad, |g| {
                let mut dh_next = vec![0f32; b * h];
                // The final cell's gradient enters at step T.
                let mut dc_next: Vec<f32> = (0..b).flat_map(|n| g[(n * (t + 1) + t) * h..][..h].to_vec()).collect();
                for s in (0..t).rev() {
                    let a = &acts[s * b * h4..(s + 1) * b * h4];
                    let (c_prev, c) = (&cells[s * b * h..(s + 1) * b * h], &cells[(s + 1) * b * h..(s + 2) * b * h]);
                    let das = &mut da[s * b * h4..(s + 1) * b * h4];
                    for n in 0..b {
                        for j in 0..h {
                            let k = n * h + j;
                            let (i, f, gg, o) =
                                (a[n * h4 + j], a[n * h4 + h + j], a[n * h4 + 2 * h + j], a[n * h4 + 3 * h + j]);
                            let dh = g[(n * (t + 1) + s) * h + j] + dh_next[k];
                            let tc = c[k].tanh();
                            let dc = dc_next[k] + dh * o * (1.0 - tc * tc);
                            das[n * h4 + j] = dc * gg * i * (1.0 - i);
                            das[n * h4 + h + j] = dc * c_prev[k] * f * (1.0 - f);
                            das[n * h4 + 2 * h + j] = dc * i * (1.0 - gg * gg);
                            das[n * h4 + 3 * h + j] = dh * tc * o * (1.0 - o);
                            dc_next[k] = dc * f;
                        }
                    }
                    // ∂h_{t−1} = ∂a_t W_hh (h_0 is the zero initial state: nothing to send further).
                    if s > 0 {
                        matmul(&mut dh_next, das, Stored::AsIs, w, Stored::AsIs, (b, h, h4), false);
                    }
                }
                // ∂W_hh = Σ_t ∂a_tᵀ h_{t−1}: one product with k = T·B.
                par_matmul(&mut gw, &da, Stored::Transposed, h_in, Stored::AsIs, (h4, h, t * b), false);
            })
        })??;
        let dev = xp.device();
        let gxp = if xp.track_op() {
            // Back to batch-major [B, T, 4H].
            let mut gx = vec![0f32; b * t * h4];
            for s in 0..t {
                for n in 0..b {
                    gx[(n * t + s) * h4..(n * t + s + 1) * h4]
                        .copy_from_slice(&da[(s * b + n) * h4..(s * b + n + 1) * h4]);
                }
            }
            Some(Tensor::from_vec(gx, (b, t, h4), dev)?)
        } else {
            None
        };
        Ok((gxp, Some(Tensor::from_vec(gw, (h4, h), dev)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::{assert_close, strided};
    use candle_core::{DType, Device, Var};

    #[test]
    fn matches_the_step_by_step_composition_values_and_gradients() -> Result<()> {
        let mut rng = crate::rng::Rng::new(21);
        for (b, t, h, non_contiguous) in [(32, 50, 16, false), (3, 7, 5, true), (1, 1, 1, false), (2, 4, 3, true)] {
            let xp = Var::from_tensor(&rng.normal_tensor((b, t, 4 * h), 0.0, 1.0, &Device::Cpu).unwrap())?;
            let w = Var::from_tensor(&rng.normal_tensor((4 * h, h), 0.0, 0.5, &Device::Cpu).unwrap())?;
            let (xi, wi) = if non_contiguous {
                (strided(xp.as_tensor())?, strided(w.as_tensor())?)
            } else {
                (xp.as_tensor().clone(), w.as_tensor().clone())
            };
            let fast = lstm_sequence(&xi, &wi)?;
            // The composition: the same function in f64 takes the step-by-step path (candle ops throughout).
            let d = DType::F64;
            let (x64, w64) = (Var::from_tensor(&xi.to_dtype(d)?)?, Var::from_tensor(&wi.to_dtype(d)?)?);
            let plain = lstm_sequence(&x64, &w64)?;
            let what = format!("b {b} t {t} h {h}");
            assert_close(&fast, &plain.to_dtype(DType::F32)?, &format!("{what}: values"))?;
            let r = rng.normal_tensor(fast.dims(), 0.0, 1.0, &Device::Cpu).unwrap();
            let gf = (&fast * &r)?.sum_all()?.backward()?;
            let gp = (plain * r.to_dtype(d)?)?.sum_all()?.backward()?;
            for (v, v64, name) in [(&xp, &x64, "dxp"), (&w, &w64, "dw")] {
                let want = gp.get(v64).unwrap().to_dtype(DType::F32)?;
                assert_close(gf.get(v).unwrap(), &want, &format!("{what}: {name}"))?;
            }
        }
        assert!(lstm_sequence(
            &Tensor::zeros((1, 2, 8), DType::F32, &Device::Cpu)?,
            &Tensor::zeros((8, 3), DType::F32, &Device::Cpu)?
        )
        .is_err());
        Ok(())
    }
}
