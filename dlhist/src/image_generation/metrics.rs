//! # Judging generated images: Fréchet distance, inception score, mode coverage, precision and recall
//!
//! M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler and S. Hochreiter, "GANs Trained by a Two Time-Scale Update
//! Rule Converge to a Local Nash Equilibrium", NeurIPS 2017. <https://arxiv.org/abs/1706.08500> (the Fréchet
//! Inception Distance, FID)
//! T. Salimans, I. Goodfellow, W. Zaremba, V. Cheung, A. Radford and X. Chen, "Improved Techniques for Training
//! GANs", NeurIPS 2016. <https://arxiv.org/abs/1606.03498> (the inception score)
//! T. Kynkäänniemi, T. Karras, S. Laine, J. Lehtinen and T. Aila, "Improved Precision and Recall Metric for
//! Assessing Generative Models", NeurIPS 2019. <https://arxiv.org/abs/1904.06991>
//!
//! A generative model is judged by its samples, and every measure here reads them through a trained classifier's
//! eyes: its features (the layer before the class scores) and its class probabilities. The papers use Inception v3
//! trained on ImageNet; section 05 uses a Fashion-MNIST classifier, so its numbers are **not** comparable with
//! published FIDs or inception scores, only with each other.
//!
//! **Fréchet distance.** Fit a Gaussian to each set of features (mean `μ`, covariance `Σ`) and take the Fréchet
//! (2-Wasserstein) distance between the two Gaussians:
//!
//! ```text
//! d² = ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½)
//! ```
//!
//! `Σ_a Σ_b` is not symmetric, but it is similar to `Σ_a^½ Σ_b Σ_a^½`, which is symmetric and positive
//! semi-definite, so `tr (Σ_a Σ_b)^½ = Σ_i √λ_i` over the eigenvalues of the latter: two symmetric
//! eigendecompositions (nalgebra's), no general matrix square root. Lower is better; 0 for identical statistics.
//!
//! **Inception score.** `exp(E_x KL(p(y | x) ‖ p(y)))`: high when each sample is confidently one class and the
//! classes are used evenly; between 1 and the number of classes.
//!
//! **Precision and recall** (Kynkäänniemi et al.). Around every real feature vector put a ball reaching its `k`-th
//! nearest real neighbour; their union estimates the manifold of real data. Precision is the share of generated
//! samples inside it (are the samples realistic?); recall swaps the roles (is the real data covered?).
//!
//! **Parzen-window log-likelihood** (how the GAN paper of 2014 reported its numbers, after Breuleux et al. 2011).
//! Put a Gaussian of width `σ` on each of `M` samples and read the held-out data's log-density under the mixture:
//!
//! ```text
//! log p̂(x) = logsumexp_i( −‖x − s_i‖² / 2σ² ) − log M − (D/2) log(2πσ²)
//! ```
//!
//! with `σ` chosen on validation data. In `D` = 784 dimensions a few thousand samples cover nothing, and the number
//! says more about `σ` and pixel-space distances than about the model: the GAN notebook shows how it misleads.

use candle_core::{DType, Tensor};
use nalgebra::{DMatrix, DVector, SymmetricEigen};

use crate::error::{Error, Result};

/// The mean and covariance of a set of feature vectors: what the Fréchet distance compares.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureStats {
    /// The mean feature vector, `[D]`.
    pub mean: DVector<f64>,
    /// The covariance, `[D, D]`, with the unbiased `n − 1` denominator.
    pub cov: DMatrix<f64>,
    /// How many vectors they were computed from.
    pub count: usize,
}

impl FeatureStats {
    /// The statistics of `features`, `[N, D]` with `N ≥ 2` (computed in f64).
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::image_generation::metrics::FeatureStats;
    /// let f = Tensor::new(&[[1f32, 0.0], [3.0, 2.0]], &Device::Cpu)?;
    /// let s = FeatureStats::of(&f)?;
    /// assert_eq!((s.mean[0], s.mean[1]), (2.0, 1.0));
    /// assert_eq!(s.cov[(0, 1)], 2.0); // ((1 − 2)(0 − 1) + (3 − 2)(2 − 1)) / (2 − 1)
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn of(features: &Tensor) -> Result<Self> {
        let (n, d) = features.dims2()?;
        if n < 2 {
            return Err(Error::Invalid(format!("FeatureStats: {n} feature vectors of size {d}; a covariance needs 2")));
        }
        let rows = features.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let x = DMatrix::from_fn(n, d, |i, j| rows[i][j]);
        let mean = x.row_mean().transpose();
        let centred = DMatrix::from_fn(n, d, |i, j| x[(i, j)] - mean[j]);
        let cov = centred.transpose() * &centred / (n as f64 - 1.0);
        Ok(FeatureStats { mean, cov, count: n })
    }
}

/// The symmetric square root of a symmetric positive semi-definite matrix, from its eigendecomposition
/// (eigenvalues below 0 by round-off are taken as 0).
fn sqrt_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let eig = SymmetricEigen::new(m.clone());
    let roots = eig.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose()
}

/// The Fréchet distance (the module docs' `d²`) between Gaussians with the statistics `a` and `b`.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64> {
    if a.mean.len() != b.mean.len() {
        return Err(Error::Invalid(format!(
            "frechet_distance: features of size {} and {} (need the same)",
            a.mean.len(),
            b.mean.len()
        )));
    }
    let root_a = sqrt_psd(&a.cov);
    // Σ_a^½ Σ_b Σ_a^½ is symmetric in exact arithmetic; symmetrize away the round-off before decomposing it.
    let inner = &root_a * &b.cov * &root_a;
    let inner = (&inner + inner.transpose()) * 0.5;
    let cross: f64 = SymmetricEigen::new(inner).eigenvalues.iter().map(|l| l.max(0.0).sqrt()).sum();
    Ok((&a.mean - &b.mean).norm_squared() + a.cov.trace() + b.cov.trace() - 2.0 * cross)
}

/// The inception score of class probabilities `probs` `[N, K]` (rows summing to 1): `exp(mean_x KL(p(y|x) ‖ p(y)))`
/// with `p(y)` the mean row.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::image_generation::metrics::inception_score;
/// // Confident and even over 2 classes: the maximum, 2. All alike: the minimum, 1.
/// let even = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &Device::Cpu)?;
/// assert!((inception_score(&even)? - 2.0).abs() < 1e-9);
/// let alike = Tensor::new(&[[0.7f32, 0.3], [0.7, 0.3]], &Device::Cpu)?;
/// assert!((inception_score(&alike)? - 1.0).abs() < 1e-9);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn inception_score(probs: &Tensor) -> Result<f64> {
    let (n, k) = probs.dims2()?;
    if n == 0 || k == 0 {
        return Err(Error::Invalid(format!("inception_score: probabilities {:?} are empty", probs.dims())));
    }
    let p = probs.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let marginal: Vec<f64> = (0..k).map(|j| p.iter().map(|r| r[j]).sum::<f64>() / n as f64).collect();
    // 0 · log 0 = 0: a class a sample gives no probability adds nothing to its divergence.
    let kl: f64 = p
        .iter()
        .map(|r| r.iter().zip(&marginal).filter(|(q, _)| **q > 0.0).map(|(q, m)| q * (q / m).ln()).sum::<f64>())
        .sum::<f64>()
        / n as f64;
    Ok(kl.exp())
}

/// The share of samples the classifier assigns to each class (argmax of `probs` `[N, K]`): the class histogram of a
/// set of samples. A model that covers every mode gives roughly the data's own histogram (1/K each for
/// Fashion-MNIST).
pub fn class_histogram(probs: &Tensor) -> Result<Vec<f64>> {
    let (n, k) = probs.dims2()?;
    if n == 0 {
        return Err(Error::Invalid("class_histogram: no samples".into()));
    }
    let labels = probs.argmax(1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    let mut h = vec![0.0; k];
    for l in labels {
        h[l as usize] += 1.0 / n as f64;
    }
    Ok(h)
}

/// Squared Euclidean distances between the rows of `a` `[N, D]` and of `b` `[M, D]`, as an `N × M` matrix.
fn squared_distances(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    a.iter().map(|x| b.iter().map(|y| x.iter().zip(y).map(|(p, q)| (p - q) * (p - q)).sum()).collect()).collect()
}

/// For each row of `points`, the squared distance to its `k`-th nearest other row.
fn kth_neighbour_radii(points: &[Vec<f64>], k: usize) -> Vec<f64> {
    squared_distances(points, points)
        .into_iter()
        .map(|mut row| {
            // The row's distance to itself is 0 and sorts first; the k-th neighbour is then at index k.
            row.sort_by(f64::total_cmp);
            row[k]
        })
        .collect()
}

/// The share of `queries` inside the union of balls around `points` with squared radii `radii`.
fn inside_share(queries: &[Vec<f64>], points: &[Vec<f64>], radii: &[f64]) -> f64 {
    let d = squared_distances(queries, points);
    d.iter().filter(|row| row.iter().zip(radii).any(|(x, r)| x <= r)).count() as f64 / queries.len() as f64
}

/// Kynkäänniemi et al.'s precision and recall of generated features `fake` `[M, D]` against real features `real`
/// `[N, D]`, with `k`-nearest-neighbour balls (the paper uses `k = 3`). Returns `(precision, recall)`, each in
/// [0, 1]. Cost `O((N + M)² D)`: meant for a few thousand samples.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::image_generation::metrics::precision_recall;
/// let dev = Device::Cpu;
/// // Real points on a line at 0..5; the fakes sit on the first half only.
/// let real = Tensor::new(&[[0f32], [1.0], [2.0], [3.0], [4.0], [5.0]], &dev)?;
/// let fake = Tensor::new(&[[0.5f32], [1.0], [1.5], [2.0]], &dev)?;
/// let (precision, recall) = precision_recall(&real, &fake, 1)?;
/// assert_eq!(precision, 1.0); // every fake is near real data
/// assert_eq!(recall, 0.5); // 0, 1, 2 lie in the fakes' balls (radius 0.5); 3, 4, 5 do not
/// // One far outlier among the fakes lowers precision, and its ball (reaching its nearest neighbour, 98 away)
/// // swallows everything: recall jumps to 1. Outliers inflate the estimated manifolds.
/// let fake = Tensor::new(&[[0.5f32], [1.0], [1.5], [2.0], [100.0]], &dev)?;
/// assert_eq!(precision_recall(&real, &fake, 1)?, (0.8, 1.0));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn precision_recall(real: &Tensor, fake: &Tensor, k: usize) -> Result<(f64, f64)> {
    let (n, d) = real.dims2()?;
    let (m, d2) = fake.dims2()?;
    if d != d2 || k == 0 || k >= n.min(m) {
        return Err(Error::Invalid(format!(
            "precision_recall: real {:?} and fake {:?} must have one feature size, and k = {k} must be in 1..{}",
            real.dims(),
            fake.dims(),
            n.min(m)
        )));
    }
    let real = real.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let fake = fake.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let precision = inside_share(&fake, &real, &kth_neighbour_radii(&real, k));
    let recall = inside_share(&real, &fake, &kth_neighbour_radii(&fake, k));
    Ok((precision, recall))
}

/// The mean, over the rows of `from` `[N, D]`, of the Euclidean distance to the nearest row of `to` `[M, D]`:
/// how far samples lie from the data (`from` = samples), or how far the data lie from any sample (`from` = data,
/// which grows when the samples miss part of the data). For low-dimensional toy data, where it needs no features.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::image_generation::metrics::mean_nearest_distance;
/// let a = Tensor::new(&[[0f32, 0.], [3., 4.]], &Device::Cpu)?;
/// let b = Tensor::new(&[[0f32, 0.]], &Device::Cpu)?;
/// assert_eq!(mean_nearest_distance(&a, &b)?, 2.5); // 0 and 5
/// assert_eq!(mean_nearest_distance(&b, &a)?, 0.0);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn mean_nearest_distance(from: &Tensor, to: &Tensor) -> Result<f64> {
    let (n, d) = from.dims2()?;
    let (m, d2) = to.dims2()?;
    if d != d2 || n == 0 || m == 0 {
        return Err(Error::Invalid(format!(
            "mean_nearest_distance: {:?} and {:?} must be non-empty with one feature size",
            from.dims(),
            to.dims()
        )));
    }
    let to_sq = to.sqr()?.sum_keepdim(1)?.t()?;
    let mut total = 0.0;
    for start in (0..n).step_by(1000) {
        let x = from.narrow(0, start, (n - start).min(1000))?;
        let d2 = x.sqr()?.sum_keepdim(1)?.broadcast_add(&to_sq)?.sub(&(x.matmul(&to.t()?)? * 2.0)?)?.relu()?;
        let mins = d2.min(1)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
        total += mins.iter().map(|v| v.sqrt()).sum::<f64>();
    }
    Ok(total / n as f64)
}

/// A Parzen-window estimate: the width chosen on validation data, and the mean log-density (nats per image) of
/// validation and test data under it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parzen {
    /// The window width `σ` that maximized the validation log-likelihood.
    pub sigma: f64,
    /// The mean log-density of the validation points at that width.
    pub validation: f64,
    /// The mean log-density of the test points at that width.
    pub test: f64,
}

/// The mean Parzen-window log-density of `points` `[N, D]` under Gaussians of width `sigma` on `samples` `[M, D]`
/// (module docs), for each width in `sigmas`.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::image_generation::metrics::parzen_log_likelihood;
/// // One sample at 0 in one dimension: the log-density of the point 0 is that of N(0, σ²) at its mean.
/// let s = Tensor::new(&[[0f32]], &Device::Cpu)?;
/// let ll = parzen_log_likelihood(&s, &s, &[1.0])?[0];
/// assert!((ll + 0.5 * (2.0 * std::f64::consts::PI).ln()).abs() < 1e-9);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn parzen_log_likelihood(samples: &Tensor, points: &Tensor, sigmas: &[f64]) -> Result<Vec<f64>> {
    let (m, d) = samples.dims2()?;
    let (n, d2) = points.dims2()?;
    if d != d2 || m == 0 || n == 0 || sigmas.iter().any(|&s| s.is_nan() || s <= 0.0) {
        return Err(Error::Invalid(format!(
            "parzen_log_likelihood: samples {:?} and points {:?} must be non-empty with one feature size, and every \
             width positive (got {sigmas:?})",
            samples.dims(),
            points.dims()
        )));
    }
    let s_sq = samples.sqr()?.sum_keepdim(1)?.t()?; // [1, M]
    let mut totals = vec![0.0; sigmas.len()];
    // 500 points at a time: the distance block is 500 × M floats.
    for start in (0..n).step_by(500) {
        let x = points.narrow(0, start, (n - start).min(500))?;
        // ‖x − s‖² = ‖x‖² + ‖s‖² − 2 x·s, clamped at 0 against rounding.
        let d2 = x.sqr()?.sum_keepdim(1)?.broadcast_add(&s_sq)?.sub(&(x.matmul(&samples.t()?)? * 2.0)?)?.relu()?;
        for row in d2.to_dtype(DType::F64)?.to_vec2::<f64>()? {
            for (total, &sigma) in totals.iter_mut().zip(sigmas) {
                let a: Vec<f64> = row.iter().map(|v| -v / (2.0 * sigma * sigma)).collect();
                let top = a.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = top + a.iter().map(|v| (v - top).exp()).sum::<f64>().ln();
                *total += lse - (m as f64).ln() - 0.5 * d as f64 * (2.0 * std::f64::consts::PI * sigma * sigma).ln();
            }
        }
    }
    Ok(totals.into_iter().map(|t| t / n as f64).collect())
}

/// The Parzen-window estimate as the GAN paper made it: the width from `sigmas` that gives `validation` the
/// highest log-likelihood under `samples`, then `test`'s log-likelihood at that width.
pub fn parzen_window(samples: &Tensor, validation: &Tensor, test: &Tensor, sigmas: &[f64]) -> Result<Parzen> {
    let val = parzen_log_likelihood(samples, validation, sigmas)?;
    let best = (0..sigmas.len()).max_by(|&a, &b| val[a].total_cmp(&val[b])).expect("at least one width");
    let sigma = sigmas[best];
    Ok(Parzen { sigma, validation: val[best], test: parzen_log_likelihood(samples, test, &[sigma])?[0] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// On two-dimensional Gaussian data the Parzen estimate with many samples approaches the true log-density, and
    /// the width chosen on validation data is neither the smallest nor the largest offered.
    #[test]
    fn parzen_recovers_a_low_dimensional_density() -> Result<()> {
        let mut rng = crate::rng::Rng::new(4);
        let dev = Device::Cpu;
        let samples = rng.normal_tensor((4000, 2), 0.0, 1.0, &dev)?;
        let val = rng.normal_tensor((500, 2), 0.0, 1.0, &dev)?;
        let test = rng.normal_tensor((2000, 2), 0.0, 1.0, &dev)?;
        let sigmas = [0.01, 0.03, 0.1, 0.2, 0.3, 1.0, 3.0];
        let p = parzen_window(&samples, &val, &test, &sigmas)?;
        // The exact mean log-density of N(0, I) in 2-D: −log(2π) − 1.
        let exact = -(2.0 * std::f64::consts::PI).ln() - 1.0;
        assert!((p.test - exact).abs() < 0.05, "{p:?} against {exact}");
        assert!(p.sigma > 0.01 && p.sigma < 3.0, "{p:?}");
        assert!(parzen_log_likelihood(&samples, &val, &[0.0]).is_err());
        Ok(())
    }

    /// The Fréchet distance against scipy's `linalg.sqrtm` on three pairs of feature sets
    /// (`fixtures/make_frechet.py` made `fixtures/frechet.json`).
    #[test]
    fn frechet_distance_matches_scipy() -> Result<()> {
        let fixture: serde_json::Value = serde_json::from_str(include_str!("fixtures/frechet.json"))
            .map_err(|e| Error::Invalid(format!("fixtures/frechet.json: {e}")))?;
        let cases = fixture["cases"].as_array().expect("a list of cases");
        assert_eq!(cases.len(), 3);
        let tensor = |v: &serde_json::Value| -> Result<Tensor> {
            let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).map_err(|e| Error::Invalid(e.to_string()))?;
            Ok(Tensor::new(rows, &Device::Cpu)?)
        };
        for case in cases {
            let (a, b) = (FeatureStats::of(&tensor(&case["a"])?)?, FeatureStats::of(&tensor(&case["b"])?)?);
            let got = frechet_distance(&a, &b)?;
            let want = case["distance"].as_f64().expect("a number");
            assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "{}: {got} against scipy's {want}", case["name"]);
            // Symmetric, and zero against itself.
            assert!((frechet_distance(&b, &a)? - got).abs() <= 1e-9 * got.max(1.0));
            assert!(frechet_distance(&a, &a)?.abs() < 1e-9);
        }
        Ok(())
    }

    /// A Gaussian's distance to a shifted copy is the squared shift, and the function refuses mismatched sizes.
    #[test]
    fn frechet_distance_of_a_shift_is_the_squared_shift() -> Result<()> {
        let mut rng = crate::rng::Rng::new(3);
        let x = rng.normal_tensor((500, 3), 0.0, 1.0, &Device::Cpu)?;
        let shifted = (&x + 2.0)?;
        let d = frechet_distance(&FeatureStats::of(&x)?, &FeatureStats::of(&shifted)?)?;
        assert!((d - 12.0).abs() < 1e-3, "{d}"); // 3 coordinates shifted by 2
        let other = FeatureStats::of(&rng.normal_tensor((10, 2), 0.0, 1.0, &Device::Cpu)?)?;
        assert!(frechet_distance(&FeatureStats::of(&x)?, &other).is_err());
        assert!(FeatureStats::of(&x.narrow(0, 0, 1)?).is_err());
        Ok(())
    }

    /// The histogram counts argmax classes; an empty set is refused.
    #[test]
    fn class_histogram_counts_argmaxes() -> Result<()> {
        let p = Tensor::new(&[[0.9f32, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], &Device::Cpu)?;
        assert_eq!(class_histogram(&p)?, vec![0.5, 0.25, 0.25]);
        assert!(class_histogram(&p.narrow(0, 0, 0)?).is_err());
        Ok(())
    }
}
