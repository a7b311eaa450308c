//! Comparing training runs over seeds: a summary of one variant's numbers, and the paired t-test that says whether
//! two variants differ by more than the seed-to-seed noise.
//!
//! A seed fixes a run's initial weights and batch order, so two variants trained with the same seeds form pairs:
//! `a[i]` and `b[i]` saw the same start and the same data. The differences `d_i = a[i] − b[i]` remove what the seed
//! does to both, and their mean over `n` seeds, divided by its standard error, is the paired t statistic
//!
//! ```text
//! t = mean(d) / (sd(d) / √n),        sd with the n − 1 divisor
//! ```
//!
//! If the two variants were equally good (and the differences roughly normal), `t` would follow Student's t
//! distribution with `n − 1` degrees of freedom; `|t|` above its 97.5% quantile is a difference that a two-sided test
//! at the 5% level calls significant. With three seeds that quantile is 4.30, with seven 2.45: few seeds demand a
//! large, consistent difference.

use crate::{Error, Result};

/// The 97.5% quantiles of Student's t distribution for 1 to 30 degrees of freedom, as
/// `scipy.stats.t.ppf(0.975, df)` gives them, to 4 decimals.
const T_975: [f64; 30] = [
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788, 2.1604, 2.1448,
    2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484,
    2.0452, 2.0423,
];

/// The 97.5% quantile of the standard normal distribution.
const Z_975: f64 = 1.959_963_984_540_054;

/// The 97.5% quantile of Student's t distribution with `df` degrees of freedom: the critical value of a two-sided
/// test at the 5% level.
///
/// Up to 30 degrees of freedom from a table (scipy's values, 4 decimals); beyond, from the Cornish-Fisher expansion
/// around the normal quantile, `z + (z³ + z)/(4ν) + (5z⁵ + 16z³ + 3z)/(96ν²)`, within 1e-4 of scipy's there.
///
/// ```
/// use dlhist::train::t_critical_975;
/// assert_eq!(t_critical_975(6)?, 2.4469);
/// assert!((t_critical_975(40)? - 2.021075).abs() < 1e-4);
/// assert!(t_critical_975(0).is_err());
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn t_critical_975(df: usize) -> Result<f64> {
    match df {
        0 => {
            Err(Error::Invalid("a t-test needs at least one degree of freedom: compare at least two seeds".to_string()))
        }
        1..=30 => Ok(T_975[df - 1]),
        _ => {
            let (z, v) = (Z_975, df as f64);
            Ok(z + (z.powi(3) + z) / (4.0 * v) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * v * v))
        }
    }
}

/// Mean, spread and range of one quantity over runs, typically one value per seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// How many values.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation (divided by `n − 1`); NaN for a single value.
    pub sd: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// The middle value (the mean of the two middle ones for an even count): with few seeds, robust to one
    /// run that went astray. NaN when a value is NaN.
    pub median: f64,
}

impl Summary {
    /// The summary of `values`. An empty slice is an error; a NaN or infinite value (a diverged run, say) makes the
    /// mean and spread NaN or infinite, as it should: such a variant did not work on every seed.
    ///
    /// ```
    /// use dlhist::train::Summary;
    /// let s = Summary::of(&[1.0, 2.0, 4.0])?;
    /// assert_eq!((s.n, s.min, s.max), (3, 1.0, 4.0));
    /// assert!((s.mean - 7.0 / 3.0).abs() < 1e-12);
    /// assert!((s.sd - (7.0f64 / 3.0).sqrt()).abs() < 1e-12);
    /// assert_eq!(s.median, 2.0);
    /// assert_eq!(Summary::of(&[4.0, 1.0, 3.0, 2.0])?.median, 2.5);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn of(values: &[f64]) -> Result<Summary> {
        if values.is_empty() {
            return Err(Error::Invalid("a summary needs at least one value (one run)".to_string()));
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        // The n − 1 divisor: the mean was estimated from the same values.
        let sd = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            f64::NAN
        };
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let median = if values.iter().any(|v| v.is_nan()) {
            f64::NAN
        } else {
            let mut sorted = values.to_vec();
            sorted.sort_by(f64::total_cmp);
            (sorted[(n - 1) / 2] + sorted[n / 2]) / 2.0
        };
        Ok(Summary { n, mean, sd, min, max, median })
    }
}

/// The paired comparison of two variants over the same seeds: the differences `a − b`, seed by seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Summary of the differences `a[i] − b[i]`.
    pub diff: Summary,
    /// For how many seeds `a[i] > b[i]`.
    pub a_above: usize,
    /// The paired t statistic, `diff.mean / (diff.sd / √n)`; ±∞ when every difference is the same non-zero value.
    pub t: f64,
    /// The 5% two-sided critical value for `n − 1` degrees of freedom ([`t_critical_975`]).
    pub t_critical: f64,
}

impl Paired {
    /// Compares `a` with `b`, where `a[i]` and `b[i]` come from the same seed. Both must have the same length, at
    /// least two.
    ///
    /// ```
    /// use dlhist::train::Paired;
    /// // Final losses of two variants on four seeds: b is lower on every one, by about 0.1.
    /// let p = Paired::of(&[0.52, 0.47, 0.55, 0.50], &[0.41, 0.38, 0.44, 0.41])?;
    /// assert_eq!(p.a_above, 4);
    /// assert!((p.diff.mean - 0.1).abs() < 1e-12);
    /// assert!(p.significant());
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn of(a: &[f64], b: &[f64]) -> Result<Paired> {
        if a.len() != b.len() {
            return Err(Error::Invalid(format!(
                "a paired comparison needs one value per seed on each side: got {} and {}",
                a.len(),
                b.len()
            )));
        }
        let t_critical = t_critical_975(a.len().saturating_sub(1))?;
        let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        let diff = Summary::of(&d)?;
        let a_above = d.iter().filter(|&&v| v > 0.0).count();
        let standard_error = diff.sd / (diff.n as f64).sqrt();
        let t = if standard_error > 0.0 {
            diff.mean / standard_error
        } else if diff.mean == 0.0 {
            0.0 // identical on every seed: no difference at all
        } else {
            diff.mean.signum() * f64::INFINITY
        };
        Ok(Paired { diff, a_above, t, t_critical })
    }

    /// Whether `|t|` reaches the 5% two-sided critical value: a difference larger than the seeds' noise explains.
    pub fn significant(&self) -> bool {
        self.t.abs() >= self.t_critical
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paired_t_matches_scipy() {
        // Seven seeds of the GELU notebook's final training losses (ReLU, GELU); scipy.stats.ttest_rel(a, b) gives
        // t = 3.37759215034924.
        let a = [0.3155, 0.2709, 0.2480, 0.2644, 0.2735, 0.2663, 0.2782];
        let b = [0.2349, 0.2412, 0.2209, 0.2393, 0.2550, 0.2370, 0.2748];
        let p = Paired::of(&a, &b).unwrap();
        assert!((p.t - 3.37759215034924).abs() < 1e-9, "{}", p.t);
        assert_eq!(p.t_critical, 2.4469);
        assert_eq!(p.a_above, 7);
        assert!(p.significant());
        let reversed = Paired::of(&b, &a).unwrap();
        assert_eq!(reversed.t, -p.t);
        assert!(reversed.significant());
        assert_eq!(reversed.a_above, 0);
    }

    #[test]
    fn critical_values_beyond_the_table_follow_scipy() {
        // scipy.stats.t.ppf(0.975, df) for df = 31, 40, 100.
        for (df, scipy) in [(31, 2.039513), (40, 2.021075), (100, 1.983972)] {
            let got = t_critical_975(df).unwrap();
            assert!((got - scipy).abs() < 1e-4, "df {df}: {got} against {scipy}");
        }
        assert_eq!(t_critical_975(30).unwrap(), 2.0423);
    }

    #[test]
    fn bad_input_says_what_to_do() {
        let msg = Paired::of(&[1.0, 2.0], &[1.0]).unwrap_err().to_string();
        assert!(msg.contains("got 2 and 1"), "{msg}");
        let msg = Paired::of(&[1.0], &[0.5]).unwrap_err().to_string();
        assert!(msg.contains("at least two seeds"), "{msg}");
        assert!(Summary::of(&[]).is_err());
    }

    #[test]
    fn constant_differences_and_single_values() {
        let p = Paired::of(&[1.0, 2.0, 3.0], &[0.5, 1.5, 2.5]).unwrap();
        assert_eq!(p.t, f64::INFINITY);
        assert!(p.significant());
        let same = Paired::of(&[1.0, 2.0], &[1.0, 2.0]).unwrap();
        assert_eq!(same.t, 0.0);
        assert!(!same.significant());
        let one = Summary::of(&[3.5]).unwrap();
        assert_eq!((one.mean, one.min, one.max), (3.5, 3.5, 3.5));
        assert!(one.sd.is_nan());
    }
}
