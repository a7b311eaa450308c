//! # Learning from human preferences: a reward model from comparisons, and PPO against it
//!
//! P. F. Christiano, J. Leike, T. B. Brown, M. Martic, S. Legg and D. Amodei, "Deep Reinforcement Learning from Human
//! Preferences", NeurIPS 2017. <https://arxiv.org/abs/1706.03741>
//! D. M. Ziegler, N. Stiennon, J. Wu, T. B. Brown, A. Radford, D. Amodei, P. Christiano and G. Irving, "Fine-Tuning
//! Language Models from Human Preferences", 2019. <https://arxiv.org/abs/1909.08593>
//! J. Schulman, F. Wolski, P. Dhariwal, A. Radford and O. Klimov, "Proximal Policy Optimization Algorithms", 2017.
//! <https://arxiv.org/abs/1707.06347>
//! J. Schulman, P. Moritz, S. Levine, M. I. Jordan and P. Abbeel, "High-Dimensional Continuous Control Using
//! Generalized Advantage Estimation", ICLR 2016. <https://arxiv.org/abs/1506.02438>
//! L. Ouyang et al., "Training language models to follow instructions with human feedback", NeurIPS 2022.
//! <https://arxiv.org/abs/2203.02155>
//! Y. Bai et al., "Training a Helpful and Harmless Assistant with Reinforcement Learning from Human Feedback", 2022.
//! <https://arxiv.org/abs/2204.05862>
//!
//! A person cannot write down a reward for "a good continuation", but can say which of two continuations is better.
//! The pipeline turns such comparisons into a reward and the reward into a policy, in three pieces:
//!
//! **1. A reward model from comparisons** (Bradley-Terry). Model the chance that continuation `a` is preferred to
//! `b` as a logistic function of the difference of their rewards, and fit `r` by maximum likelihood
//! ([`bradley_terry_loss`]):
//!
//! ```text
//! P(a ≻ b) = σ(r(a) − r(b))            L_RM = −E log σ(r(chosen) − r(rejected))
//! ```
//!
//! **2. The reward the policy sees** (Ziegler et al.): the reward model's score for the whole continuation, minus a
//! per-token penalty for moving away from the reference model `π_ref` the policy started from
//! ([`kl_shaped_rewards`]). Summed over a continuation, the penalty is `β` times a sample of `KL(π ‖ π_ref)`:
//!
//! ```text
//! R_t = −β (log π(y_t | x, y_<t) − log π_ref(y_t | x, y_<t))  +  [t = T] · r(x, y)
//! ```
//!
//! **3. PPO** (Schulman et al. 2017) with a value head and generalized advantage estimation ([`gae`], Schulman et
//! al. 2016): the advantages `Â_t` weigh how much better token `t` did than the value head expected, and the
//! clipped surrogate ([`ppo_loss`]) keeps each update near the policy that sampled the tokens:
//!
//! ```text
//! δ_t = R_t + γ V(s_{t+1}) − V(s_t)        Â_t = Σ_{l ≥ 0} (γλ)^l δ_{t+l}        (V after the last token: 0)
//! ρ_t = exp(log π_θ(y_t) − log π_old(y_t))
//! L_clip = −E min(ρ_t Â_t, clip(ρ_t, 1 − ε, 1 + ε) Â_t)          L_V = E (V(s_t) − (Â_t + V_old(s_t)))²
//! ```
//!
//! Without the clip, `−E ρ_t Â_t` is the plain policy-gradient surrogate, which rewards moving `ρ` as far as the
//! advantage's sign asks; PPO's paper compares the two.
//!
//! The data for one update comes from [`rollout`]: continuations sampled from the policy through a KV cache, with
//! `log π_old` recorded as each token is drawn; [`continuation_log_probs`] recomputes the same numbers in one
//! teacher-forced pass (for the current policy while it changes, and for the frozen reference model), and
//! [`ScalarGpt`] is the reward model and the value head. [`Ppo`] puts the pieces together into one iteration:
//! sample, score, shape the rewards, estimate advantages, update. [`Labeler`] is the notebook's stand-in for the
//! people who compare continuations: a scoring rule the policy never sees, with Bradley-Terry noise.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::gpt::{Gpt, GptConfig, KvCache};
use super::sampling::Sampling;
use crate::layers::Dense;
use crate::rng::Rng;

/// The Bradley-Terry loss of a reward model, `−mean log σ(r_chosen − r_rejected)`, over `[N]` rewards of the
/// preferred and the other continuation of `N` comparisons. Computed as `softplus(r_rejected − r_chosen)`, which
/// never overflows.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::rlhf::bradley_terry_loss;
/// let chosen = Tensor::new(&[2f32, 0.0], &Device::Cpu)?;
/// let rejected = Tensor::new(&[0f32, 0.0], &Device::Cpu)?;
/// let loss = bradley_terry_loss(&chosen, &rejected)?.to_scalar::<f32>()?;
/// // (−log σ(2) − log σ(0)) / 2 = (0.126928 + 0.693147) / 2
/// assert!((loss - 0.410038).abs() < 1e-5);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn bradley_terry_loss(chosen: &Tensor, rejected: &Tensor) -> Result<Tensor> {
    if chosen.dims() != rejected.dims() || chosen.rank() != 1 {
        candle_core::bail!(
            "bradley_terry_loss: rewards of the chosen {:?} and the rejected {:?} continuations must be [N] alike",
            chosen.dims(),
            rejected.dims()
        )
    }
    softplus(&(rejected - chosen)?)?.mean_all()
}

/// `log(1 + eˣ)` without overflow: `max(x, 0) + log(1 + e^{−|x|})`.
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// The share of comparisons whose preferred continuation gets the higher reward (ties count half).
///
/// ```
/// use dlhist::prelude::*;
/// let chosen = Tensor::new(&[1f32, 0.5, 2.0, 0.0], &Device::Cpu)?;
/// let rejected = Tensor::new(&[0f32, 1.0, 1.0, 0.0], &Device::Cpu)?;
/// assert_eq!(dlhist::transformers::rlhf::preference_accuracy(&chosen, &rejected)?, 0.625);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn preference_accuracy(chosen: &Tensor, rejected: &Tensor) -> Result<f64> {
    let (c, r) = (chosen.to_dtype(DType::F32)?.to_vec1::<f32>()?, rejected.to_dtype(DType::F32)?.to_vec1::<f32>()?);
    if c.len() != r.len() || c.is_empty() {
        candle_core::bail!(
            "preference_accuracy: {} chosen and {} rejected rewards (need the same, at least one)",
            c.len(),
            r.len()
        )
    }
    let score: f64 = c
        .iter()
        .zip(&r)
        .map(|(a, b)| {
            if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            }
        })
        .sum();
    Ok(score / c.len() as f64)
}

/// The log-probability each row of `logits` `[B, T, V]` gives to the token that was taken, `tokens` `[B, T]`
/// (u32): `[B, T]`, `log softmax(logits)[b, t, tokens[b, t]]`. Differentiable in `logits`.
///
/// ```
/// use dlhist::prelude::*;
/// let logits = Tensor::new(&[[[0f32, 0.0], [3.0, 1.0]]], &Device::Cpu)?; // [1, 2, 2]
/// let tokens = Tensor::new(&[[1u32, 0]], &Device::Cpu)?;
/// let lp = dlhist::transformers::rlhf::token_log_probs(&logits, &tokens)?.to_vec2::<f32>()?;
/// assert!((lp[0][0] - 0.5f32.ln()).abs() < 1e-6);
/// assert!((lp[0][1] + (1.0 + (-2f32).exp()).ln()).abs() < 1e-6); // log(e³ / (e³ + e))
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn token_log_probs(logits: &Tensor, tokens: &Tensor) -> Result<Tensor> {
    let (b, t, _) = logits.dims3()?;
    if tokens.dims() != [b, t] {
        candle_core::bail!(
            "token_log_probs: tokens {:?} must be [B, T] = [{b}, {t}] for logits {:?}",
            tokens.dims(),
            logits.dims()
        )
    }
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    log_p.gather(&tokens.to_dtype(DType::U32)?.unsqueeze(2)?.contiguous()?, 2)?.squeeze(2)
}

/// The per-token rewards of one continuation of `T` tokens: `−β (logp[t] − logp_ref[t])` at every token, plus the
/// reward model's `score` at the last (the module docs' `R_t`). `logp` and `logp_ref` are the log-probabilities the
/// policy and the reference model gave the tokens that were sampled.
///
/// ```
/// let r = dlhist::transformers::rlhf::kl_shaped_rewards(1.0, &[-1.0, -2.0], &[-1.5, -1.0], 0.1).unwrap();
/// let want = [-0.1 * 0.5, -0.1 * -1.0 + 1.0];
/// assert!(r.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6));
/// ```
pub fn kl_shaped_rewards(score: f32, logp: &[f32], logp_ref: &[f32], beta: f32) -> crate::Result<Vec<f32>> {
    if logp.len() != logp_ref.len() || logp.is_empty() {
        return Err(crate::Error::Invalid(format!(
            "kl_shaped_rewards: {} policy and {} reference log-probabilities (need the same number, at least one)",
            logp.len(),
            logp_ref.len()
        )));
    }
    let mut rewards: Vec<f32> = logp.iter().zip(logp_ref).map(|(p, q)| -beta * (p - q)).collect();
    *rewards.last_mut().expect("not empty") += score;
    Ok(rewards)
}

/// Generalized advantage estimation over one continuation: `rewards[t]` and the value head's `values[t]` (its
/// estimate before token `t`), the episode ending after the last token (the value after it is 0). Returns the
/// advantages `Â_t` and the value targets `Â_t + values[t]`.
///
/// `λ = 0` gives the one-step advantages `δ_t`; `λ = 1` the full discounted return minus the value.
///
/// ```
/// use dlhist::transformers::rlhf::gae;
/// let (adv, ret) = gae(&[0.0, 1.0], &[0.5, 0.25], 1.0, 1.0).unwrap();
/// // λ = γ = 1: the return is the sum of the rewards still to come, 1 and 1.
/// assert_eq!(ret, vec![1.0, 1.0]);
/// assert_eq!(adv, vec![0.5, 0.75]);
/// ```
pub fn gae(rewards: &[f32], values: &[f32], gamma: f32, lambda: f32) -> crate::Result<(Vec<f32>, Vec<f32>)> {
    if rewards.len() != values.len() {
        return Err(crate::Error::Invalid(format!(
            "gae: {} rewards and {} values (need one value per step)",
            rewards.len(),
            values.len()
        )));
    }
    let n = rewards.len();
    let mut advantages = vec![0f32; n];
    let mut running = 0f32; // Â_{t+1}, built from the end
    for t in (0..n).rev() {
        let next_value = if t + 1 < n { values[t + 1] } else { 0.0 };
        let delta = rewards[t] + gamma * next_value - values[t];
        running = delta + gamma * lambda * running;
        advantages[t] = running;
    }
    let returns = advantages.iter().zip(values).map(|(a, v)| a + v).collect();
    Ok((advantages, returns))
}

/// The policy loss of PPO over tokens: `logp` (the current policy's log-probabilities, differentiable), `logp_old`
/// (the sampling policy's) and `advantages`, all of one shape, and `mask` (1 on the tokens that count, 0 on
/// padding; `None`: all). `clip = Some(ε)` is PPO's clipped surrogate; `None` the unclipped policy-gradient
/// surrogate `−mean ρ Â`. The mean is over the counted tokens.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::rlhf::ppo_loss;
/// let dev = Device::Cpu;
/// // ρ = e^0.5 ≈ 1.65 on a token with Â = 1: the clipped surrogate stops at 1 + ε = 1.2, the plain one does not.
/// let (lp, old, adv) = (Tensor::new(&[0.5f32], &dev)?, Tensor::new(&[0f32], &dev)?, Tensor::new(&[1f32], &dev)?);
/// let clipped = ppo_loss(&lp, &old, &adv, None, Some(0.2))?.to_scalar::<f32>()?;
/// let plain = ppo_loss(&lp, &old, &adv, None, None)?.to_scalar::<f32>()?;
/// assert!((clipped + 1.2).abs() < 1e-6 && (plain + 0.5f32.exp()).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn ppo_loss(
    logp: &Tensor,
    logp_old: &Tensor,
    advantages: &Tensor,
    mask: Option<&Tensor>,
    clip: Option<f64>,
) -> Result<Tensor> {
    if logp.dims() != logp_old.dims() || logp.dims() != advantages.dims() {
        candle_core::bail!(
            "ppo_loss: log-probabilities {:?}, old log-probabilities {:?} and advantages {:?} must have one shape",
            logp.dims(),
            logp_old.dims(),
            advantages.dims()
        )
    }
    // ρ = π_θ / π_old, from the log-probabilities; the old ones and the advantages are constants.
    let ratio = (logp - logp_old.detach())?.exp()?;
    let adv = advantages.detach();
    let unclipped = (&ratio * &adv)?;
    let surrogate = match clip {
        Some(eps) => unclipped.minimum(&(ratio.clamp(1.0 - eps, 1.0 + eps)? * &adv)?)?,
        None => unclipped,
    };
    masked_mean(&surrogate.neg()?, mask)
}

/// The value head's loss, `mean (values − returns)²` over the counted tokens (`mask` as in [`ppo_loss`]).
///
/// ```
/// use dlhist::prelude::*;
/// let v = Tensor::new(&[[1f32, 2.0, 9.0]], &Device::Cpu)?;
/// let target = Tensor::new(&[[0f32, 2.0, 0.0]], &Device::Cpu)?;
/// let mask = Tensor::new(&[[1f32, 1.0, 0.0]], &Device::Cpu)?; // the third token is padding
/// let loss = dlhist::transformers::rlhf::value_loss(&v, &target, Some(&mask))?.to_scalar::<f32>()?;
/// assert_eq!(loss, 0.5);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn value_loss(values: &Tensor, returns: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    if values.dims() != returns.dims() {
        candle_core::bail!(
            "value_loss: values {:?} and returns {:?} must have one shape",
            values.dims(),
            returns.dims()
        )
    }
    masked_mean(&(values - returns.detach())?.sqr()?, mask)
}

/// The mean of `x` over the entries where `mask` is 1 (all of them without a mask).
fn masked_mean(x: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    match mask {
        None => x.mean_all(),
        Some(m) => {
            if m.dims() != x.dims() {
                candle_core::bail!("mask {:?} must have the shape of the values {:?}", m.dims(), x.dims())
            }
            let m = m.to_dtype(x.dtype())?;
            let count = m.sum_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            if count == 0.0 {
                candle_core::bail!("the mask hides every entry: nothing to average")
            }
            (x * m)?.sum_all()? / count as f64
        }
    }
}

/// Continuations sampled from a policy, with what PPO needs of the sampling: the log-probability of each drawn token
/// under the policy that drew it.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// The prompts followed by their continuations, `[B, P + n]` (u32).
    pub tokens: Tensor,
    /// The prompts' length `P`.
    pub prompt_len: usize,
    /// `log π(y_t | x, y_<t)` of each drawn token, `[B, n]`.
    pub logp: Tensor,
}

impl Rollout {
    /// The continuations alone, `[B, n]`.
    pub fn continuations(&self) -> Result<Tensor> {
        let n = self.tokens.dim(1)? - self.prompt_len;
        self.tokens.narrow(1, self.prompt_len, n)
    }
}

/// Samples `n` tokens after each of the equal-length `prompts` (`[B, P]`, u32) from `policy`'s own distribution
/// (temperature 1, no cut: the log-probabilities PPO compares must be those of the distribution that drew the
/// tokens), reading the prompts once and then one token per step through a [`KvCache`]. `P + n` must fit the
/// policy's `block_size`. The same `rng` state gives the same rollout.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::{rlhf::rollout, Gpt, GptConfig};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let gpt = Gpt::new(GptConfig { vocab_size: 5, block_size: 8, n_embd: 8, n_layer: 1, n_head: 2 }, vb)?;
/// let prompts = Tensor::new(&[[1u32, 2], [3, 4]], &dev)?;
/// let r = rollout(&gpt, &prompts, 4, &mut Rng::new(1))?;
/// assert_eq!((r.tokens.dims(), r.logp.dims()), (&[2, 6][..], &[2, 4][..]));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn rollout(policy: &Gpt, prompts: &Tensor, n: usize, rng: &mut Rng) -> crate::Result<Rollout> {
    let (b, p) = prompts.dims2()?;
    let block = policy.config().block_size;
    if n == 0 || p == 0 || p + n > block {
        return Err(crate::Error::Invalid(format!(
            "rollout: prompts of {p} tokens and {n} new ones must both be at least 1 and fit the block of {block}"
        )));
    }
    let sampling = Sampling::plain();
    let prompts = prompts.to_dtype(DType::U32)?;
    let mut cache = KvCache::new();
    let mut logits = policy.forward_cached(&prompts, &mut cache)?; // [B, P, V]
    let (mut drawn, mut logp) = (vec![vec![0u32; n]; b], vec![vec![0f32; n]; b]);
    for i in 0..n {
        // The last position's logits of every row, as a log-distribution in f32.
        let t = logits.dim(1)?;
        let last = candle_nn::ops::log_softmax(&logits.narrow(1, t - 1, 1)?.squeeze(1)?, D::Minus1)?;
        let rows = last.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        for (r, row) in rows.iter().enumerate() {
            let token = sampling.draw(row, rng)?;
            drawn[r][i] = token;
            logp[r][i] = row[token as usize];
        }
        if i + 1 < n {
            let next: Vec<u32> = drawn.iter().map(|d| d[i]).collect();
            logits = policy.forward_cached(&Tensor::from_vec(next, (b, 1), prompts.device())?, &mut cache)?;
        }
    }
    let dev = prompts.device();
    let new = Tensor::from_vec(drawn.concat(), (b, n), dev)?;
    Ok(Rollout {
        tokens: Tensor::cat(&[&prompts, &new], 1)?,
        prompt_len: p,
        logp: Tensor::from_vec(logp.concat(), (b, n), dev)?,
    })
}

/// The log-probabilities `model` gives the continuation of `tokens` (`[B, P + n]`, the first `prompt_len = P` of
/// them the prompt), in one teacher-forced pass: `[B, n]`, differentiable in the model's weights. What PPO's update
/// recomputes for the policy, and what the reference model's penalty needs.
pub fn continuation_log_probs(model: &Gpt, tokens: &Tensor, prompt_len: usize) -> Result<Tensor> {
    let (_, len) = tokens.dims2()?;
    if prompt_len == 0 || prompt_len >= len {
        candle_core::bail!(
            "continuation_log_probs: a prompt of {prompt_len} tokens in sequences of {len} leaves no continuation"
        )
    }
    let n = len - prompt_len;
    // Position t's logits predict token t + 1: positions P − 1 .. P + n − 2 predict the continuation.
    let logits = model.forward(&tokens.narrow(1, 0, len - 1)?)?.narrow(1, prompt_len - 1, n)?;
    token_log_probs(&logits, &tokens.narrow(1, prompt_len, n)?.contiguous()?)
}

/// A scalar head on a GPT body: one number per position, `[B, T]`, read from the body's final hidden states.
/// As a *reward model* its value at the last position scores the whole sequence ([`ScalarGpt::last`]); as a *value
/// head* its value at position `t` estimates the return from there on ([`ScalarGpt::forward`]). Parameters
/// `{path}.body.…` (a [`Gpt`]'s, whose output head is left unused) and `{path}.score` (`C → 1`).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::{rlhf::ScalarGpt, GptConfig};
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let rm = ScalarGpt::new(GptConfig { vocab_size: 7, block_size: 8, n_embd: 16, n_layer: 1, n_head: 2 }, vb)?;
/// let idx = Tensor::new(&[[1u32, 2, 3], [4, 5, 6]], &dev)?;
/// assert_eq!(rm.forward(&idx)?.dims(), &[2, 3]);
/// assert_eq!(rm.last(&idx)?.dims(), &[2]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ScalarGpt {
    body: Gpt,
    score: Dense,
}

impl ScalarGpt {
    /// A fresh body of `config`'s sizes and a fresh head.
    pub fn new(config: GptConfig, vb: VarBuilder) -> Result<Self> {
        let body = Gpt::new(config, vb.pp("body"))?;
        Self::on(body, vb)
    }

    /// A head on an existing body (e.g. a pretrained model, made trainable or frozen by the caller), its parameters
    /// `{path}.score` from `vb`.
    pub fn on(body: Gpt, vb: VarBuilder) -> Result<Self> {
        let c = body.config().n_embd;
        Ok(ScalarGpt { score: Dense::new(c, 1, None, vb.pp("score"))?, body })
    }

    /// A pretrained body made trainable, with a fresh head `{path}.score` drawn from `seed` (so a seed gives the same
    /// model): returns every trainable variable (the body's and the head's) and the model. How the RLHF notebook
    /// starts its reward model and its value model from the pretrained policy.
    pub fn from_pretrained(
        pre: &super::gpt::PretrainedGpt,
        path: &str,
        seed: u64,
        dev: &candle_core::Device,
    ) -> crate::Result<(Vec<candle_core::Var>, Self)> {
        let (body_vars, body) = pre.trainable(dev)?;
        let (head_vars, head_vb) = crate::init::seeded(seed, DType::F32, dev);
        let model = Self::on(body, head_vb.pp(path))?;
        let mut vars = body_vars.all_vars();
        vars.extend(head_vars.all_vars());
        Ok((vars, model))
    }

    /// The body.
    pub fn body(&self) -> &Gpt {
        &self.body
    }

    /// The head's value at the last position of each sequence, `[B]`.
    pub fn last(&self, idx: &Tensor) -> Result<Tensor> {
        let v = self.forward(idx)?;
        let t = v.dim(1)?;
        v.narrow(1, t - 1, 1)?.squeeze(1)
    }

    /// The head's values summed over positions `from..T` of each sequence, `[B]`: a reward built as a sum of
    /// per-token contributions over a continuation that starts at `from`. The papers read one number at the last
    /// position instead ([`ScalarGpt::last`]); a sum suits a preference that counts things in the text, as the
    /// notebook's labeler does.
    ///
    /// ```
    /// use dlhist::prelude::*;
    /// use dlhist::transformers::{rlhf::ScalarGpt, GptConfig};
    /// let dev = Device::Cpu;
    /// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
    /// let rm = ScalarGpt::new(GptConfig { vocab_size: 7, block_size: 8, n_embd: 16, n_layer: 1, n_head: 2 }, vb)?;
    /// let idx = Tensor::new(&[[1u32, 2, 3, 4]], &dev)?;
    /// let per_token = rm.forward(&idx)?.to_vec2::<f32>()?;
    /// let total = rm.total(&idx, 2)?.to_vec1::<f32>()?;
    /// assert!((total[0] - (per_token[0][2] + per_token[0][3])).abs() < 1e-6);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn total(&self, idx: &Tensor, from: usize) -> Result<Tensor> {
        let t = idx.dim(1)?;
        if from >= t {
            candle_core::bail!("ScalarGpt::total: summing from position {from} of sequences of {t} sums nothing")
        }
        self.forward(idx)?.narrow(1, from, t - from)?.sum(1)
    }
}

impl Module for ScalarGpt {
    /// Token ids `[B, T]` to one number per position, `[B, T]`.
    fn forward(&self, idx: &Tensor) -> Result<Tensor> {
        self.score.forward(&self.body.hidden_states(idx)?)?.squeeze(2)
    }
}

/// The settings of [`Ppo`]: how the reward is shaped and how each batch of rollouts is learned from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PpoConfig {
    /// Tokens sampled after each prompt.
    pub new_tokens: usize,
    /// `β`, the weight of the per-token KL penalty to the reference model (0: no penalty).
    pub beta: f32,
    /// PPO's `ε`; `None` for the plain policy-gradient surrogate.
    pub clip: Option<f64>,
    /// The discount `γ` (1 for a continuation judged as a whole).
    pub gamma: f32,
    /// GAE's `λ`.
    pub lambda: f32,
    /// Passes over each batch of rollouts.
    pub epochs: usize,
    /// Rollouts per gradient step.
    pub minibatch: usize,
    /// Adam's learning rate, for the policy and the value model alike.
    pub lr: f64,
    /// The value loss's weight in the summed loss.
    pub value_coef: f64,
    /// The largest global gradient norm of one step (clipped above it).
    pub max_grad_norm: f64,
}

impl PpoConfig {
    /// `new_tokens` tokens per rollout, penalty `beta`, learning rate `lr`; the rest at the usual values for language
    /// models: `ε = 0.2`, `γ = 1`, `λ = 0.95`, 4 epochs of minibatches of 16, value weight 0.5, gradient norm ≤ 1.
    pub fn new(new_tokens: usize, beta: f32, lr: f64) -> Self {
        PpoConfig {
            new_tokens,
            beta,
            clip: Some(0.2),
            gamma: 1.0,
            lambda: 0.95,
            epochs: 4,
            minibatch: 16,
            lr,
            value_coef: 0.5,
            max_grad_norm: 1.0,
        }
    }
}

/// What one [`Ppo::step`] measured on its batch of rollouts (means over the rollouts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PpoStats {
    /// The score the scorer gave the continuations (the reward model's, in RLHF).
    pub score: f64,
    /// `Σ_t (log π(y_t) − log π_ref(y_t))` per continuation: a sample estimate of `KL(π ‖ π_ref)` in nats, for the
    /// policy that sampled the batch.
    pub kl: f64,
    /// The reward the policy was trained on: `score − β · kl`.
    pub reward: f64,
    /// The share of tokens whose probability ratio ended the update outside `[1 − ε, 1 + ε]` (0 without a clip).
    pub clip_fraction: f64,
    /// The value loss of the last minibatch.
    pub value_loss: f64,
}

/// PPO on a language model against a scorer, with the per-token KL penalty to a frozen reference (the module
/// docs' pieces 2 and 3). Holds the policy and the value model as variables and one Adam over both; each
/// [`Ppo::step`] samples a batch, scores it, computes rewards, values and advantages, and makes `epochs` passes of
/// minibatch updates.
pub struct Ppo {
    policy: Gpt,
    value: ScalarGpt,
    reference: Gpt,
    vars: Vec<candle_core::Var>,
    opt: crate::optimization::Adam,
    config: PpoConfig,
}

impl std::fmt::Debug for Ppo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ppo").field("config", &self.config).field("vars", &self.vars.len()).finish()
    }
}

impl Ppo {
    /// PPO for `policy` (its trainable variables first), with the value model `value` (likewise), against the frozen
    /// `reference` (usually the policy's starting point).
    pub fn new(
        policy: (Vec<candle_core::Var>, Gpt),
        value: (Vec<candle_core::Var>, ScalarGpt),
        reference: Gpt,
        config: PpoConfig,
    ) -> crate::Result<Self> {
        if config.epochs == 0 || config.minibatch == 0 || config.new_tokens == 0 {
            return Err(crate::Error::Invalid(format!(
                "PpoConfig: epochs ({}), minibatch ({}) and new_tokens ({}) must be at least 1",
                config.epochs, config.minibatch, config.new_tokens
            )));
        }
        let mut vars = policy.0;
        vars.extend(value.0);
        let opt = <crate::optimization::Adam as candle_nn::Optimizer>::new(
            vars.clone(),
            crate::optimization::AdamConfig::new(config.lr),
        )?;
        Ok(Ppo { policy: policy.1, value: value.1, reference, vars, opt, config })
    }

    /// The policy being trained.
    pub fn policy(&self) -> &Gpt {
        &self.policy
    }

    /// The settings.
    pub fn config(&self) -> &PpoConfig {
        &self.config
    }

    /// One iteration: samples `config.new_tokens` tokens after each of `prompts` (`[B, P]`), asks `scorer` for one
    /// score per rollout, and updates the policy and the value model. Returns the rollout and its statistics.
    pub fn step(
        &mut self,
        prompts: &Tensor,
        scorer: &mut dyn FnMut(&Rollout) -> crate::Result<Vec<f32>>,
        rng: &mut Rng,
    ) -> crate::Result<(Rollout, PpoStats)> {
        let cfg = self.config;
        let ro = rollout(&self.policy, prompts, cfg.new_tokens, rng)?;
        let (b, p, n) = (ro.tokens.dim(0)?, ro.prompt_len, cfg.new_tokens);
        let scores = scorer(&ro)?;
        if scores.len() != b {
            return Err(crate::Error::Invalid(format!("the scorer gave {} scores for {b} rollouts", scores.len())));
        }
        let logp_old = ro.logp.to_vec2::<f32>()?;
        let logp_ref = continuation_log_probs(&self.reference, &ro.tokens, p)?.to_vec2::<f32>()?;
        // V(s_t), the value before token t, is read where the prefix ends: positions P − 1 .. P + n − 2.
        let head = ro.tokens.narrow(1, 0, p + n - 1)?;
        let values_old = self.value.forward(&head)?.narrow(1, p - 1, n)?.to_vec2::<f32>()?;
        let (mut adv, mut ret, mut kl) = (Vec::with_capacity(b * n), Vec::with_capacity(b * n), 0f64);
        for r in 0..b {
            let rewards = kl_shaped_rewards(scores[r], &logp_old[r], &logp_ref[r], cfg.beta)?;
            kl += logp_old[r].iter().zip(&logp_ref[r]).map(|(a, b)| (a - b) as f64).sum::<f64>();
            let (a, g) = gae(&rewards, &values_old[r], cfg.gamma, cfg.lambda)?;
            adv.extend(a);
            ret.extend(g);
        }
        // Whitened advantages: the update's size no longer depends on the reward's scale.
        let count = adv.len() as f32;
        let mean = adv.iter().sum::<f32>() / count;
        let std = (adv.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / count).sqrt().max(1e-6);
        let adv: Vec<f32> = adv.iter().map(|a| (a - mean) / std).collect();
        let dev = prompts.device();
        let adv = Tensor::from_vec(adv, (b, n), dev)?;
        let ret = Tensor::from_vec(ret, (b, n), dev)?;
        let mut value_loss_last = 0.0;
        for _ in 0..cfg.epochs {
            let order = rng.permutation(b);
            for chunk in order.chunks(cfg.minibatch) {
                let idx = Tensor::new(chunk, dev)?;
                let tokens = ro.tokens.index_select(&idx, 0)?;
                let logp = continuation_log_probs(&self.policy, &tokens, p)?;
                let pi = ppo_loss(&logp, &ro.logp.index_select(&idx, 0)?, &adv.index_select(&idx, 0)?, None, cfg.clip)?;
                let v = self.value.forward(&tokens.narrow(1, 0, p + n - 1)?)?.narrow(1, p - 1, n)?;
                let vl = value_loss(&v, &ret.index_select(&idx, 0)?, None)?;
                value_loss_last = vl.to_scalar::<f32>()? as f64;
                let mut grads = (pi + (vl * cfg.value_coef)?)?.backward()?;
                crate::optim::clip_grad_norm(&mut grads, &self.vars, cfg.max_grad_norm)?;
                candle_nn::Optimizer::step(&mut self.opt, &grads)?;
            }
        }
        // How far the updates moved the policy on this batch: the share of ratios outside the clip range.
        let clip_fraction = match cfg.clip {
            None => 0.0,
            Some(eps) => {
                let ratio = (continuation_log_probs(&self.policy, &ro.tokens, p)? - &ro.logp)?.exp()?;
                let outside = ratio.flatten_all()?.to_vec1::<f32>()?;
                outside.iter().filter(|r| (**r as f64 - 1.0).abs() > eps).count() as f64 / outside.len() as f64
            }
        };
        let score = scores.iter().map(|s| *s as f64).sum::<f64>() / b as f64;
        let kl = kl / b as f64;
        let stats =
            PpoStats { score, kl, reward: score - cfg.beta as f64 * kl, clip_fraction, value_loss: value_loss_last };
        Ok((ro, stats))
    }
}

/// The stand-in for human raters in the RLHF notebook: a scoring rule over a continuation's words that the
/// policy never sees, and comparisons drawn from it with noise.
///
/// This labeler likes rich diction. A continuation's **true score** is the number of distinct long words in it
/// that are real words:
///
/// ```text
/// s = #{distinct words w : |w| ≥ 6 letters, w in the labeler's dictionary, w not written in capitals}
/// ```
///
/// counting only the words that lie wholly inside the continuation (runs of letters, compared lower-cased; the first
/// and the last run may be cut by the prompt or by the end and are skipped). The dictionary is the set of words of a
/// corpus. A word in capitals only is a speaker's name in a heading (`CORIOLANUS:`), not diction, and is not counted.
/// The labeler prefers `a` to `b` with the Bradley-Terry probability `σ((s_a − s_b) / τ)`: ties are coin flips, and a
/// difference of one word is called right `σ(1/τ)` of the time.
///
/// ```
/// use dlhist::transformers::rlhf::Labeler;
/// let labeler = Labeler::new("my gentle cousin, the sovereign's honour. MENENIUS: Menenius", 0.5)?;
/// // "gentle", "cousin" and "sovereign" count; "honour" is cut by the end, "my" by the start.
/// assert_eq!(labeler.score("my gentle cousin sovereign the honour"), 3.0);
/// // A repeat counts once; a long word outside the dictionary not at all; a heading not at all.
/// assert_eq!(labeler.score("x cousin Cousin gentlemanly\nMENENIUS:\nMenenius, go"), 2.0);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Labeler {
    dictionary: std::collections::HashSet<String>,
    temperature: f64,
}

/// The fewest letters of a word the [`Labeler`] counts.
pub const LONG_WORD: usize = 6;

impl Labeler {
    /// A labeler whose dictionary is the words of `corpus` (runs of letters, lower-cased) and whose comparisons
    /// have the temperature `temperature` (> 0; smaller is less noisy).
    pub fn new(corpus: &str, temperature: f64) -> crate::Result<Self> {
        if temperature.is_nan() || temperature <= 0.0 {
            return Err(crate::Error::Invalid(format!("Labeler: temperature {temperature} must be above 0")));
        }
        Ok(Labeler { dictionary: words_of(corpus).into_iter().collect(), temperature })
    }

    /// The true score of `continuation` (the type's docs).
    pub fn score(&self, continuation: &str) -> f32 {
        let counted: std::collections::HashSet<String> = inner_runs(continuation)
            .into_iter()
            .filter(|w| w.chars().count() >= LONG_WORD && w.chars().any(char::is_lowercase))
            .map(str::to_lowercase)
            .filter(|w| self.dictionary.contains(w))
            .collect();
        counted.len() as f32
    }

    /// Whether the labeler prefers `a` to `b`: drawn with probability `σ((s_a − s_b) / τ)`.
    pub fn prefers(&self, a: &str, b: &str, rng: &mut Rng) -> bool {
        let d = (self.score(a) - self.score(b)) as f64 / self.temperature;
        (rng.uniform() as f64) < 1.0 / (1.0 + (-d).exp())
    }
}

/// The runs of letters of `text`, lower-cased.
fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
}

/// The runs of letters wholly inside `text` (after its first non-letter and before its last), as written.
fn inner_runs(text: &str) -> Vec<&str> {
    let (Some(first), Some(last)) = (text.find(|c: char| !c.is_alphabetic()), text.rfind(|c: char| !c.is_alphabetic()))
    else {
        return vec![];
    };
    if first >= last {
        return vec![];
    }
    text[first..last].split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// GAE against its definition written out, `Â_t = Σ_l (γλ)^l δ_{t+l}`, on a three-step episode.
    #[test]
    fn gae_matches_the_sum_of_discounted_residuals() -> crate::Result<()> {
        let (r, v, g, l) = ([0.5f32, -1.0, 2.0], [0.2f32, 0.4, -0.3], 0.9f32, 0.8f32);
        let delta = [r[0] + g * v[1] - v[0], r[1] + g * v[2] - v[1], r[2] - v[2]];
        let want = [delta[0] + g * l * delta[1] + (g * l).powi(2) * delta[2], delta[1] + g * l * delta[2], delta[2]];
        let (adv, ret) = gae(&r, &v, g, l)?;
        for t in 0..3 {
            assert!((adv[t] - want[t]).abs() < 1e-6, "step {t}: {} vs {}", adv[t], want[t]);
            assert!((ret[t] - (want[t] + v[t])).abs() < 1e-6);
        }
        // λ = 0: one-step residuals.
        let (adv0, _) = gae(&r, &v, g, 0.0)?;
        assert!(adv0.iter().zip(delta).all(|(a, d)| (a - d).abs() < 1e-6));
        assert!(gae(&r, &v[..2], g, l).is_err());
        Ok(())
    }

    /// The clipped surrogate's gradient vanishes once the ratio has left `[1 − ε, 1 + ε]` in the direction the
    /// advantage favours, and not before; the unclipped one keeps pushing.
    #[test]
    fn clipping_stops_the_gradient_outside_the_trust_region() -> crate::Result<()> {
        let dev = Device::Cpu;
        // Token 0: ρ = e^0.3 > 1.2 with Â > 0 (clipped). Token 1: ρ = e^0.1 < 1.2 with Â > 0 (inside).
        // Token 2: ρ = e^-0.3 < 0.8 with Â < 0 (clipped). Token 3: ρ = e^0.3 with Â < 0 (not clipped: min picks it).
        let logp = Var::new(&[0.3f32, 0.1, -0.3, 0.3], &dev)?;
        let old = Tensor::zeros(4, DType::F32, &dev)?;
        let adv = Tensor::new(&[1f32, 2.0, -1.0, -0.5], &dev)?;
        let grads = ppo_loss(logp.as_tensor(), &old, &adv, None, Some(0.2))?.backward()?;
        let g = grads.get(logp.as_tensor()).expect("gradient").to_vec1::<f32>()?;
        // d/dlogp of −ρÂ/4 is −ρÂ/4 where unclipped.
        let want = [0.0, -(0.1f32.exp()) * 2.0 / 4.0, 0.0, (0.3f32.exp()) * 0.5 / 4.0];
        for (t, (a, b)) in g.iter().zip(want).enumerate() {
            assert!((a - b).abs() < 1e-6, "token {t}: {a} vs {b}");
        }
        let grads = ppo_loss(logp.as_tensor(), &old, &adv, None, None)?.backward()?;
        let g = grads.get(logp.as_tensor()).expect("gradient").to_vec1::<f32>()?;
        assert!(g.iter().all(|&x| x != 0.0), "the plain surrogate pushes every token: {g:?}");
        Ok(())
    }

    /// The Bradley-Terry loss is the logistic loss of the reward difference, stable for large differences, and
    /// its gradient pushes the chosen reward up by `σ(r_rejected − r_chosen)` / N.
    #[test]
    fn bradley_terry_is_stable_and_has_the_logistic_gradient() -> crate::Result<()> {
        let dev = Device::Cpu;
        let chosen = Var::new(&[100f32, -100.0, 0.3], &dev)?;
        let rejected = Tensor::new(&[0f32, 0.0, -0.2], &dev)?;
        let loss = bradley_terry_loss(chosen.as_tensor(), &rejected)?;
        let want = (0.0 + 100.0 + (1.0 + (-0.5f64).exp()).ln()) / 3.0;
        assert!((loss.to_scalar::<f32>()? as f64 - want).abs() < 1e-4);
        let g = loss.backward()?.get(chosen.as_tensor()).expect("gradient").to_vec1::<f32>()?;
        let sigma = |x: f32| 1.0 / (1.0 + (-x).exp());
        for (i, d) in [-100f32, 100.0, -0.5].iter().enumerate() {
            assert!((g[i] + sigma(*d) / 3.0).abs() < 1e-6, "{i}: {}", g[i]);
        }
        assert!(bradley_terry_loss(chosen.as_tensor(), &Tensor::zeros(2, DType::F32, &dev)?).is_err());
        Ok(())
    }

    /// Shaped rewards sum to the score minus β times the summed log-ratio (the sampled KL).
    #[test]
    fn shaped_rewards_sum_to_score_minus_the_kl_penalty() -> crate::Result<()> {
        let (lp, lr) = ([-0.5f32, -1.25, -2.0, -0.1], [-0.7f32, -1.0, -2.5, -0.3]);
        let r = kl_shaped_rewards(0.8, &lp, &lr, 0.05)?;
        let kl: f32 = lp.iter().zip(&lr).map(|(a, b)| a - b).sum();
        assert!((r.iter().sum::<f32>() - (0.8 - 0.05 * kl)).abs() < 1e-6);
        assert!(kl_shaped_rewards(0.8, &lp, &lr[..3], 0.05).is_err());
        Ok(())
    }

    /// `token_log_probs` picks entries of the log-softmax, and its gradient is `onehot − softmax`.
    #[test]
    fn token_log_probs_gradient_is_onehot_minus_softmax() -> crate::Result<()> {
        let dev = Device::Cpu;
        let logits = Var::new(&[[[0.2f32, -1.0, 0.5]]], &dev)?;
        let tokens = Tensor::new(&[[2u32]], &dev)?;
        let lp = token_log_probs(logits.as_tensor(), &tokens)?;
        let g = lp.sum_all()?.backward()?.get(logits.as_tensor()).expect("gradient").flatten_all()?.to_vec1::<f32>()?;
        let e: Vec<f32> = [0.2f32, -1.0, 0.5].iter().map(|x| x.exp()).collect();
        let z: f32 = e.iter().sum();
        for (k, gk) in g.iter().enumerate() {
            let want = if k == 2 { 1.0 } else { 0.0 } - e[k] / z;
            assert!((gk - want).abs() < 1e-6, "{k}: {gk} vs {want}");
        }
        assert!(token_log_probs(logits.as_tensor(), &Tensor::new(&[[1u32, 2]], &dev)?).is_err());
        Ok(())
    }

    /// The reward model's score at the last position is the head applied to the body's last hidden state, and
    /// training it on comparisons separates a rule the data follows.
    #[test]
    fn reward_model_learns_a_preference_from_comparisons() -> crate::Result<()> {
        use candle_nn::Optimizer;
        let dev = Device::Cpu;
        let (vars, vb) = crate::init::seeded(3, DType::F32, &dev);
        let cfg = GptConfig { vocab_size: 4, block_size: 6, n_embd: 16, n_layer: 1, n_head: 2 };
        let rm = ScalarGpt::new(cfg, vb)?;
        let idx = Tensor::new(&[[1u32, 2, 3, 0], [3, 3, 0, 1]], &dev)?;
        let h = rm.body().hidden_states(&idx)?.narrow(1, 3, 1)?.squeeze(1)?;
        let gap = (rm.score.forward(&h)?.squeeze(1)? - rm.last(&idx)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(gap < 1e-6);
        // The hidden rule: more 3s is better. Pairs of random sequences, the one with more 3s preferred.
        let mut rng = crate::rng::Rng::new(5);
        let (mut chosen, mut rejected) = (vec![], vec![]);
        while chosen.len() < 64 * 6 {
            let a: Vec<u32> = (0..6).map(|_| rng.below(4) as u32).collect();
            let b: Vec<u32> = (0..6).map(|_| rng.below(4) as u32).collect();
            let count = |s: &[u32]| s.iter().filter(|&&x| x == 3).count();
            if count(&a) != count(&b) {
                let (c, r) = if count(&a) > count(&b) { (a, b) } else { (b, a) };
                chosen.extend(c);
                rejected.extend(r);
            }
        }
        let chosen = Tensor::from_vec(chosen, (64, 6), &dev)?;
        let rejected = Tensor::from_vec(rejected, (64, 6), &dev)?;
        let before = preference_accuracy(&rm.last(&chosen)?, &rm.last(&rejected)?)?;
        let mut opt = crate::optimization::Adam::new(vars.all_vars(), crate::optimization::AdamConfig::new(1e-2))?;
        for _ in 0..60 {
            let loss = bradley_terry_loss(&rm.last(&chosen)?, &rm.last(&rejected)?)?;
            opt.backward_step(&loss)?;
        }
        let after = preference_accuracy(&rm.last(&chosen)?, &rm.last(&rejected)?)?;
        assert!(after > 0.9 && after > before, "accuracy {before} → {after}");
        Ok(())
    }

    /// The log-probabilities a rollout records while sampling through the cache are those of a teacher-forced pass
    /// over the finished sequences, and a seed gives the same rollout.
    #[test]
    fn rollout_log_probs_match_a_teacher_forced_pass() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (_vars, vb) = crate::init::seeded(4, DType::F32, &dev);
        let gpt = Gpt::new(GptConfig { vocab_size: 6, block_size: 10, n_embd: 16, n_layer: 2, n_head: 2 }, vb)?;
        let prompts = Tensor::new(&[[1u32, 2, 3], [5, 4, 0], [2, 2, 2]], &dev)?;
        let r = rollout(&gpt, &prompts, 7, &mut crate::rng::Rng::new(9))?;
        assert_eq!(r.continuations()?.dims(), &[3, 7]);
        assert_eq!(r.tokens.narrow(1, 0, 3)?.to_vec2::<u32>()?, prompts.to_vec2::<u32>()?);
        let forced = continuation_log_probs(&gpt, &r.tokens, 3)?;
        let gap = (forced - &r.logp)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(gap < 1e-5, "{gap}");
        let again = rollout(&gpt, &prompts, 7, &mut crate::rng::Rng::new(9))?;
        assert_eq!(again.tokens.to_vec2::<u32>()?, r.tokens.to_vec2::<u32>()?);
        assert!(rollout(&gpt, &prompts, 8, &mut crate::rng::Rng::new(9)).is_err(), "3 + 8 > block of 10");
        Ok(())
    }

    /// A tiny policy and value model with seeded weights (heads included), trainable, and a frozen copy.
    fn tiny_ppo(beta: f32, seed: u64) -> crate::Result<Ppo> {
        let dev = Device::Cpu;
        let cfg = GptConfig { vocab_size: 4, block_size: 8, n_embd: 16, n_layer: 1, n_head: 2 };
        let (pv, pvb) = crate::init::seeded(seed, DType::F32, &dev);
        let policy = Gpt::new(cfg, pvb)?;
        let (vv, vvb) = crate::init::seeded(seed + 1, DType::F32, &dev);
        let value = ScalarGpt::new(cfg, vvb)?;
        // The reference: the policy's starting weights copied into constants, so training `pv` leaves it alone.
        let reference = Gpt::new(
            cfg,
            VarBuilder::from_tensors(
                pv.data()
                    .lock()
                    .expect("lock")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_tensor().copy().expect("copy")))
                    .collect(),
                DType::F32,
                &dev,
            ),
        )?;
        let config = PpoConfig { minibatch: 8, ..PpoConfig::new(5, beta, 3e-3) };
        Ppo::new((pv.all_vars(), policy), (vv.all_vars(), value), reference, config)
    }

    /// A scorer that counts the continuation's 3s: PPO makes them more frequent; the first batch's KL estimate is 0
    /// (policy and reference agree before any update); and a seed gives the same run.
    #[test]
    fn ppo_raises_the_score_and_is_seeded() -> crate::Result<()> {
        let dev = Device::Cpu;
        let prompts = Tensor::new(&[[1u32, 2]; 16], &dev)?;
        let mut count3 = |ro: &Rollout| -> crate::Result<Vec<f32>> {
            Ok(ro
                .continuations()?
                .to_vec2::<u32>()?
                .iter()
                .map(|r| r.iter().filter(|t| **t == 3).count() as f32)
                .collect())
        };
        let run = |count3: &mut dyn FnMut(&Rollout) -> crate::Result<Vec<f32>>| -> crate::Result<Vec<PpoStats>> {
            let mut ppo = tiny_ppo(0.01, 7)?;
            let mut rng = Rng::new(3);
            (0..25).map(|_| Ok(ppo.step(&prompts, count3, &mut rng)?.1)).collect()
        };
        let stats = run(&mut count3)?;
        assert!(stats[0].kl.abs() < 1e-5, "first KL {}", stats[0].kl);
        let first: f64 = stats[..3].iter().map(|s| s.score).sum::<f64>() / 3.0;
        let last: f64 = stats[22..].iter().map(|s| s.score).sum::<f64>() / 3.0;
        assert!(last > first + 1.0, "3s per continuation of 5: {first:.2} → {last:.2}");
        assert!(stats.iter().all(|s| (0.0..=1.0).contains(&s.clip_fraction)));
        assert!(stats[24].kl > 0.0);
        let again = run(&mut count3)?;
        assert_eq!(again, stats);
        // A scorer that answers for the wrong number of rollouts is refused.
        let mut short = |_: &Rollout| -> crate::Result<Vec<f32>> { Ok(vec![0.0]) };
        assert!(tiny_ppo(0.0, 7)?.step(&prompts, &mut short, &mut Rng::new(0)).is_err());
        Ok(())
    }

    /// The labeler's preferences follow the Bradley-Terry probability of its scores.
    #[test]
    fn labeler_prefers_with_the_logistic_probability() -> crate::Result<()> {
        let labeler = Labeler::new("gentle cousin", 0.5)?;
        let (a, b) = ("x gentle y", "x z y"); // scores 1 and 0
        let mut rng = Rng::new(5);
        let wins = (0..4000).filter(|_| labeler.prefers(a, b, &mut rng)).count() as f64 / 4000.0;
        let want = 1.0 / (1.0 + (-2f64).exp()); // σ(1 / 0.5)
        assert!((wins - want).abs() < 0.02, "{wins} against {want}");
        let ties = (0..4000).filter(|_| labeler.prefers(a, a, &mut rng)).count() as f64 / 4000.0;
        assert!((ties - 0.5).abs() < 0.03, "{ties}");
        assert!(Labeler::new("", 0.0).is_err());
        Ok(())
    }
}
