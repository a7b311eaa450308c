//! # A control task for PPO's own claim: balancing a pole on a cart
//!
//! A. G. Barto, R. S. Sutton and C. W. Anderson, "Neuronlike Adaptive Elements That Can Solve Difficult Learning
//! Control Problems", IEEE Transactions on Systems, Man, and Cybernetics 13(5), pp. 834-846, 1983.
//! <https://doi.org/10.1109/TSMC.1983.6313077>
//!
//! PPO (Schulman et al. 2017, [`super::rlhf`]) was introduced on control tasks, and its claim (clipping the
//! probability ratio makes several epochs of updates on one batch of experience safe) is easiest to see on one: the
//! language-model pipeline adds a reward model, a KL penalty and a huge action space on top. Cart-pole is the
//! classic small one. A pole is hinged on a cart that moves along a track; each step pushes the cart left or right
//! with a fixed force, and the reward is 1 for every step the pole stays within 12° of upright and the cart within
//! 2.4 of the centre. Episodes end there, or after `max_steps` steps.
//!
//! The dynamics (frictionless), for pole angle `θ` (0 upright), cart position `x`, force `F = ±10`, gravity
//! `g = 9.8`, cart mass `m_c = 1`, pole mass `m_p = 0.1`, half the pole's length `l = 0.5`, `M = m_c + m_p`:
//!
//! ```text
//! a  = (F + m_p l θ̇² sin θ) / M
//! θ̈ = (g sin θ − a cos θ) / (l (4/3 − m_p cos² θ / M))
//! ẍ = a − m_p l θ̈ cos θ / M
//! ```
//!
//! integrated with Euler steps of `τ = 0.02` s (position from the old velocity, then the velocity), the constants
//! and the start (every state variable uniform in ±0.05) of the common benchmark.

use crate::rng::Rng;

const GRAVITY: f32 = 9.8;
const MASS_CART: f32 = 1.0;
const MASS_POLE: f32 = 0.1;
const HALF_LENGTH: f32 = 0.5;
const FORCE: f32 = 10.0;
const TAU: f32 = 0.02;
const ANGLE_LIMIT: f32 = 12.0 * std::f32::consts::PI / 180.0;
const POSITION_LIMIT: f32 = 2.4;

/// One cart-pole episode: state `[x, ẋ, θ, θ̇]`, the module docs' dynamics.
///
/// ```
/// use dlhist::rng::Rng;
/// use dlhist::transformers::control::CartPole;
/// // Pushing towards the side the pole falls to keeps it up for the whole episode; always pushing right does not.
/// let mut env = CartPole::new(500, &mut Rng::new(0));
/// while !env.is_done() {
///     let [_, _, theta, omega] = env.observation();
///     env.step(theta + 0.5 * omega > 0.0);
/// }
/// assert_eq!(env.steps(), 500);
/// let mut env = CartPole::new(500, &mut Rng::new(0));
/// while !env.is_done() { env.step(true); }
/// assert!(env.steps() < 30);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CartPole {
    state: [f32; 4],
    steps: usize,
    max_steps: usize,
    done: bool,
}

impl CartPole {
    /// A new episode of at most `max_steps` steps, its start drawn from `rng`.
    pub fn new(max_steps: usize, rng: &mut Rng) -> Self {
        let state = [0; 4].map(|_| rng.uniform_in(-0.05, 0.05));
        CartPole { state, steps: 0, max_steps, done: max_steps == 0 }
    }

    /// What the agent sees: `[x, ẋ, θ, θ̇]`.
    pub fn observation(&self) -> [f32; 4] {
        self.state
    }

    /// Steps taken so far (the episode's return: the reward is 1 a step).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Whether the episode is over (pole fallen, cart off the track, or `max_steps` reached).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Pushes the cart right (`true`) or left for one step; returns the reward (1, or 0 once the episode is over).
    pub fn step(&mut self, push_right: bool) -> f32 {
        if self.done {
            return 0.0;
        }
        let [x, v, theta, omega] = self.state;
        let force = if push_right { FORCE } else { -FORCE };
        let total = MASS_CART + MASS_POLE;
        let (sin, cos) = theta.sin_cos();
        let a = (force + MASS_POLE * HALF_LENGTH * omega * omega * sin) / total;
        let alpha = (GRAVITY * sin - cos * a) / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos * cos / total));
        let acc = a - MASS_POLE * HALF_LENGTH * alpha * cos / total;
        self.state = [x + TAU * v, v + TAU * acc, theta + TAU * omega, omega + TAU * alpha];
        self.steps += 1;
        let [x, _, theta, _] = self.state;
        self.done = theta.abs() > ANGLE_LIMIT || x.abs() > POSITION_LIMIT || self.steps >= self.max_steps;
        1.0
    }
}

/// A small fully connected network with tanh between its layers (none after the last): the policy and the value
/// function of [`train_ppo`]. Its layers are `{path}.0`, `{path}.1`, ...
struct TanhNet(Vec<crate::layers::Dense>);

impl TanhNet {
    fn new(sizes: &[usize], vb: candle_nn::VarBuilder) -> candle_core::Result<Self> {
        let last = sizes.len() - 2;
        let act = crate::layers::Activation::Tanh;
        let layers = sizes.windows(2).enumerate();
        Ok(TanhNet(
            layers
                .map(|(i, w)| crate::layers::Dense::new(w[0], w[1], (i < last).then_some(act), vb.pp(i.to_string())))
                .collect::<candle_core::Result<_>>()?,
        ))
    }
}

impl candle_core::Module for TanhNet {
    fn forward(&self, x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
        self.0.iter().try_fold(x.clone(), |h, layer| layer.forward(&h))
    }
}

/// The settings of [`train_ppo`]: PPO's defaults for small control tasks, as in `examples/calibrate_ppo.rs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CartPolePpo {
    /// Policy updates: each collects a batch of experience and learns from it.
    pub iters: usize,
    /// Cart-poles run side by side.
    pub envs: usize,
    /// Steps per cart-pole per batch (a batch is `envs × horizon` steps).
    pub horizon: usize,
    /// Passes over each batch.
    pub epochs: usize,
    /// Steps per gradient step.
    pub minibatch: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// The discount `γ`.
    pub gamma: f32,
    /// GAE's `λ`.
    pub lambda: f32,
    /// The episode cap.
    pub max_steps: usize,
}

impl Default for CartPolePpo {
    /// 40 updates of 8 × 128 steps, 10 epochs of minibatches of 64, rate 1e-3, `γ = 0.99`, `λ = 0.95`, episodes of at
    /// most 500 steps.
    fn default() -> Self {
        CartPolePpo {
            iters: 40,
            envs: 8,
            horizon: 128,
            epochs: 10,
            minibatch: 64,
            lr: 1e-3,
            gamma: 0.99,
            lambda: 0.95,
            max_steps: 500,
        }
    }
}

/// Trains a policy and a value function (separate MLPs 4-64-64 with tanh, from `seed`) with PPO on cart-pole:
/// `clip = Some(ε)` for the clipped surrogate, `None` for the plain one, everything else alike. Returns, per update,
/// the mean length of the episodes that finished during its batch of experience (NaN when none did).
///
/// ```
/// use dlhist::transformers::control::{train_ppo, CartPolePpo};
/// let cfg = CartPolePpo { iters: 2, envs: 2, horizon: 32, epochs: 2, ..Default::default() };
/// let lengths = train_ppo(&cfg, Some(0.2), 0)?;
/// assert_eq!(lengths.len(), 2);
/// // Seeded: the same numbers again, bit for bit (an update in which no episode ended gives NaN, which is not == NaN).
/// let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
/// assert_eq!(bits(&lengths), bits(&train_ppo(&cfg, Some(0.2), 0)?));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn train_ppo(cfg: &CartPolePpo, clip: Option<f64>, seed: u64) -> crate::Result<Vec<f64>> {
    use super::rlhf::{gae, ppo_loss, value_loss};
    use crate::optimization::{Adam, AdamConfig};
    use candle_core::{DType, Device, Module, Tensor, D};
    use candle_nn::Optimizer;

    if cfg.iters == 0 || cfg.envs == 0 || cfg.horizon == 0 || cfg.epochs == 0 || cfg.minibatch == 0 {
        return Err(crate::Error::Invalid(format!("train_ppo: every count in {cfg:?} must be at least 1")));
    }
    let (envs, horizon, dev) = (cfg.envs, cfg.horizon, Device::Cpu);
    let (vars, vb) = crate::init::seeded(seed, DType::F32, &dev);
    let policy = TanhNet::new(&[4, 64, 64, 2], vb.pp("pi"))?;
    let value = TanhNet::new(&[4, 64, 64, 1], vb.pp("v"))?;
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::new(cfg.lr))?;
    let mut rng = Rng::new(seed).fork("ppo");
    let mut carts: Vec<CartPole> = (0..envs).map(|_| CartPole::new(cfg.max_steps, &mut rng)).collect();
    let mut lengths = Vec::with_capacity(cfg.iters);
    for _ in 0..cfg.iters {
        // Experience: `envs × horizon` steps of the current policy, sampled, stored time-major (step s of cart-pole
        // e is row s · envs + e).
        let (mut obs, mut actions, mut logp_old) = (vec![], vec![], vec![]);
        let (mut values, mut rewards, mut dones) = (vec![vec![]; envs], vec![vec![]; envs], vec![vec![]; envs]);
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
                    *cart = CartPole::new(cfg.max_steps, &mut rng);
                }
            }
        }
        lengths.push(if finished.is_empty() { f64::NAN } else { finished.iter().sum::<f64>() / finished.len() as f64 });
        // Advantages per cart-pole, episode by episode; a segment cut by the horizon is bootstrapped with the value
        // of the state it stopped in (added to its last reward: the same δ).
        let last: Vec<f32> = carts.iter().flat_map(|c| c.observation()).collect();
        let bootstrap = value.forward(&Tensor::from_vec(last, (envs, 4), &dev)?)?.squeeze(1)?.to_vec1::<f32>()?;
        let (mut adv, mut ret) = (vec![0f32; envs * horizon], vec![0f32; envs * horizon]);
        for e in 0..envs {
            let mut start = 0;
            for t in 0..horizon {
                let cut = t + 1 == horizon && !dones[e][t];
                if dones[e][t] || cut {
                    let mut r = rewards[e][start..=t].to_vec();
                    if cut {
                        *r.last_mut().expect("one step at least") += cfg.gamma * bootstrap[e];
                    }
                    let (a, g) = gae(&r, &values[e][start..=t], cfg.gamma, cfg.lambda)?;
                    for (i, s) in (start..=t).enumerate() {
                        adv[s * envs + e] = a[i];
                        ret[s * envs + e] = g[i];
                    }
                    start = t + 1;
                }
            }
        }
        // Whitened advantages, as is usual for PPO.
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
        for _ in 0..cfg.epochs {
            let order = rng.permutation(rows);
            for chunk in order.chunks(cfg.minibatch) {
                let idx = Tensor::new(chunk, &dev)?;
                let o = obs.index_select(&idx, 0)?;
                let logp_all = candle_nn::ops::log_softmax(&policy.forward(&o)?, D::Minus1)?;
                let logp = logp_all.gather(&actions.index_select(&idx, 0)?, 1)?.squeeze(1)?;
                let pi = ppo_loss(&logp, &logp_old.index_select(&idx, 0)?, &adv.index_select(&idx, 0)?, None, clip)?;
                let v = value_loss(&value.forward(&o)?.squeeze(1)?, &ret.index_select(&idx, 0)?, None)?;
                opt.backward_step(&(pi + (v * 0.5)?)?)?;
            }
        }
    }
    Ok(lengths)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upright and at rest with no net force is an equilibrium (pushing left then right returns near it), and a
    /// pole tilted right falls right when nothing holds it: the sign of gravity's torque.
    #[test]
    fn the_dynamics_have_the_right_signs() {
        let mut env = CartPole { state: [0.0; 4], steps: 0, max_steps: 100, done: false };
        env.step(true);
        // Pushing the cart right accelerates it right and tips the pole left (θ̇ < 0).
        let [_, v, _, omega] = env.observation();
        assert!(v > 0.0 && omega < 0.0, "{:?}", env.observation());
        let mut tilted = CartPole { state: [0.0, 0.0, 0.05, 0.0], steps: 0, max_steps: 1000, done: false };
        // Alternating pushes cancel the force on average; gravity tips the pole further right.
        let mut right = false;
        while !tilted.is_done() {
            tilted.step(right);
            right = !right;
        }
        assert!(tilted.observation()[2] > ANGLE_LIMIT, "fell to the right: {:?}", tilted.observation());
        assert!(tilted.steps() < 100);
    }

    /// A random policy keeps the pole up for about twenty steps; the episodes and their starts are seeded.
    #[test]
    fn random_play_fails_quickly_and_is_reproducible() {
        let mut rng = Rng::new(3);
        let mut lengths = vec![];
        for _ in 0..200 {
            let mut env = CartPole::new(500, &mut rng);
            while !env.is_done() {
                env.step(rng.uniform() < 0.5);
            }
            lengths.push(env.steps());
        }
        let mean = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
        assert!((10.0..40.0).contains(&mean), "mean episode under random play: {mean}");
        let (mut a, mut b) = (Rng::new(8), Rng::new(8));
        assert_eq!(CartPole::new(10, &mut a), CartPole::new(10, &mut b));
        let mut over = CartPole::new(1, &mut a);
        assert_eq!((over.step(true), over.is_done(), over.step(true)), (1.0, true, 0.0));
    }
}
