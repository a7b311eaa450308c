//! The training loop: the one every notebook uses.
//!
//! One optimizer step is: forward a mini-batch, compute the loss, back-propagate, update. [`train_step`]
//! is that step; [`fit`] runs it over shuffled mini-batches for some epochs (or steps), evaluates on a
//! validation set after each epoch, prints progress lines, and returns a [`History`]. Its hooks: a
//! learning-rate schedule ([`FitConfig::schedule`]) and a callback after every step ([`FitConfig::on_step`]) that
//! can probe the model, log more values, or stop early. A loss that stops being finite ends training with
//! [`Error::Diverged`].

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use candle_core::{DType, ModuleT, Tensor};
use candle_nn::Optimizer;

use super::loss::{CrossEntropy, Loss, SharedLoss};
use super::{Batcher, History, Progress};
use crate::data::{Augmentation, Dataset};
use crate::optim::LrSchedule;
use crate::rng::Rng;
use crate::{Error, Result};

/// What [`FitConfig::on_step`] sees after each optimizer step, and where it can log more values.
#[derive(Debug)]
pub struct StepEnd<'h> {
    /// The step just taken, counted from 0 (the index [`History::steps`] rows use).
    pub step: usize,
    /// The epoch it belongs to, from 0.
    pub epoch: usize,
    /// The batch's training loss.
    pub loss: f64,
    /// The learning rate the step used.
    pub lr: f64,
    history: &'h mut History,
}

impl StepEnd<'_> {
    /// Logs values at this step, in the same [`History::steps`] row as its `loss` and `lr`.
    pub fn log(&mut self, values: &[(&str, f64)]) {
        match self.history.steps.last_mut() {
            Some(row) if row.index == self.step => {
                row.values.extend(values.iter().map(|(k, v)| (k.to_string(), *v)));
            }
            _ => self.history.log_step(self.step, values),
        }
    }
}

/// What a step callback tells [`fit`] to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Control {
    /// Keep training.
    #[default]
    Continue,
    /// Stop now: the epoch in progress is summarized (and evaluated) as it stands, and `fit` returns.
    Stop,
}

/// A step callback: called after every optimizer step with the step's [`StepEnd`]. It may borrow the model and
/// data it probes (hence the lifetime).
pub type OnStep<'a> = Rc<RefCell<dyn FnMut(&mut StepEnd<'_>) -> Result<Control> + 'a>>;

/// Wraps a closure as a [`FitConfig::on_step`] value.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::train::{fit, on_step, Control, FitConfig, Mse};
/// let dev = Device::Cpu;
/// let x = Tensor::new(&[[1f32], [2.], [3.], [4.]], &dev)?;
/// let data = dlhist::data::Dataset::new(x.clone(), (&x * 2.0)?)?;
/// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let model = candle_nn::linear_no_bias(1, 1, vb)?;
/// let mut opt = candle_nn::SGD::new(vars.all_vars(), 0.05)?;
/// // Log the weight after every step, and stop once the loss is small.
/// let cfg = FitConfig {
///     epochs: 1000,
///     batch_size: 4,
///     loss: Mse.into(),
///     progress_every_s: None,
///     on_step: on_step(|s| {
///         s.log(&[("w", model.weight().to_vec2::<f32>()?[0][0] as f64)]);
///         Ok(if s.loss < 1e-6 { Control::Stop } else { Control::Continue })
///     }),
///     ..Default::default()
/// };
/// let history = fit(&model, &mut opt, &data, None, &cfg)?;
/// assert!(history.steps.len() < 1000);
/// assert!((history.last_step("w").unwrap() - 2.0).abs() < 1e-3);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn on_step<'a>(f: impl FnMut(&mut StepEnd<'_>) -> Result<Control> + 'a) -> Option<OnStep<'a>> {
    Some(Rc::new(RefCell::new(f)))
}

/// Settings of [`fit`].
#[derive(Clone)]
pub struct FitConfig<'a> {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per mini-batch.
    pub batch_size: usize,
    /// Seeds the batch order (model initialization is seeded separately, by [`crate::init::seeded`]).
    pub seed: u64,
    /// The loss ([`CrossEntropy`] by default; any [`Loss`], e.g. `Mse.into()`).
    pub loss: SharedLoss,
    /// Stop after this many optimizer steps, even mid-epoch.
    pub max_steps: Option<usize>,
    /// Drop the last, smaller batch of every epoch.
    pub drop_last: bool,
    /// Shuffle the examples every epoch (the default). Off, batches follow the dataset's order: what truncated
    /// back-propagation through time over a stream needs, where batch `k + 1` continues batch `k`.
    pub shuffle: bool,
    /// Print a progress line at most every this many seconds; `None` prints nothing.
    pub progress_every_s: Option<f64>,
    /// Random crops and flips applied to every training batch (image data `[N, C, H, W]` only), drawn from a
    /// stream derived from `seed`. Evaluation always sees the original images.
    pub augment: Option<Augmentation>,
    /// The learning rate of every step (step counts from 0): set on the optimizer before each step. `None`
    /// leaves the optimizer's rate alone.
    pub schedule: Option<Arc<dyn LrSchedule + Send + Sync>>,
    /// Called after every step (see [`on_step`]): probes, extra logging, early stopping.
    pub on_step: Option<OnStep<'a>>,
}

impl Default for FitConfig<'_> {
    fn default() -> Self {
        FitConfig {
            epochs: 1,
            batch_size: 64,
            seed: 0,
            loss: Arc::new(CrossEntropy),
            max_steps: None,
            drop_last: false,
            shuffle: true,
            progress_every_s: Some(5.0),
            augment: None,
            schedule: None,
            on_step: None,
        }
    }
}

impl std::fmt::Debug for FitConfig<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FitConfig")
            .field("epochs", &self.epochs)
            .field("batch_size", &self.batch_size)
            .field("seed", &self.seed)
            .field("loss", &self.loss)
            .field("max_steps", &self.max_steps)
            .field("drop_last", &self.drop_last)
            .field("shuffle", &self.shuffle)
            .field("progress_every_s", &self.progress_every_s)
            .field("augment", &self.augment)
            .field("schedule", &self.schedule.as_ref().map(|_| "LrSchedule"))
            .field("on_step", &self.on_step.as_ref().map(|_| "callback"))
            .finish()
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

/// The value of a one-element tensor as f64 (losses are logged and checked as f64 whatever their dtype).
pub(crate) fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// One optimizer step on a batch: forward in training mode, loss, backward, update. Returns the loss
/// and the model's output (for metrics).
pub fn train_step<M: ModuleT + ?Sized, O: Optimizer>(
    model: &M,
    opt: &mut O,
    x: &Tensor,
    y: &Tensor,
    loss: &dyn Loss,
) -> Result<(f64, Tensor)> {
    let out = model.forward_t(x, true)?;
    let l = loss.compute(&out, y)?;
    opt.backward_step(&l)?;
    Ok((scalar(&l)?, out))
}

/// Evaluates `model` (training mode off: no dropout, running batch-norm statistics) on `data`.
pub fn evaluate<M: ModuleT + ?Sized>(
    model: &M,
    data: &Dataset,
    loss: &dyn Loss,
    batch_size: usize,
) -> Result<Evaluation> {
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
/// use dlhist::train::{fit, FitConfig, Mse};
/// let dev = Device::Cpu;
/// // Learn y = 2x with one weight.
/// let x = Tensor::new(&[[1f32], [2.], [3.], [4.]], &dev)?;
/// let data = dlhist::data::Dataset::new(x.clone(), (&x * 2.0)?)?;
/// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let model = candle_nn::linear_no_bias(1, 1, vb)?;
/// let mut opt = candle_nn::SGD::new(vars.all_vars(), 0.05)?;
/// let cfg = FitConfig { epochs: 50, batch_size: 4, loss: Mse.into(), progress_every_s: None, ..Default::default() };
/// let history = fit(&model, &mut opt, &data, None, &cfg)?;
/// assert!(history.last("train_loss")? < 1e-3);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn fit<M: ModuleT + ?Sized, O: Optimizer>(
    model: &M,
    opt: &mut O,
    train: &Dataset,
    valid: Option<&Dataset>,
    cfg: &FitConfig<'_>,
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
        let mut stop = false;
        let batches = Batcher::new(train, cfg.batch_size)?.drop_last(cfg.drop_last);
        let batches = if cfg.shuffle { batches.shuffled(cfg.seed, epoch) } else { batches };
        for batch in batches {
            if cfg.max_steps.is_some_and(|m| step >= m) {
                break 'epochs;
            }
            if let Some(schedule) = &cfg.schedule {
                opt.set_learning_rate(schedule.lr_at(step));
            }
            let (x, y) = batch?;
            let x = match &cfg.augment {
                Some(a) => a.apply(&x, &mut augment_rng)?,
                None => x,
            };
            let n = x.dims()[0];
            let (loss, out) = train_step(model, opt, &x, &y, cfg.loss.as_ref())?;
            if !loss.is_finite() {
                return Err(Error::Diverged { step, loss });
            }
            loss_sum += loss * n as f64;
            seen += n;
            if cfg.loss.is_classification() {
                correct += super::correct_count(&out, &y)?;
            }
            let lr = opt.learning_rate();
            history.log_step(step, &[("loss", loss), ("lr", lr)]);
            if let Some(hook) = &cfg.on_step {
                let mut end = StepEnd { step, epoch, loss, lr, history: &mut history };
                stop = (hook.borrow_mut())(&mut end)? == Control::Stop;
            }
            step += 1;
            progress.update(step, &[("loss", loss)]);
            if stop {
                break;
            }
        }
        let mut row = vec![("train_loss", loss_sum / seen.max(1) as f64)];
        if cfg.loss.is_classification() {
            row.push(("train_acc", correct as f64 / seen.max(1) as f64));
        }
        if let Some(v) = valid {
            let e = evaluate(model, v, cfg.loss.as_ref(), cfg.batch_size.max(256))?;
            row.push(("val_loss", e.loss));
            if let Some(a) = e.accuracy {
                row.push(("val_acc", a));
            }
        }
        row.push(("time_s", progress.elapsed()));
        history.log_epoch(epoch, &row);
        if stop {
            break;
        }
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
    use crate::train::Mse;
    use candle_core::Module;

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
        let dev = crate::device::test_device();
        Dataset::new(Tensor::from_vec(xs, (n, 2), &dev).unwrap(), Tensor::from_vec(ys, n, &dev).unwrap()).unwrap()
    }

    fn run(seed: u64, steps: usize) -> (Vec<f64>, Vec<f32>) {
        let dev = crate::device::test_device();
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

    /// A model that records the first feature of each batch it sees.
    struct Recorder(std::cell::RefCell<Vec<f32>>, candle_nn::Linear);

    impl ModuleT for Recorder {
        fn forward_t(&self, x: &Tensor, _train: bool) -> candle_core::Result<Tensor> {
            self.0.borrow_mut().push(x.get(0)?.get(0)?.to_scalar::<f32>()?);
            self.1.forward(x)
        }
    }

    #[test]
    fn without_shuffling_batches_follow_the_dataset_order() -> Result<()> {
        let dev = crate::device::test_device();
        let x = Tensor::arange(0f32, 12., &dev)?.reshape((12, 1))?;
        let data = Dataset::new(x.clone(), x)?;
        let (vars, vb) = crate::init::seeded(0, DType::F32, &dev);
        let model = Recorder(Default::default(), candle_nn::linear(1, 1, vb)?);
        let mut opt = candle_nn::SGD::new(vars.all_vars(), 1e-3)?;
        let cfg = FitConfig {
            epochs: 2,
            batch_size: 4,
            shuffle: false,
            loss: Mse.into(),
            progress_every_s: None,
            ..Default::default()
        };
        fit(&model, &mut opt, &data, None, &cfg)?;
        assert_eq!(*model.0.borrow(), vec![0., 4., 8., 0., 4., 8.]);
        let shuffled =
            Recorder(Default::default(), candle_nn::linear(1, 1, crate::init::seeded(0, DType::F32, &dev).1)?);
        fit(&shuffled, &mut opt, &data, None, &FitConfig { shuffle: true, ..cfg })?;
        assert_ne!(*shuffled.0.borrow(), vec![0., 4., 8., 0., 4., 8.]);
        Ok(())
    }

    #[test]
    fn fit_learns_a_separable_problem_and_logs_epochs() -> Result<()> {
        let dev = crate::device::test_device();
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
        let e = evaluate(&model, &valid, &CrossEntropy, 7)?;
        assert!((e.accuracy.unwrap() - h.last("val_acc")?).abs() < 1e-9, "batch size must not change the result");
        Ok(())
    }

    #[test]
    fn diverging_training_is_reported() {
        let dev = crate::device::test_device();
        let (vars, vb) = seeded(0, DType::F32, &dev);
        let model = candle_nn::linear(2, 2, vb).unwrap();
        let mut opt = candle_nn::SGD::new(vars.all_vars(), 1e30).unwrap();
        let cfg =
            FitConfig { epochs: 3, batch_size: 8, loss: Mse.into(), progress_every_s: None, ..Default::default() };
        let d = blobs(32, 0);
        let d = Dataset::new(d.x.clone(), d.x.clone()).unwrap();
        let e = fit(&model, &mut opt, &d, None, &cfg).unwrap_err();
        assert!(e.to_string().contains("learning rate"), "{e}");
        // A typed error: code can match it instead of its text.
        match e {
            Error::Diverged { step, loss } => assert!(step < 12 && !loss.is_finite(), "step {step}, loss {loss}"),
            other => panic!("expected Error::Diverged, got {other:?}"),
        }
    }

    #[test]
    fn schedule_sets_every_steps_rate_and_the_hook_logs_and_stops() -> Result<()> {
        let dev = crate::device::test_device();
        let (vars, vb) = seeded(0, DType::F32, &dev);
        let model = candle_nn::linear(2, 2, vb)?;
        let mut opt = candle_nn::SGD::new(vars.all_vars(), 123.0)?;
        let schedule = crate::optim::CosineAnnealing::new(0.5, 0.0, 10)?;
        let mut seen = vec![];
        let cfg = FitConfig {
            epochs: 10,
            batch_size: 16,
            drop_last: true,
            progress_every_s: None,
            schedule: Some(Arc::new(schedule)),
            on_step: on_step(|s| {
                seen.push((s.step, s.epoch, s.lr));
                s.log(&[("double_loss", 2.0 * s.loss)]);
                Ok(if s.step == 6 { Control::Stop } else { Control::Continue })
            }),
            ..Default::default()
        };
        // 50 examples in batches of 16 with the last dropped: 3 steps an epoch.
        let h = fit(&model, &mut opt, &blobs(50, 4), Some(&blobs(20, 5)), &cfg)?;
        drop(cfg);
        assert_eq!(seen.len(), 7, "stopped after step 6");
        for (step, epoch, lr) in &seen {
            assert_eq!(*epoch, step / 3);
            assert!((lr - schedule.lr_at(*step)).abs() < 1e-12, "step {step}: {lr}");
        }
        assert_eq!(h.steps.len(), 7);
        assert_eq!(h.epochs.len(), 3, "the stopped epoch is summarized too");
        assert!(h.last_epoch("val_acc").is_some());
        let (_, doubled) = h.step_series("double_loss");
        let (_, loss) = h.step_series("loss");
        assert!(doubled.iter().zip(&loss).all(|(d, l)| (d - 2.0 * l).abs() < 1e-12));
        Ok(())
    }
}
