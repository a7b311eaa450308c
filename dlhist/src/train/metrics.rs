//! Metrics: how good is a prediction?

use candle_core::{DType, Tensor, D};

use crate::{Error, Result};

/// Fraction of rows of `logits` (`[N, C]`, any scores) whose arg-max equals `targets` (`[N]` class ids).
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let logits = Tensor::new(&[[2f32, 1.], [0., 3.], [5., 4.]], &dev)?;
/// let y = Tensor::new(&[0u32, 1, 1], &dev)?;
/// assert!((dlhist::train::accuracy(&logits, &y)? - 2.0 / 3.0).abs() < 1e-9);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn accuracy(logits: &Tensor, targets: &Tensor) -> Result<f64> {
    let (n, _) = logits
        .dims2()
        .map_err(|_| Error::Invalid(format!("accuracy expects logits [N, C]; got {:?}", logits.dims())))?;
    if targets.dims() != [n] {
        return Err(Error::Invalid(format!(
            "accuracy: targets must be [N] = [{n}] class ids to match logits {:?}; got {:?}",
            logits.dims(),
            targets.dims()
        )));
    }
    if n == 0 {
        return Err(Error::Invalid("accuracy of an empty batch is undefined".into()));
    }
    let pred = logits.argmax(D::Minus1)?.to_dtype(DType::U32)?;
    let correct = pred.eq(&targets.to_dtype(DType::U32)?)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    Ok(f64::from(correct) / n as f64)
}

/// Number of correct arg-max predictions (for accumulating accuracy over batches).
pub fn correct_count(logits: &Tensor, targets: &Tensor) -> Result<usize> {
    let n = targets.dims().first().copied().unwrap_or(0);
    if n == 0 {
        return Ok(0);
    }
    Ok((accuracy(logits, targets)? * n as f64).round() as usize)
}

/// Mean squared error between two tensors of the same shape.
pub fn mean_squared_error(pred: &Tensor, target: &Tensor) -> Result<f64> {
    if pred.dims() != target.dims() {
        return Err(Error::Invalid(format!(
            "mean_squared_error: shapes differ, prediction {:?} vs target {:?}",
            pred.dims(),
            target.dims()
        )));
    }
    Ok(f64::from((pred - target)?.sqr()?.mean_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?))
}

/// Fraction of exact zeros in a tensor (activation sparsity, as measured for ReLU networks).
pub fn sparsity(t: &Tensor) -> Result<f64> {
    let n = t.elem_count();
    if n == 0 {
        return Err(Error::Invalid("sparsity of an empty tensor is undefined".into()));
    }
    let zeros = t.eq(0.0)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    Ok(f64::from(zeros) / n as f64)
}

/// A prediction's and a target's flat class ids, and their shared `[N, H, W]`.
type MaskPair = (Vec<u32>, Vec<u32>, usize, usize, usize);

/// Pixel masks `[N, H, W]` (class ids) of a prediction and a target, checked to match, as flat vectors.
fn masks(pred: &Tensor, target: &Tensor, who: &str) -> Result<MaskPair> {
    let (n, h, w) = target
        .dims3()
        .map_err(|_| Error::Invalid(format!("{who} expects class masks [N, H, W]; got target {:?}", target.dims())))?;
    if pred.dims() != target.dims() {
        return Err(Error::Invalid(format!(
            "{who}: prediction {:?} and target {:?} must have the same shape [N, H, W]",
            pred.dims(),
            target.dims()
        )));
    }
    let p = pred.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?;
    let t = target.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?;
    Ok((p, t, n, h, w))
}

/// The share of pixels where the predicted class equals the target (masks `[N, H, W]`).
pub fn pixel_accuracy(pred: &Tensor, target: &Tensor) -> Result<f64> {
    let (p, t, ..) = masks(pred, target, "pixel_accuracy")?;
    Ok(p.iter().zip(&t).filter(|(a, b)| a == b).count() as f64 / t.len().max(1) as f64)
}

/// Intersection over union of the pixels labelled `class` in `pred` and `target` (`[N, H, W]`), pooled over
/// the batch: `|P ∩ G| / |P ∪ G|` (1 when both are empty).
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let target = Tensor::new(&[[[1u32, 1, 0, 0]]], &dev)?;
/// let pred = Tensor::new(&[[[1u32, 0, 0, 1]]], &dev)?;
/// assert!((dlhist::train::iou(&pred, &target, 1)? - 1.0 / 3.0).abs() < 1e-12);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn iou(pred: &Tensor, target: &Tensor, class: u32) -> Result<f64> {
    let (p, t, ..) = masks(pred, target, "iou")?;
    Ok(ratio(p.iter().zip(&t).map(|(&a, &b)| (a == class, b == class))))
}

fn ratio(pairs: impl Iterator<Item = (bool, bool)>) -> f64 {
    let (mut inter, mut union) = (0usize, 0usize);
    for (a, b) in pairs {
        inter += usize::from(a && b);
        union += usize::from(a || b);
    }
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// The pixels of `class` within Chebyshev distance `d` of the region's outline: its pixels with a 4-neighbour
/// of another class (the image edge is not an outline).
fn boundary_band(mask: &[u32], class: u32, h: usize, w: usize, d: usize) -> Vec<bool> {
    let inside = |y: usize, x: usize| mask[y * w + x] == class;
    let mut outline = vec![];
    for y in 0..h {
        for x in 0..w {
            if inside(y, x) {
                let nb = [(y.wrapping_sub(1), x), (y + 1, x), (y, x.wrapping_sub(1)), (y, x + 1)];
                if nb.iter().any(|&(ny, nx)| ny < h && nx < w && !inside(ny, nx)) {
                    outline.push((y, x));
                }
            }
        }
    }
    let mut near = vec![false; h * w];
    for (y, x) in outline {
        for ny in y.saturating_sub(d)..(y + d + 1).min(h) {
            for nx in x.saturating_sub(d)..(x + d + 1).min(w) {
                near[ny * w + nx] = true;
            }
        }
    }
    (0..h * w).map(|p| near[p] && mask[p] == class).collect()
}

/// Boundary IoU (Cheng et al. 2021): the IoU of `class` restricted to the pixels within distance `d` of each
/// mask's own outline. Interior pixels, which every reasonable segmentation gets right, do not count, so it
/// measures how well the boundaries (and the thin gaps between touching objects) are drawn.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let target = Tensor::new(&[[[1u32, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]], &dev)?;
/// assert_eq!(dlhist::train::boundary_iou(&target, &target, 1, 1)?, 1.0);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn boundary_iou(pred: &Tensor, target: &Tensor, class: u32, d: usize) -> Result<f64> {
    let (p, t, n, h, w) = masks(pred, target, "boundary_iou")?;
    let plane = h * w;
    let mut pairs = Vec::with_capacity(p.len());
    for i in 0..n {
        let bp = boundary_band(&p[i * plane..(i + 1) * plane], class, h, w, d);
        let bt = boundary_band(&t[i * plane..(i + 1) * plane], class, h, w, d);
        pairs.extend(bp.into_iter().zip(bt));
    }
    Ok(ratio(pairs.into_iter()))
}

/// Spearman's rank correlation ρ of two paired samples: Pearson's correlation of their ranks, tied values
/// sharing the mean of the ranks they span (as `scipy.stats.spearmanr` does). Word-similarity benchmarks
/// (WordSim353, SimLex-999) score embeddings by ρ between model and human similarities.
///
/// Errors when the lengths differ, there are fewer than two pairs, or a side is constant (ρ is undefined).
///
/// ```
/// use dlhist::train::spearman;
/// assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0])? - 1.0).abs() < 1e-12);
/// assert!((spearman(&[1.0, 2.0, 3.0], &[9.0, 4.0, 1.0])? + 1.0).abs() < 1e-12);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    if x.len() != y.len() {
        return Err(Error::Invalid(format!(
            "spearman: the samples must pair up; got {} and {} values",
            x.len(),
            y.len()
        )));
    }
    if x.len() < 2 {
        return Err(Error::Invalid(format!("spearman needs at least 2 pairs; got {}", x.len())));
    }
    /// 1-based ranks, ties averaged.
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
                j += 1;
            }
            let mean_rank = (i + j) as f64 / 2.0 + 1.0; // positions i..=j share their mean rank
            for &k in &order[i..=j] {
                r[k] = mean_rank;
            }
            i = j + 1;
        }
        r
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return Err(Error::Invalid("spearman: one sample is constant, so ρ is undefined".into()));
    }
    Ok(sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_argmax_matches() -> Result<()> {
        let dev = crate::device::test_device();
        let logits = Tensor::new(&[[0.1f32, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]], &dev)?;
        let y = Tensor::new(&[1u32, 0, 0, 1], &dev)?;
        assert_eq!(accuracy(&logits, &y)?, 0.75);
        assert_eq!(correct_count(&logits, &y)?, 3);
        let y64 = Tensor::new(&[1i64, 0, 2, 1], &dev)?;
        assert_eq!(accuracy(&logits, &y64)?, 1.0);
        Ok(())
    }

    #[test]
    fn shape_errors_name_the_shapes() {
        let dev = crate::device::test_device();
        let logits = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
        let y = Tensor::zeros(5, DType::U32, &dev).unwrap();
        let e = accuracy(&logits, &y).unwrap_err().to_string();
        assert!(e.contains("[4, 3]") && e.contains("[5]"), "{e}");
        let e = mean_squared_error(&logits, &y).unwrap_err().to_string();
        assert!(e.contains("[4, 3]") && e.contains("[5]"), "{e}");
    }

    #[test]
    fn mse_and_sparsity() -> Result<()> {
        let dev = crate::device::test_device();
        let a = Tensor::new(&[1f32, 2., 3., 0.], &dev)?;
        let b = Tensor::new(&[1f32, 0., 3., 0.], &dev)?;
        assert_eq!(mean_squared_error(&a, &b)?, 1.0);
        assert_eq!(sparsity(&a)?, 0.25);
        assert_eq!(sparsity(&b)?, 0.5);
        Ok(())
    }

    #[test]
    fn segmentation_metrics() -> Result<()> {
        let dev = crate::device::test_device();
        // A 1×6×6 target: a 4×4 square of ones in the middle.
        let mut t = vec![0u32; 36];
        for y in 1..5 {
            for x in 1..5 {
                t[y * 6 + x] = 1;
            }
        }
        let target = Tensor::from_vec(t.clone(), (1, 6, 6), &dev)?;
        // The prediction misses one corner pixel.
        let mut p = t.clone();
        p[6 + 1] = 0;
        let pred = Tensor::from_vec(p, (1, 6, 6), &dev)?;
        assert!((pixel_accuracy(&pred, &target)? - 35.0 / 36.0).abs() < 1e-12);
        assert!((iou(&pred, &target, 1)? - 15.0 / 16.0).abs() < 1e-12);
        // With d = 0 only outline pixels count: 12 in the target, the same less the missing corner in the
        // prediction (its two neighbours were outline pixels already): 11 shared of 12.
        assert!((boundary_iou(&pred, &target, 1, 0)? - 11.0 / 12.0).abs() < 1e-12);
        // The interior (2×2) is inside every band at d = 1: boundary IoU equals IoU there.
        assert!((boundary_iou(&pred, &target, 1, 1)? - 15.0 / 16.0).abs() < 1e-12);
        assert!(iou(&pred, &Tensor::zeros((1, 6, 5), DType::U32, &dev)?, 1).is_err());
        Ok(())
    }

    #[test]
    fn spearman_averages_tied_ranks_like_scipy() {
        // scipy.stats.spearmanr(x, y).statistic computed with scipy 1.17.1: 0.36728395061728397.
        let x = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0];
        let y = [2.7, 1.8, 2.8, 1.8, 2.8, 4.5, 9.0, 4.5, 2.3, 5.3];
        assert!((spearman(&x, &y).unwrap() - 0.36728395061728397).abs() < 1e-12);
        assert!(spearman(&x, &y[..3]).unwrap_err().to_string().contains("pair up"));
        assert!(spearman(&[1.0, 1.0], &[1.0, 2.0]).unwrap_err().to_string().contains("constant"));
    }
}
