//! LambdaRank: LightGBM's `lambdarank` objective (`LambdarankNDCG::GetGradientsForOneQuery`)
//! with an exact sigmoid in place of its lookup table, for the ragged layout (GBDT) and, as a
//! loss with its gradient, for padded batches (torch).
//!
//! Per list: stable sort by score descending; discount `d(p) = 1/log2(2 + p)` for 0-based
//! position `p`; `inv = 1/maxDCG@k` (0 when maxDCG is 0), the ideal order being the labels
//! descending. For each position `i < min(m - 1, k)` and each `j > i` whose label differs,
//! with `h` the item of higher label, `l` the other and `ds = s_h - s_l`:
//!
//! ```text
//! delta = (G[y_h] - G[y_l]) * |d(p_h) - d(p_l)| * inv
//! if norm and best score != worst score: delta /= 0.01 + |ds|
//! rho = 1 / (1 + exp(sigma * ds))
//! lam = -sigma * delta * rho;  hes = sigma^2 * delta * rho * (1 - rho)
//! grad[h] += lam; grad[l] -= lam; hess[h] += hes; hess[l] += hes; S -= 2 * lam
//! ```
//!
//! then, if norm and `S > 0`, grad and hess are scaled by `log2(1 + S) / S`, and finally by
//! the per-row weights. The loss form sums `delta * log(1 + exp(-sigma * ds))` over the same
//! pairs (delta and the norm factors held constant), so its gradient is exactly `grad`.
//!
//! `LambdaMetric::Mrr` replaces the NDCG delta by `|RR' - RR|`: RR = 1/(1 + f), `f` the 0-based
//! position of the first relevant item (label > 0) in the score order, RR' the same after
//! swapping h and l. It is nonzero only when exactly one of the two is relevant and the swap
//! moves the first relevant position: with `i < j` the pair's positions,
//! - `i < f`, item at `j` relevant: RR' = 1/(1 + i), delta = 1/(1 + i) - 1/(1 + f);
//! - `i == f`, item at `j` not relevant: the relevant item moves down to `j`, the first
//!   relevant becomes `min(j, f2)` (`f2` the second relevant position), delta =
//!   1/(1 + f) - 1/(1 + min(j, f2)).
//!
//! Cost per list: O(m log m) for the sort plus O(k m) for the pairs. Every list is computed on
//! one thread in a fixed order, so results do not depend on the number of threads. Computation
//! is in f64 whatever the input type.

use rayon::prelude::*;

use crate::batch::{for_each_list, Gathered, Padded};
use crate::error::{Error, Result};
use crate::float::{check_scale, Float};
use crate::gains::discounts;
pub use crate::gains::{default_label_gain, Gains};
use crate::ragged::Groups;

mod kernel;
mod list;
mod sort;
#[cfg(test)]
mod tests;

use list::{check_list, list_lambdas_simd, ragged_list_simd, RaggedLists, Work, WORK};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LambdaMetric {
    Ndcg,
    Mrr,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LambdaOptions {
    /// `sigma > 0` of the sigmoid.
    pub sigma: f64,
    /// Pairs need their higher-ranked position below this (`usize::MAX`: every pair).
    pub truncation: usize,
    /// LightGBM's `lambdarank_norm`.
    pub norm: bool,
    pub metric: LambdaMetric,
}

impl Default for LambdaOptions {
    fn default() -> Self {
        LambdaOptions { sigma: 1.0, truncation: 30, norm: true, metric: LambdaMetric::Ndcg }
    }
}

impl LambdaOptions {
    pub(crate) fn check(&self) -> Result<()> {
        // sigma^2 scales the hessians: it must stay finite (and 1/sigma normal).
        check_scale("sigma", self.sigma)?;
        if self.truncation < 1 {
            return Err(Error::invalid("truncation_level", "must be at least 1"));
        }
        Ok(())
    }
}

/// LambdaRank gradients and hessians for the ragged layout: `preds`, `labels` (`[n]`), `group`
/// (list sizes summing to n), optional per-row `weights`; writes `grad`, `hess` (`[n]`).
///
/// Labels must be integers in `0..label_gain.len()`; predictions must be finite; weights
/// finite and non-negative. Errors name the argument and the group.
#[allow(clippy::too_many_arguments)]
pub fn lambdarank_gradients<P: Float, Y: Float>(
    preds: &[P],
    labels: &[Y],
    group: &[i64],
    label_gain: &[f64],
    weights: Option<&[f64]>,
    opts: &LambdaOptions,
    grad: &mut [f64],
    hess: &mut [f64],
) -> Result<()> {
    let n = preds.len();
    opts.check()?;
    let gains = Gains::Table(label_gain);
    gains.check()?;
    if labels.len() != n {
        return Err(Error::invalid(
            "labels",
            format!("has {} values, expected {n} like preds", labels.len()),
        ));
    }
    if let Some(wt) = weights {
        if wt.len() != n {
            return Err(Error::invalid(
                "weights",
                format!("has {} values, expected {n} like preds", wt.len()),
            ));
        }
    }
    if grad.len() != n || hess.len() != n {
        return Err(Error::invalid("grad", "output buffers must have one value per row"));
    }
    let groups = Groups::from_sizes(group, n)?;
    let disc = discounts(groups.max_size());
    let lists = RaggedLists { preds, labels, groups: &groups, table: label_gain, weights, disc: &disc, opts };
    // Every input is checked before any output is written: `grad`, `hess` stay untouched on error.
    if let Some(e) = (0..groups.len()).into_par_iter().find_map_first(|gi| check_list(&lists, gi).err()) {
        return Err(e);
    }
    // Largest lists first, so that one long list does not start last.
    let k = opts.truncation;
    let mut tasks: Vec<(usize, &mut [f64], &mut [f64])> = groups
        .split_mut(grad)
        .into_iter()
        .zip(groups.split_mut(hess))
        .enumerate()
        .map(|(gi, (a, b))| (gi, a, b))
        .collect();
    let cost = |m: usize| m.saturating_mul(m.min(k).max(1)) + m;
    tasks.sort_by_key(|t| std::cmp::Reverse(cost(t.1.len())));
    tasks.into_par_iter().with_max_len(1).for_each(|(gi, gout, hout)| {
        WORK.with(|w| ragged_list_simd(&mut w.borrow_mut(), &lists, gi, gout, hout))
    });
    Ok(())
}

/// LambdaRank as a loss on a padded batch: per-list losses `[b]`, whether each list counts
/// `[b]`, and with `grad` the gradient of each list's loss with respect to its scores.
/// `truncation = usize::MAX` takes every pair. With the batch's per-item weights (SPEC 13), each
/// pair's term is multiplied by the weight of its higher-labelled item (`list::list_lambdas`).
pub fn lambdarank_loss<F: Float>(
    batch: &Padded<F>,
    gains: Gains,
    opts: &LambdaOptions,
    losses: &mut [F],
    valid: &mut [bool],
    grad: Option<&mut [F]>,
) -> Result<()> {
    opts.check()?;
    gains.check()?;
    let targets =
        batch.list_outputs("losses", &[losses.len(), valid.len()], grad.as_deref().map(<[F]>::len))?;
    batch.check_finite()?;
    let n = batch.n;
    gains.check_labels(targets, batch.mask, "targets", "list", |k| k / n.max(1))?;
    let disc = discounts(n);
    let table = match gains {
        Gains::Table(t) => Some(t),
        Gains::Exp2 => None,
    };
    let init = || (Work::default(), Gathered::<F>::default());
    for_each_list(n, losses, valid, grad, init, |(w, list), bi, loss, ok, row| {
        batch.gather(bi, list);
        w.clear();
        w.rs.extend(list.s.iter().map(|v| v.to_f64()));
        w.ry.extend(list.y.iter().map(|v| v.to_f64()));
        w.rg.extend(w.ry.iter().map(|&v| gains.of(v).unwrap_or(0.0)));
        w.rw.extend(list.w.iter().map(|v| v.to_f64())); // SPEC 13's weights (empty: none)
                                                        // float32 results: the loss's log series to 2e-9 (`kernel::half_ln_1p`), below their rounding
        let out = if std::mem::size_of::<F>() == 4 {
            list_lambdas_simd::<true, true>(w, &disc, opts, table)
        } else {
            list_lambdas_simd::<true, false>(w, &disc, opts, table)
        };
        *loss = F::from_f64(out.loss);
        *ok = out.valid;
        if let Some(row) = row {
            row.fill(F::ZERO);
            if out.valid {
                for (p, &k) in w.idx.iter().enumerate() {
                    row[list.idx[k]] = F::from_f64(w.grad[p]);
                }
            }
        }
    });
    Ok(())
}
