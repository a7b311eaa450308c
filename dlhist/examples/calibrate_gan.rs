//! Calibration runs for the GAN notebook (`notebooks/05-image-generation/01-gan`): the original repository's
//! fully connected generator and discriminator on Fashion-MNIST, with the minimax and the non-saturating
//! generator loss, at several learning rates and seeds, judged by section 05's yardstick.
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_gan
//! STEPS=3000 LRS=1e-4,2e-4,4e-4 SEEDS=2 LOSSES=ns,mm cargo run --release -p dlhist --example calibrate_gan
//! ```
//!
//! Knobs (environment): STEPS (rounds of the game per run, 2000), BATCH (100), HIDDEN (256), LRS (Adam rates,
//! comma list, 2e-4), BETA1 (0.5), MOMENTUM (0: Adam; above 0: SGD with this momentum instead), SEEDS (runs per setting, 1), LOSSES (`ns` non-saturating, `mm` minimax),
//! EVERY (steps between measurements, 500), N (generated and test images per Fréchet distance, 2000). Prints
//! one line per measurement (discriminator outputs, gradient norm, Fréchet distance, inception score, the
//! largest class share, seconds).

use dlhist::image_generation::gan::{Gan, GanConfig, GanOptimizer, GeneratorLoss};
use dlhist::image_generation::metrics::{class_histogram, inception_score, FeatureStats};
use dlhist::image_generation::yardstick::Yardstick;
use dlhist::prelude::*;

mod common;

fn main() -> Result<()> {
    let steps: usize = common::env("STEPS", 2000);
    let batch: usize = common::env("BATCH", 100);
    let hidden: usize = common::env("HIDDEN", 256);
    let beta1: f64 = common::env("BETA1", 0.5);
    let momentum: f64 = common::env("MOMENTUM", 0.0);
    let seeds: u64 = common::env("SEEDS", 1);
    let every: usize = common::env("EVERY", 500);
    let n: usize = common::env("N", 2000);
    let lrs: Vec<f64> = common::list("LRS", "2e-4");
    let losses: Vec<String> = common::list("LOSSES", "ns,mm");
    let dev = Device::Cpu;
    let fashion = dlhist::data::fashion_mnist()?;
    let yardstick = Yardstick::load(&dev)?;
    let test_stats = FeatureStats::of(&yardstick.features(&fashion.test.take(n)?.x)?)?;
    for loss_name in &losses {
        let loss = if loss_name == "mm" { GeneratorLoss::Minimax } else { GeneratorLoss::NonSaturating };
        for &lr in &lrs {
            for seed in 0..seeds {
                let optimizer = if momentum > 0.0 {
                    GanOptimizer::Momentum { lr, momentum }
                } else {
                    GanOptimizer::Adam { lr, beta1 }
                };
                let config = GanConfig { hidden, optimizer, ..GanConfig::original() };
                let mut gan = Gan::new(config, loss, seed, &dev)?;
                let started = std::time::Instant::now();
                let mut grad = 0.0;
                gan.train(&fashion.train, steps, batch, seed, |step, gan, stats| {
                    grad += stats.g_grad_norm;
                    if step % every == 0 || step == 1 {
                        let samples = gan.sample(n, &mut Rng::new(99))?;
                        let fid = dlhist::image_generation::metrics::frechet_distance(
                            &test_stats,
                            &FeatureStats::of(&yardstick.features(&samples)?)?,
                        )?;
                        let probs = yardstick.probabilities(&samples)?;
                        let is = inception_score(&probs)?;
                        let top = class_histogram(&probs)?.into_iter().fold(0.0, f64::max);
                        let k = if step == 1 { 1 } else { every };
                        println!(
                            "{loss_name} lr {lr:e} seed {seed} step {step:5}: D(x) {:.3} D(G(z)) {:.3} |∇G| {:.4} \
                             (mean {:.4}) Fréchet {fid:7.2} IS {is:.2} top class {top:.2} {:.0} s",
                            stats.d_real,
                            stats.d_fake,
                            stats.g_grad_norm,
                            grad / k as f64,
                            started.elapsed().as_secs_f64()
                        );
                        grad = 0.0;
                    }
                    Ok(())
                })?;
            }
        }
    }
    Ok(())
}
