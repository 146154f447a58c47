//! One list at a time: the per-thread scratch, 1/maxDCG@k, the list driver (sort, the rows
//! through `kernel::row_kernel`, norm) and the ragged layout's per-list validation.

use super::kernel::{row_kernel, Row};
use super::sort::sort_desc;
use super::{LambdaMetric, LambdaOptions};
use crate::error::{Error, Result};
use crate::float::{select, simd_dispatch, Float, Isa};
use crate::gains::Gains;
use crate::ragged::Groups;

/// The ragged inputs of `lambdarank_gradients`, validated as a whole (lengths, group sizes,
/// options, the gain table); each list's values are checked by `ragged_list`.
#[derive(Clone, Copy)]
pub(super) struct RaggedLists<'a, P, Y> {
    pub preds: &'a [P],
    pub labels: &'a [Y],
    pub groups: &'a Groups,
    /// The label-gain table; labels must be integers below its length.
    pub table: &'a [f64],
    pub weights: Option<&'a [f64]>,
    /// `discount(p)` for every position of the longest list.
    pub disc: &'a [f64],
    pub opts: &'a LambdaOptions,
}

/// Per-thread scratch for one list. The caller fills `rs` (scores), `ry` (labels) and `rg`
/// (gains) in input order, and for a weighted loss (SPEC 13) `rw` (per-item weights; empty: no
/// weights); results come back in score order in `grad`, `hess`, position `p` belonging to input
/// item `idx[p]`.
#[derive(Default)]
pub(super) struct Work {
    pub rs: Vec<f64>,
    pub ry: Vec<f64>,
    pub rg: Vec<f64>,
    pub rw: Vec<f64>,
    /// `rw` in score order.
    pub wt: Vec<f64>,
    pub keys: Vec<u64>,
    pub idx: Vec<usize>,
    pub s: Vec<f64>,
    pub y: Vec<f64>,
    pub g: Vec<f64>,
    pub u: Vec<f64>,
    pub grad: Vec<f64>,
    pub hess: Vec<f64>,
    pub dv: Vec<f64>,
    pub z: Vec<f64>,
    pub top: Vec<(f64, f64)>,
    pub counts: Vec<[u32; 4]>,
}

thread_local! {
    pub(super) static WORK: std::cell::RefCell<Work> = std::cell::RefCell::new(Work::default());
}

impl Work {
    pub fn clear(&mut self) {
        self.rs.clear();
        self.ry.clear();
        self.rg.clear();
        self.rw.clear();
    }

    /// `idx`: the input positions in score order (`sort::sort_desc`).
    fn sort(&mut self) {
        sort_desc(&self.rs, &mut self.keys, &mut self.idx);
    }
}

/// What one list gives besides its gradient.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct ListOut {
    /// The loss `factor * sum delta * log(1 + exp(-sigma * ds))` (LOSS only).
    pub loss: f64,
    /// The list has a pair and a nonzero normaliser.
    pub valid: bool,
}

/// `1/maxDCG@k` of a list (ideal order: labels descending), 0 if maxDCG is 0.
fn inverse_max_dcg(y: &[f64], g: &[f64], top: &mut Vec<(f64, f64)>, disc: &[f64], k: usize) -> f64 {
    top.clear();
    top.extend(y.iter().copied().zip(g.iter().copied()));
    let k = k.min(top.len());
    let desc = |a: &(f64, f64), b: &(f64, f64)| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal);
    if k < top.len() {
        top.select_nth_unstable_by(k - 1, desc);
    }
    top[..k].sort_unstable_by(desc);
    let max_dcg: f64 = top[..k].iter().zip(disc).map(|(&(_, g), &d)| g * d).sum();
    if max_dcg > 0.0 {
        1.0 / max_dcg
    } else {
        0.0
    }
}

/// `inverse_max_dcg` for integer labels below `table.len()` (their gains), by counting the
/// labels (LightGBM's way). Four interleaved histograms keep the increments independent.
fn inverse_max_dcg_counting(
    y: &[f64],
    table: &[f64],
    counts: &mut Vec<[u32; 4]>,
    disc: &[f64],
    k: usize,
) -> f64 {
    let n_labels = table.len();
    counts.clear();
    counts.resize(n_labels, [0; 4]);
    let mut chunks = y.chunks_exact(4);
    for c in &mut chunks {
        for l in 0..4 {
            // labels are validated integers below n_labels; min() keeps the index provably in range
            counts[(c[l] as usize).min(n_labels - 1)][l] += 1;
        }
    }
    for &v in chunks.remainder() {
        counts[(v as usize).min(n_labels - 1)][0] += 1;
    }
    let k = k.min(y.len());
    let (mut p, mut max_dcg) = (0usize, 0.0);
    for (label, c) in counts.iter().enumerate().rev() {
        if p >= k {
            break;
        }
        let c: usize = c.iter().map(|&v| v as usize).sum();
        for &d in &disc[p..k.min(p + c)] {
            max_dcg += table[label] * d;
        }
        p += c;
    }
    if max_dcg > 0.0 {
        1.0 / max_dcg
    } else {
        0.0
    }
}

/// Whether some pair of the rows `i < rows` (score order, `j > i`, different labels) has a
/// positive weight, its higher-labelled item's: an item of positive weight at `i` with a lower
/// label after it, or one after `i` with a higher label than `y[i]`. O(m), one backward pass.
fn weighted_pair_exists(y: &[f64], wt: &[f64], rows: usize) -> bool {
    let (mut low, mut high_w) = (f64::INFINITY, f64::NEG_INFINITY);
    for i in (0..y.len()).rev() {
        if i < rows && ((wt[i] > 0.0 && low < y[i]) || high_w > y[i]) {
            return true;
        }
        low = low.min(y[i]);
        if wt[i] > 0.0 {
            high_w = high_w.max(y[i]);
        }
    }
    false
}

/// Largest `sigma * (best - worst)` for which the factorised exponentials stay normal numbers.
const MAX_SPAN: f64 = 600.0;

/// One list: fills `w.grad`, `w.hess` (score order, norm scaling applied, no weights); with
/// `LOSS`, also the loss, and `w.hess` stays zero (the loss has no use for it); `SHORT`: the
/// loss's log series to 2e-9 (`kernel::half_ln_1p`), for float32 results. With `LOSS` and
/// per-item weights in `w.rw` (SPEC 13), each pair's loss term and gradient are multiplied by the
/// weight of its higher-labelled item (norm's S stays that of the unweighted pairs), and a list
/// none of whose pairs has a positive weight does not count.
/// `table`: the gain table when the labels are known to be integers below its length.
///
/// Precision: the factorised exponentials carry a relative error of about
/// `1e-16 * sigma * (best - worst)` (at most ~1e-13), far below anything a booster sees.
#[inline(always)]
pub(super) fn list_lambdas<const LOSS: bool, const SHORT: bool>(
    isa: Isa,
    w: &mut Work,
    disc: &[f64],
    o: &LambdaOptions,
    table: Option<&[f64]>,
) -> ListOut {
    let m = w.rs.len();
    w.grad.clear();
    w.grad.resize(m, 0.0);
    w.hess.clear();
    w.hess.resize(m, 0.0);
    w.idx.clear();
    w.idx.extend(0..m);
    if m < 2 {
        return ListOut::default();
    }
    let y0 = w.ry[0];
    if w.ry.iter().all(|&v| v == y0) {
        return ListOut::default();
    }
    let inv = match o.metric {
        LambdaMetric::Ndcg if table.is_some_and(|t| t.len() <= 4 * m + 64) => {
            inverse_max_dcg_counting(&w.ry, table.unwrap_or(&[]), &mut w.counts, disc, o.truncation)
        }
        LambdaMetric::Ndcg => inverse_max_dcg(&w.ry, &w.rg, &mut w.top, disc, o.truncation),
        LambdaMetric::Mrr => {
            let rel = w.ry.iter().filter(|&&v| v > 0.0).count();
            if rel == 0 || rel == m {
                0.0
            } else {
                1.0
            }
        }
    };
    if inv == 0.0 {
        return ListOut::default();
    }
    w.sort();
    let weighted = LOSS && !w.rw.is_empty();
    let Work { rs, ry, rg, rw, wt, idx, s, y, g, u, grad, hess, dv, z, .. } = w;
    s.clear();
    y.clear();
    g.clear();
    wt.clear();
    for &k in idx.iter() {
        s.push(rs[k]);
        y.push(ry[k]);
        g.push(rg[k]);
    }
    let rows = (m - 1).min(o.truncation);
    if weighted {
        wt.extend(idx.iter().map(|&k| rw[k]));
        if !weighted_pair_exists(y, wt, rows) {
            return ListOut::default();
        }
    }
    let spread = s[0] != s[m - 1];
    let (c0, c1) = if o.norm && spread { (0.01, 1.0) } else { (1.0, 0.0) };
    // exp(-sigma (s_i - s_j)) = u[j] / u[i] with u[p] = exp(sigma (s_p - s_0)), unless the
    // scores span too much for u to stay a normal number: then row by row.
    let factorised = o.sigma * (s[0] - s[m - 1]) <= MAX_SPAN;
    u.clear();
    if factorised {
        let (s0, sigma) = (s[0], o.sigma);
        u.extend(s.iter().map(|&v| (sigma * (v - s0)).exp_fast()));
    } else {
        u.resize(m, 0.0);
    }
    let mut total = [0.0f64; 2]; // S / 2, loss
                                 // For MRR the signed deltas of a row go to `dv` and enter as g (with gi = 0, d = 0, di = 1,
                                 // scale = -sigma); for NDCG scale = sigma * inv.
    let (ndcg, scale, lscale) = match o.metric {
        LambdaMetric::Ndcg => (true, o.sigma * inv, inv),
        LambdaMetric::Mrr => (false, -o.sigma, -1.0),
    };

    let (mut f, mut f2) = (m, m);
    if !ndcg {
        let mut relp = y.iter().enumerate().filter(|(_, &v)| v > 0.0).map(|(p, _)| p);
        f = relp.next().unwrap_or(m);
        f2 = relp.next().unwrap_or(m);
        dv.clear();
        dv.resize(m, 0.0);
        z.clear();
        z.resize(m, 0.0);
    }
    let rr = |p: usize| 1.0 / (p as f64 + 1.0);
    for i in 0..rows {
        let (gi, di, gs, ds): (f64, f64, &[f64], &[f64]) = if ndcg {
            (g[i], disc[i], &g[i + 1..m], &disc[i + 1..m])
        } else {
            if i > f {
                break;
            }
            if i < f {
                let a = -(rr(i) - rr(f));
                for (v, &yj) in dv[i + 1..].iter_mut().zip(&y[i + 1..]) {
                    *v = select(yj > 0.0, a, 0.0);
                }
            } else {
                for (j, (v, &yj)) in dv.iter_mut().zip(y.iter()).enumerate().skip(i + 1) {
                    *v = select(yj > 0.0, 0.0, rr(f) - rr(j.min(f2)));
                }
            }
            (0.0, 1.0, &dv[i + 1..m], &z[i + 1..m])
        };
        let wi = if factorised {
            1.0 / u[i]
        } else {
            let (si, sigma) = (s[i], o.sigma);
            for (uj, &sj) in u[i + 1..].iter_mut().zip(&s[i + 1..]) {
                // exp_fast stops at exp(-708); below that the true value is (nearly) 0
                let x = sigma * (si - sj);
                *uj = select(x > 708.0, 0.0, (-x).exp_fast());
            }
            1.0
        };
        let (hsi, hscale, hc0) = (0.5 * s[i], 0.5 * scale, 0.5 * c0);
        let whi = if weighted { wt[i] } else { 1.0 };
        let k = Row { hsi, yi: y[i], gi, di, wi, hscale, sigma: o.sigma, hc0, c1, lscale, whi };
        let (st, yt, ev) = (&s[i + 1..m], &y[i + 1..m], &u[i + 1..m]);
        let (gr, hr) = (&mut grad[i + 1..m], &mut hess[i + 1..m]);
        let r = if weighted {
            row_kernel::<LOSS, SHORT, true>(isa, &k, st, yt, gs, ds, ev, &wt[i + 1..m], gr, hr)
        } else {
            row_kernel::<LOSS, SHORT, false>(isa, &k, st, yt, gs, ds, ev, &[], gr, hr)
        };
        grad[i] -= r[0];
        if !LOSS {
            hess[i] += r[1];
        }
        total[0] += r[2];
        total[1] += r[3];
    }
    // Each pair's S term above is half its share of S.
    let total = [2.0 * total[0], total[1]];
    let (sum, loss) = (total[0], total[1]);
    let mut factor = 1.0;
    if o.norm && sum > 0.0 {
        // LightGBM's log2(1 + S) / S, as ln(1 + S) / (S ln 2): accurate for a tiny S too, where
        // 1 + S rounds to 1 (a tiny sigma, or pairs far apart with norm's 1 / (0.01 + |ds|)).
        factor = sum.ln_1p() / (sum * std::f64::consts::LN_2);
        for v in grad.iter_mut() {
            *v *= factor;
        }
        for v in hess.iter_mut() {
            *v *= factor;
        }
    }
    ListOut { loss: factor * loss, valid: true }
}

simd_dispatch!(
    pub(super) list_lambdas_simd,
    list_lambdas(isa),
    [const LOSS: bool, const SHORT: bool],
    [LOSS, SHORT],
    (w: &mut Work, disc: &[f64], o: &LambdaOptions, table: Option<&[f64]>) -> ListOut
);

/// Validates the rows of list `gi`: finite preds, labels that index the gain table, finite
/// non-negative weights. Folds that do not stop early, so that they vectorise.
pub(super) fn check_list<P: Float, Y: Float>(x: &RaggedLists<'_, P, Y>, gi: usize) -> Result<()> {
    let r = x.groups.range(gi);
    if !x.preds[r.clone()].iter().fold(true, |ok, v| ok & v.is_finite()) {
        return Err(Error::NonFinite { arg: "preds", list: gi });
    }
    let gains = Gains::Table(x.table);
    let valid = |v: f64| gains.accepts(v);
    let labels = &x.labels[r.clone()];
    if !labels.iter().fold(true, |ok, v| ok & valid(v.to_f64())) {
        let bad = labels.iter().map(|v| v.to_f64()).find(|&v| !valid(v)).unwrap_or(f64::NAN);
        return Err(gains.describe("labels", bad, gi, "group"));
    }
    if let Some(&v) = x.weights.and_then(|wt| wt[r].iter().find(|v| !(v.is_finite() && **v >= 0.0))) {
        return Err(Error::invalid(
            "weights",
            format!("value {v} in group {gi} is not a finite non-negative number"),
        ));
    }
    Ok(())
}

/// One list of the ragged layout, already checked (`check_list`): computes, writes `gout`, `hout`.
#[inline(always)]
fn ragged_list<P: Float, Y: Float>(
    isa: Isa,
    w: &mut Work,
    x: &RaggedLists<'_, P, Y>,
    gi: usize,
    gout: &mut [f64],
    hout: &mut [f64],
) {
    let RaggedLists { preds, labels, table, weights, disc, opts, .. } = *x;
    let r = x.groups.range(gi);
    w.clear();
    w.rs.extend(preds[r.clone()].iter().map(|v| v.to_f64()));
    w.ry.extend(labels[r.clone()].iter().map(|v| v.to_f64()));
    w.rg.extend(w.ry.iter().map(|&v| table[v as usize])); // labels checked by `check_list`
    let wt = weights.map(|wt| &wt[r]);
    list_lambdas::<false, false>(isa, w, disc, opts, Some(table));
    for (p, &k) in w.idx.iter().enumerate() {
        gout[k] = w.grad[p];
        hout[k] = w.hess[p];
    }
    if let Some(wt) = wt {
        for ((gv, hv), &wv) in gout.iter_mut().zip(hout.iter_mut()).zip(wt) {
            *gv *= wv;
            *hv *= wv;
        }
    }
}

simd_dispatch!(
    pub(super) ragged_list_simd,
    ragged_list(isa),
    [P: Float, Y: Float],
    [P, Y],
    (w: &mut Work, x: &RaggedLists<'_, P, Y>, gi: usize, gout: &mut [f64], hout: &mut [f64]) -> ()
);
