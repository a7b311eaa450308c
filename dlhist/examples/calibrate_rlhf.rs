//! Calibration runs for the language half of the RLHF notebook (`notebooks/04-transformers/06-rlhf`): comparisons
//! from `rlhf::Labeler` on the pretrained character GPT's continuations (ties dropped), a Bradley-Terry reward model
//! on the pretrained body (`ScalarGpt::total` over the continuation), and PPO against it with several KL weights.
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_rlhf
//! PAIRS=3000 BETAS=0.3,0.1,0 ITERS=120 LR=1e-4 cargo run --release -p dlhist --example calibrate_rlhf
//! ```
//!
//! Knobs (environment): PROMPT (prompt characters, 16), NEW (sampled characters, 48), TAU (the labeler's
//! temperature, 0.5), PAIRS (pairs shown, 3000), RM_EPOCHS (1), RM_LR (1e-3), RM_BATCH (16), BETAS (comma list of KL
//! weights, `0.3,0`), ITERS (PPO iterations, 120), BATCH (rollouts per iteration, 32), LR (PPO's rate, 1e-4), EPOCHS
//! (2), MINIBATCH (16), SEED (1), N_EVAL (held-out prompts each policy is judged on, 128). Prints the reward model's held-out agreement with the labeler's choices and with
//! its true ranking, then per run a line each tenth of the iterations (reward-model score, true score, KL) and the
//! held-out true score, KL and 4-gram diversity of the final policy with a few samples.

use dlhist::prelude::*;
use dlhist::transformers::rlhf::{
    bradley_terry_loss, continuation_log_probs, preference_accuracy, rollout, Labeler, Ppo, PpoConfig, Rollout,
    ScalarGpt,
};
use dlhist::transformers::PretrainedGpt;

mod common;

/// `b` windows of `p` tokens from `ids`, at random starts.
fn prompts(ids: &[u32], b: usize, p: usize, rng: &mut Rng, dev: &Device) -> Result<Tensor> {
    let mut out = Vec::with_capacity(b * p);
    for _ in 0..b {
        let s = rng.below(ids.len() - p);
        out.extend_from_slice(&ids[s..s + p]);
    }
    Ok(Tensor::from_vec(out, (b, p), dev)?)
}

/// The continuations of `ro` as text.
fn texts(ro: &Rollout, pre: &PretrainedGpt) -> Result<Vec<String>> {
    ro.continuations()?.to_vec2::<u32>()?.iter().map(|c| pre.vocab.decode(c)).collect()
}

/// Mean true score and share of distinct character 4-grams of `texts`.
fn judge(labeler: &Labeler, texts: &[String]) -> (f64, f64) {
    let score = texts.iter().map(|t| labeler.score(t) as f64).sum::<f64>() / texts.len() as f64;
    let grams: Vec<Vec<char>> = texts
        .iter()
        .flat_map(|t| t.chars().collect::<Vec<_>>().windows(4).map(|w| w.to_vec()).collect::<Vec<_>>())
        .collect();
    let distinct: std::collections::HashSet<&Vec<char>> = grams.iter().collect();
    (score, distinct.len() as f64 / grams.len().max(1) as f64)
}

fn main() -> Result<()> {
    let p: usize = common::env("PROMPT", 16);
    let n: usize = common::env("NEW", 48);
    let tau: f64 = common::env("TAU", 0.5);
    let pairs: usize = common::env("PAIRS", 3000);
    let rm_epochs: usize = common::env("RM_EPOCHS", 1);
    let rm_lr: f64 = common::env("RM_LR", 1e-3);
    let rm_batch: usize = common::env("RM_BATCH", 16);
    let betas: Vec<f32> = common::list("BETAS", "0.3,0");
    let iters: usize = common::env("ITERS", 120);
    let batch: usize = common::env("BATCH", 32);
    let lr: f64 = common::env("LR", 1e-4);
    let epochs: usize = common::env("EPOCHS", 2);
    let minibatch: usize = common::env("MINIBATCH", 16);
    let seed: u64 = common::env("SEED", 1);
    let dev = Device::Cpu;
    let pre = PretrainedGpt::char_shakespeare()?;
    let reference = pre.frozen(&dev)?;
    let text = dlhist::data::tiny_shakespeare()?;
    let ids = pre.vocab.encode(&text)?;
    let split = ids.len() * 9 / 10;
    let labeler = Labeler::new(&text[..split], tau)?;
    let (train_ids, val_ids) = ids.split_at(split);
    let root = Rng::new(seed);

    // Comparisons between two continuations of one prompt; the pairs the labeler scores equal are dropped.
    let started = std::time::Instant::now();
    let mut rng = root.fork("pairs");
    let (mut chosen, mut rejected, mut truly) = (vec![], vec![], vec![]);
    let mut drawn = 0;
    while drawn < pairs {
        let k = (pairs - drawn).min(64);
        let pr = prompts(train_ids, k, p, &mut rng, &dev)?;
        let (ra, rb) = (rollout(&reference, &pr, n, &mut rng)?, rollout(&reference, &pr, n, &mut rng)?);
        let (ta, tb) = (texts(&ra, &pre)?, texts(&rb, &pre)?);
        for i in 0..k {
            let (sa, sb) = (labeler.score(&ta[i]), labeler.score(&tb[i]));
            if sa == sb {
                continue;
            }
            let a_wins = labeler.prefers(&ta[i], &tb[i], &mut rng);
            let (w, l) = if a_wins { (&ra, &rb) } else { (&rb, &ra) };
            chosen.push(w.tokens.get(i)?);
            rejected.push(l.tokens.get(i)?);
            truly.push(a_wins == (sa > sb));
        }
        drawn += k;
    }
    let (chosen, rejected) = (Tensor::stack(&chosen, 0)?, Tensor::stack(&rejected, 0)?);
    let kept = truly.len();
    println!(
        "{pairs} pairs in {:.1} s, {kept} kept; labels agree with the true ranking on {:.3}",
        started.elapsed().as_secs_f64(),
        truly.iter().filter(|t| **t).count() as f64 / kept as f64
    );

    // The reward model.
    let (n_val, started) = (kept / 10, std::time::Instant::now());
    let n_train = kept - n_val;
    let (rm_params, rm) = ScalarGpt::from_pretrained(&pre, "rm", seed, &dev)?;
    let mut opt = Adam::new(rm_params, AdamConfig::new(rm_lr))?;
    let accuracy = |rm: &ScalarGpt| -> Result<(f64, f64)> {
        let c = rm.total(&chosen.narrow(0, n_train, n_val)?, p)?;
        let r = rm.total(&rejected.narrow(0, n_train, n_val)?, p)?;
        let noisy = preference_accuracy(&c, &r)?;
        let (c, r) = (c.to_vec1::<f32>()?, r.to_vec1::<f32>()?);
        let right = (0..n_val).filter(|&i| (c[i] > r[i]) == truly[n_train + i]).count();
        Ok((noisy, right as f64 / n_val as f64))
    };
    println!("reward model untrained: held-out agreement (labels, true ranking) {:.3?}", accuracy(&rm)?);
    let mut rng = root.fork("rm");
    for e in 0..rm_epochs {
        for chunk in rng.permutation(n_train).chunks(rm_batch) {
            let idx = Tensor::new(chunk, &dev)?;
            let c = rm.total(&chosen.index_select(&idx, 0)?, p)?;
            opt.backward_step(&bradley_terry_loss(&c, &rm.total(&rejected.index_select(&idx, 0)?, p)?)?)?;
        }
        println!("epoch {e}: {:.3?} ({:.0} s)", accuracy(&rm)?, started.elapsed().as_secs_f64());
    }

    // Standardized on the pretrained model's samples of held-out prompts.
    let eval_prompts = prompts(val_ids, common::env("N_EVAL", 128), p, &mut root.fork("eval"), &dev)?;
    let base = rollout(&reference, &eval_prompts, n, &mut root.fork("eval-sample"))?;
    let r = rm.total(&base.tokens, p)?.to_vec1::<f32>()?;
    let mean = r.iter().sum::<f32>() / r.len() as f32;
    let std = (r.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / r.len() as f32).sqrt();
    let (t, d) = judge(&labeler, &texts(&base, &pre)?);
    println!("pretrained: held-out true score {t:.3}, distinct 4-grams {d:.3}");

    for &beta in &betas {
        let started = std::time::Instant::now();
        let (policy_vars, policy) = pre.trainable(&dev)?;
        let value = ScalarGpt::from_pretrained(&pre, "value", seed, &dev)?;
        let cfg = PpoConfig { epochs, minibatch, ..PpoConfig::new(n, beta, lr) };
        let mut ppo = Ppo::new((policy_vars.all_vars(), policy), value, reference.clone(), cfg)?;
        let mut rng = root.fork("ppo");
        let mut scorer = |ro: &Rollout| -> dlhist::Result<Vec<f32>> {
            Ok(rm.total(&ro.tokens, p)?.to_vec1::<f32>()?.iter().map(|x| (x - mean) / std).collect())
        };
        for it in 0..iters {
            let pr = prompts(train_ids, batch, p, &mut rng, &dev)?;
            let (ro, st) = ppo.step(&pr, &mut scorer, &mut rng)?;
            if (it + 1) % (iters / 10).max(1) == 0 {
                let (t, _) = judge(&labeler, &texts(&ro, &pre)?);
                println!(
                    "β {beta} it {:>4}: rm {:+.3}  true {t:.3}  kl {:.2}  clip fraction {:.3}  ({:.0} s)",
                    it + 1,
                    st.score,
                    st.kl,
                    st.clip_fraction,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        let ro = rollout(ppo.policy(), &eval_prompts, n, &mut root.fork("eval-sample"))?;
        let kl = (&ro.logp - continuation_log_probs(&reference, &ro.tokens, p)?)?.sum(1)?.mean_all()?;
        let held = texts(&ro, &pre)?;
        let (t, d) = judge(&labeler, &held);
        println!("β {beta}: held-out true score {t:.3}, KL {:.2}, distinct 4-grams {d:.3}", kl.to_scalar::<f32>()?);
        for s in held.iter().take(4) {
            println!("   {s:?}");
        }
    }
    Ok(())
}
