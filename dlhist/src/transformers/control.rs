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
