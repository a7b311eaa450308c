//! Calibration runs for the Attention notebook (`notebooks/03-sequence-modeling/06-attention`): one model trained
//! on fresh sentences of the synthetic translation task, as the notebook trains it, then scored on 500 test
//! sentences of 5 to 50 words.
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_attention -- MODEL STEPS HIDDEN LR SEED [BATCH] [MAX_WORDS]
//! # e.g. RNNsearch, 800 steps of 64 sentences, 64 units, Adam at 3e-3, seed 0:
//! cargo run --release -p dlhist --example calibrate_attention -- search 800 64 3e-3 0 64
//! ```
//!
//! MAX_WORDS (default 50) is the longest sentence drawn, for training and test. `TASK=g2p` trains on the CMU
//! dictionary's spelling-to-pronunciation pairs instead (the training words in order, 500 test words). MODEL is `search` (RNNsearch), `fwdsearch` (RNNsearch with forward annotations only), `encdec` (Cho et
//! al.'s fixed-vector encoder-decoder, GRU, the summary fed to every step) or `transformer` (the Transformer
//! notebook's encoder-decoder, `notebooks/04-transformers/01-transformer`: HIDDEN is `d_model`, LR the peak of
//! the warm-up/inverse-square-root schedule; environment variables HEADS (4), LAYERS (2), POS (`sin`,
//! `learned` or `none`), WARMUP (steps, default STEPS/10), DROPOUT (0.1), SMOOTH (label smoothing, 0.1), NORM
//! (`post` or `pre`)). Prints the last training loss, greedy
//! token accuracy (one minus the token error rate) in five source-length buckets, and for the RNNsearch models
//! the share of target words whose attention argmax is the true source word, with the histogram of argmax
//! offsets −3 (or less) … +3 (or more). The notebook's learning rates and thresholds were chosen from such lines.

use dlhist::data::TranslationTask;
use dlhist::layers::{greedy_decode, SmoothedSequenceCrossEntropy};
use dlhist::optim::InverseSqrtWarmup;
use dlhist::prelude::*;
use dlhist::sequence_modeling::attention::{alignment_offsets, RnnSearch, RnnSearchConfig};
use dlhist::sequence_modeling::seq2seq::{Cell, Seq2Seq, Seq2SeqConfig};
use dlhist::train::token_error_rate;
use dlhist::transformers::{NormPlacement, PositionKind, Transformer, TransformerConfig};

mod common;

/// The usage line repeated by argument errors.
const USAGE: &str = "MODEL STEPS HIDDEN LR SEED [BATCH] [MAX_WORDS]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind = args.first().map_or("search", String::as_str).to_string();
    if !["search", "fwdsearch", "encdec", "transformer"].contains(&kind.as_str()) {
        return Err(dlhist::Error::Invalid(format!(
            "MODEL must be search, fwdsearch, encdec or transformer; got {kind:?}"
        )));
    }
    let steps: usize = common::arg(&args, 1, 300, USAGE)?;
    let hidden: usize = common::arg(&args, 2, 64, USAGE)?;
    let lr: f64 = common::arg(&args, 3, 3e-3, USAGE)?;
    let seed: u64 = common::arg(&args, 4, 0, USAGE)?;
    let batch: usize = common::arg(&args, 5, 64, USAGE)?;
    let max_words: usize = common::arg(&args, 6, 50, USAGE)?;
    let embed = 32; // the notebook's embedding width
    let dev = Device::Cpu;
    let task = TranslationTask::new(0);
    // TASK=g2p: the CMU dictionary's spelling -> pronunciation instead (training words in order, 500 test words).
    let g2p = if std::env::var("TASK").as_deref() == Ok("g2p") { Some(dlhist::data::g2p::g2p()?) } else { None };
    // Fresh sentences every step, as in the notebook; the test sentences come from a seed of their own.
    let test = task.sample(500, 5, max_words, 1)?;
    let (train, tp) = match &g2p {
        Some(g) => (g.train.pairs.take(steps * batch), g.test.pairs.take(500)),
        None => (task.sample(steps * batch, 5, max_words, 100 + seed)?.pairs(), test.pairs()),
    };
    let stream = train.training_stream(batch, 1, seed, &dev)?;
    let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
    let (src_vocab, tgt_vocab) = (train.src_vocab.len(), train.tgt_vocab.len());
    let mut fc = common::sequence_fit(steps, batch);
    let (mut search, mut encdec, mut transformer) = (None, None, None);
    if kind == "encdec" {
        let cfg = Seq2SeqConfig {
            src_vocab,
            tgt_vocab,
            embed,
            hidden,
            cell: Cell::Gru,
            reverse_source: false,
            feed_context: true,
        };
        encdec = Some(Seq2Seq::new(cfg, vb)?);
    } else if kind == "transformer" {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
        let num = |k: &str, d: &str| -> Result<f64> {
            env(k, d)
                .parse()
                .map_err(|_| dlhist::Error::Invalid(format!("{k}={} does not parse as a number", env(k, d))))
        };
        let positions = match env("POS", "sin").as_str() {
            "sin" => PositionKind::Sinusoidal,
            "learned" => PositionKind::Learned,
            "none" => PositionKind::None,
            other => return Err(dlhist::Error::Invalid(format!("POS must be sin, learned or none; got {other:?}"))),
        };
        let norm = if env("NORM", "post") == "pre" { NormPlacement::Pre } else { NormPlacement::Post };
        let cfg = TransformerConfig {
            d_model: hidden,
            n_head: num("HEADS", "4")? as usize,
            d_ff: 4 * hidden,
            n_layer: num("LAYERS", "2")? as usize,
            dropout: num("DROPOUT", "0.1")? as f32,
            positions,
            norm,
            max_len: 2 * max_words + 8,
            seed,
            ..TransformerConfig::small(src_vocab, tgt_vocab)
        };
        let warmup = num("WARMUP", &(steps / 10).max(1).to_string())? as usize;
        fc.loss = SmoothedSequenceCrossEntropy { epsilon: num("SMOOTH", "0.1")? }.into();
        fc.schedule = Some(std::sync::Arc::new(InverseSqrtWarmup::with_peak(lr, warmup)));
        println!("transformer {cfg:?}, warm-up {warmup} steps");
        transformer = Some(Transformer::new(cfg, vb)?);
    } else {
        let cfg =
            RnnSearchConfig { src_vocab, tgt_vocab, embed, hidden, align: hidden, bidirectional: kind == "search" };
        search = Some(RnnSearch::new(cfg, vb)?);
    }
    let model: &dyn ModuleT = match (&search, &encdec, &transformer) {
        (Some(m), _, _) => m,
        (_, Some(m), _) => m,
        (_, _, Some(m)) => m,
        _ => unreachable!("one model is built"),
    };
    // The Transformer's Adam: β2 = 0.98, ε = 1e-9 (the paper's section 5.3); the rate comes from the schedule.
    let adam = if transformer.is_some() { AdamConfig::new(lr).betas(0.9, 0.98).eps(1e-9) } else { AdamConfig::new(lr) };
    let mut opt = Adam::new(vars.all_vars(), adam)?;
    let started = std::time::Instant::now();
    let history = fit(model, &mut opt, &stream, None, &fc)?;
    let train_s = started.elapsed().as_secs_f64();

    let (mut hyps, mut offsets) = (vec![], vec![]);
    for rows in (0..tp.len()).collect::<Vec<_>>().chunks(250) {
        let b = tp.batch(rows, &dev)?;
        let max_len = 2 * b.src_lens.iter().max().copied().unwrap_or(1) + 5;
        if let Some(m) = &search {
            hyps.extend(greedy_decode(m, m.start(&b.src, &b.src_mask, &b.src_lens)?, rows.len(), max_len, &dev)?);
            if g2p.is_some() {
                continue; // no true alignment for spelling to pronunciation
            }
            let out = m.forward_with_attention(&b.src, &b.src_mask, &b.src_lens, &b.tgt_in)?;
            let truth: Vec<Vec<u32>> = rows.iter().map(|&r| test.alignment[r].clone()).collect();
            offsets.extend(alignment_offsets(&out.weights, &truth)?);
        }
        if let Some(m) = &encdec {
            hyps.extend(greedy_decode(m, m.start_state(&b.src, &b.src_lens)?, rows.len(), max_len, &dev)?);
        }
        if let Some(m) = &transformer {
            hyps.extend(greedy_decode(m, m.start(&b.src, &b.src_mask)?, rows.len(), max_len, &dev)?);
        }
    }
    let mut by_length = format!(" all:{:.3}", 1.0 - token_error_rate(&hyps, &tp.tgt)?);
    for (lo, hi) in [(5, 14), (15, 24), (25, 34), (35, 44), (45, 50)] {
        let rows: Vec<usize> = (0..tp.len()).filter(|&r| (lo..=hi).contains(&tp.src[r].len())).collect();
        if rows.is_empty() {
            continue;
        }
        let h: Vec<Vec<u32>> = rows.iter().map(|&r| hyps[r].clone()).collect();
        let t: Vec<Vec<u32>> = rows.iter().map(|&r| tp.tgt[r].clone()).collect();
        by_length += &format!(" {lo}-{hi}:{:.3}", 1.0 - token_error_rate(&h, &t)?);
    }
    println!(
        "{kind} h{hidden} lr{lr} seed{seed} b{batch}: {steps} steps {train_s:.1}s ({:.0} ms/step), {} parameters, \
         last loss {:.4}; greedy token accuracy by source length{by_length}",
        1000.0 * train_s / steps as f64,
        dlhist::init::param_count(&vars),
        history.last_step("loss").unwrap_or(f64::NAN)
    );
    if !offsets.is_empty() {
        let hist: Vec<usize> = (-3..=3i64).map(|d| offsets.iter().filter(|&&o| o.clamp(-3, 3) == d).count()).collect();
        let exact = offsets.iter().filter(|&&o| o == 0).count() as f64 / offsets.len() as f64;
        println!(
            "alignment: argmax on the true word {exact:.3} of {} target words; offsets -3..+3: {hist:?}",
            offsets.len()
        );
    }
    Ok(())
}
