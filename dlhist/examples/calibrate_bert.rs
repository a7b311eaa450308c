//! Calibration runs for the BERT notebook (`notebooks/04-transformers/02-bert`): a WordPiece vocabulary and a
//! small BERT pretrained on a corpus (CORPUS=wordnet: WordNet's glosses, the notebook's; CORPUS=shakespeare: the
//! first 90% of Tiny Shakespeare, the notebook's corpus until issue 17's last stop), then fine-tuned on a labeled task
//! (TASK=supersense with CORPUS=wordnet, the notebook's; TASK=swap, `dlhist::data::text::swapped_lines`; TASK=speaker),
//! against the same model fine-tuned from scratch (OBJECTIVE=none).
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_bert
//! # knobs (environment): VOCAB SEQ HIDDEN LAYERS BATCH LR STEPS EVAL_EVERY (pretraining), OBJECTIVE (mlm, ltr,
//! # none), MASKING (dynamic, static), NORM (post, pre), CKPT (a safetensors path: loaded if it exists, else the
//! # pretrained model is saved there), NEIGHBOURS (print embedding neighbours), TASK (swap, speaker, supersense), PER_CLASS,
//! # POOL (first, mean), FT_STEPS FT_LR N_TRAIN N_TEST SEED, CORPUS (shakespeare, wordnet: WordNet's glosses, a
//! # tenth of the synsets held out, as the notebook), TASK=supersense (with CORPUS=wordnet: CLASSES, PER_CLASS,
//! # TEST_PER_CLASS, SPLIT_SEED: 2018, the notebook's split)
//! # e.g. the notebook's left-to-right model, then fine-tuned on the supersense task (40 definitions per class):
//! CORPUS=wordnet TASK=supersense OBJECTIVE=ltr NORM=pre SEQ=32 LAYERS=2 LR=3e-3 STEPS=950 POOL=mean \
//!     FT_STEPS=200 FT_LR=1e-3 cargo run --release -p dlhist --example calibrate_bert
//! ```
//!
//! Prints the tokenizer's training time, the pretraining loss on held-out text every STEPS/4 steps, and the
//! fine-tuned test accuracy.

use dlhist::data::text::{speech_lines, swapped_lines, LabeledLines};
use dlhist::data::wordpiece::WordPieceVocab;
use dlhist::data::words::{supersense_task, wordnet_synsets, GlossSplit};
use dlhist::optim::{CosineAnnealing, LrSchedule};
use dlhist::prelude::*;
use dlhist::train::{evaluate, on_step, Control};
use dlhist::transformers::bert::{
    classification_set, lm_stream, mlm_stream, pretraining_chunks, BertClassifier, BertConfig, BertForMaskedLm,
    MaskedTokenCrossEntropy, Masking, MaskingRule,
};
use dlhist::transformers::NormPlacement;

mod common;
use common::{env, list};

fn main() -> Result<()> {
    let vocab_size: usize = env("VOCAB", 4000);
    let seq: usize = env("SEQ", 64);
    let hidden: usize = env("HIDDEN", 128);
    let layers: usize = env("LAYERS", 4);
    let batch: usize = env("BATCH", 32);
    let lr: f64 = env("LR", 1e-3);
    let steps: usize = env("STEPS", 1000);
    let objective: String = env("OBJECTIVE", "mlm".to_string());
    let masking: String = env("MASKING", "dynamic".to_string());
    let ft_steps: usize = env("FT_STEPS", 300);
    let ft_lr: f64 = env("FT_LR", 1e-4);
    let n_train: usize = env("N_TRAIN", 2000);
    let n_test: usize = env("N_TEST", 2000);
    let seed: u64 = env("SEED", 0);
    let dev = Device::Cpu;

    let corpus: String = env("CORPUS", "shakespeare".to_string());
    let text = dlhist::data::tiny_shakespeare()?;
    let split = text.len() * 9 / 10;
    let split = (split..text.len()).find(|&i| text.is_char_boundary(i)).unwrap();
    let (pre_text, held_text) = (&text[..split], &text[split..]);
    // CORPUS=wordnet: WordNet's glosses ("lemma: gloss"), a tenth of the synsets held out from pretraining.
    // The notebook's split (seed 2018) unless SPLIT_SEED says otherwise.
    let wn = if corpus == "wordnet" { Some(wordnet_split(env("SPLIT_SEED", 2018))?) } else { None };
    let started = std::time::Instant::now();
    let pre_lines: Vec<&str> = match &wn {
        Some(w) => w.pre.iter().map(String::as_str).collect(),
        None => speech_lines(pre_text),
    };
    let held_lines: Vec<&str> = match &wn {
        Some(w) => w.held.iter().map(String::as_str).collect(),
        None => speech_lines(held_text),
    };
    let vocab = WordPieceVocab::train(&pre_lines, vocab_size)?;
    println!("WordPiece: {} tokens in {:.1} s", vocab.len(), started.elapsed().as_secs_f64());
    for l in &pre_lines[..3] {
        println!("{l}\n  -> {}", vocab.pieces(l)?.join(" "));
    }
    let ids: Vec<u32> = pre_lines.iter().map(|l| vocab.encode(l)).collect::<Result<Vec<_>>>()?.concat();
    let held: Vec<u32> = held_lines.iter().map(|l| vocab.encode(l)).collect::<Result<Vec<_>>>()?.concat();
    println!(
        "tokens: {} pretraining, {} held out ({:.2} per word)",
        ids.len(),
        held.len(),
        ids.len() as f64 / pre_lines.iter().map(|l| l.split_whitespace().count()).sum::<usize>() as f64
    );
    let chunks = pretraining_chunks(&ids, seq);
    let held_chunks = pretraining_chunks(&held, seq);
    let causal = objective == "ltr";
    let norm = if env("NORM", "post".to_string()) == "pre" { NormPlacement::Pre } else { NormPlacement::Post };
    let cfg = BertConfig {
        hidden,
        n_layer: layers,
        n_head: 4,
        intermediate: 4 * hidden,
        causal,
        norm,
        seed,
        ..BertConfig::small(vocab.len())
    };

    let (pre_vars, pre_vb) = dlhist::init::seeded(seed, DType::F32, &dev);
    let mlm = BertForMaskedLm::new(cfg, pre_vb)?;
    let ckpt = std::env::var("CKPT").ok();
    if let Some(path) = ckpt.as_ref().filter(|p| std::path::Path::new(p).exists()) {
        let mut v = pre_vars.clone();
        dlhist::checkpoint::load(&mut v, path)?;
        println!("loaded {path}");
    } else if objective != "none" {
        let epochs = (steps * batch).div_ceil(chunks.len());
        let rule = MaskingRule::default();
        let (train, val) = if causal {
            (lm_stream(&chunks, epochs, seed, &dev)?, lm_stream(&held_chunks, 1, 1, &dev)?)
        } else {
            let m = if masking == "static" { Masking::Static { copies: 1 } } else { Masking::Dynamic };
            (
                mlm_stream(&chunks, epochs, m, &rule, vocab.len(), seed, &dev)?,
                mlm_stream(&held_chunks, 1, Masking::Static { copies: 1 }, &rule, vocab.len(), 1, &dev)?,
            )
        };
        println!("pretraining: {} chunks of {seq}, {epochs} epochs for {steps} steps", chunks.len());
        let mut opt = Adam::new(pre_vars.all_vars(), AdamConfig::new(lr).betas(0.9, 0.98))?;
        let t0 = std::time::Instant::now();
        let quarter: usize = env("EVAL_EVERY", (steps / 4).max(1));
        let fc = common::pretraining_fit(
            common::Pretraining::MaskedTokens,
            steps,
            batch,
            lr,
            on_step(|s| {
                if (s.step + 1) % quarter == 0 {
                    let v = evaluate(&mlm, &val, &MaskedTokenCrossEntropy, 128)?.loss;
                    println!(
                        "step {:5}: train {:.3} held-out {v:.3} ({:.0} s)",
                        s.step + 1,
                        s.loss,
                        t0.elapsed().as_secs_f64()
                    );
                }
                Ok(Control::Continue)
            }),
        )?;
        fit(&mlm, &mut opt, &train, None, &fc)?;
        println!("pretraining: {:.1} ms/step", 1000.0 * t0.elapsed().as_secs_f64() / steps as f64);
        if let Some(path) = &ckpt {
            dlhist::checkpoint::save(&pre_vars, path)?;
        }
    }

    if std::env::var("NEIGHBOURS").is_ok() {
        let e = mlm.bert().word_embeddings().to_vec2::<f32>()?;
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        for w in ["romeo", "king", "rome", "love", "death", "padua", "she", "my", "sword"] {
            let Some(i) = vocab.id(w) else { continue };
            let mut sims: Vec<(f32, usize)> = (5..e.len())
                .filter(|&j| j != i as usize)
                .map(|j| {
                    (
                        e[i as usize].iter().zip(&e[j]).map(|(a, b)| a * b).sum::<f32>()
                            / (norm(&e[i as usize]) * norm(&e[j])),
                        j,
                    )
                })
                .collect();
            sims.sort_by(|a, b| b.0.total_cmp(&a.0));
            println!(
                "{w}: {}",
                sims[..6]
                    .iter()
                    .map(|(s, j)| format!("{}({s:.2})", vocab.token(*j as u32).unwrap()))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    // The task: lines of the pretraining part for training, of the held-out part for testing.
    // TASK=swap (the notebook's): is the line as written, or were two words swapped? Lines of the pretraining part
    // for training, of the held-out part for testing. TASK=speaker: which of eight principal characters (one per
    // play) speaks this speech? PER_CLASS speeches each for training, up to 60 more each for testing.
    let task: String = env("TASK", "swap".to_string());
    let (tr, te) = if task == "supersense" {
        let w = wn.as_ref().expect("TASK=supersense needs CORPUS=wordnet");
        (w.task_train.clone(), w.task_test.clone())
    } else if task == "speaker" {
        let who =
            ["GLOUCESTER", "DUKE VINCENTIO", "ROMEO", "MENENIUS", "PETRUCHIO", "LEONTES", "KING RICHARD II", "WARWICK"];
        let per_class: usize = env("PER_CLASS", 32);
        let all = dlhist::data::text::speeches(&text);
        let mut rng = Rng::new(seed).fork("speakers");
        let empty = || LabeledLines { lines: vec![], labels: vec![] };
        let (mut a, mut b) = (empty(), empty());
        for (c, name) in who.iter().enumerate() {
            let mut mine: Vec<&str> = all.iter().filter(|s| s.speaker == *name).map(|s| s.text.as_str()).collect();
            rng.shuffle(&mut mine);
            for (k, t) in mine.iter().enumerate().take(per_class + 60) {
                let set = if k < per_class { &mut a } else { &mut b };
                set.lines.push(t.to_string());
                set.labels.push(c as u32);
            }
        }
        (a, b)
    } else {
        (
            swapped_lines(&pre_lines, n_train, 6, &mut Rng::new(seed).fork("task-train"))?,
            swapped_lines(&held_lines, n_test, 6, &mut Rng::new(7).fork("task-test"))?,
        )
    };
    for k in 0..4 {
        println!("  [{}] {}", tr.labels[k], tr.lines[k]);
    }
    let train = classification_set(&vocab, &tr.lines, &tr.labels, seq, &dev)?;
    let test = classification_set(&vocab, &te.lines, &te.labels, seq, &dev)?;
    let (vars, vb) = dlhist::init::seeded(seed + 1000, DType::F32, &dev);
    let classes = tr.labels.iter().max().unwrap() + 1;
    let pooling = if env("POOL", "first".to_string()) == "mean" {
        dlhist::transformers::Pooling::Mean
    } else {
        dlhist::transformers::Pooling::First
    };
    let clf = BertClassifier::with_pooling(cfg, classes as usize, pooling, vb)?;
    if objective != "none" {
        let n = dlhist::checkpoint::copy_prefix(&pre_vars, &vars, "bert.")?;
        println!("copied {n} pretrained tensors");
    }
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(ft_lr))?;
    let epochs = (ft_steps * 32).div_ceil(train.len());
    let warm = ft_steps / 10;
    let schedule = CosineAnnealing::new(ft_lr, 0.0, ft_steps - warm)?.with_warmup(warm);
    let t0 = std::time::Instant::now();
    let fc = FitConfig {
        epochs,
        batch_size: 32,
        seed,
        max_steps: Some(ft_steps),
        schedule: Some(std::sync::Arc::new(schedule)),
        progress_every_s: None,
        ..Default::default()
    };
    let h = fit(&clf, &mut opt, &train, Some(&test), &fc)?;
    let accs: Vec<String> = h
        .epochs
        .iter()
        .map(|r| {
            format!(
                "{:.3}/{:.3}",
                r.values.get("train_acc").copied().unwrap_or(f64::NAN),
                r.values.get("val_acc").copied().unwrap_or(f64::NAN)
            )
        })
        .collect();
    println!("fine-tune ({:.1} s): test accuracy by epoch {}", t0.elapsed().as_secs_f64(), accs.join(" "));
    println!(
        "RESULT objective={objective} masking={masking} steps={steps} seed={seed}: test accuracy {:.4}",
        evaluate(&clf, &test, &dlhist::train::CrossEntropy, 256)?.accuracy.unwrap()
    );
    Ok(())
}

/// WordNet split for CORPUS=wordnet (as the notebook splits it): pretraining lines, held-out lines, and the supersense
/// task (CLASSES, PER_CLASS labeled definitions each from the pretraining part, TEST_PER_CLASS from the held-out one).
struct WordNetSplit {
    pre: Vec<String>,
    held: Vec<String>,
    task_train: LabeledLines,
    task_test: LabeledLines,
}

fn wordnet_split(seed: u64) -> Result<WordNetSplit> {
    let classes: Vec<String> = list(
        "CLASSES",
        "noun.animal,noun.artifact,noun.food,noun.person,noun.plant,noun.location,noun.body,noun.substance",
    );
    let classes: Vec<&str> = classes.iter().map(String::as_str).collect();
    let split = GlossSplit::new(wordnet_synsets()?, 0.1, &mut Rng::new(seed).fork("wordnet-split"));
    Ok(WordNetSplit {
        pre: split.pretrain.iter().map(|s| s.text()).collect(),
        held: split.held_out.iter().map(|s| s.text()).collect(),
        task_train: supersense_task(&split.pretrain, &classes, 0, env("PER_CLASS", 40))?,
        task_test: supersense_task(&split.held_out, &classes, 0, env("TEST_PER_CLASS", 200))?,
    })
}
