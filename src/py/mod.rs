//! The one bindings layer (PyO3), one module per kernel module: numpy arrays in and out, the
//! GIL released while a kernel runs on rankgrad's own thread pool (`pool`), every kernel error
//! a ValueError naming the argument, any panic a RuntimeError.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::error::Error;

mod approx;
mod arrays;
mod lambdarank;
mod listwise;
mod metrics;
mod pad;
mod pool;
mod ranknet;
mod xendcg;

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        PyValueError::new_err(e.to_string())
    }
}

/// Runs `f` without the GIL on rankgrad's thread pool, turning kernel errors and panics into
/// Python exceptions.
pub(crate) fn run_kernel<R, K>(py: Python<'_>, f: K) -> PyResult<R>
where
    R: Send,
    K: FnOnce() -> Result<R, Error> + Send,
{
    let pool = pool::current()?;
    match py.detach(move || catch_unwind(AssertUnwindSafe(move || pool.install(f)))) {
        Ok(result) => Ok(result?),
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

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("GAIN_CAP", crate::gains::GAIN_CAP)?;
    m.add("MAX_THREADS", pool::max_threads())?;
    m.add_function(wrap_pyfunction!(pool::set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(pool::get_num_threads, m)?)?;
    approx::register(m)?;
    ranknet::register(m)?;
    metrics::register(m)?;
    lambdarank::register(m)?;
    listwise::register(m)?;
    pad::register(m)?;
    m.add_function(wrap_pyfunction!(xendcg::xendcg_gradients, m)?)?;
    Ok(())
}
