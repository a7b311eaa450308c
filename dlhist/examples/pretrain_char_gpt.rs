//! Makes the pretrained character model that the LoRA and RLHF notebooks start from,
//! `assets/models/char-gpt-shakespeare.safetensors` (see `dlhist::transformers::PretrainedGpt`).
//!
//! ```sh
//! cargo run --release -p dlhist --example pretrain_char_gpt            # writes the file and its .json record
//! cargo run --release -p dlhist --example pretrain_char_gpt -- --check # trains again and compares the bytes
//! ```
//!
//! The recipe is the Transformer notebook's character model (`notebooks/04-transformers/01-transformer`), nanoGPT's
//! CPU size: `GptConfig::char_small` (4 blocks, width 128, 4 heads, context 64), trained on random windows of the
//! first 90% of Tiny Shakespeare, 3000 Adam steps of 12 windows, the rate warmed up for 150 steps to 2e-3 and then
//! down a cosine to 2e-4, seed 0. About two and a half minutes on two cores. The run is deterministic on one machine
//! (seeded weights and windows, fused kernels that do not depend on the thread count), so `--check` on the machine
//! that made the file gives the same SHA-256; other CPUs may round differently, which is why the file is stored.

use dlhist::data::{random_windows, CharVocab};
use dlhist::prelude::*;
use dlhist::train::{evaluate, TokenCrossEntropy};
use dlhist::transformers::gpt::{CHAR_SHAKESPEARE_FILE, CHAR_SHAKESPEARE_SHA256};
use dlhist::transformers::{Gpt, GptConfig, PretrainedGpt};

mod common;

const STEPS: usize = 3000;
const BATCH: usize = 12;
const LR: f64 = 2e-3;
const SEED: u64 = 0;

fn main() -> Result<()> {
    let check = std::env::args().any(|a| a == "--check");
    let dev = Device::Cpu;
    let text = dlhist::data::tiny_shakespeare()?;
    let vocab = CharVocab::new(&text);
    let ids = vocab.encode(&text)?;
    let split = ids.len() * 9 / 10;
    let cfg = GptConfig::char_small(vocab.len());
    let train = random_windows(&ids[..split], STEPS * BATCH, cfg.block_size, &mut Rng::new(SEED).fork("train"), &dev)?;
    let val = random_windows(&ids[split..], 500, cfg.block_size, &mut Rng::new(SEED).fork("val"), &dev)?;
    let (vars, vb) = dlhist::init::seeded(SEED, DType::F32, &dev);
    let gpt = Gpt::new(cfg, vb)?;
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(LR))?;
    let started = std::time::Instant::now();
    fit(
        &gpt,
        &mut opt,
        &train,
        None,
        &common::pretraining_fit(common::Pretraining::NextToken, STEPS, BATCH, LR, None)?,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let val_loss = evaluate(&gpt, &val, &TokenCrossEntropy, 100)?.loss;
    println!("{} parameters, {STEPS} steps in {seconds:.0} s: validation loss {val_loss:.4} nats/char", {
        dlhist::init::param_count(&vars)
    });

    let dir = PretrainedGpt::models_dir();
    let path = if check { std::env::temp_dir().join(CHAR_SHAKESPEARE_FILE) } else { dir.join(CHAR_SHAKESPEARE_FILE) };
    dlhist::checkpoint::save(&vars, &path)?;
    let sha = dlhist::data::download::sha256_file(&path)?;
    println!("{}: sha256 {sha}", path.display());
    if check {
        let same = sha == CHAR_SHAKESPEARE_SHA256;
        println!("{} the stored model's ({CHAR_SHAKESPEARE_SHA256})", if same { "equal to" } else { "DIFFERENT from" });
        if !same {
            return Err(dlhist::Error::Invalid("the retrained model differs from the stored one".into()));
        }
        return Ok(());
    }
    let record = serde_json::json!({
        "file": CHAR_SHAKESPEARE_FILE,
        "sha256": sha,
        "command": "cargo run --release -p dlhist --example pretrain_char_gpt",
        "config": { "vocab_size": cfg.vocab_size, "block_size": cfg.block_size, "n_embd": cfg.n_embd,
                    "n_layer": cfg.n_layer, "n_head": cfg.n_head },
        "training": { "corpus": "Tiny Shakespeare, first 90% of the characters", "steps": STEPS, "batch": BATCH,
                      "peak_lr": LR, "schedule": "linear warm-up for 5% of the steps, cosine to a tenth", "seed": SEED },
        "validation_loss_nats_per_char": (val_loss * 1e4).round() / 1e4,
        "validation": "500 windows of 64 characters from the last 10%, seed 0",
    });
    let json_path = dir.join(CHAR_SHAKESPEARE_FILE.replace(".safetensors", ".json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&record).expect("JSON") + "\n")
        .map_err(|e| dlhist::Error::io("cannot write", &json_path, e))?;
    println!("wrote {}; set CHAR_SHAKESPEARE_SHA256 in dlhist/src/transformers/gpt.rs to {sha}", json_path.display());
    Ok(())
}
