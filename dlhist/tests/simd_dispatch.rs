//! The CPU kernels pick their instruction set at run time, so one build runs on any x86-64 CPU.
//!
//! dlhist turns on the `gemm` crate's AVX-512 matrix kernels (its "x86-v4" feature). That must not make the
//! library need AVX-512: gemm, and dlhist's own element-wise kernels (`fast::vmath`), check the CPU when they
//! first run and fall back to AVX2+FMA or to plain code. This test runs the same small workload (candle matrix
//! products; a few Adam steps of a GELU MLP through the fused dense layer, of an LSTM through the fused
//! recurrence, of a one-layer GPT through the fused attention and cross-entropy, and of a tanh MLP; a tanh
//! convolution with a per-image shift) natively and on CPUs that QEMU's user-mode emulator pretends to be: a Haswell (AVX2 and FMA, no
//! AVX-512) and a plain x86-64 (SSE2 only). QEMU implements no AVX-512 at all, so an AVX-512 instruction run
//! there would end the child with SIGILL. On each CPU, `fast::cpu_report` must name the level that CPU allows,
//! and the numbers must agree with the native run's to 1e-5 of each array's largest value (the summation order of a matrix product
//! depends on the kernel's tile sizes).
//!
//! QEMU comes from Debian's `qemu-user` package (CI installs it). Without `qemu-x86_64` on the PATH, the test
//! checks the native run only and says so, unless `DLHIST_REQUIRE_QEMU=1` (CI sets it), when it fails.

use candle_core::{DType, Device, Module, ModuleT, Tensor};
use candle_nn::Optimizer;
use dlhist::deep_neural_networks::Mlp;
use dlhist::layers::{Activation, ConvBlock};
use dlhist::optimization::{Adam, AdamConfig};
use dlhist::rng::Rng;
use dlhist::sequence_modeling::Lstm;
use dlhist::train::{train_step, CrossEntropy, Loss, Mse};
use dlhist::transformers::{Gpt, GptConfig};

/// Marks the child's one line of results in its output.
const TAG: &str = "SIMD-DISPATCH-RESULT ";

/// The losses of `steps` Adam steps (learning rate 1e-2) of `model` on `(x, y)`, then the trained model's outputs.
fn adam_losses_then_outputs<M: ModuleT>(
    model: &M,
    vars: &candle_nn::VarMap,
    (x, y): (&Tensor, &Tensor),
    loss: &dyn Loss,
    steps: usize,
) -> dlhist::Result<Vec<f32>> {
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(1e-2))?;
    let mut out = vec![];
    for _ in 0..steps {
        out.push(train_step(model, &mut opt, x, y, loss)?.0 as f32);
    }
    out.extend(model.forward_t(x, false)?.flatten_all()?.to_vec1::<f32>()?);
    Ok(out)
}

/// The workload, run in a child process (natively or under QEMU) by [`every_cpu_level_runs_and_agrees`].
#[test]
#[ignore = "a child process of every_cpu_level_runs_and_agrees"]
fn child_workload() -> dlhist::Result<()> {
    let dev = Device::Cpu;
    let mut rng = Rng::new(7);
    let mut values: Vec<(&str, Vec<f32>)> = vec![];
    // Matrix products through candle's CPU backend (gemm), at a notebook's size and at awkward sizes that leave
    // partial tiles.
    for (name, (m, k, n)) in [("matmul_100x784x256", (100, 784, 256)), ("matmul_33x67x45", (33, 67, 45))] {
        let a = rng.normal_tensor((m, k), 0.0, 1.0, &dev)?;
        let b = rng.normal_tensor((k, n), 0.0, 1.0, &dev)?;
        values.push((name, a.matmul(&b)?.flatten_all()?.to_vec1::<f32>()?));
    }
    // A GELU MLP: dlhist's fused dense layer (gemm, and vmath's erf), trained with the fused Adam update.
    {
        let (vars, vb) = dlhist::init::seeded(1, DType::F32, &dev);
        let mlp = Mlp::new(&[20, 64, 64, 5], Activation::Gelu, vb)?;
        let x = rng.normal_tensor((50, 20), 0.0, 1.0, &dev)?;
        let y = Tensor::from_vec((0..50u32).map(|i| i % 5).collect::<Vec<_>>(), 50, &dev)?;
        let losses = adam_losses_then_outputs(&mlp, &vars, (&x, &y), &CrossEntropy, 5)?;
        values.push(("mlp_gelu_adam", losses));
    }
    // An LSTM: the fused recurrence (gemm, and vmath's sigmoid and tanh), regressed from its last state.
    {
        let (vars, vb) = dlhist::init::seeded(2, DType::F32, &dev);
        let lstm = Lstm::new(3, 32, vb.pp("lstm"))?;
        let out = candle_nn::linear(32, 1, vb.pp("out"))?;
        let model = |x: &Tensor| -> candle_core::Result<Tensor> { out.forward(&lstm.forward_with_state(x)?.1 .0) };
        let x = rng.normal_tensor((4, 10, 3), 0.0, 1.0, &dev)?;
        let y = rng.normal_tensor((4, 1), 0.0, 1.0, &dev)?;
        let losses = adam_losses_then_outputs(&model, &vars, (&x, &y), &Mse, 3)?;
        values.push(("lstm_adam", losses));
    }
    // A one-layer GPT: the fused causal attention and the softmax cross-entropy (vmath's softmax exponentials),
    // GELU in its MLP.
    {
        let (vars, vb) = dlhist::init::seeded(3, DType::F32, &dev);
        let cfg = GptConfig { vocab_size: 20, block_size: 8, n_embd: 16, n_layer: 1, n_head: 2 };
        let gpt = Gpt::new(cfg, vb)?;
        let model = |idx: &Tensor| -> candle_core::Result<Tensor> { gpt.forward(idx)?.flatten_to(1) };
        let ids = |n: usize| (0..n as u32).map(|i| (i * 7 + 3) % 20).collect::<Vec<_>>();
        let x = Tensor::from_vec(ids(16), (2, 8), &dev)?;
        let y = Tensor::from_vec(ids(17)[1..].to_vec(), 16, &dev)?;
        let losses = adam_losses_then_outputs(&model, &vars, (&x, &y), &CrossEntropy, 3)?;
        values.push(("gpt_attention_softmax", losses));
    }
    // tanh epilogues: a tanh MLP (fused dense layer) and a tanh convolution with a per-image shift.
    {
        let (vars, vb) = dlhist::init::seeded(4, DType::F32, &dev);
        let mlp = Mlp::new(&[20, 32, 5], Activation::Tanh, vb.pp("mlp"))?;
        let conv = ConvBlock::new(2, 3, 3, 1, Some(Activation::Tanh), vb.pp("conv"))?;
        let x = rng.normal_tensor((50, 20), 0.0, 1.0, &dev)?;
        let y = Tensor::from_vec((0..50u32).map(|i| i % 5).collect::<Vec<_>>(), 50, &dev)?;
        let mut out = adam_losses_then_outputs(&mlp, &vars, (&x, &y), &CrossEntropy, 3)?;
        let img = rng.normal_tensor((2, 2, 6, 6), 0.0, 1.0, &dev)?;
        let shift = rng.normal_tensor((2, 3), 0.0, 1.0, &dev)?;
        out.extend(conv.forward_with_shift(&img, &shift)?.flatten_all()?.to_vec1::<f32>()?);
        values.push(("tanh_dense_and_conv", out));
    }
    let cpu = dlhist::fast::cpu_report();
    let result = serde_json::json!({
        "matmul": cpu.matmul,
        "elementwise": cpu.elementwise,
        "values": values.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    });
    // On a line of its own: the test harness prints "test child_workload ... " before the test runs.
    println!("\n{TAG}{result}");
    Ok(())
}

/// One run of [`child_workload`]: the CPU levels it reported and its numbers.
struct Run {
    matmul: String,
    elementwise: String,
    values: std::collections::BTreeMap<String, Vec<f32>>,
}

/// Runs this test binary's `child_workload`, under `qemu-x86_64 -cpu <cpu>` when `cpu` is given.
fn run_child(qemu_cpu: Option<&str>) -> Run {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = match qemu_cpu {
        Some(cpu) => {
            let mut c = std::process::Command::new("qemu-x86_64");
            c.arg("-cpu").arg(cpu).arg(&exe);
            c
        }
        None => std::process::Command::new(&exe),
    };
    cmd.args(["child_workload", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("CANDLE_NUM_THREADS", "2")
        .env("RAYON_NUM_THREADS", "2");
    let what = qemu_cpu.map_or("natively".to_string(), |c| format!("under qemu-x86_64 -cpu {c}"));
    let out = cmd.output().unwrap_or_else(|e| panic!("could not run the workload {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the workload failed {what} ({}): a kernel may have used an instruction this CPU lacks\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once(TAG).map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no result {what}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("the child's JSON");
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let values = serde_json::from_value(v["values"].clone()).expect("the child's values");
    Run { matmul: text("matmul"), elementwise: text("elementwise"), values }
}

/// Over two runs' arrays, the largest max|a − b| / max|b| (a difference relative to the array's scale: single
/// entries of a product can be near zero), and whether every value is bit-identical.
fn compare(a: &Run, b: &Run) -> (f32, bool) {
    let (mut worst, mut identical) = (0f32, true);
    for (name, bv) in &b.values {
        let av = &a.values[name];
        assert_eq!(av.len(), bv.len(), "{name}: lengths differ");
        let scale = bv.iter().fold(0f32, |m, y| m.max(y.abs())).max(f32::MIN_POSITIVE);
        let mut diff = 0f32;
        for (x, y) in av.iter().zip(bv) {
            assert!(x.is_finite(), "{name}: {x}");
            identical &= x.to_bits() == y.to_bits();
            diff = diff.max((x - y).abs());
        }
        worst = worst.max(diff / scale);
    }
    (worst, identical)
}

fn qemu_available() -> bool {
    std::process::Command::new("qemu-x86_64").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn every_cpu_level_runs_and_agrees() {
    let native = run_child(None);
    // The native run names what this CPU has.
    #[cfg(target_arch = "x86_64")]
    {
        let expected = if std::is_x86_feature_detected!("avx512f") {
            "AVX-512"
        } else if std::is_x86_feature_detected!("fma") {
            "AVX2+FMA"
        } else {
            "scalar"
        };
        assert_eq!(native.matmul, expected);
    }
    assert_eq!(native.matmul, dlhist::fast::cpu_report().matmul);
    assert!(cfg!(target_arch = "x86_64") || native.matmul != "AVX-512");
    if !cfg!(target_arch = "x86_64") {
        return;
    }
    if !qemu_available() {
        let required = std::env::var("DLHIST_REQUIRE_QEMU").is_ok_and(|v| v == "1");
        assert!(!required, "DLHIST_REQUIRE_QEMU=1 but qemu-x86_64 is not on the PATH: apt-get install qemu-user");
        eprintln!(
            "simd_dispatch: qemu-x86_64 not found (Debian: apt-get install qemu-user), so only the native run \
             ({} matrix kernels) was checked",
            native.matmul
        );
        return;
    }
    // (QEMU's CPU model, the matrix kernels and the element-wise kernels it must pick.)
    for (cpu, matmul, elementwise) in [("Haswell", "AVX2+FMA", "AVX2+FMA"), ("qemu64", "scalar", "generic")] {
        let run = run_child(Some(cpu));
        assert_eq!((run.matmul.as_str(), run.elementwise.as_str()), (matmul, elementwise), "-cpu {cpu}");
        let (worst, identical) = compare(&run, &native);
        eprintln!(
            "simd_dispatch: -cpu {cpu} ({matmul}) against native ({}): largest relative difference {worst:.2e}, \
             bit-identical: {identical}",
            native.matmul
        );
        assert!(worst < 1e-5, "-cpu {cpu}: results differ from the native run by {worst:.2e} relative");
    }
}
