//! The max-norm constraint: after every update, each unit's vector of incoming weights is pulled back into a ball.
//!
//! N. Srivastava, G. Hinton, A. Krizhevsky, I. Sutskever and R. Salakhutdinov, "Dropout: A Simple Way to Prevent
//! Neural Networks from Overfitting", JMLR 15(56), 2014, <https://jmlr.org/papers/v15/srivastava14a.html>, which
//! trains its dropout networks with it:
//!
//! ```text
//! ‖w_i‖₂ ≤ c                      for every unit i, w_i its incoming weights (row i of a [out, in] matrix)
//! w_i ← w_i · min(1, c / ‖w_i‖₂)   the projection back onto the constraint, applied after each optimizer step
//! ```
//!
//! The paper's argument: with the weights bounded, the learning rate can be large without the weights blowing
//! up, and the noise dropout adds lets such large steps explore. Unlike weight decay, the constraint does nothing
//! to a unit whose weights are inside the ball.

use candle_core::{DType, Var};

use crate::{Error, Result};

/// Projects every row of the `[out, in]` weight matrix `weight` onto the ball of radius `c` (rows already inside are
/// left alone); returns how many rows were shortened. Call it after each optimizer step, on the weight matrices
/// (not the biases) of the layers to constrain.
///
/// ```
/// use candle_core::{Device, Var};
/// let w = Var::new(&[[3f32, 4.0], [0.3, 0.4]], &Device::Cpu)?;
/// // The first row has norm 5 and is scaled to norm 2; the second (norm 0.5) is inside.
/// assert_eq!(dlhist::optim::max_norm(&w, 2.0)?, 1);
/// assert_eq!(w.to_vec2::<f32>()?, [[1.2, 1.6], [0.3, 0.4]]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn max_norm(weight: &Var, c: f64) -> Result<usize> {
    if weight.rank() != 2 {
        return Err(Error::Invalid(format!(
            "max_norm constrains the rows of a [out, in] weight matrix; got a tensor of shape {:?}",
            weight.dims()
        )));
    }
    if !(c > 0.0 && c.is_finite()) {
        return Err(Error::Invalid(format!("max_norm needs a positive, finite radius c; got {c}")));
    }
    let norms = weight.sqr()?.sum_keepdim(1)?.sqrt()?;
    // min(1, c / ‖w_i‖): a row of zeros gives c / 0 = inf, and the minimum keeps it at 1.
    let scale = (norms.recip()? * c)?.clamp(0.0, 1.0)?;
    let shortened = scale.lt(1.0)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()? as usize;
    if shortened > 0 {
        weight.set(&weight.broadcast_mul(&scale)?)?;
    }
    Ok(shortened)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn rows_end_inside_the_ball_and_keep_their_direction() -> Result<()> {
        let dev = Device::Cpu;
        let start = crate::rng::Rng::new(4).normal_tensor((6, 10), 0.0, 1.0, &dev)?;
        for dtype in [DType::F32, DType::F64] {
            let w = Var::from_tensor(&start.to_dtype(dtype)?)?;
            let before = w.to_dtype(DType::F64)?.to_vec2::<f64>()?;
            let c = 2.5;
            let shortened = max_norm(&w, c)?;
            let after = w.to_dtype(DType::F64)?.to_vec2::<f64>()?;
            let mut expected = 0;
            for (b, a) in before.iter().zip(&after) {
                let nb = b.iter().map(|v| v * v).sum::<f64>().sqrt();
                let na = a.iter().map(|v| v * v).sum::<f64>().sqrt();
                if nb > c {
                    expected += 1;
                    assert!((na - c).abs() < 1e-5, "a long row ends at norm {na}, not {c}");
                } else {
                    assert_eq!(a, b, "a row inside the ball must not change");
                }
                // Same direction: a = k b with k = na / nb.
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y * na / nb).abs() < 1e-5);
                }
            }
            assert_eq!(shortened, expected);
            assert!(expected > 0 && expected < 6, "the test should shorten some rows and keep others");
        }
        Ok(())
    }

    #[test]
    fn zero_rows_and_bad_input() -> Result<()> {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::zeros((2, 3), DType::F32, &dev)?)?;
        assert_eq!(max_norm(&w, 1.0)?, 0);
        assert_eq!(w.to_vec2::<f32>()?, [[0.0; 3]; 2]);
        let bias = Var::zeros(3, DType::F32, &dev)?;
        assert!(max_norm(&bias, 1.0).unwrap_err().to_string().contains("[out, in]"));
        assert!(max_norm(&w, 0.0).unwrap_err().to_string().contains("positive"));
        Ok(())
    }
}
