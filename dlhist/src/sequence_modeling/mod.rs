//! Section 03: sequence modeling.
//!
//! | milestone | module |
//! | --- | --- |
//! | fully recurrent tanh RNN (Williams & Zipser 1989, Elman 1990) | [`rnn`] |
//! | LSTM (Hochreiter & Schmidhuber 1997; forget gate: Gers, Schmidhuber & Cummins 2000) | [`lstm`] |
//! | GRU (Cho et al. 2014), the reset gate before or after the recurrent product | [`gru`] |
//! | the RNN encoder-decoder (Sutskever, Vinyals & Le 2014; Cho et al. 2014): fixed-vector summary, source reversal, greedy and beam decoding | [`seq2seq`] |
//! | sparsely-gated mixture of experts (Shazeer et al. 2017) | [`moe`] |
//! | RNNsearch: a bidirectional encoder and additive attention (Bahdanau, Cho & Bengio 2014) | [`attention`] |
//! | word2vec: skip-gram and CBOW with negative sampling, subsampling, phrases (Mikolov et al. 2013a, 2013b) | [`word2vec`] |

pub mod attention;
pub mod gru;
pub mod lstm;
pub mod moe;
pub mod rnn;
pub mod seq2seq;
pub mod word2vec;

pub use gru::{Gru, GruVariant};
pub use lstm::{Lstm, LstmConfig};
pub use rnn::Rnn;
