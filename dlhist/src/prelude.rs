//! `use dlhist::prelude::*;`: what a notebook needs in scope.

pub use candle_core::{DType, Device, IndexOp, Module, ModuleT, Tensor, Var, D};
pub use candle_nn::{Optimizer, VarBuilder, VarMap};
// A `VarBuilder` kept in a notebook variable has the type `VarBuilderArgs<Box<dyn SimpleBackend>>`, which
// evcxr must be able to name when it stores the variable between cells.
pub use candle_nn::var_builder::{SimpleBackend, VarBuilderArgs};

pub use crate::data::Dataset;
pub use crate::deep_neural_networks::Mlp;
pub use crate::layers::{Activation, Dense, Dropout};
pub use crate::optim::{LrSchedule, RmsProp, RmsPropConfig, Sgd, SgdConfig};
pub use crate::optimization::{
    Adam, AdamConfig, AdamW, AdamWConfig, BatchNorm, DeepMlp, DeepMlpConfig, LayerNorm, Norm,
};
pub use crate::rng::Rng;
pub use crate::train::{fit, CrossEntropy, Experiment, FitConfig, History, Loss, Mse, Trial};
pub use crate::{device, Error, Result};
