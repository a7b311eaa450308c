//! Branch-free `exp`, sigmoid and tanh that the compiler can vectorize, with run-time instruction-set dispatch.
//!
//! libm's `expf`/`tanhf` are scalar calls with branches: in the LSTM's gates (five of them per cell and step)
//! they took a third of a training step. The functions here are straight-line arithmetic (a Cody–Waite range
//! reduction and a short polynomial, selects instead of branches), so a loop over them compiles to SIMD code
//! when it is inlined into a function built for AVX2/AVX-512 ([`Simd`] picks that function at run time; no
//! `target-cpu=native` needed). Against std's f32 `exp`-based sigmoid and `tanh` they stay within 1e-6
//! relative error over the whole f32 range (the tests check a dense grid), and map ±∞ and NaN as std does.
//!
//! The `FMA` parameter says whether `a * b + c` may be one fused instruction: `mul_add` without hardware FMA is
//! a slow library call, so the portable fallback instantiates them with `FMA = false`.

/// The instruction set the fast paths' element-wise kernels are compiled for, detected once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Simd {
    /// AVX-512F with FMA (512-bit vectors).
    Avx512,
    /// AVX2 with FMA (256-bit vectors).
    Avx2,
    /// Whatever the build target allows (SSE2 on x86-64), no fused multiply-add.
    Generic,
}

impl Simd {
    /// The best level this CPU supports.
    pub(crate) fn detect() -> Simd {
        static LEVEL: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
                    return Simd::Avx512;
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    return Simd::Avx2;
                }
            }
            Simd::Generic
        })
    }

    /// Every level this CPU can run, best first (the tests run each).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Simd> {
        [Simd::Avx512, Simd::Avx2, Simd::Generic].into_iter().filter(|&s| s <= Simd::detect()).collect()
    }
}

impl PartialOrd for Simd {
    /// Higher levels compare greater (a CPU that runs one runs those below it).
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        let rank = |s: &Simd| match s {
            Simd::Generic => 0,
            Simd::Avx2 => 1,
            Simd::Avx512 => 2,
        };
        rank(self).partial_cmp(&rank(other))
    }
}

/// `a * b + c`, fused when `FMA`.
#[inline(always)]
fn fma<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `e^x` for the sigmoid and tanh below: inputs under −86 give a tiny positive number instead of `e^x` (both
/// callers add it to 1, where it vanishes), above ln(f32::MAX) give +∞, NaN gives NaN.
#[inline(always)]
fn exp<const FMA: bool>(x: f32) -> f32 {
    // Keeps n − 1 ≥ −125 below (so 2^(n−1) is a normal float) and n ≤ 128 above; `clamp` lets NaN through.
    let x = x.clamp(-86.0, 88.8);
    // n = round(x / ln 2) by the 1.5·2²³ trick: the sum's low mantissa bits hold n as an integer.
    const SHIFT: f32 = 12_582_912.0;
    let s = fma::<FMA>(x, std::f32::consts::LOG2_E, SHIFT);
    let n = s - SHIFT;
    // r = x − n ln 2 in two parts (Cody–Waite), |r| ≤ ln 2 / 2.
    let r = fma::<FMA>(n, -0.693_359_4, x);
    let r = fma::<FMA>(n, 2.121_944_4e-4, r);
    // e^r ≈ 1 + r + r² P(r), Cephes' expf minimax polynomial (about 1 ulp).
    let mut p = 1.987_569_1e-4;
    p = fma::<FMA>(p, r, 1.398_199_9e-3);
    p = fma::<FMA>(p, r, 8.333_452e-3);
    p = fma::<FMA>(p, r, 4.166_579_6e-2);
    p = fma::<FMA>(p, r, 1.666_666_5e-1);
    p = fma::<FMA>(p, r, 0.5);
    let er = fma::<FMA>(p, r * r, r) + 1.0;
    // 2^(n−1) from n's bits, then ·2: n = 128 (x near ln f32::MAX) has no float 2^n, but the product is exact
    // until it rounds to a finite value or overflows to ∞ as e^x would.
    let n_bits = s.to_bits().wrapping_sub(SHIFT.to_bits()) as i32;
    let scale = f32::from_bits(((n_bits + 126) as u32) << 23);
    er * scale * 2.0
}

/// The logistic function `1 / (1 + e^{−x})`.
#[inline(always)]
pub(crate) fn sigmoid<const FMA: bool>(x: f32) -> f32 {
    1.0 / (1.0 + exp::<FMA>(-x))
}

/// The hyperbolic tangent.
#[inline(always)]
pub(crate) fn tanh<const FMA: bool>(x: f32) -> f32 {
    let ax = x.abs();
    // Small |x|: Cephes' tanhf polynomial x + x³ P(x²), where 1 − 2/(e^{2x} + 1) would cancel.
    let z = x * x;
    let mut p = -5.704_988_7e-3;
    p = fma::<FMA>(p, z, 2.063_909e-2);
    p = fma::<FMA>(p, z, -5.373_971_6e-2);
    p = fma::<FMA>(p, z, 1.333_144_2e-1);
    p = fma::<FMA>(p, z, -3.333_328e-1);
    let small = fma::<FMA>(p * z, x, x);
    // Otherwise 1 − 2/(e^{2|x|} + 1) with x's sign: 1 for large |x| (e^{2|x|} = ∞), NaN for NaN.
    let large = (1.0 - 2.0 / (exp::<FMA>(2.0 * ax) + 1.0)).copysign(x);
    if ax < 0.625 {
        small
    } else {
        large
    }
}

/// Applies `f` to every element of `xs` in a function compiled for `simd` (the test helpers' dispatch; the
/// kernels that use the functions above inline them into their own loops).
#[cfg(test)]
pub(crate) fn map(simd: Simd, xs: &mut [f32], sigmoid_not_tanh: bool) {
    #[inline(always)]
    fn body<const FMA: bool>(xs: &mut [f32], sig: bool) {
        if sig {
            xs.iter_mut().for_each(|x| *x = sigmoid::<FMA>(*x));
        } else {
            xs.iter_mut().for_each(|x| *x = tanh::<FMA>(*x));
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn avx512(xs: &mut [f32], sig: bool) {
        body::<true>(xs, sig)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn avx2(xs: &mut [f32], sig: bool) {
        body::<true>(xs, sig)
    }
    match simd {
        // SAFETY: `simd` is one of Simd::available(), so the CPU has these features.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { avx512(xs, sigmoid_not_tanh) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2(xs, sigmoid_not_tanh) },
        _ => body::<false>(xs, sigmoid_not_tanh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense grid: every 2⁻¹⁰ on [−20, 20], then geometric steps out to ±f32::MAX, tiny and subnormal
    /// values, zeros and the special values.
    fn grid() -> Vec<f32> {
        let mut xs: Vec<f32> = (-20 * 1024..=20 * 1024).map(|i| i as f32 / 1024.0).collect();
        let mut v = 1e-30f32;
        while v.is_finite() {
            xs.extend([v, -v]);
            v *= 1.01;
        }
        xs.extend([f32::MAX, f32::MIN, f32::MIN_POSITIVE, 1e-45, -1e-45, 0.0, -0.0]);
        // Around the polynomial's switch-over and exp's clamps.
        for c in [0.625f32, 43.0, 44.0, 86.0, 87.0, 88.0, 88.72, 88.8, 89.0] {
            for k in -64..=64 {
                xs.extend([c + k as f32 * 1e-4 * c, -(c + k as f32 * 1e-4 * c)]);
            }
        }
        xs
    }

    fn check(name: &str, simd: Simd, sig: bool, reference: impl Fn(f32) -> f32) {
        let xs = grid();
        let mut ys = xs.clone();
        map(simd, &mut ys, sig);
        let mut worst = (0f32, 0f32);
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = reference(x);
            // Relative error, absolute below 1e-30 (sigmoid of large negative x underflows to 0 in both).
            let err = (y - want).abs() / want.abs().max(1e-30);
            assert!(err <= 1e-6, "{name} {simd:?} at {x:e}: {y:e}, std gives {want:e}");
            if err > worst.0 {
                worst = (err, x);
            }
        }
        eprintln!("{name} {simd:?}: worst relative error {:e} at {:e}", worst.0, worst.1);
        for (x, want) in [(f32::INFINITY, reference(f32::INFINITY)), (f32::NEG_INFINITY, reference(f32::NEG_INFINITY))]
        {
            let mut y = [x];
            map(simd, &mut y, sig);
            assert_eq!(y[0], want, "{name} {simd:?} at {x}");
        }
        let mut y = [f32::NAN, -f32::NAN];
        map(simd, &mut y, sig);
        assert!(y.iter().all(|y| y.is_nan()), "{name} {simd:?} at NaN: {y:?}");
    }

    #[test]
    fn sigmoid_matches_std_exp_within_1e6_everywhere() {
        for simd in Simd::available() {
            check("sigmoid", simd, true, |x| 1.0 / (1.0 + (-x).exp()));
        }
    }

    #[test]
    fn tanh_matches_std_within_1e6_everywhere() {
        for simd in Simd::available() {
            check("tanh", simd, false, f32::tanh);
        }
    }

    #[test]
    fn exp_matches_std_on_its_range() {
        for simd_fma in [false, true] {
            let mut x = -86.0f32;
            while x < 88.7 {
                let (y, want) = (if simd_fma { exp::<true>(x) } else { exp::<false>(x) }, x.exp());
                assert!((y - want).abs() <= 4e-7 * want, "exp({x}) = {y}, std gives {want}");
                x += 1.0 / 512.0;
            }
            assert_eq!(exp::<false>(89.0), f32::INFINITY);
            assert!(exp::<true>(f32::NAN).is_nan());
        }
    }
}
