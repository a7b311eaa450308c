//! Word2Vec: skip-gram and CBOW with negative sampling, subsampling and phrases.
//!
//! - T. Mikolov, K. Chen, G. Corrado, J. Dean, *Efficient Estimation of Word Representations in Vector Space*,
//!   2013 (arXiv:1301.3781, <https://arxiv.org/abs/1301.3781>): the two architectures, continuous bag of words
//!   (CBOW) and continuous skip-gram, and the analogy test set.
//! - T. Mikolov, I. Sutskever, K. Chen, G. Corrado, J. Dean, *Distributed Representations of Words and Phrases
//!   and their Compositionality*, NIPS 2013 (arXiv:1310.4546, <https://arxiv.org/abs/1310.4546>): negative
//!   sampling, subsampling of frequent words, phrases.
//!
//! Skip-gram maximizes, over a corpus `w_1 … w_T`, the average log-probability of each word's context,
//! `1/T Σ_t Σ_{−c ≤ j ≤ c, j ≠ 0} log p(w_{t+j} | w_t)`. Negative sampling (2013b, equation 4) replaces each
//! `log p(w_O | w_I)` by a logistic regression that tells the true pair from `k` noise words drawn from the
//! unigram distribution raised to 3/4:
//!
//! ```text
//! log σ(v'_{w_O} · v_{w_I}) + Σ_{i=1}^{k} E_{w_i ~ P_n(w)} [ log σ(−v'_{w_i} · v_{w_I}) ]
//! ```
//!
//! Every term touches one input vector `v` and `k + 1` output vectors `v'`: a step changes a few hundred floats
//! of matrices with millions, so training is plain SGD on those rows ([`Word2Vec::train`]), not a dense
//! autograd graph, and threads share the matrices without locks (Hogwild), as word2vec.c and gensim do.
//! CBOW uses the mean of the context's input vectors as `v_{w_I}` and predicts the middle word.
//!
//! | piece | where |
//! | --- | --- |
//! | vocabulary with `min_count` | [`Vocab`] |
//! | subsampling of frequent words (word2vec.c's formula, see [`keep_probability`]) | [`keep_probability`] |
//! | negatives from unigram^0.75 | [`NegativeSampler`] |
//! | skip-gram / CBOW training, linear learning-rate decay, Hogwild threads | [`Word2Vec`], [`Word2VecConfig`] |
//! | the phrase score `(count(ab) − δ) / (count(a)·count(b))` and one joining pass | [`phrase_score`], [`phrase_pass`] |
//! | cosine neighbours, 3CosAdd analogies, Spearman ρ on word pairs, a PCA map | [`Embeddings`] |
//!
//! Reproducibility: every random draw comes from [`crate::rng::Rng`] streams derived from the seed. With one
//! thread a seed gives bit-identical vectors on every run. With several threads (Hogwild) the order in which
//! threads' updates land differs from run to run, so the vectors differ slightly between runs (their quality
//! does not, beyond noise); exact comparisons use one thread.

mod embeddings;
mod phrases;
mod sampling;
mod train;
mod vocab;

pub use embeddings::{AnalogyScore, AnalogySectionScore, Embeddings, SimilarityScore};
pub use phrases::{phrase_pass, phrase_score, Phrase, PhraseConfig, PhrasePass};
pub use sampling::{keep_probability, NegativeSampler};
pub use train::{Architecture, TrainReport, Word2Vec, Word2VecConfig};
pub use vocab::Vocab;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A corpus from a toy grammar: "animal" words and "fruit" words fill the same slots of their own sentence
    /// frames, so cat and dog share contexts, and so do apple and pear, but no animal shares a frame with a fruit.
    fn toy_corpus(n: usize, seed: u64) -> Vec<String> {
        let animals = ["cat", "dog", "horse"];
        let fruits = ["apple", "pear", "plum"];
        let mut rng = Rng::new(seed);
        let mut out = vec![];
        for _ in 0..n {
            let frame: &[&str] = if rng.below(2) == 0 {
                &["the", "ANIMAL", "runs", "and", "barks", "at", "night"]
            } else {
                &["a", "FRUIT", "is", "sweet", "ripe", "and", "juicy"]
            };
            for w in frame {
                out.push(match *w {
                    "ANIMAL" => animals[rng.below(3)].to_string(),
                    "FRUIT" => fruits[rng.below(3)].to_string(),
                    w => w.to_string(),
                });
            }
        }
        out
    }

    fn small(arch: Architecture) -> Word2VecConfig {
        Word2VecConfig {
            architecture: arch,
            dim: 16,
            window: 3,
            min_count: 1,
            epochs: 3,
            sample: 0.0,
            threads: 1,
            seed: 5,
            sentence_len: 1000,
            ..Word2VecConfig::skip_gram()
        }
    }

    #[test]
    fn words_that_share_contexts_end_up_closer_than_unrelated_words() {
        let corpus = toy_corpus(3000, 1);
        for arch in [Architecture::SkipGram, Architecture::Cbow] {
            let e = Word2Vec::train(&corpus, &small(arch)).unwrap().embeddings();
            let same = e.similarity("cat", "dog").unwrap().min(e.similarity("apple", "pear").unwrap());
            let across = e.similarity("cat", "apple").unwrap().max(e.similarity("dog", "pear").unwrap());
            assert!(same > across + 0.3, "{arch:?}: within {same}, across {across}");
            let random = Embeddings::random(e.vocab().clone(), 16, 0);
            assert!(
                (random.similarity("cat", "dog").unwrap() - random.similarity("cat", "apple").unwrap()).abs() < 0.9
            );
        }
    }

    #[test]
    fn one_thread_is_bit_identical_for_a_seed_and_seeds_differ() {
        let corpus = toy_corpus(500, 2);
        for arch in [Architecture::SkipGram, Architecture::Cbow] {
            let cfg = Word2VecConfig { sample: 1e-2, ..small(arch) };
            let a = Word2Vec::train(&corpus, &cfg).unwrap();
            let b = Word2Vec::train(&corpus, &cfg).unwrap();
            assert_eq!(a.input_vectors(), b.input_vectors());
            assert_eq!(a.output_vectors(), b.output_vectors());
            let c = Word2Vec::train(&corpus, &Word2VecConfig { seed: 6, ..cfg }).unwrap();
            assert_ne!(a.input_vectors(), c.input_vectors());
        }
    }

    #[test]
    fn hogwild_threads_train_as_well_and_report_their_work() {
        let corpus = toy_corpus(3000, 3);
        let cfg = Word2VecConfig { threads: 2, ..small(Architecture::SkipGram) };
        let m = Word2Vec::train(&corpus, &cfg).unwrap();
        assert_eq!(m.report().threads, 2);
        assert_eq!(m.report().trained_words, 3 * corpus.len() as u64, "no subsampling: every word, every epoch");
        let e = m.embeddings();
        assert!(e.similarity("cat", "dog").unwrap() > e.similarity("cat", "apple").unwrap() + 0.3);
    }

    #[test]
    fn examples_count_pairs_for_skip_gram_and_windows_for_cbow() {
        let corpus = toy_corpus(3000, 3);
        let n = corpus.len() as u64;
        let sg = Word2Vec::train(&corpus, &Word2VecConfig { threads: 1, ..small(Architecture::SkipGram) }).unwrap();
        let cbow = Word2Vec::train(&corpus, &Word2VecConfig { threads: 1, ..small(Architecture::Cbow) }).unwrap();
        let (epochs, window) = (cbow.config().epochs as u64, sg.config().window as f64);
        // CBOW: one window per position (no subsampling here); a one-word last sentence would have none.
        let c = cbow.report().examples;
        assert!(c <= epochs * n && c >= epochs * (n - 1), "{c} windows for {n} words × {epochs} epochs");
        // Skip-gram: 2·reach pairs per position, reach uniform in 1..=window, so window + 1 on average (fewer at
        // sentence edges).
        let ratio = sg.report().examples as f64 / c as f64;
        assert!(ratio > 0.9 * (window + 1.0) && ratio < window + 1.1, "{ratio}");
    }

    #[test]
    fn subsampling_drops_frequent_words_only() {
        let corpus = toy_corpus(2000, 4);
        let cfg = Word2VecConfig { sample: 1e-2, epochs: 1, ..small(Architecture::Cbow) };
        let m = Word2Vec::train(&corpus, &cfg).unwrap();
        let r = m.report();
        assert!(r.trained_words < r.vocab_words * 9 / 10, "{r:?}");
        // The frame words (each about 1/14 of the corpus) are cut; the six content words (about 1/42) are not:
        // at f ≈ 2.4 t the keep probability is (sqrt(2.4) + 1)/2.4 ≈ 1.06, capped at 1.
        let total = m.vocab().total();
        assert_eq!(keep_probability(m.vocab().count(m.vocab().id("cat").unwrap()), total, 1e-2), 1.0);
        assert!(keep_probability(m.vocab().count(m.vocab().id("and").unwrap()), total, 1e-2) < 0.6);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let empty: Vec<String> = vec![];
        let e = Word2Vec::train(&empty, &Word2VecConfig::skip_gram()).unwrap_err().to_string();
        assert!(e.contains("corpus is empty"), "{e}");
        let one: Vec<String> = vec!["a".into(); 10];
        let e = Word2Vec::train(&one, &Word2VecConfig::skip_gram()).unwrap_err().to_string();
        assert!(e.contains("at least two"), "{e}");
        let e = Word2Vec::train(&toy_corpus(10, 0), &Word2VecConfig { dim: 0, ..Word2VecConfig::cbow() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("dim, window"), "{e}");
        let m = Word2Vec::train(&toy_corpus(50, 0), &small(Architecture::SkipGram)).unwrap();
        let e = m.embeddings().nearest("zebra", 3).unwrap_err().to_string();
        assert!(e.contains("\"zebra\" is not in the vocabulary"), "{e}");
    }
}
