//! Data augmentation for images: random crops and horizontal flips.
//!
//! AlexNet (Krizhevsky et al. 2012, section 4.1) trained on random 224×224 crops of 256×256 images and their
//! mirror images, which multiplies the training set by 2048 and was, with dropout, their main defence against
//! overfitting. On 28×28 images the same idea is: pad by a few pixels, cut a random 28×28 window back out
//! (a random shift), and mirror half of the images.

use candle_core::{DType, Device, Tensor};

use crate::rng::Rng;
use crate::{Error, Result};

/// Random shift (zero-pad by `pad`, then crop a random window of the original size) and random horizontal
/// flip (with probability ½) for image batches `[N, C, H, W]`. [`crate::train::FitConfig::augment`] applies it
/// to every training batch.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::data::Augmentation;
/// let x = Tensor::arange(0f32, 16., &Device::Cpu)?.reshape((1, 1, 4, 4))?;
/// let aug = Augmentation { pad: 0, flip: true };
/// // With no padding the crop is the identity; the image is either unchanged or mirrored.
/// let y = aug.apply(&x, &mut Rng::new(1))?.flatten_all()?.to_vec1::<f32>()?;
/// let mirrored = vec![3., 2., 1., 0., 7., 6., 5., 4., 11., 10., 9., 8., 15., 14., 13., 12.];
/// assert!(y == x.flatten_all()?.to_vec1::<f32>()? || y == mirrored);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augmentation {
    /// Maximum shift in pixels, in each direction (0 = no cropping).
    pub pad: usize,
    /// Mirror each image left-right with probability ½.
    pub flip: bool,
}

impl Augmentation {
    /// Shifts of up to `pad` pixels and random mirroring.
    pub fn crop_and_flip(pad: usize) -> Self {
        Augmentation { pad, flip: true }
    }

    /// A randomly shifted and mirrored copy of the batch `x` (`[N, C, H, W]`), drawing from `rng`.
    pub fn apply(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4().map_err(|_| {
            Error::Invalid(format!("Augmentation expects an image batch [N, C, H, W]; got {:?}", x.dims()))
        })?;
        let dtype = x.dtype();
        let src: Vec<f32> = x.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let mut out = vec![0f32; src.len()];
        let plane = h * w;
        for i in 0..n {
            // Offsets in [-pad, pad]: the window's top-left corner in the padded image, minus pad.
            let dy = rng.below(2 * self.pad + 1) as isize - self.pad as isize;
            let dx = rng.below(2 * self.pad + 1) as isize - self.pad as isize;
            let mirror = self.flip && rng.uniform() < 0.5;
            for ch in 0..c {
                let base = (i * c + ch) * plane;
                for r in 0..h {
                    let sr = r as isize + dy;
                    if sr < 0 || sr >= h as isize {
                        continue; // a row of padding: stays zero
                    }
                    for col in 0..w {
                        let col_src = if mirror { w - 1 - col } else { col };
                        let sc = col_src as isize + dx;
                        if sc >= 0 && sc < w as isize {
                            out[base + r * w + col] = src[base + sr as usize * w + sc as usize];
                        }
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, (n, c, h, w), x.device())?.to_dtype(dtype)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_stay_within_pad_flips_happen_and_seeds_repeat() -> Result<()> {
        let dev = crate::device::test_device();
        // One bright pixel per image at (row 3, col 1) of a 6×6 image.
        let mut v = vec![0f32; 200 * 36];
        for i in 0..200 {
            v[i * 36 + 3 * 6 + 1] = 1.0;
        }
        let x = Tensor::from_vec(v, (200, 1, 6, 6), &dev)?;
        let aug = Augmentation::crop_and_flip(1);
        let y = aug.apply(&x, &mut Rng::new(5))?;
        let ys: Vec<f32> = y.flatten_all()?.to_vec1()?;
        let (mut mirrored, mut moved) = (0, 0);
        for i in 0..200 {
            let img = &ys[i * 36..(i + 1) * 36];
            let pos = img.iter().position(|&p| p == 1.0).expect("a shift of 1 keeps the pixel inside");
            let (r, c) = (pos / 6, pos % 6);
            assert!((2..=4).contains(&r), "row {r}");
            // Unmirrored the pixel lands in columns 0-2, mirrored (col 4) in columns 3-5.
            if c >= 3 {
                mirrored += 1;
            }
            if r != 3 {
                moved += 1;
            }
            assert_eq!(img.iter().sum::<f32>(), 1.0);
        }
        assert!((60..140).contains(&mirrored), "{mirrored} of 200 mirrored");
        assert!(moved > 80, "{moved} of 200 shifted vertically");
        let again: Vec<f32> = aug.apply(&x, &mut Rng::new(5))?.flatten_all()?.to_vec1()?;
        assert_eq!(ys, again);
        assert!(aug.apply(&Tensor::zeros((2, 3), DType::F32, &dev)?, &mut Rng::new(0)).is_err());
        Ok(())
    }
}
