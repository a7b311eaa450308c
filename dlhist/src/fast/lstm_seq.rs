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
use super::{cpu_f32, par_chunks, slice_f32, with_f32, SharedMut};

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
        let ptrs = [acts.as_mut_ptr(), cells.as_mut_ptr(), h_in.as_mut_ptr(), out.as_mut_ptr()].map(SharedMut);
        // The recurrence couples the steps, not the examples: each thread runs the whole sequence for its own
        // block of examples (one dispatch per sequence rather than one per step).
        par_chunks(b, b.div_ceil(super::threads()), |rows| {
            let (r0, nb) = (rows.start, rows.len());
            // SAFETY: this block writes rows r0..r0+nb of every step's acts, cells and h_in, and those examples'
            // rows of out; no other block touches them.
            let rows_of = |p: SharedMut, step_rows: usize, width: usize, step: usize| unsafe {
                std::slice::from_raw_parts_mut(p.get().add((step * step_rows + r0) * width), nb * width)
            };
            for s in 0..t {
                let a = rows_of(ptrs[0], b, h4, s);
                for (k, n) in rows.clone().enumerate() {
                    a[k * h4..(k + 1) * h4].copy_from_slice(&xp[(n * t + s) * h4..(n * t + s + 1) * h4]);
                }
                if s > 0 {
                    // a_t += h_{t−1} W_hhᵀ
                    matmul(a, rows_of(ptrs[2], b, h, s), Stored::AsIs, w, Stored::Transposed, (nb, h4, h), true);
                }
                let (c_prev, c_next) = (rows_of(ptrs[1], b, h, s), rows_of(ptrs[1], b, h, s + 1));
                let mut h_next = if s + 1 < t { Some(rows_of(ptrs[2], b, h, s + 1)) } else { None };
                for k in 0..nb {
                    let ar = &mut a[k * h4..(k + 1) * h4];
                    // SAFETY: example r0 + k's row of out, written by this block only.
                    let o_row =
                        unsafe { std::slice::from_raw_parts_mut(ptrs[3].get().add(((r0 + k) * (t + 1) + s) * h), h) };
                    for j in 0..h {
                        let (i, f, g, o) =
                            (sigmoid(ar[j]), sigmoid(ar[h + j]), ar[2 * h + j].tanh(), sigmoid(ar[3 * h + j]));
                        (ar[j], ar[h + j], ar[2 * h + j], ar[3 * h + j]) = (i, f, g, o);
                        let c = f * c_prev[k * h + j] + i * g;
                        c_next[k * h + j] = c;
                        o_row[j] = o * c.tanh();
                    }
                    if let Some(hn) = h_next.as_deref_mut() {
                        hn[k * h..(k + 1) * h].copy_from_slice(o_row);
                    }
                }
            }
        });
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
        let dap = SharedMut(da.as_mut_ptr());
        let mut gw = vec![0f32; h4 * h];
        with_f32(w, |w| {
            with_f32(&grad, |g| {
                // Examples are independent here too: each block runs back through time on its own.
                par_chunks(b, b.div_ceil(super::threads()), |rows| {
                    let (r0, nb) = (rows.start, rows.len());
                    let mut dh_next = vec![0f32; nb * h];
                    // The final cell's gradient enters at step T.
                    let mut dc_next: Vec<f32> =
                        rows.clone().flat_map(|n| g[(n * (t + 1) + t) * h..][..h].to_vec()).collect();
                    for s in (0..t).rev() {
                        let a = &acts[(s * b + r0) * h4..(s * b + r0 + nb) * h4];
                        let c_prev = &cells[(s * b + r0) * h..(s * b + r0 + nb) * h];
                        let c = &cells[((s + 1) * b + r0) * h..((s + 1) * b + r0 + nb) * h];
                        // SAFETY: this block's rows of step s in da; no other block writes them.
                        let das = unsafe { std::slice::from_raw_parts_mut(dap.get().add((s * b + r0) * h4), nb * h4) };
                        for k in 0..nb {
                            let n = r0 + k;
                            for j in 0..h {
                                let q = k * h + j;
                                let (i, f, gg, o) =
                                    (a[k * h4 + j], a[k * h4 + h + j], a[k * h4 + 2 * h + j], a[k * h4 + 3 * h + j]);
                                let dh = g[(n * (t + 1) + s) * h + j] + dh_next[q];
                                let tc = c[q].tanh();
                                let dc = dc_next[q] + dh * o * (1.0 - tc * tc);
                                das[k * h4 + j] = dc * gg * i * (1.0 - i);
                                das[k * h4 + h + j] = dc * c_prev[q] * f * (1.0 - f);
                                das[k * h4 + 2 * h + j] = dc * i * (1.0 - gg * gg);
                                das[k * h4 + 3 * h + j] = dh * tc * o * (1.0 - o);
                                dc_next[q] = dc * f;
                            }
                        }
                        // ∂h_{t−1} = ∂a_t W_hh (h_0 is the zero initial state: nothing to send further).
                        if s > 0 {
                            matmul(&mut dh_next, das, Stored::AsIs, w, Stored::AsIs, (nb, h, h4), false);
                        }
                    }
                });
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
