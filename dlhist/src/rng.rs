//! The seeded random generator every random thing in dlhist draws from.
//!
//! candle's CPU backend cannot be seeded (`Device::set_seed` errors on CPU), so `Tensor::randn`
//! gives different numbers on every run. dlhist therefore draws its own random numbers on the
//! host from ChaCha8 (a counter-based stream cipher: fast, portable, and the same sequence on
//! every platform for a given seed) and uploads them to the device. Same seed, same machine,
//! same numbers: weights, dropout masks and batch orders all come from here.
//!
//! Streams are *named*: [`Rng::fork`] derives an independent generator from a parent seed and a
//! label, so adding a layer or a dropout call does not shift the numbers every other consumer
//! sees.

use candle_core::{Device, Shape, Tensor};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::Result;

/// A seeded random generator (ChaCha8) with tensor-producing helpers.
///
/// ```
/// use dlhist::rng::Rng;
/// let mut a = Rng::new(42);
/// let mut b = Rng::new(42);
/// assert_eq!(a.uniform(), b.uniform());
/// assert_ne!(Rng::new(1).uniform(), Rng::new(2).uniform());
/// ```
#[derive(Debug, Clone)]
pub struct Rng {
    seed: u64,
    inner: ChaCha8Rng,
}

/// 64-bit FNV-1a: a fixed, documented hash, so stream names map to the same seeds forever
/// (std's `DefaultHasher` may change between Rust releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { seed, inner: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// The seed this generator was created from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// An independent generator for the stream `label`, derived from this generator's *seed*
    /// (not its current position): `Rng::new(s).fork("x")` is always the same stream.
    ///
    /// ```
    /// use dlhist::rng::Rng;
    /// let mut parent = Rng::new(7);
    /// let _ = parent.uniform(); // advancing the parent does not move its forks
    /// assert_eq!(parent.fork("dropout").uniform(), Rng::new(7).fork("dropout").uniform());
    /// assert_ne!(parent.fork("a").uniform(), parent.fork("b").uniform());
    /// ```
    pub fn fork(&self, label: &str) -> Rng {
        let mut bytes = self.seed.to_le_bytes().to_vec();
        bytes.extend_from_slice(label.as_bytes());
        Rng::new(fnv1a(&bytes))
    }

    /// A uniform sample in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        // 24 random mantissa bits: every value is exactly representable and < 1.
        (self.inner.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// A uniform sample in `[lo, hi)`.
    pub fn uniform_in(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// A standard normal sample (mean 0, standard deviation 1).
    pub fn normal(&mut self) -> f32 {
        StandardNormal.sample(&mut self.inner)
    }

    /// A uniform integer in `0..n` (`n > 0`).
    ///
    /// # Panics
    /// If `n == 0`.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0): the range 0..0 is empty");
        // Lemire's multiply-shift: unbiased enough for n << 2^64 and branch-free.
        ((u128::from(self.inner.next_u64()) * n as u128) >> 64) as usize
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// A random permutation of `0..n`.
    ///
    /// ```
    /// let mut p = dlhist::rng::Rng::new(0).permutation(10);
    /// p.sort();
    /// assert_eq!(p, (0..10).collect::<Vec<u32>>());
    /// ```
    pub fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut idx: Vec<u32> = (0..n as u32).collect();
        self.shuffle(&mut idx);
        idx
    }

    /// `n` uniform samples in `[lo, hi)`.
    pub fn uniform_vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform_in(lo, hi)).collect()
    }

    /// `n` normal samples with the given mean and standard deviation.
    pub fn normal_vec(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32> {
        (0..n).map(|_| mean + std * self.normal()).collect()
    }

    /// An f32 tensor of uniform samples in `[lo, hi)`.
    pub fn uniform_tensor(&mut self, shape: impl Into<Shape>, lo: f32, hi: f32, dev: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let data = self.uniform_vec(shape.elem_count(), lo, hi);
        Ok(Tensor::from_vec(data, shape, dev)?)
    }

    /// An f32 tensor of normal samples.
    ///
    /// ```
    /// use dlhist::rng::Rng;
    /// let dev = candle_core::Device::Cpu;
    /// let t = Rng::new(3).normal_tensor((1000,), 0.0, 2.0, &dev)?;
    /// let std = t.sqr()?.mean_all()?.to_scalar::<f32>()?.sqrt();
    /// assert!((std - 2.0).abs() < 0.2);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn normal_tensor(&mut self, shape: impl Into<Shape>, mean: f32, std: f32, dev: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let data = self.normal_vec(shape.elem_count(), mean, std);
        Ok(Tensor::from_vec(data, shape, dev)?)
    }

    /// An f32 tensor of independent Bernoulli draws: 1.0 with probability `p`, else 0.0.
    pub fn bernoulli_tensor(&mut self, shape: impl Into<Shape>, p: f32, dev: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let data: Vec<f32> = (0..shape.elem_count()).map(|_| if self.uniform() < p { 1.0 } else { 0.0 }).collect();
        Ok(Tensor::from_vec(data, shape, dev)?)
    }
}

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.inner.fill_bytes(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let a: Vec<f32> = Rng::new(5).uniform_vec(16, 0.0, 1.0);
        let b: Vec<f32> = Rng::new(5).uniform_vec(16, 0.0, 1.0);
        let c: Vec<f32> = Rng::new(6).uniform_vec(16, 0.0, 1.0);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|v| (0.0..1.0).contains(v)));
    }

    #[test]
    fn normal_moments_are_right() {
        let v = Rng::new(11).normal_vec(20_000, 1.5, 0.5);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
        assert!((mean - 1.5).abs() < 0.02, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.02, "std {}", var.sqrt());
    }

    #[test]
    fn below_covers_range_and_shuffle_is_a_permutation() {
        let mut r = Rng::new(1);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[r.below(5)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        let p = r.permutation(100);
        assert_ne!(p, (0..100).collect::<Vec<u32>>());
        let mut s = p.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<u32>>());
    }

    #[test]
    fn bernoulli_rate_matches_p() -> Result<()> {
        let t = Rng::new(2).bernoulli_tensor((10_000,), 0.3, &crate::device::test_device())?;
        let rate = t.mean_all()?.to_scalar::<f32>()?;
        assert!((rate - 0.3).abs() < 0.02, "rate {rate}");
        Ok(())
    }
}
