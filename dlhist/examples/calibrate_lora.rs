//! Calibration runs for the LoRA notebook (`notebooks/04-transformers/05-lora`): the pretrained character model
//! (`PretrainedGpt::char_shakespeare`) adapted to the Webster 1913 dictionary's prose, by full fine-tuning and by
//! LoRA on the query and value projections, each at several learning rates, as the notebook adapts it.
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_lora
//! STEPS=600 RANKS=1,4,8 LRS_FULL=3e-4,1e-3,3e-3 LRS_LORA=3e-3,1e-2,3e-2 SEEDS=2 \
//!     cargo run --release -p dlhist --example calibrate_lora
//! ```
//!
//! Knobs (environment): STEPS (adaptation steps, 600), BATCH (windows of 64 characters per step, 12), ALPHA (LoRA's
//! α, 8), RANKS, LRS_FULL, LRS_LORA (comma lists), SEEDS (runs per setting, 1), VAL (validation windows, 300),
//! TARGETS (`qv`: the query and value projections, the default; `all`: every weight matrix of every block).
//! `LRS_FULL=none` (no rate) skips full fine-tuning; BEST_FULL then gives its best loss from an earlier run, for the shares.
//! Each run warms up for a twentieth of the steps and follows a cosine to a tenth of its rate. Prints the pretrained
//! model's validation loss on the dictionary, then one line per run: its final validation loss, the share of full
//! fine-tuning's best improvement it recovers, and its seconds.

use dlhist::data::{random_windows, CharVocab};
use dlhist::layers::LoraConfig;
use dlhist::prelude::*;
use dlhist::train::{evaluate, TokenCrossEntropy};
use dlhist::transformers::{LoraTargets, PretrainedGpt};

mod common;

fn main() -> Result<()> {
    let steps: usize = common::env("STEPS", 600);
    let batch: usize = common::env("BATCH", 12);
    let alpha: f64 = common::env("ALPHA", 8.0);
    let seeds: u64 = common::env("SEEDS", 1);
    let n_val: usize = common::env("VAL", 300);
    let ranks: Vec<usize> = common::list("RANKS", "1,4,8");
    let lrs_full: Vec<f64> = common::list("LRS_FULL", "3e-4,1e-3,3e-3");
    let lrs_lora: Vec<f64> = common::list("LRS_LORA", "3e-3,1e-2,3e-2");
    let targets = match std::env::var("TARGETS").as_deref() {
        Ok("all") => LoraTargets::AllWeights,
        _ => LoraTargets::QueryValue,
    };
    let dev = Device::Cpu;
    let pre = PretrainedGpt::char_shakespeare()?;
    let (train_ids, val_ids) = dictionary(&pre.vocab, 2021)?;
    let t = pre.config.block_size;
    let val = random_windows(&val_ids, n_val, t, &mut Rng::new(2021).fork("val"), &dev)?;
    let base = pre.frozen(&dev)?;
    let base_loss = evaluate(&base, &val, &TokenCrossEntropy, 100)?.loss;
    println!("pretrained model on the dictionary: validation loss {base_loss:.4}");
    let mut runs: Vec<(String, f64, u64, f64, f64)> = vec![];
    let mut variants: Vec<(String, Option<usize>, Vec<f64>)> = vec![("full".into(), None, lrs_full)];
    variants.extend(ranks.iter().map(|&r| (format!("lora r={r}"), Some(r), lrs_lora.clone())));
    for (name, rank, lrs) in &variants {
        for &lr in lrs {
            for seed in 0..seeds {
                let train = random_windows(&train_ids, steps * batch, t, &mut Rng::new(seed).fork("train"), &dev)?;
                let started = std::time::Instant::now();
                let (model, vars) = match rank {
                    None => {
                        let (vars, gpt) = pre.trainable(&dev)?;
                        (gpt, vars)
                    }
                    Some(r) => {
                        let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
                        (base.with_lora(LoraConfig::new(*r, alpha), targets, vb)?, vars)
                    }
                };
                let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(lr))?;
                fit(
                    &model,
                    &mut opt,
                    &train,
                    None,
                    &common::pretraining_fit(common::Pretraining::NextToken, steps, batch, lr, None)?,
                )?;
                let loss = evaluate(&model, &val, &TokenCrossEntropy, 100)?.loss;
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "{name:<10} lr {lr:<7} seed {seed}: validation {loss:.4} ({} trainable, {secs:.0} s)",
                    dlhist::init::param_count(&vars)
                );
                runs.push((name.clone(), lr, seed, loss, secs));
            }
        }
    }
    let best_full =
        runs.iter().filter(|r| r.0 == "full").map(|r| r.3).fold(common::env("BEST_FULL", f64::INFINITY), f64::min);
    println!("\nshare of full fine-tuning's best improvement ({:.4} → {best_full:.4}) recovered:", base_loss);
    for (name, lr, seed, loss, _) in &runs {
        println!("{name:<10} lr {lr:<7} seed {seed}: {:.3}", (base_loss - loss) / (base_loss - best_full));
    }
    Ok(())
}

/// The dictionary's entries in a seeded order, 90% for training and 10% for validation, as ids of the model's
/// vocabulary (characters it lacks are left out).
fn dictionary(vocab: &CharVocab, seed: u64) -> Result<(Vec<u32>, Vec<u32>)> {
    let prose = dlhist::data::words::gcide_prose()?;
    let mut entries: Vec<&str> = prose.lines().collect();
    Rng::new(seed).fork("entries").shuffle(&mut entries);
    let cut = entries.len() * 9 / 10;
    let (train, dropped_train) = vocab.encode_known(&entries[..cut].join("\n"));
    let (val, dropped_val) = vocab.encode_known(&entries[cut..].join("\n"));
    println!(
        "dictionary: {} training and {} validation characters; {} characters outside the vocabulary left out",
        train.len(),
        val.len(),
        dropped_train + dropped_val
    );
    Ok((train, val))
}
