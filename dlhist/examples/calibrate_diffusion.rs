//! Calibration runs for the diffusion notebook (`notebooks/05-image-generation/03-diffusion`): the 2-D swiss-roll
//! ablations (noise against mean prediction, linear against cosine schedule) and the speed and quality of the small
//! U-Net on Fashion-MNIST.
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_diffusion
//! TOY_STEPS=3000 SEEDS=3 UNET_STEPS=0 cargo run --release -p dlhist --example calibrate_diffusion
//! ```
//!
//! Knobs (environment): TOY_STEPS (3000; 0 skips), TOY_T (200), SEEDS (2), UNET_STEPS (300; 0 skips), CHANNELS (16),
//! LR (2e-3), SAMPLE_STEPS (50), N (500 samples for the distance).

use dlhist::image_generation::diffusion::{
    diffusion_loss, sample, swiss_roll, Ema, MlpDenoiser, Parameterization, Schedule, UNet,
};
use dlhist::image_generation::metrics::{frechet_distance, mean_nearest_distance, FeatureStats};
use dlhist::image_generation::yardstick::Yardstick;
use dlhist::optimization::{Adam, AdamConfig};
use dlhist::prelude::*;
use dlhist::train::for_batches;

mod common;

fn main() -> Result<()> {
    let toy_steps: usize = common::env("TOY_STEPS", 3000);
    let toy_t: usize = common::env("TOY_T", 200);
    let seeds: u64 = common::env("SEEDS", 2);
    let unet_steps: usize = common::env("UNET_STEPS", 300);
    let channels: usize = common::env("CHANNELS", 16);
    let lr: f64 = common::env("LR", 2e-3);
    let sample_steps: usize = common::env("SAMPLE_STEPS", 50);
    let n: usize = common::env("N", 500);
    let dev = Device::Cpu;
    if toy_steps > 0 {
        let data = swiss_roll(2000, 0.02, &mut Rng::new(100), &dev)?;
        for (sname, schedule) in
            [("linear", Schedule::linear(toy_t, 1e-4, 0.05)?), ("cosine", Schedule::cosine(toy_t, 0.008)?)]
        {
            for param in [Parameterization::Epsilon, Parameterization::Mean] {
                for seed in 0..seeds {
                    let t0 = std::time::Instant::now();
                    let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
                    let model = MlpDenoiser::new(128, vb)?;
                    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(1e-3))?;
                    let mut rng = Rng::new(seed).fork("noise");
                    let mut drng = Rng::new(seed).fork("data");
                    for _ in 0..toy_steps {
                        let x0 = swiss_roll(256, 0.02, &mut drng, &dev)?;
                        opt.backward_step(&diffusion_loss(&model, &schedule, param, &x0, &mut rng)?)?;
                    }
                    let s = sample(&model, &schedule, param, &[2000, 2], toy_t, false, None, &mut Rng::new(7), &dev)?;
                    println!(
                        "toy {sname} {param:?} seed {seed}: sample→data {:.4}, data→sample {:.4} ({:.1} s)",
                        mean_nearest_distance(&s, &data)?,
                        mean_nearest_distance(&data, &s)?,
                        t0.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }
    if unet_steps > 0 {
        let fashion = dlhist::data::fashion_mnist()?;
        let yardstick = Yardstick::load(&dev)?;
        let test_stats = FeatureStats::of(&yardstick.features(&fashion.test.take(n)?.x)?)?;
        let schedule = Schedule::linear(1000, 1e-4, 0.02)?;
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let unet = UNet::new(channels, vb)?;
        let mut ema = Ema::new(&vars, 0.995)?;
        let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(lr))?;
        let mut rng = Rng::new(0).fork("noise");
        let t0 = std::time::Instant::now();
        for_batches(&fashion.train, unet_steps, 64, 0, |k, x, _| {
            let x0 = x.affine(2.0, -1.0)?;
            let loss = diffusion_loss(&unet, &schedule, Parameterization::Epsilon, &x0, &mut rng)?;
            opt.backward_step(&loss)?;
            ema.update(&vars)?;
            if k % 100 == 0 {
                println!("unet step {k}: loss {:.4} ({:.1} s)", loss.to_scalar::<f32>()?, t0.elapsed().as_secs_f64());
            }
            Ok(())
        })?;
        let averaged = UNet::new(channels, ema.var_builder(&dev))?;
        for (name, model) in [("raw", &unet), ("ema", &averaged)] {
            let t1 = std::time::Instant::now();
            let x = sample(
                model,
                &schedule,
                Parameterization::Epsilon,
                &[n, 1, 28, 28],
                sample_steps,
                true,
                None,
                &mut Rng::new(3),
                &dev,
            )?;
            let img = ((x + 1.0)? * 0.5)?.clamp(0f32, 1f32)?;
            let fd = frechet_distance(&test_stats, &FeatureStats::of(&yardstick.features(&img)?)?)?;
            println!(
                "{name}: Fréchet {fd:.2} ({n} samples, {sample_steps} steps, {:.1} s)",
                t1.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
