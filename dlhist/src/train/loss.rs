//! The losses [`super::fit`] trains with: a trait, so each milestone's loss lives with its milestone (U-Net's
//! weighted cross-entropy in [`crate::deep_neural_networks::unet`]; the sequence, VAE, GAN and diffusion losses
//! with theirs), and the three general ones here.

use std::sync::Arc;

use candle_core::Tensor;

use crate::{Error, Result};

/// A training loss: a scalar tensor from a model's output and the batch's targets.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::train::{FitConfig, Loss};
///
/// /// Mean absolute error, a loss of our own.
/// #[derive(Debug)]
/// struct L1;
/// impl Loss for L1 {
///     fn compute(&self, output: &Tensor, target: &Tensor) -> dlhist::Result<Tensor> {
///         Ok((output - target)?.abs()?.mean_all()?)
///     }
/// }
/// let out = Tensor::new(&[1f32, 3.], &Device::Cpu)?;
/// assert_eq!(L1.compute(&out, &Tensor::new(&[0f32, 0.], &Device::Cpu)?)?.to_scalar::<f32>()?, 2.0);
/// let cfg = FitConfig { loss: std::sync::Arc::new(L1), ..Default::default() };
/// assert!(FitConfig { loss: dlhist::train::Mse.into(), ..Default::default() }.loss.compute(&out, &out).is_ok());
/// assert!(!cfg.loss.is_classification());
/// # Ok::<(), dlhist::Error>(())
/// ```
pub trait Loss: std::fmt::Debug + Send + Sync {
    /// The scalar loss of `output` against `target`.
    fn compute(&self, output: &Tensor, target: &Tensor) -> Result<Tensor>;

    /// Whether outputs are class logits against class ids, so [`super::fit`] and [`super::evaluate`] also count
    /// correct predictions (accuracy).
    fn is_classification(&self) -> bool {
        false
    }
}

/// Softmax cross-entropy on logits `[N, C]` against class ids `[N]` ([`crate::layers::cross_entropy`]);
/// accuracy is tracked too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrossEntropy;

impl Loss for CrossEntropy {
    fn compute(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        if output.rank() != 2 || target.dims() != [output.dims()[0]] {
            return Err(Error::Invalid(format!(
                "cross-entropy expects logits [N, C] and class ids [N]; got logits {:?} and targets {:?}",
                output.dims(),
                target.dims()
            )));
        }
        Ok(crate::layers::cross_entropy(output, target)?)
    }

    fn is_classification(&self) -> bool {
        true
    }
}

/// The next-token cross-entropy of a language model: logits `[B, T, V]` against token ids `[B, T]`, averaged
/// over all `B·T` positions (nats per token). Unlike [`crate::layers::SequenceCrossEntropy`] nothing is padding:
/// every id, 0 included, is a real token.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::train::{Loss, TokenCrossEntropy};
/// let dev = Device::Cpu;
/// let logits = Tensor::zeros((2, 3, 5), DType::F32, &dev)?;            // uniform over 5 tokens
/// let ids = Tensor::zeros((2, 3), DType::U32, &dev)?;
/// let l = TokenCrossEntropy.compute(&logits, &ids)?.to_scalar::<f32>()?;
/// assert!((l - 5f32.ln()).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCrossEntropy;

impl Loss for TokenCrossEntropy {
    fn compute(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        match (output.dims(), target.dims()) {
            (&[b, t, _], &[tb, tt]) if b == tb && t == tt => Ok(crate::layers::token_cross_entropy(output, target)?),
            _ => Err(Error::Invalid(format!(
                "token cross-entropy expects logits [B, T, V] and token ids [B, T]; got logits {:?} and targets {:?}",
                output.dims(),
                target.dims()
            ))),
        }
    }
}

/// Mean squared error against targets of the output's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mse;

impl Loss for Mse {
    fn compute(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        elementwise("mean squared error", output, target, candle_nn::loss::mse)
    }
}

/// Sigmoid binary cross-entropy on logits against 0/1 targets of the same shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BinaryCrossEntropyWithLogits;

impl Loss for BinaryCrossEntropyWithLogits {
    fn compute(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        elementwise("binary cross-entropy", output, target, candle_nn::loss::binary_cross_entropy_with_logit)
    }
}

/// A loss between an output and a target of the same shape (the target cast to the output's dtype).
fn elementwise(
    what: &str,
    output: &Tensor,
    target: &Tensor,
    loss: fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
) -> Result<Tensor> {
    if output.dims() != target.dims() {
        return Err(Error::Invalid(format!(
            "{what} expects output and target of the same shape; got {:?} and {:?}",
            output.dims(),
            target.dims()
        )));
    }
    Ok(loss(output, &target.to_dtype(output.dtype())?)?)
}

/// The loss [`super::FitConfig`] holds: shared, so configurations stay cheap to clone. Every loss in dlhist
/// converts into it with `.into()`: `FitConfig { loss: Mse.into(), .. }`.
pub type SharedLoss = Arc<dyn Loss>;

/// `impl From<$t> for SharedLoss`, so a loss goes into a [`super::FitConfig`] as `loss: $t.into()`.
#[macro_export]
#[doc(hidden)]
macro_rules! shared_loss_from {
    ($($t:ty),*) => {$(
        impl From<$t> for $crate::train::SharedLoss {
            fn from(loss: $t) -> Self {
                std::sync::Arc::new(loss)
            }
        }
    )*};
}

shared_loss_from!(CrossEntropy, TokenCrossEntropy, Mse, BinaryCrossEntropyWithLogits);

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn shape_errors_name_shapes() {
        let dev = crate::device::test_device();
        let out = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
        let y = Tensor::zeros((4, 1), DType::F32, &dev).unwrap();
        let e = CrossEntropy.compute(&out, &y).unwrap_err().to_string();
        assert!(e.contains("[4, 3]") && e.contains("[4, 1]"), "{e}");
        let e = Mse.compute(&out, &y).unwrap_err().to_string();
        assert!(e.contains("[4, 3]") && e.contains("[4, 1]"), "{e}");
        let e = BinaryCrossEntropyWithLogits.compute(&out, &y).unwrap_err().to_string();
        assert!(e.contains("[4, 3]") && e.contains("[4, 1]"), "{e}");
    }

    #[test]
    fn values() -> Result<()> {
        let dev = crate::device::test_device();
        let out = Tensor::new(&[[0f32, 0.]], &dev)?;
        let l = CrossEntropy.compute(&out, &Tensor::new(&[1u32], &dev)?)?.to_scalar::<f32>()?;
        assert!((l - 2f32.ln()).abs() < 1e-6);
        assert_eq!(Mse.compute(&out, &Tensor::new(&[[1f32, 3.]], &dev)?)?.to_scalar::<f32>()?, 5.0);
        let b = BinaryCrossEntropyWithLogits.compute(&out, &Tensor::new(&[[1f32, 0.]], &dev)?)?.to_scalar::<f32>()?;
        assert!((b - 2f32.ln()).abs() < 1e-6);
        assert!(CrossEntropy.is_classification() && !Mse.is_classification());
        Ok(())
    }
}
