//! Calibration runs for the Vision Transformer notebook (`notebooks/04-transformers/07-vision-transformer`): the ViT
//! and the CNN (`SmallCnn`) trained on nested subsets of Fashion-MNIST's training images, each at several learning
//! rates and seeds, as the notebook trains them; test accuracy on all 10,000 test images.
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_vit
//! SIZES=1000,5000,60000 LRS_VIT=5e-4,1e-3,2e-3 LRS_CNN=1e-3,2e-3,4e-3 SEEDS=2 STEPS=1500 \
//!     cargo run --release -p dlhist --example calibrate_vit
//! ```
//!
//! Knobs (environment): SIZES (training images, comma list; every subset is the start of one seeded order of the
//! 60,000, so the smaller ones are nested in the larger), STEPS (Adam steps per run, the same at every size),
//! BATCH (64), PATCH (the ViT's patch side, 4), LRS_VIT, LRS_CNN (comma lists; `none` skips the model), SEEDS
//! (runs per setting: initialization and batch order), WD (AdamW's decoupled weight decay, 0.05), TEST (test images,
//! 10000). Each run warms up for a twentieth of the steps and follows a cosine to zero. Prints one line per run
//! (test accuracy, seconds), then the median over seeds of the best rate per model and size.

use dlhist::deep_neural_networks::SmallCnn;
use dlhist::optim::{CosineAnnealing, LinearWarmup};
use dlhist::optimization::{AdamW, AdamWConfig};
use dlhist::prelude::*;
use dlhist::train::test_accuracy;
use dlhist::transformers::{Vit, VitConfig};

mod common;

fn main() -> Result<()> {
    let sizes: Vec<usize> = common::list("SIZES", "1000,5000,60000");
    let steps: usize = common::env("STEPS", 1500);
    let batch: usize = common::env("BATCH", 64);
    let patch: usize = common::env("PATCH", 4);
    let seeds: u64 = common::env("SEEDS", 1);
    let wd: f64 = common::env("WD", 0.05);
    let n_test: usize = common::env("TEST", 10000);
    let models = [
        ("vit", common::list::<f64>("LRS_VIT", "5e-4,1e-3,2e-3")),
        ("cnn", common::list::<f64>("LRS_CNN", "1e-3,2e-3,4e-3")),
    ];
    let dev = Device::Cpu;
    let fashion = dlhist::data::fashion_mnist()?;
    let order = Rng::new(2020).fork("subsets").permutation(fashion.train.len());
    let test = fashion.test.take(n_test)?;
    // (model, size, lr, seed, accuracy)
    let mut runs: Vec<(&str, usize, f64, u64, f64)> = vec![];
    for &n in &sizes {
        let train = fashion.train.subset(&order[..n])?;
        for (model, lrs) in &models {
            for &lr in lrs {
                for seed in 0..seeds {
                    let started = std::time::Instant::now();
                    let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
                    // As many passes as `steps` needs at this size; the run stops at `steps`.
                    let epochs = steps.div_ceil(n.div_ceil(batch));
                    let cfg =
                        FitConfig { epochs, batch_size: batch, seed, max_steps: Some(steps), ..Default::default() };
                    let warm = (steps / 20).max(1);
                    let schedule = LinearWarmup::new(warm, CosineAnnealing::new(lr, 0.0, steps - warm)?);
                    let cfg = FitConfig { schedule: Some(std::sync::Arc::new(schedule)), ..cfg };
                    // The optimizer is made after the model: it takes the variables the model has created.
                    let adamw = |vars: &VarMap| AdamW::new(vars.all_vars(), AdamWConfig::new(lr, wd));
                    let acc = if *model == "vit" {
                        let vit = Vit::new(VitConfig::fashion_mnist(patch), vb)?;
                        let mut opt = adamw(&vars)?;
                        fit(&vit, &mut opt, &train, None, &cfg)?;
                        test_accuracy(&vit, &test)?
                    } else {
                        let cnn = SmallCnn::new(10, vb)?;
                        let mut opt = adamw(&vars)?;
                        fit(&cnn, &mut opt, &train, None, &cfg)?;
                        test_accuracy(&cnn, &test)?
                    };
                    println!(
                        "{model} n {n:>5} lr {lr:<7} seed {seed}: test accuracy {acc:.4} ({} parameters, {:.0} s)",
                        dlhist::init::param_count(&vars),
                        started.elapsed().as_secs_f64()
                    );
                    runs.push((model, n, lr, seed, acc));
                }
            }
        }
    }
    println!("\nbest rate per model and size (median over seeds):");
    for &n in &sizes {
        for (model, lrs) in &models {
            let median = |lr: f64| {
                let mut a: Vec<f64> =
                    runs.iter().filter(|r| r.0 == *model && r.1 == n && r.2 == lr).map(|r| r.4).collect();
                a.sort_by(f64::total_cmp);
                // The middle value, or the mean of the middle two.
                match a.len() {
                    0 => f64::NAN,
                    k if k % 2 == 1 => a[k / 2],
                    k => (a[k / 2 - 1] + a[k / 2]) / 2.0,
                }
            };
            if let Some((lr, acc)) = lrs.iter().map(|&lr| (lr, median(lr))).max_by(|a, b| a.1.total_cmp(&b.1)) {
                println!("{model} n {n:>5}: lr {lr} → {acc:.4}");
            }
        }
    }
    Ok(())
}
