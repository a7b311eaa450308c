//! 2-D convolution + bias + activation as im2col and one matrix product per image.
//!
//! Lay out every `C×kh×kw` input patch of image `n` as a column of `cols_n [C·kh·kw, L]` (`L = H_out·W_out`,
//! "im2col"); then the convolution of the module [`crate::deep_neural_networks::cnn`] is a matrix product, and
//! so is each gradient:
//!
//! ```text
//! forward:   Y_n = act(W cols_n + b)                       W: [O, C·kh·kw], Y_n: [O, L]
//! backward:  G_n = ∂L/∂Y_n ⊙ act'(Y_n)
//!            ∂L/∂b = Σ_n G_n 1,   ∂L/∂W = Σ_n G_n cols_nᵀ,  ∂L/∂cols_n = Wᵀ G_n  → col2im → ∂L/∂x_n
//! ```
//!
//! `Y_n` comes out in NCHW order directly (no transpose). Images are split over candle's worker pool, one matrix product
//! per image on one thread (each image's `cols_n` stays in cache), and `cols_n` is rebuilt in the backward pass
//! instead of being kept (it is `C·kh·kw` times the input's size).

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Module, Result, Shape, Tensor};

use super::gemm::{matmul, matmul_raw, Stored};
use super::{cpu_f32, filled, par_block_sums, par_chunks, slice_f32, with_f32, Act, SharedMut, Uninit};
use crate::activation::Activation;

/// Images per block of the weight-gradient sum: fixed, so that ∂W and ∂b have the same bits at any thread
/// count (see `par_block_sums`); small enough that a batch of 32 still splits over several threads.
const CONV_GRAD_BLOCK: usize = 4;

/// `f(conv2d(x, w) + b)` for `x [N, C, H, W]`, `w [O, C, kh, kw]`, `b [O]`, with zero padding `pad` and `stride`
/// (both sides), as candle's `x.conv2d(w, pad, stride, 1, 1)` followed by the bias and `f`.
///
/// `b` may also be `[N, O]`, a bias per image and channel: the bias plus a shift computed from something else
/// about each image (the DDPM U-Net's time embedding), added before `f` in the same pass; its gradient is then
/// per image too.
///
/// f32 tensors on the CPU only (see [`super::applies`]); [`crate::layers::ConvBlock`] runs the composition
/// elsewhere.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::fast::conv2d;
/// use dlhist::layers::Activation;
/// let dev = Device::Cpu;
/// let x = Tensor::arange(0f32, 16., &dev)?.reshape((1, 1, 4, 4))?;
/// let w = Tensor::ones((1, 1, 3, 3), DType::F32, &dev)?;
/// let b = Tensor::new(&[-45f32], &dev)?;
/// // 3×3 sums of the 4×4 ramp are 45, 54, 81, 90; minus 45, then ReLU.
/// let y = conv2d(&x, &w, &b, 0, 1, Some(Activation::Relu))?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![0., 9., 36., 45.]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn conv2d(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize, stride: usize, f: Option<Activation>) -> Result<Tensor> {
    conv2d_pool(x, w, b, pad, stride, f, 1)
}

/// [`conv2d`] followed by max pooling over `pool×pool` windows `pool` apart (floor mode; `pool = 1` is no
/// pooling), as [`super::max_pool2d`]`(act(conv2d(x, w) + b), pool, pool, 0)`: the block of LeNet-style
/// networks. ReLU and tanh are fused; GELU, sigmoid and ELU run as their own op between convolution and pool.
///
/// On the CPU in f32 the three are one op: each image's convolution output is pooled while in cache and only
/// the pooled map (and each window's argmax) is kept, so the full-size activation never becomes a tensor of
/// the autograd graph (whose gradient candle would allocate, zero and add to). The backward pass sends each
/// window's gradient to its argmax, through the activation's derivative there.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::fast::conv2d_pool;
/// use dlhist::layers::Activation;
/// let dev = Device::Cpu;
/// let x = Tensor::arange(0f32, 16., &dev)?.reshape((1, 1, 4, 4))?;
/// let w = Tensor::ones((1, 1, 1, 1), DType::F32, &dev)?;
/// let b = Tensor::new(&[-10f32], &dev)?;
/// // x − 10, ReLU, then the maximum of each 2×2 block.
/// let y = conv2d_pool(&x, &w, &b, 0, 1, Some(Activation::Relu), 2)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, vec![0., 0., 3., 5.]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn conv2d_pool(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    padding: usize,
    stride: usize,
    act: Option<Activation>,
    pool: usize,
) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (o, wc, kh, kw) = w.dims4()?;
    let bias_fits = b.dims() == [o] || b.dims() == [n, o];
    if wc != c || !bias_fits || stride == 0 || pool == 0 || kh > h + 2 * padding || kw > wd + 2 * padding {
        candle_core::bail!(
            "conv2d: input {:?}, kernel {:?}, bias {:?}, padding {padding}, stride {stride} do not fit",
            x.dims(),
            w.dims(),
            b.dims()
        )
    }
    let g = Geom::new(x.dims(), w.dims(), padding, stride);
    if pool > g.oh || pool > g.ow {
        candle_core::bail!("conv2d: a {pool}×{pool} pool does not fit the {}×{} output", g.oh, g.ow)
    }
    if !cpu_f32(&[x, w, b]) {
        return Err(super::unsupported("conv2d", &[x, w, b]));
    }
    let (x, w, b) = (x.contiguous()?, w.contiguous()?, b.contiguous()?);
    match Act::split(act, false) {
        (act, None) => x.apply_op3(&w, &b, Conv2dAct { padding, stride, act, pool, argmax: Mutex::new(vec![]) }),
        // GELU, sigmoid and ELU are not fused (GELU's backward needs the pre-activation, which this op does not
        // keep): the convolution runs fused with its bias alone, then the activation and the pool as their own ops.
        (act, Some(f)) => {
            let y = f.forward(&x.apply_op3(
                &w,
                &b,
                Conv2dAct { padding, stride, act, pool: 1, argmax: Mutex::new(vec![]) },
            )?)?;
            if pool == 1 {
                Ok(y)
            } else {
                super::max_pool2d(&y, pool, pool, 0)
            }
        }
    }
}

thread_local! {
    /// Each thread's scratch for [`with_scratch`], kept between calls.
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` with two scratch buffers of `a` and `b` elements from this thread's reusable scratch, so the
/// per-range `cols` and output buffers are neither allocated nor zeroed on every call. They hold whatever an
/// earlier call left (always initialized f32s): callers overwrite every element before reading it.
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    // Taken out while in use, so a nested call would just get (and later drop) a fresh buffer.
    let mut buf = SCRATCH.take();
    if buf.len() < a + b {
        buf.resize(a + b, 0.0);
    }
    let (first, rest) = buf.split_at_mut(a);
    let r = f(first, &mut rest[..b]);
    SCRATCH.set(buf);
    r
}

#[derive(Debug)]
struct Conv2dAct {
    padding: usize,
    stride: usize,
    act: Act,
    /// Max-pool window and step (1: none).
    pool: usize,
    /// With pooling, the forward pass's argmax of every window (within its image's `[O, L]` output), for the
    /// backward pass.
    argmax: Mutex<Vec<u32>>,
}

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    pad: usize,
    stride: usize,
}

impl Geom {
    fn new(x: &[usize], w: &[usize], pad: usize, stride: usize) -> Geom {
        let (kh, kw) = (w[2], w[3]);
        Geom {
            n: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            o: w[0],
            kh,
            kw,
            oh: (x[2] + 2 * pad - kh) / stride + 1,
            ow: (x[3] + 2 * pad - kw) / stride + 1,
            pad,
            stride,
        }
    }

    fn l(&self) -> usize {
        self.oh * self.ow
    }

    fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// The input column `ix` read by output column `ox` at kernel offset `v`, if inside the image.
    #[inline]
    fn src(&self, o: usize, k: usize, side: usize) -> Option<usize> {
        let i = (o * self.stride + k).checked_sub(self.pad)?;
        (i < side).then_some(i)
    }

    /// The output columns `lo..hi` whose input column `ox·stride + v − pad` lies inside the image, for kernel
    /// column `v`: the rest read padding.
    #[inline]
    fn valid_cols(&self, v: usize) -> (usize, usize) {
        let s = self.stride;
        let lo = self.pad.saturating_sub(v).div_ceil(s).min(self.ow);
        let hi = (self.w + self.pad).saturating_sub(v).div_ceil(s).clamp(lo, self.ow);
        (lo, hi)
    }

    /// Whether this is a stride-1 convolution whose output has the input's size (`kh = kw = 2·pad + 1`, the
    /// U-Net's 3×3 with padding 1): then each row of `cols` is the input plane shifted by one flat offset.
    fn same_size(&self) -> bool {
        self.stride == 1 && self.oh == self.h && self.ow == self.w
    }

    /// `cols [C·kh·kw, L]` of one image `x [C, H, W]`.
    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        if self.same_size() {
            self.im2col_same(x, cols)
        } else {
            self.im2col_general(x, cols)
        }
    }

    /// [`Geom::im2col`] for any geometry: a short copy per output row.
    fn im2col_general(&self, x: &[f32], cols: &mut [f32]) {
        let (l, s) = (self.l(), self.stride);
        for ch in 0..self.c {
            for u in 0..self.kh {
                for v in 0..self.kw {
                    let row = &mut cols[((ch * self.kh + u) * self.kw + v) * l..][..l];
                    let (lo, hi) = self.valid_cols(v);
                    for oy in 0..self.oh {
                        let out = &mut row[oy * self.ow..(oy + 1) * self.ow];
                        match self.src(oy, u, self.h) {
                            None => out.fill(0.0),
                            Some(iy) => {
                                let line = &x[(ch * self.h + iy) * self.w..][..self.w];
                                out[..lo].fill(0.0);
                                out[hi..].fill(0.0);
                                // First input column read: lo·s + v − pad (≥ 0 by the choice of lo).
                                let first = lo * s + v - self.pad;
                                if s == 1 {
                                    out[lo..hi].copy_from_slice(&line[first..first + (hi - lo)]);
                                } else {
                                    for (k, dst) in out[lo..hi].iter_mut().enumerate() {
                                        *dst = line[first + k * s];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// [`Geom::im2col`] of a [`Geom::same_size`] convolution. Output `(oy, ox)` reads input
    /// `(oy + u − pad, ox + v − pad)`, flat index `j + d` with `j = oy·W + ox` and `d = (u − pad)·W + v − pad`, so a
    /// row is one copy of the plane shifted by `d` (instead of a short copy per output row, whose call overhead
    /// dominated at 28 columns). The copy also reads wrapped-around pixels into the columns that should read
    /// padding; those (and the rows above and below the image) are zeroed after it. The same values as the
    /// general path, element for element.
    fn im2col_same(&self, x: &[f32], cols: &mut [f32]) {
        let (hw, w) = (self.h * self.w, self.w as isize);
        for ch in 0..self.c {
            let plane = &x[ch * hw..][..hw];
            for u in 0..self.kh {
                for v in 0..self.kw {
                    let row = &mut cols[((ch * self.kh + u) * self.kw + v) * hw..][..hw];
                    let d = (u as isize - self.pad as isize) * w + v as isize - self.pad as isize;
                    // The j with 0 ≤ j + d < H·W; outside them the source row is above or below the image.
                    let lo = (-d).clamp(0, hw as isize) as usize;
                    let hi = (hw as isize - d).clamp(lo as isize, hw as isize) as usize;
                    row[..lo].fill(0.0);
                    row[hi..].fill(0.0);
                    row[lo..hi].copy_from_slice(&plane[(lo as isize + d) as usize..][..hi - lo]);
                    let (c0, c1) = self.valid_cols(v);
                    zero_edge_cols(row, self.ow, c0, c1);
                }
            }
        }
    }

    /// The adjoint of [`Geom::im2col`]: adds every column entry back to the input position it was read from.
    /// `gx` may start uninitialized: every element is written.
    /// `cols` is scratch: the same-size path overwrites some of it.
    fn col2im(&self, cols: &mut [f32], gx: &mut [MaybeUninit<f32>]) {
        if self.same_size() {
            return self.col2im_same(cols, gx);
        }
        self.col2im_general(cols, filled(gx, 0.0))
    }

    /// Row `(ch, u, v)` of a same-size `cols` with its padding columns set to +0, its shift `d`, and the range
    /// `lo..hi` of its entries that land inside the plane (at `lo + d ..`), as [`Geom::im2col_same`] copies it.
    fn same_row<'a>(&self, cols: &'a mut [f32], ch: usize, u: usize, v: usize) -> (&'a [f32], usize, usize, usize) {
        let (hw, w) = (self.h * self.w, self.w as isize);
        let row = &mut cols[((ch * self.kh + u) * self.kw + v) * hw..][..hw];
        let (c0, c1) = self.valid_cols(v);
        zero_edge_cols(row, self.ow, c0, c1);
        let d = (u as isize - self.pad as isize) * w + v as isize - self.pad as isize;
        let lo = (-d).clamp(0, hw as isize) as usize;
        let hi = (hw as isize - d).clamp(lo as isize, hw as isize) as usize;
        (row, (lo as isize + d) as usize, lo, hi)
    }

    /// [`Geom::col2im`] of a [`Geom::same_size`] convolution: each row of `cols` added to the plane shifted by
    /// `d` in one pass, as [`Geom::im2col_same`] copies it. The entries of the columns that read padding would
    /// land on wrapped-around pixels, so they are set to +0 first: adding +0 changes no bits of a sum that
    /// started at +0 (in round-to-nearest such a sum is never −0). Every pixel receives the same terms in the
    /// same order as in the general path, so the bits are the same.
    ///
    /// The plane is not zeroed first (a pass over it that was ~2% of a U-Net step): the first row, kernel
    /// offset (0, 0), writes `0 + g` (the same bits as adding `g` to a zeroed pixel, −0 becoming +0) where it
    /// lands and +0 elsewhere; the other rows add.
    fn col2im_same(&self, cols: &mut [f32], gx: &mut [MaybeUninit<f32>]) {
        let hw = self.h * self.w;
        for ch in 0..self.c {
            let plane = &mut gx[ch * hw..][..hw];
            let (row, start, lo, hi) = self.same_row(cols, ch, 0, 0);
            let (head, rest) = plane.split_at_mut(start);
            let (mid, tail) = rest.split_at_mut(hi - lo);
            head.fill(MaybeUninit::new(0.0));
            tail.fill(MaybeUninit::new(0.0));
            mid.iter_mut().zip(&row[lo..hi]).for_each(|(a, g)| {
                a.write(0.0 + g);
            });
            // SAFETY: head, mid and tail, the whole plane, were just initialized, and MaybeUninit<f32> has f32's
            // layout.
            let plane = unsafe { &mut *(plane as *mut [MaybeUninit<f32>] as *mut [f32]) };
            for u in 0..self.kh {
                for v in 0..self.kw {
                    if (u, v) == (0, 0) {
                        continue;
                    }
                    let (row, start, lo, hi) = self.same_row(cols, ch, u, v);
                    let dst = &mut plane[start..][..hi - lo];
                    dst.iter_mut().zip(&row[lo..hi]).for_each(|(a, g)| *a += g);
                }
            }
        }
    }

    /// [`Geom::col2im`] for any geometry into a zeroed `gx`: a short sum per output row.
    fn col2im_general(&self, cols: &[f32], gx: &mut [f32]) {
        let (l, s) = (self.l(), self.stride);
        for ch in 0..self.c {
            for u in 0..self.kh {
                for v in 0..self.kw {
                    let row = &cols[((ch * self.kh + u) * self.kw + v) * l..][..l];
                    let (lo, hi) = self.valid_cols(v);
                    if lo == hi {
                        continue;
                    }
                    let first = lo * s + v - self.pad;
                    for oy in 0..self.oh {
                        let Some(iy) = self.src(oy, u, self.h) else { continue };
                        let line = &mut gx[(ch * self.h + iy) * self.w..][..self.w];
                        let src = &row[oy * self.ow + lo..oy * self.ow + hi];
                        if s == 1 {
                            line[first..first + (hi - lo)].iter_mut().zip(src).for_each(|(d, g)| *d += g);
                        } else {
                            for (k, g) in src.iter().enumerate() {
                                line[first + k * s] += g;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Zeroes columns `..c0` and `c1..` of every `ow`-long line of `row` (the columns of a shifted-plane row of
/// `cols` that read padding). A strided store per column rather than a `fill` per line: each fill was a call
/// to memset for a single element (3×3 kernels with padding 1 zero one column per line), about 3% of a
/// DDPM U-Net training step in calls alone.
#[inline]
fn zero_edge_cols(row: &mut [f32], ow: usize, c0: usize, c1: usize) {
    for col in (0..c0).chain(c1..ow) {
        row.iter_mut().skip(col).step_by(ow).for_each(|v| *v = 0.0);
    }
}

/// Max pooling of one `[oh, ow]` output plane over `k×k` windows `k` apart (floor mode) into `y` (`[ph, pw]`,
/// row-major), and the argmax of each window, as an index into the image's `[O, L]` output (`base` is the
/// plane's offset there) into `argmax`. The window is compared on `pre(v)`; `post` turns its maximum into the
/// output. Ties go to the first maximum in row-major order, the one `max_pool2d` picks.
#[allow(clippy::too_many_arguments)]
#[inline]
fn pool_plane(
    plane: &[f32],
    ow: usize,
    k: usize,
    y: &mut [MaybeUninit<f32>],
    argmax: &mut [MaybeUninit<u32>],
    base: u32,
    pre: impl Fn(f32) -> f32,
    post: impl Fn(f32) -> f32,
) {
    let pw = ow / k;
    if pw == 0 {
        return;
    }
    for (i, (yr, ar)) in y.chunks_exact_mut(pw).zip(argmax.chunks_exact_mut(pw)).enumerate() {
        let top = i * k * ow;
        if k == 2 {
            // LeNet's 2×2 windows, unrolled: four comparisons, no inner loops.
            let (r0, r1) = (&plane[top..][..2 * pw], &plane[top + ow..][..2 * pw]);
            for (j, (yv, av)) in yr.iter_mut().zip(ar.iter_mut()).enumerate() {
                let (mut best, mut at) = (pre(r0[2 * j]), top + 2 * j);
                for (v, p) in [
                    (r0[2 * j + 1], top + 2 * j + 1),
                    (r1[2 * j], top + ow + 2 * j),
                    (r1[2 * j + 1], top + ow + 2 * j + 1),
                ] {
                    let v = pre(v);
                    if v > best {
                        (best, at) = (v, p);
                    }
                }
                yv.write(post(best));
                av.write(base + at as u32);
            }
        } else {
            for (j, (yv, av)) in yr.iter_mut().zip(ar.iter_mut()).enumerate() {
                let (mut best, mut at) = (pre(plane[top + j * k]), top + j * k);
                for r in 0..k {
                    for q in 0..k {
                        let p = top + r * ow + j * k + q;
                        let v = pre(plane[p]);
                        if v > best {
                            (best, at) = (v, p);
                        }
                    }
                }
                yv.write(post(best));
                av.write(base + at as u32);
            }
        }
    }
}

impl CustomOp3 for Conv2dAct {
    fn name(&self) -> &'static str {
        "dlhist-conv2d-act"
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
        let g = Geom::new(xl.dims(), wl.dims(), self.padding, self.stride);
        let (l, ckk, chw) = (g.l(), g.ckk(), g.c * g.h * g.w);
        let act = self.act;
        // ReLU and the identity are non-decreasing, so the maximum of act(v + b) over a window is act of the
        // maximum of v + b: with pooling, the activation runs on the pooled values only (a quarter of them
        // for 2×2 windows). Where the argmax could differ (a ReLU window with nothing above 0) the gradient
        // sent to it is 0 either way. tanh keeps the activation before the pooling: rounding can make two
        // different inputs equal after it, and the first of equal maxima is the one that gets the gradient.
        let act_after_pool = self.pool > 1 && matches!(act, Act::Identity | Act::Relu);
        let simd = super::vmath::Simd::detect();
        // Image n's biases: one row of a per-image [N, O] bias, or the shared [O] one.
        let per_image_bias = bl.dims().len() == 2;
        let bias_of = |n: usize| if per_image_bias { &b[n * g.o..(n + 1) * g.o] } else { b };
        // SAFETY (for callers): `yn` must be valid for O·L writes that no other thread makes; it may start
        // uninitialized, as the product writes every element before the epilogue reads it.
        let conv = |cols: &mut [f32], yn: *mut f32, n: usize| {
            g.im2col(&x[n * chw..(n + 1) * chw], cols);
            // SAFETY: w holds O·C·kh·kw and cols C·kh·kw·L elements; yn is valid for O·L writes (above).
            let yn = unsafe {
                matmul_raw(yn, w, Stored::AsIs, cols, Stored::AsIs, (g.o, l, ckk), false);
                std::slice::from_raw_parts_mut(yn, g.o * l)
            };
            if !act_after_pool {
                // Bias and activation while the image's output is still in cache.
                for (row, &bias) in yn.chunks_mut(l).zip(bias_of(n)) {
                    if act == Act::Tanh {
                        super::vmath::tanh_shift_fwd(simd, row, bias);
                    } else {
                        row.iter_mut().for_each(|v| *v = act.apply(*v + bias));
                    }
                }
            }
        };
        if self.pool == 1 {
            // Not zeroed first: the (non-accumulating) matrix product writes every element of each image's
            // output before the epilogue reads it, and zeroing is a pass over the whole output (3 MB per U-Net
            // layer at 28×28) on one thread.
            let mut y = Uninit::<f32>::new(g.n * g.o * l);
            let yw = y.writer();
            par_chunks(g.n, 1, |images| {
                with_scratch(ckk * l, 0, |cols, _| {
                    for n in images {
                        // SAFETY: image n owns y[n·O·L .. (n+1)·O·L]; no other range writes it, and `matmul`
                        // (accumulate = false) writes every element before anything reads it.
                        unsafe { conv(cols, yw.ptr(n * g.o * l), n) };
                    }
                })
            });
            // SAFETY: the loop above wrote all g.n · O · L elements.
            let y = unsafe { y.assume_init() };
            return Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, g.oh, g.ow))));
        }
        let (k, ph, pw) = (self.pool, g.oh / self.pool, g.ow / self.pool);
        let per_image = g.o * ph * pw;
        // Every element of y and argmax is written below (each image's windows, in full), so both start
        // uninitialized.
        let (mut y, mut argmax) = (Uninit::<f32>::new(g.n * per_image), Uninit::<u32>::new(g.n * per_image));
        let (yw, aw) = (y.writer(), argmax.writer());
        par_chunks(g.n, 1, |images| {
            with_scratch(ckk * l, g.o * l, |cols, full| {
                for n in images {
                    // `full` is this thread's scratch of O·L elements.
                    conv(cols, full.as_mut_ptr(), n);
                    // SAFETY: image n owns its blocks of y and argmax; no other range writes them.
                    let (yn, an) = unsafe { (yw.block(n * per_image, per_image), aw.block(n * per_image, per_image)) };
                    for ch in 0..g.o {
                        let plane = &full[ch * l..(ch + 1) * l];
                        let (yc, ac) = (&mut yn[ch * ph * pw..][..ph * pw], &mut an[ch * ph * pw..][..ph * pw]);
                        let base = (ch * l) as u32;
                        if act_after_pool {
                            let bias = bias_of(n)[ch];
                            pool_plane(plane, g.ow, k, yc, ac, base, |v| v + bias, |t| act.apply(t));
                        } else {
                            pool_plane(plane, g.ow, k, yc, ac, base, |v| v, |t| t);
                        }
                    }
                }
            })
        });
        // SAFETY: the loop above wrote all g.n · per_image elements of both.
        let (y, argmax) = unsafe { (y.assume_init(), argmax.assume_init()) };
        *self.argmax.lock().map_err(|_| candle_core::Error::Msg("conv2d: poisoned lock".into()))? = argmax;
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.o, ph, pw))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = Geom::new(x.dims(), w.dims(), self.padding, self.stride);
        let (l, ckk, chw) = (g.l(), g.ckk(), g.c * g.h * g.w);
        let grad = grad.contiguous()?;
        // The input of the first layer is data: its gradient would be thrown away, so skip that product.
        let need_gx = x.track_op();
        // Each image's slice is zeroed and filled by col2im, so gx starts uninitialized.
        let mut gx = Uninit::<f32>::new(if need_gx { g.n * chw } else { 0 });
        let gxw = gx.writer();
        let act = self.act;
        let argmax = self.argmax.lock().map_err(|_| candle_core::Error::Msg("conv2d: poisoned lock".into()))?;
        let pooled = self.pool > 1;
        let per_image = y.elem_count() / g.n.max(1);
        // A per-image bias [N, O] gets a per-image gradient: each image's row is written by the thread that owns
        // the image, outside the block sums.
        let per_image_bias = b.rank() == 2;
        let mut gb_images = vec![0f32; if per_image_bias { g.n * g.o } else { 0 }];
        let gbi_ptr = SharedMut(gb_images.as_mut_ptr());
        let (gw, gb) = with_f32(x, |x| {
            with_f32(w, |w| {
                with_f32(y, |y| {
                    with_f32(&grad, |gy| {
                        // ∂W and ∂b are summed per fixed block of images, then over blocks in order (par_block_sums).
                        let sums = par_block_sums(g.n, CONV_GRAD_BLOCK, g.o * ckk + g.o, |images, slot| {
                            let (gw, gb) = slot.split_at_mut(g.o * ckk);
                            with_scratch(ckk * l, g.o * l, |cols, gpre| {
                                for n in images {
                                    let (yn, gn) =
                                        (&y[n * per_image..][..per_image], &gy[n * per_image..][..per_image]);
                                    let gbn: &mut [f32] = if per_image_bias {
                                        // SAFETY: image n owns row n of gb_images; no other range writes it.
                                        unsafe { std::slice::from_raw_parts_mut(gbi_ptr.get().add(n * g.o), g.o) }
                                    } else {
                                        &mut *gb
                                    };
                                    if pooled {
                                        // Each window's gradient goes to its argmax; every other position gets 0.
                                        gpre.fill(0.0);
                                        let an = &argmax[n * per_image..][..per_image];
                                        for ((&at, yv), gv) in an.iter().zip(yn).zip(gn) {
                                            let gp = act.grad(*yv, *gv);
                                            gpre[at as usize] = gp;
                                            gbn[at as usize / l] += gp;
                                        }
                                    } else {
                                        for (ch, (gp, (yv, gv))) in
                                            gpre.chunks_mut(l).zip(yn.chunks(l).zip(gn.chunks(l))).enumerate()
                                        {
                                            let mut sum = 0.0;
                                            for ((p, yv), gv) in gp.iter_mut().zip(yv).zip(gv) {
                                                *p = act.grad(*yv, *gv);
                                                sum += *p;
                                            }
                                            gbn[ch] += sum;
                                        }
                                    }
                                    g.im2col(&x[n * chw..(n + 1) * chw], cols);
                                    // ∂W += G_n cols_nᵀ
                                    matmul(gw, gpre, Stored::AsIs, cols, Stored::Transposed, (g.o, ckk, l), true);
                                    if need_gx {
                                        // ∂cols_n = Wᵀ G_n, reusing the cols buffer, then col2im into this image's
                                        // slice of gx.
                                        matmul(cols, w, Stored::Transposed, gpre, Stored::AsIs, (ckk, l, g.o), false);
                                        // SAFETY: image n owns gx[n·chw .. (n+1)·chw]; no other range writes it.
                                        g.col2im(cols, unsafe { gxw.block(n * chw, chw) });
                                    }
                                }
                            });
                        });
                        let mut gw = sums;
                        let gb = gw.split_off(g.o * ckk);
                        (gw, gb)
                    })
                })
            })
        })????;
        // SAFETY: col2im wrote every image's slice, all g.n · chw elements (none when !need_gx).
        let gx = unsafe { gx.assume_init() };
        let dev = x.device();
        let gx = if need_gx { Some(Tensor::from_vec(gx, x.shape(), dev)?) } else { None };
        let gb = if per_image_bias {
            Tensor::from_vec(gb_images, (g.n, g.o), dev)?
        } else {
            Tensor::from_vec(gb, g.o, dev)?
        };
        Ok((gx, Some(Tensor::from_vec(gw, w.shape(), dev)?), Some(gb)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::{assert_close, assert_same_values_and_grads, randn, strided};
    use candle_core::Var;

    /// The activation after the convolution, if any.
    type Pointwise = Option<Activation>;

    /// Values and all three gradients of the fast path against candle's conv2d + bias + activation.
    fn check(x: &[usize], w: &[usize], pad: usize, stride: usize, act: Pointwise, non_contiguous: bool) -> Result<()> {
        check_pooled(x, w, pad, stride, act, non_contiguous, 1)
    }

    /// The same with max pooling after the activation (dlhist's max_pool2d in the composition).
    fn check_pooled(
        x: &[usize],
        w: &[usize],
        pad: usize,
        stride: usize,
        act: Pointwise,
        non_contiguous: bool,
        pool: usize,
    ) -> Result<()> {
        let (xv, wv, bv) = (randn(x, 1), randn(w, 2), randn(&[w[0]], 3));
        let (xv, wv, bv) = (Var::from_tensor(&xv)?, Var::from_tensor(&wv)?, Var::from_tensor(&bv)?);
        let (xi, wi) = if non_contiguous {
            (strided(xv.as_tensor())?, strided(wv.as_tensor())?)
        } else {
            (xv.as_tensor().clone(), wv.as_tensor().clone())
        };
        let fast = conv2d_pool(&xi, &wi, &bv, pad, stride, act, pool)?;
        let z = xi.conv2d(&wi, pad, stride, 1, 1)?.broadcast_add(&bv.as_tensor().reshape((w[0], 1, 1))?)?;
        let mut plain = crate::activation::apply(act, z)?;
        if pool > 1 {
            plain = crate::fast::max_pool2d(&plain, pool, pool, 0)?;
        }
        let what = format!("x {x:?} w {w:?} pad {pad} stride {stride} {act:?} strided {non_contiguous} pool {pool}");
        assert_same_values_and_grads(&fast, &plain, &[(&xv, "dx"), (&wv, "dw"), (&bv, "db")], &what)
    }

    /// The shifted-plane im2col of same-size convolutions writes exactly what the general one does, every
    /// element (the scratch starts as garbage, so a missed element shows).
    #[test]
    fn same_size_im2col_matches_the_general_one() {
        for (x, w, pad) in
            [([2, 3, 7, 6], [4, 3, 3, 3], 1), ([1, 2, 5, 9], [1, 2, 5, 5], 2), ([1, 1, 1, 1], [1, 1, 1, 1], 0)]
        {
            let g = Geom::new(&x, &w, pad, 1);
            assert!(g.same_size());
            let xv = randn(&x, 4).flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let chw = x[1] * x[2] * x[3];
            for n in 0..x[0] {
                let (mut fast, mut want) = (vec![f32::NAN; g.ckk() * g.l()], vec![7f32; g.ckk() * g.l()]);
                g.im2col_same(&xv[n * chw..][..chw], &mut fast);
                g.im2col_general(&xv[n * chw..][..chw], &mut want);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fast), bits(&want), "x {x:?} w {w:?} pad {pad} image {n}");
            }
        }
        assert!(!Geom::new(&[1, 1, 6, 6], &[1, 1, 3, 3], 0, 1).same_size());
        assert!(!Geom::new(&[1, 1, 6, 6], &[1, 1, 3, 3], 1, 2).same_size());
    }

    /// The shifted-plane col2im of same-size convolutions gives the general one's bits.
    #[test]
    fn same_size_col2im_matches_the_general_one() {
        for (x, w, pad) in [([3, 7, 6], [4, 3, 3, 3], 1), ([2, 5, 9], [1, 2, 5, 5], 2), ([1, 1, 1], [1, 1, 1, 1], 0)] {
            let g = Geom::new(&[1, x[0], x[1], x[2]], &w, pad, 1);
            let mut cols = randn(&[g.ckk() * g.l()], 5).to_vec1::<f32>().unwrap();
            // Some −0 entries: a pixel whose first term is −0 must still come out +0, as from a zeroed start.
            cols.iter_mut().step_by(5).for_each(|v| *v = -0.0);
            let chw = x[0] * x[1] * x[2];
            let (mut fast, mut want) = (vec![MaybeUninit::new(f32::NAN); chw], vec![0f32; chw]);
            g.col2im(&mut cols.clone(), &mut fast);
            g.col2im_general(&cols, &mut want);
            // SAFETY: col2im initialized every element.
            let fast: Vec<u32> = fast.iter().map(|v| unsafe { v.assume_init() }.to_bits()).collect();
            assert_eq!(fast, want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "x {x:?} w {w:?} pad {pad}");
        }
    }

    #[test]
    fn matches_candle_conv2d_values_and_gradients() -> Result<()> {
        for act in Activation::optional() {
            check(&[2, 3, 7, 6], &[4, 3, 3, 3], 1, 1, act, false)?;
        }
        check(&[3, 1, 28, 28], &[16, 1, 5, 5], 2, 1, Some(Activation::Relu), false)?;
        check(&[2, 16, 14, 14], &[32, 16, 5, 5], 2, 1, Some(Activation::Relu), true)?;
        // Strides above 1 with sizes where candle's own backward works: it fails (a shape mismatch in its
        // transposed convolution) when H + 2p − k is not a multiple of the stride.
        check(&[1, 2, 9, 7], &[3, 2, 3, 3], 0, 2, Some(Activation::Tanh), true)?;
        check(&[1, 1, 1, 1], &[1, 1, 1, 1], 0, 1, None, false)?;
        check(&[1, 1, 4, 7], &[2, 1, 3, 3], 1, 3, Some(Activation::Relu), false)?;
        check(&[2, 3, 5, 8], &[2, 3, 2, 4], 1, 1, Some(Activation::Tanh), true)?;
        check(&[5, 2, 5, 5], &[1, 2, 5, 5], 0, 1, None, true)?;
        Ok(())
    }

    /// A bias per image and channel `[N, O]` against candle's convolution plus that bias broadcast over the
    /// positions, with and without pooling.
    #[test]
    fn per_image_bias_matches_the_broadcast_composition() -> Result<()> {
        for (act, pool) in
            [(Some(Activation::Relu), 1), (Some(Activation::Relu), 2), (Some(Activation::Tanh), 2), (None, 1)]
        {
            let (x, w) = (Var::from_tensor(&randn(&[3, 2, 6, 6], 31))?, Var::from_tensor(&randn(&[4, 2, 3, 3], 32))?);
            let b = Var::from_tensor(&randn(&[3, 4], 33))?;
            let fast = conv2d_pool(&x, &w, &b, 1, 1, act, pool)?;
            let z = x.conv2d(&w, 1, 1, 1, 1)?.broadcast_add(&b.as_tensor().reshape((3, 4, 1, 1))?)?;
            let mut plain = crate::activation::apply(act, z)?;
            if pool > 1 {
                plain = crate::fast::max_pool2d(&plain, pool, pool, 0)?;
            }
            let what = format!("per-image bias, {act:?}, pool {pool}");
            assert_same_values_and_grads(&fast, &plain, &[(&x, "dx"), (&w, "dw"), (&b, "db")], &what)?;
        }
        let e = conv2d(&randn(&[3, 2, 6, 6], 1), &randn(&[4, 2, 3, 3], 2), &randn(&[2, 4], 3), 1, 1, None);
        assert!(e.unwrap_err().to_string().contains("bias [2, 4]"), "a bias for 2 images on a batch of 3");
        Ok(())
    }

    /// ∂W and ∂b of a batch split over the worker threads have the same bits on every run (the weight
    /// gradient used to be summed in the order the threads finished).
    #[test]
    fn weight_gradients_are_the_same_bits_on_every_run() -> Result<()> {
        let x = randn(&[40, 3, 12, 12], 21);
        let (w, b) = (Var::from_tensor(&randn(&[8, 3, 3, 3], 22))?, Var::from_tensor(&randn(&[8], 23))?);
        let weights = randn(&[40, 8, 6, 6], 24);
        let run = || -> Result<(Vec<u32>, Vec<u32>)> {
            let y = conv2d_pool(&x, &w, &b, 1, 1, Some(Activation::Relu), 2)?;
            let grads = (y * &weights)?.sum_all()?.backward()?;
            let bits = |t: &Tensor| -> Result<Vec<u32>> {
                Ok(t.flatten_all()?.to_vec1::<f32>()?.iter().map(|v| v.to_bits()).collect())
            };
            Ok((bits(grads.get(&w).unwrap())?, bits(grads.get(&b).unwrap())?))
        };
        let first = run()?;
        for _ in 0..8 {
            assert!(run()? == first, "the weight or bias gradient changed between identical runs");
        }
        Ok(())
    }

    #[test]
    fn fused_pooling_matches_conv_then_max_pool2d() -> Result<()> {
        check_pooled(&[4, 1, 28, 28], &[16, 1, 5, 5], 2, 1, Some(Activation::Relu), false, 2)?;
        check_pooled(&[3, 16, 14, 14], &[32, 16, 5, 5], 2, 1, Some(Activation::Relu), true, 2)?;
        check_pooled(&[2, 3, 7, 9], &[4, 3, 3, 3], 1, 1, Some(Activation::Tanh), false, 2)?;
        check_pooled(&[2, 2, 8, 8], &[3, 2, 3, 3], 1, 1, None, true, 3)?;
        check_pooled(&[1, 1, 2, 2], &[1, 1, 1, 1], 0, 1, Some(Activation::Relu), false, 2)?;
        assert!(conv2d_pool(
            &randn(&[1, 1, 3, 3], 1),
            &randn(&[1, 1, 3, 3], 2),
            &randn(&[1], 3),
            0,
            1,
            Some(Activation::Relu),
            2
        )
        .is_err());
        Ok(())
    }

    #[test]
    fn data_inputs_get_no_gradient_and_other_dtypes_are_refused() -> Result<()> {
        let w = Var::from_tensor(&randn(&[2, 1, 3, 3], 5))?;
        let b = Var::from_tensor(&randn(&[2], 6))?;
        let x = randn(&[2, 1, 5, 5], 7);
        let grads = conv2d(&x, &w, &b, 1, 1, Some(Activation::Relu))?.sum_all()?.backward()?;
        assert!(grads.get(&x).is_none() && grads.get(&w).is_some());
        let d = candle_core::DType::F64;
        let e = conv2d(&x.to_dtype(d)?, &w.to_dtype(d)?, &b.to_dtype(d)?, 1, 1, Some(Activation::Relu))
            .unwrap_err()
            .to_string();
        assert!(e.contains("runs f32 tensors on the CPU") && e.contains("F64"), "{e}");
        assert!(conv2d(&x, &randn(&[2, 3, 3, 3], 1), &b, 1, 1, Some(Activation::Relu)).is_err());
        // Where candle's backward cannot run (stride 2, 9 − 3 = 6 rows but 8 − 3 = 5 columns), the forward still
        // matches and the gradient of a sum is what the definition gives: each weight's gradient is the sum of
        // the inputs it touched.
        let (x, w1) = (randn(&[1, 1, 9, 8], 8), Var::from_tensor(&randn(&[1, 1, 3, 3], 9))?);
        let b1 = Var::from_tensor(&randn(&[1], 10))?;
        let y = conv2d(&x, &w1, &b1, 0, 2, None)?;
        assert_close(&y, &x.conv2d(&w1, 0, 2, 1, 1)?.broadcast_add(&b1.reshape((1, 1, 1))?)?, "stride 2 values")?;
        let g = y.sum_all()?.backward()?;
        let xs = x.squeeze(0)?.squeeze(0)?;
        for u in 0..3 {
            for v in 0..3 {
                // Output (i, j) reads x[2i + u, 2j + v] for i < 4, j < 3.
                let mut want = 0f32;
                for i in 0..4 {
                    for j in 0..3 {
                        want += xs.get(2 * i + u)?.get(2 * j + v)?.to_scalar::<f32>()?;
                    }
                }
                let got = g.get(&w1).unwrap().flatten_all()?.get(u * 3 + v)?.to_scalar::<f32>()?;
                assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "dw[{u},{v}]: {got} vs {want}");
            }
        }
        assert_eq!(g.get(&b1).unwrap().to_vec1::<f32>()?, vec![12.0]);
        Ok(())
    }
}
