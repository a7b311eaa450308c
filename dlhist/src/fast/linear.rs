//! A fully connected layer with its bias and activation fused: `y = act(x Wᵀ + b)`.
//!
//! candle computes this as a matrix product, a broadcast add and an activation, three tensors written and read
//! back, and in the backward pass a comparison, a multiplication and a broadcast sum besides the two products.
//! Here the bias and the activation are applied while the product's output is in cache, and the backward pass
//! is
//!
//! ```text
//! G = ∂L/∂y ⊙ act'(y)       ∂L/∂b = 1ᵀ G       ∂L/∂W = Gᵀ x       ∂L/∂x = G W
//! ```
//!
//! skipping `∂L/∂x` when `x` is data (the first layer's input), a third of the first layer's backward work.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

use super::gemm::{par_matmul_new, Stored};
use super::vmath::{self, Simd};
use super::{cpu_f32, par_chunks, rows_and_width, slice_f32, with_f32, Act, SharedMut, Uninit};
use crate::activation::Activation;

/// `act(x Wᵀ + b)` for `x [.., in]`, `w [out, in]` (candle-nn's and PyTorch's layout), `b [out]`: what
/// `candle_nn::Linear` followed by `act` computes.
///
/// f32 tensors on the CPU only (see [`super::applies`]); [`crate::layers::Dense`] runs the composition elsewhere.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::fast::linear;
/// use dlhist::layers::Activation;
/// let dev = Device::Cpu;
/// let x = Tensor::new(&[[1f32, 2.], [3., 4.]], &dev)?;
/// let w = Tensor::new(&[[1f32, -1.], [0.5, 0.5]], &dev)?;
/// let b = Tensor::new(&[0f32, -2.], &dev)?;
/// // x Wᵀ + b = [[-1, -0.5], [-1, 1.5]], then ReLU.
/// assert_eq!(linear(&x, &w, &b, Some(Activation::Relu))?.to_vec2::<f32>()?, vec![vec![0., 0.], vec![0., 1.5]]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, act: Option<Activation>) -> Result<Tensor> {
    let (out, inp) = w.dims2()?;
    if x.dims().last() != Some(&inp) || b.dims() != [out] {
        candle_core::bail!("linear: input {:?}, weight {:?}, bias {:?} do not fit", x.dims(), w.dims(), b.dims())
    }
    if !cpu_f32(&[x, w, b]) {
        return Err(super::unsupported("linear", &[x, w, b]));
    }
    // ReLU, tanh and GELU run inside the op; sigmoid and ELU after it, as their own candle op. The op takes x of
    // any rank as its rows and returns y in the same leading shape: reshapes to and from [rows, in] around it
    // would each cost the backward pass a zero-filled accumulator and an add over the whole tensor (candle's
    // GradStore), for every dense layer of a transformer.
    let (epilogue, rest) = Act::split(act, true);
    let op = LinearAct { act: epilogue, pre: Mutex::new(vec![]) };
    let y = x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, op)?;
    crate::activation::apply(rest, y)
}

#[derive(Debug)]
struct LinearAct {
    act: Act,
    /// GELU only: the pre-activation `x Wᵀ + b`, for the backward pass.
    pre: Mutex<Vec<f32>>,
}

impl CustomOp3 for LinearAct {
    fn name(&self) -> &'static str {
        "dlhist-linear-act"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (slice_f32(xs, xl)?, slice_f32(ws, wl)?, slice_f32(bs, bl)?);
        let (m, k) = rows_and_width(xl.dims()).expect("checked in linear: rank >= 1");
        let n = wl.dims()[0];
        let mut y = par_matmul_new(x, Stored::AsIs, w, Stored::Transposed, (m, n, k));
        let act = self.act;
        let simd = Simd::detect();
        // GELU's backward needs the pre-activation x Wᵀ + b: kept only for it.
        // Not zeroed: gelu_bias_fwd writes every element, and zeroing is a serial memset on the calling thread.
        let mut pre = Uninit::<f32>::new(if act == Act::Gelu { m * n } else { 0 });
        let (yp, pw) = (SharedMut(y.as_mut_ptr()), pre.writer());
        par_chunks(m, (16384 / n.max(1)).max(1), |rows| {
            // SAFETY: this range of rows is written by this call only.
            let ys = unsafe { std::slice::from_raw_parts_mut(yp.get().add(rows.start * n), rows.len() * n) };
            if act == Act::Gelu {
                // SAFETY: as above, for `pre` (m·n elements, uninitialized until written here).
                let ps = unsafe { pw.block(rows.start * n, rows.len() * n) };
                for (row, prow) in ys.chunks_mut(n).zip(ps.chunks_mut(n)) {
                    vmath::gelu_bias_fwd(simd, row, prow, b);
                }
            } else if act == Act::Tanh {
                for row in ys.chunks_mut(n) {
                    vmath::tanh_bias_fwd(simd, row, b);
                }
            } else {
                for row in ys.chunks_mut(n) {
                    row.iter_mut().zip(b).for_each(|(v, bias)| *v = act.apply(*v + bias));
                }
            }
        });
        if act == Act::Gelu {
            // SAFETY: the loop above wrote all m·n elements (par_chunks covers 0..m).
            let pre = unsafe { pre.assume_init() };
            *self.pre.lock().map_err(|_| candle_core::Error::Msg("linear: poisoned lock".into()))? = pre;
        }
        let mut dims = xl.dims().to_vec();
        *dims.last_mut().expect("checked in linear: rank >= 1") = n;
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, k) = rows_and_width(x.dims()).expect("checked in linear: rank >= 1");
        let n = w.dims()[0];
        let grad = grad.contiguous()?;
        let act = self.act;
        let saved = self.pre.lock().map_err(|_| candle_core::Error::Msg("linear: poisoned lock".into()))?;
        let simd = Simd::detect();
        let gpre: Vec<f32> = with_f32(y, |y| {
            with_f32(&grad, |g| {
                // Not zeroed: every element is written below.
                let mut gp = Uninit::<f32>::new(m * n);
                let gpw = gp.writer();
                par_chunks(m * n, 16384, |r| {
                    // SAFETY: this range is written by this call only.
                    let out = unsafe { gpw.block(r.start, r.len()) };
                    if act == Act::Gelu {
                        // From the saved pre-activation alone: with a vectorized erf, recomputing Φ(x) costs less
                        // than the division y / x did and needs no special case near 0.
                        vmath::gelu_bwd(simd, &saved[r.clone()], &g[r], out);
                    } else {
                        for ((p, yv), gv) in out.iter_mut().zip(&y[r.clone()]).zip(&g[r]) {
                            p.write(act.grad(*yv, *gv));
                        }
                    }
                });
                // SAFETY: par_chunks covered 0..m·n and each branch wrote every element of its range.
                unsafe { gp.assume_init() }
            })
        })??;
        // 1ᵀ G: column sums, row by row so the inner loop runs along memory.
        let mut gb = vec![0f32; n];
        for row in gpre.chunks(n) {
            gb.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        let gw = with_f32(x, |x| par_matmul_new(&gpre, Stored::Transposed, x, Stored::AsIs, (n, k, m)))?;
        let gx = if x.track_op() {
            let gx = with_f32(w, |w| par_matmul_new(&gpre, Stored::AsIs, w, Stored::AsIs, (m, k, n)))?;
            Some(Tensor::from_vec(gx, x.shape(), x.device())?)
        } else {
            None
        };
        let dev = x.device();
        Ok((gx, Some(Tensor::from_vec(gw, (n, k), dev)?), Some(Tensor::from_vec(gb, n, dev)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::{assert_same_values_and_grads, randn, strided};
    use candle_core::Module;
    use candle_core::Var;

    fn check(x: &[usize], out: usize, act: Option<Activation>, non_contiguous: bool) -> Result<()> {
        let inp = *x.last().unwrap();
        let xv = Var::from_tensor(&randn(x, 1))?;
        let wv = Var::from_tensor(&randn(&[out, inp], 2))?;
        let bv = Var::from_tensor(&randn(&[out], 3))?;
        let (xi, wi) = if non_contiguous {
            (strided(xv.as_tensor())?, strided(wv.as_tensor())?)
        } else {
            (xv.as_tensor().clone(), wv.as_tensor().clone())
        };
        let fast = linear(&xi, &wi, &bv, act)?;
        // candle-nn's Linear, then the activation.
        let z = candle_nn::Linear::new(wi.clone(), Some(bv.as_tensor().clone())).forward(&xi)?;
        let plain = crate::activation::apply(act, z)?;
        let what = format!("x {x:?} out {out} {act:?} strided {non_contiguous}");
        assert_same_values_and_grads(&fast, &plain, &[(&xv, "dx"), (&wv, "dw"), (&bv, "db")], &what)
    }

    #[test]
    fn matches_candle_linear_values_and_gradients() -> Result<()> {
        for act in Activation::optional() {
            check(&[7, 5], 3, act, false)?;
            check(&[7, 5], 3, act, true)?;
        }
        check(&[100, 784], 256, Some(Activation::Relu), false)?;
        check(&[3, 4, 33], 17, None, true)?;
        check(&[12, 64, 128], 512, Some(Activation::Gelu), false)?;
        check(&[1, 1], 1, Some(Activation::Tanh), false)?;
        check(&[2, 300], 1, Some(Activation::Relu), true)?;
        Ok(())
    }

    #[test]
    fn data_inputs_get_no_gradient_and_f64_is_refused() -> Result<()> {
        let x = randn(&[4, 3], 1);
        let w = Var::from_tensor(&randn(&[2, 3], 2))?;
        let b = Var::from_tensor(&randn(&[2], 3))?;
        let g = linear(&x, &w, &b, Some(Activation::Relu))?.sum_all()?.backward()?;
        assert!(g.get(&x).is_none() && g.get(&w).is_some());
        let d = candle_core::DType::F64;
        let e = linear(&x.to_dtype(d)?, &w.to_dtype(d)?, &b.to_dtype(d)?, Some(Activation::Relu)).unwrap_err();
        assert!(e.to_string().contains("F64"), "{e}");
        assert!(linear(&x, &randn(&[2, 4], 0), &b, Some(Activation::Relu)).is_err());
        Ok(())
    }
}
