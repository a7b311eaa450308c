//! Word vectors and what is done with them: cosine neighbours, analogies, similarity benchmarks, a 2-D map.

use candle_core::{Device, Tensor};

use super::vocab::Vocab;
use crate::data::words::{AnalogySection, WordPair};
use crate::rng::Rng;
use crate::train::spearman;
use crate::{Error, Result};

/// Word vectors with their vocabulary. Similarities are cosines; the unit-length copy of every vector is kept
/// for that.
///
/// ```
/// use dlhist::sequence_modeling::word2vec::{Embeddings, Vocab};
/// let vocab = Vocab::from_counts(vec![("king".into(), 3), ("queen".into(), 2), ("apple".into(), 1)]);
/// let e = Embeddings::new(vocab, 2, vec![1.0, 0.1, 0.9, 0.2, -0.1, 1.0])?;
/// assert_eq!(e.nearest("king", 1)?[0].0, "queen");
/// assert!(e.similarity("king", "apple")? < 0.1);
/// assert!(e.similarity("king", "pear").unwrap_err().to_string().contains("not in the vocabulary"));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Embeddings {
    vocab: Vocab,
    dim: usize,
    vectors: Vec<f32>,
    unit: Vec<f32>,
}

/// Spearman's ρ of a model's cosines against human scores, and how many pairs it could score.
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarityScore {
    /// Spearman's rank correlation over the pairs whose words are both in the vocabulary.
    pub rho: f64,
    /// Pairs scored.
    pub pairs_used: usize,
    /// Pairs in the test set.
    pub pairs_total: usize,
}

/// Analogy results of one section of the test set.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalogySectionScore {
    /// The section's name (`capital-common-countries`, `gram3-comparative`, ...).
    pub name: String,
    /// Whether it is a syntactic (`gram…`) section.
    pub syntactic: bool,
    /// Questions answered exactly right.
    pub correct: usize,
    /// Questions whose four words are all among the top-N words (the others are skipped).
    pub answered: usize,
    /// Questions in the section.
    pub total: usize,
}

/// Analogy accuracy over a test set, per section.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalogyScore {
    /// The N of "the N most frequent words" that questions and answers were restricted to.
    pub restrict: usize,
    /// Per section.
    pub sections: Vec<AnalogySectionScore>,
}

impl AnalogyScore {
    fn sum(&self, keep: impl Fn(&AnalogySectionScore) -> bool) -> (usize, usize, usize) {
        self.sections
            .iter()
            .filter(|s| keep(s))
            .fold((0, 0, 0), |(c, a, t), s| (c + s.correct, a + s.answered, t + s.total))
    }

    fn ratio((c, a, _): (usize, usize, usize)) -> f64 {
        if a == 0 {
            0.0
        } else {
            c as f64 / a as f64
        }
    }

    /// Correct / answered over every section (0 when nothing could be answered).
    pub fn accuracy(&self) -> f64 {
        Self::ratio(self.sum(|_| true))
    }

    /// Correct / answered over the semantic sections.
    pub fn semantic_accuracy(&self) -> f64 {
        Self::ratio(self.sum(|s| !s.syntactic))
    }

    /// Correct / answered over the syntactic sections.
    pub fn syntactic_accuracy(&self) -> f64 {
        Self::ratio(self.sum(|s| s.syntactic))
    }

    /// (semantic, syntactic) questions answered: those whose words are all in the top N.
    pub fn answered(&self) -> (usize, usize) {
        (self.sum(|s| !s.syntactic).1, self.sum(|s| s.syntactic).1)
    }

    /// Questions in the test set.
    pub fn total(&self) -> usize {
        self.sum(|_| true).2
    }
}

fn normalize(vectors: &[f32], dim: usize) -> Vec<f32> {
    let mut unit = vectors.to_vec();
    for row in unit.chunks_exact_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    unit
}

fn cosine_rows(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Embeddings {
    /// Vectors `vectors` (row-major `[vocab.len(), dim]`) for the words of `vocab`.
    ///
    /// Errors when the lengths do not match.
    pub fn new(vocab: Vocab, dim: usize, vectors: Vec<f32>) -> Result<Embeddings> {
        if dim == 0 || vectors.len() != vocab.len() * dim {
            return Err(Error::Invalid(format!(
                "Embeddings: {} words of dimension {dim} need {} floats; got {}",
                vocab.len(),
                vocab.len() * dim,
                vectors.len()
            )));
        }
        let unit = normalize(&vectors, dim);
        Ok(Embeddings { vocab, dim, vectors, unit })
    }

    /// Random vectors (independent standard normals) for the words of `vocab`: the baseline every trained model
    /// must beat. Their cosines carry no information, so their Spearman ρ and analogy accuracy are about 0.
    pub fn random(vocab: Vocab, dim: usize, seed: u64) -> Embeddings {
        let vectors = Rng::new(seed).fork("random-embeddings").normal_vec(vocab.len() * dim, 0.0, 1.0);
        Embeddings::new(vocab, dim, vectors).expect("sizes match by construction")
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The vector size.
    pub fn dim(&self) -> usize {
        self.dim
    }

    fn id(&self, word: &str) -> Result<u32> {
        self.vocab.id(word).ok_or_else(|| {
            Error::Invalid(format!(
                "the word {word:?} is not in the vocabulary ({} words; words under min_count are dropped, and \
                 phrases are spelled with underscores, like new_york)",
                self.vocab.len()
            ))
        })
    }

    fn unit_row(&self, id: u32) -> &[f32] {
        &self.unit[id as usize * self.dim..(id as usize + 1) * self.dim]
    }

    /// The vector of `word` as trained (not normalized).
    pub fn vector(&self, word: &str) -> Result<&[f32]> {
        let id = self.id(word)? as usize;
        Ok(&self.vectors[id * self.dim..(id + 1) * self.dim])
    }

    /// The cosine similarity of two words.
    pub fn similarity(&self, a: &str, b: &str) -> Result<f32> {
        Ok(cosine_rows(self.unit_row(self.id(a)?), self.unit_row(self.id(b)?)))
    }

    /// The `k` words closest to `word` by cosine, with their cosines, most similar first (`word` itself left
    /// out).
    pub fn nearest(&self, word: &str, k: usize) -> Result<Vec<(String, f32)>> {
        let id = self.id(word)?;
        let query = self.unit_row(id).to_vec();
        Ok(self.nearest_to(&query, k, &[id]))
    }

    /// The `k` words closest by cosine to an arbitrary vector of size `dim`, leaving out the ids in `exclude`.
    fn nearest_to(&self, query: &[f32], k: usize, exclude: &[u32]) -> Vec<(String, f32)> {
        let mut scored: Vec<(u32, f32)> = self
            .unit
            .chunks_exact(self.dim)
            .enumerate()
            .filter(|(i, _)| !exclude.contains(&(*i as u32)))
            .map(|(i, row)| (i as u32, cosine_rows(query, row)))
            .collect();
        let k = k.min(scored.len());
        if k == 0 {
            return vec![];
        }
        scored.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
        scored.truncate(k);
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.into_iter().map(|(i, s)| (self.vocab.word(i).to_string(), s)).collect()
    }

    /// "`a` is to `b` as `c` is to ?" by 3CosAdd (Mikolov et al. 2013a): the word whose unit vector is closest
    /// by cosine to `b − a + c` (of unit vectors), among the `restrict` most frequent words, `a`, `b` and `c`
    /// excluded.
    pub fn analogy(&self, a: &str, b: &str, c: &str, restrict: usize) -> Result<String> {
        let ids = [self.id(a)?, self.id(b)?, self.id(c)?];
        let query: Vec<f32> = (0..self.dim)
            .map(|j| self.unit_row(ids[1])[j] - self.unit_row(ids[0])[j] + self.unit_row(ids[2])[j])
            .collect();
        let n = restrict.min(self.vocab.len());
        let best = self.unit[..n * self.dim]
            .chunks_exact(self.dim)
            .enumerate()
            .filter(|(i, _)| !ids.contains(&(*i as u32)))
            .map(|(i, row)| (i, cosine_rows(&query, row)))
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .ok_or_else(|| Error::Invalid(format!("analogy: restrict = {restrict} leaves no candidate word")))?;
        Ok(self.vocab.word(best.0 as u32).to_string())
    }

    /// Spearman's ρ between the model's cosines and the human scores of `pairs` (WordSim353, SimLex-999 from
    /// `dlhist::data::words::word_similarity`), over the pairs whose two words are in the vocabulary (gensim's
    /// `evaluate_word_pairs` protocol). Errors when fewer than two pairs can be scored.
    pub fn evaluate_similarity(&self, pairs: &[WordPair]) -> Result<SimilarityScore> {
        let (mut model, mut human) = (vec![], vec![]);
        for p in pairs {
            if let (Some(a), Some(b)) = (self.vocab.id(&p.a), self.vocab.id(&p.b)) {
                model.push(f64::from(cosine_rows(self.unit_row(a), self.unit_row(b))));
                human.push(f64::from(p.score));
            }
        }
        if model.len() < 2 {
            return Err(Error::Invalid(format!(
                "evaluate_similarity: only {} of {} pairs have both words in the vocabulary; train on more text",
                model.len(),
                pairs.len()
            )));
        }
        Ok(SimilarityScore { rho: spearman(&model, &human)?, pairs_used: model.len(), pairs_total: pairs.len() })
    }

    /// Analogy accuracy by 3CosAdd over `sections` (from `dlhist::data::words::analogy_questions`), restricted to
    /// the `restrict` most frequent words as word2vec.c's `compute-accuracy` and gensim's
    /// `evaluate_word_analogies` do: a question with any word outside them is skipped, answers are searched among
    /// them, and the three question words are never an answer. The cosines are one matrix product per batch of
    /// questions.
    pub fn evaluate_analogies(&self, sections: &[AnalogySection], restrict: usize) -> Result<AnalogyScore> {
        let n = restrict.min(self.vocab.len());
        let dev = Device::Cpu;
        let candidates = Tensor::from_slice(&self.unit[..n * self.dim], (n, self.dim), &dev)?;
        let candidates_t = candidates.t()?;
        let mut scores = vec![];
        for section in sections {
            let in_top = |w: &str| self.vocab.id(w).filter(|&i| (i as usize) < n);
            let questions: Vec<[u32; 4]> = section
                .questions
                .iter()
                .filter_map(|q| Some([in_top(&q[0])?, in_top(&q[1])?, in_top(&q[2])?, in_top(&q[3])?]))
                .collect();
            let mut correct = 0;
            for batch in questions.chunks(512) {
                let mut queries = Vec::with_capacity(batch.len() * self.dim);
                for q in batch {
                    let (a, b, c) = (self.unit_row(q[0]), self.unit_row(q[1]), self.unit_row(q[2]));
                    queries.extend((0..self.dim).map(|j| b[j] - a[j] + c[j]));
                }
                let sims: Vec<Vec<f32>> =
                    Tensor::from_vec(queries, (batch.len(), self.dim), &dev)?.matmul(&candidates_t)?.to_vec2()?;
                for (q, row) in batch.iter().zip(&sims) {
                    let best = row
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !q[..3].contains(&(*i as u32)))
                        .max_by(|x, y| x.1.total_cmp(y.1))
                        .map(|(i, _)| i as u32);
                    correct += usize::from(best == Some(q[3]));
                }
            }
            scores.push(AnalogySectionScore {
                name: section.name.clone(),
                syntactic: section.is_syntactic(),
                correct,
                answered: questions.len(),
                total: section.questions.len(),
            });
        }
        Ok(AnalogyScore { restrict: n, sections: scores })
    }

    /// A 2-D map of `words` by principal component analysis of their unit vectors: the two directions of
    /// largest variance among them (power iteration on the covariance matrix, then deflation), and each word's
    /// coordinates along them. Errors on unknown words or fewer than three words.
    pub fn project_2d<S: AsRef<str>>(&self, words: &[S]) -> Result<Vec<(f64, f64)>> {
        if words.len() < 3 {
            return Err(Error::Invalid(format!("project_2d needs at least 3 words; got {}", words.len())));
        }
        let rows: Vec<Vec<f64>> = words
            .iter()
            .map(|w| Ok(self.unit_row(self.id(w.as_ref())?).iter().map(|&v| f64::from(v)).collect()))
            .collect::<Result<_>>()?;
        let pca = crate::plot::Pca::fit(&rows, 2)?;
        rows.iter().map(|r| pca.project(r).map(|p| (p[0], p[1]))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analogies_by_3cosadd_and_their_restriction() {
        // man → woman is the same offset as king → queen; "apple" is a distractor.
        let words = ["man", "woman", "king", "queen", "apple"];
        let vocab = Vocab::from_counts(words.iter().enumerate().map(|(i, w)| (w.to_string(), 10 - i as u64)).collect());
        let v = vec![1.0, 0.0, 0.2, 1.0, 0.0, 1.0, 1.0, 0.3, 0.3, 1.0, 0.3, 1.3, 0.0, 0.2, -1.0];
        let e = Embeddings::new(vocab, 3, v).unwrap();
        assert_eq!(e.analogy("man", "woman", "king", 5).unwrap(), "queen");
        let section = AnalogySection {
            name: "family".into(),
            questions: vec![
                ["man", "woman", "king", "queen"].map(String::from),
                ["man", "woman", "king", "zebra"].map(String::from),
            ],
        };
        let score = e.evaluate_analogies(std::slice::from_ref(&section), 5).unwrap();
        assert_eq!((score.sections[0].correct, score.sections[0].answered, score.total()), (1, 1, 2));
        assert_eq!(score.accuracy(), 1.0);
        // Restricted to the top 3 words, "queen" (4th) is out: the question is skipped.
        assert_eq!(e.evaluate_analogies(&[section], 3).unwrap().sections[0].answered, 0);
        assert!(Embeddings::new(Vocab::from_counts(vec![("a".into(), 1)]), 2, vec![1.0]).is_err());
    }
}
