//! rankgrad's own thread pool (never rayon's global one), safe across `fork`.
//!
//! A forked child has only the thread that called `fork`: a pool built before the fork has no
//! workers there, and a kernel handed to it would wait forever. So the pool records the pid
//! that built it and is rebuilt, lazily, the first time a kernel runs in a process with
//! another pid (`std::process::id()`). The parent's pool is leaked in the child, never
//! dropped: dropping it would signal worker threads that do not exist, through locks a parent
//! thread may have held at the moment of the fork.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

struct Pool {
    pid: u32,
    pool: Arc<rayon::ThreadPool>,
}

struct State {
    /// Threads asked for by `set_num_threads` (None: rayon's default).
    threads: Option<usize>,
    pool: Option<Pool>,
}

static STATE: Mutex<State> = Mutex::new(State { threads: None, pool: None });

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

fn build(threads: Option<usize>) -> Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    let mut b = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("rankgrad-{i}"));
    if let Some(n) = threads {
        b = b.num_threads(n);
    }
    b.build()
}

/// The pool of this process, built on first use (and after a fork).
pub(crate) fn current() -> PyResult<Arc<rayon::ThreadPool>> {
    let pid = std::process::id();
    let threads = {
        let mut s = state();
        match &s.pool {
            Some(p) if p.pid == pid => return Ok(p.pool.clone()),
            Some(_) => {
                // Forked: the parent's pool has no threads here; leak it (see the module doc).
                if let Some(old) = s.pool.take() {
                    std::mem::forget(old);
                }
            }
            None => {}
        }
        s.threads
    };
    // Built outside the lock, so that a fork from another thread never copies it held.
    let pool = Arc::new(build(threads).map_err(|e| PyRuntimeError::new_err(e.to_string()))?);
    let mut s = state();
    match &s.pool {
        Some(p) if p.pid == pid => Ok(p.pool.clone()), // another thread was first
        _ => {
            s.pool = Some(Pool { pid, pool: pool.clone() });
            Ok(pool)
        }
    }
}

/// The most threads `set_num_threads` accepts: 4 x the logical CPUs this process may run on.
pub(crate) fn max_threads() -> usize {
    4 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sets the number of threads rankgrad's kernels use: an int `1 <= n <= 4 x logical CPUs`
/// (`MAX_THREADS`), or None for the default (`RAYON_NUM_THREADS`, else one per logical CPU).
/// The new pool is built without holding the GIL.
#[pyfunction]
pub(crate) fn set_num_threads(py: Python<'_>, n: &Bound<'_, PyAny>) -> PyResult<()> {
    let threads = if n.is_none() {
        None
    } else {
        if n.is_instance_of::<pyo3::types::PyBool>() {
            return Err(PyTypeError::new_err("n must be an int or None, got bool"));
        }
        let v = n.call_method0("__index__").map_err(|_| {
            PyTypeError::new_err(format!(
                "n must be an int or None, got {}",
                n.get_type().name().map(|t| t.to_string()).unwrap_or_default()
            ))
        })?;
        let max = max_threads();
        match v.extract::<usize>() {
            Ok(k) if (1..=max).contains(&k) => Some(k),
            _ => {
                return Err(PyValueError::new_err(format!(
                    "n must be between 1 and {max} (4 x the {} logical CPUs), got {v}",
                    max / 4
                )))
            }
        }
    };
    let pool = py
        .detach(|| build(threads))
        .map_err(|e| PyRuntimeError::new_err(format!("could not start {threads:?} threads: {e}")))?;
    let mut s = state();
    s.threads = threads;
    let old = s.pool.replace(Pool { pid: std::process::id(), pool: Arc::new(pool) });
    drop(s);
    if let Some(old) = old {
        if old.pid != std::process::id() {
            std::mem::forget(old);
        }
    }
    Ok(())
}

/// The number of threads rankgrad's kernels use.
#[pyfunction]
pub(crate) fn get_num_threads() -> PyResult<usize> {
    Ok(current()?.current_num_threads())
}
