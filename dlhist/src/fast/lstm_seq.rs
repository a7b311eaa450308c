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

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::gemm::{gemm_raw, par_matmul, Stored};
use super::vmath::{on_simd, sigmoid, tanh, Simd};
use super::{cpu_f32, par_chunks, slice_f32, with_f32, SharedMut};

/// Runs the LSTM recurrence over precomputed input projections `xp [B, T, 4H]` (`x W_ihᵀ + b_ih + b_hh`, gates
/// in the order i, f, g, o) with recurrent weights `w_hh [4H, H]`, from a zero state. Returns `[B, T + 1, H]`:
/// `h_1 … h_T` in rows `0..T`, then the final cell `c_T` in row `T`.
///
/// f32 tensors on the CPU only (see [`super::applies`]); [`crate::sequence_modeling::Lstm`] steps through the
/// cell's composition elsewhere.
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
    let (b, _, _) = xp.dims3()?;
    let h = w_hh.dims2()?.1;
    lstm_sequence_from(xp, w_hh, &Tensor::zeros((b, 2, h), xp.dtype(), xp.device())?, true)
}

/// [`lstm_sequence`] for either cell and from any starting state: `state` is `[B, 2, H]`, `h_0` in row 0 and
/// `c_0` in row 1, and gets its gradient like any input (so a stream cut into chunks back-propagates across the
/// cut unless the state is detached). With `forget_gate` false the cell is the 1997 one, `c_t = c_{t−1} + i ⊙ g`,
/// and `xp`, `w_hh` hold three gates (i, g, o): `[B, T, 3H]`, `[3H, H]`. `xp` may also come as `[B·T, GH]`
/// rows, batch-major, as a dense layer over the flattened steps returns them: passed as they are, they spare the
/// graph a reshape, whose backward candle runs as a zero-filled accumulator plus an add over all of them.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// // The 1997 cell with zero weights: i = ½ and g = 0, so the cell keeps its starting value exactly.
/// let start = Tensor::new(&[[[0f32, 0.], [1., -2.]]], &dev)?; // h_0 = 0, c_0 = (1, −2)
/// let out = dlhist::fast::lstm_sequence_from(&Tensor::zeros((1, 5, 6), DType::F32, &dev)?, &Tensor::zeros((6, 2), DType::F32, &dev)?, &start, false)?;
/// assert_eq!(out.get(0)?.get(5)?.to_vec1::<f32>()?, vec![1., -2.]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn lstm_sequence_from(xp: &Tensor, w_hh: &Tensor, state: &Tensor, forget_gate: bool) -> Result<Tensor> {
    let (b, t, gh) = seq_dims(xp, state)?;
    let (wr, h) = w_hh.dims2()?;
    let g = if forget_gate { 4 } else { 3 };
    if wr != g * h || gh != g * h || t == 0 {
        candle_core::bail!(
            "lstm_sequence: projections {:?} and recurrent weights {:?} do not fit a cell of {g} gates",
            xp.dims(),
            w_hh.dims()
        )
    }
    if state.dims() != [b, 2, h] {
        candle_core::bail!("lstm_sequence: the state must be [B, 2, H] = [{b}, 2, {h}]; got {:?}", state.dims())
    }
    if !cpu_f32(&[xp, w_hh, state]) {
        return Err(super::unsupported("lstm_sequence", &[xp, w_hh, state]));
    }
    xp.contiguous()?.apply_op3(
        &w_hh.contiguous()?,
        &state.contiguous()?,
        LstmSeq { forget: forget_gate, steps: t, cache: Mutex::new(None) },
    )
}

/// `(B, T, GH)` of projections given as `[B, T, GH]`, or as `[B·T, GH]` rows (batch-major, what a dense layer over
/// the flattened steps returns) with `B` from the `[B, 2, H]` state.
fn seq_dims(xp: &Tensor, state: &Tensor) -> Result<(usize, usize, usize)> {
    match (xp.dims(), state.dims()) {
        (&[b, t, gh], _) => Ok((b, t, gh)),
        (&[rows, gh], &[b, ..]) if b > 0 && rows % b == 0 => Ok((b, rows / b, gh)),
        (d, s) => candle_core::bail!(
            "lstm_sequence: projections must be [B, T, GH] or [B·T, GH] rows for a [B, 2, H] state; got {d:?} and a \
             state of {s:?}"
        ),
    }
}

/// What the forward pass keeps for the backward pass, batch-major like the op's input and output.
#[derive(Debug)]
struct Cache {
    /// The gates after their non-linearities, `[B, T, GH]`.
    acts: Vec<f32>,
    /// `c_0 … c_T`, `[B, T + 1, H]`.
    cells: Vec<f32>,
    /// `h_0 … h_{T−1}`, `[B, T, H]`: each step's recurrent input.
    h_in: Vec<f32>,
}

#[derive(Debug)]
struct LstmSeq {
    /// Four gates with the forget gate; three (i, g, o) for the 1997 cell.
    forget: bool,
    /// T, the time steps (the projections may come as [B·T, GH] rows, which do not say it).
    steps: usize,
    cache: Mutex<Option<Cache>>,
}

/// One example's cell at one step: `a` holds the pre-activations `[a_i, a_f, a_g, a_o]` and receives the gates
/// `[i, f, g, o]`; writes `c_t` and `h_t`. Straight-line code over `j`, so it vectorizes where inlined.
#[inline(always)]
fn cell_fwd<const FMA: bool>(a: &mut [f32], c_prev: &[f32], c_next: &mut [f32], h_out: &mut [f32]) {
    let h = c_prev.len();
    // Slices of exactly h elements, so the loop below has no bounds checks.
    let (ai, rest) = a[..4 * h].split_at_mut(h);
    let (af, rest) = rest.split_at_mut(h);
    let (ag, ao) = rest.split_at_mut(h);
    let (c_next, h_out) = (&mut c_next[..h], &mut h_out[..h]);
    for j in 0..h {
        let (i, f, g, o) = (sigmoid::<FMA>(ai[j]), sigmoid::<FMA>(af[j]), tanh::<FMA>(ag[j]), sigmoid::<FMA>(ao[j]));
        (ai[j], af[j], ag[j], ao[j]) = (i, f, g, o);
        let c = f * c_prev[j] + i * g;
        c_next[j] = c;
        h_out[j] = o * tanh::<FMA>(c);
    }
}

/// [`cell_fwd`] for the 1997 cell: `a` holds `[a_i, a_g, a_o]`, and the cell adds `i ⊙ g` to `c_{t−1}` with
/// no gate on the old value (the constant error carousel).
#[inline(always)]
fn cell_fwd_cec<const FMA: bool>(a: &mut [f32], c_prev: &[f32], c_next: &mut [f32], h_out: &mut [f32]) {
    let h = c_prev.len();
    let (ai, rest) = a[..3 * h].split_at_mut(h);
    let (ag, ao) = rest.split_at_mut(h);
    let (c_next, h_out) = (&mut c_next[..h], &mut h_out[..h]);
    for j in 0..h {
        let (i, g, o) = (sigmoid::<FMA>(ai[j]), tanh::<FMA>(ag[j]), sigmoid::<FMA>(ao[j]));
        (ai[j], ag[j], ao[j]) = (i, g, o);
        let c = c_prev[j] + i * g;
        c_next[j] = c;
        h_out[j] = o * tanh::<FMA>(c);
    }
}

/// One example's slices for the cell backward at one step.
struct CellBwd<'a> {
    /// The gates after their activations, `[4H]`.
    a: &'a [f32],
    /// `c_{t−1}` and `c_t`.
    c_prev: &'a [f32],
    c: &'a [f32],
    /// The gradient reaching `h_t` from the output and from the next step.
    dh_out: &'a [f32],
    dh_next: &'a [f32],
    /// The gradient reaching `c_t`, replaced by the one for `c_{t−1}`.
    dc: &'a mut [f32],
    /// Written: the pre-activations' gradient, `[4H]`.
    da: &'a mut [f32],
}

/// One example's cell backward at one step (module docs): from the gates, the cells and the gradients reaching
/// `h_t` and `c_t`, writes the pre-activations' gradient and the one reaching `c_{t−1}` (see [`CellBwd`]).
#[inline(always)]
fn cell_bwd<const FMA: bool>(s: CellBwd<'_>) {
    let CellBwd { a, c_prev, c, dh_out, dh_next, dc, da } = s;
    let h = c.len();
    let (ai, rest) = a[..4 * h].split_at(h);
    let (af, rest) = rest.split_at(h);
    let (ag, ao) = rest.split_at(h);
    let (dai, rest) = da[..4 * h].split_at_mut(h);
    let (daf, rest) = rest.split_at_mut(h);
    let (dag, dao) = rest.split_at_mut(h);
    let (c_prev, dh_out, dh_next, dc) = (&c_prev[..h], &dh_out[..h], &dh_next[..h], &mut dc[..h]);
    for j in 0..h {
        let (i, f, g, o) = (ai[j], af[j], ag[j], ao[j]);
        let dh = dh_out[j] + dh_next[j];
        let tc = tanh::<FMA>(c[j]);
        let dcj = dc[j] + dh * o * (1.0 - tc * tc);
        dai[j] = dcj * g * i * (1.0 - i);
        daf[j] = dcj * c_prev[j] * f * (1.0 - f);
        dag[j] = dcj * i * (1.0 - g * g);
        dao[j] = dh * tc * o * (1.0 - o);
        dc[j] = dcj * f;
    }
}

/// [`cell_bwd`] for the 1997 cell: `∂c_{t−1} = ∂c_t` (the carousel passes the error back unchanged).
#[inline(always)]
fn cell_bwd_cec<const FMA: bool>(s: CellBwd<'_>) {
    let CellBwd { a, c_prev: _, c, dh_out, dh_next, dc, da } = s;
    let h = c.len();
    let (ai, rest) = a[..3 * h].split_at(h);
    let (ag, ao) = rest.split_at(h);
    let (dai, rest) = da[..3 * h].split_at_mut(h);
    let (dag, dao) = rest.split_at_mut(h);
    let (dh_out, dh_next, dc) = (&dh_out[..h], &dh_next[..h], &mut dc[..h]);
    for j in 0..h {
        let (i, g, o) = (ai[j], ag[j], ao[j]);
        let dh = dh_out[j] + dh_next[j];
        let tc = tanh::<FMA>(c[j]);
        let dcj = dc[j] + dh * o * (1.0 - tc * tc);
        dai[j] = dcj * g * i * (1.0 - i);
        dag[j] = dcj * i * (1.0 - g * g);
        dao[j] = dh * tc * o * (1.0 - o);
        dc[j] = dcj;
    }
}

/// [`cell_fwd`] (or, without the forget gate, [`cell_fwd_cec`]) compiled for `simd`.
fn cell_fwd_on(simd: Simd, forget: bool, a: &mut [f32], c_prev: &[f32], c_next: &mut [f32], h_out: &mut [f32]) {
    if forget {
        on_simd!(simd, cell_fwd, (a: &mut [f32], c_prev: &[f32], c_next: &mut [f32], h_out: &mut [f32]))
    } else {
        on_simd!(simd, cell_fwd_cec, (a: &mut [f32], c_prev: &[f32], c_next: &mut [f32], h_out: &mut [f32]))
    }
}

/// [`cell_bwd`] (or [`cell_bwd_cec`]) compiled for `simd`.
fn cell_bwd_on(simd: Simd, forget: bool, s: CellBwd<'_>) {
    if forget {
        on_simd!(simd, cell_bwd, (s: CellBwd<'_>))
    } else {
        on_simd!(simd, cell_bwd_cec, (s: CellBwd<'_>))
    }
}

/// The poisoned-lock error.
fn poisoned<T>(_: T) -> candle_core::Error {
    candle_core::Error::Msg("lstm_sequence: poisoned lock".into())
}

impl CustomOp3 for LstmSeq {
    fn name(&self) -> &'static str {
        "dlhist-lstm-sequence"
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
        let (xp, w, s0) = (slice_f32(xs, xl)?, slice_f32(ws, wl)?, slice_f32(ss, sl)?);
        let (t, gh) = (self.steps, xl.dims()[xl.dims().len() - 1]);
        let b = xl.shape().elem_count() / (t * gh);
        let (forget, h) = (self.forget, wl.dims()[1]);
        let simd = Simd::detect();
        // The gates are computed in place over a copy of the projections: batch-major like them, so the copy is
        // one memcpy and each step's rows are every T-th row (a strided operand for gemm).
        let mut acts = xp.to_vec();
        let mut cells = vec![0f32; b * (t + 1) * h];
        let mut h_in = vec![0f32; b * t * h];
        // The starting state: h_0 is step 0's recurrent input, c_0 the cell before step 0.
        let zero_start = s0.iter().all(|&v| v == 0.0);
        for n in 0..b {
            h_in[n * t * h..][..h].copy_from_slice(&s0[n * 2 * h..][..h]);
            cells[n * (t + 1) * h..][..h].copy_from_slice(&s0[(n * 2 + 1) * h..][..h]);
        }
        let mut out = vec![0f32; b * (t + 1) * h];
        let ptrs = [acts.as_mut_ptr(), cells.as_mut_ptr(), h_in.as_mut_ptr(), out.as_mut_ptr()].map(SharedMut);
        // W_hhᵀ stored row-major [H, GH]: gemm (which computes our row-major products as their transposes) then
        // reads it as a column-major left operand in place, where W_hh itself would be packed again at every
        // step (about 7% of a one-thread training step).
        let mut w_t = vec![0f32; h * gh];
        for (j, wr) in w.chunks_exact(h.max(1)).enumerate().take(gh) {
            for (k, &v) in wr.iter().enumerate() {
                w_t[k * gh + j] = v;
            }
        }
        let wp = w_t.as_ptr() as usize;
        // The recurrence couples the steps, not the examples: each thread runs the whole sequence for its own
        // block of examples (one dispatch per sequence rather than one per step).
        par_chunks(b, b.div_ceil(super::threads()), |rows| {
            // SAFETY: this block reads and writes rows r0..r0+nb (examples) of acts, cells, h_in and out only;
            // no other block touches them. Every index below stays inside those examples' rows.
            let row =
                |p: SharedMut, at: usize, len: usize| unsafe { std::slice::from_raw_parts_mut(p.get().add(at), len) };
            let (r0, nb) = (rows.start, rows.len());
            for s in 0..t {
                // From a zero state, step 0 has no recurrent term to add.
                if (s > 0 || !zero_start) && h > 0 {
                    // a_t += h_{t−1} W_hhᵀ for this block's examples: rows T·GH (a) and T·H (h) apart.
                    // SAFETY: rows (n, s) of acts and h_in for n in the block, within the vectors (b·t rows);
                    // w_t is [H, GH].
                    unsafe {
                        gemm_raw(
                            (nb, gh, h),
                            ptrs[0].get().add((r0 * t + s) * gh),
                            (t * gh) as isize,
                            ptrs[2].get().add((r0 * t + s) * h),
                            ((t * h) as isize, 1),
                            wp as *const f32,
                            (gh as isize, 1),
                            true,
                        )
                    }
                }
                for n in rows.clone() {
                    let a = row(ptrs[0], (n * t + s) * gh, gh);
                    let c_prev = row(ptrs[1], (n * (t + 1) + s) * h, h);
                    let c_next = row(ptrs[1], (n * (t + 1) + s + 1) * h, h);
                    let h_out = row(ptrs[3], (n * (t + 1) + s) * h, h);
                    cell_fwd_on(simd, forget, a, c_prev, c_next, h_out);
                    if s + 1 < t {
                        row(ptrs[2], (n * t + s + 1) * h, h).copy_from_slice(h_out);
                    } else {
                        // Row T of the output: the final cell.
                        row(ptrs[3], (n * (t + 1) + t) * h, h).copy_from_slice(c_next);
                    }
                }
            }
        });
        *self.cache.lock().map_err(poisoned)? = Some(Cache { acts, cells, h_in });
        Ok((CpuStorage::F32(out), Shape::from((b, t + 1, h))))
    }

    fn bwd(
        &self,
        xp: &Tensor,
        w: &Tensor,
        s0: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, gh) = seq_dims(xp, s0)?;
        let (forget, h) = (self.forget, w.dims()[1]);
        let grad = grad.contiguous()?;
        let cache = self.cache.lock().map_err(poisoned)?;
        let Some(Cache { acts, cells, h_in }) = cache.as_ref() else {
            candle_core::bail!("lstm_sequence: backward before forward")
        };
        let simd = Simd::detect();
        // The starting state's gradient is wanted only when it is part of a graph (not a detached or zero start).
        let want_state = s0.track_op();
        // ∂a for every step, batch-major [B, T, GH]: the projections' gradient as it is.
        let mut da = vec![0f32; b * t * gh];
        let dap = SharedMut(da.as_mut_ptr());
        let mut gw = vec![0f32; gh * h];
        // ∂h_0 in row 0 and ∂c_0 in row 1 of each example.
        let mut ds0 = vec![0f32; b * 2 * h];
        let ds0p = SharedMut(ds0.as_mut_ptr());
        with_f32(w, |w| {
            with_f32(&grad, |g| {
                // Examples are independent here too: each block runs back through time on its own.
                par_chunks(b, b.div_ceil(super::threads()), |rows| {
                    let (r0, nb) = (rows.start, rows.len());
                    let mut dh_next = vec![0f32; nb * h];
                    // The final cell's gradient enters at step T.
                    let mut dc: Vec<f32> =
                        rows.clone().flat_map(|n| &g[(n * (t + 1) + t) * h..][..h]).copied().collect();
                    for s in (0..t).rev() {
                        for (k, n) in rows.clone().enumerate() {
                            // SAFETY: example n's row of step s in da; only this block writes it.
                            let das = unsafe { std::slice::from_raw_parts_mut(dap.get().add((n * t + s) * gh), gh) };
                            let step = CellBwd {
                                a: &acts[(n * t + s) * gh..][..gh],
                                c_prev: &cells[(n * (t + 1) + s) * h..][..h],
                                c: &cells[(n * (t + 1) + s + 1) * h..][..h],
                                dh_out: &g[(n * (t + 1) + s) * h..][..h],
                                dh_next: &dh_next[k * h..][..h],
                                dc: &mut dc[k * h..][..h],
                                da: das,
                            };
                            cell_bwd_on(simd, forget, step);
                        }
                        // ∂h_{t−1} = ∂a_t W_hh; at step 0 that is the starting state's gradient, if wanted.
                        if (s > 0 || want_state) && h > 0 {
                            // SAFETY: reads rows (n, s) of da for this block's n (written above by this block),
                            // T·GH apart; w is [GH, H]; writes this block's own dh_next.
                            unsafe {
                                gemm_raw(
                                    (nb, h, gh),
                                    dh_next.as_mut_ptr(),
                                    h as isize,
                                    dap.get().add((r0 * t + s) * gh),
                                    ((t * gh) as isize, 1),
                                    w.as_ptr(),
                                    (h as isize, 1),
                                    false,
                                )
                            }
                        }
                    }
                    if want_state {
                        for (k, n) in rows.clone().enumerate() {
                            // SAFETY: example n's two rows of ds0; only this block writes them.
                            let d = unsafe { std::slice::from_raw_parts_mut(ds0p.get().add(n * 2 * h), 2 * h) };
                            d[..h].copy_from_slice(&dh_next[k * h..][..h]);
                            d[h..].copy_from_slice(&dc[k * h..][..h]);
                        }
                    }
                });
                // ∂W_hh = Σ_t ∂a_tᵀ h_{t−1}: one product with k = B·T (row 0 of each example holds h_0).
                par_matmul(&mut gw, &da, Stored::Transposed, h_in, Stored::AsIs, (gh, h, b * t), false);
            })
        })??;
        let dev = xp.device();
        let gxp = if xp.track_op() { Some(Tensor::from_vec(da, xp.shape(), dev)?) } else { None };
        let gs0 = if want_state { Some(Tensor::from_vec(ds0, (b, 2, h), dev)?) } else { None };
        Ok((gxp, Some(Tensor::from_vec(gw, (gh, h), dev)?), gs0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Projections as [B·T, GH] rows give the bits of the same projections as [B, T, GH], values and gradients
    /// (the gradient in the shape they came in); a row count that is not a multiple of B is refused.
    #[test]
    fn row_form_is_the_three_dimensional_form() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        let (b, t, h) = (3, 5, 4);
        let mut rng = crate::rng::Rng::new(6);
        let mut draw =
            |dims: &[usize]| candle_core::Var::from_vec(rng.normal_vec(dims.iter().product(), 0.0, 1.0), dims, &dev);
        let (xp, w, s0) = (draw(&[b, t, 4 * h])?, draw(&[4 * h, h])?, draw(&[b, 2, h])?);
        let cube = lstm_sequence_from(xp.as_tensor(), w.as_tensor(), s0.as_tensor(), true)?;
        let rows = lstm_sequence_from(&xp.as_tensor().reshape((b * t, 4 * h))?, w.as_tensor(), s0.as_tensor(), true)?;
        let bits = |x: &Tensor| -> Result<Vec<u32>> {
            Ok(x.flatten_all()?.to_vec1::<f32>()?.iter().map(|v| v.to_bits()).collect())
        };
        assert_eq!(bits(&cube)?, bits(&rows)?);
        let weights = Tensor::from_vec(rng.normal_vec(cube.elem_count(), 0.0, 1.0), cube.shape(), &dev)?;
        let (gc, gr) = ((cube * &weights)?.sum_all()?.backward()?, (rows * &weights)?.sum_all()?.backward()?);
        for v in [&xp, &w, &s0] {
            assert_eq!(bits(gc.get(v).unwrap())?, bits(gr.get(v).unwrap())?);
        }
        let bad = lstm_sequence_from(
            &Tensor::zeros((7, 4 * h), candle_core::DType::F32, &dev)?,
            w.as_tensor(),
            s0.as_tensor(),
            true,
        );
        assert!(bad.unwrap_err().to_string().contains("[B·T, GH]"));
        Ok(())
    }

    #[test]
    fn cell_kernels_agree_on_every_instruction_set() {
        // The op test runs the level this CPU picks; the others (the portable one included) must agree with it.
        let h = 37;
        let v = |seed: u64, n: usize| -> Vec<f32> { crate::rng::Rng::new(seed).normal_vec(n, 0.0, 3.0) };
        let (a0, cp, dho, dhn, dc0) = (v(1, 4 * h), v(2, h), v(3, h), v(4, h), v(5, h));
        let run = |simd: Simd, forget: bool| {
            let (mut a, mut c, mut hs) = (a0.clone(), vec![0f32; h], vec![0f32; h]);
            cell_fwd_on(simd, forget, &mut a, &cp, &mut c, &mut hs);
            let (mut dc, mut da) = (dc0.clone(), vec![0f32; 4 * h]);
            let step = CellBwd { a: &a, c_prev: &cp, c: &c, dh_out: &dho, dh_next: &dhn, dc: &mut dc, da: &mut da };
            cell_bwd_on(simd, forget, step);
            [a, c, hs, dc, da].concat()
        };
        for forget in [true, false] {
            let want = run(Simd::Generic, forget);
            for simd in Simd::available() {
                for (x, y) in run(simd, forget).iter().zip(&want) {
                    assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{simd:?} forget {forget}: {x} vs {y}");
                }
            }
        }
    }
}
