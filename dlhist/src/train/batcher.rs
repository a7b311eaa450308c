//! Mini-batches from a [`Dataset`], in a seeded order.
//!
//! Stochastic gradient descent looks at a random subset of the data at each step; the order must be
//! random, but reproducible. Each epoch's permutation comes from its own named stream
//! (`rng.fork("epoch-3")`), so epoch 3 is shuffled the same way whether or not epochs 0-2 ran.

use candle_core::Tensor;

use crate::data::Dataset;
use crate::rng::Rng;
use crate::{Error, Result};

/// Iterates over `(x, y)` mini-batches of a [`Dataset`].
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::{data::Dataset, train::Batcher};
/// let dev = Device::Cpu;
/// let x = Tensor::arange(0f32, 10., &dev)?.reshape((10, 1))?;
/// let y = Tensor::arange(0u32, 10, &dev)?;
/// let data = Dataset::new(x, y)?;
/// let batches: Vec<_> = Batcher::new(&data, 4)?.shuffled(0, 0).collect::<Result<_>>()?;
/// assert_eq!(batches.len(), 3); // 4 + 4 + 2
/// assert_eq!(batches[2].0.dims(), &[2, 1]);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct Batcher<'a> {
    data: &'a Dataset,
    batch_size: usize,
    order: Vec<u32>,
    pos: usize,
    drop_last: bool,
}

impl<'a> Batcher<'a> {
    /// Batches of `batch_size` in the dataset's own order (use [`Batcher::shuffled`] for training).
    pub fn new(data: &'a Dataset, batch_size: usize) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::Invalid("batch_size must be at least 1".into()));
        }
        Ok(Batcher { data, batch_size, order: (0..data.len() as u32).collect(), pos: 0, drop_last: false })
    }

    /// Shuffles the order with the permutation for `epoch` of the stream seeded by `seed`.
    pub fn shuffled(mut self, seed: u64, epoch: usize) -> Self {
        self.order = Rng::new(seed).fork(&format!("epoch-{epoch}")).permutation(self.data.len());
        self
    }

    /// Skip a last batch smaller than `batch_size` (keeps batch statistics comparable).
    pub fn drop_last(mut self, yes: bool) -> Self {
        self.drop_last = yes;
        self
    }

    /// Number of batches this iterator yields in total.
    pub fn num_batches(&self) -> usize {
        let n = self.order.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }
}

impl Iterator for Batcher<'_> {
    type Item = Result<(Tensor, Tensor)>;

    fn next(&mut self) -> Option<Self::Item> {
        let end = (self.pos + self.batch_size).min(self.order.len());
        if self.pos >= end || (self.drop_last && end - self.pos < self.batch_size) {
            return None;
        }
        let idx = &self.order[self.pos..end];
        self.pos = end;
        Some(gather(self.data, idx))
    }
}

/// Calls `step(k, x, y)` for `k = 1 ..= steps` on full mini-batches of `batch` examples of `data`, epoch after
/// epoch, each epoch in the order [`Batcher::shuffled`] gives for `seed` (the last, smaller batch of an epoch is
/// skipped): the loop of a training run counted in steps rather than epochs, for the models that do not fit
/// [`super::fit`]'s output-against-target mould (a GAN's two players, a VAE's sampled bound).
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::{data::Dataset, train::for_batches};
/// let dev = Device::Cpu;
/// let data = Dataset::new(Tensor::arange(0f32, 10., &dev)?.reshape((10, 1))?, Tensor::zeros(10, DType::U32, &dev)?)?;
/// let mut seen = vec![];
/// for_batches(&data, 5, 4, 0, |k, x, _| {
///     seen.push((k, x.dim(0)?));
///     Ok(())
/// })?;
/// assert_eq!(seen, vec![(1, 4), (2, 4), (3, 4), (4, 4), (5, 4)]); // two full batches per epoch of 10
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn for_batches(
    data: &Dataset,
    steps: usize,
    batch: usize,
    seed: u64,
    mut step: impl FnMut(usize, &Tensor, &Tensor) -> Result<()>,
) -> Result<()> {
    if batch == 0 || data.len() < batch {
        return Err(Error::Invalid(format!("{} examples cannot fill one batch of {batch}", data.len())));
    }
    let (mut k, mut epoch) = (0, 0);
    while k < steps {
        for item in Batcher::new(data, batch)?.shuffled(seed, epoch).drop_last(true) {
            let (x, y) = item?;
            k += 1;
            step(k, &x, &y)?;
            if k == steps {
                return Ok(());
            }
        }
        epoch += 1;
    }
    Ok(())
}

fn gather(data: &Dataset, idx: &[u32]) -> Result<(Tensor, Tensor)> {
    let ids = Tensor::new(idx, data.x.device())?;
    Ok((data.x.index_select(&ids, 0)?, data.y.index_select(&ids, 0)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Dataset {
        let dev = crate::device::test_device();
        let x = Tensor::arange(0f32, n as f32, &dev).unwrap().reshape((n, 1)).unwrap();
        let y = Tensor::arange(0u32, n as u32, &dev).unwrap();
        Dataset::new(x, y).unwrap()
    }

    fn labels(b: Batcher) -> Vec<Vec<u32>> {
        b.map(|r| r.unwrap().1.to_vec1::<u32>().unwrap()).collect()
    }

    #[test]
    fn covers_every_example_once_and_keeps_pairs_together() {
        let d = data(10);
        let batches: Vec<(Tensor, Tensor)> = Batcher::new(&d, 3).unwrap().shuffled(1, 0).map(|r| r.unwrap()).collect();
        let mut all = vec![];
        for (x, y) in &batches {
            let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let ys: Vec<u32> = y.to_vec1().unwrap();
            assert_eq!(xs, ys.iter().map(|&v| v as f32).collect::<Vec<_>>(), "x and y rows stay paired");
            all.extend(ys);
        }
        assert_ne!(all, (0..10).collect::<Vec<u32>>(), "shuffled");
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<u32>>());
        assert_eq!(batches.iter().map(|b| b.1.dims()[0]).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
    }

    #[test]
    fn order_depends_on_seed_and_epoch_only() {
        let d = data(20);
        let a = labels(Batcher::new(&d, 5).unwrap().shuffled(7, 2));
        let b = labels(Batcher::new(&d, 5).unwrap().shuffled(7, 2));
        let c = labels(Batcher::new(&d, 5).unwrap().shuffled(7, 3));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn drop_last_and_counts() {
        let d = data(10);
        let b = Batcher::new(&d, 4).unwrap().drop_last(true);
        assert_eq!(b.num_batches(), 2);
        assert_eq!(labels(b).len(), 2);
        assert_eq!(Batcher::new(&d, 4).unwrap().num_batches(), 3);
        assert!(Batcher::new(&d, 0).is_err());
    }
}
