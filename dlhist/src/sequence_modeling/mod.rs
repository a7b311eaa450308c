//! Section 03: sequence modeling.
//!
//! | milestone | module |
//! | --- | --- |
//! | LSTM (Hochreiter & Schmidhuber 1997; forget gate: Gers, Schmidhuber & Cummins 2000) | [`lstm`] |

pub mod lstm;

pub use lstm::{Lstm, LstmConfig};
