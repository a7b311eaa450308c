//! `use dlhist::prelude::*;`: what a notebook needs in scope.

pub use candle_core::{DType, Device, IndexOp, Module, ModuleT, Tensor, D};
pub use candle_nn::{Optimizer, VarBuilder, VarMap};

pub use crate::rng::Rng;
pub use crate::{device, Error, Result};
