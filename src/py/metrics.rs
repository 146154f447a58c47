//! Bindings for the exact metrics (`crate::metrics`), padded and ragged.

use numpy::{Element, IntoPyArray};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arrays::{array1, as_flat, by_dtype, count_arg, float_dtype, group_sizes, with_padded};
use super::run_kernel;
use crate::batch::Padded;
use crate::float::Float;
use crate::metrics::{self, ExactMetric};

fn parse_metric(kind: &str, k: Option<usize>, scale_gains: bool) -> PyResult<ExactMetric> {
    match kind {
        "ndcg" => Ok(ExactMetric::Ndcg { k, scale_gains }),
        "mrr" => Ok(ExactMetric::Mrr { k }),
        "average_precision" => Ok(ExactMetric::AveragePrecision { k }),
        "recall" => Ok(ExactMetric::Recall { k }),
        "precision" => Ok(ExactMetric::Precision { k }),
        other => Err(PyValueError::new_err(format!(
            "metric must be 'ndcg', 'mrr', 'average_precision', 'recall' or 'precision', got {other:?}"
        ))),
    }
}

fn values_and_valid<'py>(
    py: Python<'py>,
    values: Vec<f64>,
    valid: Vec<bool>,
) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, [values.into_pyarray(py).into_any(), valid.into_pyarray(py).into_any()])
}

fn metric_impl<'py, F: Float + Element>(
    py: Python<'py>,
    metric: ExactMetric,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let (values, valid) = with_padded(py, scores, targets, mask, None, |batch: &Padded<F>| {
        let (mut values, mut valid) = (vec![0.0; batch.b], vec![false; batch.b]);
        metrics::metric_padded(batch, metric, &mut values, &mut valid)?;
        Ok((values, valid))
    })?;
    values_and_valid(py, values, valid)
}

/// `(values [B] float64, valid [B] bool)`: NDCG@k, MRR@k, AP@k, recall@k or precision@k of each list of a padded batch;
/// `valid` is false for a list without a relevant item (its value is 0).
#[pyfunction]
#[pyo3(signature = (metric, scores, targets, mask, k, scale_gains=true))]
fn ranking_metric<'py>(
    py: Python<'py>,
    metric: &str,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    k: Option<&Bound<'py, PyAny>>,
    scale_gains: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let metric = parse_metric(metric, count_arg(k, "k")?, scale_gains)?;
    by_dtype!(float_dtype(scores, "scores", 2)?, |F| metric_impl::<F>(py, metric, scores, targets, mask))
}

/// `(values [G] float64, valid [G] bool)` for ragged lists: flat `preds [n]` and `labels [n]`
/// (float64) and list sizes `group [G]` (int64) summing to n.
#[pyfunction]
#[pyo3(signature = (metric, preds, labels, group, k, scale_gains=true))]
fn ranking_metric_ragged<'py>(
    py: Python<'py>,
    metric: &str,
    preds: &Bound<'py, PyAny>,
    labels: &Bound<'py, PyAny>,
    group: &Bound<'py, PyAny>,
    k: Option<&Bound<'py, PyAny>>,
    scale_gains: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let metric = parse_metric(metric, count_arg(k, "k")?, scale_gains)?;
    let p = array1::<f64>(preds, "preds", "float64")?;
    let l = array1::<f64>(labels, "labels", "float64")?;
    let mut holder = None;
    let gv = group_sizes(group, &mut holder)?;
    let (pv, lv) = (as_flat(&p), as_flat(&l));
    let lists = gv.len();
    let (values, valid) = run_kernel(py, || {
        let (mut values, mut valid) = (vec![0.0; lists], vec![false; lists]);
        metrics::metric_ragged(&pv, &lv, &gv, metric, &mut values, &mut valid)?;
        Ok((values, valid))
    })?;
    values_and_valid(py, values, valid)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ranking_metric, m)?)?;
    m.add_function(wrap_pyfunction!(ranking_metric_ragged, m)?)?;
    Ok(())
}
