//! Calibration runs for the AlexNet notebook's ReLU-against-tanh race (`notebooks/01-deep-neural-networks/03-alex-net`),
//! the design issue 14 asked for: both networks start from the same weights with the classifier (fc8) zeroed, the
//! per-pixel mean image of the training images is subtracted (as AlexNet did) and the result multiplied by a scale
//! `s`, each trains with momentum SGD at every learning rate of a grid, and every `EVAL_EVERY` steps the training
//! error is measured in evaluation mode on a fixed subset of the training images, along with the share of
//! saturated tanh units (|h| > 0.95) or of ReLU outputs that are exactly zero and of ReLU units silent on every probe
//! image.
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_alexnet_race
//! UNITS=relu,tanh LRS=0.001,0.002,0.004 SCALES=1,64 SEEDS=1 EPOCHS=5 THRESHOLD=0.1 \
//!     cargo run --release -p dlhist --example calibrate_alexnet_race
//! ```
//!
//! Knobs (environment): UNITS, LRS, SCALES (comma lists), SEEDS (runs per setting: initialization and batch order),
//! N (training images, 20000), PROBE (the first this many of them measure the error, 2000), EPOCHS (5), STEPS (stop
//! after this many steps even mid-epoch; unset: every epoch), BATCH (32),
//! EVAL_EVERY (steps between measurements, 125), THRESHOLD (training error the race ends at, 0.10), STOP (1: end a run
//! once it reaches THRESHOLD; 0: train every epoch), ZERO_FC (1: fc8 starts at zero), CHANNELS (5 numbers,
//! 16,32,48,48,32), HIDDEN (128). Prints one line per measurement and a summary line per run.

use dlhist::deep_neural_networks::{AlexNet, AlexNetConfig};
use dlhist::layers::Activation;
use dlhist::prelude::*;
use dlhist::train::{on_step, Control};

mod common;

/// Training error, and (saturated share, zero share, silent-unit share) over the hidden layers, of `net` on `probe`.
fn probe_stats(net: &AlexNet, probe: &Dataset) -> Result<(f64, f64, f64, f64)> {
    let (mut wrong, mut sat, mut zero, mut values) = (0usize, 0.0, 0.0, 0usize);
    let mut peak: Vec<Tensor> = vec![];
    for start in (0..probe.len()).step_by(500) {
        let n = 500.min(probe.len() - start);
        let outs = net.forward_all(&probe.x.narrow(0, start, n)?)?;
        let (hidden, logits) = outs.split_at(7);
        let pred = logits[0].argmax(1)?;
        wrong += pred.ne(&probe.y.narrow(0, start, n)?)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as usize;
        if start == 0 {
            // The first layer alone, on the first batch: where input scale shows first.
            let h1 = hidden[0].flatten_all()?;
            let share =
                |m: Tensor| -> Result<f64> { Ok(m.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()? as f64) };
            println!("  conv1: saturated {:.3}, zero {:.3}", share(h1.abs()?.ge(0.95)?)?, share(h1.eq(0.0)?)?);
        }
        for (l, h) in hidden.iter().enumerate() {
            let flat = h.flatten_from(1)?;
            values += flat.elem_count();
            sat += flat.abs()?.ge(0.95)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as f64;
            zero += flat.eq(0.0)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as f64;
            // A unit is silent when its largest output over every probe image is 0.
            let m = flat.abs()?.max(0)?;
            if peak.len() <= l {
                peak.push(m);
            } else {
                peak[l] = peak[l].maximum(&m)?;
            }
        }
    }
    let (mut silent, mut units) = (0.0, 0usize);
    for m in &peak {
        units += m.elem_count();
        silent += m.eq(0.0)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    Ok((wrong as f64 / probe.len() as f64, sat / values as f64, zero / values as f64, silent / units as f64))
}

fn main() -> Result<()> {
    let units: Vec<String> = common::list("UNITS", "relu,tanh");
    let lrs: Vec<f64> = common::list("LRS", "0.001,0.002,0.004,0.008,0.016,0.032,0.064,0.128");
    let scales: Vec<f64> = common::list("SCALES", "1");
    let seeds: u64 = common::env("SEEDS", 1);
    let n: usize = common::env("N", 20000);
    let n_probe: usize = common::env("PROBE", 2000);
    let epochs: usize = common::env("EPOCHS", 5);
    let batch: usize = common::env("BATCH", 32);
    let max_steps: usize = common::env("STEPS", usize::MAX);
    let eval_every: usize = common::env("EVAL_EVERY", 125);
    let threshold: f64 = common::env("THRESHOLD", 0.10);
    let stop: bool = common::env("STOP", 1) == 1;
    let zero_fc: bool = common::env("ZERO_FC", 1) == 1;
    let ch: Vec<usize> = common::list("CHANNELS", "16,32,48,48,32");
    let hidden: usize = common::env("HIDDEN", 128);
    let dev = Device::Cpu;
    let fashion = dlhist::data::fashion_mnist()?;
    let raw = fashion.train.take(n)?;
    // AlexNet subtracted the mean image of its training set from every input.
    let mean = raw.x.mean_keepdim(0)?;
    for &s in &scales {
        let x = (raw.x.broadcast_sub(&mean)? * s)?;
        let train = Dataset::new(x, raw.y.clone())?;
        let probe = train.take(n_probe)?;
        for unit in &units {
            let activation = if unit == "tanh" { Activation::Tanh } else { Activation::Relu };
            for &lr in &lrs {
                for seed in 0..seeds {
                    let started = std::time::Instant::now();
                    let cfg = AlexNetConfig {
                        activation,
                        lrn: false,
                        dropout: 0.0,
                        channels: [ch[0], ch[1], ch[2], ch[3], ch[4]],
                        hidden,
                        ..AlexNetConfig::full(10)
                    };
                    let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
                    let net = AlexNet::new(cfg, vb)?;
                    if zero_fc {
                        let w = vars.data().lock().unwrap().get("fc3.weight").cloned().expect("fc3.weight");
                        w.set(&w.zeros_like()?)?;
                    }
                    let w1_start = net.first_filters().copy()?;
                    let mut opt = Sgd::new(vars.all_vars(), SgdConfig::new(lr).momentum(0.9))?;
                    let mut reached: Option<usize> = None;
                    let mut curve: Vec<(usize, f64, f64, f64, f64)> = vec![];
                    let first = probe_stats(&net, &probe)?;
                    curve.push((0, first.0, first.1, first.2, first.3));
                    let outcome = {
                        let fit_cfg = FitConfig {
                            epochs,
                            batch_size: batch,
                            seed,
                            max_steps: Some(max_steps),
                            progress_every_s: None,
                            on_step: on_step(|s| {
                                if (s.step + 1) % eval_every != 0 {
                                    return Ok(Control::Continue);
                                }
                                let (err, sat, zero, silent) = probe_stats(&net, &probe)?;
                                curve.push((s.step + 1, err, sat, zero, silent));
                                if err <= threshold && reached.is_none() {
                                    reached = Some(s.step + 1);
                                }
                                Ok(if stop && reached.is_some() { Control::Stop } else { Control::Continue })
                            }),
                            ..Default::default()
                        };
                        fit(&net, &mut opt, &train, None, &fit_cfg)
                    };
                    let diverged = matches!(outcome, Err(dlhist::Error::Diverged { .. }));
                    if !diverged {
                        outcome?;
                    }
                    let moved = ((net.first_filters() - &w1_start)?.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?
                        / w1_start.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?)
                        as f64;
                    println!("conv1 moved {moved:.4} (relative)");
                    let line: Vec<String> = curve.iter().map(|c| format!("{}:{:.3}", c.0, c.1)).collect();
                    println!("curve {unit} s {s} lr {lr} seed {seed}: {}", line.join(" "));
                    let stats: Vec<String> =
                        curve.iter().map(|c| format!("{}:{:.3}/{:.3}/{:.3}", c.0, c.2, c.3, c.4)).collect();
                    println!("units {unit} s {s} lr {lr} seed {seed} (sat/zero/silent): {}", stats.join(" "));
                    let best = curve.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
                    let after_epoch = curve.iter().find(|c| c.0 >= n / batch).map_or(f64::NAN, |c| c.1);
                    println!(
                        "RUN {unit} s {s} lr {lr} seed {seed}: reached {} best {best:.4} after1ep {after_epoch:.4} last {:.4} diverged {diverged} {:.1}s",
                        reached.map_or("-".to_string(), |r| r.to_string()),
                        curve.last().map_or(f64::NAN, |c| c.1),
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }
    Ok(())
}
