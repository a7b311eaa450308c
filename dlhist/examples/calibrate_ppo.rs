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
use dlhist::transformers::control::CartPole;
use dlhist::transformers::rlhf::{gae, ppo_loss, value_loss};

mod common;

fn main() -> Result<()> {
    let iters: usize = common::env("ITERS", 40);
    let envs: usize = common::env("ENVS", 8);
    let horizon: usize = common::env("HORIZON", 128);
    let epochs: usize = common::env("EPOCHS", 10);
    let minibatch: usize = common::env("MINIBATCH", 64);
    let lr: f64 = common::env("LR", 1e-3);
    let clip: f64 = common::env("CLIP", 0.2);
    let gamma: f32 = common::env("GAMMA", 0.99);
    let lambda: f32 = common::env("LAMBDA", 0.95);
    let max_steps: usize = common::env("MAX_STEPS", 500);
    let seeds: u64 = common::env("SEEDS", 3);
    let variants: Vec<String> = common::list("VARIANTS", "clip,plain");
    let dev = Device::Cpu;
    let mut summary = vec![];
    for variant in &variants {
        let eps = match variant.as_str() {
            "clip" => Some(clip),
            "plain" => None,
            other => return Err(Error::Invalid(format!("VARIANTS: unknown variant {other:?} (clip or plain)"))),
        };
        for seed in 0..seeds {
            let started = std::time::Instant::now();
            let (vars, vb) = dlhist::init::seeded(seed, DType::F32, &dev);
            let policy = Mlp::new(&[4, 64, 64, 2], Activation::Tanh, vb.pp("pi"))?;
            let value = Mlp::new(&[4, 64, 64, 1], Activation::Tanh, vb.pp("v"))?;
            let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(lr))?;
            let mut rng = Rng::new(seed).fork("ppo");
            let mut carts: Vec<CartPole> = (0..envs).map(|_| CartPole::new(max_steps, &mut rng)).collect();
            let mut lengths_per_iter: Vec<f64> = vec![];
            for _ in 0..iters {
                // Experience: ENVS × HORIZON steps of the current policy, sampled.
                let (mut obs, mut actions, mut logp_old) = (vec![], vec![], vec![]);
                let mut values = vec![vec![]; envs];
                let mut rewards = vec![vec![]; envs];
                let mut dones = vec![vec![]; envs];
                let mut finished = vec![];
                for _ in 0..horizon {
                    let o: Vec<f32> = carts.iter().flat_map(|c| c.observation()).collect();
                    let o = Tensor::from_vec(o, (envs, 4), &dev)?;
                    let logp = candle_nn::ops::log_softmax(&policy.forward(&o)?, D::Minus1)?.to_vec2::<f32>()?;
                    let v = value.forward(&o)?.squeeze(1)?.to_vec1::<f32>()?;
                    for (e, cart) in carts.iter_mut().enumerate() {
                        let right = rng.uniform() < logp[e][1].exp();
                        let a = usize::from(right);
                        obs.extend(cart.observation());
                        actions.push(a as u32);
                        logp_old.push(logp[e][a]);
                        values[e].push(v[e]);
                        rewards[e].push(cart.step(right));
                        dones[e].push(cart.is_done());
                        if cart.is_done() {
                            finished.push(cart.steps() as f64);
                            *cart = CartPole::new(max_steps, &mut rng);
                        }
                    }
                }
                lengths_per_iter.push(if finished.is_empty() {
                    f64::NAN
                } else {
                    finished.iter().sum::<f64>() / finished.len() as f64
                });
                // Advantages per cart-pole, episode by episode; a segment cut by the horizon is bootstrapped with
                // the value of the state it stopped in (added to its last reward: the same δ).
                let last_obs: Vec<f32> = carts.iter().flat_map(|c| c.observation()).collect();
                let bootstrap =
                    value.forward(&Tensor::from_vec(last_obs, (envs, 4), &dev)?)?.squeeze(1)?.to_vec1::<f32>()?;
                let mut adv = vec![0f32; envs * horizon];
                let mut ret = vec![0f32; envs * horizon];
                for e in 0..envs {
                    let v = &values[e];
                    let mut start = 0;
                    for t in 0..horizon {
                        let cut = t + 1 == horizon && !dones[e][t];
                        if dones[e][t] || cut {
                            let mut r = rewards[e][start..=t].to_vec();
                            if cut {
                                *r.last_mut().expect("one step at least") += gamma * bootstrap[e];
                            }
                            let (a, g) = gae(&r, &v[start..=t], gamma, lambda)?;
                            for (i, s) in (start..=t).enumerate() {
                                // Steps are stored time-major: step s of cart-pole e is row s · ENVS + e.
                                adv[s * envs + e] = a[i];
                                ret[s * envs + e] = g[i];
                            }
                            start = t + 1;
                        }
                    }
                }
                // Normalized advantages, as is usual for PPO.
                let n = adv.len() as f32;
                let mean = adv.iter().sum::<f32>() / n;
                let std = (adv.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / n).sqrt().max(1e-6);
                let adv: Vec<f32> = adv.iter().map(|a| (a - mean) / std).collect();
                let rows = envs * horizon;
                let obs = Tensor::from_vec(obs, (rows, 4), &dev)?;
                let actions = Tensor::from_vec(actions, (rows, 1), &dev)?;
                let logp_old = Tensor::from_vec(logp_old, rows, &dev)?;
                let adv = Tensor::from_vec(adv, rows, &dev)?;
                let ret = Tensor::from_vec(ret, rows, &dev)?;
                for _ in 0..epochs {
                    let order = rng.permutation(rows);
                    for chunk in order.chunks(minibatch) {
                        let idx = Tensor::new(chunk, &dev)?;
                        let o = obs.index_select(&idx, 0)?;
                        let logp_all = candle_nn::ops::log_softmax(&policy.forward(&o)?, D::Minus1)?;
                        let logp = logp_all.gather(&actions.index_select(&idx, 0)?, 1)?.squeeze(1)?;
                        let pi_loss =
                            ppo_loss(&logp, &logp_old.index_select(&idx, 0)?, &adv.index_select(&idx, 0)?, None, eps)?;
                        let v_loss = value_loss(&value.forward(&o)?.squeeze(1)?, &ret.index_select(&idx, 0)?, None)?;
                        opt.backward_step(&(pi_loss + (v_loss * 0.5)?)?)?;
                    }
                }
            }
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
            let last = if ok.is_empty() { max_steps as f64 } else { ok.iter().sum::<f64>() / ok.len() as f64 };
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
