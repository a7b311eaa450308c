//! Row-major matrix products on slices through the `gemm` crate (candle's own CPU matmul backend).
//!
//! gemm is always called single-threaded; [`par_matmul`] splits a product into blocks of rows or columns and
//! runs them on candle's worker pool (see [`super::par_chunks`]), so dlhist's kernels and candle's element-wise
//! kernels share one set of threads instead of two pools competing for the cores.

use super::{par_chunks, SharedMut};

/// How a matrix operand is stored: as written (`[rows, cols]` row-major) or transposed (`[cols, rows]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    AsIs,
    Transposed,
}

impl Stored {
    /// (row stride, column stride) of a `rows × cols` operand stored this way.
    fn strides(self, rows: usize, cols: usize) -> (isize, isize) {
        match self {
            Stored::AsIs => (cols as isize, 1),
            Stored::Transposed => (1, rows as isize),
        }
    }
}

/// `c[m×n] (+)= a[m×k] · b[k×n]` on one thread, operands given by pointer and (row, column) strides.
///
/// # Safety
/// Every index the sizes and strides form must be inside the operands' allocations, and `c` must not overlap
/// `a` or `b` or any block another thread writes.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_raw(
    (m, n, k): (usize, usize, usize),
    c: *mut f32,
    c_rs: isize,
    a: *const f32,
    (a_rs, a_cs): (isize, isize),
    b: *const f32,
    (b_rs, b_cs): (isize, isize),
    accumulate: bool,
) {
    gemm::gemm(
        m,
        n,
        k,
        c,
        1,
        c_rs,
        accumulate,
        a,
        a_cs,
        a_rs,
        b,
        b_cs,
        b_rs,
        1.0f32,
        1.0f32,
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

/// The microkernel family gemm picks on this CPU, named as [`super::CpuReport`] prints it. gemm 0.19 does not
/// say which it took, so this repeats its rule (`init_gemm_fn` in gemm-common): on x86-64, AVX-512 when the CPU
/// reports avx512f (compiled in by gemm's "x86-v4" feature, which dlhist's Cargo.toml turns on), else AVX2 with
/// FMA when it reports fma, else scalar code; on Arm, NEON.
pub(crate) fn matmul_simd() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::is_x86_feature_detected!("fma") {
            return "AVX2+FMA";
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            return "NEON";
        }
    }
    "scalar"
}

fn check(c: &[f32], a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize)) -> bool {
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n, "matmul: operand too small");
    m > 0 && n > 0 && k > 0
}

/// `c[m×n] (+)= a[m×k] · b[k×n]` on the calling thread, every matrix row-major; `a`, `b` may be stored
/// transposed. With `accumulate` the product is added to `c`, else it overwrites `c`.
pub(crate) fn matmul(
    c: &mut [f32],
    a: &[f32],
    a_stored: Stored,
    b: &[f32],
    b_stored: Stored,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    if !check(c, a, b, (m, n, k)) {
        if k == 0 && !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: `check` bounds every index by the slices' lengths; `c` is a distinct `&mut`.
    unsafe { matmul_raw(c.as_mut_ptr(), a, a_stored, b, b_stored, (m, n, k), accumulate) }
}

/// [`matmul`] into `c` (`m·n` writable elements, read only when `accumulate`), on the calling thread. Without
/// `accumulate`, `c` may be uninitialized: every one of its `m·n` elements is written (zeros when `k = 0`), none
/// read, so outputs need not be zeroed first only to be overwritten.
///
/// # Safety
/// `c` must be valid for `m·n` writes (and reads, when `accumulate`) and overlap neither `a` nor `b`; `a` and `b`
/// must hold `m·k` and `k·n` elements.
pub(crate) unsafe fn matmul_raw(
    c: *mut f32,
    a: &[f32],
    a_stored: Stored,
    b: &[f32],
    b_stored: Stored,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    assert!(a.len() >= m * k && b.len() >= k * n, "matmul: operand too small");
    if m * n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            // SAFETY: c is valid for m·n writes (the caller's contract).
            unsafe { std::ptr::write_bytes(c, 0, m * n) };
        }
        return;
    }
    gemm_raw(
        (m, n, k),
        c,
        n as isize,
        a.as_ptr(),
        a_stored.strides(m, k),
        b.as_ptr(),
        b_stored.strides(k, n),
        accumulate,
    )
}

/// Products smaller than this many multiply-adds run on one thread: splitting them costs more than it saves.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// [`matmul`] split over candle's worker pool: into blocks of rows of `c` when it is taller than wide, else
/// into blocks of columns. Each block is an independent single-threaded product, so the result does not
/// depend on the number of threads.
pub(crate) fn par_matmul(
    c: &mut [f32],
    a: &[f32],
    a_stored: Stored,
    b: &[f32],
    b_stored: Stored,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
) {
    let threads = super::threads();
    if threads == 1 || m * n * k < PARALLEL_MIN_FLOPS || !check(c, a, b, (m, n, k)) {
        return matmul(c, a, a_stored, b, b_stored, (m, n, k), accumulate);
    }
    // SAFETY: `check` bounds every index by the slices' lengths; `c` is a distinct `&mut`.
    unsafe { par_matmul_raw(c.as_mut_ptr(), a, a_stored, b, b_stored, (m, n, k), accumulate, threads) }
}

/// `A B` `[m, n]` in a new vector, split as [`par_matmul`] splits it, without zeroing the output first: gemm
/// writes every element of a product it does not accumulate into, and zeroing a large output is a serial pass
/// over memory on the calling thread (the GPT's vocabulary-wide logits: 9 MB a step).
pub(crate) fn par_matmul_new(
    a: &[f32],
    a_stored: Stored,
    b: &[f32],
    b_stored: Stored,
    (m, n, k): (usize, usize, usize),
) -> Vec<f32> {
    if m * n * k == 0 {
        return vec![0f32; m * n];
    }
    assert!(a.len() >= m * k && b.len() >= k * n, "matmul: operand too small");
    let mut c = super::Uninit::<f32>::new(m * n);
    let threads = super::threads();
    // SAFETY: reads stay inside `a` and `b` (asserted); gemm writes (never reads, `accumulate` being false) every
    // one of the m·n elements of `c`, through a raw pointer, before `assume_init` makes them a vector.
    unsafe {
        let cp = c.writer().ptr(0);
        if threads == 1 || m * n * k < PARALLEL_MIN_FLOPS {
            matmul_raw(cp, a, a_stored, b, b_stored, (m, n, k), false);
        } else {
            par_matmul_raw(cp, a, a_stored, b, b_stored, (m, n, k), false, threads);
        }
        c.assume_init()
    }
}

/// The blocked product of [`par_matmul`] into `c` (`m·n` writable elements, read only when `accumulate`).
#[allow(clippy::too_many_arguments)]
unsafe fn par_matmul_raw(
    c: *mut f32,
    a: &[f32],
    a_stored: Stored,
    b: &[f32],
    b_stored: Stored,
    (m, n, k): (usize, usize, usize),
    accumulate: bool,
    threads: usize,
) {
    let (a_rs, a_cs) = a_stored.strides(m, k);
    let (b_rs, b_cs) = b_stored.strides(k, n);
    let (split_rows, len) = if m >= n { (true, m) } else { (false, n) };
    // Blocks of at least 16 rows or columns, a few per thread so a slow thread can be helped.
    let parts = (len / 16).clamp(1, 4 * threads);
    let block = len.div_ceil(parts);
    let cp = SharedMut(c);
    let (ap, bp) = (a.as_ptr() as usize, b.as_ptr() as usize);
    par_chunks(len.div_ceil(block), 1, |parts| {
        for p in parts {
            let (lo, hi) = (p * block, ((p + 1) * block).min(len));
            // SAFETY: block p writes rows (or columns) lo..hi of c only; reads stay inside a and b (checked).
            unsafe {
                let (a, b) = (ap as *const f32, bp as *const f32);
                if split_rows {
                    gemm_raw(
                        (hi - lo, n, k),
                        cp.get().add(lo * n),
                        n as isize,
                        a.offset(lo as isize * a_rs),
                        (a_rs, a_cs),
                        b,
                        (b_rs, b_cs),
                        accumulate,
                    )
                } else {
                    gemm_raw(
                        (m, hi - lo, k),
                        cp.get().add(lo),
                        n as isize,
                        a,
                        (a_rs, a_cs),
                        b.offset(lo as isize * b_cs),
                        (b_rs, b_cs),
                        accumulate,
                    )
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_storage_orders_and_splits_match_a_triple_loop() {
        // Tall, wide and square, large enough for par_matmul to split.
        for (m, n, k) in [(5, 3, 4), (300, 70, 40), (40, 300, 33), (1, 1, 1)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.71).cos()).collect();
            let mut want = vec![0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>() + 1.0;
                }
            }
            let at: Vec<f32> = (0..k * m).map(|idx| a[(idx % m) * k + idx / m]).collect();
            let bt: Vec<f32> = (0..n * k).map(|idx| b[(idx % k) * n + idx / k]).collect();
            for (aa, sa) in [(&a, Stored::AsIs), (&at, Stored::Transposed)] {
                for (bb, sb) in [(&b, Stored::AsIs), (&bt, Stored::Transposed)] {
                    for parallel in [false, true] {
                        let mut c = vec![1f32; m * n];
                        if parallel {
                            par_matmul(&mut c, aa, sa, bb, sb, (m, n, k), true);
                        } else {
                            matmul(&mut c, aa, sa, bb, sb, (m, n, k), true);
                        }
                        for (x, y) in c.iter().zip(&want) {
                            assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "{m}×{n}×{k} {sa:?} {sb:?}: {x} vs {y}");
                        }
                    }
                }
            }
        }
    }
}
