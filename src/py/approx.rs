//! Bindings for the approximate-rank family (`crate::approx`).

use numpy::{Element, IntoPyArray, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arrays::{array2, as_rows, by_dtype, float_dtype, mask_rows, padded_loss, same_shape, shape_of};
use super::run_kernel;
use crate::approx::{self, ApproxLoss, Discount};
use crate::batch::Padded;
use crate::float::Float;

fn parse_kind(kind: &str, scale_gains: bool, discount: Option<&str>) -> PyResult<ApproxLoss> {
    Ok(match kind {
        "ndcg" => ApproxLoss::Ndcg { scale_gains },
        "mrr" => ApproxLoss::Mrr,
        "rank_mse" => ApproxLoss::RankMse {
            discount: match discount {
                None | Some("none") => Discount::None,
                Some("log2") => Discount::Log2,
                Some("reciprocal") => Discount::Reciprocal,
                Some(d) => {
                    return Err(PyValueError::new_err(format!(
                        "discount must be None, 'log2' or 'reciprocal', got {d:?}"
                    )))
                }
            },
        },
        k => return Err(PyValueError::new_err(format!("unknown approx loss {k:?}"))),
    })
}

fn ranks_impl<'py, F: Float + Element>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    temperature: f64,
    grad_ranks: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let s = array2::<F>(scores, "scores", "float32 or float64")?;
    let shape = shape_of(&s);
    let m = mask_rows(mask, shape)?;
    let g = match grad_ranks {
        Some(g) => {
            let g = array2::<F>(g, "grad_ranks", "the dtype of scores")?;
            same_shape(&g, "grad_ranks", shape)?;
            Some(g)
        }
        None => None,
    };
    let (sv, mv, gv) = (as_rows(&s), m.as_ref().map(as_rows), g.as_ref().map(as_rows));
    let t = F::from_f64(temperature);
    let out = run_kernel(py, || {
        let batch = Padded::new(&sv, None, mv.as_deref(), shape.0, shape.1)?;
        let mut out = vec![F::ZERO; shape.0 * shape.1];
        match &gv {
            None => approx::approx_ranks(&batch, t, &mut out)?,
            Some(g) => approx::approx_ranks_backward(&batch, t, g, &mut out)?,
        }
        Ok(out)
    })?;
    Ok(out.into_pyarray(py).reshape([shape.0, shape.1])?.into_any())
}

#[allow(clippy::too_many_arguments)]
fn loss_impl<'py, F: Float + Element>(
    py: Python<'py>,
    kind: ApproxLoss,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    temperature: f64,
    need_grad: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let t = F::from_f64(temperature);
    padded_loss::<F, _>(py, scores, targets, mask, need_grad, |batch, losses, valid, grad| {
        approx::approx_loss(batch, t, kind, losses, valid, grad)
    })
}

/// Approximate ranks `[B, N]` (0 at padded positions).
#[pyfunction]
#[pyo3(signature = (scores, mask, temperature))]
fn approx_ranks<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    temperature: f64,
) -> PyResult<Bound<'py, PyAny>> {
    by_dtype!(float_dtype(scores, "scores", 2)?, |F| ranks_impl::<F>(py, scores, mask, temperature, None))
}

/// The gradient of `sum(grad_ranks * approx_ranks(scores))` with respect to scores.
#[pyfunction]
#[pyo3(signature = (scores, mask, temperature, grad_ranks))]
fn approx_ranks_backward<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    temperature: f64,
    grad_ranks: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    by_dtype!(float_dtype(scores, "scores", 2)?, |F| ranks_impl::<F>(
        py,
        scores,
        mask,
        temperature,
        Some(grad_ranks)
    ))
}

/// `(losses [B], valid [B] bool, grad [B, N] or None)` for kind "ndcg", "mrr" or "rank_mse".
#[pyfunction]
#[pyo3(signature = (kind, scores, targets, mask, temperature, need_grad, scale_gains=true, discount=None))]
#[allow(clippy::too_many_arguments)]
fn approx_loss<'py>(
    py: Python<'py>,
    kind: &str,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    temperature: f64,
    need_grad: bool,
    scale_gains: bool,
    discount: Option<&str>,
) -> PyResult<Bound<'py, PyTuple>> {
    let kind = parse_kind(kind, scale_gains, discount)?;
    by_dtype!(float_dtype(scores, "scores", 2)?, |F| loss_impl::<F>(
        py,
        kind,
        scores,
        targets,
        mask,
        temperature,
        need_grad
    ))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(approx_ranks, m)?)?;
    m.add_function(wrap_pyfunction!(approx_ranks_backward, m)?)?;
    m.add_function(wrap_pyfunction!(approx_loss, m)?)?;
    Ok(())
}
