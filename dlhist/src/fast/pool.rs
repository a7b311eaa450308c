//! Max pooling with any window, stride and padding, with a correct backward pass (the layer is
//! [`crate::layers::MaxPool2d`]).
//!
//! Max pooling keeps the largest activation of each `k×k` window, the windows `s` pixels apart:
//!
//! ```text
//! y[n, c, i, j] = max_{0≤u,v<k} x[n, c, s·i + u − p, s·j + v − p],      H_out = ⌊(H + 2p − k)/s⌋ + 1
//! ∂L/∂x[n, c, p, q] = Σ_{(i,j): (p,q) is the argmax of window (i,j)} ∂L/∂y[n, c, i, j]
//! ```
//!
//! candle 0.11's own max-pool has no backward pass when `k ≠ s`, and when `H` is not a multiple of `s` its
//! backward routes gradients through the wrong windows (it upsamples the pooled map to the input size, which
//! misaligns the rows and columns the pooling dropped). [`max_pool2d`] is a candle custom op whose backward
//! sends each window's gradient to that window's argmax (the first maximum on ties, as PyTorch does), for any
//! `k`, `s` and input size. Padding `p` adds positions that never win (as if they held −∞).
//!
//! Unlike the other kernels it is the only correct implementation there is for overlapping windows, so it
//! serves every float dtype on the CPU, and other devices by a round trip through the CPU.

use super::{filled, Uninit};

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor, WithDType};

/// Max pooling of `x [N, C, H, W]` with window `kernel`, step `stride` and `padding` positions on every side
/// that never win (floor mode).
///
/// ```
/// use dlhist::prelude::*;
/// let x = Tensor::arange(0f32, 25., &Device::Cpu)?.reshape((1, 1, 5, 5))?;
/// // Overlapping 3×3 windows, 2 apart: rows/columns 0-2 and 2-4.
/// let y = dlhist::fast::max_pool2d(&x, 3, 2, 0)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![12., 14., 22., 24.]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let (_, _, h, w) = x
        .dims4()
        .map_err(|_| candle_core::Error::Msg(format!("max_pool2d expects [N, C, H, W]; got {:?}", x.dims())))?;
    if kernel == 0 || stride == 0 || kernel > h + 2 * padding || kernel > w + 2 * padding || padding >= kernel {
        candle_core::bail!(
            "max_pool2d: window {kernel} with stride {stride} and padding {padding} does not fit an input of {h}×{w} \
             (the window must be larger than the padding and fit the padded input)"
        )
    }
    let op = MaxPool { kernel, stride, padding };
    if x.device().is_cpu() {
        x.contiguous()?.apply_op1(op)
    } else {
        // The op is implemented for the CPU; on a GPU the data makes a round trip (autograd follows it).
        x.to_device(&Device::Cpu)?.contiguous()?.apply_op1(op)?.to_device(x.device())
    }
}

#[derive(Debug, Clone, Copy)]
struct MaxPool {
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl MaxPool {
    fn out_dims(&self, dims: &[usize]) -> (usize, usize, usize, usize, usize, usize) {
        let (n, c, h, w) = (dims[0], dims[1], dims[2], dims[3]);
        let out = |side: usize| (side + 2 * self.padding - self.kernel) / self.stride + 1;
        (n, c, h, w, out(h), out(w))
    }

    /// The flat input index (within its plane) of each output's maximum in one `H×W` plane (first one on ties),
    /// passed to `emit` in output order.
    #[inline]
    fn plane_argmax<T: WithDType>(
        &self,
        x: &[T],
        h: usize,
        w: usize,
        oh: usize,
        ow: usize,
        mut emit: impl FnMut(usize),
    ) {
        for i in 0..oh {
            for j in 0..ow {
                // The window clipped to the input: padded positions never win.
                let (r0, c0) =
                    ((i * self.stride).saturating_sub(self.padding), (j * self.stride).saturating_sub(self.padding));
                let r1 = (i * self.stride + self.kernel - self.padding).min(h);
                let c1 = (j * self.stride + self.kernel - self.padding).min(w);
                let mut best = r0 * w + c0;
                let mut best_val = x[best];
                for r in r0..r1 {
                    let row = r * w;
                    for (q, &val) in x[row + c0..row + c1].iter().enumerate() {
                        // Strictly greater keeps the first maximum; NaN never wins, as in a plain max.
                        if val > best_val {
                            best = row + c0 + q;
                            best_val = val;
                        }
                    }
                }
                emit(best);
            }
        }
    }

    /// The pooled values, plane by plane over candle's worker pool.
    fn forward_slice<T: WithDType>(&self, x: &[T], dims: &[usize]) -> Vec<T> {
        let (n, c, h, w, oh, ow) = self.out_dims(dims);
        // Not zeroed first (a pass over the whole output on one thread): plane_argmax emits once per output.
        let mut out = Uninit::<T>::new(n * c * oh * ow);
        let out_w = out.writer();
        super::par_chunks(n * c, 8, |planes| {
            for p in planes {
                // SAFETY: plane p is written by this iteration only.
                let o = unsafe { out_w.block(p * oh * ow, oh * ow) };
                let plane = &x[p * h * w..(p + 1) * h * w];
                let mut k = 0;
                self.plane_argmax(plane, h, w, oh, ow, |best| {
                    o[k].write(plane[best]);
                    k += 1;
                });
            }
        });
        // SAFETY: plane_argmax calls `emit` once per output (its loops run over all oh × ow), so every one of the
        // n·c planes had all oh·ow elements written.
        unsafe { out.assume_init() }
    }

    /// The gradient of the input: each window's output gradient added at its argmax (summed in f64 where
    /// windows overlap, then rounded once).
    fn backward_slice<T: WithDType>(&self, x: &[T], g: &[T], dims: &[usize]) -> Vec<T> {
        let (_, _, h, w, oh, ow) = self.out_dims(dims);
        // Zeroed plane by plane by the thread that then scatters into it (the zeroing is spread over the workers
        // and each plane is still in cache for the scatter), rather than all at once before the loop.
        let planes_n = x.len() / (h * w).max(1);
        let mut gx = Uninit::<T>::new(planes_n * h * w);
        let overlap = self.stride < self.kernel;
        let gxw = gx.writer();
        super::par_chunks(planes_n, 8, |planes| {
            for p in planes {
                // SAFETY: plane p is written by this iteration only.
                let gp = filled(unsafe { gxw.block(p * h * w, h * w) }, T::from_f64(0.0));
                let (plane, gy) = (&x[p * h * w..(p + 1) * h * w], &g[p * oh * ow..(p + 1) * oh * ow]);
                let mut k = 0;
                if overlap {
                    let mut acc = vec![0f64; h * w];
                    self.plane_argmax(plane, h, w, oh, ow, |best| {
                        acc[best] += gy[k].to_f64();
                        k += 1;
                    });
                    gp.iter_mut().zip(acc).for_each(|(d, a)| *d = T::from_f64(a));
                } else {
                    // Each input is the argmax of at most one window: a plain store.
                    self.plane_argmax(plane, h, w, oh, ow, |best| {
                        gp[best] = gy[k];
                        k += 1;
                    });
                }
            }
        });
        // SAFETY: every one of the planes_n planes was zeroed above, and planes_n·h·w = x.len().
        unsafe { gx.assume_init() }
    }
}

/// The max-pool backward as an op of its own, so it runs on the input's and gradient's storage directly.
#[derive(Debug, Clone, Copy)]
struct MaxPoolBackward(MaxPool);

impl candle_core::CustomOp2 for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "dlhist-max-pool2d-backward"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = xl.shape().dims();
        let (Some((x0, x1)), Some((g0, g1))) = (xl.contiguous_offsets(), gl.contiguous_offsets()) else {
            candle_core::bail!("dlhist-max-pool2d-backward expects contiguous inputs")
        };
        let out = match (xs, gs) {
            (CpuStorage::F32(x), CpuStorage::F32(g)) => {
                CpuStorage::F32(self.0.backward_slice(&x[x0..x1], &g[g0..g1], dims))
            }
            (CpuStorage::F64(x), CpuStorage::F64(g)) => {
                CpuStorage::F64(self.0.backward_slice(&x[x0..x1], &g[g0..g1], dims))
            }
            (CpuStorage::BF16(x), CpuStorage::BF16(g)) => {
                CpuStorage::BF16(self.0.backward_slice(&x[x0..x1], &g[g0..g1], dims))
            }
            (CpuStorage::F16(x), CpuStorage::F16(g)) => {
                CpuStorage::F16(self.0.backward_slice(&x[x0..x1], &g[g0..g1], dims))
            }
            _ => candle_core::bail!("max_pool2d backward supports matching float dtypes only"),
        };
        Ok((out, xl.shape().clone()))
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "dlhist-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = layout.shape().dims();
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("dlhist-max-pool2d expects a contiguous input")
        };
        let (n, c, _, _, oh, ow) = self.out_dims(dims);
        let shape = Shape::from((n, c, oh, ow));
        let out = match storage {
            CpuStorage::F32(v) => CpuStorage::F32(self.forward_slice(&v[start..end], dims)),
            CpuStorage::F64(v) => CpuStorage::F64(self.forward_slice(&v[start..end], dims)),
            CpuStorage::BF16(v) => CpuStorage::BF16(self.forward_slice(&v[start..end], dims)),
            CpuStorage::F16(v) => CpuStorage::F16(self.forward_slice(&v[start..end], dims)),
            _ => candle_core::bail!("max_pool2d supports float tensors (f32, f64, bf16, f16) only"),
        };
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        // Recompute the argmax from the input (cheaper to keep than a saved index tensor), then scatter.
        let g = grad_res.to_device(arg.device())?.to_dtype(arg.dtype())?.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(&g, &MaxPoolBackward(*self))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Result;
    use candle_core::{DType, Var};

    fn rand(shape: &[usize], seed: u64) -> Result<Tensor> {
        crate::rng::Rng::new(seed).normal_tensor(shape, 0.0, 1.0, &Device::Cpu).map_err(candle_core::Error::wrap)
    }

    /// The definition, loop by loop, in f64.
    fn naive(x: &Tensor, k: usize, s: usize, pad: usize) -> Result<Vec<f64>> {
        let (n, c, h, w) = x.dims4()?;
        let v = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let (oh, ow) = ((h + 2 * pad - k) / s + 1, (w + 2 * pad - k) / s + 1);
        let mut out = vec![];
        for p in 0..n * c {
            for i in 0..oh {
                for j in 0..ow {
                    let mut m = f64::NEG_INFINITY;
                    for u in 0..k {
                        for t in 0..k {
                            let (r, q) = ((i * s + u) as isize - pad as isize, (j * s + t) as isize - pad as isize);
                            if r >= 0 && q >= 0 && (r as usize) < h && (q as usize) < w {
                                m = m.max(v[p * h * w + r as usize * w + q as usize]);
                            }
                        }
                    }
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn forward_matches_the_definition_and_candle() -> Result<()> {
        for (shape, k, s) in [([2, 3, 7, 9], 3, 2), ([1, 1, 5, 5], 2, 2), ([3, 2, 8, 8], 2, 2), ([1, 2, 6, 4], 3, 1)] {
            let x = rand(&shape, 1)?;
            let y = max_pool2d(&x, k, s, 0)?;
            let got: Vec<f64> = y.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
            assert_eq!(got, naive(&x, k, s, 0)?, "{shape:?} k={k} s={s}");
            let theirs = x.max_pool2d_with_stride(k, s)?;
            let diff = (y - theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(diff, 0.0);
        }
        Ok(())
    }

    #[test]
    fn f32_values_and_gradients_match_candle_ops_for_non_overlapping_windows_and_strided_input() -> Result<()> {
        // The composition: candle's max_pool2d for the values; for the gradient, the window's gradient
        // upsampled and masked to the maximum (candle's own max-pool backward multiplies it by 1/k² besides).
        for (shape, k) in [([3, 4, 28, 28], 2), ([2, 3, 6, 9], 3), ([1, 1, 2, 2], 2)] {
            let var = Var::from_tensor(&rand(&shape, 5)?)?;
            // Stored transposed: the op must handle a non-contiguous input.
            let x = var.as_tensor().transpose(2, 3)?.contiguous()?.transpose(2, 3)?;
            let ours = max_pool2d(&x, k, k, 0)?;
            let theirs = x.max_pool2d(k)?;
            crate::fast::testing::assert_close(&ours, &theirs, "values")?;
            let r = rand(ours.dims(), 6)?;
            let g1 = (&ours * &r)?.sum_all()?.backward()?;
            let (h, w) = (shape[2], shape[3]);
            let mask = x.eq(&theirs.upsample_nearest2d(h, w)?)?.to_dtype(DType::F32)?;
            let want = (r.upsample_nearest2d(h, w)? * mask)?;
            crate::fast::testing::assert_close(g1.get(&var).unwrap(), &want, "gradients")?;
        }
        Ok(())
    }

    #[test]
    fn padded_pooling_matches_the_definition() -> Result<()> {
        for (shape, k, s, p) in [([2, 3, 28, 28], 3, 2, 1), ([1, 2, 7, 5], 3, 2, 1), ([1, 1, 6, 6], 2, 2, 1)] {
            let x = rand(&shape, 7)?;
            let got: Vec<f64> = max_pool2d(&x, k, s, p)?.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
            assert_eq!(got, naive(&x, k, s, p)?, "{shape:?} k={k} s={s} p={p}");
        }
        Ok(())
    }

    #[test]
    fn gradient_matches_finite_differences_for_overlapping_windows_odd_sizes_and_padding() -> Result<()> {
        // f64 input with distinct values, so the max is unique and the function is differentiable.
        let x0 = rand(&[2, 2, 7, 7], 3)?.to_dtype(DType::F64)?;
        for pad in [0, 1] {
            let out = (7 + 2 * pad - 3) / 2 + 1;
            let weights = rand(&[2, 2, out, out], 4)?.to_dtype(DType::F64)?;
            let loss = |x: &Tensor| -> Result<f64> { (max_pool2d(x, 3, 2, pad)? * &weights)?.sum_all()?.to_scalar() };
            let var = Var::from_tensor(&x0)?;
            let grads = (max_pool2d(var.as_tensor(), 3, 2, pad)? * &weights)?.sum_all()?.backward()?;
            let g: Vec<f64> = grads.get(&var).unwrap().flatten_all()?.to_vec1()?;
            let base: Vec<f64> = x0.flatten_all()?.to_vec1()?;
            let eps = 1e-6;
            for i in 0..base.len() {
                let mut bumped = base.clone();
                bumped[i] += eps;
                let up = loss(&Tensor::from_vec(bumped.clone(), x0.shape(), &Device::Cpu)?)?;
                bumped[i] -= 2.0 * eps;
                let down = loss(&Tensor::from_vec(bumped, x0.shape(), &Device::Cpu)?)?;
                let fd = (up - down) / (2.0 * eps);
                assert!((fd - g[i]).abs() < 1e-6, "pad {pad}, element {i}: finite difference {fd}, backward {}", g[i]);
            }
        }
        Ok(())
    }

    #[test]
    fn ties_send_the_gradient_to_the_first_maximum_and_bad_input_is_named() -> Result<()> {
        let var = Var::new(&[[[[1f32, 1.], [1., 1.]]]], &Device::Cpu)?;
        let g = max_pool2d(var.as_tensor(), 2, 2, 0)?.sum_all()?.backward()?;
        assert_eq!(g.get(&var).unwrap().flatten_all()?.to_vec1::<f32>()?, vec![1., 0., 0., 0.]);
        let e = max_pool2d(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu)?, 2, 2, 0).unwrap_err();
        assert!(e.to_string().contains("[2, 3]"), "{e}");
        let e = max_pool2d(&Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu)?, 3, 2, 0).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        Ok(())
    }
}
