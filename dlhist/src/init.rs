//! Parameter initialization from a seed.
//!
//! candle-nn layers (`linear`, `conv2d`, `embedding`, ...) ask their `VarBuilder` for each parameter
//! together with an *init hint* (`Init::Kaiming{..}` for weights, `Init::Const(0)` or a uniform range for
//! biases). A `VarBuilder` made from a plain `VarMap` samples those hints with candle's unseeded CPU
//! generator, so two runs start from different weights. [`seeded`] gives a `VarBuilder` that honours the
//! same hints but draws from [`Rng`], one named stream per parameter: the weights depend only on the seed
//! and the parameter's path (`"fc1.weight"`), not on the order layers are built.
//!
//! [`Initializer`] names the classic schemes, for overriding the hints or filling tensors directly:
//!
//! | scheme | distribution | paper |
//! | --- | --- | --- |
//! | Xavier/Glorot uniform | U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) | Glorot & Bengio 2010, <https://proceedings.mlr.press/v9/glorot10a.html> |
//! | Xavier/Glorot normal | N(0, gain^2 * 2 / (fan_in + fan_out)) | idem |
//! | Kaiming/He uniform | U(-b, b), b = gain * sqrt(3 / fan_in) | He et al. 2015, <https://arxiv.org/abs/1502.01852> |
//! | Kaiming/He normal | N(0, gain^2 / fan_in) | idem |
//!
//! with gain sqrt(2) for ReLU. Fans follow PyTorch's convention for a weight of shape
//! `[out, in, k...]`: fan_in = in * prod(k), fan_out = out * prod(k).

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};

use crate::rng::Rng;
use crate::{Error, Result};

/// A named initialization scheme.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Initializer {
    /// Every element equal to the value.
    Constant(f64),
    /// Uniform on `[lo, hi)`.
    Uniform {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// Normal with the given mean and standard deviation.
    Normal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        std: f64,
    },
    /// Glorot & Bengio (2010), uniform variant.
    XavierUniform {
        /// Gain (1 for linear/tanh-ish layers).
        gain: f64,
    },
    /// Glorot & Bengio (2010), normal variant.
    XavierNormal {
        /// Gain.
        gain: f64,
    },
    /// He et al. (2015), uniform variant, fan-in mode.
    KaimingUniform {
        /// Gain (sqrt(2) for ReLU).
        gain: f64,
    },
    /// He et al. (2015), normal variant, fan-in mode.
    KaimingNormal {
        /// Gain (sqrt(2) for ReLU).
        gain: f64,
    },
}

/// The gain that keeps activations' variance constant through a ReLU: sqrt(2).
pub const RELU_GAIN: f64 = std::f64::consts::SQRT_2;

/// `(fan_in, fan_out)` of a parameter shape: `[out, in, k...]` for weights; a 1-D shape has both fans
/// equal to its length.
pub fn fans(shape: &Shape) -> (usize, usize) {
    match shape.dims() {
        [] => (1, 1),
        [n] => (*n, *n),
        [out, inp, rest @ ..] => {
            let k: usize = rest.iter().product();
            (inp * k, out * k)
        }
    }
}

impl Initializer {
    /// Samples a tensor of `shape` on `dev` (f32 values, cast to `dtype`) from `rng`.
    ///
    /// ```
    /// use dlhist::init::Initializer;
    /// use dlhist::rng::Rng;
    /// let w = Initializer::XavierUniform { gain: 1.0 }
    ///     .sample((64, 32), candle_core::DType::F32, &candle_core::Device::Cpu, &mut Rng::new(0))?;
    /// let bound = (6.0f32 / 96.0).sqrt();
    /// let max = w.abs()?.max_all()?.to_scalar::<f32>()?;
    /// assert!(max <= bound && max > 0.9 * bound);
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn sample(&self, shape: impl Into<Shape>, dtype: DType, dev: &Device, rng: &mut Rng) -> Result<Tensor> {
        let shape = shape.into();
        let (fan_in, fan_out) = fans(&shape);
        let t = match *self {
            Initializer::Constant(v) => Tensor::full(v as f32, shape, dev)?,
            Initializer::Uniform { lo, hi } => {
                // Written so that NaN bounds are rejected too.
                if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
                    return Err(Error::Invalid(format!("Initializer::Uniform needs lo < hi, got lo={lo}, hi={hi}")));
                }
                rng.uniform_tensor(shape, lo as f32, hi as f32, dev)?
            }
            Initializer::Normal { mean, std } => rng.normal_tensor(shape, mean as f32, std as f32, dev)?,
            Initializer::XavierUniform { gain } => {
                let a = gain * (6.0 / (fan_in + fan_out) as f64).sqrt();
                rng.uniform_tensor(shape, -a as f32, a as f32, dev)?
            }
            Initializer::XavierNormal { gain } => {
                let std = gain * (2.0 / (fan_in + fan_out) as f64).sqrt();
                rng.normal_tensor(shape, 0.0, std as f32, dev)?
            }
            Initializer::KaimingUniform { gain } => {
                // Var[U(-b,b)] = b^2/3 = gain^2/fan_in  =>  b = gain*sqrt(3/fan_in).
                let b = gain * (3.0 / fan_in as f64).sqrt();
                rng.uniform_tensor(shape, -b as f32, b as f32, dev)?
            }
            Initializer::KaimingNormal { gain } => {
                let std = gain / (fan_in as f64).sqrt();
                rng.normal_tensor(shape, 0.0, std as f32, dev)?
            }
        };
        Ok(t.to_dtype(dtype)?)
    }

    /// The scheme candle-nn means by an init hint, so seeded parameters follow the same distributions as
    /// candle's defaults.
    pub fn from_hint(hint: Init, shape: &Shape) -> Initializer {
        match hint {
            Init::Const(v) => Initializer::Constant(v),
            Init::Randn { mean, stdev } => Initializer::Normal { mean, std: stdev },
            Init::Uniform { lo, up } => Initializer::Uniform { lo, hi: up },
            Init::Kaiming { dist, fan, non_linearity } => {
                let (fan_in, fan_out) = fans(shape);
                let fan = match fan {
                    FanInOut::FanIn => fan_in,
                    FanInOut::FanOut => fan_out,
                } as f64;
                let gain = non_linearity.gain();
                match dist {
                    NormalOrUniform::Normal => Initializer::Normal { mean: 0.0, std: gain / fan.sqrt() },
                    NormalOrUniform::Uniform => {
                        let b = gain * (3.0 / fan).sqrt();
                        Initializer::Uniform { lo: -b, hi: b }
                    }
                }
            }
        }
    }
}

/// Options for [`seeded_with`]: the seed, plus optional schemes that override candle-nn's hints.
#[derive(Debug, Clone, Copy)]
pub struct SeededInit {
    /// The seed every parameter's stream is derived from.
    pub seed: u64,
    /// Overrides the hint for parameters with two or more dimensions (weight matrices, kernels).
    pub weights: Option<Initializer>,
    /// Overrides the hint for one-dimensional parameters (biases, norm scales).
    pub biases: Option<Initializer>,
}

impl SeededInit {
    /// candle-nn's default schemes, drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        SeededInit { seed, weights: None, biases: None }
    }
    /// Use `init` for every weight (2+ dimensions) instead of the layer's hint.
    pub fn weights(mut self, init: Initializer) -> Self {
        self.weights = Some(init);
        self
    }
    /// Use `init` for every bias (1 dimension) instead of the layer's hint.
    pub fn biases(mut self, init: Initializer) -> Self {
        self.biases = Some(init);
        self
    }
}

/// The `VarBuilder` backend: creates each variable once in the shared [`VarMap`], from a stream named by
/// the variable's path.
struct SeededBackend {
    map: VarMap,
    opts: SeededInit,
    rng: Rng,
}

impl SimpleBackend for SeededBackend {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        let mut vars = self.map.data().lock().map_err(|_| candle_core::Error::msg("VarMap lock poisoned"))?;
        if let Some(v) = vars.get(name) {
            // Same path asked twice (weight tying, re-building a layer): hand back the same variable,
            // but only if the shapes agree, as VarMap does.
            if v.shape() != &s {
                candle_core::bail!(
                    "parameter {name}: requested shape {s:?}, but it already exists with {:?}",
                    v.shape()
                )
            }
            return Ok(v.as_tensor().clone());
        }
        let scheme = match (s.rank(), self.opts.weights, self.opts.biases) {
            (r, Some(w), _) if r >= 2 => w,
            (1, _, Some(b)) => b,
            _ => Initializer::from_hint(h, &s),
        };
        // One stream per parameter path: adding a layer elsewhere does not change these numbers.
        let mut rng = self.rng.fork(name);
        let t = scheme.sample(s, dtype, dev, &mut rng).map_err(candle_core::Error::wrap)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        let vars = self.map.data().lock().map_err(|_| candle_core::Error::msg("VarMap lock poisoned"))?;
        match vars.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("parameter {name} does not exist yet; create it with a shape first"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map.data().lock().map(|v| v.contains_key(name)).unwrap_or(false)
    }
}

/// A fresh [`VarMap`] and a `VarBuilder` that fills it reproducibly from `seed`, honouring each layer's
/// init hint. Train with `varmap.all_vars()`; save with [`crate::checkpoint`].
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let (_, vb1) = dlhist::init::seeded(7, DType::F32, &dev);
/// let (_, vb2) = dlhist::init::seeded(7, DType::F32, &dev);
/// let a = candle_nn::linear(4, 3, vb1.pp("fc"))?;
/// let b = candle_nn::linear(4, 3, vb2.pp("fc"))?;
/// let diff = (a.weight() - b.weight())?.abs()?.sum_all()?.to_scalar::<f32>()?;
/// assert_eq!(diff, 0.0);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn seeded(seed: u64, dtype: DType, dev: &Device) -> (VarMap, VarBuilder<'static>) {
    seeded_with(SeededInit::new(seed), dtype, dev)
}

/// [`seeded`] with scheme overrides, e.g. Xavier weights and zero biases.
pub fn seeded_with(opts: SeededInit, dtype: DType, dev: &Device) -> (VarMap, VarBuilder<'static>) {
    let map = VarMap::new();
    let backend = SeededBackend { map: map.clone(), opts, rng: Rng::new(opts.seed) };
    let boxed: Box<dyn SimpleBackend + 'static> = Box::new(backend);
    (map, VarBuilder::from_backend(boxed, dtype, dev.clone()))
}

/// Re-draws every variable of `map` whose name satisfies `select` with `init`, seeded by `seed` and the
/// variable's name. Returns how many variables were set.
pub fn reinit(map: &VarMap, init: Initializer, seed: u64, select: impl Fn(&str) -> bool) -> Result<usize> {
    let rng = Rng::new(seed);
    let vars = map.data().lock().map_err(|_| Error::Invalid("VarMap lock poisoned".into()))?;
    let mut n = 0;
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort(); // deterministic order (the map is a HashMap)
    for name in names {
        if select(name) {
            let v = &vars[name];
            let t = init.sample(v.shape().clone(), v.dtype(), v.device(), &mut rng.fork(name))?;
            v.set(&t)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Number of scalar parameters in `map`.
pub fn param_count(map: &VarMap) -> usize {
    map.all_vars().iter().map(|v| v.elem_count()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(t: &Tensor) -> (f32, f32, f32) {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let n = v.len() as f32;
        let mean = v.iter().sum::<f32>() / n;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt();
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        (mean, std, max)
    }

    #[test]
    fn fans_follow_pytorch_convention() {
        assert_eq!(fans(&Shape::from((10, 20))), (20, 10));
        assert_eq!(fans(&Shape::from((16, 3, 5, 5))), (75, 400));
        assert_eq!(fans(&Shape::from(7)), (7, 7));
    }

    #[test]
    fn schemes_have_the_documented_spread() -> Result<()> {
        let dev = crate::device::test_device();
        let mut rng = Rng::new(1);
        let shape = (200, 300); // fan_in 300, fan_out 200
        let (_, std, _) = stats(&Initializer::XavierNormal { gain: 1.0 }.sample(shape, DType::F32, &dev, &mut rng)?);
        assert!((std - (2.0f32 / 500.0).sqrt()).abs() < 0.002, "xavier normal std {std}");
        let (_, _, max) =
            stats(&Initializer::KaimingUniform { gain: RELU_GAIN }.sample(shape, DType::F32, &dev, &mut rng)?);
        let b = (6.0f32 / 300.0).sqrt();
        assert!(max <= b && max > 0.95 * b, "kaiming uniform max {max} vs bound {b}");
        let (_, std, _) =
            stats(&Initializer::KaimingNormal { gain: RELU_GAIN }.sample(shape, DType::F32, &dev, &mut rng)?);
        assert!((std - (2.0f32 / 300.0).sqrt()).abs() < 0.003, "kaiming normal std {std}");
        let (mean, _, max) = stats(&Initializer::Constant(0.5).sample(4, DType::F32, &dev, &mut rng)?);
        assert_eq!((mean, max), (0.5, 0.5));
        assert!(Initializer::Uniform { lo: 1.0, hi: 1.0 }.sample(4, DType::F32, &dev, &mut rng).is_err());
        Ok(())
    }

    #[test]
    fn seeded_builder_is_reproducible_and_order_independent() -> Result<()> {
        let dev = crate::device::test_device();
        let (m1, vb1) = seeded(3, DType::F32, &dev);
        let _a = candle_nn::linear(5, 4, vb1.pp("a"))?;
        let b1 = candle_nn::linear(4, 2, vb1.pp("b"))?;
        // Build in the other order: parameter "b" must come out the same.
        let (_, vb2) = seeded(3, DType::F32, &dev);
        let b2 = candle_nn::linear(4, 2, vb2.pp("b"))?;
        let diff = (b1.weight() - b2.weight())?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        assert_eq!(m1.all_vars().len(), 4);
        assert_eq!(param_count(&m1), 5 * 4 + 4 + 4 * 2 + 2);
        // A different seed gives different weights.
        let (_, vb3) = seeded(4, DType::F32, &dev);
        let b3 = candle_nn::linear(4, 2, vb3.pp("b"))?;
        let diff = (b1.weight() - b3.weight())?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert!(diff > 0.0);
        Ok(())
    }

    #[test]
    fn overrides_and_reinit_apply() -> Result<()> {
        let dev = crate::device::test_device();
        let opts = SeededInit::new(0).weights(Initializer::Constant(0.25)).biases(Initializer::Constant(-1.0));
        let (map, vb) = seeded_with(opts, DType::F32, &dev);
        let l = candle_nn::linear(3, 2, vb.pp("l"))?;
        assert_eq!(stats(l.weight()).0, 0.25);
        assert_eq!(stats(l.bias().unwrap()).0, -1.0);
        let n = reinit(&map, Initializer::Constant(2.0), 0, |name| name.ends_with("weight"))?;
        assert_eq!(n, 1);
        assert_eq!(stats(l.weight()).0, 2.0, "reinit writes through to the layer's variable");
        Ok(())
    }

    #[test]
    fn shape_conflict_is_an_error_naming_shapes() {
        let dev = crate::device::test_device();
        let (_, vb) = seeded(0, DType::F32, &dev);
        let _ = vb.get_with_hints((2, 3), "w", Init::Const(0.0)).unwrap();
        let e = vb.get_with_hints((3, 3), "w", Init::Const(0.0)).unwrap_err().to_string();
        assert!(e.contains("[3, 3]") && e.contains("[2, 3]"), "{e}");
    }
}
