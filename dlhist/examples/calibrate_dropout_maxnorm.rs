//! Calibration runs for the dropout notebook (`notebooks/02-optimization-and-regularization/04-dropout`) with the
//! paper's own recipe instead of Adam: SGD with momentum, a max-norm constraint on every weight matrix
//! ([`dlhist::optim::max_norm`]), dropout 0.2 on the inputs and 0.5 after every hidden layer, against the same
//! network without dropout (with and without max-norm), each at every rate of a grid; test error on all 10,000
//! test images.
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_dropout_maxnorm
//! SIZES=1000,5000 LRS=0.01,0.03,0.1 STEPS=3000 SEEDS=2 C=3 cargo run --release -p dlhist --example calibrate_dropout_maxnorm
//! ```
//!
//! Knobs (environment): SIZES (training images, comma list; nested subsets of one seeded order), LRS (comma list),
//! VARIANTS (comma list of `plain`, `maxnorm`, `dropout`: dropout always comes with max-norm, as in the paper),
//! STEPS (SGD steps per run, 3000), BATCH (100), MOMENTUM (0.95), C (the max-norm radius, 3.0), WIDTH (512),
//! BLOCKS (1: three hidden layers), SEEDS (1), TEST (10000). Prints one line per run, then per size and variant
//! the best rate's mean test error over seeds.

use dlhist::layers::Dropout;
use dlhist::optimization::{DeepMlp, DeepMlpConfig};
use dlhist::prelude::*;
use dlhist::train::{on_step, test_accuracy, Control};

mod common;

/// Input dropout, then the MLP (with its own dropout after every hidden layer when configured).
struct Net {
    input: Option<Dropout>,
    body: DeepMlp,
}

impl ModuleT for Net {
    fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        match &self.input {
            Some(d) => self.body.forward_t(&d.forward_t(x, train)?, train),
            None => self.body.forward_t(x, train),
        }
    }
}

fn main() -> Result<()> {
    let sizes: Vec<usize> = common::list("SIZES", "1000,5000");
    let lrs: Vec<f64> = common::list("LRS", "0.01,0.03,0.1");
    let variants: Vec<String> = common::list("VARIANTS", "plain,maxnorm,dropout");
    let steps: usize = common::env("STEPS", 3000);
    let batch: usize = common::env("BATCH", 100);
    let momentum: f64 = common::env("MOMENTUM", 0.95);
    let c: f64 = common::env("C", 3.0);
    let width: usize = common::env("WIDTH", 512);
    let blocks: usize = common::env("BLOCKS", 1);
    let seeds: u64 = common::env("SEEDS", 1);
    let n_test: usize = common::env("TEST", 10000);
    let dev = Device::Cpu;
    let fashion = dlhist::data::fashion_mnist()?;
    let order = Rng::new(2014).fork("subsets").permutation(fashion.train.len());
    let test = fashion.test.take(n_test)?;
    let flat = |d: &Dataset| Dataset::new(d.x.flatten_from(1)?, d.y.clone());
    let test = flat(&test)?;
    // (size, variant, lr, seed, test error)
    let mut runs: Vec<(usize, String, f64, u64, f64)> = vec![];
    for &n in &sizes {
        let train = flat(&fashion.train.subset(&order[..n])?)?;
        for variant in &variants {
            let (dropout, constrain) = match variant.as_str() {
                "plain" => (false, false),
                "maxnorm" => (false, true),
                _ => (true, true),
            };
            for &lr in &lrs {
                for seed in 0..seeds {
                    let started = std::time::Instant::now();
                    let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
                    let rng = Rng::new(seed);
                    let mut cfg = DeepMlpConfig::new(784, width, blocks, 10);
                    if dropout {
                        cfg = cfg.dropout(0.5, rng.fork("hidden-dropout").seed());
                    }
                    let input = if dropout { Some(Dropout::new(0.2, rng.fork("input-dropout").seed())?) } else { None };
                    let net = Net { input, body: DeepMlp::new(cfg, vb.pp("net"))? };
                    let weights: Vec<Var> = vars.all_vars().into_iter().filter(|v| v.rank() == 2).collect();
                    let mut opt = Sgd::new(vars.all_vars(), SgdConfig::new(lr).momentum(momentum))?;
                    let fit_cfg = FitConfig {
                        epochs: steps.div_ceil(n.div_ceil(batch)),
                        batch_size: batch,
                        seed,
                        max_steps: Some(steps),
                        progress_every_s: None,
                        on_step: on_step(|_| {
                            if constrain {
                                for w in &weights {
                                    dlhist::optim::max_norm(w, c)?;
                                }
                            }
                            Ok(Control::Continue)
                        }),
                        ..Default::default()
                    };
                    let error = match fit(&net, &mut opt, &train, None, &fit_cfg) {
                        Ok(_) => 100.0 * (1.0 - test_accuracy(&net, &test)?),
                        Err(dlhist::Error::Diverged { .. }) => f64::NAN,
                        Err(e) => return Err(e),
                    };
                    let train_error = 100.0 * (1.0 - test_accuracy(&net, &train)?);
                    println!(
                        "RUN n {n} {variant} lr {lr} seed {seed}: test error {error:.2}% (train {train_error:.2}%) {:.1}s",
                        started.elapsed().as_secs_f64()
                    );
                    runs.push((n, variant.clone(), lr, seed, error));
                }
            }
        }
    }
    for &n in &sizes {
        for variant in &variants {
            let mut best = (f64::NAN, f64::INFINITY);
            for &lr in &lrs {
                let e: Vec<f64> =
                    runs.iter().filter(|r| r.0 == n && &r.1 == variant && r.2 == lr).map(|r| r.4).collect();
                let mean = e.iter().sum::<f64>() / e.len() as f64;
                if mean < best.1 {
                    best = (lr, mean);
                }
            }
            println!("BEST n {n} {variant}: lr {} mean test error {:.2}%", best.0, best.1);
        }
    }
    Ok(())
}
