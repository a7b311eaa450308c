//! Additive attention: a learned alignment score between one query and every position of a memory.
//!
//! D. Bahdanau, K. Cho and Y. Bengio, "Neural Machine Translation by Jointly Learning to Align and Translate",
//! ICLR 2015. <https://arxiv.org/abs/1409.0473>, section 3.1 and appendix A.1.2:
//!
//! ```text
//! e_ij = vᵀ tanh(W s_{i−1} + U h_j)        the score of memory position j for query s_{i−1}
//! α_ij = exp(e_ij) / Σ_k exp(e_ik)          over the real (unpadded) positions k only
//! c_i  = Σ_j α_ij h_j                       the context: an expected memory vector
//! ```
//!
//! The score is a one-hidden-layer network of the query and the key, hence "additive" (as opposed to the dot
//! product `s·h` of later attention). `U h_j` does not depend on `i`: [`AdditiveAttention::project_keys`]
//! computes it once per memory and every query reuses it.

use candle_core::{Module, Result, Tensor, D};
use candle_nn::{Init, Linear, VarBuilder};

use crate::fast;

/// Additive (Bahdanau) attention from queries of `query_dim` features over keys of `key_dim` features, through
/// an alignment layer of `align_dim` units. Parameters: `{path}.w` `[align, query]`, `{path}.u`
/// `[align, key]` (no biases, as in the paper's appendix A.1.2), `{path}.v` `[align]`.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::layers::AdditiveAttention;
/// let dev = Device::Cpu;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let att = AdditiveAttention::new(4, 6, 5, vb)?;
/// let mut rng = Rng::new(1);
/// let memory = rng.normal_tensor((2, 3, 6), 0.0, 1.0, &dev)?; // [B, S, key]
/// let keys = att.project_keys(&memory)?; // U h_j, once per memory
/// let query = rng.normal_tensor((2, 4), 0.0, 1.0, &dev)?; // [B, query]
/// let mask = Tensor::new(&[[1f32, 1., 1.], [1., 1., 0.]], &dev)?; // row 1 has two real positions
/// let (context, weights) = att.attend(&query, &keys, &memory, &mask)?;
/// assert_eq!((context.dims(), weights.dims()), (&[2, 6][..], &[2, 3][..]));
/// let w = weights.to_vec2::<f32>()?;
/// assert!((w[0].iter().sum::<f32>() - 1.0).abs() < 1e-6 && w[1][2] == 0.0);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct AdditiveAttention {
    w: Linear,
    u: Linear,
    v: Tensor,
    query_dim: usize,
    key_dim: usize,
}

impl AdditiveAttention {
    /// The layer, its parameters under `vb`: `W` and `U` with PyTorch's linear init `U(−1/√fan_in, 1/√fan_in)`,
    /// `v` likewise over the `align_dim` units.
    pub fn new(query_dim: usize, key_dim: usize, align_dim: usize, vb: VarBuilder) -> Result<Self> {
        let uniform = |fan_in: usize| {
            let k = 1.0 / (fan_in.max(1) as f64).sqrt();
            Init::Uniform { lo: -k, up: k }
        };
        let w = vb.get_with_hints((align_dim, query_dim), "w", uniform(query_dim))?;
        let u = vb.get_with_hints((align_dim, key_dim), "u", uniform(key_dim))?;
        let v = vb.get_with_hints(align_dim, "v", uniform(align_dim))?;
        Ok(AdditiveAttention { w: Linear::new(w, None), u: Linear::new(u, None), v, query_dim, key_dim })
    }

    /// `U h_j` for every memory position: `[B, S, key]` to `[B, S, align]`. It depends on the memory alone, so a
    /// decoder computes it once per sentence, not once per output step (appendix A.1.2 of the paper: "can be
    /// pre-computed").
    pub fn project_keys(&self, memory: &Tensor) -> Result<Tensor> {
        match memory.dims() {
            [_, _, k] if *k == self.key_dim => self.u.forward(memory),
            d => candle_core::bail!(
                "AdditiveAttention over keys of {} features expects a memory [B, S, {}]; got {d:?}",
                self.key_dim,
                self.key_dim
            ),
        }
    }

    /// The scores `e_ij = vᵀ tanh(W s + U h_j)` of one query per row (`[B, query]`) against projected keys
    /// (`[B, S, align]`, from [`AdditiveAttention::project_keys`]): `[B, S]`, before masking.
    pub fn scores(&self, query: &Tensor, keys: &Tensor) -> Result<Tensor> {
        let (b, s, a) = keys.dims3()?;
        if query.dims() != [b, self.query_dim] {
            candle_core::bail!(
                "AdditiveAttention: the query must be [B, {}] = [{b}, {}] for keys {:?}; got {:?}",
                self.query_dim,
                self.query_dim,
                keys.dims(),
                query.dims()
            )
        }
        let wq = self.w.forward(query)?; // W s_{i−1}, [B, align]
        if fast::applies(&[keys, &wq, &self.v]) {
            // Fused (crate::fast::additive_scores): the add, tanh and product below in one pass over [B, S, align],
            // and a backward pass that recomputes the tanh instead of storing it.
            return fast::additive_scores(keys, &wq, &self.v);
        }
        // Plain: W s_{i−1} broadcast over the S positions, [B, 1, align] + [B, S, align].
        let hidden = keys.broadcast_add(&wq.unsqueeze(1)?)?.tanh()?;
        // vᵀ tanh(·): one matrix product [B·S, align] × [align, 1].
        hidden.reshape((b * s, a))?.matmul(&self.v.unsqueeze(1)?)?.reshape((b, s))
    }

    /// One attention step: the context `c = Σ_j α_j h_j` (`[B, value]`) and the weights `α` (`[B, S]`) of
    /// `query` (`[B, query]`) over `values` (`[B, S, value]`, usually the memory the keys were projected from),
    /// with `mask` (`[B, S]`, 1 real / 0 padding, the values' dtype) keeping padded positions out of the
    /// softmax: their weight is exactly 0, so padding never changes the context.
    pub fn attend(&self, query: &Tensor, keys: &Tensor, values: &Tensor, mask: &Tensor) -> Result<(Tensor, Tensor)> {
        let e = self.scores(query, keys)?;
        if mask.dims() != e.dims() || values.dims().get(..2) != Some(e.dims()) {
            candle_core::bail!(
                "AdditiveAttention: keys {:?}, values {:?} and mask {:?} must agree on [B, S]",
                keys.dims(),
                values.dims(),
                mask.dims()
            )
        }
        let alpha = masked_softmax(&e, mask)?;
        // c_i = Σ_j α_ij h_j as a batched product [B, 1, S] × [B, S, value].
        let context = alpha.unsqueeze(1)?.matmul(&values.contiguous()?)?.squeeze(1)?;
        Ok((context, alpha))
    }
}

/// The softmax of `scores` (`[.., S]`) over the positions where `mask` (same shape, 1 real / 0 padding) is 1;
/// masked positions get weight exactly 0. A row must have at least one real position.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let e = Tensor::new(&[[0f32, 0., 5.]], &dev)?;
/// let w = dlhist::layers::masked_softmax(&e, &Tensor::new(&[[1f32, 1., 0.]], &dev)?)?;
/// assert_eq!(w.to_vec2::<f32>()?, vec![vec![0.5, 0.5, 0.0]]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    if scores.dims() != mask.dims() {
        candle_core::bail!("masked_softmax: scores {:?} and mask {:?} must have one shape", scores.dims(), mask.dims())
    }
    // Padding gets a score 1e9 below the rest: after subtracting the row's maximum (a real position's score),
    // exp underflows to exactly 0 there, so the weights of the real positions are their own softmax.
    let offset = ((mask - 1.0)? * 1e9)?;
    let e = (scores + offset)?;
    let e = e.broadcast_sub(&e.max_keepdim(D::Minus1)?)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use candle_core::DType;

    fn layer() -> (candle_nn::VarMap, AdditiveAttention) {
        layer_on(&crate::device::test_device())
    }

    fn layer_on(dev: &candle_core::Device) -> (candle_nn::VarMap, AdditiveAttention) {
        let (vars, vb) = crate::init::seeded(4, DType::F32, dev);
        let att = AdditiveAttention::new(3, 4, 5, vb).unwrap();
        (vars, att)
    }

    #[test]
    fn scores_follow_the_equation_position_by_position() -> crate::Result<()> {
        let (_vars, att) = layer();
        let dev = crate::device::test_device();
        let mut rng = Rng::new(0);
        let h = rng.normal_tensor((2, 3, 4), 0.0, 1.0, &dev)?;
        let s = rng.normal_tensor((2, 3), 0.0, 1.0, &dev)?;
        let e = att.scores(&s, &att.project_keys(&h)?)?.to_vec2::<f32>()?;
        let (w, u, v) = (att.w.weight().to_vec2::<f32>()?, att.u.weight().to_vec2::<f32>()?, att.v.to_vec1::<f32>()?);
        let (hv, sv) = (h.to_vec3::<f32>()?, s.to_vec2::<f32>()?);
        for b in 0..2 {
            for j in 0..3 {
                let mut want = 0.0f32;
                for (k, vk) in v.iter().enumerate() {
                    let ws: f32 = (0..3).map(|q| w[k][q] * sv[b][q]).sum();
                    let uh: f32 = (0..4).map(|q| u[k][q] * hv[b][j][q]).sum();
                    want += vk * (ws + uh).tanh();
                }
                assert!((e[b][j] - want).abs() < 1e-5, "e[{b}][{j}] = {} but the equation gives {want}", e[b][j]);
            }
        }
        Ok(())
    }

    #[test]
    fn padding_does_not_change_the_context_or_the_weights() -> crate::Result<()> {
        let (_vars, att) = layer();
        let dev = crate::device::test_device();
        let mut rng = Rng::new(1);
        let real = rng.normal_tensor((1, 3, 4), 0.0, 1.0, &dev)?;
        let q = rng.normal_tensor((1, 3), 0.0, 1.0, &dev)?;
        let (c0, a0) = att.attend(&q, &att.project_keys(&real)?, &real, &Tensor::ones((1, 3), DType::F32, &dev)?)?;
        // The same sentence padded with two positions of large garbage.
        let padded = Tensor::cat(&[&real, &(rng.normal_tensor((1, 2, 4), 0.0, 1.0, &dev)? * 100.0)?], 1)?;
        let mask = Tensor::new(&[[1f32, 1., 1., 0., 0.]], &dev)?;
        let (c1, a1) = att.attend(&q, &att.project_keys(&padded)?, &padded, &mask)?;
        let diff = (c0 - &c1)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-6, "padding moved the context by {diff}");
        let a1 = a1.to_vec2::<f32>()?;
        assert_eq!(&a1[0][3..], &[0.0, 0.0]);
        for (x, y) in a0.to_vec2::<f32>()?[0].iter().zip(&a1[0][..3]) {
            assert!((x - y).abs() < 1e-7);
        }
        // Without the mask the garbage does move it: the test can fail.
        let (c2, _) = att.attend(&q, &att.project_keys(&padded)?, &padded, &Tensor::ones((1, 5), DType::F32, &dev)?)?;
        assert!((c1 - c2)?.abs()?.max_all()?.to_scalar::<f32>()? > 1e-2);
        Ok(())
    }

    #[test]
    fn gradients_reach_every_parameter_and_none_reach_padding() -> crate::Result<()> {
        let (vars, att) = layer();
        let dev = crate::device::test_device();
        let mut rng = Rng::new(2);
        let h = candle_core::Var::from_tensor(&rng.normal_tensor((2, 4, 4), 0.0, 1.0, &dev)?)?;
        let q = rng.normal_tensor((2, 3), 0.0, 1.0, &dev)?;
        let mask = Tensor::new(&[[1f32, 1., 1., 1.], [1., 1., 0., 0.]], &dev)?;
        let (c, _) = att.attend(&q, &att.project_keys(&h)?, &h, &mask)?;
        let grads = c.sqr()?.sum_all()?.backward()?;
        for v in vars.all_vars() {
            let g = grads.get(&v).expect("every parameter gets a gradient");
            assert!(g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
        }
        let gh = grads.get(&h).unwrap().to_vec3::<f32>()?;
        assert!(gh[1][2..].iter().flatten().all(|&x| x == 0.0), "padded positions get no gradient");
        assert!(gh[1][..2].iter().flatten().any(|&x| x != 0.0));
        Ok(())
    }

    #[test]
    fn fused_and_plain_paths_agree() -> crate::Result<()> {
        let dev = candle_core::Device::Cpu;
        let (vars, att) = layer_on(&dev);
        let mut rng = Rng::new(5);
        let h = candle_core::Var::from_tensor(&rng.normal_tensor((2, 4, 4), 0.0, 1.0, &dev)?)?;
        let q = candle_core::Var::from_tensor(&rng.normal_tensor((2, 3), 0.0, 1.0, &dev)?)?;
        let mask = Tensor::new(&[[1f32, 1., 1., 1.], [1., 1., 1., 0.]], &dev)?;
        let run = || att.attend(&q, &att.project_keys(&h).unwrap(), &h, &mask).unwrap().0;
        let (fused, plain) = (run(), crate::fast::plain(run));
        crate::fast::testing::assert_paths_agree(&fused, &plain, &vars, &[&h, &q], "additive attention")?;
        Ok(())
    }

    #[test]
    fn shape_errors_name_the_shapes() {
        let (_vars, att) = layer();
        let dev = crate::device::test_device();
        let h = Tensor::zeros((2, 3, 4), DType::F32, &dev).unwrap();
        let keys = att.project_keys(&h).unwrap();
        let msg = att.scores(&Tensor::zeros((2, 7), DType::F32, &dev).unwrap(), &keys).unwrap_err().to_string();
        assert!(msg.contains("[2, 7]"), "{msg}");
        let msg = att.project_keys(&Tensor::zeros((2, 3, 9), DType::F32, &dev).unwrap()).unwrap_err().to_string();
        assert!(msg.contains("[2, 3, 9]"), "{msg}");
        let q = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        let msg = att.attend(&q, &keys, &h, &Tensor::ones((2, 5), DType::F32, &dev).unwrap()).unwrap_err().to_string();
        assert!(msg.contains("[2, 5]"), "{msg}");
    }
}
