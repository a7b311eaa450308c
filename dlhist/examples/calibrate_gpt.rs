//! Calibration runs for the Transformer notebook's character model (`notebooks/04-transformers/01-transformer`):
//! a GPT trained on random windows of the first 90% of Tiny Shakespeare, as the notebook trains it, then scored
//! on 200 fixed windows of the last 10%.
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_gpt -- STEPS BATCH LR SEED [LAYERS] [WIDTH] [CONTEXT]
//! # e.g. nanoGPT's CPU recipe size (4 layers, 128 wide, context 64), 2000 steps of 12 windows, Adam at 1e-3:
//! cargo run --release -p dlhist --example calibrate_gpt -- 2000 12 1e-3 0 4 128 64
//! ```
//!
//! The rate warms up linearly for STEPS/20 steps and then follows a cosine to a tenth of LR. Prints the
//! validation loss (nats per character) every STEPS/4 steps and the seconds taken.

use dlhist::data::{random_windows, CharVocab};
use dlhist::prelude::*;
use dlhist::train::{evaluate, on_step, Control, TokenCrossEntropy};
use dlhist::transformers::{Gpt, GptConfig};

mod common;

const USAGE: &str = "STEPS BATCH LR SEED [LAYERS] [WIDTH] [CONTEXT]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = common::arg(&args, 0, 2000, USAGE)?;
    let batch: usize = common::arg(&args, 1, 12, USAGE)?;
    let lr: f64 = common::arg(&args, 2, 1e-3, USAGE)?;
    let seed: u64 = common::arg(&args, 3, 0, USAGE)?;
    let n_layer: usize = common::arg(&args, 4, 4, USAGE)?;
    let n_embd: usize = common::arg(&args, 5, 128, USAGE)?;
    let block_size: usize = common::arg(&args, 6, 64, USAGE)?;
    let dev = Device::Cpu;
    let text = dlhist::data::tiny_shakespeare()?;
    let vocab = CharVocab::new(&text);
    let ids = vocab.encode(&text)?;
    let split = ids.len() * 9 / 10;
    let rng = Rng::new(seed);
    let train = random_windows(&ids[..split], steps * batch, block_size, &mut rng.fork("train"), &dev)?;
    let val = random_windows(&ids[split..], 200, block_size, &mut Rng::new(1).fork("val"), &dev)?;
    let cfg = GptConfig { vocab_size: vocab.len(), block_size, n_embd, n_layer, n_head: 4 };
    let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
    let gpt = Gpt::new(cfg, vb)?;
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(lr))?;
    let started = std::time::Instant::now();
    let quarter = (steps / 4).max(1);
    let probe = on_step(|s| {
        if (s.step + 1) % quarter == 0 {
            let v = evaluate(&gpt, &val, &TokenCrossEntropy, 100)?.loss;
            println!("step {:5}: validation {v:.4} nats/char ({:.0} s)", s.step + 1, started.elapsed().as_secs_f64());
        }
        Ok(Control::Continue)
    });
    let fc = common::pretraining_fit(common::Pretraining::NextToken, steps, batch, lr, probe)?;
    fit(&gpt, &mut opt, &train, None, &fc)?;
    println!(
        "gpt L{n_layer} C{n_embd} T{block_size} b{batch} lr{lr} seed{seed}: {} parameters, {:.1} ms/step",
        dlhist::init::param_count(&vars),
        1000.0 * started.elapsed().as_secs_f64() / steps as f64
    );
    Ok(())
}
