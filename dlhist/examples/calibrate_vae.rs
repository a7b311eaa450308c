//! Calibration runs for the VAE notebook (`notebooks/05-image-generation/02-vae`): VAEs with several latent sizes
//! on binarized Fashion-MNIST (train and test bound, importance-weighted estimate, active units), then one- and
//! two-level VQ-VAEs on grey images, codebooks started on encoder outputs and learned by the loss or by moving
//! averages (reconstruction error, code perplexity, and for two levels the error when one level's codes are
//! swapped for another image's) and an LSTM prior over the one-level codes (Fréchet distance of its samples
//! against uniformly random codes).
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_vae
//! LATENTS=2,5,20,200 VAE_STEPS=3000 VQ_STEPS=1500 PRIOR_STEPS=1500 cargo run --release -p dlhist --example calibrate_vae
//! ```
//!
//! Knobs (environment): LATENTS (comma list, `none` skips), VAE_STEPS (2000), VAE_LR (1e-3), VQ_STEPS (1000,
//! 0 skips the VQ part), VQ_LR (1e-3), CHANNELS (32, the notebook's), LEVELS (1,2), BOTTOM_CODES (128), UPDATES
//! (loss,ema: how the codebooks learn), EMA_DECAY (0.99), PRIOR_STEPS (1000, 0 skips), PRIOR_LR (2e-3), SEED (0).
//! Batch 100 for the VAE, 64 for the rest.

use dlhist::image_generation::metrics::{frechet_distance, FeatureStats};
use dlhist::image_generation::vae::{binarize, Vae, VaeConfig};
use dlhist::image_generation::vq_vae::{perplexity, CodePrior, CodebookUpdate, VqVae, VqVaeConfig};
use dlhist::image_generation::yardstick::Yardstick;
use dlhist::optimization::{Adam, AdamConfig};
use dlhist::prelude::*;
use dlhist::train::for_batches;

mod common;

fn main() -> Result<()> {
    let latents: Vec<String> = common::list("LATENTS", "2,5,20,200");
    let vae_steps: usize = common::env("VAE_STEPS", 2000);
    let vae_lr: f64 = common::env("VAE_LR", 1e-3);
    let vq_steps: usize = common::env("VQ_STEPS", 1000);
    let vq_lr: f64 = common::env("VQ_LR", 1e-3);
    let channels: usize = common::env("CHANNELS", 32);
    let levels: Vec<usize> = common::list("LEVELS", "1,2");
    let bottom_codes: usize = common::env("BOTTOM_CODES", 128);
    let updates: Vec<String> = common::list("UPDATES", "loss,ema");
    let ema_decay: f64 = common::env("EMA_DECAY", 0.99);
    let prior_steps: usize = common::env("PRIOR_STEPS", 1000);
    let prior_lr: f64 = common::env("PRIOR_LR", 2e-3);
    let seed: u64 = common::env("SEED", 0);
    let dev = Device::Cpu;
    let fashion = dlhist::data::fashion_mnist()?;
    let train_bin = Dataset::new(binarize(&fashion.train.x.flatten_from(1)?, 1)?, fashion.train.y.clone())?;
    let test_bin = binarize(&fashion.test.take(2000)?.x.flatten_from(1)?, 2)?;
    let train_probe = train_bin.x.narrow(0, 0, 2000)?;
    for latent in latents.iter().filter(|l| *l != "none") {
        let latent: usize = latent.parse().expect("a latent size");
        let started = std::time::Instant::now();
        let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
        let vae = Vae::new(VaeConfig::paper(latent), vb)?;
        let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(vae_lr))?;
        let mut rng = Rng::new(seed).fork("eps");
        for_batches(&train_bin, vae_steps, 100, seed, |_, x, _| {
            opt.backward_step(&vae.elbo(x, &mut rng)?.loss()?)?;
            Ok(())
        })?;
        let mean = |t: Tensor| -> Result<f64> { Ok(t.mean_all()?.to_scalar::<f32>()? as f64) };
        let tr = mean(vae.elbo(&train_probe, &mut Rng::new(5))?.value()?)?;
        let te = mean(vae.elbo(&test_bin, &mut Rng::new(5))?.value()?)?;
        let iw = mean(vae.importance_weighted(&test_bin.narrow(0, 0, 500)?, 100, &mut Rng::new(6))?)?;
        let active = vae.active_units(&test_bin, 0.01)?;
        println!(
            "VAE latent {latent:3}: train bound {tr:8.2}, test bound {te:8.2}, test IW(100) {iw:8.2} (500 images), \
             active {active}, {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    if vq_steps == 0 {
        return Ok(());
    }
    let yardstick = Yardstick::load(&dev)?;
    let test = fashion.test.take(2000)?.x;
    let test_stats = FeatureStats::of(&yardstick.features(&test)?)?;
    for (&lv, name) in levels.iter().flat_map(|lv| updates.iter().map(move |u| (lv, u))) {
        let update = match name.as_str() {
            "loss" => CodebookUpdate::Loss,
            "ema" => CodebookUpdate::Ema { decay: ema_decay },
            other => panic!("UPDATES: loss or ema, not {other}"),
        };
        let started = std::time::Instant::now();
        let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
        let cfg = VqVaeConfig { channels, levels: lv, update, bottom_codes, ..VqVaeConfig::small() };
        let model = VqVae::new(cfg, vb)?;
        model.init_codebooks(&fashion.train.x.narrow(0, 0, 1000)?, &mut Rng::new(seed).fork("codebooks"))?;
        let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(vq_lr))?;
        for_batches(&fashion.train, vq_steps, 64, seed, |k, x, _| {
            let out = model.forward(x)?;
            let loss = out.loss(x)?;
            if k % 250 == 0 {
                println!("  step {k}: loss {:.4} ({:.0} s)", loss.to_scalar::<f32>()?, started.elapsed().as_secs_f64());
            }
            opt.backward_step(&loss)?;
            model.update_codebooks(&out)?;
            Ok(())
        })?;
        let out = model.forward(&test)?;
        let mse = (&out.reconstruction - &test)?.sqr()?.mean_all()?.to_scalar::<f32>()?;
        let ppl = perplexity(&out.top, cfg.codes)?;
        let ppl_b = out.bottom.as_ref().map(|b| perplexity(b, cfg.bottom_codes)).transpose()?;
        let rec_fd = frechet_distance(&test_stats, &FeatureStats::of(&yardstick.features(&out.reconstruction)?)?)?;
        println!(
            "VQ-VAE levels {lv}, codebook by {name}: test MSE {mse:.5}, perplexity top {ppl:.1} bottom {ppl_b:?}, \
             Fréchet of reconstructions {rec_fd:.2}, {:.0} s",
            started.elapsed().as_secs_f64()
        );
        if lv == 2 {
            let swap = model.level_swap_errors(&test)?;
            println!(
                "  swapping codes with the next image: MSE own {:.5}, top swapped {:.5} (×{:.2}), bottom swapped {:.5} \
                 (×{:.2})",
                swap.own,
                swap.top_swapped,
                swap.top_swapped / swap.own,
                swap.bottom_swapped,
                swap.bottom_swapped / swap.own
            );
        }
        if lv == 1 && prior_steps > 0 {
            let started = std::time::Instant::now();
            // The codes of every training image, once.
            let mut grids = vec![];
            for s in (0..fashion.train.len()).step_by(1000) {
                grids.push(model.forward(&fashion.train.x.narrow(0, s, 1000)?)?.top);
            }
            let codes = Dataset::new(Tensor::cat(&grids, 0)?, fashion.train.y.clone())?;
            let (pvars, pvb) = dlhist::init::seeded(seed + 1, DType::F32, &dev);
            let prior = CodePrior::new(cfg.codes, 64, 256, pvb)?;
            let mut popt = Adam::new(pvars.all_vars(), AdamConfig::new(prior_lr))?;
            for_batches(&codes, prior_steps, 64, seed, |k, g, _| {
                let loss = prior.loss(g)?;
                if k % 250 == 0 {
                    println!(
                        "  prior step {k}: {:.3} nats/code ({:.0} s)",
                        loss.to_scalar::<f32>()?,
                        started.elapsed().as_secs_f64()
                    );
                }
                popt.backward_step(&loss)?;
                Ok(())
            })?;
            let sampled = model.decode_codes(&prior.sample(2000, 7, &mut Rng::new(7), &dev)?, None)?;
            let mut r = Rng::new(8);
            let random: Vec<u32> = (0..2000 * 49).map(|_| r.below(cfg.codes) as u32).collect();
            let random = Tensor::from_vec(random, (2000, 7, 7), &dev)?;
            let random = model.decode_codes(&random, None)?;
            let fd = |x: &Tensor| -> Result<f64> {
                frechet_distance(&test_stats, &FeatureStats::of(&yardstick.features(x)?)?)
            };
            println!(
                "prior: Fréchet of samples {:.2}, of uniformly random codes {:.2}, {:.0} s",
                fd(&sampled)?,
                fd(&random)?,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
