//! Where a training step of the AlexNet notebook's network goes.
//!
//! 1. The median and minimum time of one full training step (`forward_t(train = true)`, cross-entropy,
//!    backward, Adam update, through dlhist's `train_step` and `Adam` as the notebook calls them) on a batch
//!    of 64 random `1×28×28` images, for [`AlexNetConfig::full`] and the ablation's variants (tanh, no LRN,
//!    non-overlapping 2×2 pooling, no dropout).
//! 2. With `--breakdown`: the forward and the backward time of each piece of the full network on its own, at
//!    the shapes it sees in the step (convolutions with their activation, LRN, pools, fully connected layers),
//!    once as the plain candle composition and once as dlhist's fused ops. The backward of a piece includes its
//!    input's gradient, as inside the network (except the first convolution's, whose input is data).
//!
//! `THREADS` (default 2) sets the number of threads; the median is over 20 steps after 3 warm-up steps.
//! Arguments other than `--breakdown` select the variants whose names contain one of them (`full`, `tanh`...).
//!
//! ```text
//! THREADS=2 cargo run --release -p dlhist --example alexnet_step [-- [--breakdown] [VARIANT_SUBSTRING...]]
//! ```

use std::time::Instant;

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::Optimizer;
use dlhist::deep_neural_networks::{AlexNet, AlexNetConfig};
use dlhist::fast;
use dlhist::layers::{Activation, LocalResponseNorm, MaxPool2d};
use dlhist::optimization::{Adam, AdamConfig};
use dlhist::rng::Rng;
use dlhist::train::{train_step, CrossEntropy};

const BATCH: usize = 64;
const WARMUP: usize = 3;
const STEPS: usize = 20;

/// Median (mean of the middle two) and minimum of `STEPS` timed calls of `f` after `WARMUP` untimed ones, in ms.
fn time(mut f: impl FnMut()) -> (f64, f64) {
    let mut times = Vec::with_capacity(STEPS);
    for i in 0..WARMUP + STEPS {
        let t = Instant::now();
        f();
        if i >= WARMUP {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    ((times[STEPS / 2 - 1] + times[STEPS / 2]) / 2.0, times[0])
}

fn step_times(rng: &mut Rng, dev: &Device, wanted: impl Fn(&str) -> bool) -> dlhist::Result<()> {
    let x = rng.normal_tensor((BATCH, 1, 28, 28), 0.0, 1.0, dev)?;
    let ids: Vec<u32> = (0..BATCH).map(|_| rng.below(10) as u32).collect();
    let y = Tensor::from_vec(ids, BATCH, dev)?;
    let full = AlexNetConfig::full(10);
    let variants = [
        ("full (ReLU, LRN, overlapping pool, dropout 0.5)", full),
        ("tanh", AlexNetConfig { activation: Activation::Tanh, ..full }),
        ("no LRN", AlexNetConfig { lrn: false, ..full }),
        ("non-overlapping 2x2 pool", AlexNetConfig { overlapping_pool: false, ..full }),
        ("no LRN, 2x2 pool, no dropout", AlexNetConfig { lrn: false, overlapping_pool: false, dropout: 0.0, ..full }),
    ];
    for (name, cfg) in variants.into_iter().filter(|(name, _)| wanted(name)) {
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, dev);
        let net = AlexNet::new(cfg, vb)?;
        let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(1e-3))?;
        let (median, min) = time(|| {
            let (l, _) = train_step(&net, &mut opt, &x, &y, &CrossEntropy).expect("train step");
            assert!(l.is_finite(), "{name}: loss {l}");
        });
        println!("step  {name:<50} median {median:7.1} ms   min {min:7.1} ms");
    }
    Ok(())
}

/// Times `f(x)` alone and with the backward pass of a random weighting of its output; prints the forward time
/// and the backward time less that of the weighting itself (a product and a sum over the output, timed on
/// their own), which would otherwise dominate the cheap pieces.
fn piece(name: &str, x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> dlhist::Result<()> {
    let (fwd, _) = time(|| {
        f(x).expect("forward");
    });
    let out = f(x)?;
    let r = Rng::new(9).normal_tensor(out.dims(), 0.0, 1.0, x.device())?;
    let weigh = |t: &Tensor| (t * &r).and_then(|t| t.sum_all()).and_then(|t| t.backward()).expect("backward");
    let (both, _) = time(|| {
        weigh(&f(x).expect("forward"));
    });
    let leaf = Var::from_tensor(&out)?;
    let (harness, _) = time(|| {
        weigh(leaf.as_tensor());
    });
    let bwd = (both - fwd - harness).max(0.0);
    println!("piece {name:<36} forward {fwd:7.2} ms   backward {bwd:7.2} ms");
    Ok(())
}

/// The old LRN: squares, a zero-padded channel axis, `n` shifted slices summed, a power and a division.
fn lrn_composed(l: &LocalResponseNorm, x: &Tensor) -> Result<Tensor> {
    let (c, half) = (x.dims()[1], l.size / 2);
    let sq = x.sqr()?.pad_with_zeros(1, half, half)?;
    let mut sum = sq.narrow(1, 0, c)?;
    for offset in 1..2 * half + 1 {
        sum = (sum + sq.narrow(1, offset, c)?)?;
    }
    x / ((sum * l.alpha)? + l.k)?.powf(l.beta)?
}

fn breakdown(rng: &mut Rng, dev: &Device) -> dlhist::Result<()> {
    let cfg = AlexNetConfig::full(10);
    let lrn = LocalResponseNorm::alexnet();
    let (pool, last_pool) = (MaxPool2d::with_stride(3, 2, 1), MaxPool2d::with_stride(3, 2, 0));
    let mut side = 28;
    let mut fan_in = 1;
    for (i, &c) in cfg.channels.iter().enumerate() {
        // Inputs of every layer but the first carry a gradient, as inside the network.
        let x = rng.normal_tensor((BATCH, fan_in, side, side), 0.0, 1.0, dev)?;
        let x = if i == 0 { x } else { Var::from_tensor(&x)?.as_tensor().clone() };
        let w = Var::from_tensor(&rng.normal_tensor((c, fan_in, 3, 3), 0.0, 0.1, dev)?)?;
        let b = Var::from_tensor(&rng.normal_tensor(c, 0.0, 0.1, dev)?)?;
        let (w, b) = (w.as_tensor(), b.as_tensor());
        piece(&format!("conv{} {fan_in}->{c} @{side} + ReLU, candle", i + 1), &x, |x| {
            x.conv2d(w, 1, 1, 1, 1)?.broadcast_add(&b.reshape((c, 1, 1))?)?.relu()
        })?;
        piece(&format!("conv{} {fan_in}->{c} @{side} + ReLU, fused", i + 1), &x, |x| {
            fast::conv2d(x, w, b, 1, 1, Some(Activation::Relu))
        })?;
        let a = Var::from_tensor(&rng.normal_tensor((BATCH, c, side, side), 0.0, 1.0, dev)?)?.as_tensor().clone();
        if i < 2 {
            piece(&format!("lrn{} {c}@{side}, candle composition", i + 1), &a, |a| lrn_composed(&lrn, a))?;
            piece(&format!("lrn{} {c}@{side}, LocalResponseNorm", i + 1), &a, |a| lrn.forward(a))?;
        }
        if i < 2 || i == 4 {
            let p = if i < 2 { pool } else { last_pool };
            piece(&format!("pool {c}@{side} {}x{}/{}", p.kernel, p.kernel, p.stride), &a, |a| p.forward(a))?;
            side = p.out_size(side);
        }
        fan_in = c;
    }
    let mut width = cfg.channels[4] * side * side;
    for (i, out) in [cfg.hidden, cfg.hidden, cfg.classes].into_iter().enumerate() {
        let x = Var::from_tensor(&rng.normal_tensor((BATCH, width), 0.0, 1.0, dev)?)?.as_tensor().clone();
        let w = Var::from_tensor(&rng.normal_tensor((out, width), 0.0, 0.1, dev)?)?;
        let b = Var::from_tensor(&rng.normal_tensor(out, 0.0, 0.1, dev)?)?;
        let (w, b) = (w.as_tensor(), b.as_tensor());
        piece(&format!("fc{} {width}->{out}, candle", i + 1), &x, |x| x.matmul(&w.t()?)?.broadcast_add(b)?.relu())?;
        piece(&format!("fc{} {width}->{out}, fused", i + 1), &x, |x| fast::linear(x, w, b, Some(Activation::Relu)))?;
        width = out;
    }
    Ok(())
}

fn main() -> dlhist::Result<()> {
    let threads: usize = std::env::var("THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    // candle's worker pool and matrix products read RAYON_NUM_THREADS when first used.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    println!("batch {BATCH}, {threads} threads, median of {STEPS} after {WARMUP} warm-up");
    let dev = Device::Cpu;
    let mut rng = Rng::new(0);
    // Other arguments pick the variants whose names contain one of them (all by default).
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    step_times(&mut rng, &dev, |name| only.is_empty() || only.iter().any(|o| name.contains(o.as_str())))?;
    if std::env::args().any(|a| a == "--breakdown") {
        breakdown(&mut rng, &dev)?;
    }
    Ok(())
}
