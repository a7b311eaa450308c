//! Calibration runs for the Seq2Seq notebook (`notebooks/03-sequence-modeling/05-seq2seq`): one encoder-decoder
//! trained on grapheme-to-phoneme exactly as the notebook trains it, then scored on 2000 validation words.
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_seq2seq -- CELL DIR STEPS HIDDEN LR SEED [BATCH] [BEAM]
//! # e.g. the LSTM reading the source reversed, 3000 steps, 128 units, Adam at 3e-3, seed 0:
//! cargo run --release -p dlhist --example calibrate_seq2seq -- lstm rev 3000 128 3e-3 0
//! ```
//!
//! CELL is `lstm`, `gru` or `rnn`; DIR `fwd` or `rev`; BATCH defaults to 64, BEAM to 1 (greedy). Prints one
//! line: time per step, the last training loss, the validation loss (nats per phoneme), and the phoneme and word
//! error rates of the decoded validation words. The notebook's learning rates and thresholds were chosen from
//! such lines (its "Learning rates" section lists them).

use dlhist::data::g2p::g2p;
use dlhist::layers::{beam_search, greedy_decode, SequenceCrossEntropy};
use dlhist::prelude::*;
use dlhist::sequence_modeling::seq2seq::{Cell, Seq2Seq, Seq2SeqConfig};
use dlhist::train::{evaluate, sequence_error_rate, token_error_rate};

mod common;

/// The usage line repeated by argument errors.
const USAGE: &str = "CELL DIR STEPS HIDDEN LR SEED [BATCH] [BEAM]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cell = match args.first().map_or("lstm", String::as_str) {
        "lstm" => Cell::Lstm,
        "gru" => Cell::Gru,
        "rnn" => Cell::Rnn,
        other => return Err(dlhist::Error::Invalid(format!("CELL must be lstm, gru or rnn; got {other:?}"))),
    };
    let reverse = match args.get(1).map_or("fwd", String::as_str) {
        "fwd" => false,
        "rev" => true,
        other => return Err(dlhist::Error::Invalid(format!("DIR must be fwd or rev; got {other:?}"))),
    };
    let steps: usize = common::arg(&args, 2, 300, USAGE)?;
    let hidden: usize = common::arg(&args, 3, 128, USAGE)?;
    let lr: f64 = common::arg(&args, 4, 3e-3, USAGE)?;
    let seed: u64 = common::arg(&args, 5, 0, USAGE)?;
    let batch: usize = common::arg(&args, 6, 64, USAGE)?;
    let beam: usize = common::arg(&args, 7, 1, USAGE)?;
    let embed = 64; // the notebook's embedding width
    let dev = Device::Cpu;

    let data = g2p()?;
    let valid = data.valid.pairs.take(2000);
    let valid_packed = valid.packed(&(0..valid.len()).collect::<Vec<_>>(), &dev)?;
    // Whole batches only, as in the notebook: every batch is one length bucket.
    let train = data.train.pairs.take(data.train.pairs.len() / batch * batch);
    let stream = train.training_stream(batch, (steps * batch).div_ceil(train.len()), seed, &dev)?;
    let cfg = Seq2SeqConfig {
        src_vocab: train.src_vocab.len(),
        tgt_vocab: train.tgt_vocab.len(),
        embed,
        hidden,
        cell,
        reverse_source: reverse,
        feed_context: false,
    };
    let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
    let model = Seq2Seq::new(cfg, vb)?;
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(lr))?;
    let fc = common::sequence_fit(steps, batch);
    let started = std::time::Instant::now();
    let history = fit(&model, &mut opt, &stream, None, &fc)?;
    let train_s = started.elapsed().as_secs_f64();
    let val_loss = evaluate(&model, &valid_packed, &SequenceCrossEntropy, 1000)?.loss;
    let mut hyps = vec![];
    for rows in (0..valid.len()).collect::<Vec<_>>().chunks(1000) {
        let b = valid.batch(rows, &dev)?;
        let start = model.start_state(&b.src, &b.src_lens)?;
        hyps.extend(match beam {
            0 | 1 => greedy_decode(&model, start, rows.len(), 30, &dev)?,
            _ => beam_search(&model, start, beam, 30, 0.0)?,
        });
    }
    println!(
        "{cell:?} {} h{hidden} lr{lr} seed{seed} b{batch} beam{beam}: {steps} steps {train_s:.1}s ({:.0} ms/step) \
         train loss {:.4} val loss {val_loss:.4} PER {:.4} WER {:.4}",
        if reverse { "rev" } else { "fwd" },
        1000.0 * train_s / steps as f64,
        history.last_step("loss").unwrap_or(f64::NAN),
        token_error_rate(&hyps, &valid.tgt)?,
        sequence_error_rate(&hyps, &valid.tgt)?
    );
    Ok(())
}
