//! CPU kernels: every fused op in dlhist, and the switch that turns them off.
//!
//! candle's CPU backend computes a layer as a chain of generic element-wise and strided-copy kernels, each
//! allocating its output, and its convolution backward runs through a slow transposed-convolution loop. A
//! training step of the notebooks' small models spends most of its time there, not in matrix products. The
//! functions here compute a whole layer (or a loss, or an optimizer update) in one pass with a custom backward:
//!
//! | function | replaces | called by |
//! | --- | --- | --- |
//! | [`conv2d`] | `conv2d` + bias + activation: im2col and one matrix product per image, forward and backward | [`crate::layers::ConvBlock`] |
//! | [`conv2d_pool`] | the same followed by max pooling, in one op | [`crate::layers::ConvBlock`] |
//! | [`upsample_nearest2d`] | nearest-neighbour upsampling by whole factors, whose backward candle runs as a grouped convolution | [`crate::layers::upsample_nearest2d`] |
//! | [`upsample_concat`] | `cat([upsample(x), skip], 1)`: the upsampled planes written into the concatenation, and its backward without `cat`'s copies of the gradient | [`crate::layers::upsample_concat`] |
//! | [`max_pool2d`] | max pooling with any window, stride and padding, with a correct backward (candle has none for overlapping windows) | [`crate::layers::MaxPool2d`] |
//! | [`linear`] | `matmul(x, Wᵀ)` + bias + activation | [`crate::layers::Dense`] |
//! | [`embedding_sum`] | the segment and position lookups (`index_select`s) added to the token vectors, with each table's gradient written once | [`crate::layers::summed_embeddings`] |
//! | [`softmax_cross_entropy`] | `log_softmax` + `nll` | [`crate::layers::cross_entropy`] |
//! | [`bernoulli_log_likelihood`] | `x·ℓ − softplus(ℓ)` summed over the last dimension (nine element-wise ops), with the gradient `x − σ(ℓ)` | [`crate::layers::bernoulli_log_likelihood`] |
//! | [`local_response_norm`] | AlexNet's normalization across channels: squares, shifted sums, a power, a division | [`crate::layers::LocalResponseNorm`] |
//! | [`layer_norm`] | layer normalization's mean, variance, scale and shift | [`crate::optimization::LayerNorm`] |
//! | [`lstm_cell`] | the LSTM cell's gate non-linearities and products (one step) | step-by-step LSTM code |
//! | [`lstm_sequence`], [`lstm_sequence_from`] | an LSTM's whole recurrence (either cell, any starting state), with back-propagation through time in one backward pass | [`crate::sequence_modeling::Lstm`] |
//! | [`rnn_sequence`] | a tanh RNN's whole recurrence (any starting state), with back-propagation through time in one backward pass | [`crate::sequence_modeling::Rnn`] |
//! | [`gru_sequence`] | a GRU's whole recurrence in the reset-after form (PyTorch's; any starting state), with back-propagation through time in one backward pass; the reset-before form stays plain | [`crate::sequence_modeling::Gru`] |
//! | [`additive_scores`] | Bahdanau's attention score `vᵀ tanh(k + q)`: a broadcast add, a tanh and a product over `[B, S, A]`, and their backward | [`crate::layers::AdditiveAttention`] |
//! | [`causal_softmax`] | attention's scale, causal mask and softmax | attention code that forms the scores itself |
//! | [`causal_self_attention`] | multi-head causal attention read from the packed `qkv` projections | [`crate::transformers::CausalSelfAttention`] |
//! | [`masked_attention`] | multi-head attention over padded keys, optionally causal, queries and keys/values from separate projections (encoder self-attention, cross-attention) | [`crate::transformers::MultiHeadAttention`] |
//! | [`adam_update`] | Adam's moment, bias-correction and parameter arithmetic, in place | [`crate::optimization::Adam`] |
//!
//! **Each kernel is an optimization of a composition that is written out in plain candle beside its call**, in
//! the file a reader opens for the idea (`if fast::applies(..) { fused } else { the math, line by line }`), and
//! tests hold both to the same values and gradients (1e-5 relative). The kernels take f32 tensors on the CPU
//! (contiguous or not) and return an error for anything else; [`applies`] says whether a call may take them.
//!
//! **The switch.** `DLHIST_FUSED=0` in the environment (or [`set_enabled`]`(false)` from a notebook) sends every
//! layer down its plain path, so a reader can step through the math, or time the kernels' effect; [`plain`] does
//! the same for one closure on one thread (what the tests use). The fused path is the default.
//!
//! Matrix products go to the `gemm` crate (the one candle uses), which picks its AVX-512, AVX2+FMA or scalar
//! kernels at run time ([`cpu_report`] says which); work is split over candle's own CPU worker pool
//! (`CANDLE_NUM_THREADS`, else `RAYON_NUM_THREADS`), never a pool of our own. The LSTM's gates use branch-free
//! sigmoid and tanh (module `vmath`, within 1e-6 of std's) compiled for AVX-512 or AVX2 as the CPU allows,
//! picked at run time, as are the fused dense and convolution layers' tanh, the softmax exponentials of attention
//! and of the cross-entropy, and [`linear`]'s GELU, a rational `erf` from the same module (within 3e-7 of
//! libm's). This module imports nothing from the rest of dlhist but [`Activation`] (a leaf type, re-exported as
//! [`crate::layers::Activation`]) and the seeded generator its tests draw from.

mod adam;
mod additive_attention;
mod attention;
mod bernoulli;
mod conv;
mod embedding;
mod gemm;
mod gru_seq;
mod linear;
mod loss;
mod lrn;
mod lstm_cell;
mod lstm_seq;
mod masked_attention;
mod norm;
mod pool;
mod rnn_seq;
mod upsample;
mod vmath;

pub use adam::{adam_update, AdamMoments, AdamStep};
pub use additive_attention::additive_scores;
pub use attention::causal_self_attention;
pub use bernoulli::bernoulli_log_likelihood;
pub use conv::{conv2d, conv2d_pool};
pub use embedding::embedding_sum;
pub use gru_seq::gru_sequence;
pub use linear::linear;
pub use loss::softmax_cross_entropy;
pub use lrn::local_response_norm;
pub use lstm_cell::lstm_cell;
pub use lstm_seq::{lstm_sequence, lstm_sequence_from};
pub use masked_attention::masked_attention;
pub use norm::{causal_softmax, layer_norm};
pub use pool::max_pool2d;
pub use rnn_seq::rnn_sequence;
pub use upsample::{upsample_concat, upsample_nearest2d};

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, DType, Result, Storage, Tensor};

use crate::activation::{Activation, LEAKY_SLOPE};

/// What a kernel applies to its output while it is in cache: the activations it can fuse, named apart from
/// [`Activation`] (whose sigmoid and ELU it does not fuse) so the kernels can match exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Act {
    /// None: the layer's affine output.
    #[default]
    Identity,
    /// `max(0, x)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// The exact GELU `x Φ(x)` (PyTorch's `gelu`, candle's `gelu_erf`). Its derivative needs the input, so
    /// [`linear`] keeps the pre-activation for the backward pass; [`conv2d`] runs its composition.
    Gelu,
    /// `x` for `x > 0`, `LEAKY_SLOPE · x` otherwise.
    LeakyRelu,
}

impl Act {
    /// The fusable part of `f`: `(epilogue, rest)` where `rest` is an activation to apply afterwards as its own
    /// op (sigmoid, ELU, and GELU where `gelu` is false).
    fn split(f: Option<Activation>, gelu: bool) -> (Act, Option<Activation>) {
        match f {
            None => (Act::Identity, None),
            Some(Activation::Relu) => (Act::Relu, None),
            Some(Activation::Tanh) => (Act::Tanh, None),
            Some(Activation::LeakyRelu) => (Act::LeakyRelu, None),
            Some(Activation::Gelu) if gelu => (Act::Gelu, None),
            Some(other) => (Act::Identity, Some(other)),
        }
    }

    #[inline]
    fn apply(self, x: f32) -> f32 {
        match self {
            Act::Identity => x,
            Act::Relu => x.max(0.0),
            // The same tanh as the vectorized epilogues of `linear` and `conv2d` (module `vmath`, within 1e-6
            // of std's), in its portable build.
            Act::Tanh => vmath::tanh::<false>(x),
            // The same erf as the vectorized kernels of `linear` (module `vmath`), in its portable build.
            Act::Gelu => vmath::gelu::<false>(x),
            Act::LeakyRelu => {
                if x > 0.0 {
                    x
                } else {
                    LEAKY_SLOPE * x
                }
            }
        }
    }

    /// The derivative times the incoming gradient, written in terms of the output `y` (identity, ReLU and tanh
    /// allow it), so the backward pass needs no saved pre-activation.
    #[inline]
    fn grad(self, y: f32, g: f32) -> f32 {
        match self {
            Act::Identity => g,
            Act::Relu => {
                if y > 0.0 {
                    g
                } else {
                    0.0
                }
            }
            Act::Tanh => g * (1.0 - y * y),
            // A positive slope keeps the sign, so y > 0 exactly where the input was.
            Act::LeakyRelu => {
                if y > 0.0 {
                    g
                } else {
                    LEAKY_SLOPE * g
                }
            }
            Act::Gelu => unreachable!("GELU's derivative is taken from the input (vmath::gelu_bwd)"),
        }
    }
}

/// The environment variable that turns the fused kernels off: `DLHIST_FUSED=0` (or `false`, `off`).
pub const ENV_SWITCH: &str = "DLHIST_FUSED";

thread_local! {
    /// [`plain`]'s override for the current thread: `Some(false)` while a `plain` closure runs.
    static OVERRIDE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// `DLHIST_FUSED` as last read: 0 unread, 1 off, 2 on. Read once per process (and again after
/// [`set_enabled`]): a layer checks the switch on every call, so it must cost nothing.
static FROM_ENV: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Whether the fused kernels are on for calls made on this thread now: off inside [`plain`], else off when
/// `DLHIST_FUSED` is `0`, `false` or `off`, else on.
///
/// ```
/// assert!(dlhist::fast::enabled() || std::env::var("DLHIST_FUSED").is_ok());
/// assert!(!dlhist::fast::plain(dlhist::fast::enabled));
/// ```
pub fn enabled() -> bool {
    use std::sync::atomic::Ordering;
    if let Some(on) = OVERRIDE.with(|o| o.get()) {
        return on;
    }
    match FROM_ENV.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let off = std::env::var(ENV_SWITCH)
                .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "false" | "off" | "no"))
                .unwrap_or(false);
            FROM_ENV.store(if off { 1 } else { 2 }, Ordering::Relaxed);
            !off
        }
    }
}

/// Turns the fused kernels on or off for the whole process, from here on: sets `DLHIST_FUSED` (so a notebook's
/// later cells see it too; evcxr links each cell's copy of dlhist separately, and the environment is what they
/// share) and this copy's cached value.
///
/// ```
/// dlhist::fast::set_enabled(false); // every layer now runs its plain candle composition
/// assert!(!dlhist::fast::enabled());
/// dlhist::fast::set_enabled(true);
/// assert!(dlhist::fast::enabled());
/// ```
pub fn set_enabled(on: bool) {
    // Edition 2021: `set_var` is safe to call; dlhist reads the variable only through this module.
    std::env::set_var(ENV_SWITCH, if on { "1" } else { "0" });
    FROM_ENV.store(if on { 2 } else { 1 }, std::sync::atomic::Ordering::Relaxed);
}

/// Runs `f` with the fused kernels off on the current thread (the plain candle path of every layer), whatever
/// the switch says; restores the previous state afterwards, also if `f` panics.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let ln = dlhist::optimization::LayerNorm::new(8, vb)?;
/// let x = dlhist::rng::Rng::new(1).normal_tensor((4, 8), 0.0, 1.0, &dev)?;
/// let fused = ln.forward(&x)?;
/// let plain = dlhist::fast::plain(|| ln.forward(&x))?;
/// assert!((fused - plain)?.abs()?.max_all()?.to_scalar::<f32>()? < 1e-5);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn plain<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(Option<bool>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OVERRIDE.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(OVERRIDE.with(|o| o.replace(Some(false))));
    f()
}

/// Where the CPU kernels run, so that a timing or a bug report can name its machine: the processor, the
/// instruction set that the matrix products and the element-wise kernels picked at run time, and the number of
/// worker threads. `cargo xtask bench` prints it above its table.
///
/// ```
/// let cpu = dlhist::fast::cpu_report();
/// assert!(cpu.threads >= 1 && !cpu.cpu.is_empty());
/// // e.g. "Intel(R) Xeon(R) Processor; matrix products AVX-512, element-wise kernels AVX-512; 2 threads"
/// println!("{cpu}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuReport {
    /// The processor's name as Linux reports it (`model name` in `/proc/cpuinfo`), else the architecture.
    pub cpu: String,
    /// The `gemm` microkernels every matrix product uses (candle's matmuls and the fused layers here):
    /// `AVX-512`, `AVX2+FMA`, `NEON` or `scalar`.
    pub matmul: &'static str,
    /// What the branch-free sigmoid, tanh and erf of the fused recurrent and GELU kernels are compiled for:
    /// `AVX-512`, `AVX2+FMA` or `generic`.
    pub elementwise: &'static str,
    /// candle's CPU worker threads (`CANDLE_NUM_THREADS`, else `RAYON_NUM_THREADS`, else every core).
    pub threads: usize,
}

impl std::fmt::Display for CpuReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; matrix products {}, element-wise kernels {}; {} threads",
            self.cpu, self.matmul, self.elementwise, self.threads
        )
    }
}

/// This process's [`CpuReport`]: detected on the CPU it runs on, not fixed at build time.
pub fn cpu_report() -> CpuReport {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    CpuReport { cpu, matmul: gemm::matmul_simd(), elementwise: vmath::Simd::detect().name(), threads: threads() }
}

/// Whether a fused kernel may run on these tensors: the switch is on ([`enabled`]) and every tensor is f32 on
/// the CPU. The layers call it to choose their path.
///
/// ```
/// use dlhist::prelude::*;
/// let x = Tensor::zeros(3, DType::F32, &Device::Cpu)?;
/// assert_eq!(dlhist::fast::applies(&[&x]), dlhist::fast::enabled());
/// assert!(!dlhist::fast::applies(&[&x.to_dtype(DType::F64)?]));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn applies(ts: &[&Tensor]) -> bool {
    enabled() && cpu_f32(ts)
}

/// The error a kernel returns for tensors outside its domain (see [`applies`]).
fn unsupported(kernel: &str, ts: &[&Tensor]) -> candle_core::Error {
    let got: Vec<String> = ts.iter().map(|t| format!("{:?} on {:?}", t.dtype(), t.device().location())).collect();
    candle_core::Error::Msg(format!(
        "fast::{kernel} runs f32 tensors on the CPU; got {}. Call the layer instead (it runs the plain candle \
         composition there), or check fast::applies first",
        got.join(", ")
    ))
}

/// Whether every tensor is an f32 tensor on the CPU: the fast paths' domain.
fn cpu_f32(ts: &[&Tensor]) -> bool {
    let cpu = ts.iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32);
    if cpu {
        keep_freed_memory();
    }
    cpu
}

/// Asks glibc's malloc to keep freed memory for reuse instead of handing it back to the kernel (once per
/// process, on the first fast-path call; `DLHIST_MALLOC_DEFAULTS=1` leaves malloc alone).
///
/// A training step allocates and frees the same few hundred buffers every time. By default glibc serves blocks
/// above 128 KiB (a threshold it raises as it goes, up to 32 MiB) with `mmap` and returns them with `munmap`,
/// and trims the top of each heap on `free`, so the next step faults every page back in, zeroed by the kernel;
/// with two threads each `munmap` also makes the kernel interrupt the other core to flush its TLB. For the
/// transformer of `examples/train_steps.rs` at 2 threads (23 steps) that was 245 345 page faults and a median
/// step of 79 ms; with the settings below, 14 880 faults and 49 ms (`perf stat -e page-faults`, with and without
/// `DLHIST_MALLOC_DEFAULTS=1`). PyTorch's steps barely change under the same settings.
fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("DLHIST_MALLOC_DEFAULTS").is_some() {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only sets two of malloc's tuning parameters; it is safe to call at any time.
        unsafe {
            // 32 MiB: glibc's largest allowed mmap threshold on 64-bit targets; fixing it stops the trimming
            // that the dynamic threshold brings along.
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    });
}

/// Calls `f` with the f32 data of a contiguous CPU tensor (from its offset, of its element count).
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("dlhist fast path: expected a contiguous tensor, got strides {:?}", layout.stride())
    };
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => Ok(f(&v[start..end])),
        _ => candle_core::bail!("dlhist fast path: expected an f32 CPU tensor"),
    }
}

/// The f32 slice of a contiguous CPU storage, as a custom op's forward receives it.
fn slice_f32<'a>(s: &'a CpuStorage, l: &candle_core::Layout) -> Result<&'a [f32]> {
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("dlhist fast path: expected a contiguous tensor, got strides {:?}", l.stride())
    };
    match s {
        CpuStorage::F32(v) => Ok(&v[start..end]),
        _ => candle_core::bail!("dlhist fast path: expected an f32 tensor"),
    }
}

/// A raw pointer that rayon tasks may share, each writing a disjoint part.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: users write disjoint ranges only (documented at each use).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the `Sync` wrapper rather than its field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `(rows, width)` of a tensor `[.., width]` read as rows, as the row-wise kernels take their inputs (a dense layer's
/// `x`, a loss's logits): the product of the leading dimensions (1 for a vector) and the last; `None` for a scalar.
/// Taking any rank this way spares the graph reshapes around a kernel, whose backward candle runs as a
/// zero-filled accumulator plus an add over the whole tensor.
pub(crate) fn rows_and_width(dims: &[usize]) -> Option<(usize, usize)> {
    dims.split_last().map(|(&width, lead)| (lead.iter().product(), width))
}

/// A kernel's output, allocated but never zeroed: parallel tasks each write their own blocks of it, and only then
/// does it become a `Vec`. Zeroing a fresh output first (`vec![0.0; n]`) is one more pass over all of it, on the
/// calling thread alone, which for the U-Net's 3 MB activations cost as much as some of the kernels that then
/// overwrite every element.
///
/// The pattern every user follows: `Uninit::new(len)`, a [`UninitWriter`] copied into the tasks, each task
/// writing all of the blocks it owns, then [`Uninit::assume_init`].
pub(crate) struct Uninit<T> {
    buf: Vec<T>,
    len: usize,
}

impl<T> Uninit<T> {
    /// Room for `len` values, none written yet.
    pub(crate) fn new(len: usize) -> Self {
        Uninit { buf: Vec::with_capacity(len), len }
    }

    /// The handle that tasks share to reach their blocks.
    pub(crate) fn writer(&mut self) -> UninitWriter<T> {
        UninitWriter { ptr: self.buf.spare_capacity_mut().as_mut_ptr(), len: self.len }
    }

    /// The written values.
    ///
    /// # Safety
    /// Every one of the `len` elements must have been written (through [`UninitWriter::block`] slots or
    /// [`UninitWriter::ptr`]).
    pub(crate) unsafe fn assume_init(mut self) -> Vec<T> {
        // SAFETY: the caller guarantees all `len` elements (within the capacity reserved in `new`) are initialized.
        unsafe { self.buf.set_len(self.len) };
        self.buf
    }
}

/// A copyable pointer into an [`Uninit`]'s storage that parallel tasks share, each writing disjoint blocks.
pub(crate) struct UninitWriter<T> {
    ptr: *mut MaybeUninit<T>,
    len: usize,
}

impl<T> Clone for UninitWriter<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for UninitWriter<T> {}
// SAFETY: tasks write disjoint blocks only (the contract of `block` and `ptr`), and T itself crosses threads.
unsafe impl<T: Send> Send for UninitWriter<T> {}
unsafe impl<T: Send> Sync for UninitWriter<T> {}

impl<T> UninitWriter<T> {
    /// Elements `start .. start + len`, as slots to write (each with `MaybeUninit::write`, or all at once with
    /// [`filled`]). Panics if the block runs past the end.
    ///
    /// # Safety
    /// No other slice or pointer from this writer that is in use at the same time may overlap the block.
    pub(crate) unsafe fn block<'a>(self, start: usize, len: usize) -> &'a mut [MaybeUninit<T>] {
        assert!(start.checked_add(len).is_some_and(|end| end <= self.len), "block {start}+{len} past {}", self.len);
        // SAFETY: in bounds (asserted) of the capacity reserved by `Uninit::new`; exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }

    /// A raw pointer to element `start`, for kernels that take one (the matrix product writes through it).
    /// Panics if `start` is past the end.
    ///
    /// # Safety
    /// Whatever writes through it must stay inside the buffer and off every block another task uses meanwhile.
    pub(crate) unsafe fn ptr(self, start: usize) -> *mut T {
        assert!(start <= self.len, "offset {start} past {}", self.len);
        // SAFETY: in bounds (asserted) of the reserved capacity.
        unsafe { self.ptr.add(start).cast() }
    }
}

/// Writes `value` to every slot and hands the slice back as initialized values: the start of a buffer that is
/// then added into (col2im, the pooling backward).
pub(crate) fn filled<T: Copy>(slots: &mut [MaybeUninit<T>], value: T) -> &mut [T] {
    slots.fill(MaybeUninit::new(value));
    // SAFETY: every element was just initialized, and MaybeUninit<T> has T's layout.
    unsafe { &mut *(slots as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// The threads of candle's CPU worker pool, the calling thread included (`CANDLE_NUM_THREADS`, else
/// `RAYON_NUM_THREADS`, else the core count).
fn threads() -> usize {
    candle_core::utils::barrier_pool().n_workers() + 1
}

/// Sums per-item contributions to a vector of `width` values (a weight gradient summed over a batch) in
/// parallel, with the same bits whatever the number of threads or their timing.
///
/// `0..n` is cut into fixed blocks of `block` items; `f(items, slot)` adds the contributions of one block's
/// items into that block's own zeroed `slot`, and the slots are then added up in block order. (Letting each
/// thread add its partial sum into a shared total as it finishes would make the order of those additions, and
/// so the rounding, depend on scheduling: run to run, the same seed would give different gradients.)
pub(crate) fn par_block_sums(
    n: usize,
    block: usize,
    width: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) -> Vec<f32> {
    let block = block.max(1);
    let blocks = n.div_ceil(block);
    let mut partials = vec![0f32; blocks * width];
    let slots = SharedMut(partials.as_mut_ptr());
    par_chunks(blocks, 1, |bs| {
        for b in bs {
            // SAFETY: block b alone owns partials[b·width .. (b+1)·width].
            let slot = unsafe { std::slice::from_raw_parts_mut(slots.get().add(b * width), width) };
            f(b * block..((b + 1) * block).min(n), slot);
        }
    });
    let mut total = vec![0f32; width];
    for slot in partials.chunks(width.max(1)) {
        total.iter_mut().zip(slot).for_each(|(t, p)| *t += p);
    }
    total
}

/// Runs `f` over `0..n` split into ranges of at least `min_chunk` items, on candle's CPU worker pool: the
/// threads candle's own element-wise kernels use, the calling thread among them. Sharing that pool (rather than
/// starting rayon's as well) keeps two sets of busy-waiting workers from competing for the same cores. The
/// pool is candle's process-wide one, started once; nothing here starts threads per call.
pub(crate) fn par_chunks(n: usize, min_chunk: usize, f: impl Fn(std::ops::Range<usize>) + Sync) {
    let min_chunk = min_chunk.max(1);
    if n == 0 {
        return;
    }
    if n <= min_chunk || threads() == 1 {
        return f(0..n);
    }
    candle_core::utils::barrier_pool()
        .execute_chunked(n.div_ceil(min_chunk), |r| f(r.start * min_chunk..(r.end * min_chunk).min(n)));
}

#[cfg(test)]
mod uninit_tests {
    use super::{filled, par_chunks, Uninit};

    /// Blocks written by parallel tasks make up the whole vector, each where its offset says.
    #[test]
    fn parallel_blocks_fill_the_vector() {
        let (blocks, block) = (37, 5);
        let mut v = Uninit::<u32>::new(blocks * block);
        let w = v.writer();
        par_chunks(blocks, 3, |bs| {
            for b in bs {
                // SAFETY: block b is written by this iteration only.
                let slots = unsafe { w.block(b * block, block) };
                for (i, s) in slots.iter_mut().enumerate() {
                    s.write((b * block + i) as u32);
                }
            }
        });
        // SAFETY: the blocks cover 0..blocks·block and each was written in full.
        let v = unsafe { v.assume_init() };
        assert_eq!(v, (0..(blocks * block) as u32).collect::<Vec<_>>());
    }

    /// `filled` initializes every slot; an empty `Uninit` needs no writes.
    #[test]
    fn filled_and_empty() {
        let mut v = Uninit::<f32>::new(4);
        // SAFETY: the only block in use.
        let xs = filled(unsafe { v.writer().block(0, 4) }, -1.5);
        xs[2] = 3.0;
        // SAFETY: all four elements were written by `filled`.
        assert_eq!(unsafe { v.assume_init() }, [-1.5, -1.5, 3.0, -1.5]);
        // SAFETY: zero elements.
        assert!(unsafe { Uninit::<f32>::new(0).assume_init() }.is_empty());
    }

    /// A block that would run past the end is refused before any write.
    #[test]
    #[should_panic(expected = "past 6")]
    fn block_past_the_end_panics() {
        let mut v = Uninit::<f32>::new(6);
        // SAFETY: nothing else uses the writer; the call panics before handing out a slice.
        let _ = unsafe { v.writer().block(4, 3) };
    }
}

#[cfg(test)]
mod block_sum_tests {
    use super::par_block_sums;

    /// The parallel sum equals the sequential one taken block by block, bit for bit, with values whose sum
    /// depends on the order of the additions.
    #[test]
    fn block_sums_are_the_sequential_block_order_sum() {
        let value = |i: usize, k: usize| -> f32 {
            ((i * 7 + k * 3) % 11) as f32 * 1e-3 + if i.is_multiple_of(5) { 1e7 } else { -0.7 }
        };
        for (n, block, width) in [(37, 4, 3), (1, 4, 2), (8, 8, 1), (100, 4, 5), (0, 3, 2)] {
            let got = par_block_sums(n, block, width, |items, slot| {
                for i in items {
                    for (k, s) in slot.iter_mut().enumerate() {
                        *s += value(i, k);
                    }
                }
            });
            let mut want = vec![0f32; width];
            for start in (0..n).step_by(block) {
                let mut slot = vec![0f32; width];
                for i in start..(start + block).min(n) {
                    for (k, s) in slot.iter_mut().enumerate() {
                        *s += value(i, k);
                    }
                }
                want.iter_mut().zip(&slot).for_each(|(t, p)| *t += p);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "n {n}, block {block}, width {width}");
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {

    /// Every value of `t` as f64, flattened row-major: for references written as scalar loops.
    pub(crate) fn values_f64(t: &Tensor) -> Vec<f64> {
        t.to_dtype(candle_core::DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
    }

    /// Central differences (step 1e-6) of `f` with respect to every entry of every vector in `p`.
    pub(crate) fn central_differences(p: &[Vec<f64>], f: impl Fn(&[Vec<f64>]) -> f64) -> Vec<Vec<f64>> {
        let eps = 1e-6;
        let mut q = p.to_vec();
        let mut grads = vec![];
        for k in 0..p.len() {
            let mut g = vec![0.0; p[k].len()];
            for (j, gj) in g.iter_mut().enumerate() {
                let orig = q[k][j];
                q[k][j] = orig + eps;
                let up = f(&q);
                q[k][j] = orig - eps;
                let down = f(&q);
                q[k][j] = orig;
                *gj = (up - down) / (2.0 * eps);
            }
            grads.push(g);
        }
        grads
    }
    use candle_core::{Result, Tensor};

    /// `max|a − b| / max(max|b|, 1e-30)`: the relative error the fast paths are held to (1e-5 in f32).
    pub fn rel_err(a: &Tensor, b: &Tensor) -> Result<f32> {
        assert_eq!(a.dims(), b.dims());
        let diff = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?.max(1e-30);
        Ok(diff / scale)
    }

    thread_local! {
        /// The relative error the comparisons here allow on this thread: 1e-5 unless [`with_tolerance`] runs.
        static TOLERANCE: std::cell::Cell<f32> = const { std::cell::Cell::new(1e-5) };
    }

    fn tolerance() -> f32 {
        TOLERANCE.with(|t| t.get())
    }

    /// Runs `f` with the comparisons of this module held to `tol` instead of 1e-5 on this thread: for a whole
    /// model whose gradients pass through enough layers and cancelling sums that a measured rounding difference
    /// exceeds 1e-5. The caller says in a comment what was measured.
    pub fn with_tolerance<R>(tol: f32, f: impl FnOnce() -> R) -> R {
        let before = TOLERANCE.with(|t| t.replace(tol));
        let r = f();
        TOLERANCE.with(|t| t.set(before));
        r
    }

    /// Asserts [`rel_err`] ≤ 1e-5 (or the tolerance [`with_tolerance`] set).
    pub fn assert_close(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
        let e = rel_err(a, b)?;
        let tol = tolerance();
        assert!(e <= tol, "{what}: relative error {e} (tolerance {tol})");
        Ok(())
    }

    /// A seeded standard-normal tensor on the CPU.
    pub fn randn(shape: &[usize], seed: u64) -> Tensor {
        crate::rng::Rng::new(seed).normal_tensor(shape, 0.0, 1.0, &candle_core::Device::Cpu).unwrap()
    }

    /// Asserts that `fast` and `plain` have the same values and the same gradients with respect to each of
    /// `vars`, under a loss that weights every output differently (so every gradient entry is exercised).
    pub fn assert_same_values_and_grads(
        fast: &Tensor,
        plain: &Tensor,
        vars: &[(&candle_core::Var, &str)],
        what: &str,
    ) -> Result<()> {
        assert_close(fast, plain, &format!("{what}: values"))?;
        let r = randn(fast.dims(), 4);
        let gf = (fast * &r)?.sum_all()?.backward()?;
        let gp = (plain * &r)?.sum_all()?.backward()?;
        for (v, name) in vars {
            let (f, p) = (gf.get(v), gp.get(v));
            let (f, p) =
                f.zip(p).unwrap_or_else(|| panic!("{what}: {name} has no gradient on the fused or plain path"));
            assert_close(f, p, &format!("{what}: {name}"))?;
        }
        Ok(())
    }

    /// [`assert_same_values_and_grads`] over every trained parameter in `vars` (by name; batch norm's running
    /// statistics are vars but get no gradient, so they are left out) and the given `inputs`.
    pub fn assert_paths_agree(
        fused: &Tensor,
        plain: &Tensor,
        vars: &candle_nn::VarMap,
        inputs: &[&candle_core::Var],
        what: &str,
    ) -> Result<()> {
        let data = vars.data().lock().unwrap().clone();
        let mut named: Vec<(&candle_core::Var, &str)> =
            data.iter().filter(|(n, _)| !n.contains("running")).map(|(n, v)| (v, n.as_str())).collect();
        named.extend(inputs.iter().map(|v| (*v, "input")));
        assert_same_values_and_grads(fused, plain, &named, what)
    }

    /// [`assert_paths_agree`] for a model whose parameters named `…{suffix}` have a gradient that is zero in exact
    /// arithmetic (an attention's key bias: it shifts every score of a query by the same amount, which the softmax
    /// ignores). Their rounding noise is compared to the largest gradient of the other parameters instead: both
    /// paths must keep it below 1e-5 of that.
    pub fn assert_paths_agree_but_zero(
        fused: &Tensor,
        plain: &Tensor,
        vars: &candle_nn::VarMap,
        inputs: &[&candle_core::Var],
        zero_suffix: &str,
        what: &str,
    ) -> Result<()> {
        let data = vars.data().lock().unwrap().clone();
        let mut named: Vec<(&candle_core::Var, &str)> = data
            .iter()
            .filter(|(n, _)| !n.contains("running") && !n.ends_with(zero_suffix))
            .map(|(n, v)| (v, n.as_str()))
            .collect();
        named.extend(inputs.iter().map(|v| (*v, "input")));
        assert_same_values_and_grads(fused, plain, &named, what)?;
        let r = randn(fused.dims(), 4);
        for out in [fused, plain] {
            let g = (out * &r)?.sum_all()?.backward()?;
            let largest = |names: &mut dyn Iterator<Item = &candle_core::Var>| -> Result<f32> {
                let mut m = 0f32;
                for v in names {
                    if let Some(t) = g.get(v) {
                        m = m.max(t.abs()?.max_all()?.to_scalar::<f32>()?);
                    }
                }
                Ok(m)
            };
            let scale = largest(&mut named.iter().map(|(v, _)| *v))?;
            let noise = largest(&mut data.iter().filter(|(n, _)| n.ends_with(zero_suffix)).map(|(_, v)| v))?;
            assert!(
                noise <= tolerance() * scale,
                "{what}: the {zero_suffix} gradients should be zero; largest {noise} vs {scale}"
            );
        }
        Ok(())
    }

    /// The same tensor as a non-contiguous view: stored transposed, then transposed back.
    pub fn strided(t: &Tensor) -> Result<Tensor> {
        let r = t.rank();
        let s = t.transpose(0, r - 1)?.contiguous()?.transpose(0, r - 1)?;
        assert!(!s.is_contiguous() || t.dims().iter().filter(|d| **d > 1).count() < 2);
        Ok(s)
    }
}
