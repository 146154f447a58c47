//! Graded-relevance gains shared by the NDCG-style kernels: `g(y) = 2^y - 1` or `y`.

use crate::error::{Error, Result};
use crate::float::Float;

/// Largest target for `2^y - 1` gains: sums of gains stay finite in f64.
pub const MAX_GAIN_EXPONENT: f64 = 1000.0;

/// `2^max(y, 0) - 1` with `scale_gains`, else `max(y, 0)`.
#[inline]
pub fn gain(y: f64, scale_gains: bool) -> f64 {
    let y = y.max(0.0);
    if scale_gains {
        y.exp2() - 1.0
    } else {
        y
    }
}

/// An error naming `arg` and the list (`list_of(index)`) of the first real value too large
/// for `2^y - 1` gains; positions where `mask` is false are ignored.
pub fn check_gain_range<F: Float>(
    values: &[F],
    mask: Option<&[bool]>,
    arg: &'static str,
    list_of: impl Fn(usize) -> usize,
) -> Result<()> {
    let real = |k: usize| mask.map_or(true, |m| m[k]);
    match (0..values.len()).find(|&k| real(k) && values[k].to_f64() > MAX_GAIN_EXPONENT) {
        Some(k) => Err(Error::invalid(
            arg,
            format!(
                "value {:?} in list {} is too large for 2^y - 1 gains (scale_gains=True)",
                values[k],
                list_of(k)
            ),
        )),
        None => Ok(()),
    }
}
