//! Calibration runs for the T5 notebook (`notebooks/04-transformers/03-t5`): span-corruption pretraining of a
//! character-level T5 on the Webster 1913 dictionary, then one model fine-tuned on two word tasks told apart by a
//! text prefix, against the same model fine-tuned from scratch, at each rate of FT_LRS and for SEEDS seeds. Prints
//! each run's exact match and character error rate per task. SAVE=path keeps the pretrained weights, LOAD=path
//! starts from saved ones instead of pretraining,
//! VARIANTS=pretrained fine-tunes only from the pretrained weights. Configured by environment variables:
//!
//! ```sh
//! WINDOW=16 PRE_STEPS=1200 BATCH=96 LR=2e-3 FT_STEPS=600 FT_BATCH=64 FT_LRS=1e-4,3e-4,1e-3 TRAIN_WORDS=1500 SEEDS=1 \
//!   cargo run --release -p dlhist --example calibrate_t5
//! ```

use dlhist::data::pairs::{SeqPairs, Vocab};
use dlhist::data::word_tasks::{self, WordTask};
use dlhist::layers::greedy_decode;
use dlhist::prelude::*;
use dlhist::transformers::t5::{SpanCorruption, T5Config, T5};

mod common;
use common::env;

fn train(model: &T5, vars: &VarMap, pairs: &SeqPairs, steps: usize, batch: usize, lr: f64, seed: u64) -> Result<f64> {
    let usable = pairs.take(pairs.src.len() / batch * batch);
    let stream = usable.training_stream(batch, steps * batch / usable.src.len() + 1, seed, &Device::Cpu)?;
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(lr))?;
    let warm = (steps / 20).max(1);
    let schedule = dlhist::optim::CosineAnnealing::new(lr, lr / 10.0, steps - warm)?.with_warmup(warm);
    let cfg = FitConfig {
        schedule: Some(std::sync::Arc::new(schedule)),
        progress_every_s: Some(30.0),
        ..common::sequence_fit(steps, batch)
    };
    let h = fit(model, &mut opt, &stream, None, &cfg)?;
    let (_, losses) = h.smoothed_steps("loss", 50);
    Ok(*losses.last().unwrap_or(&f64::NAN))
}

fn exact_match(model: &T5, pairs: &SeqPairs) -> Result<(f64, f64)> {
    let dev = Device::Cpu;
    let mut outs = vec![];
    for chunk in (0..pairs.src.len()).collect::<Vec<_>>().chunks(256) {
        let b = pairs.batch(chunk, &dev)?;
        outs.extend(greedy_decode(model, model.start(&b.src, &b.src_mask)?, chunk.len(), 16, &dev)?);
    }
    let v = &pairs.src_vocab;
    for ((src, out), tgt) in pairs.src.iter().zip(&outs).zip(&pairs.tgt).take(3) {
        eprintln!("  {} → {} (want {})", v.render(src, ""), v.render(out, ""), v.render(tgt, ""));
    }
    let right = outs.iter().zip(&pairs.tgt).filter(|(o, t)| o == t).count();
    Ok((right as f64 / pairs.src.len() as f64, dlhist::train::token_error_rate(&outs, &pairs.tgt)?))
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let pre_steps: usize = env("PRE_STEPS", 3000);
    let ft_steps: usize = env("FT_STEPS", 1500);
    let batch: usize = env("BATCH", 64);
    let width: usize = env("WIDTH", 128);
    let layers: usize = env("LAYERS", 2);
    let lr: f64 = env("LR", 1e-3);
    let ft_lr: f64 = env("FT_LR", 1e-3);
    let train_words: usize = env("TRAIN_WORDS", 1500);
    let seed: u64 = env("SEED", 0);
    let rng = Rng::new(seed);

    let corpus = dlhist::data::words::gcide()?;
    let t0 = std::time::Instant::now();
    let tasks = word_tasks::WordTasks::build(&corpus, &mut rng.fork("tasks"))?;
    eprintln!("tasks built in {:.1}s: {}", t0.elapsed().as_secs_f64(), tasks.summary());
    let vocab: Vocab = word_tasks::vocab()?;
    let sentinels = word_tasks::sentinel_ids(&vocab)?;
    let rule = SpanCorruption { noise_density: env("DENSITY", 0.15), mean_span: env("MEAN_SPAN", 3.0) };
    let windows =
        word_tasks::text_windows(&corpus.words, env("WINDOW", 40), pre_steps * batch, &mut rng.fork("windows"));
    let (mut src, mut tgt) = (vec![], vec![]);
    let mut crng = rng.fork("corrupt");
    for w in windows.iter().filter(|w| w.len() >= 8) {
        let ids = vocab.encode(&w.chars().map(String::from).collect::<Vec<_>>())?;
        let (i, t) = rule.apply(&ids, &sentinels, &mut crng)?;
        src.push(i);
        tgt.push(t);
    }
    let pre = SeqPairs::new(src, tgt, vocab.clone(), vocab.clone())?;
    let cfg = T5Config {
        d_model: width,
        d_kv: 32,
        n_head: width / 32,
        d_ff: env("FF", 2 * width),
        n_layer: layers,
        ..T5Config::small(vocab.len())
    };

    let task_list = WordTask::ALL;
    let ft = tasks.pairs(&task_list, word_tasks::Split::Train, train_words, &vocab, &mut rng.fork("ft"))?;
    let tests: Vec<(WordTask, SeqPairs)> = task_list
        .iter()
        .map(|&t| Ok((t, tasks.pairs(&[t], word_tasks::Split::Test, 400, &vocab, &mut rng.fork("test"))?)))
        .collect::<Result<_>>()?;
    for (t, p) in &tests {
        let mut counts = std::collections::HashMap::new();
        for (src, tgt) in ft.src.iter().zip(&ft.tgt) {
            if vocab.render(src, "").starts_with(t.prefix()) {
                *counts.entry(tgt.clone()).or_insert(0) += 1;
            }
        }
        let top = counts.into_iter().max_by_key(|c| c.1).unwrap().0;
        let acc = p.tgt.iter().filter(|y| **y == top).count() as f64 / p.tgt.len() as f64;
        eprintln!("{t:?}: majority answer {:?} is right on {acc:.3} of the test words", vocab.render(&top, ""));
    }
    eprintln!(
        "fine-tuning pairs {}, e.g. {:?} → {:?}",
        ft.src.len(),
        vocab.render(&ft.src[0], ""),
        vocab.render(&ft.tgt[0], "")
    );

    let (pvars, pvb) = dlhist::init::seeded(seed, DType::F32, &dev);
    let pmodel = T5::new(cfg, pvb)?;
    let load: String = env("LOAD", String::new());
    if load.is_empty() {
        let t0 = std::time::Instant::now();
        let ploss = train(&pmodel, &pvars, &pre, pre_steps, batch, lr, seed)?;
        eprintln!("pretrained {pre_steps} steps in {:.0}s, loss {ploss:.3}", t0.elapsed().as_secs_f64());
        let save: String = env("SAVE", String::new());
        if !save.is_empty() {
            pvars.save(&save)?;
        }
    } else {
        let mut p = pvars.clone();
        p.load(&load)?;
    }
    if ft_steps == 0 {
        return Ok(());
    }

    let seeds: u64 = env("SEEDS", 1);
    let lrs: Vec<f64> =
        env("FT_LRS", ft_lr.to_string()).split(',').map(|v| v.parse().expect("FT_LRS: rates")).collect();
    let p = &pvars;
    let runs: Vec<(&str, Option<&VarMap>, u64, f64)> = lrs
        .iter()
        .flat_map(|&lr| (0..seeds).flat_map(move |k| [("scratch", None, k, lr), ("pretrained", Some(p), k, lr)]))
        .collect();
    // VARIANTS=pretrained skips the runs from scratch (e.g. when only the pretraining changes between calibrations).
    let variants: String = env("VARIANTS", "scratch,pretrained".to_string());
    for (name, from, k, ft_lr) in runs.into_iter().filter(|r| variants.split(',').any(|v| v == r.0)) {
        let (vars, vb) = dlhist::init::seeded(seed + 1 + k, DType::F32, &dev);
        let model = T5::new(cfg, vb)?;
        if let Some(p) = from {
            for (k, v) in p.data().lock().unwrap().iter() {
                vars.data().lock().unwrap()[k].set(v.as_tensor())?;
            }
        }
        let t0 = std::time::Instant::now();
        let loss = train(&model, &vars, &ft, ft_steps, env("FT_BATCH", batch), ft_lr, seed + 100 + k)?;
        let accs: Vec<String> = tests
            .iter()
            .map(|(t, p)| {
                let (a, c) = exact_match(&model, p)?;
                Ok(format!("{t:?} {a:.3} (CER {c:.3})"))
            })
            .collect::<Result<_>>()?;
        println!(
            "lr {ft_lr:e} {name} (seed {k}): ft loss {loss:.3} in {:.0}s; {}",
            t0.elapsed().as_secs_f64(),
            accs.join(", ")
        );
    }
    Ok(())
}
