//! The one bindings layer: numpy arrays in and out, the GIL released while a kernel runs,
//! every kernel error a ValueError naming the argument, any panic a RuntimeError.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, RwLock};

use numpy::{
    Element, IntoPyArray, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::batch::Padded;
use crate::error::Error;
use crate::float::Float;

mod approx;
mod lambda_loss;
mod lambdas;
mod pairwise;

static POOL: RwLock<Option<Arc<rayon::ThreadPool>>> = RwLock::new(None);

/// Runs `f` without the GIL on rankgrad's thread pool, turning kernel errors and panics into
/// Python exceptions.
pub(crate) fn run_kernel<R, K>(py: Python<'_>, f: K) -> PyResult<R>
where
    R: Send,
    K: FnOnce() -> Result<R, Error> + Send,
{
    let pool = POOL.read().unwrap_or_else(|e| e.into_inner()).clone();
    let out = py.detach(move || {
        catch_unwind(AssertUnwindSafe(move || match pool {
            Some(p) => p.install(f),
            None => f(),
        }))
    });
    match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(PyValueError::new_err(e.to_string())),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!("rankgrad internal error: {msg}")))
        }
    }
}

/// A 2-D array's values as one row-major slice: borrowed when C-contiguous, else copied.
/// (`as_slice` also accepts Fortran order, which would hand the kernel transposed data.)
pub(crate) fn as_rows<'a, T: Element + Clone>(a: &'a PyReadonlyArray2<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(s) if a.is_c_contiguous() => Cow::Borrowed(s),
        _ => Cow::Owned(a.as_array().iter().cloned().collect()),
    }
}

/// Extracts `obj` as a 2-D array of `T`, or a TypeError naming `arg`.
pub(crate) fn array2<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    arg: &str,
    what: &str,
) -> PyResult<PyReadonlyArray2<'py, T>> {
    obj.extract::<PyReadonlyArray2<'py, T>>()
        .map_err(|_| PyTypeError::new_err(format!("{arg} must be a 2-D numpy array of {what}")))
}

/// The shape `(b, n)` of `arr`, or a ValueError naming `arg` if it differs from `want`.
pub(crate) fn same_shape<T: Element>(
    arr: &PyReadonlyArray2<'_, T>,
    arg: &str,
    want: (usize, usize),
) -> PyResult<()> {
    let s = arr.shape();
    if (s[0], s[1]) != want {
        return Err(PyValueError::new_err(format!(
            "{arg} has shape ({}, {}), expected ({}, {}) like scores",
            s[0], s[1], want.0, want.1
        )));
    }
    Ok(())
}

pub(crate) fn mask_rows<'py>(
    mask: Option<&Bound<'py, PyAny>>,
    shape: (usize, usize),
) -> PyResult<Option<PyReadonlyArray2<'py, bool>>> {
    match mask {
        None => Ok(None),
        Some(m) if m.is_none() => Ok(None),
        Some(m) => {
            let m = array2::<bool>(m, "mask", "bool")?;
            same_shape(&m, "mask", shape)?;
            Ok(Some(m))
        }
    }
}

pub(crate) fn shape_of<T: Element>(a: &PyReadonlyArray2<'_, T>) -> (usize, usize) {
    let s = a.shape();
    (s[0], s[1])
}

/// Dispatches on the dtype of `scores` (float32 or float64).
macro_rules! by_dtype {
    ($scores:expr, $f:ident ( $($arg:expr),* )) => {{
        let s = $scores;
        if s.extract::<PyReadonlyArray2<'_, f32>>().is_ok() {
            $f::<f32>($($arg),*)
        } else if s.extract::<PyReadonlyArray2<'_, f64>>().is_ok() {
            $f::<f64>($($arg),*)
        } else {
            Err(PyTypeError::new_err("scores must be a 2-D numpy array of float32 or float64"))
        }
    }};
}
pub(crate) use by_dtype;

/// A 1-D array of `T`, or a TypeError naming `arg`.
pub(crate) fn array1<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    arg: &str,
    what: &str,
) -> PyResult<PyReadonlyArray1<'py, T>> {
    obj.extract::<PyReadonlyArray1<'py, T>>()
        .map_err(|_| PyTypeError::new_err(format!("{arg} must be a 1-D numpy array of {what}")))
}

/// A 1-D array's values as a slice: borrowed when contiguous, else copied.
pub(crate) fn as_flat<'a, T: Element + Clone>(a: &'a PyReadonlyArray1<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().iter().cloned().collect()),
    }
}

/// Runs `kernel` without the GIL on the padded batch made of numpy `scores`, `targets` (same
/// dtype) and `mask`, after checking their types and shapes.
pub(crate) fn with_padded<'py, F, R, K>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    kernel: K,
) -> PyResult<R>
where
    F: Float + Element,
    R: Send,
    K: FnOnce(&Padded<F>) -> Result<R, Error> + Send,
{
    let s = array2::<F>(scores, "scores", "float32 or float64")?;
    let shape = shape_of(&s);
    let y = array2::<F>(targets, "targets", "the dtype of scores")?;
    same_shape(&y, "targets", shape)?;
    let m = mask_rows(mask, shape)?;
    let (sv, yv, mv) = (as_rows(&s), as_rows(&y), m.as_ref().map(as_rows));
    run_kernel(py, || kernel(&Padded::new(&sv, Some(&yv), mv.as_deref(), shape.0, shape.1)?))
}

/// A padded-batch loss kernel `kernel(batch, losses [B], valid [B], grad [B * N] or None)` on
/// numpy inputs, returned as the tuple `(losses [B], valid [B] bool, grad [B, N] or None)`.
pub(crate) fn padded_loss<'py, F, K>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    need_grad: bool,
    kernel: K,
) -> PyResult<Bound<'py, PyTuple>>
where
    F: Float + Element,
    K: FnOnce(&Padded<F>, &mut [F], &mut [bool], Option<&mut [F]>) -> Result<(), Error> + Send,
{
    let (losses, valid, grad, n) = with_padded(py, scores, targets, mask, |batch: &Padded<F>| {
        let (b, n) = (batch.b, batch.n);
        let mut losses = vec![F::ZERO; b];
        let mut valid = vec![false; b];
        let mut grad = need_grad.then(|| vec![F::ZERO; b * n]);
        kernel(batch, &mut losses, &mut valid, grad.as_deref_mut())?;
        Ok((losses, valid, grad, n))
    })?;
    let grad = match grad {
        Some(g) => g.into_pyarray(py).reshape([losses.len(), n])?.into_any(),
        None => py.None().into_bound(py),
    };
    PyTuple::new(py, [losses.into_pyarray(py).into_any(), valid.into_pyarray(py).into_any(), grad])
}

/// Sets the number of threads rankgrad's kernels use (0: rayon's default, one per core).
#[pyfunction]
fn set_num_threads(n: usize) -> PyResult<()> {
    let pool = if n == 0 {
        None
    } else {
        let p = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        Some(Arc::new(p))
    };
    *POOL.write().unwrap_or_else(|e| e.into_inner()) = pool;
    Ok(())
}

/// The number of threads rankgrad's kernels use.
#[pyfunction]
fn get_num_threads() -> usize {
    match &*POOL.read().unwrap_or_else(|e| e.into_inner()) {
        Some(p) => p.current_num_threads(),
        None => rayon::current_num_threads(),
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    approx::register(m)?;
    pairwise::register(m)?;
    lambdas::register(m)?;
    lambda_loss::register(m)?;
    Ok(())
}
