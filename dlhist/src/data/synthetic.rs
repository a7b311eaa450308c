//! Seeded two-dimensional classification toys: two moons, spirals, Gaussian blobs.
//!
//! Small enough to train in a second and to plot whole, yet shaped so that a linear model
//! fails where a hidden layer succeeds (moons, spirals) — the point of the perceptron and
//! backpropagation notebooks. Every point is drawn from a [`Rng`], so the same seed gives the
//! same dataset on every run and machine. Each returns a [`Dataset`] with `x` f32 `[N, 2]` and
//! `y` u32 `[N]`; the classes are interleaved (sample `i` has class `i % classes`), so any
//! prefix (e.g. [`Dataset::take`]) stays balanced.

use std::f32::consts::PI;

use candle_core::{Device, Tensor};

use super::Dataset;
use crate::rng::Rng;
use crate::{Error, Result};

/// Packs interleaved points and labels into a dataset on `dev`.
fn pack(points: Vec<f32>, labels: Vec<u32>, dev: &Device) -> Result<Dataset> {
    let n = labels.len();
    Dataset::new(Tensor::from_vec(points, (n, 2), dev)?, Tensor::from_vec(labels, n, dev)?)
}

fn check_noise(name: &str, noise: f32) -> Result<()> {
    if noise.is_finite() && noise >= 0.0 {
        Ok(())
    } else {
        Err(Error::Invalid(format!("{name} must be a finite number >= 0 (a standard deviation), got {noise}")))
    }
}

/// Two interleaving half circles of radius 1, `n` points in all.
///
/// Class 0 lies on the upper half circle centred at the origin, `(cos t, sin t)`; class 1 on
/// the lower half circle centred at `(1, 0.5)`, `(1 - cos t, 0.5 - sin t)`, with `t` uniform in
/// `[0, pi]`. Each moon's tip reaches into the other's hollow, so no straight line separates
/// them. Gaussian noise of standard deviation `noise` is added to both coordinates (0.1 is a
/// mild, 0.3 a heavy overlap). Class 0 gets the extra point when `n` is odd.
///
/// ```
/// use dlhist::prelude::*;
/// let data = dlhist::data::two_moons(200, 0.1, &mut Rng::new(0), &Device::Cpu)?;
/// assert_eq!(data.x.dims(), &[200, 2]);
/// assert_eq!(data.y.to_vec1::<u32>()?.iter().filter(|&&c| c == 1).count(), 100);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn two_moons(n: usize, noise: f32, rng: &mut Rng, dev: &Device) -> Result<Dataset> {
    if n == 0 {
        return Err(Error::Invalid("two_moons needs n > 0 points".into()));
    }
    check_noise("two_moons noise", noise)?;
    let mut points = Vec::with_capacity(2 * n);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 2) as u32;
        let t = rng.uniform_in(0.0, PI);
        let (x, y) = if class == 0 { (t.cos(), t.sin()) } else { (1.0 - t.cos(), 0.5 - t.sin()) };
        points.push(x + noise * rng.normal());
        points.push(y + noise * rng.normal());
        labels.push(class);
    }
    pack(points, labels, dev)
}

/// `classes` spiral arms winding out of the origin, `n_per_class` points each.
///
/// Point `i` of arm `k` sits at radius `r = (i + 1) / n_per_class` (so the arm runs from near
/// the centre out to radius 1) and angle `2 pi k / classes + 1.5 pi r`: every arm makes three
/// quarters of a turn, and the arms start evenly spaced around the circle. Gaussian noise of
/// standard deviation `noise` is added to both coordinates (0.02 keeps the arms apart; 0.1
/// makes them touch near the centre).
///
/// ```
/// use dlhist::prelude::*;
/// let data = dlhist::data::spirals(100, 3, 0.02, &mut Rng::new(1), &Device::Cpu)?;
/// assert_eq!(data.len(), 300);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn spirals(n_per_class: usize, classes: usize, noise: f32, rng: &mut Rng, dev: &Device) -> Result<Dataset> {
    if n_per_class == 0 || classes == 0 {
        return Err(Error::Invalid(format!(
            "spirals needs at least one class and one point per class, got {classes} classes of {n_per_class}"
        )));
    }
    check_noise("spirals noise", noise)?;
    let mut points = Vec::with_capacity(2 * n_per_class * classes);
    let mut labels = Vec::with_capacity(n_per_class * classes);
    for i in 0..n_per_class {
        let r = (i + 1) as f32 / n_per_class as f32;
        for k in 0..classes {
            let angle = 2.0 * PI * k as f32 / classes as f32 + 1.5 * PI * r;
            points.push(r * angle.cos() + noise * rng.normal());
            points.push(r * angle.sin() + noise * rng.normal());
            labels.push(k as u32);
        }
    }
    pack(points, labels, dev)
}

/// Isotropic Gaussian clouds: `n_per_class` points around each of `centers` (class `k` around
/// `centers[k]`), each coordinate with standard deviation `std`. Well separated centres give a
/// linearly separable problem: the easy case a perceptron solves.
///
/// ```
/// use dlhist::prelude::*;
/// let data = dlhist::data::blobs(50, &[(-2.0, 0.0), (2.0, 0.0)], 0.5, &mut Rng::new(2), &Device::Cpu)?;
/// assert_eq!(data.y.dims(), &[100]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn blobs(n_per_class: usize, centers: &[(f32, f32)], std: f32, rng: &mut Rng, dev: &Device) -> Result<Dataset> {
    if n_per_class == 0 || centers.is_empty() {
        return Err(Error::Invalid(format!(
            "blobs needs at least one centre and one point per centre, got {} centres of {n_per_class}",
            centers.len()
        )));
    }
    check_noise("blobs std", std)?;
    let mut points = Vec::with_capacity(2 * n_per_class * centers.len());
    let mut labels = Vec::with_capacity(n_per_class * centers.len());
    for _ in 0..n_per_class {
        for (k, &(cx, cy)) in centers.iter().enumerate() {
            points.push(cx + std * rng.normal());
            points.push(cy + std * rng.normal());
            labels.push(k as u32);
        }
    }
    pack(points, labels, dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(d: &Dataset) -> (Vec<Vec<f32>>, Vec<u32>) {
        (d.x.to_vec2::<f32>().unwrap(), d.y.to_vec1::<u32>().unwrap())
    }

    fn histogram(labels: &[u32], classes: usize) -> Vec<usize> {
        let mut h = vec![0; classes];
        for &l in labels {
            h[l as usize] += 1;
        }
        h
    }

    #[test]
    fn two_moons_geometry_balance_and_seeding() {
        let dev = crate::device::test_device();
        let d = two_moons(101, 0.0, &mut Rng::new(4), &dev).unwrap();
        let (x, y) = rows(&d);
        assert_eq!(d.x.dims(), &[101, 2]);
        assert_eq!(histogram(&y, 2), vec![51, 50]);
        for (p, &c) in x.iter().zip(&y) {
            // Without noise every point lies on its moon: distance 1 from its centre, on the
            // right side of it.
            let (cx, cy, side) = if c == 0 { (0.0, 0.0, 1.0) } else { (1.0, 0.5, -1.0) };
            let r = ((p[0] - cx).powi(2) + (p[1] - cy).powi(2)).sqrt();
            assert!((r - 1.0).abs() < 1e-5, "radius {r}");
            assert!(side * (p[1] - cy) >= -1e-6);
        }
        let again = two_moons(101, 0.0, &mut Rng::new(4), &dev).unwrap();
        assert_eq!(rows(&again), (x.clone(), y));
        assert_ne!(rows(&two_moons(101, 0.0, &mut Rng::new(5), &dev).unwrap()).0, x);
        assert!(two_moons(10, -0.1, &mut Rng::new(0), &dev).is_err());
        assert!(two_moons(0, 0.1, &mut Rng::new(0), &dev).is_err());
    }

    #[test]
    fn spirals_shape_balance_and_radius() {
        let d = spirals(50, 3, 0.0, &mut Rng::new(0), &crate::device::test_device()).unwrap();
        let (x, y) = rows(&d);
        assert_eq!(d.x.dims(), &[150, 2]);
        assert_eq!(histogram(&y, 3), vec![50, 50, 50]);
        assert_eq!(&y[..6], &[0, 1, 2, 0, 1, 2]);
        // The last point of each arm is at radius 1, at its arm's final angle.
        let last = &x[147..];
        for (k, p) in last.iter().enumerate() {
            let angle = 2.0 * PI * k as f32 / 3.0 + 1.5 * PI;
            assert!((p[0] - angle.cos()).abs() < 1e-5 && (p[1] - angle.sin()).abs() < 1e-5, "{p:?}");
        }
        let noisy = spirals(50, 3, 0.05, &mut Rng::new(9), &crate::device::test_device()).unwrap();
        assert_eq!(rows(&noisy), rows(&spirals(50, 3, 0.05, &mut Rng::new(9), &crate::device::test_device()).unwrap()));
        assert_ne!(rows(&noisy).0, x);
        assert!(spirals(10, 0, 0.1, &mut Rng::new(0), &crate::device::test_device()).is_err());
    }

    #[test]
    fn blobs_centre_and_spread() {
        let centers = [(-3.0, 1.0), (4.0, -2.0)];
        let d = blobs(2000, &centers, 0.5, &mut Rng::new(8), &crate::device::test_device()).unwrap();
        let (x, y) = rows(&d);
        assert_eq!(histogram(&y, 2), vec![2000, 2000]);
        for (k, &(cx, cy)) in centers.iter().enumerate() {
            let pts: Vec<&Vec<f32>> = x.iter().zip(&y).filter(|(_, &c)| c as usize == k).map(|(p, _)| p).collect();
            let mx = pts.iter().map(|p| p[0]).sum::<f32>() / pts.len() as f32;
            let my = pts.iter().map(|p| p[1]).sum::<f32>() / pts.len() as f32;
            let sd = (pts.iter().map(|p| (p[0] - mx).powi(2)).sum::<f32>() / pts.len() as f32).sqrt();
            assert!((mx - cx).abs() < 0.05 && (my - cy).abs() < 0.05, "centre {mx},{my}");
            assert!((sd - 0.5).abs() < 0.03, "std {sd}");
        }
        assert!(blobs(5, &[], 1.0, &mut Rng::new(0), &crate::device::test_device()).is_err());
        assert!(blobs(5, &centers, f32::NAN, &mut Rng::new(0), &crate::device::test_device()).is_err());
    }
}
