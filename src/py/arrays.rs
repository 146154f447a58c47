//! numpy arrays in and out: dtype dispatch, borrowing without a copy when possible, shape
//! checks that name the argument, and the padded-batch plumbing shared by the loss bindings.

use std::borrow::Cow;

use numpy::{
    Element, IntoPyArray, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::run_kernel;
use crate::batch::Padded;
use crate::error::Error;
use crate::float::Float;

/// The float types the kernels compute in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dtype {
    F32,
    F64,
}

/// `$body` with the type alias `$t` set to `f32` or `f64` by `$dtype` (a `Dtype`): the one
/// dtype dispatch of the bindings.
macro_rules! by_dtype {
    ($dtype:expr, |$t:ident| $body:expr) => {
        match $dtype {
            $crate::py::arrays::Dtype::F32 => {
                type $t = f32;
                $body
            }
            $crate::py::arrays::Dtype::F64 => {
                type $t = f64;
                $body
            }
        }
    };
}
pub(crate) use by_dtype;

/// `obj` itself, or a native-byte-order copy when it is a byte-swapped (big-endian) numpy array.
pub(crate) fn native<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(dtype) = obj.getattr("dtype") {
        if dtype.getattr("byteorder").is_ok_and(|b| b.extract::<String>().is_ok_and(|b| b == ">" || b == "<"))
            && !dtype.getattr("isnative")?.extract::<bool>()?
        {
            return obj.call_method1("astype", (dtype.call_method1("newbyteorder", ("=",))?,));
        }
    }
    Ok(obj.clone())
}

/// A description of what `obj` is, for error messages: its dtype and ndim, or its type.
fn describe(obj: &Bound<'_, PyAny>) -> String {
    match (obj.getattr("dtype"), obj.getattr("ndim")) {
        (Ok(d), Ok(n)) => format!("got a {n}-D array of {d}"),
        _ => format!("got {}", obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()),
    }
}

fn type_error(obj: &Bound<'_, PyAny>, arg: &str, ndim: usize, what: &str) -> PyErr {
    let hint = match obj.getattr("dtype").and_then(|d| d.str()).map(|s| s.to_string()) {
        Ok(d) if d == "float16" || d == "bfloat16" => " (convert with .astype(numpy.float32))",
        Ok(d) if d == "float128" || d == "longdouble" || d == "float96" => {
            " (convert with .astype(numpy.float64); long double is not computed natively)"
        }
        _ => "",
    };
    PyTypeError::new_err(format!("{arg} must be a {ndim}-D numpy array of {what}, {}{hint}", describe(obj)))
}

/// The dtype of `obj`, which must be a `ndim`-D float32 or float64 array; else a TypeError
/// naming `arg`.
pub(crate) fn float_dtype(obj: &Bound<'_, PyAny>, arg: &str, ndim: usize) -> PyResult<Dtype> {
    match dtype_of(obj, ndim) {
        Some(d) => Ok(d),
        None => dtype_of(&native(obj)?, ndim).ok_or_else(|| type_error(obj, arg, ndim, "float32 or float64")),
    }
}

fn dtype_of(obj: &Bound<'_, PyAny>, ndim: usize) -> Option<Dtype> {
    let is = |f32_: bool| match (ndim, f32_) {
        (1, true) => obj.extract::<PyReadonlyArray1<'_, f32>>().is_ok(),
        (1, false) => obj.extract::<PyReadonlyArray1<'_, f64>>().is_ok(),
        (_, true) => obj.extract::<PyReadonlyArray2<'_, f32>>().is_ok(),
        (_, false) => obj.extract::<PyReadonlyArray2<'_, f64>>().is_ok(),
    };
    if is(true) {
        Some(Dtype::F32)
    } else if is(false) {
        Some(Dtype::F64)
    } else {
        None
    }
}

/// A 2-D array's values as one row-major slice: borrowed when C-contiguous, else copied
/// (negative strides, Fortran order, slices).
pub(crate) fn as_rows<'a, T: Element + Clone>(a: &'a PyReadonlyArray2<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(s) if a.is_c_contiguous() => Cow::Borrowed(s),
        _ => Cow::Owned(a.as_array().iter().cloned().collect()),
    }
}

/// A 1-D array's values as a slice: borrowed when contiguous, else copied.
pub(crate) fn as_flat<'a, T: Element + Clone>(a: &'a PyReadonlyArray1<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().iter().cloned().collect()),
    }
}

/// Extracts `obj` as a 2-D array of `T` (byte-swapped input copied), or a TypeError naming `arg`.
pub(crate) fn array2<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    arg: &str,
    what: &str,
) -> PyResult<PyReadonlyArray2<'py, T>> {
    obj.extract::<PyReadonlyArray2<'py, T>>()
        .or_else(|_| native(obj)?.extract::<PyReadonlyArray2<'py, T>>())
        .map_err(|_| type_error(obj, arg, 2, what))
}

/// A 1-D array of `T` (byte-swapped input copied), or a TypeError naming `arg`.
pub(crate) fn array1<'py, T: Element>(
    obj: &Bound<'py, PyAny>,
    arg: &str,
    what: &str,
) -> PyResult<PyReadonlyArray1<'py, T>> {
    obj.extract::<PyReadonlyArray1<'py, T>>()
        .or_else(|_| native(obj)?.extract::<PyReadonlyArray1<'py, T>>())
        .map_err(|_| type_error(obj, arg, 1, what))
}

/// `None` for a missing or None argument, else a 1-D array of `T`.
pub(crate) fn optional1<'py, T: Element>(
    obj: Option<&Bound<'py, PyAny>>,
    arg: &str,
    what: &str,
) -> PyResult<Option<PyReadonlyArray1<'py, T>>> {
    obj.filter(|v| !v.is_none()).map(|v| array1::<T>(v, arg, what)).transpose()
}

/// List sizes as int64: int64 borrowed; other integer dtypes converted, a size above 2^63 - 1
/// a ValueError naming `group` and the list.
pub(crate) fn group_sizes<'a, 'py>(
    obj: &Bound<'py, PyAny>,
    holder: &'a mut Option<PyReadonlyArray1<'py, i64>>,
) -> PyResult<Cow<'a, [i64]>> {
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'py, i64>>() {
        return Ok(as_flat(holder.insert(a)));
    }
    let obj = native(obj)?;
    if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, i64>>() {
        return Ok(Cow::Owned(a.as_array().to_vec())); // was byte-swapped
    }
    macro_rules! widen {
        ($($t:ty),*) => {$(
            if let Ok(a) = obj.extract::<PyReadonlyArray1<'_, $t>>() {
                let a = a.as_array();
                let mut out = Vec::with_capacity(a.len());
                for (g, &v) in a.iter().enumerate() {
                    out.push(i64::try_from(v).map_err(|_| {
                        PyValueError::new_err(format!("group: size of list {g} ({v}) is too large"))
                    })?);
                }
                return Ok(Cow::Owned(out));
            }
        )*};
    }
    widen!(u64, i32, u32, i16, u16, i8, u8);
    Err(type_error(&obj, "group", 1, "integers (list sizes)"))
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

pub(crate) fn shape_of<T: Element>(a: &PyReadonlyArray2<'_, T>) -> (usize, usize) {
    let s = a.shape();
    (s[0], s[1])
}

/// The optional bool mask `[B, N]`.
pub(crate) fn mask_rows<'py>(
    mask: Option<&Bound<'py, PyAny>>,
    shape: (usize, usize),
) -> PyResult<Option<PyReadonlyArray2<'py, bool>>> {
    match mask {
        Some(m) if !m.is_none() => {
            let m = array2::<bool>(m, "mask", "bool")?;
            same_shape(&m, "mask", shape)?;
            Ok(Some(m))
        }
        _ => Ok(None),
    }
}

/// `k` (or `truncation_level`) as a count: a Python int >= 1, any size (larger than every
/// list means the whole list, so it is capped at `usize::MAX`); None stays None.
pub(crate) fn count_arg(obj: Option<&Bound<'_, PyAny>>, arg: &str) -> PyResult<Option<usize>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else { return Ok(None) };
    if obj.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(format!("{arg} must be an int, got bool")));
    }
    let v = obj.call_method0("__index__").map_err(|_| {
        PyTypeError::new_err(format!(
            "{arg} must be an int, got {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    if v.lt(1)? {
        return Err(PyValueError::new_err(format!("{arg} must be at least 1, got {v}")));
    }
    Ok(Some(v.extract::<usize>().unwrap_or(usize::MAX)))
}

/// Runs `kernel` without the GIL on the padded batch made of numpy `scores`, `targets` (same
/// dtype), `mask` and per-item `weights` (same dtype), after checking their types and shapes.
pub(crate) fn with_padded<'py, F, R, K>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    weights: Option<&Bound<'py, PyAny>>,
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
    let w = match weights.filter(|w| !w.is_none()) {
        Some(w) => {
            let w = array2::<F>(w, "weights", "the dtype of scores")?;
            same_shape(&w, "weights", shape)?;
            Some(w)
        }
        None => None,
    };
    let (sv, yv, mv, wv) = (as_rows(&s), as_rows(&y), m.as_ref().map(as_rows), w.as_ref().map(as_rows));
    run_kernel(py, || {
        let batch =
            Padded::new(&sv, Some(&yv), mv.as_deref(), shape.0, shape.1)?.with_weights(wv.as_deref())?;
        kernel(&batch)
    })
}

/// A padded-batch loss kernel `kernel(batch, losses [B], valid [B], grad [B * N] or None)` on
/// numpy inputs, with SPEC 13's per-item `weights` (`[B, N]` in the dtype of scores, or None) on
/// the batch, returned as the tuple `(losses [B], valid [B] bool, grad [B, N] or None)`.
pub(crate) fn padded_loss_weighted<'py, F, K>(
    py: Python<'py>,
    scores: &Bound<'py, PyAny>,
    targets: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    weights: Option<&Bound<'py, PyAny>>,
    need_grad: bool,
    kernel: K,
) -> PyResult<Bound<'py, PyTuple>>
where
    F: Float + Element,
    K: FnOnce(&Padded<F>, &mut [F], &mut [bool], Option<&mut [F]>) -> Result<(), Error> + Send,
{
    let (losses, valid, grad, n) = with_padded(py, scores, targets, mask, weights, |batch: &Padded<F>| {
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
