//! rankgrad: learning-to-rank losses, gradients and metrics.
//!
//! The kernels take slices and know nothing of Python; `py` (feature `python`) is the one
//! bindings layer. Every kernel is parallel over lists (rayon) and computes each list on one
//! thread in a fixed order, so results do not depend on the number of threads.

pub mod approx;
pub mod batch;
pub mod error;
pub mod float;
pub mod gains;
pub mod lambdarank;
pub mod listwise;
pub mod metrics;
pub mod pad;
pub mod ragged;
pub mod ranknet;
pub mod xendcg;

#[cfg(feature = "python")]
mod py;

#[cfg(test)]
mod testing;

pub use error::{Error, Result};
pub use float::Float;
