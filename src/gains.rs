//! Graded-relevance gains and position discounts shared by the NDCG-style kernels, and the
//! one place their inputs are checked: `g(y) = 2^max(y, 0) - 1` (capped at `y <= GAIN_CAP`),
//! `max(y, 0)`, or a LightGBM-style `label_gain` table; `d(p) = 1 / log2(2 + p)`.

use crate::error::{Error, Result};
use crate::float::Float;

/// Largest target for `2^y - 1` gains: sums of gains stay finite in f64. Exported to Python as
/// `rankgrad._core.GAIN_CAP`.
pub const GAIN_CAP: f64 = 1000.0;

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

/// The discount `1 / log2(2 + p)` of 0-based position `p`.
#[inline]
pub fn discount(p: usize) -> f64 {
    1.0 / (p as f64 + 2.0).log2()
}

/// `discount(p)` for `p` in `0..n`.
pub fn discounts(n: usize) -> Vec<f64> {
    (0..n).map(discount).collect()
}

/// An error naming `arg` and the list (`list_of(index)`) of the first real value too large
/// for `2^y - 1` gains; positions where `mask` is false are ignored.
pub fn check_gain_range<F: Float>(
    values: &[F],
    mask: Option<&[bool]>,
    arg: &'static str,
    list_of: impl Fn(usize) -> usize,
) -> Result<()> {
    let real = |k: usize| mask.is_none_or(|m| m[k]);
    match (0..values.len()).find(|&k| real(k) && values[k].to_f64() > GAIN_CAP) {
        Some(k) => Err(Gains::Exp2.describe(arg, values[k].to_f64(), list_of(k), "list")),
        None => Ok(()),
    }
}

/// The gain of a label, as the LambdaRank kernels take it.
#[derive(Clone, Copy, Debug)]
pub enum Gains<'a> {
    /// `2^max(y, 0) - 1` for any real `y <= GAIN_CAP`.
    Exp2,
    /// `table[y]`; labels must be integers in `0..table.len()`.
    Table(&'a [f64]),
}

/// LightGBM's default `label_gain`: `2^i - 1` for `i` in `0..31`.
pub fn default_label_gain() -> Vec<f64> {
    (0..31).map(|i| (1u64 << i) as f64 - 1.0).collect()
}

impl Gains<'_> {
    /// A table must be non-empty and finite.
    pub fn check(&self) -> Result<()> {
        if let Gains::Table(t) = self {
            if t.is_empty() {
                return Err(Error::invalid("label_gain", "must not be empty"));
            }
            if let Some(i) = t.iter().position(|v| !v.is_finite()) {
                return Err(Error::invalid("label_gain", format!("entry {i} is not finite")));
            }
        }
        Ok(())
    }

    /// `y` is a valid label (cheaper than `of`: no exp2).
    #[inline]
    pub fn accepts(&self, y: f64) -> bool {
        match self {
            Gains::Exp2 => y <= GAIN_CAP,
            // y as usize truncates (no libm call); equal back means an integer. `&`, not `&&`:
            // no branches, so a fold of it vectorises.
            Gains::Table(t) => (y >= 0.0) & (y < t.len() as f64) & ((y as usize) as f64 == y),
        }
    }

    /// The gain of `y`, or None when `y` is not a valid label.
    #[inline]
    pub fn of(&self, y: f64) -> Option<f64> {
        self.accepts(y).then(|| match self {
            Gains::Exp2 => y.max(0.0).exp2() - 1.0,
            Gains::Table(t) => t[y as usize],
        })
    }

    /// The error for an invalid label `y` in `what` (`"list"` or `"group"`) number `list`.
    pub fn describe(&self, arg: &'static str, y: f64, list: usize, what: &str) -> Error {
        match self {
            Gains::Exp2 => Error::invalid(
                arg,
                format!("value {y} in {what} {list} is too large for 2^y - 1 gains (at most {GAIN_CAP})"),
            ),
            Gains::Table(t) => Error::invalid(
                arg,
                format!(
                    "value {y} in {what} {list} is not an integer in [0, {}) (the label_gain table has {} entries)",
                    t.len(),
                    t.len()
                ),
            ),
        }
    }

    /// An error naming `arg` and the list of the first real value of `values` (mask, list of
    /// an index as in `check_gain_range`) that is not a valid label.
    pub fn check_labels<F: Float>(
        &self,
        values: &[F],
        mask: Option<&[bool]>,
        arg: &'static str,
        what: &str,
        list_of: impl Fn(usize) -> usize,
    ) -> Result<()> {
        let real = |k: usize| mask.is_none_or(|m| m[k]);
        match (0..values.len()).find(|&k| real(k) && !self.accepts(values[k].to_f64())) {
            Some(k) => Err(self.describe(arg, values[k].to_f64(), list_of(k), what)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gains_and_their_checks() {
        assert_eq!(gain(3.0, true), 7.0);
        assert_eq!(gain(-2.0, false), 0.0);
        assert_eq!(Gains::Exp2.of(GAIN_CAP + 1.0), None);
        assert_eq!(Gains::Table(&[0.0, 5.0]).of(1.0), Some(5.0));
        assert_eq!(Gains::Table(&[0.0, 5.0]).of(1.5), None);
        assert_eq!(Gains::Table(&[]).check().unwrap_err().arg(), "label_gain");
        let e = check_gain_range(&[0.0f64, 1.0, 1001.0], Some(&[true, true, true]), "targets", |k| k / 2)
            .unwrap_err();
        assert!(e.to_string().contains("list 1"), "{e}");
        assert!(check_gain_range(&[0.0f64, 1.0, 1001.0], Some(&[true, true, false]), "t", |k| k).is_ok());
        let e = Gains::Table(&[0.0, 1.0]).check_labels(&[0.0f32, 2.0], None, "labels", "group", |_| 3);
        assert!(e.unwrap_err().to_string().contains("group 3"));
        assert_eq!(discounts(2), vec![1.0, 1.0 / 3f64.log2()]);
    }
}
