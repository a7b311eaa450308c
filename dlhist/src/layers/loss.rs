//! Softmax cross-entropy, the classification loss of every classifier in the history.
//!
//! For logits `z [N, C]` and class ids `y [N]`, the mean over the batch of the negative log-probability the
//! softmax gives the right class:
//!
//! ```text
//! L = −1/N Σ_n log softmax(z_n)[y_n] = 1/N Σ_n ( log Σ_c e^{z_nc} − z_{n,y_n} )
//! ∂L/∂z_nc = (softmax(z_n)_c − [c = y_n]) / N
//! ```

use candle_core::{DType, Result, Tensor, D};

use crate::fast;

/// Mean softmax cross-entropy of logits `[N, C]` against class ids `[N]` (any integer dtype).
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let logits = Tensor::new(&[[0f32, 0.], [2f32.ln(), 0.]], &dev)?;
/// let y = Tensor::new(&[1u32, 0], &dev)?;
/// // Row 0: −log ½; row 1: −log ⅔.
/// let l = dlhist::layers::cross_entropy(&logits, &y)?.to_scalar::<f32>()?;
/// assert!((l - (2f32.ln() + 1.5f32.ln()) / 2.0).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, _) = logits.dims2()?;
    if targets.dims() != [n] {
        candle_core::bail!("cross_entropy: logits {:?} need class ids [{n}], got {:?}", logits.dims(), targets.dims())
    }
    token_cross_entropy(logits, targets)
}

/// [`cross_entropy`] over every position of a sequence model's logits `[.., C]` (e.g. `[B, T, V]`) against class
/// ids of the leading shape (`[B, T]`), averaged over all positions: the language models' loss.
///
/// The fused kernel takes the logits in their own shape; flattening them to `[B·T, V]` first would put a reshape
/// in the graph, whose backward candle runs as a zero-filled accumulator and an add over all the logits (9 MB a
/// step for the BPE GPT of the benchmarks).
///
/// ```
/// use dlhist::prelude::*;
/// let logits = Tensor::new(&[[[0f32, 0.], [2f32.ln(), 0.]]], &Device::Cpu)?; // [1, 2, 2]
/// let y = Tensor::new(&[[1u32, 0]], &Device::Cpu)?;
/// let l = dlhist::layers::token_cross_entropy(&logits, &y)?.to_scalar::<f32>()?;
/// assert!((l - (2f32.ln() + 1.5f32.ln()) / 2.0).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn token_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (lead, c) = match logits.dims().split_last() {
        Some((&c, lead)) if !lead.is_empty() => (lead, c),
        _ => candle_core::bail!(
            "cross_entropy: logits must be [.., C] with at least one leading dimension; got {:?}",
            logits.dims()
        ),
    };
    if targets.dims() != lead {
        candle_core::bail!(
            "cross_entropy: logits {:?} need class ids {lead:?}, got {:?}",
            logits.dims(),
            targets.dims()
        )
    }
    let n: usize = lead.iter().product();
    let flat = targets.flatten_all()?;
    if n > 0 && targets.device().is_cpu() && fast::applies(&[logits]) {
        // Fused (crate::fast::softmax_cross_entropy): one pass per row, and the closed-form gradient above.
        return fast::softmax_cross_entropy(logits, &flat);
    }
    // Plain: log-softmax, pick each row's class, average, negate.
    let logits = logits.reshape((n, c))?;
    let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let picked = log_p.gather(&flat.to_dtype(DType::U32)?.unsqueeze(1)?, 1)?;
    picked.mean_all()?.neg()
}

/// `softplus(x) = log(1 + eˣ)`, written as `max(x, 0) + log(1 + e^−|x|)` so that no exponential overflows: the
/// building block of log-probabilities under a sigmoid (`log σ(x) = −softplus(−x)`).
///
/// ```
/// use dlhist::prelude::*;
/// let x = Tensor::new(&[-100f32, 0.0, 100.0], &Device::Cpu)?;
/// let y = dlhist::layers::softplus(&x)?.to_vec1::<f32>()?;
/// assert!(y[0] < 1e-30 && (y[1] - 2f32.ln()).abs() < 1e-7 && y[2] == 100.0);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// `log p(x | ℓ)` of data `x` `[.., P]` (binary, or grey levels in `[0, 1]`) under independent Bernoulli variables
/// with probabilities `σ(ℓ)`, summed over the last dimension: `Σ x ℓ − softplus(ℓ)`, shape `[..]`. Minus PyTorch's
/// `binary_cross_entropy_with_logits(ℓ, x, reduction="none").sum(-1)`; the likelihood of the VAE notebook's pixels.
///
/// ```
/// use dlhist::prelude::*;
/// let logits = Tensor::new(&[[0f32, 3f32.ln()]], &Device::Cpu)?; // σ = ½ and ¾
/// let x = Tensor::new(&[[1f32, 0.]], &Device::Cpu)?;
/// let ll = dlhist::layers::bernoulli_log_likelihood(&logits, &x)?.to_vec1::<f32>()?;
/// assert!((ll[0] - (0.5f32.ln() + 0.25f32.ln())).abs() < 1e-6); // log ½ + log(1 − ¾)
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn bernoulli_log_likelihood(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    if logits.dims() != x.dims() {
        candle_core::bail!(
            "bernoulli_log_likelihood: logits {:?} and data {:?} differ in shape",
            logits.dims(),
            x.dims()
        )
    }
    if logits.rank() > 0 && fast::applies(&[logits, x]) {
        // Fused (crate::fast::bernoulli_log_likelihood): one pass per row, and the gradient x − σ(ℓ) directly.
        return fast::bernoulli_log_likelihood(logits, x);
    }
    // log σ(ℓ) = ℓ − softplus(ℓ) and log(1 − σ(ℓ)) = −softplus(ℓ), so x log σ(ℓ) + (1 − x) log(1 − σ(ℓ)) is
    // x ℓ − softplus(ℓ): no σ is formed, and softplus cannot overflow.
    (x.mul(logits)? - softplus(logits)?)?.sum(D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast::testing::{assert_same_values_and_grads, strided};
    use candle_core::Var;

    #[test]
    fn token_cross_entropy_takes_sequences_whole() -> crate::Result<()> {
        let dev = candle_core::Device::Cpu;
        let mut rng = crate::rng::Rng::new(12);
        let (b, t, v) = (3, 5, 11);
        let z = Var::from_tensor(&rng.normal_tensor((b, t, v), 0.0, 2.0, &dev)?)?;
        let ids: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
        let y = Tensor::from_vec(ids, (b, t), &dev)?;
        let fused = token_cross_entropy(z.as_tensor(), &y)?;
        let plain = fast::plain(|| token_cross_entropy(z.as_tensor(), &y))?;
        assert_same_values_and_grads(&(&fused * 3.0)?, &(&plain * 3.0)?, &[(&z, "dz")], "[3, 5, 11]")?;
        // The same numbers as the flattened [B·T, V] form, bit for bit.
        let flat = cross_entropy(&z.as_tensor().reshape((b * t, v))?, &y.flatten_all()?)?;
        assert_eq!(fused.to_scalar::<f32>()?.to_bits(), flat.to_scalar::<f32>()?.to_bits());
        let e = token_cross_entropy(z.as_tensor(), &y.narrow(1, 0, 4)?).unwrap_err().to_string();
        assert!(e.contains("[3, 5]") && e.contains("[3, 4]"), "{e}");
        assert!(token_cross_entropy(&Tensor::zeros(4, DType::F32, &dev)?, &y).is_err());
        Ok(())
    }

    #[test]
    fn bernoulli_fused_and_plain_paths_agree() -> crate::Result<()> {
        let mut rng = crate::rng::Rng::new(5);
        for (shape, scale, non_contiguous) in
            [(vec![100, 784], 3.0, false), (vec![6, 5], 40.0, true), (vec![2, 3, 7], 1.0, false)]
        {
            let dev = candle_core::Device::Cpu;
            let l = Var::from_tensor(&rng.normal_tensor(shape.as_slice(), 0.0, scale, &dev)?)?;
            let x = Var::from_tensor(&rng.uniform_tensor(shape.as_slice(), 0.0, 1.0, &dev)?)?;
            let li = if non_contiguous { strided(l.as_tensor())? } else { l.as_tensor().clone() };
            let fused = bernoulli_log_likelihood(&li, x.as_tensor())?;
            let plain = fast::plain(|| bernoulli_log_likelihood(&li, x.as_tensor()))?;
            let what = format!("{shape:?} scale {scale}");
            assert_same_values_and_grads(&fused, &plain, &[(&l, "d logits"), (&x, "d data")], &what)?;
        }
        let z = Tensor::zeros((2, 3), DType::F32, &candle_core::Device::Cpu)?;
        assert!(bernoulli_log_likelihood(&z, &z.t()?).is_err());
        Ok(())
    }

    #[test]
    fn fused_and_plain_paths_agree_and_match_candle() -> crate::Result<()> {
        let mut rng = crate::rng::Rng::new(9);
        for (n, c, scale, non_contiguous) in
            [(100, 10, 1.0, false), (7, 3, 5.0, true), (1, 1, 1.0, false), (768, 65, 3.0, true), (3, 2, 100.0, false)]
        {
            let z = Var::from_tensor(&rng.normal_tensor((n, c), 0.0, scale, &candle_core::Device::Cpu)?)?;
            let ids: Vec<u32> = (0..n).map(|_| rng.below(c) as u32).collect();
            let y = Tensor::from_vec(ids, n, &candle_core::Device::Cpu)?;
            let zi = if non_contiguous { strided(z.as_tensor())? } else { z.as_tensor().clone() };
            let (fused, plain) = (cross_entropy(&zi, &y)?, fast::plain(|| cross_entropy(&zi, &y))?);
            let what = format!("n {n} c {c} scale {scale}");
            // Scaled, so the incoming gradient is not 1.
            assert_same_values_and_grads(&(&fused * 3.0)?, &(&plain * 3.0)?, &[(&z, "dz")], &what)?;
            let theirs = candle_nn::loss::cross_entropy(&zi, &y)?;
            crate::fast::testing::assert_close(&plain, &theirs, &format!("{what}: candle-nn"))?;
        }
        assert!(cross_entropy(
            &Tensor::zeros((2, 3), DType::F32, &candle_core::Device::Cpu)?,
            &Tensor::new(&[0u32], &candle_core::Device::Cpu)?
        )
        .is_err());
        Ok(())
    }
}
