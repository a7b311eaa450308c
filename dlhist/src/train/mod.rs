//! Training: batching, the training loop, metrics, history, progress.
//!
//! ```text
//! Dataset --Batcher--> (x, y) --train_step--> loss, gradients, update --> History --> tables, plots
//! ```

mod batcher;
mod experiment;
mod fit;
pub(crate) use fit::scalar;
mod history;
mod loss;
mod metrics;
mod progress;
mod seeds;
mod text_metrics;

pub use batcher::{for_batches, Batcher};
pub use experiment::{Experiment, Run, Trial};
pub use fit::{
    evaluate, fit, on_step, predict_classes, test_accuracy, train_step, Control, Evaluation, FitConfig, OnStep, StepEnd,
};
pub use history::{History, Record};
pub use loss::{BinaryCrossEntropyWithLogits, CrossEntropy, Loss, Mse, SharedLoss, TokenCrossEntropy};
pub use metrics::{accuracy, boundary_iou, correct_count, iou, mean_squared_error, pixel_accuracy, sparsity, spearman};
pub use progress::Progress;
pub use seeds::{t_critical_975, Paired, Summary};
pub use text_metrics::{corpus_bleu, edit_distance, sequence_error_rate, token_error_rate};
