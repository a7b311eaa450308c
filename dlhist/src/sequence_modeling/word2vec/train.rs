//! Training: skip-gram and CBOW with negative sampling, sparse SGD, Hogwild over threads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rand::RngCore;

use super::embeddings::Embeddings;
use super::sampling::{keep_probability, NegativeSampler};
use super::vocab::Vocab;
use crate::rng::Rng;
use crate::{Error, Result};

/// Which word predicts which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Continuous skip-gram: each word's vector predicts every word around it (one logistic regression per
    /// (word, context word) pair). Slower, better on rare words and on the semantic analogies (2013a, table 3).
    SkipGram,
    /// Continuous bag of words: the *mean* of the context words' vectors predicts the word in the middle (one
    /// logistic regression per position). About `2·window` times fewer updates than skip-gram.
    Cbow,
}

/// Settings of a word2vec run. The defaults of [`Word2VecConfig::skip_gram`] and [`Word2VecConfig::cbow`] are
/// gensim 4's (which follow word2vec.c's, except CBOW's learning rate: word2vec.c starts CBOW at 0.05).
#[derive(Debug, Clone, PartialEq)]
pub struct Word2VecConfig {
    /// Skip-gram or CBOW.
    pub architecture: Architecture,
    /// Vector size.
    pub dim: usize,
    /// The largest distance between a word and a context word. Each position draws its actual window uniformly
    /// from `1..=window` (word2vec.c's "reduced window"), which weights near words more than far ones.
    pub window: usize,
    /// Negative samples per positive pair (k in equation 4 of 2013b).
    pub negative: usize,
    /// The subsampling threshold t ([`keep_probability`]); 0 turns subsampling off.
    pub sample: f64,
    /// Words seen fewer times are dropped from the corpus before training.
    pub min_count: u64,
    /// Passes over the corpus.
    pub epochs: usize,
    /// The starting learning rate; it falls linearly to `min_lr` over the whole run.
    pub lr: f32,
    /// The final learning rate.
    pub min_lr: f32,
    /// Hogwild threads. With 1 thread a seed gives bit-identical vectors on every run; with more, the threads'
    /// updates interleave differently each run and the vectors differ slightly (not their quality).
    pub threads: usize,
    /// Seeds the initial vectors and every thread's random stream.
    pub seed: u64,
    /// The flat corpus is cut into "sentences" of this many words, and windows never cross a cut (gensim's
    /// text8 reader does the same with 10 000).
    pub sentence_len: usize,
    /// The power of the unigram distribution negatives are drawn from (0.75 in the paper).
    pub ns_power: f64,
}

impl Word2VecConfig {
    /// Skip-gram: 100 dimensions, window 5, 5 negatives, t = 10⁻³, min_count 5, 5 epochs, lr 0.025 → 0.0001,
    /// 2 threads, seed 0.
    pub fn skip_gram() -> Self {
        Word2VecConfig {
            architecture: Architecture::SkipGram,
            dim: 100,
            window: 5,
            negative: 5,
            sample: 1e-3,
            min_count: 5,
            epochs: 5,
            lr: 0.025,
            min_lr: 0.0001,
            threads: 2,
            seed: 0,
            sentence_len: 10_000,
            ns_power: 0.75,
        }
    }

    /// CBOW with the same settings (gensim's defaults: the same learning rate as skip-gram).
    pub fn cbow() -> Self {
        Word2VecConfig { architecture: Architecture::Cbow, ..Self::skip_gram() }
    }

    fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Invalid(format!("Word2VecConfig: {what}; got {self:?}")));
        if self.dim == 0 || self.window == 0 || self.negative == 0 || self.epochs == 0 || self.threads == 0 {
            return bad("dim, window, negative, epochs and threads must all be at least 1");
        }
        if self.sentence_len < 2 {
            return bad("sentence_len must be at least 2 (a window needs two words)");
        }
        if !(self.lr > 0.0 && self.lr.is_finite() && self.min_lr >= 0.0 && self.min_lr <= self.lr) {
            return bad("the learning rates must satisfy 0 <= min_lr <= lr, lr > 0 and finite");
        }
        if !(self.sample >= 0.0 && self.sample.is_finite()) {
            return bad("sample must be 0 (off) or a positive threshold such as 1e-3");
        }
        Ok(())
    }
}

/// What a training run did and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Words in the corpus given to [`Word2Vec::train`], unknown ones included.
    pub corpus_words: u64,
    /// Words the vocabulary covers (the corpus after dropping words under `min_count`).
    pub vocab_words: u64,
    /// Words actually trained on, summed over epochs (after subsampling).
    pub trained_words: u64,
    /// Training examples, summed over epochs: (context, centre) pairs for skip-gram, windows for CBOW. Each is one
    /// positive and `negative` noise logistic regressions, so this counts the work of a run independently of
    /// the machine's speed.
    pub examples: u64,
    /// Epochs run.
    pub epochs: usize,
    /// Threads used.
    pub threads: usize,
    /// Seconds spent building the vocabulary and encoding the corpus.
    pub setup_seconds: f64,
    /// Seconds of training proper (from starting the threads to joining them).
    pub train_seconds: f64,
}

impl TrainReport {
    /// Training throughput as gensim and word2vec.c count it for raw words: corpus words × epochs / training
    /// seconds (words dropped by `min_count` or subsampling count as processed).
    pub fn words_per_second(&self) -> f64 {
        self.corpus_words as f64 * self.epochs as f64 / self.train_seconds.max(1e-9)
    }
}

/// A trained word2vec model: the vocabulary, the input vectors (the embeddings) and the output vectors of
/// negative sampling.
#[derive(Debug, Clone)]
pub struct Word2Vec {
    vocab: Vocab,
    config: Word2VecConfig,
    input: Vec<f32>,
    output: Vec<f32>,
    report: TrainReport,
}

/// word2vec.c's sigmoid: a table over [−6, 6]; beyond, the gradient is the saturated one.
const MAX_EXP: f32 = 6.0;
const SIGMOID_TABLE: usize = 1000;

fn sigmoid_table() -> Vec<f32> {
    (0..SIGMOID_TABLE)
        .map(|i| {
            let x = (i as f32 / SIGMOID_TABLE as f32 * 2.0 - 1.0) * MAX_EXP;
            1.0 / (1.0 + (-x).exp())
        })
        .collect()
}

/// The gradient scale `(label − σ(f)) · lr` of one logistic regression.
#[inline(always)]
fn gradient(f: f32, label: f32, lr: f32, table: &[f32]) -> f32 {
    let p = if f >= MAX_EXP {
        1.0
    } else if f <= -MAX_EXP {
        0.0
    } else {
        table[(((f + MAX_EXP) * (SIGMOID_TABLE as f32 / MAX_EXP / 2.0)) as usize).min(SIGMOID_TABLE - 1)]
    };
    (label - p) * lr
}

/// `Σ a_i b_i` with 16 independent partial sums, so that the compiler can keep them in vector registers (a
/// single running sum would be one long dependency chain).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `y += alpha · x`.
#[inline(always)]
fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// The two weight matrices, shared by every thread without locks: Hogwild (Recht et al. 2011), as word2vec.c
/// and gensim train. Each update touches a few rows of 100-odd floats out of millions, so two threads rarely
/// write the same row at once, and when they do, one update is partly lost, which SGD shrugs off.
struct Shared {
    input: *mut f32,
    output: *mut f32,
    rows: usize,
    dim: usize,
}

// SAFETY: see `Shared::row`: the pointers stay valid for the whole `thread::scope`, and concurrent access to a
// row is the deliberate, documented Hogwild race.
unsafe impl Sync for Shared {}

impl Shared {
    /// Row `i` of `base` as a mutable slice.
    ///
    /// # Safety
    /// `base` is `self.input` or `self.output`, `i < self.rows`, and the matrices outlive the slice (they are
    /// owned by `Word2Vec::train`, which joins every thread before it touches them again). Within one thread no
    /// two live slices alias: every caller holds at most one input row and one output row at a time. Across
    /// threads two slices may cover the same row while both threads read and write it: that is a data race,
    /// which the Rust memory model leaves undefined; word2vec.c and gensim do exactly this in C, and on x86-64
    /// the effect is that one thread's write of a float may be overwritten by another's (lost updates, never
    /// torn floats: aligned 4-byte stores are atomic there). We accept it for the same reason they do: locking
    /// rows would cost more than the lost updates. A 1-thread run has no race at all.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, base: *mut f32, i: usize) -> &mut [f32] {
        debug_assert!(i < self.rows);
        std::slice::from_raw_parts_mut(base.add(i * self.dim), self.dim)
    }
}

/// One thread's share of the work.
struct Job<'a> {
    ids: &'a [u32],
    cfg: &'a Word2VecConfig,
    keep: &'a [u64],
    sampler: &'a NegativeSampler,
    table: &'a [f32],
    progress: &'a AtomicU64,
    total_progress: u64,
    shared: &'a Shared,
    rng: Rng,
}

impl Job<'_> {
    /// The learning rate after `done` of `total_progress` words: linear decay from `lr` to `min_lr`.
    fn lr(&self, done: u64) -> f32 {
        let frac = (done as f64 / self.total_progress.max(1) as f64).min(1.0) as f32;
        self.cfg.lr - (self.cfg.lr - self.cfg.min_lr) * frac
    }
}

/// The training loop of one thread; returns the number of words trained on and of training examples (pairs or
/// windows, see [`TrainReport::examples`]). `inline(always)`, so that it is
/// compiled once for the CPU's vector extensions (in `run_avx2`) and once for any x86-64.
#[inline(always)]
fn run_body(job: &mut Job) -> (u64, u64) {
    let cfg = job.cfg;
    let dim = job.shared.dim;
    let (mut neu1, mut neu1e) = (vec![0f32; dim], vec![0f32; dim]);
    let mut kept: Vec<u32> = Vec::with_capacity(cfg.sentence_len);
    let (mut trained, mut examples) = (0u64, 0u64);
    let mut lr = job.lr(job.progress.load(Ordering::Relaxed));
    for _ in 0..cfg.epochs {
        for sentence in job.ids.chunks(cfg.sentence_len) {
            // Subsampling: drop each occurrence of a frequent word with its probability; the survivors close up,
            // so windows reach further in text where frequent words were dropped (as in word2vec.c).
            kept.clear();
            for &w in sentence {
                let k = job.keep[w as usize];
                if k > u64::from(u32::MAX) || u64::from(job.rng.next_u32()) < k {
                    kept.push(w);
                }
            }
            trained += kept.len() as u64;
            let done = job.progress.fetch_add(sentence.len() as u64, Ordering::Relaxed) + sentence.len() as u64;
            for pos in 0..kept.len() {
                let reach = cfg.window - job.rng.below(cfg.window); // 1..=window
                let lo = pos.saturating_sub(reach);
                let hi = (pos + reach).min(kept.len() - 1);
                let center = kept[pos];
                match cfg.architecture {
                    Architecture::SkipGram => {
                        for (c, &context) in kept.iter().enumerate().take(hi + 1).skip(lo) {
                            if c == pos {
                                continue;
                            }
                            // The context word's input vector predicts the center word (word2vec.c's order, which
                            // updates one input row per pair; the objective is symmetric in expectation).
                            // SAFETY: context < rows; this input row is the only one live in this thread.
                            let l1 = unsafe { job.shared.row(job.shared.input, context as usize) };
                            examples += 1;
                            neu1e.fill(0.0);
                            negative_sampling(job, center, l1, &mut neu1e, lr);
                            axpy(1.0, &neu1e, l1);
                        }
                    }
                    Architecture::Cbow => {
                        neu1.fill(0.0);
                        let mut n = 0usize;
                        for (c, &context) in kept.iter().enumerate().take(hi + 1).skip(lo) {
                            if c != pos {
                                // SAFETY: a shared read of one input row, not kept past this line.
                                axpy(1.0, unsafe { job.shared.row(job.shared.input, context as usize) }, &mut neu1);
                                n += 1;
                            }
                        }
                        if n == 0 {
                            continue;
                        }
                        let inv = 1.0 / n as f32;
                        neu1.iter_mut().for_each(|v| *v *= inv); // the mean of the context (gensim's cbow_mean=1)
                        examples += 1;
                        neu1e.fill(0.0);
                        negative_sampling(job, center, &neu1, &mut neu1e, lr);
                        // Every context word gets the whole error, unscaled (word2vec.c; gensim divides by n).
                        for (c, &context) in kept.iter().enumerate().take(hi + 1).skip(lo) {
                            if c != pos {
                                // SAFETY: one input row at a time.
                                axpy(1.0, &neu1e, unsafe { job.shared.row(job.shared.input, context as usize) });
                            }
                        }
                    }
                }
            }
            lr = job.lr(done);
        }
    }
    (trained, examples)
}

/// One positive and `negative` negative logistic regressions of the hidden vector `l1` against output vectors
/// (equation 4 of 2013b): raises σ(v'_target · l1) for the true word, lowers it for noise words. The output rows
/// are updated in place; `l1`'s gradient is accumulated into `neu1e` for the caller to apply.
#[inline(always)]
fn negative_sampling(job: &mut Job, target: u32, l1: &[f32], neu1e: &mut [f32], lr: f32) {
    for d in 0..=job.cfg.negative {
        let (word, label) = if d == 0 {
            (target, 1.0)
        } else {
            let w = job.sampler.sample_bits(job.rng.next_u64());
            if w == target {
                continue; // the true word drawn as noise: skip it, as word2vec.c does
            }
            (w, 0.0)
        };
        // SAFETY: word < rows; the only output row live in this thread.
        let l2 = unsafe { job.shared.row(job.shared.output, word as usize) };
        let g = gradient(dot(l1, l2), label, lr, job.table);
        axpy(g, l2, neu1e); // ∂/∂l1, applied after all k + 1 terms
        axpy(g, l1, l2); // ∂/∂v'_word, applied now
    }
}

/// The loop compiled with AVX2 (8 floats per instruction instead of SSE2's 4).
///
/// # Safety
/// Only call when the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_avx2(job: &mut Job) -> (u64, u64) {
    run_body(job)
}

fn run_thread(job: &mut Job) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked on the line above.
        return unsafe { run_avx2(job) };
    }
    run_body(job)
}

impl Word2Vec {
    /// Trains on `corpus` (a flat stream of words, e.g. `dlhist::data::words::gcide()?.words`).
    ///
    /// Errors on an invalid config, an empty corpus, or a corpus with fewer than two words at `min_count`.
    ///
    /// ```
    /// use dlhist::sequence_modeling::word2vec::{Word2Vec, Word2VecConfig};
    /// let corpus: Vec<String> = "the cat sat on the mat the dog sat on the log ".repeat(50)
    ///     .split_whitespace().map(String::from).collect();
    /// let cfg = Word2VecConfig { dim: 8, min_count: 1, epochs: 2, threads: 1, ..Word2VecConfig::skip_gram() };
    /// let model = Word2Vec::train(&corpus, &cfg)?;
    /// assert_eq!(model.vocab().len(), 7);
    /// assert_eq!(model.embeddings().dim(), 8);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn train<S: AsRef<str>>(corpus: &[S], cfg: &Word2VecConfig) -> Result<Word2Vec> {
        cfg.validate()?;
        let setup = Instant::now();
        let vocab = Vocab::build(corpus, cfg.min_count)?;
        if vocab.len() < 2 {
            return Err(Error::Invalid(format!(
                "word2vec: only {} word reaches min_count {}; need at least two (lower min_count or give more text)",
                vocab.len(),
                cfg.min_count
            )));
        }
        let ids = vocab.encode(corpus);
        let total = vocab.total();
        // Keep probabilities as 32-bit thresholds: a word is kept when a random u32 falls below; more than
        // u32::MAX means "always" and skips the draw.
        let keep: Vec<u64> = vocab
            .counts()
            .iter()
            .map(|&c| {
                let p = keep_probability(c, total, cfg.sample);
                if p >= 1.0 {
                    u64::MAX
                } else {
                    (p * 4_294_967_296.0) as u64
                }
            })
            .collect();
        let sampler = NegativeSampler::new(vocab.counts(), cfg.ns_power)?;
        let (rows, dim) = (vocab.len(), cfg.dim);
        // word2vec.c's initialization: input vectors uniform in ±0.5/dim, output vectors zero.
        let mut input =
            Rng::new(cfg.seed).fork("word2vec-input").uniform_vec(rows * dim, -0.5 / dim as f32, 0.5 / dim as f32);
        let mut output = vec![0f32; rows * dim];
        let setup_seconds = setup.elapsed().as_secs_f64();

        let table = sigmoid_table();
        let progress = AtomicU64::new(0);
        let total_progress = ids.len() as u64 * cfg.epochs as u64;
        let shared = Shared { input: input.as_mut_ptr(), output: output.as_mut_ptr(), rows, dim };
        // Whole sentences per thread, contiguous, as word2vec.c splits its file.
        let sentences = ids.len().div_ceil(cfg.sentence_len);
        let threads = cfg.threads.min(sentences.max(1));
        let start = Instant::now();
        let (trained, examples) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (a, b) = (sentences * t / threads, sentences * (t + 1) / threads);
                    let slice = &ids[(a * cfg.sentence_len).min(ids.len())..(b * cfg.sentence_len).min(ids.len())];
                    let mut job = Job {
                        ids: slice,
                        cfg,
                        keep: &keep,
                        sampler: &sampler,
                        table: &table,
                        progress: &progress,
                        total_progress,
                        shared: &shared,
                        rng: Rng::new(cfg.seed).fork(&format!("word2vec-thread-{t}")),
                    };
                    s.spawn(move || run_thread(&mut job))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a word2vec thread panicked"))
                .fold((0u64, 0u64), |(t, e), (dt, de)| (t + dt, e + de))
        });
        let train_seconds = start.elapsed().as_secs_f64();
        let report = TrainReport {
            corpus_words: corpus.len() as u64,
            vocab_words: ids.len() as u64,
            trained_words: trained,
            examples,
            epochs: cfg.epochs,
            threads,
            setup_seconds,
            train_seconds,
        };
        Ok(Word2Vec { vocab, config: cfg.clone(), input, output, report })
    }

    /// The vocabulary (ids index the vectors' rows).
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The settings it was trained with.
    pub fn config(&self) -> &Word2VecConfig {
        &self.config
    }

    /// Timing and word counts of the run.
    pub fn report(&self) -> &TrainReport {
        &self.report
    }

    /// The input vectors, row-major `[vocab.len(), dim]`: these are the word embeddings.
    pub fn input_vectors(&self) -> &[f32] {
        &self.input
    }

    /// The output vectors of negative sampling, row-major `[vocab.len(), dim]`.
    pub fn output_vectors(&self) -> &[f32] {
        &self.output
    }

    /// The input vectors as [`Embeddings`] (nearest neighbours, analogies, evaluation).
    pub fn embeddings(&self) -> Embeddings {
        Embeddings::new(self.vocab.clone(), self.config.dim, self.input.clone())
            .expect("a model's vectors match its vocabulary")
    }
}
