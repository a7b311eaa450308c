//! Principal component analysis for 2-D maps of high-dimensional points (word vectors, encoder summaries): the
//! directions of largest variance, by power iteration on the covariance matrix with deflation.

use crate::{Error, Result};

/// The mean and the top principal directions of a set of points, fitted once and then used to project any
/// point (of the same dimension) onto them.
///
/// ```
/// use dlhist::plot::Pca;
/// // Points spread along (1, 1) far more than along (1, −1).
/// let rows = vec![vec![0.0, 0.0], vec![2.0, 2.1], vec![4.0, 3.9], vec![6.0, 6.0]];
/// let pca = Pca::fit(&rows, 1)?;
/// let d = &pca.components()[0];
/// assert!((d[0].abs() - d[1].abs()).abs() < 0.05);
/// assert_eq!(pca.project(&[3.0, 3.0])?.len(), 1);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    mean: Vec<f64>,
    components: Vec<Vec<f64>>,
}

impl Pca {
    /// The mean of `rows` and their top `k` principal directions (unit vectors, largest variance first). Errors
    /// on fewer than two rows, rows of different lengths, or `k` above the dimension.
    pub fn fit(rows: &[Vec<f64>], k: usize) -> Result<Pca> {
        let d = rows.first().map_or(0, Vec::len);
        if rows.len() < 2 || d == 0 || rows.iter().any(|r| r.len() != d) || k > d {
            return Err(Error::Invalid(format!(
                "Pca::fit needs at least 2 rows of one non-zero length and k <= that length; got {} rows of lengths \
                 {}..={} and k = {k}",
                rows.len(),
                rows.iter().map(Vec::len).min().unwrap_or(0),
                rows.iter().map(Vec::len).max().unwrap_or(0)
            )));
        }
        let mean: Vec<f64> = (0..d).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / rows.len() as f64).collect();
        let mut cov = vec![0f64; d * d];
        for r in rows {
            let c: Vec<f64> = r.iter().zip(&mean).map(|(v, m)| v - m).collect();
            for i in 0..d {
                for j in 0..d {
                    cov[i * d + j] += c[i] * c[j];
                }
            }
        }
        Ok(Pca { components: top_eigenvectors(&mut cov, d, k), mean })
    }

    /// The principal directions, largest variance first.
    pub fn components(&self) -> &[Vec<f64>] {
        &self.components
    }

    /// `row`'s coordinates along the principal directions, after subtracting the fitted mean.
    pub fn project(&self, row: &[f64]) -> Result<Vec<f64>> {
        if row.len() != self.mean.len() {
            return Err(Error::Invalid(format!(
                "Pca::project: a row of length {} against a fit of dimension {}",
                row.len(),
                self.mean.len()
            )));
        }
        Ok(self
            .components
            .iter()
            .map(|v| row.iter().zip(&self.mean).zip(v).map(|((x, m), w)| (x - m) * w).sum())
            .collect())
    }
}

/// The top `k` eigenvectors of the symmetric matrix `m` (`d × d`, row-major) by power iteration with deflation:
/// repeatedly multiply a start vector by `m` until it stops turning; that is the eigenvector of the largest
/// eigenvalue λ; subtract λ v vᵀ from `m` and repeat. The start vector is fixed, so the result is reproducible.
fn top_eigenvectors(m: &mut [f64], d: usize, k: usize) -> Vec<Vec<f64>> {
    let mut out = vec![];
    for e in 0..k {
        // A fixed start with every coordinate different, so it is not orthogonal to the top eigenvector by accident.
        let mut v: Vec<f64> = (0..d).map(|i| 1.0 + ((i * 7 + e * 3) % 11) as f64 / 10.0).collect();
        let mut lambda = 0.0;
        for _ in 0..1000 {
            let w: Vec<f64> = (0..d).map(|i| (0..d).map(|j| m[i * d + j] * v[j]).sum()).collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            let next: Vec<f64> = w.iter().map(|x| x / norm).collect();
            let change: f64 = next.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
            v = next;
            lambda = norm;
            if change < 1e-12 {
                break;
            }
        }
        for i in 0..d {
            for j in 0..d {
                m[i * d + j] -= lambda * v[i] * v[j];
            }
        }
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_iteration_finds_the_principal_axes() {
        // diag(5, 3, 1) rotated by 90° in the first two coordinates: eigenvectors e1 (λ 5) and e0 (λ 3).
        let mut m = vec![3.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 1.0];
        let v = top_eigenvectors(&mut m, 3, 2);
        assert!((v[0][1].abs() - 1.0).abs() < 1e-9, "{:?}", v[0]);
        assert!((v[1][0].abs() - 1.0).abs() < 1e-9, "{:?}", v[1]);
    }

    #[test]
    fn bad_shapes_are_clear_errors() {
        assert!(Pca::fit(&[vec![1.0, 2.0]], 1).is_err());
        assert!(Pca::fit(&[vec![1.0, 2.0], vec![1.0]], 1).unwrap_err().to_string().contains("lengths 1..=2"));
        let pca = Pca::fit(&[vec![1.0, 2.0], vec![2.0, 1.0]], 2).unwrap();
        assert!(pca.project(&[1.0]).unwrap_err().to_string().contains("dimension 2"));
    }
}
