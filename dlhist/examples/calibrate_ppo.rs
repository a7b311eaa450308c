//! Calibration runs for the control half of the RLHF notebook (`notebooks/04-transformers/06-rlhf`): PPO on
//! cart-pole (`transformers::control::CartPole`), the clipped surrogate against the plain policy-gradient surrogate,
//! both taking several epochs of minibatch updates on each batch of experience (which is what clipping is for).
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_ppo
//! ITERS=40 SEEDS=3 EPOCHS=10 LR=1e-3 VARIANTS=clip,plain cargo run --release -p dlhist --example calibrate_ppo
//! ```
//!
//! Knobs (environment): ITERS (policy updates, 40), ENVS (cart-poles run side by side, 8), HORIZON (steps per cart-pole
//! per batch, 128: a batch is ENVS × HORIZON steps), EPOCHS (passes over each batch, 10), MINIBATCH (64), LR (Adam's
//! rate, 1e-3), CLIP (ε, 0.2), GAMMA (0.99), LAMBDA (GAE's λ, 0.95), MAX_STEPS (episode cap, 500), SEEDS (3),
//! VARIANTS (comma list of `clip` and `plain`). The policy and the value function are separate MLPs 4-64-64 with
//! tanh. Prints, per variant and seed, the mean length of the episodes finished in each tenth of the run, and at the
//! end the mean over the last quarter of the iterations.

use dlhist::prelude::*;
use dlhist::transformers::control::{train_ppo, CartPolePpo};

mod common;

fn main() -> Result<()> {
    let d = CartPolePpo::default();
    let cfg = CartPolePpo {
        iters: common::env("ITERS", d.iters),
        envs: common::env("ENVS", d.envs),
        horizon: common::env("HORIZON", d.horizon),
        epochs: common::env("EPOCHS", d.epochs),
        minibatch: common::env("MINIBATCH", d.minibatch),
        lr: common::env("LR", d.lr),
        gamma: common::env("GAMMA", d.gamma),
        lambda: common::env("LAMBDA", d.lambda),
        max_steps: common::env("MAX_STEPS", d.max_steps),
    };
    let clip: f64 = common::env("CLIP", 0.2);
    let seeds: u64 = common::env("SEEDS", 3);
    let variants: Vec<String> = common::list("VARIANTS", "clip,plain");
    let mut summary = vec![];
    for variant in &variants {
        let eps = match variant.as_str() {
            "clip" => Some(clip),
            "plain" => None,
            other => return Err(Error::Invalid(format!("VARIANTS: unknown variant {other:?} (clip or plain)"))),
        };
        for seed in 0..seeds {
            let started = std::time::Instant::now();
            let lengths_per_iter = train_ppo(&cfg, eps, seed)?;
            let iters = cfg.iters;
            let tenth = (iters / 10).max(1);
            let curve: Vec<String> = lengths_per_iter
                .chunks(tenth)
                .map(|c| {
                    let ok: Vec<f64> = c.iter().copied().filter(|x| x.is_finite()).collect();
                    format!("{:.0}", ok.iter().sum::<f64>() / ok.len().max(1) as f64)
                })
                .collect();
            let quarter = &lengths_per_iter[iters - (iters / 4).max(1)..];
            let ok: Vec<f64> = quarter.iter().copied().filter(|x| x.is_finite()).collect();
            let last = if ok.is_empty() { cfg.max_steps as f64 } else { ok.iter().sum::<f64>() / ok.len() as f64 };
            println!(
                "{variant:<5} seed {seed}: episode length by tenths [{}]; last quarter {last:.1} ({:.0} s)",
                curve.join(", "),
                started.elapsed().as_secs_f64()
            );
            summary.push((variant.clone(), last));
        }
    }
    println!("\nmean episode length over the last quarter of the iterations:");
    for variant in &variants {
        let v: Vec<f64> = summary.iter().filter(|s| &s.0 == variant).map(|s| s.1).collect();
        println!("{variant:<5} {:?}", v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>());
    }
    Ok(())
}
