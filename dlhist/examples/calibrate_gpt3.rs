//! Calibration runs for the GPT-2/3 notebook (`notebooks/04-transformers/04-gpt`), configured by environment
//! variables:
//!
//! ```sh
//! # the scaling study: GPTs of several sizes on GPT-2 BPE tokens (its first MERGES merges) of Tiny Shakespeare
//! MODE=scaling MERGES=2048 SIZES=2x32,2x64,3x96,4x128 STEPS=600 BATCH=16 LR=3e-3 SEED=0 \
//!   cargo run --release -p dlhist --example calibrate_gpt3
//! # in-context learning: a GPT trained on label-mapping sequences, accuracy by number of shots
//! MODE=icl LAYERS=2 WIDTH=64 HEADS=4 PAIRS=16 STEPS=3000 BATCH=32 LR=3e-3 SEED=0 \
//!   cargo run --release -p dlhist --example calibrate_gpt3
//! ```
//!
//! Each run warms up for a twentieth of its steps and follows a cosine to a tenth of LR, with Adam, as the
//! notebook does. Sizes are `LAYERSxWIDTH`, with heads of 32 (at least 2).

use dlhist::data::gpt2_bpe::Gpt2Bpe;
use dlhist::data::random_windows;
use dlhist::prelude::*;
use dlhist::train::{evaluate, TokenCrossEntropy};
use dlhist::transformers::in_context::{accuracy_by_shots, LabelMappingTask};
use dlhist::transformers::scaling::{non_embedding_params, PowerLaw};
use dlhist::transformers::{Gpt, GptConfig};

mod common;
use common::env;

fn train(gpt: &Gpt, vars: &VarMap, data: &Dataset, steps: usize, batch: usize, lr: f64) -> Result<f64> {
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(lr))?;
    let started = std::time::Instant::now();
    let cfg = common::pretraining_fit(common::Pretraining::NextToken, steps, batch, lr, None)?;
    fit(gpt, &mut opt, data, None, &cfg)?;
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let mode: String = env("MODE", "scaling".to_string());
    let steps: usize = env("STEPS", 600);
    let batch: usize = env("BATCH", 16);
    let lr: f64 = env("LR", 3e-3);
    let seed: u64 = env("SEED", 0);
    if mode == "icl" {
        let (layers, width, pairs): (usize, usize, usize) = (env("LAYERS", 2), env("WIDTH", 64), env("PAIRS", 16));
        let per: usize = env("PER_CATEGORY", 6);
        let n_cats: usize = env("CATEGORIES", 4);
        let cats: Vec<(&str, &[&str])> =
            dlhist::transformers::in_context::CATEGORIES.iter().take(n_cats).map(|(n, ws)| (*n, &ws[..per])).collect();
        let task = LabelMappingTask::new(&cats, 2)?;
        let rng = Rng::new(seed);
        let data = task.sequences(steps * batch, pairs, &mut rng.fork("icl-train"), &dev)?;
        let test = task.sequences(2000, pairs, &mut Rng::new(1).fork("icl-test"), &dev)?;
        let cfg = GptConfig {
            vocab_size: task.vocab_size(),
            block_size: 2 * pairs,
            n_embd: width,
            n_layer: layers,
            n_head: env("HEADS", (width / 32).max(2)),
        };
        let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
        let gpt = Gpt::new(cfg, vb)?;
        let secs = train(&gpt, &vars, &data, steps, batch, lr)?;
        let acc = accuracy_by_shots(&gpt, &task, &test, 250)?;
        println!("icl L{layers} C{width} pairs{pairs} steps{steps} b{batch} lr{lr} seed{seed}: {secs:.0} s");
        for (k, a) in acc.iter().enumerate() {
            println!("  K={k:2}: model {a:.3}  optimum {:.3}", task.bayes_accuracy(k));
        }
        return Ok(());
    }
    let merges: usize = env("MERGES", 2048);
    let sizes: String = env("SIZES", "2x32,2x64,3x96,4x128".to_string());
    let block: usize = env("CONTEXT", 64);
    let bpe = Gpt2Bpe::truncated(merges)?;
    let text = dlhist::data::tiny_shakespeare()?;
    let ids = bpe.encode(&text)?;
    let split = ids.len() * 9 / 10;
    let data = random_windows(&ids[..split], steps * batch, block, &mut Rng::new(seed).fork("train"), &dev)?;
    let val = random_windows(&ids[split..], 400, block, &mut Rng::new(1).fork("val"), &dev)?;
    let (mut ns, mut losses) = (vec![], vec![]);
    for size in sizes.split(',') {
        let (l, c) = size.split_once('x').expect("sizes are LAYERSxWIDTH");
        let (l, c): (usize, usize) = (l.parse().unwrap(), c.parse().unwrap());
        let cfg =
            GptConfig { vocab_size: bpe.len(), block_size: block, n_embd: c, n_layer: l, n_head: (c / 32).max(2) };
        let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
        let gpt = Gpt::new(cfg, vb)?;
        let secs = train(&gpt, &vars, &data, steps, batch, lr)?;
        let v = evaluate(&gpt, &val, &TokenCrossEntropy, 100)?.loss;
        let n = non_embedding_params(&cfg);
        println!(
            "L{l} C{c}: N = {n}, validation {v:.4} nats/token, {secs:.0} s ({:.1} ms/step)",
            1000.0 * secs / steps as f64
        );
        ns.push(n as f64);
        losses.push(v);
    }
    if ns.len() < 3 {
        return Ok(());
    }
    let fit = PowerLaw::fit(&ns, &losses)?;
    println!(
        "merges {merges} steps {steps} b{batch} lr{lr} seed{seed}: L = {:.3} N^-{:.4}, R² = {:.4}",
        fit.a, fit.alpha, fit.r2
    );
    Ok(())
}
