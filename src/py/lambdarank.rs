//! Bindings for LambdaRank (`crate::lambdarank`): the ragged GBDT gradients and the padded loss.

use numpy::{Element, IntoPyArray, PyReadwriteArray1, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arrays::{
    array1, as_flat, by_dtype, count_arg, float_dtype, group_sizes, optional1, padded_loss_weighted,
};
use super::run_kernel;
use crate::float::Float;
use crate::lambdarank::{self, Gains, LambdaMetric, LambdaOptions};

fn parse_metric(metric: &str) -> PyResult<LambdaMetric> {
    match metric {
        "ndcg" => Ok(LambdaMetric::Ndcg),
        "mrr" => Ok(LambdaMetric::Mrr),
        m => Err(PyValueError::new_err(format!("metric must be 'ndcg' or 'mrr', got {m:?}"))),
    }
}

/// The options, checked here too (a `sigma` whose square overflows is rejected, so that no
/// hessian is NaN), before any output is touched.
fn options(sigma: f64, truncation: usize, norm: bool, metric: &str) -> PyResult<LambdaOptions> {
    let opts = LambdaOptions { sigma, truncation, norm, metric: parse_metric(metric)? };
    opts.check()?;
    Ok(opts)
}

/// A writable, contiguous float64 output `[n]`, or a TypeError/ValueError naming `arg`.
fn out_array<'py>(obj: &Bound<'py, PyAny>, arg: &str, n: usize) -> PyResult<PyReadwriteArray1<'py, f64>> {
    let a = obj
        .extract::<PyReadwriteArray1<'py, f64>>()
        .map_err(|_| PyTypeError::new_err(format!("{arg} must be a writable 1-D numpy array of float64")))?;
    if a.len() != n {
        return Err(PyValueError::new_err(format!("{arg} has {} values, expected {n} like preds", a.len())));
    }
    if !a.is_c_contiguous() {
        return Err(PyValueError::new_err(format!("{arg} must be contiguous")));
    }
    Ok(a)
}

#[allow(clippy::too_many_arguments)]
fn gradients_impl<'py, P: Float + Element, Y: Float + Element>(
    py: Python<'py>,
    preds: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    group: &Bound<'py, PyAny>,
    label_gain: Option<&Bound<'py, PyAny>>,
    weights: Option<&Bound<'py, PyAny>>,
    opts: LambdaOptions,
    out: Option<(&Bound<'py, PyAny>, &Bound<'py, PyAny>)>,
) -> PyResult<Bound<'py, PyTuple>> {
    let p = array1::<P>(preds, "preds", "float32 or float64")?;
    let y = array1::<Y>(labels, "labels", "float32 or float64")?;
    let mut holder = None;
    let gv = group_sizes(group, &mut holder)?;
    let lg = optional1::<f64>(label_gain, "label_gain", "float64")?;
    let w = optional1::<f64>(weights, "weights", "float64")?;
    let (pv, yv) = (as_flat(&p), as_flat(&y));
    let lgv = lg.as_ref().map(as_flat);
    let wv = w.as_ref().map(as_flat);
    let n = pv.len();
    // The kernel validates every input before it writes an output, so `out` is left
    // untouched when it raises.
    let compute = |grad: &mut [f64], hess: &mut [f64]| -> Result<(), crate::Error> {
        let default_gain;
        let gain: &[f64] = match &lgv {
            Some(v) => v,
            None => {
                default_gain = lambdarank::default_label_gain();
                &default_gain
            }
        };
        lambdarank::lambdarank_gradients(&pv, &yv, &gv, gain, wv.as_deref(), &opts, grad, hess)
    };
    match out {
        Some((og, oh)) => {
            let (mut ga, mut ha) = (out_array(og, "out[0]", n)?, out_array(oh, "out[1]", n)?);
            let (gs, hs) = (ga.as_slice_mut()?, ha.as_slice_mut()?);
            run_kernel(py, || compute(gs, hs))?;
            PyTuple::new(py, [og.clone(), oh.clone()])
        }
        None => {
            let (grad, hess) = run_kernel(py, || {
                let mut grad = vec![0.0f64; n];
                let mut hess = vec![0.0f64; n];
                compute(&mut grad, &mut hess)?;
                Ok((grad, hess))
            })?;
            PyTuple::new(py, [grad.into_pyarray(py).into_any(), hess.into_pyarray(py).into_any()])
        }
    }
}

/// `(grad, hess)` float64 `[n]`: LightGBM's lambdarank objective for the ragged layout.
/// preds and labels: 1-D float32/float64; group: integer list sizes (each >= 0; a size-0 group is an empty list, `crate::ragged`); label_gain,
/// weights: float64 or None; out: None or two writable contiguous float64 `[n]` arrays to fill
/// (untouched when an error is raised).
#[pyfunction]
#[pyo3(signature = (preds, labels, group, sigma, truncation_level, norm, label_gain, weights, metric, out=None))]
#[allow(clippy::too_many_arguments)]
fn lambdarank_gradients<'py>(
    py: Python<'py>,
    preds: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    group: &Bound<'py, PyAny>,
    sigma: f64,
    truncation_level: &Bound<'py, PyAny>,
    norm: bool,
    label_gain: Option<&Bound<'py, PyAny>>,
    weights: Option<&Bound<'py, PyAny>>,
    metric: &str,
    out: Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
) -> PyResult<Bound<'py, PyTuple>> {
    let truncation = count_arg(Some(truncation_level), "truncation_level")?
        .ok_or_else(|| PyTypeError::new_err("truncation_level must be an int, got None"))?;
    let opts = options(sigma, truncation, norm, metric)?;
    let out = out.as_ref().map(|(a, b)| (a, b));
    let (pd, yd) = (float_dtype(preds, "preds", 1)?, float_dtype(labels, "labels", 1)?);
    by_dtype!(pd, |P| by_dtype!(yd, |Y| gradients_impl::<P, Y>(
        py, preds, labels, group, label_gain, weights, opts, out
    )))
}

#[allow(clippy::too_many_arguments)]
fn loss_impl<'py, F: Float + Element>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    weights: Option<&Bound<'py, PyAny>>,
    label_gain: Option<&Bound<'py, PyAny>>,
    opts: LambdaOptions,
    need_grad: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let lg = optional1::<f64>(label_gain, "label_gain", "float64")?;
    let lgv = lg.as_ref().map(as_flat);
    padded_loss_weighted::<F, _>(
        py,
        scores,
        targets,
        mask,
        weights,
        need_grad,
        |batch, losses, valid, grad| {
            let gains = match &lgv {
                Some(t) => Gains::Table(t),
                None => Gains::Exp2,
            };
            lambdarank::lambdarank_loss(batch, gains, &opts, losses, valid, grad)
        },
    )
}

/// `(losses [B], valid [B] bool, grad [B, N] or None)`: the LambdaRank loss of a padded batch
/// and its gradient. truncation_level None: every pair; label_gain None: `2^max(y, 0) - 1`;
/// `weights`: per-item weights `[B, N]` in the dtype of scores (SPEC 13), or None.
#[pyfunction]
#[pyo3(signature = (scores, targets, mask, sigma, truncation_level, norm, label_gain, metric, need_grad, weights=None))]
#[allow(clippy::too_many_arguments)]
fn lambdarank_loss<'py>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    sigma: f64,
    truncation_level: Option<&Bound<'py, PyAny>>,
    norm: bool,
    label_gain: Option<&Bound<'py, PyAny>>,
    metric: &str,
    need_grad: bool,
    weights: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let truncation = count_arg(truncation_level, "truncation_level")?.unwrap_or(usize::MAX);
    let opts = options(sigma, truncation, norm, metric)?;
    by_dtype!(float_dtype(scores, "scores", 2)?, |F| loss_impl::<F>(
        py, scores, targets, mask, weights, label_gain, opts, need_grad
    ))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(lambdarank_gradients, m)?)?;
    m.add_function(wrap_pyfunction!(lambdarank_loss, m)?)?;
    Ok(())
}
