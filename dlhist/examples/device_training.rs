//! The notebooks' heaviest training loops, run on whichever device `DLHIST_DEVICE` names, so a GPU run can be set
//! beside a CPU run of the same seed: AlexNet on Fashion-MNIST, the U-Net on generated cell images, and the
//! character GPT on Tiny Shakespeare.
//!
//! Each model trains `STEPS` Adam steps (default 300) on seeded batches (the same images, cells and text windows on
//! every device: the data and the initial weights come from dlhist's host-side generator) and prints one JSON line
//! every 25 steps: `{"model", "device", "step", "loss", "elapsed_s"}`, where `loss` is the mean training loss of
//! the last 25 steps. A last line per model gives the median step time in ms over the steps after the first 5.
//!
//! ```text
//! cargo run --release -p dlhist --example device_training [-- alexnet unet gpt]
//! DLHIST_DEVICE=cuda cargo run --release -p dlhist --features cuda --example device_training
//! ```
//! `STEPS` sets the number of steps, `THREADS` (default 2) the CPU threads.

use std::time::Instant;

use candle_core::{DType, Device, Module, ModuleT, Tensor};
use candle_nn::Optimizer;
use dlhist::data::{cells, CellsConfig, Dataset};
use dlhist::deep_neural_networks::{AlexNet, AlexNetConfig, UNet, UNetConfig, WeightedPixelCrossEntropy};
use dlhist::optimization::{Adam, AdamConfig};
use dlhist::rng::Rng;
use dlhist::train::{train_step, Batcher, CrossEntropy, Loss};
use dlhist::transformers::{Gpt, GptConfig};
use dlhist::Result;

const REPORT_EVERY: usize = 25;
const UNTIMED: usize = 5;

/// Trains `model` on the batches `next_batch` hands out and prints the loss curve and the step time.
fn run<M: ModuleT>(
    name: &str,
    steps: usize,
    model: &M,
    vars: &candle_nn::VarMap,
    lr: f64,
    loss: &dyn Loss,
    mut next_batch: impl FnMut() -> Result<(Tensor, Tensor)>,
) -> Result<()> {
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(lr))?;
    // The step runs where the parameters live: named once, not per step.
    let dev = vars.all_vars().first().map_or(Device::Cpu, |v| v.device().clone());
    let device = format!("{:?}", dev.location());
    let (start, mut window, mut times) = (Instant::now(), 0.0, vec![]);
    for step in 1..=steps {
        let (x, y) = next_batch()?;
        let t = Instant::now();
        let (l, _) = train_step(model, &mut opt, &x, &y, loss)?;
        // The GPU queues the update after the loss is read back; wait for it so the step time is the whole step.
        dev.synchronize()?;
        if step > UNTIMED {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        window += l;
        if step % REPORT_EVERY == 0 {
            let line = serde_json::json!({
                "model": name, "device": device, "step": step,
                "loss": (window / REPORT_EVERY as f64 * 1e5).round() / 1e5,
                "elapsed_s": (start.elapsed().as_secs_f64() * 100.0).round() / 100.0,
            });
            println!("{line}");
            window = 0.0;
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "{}",
        serde_json::json!({ "model": name, "device": device, "median_step_ms": (median * 1e3).round() / 1e3 })
    );
    Ok(())
}

fn main() -> dlhist::Result<()> {
    let threads = std::env::var("THREADS").unwrap_or_else(|_| "2".into());
    // candle's CPU matrix products and rayon's pool read RAYON_NUM_THREADS when first used.
    std::env::set_var("RAYON_NUM_THREADS", &threads);
    let steps: usize = std::env::var("STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let only: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let dev = dlhist::device()?;

    if wanted("alexnet") {
        // The AlexNet notebook's network (ReLU, LRN, overlapping pooling, dropout 0.5) on 10,000 training images,
        // shuffled batches of 64.
        let fashion = dlhist::data::fashion_mnist()?;
        let train = fashion.train.take(10_000)?.to_device(&dev)?;
        let (vars, vb) = dlhist::init::seeded(2012, DType::F32, &dev);
        let net = AlexNet::new(AlexNetConfig { dropout_seed: 2012, ..AlexNetConfig::full(10) }, vb)?;
        let mut batches = epochs(&train, 64, 2012);
        run("alexnet_fashion_b64", steps, &net, &vars, 1e-3, &CrossEntropy, || batches.next_batch())?;
    }
    if wanted("unet") {
        // The U-Net notebook's task: 32×32 images of touching cells, base 16, depth 2, batches of 16.
        let cfg = CellsConfig { side: 32, cells: (3, 6), radius: (3.0, 6.0), touch: 0.6, ..CellsConfig::default() };
        let data = cells(1000, &cfg, &mut Rng::new(2015).fork("train"), &dev)?.dataset()?;
        let (vars, vb) = dlhist::init::seeded(2015, DType::F32, &dev);
        let net = UNet::new(UNetConfig::new(16, 2), vb.pp("unet"))?;
        let mut batches = epochs(&data, 16, 2015);
        run("unet_cells32_b16", steps, &net, &vars, 1e-3, &WeightedPixelCrossEntropy, || batches.next_batch())?;
    }
    if wanted("gpt") {
        // nanoGPT's CPU recipe size: 4 layers, 128 wide, context 64, batches of 12 random windows of the play.
        let text = dlhist::data::tiny_shakespeare()?;
        let vocab = dlhist::data::CharVocab::new(&text);
        let ids = vocab.encode(&text)?;
        let (vars, vb) = dlhist::init::seeded(2019, DType::F32, &dev);
        let gpt = Gpt::new(GptConfig::char_small(vocab.len()), vb)?;
        // Logits [B, T, V] flattened to [B·T, V] against [B·T] next characters.
        let model = |idx: &Tensor| -> candle_core::Result<Tensor> { gpt.forward(idx)?.flatten_to(1) };
        let (b, t) = (12, 64);
        let mut rng = Rng::new(2019);
        let batch = || -> Result<(Tensor, Tensor)> {
            let (mut x, mut y) = (Vec::with_capacity(b * t), Vec::with_capacity(b * t));
            for _ in 0..b {
                let s = rng.below(ids.len() - t - 1);
                x.extend_from_slice(&ids[s..s + t]);
                y.extend_from_slice(&ids[s + 1..s + t + 1]);
            }
            Ok((Tensor::from_vec(x, (b, t), &dev)?, Tensor::from_vec(y, b * t, &dev)?))
        };
        run("gpt_char_L4_C128_T64_b12", steps, &model, &vars, 1e-3, &CrossEntropy, batch)?;
    }
    Ok(())
}

/// Endless shuffled passes over `data` (a fresh order each epoch, from `seed`).
struct Epochs<'a> {
    data: &'a Dataset,
    batch: usize,
    seed: u64,
    epoch: usize,
    queue: std::vec::IntoIter<Result<(Tensor, Tensor)>>,
}

fn epochs(data: &Dataset, batch: usize, seed: u64) -> Epochs<'_> {
    Epochs { data, batch, seed, epoch: 0, queue: Vec::new().into_iter() }
}

impl Epochs<'_> {
    fn next_batch(&mut self) -> Result<(Tensor, Tensor)> {
        loop {
            if let Some(b) = self.queue.next() {
                return b;
            }
            let order: Vec<_> = Batcher::new(self.data, self.batch)?.shuffled(self.seed, self.epoch).collect();
            self.epoch += 1;
            self.queue = order.into_iter();
        }
    }
}
