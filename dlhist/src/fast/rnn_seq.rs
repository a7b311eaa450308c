//! A whole tanh-RNN sequence as one op: the recurrence forward, back-propagation through time backward.
//!
//! With the input projection `A_x = x W_ihᵀ + b_ih + b_hh` done for all steps at once (one product, outside), a
//! step is `h_t = tanh(A_x[:, t] + h_{t−1} W_hhᵀ)`. Run as tensor ops, that is a slice, a product, an add and a
//! tanh per step, each a graph node with its own backward (the slice's pads its gradient to the full `[B, T, H]`).
//! Here the forward loop runs the steps in place over a copy of `A_x`, which then holds `h_1 … h_T` (all the
//! backward pass needs), and the backward loop runs backwards in time:
//!
//! ```text
//! ∂a_t = (∂L/∂h_t + ∂a_{t+1} W_hh) ⊙ (1 − h_t²)     (∂a_{T+1} = 0; the first term from the output)
//! ∂h_0 = ∂a_1 W_hh
//! ∂W_hh = Σ_t ∂a_tᵀ h_{t−1}                        (one product over all steps at the end)
//! ```
//!
//! As in [`super::lstm_sequence`], each thread runs the whole sequence for its own block of examples.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::gemm::{gemm_raw, par_matmul, Stored};
use super::vmath::{on_simd, tanh, Simd};
use super::{cpu_f32, par_chunks, slice_f32, with_f32, SharedMut};

/// Runs the tanh RNN `h_t = tanh(xp_t + h_{t−1} W_hhᵀ)` over precomputed input projections `xp [B, T, H]`
/// (`x W_ihᵀ + b_ih + b_hh`) with recurrent weights `w_hh [H, H]`, from the starting state `h0 [B, H]`. Returns
/// `h_1 … h_T`, `[B, T, H]`. `h0` gets its gradient like any input (a stream cut into chunks back-propagates
/// across the cut unless the carried state is detached).
///
/// f32 tensors on the CPU only (see [`super::applies`]); [`crate::sequence_modeling::Rnn`] steps through the
/// composition elsewhere.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// // Identity recurrence, no input: h_t = tanh(h_{t−1}), from h_0 = 1.
/// let w = Tensor::new(&[[1f32]], &dev)?;
/// let h0 = Tensor::new(&[[1f32]], &dev)?;
/// let hs = dlhist::fast::rnn_sequence(&Tensor::zeros((1, 2, 1), DType::F32, &dev)?, &w, &h0)?;
/// let want = [1f32.tanh(), 1f32.tanh().tanh()];
/// for (got, want) in hs.flatten_all()?.to_vec1::<f32>()?.iter().zip(want) {
///     assert!((got - want).abs() < 1e-6);
/// }
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn rnn_sequence(xp: &Tensor, w_hh: &Tensor, h0: &Tensor) -> Result<Tensor> {
    let (b, t, h) = xp.dims3()?;
    if w_hh.dims() != [h, h] || t == 0 {
        candle_core::bail!(
            "rnn_sequence: projections {:?} (at least one step) and recurrent weights {:?} ([H, H]) do not fit",
            xp.dims(),
            w_hh.dims()
        )
    }
    if h0.dims() != [b, h] {
        candle_core::bail!("rnn_sequence: the state must be [B, H] = [{b}, {h}]; got {:?}", h0.dims())
    }
    if !cpu_f32(&[xp, w_hh, h0]) {
        return Err(super::unsupported("rnn_sequence", &[xp, w_hh, h0]));
    }
    xp.contiguous()?.apply_op3(&w_hh.contiguous()?, &h0.contiguous()?, RnnSeq)
}

/// The op. It keeps no cache: its output `h_1 … h_T` and its inputs are all the backward pass needs.
#[derive(Debug)]
struct RnnSeq;

/// `h = tanh(a)` in place over one row. Straight-line code, so it vectorizes where inlined.
#[inline(always)]
fn cell_fwd<const FMA: bool>(a: &mut [f32]) {
    for v in a.iter_mut() {
        *v = tanh::<FMA>(*v);
    }
}

/// `∂a = (∂h_out + ∂h_next) ⊙ (1 − h²)` over one row (`da` as long as `h`).
#[inline(always)]
fn cell_bwd<const FMA: bool>(h: &[f32], dh_out: &[f32], dh_next: &[f32], da: &mut [f32]) {
    let n = da.len();
    let (h, dh_out, dh_next) = (&h[..n], &dh_out[..n], &dh_next[..n]);
    for j in 0..n {
        da[j] = (dh_out[j] + dh_next[j]) * (1.0 - h[j] * h[j]);
    }
}

/// [`cell_fwd`] compiled for `simd`.
fn cell_fwd_on(simd: Simd, a: &mut [f32]) {
    on_simd!(simd, cell_fwd, (a: &mut [f32]))
}

/// [`cell_bwd`] compiled for `simd`.
fn cell_bwd_on(simd: Simd, h: &[f32], dh_out: &[f32], dh_next: &[f32], da: &mut [f32]) {
    on_simd!(simd, cell_bwd, (h: &[f32], dh_out: &[f32], dh_next: &[f32], da: &mut [f32]))
}

impl CustomOp3 for RnnSeq {
    fn name(&self) -> &'static str {
        "dlhist-rnn-sequence"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (xp, w, h0) = (slice_f32(xs, xl)?, slice_f32(ws, wl)?, slice_f32(ss, sl)?);
        let (b, t, h) = (xl.dims()[0], xl.dims()[1], xl.dims()[2]);
        let simd = Simd::detect();
        // The steps run in place over a copy of the projections: row (n, s) receives a_s, then h_s, which is
        // the next step's recurrent input (every T-th row: a strided operand for gemm) and the output.
        let mut out = xp.to_vec();
        let outp = SharedMut(out.as_mut_ptr());
        let zero_start = h0.iter().all(|&v| v == 0.0);
        // W_hhᵀ stored row-major: gemm reads it as a column-major left operand in place (see lstm_seq).
        let mut w_t = vec![0f32; h * h];
        for (j, wr) in w.chunks_exact(h.max(1)).enumerate() {
            for (k, &v) in wr.iter().enumerate() {
                w_t[k * h + j] = v;
            }
        }
        let (wp, h0p) = (w_t.as_ptr() as usize, h0.as_ptr() as usize);
        // The recurrence couples the steps, not the examples: each thread runs the whole sequence for its own
        // block of examples.
        par_chunks(b, b.div_ceil(super::threads()), |rows| {
            let (r0, nb) = (rows.start, rows.len());
            for s in 0..t {
                // From a zero state, step 0 has no recurrent term to add.
                if (s > 0 || !zero_start) && h > 0 {
                    // a_s += h_{s−1} W_hhᵀ for this block's examples: h_{s−1} is row (n, s−1) of out, T·H apart,
                    // or row n of h0, H apart.
                    let (prev, prev_rs) = if s == 0 {
                        ((h0p as *const f32).wrapping_add(r0 * h), h as isize)
                    } else {
                        (outp.get().wrapping_add((r0 * t + s - 1) * h) as *const f32, (t * h) as isize)
                    };
                    // SAFETY: this block reads and writes rows (n, ·) of out for n in r0..r0+nb only (rows
                    // (n, s) written, (n, s − 1) read, both inside the b·t rows), reads rows r0..r0+nb of h0
                    // (b rows); w_t is [H, H].
                    unsafe {
                        gemm_raw(
                            (nb, h, h),
                            outp.get().add((r0 * t + s) * h),
                            (t * h) as isize,
                            prev,
                            (prev_rs, 1),
                            wp as *const f32,
                            (h as isize, 1),
                            true,
                        )
                    }
                }
                for n in rows.clone() {
                    // SAFETY: row (n, s) of out, n in this block.
                    let a = unsafe { std::slice::from_raw_parts_mut(outp.get().add((n * t + s) * h), h) };
                    cell_fwd_on(simd, a);
                }
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, t, h))))
    }

    fn bwd(
        &self,
        xp: &Tensor,
        w: &Tensor,
        h0: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, h) = xp.dims3()?;
        let grad = grad.contiguous()?;
        let simd = Simd::detect();
        // The starting state's gradient is wanted only when it is part of a graph (not a detached or zero start).
        let want_state = h0.track_op();
        // ∂a for every step, batch-major [B, T, H]: the projections' gradient as it is.
        let mut da = vec![0f32; b * t * h];
        let dap = SharedMut(da.as_mut_ptr());
        let mut gw = vec![0f32; h * h];
        let mut dh0 = vec![0f32; b * h];
        let dh0p = SharedMut(dh0.as_mut_ptr());
        // The starting state is small ([B, H]): a copy, so that three borrowed inputs suffice.
        let h0v: Vec<f32> = h0.flatten_all()?.to_vec1()?;
        with_f32(w, |w| {
            with_f32(&grad, |g| {
                with_f32(res, |hs| {
                    // Examples are independent here too: each block runs back through time on its own.
                    par_chunks(b, b.div_ceil(super::threads()), |rows| {
                        let (r0, nb) = (rows.start, rows.len());
                        // ∂h_{s} reaching step s from step s + 1 (zero after the last step).
                        let mut dh_next = vec![0f32; nb * h];
                        for s in (0..t).rev() {
                            for (k, n) in rows.clone().enumerate() {
                                let at = (n * t + s) * h;
                                // SAFETY: example n's row of step s in da; only this block writes it.
                                let das = unsafe { std::slice::from_raw_parts_mut(dap.get().add(at), h) };
                                cell_bwd_on(simd, &hs[at..at + h], &g[at..at + h], &dh_next[k * h..][..h], das);
                            }
                            // ∂h_{s−1} = ∂a_s W_hh; at step 0 that is the starting state's gradient, if wanted.
                            if (s > 0 || want_state) && h > 0 {
                                // SAFETY: reads rows (n, s) of da for this block's n (written above by this
                                // block), T·H apart; w is [H, H]; writes this block's own dh_next.
                                unsafe {
                                    gemm_raw(
                                        (nb, h, h),
                                        dh_next.as_mut_ptr(),
                                        h as isize,
                                        dap.get().add((r0 * t + s) * h),
                                        ((t * h) as isize, 1),
                                        w.as_ptr(),
                                        (h as isize, 1),
                                        false,
                                    )
                                }
                            }
                        }
                        if want_state {
                            // SAFETY: rows r0..r0+nb of dh0; only this block writes them.
                            let d = unsafe { std::slice::from_raw_parts_mut(dh0p.get().add(r0 * h), nb * h) };
                            d.copy_from_slice(&dh_next);
                        }
                    });
                    // ∂W_hh = Σ_t ∂a_tᵀ h_{t−1}: one product with k = B·T over the recurrent inputs, which are
                    // the outputs shifted one step, h_0 first.
                    let mut h_in = vec![0f32; b * t * h];
                    for n in 0..b {
                        let ex = &mut h_in[n * t * h..(n + 1) * t * h];
                        ex[..h].copy_from_slice(&h0v[n * h..(n + 1) * h]);
                        ex[h..].copy_from_slice(&hs[n * t * h..((n + 1) * t - 1) * h]);
                    }
                    par_matmul(&mut gw, &da, Stored::Transposed, &h_in, Stored::AsIs, (h, h, b * t), false);
                })
            })
        })???;
        let dev = xp.device();
        let gxp = if xp.track_op() { Some(Tensor::from_vec(da, (b, t, h), dev)?) } else { None };
        let gh0 = if want_state { Some(Tensor::from_vec(dh0, (b, h), dev)?) } else { None };
        Ok((gxp, Some(Tensor::from_vec(gw, (h, h), dev)?), gh0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_kernels_agree_on_every_instruction_set() {
        // The op tests run the level this CPU picks; the others (the portable one included) must agree with it.
        let h = 37;
        let v = |seed: u64, n: usize| -> Vec<f32> { crate::rng::Rng::new(seed).normal_vec(n, 0.0, 3.0) };
        let (a0, dho, dhn) = (v(1, h), v(2, h), v(3, h));
        let run = |simd: Simd| {
            let mut a = a0.clone();
            cell_fwd_on(simd, &mut a);
            let mut da = vec![0f32; h];
            cell_bwd_on(simd, &a, &dho, &dhn, &mut da);
            [a, da].concat()
        };
        let want = run(Simd::Generic);
        for simd in Simd::available() {
            for (x, y) in run(simd).iter().zip(&want) {
                assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{simd:?}: {x} vs {y}");
            }
        }
    }

    /// The op against the step-by-step candle composition, values and the gradients of all three inputs,
    /// with shapes that leave one block a single example, and H = 1.
    #[test]
    fn matches_the_composition_values_and_gradients() -> Result<()> {
        use crate::fast::testing::{assert_same_values_and_grads, randn};
        use candle_core::{IndexOp, Var};
        for (b, t, h) in [(5, 7, 9), (1, 1, 1), (3, 4, 1), (2, 1, 6)] {
            let xp = Var::from_tensor(&randn(&[b, t, h], 1))?;
            let w = Var::from_tensor(&(randn(&[h, h], 2) * 0.5)?)?;
            let h0 = Var::from_tensor(&randn(&[b, h], 3))?;
            let fused = rnn_sequence(&xp, &w, &h0)?;
            let mut hh = h0.as_tensor().clone();
            let mut hs = vec![];
            for s in 0..t {
                hh = (xp.i((.., s))? + hh.matmul(&w.t()?)?)?.tanh()?;
                hs.push(hh.clone());
            }
            let plain = Tensor::stack(&hs, 1)?;
            let vars = [(&xp, "xp"), (&w, "w_hh"), (&h0, "h0")];
            assert_same_values_and_grads(&fused, &plain, &vars, &format!("b {b} t {t} h {h}"))?;
        }
        Ok(())
    }

    #[test]
    fn bad_shapes_and_dtypes_are_refused() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let z = |s: &[usize]| Tensor::zeros(s, candle_core::DType::F32, &dev);
        assert!(rnn_sequence(&z(&[2, 3, 4])?, &z(&[4, 5])?, &z(&[2, 4])?).is_err());
        assert!(rnn_sequence(&z(&[2, 3, 4])?, &z(&[4, 4])?, &z(&[3, 4])?).is_err());
        assert!(rnn_sequence(&z(&[2, 0, 4])?, &z(&[4, 4])?, &z(&[2, 4])?).is_err());
        let e = rnn_sequence(&z(&[2, 3, 4])?.to_dtype(candle_core::DType::F64)?, &z(&[4, 4])?, &z(&[2, 4])?);
        assert!(e.unwrap_err().to_string().contains("f32"));
        Ok(())
    }
}
