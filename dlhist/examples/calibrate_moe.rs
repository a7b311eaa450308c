//! Calibration runs for the Mixture-of-Experts notebook (`notebooks/03-sequence-modeling/07-mixture-of-experts`):
//! the notebook's character language model on Tiny Shakespeare with a dense layer or a sparse mixture, trained
//! for a number of Adam steps and scored on the validation text.
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_moe -- EXPERTS STEPS SEED [BATCH] [SEQ_LEN] [LR]
//! # e.g. a mixture of 16 experts, 150 steps, seed 2017 (0 experts: the dense layer of equal compute):
//! cargo run --release -p dlhist --example calibrate_moe -- 16 150 2017
//! ```
//!
//! Hidden width 64, experts of 64 ReLU units, k = 2, as in the notebook; BATCH defaults to 32 sequences of
//! SEQ_LEN 64 characters, LR to 3e-3. Prints the validation cross-entropy (nats per character) and the time.

use dlhist::data::{CharVocab, Dataset};
use dlhist::prelude::*;
use dlhist::sequence_modeling::moe::{Ffn, MoeConfig, MoeLm};
use dlhist::train::evaluate;

mod common;

/// The usage line repeated by argument errors.
const USAGE: &str = "EXPERTS STEPS SEED [BATCH] [SEQ_LEN] [LR]";

/// Consecutive `len`-character sequences of `ids` and the characters that follow each.
fn chunks(ids: &[u32], len: usize, dev: &Device) -> Result<Dataset> {
    let n = (ids.len() - 1) / len;
    Dataset::new(
        Tensor::from_vec(ids[..n * len].to_vec(), (n, len), dev)?,
        Tensor::from_vec(ids[1..n * len + 1].to_vec(), (n, len), dev)?,
    )
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let experts: usize = common::arg(&args, 0, 16, USAGE)?;
    let steps: usize = common::arg(&args, 1, 150, USAGE)?;
    let seed: u64 = common::arg(&args, 2, 2017, USAGE)?;
    let batch: usize = common::arg(&args, 3, 32, USAGE)?;
    let seq_len: usize = common::arg(&args, 4, 64, USAGE)?;
    let lr: f64 = common::arg(&args, 5, 3e-3, USAGE)?;
    let (hidden, expert_hidden, k) = (64, 64, 2);
    let dev = Device::Cpu;
    let text = dlhist::data::tiny_shakespeare()?;
    let vocab = CharVocab::new(&text);
    let ids = vocab.encode(&text)?;
    let split = ids.len() * 9 / 10;
    let (train, val) = (chunks(&ids[..split], seq_len, &dev)?, chunks(&ids[split..], seq_len, &dev)?);
    let ffn = match experts {
        0 => Ffn::Dense(k * expert_hidden),
        n => Ffn::Moe(MoeConfig::new(n, k, expert_hidden)),
    };
    let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
    let lm = MoeLm::new(vocab.len(), hidden, ffn, false, seed, vb.pp("lm"))?;
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(lr))?;
    let loss = lm.loss();
    let started = std::time::Instant::now();
    let cfg = FitConfig {
        epochs: steps.div_ceil(train.len() / batch) + 1,
        batch_size: batch,
        seed,
        loss: std::sync::Arc::new(loss.clone()),
        max_steps: Some(steps),
        progress_every_s: None,
        ..Default::default()
    };
    fit(&lm, &mut opt, &train, None, &cfg)?;
    let secs = started.elapsed().as_secs_f64();
    let val_ce = evaluate(&lm, &val, &loss, 256)?.loss;
    println!(
        "experts {experts} steps {steps} seed {seed} batch {batch} seq {seq_len} lr {lr}: validation {val_ce:.4} nats/char, {} parameters, {secs:.1} s",
        dlhist::init::param_count(&vars)
    );
    Ok(())
}
