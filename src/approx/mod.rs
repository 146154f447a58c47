//! The approximate-rank family: smooth ranks and the listwise losses built on them.
//!
//! `r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)` over the real items of a list.
//! With `c_i = dL/dr_i`, the gradient has the closed form
//! `dL/ds_k = (1/T) sum_{i != k} sigmoid'((s_k - s_i) / T) (c_i - c_k)`,
//! so no kernel ever builds an N x N buffer.
//!
//! Every kernel takes a [`Method`]: `Exact` sums the pairs (`pairs`, O(N^2) per list, in the
//! input dtype), `Fast` evaluates the same sums by 1-D fast summation (`fast`, O(N log N + N p)
//! per list, in float64, outputs rounded once to the input dtype), `Auto` takes `Fast` for
//! lists with at least [`FAST_MIN_N`] real items.
//!
//! Accuracy of `Fast` (tested in `tests_fast.rs` against plain float64 pair sums over normal,
//! Cauchy, clustered, tied, all-equal, offset and log-spread scores, T from 0.01 to 1000):
//! - float64 ranks and losses: `|fast - exact| <= 1e-10 * max(1, |exact|)`;
//! - float64 gradients, double backwards and Hessian-vector products:
//!   `|fast_k - exact_k| <= 1e-10 * max_k S_k + e^-D * max_k A_k`, where `S_k` is the same sum
//!   taken over the absolute values of its terms, e.g. for the gradient
//!   `S_k = (1/T) sum_i sigmoid'((s_i - s_k)/T) (|c_i| + |c_k|)`, and for the double backward
//!   `S_l = (1/T^2) sum_k sigmoid'((s_l - s_k)/T) (|c_k| + |c_l|) (|v_l| + |v_k|)` (its kernel
//!   `sigmoid''` replaced by the envelope `sigmoid' >= |sigmoid''|`: near ties `sigmoid''` -> 0
//!   but an interpolation's rounding does not); for the HVP the `S` of `J (C2 J v)` (with
//!   `|C2| (S of J v)` as its weights) plus that of the double backward. `A_k` is the same sum
//!   with every kernel value replaced by 1, and `e^-D` (D = `FAST_SATURATION`, ~8e-20) bounds
//!   a saturated pair's dropped term: it matters only where nearly every pair is saturated.
//! - float32: no worse than 4x the exact float32 kernel's own error against float64, or 1e-6
//!   relative (on the same scales), whichever is larger.

mod fast;
mod pairs;

use rayon::prelude::*;

use crate::batch::{for_each_list, for_each_row, scatter, Gathered, Padded};
use crate::error::{Error, Result};
use crate::float::{check_scale, simd_dispatch, Float};
use crate::gains::{check_gain_range, discount, gain};
use fast::{fill, for_chunks, grow, Plan, Scratch, BLK, D1, D2, SIG};
use pairs::{double_backward, ranks_of, ranks_symmetric, ranks_vjp};

pub use fast::{FAST_CELL, FAST_MIN_OCCUPANCY, FAST_MIN_SEGMENT, FAST_NODES, FAST_SATURATION, FAST_WINDOW};

/// `Method::Auto` sums a list by fast summation when it has at least this many real items:
/// on float32 N(0, 1) scores, T = 1 (approx NDCG, loss and gradient, one thread), the two cost
/// the same at ~50 items, fast summation is ~1.3x faster at 75 and ~1.6x at 100.
pub const FAST_MIN_N: usize = 100;

/// How the sums over pairs are evaluated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// Every pair, in the input dtype.
    #[default]
    Exact,
    /// Fast summation, in float64.
    Fast,
    /// `Fast` for lists of at least `FAST_MIN_N` real items, else `Exact`.
    Auto,
}

impl Method {
    /// `"exact"`, `"fast"` or `"auto"`.
    pub fn parse(name: &str) -> Option<Method> {
        match name {
            "exact" => Some(Method::Exact),
            "fast" => Some(Method::Fast),
            "auto" => Some(Method::Auto),
            _ => None,
        }
    }

    /// Whether a list of `m` real items is summed by fast summation.
    pub fn is_fast(self, m: usize) -> bool {
        match self {
            Method::Exact => false,
            Method::Fast => true,
            Method::Auto => m >= FAST_MIN_N,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discount {
    None,
    Log2,
    Reciprocal,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ApproxLoss {
    /// `1 - sum_i g(y_i) / log2(1 + r_i) / IDCG`.
    Ndcg { scale_gains: bool },
    /// `1 - max_i min(max(y_i, 0), 1) / r_i`.
    Mrr,
    /// `mean_i w(t_i) (r_i - t_i)^2`, `t_i` the 1-based rank by targets (stable).
    RankMse { discount: Discount },
}

/// What a loss kernel computes per list beyond the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Loss,
    Grad,
    /// The Hessian times `v` (in `Work::v`).
    Hvp,
}

/// Scratch of the loss step (shared by both methods).
#[derive(Default)]
struct LossWork {
    rows: Vec<usize>,
    rows2: Vec<usize>,
    gains: Vec<f64>,
    order: Vec<usize>,
    /// NDCG: per row, `(g ln2 / L, g ln2 / ((1 + r) L^2), g)`, `L = ln(1 + r)`.
    dc: Vec<(f64, f64, f64)>,
}

/// Per-thread scratch for one list.
#[derive(Default)]
struct Work<F> {
    list: Gathered<F>,
    /// `v` (HVP, double backward), gathered like the scores.
    v: Vec<F>,
    lw: LossWork,
    // The pair kernels, in F.
    r: Vec<F>,
    c: Vec<F>,
    d2: Vec<F>,
    g: Vec<F>,
    h: Vec<F>,
    jv: Vec<F>,
    tmp: Vec<F>,
    tmp2: Vec<F>,
}

impl<F: Float> Work<F> {
    /// Zeroed pair-kernel buffers for the gathered list; its size.
    fn size(&mut self) -> usize {
        let m = self.list.s.len();
        for v in [
            &mut self.r,
            &mut self.c,
            &mut self.d2,
            &mut self.g,
            &mut self.h,
            &mut self.jv,
            &mut self.tmp,
            &mut self.tmp2,
        ] {
            v.clear();
            v.resize(m, F::ZERO);
        }
        m
    }

    /// Gathers list `bi` of `batch` and, if given, `v` at its real items.
    fn gather(&mut self, batch: &Padded<F>, bi: usize, v: Option<&[F]>) {
        batch.gather(bi, &mut self.list);
        if let Some(v) = v {
            self.v.clear();
            self.v.extend(self.list.idx.iter().map(|&j| v[bi * batch.n + j]));
        }
    }
}

/// Lists longer than this sort their targets on the thread pool (the same result).
const PAR_SORT: usize = 1 << 14;

/// DCG of the ideal order of `gains` (sorted in place, descending).
fn ideal_dcg(gains: &mut [f64]) -> f64 {
    if gains.len() > PAR_SORT {
        gains.par_sort_unstable_by(|a, b| b.total_cmp(a));
    } else {
        gains.sort_unstable_by(|a, b| b.total_cmp(a));
    }
    if gains.len() > PAR_SORT {
        let terms: Vec<f64> = gains.par_iter().enumerate().map(|(p, &g)| g * discount(p)).collect();
        return terms.iter().sum();
    }
    gains.iter().enumerate().map(|(p, &g)| g * discount(p)).sum()
}

/// The weight of item `i` of a list whose gathered weights are `wts` (empty: every weight 1).
#[inline(always)]
fn weight_of<F: Float>(wts: &[F], i: usize) -> f64 {
    if wts.is_empty() {
        1.0
    } else {
        wts[i].to_f64()
    }
}

/// NDCG's weight scale: `1 / max_i w_i` over the list (1 without weights, or when every weight
/// is 0). NDCG is a ratio of sums linear in the gains, so dividing every weight of a list by the
/// same number changes nothing but the range: the weighted gains `g_i w_i / max w` never exceed
/// the unweighted ones (no overflow for any finite weights), and weights that are all equal give
/// exactly the unweighted gains.
fn ndcg_weight_scale<F: Float>(wts: &[F]) -> f64 {
    let top = wts.iter().fold(0.0f64, |a, &w| a.max(w.to_f64()));
    if top > 0.0 {
        1.0 / top
    } else {
        1.0
    }
}

/// The items whose ranks the loss needs, in `lw.rows` (and the gains, for NDCG: weighted by the
/// per-item weights `wts`, empty without weights); false when the list does not count (fewer
/// than 2 items, or nothing weighted to rank: no item with a positive weighted gain (NDCG) or
/// weighted relevance (MRR), or every weight 0 (RankMSE)).
fn loss_rows<F: Float>(kind: ApproxLoss, y: &[F], wts: &[F], lw: &mut LossWork) -> bool {
    let m = y.len();
    if m < 2 {
        return false;
    }
    lw.rows.clear();
    match kind {
        ApproxLoss::Ndcg { scale_gains } => {
            lw.gains.clear();
            if wts.is_empty() {
                let g = |&v: &F| gain(v.to_f64(), scale_gains);
                if m > PAR_SORT {
                    lw.gains.par_extend(y.par_iter().map(g));
                } else {
                    lw.gains.extend(y.iter().map(g));
                }
            } else {
                let scale = ndcg_weight_scale(wts);
                let g = |(&v, &w): (&F, &F)| gain(v.to_f64(), scale_gains) * (w.to_f64() * scale);
                if m > PAR_SORT {
                    lw.gains.par_extend(y.par_iter().zip(wts.par_iter()).map(g));
                } else {
                    lw.gains.extend(y.iter().zip(wts).map(g));
                }
            }
            lw.rows.extend((0..m).filter(|&i| lw.gains[i] > 0.0));
        }
        ApproxLoss::Mrr => lw.rows.extend((0..m).filter(|&i| y[i] > F::ZERO && weight_of(wts, i) > 0.0)),
        ApproxLoss::RankMse { .. } => {
            if !wts.is_empty() && !wts.iter().any(|&w| w > F::ZERO) {
                return false;
            }
            lw.rows.extend(0..m)
        }
    }
    !lw.rows.is_empty()
}

/// The MRR choice's relative tolerance: ranks that differ by rounding (or between methods) must
/// not flip it.
fn mrr_tolerance<F: Float>() -> f64 {
    if std::mem::size_of::<F>() == 4 {
        1e-5
    } else {
        1e-9
    }
}

/// The loss from ranks `r` (needed at `lw.rows`, from `loss_rows` with the same weights `wts`):
/// `c = dL/dr` and, with `d2`, the diagonal `d^2L/dr^2`, written at the rows (`c`, `d2` zero
/// elsewhere on entry). Weights (SPEC 13) only change `c` and `d2`, never the ranks: NDCG's gains
/// are weighted (in `lw.gains`, the ideal DCG that of the weighted gains), MRR's relevance is
/// `w_i min(y_i, 1)`, RankMSE's squared terms are multiplied by `w_i`.
#[allow(clippy::too_many_arguments)]
fn loss_from_ranks<F: Float, G: Float>(
    kind: ApproxLoss,
    s: &[F],
    y: &[F],
    wts: &[F],
    r: &[G],
    lw: &mut LossWork,
    c: &mut [G],
    mut d2: Option<&mut [G]>,
) -> f64 {
    let m = y.len();
    let LossWork { rows, gains, order, dc, .. } = lw;
    match kind {
        ApproxLoss::Ndcg { .. } => {
            let term = |&i: &usize| {
                let (gi, ri) = (gains[i], r[i].to_f64());
                let lr = (1.0 + ri).ln();
                (gi * std::f64::consts::LN_2 / lr, gi * std::f64::consts::LN_2 / ((1.0 + ri) * lr * lr), gi)
            };
            dc.clear();
            if rows.len() > PAR_SORT {
                dc.par_extend(rows.par_iter().map(term));
            } else {
                dc.extend(rows.iter().map(term));
            }
            let mut dcg = 0.0;
            for &(t, _, _) in dc.iter() {
                dcg += t;
            }
            let idcg = ideal_dcg(gains);
            for (&i, &(_, d, gi)) in rows.iter().zip(dc.iter()) {
                c[i] = G::from_f64(d / idcg);
                if let Some(d2) = d2.as_deref_mut() {
                    // a = g ln2 / IDCG, L = ln(1 + r): d2 = -a (L + 2) / ((1 + r)^2 L^3).
                    let ri = r[i].to_f64();
                    let (a, lr) = (gi * std::f64::consts::LN_2 / idcg, (1.0 + ri).ln());
                    d2[i] = G::from_f64(-a * (lr + 2.0) / ((1.0 + ri) * (1.0 + ri) * lr * lr * lr));
                }
            }
            1.0 - dcg / idcg
        }
        ApproxLoss::Mrr => {
            let rel = |i: usize| y[i].to_f64().min(1.0) * weight_of(wts, i);
            // `rel` is the weighted relevance. Per relevance level the first highest-scored item (the smallest rank, decided on
            // the scores: tied scores give equal ranks only up to rounding); of those, the
            // lowest-index one whose rel / r is within a relative `mrr_tolerance` of the
            // largest. The torch twin (`_approx_native.mrr_item`) agrees.
            order.clear();
            order.extend(rows.iter().copied());
            let cmp = |a: f64, b: f64| b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal);
            let by = |&a: &usize, &b: &usize| {
                cmp(rel(a), rel(b)).then(cmp(s[a].to_f64(), s[b].to_f64())).then(a.cmp(&b))
            };
            if order.len() > PAR_SORT {
                order.par_sort_unstable_by(by);
            } else {
                order.sort_by(by);
            }
            order.dedup_by(|b, a| rel(*a) == rel(*b));
            order.sort_unstable();
            let value = |i: usize| rel(i) / r[i].to_f64();
            let vmax = order.iter().map(|&i| value(i)).fold(f64::NEG_INFINITY, f64::max);
            let cut = vmax * (1.0 - mrr_tolerance::<F>());
            let i = order.iter().copied().find(|&i| value(i) >= cut).unwrap_or(order[0]);
            let (v, ri) = (value(i), r[i].to_f64());
            c[i] = G::from_f64(v / ri);
            if let Some(d2) = d2 {
                d2[i] = G::from_f64(-2.0 * v / (ri * ri));
            }
            1.0 - v
        }
        ApproxLoss::RankMse { discount } => {
            order.clear();
            order.extend(0..m);
            let by = |&a: &usize, &b: &usize| y[b].partial_cmp(&y[a]).unwrap_or(std::cmp::Ordering::Equal);
            if m > PAR_SORT {
                order.par_sort_by(by); // stable: ties keep input order
            } else {
                order.sort_by(by);
            }
            let mut total = 0.0;
            for (p, &i) in order.iter().enumerate() {
                let t = p as f64 + 1.0;
                let wt = weight_of(wts, i)
                    * match discount {
                        Discount::None => 1.0,
                        Discount::Log2 => 1.0 / (t + 1.0).log2(),
                        Discount::Reciprocal => 1.0 / t,
                    };
                let d = r[i].to_f64() - t;
                total += wt * d * d;
                c[i] = G::from_f64(2.0 * wt * d / m as f64);
                if let Some(d2) = d2.as_deref_mut() {
                    d2[i] = G::from_f64(2.0 * wt / m as f64);
                }
            }
            total / m as f64
        }
    }
}

// ----------------------------------------------------------------------- the pair kernels

/// One list's loss by the pair kernels; leaves dL/ds (`Grad`) or H v (`Hvp`) in `w.g[..m]`.
#[inline(always)]
fn list_loss_exact<F: Float>(w: &mut Work<F>, inv_t: F, kind: ApproxLoss, mode: Mode) -> (F, bool) {
    let m = w.size();
    let Work { list, v, lw, r, c, d2, g, h, jv, tmp, tmp2, .. } = w;
    let (s, y) = (&list.s[..], &list.y[..]);
    let wts = &list.w[..];
    if !loss_rows(kind, y, wts, lw) {
        return (F::ZERO, false);
    }
    ranks_of(s, &lw.rows, inv_t, r, tmp);
    let loss = loss_from_ranks(kind, s, y, wts, r, lw, c, (mode == Mode::Hvp).then_some(&mut d2[..]));
    match mode {
        Mode::Loss => {}
        Mode::Grad => ranks_vjp(s, c, inv_t, g, &mut lw.rows2, tmp),
        Mode::Hvp => {
            // H v = J (D2 * (J v)) + d<v, J c>/ds (J = dr/ds is symmetric).
            double_backward::<F, true>(s, c, v, d2, inv_t, h, jv, &mut lw.rows2, tmp, tmp2);
            for (j, &d) in jv[..m].iter_mut().zip(&d2[..m]) {
                *j *= d;
            }
            ranks_vjp(s, jv, inv_t, g, &mut lw.rows2, tmp);
            for (gk, &hk) in g[..m].iter_mut().zip(&h[..m]) {
                *gk += hk;
            }
        }
    }
    (F::from_f64(loss), true)
}

#[inline(always)]
fn list_ranks_exact<F: Float>(w: &mut Work<F>, inv_t: F) {
    w.size();
    ranks_symmetric(&w.list.s, inv_t, &mut w.r, &mut w.tmp);
}

#[inline(always)]
fn list_vjp_exact<F: Float>(w: &mut Work<F>, inv_t: F) {
    w.size();
    let Work { list, c, g, lw, tmp, .. } = w;
    c.copy_from_slice(&list.y);
    ranks_vjp(&list.s, c, inv_t, g, &mut lw.rows2, tmp);
}

#[inline(always)]
fn list_double_backward_exact<F: Float>(w: &mut Work<F>, inv_t: F) {
    w.size();
    let Work { list, v, h, jv, lw, tmp, tmp2, .. } = w;
    double_backward::<F, false>(&list.s, &list.y, v, &[], inv_t, h, jv, &mut lw.rows2, tmp, tmp2);
}

simd_dispatch!(list_loss_exact_simd, list_loss_exact, (w: &mut Work<F>, inv_t: F, kind: ApproxLoss, mode: Mode) -> (F, bool));
simd_dispatch!(list_ranks_exact_simd, list_ranks_exact, (w: &mut Work<F>, inv_t: F) -> ());
simd_dispatch!(list_vjp_exact_simd, list_vjp_exact, (w: &mut Work<F>, inv_t: F) -> ());
simd_dispatch!(list_double_backward_exact_simd, list_double_backward_exact, (w: &mut Work<F>, inv_t: F) -> ());

// ----------------------------------------------------------------------- fast summation

/// The fast path's buffers (f64), kept per thread between calls (so that repeated calls do not
/// page-fault them in again): those of lists up to `CACHE_MAX` items, dropped when a list a
/// quarter of their size or less comes.
#[derive(Default)]
struct FastWork {
    plan: Plan,
    sc: Scratch,
    /// List order: ranks, c = dL/dr, D = d^2L/dr^2.
    r: Vec<f64>,
    c: Vec<f64>,
    d: Vec<f64>,
    /// Sorted order: weights in, sums out, and sorted copies of c, v.
    ws: Vec<f64>,
    o1: Vec<f64>,
    o2: Vec<f64>,
    o3: Vec<f64>,
    cs: Vec<f64>,
    vs: Vec<f64>,
}

const CACHE_MAX: usize = 1 << 22;

thread_local! {
    static FAST_WORK: std::cell::RefCell<FastWork> = std::cell::RefCell::default();
}

/// `f` on this thread's `FastWork` (a fresh one if a caller up the stack holds it).
fn with_fast_work<R>(m: usize, f: impl FnOnce(&mut FastWork) -> R) -> R {
    let mut fw = FAST_WORK.with(|c| std::mem::take(&mut *c.borrow_mut()));
    if fw.plan.capacity() > 4 * m.max(BLK) {
        fw = FastWork::default();
    }
    let out = f(&mut fw);
    if m <= CACHE_MAX {
        FAST_WORK.with(|c| *c.borrow_mut() = fw);
    }
    out
}

/// Sorted rank sums `sum_j sigma(x_j - x_k)` of a planned list into `out` (the rank is 1/2 more).
fn fast_ranks(plan: &Plan, sc: &mut Scratch, ws: &mut Vec<f64>, out: &mut Vec<f64>) {
    fill(ws, plan.len(), 1.0, plan.par());
    plan.sums::<SIG, 1>(ws, out, sc);
}

/// `J^T c` (list order, rounded to `G`) of a planned list; `c` in list order.
fn fast_vjp<G: Float>(
    plan: &Plan,
    sc: &mut Scratch,
    c: &[f64],
    inv_t: f64,
    ws: &mut Vec<f64>,
    out: &mut Vec<f64>,
    g: &mut [G],
) {
    let m = plan.len();
    fill(ws, 2 * m, 1.0, plan.par());
    plan.to_sorted(|i| c[i], &mut ws[..m]);
    plan.sums::<D1, 2>(ws, out, sc);
    let (ws, out) = (&ws[..], &out[..]);
    plan.to_list(|k| (out[2 * k] - ws[k] * out[2 * k + 1]) * inv_t, g);
}

/// The sorted `sigma''` sums of weights `[c, c v, 1, v]` (sorted `cs`, `vs`) into `out`.
fn fast_d2_sums(
    plan: &Plan,
    sc: &mut Scratch,
    cs: &[f64],
    vs: &[f64],
    ws: &mut Vec<f64>,
    out: &mut Vec<f64>,
) {
    let m = plan.len();
    grow(ws, 4 * m, 0.0, plan.par());
    let (wc, rest) = ws.split_at_mut(m);
    let (wcv, rest) = rest.split_at_mut(m);
    let (w1, wv) = rest.split_at_mut(m);
    for_chunks(plan.par(), wc, BLK, |i, chunk| {
        for (k, w) in chunk.iter_mut().enumerate() {
            *w = cs[i * BLK + k];
        }
    });
    for_chunks(plan.par(), wcv, BLK, |i, chunk| {
        for (k, w) in chunk.iter_mut().enumerate() {
            *w = cs[i * BLK + k] * vs[i * BLK + k];
        }
    });
    for_chunks(plan.par(), w1, BLK, |_, chunk| chunk.fill(1.0));
    for_chunks(plan.par(), wv, BLK, |i, chunk| {
        for (k, w) in chunk.iter_mut().enumerate() {
            *w = vs[i * BLK + k];
        }
    });
    plan.sums::<D2, 4>(ws, out, sc);
}

/// `d<v, J^T c>/ds` at sorted position k from the `sigma''` sums `o` (`fast_d2_sums`):
/// `-(1/T^2) [v_k F(c) - F(cv) - c_k v_k F(1) + c_k F(v)]` (`sigma''` is odd).
#[inline(always)]
fn d2_value(o: &[f64], k: usize, c: f64, v: f64, inv_t: f64) -> f64 {
    let f = &o[4 * k..4 * k + 4];
    -(v * f[0] - f[1] - c * v * f[2] + c * f[3]) * inv_t * inv_t
}

/// One list's loss by fast summation; leaves dL/ds (`Grad`) or H v (`Hvp`) in `w.g[..m]`.
fn list_loss_fast<F: Float>(w: &mut Work<F>, inv_t: f64, kind: ApproxLoss, mode: Mode) -> (F, bool) {
    let m = w.list.s.len();
    let Work { list, v, lw, g, .. } = w;
    let (s, y, wts) = (&list.s[..], &list.y[..], &list.w[..]);
    if !loss_rows(kind, y, wts, lw) {
        return (F::ZERO, false);
    }
    with_fast_work(m, |fw| {
        let FastWork { plan, sc, r, c, d, ws, o1, o2, o3, cs, vs } = fw;
        plan.build(s, inv_t);
        let par = plan.par();
        fast_ranks(plan, sc, ws, o1);
        grow(r, m, 0.0, par);
        plan.to_list(|k| 0.5 + o1[k], r);
        let hvp = mode == Mode::Hvp;
        fill(c, m, 0.0, par);
        if hvp {
            fill(d, m, 0.0, par);
        }
        let loss = loss_from_ranks(kind, s, y, wts, &r[..], lw, &mut c[..], hvp.then_some(&mut d[..]));
        grow(g, m, F::ZERO, par);
        match mode {
            Mode::Loss => {}
            Mode::Grad => fast_vjp(plan, sc, c, inv_t, ws, o1, g),
            Mode::Hvp => {
                for b in [&mut *cs, &mut *vs, &mut *o3] {
                    grow(b, m, 0.0, par);
                }
                plan.to_sorted(|i| c[i], cs);
                plan.to_sorted(|i| v[i].to_f64(), vs);
                plan.to_sorted(|i| d[i], o3);
                // J v from the sigma' sums of [1, v].
                fill(ws, 2 * m, 1.0, par);
                ws[m..].copy_from_slice(vs);
                plan.sums::<D1, 2>(ws, o1, sc);
                // u = D * (J v), sorted, in o3 (which held D).
                let (o1r, vsr) = (&o1[..], &vs[..]);
                for_chunks(par, o3, BLK, |i, chunk| {
                    for (j, u) in chunk.iter_mut().enumerate() {
                        let k = i * BLK + j;
                        *u *= (o1r[2 * k + 1] - vsr[k] * o1r[2 * k]) * inv_t;
                    }
                });
                fast_d2_sums(plan, sc, cs, vs, ws, o2);
                // J u from the sigma' sums of [u] and of [1] (in o1).
                std::mem::swap(ws, o3);
                plan.sums::<D1, 1>(ws, o3, sc);
                let (o1, o2, o3, cs, vs, ws) = (&o1[..], &o2[..], &o3[..], &cs[..], &vs[..], &ws[..]);
                plan.to_list(
                    |k| (o3[k] - ws[k] * o1[2 * k]) * inv_t + d2_value(o2, k, cs[k], vs[k], inv_t),
                    g,
                );
            }
        }
        (F::from_f64(loss), true)
    })
}

/// Ranks by fast summation into `out[..m]`.
fn list_ranks_fast<F: Float>(s: &[F], inv_t: f64, out: &mut Vec<F>) {
    with_fast_work(s.len(), |fw| {
        let FastWork { plan, sc, ws, o1, .. } = fw;
        plan.build(s, inv_t);
        fast_ranks(plan, sc, ws, o1);
        grow(out, s.len(), F::ZERO, plan.par());
        plan.to_list(|k| 0.5 + o1[k], out);
    })
}

/// `J^T c` by fast summation into `out[..m]`.
fn list_vjp_fast<F: Float>(s: &[F], c: &[F], inv_t: f64, out: &mut Vec<F>) {
    with_fast_work(s.len(), |fw| {
        let FastWork { plan, sc, ws, o1, c: c64, .. } = fw;
        plan.build(s, inv_t);
        grow(c64, s.len(), 0.0, plan.par());
        for_chunks(plan.par(), c64, BLK, |i, chunk| {
            for (k, x) in chunk.iter_mut().enumerate() {
                *x = c[i * BLK + k].to_f64();
            }
        });
        grow(out, s.len(), F::ZERO, plan.par());
        fast_vjp(plan, sc, c64, inv_t, ws, o1, out);
    })
}

/// The double backward by fast summation into `out[..m]`.
fn list_double_backward_fast<F: Float>(s: &[F], c: &[F], v: &[F], inv_t: f64, out: &mut Vec<F>) {
    let m = s.len();
    with_fast_work(m, |fw| {
        let FastWork { plan, sc, ws, o1, cs, vs, .. } = fw;
        plan.build(s, inv_t);
        grow(cs, m, 0.0, plan.par());
        grow(vs, m, 0.0, plan.par());
        plan.to_sorted(|i| c[i].to_f64(), cs);
        plan.to_sorted(|i| v[i].to_f64(), vs);
        fast_d2_sums(plan, sc, cs, vs, ws, o1);
        grow(out, m, F::ZERO, plan.par());
        let (o1, cs, vs) = (&o1[..], &cs[..], &vs[..]);
        plan.to_list(|k| d2_value(o1, k, cs[k], vs[k], inv_t), out);
    })
}

// ----------------------------------------------------------------------- the batch kernels

/// `1 / temperature`, finite and normal (`check_scale`): a tie's `(s_j - s_i) / T` stays 0.
fn check_temperature<F: Float>(temperature: F) -> Result<F> {
    Ok(F::ONE / check_scale("temperature", temperature)?)
}

/// An error naming `arg` unless `values` has the shape of scores and is finite at real items.
fn check_values<F: Float>(batch: &Padded<F>, values: &[F], arg: &'static str) -> Result<()> {
    if values.len() != batch.b * batch.n {
        return Err(Error::invalid(arg, "must have the shape of scores"));
    }
    let n = batch.n;
    let bad = (0..batch.b).into_par_iter().find_first(|&bi| {
        (bi * n..(bi + 1) * n).any(|k| batch.mask.is_none_or(|mk| mk[k]) && !values[k].is_finite())
    });
    match bad {
        Some(list) => Err(Error::NonFinite { arg, list }),
        None => Ok(()),
    }
}

/// Approximate ranks `[b * n]` of a padded batch (zero at padded positions).
pub fn approx_ranks<F: Float>(
    batch: &Padded<F>,
    temperature: F,
    method: Method,
    out: &mut [F],
) -> Result<()> {
    let inv_t = check_temperature(temperature)?;
    let inv_t64 = 1.0 / temperature.to_f64();
    batch.check_out(out, "ranks")?;
    batch.check_finite()?;
    for_each_row(batch.n, out, Work::<F>::default, |w, bi, row| {
        w.gather(batch, bi, None);
        let m = w.list.s.len();
        if method.is_fast(m) {
            list_ranks_fast(&w.list.s, inv_t64, &mut w.r);
        } else {
            list_ranks_exact_simd(w, inv_t);
        }
        scatter(&w.list.idx, &w.r[..m], row);
    });
    Ok(())
}

/// Vector-Jacobian product of `approx_ranks`: `grad_ranks [b * n]` to `d/dscores [b * n]`.
/// Padded positions of `grad_ranks` are ignored; padded outputs are zero.
pub fn approx_ranks_backward<F: Float>(
    batch: &Padded<F>,
    temperature: F,
    method: Method,
    grad_ranks: &[F],
    out: &mut [F],
) -> Result<()> {
    let inv_t = check_temperature(temperature)?;
    let inv_t64 = 1.0 / temperature.to_f64();
    batch.check_out(out, "grad")?;
    batch.check_finite()?;
    check_values(batch, grad_ranks, "grad_ranks")?;
    let with_grad = Padded { targets: Some(grad_ranks), ..*batch };
    for_each_row(batch.n, out, Work::<F>::default, |w, bi, row| {
        w.gather(&with_grad, bi, None);
        let m = w.list.s.len();
        if method.is_fast(m) {
            list_vjp_fast(&w.list.s, &w.list.y, inv_t64, &mut w.g);
        } else {
            list_vjp_exact_simd(w, inv_t);
        }
        scatter(&w.list.idx, &w.g[..m], row);
    });
    Ok(())
}

/// The ranks' double backward: the gradient of `<v, approx_ranks_backward(grad_ranks = c)>`
/// with respect to the scores, `c` held fixed:
/// `h_l = (1/T^2) sum_{k != l} sigmoid''((s_l - s_k)/T) (c_k - c_l) (v_l - v_k)`, `[b * n]`.
/// Padded positions of `c` and `v` are ignored; padded outputs are zero.
pub fn approx_ranks_double_backward<F: Float>(
    batch: &Padded<F>,
    temperature: F,
    method: Method,
    c: &[F],
    v: &[F],
    out: &mut [F],
) -> Result<()> {
    let inv_t = check_temperature(temperature)?;
    let inv_t64 = 1.0 / temperature.to_f64();
    batch.check_out(out, "grad")?;
    batch.check_finite()?;
    check_values(batch, c, "grad_ranks")?;
    check_values(batch, v, "v")?;
    let with_c = Padded { targets: Some(c), ..*batch };
    for_each_row(batch.n, out, Work::<F>::default, |w, bi, row| {
        w.gather(&with_c, bi, Some(v));
        let m = w.list.s.len();
        if method.is_fast(m) {
            list_double_backward_fast(&w.list.s, &w.list.y, &w.v, inv_t64, &mut w.h);
        } else {
            list_double_backward_exact_simd(w, inv_t);
        }
        scatter(&w.list.idx, &w.h[..m], row);
    });
    Ok(())
}

/// Checks shared by the loss kernels; the targets.
fn check_loss_inputs<'a, F: Float>(batch: &Padded<'a, F>, kind: ApproxLoss) -> Result<&'a [F]> {
    let targets = batch.targets.ok_or_else(|| Error::invalid("targets", "are required"))?;
    batch.check_finite()?;
    if let ApproxLoss::Ndcg { scale_gains: true } = kind {
        let n = batch.n.max(1);
        check_gain_range(targets, batch.mask, "targets", |k| k / n)?;
    }
    Ok(targets)
}

/// Per-list losses `[b]`, whether each list counts in a mean `[b]`, and with `grad` the
/// gradient of each list's loss with respect to its scores `[b * n]`.
pub fn approx_loss<F: Float>(
    batch: &Padded<F>,
    temperature: F,
    kind: ApproxLoss,
    method: Method,
    losses: &mut [F],
    valid: &mut [bool],
    grad: Option<&mut [F]>,
) -> Result<()> {
    let inv_t = check_temperature(temperature)?;
    batch.list_outputs("losses", &[losses.len(), valid.len()], grad.as_deref().map(<[F]>::len))?;
    check_loss_inputs(batch, kind)?;
    let mode = if grad.is_some() { Mode::Grad } else { Mode::Loss };
    for_each_list(batch.n, losses, valid, grad, Work::<F>::default, |w, bi, loss, ok, row| {
        w.gather(batch, bi, None);
        let (l, counts) = list_loss(w, temperature, inv_t, kind, method, mode);
        *loss = l;
        *ok = counts;
        if let Some(row) = row {
            let m = w.list.idx.len();
            if counts {
                scatter(&w.list.idx, &w.g[..m], row);
            } else {
                row.fill(F::ZERO);
            }
        }
    });
    Ok(())
}

/// One list's loss (and `w.g` per `mode`) by `method`; the fast path takes `1 / T` from the
/// temperature itself, in f64.
fn list_loss<F: Float>(
    w: &mut Work<F>,
    temperature: F,
    inv_t: F,
    kind: ApproxLoss,
    method: Method,
    mode: Mode,
) -> (F, bool) {
    if method.is_fast(w.list.s.len()) {
        list_loss_fast(w, 1.0 / temperature.to_f64(), kind, mode)
    } else {
        list_loss_exact_simd(w, inv_t, kind, mode)
    }
}

/// Per list, the Hessian of that list's loss with respect to its scores times `v` (`[b * n]`),
/// `H v = J^T (C2 (J v)) + d<v, J^T c>/ds` with `c = dL/dr` and `C2 = d^2L/dr^2` (diagonal for
/// every kind), into `out [b * n]`: zero for lists that do not count and at padded positions.
pub fn approx_loss_hvp<F: Float>(
    batch: &Padded<F>,
    temperature: F,
    kind: ApproxLoss,
    method: Method,
    v: &[F],
    out: &mut [F],
) -> Result<()> {
    let inv_t = check_temperature(temperature)?;
    batch.check_out(out, "hvp")?;
    check_loss_inputs(batch, kind)?;
    check_values(batch, v, "v")?;
    for_each_row(batch.n, out, Work::<F>::default, |w, bi, row| {
        w.gather(batch, bi, Some(v));
        let (_, counts) = list_loss(w, temperature, inv_t, kind, method, Mode::Hvp);
        if counts {
            let m = w.list.idx.len();
            scatter(&w.list.idx, &w.g[..m], row);
        } else {
            row.fill(F::ZERO);
        }
    });
    Ok(())
}

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fast;
