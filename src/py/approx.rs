//! Bindings for the approximate-rank family (`crate::approx`).

use numpy::{Element, IntoPyArray, PyArrayMethods, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arrays::{
    array2, as_rows, by_dtype, float_dtype, mask_rows, padded_loss_weighted, same_shape, shape_of,
    with_padded,
};
use super::run_kernel;
use crate::approx::{self, ApproxLoss, Discount, Method};
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

fn parse_method(method: &str) -> PyResult<Method> {
    Method::parse(method).ok_or_else(|| {
        PyValueError::new_err(format!("method must be 'exact', 'fast' or 'auto', got {method:?}"))
    })
}

/// `obj` as a `[B, N]` array of `F` named `arg`, the shape of scores.
fn like_scores<'py, F: Element>(
    obj: &Bound<'py, PyAny>,
    arg: &str,
    shape: (usize, usize),
) -> PyResult<PyReadonlyArray2<'py, F>> {
    let a = array2::<F>(obj, arg, "the dtype of scores")?;
    same_shape(&a, arg, shape)?;
    Ok(a)
}

/// `approx_ranks` (no `grad_ranks`), its backward (`grad_ranks`), or its double backward
/// (`grad_ranks` and `v`).
fn ranks_impl<'py, F: Float + Element>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    temperature: f64,
    grad_ranks: Option<&Bound<'py, PyAny>>,
    v: Option<&Bound<'py, PyAny>>,
    method: Method,
) -> PyResult<Bound<'py, PyAny>> {
    let s = array2::<F>(scores, "scores", "float32 or float64")?;
    let shape = shape_of(&s);
    let m = mask_rows(mask, shape)?;
    let g = grad_ranks.map(|g| like_scores::<F>(g, "grad_ranks", shape)).transpose()?;
    let v = v.map(|v| like_scores::<F>(v, "v", shape)).transpose()?;
    let (sv, mv) = (as_rows(&s), m.as_ref().map(as_rows));
    let (gv, vv) = (g.as_ref().map(as_rows), v.as_ref().map(as_rows));
    let t = F::from_f64(temperature);
    let out = run_kernel(py, || {
        let batch = Padded::new(&sv, None, mv.as_deref(), shape.0, shape.1)?;
        let mut out = vec![F::ZERO; shape.0 * shape.1];
        match (&gv, &vv) {
            (Some(g), Some(v)) => approx::approx_ranks_double_backward(&batch, t, method, g, v, &mut out)?,
            (Some(g), None) => approx::approx_ranks_backward(&batch, t, method, g, &mut out)?,
            _ => approx::approx_ranks(&batch, t, method, &mut out)?,
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
    weights: Option<&Bound<'py, PyAny>>,
    temperature: f64,
    need_grad: bool,
    method: Method,
) -> PyResult<Bound<'py, PyTuple>> {
    let t = F::from_f64(temperature);
    padded_loss_weighted::<F, _>(
        py,
        scores,
        targets,
        mask,
        weights,
        need_grad,
        |batch, losses, valid, grad| approx::approx_loss(batch, t, kind, method, losses, valid, grad),
    )
}

#[allow(clippy::too_many_arguments)]
fn hvp_impl<'py, F: Float + Element>(
    py: Python<'py>,
    kind: ApproxLoss,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    weights: Option<&Bound<'py, PyAny>>,
    temperature: f64,
    v: &Bound<'py, PyAny>,
    method: Method,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = shape_of(&array2::<F>(scores, "scores", "float32 or float64")?);
    let v = like_scores::<F>(v, "v", shape)?;
    let vv = as_rows(&v);
    let t = F::from_f64(temperature);
    let out = with_padded(py, scores, targets, mask, weights, |batch: &Padded<F>| {
        let mut out = vec![F::ZERO; batch.b * batch.n];
        approx::approx_loss_hvp(batch, t, kind, method, &vv, &mut out)?;
        Ok(out)
    })?;
    Ok(out.into_pyarray(py).reshape([shape.0, shape.1])?.into_any())
}

/// Approximate ranks `[B, N]` (0 at padded positions).
#[pyfunction]
#[pyo3(signature = (scores, mask, temperature, method="exact"))]
fn approx_ranks<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    temperature: f64,
    method: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let method = parse_method(method)?;
    by_dtype!(float_dtype(scores, "scores", 2)?, |F| ranks_impl::<F>(
        py,
        scores,
        mask,
        temperature,
        None,
        None,
        method
    ))
}

/// The gradient of `sum(grad_ranks * approx_ranks(scores))` with respect to scores.
#[pyfunction]
#[pyo3(signature = (scores, mask, temperature, grad_ranks, method="exact"))]
fn approx_ranks_backward<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    temperature: f64,
    grad_ranks: &Bound<'py, PyAny>,
    method: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let method = parse_method(method)?;
    by_dtype!(float_dtype(scores, "scores", 2)?, |F| ranks_impl::<F>(
        py,
        scores,
        mask,
        temperature,
        Some(grad_ranks),
        None,
        method
    ))
}

/// The gradient of `sum(v * approx_ranks_backward(scores, grad_ranks))` with respect to
/// scores, `grad_ranks` held fixed.
#[pyfunction]
#[pyo3(signature = (scores, mask, temperature, grad_ranks, v, method="exact"))]
#[allow(clippy::too_many_arguments)]
fn approx_ranks_double_backward<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    temperature: f64,
    grad_ranks: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    method: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let method = parse_method(method)?;
    by_dtype!(float_dtype(scores, "scores", 2)?, |F| ranks_impl::<F>(
        py,
        scores,
        mask,
        temperature,
        Some(grad_ranks),
        Some(v),
        method
    ))
}

/// `(losses [B], valid [B] bool, grad [B, N] or None)` for kind "ndcg", "mrr" or "rank_mse";
/// `weights`: per-item weights `[B, N]` in the dtype of scores (SPEC 13), or None.
#[pyfunction]
#[pyo3(signature = (kind, scores, targets, mask, temperature, need_grad, scale_gains=true, discount=None, method="exact", weights=None))]
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
    method: &str,
    weights: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let kind = parse_kind(kind, scale_gains, discount)?;
    let method = parse_method(method)?;
    by_dtype!(float_dtype(scores, "scores", 2)?, |F| loss_impl::<F>(
        py,
        kind,
        scores,
        targets,
        mask,
        weights,
        temperature,
        need_grad,
        method
    ))
}

/// Per list, the Hessian of its loss with respect to its scores times `v`: `[B, N]`, zero for
/// lists that do not count and at padded positions; `weights` as for `approx_loss`.
#[pyfunction]
#[pyo3(signature = (kind, scores, targets, mask, temperature, v, scale_gains=true, discount=None, method="exact", weights=None))]
#[allow(clippy::too_many_arguments)]
fn approx_loss_hvp<'py>(
    py: Python<'py>,
    kind: &str,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    temperature: f64,
    v: &Bound<'py, PyAny>,
    scale_gains: bool,
    discount: Option<&str>,
    method: &str,
    weights: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let kind = parse_kind(kind, scale_gains, discount)?;
    let method = parse_method(method)?;
    by_dtype!(float_dtype(scores, "scores", 2)?, |F| hvp_impl::<F>(
        py,
        kind,
        scores,
        targets,
        mask,
        weights,
        temperature,
        v,
        method
    ))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("FAST_CELL", approx::FAST_CELL)?;
    m.add("FAST_NODES", approx::FAST_NODES)?;
    m.add("FAST_SATURATION", approx::FAST_SATURATION)?;
    m.add("FAST_WINDOW", approx::FAST_WINDOW)?;
    m.add("FAST_MIN_SEGMENT", approx::FAST_MIN_SEGMENT)?;
    m.add("FAST_MIN_OCCUPANCY", approx::FAST_MIN_OCCUPANCY)?;
    m.add("FAST_MIN_N", approx::FAST_MIN_N)?;
    m.add_function(wrap_pyfunction!(approx_ranks, m)?)?;
    m.add_function(wrap_pyfunction!(approx_ranks_backward, m)?)?;
    m.add_function(wrap_pyfunction!(approx_ranks_double_backward, m)?)?;
    m.add_function(wrap_pyfunction!(approx_loss, m)?)?;
    m.add_function(wrap_pyfunction!(approx_loss_hvp, m)?)?;
    Ok(())
}
