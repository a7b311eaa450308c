//! Max pooling, including AlexNet's overlapping pooling.
//!
//! Pooling keeps the largest activation of each `k×k` window, windows `s` apart, so the exact position of a
//! feature matters less (LeCun et al. 1989, 1998); AlexNet (Krizhevsky et al. 2012, section 3.4) overlaps the
//! windows (`k = 3, s = 2`) and credits that with 0.4% lower top-1 and 0.3% lower top-5 error:
//!
//! ```text
//! y[n, c, i, j] = max_{0≤u,v<k} x[n, c, s·i + u − p, s·j + v − p],      H_out = ⌊(H + 2p − k)/s⌋ + 1
//! ```

use candle_core::{Module, Result, Tensor};

use crate::fast;

/// Max pooling with window `kernel` and step `stride` over `[N, C, H, W]` (no padding, floor mode).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::max_pool2d;
/// let x = Tensor::arange(0f32, 25., &Device::Cpu)?.reshape((1, 1, 5, 5))?;
/// // Overlapping 3×3 windows, 2 apart: rows/columns 0-2 and 2-4.
/// assert_eq!(max_pool2d(&x, 3, 2)?.flatten_all()?.to_vec1::<f32>()?, vec![12., 14., 22., 24.]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    MaxPool2d::with_stride(kernel, stride, 0).forward(x)
}

/// Nearest-neighbour upsampling of `[N, C, H, W]` to `[N, C, h, w]`: each pixel repeated over a block (the
/// decoders and U-Nets of section 05 undo pooling this way).
///
/// ```
/// use dlhist::prelude::*;
/// let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &Device::Cpu)?;
/// let y = dlhist::layers::upsample_nearest2d(&x, 4, 4)?;
/// assert_eq!(y.get(0)?.get(0)?.get(3)?.to_vec1::<f32>()?, vec![3., 3., 4., 4.]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn upsample_nearest2d(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let whole = x.rank() == 4 && {
        let (hi, wi) = (x.dims()[2], x.dims()[3]);
        hi > 0 && wi > 0 && h.is_multiple_of(hi) && w.is_multiple_of(wi)
    };
    if whole && fast::applies(&[x]) {
        // Fused (crate::fast::upsample_nearest2d): the backward pass sums each block directly, where candle runs
        // a grouped convolution with a kernel of ones.
        return fast::upsample_nearest2d(x, h, w);
    }
    if whole {
        // Plain: y[n, c, i, j] = x[n, c, ⌊i/s_h⌋, ⌊j/s_w⌋], each pixel broadcast over a new s_h × s_w block.
        // (candle's own upsample_nearest2d computes the same values, but in candle 0.11 its backward pass
        // replaces the input's other gradients instead of adding to them; a broadcast's backward sums.)
        let (n, c, hi, wi) = x.dims4()?;
        return x.reshape((n, c, hi, 1, wi, 1))?.broadcast_as((n, c, hi, h / hi, wi, w / wi))?.reshape((n, c, h, w));
    }
    // Fractional factors (no gradient in candle 0.11).
    x.upsample_nearest2d(h, w)
}

/// A U-Net decoder's input: `x [N, Cx, H, W]` upsampled to the skip connection's `[N, Cs, h, w]` and concatenated
/// before it along the channels, `[N, Cx + Cs, h, w]` (whole factors: `h`, `w` multiples of `H`, `W`).
///
/// ```
/// use dlhist::prelude::*;
/// let x = Tensor::ones((2, 8, 7, 7), DType::F32, &Device::Cpu)?;
/// let skip = Tensor::zeros((2, 4, 14, 14), DType::F32, &Device::Cpu)?;
/// assert_eq!(dlhist::layers::upsample_concat(&x, &skip)?.dims(), &[2, 12, 14, 14]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn upsample_concat(x: &Tensor, skip: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = skip.dims4()?;
    // The fused op takes whole factors only, as fast::upsample_nearest2d does; other sizes go the plain way below.
    let whole = x.rank() == 4 && x.dims()[2] > 0 && x.dims()[3] > 0 && h % x.dims()[2] == 0 && w % x.dims()[3] == 0;
    if whole && fast::applies(&[x, skip]) {
        // Fused (crate::fast::upsample_concat): the upsampled planes are written straight into the concatenation,
        // and its backward sums x's blocks and copies the skip's planes out of the gradient directly.
        return fast::upsample_concat(x, skip);
    }
    // Plain: [up(x), skip] along the channels, up(x) of the skip's height and width.
    Tensor::cat(&[&upsample_nearest2d(x, h, w)?, skip], 1)
}

/// Max pooling as a layer: window, stride and padding (padded positions never win).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::MaxPool2d;
/// let x = Tensor::ones((1, 1, 28, 28), DType::F32, &Device::Cpu)?;
/// // (3, 2, 1) halves an even side with overlapping windows (28 → 14), exactly as (2, 2, 0) does.
/// assert_eq!(MaxPool2d::with_stride(3, 2, 1).forward(&x)?.dims(), &[1, 1, 14, 14]);
/// assert_eq!(MaxPool2d::new(2).forward(&x)?.dims(), &[1, 1, 14, 14]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2d {
    /// Window size.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Positions added on every side (they never win).
    pub padding: usize,
}

impl MaxPool2d {
    /// Non-overlapping pooling (`stride = kernel`), as in LeNet.
    pub fn new(kernel: usize) -> Self {
        MaxPool2d { kernel, stride: kernel, padding: 0 }
    }

    /// Pooling with any stride and padding; `stride < kernel` overlaps, as in AlexNet (3, 2).
    pub fn with_stride(kernel: usize, stride: usize, padding: usize) -> Self {
        MaxPool2d { kernel, stride, padding }
    }

    /// The output side for an input side `n`.
    pub fn out_size(&self, n: usize) -> usize {
        (n + 2 * self.padding - self.kernel) / self.stride + 1
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // There is no plain candle composition to fall back to: candle 0.11's max-pool has no backward for
        // overlapping windows, scales its gradient by 1/k² for the others, and misroutes it when a side is not a
        // multiple of the stride. The op in crate::fast is the definition, tested loop by loop against it and
        // against finite differences; it runs on both paths (and on every dtype and device).
        fast::max_pool2d(x, self.kernel, self.stride, self.padding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Both paths: the same values and gradients, and the gradient adds to the input's other gradients.
    #[test]
    fn upsampling_paths_agree_and_add_their_gradients() -> Result<()> {
        let x = Var::from_tensor(&fast::testing::randn(&[2, 3, 7, 5], 1))?;
        let run = || upsample_nearest2d(&x, 14, 10);
        let (fused, plain) = (run()?, fast::plain(run)?);
        fast::testing::assert_same_values_and_grads(&fused, &plain, &[(&x, "x")], "upsampling")?;
        let x = Var::from_tensor(&Tensor::ones((1, 1, 2, 2), DType::F32, &Device::Cpu)?)?;
        for fused in [true, false] {
            let loss = || (upsample_nearest2d(&x, 4, 4)?.sum_all()? + (x.as_tensor() * 3.0)?.sum_all()?)?.backward();
            let grads = if fused { loss()? } else { fast::plain(loss)? };
            assert_eq!(grads.get(&x).unwrap().flatten_all()?.to_vec1::<f32>()?, vec![7f32; 4], "fused {fused}");
        }
        Ok(())
    }
}
