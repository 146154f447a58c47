//! Bindings for XE-NDCG (`crate::xendcg`): the ragged GBDT gradients.

use numpy::{IntoPyArray, PyReadonlyArray1, PyReadwriteArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arrays::{array1, as_flat, by_dtype, float_dtype, group_sizes};
use super::run_kernel;
use crate::float::Float;
use crate::xendcg::{self, Gammas};

#[allow(clippy::too_many_arguments)]
fn gradients_impl<'py, Y: Float + numpy::Element>(
    py: Python<'py>,
    preds: &[f64],
    labels: &Bound<'py, PyAny>,
    group: &[i64],
    weights: Option<&[f64]>,
    gammas: Option<&[f64]>,
    states: Option<&mut [u32]>,
) -> PyResult<Bound<'py, PyTuple>> {
    let y = array1::<Y>(labels, "labels", "float32 or float64")?;
    let yv = as_flat(&y);
    let n = preds.len();
    let (grad, hess) = run_kernel(py, move || {
        let src = match (gammas, states) {
            (Some(g), _) => Gammas::Given(g),
            (None, Some(s)) => Gammas::Streams(s),
            (None, None) => return Err(crate::Error::invalid("gammas", "give gammas or states")),
        };
        let (mut grad, mut hess) = (vec![0.0f64; n], vec![0.0f64; n]);
        xendcg::xendcg_gradients(preds, &yv, group, weights, src, &mut grad, &mut hess)?;
        Ok((grad, hess))
    })?;
    PyTuple::new(py, [grad.into_pyarray(py).into_any(), hess.into_pyarray(py).into_any()])
}

/// `(grad, hess)` float64 `[n]`: XE-NDCG (LightGBM's `rank_xendcg`) for the ragged layout.
/// preds: float64 `[n]`; labels: float32/float64 `[n]`; group: int64 list sizes; weights:
/// float64 `[n]` or None; gammas: float64 `[n]`, or None to draw them from `states` (uint32,
/// one generator state per list, advanced in place).
#[pyfunction]
#[pyo3(signature = (preds, labels, group, weights, gammas, states))]
pub(super) fn xendcg_gradients<'py>(
    py: Python<'py>,
    preds: PyReadonlyArray1<'py, f64>,
    labels: &Bound<'py, PyAny>,
    group: &Bound<'py, PyAny>,
    weights: Option<PyReadonlyArray1<'py, f64>>,
    gammas: Option<PyReadonlyArray1<'py, f64>>,
    states: Option<PyReadwriteArray1<'py, u32>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let mut holder = None;
    let gv = group_sizes(group, &mut holder)?;
    let pv = as_flat(&preds);
    let wv = weights.as_ref().map(as_flat);
    let gam = gammas.as_ref().map(as_flat);
    let mut states = states;
    let st = match states.as_mut() {
        Some(s) => Some(s.as_slice_mut().map_err(|_| PyTypeError::new_err("states must be contiguous"))?),
        None => None,
    };
    by_dtype!(float_dtype(labels, "labels", 1)?, |Y| gradients_impl::<Y>(
        py,
        &pv,
        labels,
        &gv,
        wv.as_deref(),
        gam.as_deref(),
        st
    ))
}
