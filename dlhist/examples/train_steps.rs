//! Median time of one full training step (forward, loss, backward, Adam update) for the notebooks' reference
//! models, built from dlhist's own layers and trained with dlhist's `train_step` and `Adam`.
//!
//! Prints one JSON line per model with the fields of `xtask/bench/torch_steps.py` (the PyTorch side):
//! `model`, `median_ms`, `min_ms`, `threads`, after one `machine` line (the CPU, the instruction sets the matrix
//! and element-wise kernels picked, the threads, the device). `THREADS` (default 2) sets the number of CPU threads;
//! `DLHIST_DEVICE=cuda` (with `--features cuda`) runs on the GPU, each step timed up to a synchronize (PyTorch's
//! side: `DEVICE=cuda`).
//!
//! ```text
//! THREADS=2 cargo run --release -p dlhist --example train_steps [MODEL_SUBSTRING...]
//! ```
//!
//! `HASH=1` times nothing and prints instead, per model, a hash of the bits of all 23 losses and one of the
//! final parameters (by name): two builds that print the same hashes trained every model to the same numbers, bit
//! for bit (how a kernel change that claims to keep the numbers is checked).
//!
//! `STEPS=n` times n steps after the warm-up instead of 20 (a profile of the steady state wants a few hundred, so
//! that building the model and its data is a small share of the samples).

use std::time::Instant;

use candle_core::{DType, Device, Module, ModuleT, Result, Tensor};
use candle_nn::Optimizer;
use dlhist::deep_neural_networks::{Mlp, SmallCnn};
use dlhist::image_generation::diffusion::{Denoiser, UNet};
use dlhist::image_generation::vae::{bernoulli_log_likelihood, gaussian_kl, reparameterize, Vae, VaeConfig};
use dlhist::layers::Activation;
use dlhist::layers::Recurrent;
use dlhist::optimization::{Adam, AdamConfig};
use dlhist::rng::Rng;
use dlhist::sequence_modeling::{Gru, GruVariant, Lstm, Rnn};
use dlhist::train::{train_step, CrossEntropy, Loss, Mse, TokenCrossEntropy};
use dlhist::transformers::{Gpt, GptConfig};

const WARMUP: usize = 3;
/// Timed steps per model unless `STEPS` says otherwise.
const STEPS: usize = 20;

/// The number of timed steps: `STEPS` from the environment (at least 2, for a median), else [`STEPS`].
fn timed_steps() -> usize {
    match std::env::var("STEPS") {
        Ok(v) => match v.parse::<usize>() {
            Ok(n) if n >= 2 => n,
            _ => panic!("STEPS={v}: expected a whole number of at least 2"),
        },
        Err(_) => STEPS,
    }
}

fn bench<M: ModuleT>(
    name: &str,
    threads: usize,
    model: &M,
    vars: &candle_nn::VarMap,
    x: &Tensor,
    y: &Tensor,
    loss: &dyn Loss,
) {
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(1e-3)).expect("Adam");
    if std::env::var_os("HASH").is_some() {
        return print_hashes(name, threads, model, &mut opt, vars, x, y, loss);
    }
    let steps = timed_steps();
    let mut times = Vec::with_capacity(steps);
    for i in 0..WARMUP + steps {
        let t = Instant::now();
        let (l, _) = train_step(model, &mut opt, x, y, loss).expect("train step");
        // A GPU queues the optimizer's update after the loss is read back: wait for it (a no-op on the CPU).
        x.device().synchronize().expect("synchronize");
        let dt = t.elapsed().as_secs_f64();
        assert!(l.is_finite(), "{name}: loss {l}");
        if i >= WARMUP {
            times.push(dt);
        }
    }
    times.sort_by(f64::total_cmp);
    // The median of an even count is the mean of the middle two, as Python's statistics.median.
    let median =
        if steps.is_multiple_of(2) { (times[steps / 2 - 1] + times[steps / 2]) / 2.0 } else { times[steps / 2] };
    let round = |s: f64| (s * 1e6).round() / 1e3;
    // The fields in the order torch_steps.py prints them.
    println!(
        "{{\"model\": {}, \"median_ms\": {}, \"min_ms\": {}, \"threads\": {threads}}}",
        serde_json::Value::from(name),
        round(median),
        round(times[0])
    );
}

/// FNV-1a over 32-bit words: a stable hash of a run's floats (std's hasher is seeded per process).
fn fnv(words: impl IntoIterator<Item = u32>) -> u64 {
    words.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, w| (h ^ w as u64).wrapping_mul(0x100_0000_01b3))
}

/// The `HASH=1` mode: the same steps as `bench`, untimed; a hash of every loss's bits and of every parameter's.
#[allow(clippy::too_many_arguments)]
fn print_hashes<M: ModuleT>(
    name: &str,
    threads: usize,
    model: &M,
    opt: &mut Adam,
    vars: &candle_nn::VarMap,
    x: &Tensor,
    y: &Tensor,
    loss: &dyn Loss,
) {
    let losses: Vec<u32> = (0..WARMUP + STEPS)
        .map(|_| (train_step(model, opt, x, y, loss).expect("train step").0 as f32).to_bits())
        .collect();
    let data = vars.data().lock().expect("vars");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let params = fnv(names.iter().flat_map(|n| {
        let v = data[*n].flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("parameter values");
        v.into_iter().map(f32::to_bits)
    }));
    println!(
        "{}",
        serde_json::json!({"model": name, "threads": threads, "steps": WARMUP + STEPS,
            "losses_fnv": format!("{:016x}", fnv(losses)), "params_fnv": format!("{params:016x}")})
    );
}

fn main() -> dlhist::Result<()> {
    let threads: usize = std::env::var("THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    // candle's matrix products and rayon's global pool read RAYON_NUM_THREADS when first used.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let only: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let dev = dlhist::device()?;
    // Where this ran, for the benchmark table's header: the kernels' instruction sets are picked at run time.
    let cpu = dlhist::fast::cpu_report();
    println!(
        "{}",
        serde_json::json!({"machine": {"program": "dlhist", "cpu": cpu.cpu, "matmul": cpu.matmul,
            "elementwise": cpu.elementwise, "threads": cpu.threads, "device": format!("{:?}", dev.location())}})
    );
    let mut rng = Rng::new(0);

    if wanted("mlp_784_256_256_10_b100") {
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let mlp = Mlp::new(&[784, 256, 256, 10], Activation::Relu, vb)?;
        let x = rng.normal_tensor((100, 784), 0.0, 1.0, &dev)?;
        let y = class_ids(&mut rng, 100, 10, &dev)?;
        bench("mlp_784_256_256_10_b100", threads, &mlp, &vars, &x, &y, &CrossEntropy);
    }
    if wanted("cnn_orig_b100") {
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let cnn = SmallCnn::new(10, vb)?;
        let x = rng.normal_tensor((100, 1, 28, 28), 0.0, 1.0, &dev)?;
        let y = class_ids(&mut rng, 100, 10, &dev)?;
        bench("cnn_orig_b100", threads, &cnn, &vars, &x, &y, &CrossEntropy);
    }
    if wanted("gpt_char_L4_C128_T64_b12") {
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let gpt = Gpt::new(GptConfig::char_small(65), vb)?;
        // Next-character prediction: logits [B, T, V] against [B, T] targets, on the loss the notebooks train
        // their language models with (lm_fit's TokenCrossEntropy, which takes the logits unflattened).
        let x = class_ids(&mut rng, 12 * 64, 65, &dev)?.reshape((12, 64))?;
        let y = class_ids(&mut rng, 12 * 64, 65, &dev)?.reshape((12, 64))?;
        bench("gpt_char_L4_C128_T64_b12", threads, &gpt, &vars, &x, &y, &TokenCrossEntropy);
    }
    if wanted("gpt_bpe_L4_C128_T64_b16_V2304") {
        // The GPT notebook's largest scaling model: GPT-2's first 2048 merges make a vocabulary of 2304, so the
        // output layer and the softmax cross-entropy over it weigh as much as the blocks.
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let cfg = GptConfig { vocab_size: 2304, block_size: 64, n_embd: 128, n_layer: 4, n_head: 4 };
        let gpt = Gpt::new(cfg, vb)?;
        let x = class_ids(&mut rng, 16 * 64, 2304, &dev)?.reshape((16, 64))?;
        let y = class_ids(&mut rng, 16 * 64, 2304, &dev)?.reshape((16, 64))?;
        bench("gpt_bpe_L4_C128_T64_b16_V2304", threads, &gpt, &vars, &x, &y, &TokenCrossEntropy);
    }
    if wanted("lstm_h128_T50_b32") {
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let lstm = Lstm::new(1, 128, vb.pp("lstm"))?;
        let out = candle_nn::linear(128, 1, vb.pp("out"))?;
        // Regression from the last step's hidden state, as the PyTorch model.
        let model = |x: &Tensor| -> Result<Tensor> { out.forward(&lstm.forward_with_state(x)?.1 .0) };
        let x = rng.normal_tensor((32, 50, 1), 0.0, 1.0, &dev)?;
        let y = rng.normal_tensor((32, 1), 0.0, 1.0, &dev)?;
        bench("lstm_h128_T50_b32", threads, &model, &vars, &x, &y, &Mse);
    }
    // The LSTM's twins: the same input, sizes, readout and loss, with the tanh RNN and the GRU (reset-after, as
    // PyTorch's nn.GRU) as the recurrent layer.
    if wanted("rnn_tanh_h128_T50_b32") {
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let rnn = Rnn::new(1, 128, vb.pp("rnn"))?;
        let out = candle_nn::linear(128, 1, vb.pp("out"))?;
        let model = |x: &Tensor| -> Result<Tensor> { out.forward(&rnn.forward_from(x, None)?.1.h) };
        let x = rng.normal_tensor((32, 50, 1), 0.0, 1.0, &dev)?;
        let y = rng.normal_tensor((32, 1), 0.0, 1.0, &dev)?;
        bench("rnn_tanh_h128_T50_b32", threads, &model, &vars, &x, &y, &Mse);
    }
    if wanted("gru_h128_T50_b32") {
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let gru = Gru::new(1, 128, GruVariant::ResetAfter, vb.pp("gru"))?;
        let out = candle_nn::linear(128, 1, vb.pp("out"))?;
        let model = |x: &Tensor| -> Result<Tensor> { out.forward(&gru.forward_from(x, None)?.1.h) };
        let x = rng.normal_tensor((32, 50, 1), 0.0, 1.0, &dev)?;
        let y = rng.normal_tensor((32, 1), 0.0, 1.0, &dev)?;
        bench("gru_h128_T50_b32", threads, &model, &vars, &x, &y, &Mse);
    }
    // RNNsearch (Bahdanau et al. 2014): a bidirectional GRU encoder, additive attention and a GRU decoder fed the
    // context, teacher-forced on 30-word sources and targets without padding (vocabularies of 63 and 70 ids).
    let mut pairs: Option<(Tensor, Tensor)> = None; // RNNsearch's batch, reused by the Transformer
    if wanted("rnnsearch_h64_S30_T30_b32") {
        use dlhist::sequence_modeling::attention::{RnnSearch, RnnSearchConfig};
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let cfg =
            RnnSearchConfig { src_vocab: 63, tgt_vocab: 70, embed: 32, hidden: 64, align: 64, bidirectional: true };
        let model = RnnSearch::new(cfg, vb)?;
        let (x, y) = rnnsearch_pairs(&mut rng, &dev)?;
        bench("rnnsearch_h64_S30_T30_b32", threads, &model, &vars, &x, &y, &dlhist::layers::SequenceCrossEntropy);
        pairs = Some((x, y));
    }
    // The Transformer (Vaswani et al. 2017) at the Transformer notebook's size: d_model 64, 4 heads, d_ff 256,
    // 2 + 2 post-LN layers, sinusoidal positions, tied output, no dropout; the same pairs as RNNsearch's.
    if wanted("transformer_d64_S30_T30_b32") {
        use dlhist::transformers::{Transformer, TransformerConfig};
        let (x, y) = match pairs {
            Some(p) => p,
            None => rnnsearch_pairs(&mut rng, &dev)?,
        };
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let cfg = TransformerConfig { dropout: 0.0, ..TransformerConfig::small(63, 70) };
        let model = Transformer::new(cfg, vb)?;
        bench("transformer_d64_S30_T30_b32", threads, &model, &vars, &x, &y, &dlhist::layers::SequenceCrossEntropy);
    }
    // BERT's masked LM (Devlin et al. 2018) at the BERT notebook's size: vocabulary 4000, 32 tokens, H 128, 4 heads,
    // 2 pre-LN layers, no dropout; the output layer only at the 5 predicted positions of each of 32 sequences.
    if wanted("bert_mlm_h128_L2_T32_b32") {
        use dlhist::transformers::bert::{mlm_stream, Masking, MaskingRule};
        use dlhist::transformers::{BertConfig, BertForMaskedLm, MaskedTokenCrossEntropy, NormPlacement};
        let chunks: Vec<Vec<u32>> =
            (0..32).map(|_| std::iter::once(2).chain((0..31).map(|_| 5 + rng.below(3995) as u32)).collect()).collect();
        let data = mlm_stream(&chunks, 1, Masking::Dynamic, &MaskingRule::default(), 4000, 0, &dev)?;
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let cfg =
            BertConfig { n_layer: 2, max_len: 32, dropout: 0.0, norm: NormPlacement::Pre, ..BertConfig::small(4000) };
        let model = BertForMaskedLm::new(cfg, vb)?;
        bench("bert_mlm_h128_L2_T32_b32", threads, &model, &vars, &data.x, &data.y, &MaskedTokenCrossEntropy);
    }
    // The Vision Transformer (Dosovitskiy et al. 2020) at the ViT notebook's size: 28×28 grey images cut into 16
    // patches of 7×7, width 64, 4 pre-LN layers of 4 heads, MLP 256 with GELU, class token, batch 64.
    if wanted("vit_p7_d64_L4_b64") {
        use dlhist::transformers::{Vit, VitConfig};
        let x = rng.normal_tensor((64, 1, 28, 28), 0.0, 1.0, &dev)?;
        let y = class_ids(&mut rng, 64, 10, &dev)?;
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let model = Vit::new(VitConfig::fashion_mnist(7), vb)?;
        bench("vit_p7_d64_L4_b64", threads, &model, &vars, &x, &y, &CrossEntropy);
    }
    // The DDPM U-Net of the diffusion notebook (Ho et al. 2020, at its 16/32 channels): a batch of 64 noisy 28×28
    // images at fixed random steps, trained to predict the noise with a squared error.
    if wanted("ddpm_unet_c16_b64") {
        let x = rng.normal_tensor((64, 1, 28, 28), 0.0, 1.0, &dev)?;
        let eps = rng.normal_tensor((64, 1, 28, 28), 0.0, 1.0, &dev)?;
        let t: Vec<f32> = (0..64).map(|_| rng.below(1000) as f32).collect();
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let model = UNetAt { unet: UNet::new(16, vb)?, t: Tensor::from_vec(t, 64, &dev)? };
        bench("ddpm_unet_c16_b64", threads, &model, &vars, &x, &eps, &Mse);
    }
    // The VAE of the VAE notebook (Kingma & Welling 2013, the paper's 500 tanh units, 20 latents): 100 binary images,
    // one reparameterized sample per image from a fixed ε, minus the bound as the loss.
    if wanted("vae_h500_z20_b100") {
        let x = rng.bernoulli_tensor((100, 784), 0.5, &dev)?;
        let eps = rng.normal_tensor((100, 20), 0.0, 1.0, &dev)?;
        let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
        let model = VaeAt { vae: Vae::new(VaeConfig::paper(20), vb)?, eps };
        let zeros = Tensor::zeros(100, DType::F32, &dev)?;
        bench("vae_h500_z20_b100", threads, &model, &vars, &x, &zeros, &MeanOfOutput);
    }
    Ok(())
}

/// The VAE with a fixed ε, as a module from binary images to minus each image's bound, `KL − log p(x | z)`.
struct VaeAt {
    vae: Vae,
    eps: Tensor,
}

impl ModuleT for VaeAt {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let (mu, logvar) = self.vae.encode(x)?;
        let z = reparameterize(&mu, &logvar, &self.eps)?;
        gaussian_kl(&mu, &logvar)? - bernoulli_log_likelihood(&self.vae.decode(&z)?, x)?
    }
}

/// The mean of the model's output (the target is ignored): the loss of a model that outputs its own loss.
#[derive(Debug)]
struct MeanOfOutput;

impl Loss for MeanOfOutput {
    fn compute(&self, output: &Tensor, _target: &Tensor) -> dlhist::Result<Tensor> {
        Ok(output.mean_all()?)
    }
}

/// The diffusion U-Net at fixed time steps, as a module from noisy images to predicted noise.
struct UNetAt {
    unet: UNet,
    t: Tensor,
}

impl ModuleT for UNetAt {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        self.unet.predict(x, &self.t)
    }
}

/// Packed pairs `[32, 2, 30]` (source; `<s> y_1 … y_29`) and targets `[32, 30]` (`y_1 … y_29 </s>`): random
/// 30-word sentences over the vocabularies of 63 and 70 ids, without padding.
fn rnnsearch_pairs(rng: &mut Rng, dev: &Device) -> dlhist::Result<(Tensor, Tensor)> {
    let (b, l) = (32, 30);
    let src: Vec<u32> = (0..b * l).map(|_| 3 + rng.below(60) as u32).collect();
    let tgt: Vec<u32> = (0..b * (l - 1)).map(|_| 3 + rng.below(67) as u32).collect();
    let (mut x, mut y) = (vec![], vec![]);
    for r in 0..b {
        x.extend_from_slice(&src[r * l..(r + 1) * l]);
        x.push(dlhist::data::pairs::BOS);
        x.extend_from_slice(&tgt[r * (l - 1)..(r + 1) * (l - 1)]);
        y.extend_from_slice(&tgt[r * (l - 1)..(r + 1) * (l - 1)]);
        y.push(dlhist::data::pairs::EOS);
    }
    Ok((Tensor::from_vec(x, (b, 2, l), dev)?, Tensor::from_vec(y, (b, l), dev)?))
}

fn class_ids(rng: &mut Rng, n: usize, classes: usize, dev: &Device) -> dlhist::Result<Tensor> {
    let ids: Vec<u32> = (0..n).map(|_| rng.below(classes) as u32).collect();
    Ok(Tensor::from_vec(ids, n, dev)?)
}
