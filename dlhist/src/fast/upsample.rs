//! Nearest-neighbour upsampling by whole factors, with a backward pass that sums each block.
//!
//! ```text
//! y[n, c, i, j] = x[n, c, ⌊i/s_h⌋, ⌊j/s_w⌋]        ∂L/∂x[n, c, p, q] = Σ_{0≤a<s_h, 0≤b<s_w} ∂L/∂y[n, c, s_h·p + a, s_w·q + b]
//! ```
//!
//! candle 0.11's backward pass for `upsample_nearest2d` computes that block sum as a grouped convolution with a
//! kernel of ones, one group per channel, on rayon's thread pool: for the DDPM U-Net of
//! `examples/train_steps.rs` that was about 8% of a training step. Here each block is summed in the
//! convolution's order (row by row, left to right, from zero), so the block sums are the same numbers.
//!
//! It also *replaces* the input's gradient with that block sum instead of adding to it (`*sum_grad = conv_sum`
//! in candle-core 0.11.1's `backprop.rs`), so an input that feeds anything besides one upsampling loses the
//! other gradients: with `y = Σ up(x) + Σ 3x`, candle gives `∂y/∂x = 4` per pixel of a 2× upsampling instead of 7.
//! This op's gradient is added like any other (the test below checks both cases). The fix for candle itself is
//! huggingface/candle pull request 3507, open when this was written.
//!
//! [`upsample_concat`] is the U-Net decoder's `cat([up(x), skip], 1)` as one op: the upsampled planes are written
//! straight into the concatenation, and the backward pass sums the blocks of the first channels and copies the
//! skip's planes out of the concatenation's gradient. Composed, the same thing writes the upsampled tensor and then
//! copies it, and backward copies both halves of the gradient out of the concatenation (candle's `cat` backward
//! is a `narrow` per input) and adds the upsampled half onto a zero-filled tensor before summing its blocks:
//! fusing them made the DDPM U-Net's training step in `examples/train_steps.rs` about 7% faster (2 threads).

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use super::{cpu_f32, par_chunks, slice_f32, with_f32, Uninit};

/// Nearest-neighbour upsampling of `x [N, C, H, W]` to `[N, C, h, w]`, where `h` and `w` are multiples of `H`
/// and `W`: what candle's `Tensor::upsample_nearest2d` computes for whole factors.
///
/// ```
/// use dlhist::prelude::*;
/// let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu)?;
/// let y = dlhist::fast::upsample_nearest2d(&x, 4, 4)?;
/// assert_eq!(y.get(0)?.get(0)?.get(1)?.to_vec1::<f32>()?, vec![1., 1., 2., 2.]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn upsample_nearest2d(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    if !cpu_f32(&[x]) {
        return Err(super::unsupported("upsample_nearest2d", &[x]));
    }
    let (_, _, hi, wi) = x.dims4()?;
    if hi == 0 || wi == 0 || h == 0 || w == 0 || !h.is_multiple_of(hi) || !w.is_multiple_of(wi) {
        candle_core::bail!(
            "upsample_nearest2d: {h}×{w} is not a whole multiple of the input's {hi}×{wi} (candle's \
             Tensor::upsample_nearest2d handles other sizes)"
        )
    }
    x.contiguous()?.apply_op1(Upsample { h, w })
}

struct Upsample {
    h: usize,
    w: usize,
}

impl CustomOp1 for Upsample {
    fn name(&self) -> &'static str {
        "dlhist-upsample-nearest2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice_f32(s, l)?;
        let (n, c, hi, wi) = l.shape().dims4()?;
        let (h, w) = (self.h, self.w);
        // SAFETY: upsample_plane writes every element of its plane.
        let y = unsafe {
            par_planes(n * c, h * w, |p, out| upsample_plane(&x[p * hi * wi..][..hi * wi], (hi, wi), out, (h, w)))
        };
        Ok((CpuStorage::F32(y), Shape::from((n, c, h, w))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, c, hi, wi) = x.dims4()?;
        let (h, w) = (self.h, self.w);
        let grad = grad.contiguous()?;
        let dx = with_f32(&grad, |g| {
            // SAFETY: block_sum_plane writes every element of its plane (each block's sum starts from its own zero).
            unsafe {
                par_planes(n * c, hi * wi, |p, out| block_sum_plane(&g[p * h * w..][..h * w], (h, w), out, (hi, wi)))
            }
        })?;
        Ok(Some(Tensor::from_vec(dx, (n, c, hi, wi), x.device())?))
    }
}

/// `planes` planes of `len` elements, each written by `write(p, plane)` on candle's worker threads, without
/// zeroing the buffer first (a pass over the whole output on one thread).
///
/// # Safety
/// `write` must write every element of the plane it is given.
unsafe fn par_planes(planes: usize, len: usize, write: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    let mut out = Uninit::<f32>::new(planes * len);
    let w = out.writer();
    par_chunks(planes, 4, |range| {
        for p in range {
            // SAFETY: plane p is written by this iteration only.
            write(p, unsafe { w.block(p * len, len) });
        }
    });
    // SAFETY: every plane was handed to `write`, which wrote all of it (the caller's promise).
    unsafe { out.assume_init() }
}

/// Copies `src` into the plane `out` of the same length.
fn copy_plane(src: &[f32], out: &mut [MaybeUninit<f32>]) {
    for (o, &v) in out.iter_mut().zip(src) {
        o.write(v);
    }
}

/// Writes one plane `[h, w]` of nearest-neighbour copies of `src [hi, wi]` into `out` (whole factors).
fn upsample_plane(src: &[f32], (hi, wi): (usize, usize), out: &mut [MaybeUninit<f32>], (h, w): (usize, usize)) {
    let (sh, sw) = (h / hi, w / wi);
    // The first row of each block of sh is built from its source row; the others copy it (one memcpy instead
    // of a division per element, which made this op ~4% of a U-Net step).
    for i in 0..h {
        let (done, rest) = out.split_at_mut(i * w);
        let row = &mut rest[..w];
        if i % sh != 0 {
            row.copy_from_slice(&done[(i - 1) * w..][..w]);
            continue;
        }
        let srow = &src[(i / sh) * wi..][..wi];
        if sw == 2 {
            for (pair, &v) in row.chunks_exact_mut(2).zip(srow) {
                pair[0].write(v);
                pair[1].write(v);
            }
        } else {
            for (block, &v) in row.chunks_exact_mut(sw).zip(srow) {
                block.iter_mut().for_each(|o| {
                    o.write(v);
                });
            }
        }
    }
}

/// Writes into `out [hi, wi]` the sums of the `(h/hi) × (w/wi)` blocks of one gradient plane `g [h, w]`, each
/// from zero, row by row, left to right (the order of candle's grouped convolution, so the same numbers).
fn block_sum_plane(g: &[f32], (h, w): (usize, usize), out: &mut [MaybeUninit<f32>], (hi, wi): (usize, usize)) {
    let (sh, sw) = (h / hi, w / wi);
    for (r, orow) in out.chunks_exact_mut(wi).enumerate() {
        if sh == 2 && sw == 2 {
            // The U-Net's 2×2 blocks unrolled: the same four additions from zero in the same order as the general
            // loop below.
            let (g0, g1) = (&g[2 * r * w..][..w], &g[(2 * r + 1) * w..][..w]);
            for (o, (a, b)) in orow.iter_mut().zip(g0.chunks_exact(2).zip(g1.chunks_exact(2))) {
                o.write(0f32 + a[0] + a[1] + b[0] + b[1]);
            }
            continue;
        }
        for (q, o) in orow.iter_mut().enumerate() {
            let mut acc = 0f32;
            for a in 0..sh {
                for v in &g[(r * sh + a) * w + q * sw..][..sw] {
                    acc += v;
                }
            }
            o.write(acc);
        }
    }
}

/// `cat([up(x), skip], 1)`: `x [N, Cx, H, W]` upsampled by whole factors to the skip's `[N, Cs, h, w]` and
/// concatenated before it along the channels, `[N, Cx + Cs, h, w]`, in one op (a U-Net decoder's input). The
/// values are the composition's, and so are both gradients, bit for bit.
///
/// f32 tensors on the CPU only (see [`super::applies`]); [`crate::layers::upsample_concat`] runs the candle
/// composition elsewhere.
///
/// ```
/// use dlhist::prelude::*;
/// let x = Tensor::new(&[[[[1f32]]]], &Device::Cpu)?; // [1, 1, 1, 1]
/// let skip = Tensor::new(&[[[[5f32, 6.], [7., 8.]]]], &Device::Cpu)?; // [1, 1, 2, 2]
/// let y = dlhist::fast::upsample_concat(&x, &skip)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![1., 1., 1., 1., 5., 6., 7., 8.]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn upsample_concat(x: &Tensor, skip: &Tensor) -> Result<Tensor> {
    if !cpu_f32(&[x, skip]) {
        return Err(super::unsupported("upsample_concat", &[x, skip]));
    }
    let ((n, _, hi, wi), (ns, _, h, w)) = (x.dims4()?, skip.dims4()?);
    if n != ns || hi == 0 || wi == 0 || !h.is_multiple_of(hi) || !w.is_multiple_of(wi) {
        candle_core::bail!(
            "upsample_concat: x {:?} must upsample by whole factors to the skip {:?} (same batch, and the skip's \
             height and width multiples of x's)",
            x.dims(),
            skip.dims()
        )
    }
    x.contiguous()?.apply_op2(&skip.contiguous()?, UpsampleConcat)
}

struct UpsampleConcat;

impl CustomOp2 for UpsampleConcat {
    fn name(&self) -> &'static str {
        "dlhist-upsample-concat"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ss: &CpuStorage, sl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, s) = (slice_f32(xs, xl)?, slice_f32(ss, sl)?);
        let ((n, cx, hi, wi), (_, cs, h, w)) = (xl.shape().dims4()?, sl.shape().dims4()?);
        let c = cx + cs;
        // SAFETY: each output plane is written in full, as an upsampled plane of x or a copy of a skip plane.
        let y = unsafe {
            par_planes(n * c, h * w, |p, out| {
                let (img, ch) = (p / c, p % c);
                if ch < cx {
                    upsample_plane(&x[(img * cx + ch) * hi * wi..][..hi * wi], (hi, wi), out, (h, w));
                } else {
                    copy_plane(&s[(img * cs + ch - cx) * h * w..][..h * w], out);
                }
            })
        };
        Ok((CpuStorage::F32(y), Shape::from((n, c, h, w))))
    }

    fn bwd(&self, x: &Tensor, skip: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let ((n, cx, hi, wi), (_, cs, h, w)) = (x.dims4()?, skip.dims4()?);
        let c = cx + cs;
        let grad = grad.contiguous()?;
        let (dx, ds) = with_f32(&grad, |g| {
            // ∂L/∂x: the block sums of the gradient's first cx channels of each image.
            // SAFETY: block_sum_plane writes every element of its plane.
            let dx = unsafe {
                par_planes(n * cx, hi * wi, |p, out| {
                    let (img, ch) = (p / cx, p % cx);
                    block_sum_plane(&g[(img * c + ch) * h * w..][..h * w], (h, w), out, (hi, wi));
                })
            };
            // ∂L/∂skip: the gradient's last cs channels of each image, copied out.
            // SAFETY: copy_plane writes every element of its plane.
            let ds = unsafe {
                par_planes(n * cs, h * w, |p, out| {
                    let (img, ch) = (p / cs, p % cs);
                    copy_plane(&g[(img * c + cx + ch) * h * w..][..h * w], out);
                })
            };
            (dx, ds)
        })?;
        Ok((
            Some(Tensor::from_vec(dx, (n, cx, hi, wi), x.device())?),
            Some(Tensor::from_vec(ds, (n, cs, h, w), skip.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    /// The same values and input gradient as candle's `upsample_nearest2d`, bit for bit, for square and
    /// rectangular factors (and a factor of one).
    #[test]
    fn matches_candle_bit_for_bit() -> Result<()> {
        let bits = |t: &Tensor| {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        // candle's backward takes one factor for both sides only.
        for (shape, h, w) in
            [([2, 3, 7, 7], 14, 14), ([1, 2, 3, 5], 9, 15), ([3, 1, 4, 4], 4, 4), ([64, 32, 7, 7], 14, 14)]
        {
            let x = Var::from_tensor(&crate::fast::testing::randn(&shape, 1))?;
            let (fused, plain) = (upsample_nearest2d(&x, h, w)?, x.upsample_nearest2d(h, w)?);
            assert_eq!(bits(&fused), bits(&plain), "values {shape:?} → {h}×{w}");
            let g = crate::fast::testing::randn(fused.dims(), 2);
            let gf = (&fused * &g)?.sum_all()?.backward()?;
            let gp = (&plain * &g)?.sum_all()?.backward()?;
            assert_eq!(bits(gf.get(&x).unwrap()), bits(gp.get(&x).unwrap()), "gradient {shape:?} → {h}×{w}");
        }
        // Different factors for rows and columns: candle's values, and a block of s_h·s_w ones summed.
        let x = Var::from_tensor(&crate::fast::testing::randn(&[2, 2, 3, 4], 3))?;
        let y = upsample_nearest2d(&x, 6, 12)?;
        assert_eq!(bits(&y), bits(&x.upsample_nearest2d(6, 12)?));
        let g = y.sum_all()?.backward()?;
        assert_eq!(g.get(&x).unwrap().flatten_all()?.to_vec1::<f32>()?, vec![6f32; 48]);
        let x = Tensor::zeros((1, 1, 3, 3), candle_core::DType::F32, &candle_core::Device::Cpu)?;
        assert!(upsample_nearest2d(&x, 7, 6).unwrap_err().to_string().contains("whole multiple"));
        Ok(())
    }

    /// The gradient adds to the input's other gradients: Σ up(x) + Σ 3x gives 4 + 3 per pixel, and two
    /// upsamplings of the same input 4 + 4 (candle 0.11's own backward keeps only one upsampling's 4).
    #[test]
    fn gradients_of_several_uses_add_up() -> Result<()> {
        let x = Var::from_tensor(&Tensor::ones((1, 2, 2, 2), candle_core::DType::F32, &candle_core::Device::Cpu)?)?;
        let up = || upsample_nearest2d(&x, 4, 4)?.sum_all();
        for (loss, want) in [((up()? + (x.as_tensor() * 3.0)?.sum_all()?)?, 7f32), ((up()? + up()?)?, 8.)] {
            assert_eq!(loss.backward()?.get(&x).unwrap().flatten_all()?.to_vec1::<f32>()?, vec![want; 8]);
        }
        Ok(())
    }
    /// The fused concatenation gives the composition's values and both gradients bit for bit, including a skip
    /// that also feeds something else (its gradients add up), and rejects shapes that do not fit.
    #[test]
    fn upsample_concat_matches_the_composition_bit_for_bit() -> Result<()> {
        let bits = |t: &Tensor| {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        for (xs, ss) in
            [([2, 3, 7, 7], [2, 2, 14, 14]), ([64, 32, 14, 14], [64, 16, 28, 28]), ([1, 2, 3, 5], [1, 3, 9, 15])]
        {
            let x = Var::from_tensor(&crate::fast::testing::randn(&xs, 4))?;
            let skip = Var::from_tensor(&crate::fast::testing::randn(&ss, 5))?;
            let (h, w) = (ss[2], ss[3]);
            let fused = upsample_concat(&x, &skip)?;
            let plain = Tensor::cat(&[&x.upsample_nearest2d(h, w)?, skip.as_tensor()], 1)?;
            assert_eq!(bits(&fused), bits(&plain), "values {xs:?} ⊕ {ss:?}");
            let g = crate::fast::testing::randn(fused.dims(), 6);
            let also = (skip.as_tensor() * 3.0)?.sum_all()?;
            let gf = ((&fused * &g)?.sum_all()? + &also)?.backward()?;
            let gp = ((&plain * &g)?.sum_all()? + &also)?.backward()?;
            assert_eq!(bits(gf.get(&x).unwrap()), bits(gp.get(&x).unwrap()), "x's gradient {xs:?} ⊕ {ss:?}");
            assert_eq!(bits(gf.get(&skip).unwrap()), bits(gp.get(&skip).unwrap()), "skip's gradient {xs:?} ⊕ {ss:?}");
        }
        let x = Tensor::zeros((2, 1, 3, 3), candle_core::DType::F32, &candle_core::Device::Cpu)?;
        for skip in [(2, 1, 7, 6), (1, 1, 6, 6)] {
            let skip = Tensor::zeros(skip, candle_core::DType::F32, &candle_core::Device::Cpu)?;
            let err = upsample_concat(&x, &skip).unwrap_err().to_string();
            assert!(err.contains("[2, 1, 3, 3]") && err.contains(&format!("{:?}", skip.dims())), "{err}");
        }
        Ok(())
    }
}
