//! Bahdanau's additive attention score `e[b, s] = Σ_a v[a] tanh(k[b, s, a] + q[b, a])` as one op.
//!
//! In plain candle the score is a broadcast add, a tanh and a matrix product over a `[B, S, A]` tensor, and the
//! backward pass three more passes over it; a decoder runs it once per output step. candle runs each of those
//! element-wise passes on its worker pool with a barrier per op, and computes tanh with libm: profiled on an
//! RNNsearch training step, the tanh and the barriers' spinning took most of the time. Here the forward pass is
//! one loop per `(b, s)` with the branch-free tanh of `vmath`, and the backward pass recomputes the tanh instead
//! of storing `[B, S, A]` activations.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::vmath::{on_simd, tanh, Simd};
use super::{par_chunks, slice_f32, threads, SharedMut};

/// `e[b, s] = Σ_a v[a] tanh(keys[b, s, a] + query[b, a])`: keys `[B, S, A]`, query `[B, A]`, `v` `[A]`, all f32 on
/// the CPU; returns `[B, S]`, differentiable in all three.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let k = Tensor::new(&[[[0.5f32, -1.0], [0.0, 2.0]]], &dev)?; // [1, 2, 2]
/// let q = Tensor::new(&[[0.25f32, 0.5]], &dev)?;
/// let v = Tensor::new(&[1f32, -2.0], &dev)?;
/// let e = dlhist::fast::additive_scores(&k, &q, &v)?.to_vec2::<f32>()?;
/// let want = 0.75f32.tanh() - 2.0 * (-0.5f32).tanh();
/// assert!((e[0][0] - want).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn additive_scores(keys: &Tensor, query: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (b, s, a) = keys.dims3()?;
    if query.dims() != [b, a] || v.dims() != [a] {
        candle_core::bail!(
            "additive_scores: keys {:?} need a query [{b}, {a}] and v [{a}]; got {:?} and {:?}",
            keys.dims(),
            query.dims(),
            v.dims()
        )
    }
    if s == 0 || b == 0 {
        return Tensor::zeros((b, s), keys.dtype(), keys.device());
    }
    keys.contiguous()?.apply_op3(&query.contiguous()?, &v.contiguous()?, AdditiveScores)
}

struct AdditiveScores;

/// `Σ_i v[i] tanh(k[i] + q[i])` for one `(b, s)`, in 16 independent partial sums so the loop vectorizes.
#[inline(always)]
fn row_score<const FMA: bool>(k: &[f32], q: &[f32], v: &[f32]) -> f32 {
    let a = v.len();
    let (k, q) = (&k[..a], &q[..a]);
    let mut acc = [0f32; 16];
    let full = a / 16 * 16;
    for c in (0..full).step_by(16) {
        for l in 0..16 {
            acc[l] += v[c + l] * tanh::<FMA>(k[c + l] + q[c + l]);
        }
    }
    let mut tail = 0f32;
    for i in full..a {
        tail += v[i] * tanh::<FMA>(k[i] + q[i]);
    }
    acc.iter().sum::<f32>() + tail
}

/// The backward pass of one `(b, s)` with upstream gradient `g`: writes `dk`, adds into `dq` and `dv`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_grad<const FMA: bool>(k: &[f32], q: &[f32], v: &[f32], g: f32, dk: &mut [f32], dq: &mut [f32], dv: &mut [f32]) {
    let a = v.len();
    let (k, q, dk, dq, dv) = (&k[..a], &q[..a], &mut dk[..a], &mut dq[..a], &mut dv[..a]);
    for i in 0..a {
        let t = tanh::<FMA>(k[i] + q[i]);
        let d = g * v[i] * (1.0 - t * t);
        dk[i] = d;
        dq[i] += d;
        dv[i] += g * t;
    }
}

/// The forward loop over the rows `rows` of `b`: `e[b, s] = Σ_a v[a] tanh(k + q)`.
#[inline(always)]
fn scores_rows<const FMA: bool>(
    k: &[f32],
    q: &[f32],
    v: &[f32],
    s: usize,
    rows: std::ops::Range<usize>,
    out: SharedMut,
) {
    let a = v.len();
    for b in rows {
        for j in 0..s {
            let e = row_score::<FMA>(&k[(b * s + j) * a..], &q[b * a..], v);
            // SAFETY: each block of rows writes its own entries b·s..(b+1)·s of out.
            unsafe { *out.get().add(b * s + j) = e };
        }
    }
}

/// [`scores_rows`] compiled for `simd`.
fn scores_rows_on(simd: Simd, k: &[f32], q: &[f32], v: &[f32], s: usize, rows: std::ops::Range<usize>, out: SharedMut) {
    on_simd!(simd, scores_rows, (k: &[f32], q: &[f32], v: &[f32], s: usize, rows: std::ops::Range<usize>, out: SharedMut))
}

/// The gradients of row `n` (all its `s` positions): `dk` `[s, a]`, `dq` and `dv` `[a]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_row<const FMA: bool>(
    k: &[f32],
    q: &[f32],
    v: &[f32],
    g: &[f32],
    dk: &mut [f32],
    dq: &mut [f32],
    dv: &mut [f32],
) {
    let a = v.len();
    for (j, &gj) in g.iter().enumerate() {
        row_grad::<FMA>(&k[j * a..], q, v, gj, &mut dk[j * a..], dq, dv);
    }
}

/// [`grad_row`] compiled for `simd`.
#[allow(clippy::too_many_arguments)]
fn grad_row_on(simd: Simd, k: &[f32], q: &[f32], v: &[f32], g: &[f32], dk: &mut [f32], dq: &mut [f32], dv: &mut [f32]) {
    on_simd!(simd, grad_row, (k: &[f32], q: &[f32], v: &[f32], g: &[f32], dk: &mut [f32], dq: &mut [f32], dv: &mut [f32]))
}

impl CustomOp3 for AdditiveScores {
    fn name(&self) -> &'static str {
        "dlhist-additive-scores"
    }

    fn cpu_fwd(
        &self,
        ks: &CpuStorage,
        kl: &Layout,
        qs: &CpuStorage,
        ql: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (k, q, v) = (slice_f32(ks, kl)?, slice_f32(qs, ql)?, slice_f32(vs, vl)?);
        let (b, s) = (kl.dims()[0], kl.dims()[1]);
        let mut out = vec![0f32; b * s];
        let ptr = SharedMut(out.as_mut_ptr());
        let simd = Simd::detect();
        par_chunks(b, b.div_ceil(threads()), |rows| scores_rows_on(simd, k, q, v, s, rows, ptr));
        Ok((CpuStorage::F32(out), Shape::from((b, s))))
    }

    fn bwd(
        &self,
        keys: &Tensor,
        query: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, s, a) = keys.dims3()?;
        let host = |t: &Tensor| -> Result<Vec<f32>> { t.contiguous()?.flatten_all()?.to_vec1::<f32>() };
        let (k, q, vv, g) = (host(keys)?, host(query)?, host(v)?, host(grad)?);
        // dk[b,s,a] = g[b,s] v[a] (1 − t²); dq[b,a] = Σ_s dk[b,s,a]; dv[a] = Σ_{b,s} g[b,s] t, kept per row b
        // and summed in row order afterwards (the same bits whatever the threads).
        let (mut dk, mut dq, mut dv_rows) = (vec![0f32; b * s * a], vec![0f32; b * a], vec![0f32; b * a]);
        let ptrs = [dk.as_mut_ptr(), dq.as_mut_ptr(), dv_rows.as_mut_ptr()].map(SharedMut);
        let simd = Simd::detect();
        par_chunks(b, b.div_ceil(threads()), |rows| {
            for n in rows {
                // SAFETY: row n's ranges of dk, dq and dv_rows belong to this block alone.
                let (dk_n, dq_n, dv_n) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(ptrs[0].get().add(n * s * a), s * a),
                        std::slice::from_raw_parts_mut(ptrs[1].get().add(n * a), a),
                        std::slice::from_raw_parts_mut(ptrs[2].get().add(n * a), a),
                    )
                };
                grad_row_on(simd, &k[n * s * a..][..s * a], &q[n * a..][..a], &vv, &g[n * s..][..s], dk_n, dq_n, dv_n);
            }
        });
        let mut dv = vec![0f32; a];
        for row in dv_rows.chunks_exact(a) {
            for (x, y) in dv.iter_mut().zip(row) {
                *x += y;
            }
        }
        let dev = keys.device();
        Ok((
            Some(Tensor::from_vec(dk, (b, s, a), dev)?),
            Some(Tensor::from_vec(dq, (b, a), dev)?),
            Some(Tensor::from_vec(dv, a, dev)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::{Device, Var};

    #[test]
    fn values_and_gradients_match_the_plain_composition() -> Result<()> {
        let dev = Device::Cpu;
        let mut rng = Rng::new(0);
        let k = Var::from_tensor(&rng.normal_tensor((3, 5, 4), 0.0, 1.0, &dev).unwrap())?;
        let q = Var::from_tensor(&rng.normal_tensor((3, 4), 0.0, 1.0, &dev).unwrap())?;
        let v = Var::from_tensor(&rng.normal_tensor(4, 0.0, 1.0, &dev).unwrap())?;
        let w = rng.normal_tensor((3, 5), 0.0, 1.0, &dev).unwrap();
        let fused = additive_scores(&k, &q, &v)?;
        let plain = k.broadcast_add(&q.unsqueeze(1)?)?.tanh()?.broadcast_mul(&v)?.sum(2)?;
        let diff = |a: &Tensor, b: &Tensor| -> Result<f32> { (a - b)?.abs()?.max_all()?.to_scalar::<f32>() };
        assert!(diff(&fused, &plain)? < 1e-5);
        let (gf, gp) = ((fused * &w)?.sum_all()?.backward()?, (plain * &w)?.sum_all()?.backward()?);
        for x in [&k, &q, &v] {
            assert!(diff(gf.get(x).unwrap(), gp.get(x).unwrap())? < 1e-5);
        }
        assert!(additive_scores(&k, &v, &v).unwrap_err().to_string().contains("[3, 4]"));
        Ok(())
    }
}
