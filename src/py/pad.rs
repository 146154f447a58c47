//! Bindings for the ragged <-> padded index (`crate::pad`): `(index [n] int64, sizes [B] int64)`.

use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arrays::{as_flat, group_sizes, native};
use super::run_kernel;
use crate::pad::{self, Layout, PadIndex};

fn to_tuple<'py>(py: Python<'py>, p: PadIndex) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, [p.index.into_pyarray(py).into_any(), p.sizes.into_pyarray(py).into_any()])
}

/// `(index [n], sizes [B])` for lists given by their sizes `group` over `n` rows: row `r` of
/// list `g` at position `p` goes to `g * N + p` of the padded batch (`N = max(sizes)`).
#[pyfunction]
fn pad_index_groups<'py>(
    py: Python<'py>,
    group: &Bound<'py, PyAny>,
    n: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    let mut holder = None;
    let gv = group_sizes(group, &mut holder)?;
    let p = run_kernel(py, || pad::index_from_sizes(&gv, n))?;
    to_tuple(py, p)
}

/// `(index [n], sizes [B])` for lists given by query ids `qid [n]` (any integer dtype, float32
/// or float64; NaN refused), in order of first appearance: `index` is `list * N + position`
/// (`padded`) or the row's position in list order (`padded=False`).
#[pyfunction]
fn pad_index_qid<'py>(
    py: Python<'py>,
    qid: &Bound<'py, PyAny>,
    padded: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let layout = if padded { Layout::Padded } else { Layout::Flat };
    let qid = native(qid)?;
    macro_rules! try_ids {
        ($($t:ty),*) => {$(
            if let Ok(a) = qid.extract::<PyReadonlyArray1<'py, $t>>() {
                let ids = as_flat(&a);
                let p = run_kernel(py, || pad::index_from_ids(&ids, layout))?;
                return to_tuple(py, p);
            }
        )*};
    }
    try_ids!(i64, i32, u64, u32, i16, u16, i8, u8, f64, f32);
    let got = qid.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| "not an array".into());
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "qid must be a 1-D numpy array of integers, float32 or float64, got {got}"
    )))
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pad_index_groups, m)?)?;
    m.add_function(wrap_pyfunction!(pad_index_qid, m)?)?;
    Ok(())
}
