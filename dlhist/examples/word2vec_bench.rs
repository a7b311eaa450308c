//! word2vec: dlhist against gensim on the same corpus, settings and threads, alternately, in one run.
//!
//! ```sh
//! # A venv with gensim 4.4.0 (its wheel also holds the evaluation sets):
//! python3 -m venv .venv-bench-w2v && .venv-bench-w2v/bin/pip install gensim==4.4.0
//! PYTHON=.venv-bench-w2v/bin/python cargo run --release -p dlhist --example word2vec_bench -- [sg|cbow ...]
//! ```
//!
//! Environment: `PYTHON` (default `python3`), `THREADS` (2), `ROUNDS` (2), `EPOCHS` (3), `DIM` (100), `WORDS` (a
//! prefix of the corpus, default all of it), `SAMPLE` (1e-3), `LR` (0.025), `ONLY` (`dlhist` or `gensim` to run one side),
//! `CORPUS_FILE` (a text8-style file to use instead of the installed corpus).
//!
//! The corpus is `dlhist::data::words::english_corpus()` (GCIDE where Debian's `dict-gcide` is installed, else
//! text8), written to `target/word2vec-bench/corpus-<pid>.txt` for gensim (removed at the end). Both sides get the same settings (window 5,
//! 5 negatives, min_count 5, lr 0.025 → 0.0001). Throughput is corpus words × epochs / training seconds (vocabulary
//! building excluded on both sides). Both sides' vectors are then scored by the same dlhist code: Spearman ρ on
//! WordSim353 and SimLex-999, and 3CosAdd analogy accuracy over the 30 000 most frequent words. gensim's own
//! evaluation of its vectors is printed too, as a check of dlhist's.

use std::path::{Path, PathBuf};
use std::process::Command;

use dlhist::data::words::{analogy_questions, english_corpus, word_similarity, SimilaritySet, WordCorpus};
use dlhist::sequence_modeling::word2vec::{Architecture, Embeddings, Vocab, Word2Vec, Word2VecConfig};

mod common;
use common::env;

/// One side's result in one round.
struct Run {
    side: &'static str,
    arch: &'static str,
    words_per_second: f64,
    train_seconds: f64,
    ws353: f64,
    simlex: f64,
    analogy: f64,
    semantic: f64,
    syntactic: f64,
}

impl Run {
    fn new(side: &'static str, arch: &'static str, wps: f64, secs: f64, s: (f64, f64, f64, f64, f64)) -> Run {
        let (ws353, simlex, analogy, semantic, syntactic) = s;
        Run { side, arch, words_per_second: wps, train_seconds: secs, ws353, simlex, analogy, semantic, syntactic }
    }
}

struct Eval {
    ws: Vec<dlhist::data::words::WordPair>,
    sl: Vec<dlhist::data::words::WordPair>,
    analogies: Vec<dlhist::data::words::AnalogySection>,
}

fn score(e: &Embeddings, ev: &Eval) -> dlhist::Result<(f64, f64, f64, f64, f64)> {
    let a = e.evaluate_analogies(&ev.analogies, 30_000)?;
    Ok((
        e.evaluate_similarity(&ev.ws)?.rho,
        e.evaluate_similarity(&ev.sl)?.rho,
        a.accuracy(),
        a.semantic_accuracy(),
        a.syntactic_accuracy(),
    ))
}

/// gensim's vectors as written by word2vec_gensim.py.
fn load_gensim(dir: &Path, dim: usize) -> Result<Embeddings, Box<dyn std::error::Error>> {
    let vocab_text = std::fs::read_to_string(dir.join("vocab.txt"))?;
    let pairs: Vec<(String, u64)> = vocab_text
        .lines()
        .map(|l| {
            let (w, c) = l.split_once(' ').expect("word count");
            (w.to_string(), c.parse().expect("a count"))
        })
        .collect();
    let bytes = std::fs::read(dir.join("vectors.f32"))?;
    let vectors: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok(Embeddings::new(Vocab::from_counts(pairs), dim, vectors)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = env("THREADS", 2);
    let rounds: usize = env("ROUNDS", 2);
    let epochs: usize = env("EPOCHS", 3);
    let dim: usize = env("DIM", 100);
    let sample: f64 = env("SAMPLE", 1e-3);
    let lr: f32 = env("LR", 0.025);
    let only: String = env("ONLY", String::new());
    let python: String = env("PYTHON", "python3".to_string());
    let archs: Vec<String> = {
        let a: Vec<String> = std::env::args().skip(1).collect();
        if a.is_empty() {
            vec!["sg".into(), "cbow".into()]
        } else {
            a
        }
    };

    let mut corpus = match std::env::var("CORPUS_FILE") {
        // Any text8-style file (words separated by whitespace) instead of the installed corpus.
        Ok(path) => WordCorpus {
            name: path.clone(),
            source: path.clone().into(),
            words: std::fs::read_to_string(&path)?.split_whitespace().map(String::from).collect(),
        },
        Err(_) => english_corpus()?,
    };
    if let Some(n) = std::env::var("WORDS").ok().and_then(|v| v.parse().ok()) {
        corpus = corpus.prefix(n);
    }
    println!(
        "corpus: {} ({} words), {threads} threads, {epochs} epochs, dim {dim}, sample {sample}",
        corpus.name,
        corpus.len()
    );
    let ev = Eval {
        ws: word_similarity(SimilaritySet::WordSim353)?,
        sl: word_similarity(SimilaritySet::SimLex999)?,
        analogies: analogy_questions()?,
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/word2vec-bench");
    std::fs::create_dir_all(&dir)?;
    // One file per run: two benchmark runs at once must not overwrite each other's corpus.
    let corpus_file = dir.join(format!("corpus-{}.txt", std::process::id()));
    if only != "dlhist" {
        std::fs::write(&corpus_file, corpus.words.join(" "))?;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../xtask/bench/word2vec_gensim.py");

    let mut runs: Vec<Run> = vec![];
    for round in 1..=rounds {
        for arch in &archs {
            let (architecture, sg, name) = match arch.as_str() {
                "sg" => (Architecture::SkipGram, 1, "skip-gram"),
                "cbow" => (Architecture::Cbow, 0, "CBOW"),
                other => return Err(format!("unknown architecture {other:?}: use sg or cbow").into()),
            };
            if only != "gensim" {
                let cfg = Word2VecConfig {
                    architecture,
                    dim,
                    epochs,
                    sample,
                    threads,
                    lr,
                    seed: round as u64,
                    ..Word2VecConfig::skip_gram()
                };
                let model = Word2Vec::train(&corpus.words, &cfg)?;
                let r = model.report().clone();
                let run =
                    Run::new("dlhist", name, r.words_per_second(), r.train_seconds, score(&model.embeddings(), &ev)?);
                print_run(round, &run);
                runs.push(run);
            }
            if only != "dlhist" {
                let settings = serde_json::json!({
                    "sg": sg, "vector_size": dim, "window": 5, "negative": 5, "hs": 0, "sample": sample,
                    "min_count": 5, "epochs": epochs, "alpha": lr, "min_alpha": 0.0001, "workers": threads,
                    "seed": round, "cbow_mean": 1,
                });
                let out_dir = dir.join(format!("gensim-{}", std::process::id()));
                let out = Command::new(&python)
                    .arg(&script)
                    .arg(&corpus_file)
                    .arg(&out_dir)
                    .arg(settings.to_string())
                    .output()?;
                if !out.status.success() {
                    return Err(format!("word2vec_gensim.py failed:\n{}", String::from_utf8_lossy(&out.stderr)).into());
                }
                let stdout = String::from_utf8_lossy(&out.stdout);
                let line = stdout.lines().rev().find(|l| l.starts_with('{')).ok_or("gensim printed no result")?;
                let g: serde_json::Value = serde_json::from_str(line)?;
                println!("round {round}: gensim's own evaluation of its vectors: {}", g["gensim_eval"]);
                let (wps, secs) = (g["words_per_second"].as_f64(), g["train_seconds"].as_f64());
                let scores = score(&load_gensim(&out_dir, dim)?, &ev)?;
                let run = Run::new("gensim", name, wps.unwrap_or(f64::NAN), secs.unwrap_or(f64::NAN), scores);
                print_run(round, &run);
                runs.push(run);
            }
        }
    }

    let _ = std::fs::remove_file(&corpus_file);
    let _ = std::fs::remove_dir_all(dir.join(format!("gensim-{}", std::process::id())));
    println!("\nmedians over {rounds} rounds ({threads} threads; quality scored by dlhist's evaluation for both)\n");
    println!(
        "| model | side | words/s | train s | WordSim353 ρ | SimLex-999 ρ | analogies (30k) | semantic | syntactic |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for arch in ["skip-gram", "CBOW"] {
        for side in ["dlhist", "gensim"] {
            let sel: Vec<&Run> = runs.iter().filter(|r| r.arch == arch && r.side == side).collect();
            if sel.is_empty() {
                continue;
            }
            let med = |f: fn(&Run) -> f64| {
                let mut v: Vec<f64> = sel.iter().map(|r| f(r)).collect();
                v.sort_by(f64::total_cmp);
                let n = v.len();
                if n % 2 == 1 {
                    v[n / 2]
                } else {
                    (v[n / 2 - 1] + v[n / 2]) / 2.0
                }
            };
            println!(
                "| {arch} | {side} | {:.0} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                med(|r| r.words_per_second),
                med(|r| r.train_seconds),
                med(|r| r.ws353),
                med(|r| r.simlex),
                med(|r| r.analogy),
                med(|r| r.semantic),
                med(|r| r.syntactic)
            );
        }
    }
    Ok(())
}

fn print_run(round: usize, r: &Run) {
    println!(
        "round {round}: {}",
        serde_json::json!({
            "side": r.side, "model": r.arch, "words_per_second": r.words_per_second.round(),
            "train_seconds": r.train_seconds, "wordsim353_rho": r.ws353, "simlex999_rho": r.simlex,
            "analogy_accuracy": r.analogy, "semantic": r.semantic, "syntactic": r.syntactic,
        })
    );
}
