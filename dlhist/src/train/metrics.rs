//! Metrics: how good is a prediction?

use candle_core::{DType, Tensor, D};

use crate::{Error, Result};

/// Fraction of rows of `logits` (`[N, C]`, any scores) whose arg-max equals `targets` (`[N]` class ids).
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let logits = Tensor::new(&[[2f32, 1.], [0., 3.], [5., 4.]], &dev)?;
/// let y = Tensor::new(&[0u32, 1, 1], &dev)?;
/// assert!((dlhist::train::accuracy(&logits, &y)? - 2.0 / 3.0).abs() < 1e-9);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn accuracy(logits: &Tensor, targets: &Tensor) -> Result<f64> {
    let (n, _) = logits
        .dims2()
        .map_err(|_| Error::Invalid(format!("accuracy expects logits [N, C]; got {:?}", logits.dims())))?;
    if targets.dims() != [n] {
        return Err(Error::Invalid(format!(
            "accuracy: targets must be [N] = [{n}] class ids to match logits {:?}; got {:?}",
            logits.dims(),
            targets.dims()
        )));
    }
    if n == 0 {
        return Err(Error::Invalid("accuracy of an empty batch is undefined".into()));
    }
    let pred = logits.argmax(D::Minus1)?.to_dtype(DType::U32)?;
    let correct = pred.eq(&targets.to_dtype(DType::U32)?)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    Ok(f64::from(correct) / n as f64)
}

/// Number of correct arg-max predictions (for accumulating accuracy over batches).
pub fn correct_count(logits: &Tensor, targets: &Tensor) -> Result<usize> {
    let n = targets.dims().first().copied().unwrap_or(0);
    if n == 0 {
        return Ok(0);
    }
    Ok((accuracy(logits, targets)? * n as f64).round() as usize)
}

/// Mean squared error between two tensors of the same shape.
pub fn mean_squared_error(pred: &Tensor, target: &Tensor) -> Result<f64> {
    if pred.dims() != target.dims() {
        return Err(Error::Invalid(format!(
            "mean_squared_error: shapes differ, prediction {:?} vs target {:?}",
            pred.dims(),
            target.dims()
        )));
    }
    Ok(f64::from((pred - target)?.sqr()?.mean_all()?.to_dtype(DType::F32)?.to_scalar::<f32>()?))
}

/// Fraction of exact zeros in a tensor (activation sparsity, as measured for ReLU networks).
pub fn sparsity(t: &Tensor) -> Result<f64> {
    let n = t.elem_count();
    if n == 0 {
        return Err(Error::Invalid("sparsity of an empty tensor is undefined".into()));
    }
    let zeros = t.eq(0.0)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    Ok(f64::from(zeros) / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn accuracy_counts_argmax_matches() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[0.1f32, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6], [0.3, 0.4, 0.3]], &dev)?;
        let y = Tensor::new(&[1u32, 0, 0, 1], &dev)?;
        assert_eq!(accuracy(&logits, &y)?, 0.75);
        assert_eq!(correct_count(&logits, &y)?, 3);
        let y64 = Tensor::new(&[1i64, 0, 2, 1], &dev)?;
        assert_eq!(accuracy(&logits, &y64)?, 1.0);
        Ok(())
    }

    #[test]
    fn shape_errors_name_the_shapes() {
        let dev = Device::Cpu;
        let logits = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
        let y = Tensor::zeros(5, DType::U32, &dev).unwrap();
        let e = accuracy(&logits, &y).unwrap_err().to_string();
        assert!(e.contains("[4, 3]") && e.contains("[5]"), "{e}");
        let e = mean_squared_error(&logits, &y).unwrap_err().to_string();
        assert!(e.contains("[4, 3]") && e.contains("[5]"), "{e}");
    }

    #[test]
    fn mse_and_sparsity() -> Result<()> {
        let dev = Device::Cpu;
        let a = Tensor::new(&[1f32, 2., 3., 0.], &dev)?;
        let b = Tensor::new(&[1f32, 0., 3., 0.], &dev)?;
        assert_eq!(mean_squared_error(&a, &b)?, 1.0);
        assert_eq!(sparsity(&a)?, 0.25);
        assert_eq!(sparsity(&b)?, 0.5);
        Ok(())
    }
}
