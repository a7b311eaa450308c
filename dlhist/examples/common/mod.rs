//! What the calibration examples share: reading positional arguments and environment knobs, and the training configuration of the
//! sequence-to-sequence notebooks.

// Each example compiles this module on its own, and not every example uses every helper.
#![allow(dead_code)]

use dlhist::layers::SequenceCrossEntropy;
use dlhist::prelude::*;

/// The positional argument `i` of `args`, parsed, or `default` when it is absent; a value that does not parse is
/// an error that repeats the example's `usage`.
pub fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T, usage: &str) -> Result<T> {
    match args.get(i) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| dlhist::Error::Invalid(format!("argument {i} ({s:?}) does not parse; usage: {usage}"))),
    }
}

/// The environment variable `name`, parsed, or `default` when it is unset or does not parse (the knobs of the
/// examples that take settings from the environment).
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The environment variable `name` as a comma-separated list (`default` when it is unset); items that do not parse
/// are left out.
pub fn list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    std::env::var(name).unwrap_or_else(|_| default.into()).split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

/// How the Seq2Seq and Attention notebooks train: `steps` steps over a stream already cut into length-bucketed
/// batches of `batch` (so in order, not shuffled), on the masked sequence cross-entropy, a progress line a minute.
pub fn sequence_fit(steps: usize, batch: usize) -> FitConfig<'static> {
    FitConfig {
        epochs: 1,
        batch_size: batch,
        shuffle: false,
        max_steps: Some(steps),
        loss: SequenceCrossEntropy.into(),
        progress_every_s: Some(60.0),
        ..Default::default()
    }
}

/// The two pretraining recipes of the examples: each fixes the loss and how long the rate warms up.
#[derive(Debug, Clone, Copy)]
pub enum Pretraining {
    /// A left-to-right language model (the GPT examples): next-token cross-entropy, warm-up over a twentieth of
    /// the steps (at least one).
    NextToken,
    /// BERT (`pretrain_bert`, `calibrate_bert`): the masked-token cross-entropy (which serves BERT's left-to-right
    /// streams too, whose targets are every next token), warm-up over the first tenth of the steps.
    MaskedTokens,
}

/// How the GPT and BERT examples pretrain (`pretrain_char_gpt`, `pretrain_bert`, the `calibrate_*` of the GPT,
/// GPT-3, LoRA and BERT notebooks): `steps` steps over batches already drawn in order (not shuffled), `batch` at a
/// time, on the recipe's loss; the rate warms up to `lr` and then follows a cosine down to a tenth of it; `on_step`
/// runs after every step (probes, what the caller wants to see); no progress lines.
pub fn pretraining_fit<'a>(
    recipe: Pretraining,
    steps: usize,
    batch: usize,
    lr: f64,
    on_step: Option<dlhist::train::OnStep<'a>>,
) -> Result<FitConfig<'a>> {
    use dlhist::optim::CosineAnnealing;
    let (warmup, loss): (usize, dlhist::train::SharedLoss) = match recipe {
        Pretraining::NextToken => ((steps / 20).max(1), dlhist::train::TokenCrossEntropy.into()),
        Pretraining::MaskedTokens => (steps / 10, dlhist::transformers::MaskedTokenCrossEntropy.into()),
    };
    let schedule = CosineAnnealing::new(lr, lr / 10.0, steps - warmup)?.with_warmup(warmup);
    Ok(FitConfig {
        epochs: 1,
        batch_size: batch,
        shuffle: false,
        max_steps: Some(steps),
        loss,
        schedule: Some(std::sync::Arc::new(schedule)),
        progress_every_s: None,
        on_step,
        ..Default::default()
    })
}
