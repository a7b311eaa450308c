//! The training loop: the one every notebook uses.
//!
//! One optimizer step is: forward a mini-batch, compute the loss, back-propagate, update. [`train_step`]
//! is that step; [`fit`] runs it over shuffled mini-batches for some epochs (or steps), evaluates on a
//! validation set after each epoch, prints progress lines, and returns a [`History`].

use candle_core::{DType, ModuleT, Tensor};
use candle_nn::Optimizer;

use super::{Batcher, History, Progress};
use crate::data::{Augmentation, Dataset};
use crate::rng::Rng;
use crate::{Error, Result};

/// The loss a model is trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// Softmax cross-entropy on logits `[N, C]` against class ids `[N]`; accuracy is tracked too.
    #[default]
    CrossEntropy,
    /// Mean squared error against targets of the output's shape.
    Mse,
    /// Sigmoid binary cross-entropy on logits against 0/1 targets of the same shape.
    BinaryCrossEntropyWithLogits,
    /// Per-pixel softmax cross-entropy weighted per pixel (U-Net): logits `[N, C, H, W]` against targets
    /// `[N, 2, H, W]` holding the class id (channel 0) and the weight (channel 1), as
    /// [`crate::data::Cells::dataset`] lays them out.
    WeightedPixelCrossEntropy,
}

impl Loss {
    /// The scalar loss of `output` against `target`.
    pub fn compute(&self, output: &Tensor, target: &Tensor) -> Result<Tensor> {
        let loss = match self {
            Loss::CrossEntropy => {
                if output.rank() != 2 || target.dims() != [output.dims()[0]] {
                    return Err(Error::Invalid(format!(
                        "cross-entropy expects logits [N, C] and class ids [N]; got logits {:?} and targets {:?}",
                        output.dims(),
                        target.dims()
                    )));
                }
                // One pass per row with the closed-form gradient on the CPU (crate::fast); candle's otherwise.
                crate::fast::softmax_cross_entropy(output, target)?
            }
            Loss::WeightedPixelCrossEntropy => {
                let (n, _, h, w) = output.dims4().map_err(|_| {
                    Error::Invalid(format!(
                        "weighted pixel cross-entropy expects logits [N, C, H, W]; got {:?}",
                        output.dims()
                    ))
                })?;
                if target.dims() != [n, 2, h, w] {
                    return Err(Error::Invalid(format!(
                        "weighted pixel cross-entropy expects targets [N, 2, H, W] = [{n}, 2, {h}, {w}] (class ids, weights) \
                         for logits {:?}; got {:?}",
                        output.dims(),
                        target.dims()
                    )));
                }
                let classes = target.narrow(1, 0, 1)?.squeeze(1)?.to_dtype(DType::U32)?;
                let weights = target.narrow(1, 1, 1)?.squeeze(1)?;
                crate::deep_neural_networks::weighted_pixel_cross_entropy(output, &classes, &weights)?
            }
            Loss::Mse | Loss::BinaryCrossEntropyWithLogits => {
                if output.dims() != target.dims() {
                    return Err(Error::Invalid(format!(
                        "{self:?} expects output and target of the same shape; got {:?} and {:?}",
                        output.dims(),
                        target.dims()
                    )));
                }
                let target = target.to_dtype(output.dtype())?;
                if *self == Loss::Mse {
                    candle_nn::loss::mse(output, &target)?
                } else {
                    candle_nn::loss::binary_cross_entropy_with_logit(output, &target)?
                }
            }
        };
        Ok(loss)
    }

    fn is_classification(&self) -> bool {
        *self == Loss::CrossEntropy
    }
}

/// Settings of [`fit`].
#[derive(Debug, Clone)]
pub struct FitConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per mini-batch.
    pub batch_size: usize,
    /// Seeds the batch order (model initialization is seeded separately, by [`crate::init::seeded`]).
    pub seed: u64,
    /// The loss.
    pub loss: Loss,
    /// Stop after this many optimizer steps, even mid-epoch.
    pub max_steps: Option<usize>,
    /// Print a progress line at most every this many seconds; `None` prints nothing.
    pub progress_every_s: Option<f64>,
    /// Random crops and flips applied to every training batch (image data `[N, C, H, W]` only), drawn from a
    /// stream derived from `seed`. Evaluation always sees the original images.
    pub augment: Option<Augmentation>,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            epochs: 1,
            batch_size: 64,
            seed: 0,
            loss: Loss::CrossEntropy,
            max_steps: None,
            progress_every_s: Some(5.0),
            augment: None,
        }
    }
}

/// Loss (and accuracy, for classification) of a model on a dataset, in evaluation mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean loss over the examples.
    pub loss: f64,
    /// Fraction classified correctly (`None` unless the loss is cross-entropy).
    pub accuracy: Option<f64>,
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// One optimizer step on a batch: forward in training mode, loss, backward, update. Returns the loss
/// and the model's output (for metrics).
pub fn train_step<M: ModuleT + ?Sized, O: Optimizer>(
    model: &M,
    opt: &mut O,
    x: &Tensor,
    y: &Tensor,
    loss: Loss,
) -> Result<(f64, Tensor)> {
    let out = model.forward_t(x, true)?;
    let l = loss.compute(&out, y)?;
    opt.backward_step(&l)?;
    Ok((scalar(&l)?, out))
}

/// Evaluates `model` (training mode off: no dropout, running batch-norm statistics) on `data`.
pub fn evaluate<M: ModuleT + ?Sized>(model: &M, data: &Dataset, loss: Loss, batch_size: usize) -> Result<Evaluation> {
    if data.is_empty() {
        return Err(Error::Invalid("evaluate: the dataset is empty".into()));
    }
    let (mut total, mut correct) = (0.0, 0usize);
    for batch in Batcher::new(data, batch_size)? {
        let (x, y) = batch?;
        let n = x.dims()[0];
        let out = model.forward_t(&x, false)?;
        total += scalar(&loss.compute(&out, &y)?)? * n as f64;
        if loss.is_classification() {
            correct += super::correct_count(&out, &y)?;
        }
    }
    let n = data.len() as f64;
    Ok(Evaluation { loss: total / n, accuracy: loss.is_classification().then(|| correct as f64 / n) })
}

/// Trains `model` on `train` with `opt`, evaluating on `valid` after every epoch.
///
/// Logs `loss` every step and `train_loss`, `train_acc` (classification), `val_loss`, `val_acc`, and
/// `time_s` every epoch.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::train::{fit, FitConfig, Loss};
/// let dev = Device::Cpu;
/// // Learn y = 2x with one weight.
/// let x = Tensor::new(&[[1f32], [2.], [3.], [4.]], &dev)?;
/// let data = dlhist::data::Dataset::new(x.clone(), (&x * 2.0)?)?;
/// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let model = candle_nn::linear_no_bias(1, 1, vb)?;
/// let mut opt = candle_nn::SGD::new(vars.all_vars(), 0.05)?;
/// let cfg = FitConfig { epochs: 50, batch_size: 4, loss: Loss::Mse, progress_every_s: None, ..Default::default() };
/// let history = fit(&model, &mut opt, &data, None, &cfg)?;
/// assert!(history.last("train_loss")? < 1e-3);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn fit<M: ModuleT + ?Sized, O: Optimizer>(
    model: &M,
    opt: &mut O,
    train: &Dataset,
    valid: Option<&Dataset>,
    cfg: &FitConfig,
) -> Result<History> {
    if train.is_empty() {
        return Err(Error::Invalid("fit: the training set is empty".into()));
    }
    let steps_per_epoch = Batcher::new(train, cfg.batch_size)?.num_batches();
    let planned = cfg.max_steps.map_or(cfg.epochs * steps_per_epoch, |m| m.min(cfg.epochs * steps_per_epoch));
    let mut progress = Progress::new("fit", planned).every(cfg.progress_every_s.unwrap_or(0.0));
    if cfg.progress_every_s.is_none() {
        progress = progress.quiet();
    }
    let mut history = History::default();
    let mut augment_rng = Rng::new(cfg.seed).fork("augment");
    let mut step = 0;
    'epochs: for epoch in 0..cfg.epochs {
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0usize, 0usize);
        for batch in Batcher::new(train, cfg.batch_size)?.shuffled(cfg.seed, epoch) {
            if cfg.max_steps.is_some_and(|m| step >= m) {
                break 'epochs;
            }
            let (x, y) = batch?;
            let x = match &cfg.augment {
                Some(a) => a.apply(&x, &mut augment_rng)?,
                None => x,
            };
            let n = x.dims()[0];
            let (loss, out) = train_step(model, opt, &x, &y, cfg.loss)?;
            if !loss.is_finite() {
                return Err(Error::Invalid(format!(
                    "fit: the loss became {loss} at step {step} (epoch {epoch}); lower the learning rate or check the data"
                )));
            }
            loss_sum += loss * n as f64;
            seen += n;
            if cfg.loss.is_classification() {
                correct += super::correct_count(&out, &y)?;
            }
            history.log_step(step, &[("loss", loss), ("lr", opt.learning_rate())]);
            step += 1;
            progress.update(step, &[("loss", loss)]);
        }
        let mut row = vec![("train_loss", loss_sum / seen.max(1) as f64)];
        if cfg.loss.is_classification() {
            row.push(("train_acc", correct as f64 / seen.max(1) as f64));
        }
        if let Some(v) = valid {
            let e = evaluate(model, v, cfg.loss, cfg.batch_size.max(256))?;
            row.push(("val_loss", e.loss));
            if let Some(a) = e.accuracy {
                row.push(("val_acc", a));
            }
        }
        row.push(("time_s", progress.elapsed()));
        history.log_epoch(epoch, &row);
    }
    let last: Vec<(&str, f64)> = history.epochs.last().map_or(vec![], |r| {
        r.values.iter().filter(|(k, _)| k.as_str() != "time_s").map(|(k, v)| (k.as_str(), *v)).collect()
    });
    progress.finish(&last);
    Ok(history)
}

/// Predicted class ids (`[N]`, u32) of a classifier, in evaluation mode, batch by batch.
pub fn predict_classes<M: ModuleT + ?Sized>(model: &M, x: &Tensor, batch_size: usize) -> Result<Tensor> {
    let n = x.dims().first().copied().unwrap_or(0);
    let mut parts = vec![];
    let mut start = 0;
    while start < n {
        let len = batch_size.max(1).min(n - start);
        let out = model.forward_t(&x.narrow(0, start, len)?, false)?;
        parts.push(out.argmax(candle_core::D::Minus1)?.to_dtype(DType::U32)?);
        start += len;
    }
    if parts.is_empty() {
        return Err(Error::Invalid("predict_classes: no examples".into()));
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// Accuracy of a classifier on a dataset (a shortcut for [`evaluate`] when only accuracy matters).
pub fn test_accuracy<M: ModuleT + ?Sized>(model: &M, data: &Dataset) -> Result<f64> {
    let pred = predict_classes(model, &data.x, 512)?;
    let n = pred.dims()[0];
    // Compare class ids directly: `accuracy` wants logits, and we already took the arg-max per batch.
    let correct = pred.eq(&data.y.to_dtype(DType::U32)?)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    Ok(f64::from(correct) / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::seeded;
    use crate::rng::Rng;
    use candle_core::{Device, Module};

    fn blobs(n: usize, seed: u64) -> Dataset {
        // Two Gaussian blobs at (-1,-1) and (1,1): linearly separable.
        let mut rng = Rng::new(seed);
        let mut xs = vec![];
        let mut ys = vec![];
        for i in 0..n {
            let c = (i % 2) as u32;
            let mu = if c == 0 { -1.0 } else { 1.0 };
            xs.push(mu + 0.3 * rng.normal());
            xs.push(mu + 0.3 * rng.normal());
            ys.push(c);
        }
        let dev = Device::Cpu;
        Dataset::new(Tensor::from_vec(xs, (n, 2), &dev).unwrap(), Tensor::from_vec(ys, n, &dev).unwrap()).unwrap()
    }

    fn run(seed: u64, steps: usize) -> (Vec<f64>, Vec<f32>) {
        let dev = Device::Cpu;
        let (vars, vb) = seeded(seed, DType::F32, &dev);
        let l1 = candle_nn::linear(2, 8, vb.pp("l1")).unwrap();
        let l2 = candle_nn::linear(8, 2, vb.pp("l2")).unwrap();
        let model = move |x: &Tensor| l2.forward(&l1.forward(x)?.relu()?);
        let mut opt = candle_nn::SGD::new(vars.all_vars(), 0.1).unwrap();
        let cfg = FitConfig {
            epochs: 1,
            batch_size: 16,
            seed,
            max_steps: Some(steps),
            progress_every_s: None,
            ..Default::default()
        };
        let h = fit(&model, &mut opt, &blobs(64, 1), None, &cfg).unwrap();
        let mut w: Vec<f32> = vec![];
        let mut names: Vec<String> = vars.data().lock().unwrap().keys().cloned().collect();
        names.sort();
        for n in names {
            w.extend(vars.data().lock().unwrap()[&n].flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
        (h.step_series("loss").1, w)
    }

    #[test]
    fn same_seed_gives_bit_identical_weights_and_losses() {
        let (la, wa) = run(5, 2);
        let (lb, wb) = run(5, 2);
        assert_eq!(la.len(), 2);
        assert_eq!(la, lb, "losses differ between identical runs");
        assert_eq!(wa, wb, "weights differ between identical runs");
        let (lc, wc) = run(6, 2);
        assert_ne!(wa, wc);
        assert_ne!(la, lc);
    }

    #[test]
    fn fit_learns_a_separable_problem_and_logs_epochs() -> Result<()> {
        let dev = Device::Cpu;
        let (vars, vb) = seeded(0, DType::F32, &dev);
        let model = candle_nn::linear(2, 2, vb)?;
        let mut opt = candle_nn::SGD::new(vars.all_vars(), 0.5)?;
        let train = blobs(200, 2);
        let valid = blobs(100, 3);
        let cfg = FitConfig { epochs: 5, batch_size: 20, progress_every_s: None, ..Default::default() };
        let h = fit(&model, &mut opt, &train, Some(&valid), &cfg)?;
        assert_eq!(h.epochs.len(), 5);
        assert_eq!(h.steps.len(), 50);
        assert!(h.last("val_acc")? > 0.95, "{:?}", h.epochs.last());
        assert!(h.epoch_series("train_loss").1[4] < h.epoch_series("train_loss").1[0]);
        assert!((test_accuracy(&model, &valid)? - h.last("val_acc")?).abs() < 1e-9);
        let e = evaluate(&model, &valid, Loss::CrossEntropy, 7)?;
        assert!((e.accuracy.unwrap() - h.last("val_acc")?).abs() < 1e-9, "batch size must not change the result");
        Ok(())
    }

    #[test]
    fn loss_shape_errors_name_shapes() {
        let dev = Device::Cpu;
        let out = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
        let y = Tensor::zeros((4, 1), DType::F32, &dev).unwrap();
        let e = Loss::CrossEntropy.compute(&out, &y).unwrap_err().to_string();
        assert!(e.contains("[4, 3]") && e.contains("[4, 1]"), "{e}");
        let e = Loss::Mse.compute(&out, &y).unwrap_err().to_string();
        assert!(e.contains("[4, 3]") && e.contains("[4, 1]"), "{e}");
    }

    #[test]
    fn diverging_training_is_reported() {
        let dev = Device::Cpu;
        let (vars, vb) = seeded(0, DType::F32, &dev);
        let model = candle_nn::linear(2, 2, vb).unwrap();
        let mut opt = candle_nn::SGD::new(vars.all_vars(), 1e30).unwrap();
        let cfg = FitConfig { epochs: 3, batch_size: 8, loss: Loss::Mse, progress_every_s: None, ..Default::default() };
        let d = blobs(32, 0);
        let d = Dataset::new(d.x.clone(), d.x.clone()).unwrap();
        let e = fit(&model, &mut opt, &d, None, &cfg).unwrap_err().to_string();
        assert!(e.contains("learning rate"), "{e}");
    }
}
