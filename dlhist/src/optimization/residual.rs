//! # Residual connections
//!
//! K. He, X. Zhang, S. Ren and J. Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
//! <https://arxiv.org/abs/1512.03385>
//!
//! Instead of asking a stack of layers to fit a mapping `H(x)` directly, let it fit the residual
//! `F(x) = H(x) − x` and add the input back (the paper's equation 1, with its two-layer basic block):
//!
//! ```text
//! y = σ( x + W₂ σ(W₁ x) )          (plain block:  y = σ( W₂ σ(W₁ x) ))
//! ```
//!
//! If the identity is already close to optimal the block only has to push `W₂` towards zero, and the
//! gradient reaches early layers through the `+ x` path undiminished: `∂y/∂x = σ'·(I + ∂F/∂x)`, so even when
//! `∂F/∂x` is small the error signal passes. Depth stops hurting. [`crate::optimization::DeepMlp`] stacks
//! these blocks for the notebook's experiments.

use candle_core::{Result, Tensor};

/// The paper's two-layer basic block around any pair of layers `L` (linear, linear + norm, convolutions...):
/// `σ(x + second(σ(first(x))))`, or `σ(second(σ(first(x))))` when `residual` is off (the "plain" network the
/// paper compares against, with exactly the same parameters).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::optimization::ResidualBlock;
/// let dev = Device::Cpu;
/// // With both layers mapping everything to 0, a residual block passes σ(x) through; a plain one loses x.
/// let zero = |_: &(), x: &Tensor| x.zeros_like();
/// let relu = |z: &Tensor| z.relu();
/// let x = Tensor::new(&[[1f32, -2., 3.]], &dev)?;
/// let res = ResidualBlock { first: (), second: (), residual: true }.forward_with(&x, zero, relu)?;
/// let plain = ResidualBlock { first: (), second: (), residual: false }.forward_with(&x, zero, relu)?;
/// assert_eq!(res.to_vec2::<f32>()?, vec![vec![1., 0., 3.]]);
/// assert_eq!(plain.to_vec2::<f32>()?, vec![vec![0., 0., 0.]]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ResidualBlock<L> {
    /// `W₁` (with whatever else the network puts before the activation, e.g. a norm).
    pub first: L,
    /// `W₂`.
    pub second: L,
    /// Add the block's input back (He et al.), or not (a plain block).
    pub residual: bool,
}

impl<L> ResidualBlock<L> {
    /// The block's output for `x`: `layer(l, x)` applies one of the two layers, `act` the non-linearity
    /// (the network's activation, and dropout if it uses it).
    pub fn forward_with(
        &self,
        x: &Tensor,
        layer: impl Fn(&L, &Tensor) -> Result<Tensor>,
        act: impl Fn(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let inner = act(&layer(&self.first, x)?)?;
        let f = layer(&self.second, &inner)?; // F(x) = W₂ σ(W₁ x)
                                              // The only difference between the two kinds of network is this addition: the shortcut.
        let pre = if self.residual { (x + f)? } else { f };
        act(&pre)
    }
}
