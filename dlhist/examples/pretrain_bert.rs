//! Makes the masked language model that the BERT notebook (`notebooks/04-transformers/02-bert`) fine-tunes beside
//! the models it pretrains itself: `assets/models/bert-wordnet-mlm.safetensors` and its `.json` record (see
//! `dlhist::transformers::bert::PretrainedBert`).
//!
//! ```sh
//! cargo run --release -p dlhist --example pretrain_bert            # writes the file and its .json record
//! cargo run --release -p dlhist --example pretrain_bert -- --check # trains again and compares the bytes
//! cargo run --release -p dlhist --example pretrain_bert -- --vocab # writes only the vocabulary (seconds)
//! cargo run --release -p dlhist --example pretrain_bert -- --ltr   # the left-to-right model instead
//! ```
//!
//! Beside the weights it writes the WordPiece vocabulary, `assets/models/bert-wordnet-vocab.json` (Hugging Face's
//! `tokenizer.json`), which the notebook's quick mode loads instead of learning it again.
//!
//! The recipe is the notebook's masked LM, trained longer: WordNet 3.0's synsets split as the notebook splits them
//! (a tenth held out, seed 2018), a WordPiece vocabulary of 4000 tokens learned on the other nine tenths' glosses
//! (`lemma: gloss`, one synset per line), the text cut into sequences of 32 tokens, `PretrainedBert::wordnet_config`
//! (2 pre-LN layers, width 128, 4 heads, dropout 0.1), BERT's 80/10/10 masking of 15% of the tokens drawn anew at
//! every pass (RoBERTa's dynamic masking), 24 000 Adam steps (β₂ = 0.98) of 32 sequences, the rate warmed up over
//! the first tenth to 2e-3 and then down a cosine to 2e-4. About a quarter of an hour on two cores.
//!
//! With `--ltr` it makes the left-to-right model of the paper's ablation instead (`bert-wordnet-ltr.safetensors`):
//! the same network with a causal mask predicting every next token, at the notebook's left-to-right rate (3e-3,
//! same schedule) for 11 000 steps, about the same time as the masked LM's 24 000 (a step predicts every token, so
//! it costs about twice as much). The run is
//! deterministic on one machine (seeded weights, masks and dropout; fused kernels that do not depend on the thread
//! count), so `--check` on the machine that made the file gives the same SHA-256; other CPUs may round differently,
//! which is why the file is stored.

use dlhist::data::wordpiece::WordPieceVocab;
use dlhist::data::words::{wordnet_synsets, GlossSplit};
use dlhist::prelude::*;
use dlhist::train::{evaluate, on_step, Control};

mod common;
use dlhist::transformers::bert::{
    lm_stream, mlm_stream, pretraining_chunks, vocab_fingerprint, BertConfig, BertForMaskedLm, MaskedTokenCrossEntropy,
    Masking, MaskingRule, PretrainedBert, WORDNET_LTR_FILE, WORDNET_LTR_SHA256, WORDNET_MLM_FILE, WORDNET_MLM_SHA256,
    WORDNET_VOCAB_FILE,
};

const VOCAB: usize = 4000;
const SEQ: usize = 32;
const BATCH: usize = 32;
const SEED: u64 = 2018;
const EVAL_EVERY: usize = 1000;

fn main() -> Result<()> {
    let check = std::env::args().any(|a| a == "--check");
    let ltr = std::env::args().any(|a| a == "--ltr");
    // (steps, peak rate, file, recorded SHA-256) of the masked LM, or of the left-to-right model.
    let (steps, lr, file, stored_sha) = if ltr {
        (11_000, 3e-3, WORDNET_LTR_FILE, WORDNET_LTR_SHA256)
    } else {
        (24_000, 2e-3, WORDNET_MLM_FILE, WORDNET_MLM_SHA256)
    };
    let dev = Device::Cpu;
    let split = GlossSplit::new(wordnet_synsets()?, 0.1, &mut Rng::new(SEED).fork("wordnet-split"));
    let pre_lines: Vec<String> = split.pretrain.iter().map(|s| s.text()).collect();
    let held_lines: Vec<String> = split.held_out.iter().map(|s| s.text()).collect();
    let vocab = WordPieceVocab::train(&pre_lines, VOCAB)?;
    if !check {
        let vocab_path = dlhist::checkpoint::models_dir().join(WORDNET_VOCAB_FILE);
        vocab.save(&vocab_path)?;
        println!("{}: fingerprint {}", vocab_path.display(), vocab_fingerprint(&vocab));
        if std::env::args().any(|a| a == "--vocab") {
            return Ok(());
        }
    }
    let encode = |lines: &[String]| -> Result<Vec<u32>> {
        Ok(lines.iter().map(|l| vocab.encode(l)).collect::<Result<Vec<_>>>()?.concat())
    };
    let chunks = pretraining_chunks(&encode(&pre_lines)?, SEQ);
    let held_chunks = pretraining_chunks(&encode(&held_lines)?, SEQ);
    let rule = MaskingRule::default();
    let epochs = (steps * BATCH).div_ceil(chunks.len());
    // The notebook's held-out sets: every next token, or one static mask per held-out sequence (seed 1).
    let (train, held) = if ltr {
        (lm_stream(&chunks, epochs, SEED, &dev)?, lm_stream(&held_chunks, 1, 1, &dev)?)
    } else {
        (
            mlm_stream(&chunks, epochs, Masking::Dynamic, &rule, vocab.len(), SEED, &dev)?,
            mlm_stream(&held_chunks, 1, Masking::Static { copies: 1 }, &rule, vocab.len(), 1, &dev)?,
        )
    };
    println!("{} sequences of {SEQ} tokens for pretraining, {} held out", chunks.len(), held_chunks.len());

    let cfg = BertConfig { seed: SEED, causal: ltr, ..PretrainedBert::wordnet_config(vocab.len()) };
    let (vars, vb) = dlhist::init::seeded(SEED, DType::F32, &dev);
    let model = BertForMaskedLm::new(cfg, vb)?;
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(lr).betas(0.9, 0.98))?;
    let mut curve = vec![(0usize, evaluate(&model, &held, &MaskedTokenCrossEntropy, 128)?.loss)];
    let started = std::time::Instant::now();
    {
        let fc = common::pretraining_fit(
            common::Pretraining::MaskedTokens,
            steps,
            BATCH,
            lr,
            on_step(|s| {
                if (s.step + 1) % EVAL_EVERY == 0 {
                    let loss = evaluate(&model, &held, &MaskedTokenCrossEntropy, 128)?.loss;
                    println!(
                        "step {:6}: held-out loss {loss:.4} ({:.0} s)",
                        s.step + 1,
                        started.elapsed().as_secs_f64()
                    );
                    curve.push((s.step + 1, loss));
                }
                Ok(Control::Continue)
            }),
        )?;
        fit(&model, &mut opt, &train, None, &fc)?;
    }
    let seconds = started.elapsed().as_secs_f64();

    let dir = dlhist::checkpoint::models_dir();
    let path = if check { std::env::temp_dir().join(file) } else { dir.join(file) };
    dlhist::checkpoint::save(&vars, &path)?;
    let sha = dlhist::data::download::sha256_file(&path)?;
    println!("{}: sha256 {sha}", path.display());
    if check {
        let same = sha == stored_sha;
        println!("{} the stored model's ({stored_sha})", if same { "equal to" } else { "DIFFERENT from" });
        if !same {
            return Err(dlhist::Error::Invalid("the retrained model differs from the stored one".into()));
        }
        return Ok(());
    }
    let record = serde_json::json!({
        "file": file,
        "sha256": sha,
        "vocab_sha256": vocab_fingerprint(&vocab),
        "command": if ltr { "cargo run --release -p dlhist --example pretrain_bert -- --ltr" } else { "cargo run --release -p dlhist --example pretrain_bert" },
        "config": { "vocab_size": cfg.vocab_size, "hidden": cfg.hidden, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
                    "intermediate": cfg.intermediate, "max_len": cfg.max_len, "norm": "pre", "dropout": cfg.dropout,
                    "causal": ltr },
        "training": { "corpus": "WordNet 3.0 glosses ('lemma: gloss'), nine tenths of the synsets (GlossSplit, 0.1 held out, seed 2018)",
                      "objective": if ltr { "left to right: every next token" } else { "masked LM: BERT's 80/10/10 on 15% of the tokens, dynamic masks" },
                      "steps": steps, "batch": BATCH, "sequence": SEQ, "peak_lr": lr, "adam_betas": [0.9, 0.98],
                      "schedule": "linear warm-up for 10% of the steps, cosine to a tenth", "seed": SEED,
                      "seconds": seconds.round() },
        "held_out": if ltr { "every held-out sequence of 32 tokens, next-token cross-entropy in nats" } else { "every held-out sequence of 32 tokens, one static mask each (seed 1), masked-token cross-entropy in nats" },
        "held_out_loss_by_step": curve.iter().map(|(s, l)| serde_json::json!([s, (l * 1e4).round() / 1e4])).collect::<Vec<_>>(),
    });
    let json_path = dir.join(file.replace(".safetensors", ".json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&record).expect("JSON") + "\n")
        .map_err(|e| dlhist::Error::io("cannot write", &json_path, e))?;
    println!(
        "wrote {}; set {} in dlhist/src/transformers/bert.rs to {sha} and WORDNET_VOCAB_SHA256 to {}",
        json_path.display(),
        if ltr { "WORDNET_LTR_SHA256" } else { "WORDNET_MLM_SHA256" },
        vocab_fingerprint(&vocab)
    );
    Ok(())
}
