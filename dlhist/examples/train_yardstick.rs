//! Trains section 05's yardstick classifier (`image_generation::yardstick::FeatureNet`) on Fashion-MNIST and stores
//! it in `assets/models/fashion-yardstick.safetensors`, with a `.json` record (SHA-256, test accuracy, recipe).
//!
//! ```sh
//! cargo run --release -p dlhist --example train_yardstick           # (re)make the stored model
//! cargo run --release -p dlhist --example train_yardstick -- --check # retrain to a temporary file, compare hashes
//! ```
//!
//! The hash matches only on a machine whose floating-point results match the one that made the file (same CPU
//! features, same thread count); `--check` says whether this one does.

use dlhist::image_generation::yardstick::{FeatureNet, Yardstick, YARDSTICK_FILE, YARDSTICK_SHA256};
use dlhist::prelude::*;
use dlhist::train::evaluate;

const EPOCHS: usize = 3;
const BATCH: usize = 100;
const LR: f64 = 1e-3;
const SEED: u64 = 0;

fn main() -> Result<()> {
    let check = std::env::args().any(|a| a == "--check");
    let dev = Device::Cpu;
    let fashion = dlhist::data::fashion_mnist()?;
    let (vars, vb) = dlhist::init::seeded(SEED, DType::F32, &dev);
    let net = FeatureNet::new(vb)?;
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(LR))?;
    let started = std::time::Instant::now();
    let cfg = FitConfig { epochs: EPOCHS, batch_size: BATCH, seed: SEED, ..Default::default() };
    fit(&net, &mut opt, &fashion.train, None, &cfg)?;
    let seconds = started.elapsed().as_secs_f64();
    let test = evaluate(&net, &fashion.test, &CrossEntropy, 500)?;
    let accuracy = test.accuracy.expect("a classification loss");
    println!(
        "{} parameters, {EPOCHS} epochs in {seconds:.0} s: test accuracy {accuracy:.4}",
        dlhist::init::param_count(&vars)
    );
    let path = if check { std::env::temp_dir().join(YARDSTICK_FILE) } else { Yardstick::path() };
    dlhist::checkpoint::save(&vars, &path)?;
    let sha = dlhist::data::download::sha256_file(&path)?;
    println!("{}: sha256 {sha}", path.display());
    if check {
        let same = sha == YARDSTICK_SHA256;
        println!("{} the stored model's ({YARDSTICK_SHA256})", if same { "equal to" } else { "DIFFERENT from" });
        return if same {
            Ok(())
        } else {
            Err(Error::Invalid("the retrained model differs from the stored one".into()))
        };
    }
    let record = serde_json::json!({
        "file": YARDSTICK_FILE,
        "sha256": sha,
        "command": "cargo run --release -p dlhist --example train_yardstick",
        "training": { "data": "Fashion-MNIST, the 60,000 training images", "epochs": EPOCHS, "batch": BATCH,
                      "optimizer": "Adam", "lr": LR, "seed": SEED, "threads": rayon_threads() },
        "test_accuracy": (accuracy * 1e4).round() / 1e4,
        "test": "the 10,000 Fashion-MNIST test images",
    });
    let json_path = path.with_extension("json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&record).expect("JSON") + "\n")
        .map_err(|e| Error::io("cannot write", &json_path, e))?;
    println!(
        "wrote {}; set YARDSTICK_SHA256 in dlhist/src/image_generation/yardstick.rs to {sha}",
        json_path.display()
    );
    Ok(())
}

/// The number of threads candle's CPU kernels use here.
fn rayon_threads() -> usize {
    candle_core::utils::get_num_threads()
}
