//! Local response normalization across channels (AlexNet, section 3.3) in one pass per image.
//!
//! For `x [N, C, H, W]`, at each position, with the window `W(i) = {j : |i − j| ≤ ⌊n/2⌋, 0 ≤ j < C}` (symmetric:
//! `j ∈ W(i)` exactly when `i ∈ W(j)`):
//!
//! ```text
//! d_i = k + α Σ_{j ∈ W(i)} x_j²        s_i = d_i^{−β}        y_i = x_i s_i
//! ∂L/∂x_j = g_j s_j − 2αβ x_j Σ_{i ∈ W(j)} g_i x_i s_i / d_i
//! ```
//!
//! candle composes the forward from a square, a zero padding of the channel axis, `n` shifted slices added one
//! by one, a power and a division, each writing a full tensor (and a power is a call to `powf` per element);
//! its backward repeats the chain in reverse. Here each image is one sweep forward and two backward (`t_i =
//! g_i x_i s_i / d_i` of every channel, then the window sums of `t`), with `d` and `s` recomputed per plane
//! rather than stored; `β = 3/4` (the paper's) and `β = 1/2` take square roots instead of `powf`.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::{cpu_f32, par_chunks, slice_f32, with_f32, SharedMut};

/// Local response normalization of `x [N, C, H, W]` across `size` adjacent channels (centred, clipped at the
/// edges): `y_i = x_i / (k + α Σ_j x_j²)^β`, the formula of
/// [`crate::layers::LocalResponseNorm`] (which calls this, and runs the formula as candle ops elsewhere).
///
/// f32 tensors on the CPU only (see [`super::applies`]).
///
/// ```
/// use dlhist::prelude::*;
/// let x = Tensor::ones((1, 3, 1, 1), DType::F32, &Device::Cpu)?;
/// let y = dlhist::fast::local_response_norm(&x, 5, 1e-4, 0.75, 2.0)?.flatten_all()?.to_vec1::<f32>()?;
/// // Channel 1 sees all three channels: 1 / (2 + 3e-4)^0.75.
/// assert!((y[1] - (2.0f32 + 3e-4).powf(-0.75)).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn local_response_norm(x: &Tensor, size: usize, alpha: f64, beta: f64, k: f64) -> Result<Tensor> {
    x.dims4().map_err(|_| {
        candle_core::Error::Msg(format!("local_response_norm expects [N, C, H, W]; got {:?}", x.dims()))
    })?;
    if !cpu_f32(&[x]) {
        return Err(super::unsupported("local_response_norm", &[x]));
    }
    if x.elem_count() == 0 {
        return Ok(x.clone());
    }
    let op = Lrn { half: size / 2, alpha: alpha as f32, beta: beta as f32, k: k as f32 };
    x.contiguous()?.apply_op1(op)
}

#[derive(Debug)]
struct Lrn {
    half: usize,
    alpha: f32,
    beta: f32,
    k: f32,
}

impl Lrn {
    /// `d_i = k + α Σ_{j ∈ W(i)} x_j²` of channel `i` of one image `x [C, H·W]`, into `d [H·W]`.
    fn denominators(&self, x: &[f32], i: usize, hw: usize, d: &mut [f32]) {
        let c = x.len() / hw;
        d.fill(0.0);
        // Plane by plane in channel order, as the composition adds them.
        for j in i.saturating_sub(self.half)..=(i + self.half).min(c - 1) {
            d.iter_mut().zip(&x[j * hw..(j + 1) * hw]).for_each(|(a, v)| *a += v * v);
        }
        d.iter_mut().for_each(|a| *a = self.k + self.alpha * *a);
    }

    /// `s = d^{−β}` for every `d > 0`. The exponent is matched once per plane, not per element, so the loops
    /// of square roots vectorize (where `powf` is a library call per element); other exponents call `powf`.
    fn scales(&self, d: &[f32], s: &mut [f32]) {
        if self.beta == 0.75 {
            s.iter_mut().zip(d).for_each(|(s, d)| {
                let r = d.sqrt();
                *s = 1.0 / (r * r.sqrt())
            });
        } else if self.beta == 0.5 {
            s.iter_mut().zip(d).for_each(|(s, d)| *s = 1.0 / d.sqrt());
        } else {
            s.iter_mut().zip(d).for_each(|(s, d)| *s = d.powf(-self.beta));
        }
    }
}

impl CustomOp1 for Lrn {
    fn name(&self) -> &'static str {
        "dlhist-local-response-norm"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice_f32(xs, xl)?;
        let (n, c, h, w) = xl.shape().dims4()?;
        let (hw, chw) = (h * w, c * h * w);
        let mut y = vec![0f32; x.len()];
        let yp = SharedMut(y.as_mut_ptr());
        par_chunks(n, 1, |images| {
            let (mut d, mut s) = (vec![0f32; hw], vec![0f32; hw]);
            for img in images {
                let xn = &x[img * chw..(img + 1) * chw];
                // SAFETY: image img owns y[img·chw .. (img+1)·chw]; no other range writes it.
                let yn = unsafe { std::slice::from_raw_parts_mut(yp.get().add(img * chw), chw) };
                for i in 0..c {
                    self.denominators(xn, i, hw, &mut d);
                    self.scales(&d, &mut s);
                    let range = i * hw..(i + 1) * hw;
                    yn[range.clone()].iter_mut().zip(&xn[range]).zip(&s).for_each(|((y, x), s)| *y = x * s);
                }
            }
        });
        // Nothing is kept for the backward pass: recomputing `d` and `s` there costs less than writing and
        // reading back two more tensors of the input's size (whose fresh pages the kernel must also zero).
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, c, h, w) = x.dims4()?;
        let (hw, chw) = (h * w, c * h * w);
        let grad = grad.contiguous()?;
        let mut gx = vec![0f32; x.elem_count()];
        let gxp = SharedMut(gx.as_mut_ptr());
        let coef = 2.0 * self.alpha * self.beta;
        with_f32(x, |x| {
            with_f32(&grad, |g| {
                par_chunks(n, 1, |images| {
                    // Per image: s of every channel, t_i = g_i x_i s_i / d_i of every channel, a window sum.
                    let (mut d, mut s, mut t, mut acc) =
                        (vec![0f32; hw], vec![0f32; chw], vec![0f32; chw], vec![0f32; hw]);
                    for img in images {
                        let (xn, gn) = (&x[img * chw..(img + 1) * chw], &g[img * chw..(img + 1) * chw]);
                        for i in 0..c {
                            let range = i * hw..(i + 1) * hw;
                            self.denominators(xn, i, hw, &mut d);
                            self.scales(&d, &mut s[range.clone()]);
                            for ((((t, d), s), g), x) in t[range.clone()]
                                .iter_mut()
                                .zip(&d)
                                .zip(&s[range.clone()])
                                .zip(&gn[range.clone()])
                                .zip(&xn[range])
                            {
                                *t = g * x * s / d;
                            }
                        }
                        // SAFETY: image img owns gx[img·chw .. (img+1)·chw]; no other range writes it.
                        let gxn = unsafe { std::slice::from_raw_parts_mut(gxp.get().add(img * chw), chw) };
                        for j in 0..c {
                            acc.fill(0.0);
                            for i in j.saturating_sub(self.half)..=(j + self.half).min(c - 1) {
                                acc.iter_mut().zip(&t[i * hw..(i + 1) * hw]).for_each(|(a, v)| *a += v);
                            }
                            let range = j * hw..(j + 1) * hw;
                            for ((((o, a), g), s), x) in gxn[range.clone()]
                                .iter_mut()
                                .zip(&acc)
                                .zip(&gn[range.clone()])
                                .zip(&s[range.clone()])
                                .zip(&xn[range])
                            {
                                *o = g * s - coef * x * a;
                            }
                        }
                    }
                })
            })
        })??;
        Ok(Some(Tensor::from_vec(gx, x.shape(), x.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn other_dtypes_and_bad_shapes_are_named() {
        let e = local_response_norm(&Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap(), 5, 0.1, 0.75, 2.0)
            .unwrap_err();
        assert!(e.to_string().contains("[2, 3]"), "{e}");
        let e = local_response_norm(&Tensor::zeros((1, 2, 3, 3), DType::F64, &Device::Cpu).unwrap(), 5, 0.1, 0.75, 2.0)
            .unwrap_err();
        assert!(e.to_string().contains("f32") && e.to_string().contains("F64"), "{e}");
    }
}
