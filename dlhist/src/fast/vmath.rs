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

use std::mem::MaybeUninit;

/// Calls `body::<FMA>(args)` from a copy of it compiled for `simd`: with AVX-512 or AVX2 and FMA enabled, the
/// loops in `body` are vectorized for that instruction set; otherwise the portable `body::<false>` runs. The
/// arguments are named with their types (the local variables passed on), and an optional `-> Type` is the
/// result's. `Simd` must be in scope.
macro_rules! on_simd {
    ($simd:expr, $body:ident, ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn avx512($($arg: $ty),*) $(-> $ret)? {
            $body::<true>($($arg),*)
        }
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn avx2($($arg: $ty),*) $(-> $ret)? {
            $body::<true>($($arg),*)
        }
        match $simd {
            // SAFETY: a `Simd` names only features this CPU has (Simd::detect, or Simd::available in tests).
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { avx512($($arg),*) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { avx2($($arg),*) },
            _ => $body::<false>($($arg),*),
        }
    }};
}
pub(crate) use on_simd;

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

    /// The level's name, as [`super::CpuReport`] prints it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Simd::Avx512 => "AVX-512",
            Simd::Avx2 => "AVX2+FMA",
            Simd::Generic => "generic",
        }
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

/// `e^x` for a softmax, whose arguments are at most 0 once the row's maximum is taken off: [`exp`] with results
/// under e^−86 (4e-38, where std's `exp` is about to go subnormal) flushed to 0, so −∞ gives exactly 0.
#[inline(always)]
fn exp_flush<const FMA: bool>(x: f32) -> f32 {
    let e = exp::<FMA>(x);
    if x < -86.0 {
        0.0
    } else {
        e
    }
}

/// Partial sums kept side by side by the softmax kernels below: a running sum is a chain of dependent additions
/// the compiler may not reorder, `LANES` interleaved sums (added up at the end, in a fixed order that is the same
/// at every SIMD level) fill a vector register.
const LANES: usize = 16;

/// `x = e^{x·scale − shift}` for every element of a softmax row, in place, and the sum of the results; compiled
/// for `simd` (std's `expf` is a scalar call: a twentieth of a GPT's step went to the attention's and the
/// loss's exponentials).
pub(crate) fn exp_sum_in_place(simd: Simd, xs: &mut [f32], scale: f32, shift: f32) -> f32 {
    #[inline(always)]
    fn body<const FMA: bool>(xs: &mut [f32], scale: f32, shift: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let mut chunks = xs.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for (a, x) in acc.iter_mut().zip(c.iter_mut()) {
                *x = exp_flush::<FMA>(*x * scale - shift);
                *a += *x;
            }
        }
        let mut tail = 0f32;
        for x in chunks.into_remainder() {
            *x = exp_flush::<FMA>(*x * scale - shift);
            tail += *x;
        }
        acc.iter().sum::<f32>() + tail
    }
    on_simd!(simd, body, (xs: &mut [f32], scale: f32, shift: f32) -> f32)
}

/// [`exp_sum_in_place`] reading `xs` and writing `out` (as long as `xs`).
pub(crate) fn exp_sum_into(simd: Simd, xs: &[f32], out: &mut [f32], scale: f32, shift: f32) -> f32 {
    #[inline(always)]
    fn body<const FMA: bool>(xs: &[f32], out: &mut [f32], scale: f32, shift: f32) -> f32 {
        let out = &mut out[..xs.len()];
        let mut acc = [0f32; LANES];
        let (mut xc, mut oc) = (xs.chunks_exact(LANES), out.chunks_exact_mut(LANES));
        for (x, o) in (&mut xc).zip(&mut oc) {
            for ((a, &x), o) in acc.iter_mut().zip(x).zip(o.iter_mut()) {
                *o = exp_flush::<FMA>(x * scale - shift);
                *a += *o;
            }
        }
        let mut tail = 0f32;
        for (&x, o) in xc.remainder().iter().zip(oc.into_remainder()) {
            *o = exp_flush::<FMA>(x * scale - shift);
            tail += *o;
        }
        acc.iter().sum::<f32>() + tail
    }
    on_simd!(simd, body, (xs: &[f32], out: &mut [f32], scale: f32, shift: f32) -> f32)
}

/// `Σ e^{x·scale − shift}` over `xs`, summed as [`exp_sum_in_place`] sums, without writing the terms.
pub(crate) fn exp_sum(simd: Simd, xs: &[f32], scale: f32, shift: f32) -> f32 {
    #[inline(always)]
    fn body<const FMA: bool>(xs: &[f32], scale: f32, shift: f32) -> f32 {
        let mut acc = [0f32; LANES];
        let mut chunks = xs.chunks_exact(LANES);
        for c in &mut chunks {
            for (a, &x) in acc.iter_mut().zip(c) {
                *a += exp_flush::<FMA>(x * scale - shift);
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|&x| exp_flush::<FMA>(x * scale - shift)).sum();
        acc.iter().sum::<f32>() + tail
    }
    on_simd!(simd, body, (xs: &[f32], scale: f32, shift: f32) -> f32)
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

/// The error function `erf(x) = 2/√π ∫₀ˣ e^{−t²} dt`, within 3e-7 absolute of candle's (libm's) `erf_f32`.
///
/// libm's `erff` branches over five intervals and calls `expf`; in a GPT's GELU layers it took a sixth of a
/// training step. Here it is one rational function `x P(x²) / Q(x²)` of degrees 11 and 10 on |x| < 3.95, fitted
/// in f64 for the least maximum error against erf (1.8e-8; evaluating P and Q in f32 adds up to 4 ulps of 1),
/// and exactly ±1 beyond, where `1 − erfc(x)` rounds to 1 in f32 anyway (erfc(3.95) = 2.3e-8, under half an ulp
/// of 1). P and Q have positive coefficients, so Q ≥ 1 and nothing cancels. NaN stays NaN, ±∞ gives ±1.
#[inline(always)]
pub(crate) fn erf<const FMA: bool>(x: f32) -> f32 {
    // P[0] is the fitted coefficient, not 2/√π (the slope at 0): the fit trades a little there for the tail.
    #[allow(clippy::approx_constant)]
    const P: [f32; 6] = [1.128_379, 1.940_326_6e-1, 5.320_655e-2, 3.917_151e-3, 2.875_908_8e-4, 2.011_692_3e-6];
    const Q: [f32; 6] = [1.0, 5.052_885e-1, 1.155_894e-1, 1.527_038_2e-2, 1.198_148_7e-3, 3.783_867e-5];
    let ax = x.abs();
    // Clamped so that the unused lanes of ±∞ compute finite values; the select below replaces them.
    let xc = x.clamp(-3.95, 3.95);
    let z = xc * xc;
    let mut p = P[5];
    let mut q = Q[5];
    for i in (0..5).rev() {
        p = fma::<FMA>(p, z, P[i]);
        q = fma::<FMA>(q, z, Q[i]);
    }
    // Rounding in f32 can take the quotient a few ulps past ±1 near the clamp; erf never is.
    let r = (xc * p / q).clamp(-1.0, 1.0);
    if ax >= 3.95 {
        1f32.copysign(x)
    } else {
        r
    }
}

/// The standard normal density's constant `1/√(2π)`.
const INV_SQRT_2PI: f32 = 0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2;

/// The exact GELU `x Φ(x) = ½ x (1 + erf(x / √2))`.
#[inline(always)]
pub(crate) fn gelu<const FMA: bool>(x: f32) -> f32 {
    0.5 * x * (1.0 + erf::<FMA>(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// GELU's derivative `Φ(x) + x φ(x)` at `x`, times the incoming gradient `g`.
#[inline(always)]
pub(crate) fn gelu_grad<const FMA: bool>(x: f32, g: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf::<FMA>(x * std::f32::consts::FRAC_1_SQRT_2));
    let pdf = exp::<FMA>(-0.5 * x * x) * INV_SQRT_2PI;
    // exp clamps its input at −86, so for |x| ≥ 14 pdf is e^{−86}/√(2π) rather than ~0 and x · pdf would grow
    // with x (to ~5 at f32::MAX): the term is below 1e-41 there, so it is dropped.
    let xpdf = if x.abs() < 14.0 { x * pdf } else { 0.0 };
    g * (cdf + xpdf)
}

/// `pre = y + b` and `y = gelu(pre)` along one row of a linear layer's output (`b` the bias, as long as the row),
/// in a function compiled for `simd` so the loop runs on vectors. `pre` may be uninitialized: every element is
/// written, so its buffer needs no zeroing first.
pub(crate) fn gelu_bias_fwd(simd: Simd, y: &mut [f32], pre: &mut [MaybeUninit<f32>], b: &[f32]) {
    #[inline(always)]
    fn body<const FMA: bool>(y: &mut [f32], pre: &mut [MaybeUninit<f32>], b: &[f32]) {
        for ((v, p), bias) in y.iter_mut().zip(pre.iter_mut()).zip(b) {
            let x = *v + bias;
            p.write(x);
            *v = gelu::<FMA>(x);
        }
    }
    on_simd!(simd, body, (y: &mut [f32], pre: &mut [MaybeUninit<f32>], b: &[f32]))
}

/// `y = tanh(y + b)` along one row of a linear layer's output (`b` the bias, as long as the row), in a function
/// compiled for `simd`: std's `tanhf` is a scalar call (through `expm1f`) that took a tenth of the VAE's step.
pub(crate) fn tanh_bias_fwd(simd: Simd, y: &mut [f32], b: &[f32]) {
    #[inline(always)]
    fn body<const FMA: bool>(y: &mut [f32], b: &[f32]) {
        y.iter_mut().zip(b).for_each(|(v, bias)| *v = tanh::<FMA>(*v + bias));
    }
    on_simd!(simd, body, (y: &mut [f32], b: &[f32]))
}

/// `y = tanh(y + shift)` for one shift along a whole row (a convolution output channel and its bias), compiled
/// for `simd` as [`tanh_bias_fwd`].
pub(crate) fn tanh_shift_fwd(simd: Simd, y: &mut [f32], shift: f32) {
    #[inline(always)]
    fn body<const FMA: bool>(y: &mut [f32], shift: f32) {
        y.iter_mut().for_each(|v| *v = tanh::<FMA>(*v + shift));
    }
    on_simd!(simd, body, (y: &mut [f32], shift: f32))
}

/// `out = g ⊙ gelu'(pre)` element by element, in a function compiled for `simd`. Every element of `out` is
/// written, so it may start uninitialized.
pub(crate) fn gelu_bwd(simd: Simd, pre: &[f32], g: &[f32], out: &mut [MaybeUninit<f32>]) {
    #[inline(always)]
    fn body<const FMA: bool>(pre: &[f32], g: &[f32], out: &mut [MaybeUninit<f32>]) {
        for ((o, x), gv) in out.iter_mut().zip(pre).zip(g) {
            o.write(gelu_grad::<FMA>(*x, *gv));
        }
    }
    on_simd!(simd, body, (pre: &[f32], g: &[f32], out: &mut [MaybeUninit<f32>]))
}

/// `ln(1 + u)` for `u` in `[0, 1]`: `2 atanh(s)` with `s = u / (2 + u)` in `[0, 1/3]`, by the odd series
/// `2 (s + s³/3 + … + s¹³/13)` (the first term left out, s¹⁵/15, is under 2e-8 of the sum). Taking `s` from `u`
/// directly keeps tiny `u` exact, where `1 + u` would round it away.
#[inline(always)]
fn log1p_unit<const FMA: bool>(u: f32) -> f32 {
    let s = u / (2.0 + u);
    let s2 = s * s;
    let mut p = 1.0 / 13.0;
    p = fma::<FMA>(p, s2, 1.0 / 11.0);
    p = fma::<FMA>(p, s2, 1.0 / 9.0);
    p = fma::<FMA>(p, s2, 1.0 / 7.0);
    p = fma::<FMA>(p, s2, 1.0 / 5.0);
    p = fma::<FMA>(p, s2, 1.0 / 3.0);
    p = fma::<FMA>(p, s2, 1.0);
    2.0 * s * p
}

/// `softplus(x) = ln(1 + eˣ) = max(x, 0) + ln(1 + e^−|x|)`, finite for every finite `x` (no `eˣ` can overflow).
/// Below x = −86 it returns 0 ([`exp_flush`]): the true value is under 5e-38 there.
#[inline(always)]
pub(crate) fn softplus<const FMA: bool>(x: f32) -> f32 {
    x.max(0.0) + log1p_unit::<FMA>(exp_flush::<FMA>(-x.abs()))
}

/// `Σ x ℓ − softplus(ℓ)` along one row (the Bernoulli log-likelihood of `x` under logits `ℓ`), summed in
/// `LANES` interleaved partial sums as [`exp_sum`] sums, compiled for `simd`.
pub(crate) fn bernoulli_ll_row(simd: Simd, l: &[f32], x: &[f32]) -> f32 {
    #[inline(always)]
    fn body<const FMA: bool>(l: &[f32], x: &[f32]) -> f32 {
        let term = |l: f32, x: f32| fma::<FMA>(x, l, -softplus::<FMA>(l));
        let mut acc = [0f32; LANES];
        let (mut lc, mut xc) = (l.chunks_exact(LANES), x.chunks_exact(LANES));
        for (lk, xk) in (&mut lc).zip(&mut xc) {
            for ((a, &lv), &xv) in acc.iter_mut().zip(lk).zip(xk) {
                *a += term(lv, xv);
            }
        }
        let tail: f32 = lc.remainder().iter().zip(xc.remainder()).map(|(&lv, &xv)| term(lv, xv)).sum();
        acc.iter().sum::<f32>() + tail
    }
    on_simd!(simd, body, (l: &[f32], x: &[f32]) -> f32)
}

/// `out = g (x − σ(ℓ))` along one row: the gradient of [`bernoulli_ll_row`] in `ℓ`, times the row's incoming
/// gradient `g`. Every element of `out` is written, so it may start uninitialized.
pub(crate) fn bernoulli_ll_grad_row(simd: Simd, l: &[f32], x: &[f32], g: f32, out: &mut [MaybeUninit<f32>]) {
    #[inline(always)]
    fn body<const FMA: bool>(l: &[f32], x: &[f32], g: f32, out: &mut [MaybeUninit<f32>]) {
        for ((o, &lv), &xv) in out.iter_mut().zip(l).zip(x) {
            o.write(g * (xv - sigmoid::<FMA>(lv)));
        }
    }
    on_simd!(simd, body, (l: &[f32], x: &[f32], g: f32, out: &mut [MaybeUninit<f32>]))
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
    on_simd!(simd, body, (xs: &mut [f32], sigmoid_not_tanh: bool))
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
    fn softmax_exponentials_match_std_and_agree_with_each_other() {
        // A row of every length up to three vector widths (the tails) and a long one, from −120 to 0 after the
        // shift (below −86 the terms flush to 0), with −∞ entries (masked logits) and a NaN-free scale.
        for len in (0..=48).chain([2304]) {
            let row: Vec<f32> = (0..len)
                .map(|i| if i % 7 == 3 { f32::NEG_INFINITY } else { -(((i * 37) % 121) as f32) * 0.5 })
                .collect();
            let (scale, shift) = (2.0f32, 1.5f32);
            let want: Vec<f32> = row.iter().map(|&x| (x * scale - shift).exp()).collect();
            let want_sum: f64 = want.iter().map(|&w| f64::from(w)).sum();
            for simd in Simd::available() {
                let mut inplace = row.clone();
                let s1 = exp_sum_in_place(simd, &mut inplace, scale, shift);
                let mut out = vec![f32::NAN; len];
                let s2 = exp_sum_into(simd, &row, &mut out, scale, shift);
                let s3 = exp_sum(simd, &row, scale, shift);
                assert_eq!((s1.to_bits(), s1.to_bits()), (s2.to_bits(), s3.to_bits()), "{simd:?} len {len}");
                assert_eq!(inplace, out, "{simd:?} len {len}");
                for ((&x, &y), &w) in row.iter().zip(&out).zip(&want) {
                    // std's exp below e^−86 is a subnormal or 0; ours is 0 there.
                    let err = if x * scale - shift < -86.0 { y } else { (y - w).abs() / w };
                    assert!(err <= 1e-6, "{simd:?} at {x}: {y:e}, std gives {w:e}");
                }
                let rel = (f64::from(s1) - want_sum).abs() / want_sum.max(1e-30);
                assert!(rel <= 1e-6, "{simd:?} len {len}: sum {s1} against {want_sum}");
            }
        }
    }

    #[test]
    fn tanh_matches_std_within_1e6_everywhere() {
        for simd in Simd::available() {
            check("tanh", simd, false, f32::tanh);
        }
    }

    /// `erf` over `xs`, compiled for `simd` as the GELU kernels are (they only return erf mixed with other terms).
    fn erf_on(simd: Simd, xs: &[f32]) -> Vec<f32> {
        #[inline(always)]
        fn body<const FMA: bool>(xs: &[f32]) -> Vec<f32> {
            xs.iter().map(|&x| erf::<FMA>(x)).collect()
        }
        on_simd!(simd, body, (xs: &[f32]) -> Vec<f32>)
    }

    #[test]
    fn erf_matches_candle_within_3e7_absolute_everywhere() {
        let mut xs = grid();
        for c in [3.95f32, 4.0] {
            for k in -64..=64 {
                xs.extend([c + k as f32 * 1e-5, -(c + k as f32 * 1e-5)]);
            }
        }
        for simd in Simd::available() {
            let ys = erf_on(simd, &xs);
            let mut worst = (0f32, 0f32);
            for (&x, &y) in xs.iter().zip(&ys) {
                let want = candle_core::cpu::erf::erf_f32(x);
                let err = (y - want).abs();
                assert!(err <= 3e-7, "erf {simd:?} at {x:e}: {y:e}, candle gives {want:e}");
                // Odd, and no larger than 1 in magnitude.
                assert!(y.abs() <= 1.0 && (x == 0.0 || y.signum() == x.signum()), "erf {simd:?} at {x:e}: {y:e}");
                if err > worst.0 {
                    worst = (err, x);
                }
            }
            eprintln!("erf {simd:?}: worst absolute error {:e} at {:e}", worst.0, worst.1);
            let ys = erf_on(simd, &[f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.0, -0.0]);
            assert_eq!(&ys[..2], &[1.0, -1.0]);
            assert!(ys[2].is_nan());
            assert!(ys[3] == 0.0 && ys[4] == 0.0);
        }
    }

    #[test]
    fn gelu_kernels_match_the_f64_formulas() {
        // GELU and its derivative in f64 from candle's f64 erf: the float errors of the f32 kernels are
        // measured against the exact functions, relative to max(|value|, 1) (both are O(x) or O(1)).
        let gelu64 = |x: f64| 0.5 * x * (1.0 + candle_core::cpu::erf::erf_f64(x / std::f64::consts::SQRT_2));
        let grad64 = |x: f64| {
            let cdf = 0.5 * (1.0 + candle_core::cpu::erf::erf_f64(x / std::f64::consts::SQRT_2));
            cdf + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
        };
        let xs: Vec<f32> = grid().into_iter().filter(|x| x.is_finite()).collect();
        let b: Vec<f32> = (0..xs.len()).map(|i| (i % 7) as f32 * 0.25 - 0.75).collect();
        let g: Vec<f32> = (0..xs.len()).map(|i| 1.0 + (i % 5) as f32).collect();
        for simd in Simd::available() {
            let (mut y, mut pre) = (xs.clone(), vec![MaybeUninit::uninit(); xs.len()]);
            gelu_bias_fwd(simd, &mut y, &mut pre, &b);
            // SAFETY: gelu_bias_fwd wrote every element.
            let pre: Vec<f32> = pre.into_iter().map(|p| unsafe { p.assume_init() }).collect();
            let mut dx = vec![MaybeUninit::uninit(); xs.len()];
            gelu_bwd(simd, &pre, &g, &mut dx);
            // SAFETY: gelu_bwd wrote every element.
            let dx: Vec<f32> = dx.into_iter().map(|d| unsafe { d.assume_init() }).collect();
            for i in 0..xs.len() {
                let p = xs[i] + b[i];
                assert_eq!(pre[i], p);
                let (want, got) = (gelu64(p as f64), y[i] as f64);
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "gelu {simd:?} at {p:e}: {got:e} vs {want:e}"
                );
                let (want, got) = (g[i] as f64 * grad64(p as f64), dx[i] as f64);
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "gelu' {simd:?} at {p:e}: {got:e} vs {want:e}"
                );
            }
            let mut y = [f32::INFINITY, f32::NAN];
            let mut pre = [MaybeUninit::uninit(); 2];
            gelu_bias_fwd(simd, &mut y, &mut pre, &[0.0, 0.0]);
            assert!(y[0] == f32::INFINITY && y[1].is_nan());
            let mut dx = [MaybeUninit::uninit(); 3];
            gelu_bwd(simd, &[f32::INFINITY, f32::NEG_INFINITY, f32::NAN], &[1.0; 3], &mut dx);
            // SAFETY: gelu_bwd wrote every element.
            let dx = dx.map(|d| unsafe { d.assume_init() });
            assert!(dx[0] == 1.0 && dx[1] == 0.0 && dx[2].is_nan(), "{dx:?}");
        }
    }

    #[test]
    fn log1p_and_softplus_match_f64() {
        for fma in [false, true] {
            let log1p = |u: f32| if fma { log1p_unit::<true>(u) } else { log1p_unit::<false>(u) };
            let softplus = |x: f32| if fma { softplus::<true>(x) } else { softplus::<false>(x) };
            // ln(1 + u) on [0, 1], tiny u included.
            for k in 0..=4096 {
                for u in [k as f32 / 4096.0, (k as f32 * 0.01).exp() * 1e-30] {
                    let want = f64::from(u).ln_1p();
                    let got = f64::from(log1p(u));
                    assert!((got - want).abs() <= 2.5e-7 * want, "ln(1 + {u}) = {got}, f64 gives {want}");
                }
            }
            // softplus over ±120, where e^−|x| runs from 1 to far below f32's smallest normal.
            let mut x = -120.0f32;
            while x <= 120.0 {
                let xf = f64::from(x);
                let want = xf.max(0.0) + (-xf.abs()).exp().ln_1p();
                let got = f64::from(softplus(x));
                // Relative accuracy where the value is a normal float, 0 (within 5e-38) below x = −86.
                let tol = if x >= -86.0 { 2.5e-7 * want } else { 5e-38 };
                assert!((got - want).abs() <= tol, "softplus({x}) = {got}, f64 gives {want}");
                x += 1.0 / 64.0;
            }
            assert_eq!(softplus(1e30), 1e30);
            assert_eq!(softplus(-1e30), 0.0);
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
