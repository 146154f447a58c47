//! Padded batches `[B, N]` with an optional validity mask, and the parallel loop over lists.
//!
//! A kernel gathers each list's real items into contiguous scratch buffers, computes on those
//! (so inner loops have no mask and no branches) and scatters the result back, writing zero
//! at padded positions.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::float::Float;

/// A padded batch: row-major `scores[b * n + j]`; `mask[k] == true` marks a real item;
/// optional per-item `weights` (SPEC 13; None: every weight 1), finite and >= 0 on real items.
#[derive(Clone, Copy, Debug)]
pub struct Padded<'a, F> {
    pub scores: &'a [F],
    pub targets: Option<&'a [F]>,
    pub mask: Option<&'a [bool]>,
    pub weights: Option<&'a [F]>,
    pub b: usize,
    pub n: usize,
}

impl<'a, F: Float> Padded<'a, F> {
    pub fn new(
        scores: &'a [F],
        targets: Option<&'a [F]>,
        mask: Option<&'a [bool]>,
        b: usize,
        n: usize,
    ) -> Result<Self> {
        let len = b.checked_mul(n).ok_or_else(|| Error::invalid("scores", "shape is too large"))?;
        if scores.len() != len {
            return Err(Error::invalid("scores", format!("has {} values, expected {b} x {n}", scores.len())));
        }
        if let Some(t) = targets {
            if t.len() != len {
                return Err(Error::invalid(
                    "targets",
                    format!("has {} values, expected {b} x {n} like scores", t.len()),
                ));
            }
        }
        if let Some(m) = mask {
            if m.len() != len {
                return Err(Error::invalid(
                    "mask",
                    format!("has {} values, expected {b} x {n} like scores", m.len()),
                ));
            }
        }
        Ok(Padded { scores, targets, mask, weights: None, b, n })
    }

    /// The batch with per-item `weights` (`[b * n]`): an error naming `weights` unless they
    /// have the shape of scores and are finite and >= 0 on every real item (padded items'
    /// weights are ignored, whatever they hold).
    pub fn with_weights(mut self, weights: Option<&'a [F]>) -> Result<Self> {
        if let Some(w) = weights {
            if w.len() != self.scores.len() {
                return Err(Error::invalid(
                    "weights",
                    format!("has {} values, expected {} x {}", w.len(), self.b, self.n),
                ));
            }
            let bad = (0..self.b).into_par_iter().find_first(|&bi| {
                let lo = bi * self.n;
                (lo..lo + self.n).any(|k| self.is_real(k) && !(w[k].is_finite() && w[k] >= F::ZERO))
            });
            if let Some(list) = bad {
                return Err(Error::invalid("weights", format!("must be finite and >= 0 (list {list})")));
            }
        }
        self.weights = weights;
        Ok(self)
    }

    /// The targets a per-list kernel needs, after checking its output buffers: each of
    /// `per_list` (named `arg`) holds one value per list, `grad` (if any) the shape of scores.
    pub fn list_outputs(
        &self,
        arg: &'static str,
        per_list: &[usize],
        grad: Option<usize>,
    ) -> Result<&'a [F]> {
        let targets = self.targets.ok_or_else(|| Error::invalid("targets", "are required"))?;
        if per_list.iter().any(|&len| len != self.b) {
            return Err(Error::invalid(arg, "output buffers must have one value per list"));
        }
        if let Some(len) = grad {
            if len != self.b * self.n {
                return Err(Error::invalid("grad", "output buffer must have the shape of scores"));
            }
        }
        Ok(targets)
    }

    /// An error naming `arg` unless `out` has the shape of scores.
    pub fn check_out<T>(&self, out: &[T], arg: &'static str) -> Result<()> {
        if out.len() != self.b * self.n {
            return Err(Error::invalid(arg, "output buffer must have the shape of scores"));
        }
        Ok(())
    }

    #[inline]
    fn is_real(&self, k: usize) -> bool {
        self.mask.is_none_or(|m| m[k])
    }

    /// The first list (lowest index) whose real items hold NaN or inf, in scores or targets.
    pub fn check_finite(&self) -> Result<()> {
        let bad = |values: &[F]| {
            (0..self.b).into_par_iter().find_first(|&bi| {
                let lo = bi * self.n;
                (lo..lo + self.n).any(|k| self.is_real(k) && !values[k].is_finite())
            })
        };
        if let Some(list) = bad(self.scores) {
            return Err(Error::NonFinite { arg: "scores", list });
        }
        if let Some(t) = self.targets {
            if let Some(list) = bad(t) {
                return Err(Error::NonFinite { arg: "targets", list });
            }
        }
        Ok(())
    }

    /// Copies list `bi`'s real items into `w.s` (and `w.y`, `w.w`), their positions into `w.idx`.
    pub fn gather(&self, bi: usize, w: &mut Gathered<F>) {
        w.s.clear();
        w.y.clear();
        w.w.clear();
        w.idx.clear();
        let lo = bi * self.n;
        for j in 0..self.n {
            if self.is_real(lo + j) {
                w.idx.push(j);
                w.s.push(self.scores[lo + j]);
                if let Some(t) = self.targets {
                    w.y.push(t[lo + j]);
                }
                if let Some(ws) = self.weights {
                    w.w.push(ws[lo + j]);
                }
            }
        }
    }
}

/// One list's real items, gathered (`w` is empty when the batch has no weights).
#[derive(Default)]
pub struct Gathered<F> {
    pub s: Vec<F>,
    pub y: Vec<F>,
    pub w: Vec<F>,
    pub idx: Vec<usize>,
}

impl<F: Float> Gathered<F> {
    /// The weight of real item `k` (1 without weights).
    #[inline]
    pub fn weight(&self, k: usize) -> F {
        if self.w.is_empty() {
            F::ONE
        } else {
            self.w[k]
        }
    }
}

/// Writes `values[k]` to `row[idx[k]]` and zero everywhere else.
pub fn scatter<F: Float>(idx: &[usize], values: &[F], row: &mut [F]) {
    row.fill(F::ZERO);
    for (&j, &v) in idx.iter().zip(values) {
        row[j] = v;
    }
}

/// Runs `f(work, list, loss, valid, grad_row)` for every list in parallel; `grad` is `[b * n]`.
/// `work` is per-thread scratch made by `init`.
pub fn for_each_list<F, W, I, G>(
    n: usize,
    losses: &mut [F],
    valid: &mut [bool],
    grad: Option<&mut [F]>,
    init: I,
    f: G,
) where
    F: Float,
    W: Send,
    I: Fn() -> W + Sync + Send,
    G: Fn(&mut W, usize, &mut F, &mut bool, Option<&mut [F]>) + Sync + Send,
{
    let lists = losses.par_iter_mut().zip(valid.par_iter_mut()).enumerate();
    match grad {
        Some(g) if n > 0 => lists
            .zip(g.par_chunks_mut(n))
            .for_each_init(&init, |w, ((bi, (l, v)), row)| f(w, bi, l, v, Some(row))),
        _ => lists.for_each_init(&init, |w, (bi, (l, v))| f(w, bi, l, v, None)),
    }
}

/// Runs `f(work, list, row)` for every row of `out` (`[b * n]`) in parallel.
pub fn for_each_row<F, W, I, G>(n: usize, out: &mut [F], init: I, f: G)
where
    F: Float,
    W: Send,
    I: Fn() -> W + Sync + Send,
    G: Fn(&mut W, usize, &mut [F]) + Sync + Send,
{
    if n == 0 {
        return;
    }
    out.par_chunks_mut(n).enumerate().for_each_init(&init, |w, (bi, row)| f(w, bi, row));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_checked() {
        let s = [0.0f64; 6];
        assert!(Padded::new(&s, None, None, 2, 3).is_ok());
        assert_eq!(Padded::new(&s, None, None, 2, 4).unwrap_err().arg(), "scores");
        assert_eq!(Padded::new(&s, Some(&s[..5]), None, 2, 3).unwrap_err().arg(), "targets");
        assert_eq!(Padded::new(&s, None, Some(&[true; 5]), 2, 3).unwrap_err().arg(), "mask");
    }

    #[test]
    fn non_finite_reports_first_list_and_ignores_padding() {
        let s = [0.0, 1.0, f64::NAN, 2.0, f64::INFINITY, 0.0];
        let m = [true, true, false, true, true, true];
        let b = Padded::new(&s, None, Some(&m), 3, 2).unwrap();
        assert_eq!(b.check_finite(), Err(Error::NonFinite { arg: "scores", list: 2 }));
        let b = Padded::new(&s, None, None, 3, 2).unwrap();
        assert_eq!(b.check_finite(), Err(Error::NonFinite { arg: "scores", list: 1 }));
    }

    #[test]
    fn weights_are_checked_on_real_items_only() {
        let s = [0.0f64; 6];
        let m = [true, true, false, true, true, true];
        let b = Padded::new(&s, None, Some(&m), 3, 2).unwrap();
        let ok = [1.0, 0.0, f64::NAN, 2.0, 0.5, 3.0]; // the NaN sits on a padded item
        assert!(b.with_weights(Some(&ok)).is_ok());
        let neg = [1.0, 0.0, 1.0, 2.0, -0.5, 3.0];
        let e = b.with_weights(Some(&neg)).unwrap_err();
        assert_eq!(e.arg(), "weights");
        assert!(e.to_string().contains("list 2"), "{e}");
        assert_eq!(b.with_weights(Some(&ok[..5])).unwrap_err().arg(), "weights");
        let mut g = Gathered::default();
        b.with_weights(Some(&ok)).unwrap().gather(1, &mut g);
        assert_eq!((g.w.as_slice(), g.weight(0)), (&[2.0][..], 2.0));
        b.gather(1, &mut g);
        assert!(g.w.is_empty() && g.weight(0) == 1.0);
    }

    #[test]
    fn gather_and_scatter_round_trip() {
        let s = [1.0f32, 2.0, 3.0, 4.0];
        let y = [5.0f32, 6.0, 7.0, 8.0];
        let m = [false, true, false, true];
        let b = Padded::new(&s, Some(&y), Some(&m), 1, 4).unwrap();
        let mut w = Gathered::default();
        b.gather(0, &mut w);
        assert_eq!(
            (w.s.as_slice(), w.y.as_slice(), w.idx.as_slice()),
            (&[2.0, 4.0][..], &[6.0, 8.0][..], &[1, 3][..])
        );
        let mut row = [9.0f32; 4];
        scatter(&w.idx, &w.s, &mut row);
        assert_eq!(row, [0.0, 2.0, 0.0, 4.0]);
    }
}
