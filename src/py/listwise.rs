//! Bindings for the LambdaLoss framework (`crate::listwise`).

use numpy::Element;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arrays::{by_dtype, count_arg, float_dtype, padded_loss_weighted};
use crate::float::Float;
use crate::listwise::{lambda_loss as kernel, Options, Weighting};

fn lambda_loss_impl<'py, F: Float + Element>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    weights: Option<&Bound<'py, PyAny>>,
    opts: Options,
    need_grad: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    padded_loss_weighted::<F, _>(
        py,
        scores,
        targets,
        mask,
        weights,
        need_grad,
        |batch, losses, valid, grad| kernel(batch, &opts, losses, valid, grad),
    )
}

/// `(losses [B], valid [B] bool, grad [B, N] or None)`: per-list LambdaLoss values and the
/// gradient of each list's loss with respect to its scores; `weights`: per-item weights
/// `[B, N]` in the dtype of scores (SPEC 13), or None.
#[pyfunction]
#[pyo3(signature = (scores, targets, mask, weighting, sigma, k, mu, scale_gains, need_grad, weights=None))]
#[allow(clippy::too_many_arguments)]
fn lambda_loss<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    weighting: &str,
    sigma: f64,
    k: Option<&Bound<'py, PyAny>>,
    mu: f64,
    scale_gains: bool,
    need_grad: bool,
    weights: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let weighting = Weighting::parse(weighting)?;
    let k = count_arg(k, "k")?;
    let opts = Options { weighting, sigma, k, mu, scale_gains };
    by_dtype!(float_dtype(scores, "scores", 2)?, |F| lambda_loss_impl::<F>(
        py, scores, targets, mask, weights, opts, need_grad
    ))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(lambda_loss, m)?)?;
    Ok(())
}
