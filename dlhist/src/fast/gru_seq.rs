//! A whole GRU sequence (PyTorch's reset-after form) as one op: the recurrence forward, back-propagation
//! through time backward.
//!
//! With the input projection `A_x = x W_ihᵀ + b_ih` done for all steps at once (one product, outside), a step
//! needs one recurrent product `A_h = h_{t−1} W_hhᵀ + b_hh` (all three gates' rows, since the reset gate is
//! applied after it), then, gates in the order r, z, n:
//!
//! ```text
//! r = σ(A_x,r + A_h,r)   z = σ(A_x,z + A_h,z)   n = tanh(A_x,n + r ⊙ A_h,n)
//! h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}
//! ```
//!
//! Run as tensor ops, that is about a dozen graph nodes per step. Here the forward loop keeps `r, z, n` and
//! `A_h,n`, and the backward loop runs backwards in time, with `∂h_t` the gradient reaching `h_t` from the
//! output and from step `t + 1`:
//!
//! ```text
//! ∂n = ∂h_t ⊙ (1 − z)                ∂A_x,n = ∂n ⊙ (1 − n²)
//! ∂A_h,n = ∂A_x,n ⊙ r               ∂A_x,r = ∂A_h,r = ∂A_x,n ⊙ A_h,n ⊙ r (1 − r)
//! ∂A_x,z = ∂A_h,z = ∂h_t ⊙ (h_{t−1} − n) ⊙ z (1 − z)
//! ∂h_{t−1} = ∂h_t ⊙ z + ∂A_h W_hh                      (the gate's path and the matrix's)
//! [∂W_hh | ∂b_hh] = Σ_t ∂A_hᵀ [h_{t−1} | 1]           (one product over all steps at the end)
//! ```
//!
//! The recurrent bias rides in the product as a last column of the weights against a constant 1 appended to
//! `h_{t−1}`, so the forward pass adds it for free and the backward pass gets its gradient from the same product
//! as `∂W_hh`. Cho et al.'s reset-before form (`W_hn (r ⊙ h_{t−1})`) needs a second product per step that waits
//! for `r`; it is not fused: [`crate::sequence_modeling::Gru`] runs it as its plain composition.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::gemm::{gemm_raw, par_matmul, Stored};
use super::vmath::{on_simd, sigmoid, tanh, Simd};
use super::{cpu_f32, par_chunks, slice_f32, with_f32, SharedMut};

/// Runs the reset-after GRU (PyTorch's `nn.GRU`) over precomputed input projections `xp [B, T, 3H]`
/// (`x W_ihᵀ + b_ih`, gates in the order r, z, n) with recurrent weights `w_hh [3H, H]` and bias `b_hh [3H]`,
/// from the starting state `h0 [B, H]`. Returns `h_1 … h_T`, `[B, T, H]`. All four inputs get their gradients;
/// the starting state's lets a stream cut into chunks back-propagate across the cut unless the carried state is
/// detached.
///
/// f32 tensors on the CPU only (see [`super::applies`]); [`crate::sequence_modeling::Gru`] steps through the
/// composition elsewhere, and for the reset-before form always.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// // Zero weights and inputs: r = z = ½ and n = 0, so each step halves the state.
/// let (w, b) = (Tensor::zeros((3, 1), DType::F32, &dev)?, Tensor::zeros(3, DType::F32, &dev)?);
/// let h0 = Tensor::new(&[[1f32]], &dev)?;
/// let hs = dlhist::fast::gru_sequence(&Tensor::zeros((1, 3, 3), DType::F32, &dev)?, &w, &b, &h0)?;
/// assert_eq!(hs.flatten_all()?.to_vec1::<f32>()?, vec![0.5, 0.25, 0.125]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn gru_sequence(xp: &Tensor, w_hh: &Tensor, b_hh: &Tensor, h0: &Tensor) -> Result<Tensor> {
    let (b, t, gh) = xp.dims3()?;
    let (wr, h) = w_hh.dims2()?;
    if wr != 3 * h || gh != 3 * h || b_hh.dims() != [3 * h] || t == 0 {
        candle_core::bail!(
            "gru_sequence: projections {:?} (at least one step), recurrent weights {:?} and bias {:?} do not fit \
             [B, T, 3H], [3H, H], [3H]",
            xp.dims(),
            w_hh.dims(),
            b_hh.dims()
        )
    }
    if h0.dims() != [b, h] {
        candle_core::bail!("gru_sequence: the state must be [B, H] = [{b}, {h}]; got {:?}", h0.dims())
    }
    if !cpu_f32(&[xp, w_hh, b_hh, h0]) {
        return Err(super::unsupported("gru_sequence", &[xp, w_hh, b_hh, h0]));
    }
    // [W_hh | b_hh], [3H, H + 1]: the op's one weight operand (candle's cat splits its gradient back).
    let w_aug = Tensor::cat(&[w_hh, &b_hh.unsqueeze(1)?], 1)?;
    xp.contiguous()?.apply_op3(&w_aug, &h0.contiguous()?, GruSeq { cache: Mutex::new(None) })
}

/// What the forward pass keeps for the backward pass, batch-major like the op's input and output.
#[derive(Debug)]
struct Cache {
    /// The gates `[r, z, n]` after their non-linearities, `[B, T, 3H]`.
    acts: Vec<f32>,
    /// The candidate's recurrent part `A_h,n = h_{t−1} W_hnᵀ + b_hn`, `[B, T, H]`.
    hn: Vec<f32>,
    /// `[h_{t−1} | 1]` for every step, `[B, T, H + 1]`: each step's recurrent input.
    h_in: Vec<f32>,
}

#[derive(Debug)]
struct GruSeq {
    cache: Mutex<Option<Cache>>,
}

/// One example's step: `a` holds `A_x = [x_r, x_z, x_n]` and receives the gates `[r, z, n]`; `ah` is `A_h`
/// (`[3H]`); writes `A_h,n` to `hn` and `h_t` to `h_out`. Straight-line code over `j`, so it vectorizes where
/// inlined.
#[inline(always)]
fn cell_fwd<const FMA: bool>(a: &mut [f32], ah: &[f32], h_prev: &[f32], hn: &mut [f32], h_out: &mut [f32]) {
    let h = h_out.len();
    let (ar, rest) = a[..3 * h].split_at_mut(h);
    let (az, an) = rest.split_at_mut(h);
    let (hr, rest) = ah[..3 * h].split_at(h);
    let (hz, hnp) = rest.split_at(h);
    let (h_prev, hn) = (&h_prev[..h], &mut hn[..h]);
    for j in 0..h {
        let r = sigmoid::<FMA>(ar[j] + hr[j]);
        let z = sigmoid::<FMA>(az[j] + hz[j]);
        let n = tanh::<FMA>(an[j] + r * hnp[j]);
        (ar[j], az[j], an[j], hn[j]) = (r, z, n, hnp[j]);
        // h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}, as n + z ⊙ (h_{t−1} − n).
        h_out[j] = n + z * (h_prev[j] - n);
    }
}

/// One example's slices for the cell backward at one step.
struct CellBwd<'a> {
    /// The gates `[r, z, n]`, `[3H]`.
    a: &'a [f32],
    /// `A_h,n` and `h_{t−1}`, `[H]` each.
    hn: &'a [f32],
    h_prev: &'a [f32],
    /// The gradient reaching `h_t` from the output.
    dh_out: &'a [f32],
    /// The gradient reaching `h_t` from step `t + 1`, replaced by the gate's part of `∂h_{t−1}` (`∂h_t ⊙ z`).
    dh_next: &'a mut [f32],
    /// Written: the gradients of `A_x` and of `A_h`, `[3H]` each.
    dax: &'a mut [f32],
    dah: &'a mut [f32],
}

/// One example's cell backward at one step (module docs; see [`CellBwd`]).
#[inline(always)]
fn cell_bwd<const FMA: bool>(s: CellBwd<'_>) {
    let CellBwd { a, hn, h_prev, dh_out, dh_next, dax, dah } = s;
    let h = hn.len();
    let (ar, rest) = a[..3 * h].split_at(h);
    let (az, an) = rest.split_at(h);
    let (dxr, rest) = dax[..3 * h].split_at_mut(h);
    let (dxz, dxn) = rest.split_at_mut(h);
    let (dhr, rest) = dah[..3 * h].split_at_mut(h);
    let (dhz, dhn) = rest.split_at_mut(h);
    let (h_prev, dh_out, dh_next) = (&h_prev[..h], &dh_out[..h], &mut dh_next[..h]);
    for j in 0..h {
        let (r, z, n) = (ar[j], az[j], an[j]);
        let dh = dh_out[j] + dh_next[j];
        let dan = dh * (1.0 - z) * (1.0 - n * n);
        let dar = dan * hn[j] * r * (1.0 - r);
        let daz = dh * (h_prev[j] - n) * z * (1.0 - z);
        (dxr[j], dxz[j], dxn[j]) = (dar, daz, dan);
        (dhr[j], dhz[j], dhn[j]) = (dar, daz, dan * r);
        dh_next[j] = dh * z;
    }
}

/// [`cell_fwd`] compiled for `simd`.
fn cell_fwd_on(simd: Simd, a: &mut [f32], ah: &[f32], h_prev: &[f32], hn: &mut [f32], h_out: &mut [f32]) {
    on_simd!(simd, cell_fwd, (a: &mut [f32], ah: &[f32], h_prev: &[f32], hn: &mut [f32], h_out: &mut [f32]))
}

/// [`cell_bwd`] compiled for `simd`.
fn cell_bwd_on(simd: Simd, s: CellBwd<'_>) {
    on_simd!(simd, cell_bwd, (s: CellBwd<'_>))
}

/// The poisoned-lock error.
fn poisoned<T>(_: T) -> candle_core::Error {
    candle_core::Error::Msg("gru_sequence: poisoned lock".into())
}

impl CustomOp3 for GruSeq {
    fn name(&self) -> &'static str {
        "dlhist-gru-sequence"
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
        let (b, t, gh) = (xl.dims()[0], xl.dims()[1], xl.dims()[2]);
        let (h, k) = (gh / 3, wl.dims()[1]);
        let simd = Simd::detect();
        // The gates are computed in place over a copy of the projections (batch-major like them).
        let mut acts = xp.to_vec();
        let mut hn = vec![0f32; b * t * h];
        // [h_{t−1} | 1] per step: h_0 in step 0's row, the 1 against the bias column of the weights.
        let mut h_in = vec![1f32; b * t * k];
        for n in 0..b {
            h_in[n * t * k..][..h].copy_from_slice(&h0[n * h..][..h]);
        }
        let mut out = vec![0f32; b * t * h];
        let ptrs = [acts.as_mut_ptr(), hn.as_mut_ptr(), h_in.as_mut_ptr(), out.as_mut_ptr()].map(SharedMut);
        // [W_hh | b_hh]ᵀ stored row-major [H + 1, 3H]: gemm reads it as a column-major left operand in place
        // (see lstm_seq).
        let mut w_t = vec![0f32; k * gh];
        for (j, wr) in w.chunks_exact(k).enumerate().take(gh) {
            for (i, &v) in wr.iter().enumerate() {
                w_t[i * gh + j] = v;
            }
        }
        let wp = w_t.as_ptr() as usize;
        // The recurrence couples the steps, not the examples: each thread runs the whole sequence for its own
        // block of examples.
        par_chunks(b, b.div_ceil(super::threads()), |rows| {
            // SAFETY: this block reads and writes rows r0..r0+nb (examples) of acts, hn, h_in and out only; no
            // other block touches them. Every index below stays inside those examples' rows.
            let row =
                |p: SharedMut, at: usize, len: usize| unsafe { std::slice::from_raw_parts_mut(p.get().add(at), len) };
            let (r0, nb) = (rows.start, rows.len());
            // A_h for this block's examples at the current step, [nb, 3H].
            let mut ah = vec![0f32; nb * gh];
            for s in 0..t {
                // A_h = [h_{t−1} | 1] [W_hh | b_hh]ᵀ: rows T·(H + 1) apart in h_in.
                // SAFETY: rows (n, s) of h_in for n in the block, within the vector (b·t rows); w_t is
                // [H + 1, 3H]; ah is this block's own.
                unsafe {
                    gemm_raw(
                        (nb, gh, k),
                        ah.as_mut_ptr(),
                        gh as isize,
                        ptrs[2].get().add((r0 * t + s) * k),
                        ((t * k) as isize, 1),
                        wp as *const f32,
                        (gh as isize, 1),
                        false,
                    )
                }
                for (i, n) in rows.clone().enumerate() {
                    let a = row(ptrs[0], (n * t + s) * gh, gh);
                    let hn_s = row(ptrs[1], (n * t + s) * h, h);
                    let h_prev = row(ptrs[2], (n * t + s) * k, h);
                    let h_out = row(ptrs[3], (n * t + s) * h, h);
                    cell_fwd_on(simd, a, &ah[i * gh..][..gh], h_prev, hn_s, h_out);
                    if s + 1 < t {
                        row(ptrs[2], (n * t + s + 1) * k, h).copy_from_slice(h_out);
                    }
                }
            }
        });
        *self.cache.lock().map_err(poisoned)? = Some(Cache { acts, hn, h_in });
        Ok((CpuStorage::F32(out), Shape::from((b, t, h))))
    }

    fn bwd(
        &self,
        xp: &Tensor,
        w: &Tensor,
        h0: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, gh) = xp.dims3()?;
        let (h, k) = (gh / 3, w.dims()[1]);
        let grad = grad.contiguous()?;
        let cache = self.cache.lock().map_err(poisoned)?;
        let Some(Cache { acts, hn, h_in }) = cache.as_ref() else {
            candle_core::bail!("gru_sequence: backward before forward")
        };
        let simd = Simd::detect();
        // The starting state's gradient is wanted only when it is part of a graph (not a detached or zero start).
        let want_state = h0.track_op();
        // ∂A_x (the projections' gradient as it is) and ∂A_h for every step, batch-major [B, T, 3H].
        let mut dax = vec![0f32; b * t * gh];
        let mut dah = vec![0f32; b * t * gh];
        let (daxp, dahp) = (SharedMut(dax.as_mut_ptr()), SharedMut(dah.as_mut_ptr()));
        let mut gw = vec![0f32; gh * k];
        let mut dh0 = vec![0f32; b * h];
        let dh0p = SharedMut(dh0.as_mut_ptr());
        with_f32(w, |w| {
            with_f32(&grad, |g| {
                // Examples are independent here too: each block runs back through time on its own.
                par_chunks(b, b.div_ceil(super::threads()), |rows| {
                    let (r0, nb) = (rows.start, rows.len());
                    // The gradient reaching h_s from step s + 1 (zero after the last step).
                    let mut dh_next = vec![0f32; nb * h];
                    for s in (0..t).rev() {
                        for (i, n) in rows.clone().enumerate() {
                            let at = (n * t + s) * gh;
                            // SAFETY: example n's rows of step s in dax and dah; only this block writes them.
                            let (dx, dh) = unsafe {
                                (
                                    std::slice::from_raw_parts_mut(daxp.get().add(at), gh),
                                    std::slice::from_raw_parts_mut(dahp.get().add(at), gh),
                                )
                            };
                            cell_bwd_on(
                                simd,
                                CellBwd {
                                    a: &acts[at..][..gh],
                                    hn: &hn[(n * t + s) * h..][..h],
                                    h_prev: &h_in[(n * t + s) * k..][..h],
                                    dh_out: &g[(n * t + s) * h..][..h],
                                    dh_next: &mut dh_next[i * h..][..h],
                                    dax: dx,
                                    dah: dh,
                                },
                            );
                        }
                        // ∂h_{s−1} = ∂h_s ⊙ z (now in dh_next) + ∂A_h W_hh; at step 0 that is the starting state's
                        // gradient, if wanted.
                        if (s > 0 || want_state) && h > 0 {
                            // SAFETY: reads rows (n, s) of dah for this block's n (written above by this block),
                            // T·3H apart; w is [3H, H + 1], of which the first H columns are read; writes this
                            // block's own dh_next.
                            unsafe {
                                gemm_raw(
                                    (nb, h, gh),
                                    dh_next.as_mut_ptr(),
                                    h as isize,
                                    dahp.get().add((r0 * t + s) * gh),
                                    ((t * gh) as isize, 1),
                                    w.as_ptr(),
                                    (k as isize, 1),
                                    true,
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
                // [∂W_hh | ∂b_hh] = Σ_t ∂A_hᵀ [h_{t−1} | 1]: one product with k = B·T.
                par_matmul(&mut gw, &dah, Stored::Transposed, h_in, Stored::AsIs, (gh, k, b * t), false);
            })
        })??;
        let dev = xp.device();
        let gxp = if xp.track_op() { Some(Tensor::from_vec(dax, (b, t, gh), dev)?) } else { None };
        let gh0 = if want_state { Some(Tensor::from_vec(dh0, (b, h), dev)?) } else { None };
        Ok((gxp, Some(Tensor::from_vec(gw, (gh, k), dev)?), gh0))
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
        let (a0, ah, hp, dho, dhn0) = (v(1, 3 * h), v(2, 3 * h), v(3, h), v(4, h), v(5, h));
        let run = |simd: Simd| {
            let (mut a, mut hn, mut hs) = (a0.clone(), vec![0f32; h], vec![0f32; h]);
            cell_fwd_on(simd, &mut a, &ah, &hp, &mut hn, &mut hs);
            let (mut dhn, mut dx, mut dh) = (dhn0.clone(), vec![0f32; 3 * h], vec![0f32; 3 * h]);
            let step =
                CellBwd { a: &a, hn: &hn, h_prev: &hp, dh_out: &dho, dh_next: &mut dhn, dax: &mut dx, dah: &mut dh };
            cell_bwd_on(simd, step);
            [a, hn, hs, dhn, dx, dh].concat()
        };
        let want = run(Simd::Generic);
        for simd in Simd::available() {
            for (x, y) in run(simd).iter().zip(&want) {
                assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{simd:?}: {x} vs {y}");
            }
        }
    }

    /// The op against the step-by-step candle composition, values and the gradients of all four inputs, with
    /// shapes that leave one block a single example, and H = 1.
    #[test]
    fn matches_the_composition_values_and_gradients() -> Result<()> {
        use crate::fast::testing::{assert_same_values_and_grads, randn};
        use candle_core::{IndexOp, Var};
        for (b, t, h) in [(5, 7, 9), (1, 1, 1), (3, 4, 1), (2, 1, 6)] {
            let xp = Var::from_tensor(&randn(&[b, t, 3 * h], 1))?;
            let w = Var::from_tensor(&(randn(&[3 * h, h], 2) * 0.5)?)?;
            let bh = Var::from_tensor(&randn(&[3 * h], 3))?;
            let h0 = Var::from_tensor(&randn(&[b, h], 4))?;
            let fused = gru_sequence(&xp, &w, &bh, &h0)?;
            let mut hh = h0.as_tensor().clone();
            let mut hs = vec![];
            for s in 0..t {
                let (a, ah) = (xp.i((.., s))?, hh.matmul(&w.t()?)?.broadcast_add(&bh)?);
                let gate =
                    |i: usize| -> Result<(Tensor, Tensor)> { Ok((a.narrow(1, i * h, h)?, ah.narrow(1, i * h, h)?)) };
                let ((xr, hr), (xz, hz), (xn, hn)) = (gate(0)?, gate(1)?, gate(2)?);
                let r = candle_nn::ops::sigmoid(&(xr + hr)?)?;
                let z = candle_nn::ops::sigmoid(&(xz + hz)?)?;
                let n = (xn + (r * hn)?)?.tanh()?;
                hh = (&n + (z * (&hh - &n)?)?)?;
                hs.push(hh.clone());
            }
            let plain = Tensor::stack(&hs, 1)?;
            let vars = [(&xp, "xp"), (&w, "w_hh"), (&bh, "b_hh"), (&h0, "h0")];
            assert_same_values_and_grads(&fused, &plain, &vars, &format!("b {b} t {t} h {h}"))?;
        }
        Ok(())
    }

    #[test]
    fn bad_shapes_and_dtypes_are_refused() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let z = |s: &[usize]| Tensor::zeros(s, candle_core::DType::F32, &dev);
        assert!(gru_sequence(&z(&[2, 3, 12])?, &z(&[12, 5])?, &z(&[12])?, &z(&[2, 4])?).is_err());
        assert!(gru_sequence(&z(&[2, 3, 12])?, &z(&[12, 4])?, &z(&[4])?, &z(&[2, 4])?).is_err());
        assert!(gru_sequence(&z(&[2, 3, 12])?, &z(&[12, 4])?, &z(&[12])?, &z(&[3, 4])?).is_err());
        assert!(gru_sequence(&z(&[2, 0, 12])?, &z(&[12, 4])?, &z(&[12])?, &z(&[2, 4])?).is_err());
        let x64 = z(&[2, 3, 12])?.to_dtype(candle_core::DType::F64)?;
        let e = gru_sequence(&x64, &z(&[12, 4])?, &z(&[12])?, &z(&[2, 4])?);
        assert!(e.unwrap_err().to_string().contains("f32"));
        Ok(())
    }
}
