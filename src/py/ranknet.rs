//! Bindings for RankNet (`crate::ranknet`).

use numpy::Element;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arrays::{by_dtype, float_dtype, padded_loss_weighted};
use crate::float::Float;
use crate::ranknet;

fn ranknet_impl<'py, F: Float + Element>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    weights: Option<&Bound<'py, PyAny>>,
    sigma: f64,
    need_grad: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let sigma = F::from_f64(sigma);
    padded_loss_weighted::<F, _>(
        py,
        scores,
        targets,
        mask,
        weights,
        need_grad,
        |batch, losses, valid, grad| ranknet::ranknet_loss(batch, sigma, losses, valid, grad),
    )
}

/// `(losses [B], valid [B] bool, grad [B, N] or None)`: per-list RankNet losses and the
/// gradient of each list's loss with respect to its scores; `weights`: per-item weights
/// `[B, N]` in the dtype of scores (SPEC 13), or None.
#[pyfunction]
#[pyo3(signature = (scores, targets, mask, sigma, need_grad, weights=None))]
fn ranknet_loss<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    sigma: f64,
    need_grad: bool,
    weights: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    by_dtype!(float_dtype(scores, "scores", 2)?, |F| ranknet_impl::<F>(
        py, scores, targets, mask, weights, sigma, need_grad
    ))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ranknet_loss, m)?)?;
    Ok(())
}
