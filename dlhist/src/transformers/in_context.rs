//! # In-context learning: a task defined only by the examples in the prompt
//!
//! T. Brown et al., "Language Models are Few-Shot Learners" (GPT-3), NeurIPS 2020. <https://arxiv.org/abs/2005.14165>
//! S. Chan et al., "Data Distributional Properties Drive Emergent In-Context Learning in Transformers", NeurIPS
//! 2022. <https://arxiv.org/abs/2205.05055>
//!
//! GPT-3 is given a task not by training on it but by a prompt of `K` worked examples followed by a question, and
//! its answers improve with `K` although no weight changes. At our scale nothing like that emerges from
//! Shakespeare, so we use the small-scale setting the later literature studies the effect in (Chan et al.):
//! pretraining sequences in which every sequence has its own task, so a model can only predict well by reading
//! the task off the earlier part of the sequence.
//!
//! Here a task is a random assignment of labels to word categories. Each sequence draws, for each category `c`,
//! a label `ℓ(c)` uniformly from `L` labels, and then shows `P` pairs `word, ℓ(category(word))`, the words drawn
//! uniformly. The categories are fixed (animals are always animals); the labels are not (animals are `A` in one
//! sequence and `B` in the next). Predicting the label after a word needs the label an earlier word of the same
//! category got *in this sequence*. The best possible predictor knows the label once a word of the query's
//! category has appeared among the `K` earlier pairs and guesses otherwise, so with categories of shares `π_c`
//!
//! ```text
//! accuracy*(K) = 1 − (1 − 1/L) Σ_c π_c (1 − π_c)^K          (chance, 1/L, at K = 0)
//! ```
//!
//! which [`LabelMappingTask::bayes_accuracy`] computes and [`accuracy_by_shots`] measures a model against.

use candle_core::{Device, Module, Tensor};

use crate::data::Dataset;
use crate::rng::Rng;
use crate::{Error, Result};

/// Words in categories, and the labels a sequence maps the categories to (module docs). Token ids: the words in
/// order, category by category (`0..n_words`), then the labels.
///
/// ```
/// use dlhist::transformers::in_context::LabelMappingTask;
/// let task = LabelMappingTask::new(&[("fruit", &["apple", "pear"][..]), ("tool", &["saw", "drill"][..])], 2)?;
/// assert_eq!((task.n_words(), task.vocab_size()), (4, 6));
/// assert_eq!((task.token(2), task.token(5)), ("saw", "B"));
/// assert!((task.bayes_accuracy(0) - 0.5).abs() < 1e-12);
/// assert!((task.bayes_accuracy(1) - 0.75).abs() < 1e-12); // one example shows a category half the time
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMappingTask {
    words: Vec<String>,
    category_of: Vec<usize>,
    category_names: Vec<String>,
    n_labels: usize,
}

/// Four categories of six common English words: the default task of the GPT notebook. (With twelve words a
/// category, a 2-layer model found the in-context solution within 3000 steps for only some seeds; with six, for
/// every seed tried.)
pub const CATEGORIES: [(&str, [&str; 6]); 4] = [
    ("animal", ["cat", "dog", "horse", "sheep", "mouse", "wolf"]),
    ("fruit", ["apple", "pear", "plum", "grape", "lemon", "cherry"]),
    ("colour", ["red", "blue", "green", "black", "white", "brown"]),
    ("tool", ["saw", "drill", "hammer", "knife", "spade", "axe"]),
];

impl LabelMappingTask {
    /// The task over `categories` (name, words) with `n_labels` labels, written `A`, `B`, ... Every word must be
    /// distinct and every category non-empty; at least two categories and two labels (at most 26).
    pub fn new(categories: &[(&str, &[&str])], n_labels: usize) -> Result<Self> {
        if categories.len() < 2 || !(2..=26).contains(&n_labels) {
            return Err(Error::Invalid(format!(
                "LabelMappingTask: needs at least 2 categories and 2..=26 labels; got {} and {n_labels}",
                categories.len()
            )));
        }
        let (mut words, mut category_of) = (vec![], vec![]);
        for (c, (name, ws)) in categories.iter().enumerate() {
            if ws.is_empty() {
                return Err(Error::Invalid(format!("LabelMappingTask: category {name:?} has no words")));
            }
            for w in ws.iter() {
                if words.iter().any(|x: &String| x == w) {
                    return Err(Error::Invalid(format!("LabelMappingTask: the word {w:?} is listed twice")));
                }
                words.push(w.to_string());
                category_of.push(c);
            }
        }
        let category_names = categories.iter().map(|c| c.0.to_string()).collect();
        Ok(LabelMappingTask { words, category_of, category_names, n_labels })
    }

    /// The notebook's task: [`CATEGORIES`] with two labels.
    pub fn standard() -> Self {
        let cats: Vec<(&str, &[&str])> = CATEGORIES.iter().map(|(n, ws)| (*n, &ws[..])).collect();
        Self::new(&cats, 2).expect("the built-in categories are valid")
    }

    /// Number of words.
    pub fn n_words(&self) -> usize {
        self.words.len()
    }

    /// Number of labels.
    pub fn n_labels(&self) -> usize {
        self.n_labels
    }

    /// Number of categories.
    pub fn n_categories(&self) -> usize {
        self.category_names.len()
    }

    /// Words plus labels: the vocabulary a model of the task reads.
    pub fn vocab_size(&self) -> usize {
        self.words.len() + self.n_labels
    }

    /// The id of label `l` (`0..n_labels`).
    pub fn label_token(&self, l: usize) -> u32 {
        (self.words.len() + l) as u32
    }

    /// A token's text: the word, or the label's letter.
    pub fn token(&self, id: u32) -> &str {
        const LETTERS: [&str; 26] = [
            "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S", "T", "U",
            "V", "W", "X", "Y", "Z",
        ];
        let i = id as usize;
        if i < self.words.len() {
            &self.words[i]
        } else {
            LETTERS.get(i - self.words.len()).copied().unwrap_or("?")
        }
    }

    /// The category name of word `id`.
    pub fn category(&self, id: u32) -> &str {
        &self.category_names[self.category_of[id as usize]]
    }

    /// `n` sequences of `pairs` (word, label) pairs, each with its own random labelling of the categories, as a
    /// language-model dataset: `x` `[n, 2·pairs]` the tokens, `y` the same shifted by one (the next token, so the
    /// targets at the words' positions are their labels, and at the labels' positions the next, random, word).
    pub fn sequences(&self, n: usize, pairs: usize, rng: &mut Rng, dev: &Device) -> Result<Dataset> {
        if n == 0 || pairs == 0 {
            return Err(Error::Invalid(format!(
                "LabelMappingTask::sequences: n = {n} and pairs = {pairs} must be > 0"
            )));
        }
        let t = 2 * pairs;
        let (mut xs, mut ys) = (Vec::with_capacity(n * t), Vec::with_capacity(n * t));
        for _ in 0..n {
            let labels: Vec<u32> =
                (0..self.n_categories()).map(|_| self.label_token(rng.below(self.n_labels))).collect();
            // 2·pairs + 1 tokens: the window and the word after its last label.
            let mut seq = Vec::with_capacity(t + 1);
            for _ in 0..pairs {
                let w = rng.below(self.words.len());
                seq.push(w as u32);
                seq.push(labels[self.category_of[w]]);
            }
            seq.push(rng.below(self.words.len()) as u32);
            xs.extend_from_slice(&seq[..t]);
            ys.extend_from_slice(&seq[1..]);
        }
        Dataset::new(Tensor::from_vec(xs, (n, t), dev)?, Tensor::from_vec(ys, (n, t), dev)?)
    }

    /// The best possible accuracy on the label after `k` earlier pairs (module docs).
    pub fn bayes_accuracy(&self, k: usize) -> f64 {
        let n = self.words.len() as f64;
        let miss: f64 = (0..self.n_categories())
            .map(|c| {
                let share = self.category_of.iter().filter(|&&x| x == c).count() as f64 / n;
                share * (1.0 - share).powi(k as i32)
            })
            .sum();
        1.0 - (1.0 - 1.0 / self.n_labels as f64) * miss
    }
}

/// A model's accuracy on the label of pair `k`, for `k = 0..pairs`: the share of `data`'s sequences (from
/// [`LabelMappingTask::sequences`]) in which, at the position of the `k`-th word, the label with the highest logit
/// is the right one. Only the labels compete (a model that still puts weight on words is not penalized for it).
/// Runs in batches of `batch` sequences, without gradients.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::in_context::{accuracy_by_shots, LabelMappingTask};
/// use dlhist::transformers::{Gpt, GptConfig};
/// let dev = Device::Cpu;
/// let task = LabelMappingTask::standard();
/// let data = task.sequences(20, 6, &mut Rng::new(0), &dev)?;
/// let (_vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let gpt = Gpt::new(GptConfig { vocab_size: task.vocab_size(), block_size: 12, n_embd: 16, n_layer: 1, n_head: 2 }, vb)?;
/// let acc = accuracy_by_shots(&gpt, &task, &data, 8)?;
/// assert_eq!(acc.len(), 6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn accuracy_by_shots(
    model: &impl Module,
    task: &LabelMappingTask,
    data: &Dataset,
    batch: usize,
) -> Result<Vec<f64>> {
    let (n, t) = data.x.dims2()?;
    if t % 2 != 0 || batch == 0 {
        return Err(Error::Invalid(format!("accuracy_by_shots: sequences of pairs have an even length; got {t}")));
    }
    let labels = Tensor::arange(task.label_token(0), task.label_token(0) + task.n_labels() as u32, data.x.device())?;
    let mut correct = vec![0usize; t / 2];
    for start in (0..n).step_by(batch) {
        let m = batch.min(n - start);
        // Logits at the words' positions (0, 2, 4, ...), restricted to the label tokens: [m, pairs, L].
        let logits = model.forward(&data.x.narrow(0, start, m)?)?;
        let at_words = logits.reshape((m, t / 2, 2, logits.dims()[2]))?.narrow(2, 0, 1)?.squeeze(2)?.contiguous()?;
        let guess = at_words.index_select(&labels, 2)?.argmax(2)?.to_vec2::<u32>()?;
        let truth =
            data.y.narrow(0, start, m)?.reshape((m, t / 2, 2))?.narrow(2, 0, 1)?.squeeze(2)?.to_vec2::<u32>()?;
        for (g, y) in guess.iter().zip(&truth) {
            for k in 0..t / 2 {
                correct[k] += usize::from(task.label_token(g[k] as usize) == y[k]);
            }
        }
    }
    Ok(correct.iter().map(|&c| c as f64 / n as f64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_follow_one_labelling_each_and_the_optimum_is_exact() -> Result<()> {
        let task = LabelMappingTask::standard();
        assert_eq!((task.n_words(), task.n_categories(), task.vocab_size()), (24, 4, 26));
        let dev = Device::Cpu;
        let data = task.sequences(400, 10, &mut Rng::new(5), &dev)?;
        let (x, y) = (data.x.to_vec2::<u32>()?, data.y.to_vec2::<u32>()?);
        let (mut flips, mut informed) = (0, 0);
        for (xr, yr) in x.iter().zip(&y) {
            assert_eq!(&xr[1..], &yr[..19], "targets are the next tokens");
            let mut seen: std::collections::HashMap<&str, u32> = Default::default();
            for k in 0..10 {
                let (w, l) = (xr[2 * k], xr[2 * k + 1]);
                assert!(w < 24 && (24..26).contains(&l), "{xr:?}");
                if let Some(&prev) = seen.get(task.category(w)) {
                    assert_eq!(prev, l, "one labelling per sequence");
                }
                seen.insert(task.category(w), l);
            }
            // Different sequences label the same category differently.
            flips += usize::from(xr[1] != x[0][1]);
            // The simulated optimum on label 5: right when its category was seen, a coin toss otherwise.
            let cat = task.category(xr[10]);
            informed += usize::from((0..5).any(|k| task.category(xr[2 * k]) == cat));
        }
        assert!(flips > 100, "{flips}");
        let expected_informed = 1.0 - 0.75f64.powi(5);
        assert!((informed as f64 / 400.0 - expected_informed).abs() < 0.06, "{informed}");
        assert!((task.bayes_accuracy(5) - (1.0 - 0.5 * 0.75f64.powi(5))).abs() < 1e-12);
        assert_eq!(data.x.to_vec2::<u32>()?, task.sequences(400, 10, &mut Rng::new(5), &dev)?.x.to_vec2::<u32>()?);
        assert!(LabelMappingTask::new(&[("a", &["x"][..]), ("b", &["x"][..])], 2).is_err());
        assert!(LabelMappingTask::new(&[("a", &["x"][..]), ("b", &["y"][..])], 1).is_err());
        Ok(())
    }

    /// A hand-made predictor that reads the label an earlier word of the category got scores the optimum's
    /// accuracy (within sampling error), and one that ignores the context scores chance: the metric can tell them
    /// apart.
    #[test]
    fn the_metric_separates_a_reader_of_the_context_from_a_guesser() -> Result<()> {
        struct Reader(LabelMappingTask, bool);
        impl Module for Reader {
            fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
                let rows = x.to_vec2::<u32>()?;
                let v = self.0.vocab_size();
                let mut out = vec![0f32; rows.len() * rows[0].len() * v];
                for (b, r) in rows.iter().enumerate() {
                    for (t, &tok) in r.iter().enumerate() {
                        if t % 2 == 1 || !self.1 {
                            continue;
                        }
                        let cat = self.0.category(tok);
                        // The latest earlier label of the same category; none: label A.
                        let l = (0..t / 2).rev().find(|&k| self.0.category(r[2 * k]) == cat).map(|k| r[2 * k + 1]);
                        out[(b * r.len() + t) * v + l.unwrap_or(self.0.label_token(0)) as usize] = 1.0;
                    }
                }
                Tensor::from_vec(out, (rows.len(), rows[0].len(), v), x.device())
            }
        }
        let task = LabelMappingTask::standard();
        let data = task.sequences(3000, 8, &mut Rng::new(9), &Device::Cpu)?;
        let reader = accuracy_by_shots(&Reader(task.clone(), true), &task, &data, 512)?;
        let blind = accuracy_by_shots(&Reader(task.clone(), false), &task, &data, 512)?;
        for k in 0..8 {
            // The reader guesses A when it has not seen the category: right half the time, like the optimum.
            assert!((reader[k] - task.bayes_accuracy(k)).abs() < 0.03, "k = {k}: {reader:?}");
            assert!((blind[k] - 0.5).abs() < 0.04, "k = {k}: {blind:?}");
        }
        Ok(())
    }
}
