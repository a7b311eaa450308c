//! A generated cell-segmentation dataset, in the spirit of the U-Net paper's light-microscopy images.
//!
//! Each image holds a few elliptical "cells" of varying brightness and texture on a noisy background; some
//! cells touch. The target mask marks cell pixels, except a thin line of background where two cells touch,
//! so that a segmentation that merges touching cells is wrong along that line (the paper's Figure 3). The
//! weight map is the paper's equation 2 (see [`crate::deep_neural_networks::unet`]):
//! `w(x) = w_c(x) + w₀ exp(−(d₁ + d₂)² / 2σ²)` on background pixels, with `w_c` giving each class half of the
//! total weight of an image and `d₁`, `d₂` the distances to the nearest and second-nearest cell.

use candle_core::{Device, Tensor};

use super::Dataset;
use crate::rng::Rng;
use crate::{Error, Result};

/// How [`cells`] draws its images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CellsConfig {
    /// Image side in pixels.
    pub side: usize,
    /// Fewest and most cells per image.
    pub cells: (usize, usize),
    /// Smallest and largest ellipse semi-axis, in pixels.
    pub radius: (f32, f32),
    /// Probability that a new cell is placed touching an existing one.
    pub touch: f32,
    /// Standard deviation of the pixel noise.
    pub noise: f32,
    /// `w₀` of the border weight.
    pub w0: f32,
    /// `σ` of the border weight, in pixels.
    pub sigma: f32,
}

impl Default for CellsConfig {
    /// 48×48 images with 3-7 cells of semi-axes 4-8 px, half of them placed touching another.
    fn default() -> Self {
        CellsConfig { side: 48, cells: (3, 7), radius: (4.0, 8.0), touch: 0.5, noise: 0.08, w0: 10.0, sigma: 2.0 }
    }
}

/// Images, masks and weight maps from [`cells`].
#[derive(Debug, Clone)]
pub struct Cells {
    /// `[N, 1, S, S]` f32 images in about `[0, 1]`.
    pub images: Tensor,
    /// `[N, S, S]` u32: 1 for cell, 0 for background (including the lines between touching cells).
    pub masks: Tensor,
    /// `[N, S, S]` f32 loss weights (equation 2 of the paper).
    pub weights: Tensor,
    /// `[N, S, S]` u32: 1 on the background lines that separate touching cells.
    pub separations: Tensor,
}

impl Cells {
    /// As a [`Dataset`]: `x` the images, `y` `[N, 2, S, S]` f32 holding the mask (channel 0) and the weight
    /// map (channel 1), the layout [`crate::deep_neural_networks::WeightedPixelCrossEntropy`] expects.
    pub fn dataset(&self) -> Result<Dataset> {
        let y = Tensor::stack(&[&self.masks.to_dtype(candle_core::DType::F32)?, &self.weights], 1)?;
        Dataset::new(self.images.clone(), y)
    }
}

struct Ellipse {
    cy: f32,
    cx: f32,
    a: f32,
    b: f32,
    cos: f32,
    sin: f32,
    brightness: f32,
}

impl Ellipse {
    /// < 1 inside, 1 on the outline.
    fn level(&self, y: f32, x: f32) -> f32 {
        let (dy, dx) = (y - self.cy, x - self.cx);
        let u = dx * self.cos + dy * self.sin;
        let v = -dx * self.sin + dy * self.cos;
        (u / self.a).powi(2) + (v / self.b).powi(2)
    }
}

/// `n` generated images with their masks and weight maps, drawn from `rng`, on `dev`.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::data::{cells, CellsConfig};
/// let data = cells(4, &CellsConfig::default(), &mut Rng::new(0), &Device::Cpu)?;
/// assert_eq!(data.images.dims(), &[4, 1, 48, 48]);
/// assert_eq!(data.masks.dims(), &[4, 48, 48]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn cells(n: usize, cfg: &CellsConfig, rng: &mut Rng, dev: &Device) -> Result<Cells> {
    if cfg.side < 8
        || cfg.cells.0 == 0
        || cfg.cells.0 > cfg.cells.1
        || cfg.radius.0 <= 0.0
        || cfg.radius.0 > cfg.radius.1
    {
        return Err(Error::Invalid(format!(
            "cells: need side >= 8, 1 <= min cells <= max cells and 0 < min radius <= max radius; got {cfg:?}"
        )));
    }
    let s = cfg.side;
    let (mut images, mut masks, mut weights, mut seps) = (vec![], vec![], vec![], vec![]);
    for _ in 0..n {
        let (img, mask, w, sep) = one_image(cfg, rng);
        images.extend(img);
        masks.extend(mask);
        weights.extend(w);
        seps.extend(sep);
    }
    Ok(Cells {
        images: Tensor::from_vec(images, (n, 1, s, s), dev)?,
        masks: Tensor::from_vec(masks, (n, s, s), dev)?,
        weights: Tensor::from_vec(weights, (n, s, s), dev)?,
        separations: Tensor::from_vec(seps, (n, s, s), dev)?,
    })
}

fn one_image(cfg: &CellsConfig, rng: &mut Rng) -> (Vec<f32>, Vec<u32>, Vec<f32>, Vec<u32>) {
    let s = cfg.side;
    let k = cfg.cells.0 + rng.below(cfg.cells.1 - cfg.cells.0 + 1);
    let mut cells: Vec<Ellipse> = vec![];
    for _ in 0..k {
        let a = rng.uniform_in(cfg.radius.0, cfg.radius.1);
        let b = rng.uniform_in(cfg.radius.0, cfg.radius.1);
        let theta = rng.uniform_in(0.0, std::f32::consts::PI);
        let (cy, cx) = if !cells.is_empty() && rng.uniform() < cfg.touch {
            // Next to an existing cell, overlapping it a little: the overlap becomes their shared border.
            let other = &cells[rng.below(cells.len())];
            let dir = rng.uniform_in(0.0, 2.0 * std::f32::consts::PI);
            let dist = 0.8 * (other.a.min(other.b) + a.min(b)) + 0.4 * (other.a.max(other.b) - other.a.min(other.b));
            (other.cy + dist * dir.sin(), other.cx + dist * dir.cos())
        } else {
            (rng.uniform_in(0.0, s as f32), rng.uniform_in(0.0, s as f32))
        };
        let brightness = rng.uniform_in(0.55, 0.9);
        cells.push(Ellipse { cy, cx, a, b, cos: theta.cos(), sin: theta.sin(), brightness });
    }
    // Instance labels: a pixel inside several ellipses goes to the one it is deepest inside.
    let mut label = vec![0usize; s * s]; // 0 = background, i + 1 = cell i
    for y in 0..s {
        for x in 0..s {
            let mut best = (1.0f32, 0usize);
            for (i, c) in cells.iter().enumerate() {
                let l = c.level(y as f32, x as f32);
                if l < best.0 {
                    best = (l, i + 1);
                }
            }
            label[y * s + x] = best.1;
        }
    }
    // A cell pixel with a pixel of another cell among its 4 neighbours lies on a shared border: background.
    let mut sep = vec![0u32; s * s];
    for y in 0..s {
        for x in 0..s {
            let l = label[y * s + x];
            if l == 0 {
                continue;
            }
            let neighbours = [(y.wrapping_sub(1), x), (y + 1, x), (y, x.wrapping_sub(1)), (y, x + 1)];
            if neighbours.iter().any(|&(ny, nx)| ny < s && nx < s && label[ny * s + nx] != 0 && label[ny * s + nx] != l)
            {
                sep[y * s + x] = 1;
            }
        }
    }
    let mask: Vec<u32> = (0..s * s).map(|p| u32::from(label[p] != 0 && sep[p] == 0)).collect();
    // The image: textured cells, a faint dark line where cells touch, noise everywhere.
    let img: Vec<f32> = (0..s * s)
        .map(|p| {
            let base = match label[p] {
                0 => 0.15,
                l => cells[l - 1].brightness * (1.0 + 0.15 * rng.normal()),
            };
            let faint = if sep[p] == 1 { 0.85 } else { 1.0 };
            (base * faint + cfg.noise * rng.normal()).clamp(0.0, 1.0)
        })
        .collect();
    let weights = weight_map(&mask, &label, k, cfg);
    (img, mask, weights, sep)
}

/// Equation 2 of the U-Net paper on one image.
fn weight_map(mask: &[u32], label: &[usize], k: usize, cfg: &CellsConfig) -> Vec<f32> {
    let s = cfg.side;
    let fg = mask.iter().filter(|&&m| m == 1).count().max(1) as f32;
    let bg = (s * s) as f32 - fg;
    let (w_fg, w_bg) = ((s * s) as f32 / (2.0 * fg), (s * s) as f32 / (2.0 * bg.max(1.0)));
    // Each cell's pixels (those still labelled foreground), to measure distances from.
    let mut members: Vec<Vec<(f32, f32)>> = vec![vec![]; k];
    for p in 0..s * s {
        if mask[p] == 1 {
            members[label[p] - 1].push(((p / s) as f32, (p % s) as f32));
        }
    }
    // Only each cell's outline matters for the nearest distance from outside it.
    let outlines: Vec<Vec<(f32, f32)>> = members
        .iter()
        .map(|pts| {
            pts.iter()
                .copied()
                .filter(|&(y, x)| {
                    let (y, x) = (y as usize, x as usize);
                    [(y.wrapping_sub(1), x), (y + 1, x), (y, x.wrapping_sub(1)), (y, x + 1)]
                        .iter()
                        .any(|&(ny, nx)| ny >= s || nx >= s || mask[ny * s + nx] == 0)
                })
                .collect()
        })
        .filter(|o: &Vec<(f32, f32)>| !o.is_empty())
        .collect();
    (0..s * s)
        .map(|p| {
            if mask[p] == 1 {
                return w_fg;
            }
            let (y, x) = ((p / s) as f32, (p % s) as f32);
            let mut d = [f32::INFINITY, f32::INFINITY];
            for outline in &outlines {
                let dist = outline
                    .iter()
                    .map(|&(oy, ox)| ((oy - y).powi(2) + (ox - x).powi(2)).sqrt())
                    .fold(f32::INFINITY, f32::min);
                if dist < d[0] {
                    d = [dist, d[0]];
                } else if dist < d[1] {
                    d[1] = dist;
                }
            }
            let border = if d[1].is_finite() {
                cfg.w0 * (-(d[0] + d[1]).powi(2) / (2.0 * cfg.sigma.powi(2))).exp()
            } else {
                0.0
            };
            // Separation lines are background pixels between two close cells: the border term singles them out.
            w_bg + border
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_weights_and_separations_are_consistent() -> Result<()> {
        let cfg = CellsConfig::default();
        let data = cells(12, &cfg, &mut Rng::new(7), &crate::device::test_device())?;
        let masks: Vec<u32> = data.masks.flatten_all()?.to_vec1()?;
        let seps: Vec<u32> = data.separations.flatten_all()?.to_vec1()?;
        let w: Vec<f32> = data.weights.flatten_all()?.to_vec1()?;
        let img: Vec<f32> = data.images.flatten_all()?.to_vec1()?;
        let fg = masks.iter().filter(|&&m| m == 1).count() as f64 / masks.len() as f64;
        assert!((0.1..0.6).contains(&fg), "foreground share {fg}");
        let n_sep = seps.iter().filter(|&&v| v == 1).count();
        assert!(n_sep > 20, "only {n_sep} separation pixels in 12 images: touching cells are too rare");
        // Separation pixels are background and carry the largest weights.
        let mut sep_w = vec![];
        let mut far_bg_w = vec![];
        for i in 0..masks.len() {
            if seps[i] == 1 {
                assert_eq!(masks[i], 0);
                sep_w.push(w[i]);
            } else if masks[i] == 0 {
                far_bg_w.push(w[i]);
            }
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean(&sep_w) > 3.0 * mean(&far_bg_w), "{} vs {}", mean(&sep_w), mean(&far_bg_w));
        // Cells are brighter than the background on average.
        let (mut on, mut off) = (vec![], vec![]);
        for i in 0..masks.len() {
            if masks[i] == 1 {
                on.push(img[i])
            } else if seps[i] == 0 {
                off.push(img[i])
            }
        }
        assert!(mean(&on) > mean(&off) + 0.3);
        // Seeded.
        let again = cells(12, &cfg, &mut Rng::new(7), &crate::device::test_device())?;
        assert_eq!(again.images.flatten_all()?.to_vec1::<f32>()?, img);
        assert_eq!(data.dataset()?.y.dims(), &[12, 2, 48, 48]);
        assert!(
            cells(1, &CellsConfig { cells: (3, 2), ..cfg }, &mut Rng::new(0), &crate::device::test_device()).is_err()
        );
        Ok(())
    }
}
