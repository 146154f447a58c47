//! The approximate-rank family: smooth ranks and the listwise losses built on them.
//!
//! `r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / T)` over the real items of a list.
//! With `c_i = dL/dr_i`, the gradient has the closed form
//! `dL/ds_k = (1/T) sum_{i != k} sigmoid'((s_k - s_i) / T) (c_i - c_k)`,
//! so forward and backward take O(N^2) time and O(N) memory per list, never an N x N buffer.
//!
//! Two ways over the pairs, chosen per list by cost:
//! - symmetric: each unordered pair once (N^2/2 sigmoids), updating both ends;
//! - rows: only the rows that matter (the relevant items for NDCG/MRR, the nonzero `c_i` in
//!   the backward), N sigmoids each.

use crate::batch::{for_each_list, for_each_row, scatter, Gathered, Padded};
use crate::error::{Error, Result};
use crate::float::{check_scale, lane_total, sigmoid2, sigmoid_grad, simd_dispatch, Float};
use crate::gains::{check_gain_range, discount, gain};

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

/// `r[i]` for every item: each pair once; `r[i] += p`, `r[j] += 1 - p`.
/// The pair loops are element-wise maps (`tmp` holds the terms of the row sum), so that
/// the compiler vectorises them; the row sums are then taken by `lane_total`.
#[inline(always)]
fn ranks_symmetric<F: Float>(s: &[F], inv_t: F, r: &mut [F], tmp: &mut [F]) {
    let n = s.len();
    let r = &mut r[..n];
    r.fill(F::ONE);
    for i in 0..n {
        let si = s[i];
        let (head, tail) = r.split_at_mut(i + 1);
        let st = &s[i + 1..];
        let tmp = &mut tmp[..st.len()];
        for ((rj, &sj), tj) in tail.iter_mut().zip(st).zip(tmp.iter_mut()) {
            let (p, pc) = sigmoid2((sj - si) * inv_t);
            *tj = p;
            *rj += pc;
        }
        head[i] += lane_total(tmp);
    }
}

/// `r_i` for one item: its full row, the self term `sigmoid(0) = 1/2` taken back out.
#[inline(always)]
fn rank_row<F: Float>(s: &[F], i: usize, inv_t: F, tmp: &mut [F]) -> F {
    let si = s[i];
    let tmp = &mut tmp[..s.len()];
    for (tj, &sj) in tmp.iter_mut().zip(s) {
        *tj = sigmoid2((sj - si) * inv_t).0;
    }
    F::from_f64(0.5) + lane_total(tmp)
}

/// Ranks of the items in `rows` only (others left untouched), or of all when that is cheaper.
#[inline(always)]
fn ranks_of<F: Float>(s: &[F], rows: &[usize], inv_t: F, r: &mut [F], tmp: &mut [F]) {
    if 2 * rows.len() >= s.len() {
        ranks_symmetric(s, inv_t, r, tmp);
    } else {
        for &i in rows {
            r[i] = rank_row(s, i, inv_t, tmp);
        }
    }
}

/// `g = J^T c` for `r(s)`: the closed-form gradient above, written to `g[..n]`.
#[inline(always)]
fn ranks_vjp<F: Float>(s: &[F], c: &[F], inv_t: F, g: &mut [F], rows: &mut Vec<usize>, tmp: &mut [F]) {
    let n = s.len();
    let g = &mut g[..n];
    g.fill(F::ZERO);
    rows.clear();
    rows.extend((0..n).filter(|&i| c[i] != F::ZERO));
    if 2 * rows.len() < n {
        // Only rows with c_i != 0 feed the first term; the row sum of w gives the second.
        for &i in rows.iter() {
            let (si, ci) = (s[i], c[i]);
            let tmp = &mut tmp[..n];
            for ((gk, &sk), tk) in g.iter_mut().zip(s).zip(tmp.iter_mut()) {
                let w = sigmoid_grad((sk - si) * inv_t);
                *gk += w * ci;
                *tk = w;
            }
            // The loop also gave g_i the self term w_ii c_i; -c_i * (row sum incl. w_ii)
            // removes it and subtracts c_i sum_{k != i} w_ik.
            g[i] -= ci * lane_total(tmp);
        }
    } else {
        for i in 0..n {
            let (si, ci) = (s[i], c[i]);
            let (head, tail) = g.split_at_mut(i + 1);
            let st = &s[i + 1..];
            let ct = &c[i + 1..];
            let tmp = &mut tmp[..st.len()];
            for (((gj, &sj), &cj), tj) in tail.iter_mut().zip(st).zip(ct).zip(tmp.iter_mut()) {
                let d = sigmoid_grad((sj - si) * inv_t) * (cj - ci);
                *tj = d;
                *gj -= d;
            }
            head[i] += lane_total(tmp);
        }
    }
    for gk in g.iter_mut() {
        *gk *= inv_t;
    }
}

/// Per-thread scratch for one list.
#[derive(Default)]
struct Work<F> {
    list: Gathered<F>,
    r: Vec<F>,
    c: Vec<F>,
    g: Vec<F>,
    tmp: Vec<F>,
    rows: Vec<usize>,
    gains: Vec<f64>,
    order: Vec<usize>,
}

impl<F: Float> Work<F> {
    fn size(&mut self) -> usize {
        let m = self.list.s.len();
        for v in [&mut self.r, &mut self.c, &mut self.g, &mut self.tmp] {
            v.clear();
            v.resize(m, F::ZERO);
        }
        m
    }
}

/// DCG of the ideal order of `gains` (sorted in place, descending).
fn ideal_dcg(gains: &mut [f64]) -> f64 {
    gains.sort_unstable_by(|a, b| b.total_cmp(a));
    gains.iter().enumerate().map(|(p, &g)| g * discount(p)).sum()
}

/// One list's loss; with `grad`, leaves dL/ds in `w.g[..m]`. Returns (loss, counts).
#[inline(always)]
fn list_loss<F: Float>(w: &mut Work<F>, inv_t: F, kind: ApproxLoss, grad: bool) -> (F, bool) {
    let m = w.size();
    if m < 2 {
        return (F::ZERO, false);
    }
    let Work { list, r, c, g, tmp, rows, gains, order } = w;
    let (s, y) = (&list.s[..], &list.y[..]);
    let loss = match kind {
        ApproxLoss::Ndcg { scale_gains } => {
            gains.clear();
            gains.extend(y.iter().map(|&v| gain(v.to_f64(), scale_gains)));
            rows.clear();
            rows.extend((0..m).filter(|&i| gains[i] > 0.0));
            if rows.is_empty() {
                return (F::ZERO, false);
            }
            ranks_of(s, rows, inv_t, r, tmp);
            let mut dcg = 0.0;
            let mut dc = Vec::new();
            for &i in rows.iter() {
                let (gi, ri) = (gains[i], r[i].to_f64());
                let lr = (1.0 + ri).ln();
                dcg += gi * std::f64::consts::LN_2 / lr;
                dc.push(gi * std::f64::consts::LN_2 / ((1.0 + ri) * lr * lr));
            }
            let idcg = ideal_dcg(gains);
            for (&i, &d) in rows.iter().zip(&dc) {
                c[i] = F::from_f64(d / idcg);
            }
            1.0 - dcg / idcg
        }
        ApproxLoss::Mrr => {
            rows.clear();
            rows.extend((0..m).filter(|&i| y[i] > F::ZERO));
            if rows.is_empty() {
                return (F::ZERO, false);
            }
            ranks_of(s, rows, inv_t, r, tmp);
            let rel = |i: usize| y[i].to_f64().min(1.0);
            // Per relevance level the first highest-scored item (the smallest rank, decided on
            // the scores: tied scores give equal ranks only up to rounding), then the first of
            // those with the largest rel / r. The torch twin (`_approx_native.mrr_item`) agrees.
            order.clear();
            order.extend(rows.iter().copied());
            let cmp = |a: f64, b: f64| b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal);
            order.sort_by(|&a, &b| {
                cmp(rel(a), rel(b)).then(cmp(s[a].to_f64(), s[b].to_f64())).then(a.cmp(&b))
            });
            order.dedup_by(|b, a| rel(*a) == rel(*b));
            order.sort_unstable();
            let mut best = (order[0], rel(order[0]) / r[order[0]].to_f64());
            for &i in order.iter().skip(1) {
                let v = rel(i) / r[i].to_f64();
                if v > best.1 {
                    best = (i, v);
                }
            }
            let (i, v) = best;
            c[i] = F::from_f64(v / r[i].to_f64());
            1.0 - v
        }
        ApproxLoss::RankMse { discount } => {
            order.clear();
            order.extend(0..m);
            order.sort_by(|&a, &b| y[b].partial_cmp(&y[a]).unwrap_or(std::cmp::Ordering::Equal));
            ranks_symmetric(s, inv_t, r, tmp);
            let mut total = 0.0;
            for (p, &i) in order.iter().enumerate() {
                let t = p as f64 + 1.0;
                let wt = match discount {
                    Discount::None => 1.0,
                    Discount::Log2 => 1.0 / (t + 1.0).log2(),
                    Discount::Reciprocal => 1.0 / t,
                };
                let d = r[i].to_f64() - t;
                total += wt * d * d;
                c[i] = F::from_f64(2.0 * wt * d / m as f64);
            }
            total / m as f64
        }
    };
    if grad {
        ranks_vjp(s, c, inv_t, g, rows, tmp);
    }
    (F::from_f64(loss), true)
}

#[inline(always)]
fn list_ranks<F: Float>(w: &mut Work<F>, inv_t: F) {
    w.size();
    ranks_symmetric(&w.list.s, inv_t, &mut w.r, &mut w.tmp);
}

#[inline(always)]
fn list_vjp<F: Float>(w: &mut Work<F>, inv_t: F) {
    w.size();
    let Work { list, c, g, rows, tmp, .. } = w;
    c.copy_from_slice(&list.y);
    ranks_vjp(&list.s, c, inv_t, g, rows, tmp);
}

simd_dispatch!(list_loss_simd, list_loss, (w: &mut Work<F>, inv_t: F, kind: ApproxLoss, grad: bool) -> (F, bool));
simd_dispatch!(list_ranks_simd, list_ranks, (w: &mut Work<F>, inv_t: F) -> ());
simd_dispatch!(list_vjp_simd, list_vjp, (w: &mut Work<F>, inv_t: F) -> ());

/// `1 / temperature`, finite and normal (`check_scale`): a tie's `(s_j - s_i) / T` stays 0.
fn check_temperature<F: Float>(temperature: F) -> Result<F> {
    Ok(F::ONE / check_scale("temperature", temperature)?)
}

/// Approximate ranks `[b * n]` of a padded batch (zero at padded positions).
pub fn approx_ranks<F: Float>(batch: &Padded<F>, temperature: F, out: &mut [F]) -> Result<()> {
    let inv_t = check_temperature(temperature)?;
    batch.check_out(out, "ranks")?;
    batch.check_finite()?;
    for_each_row(batch.n, out, Work::<F>::default, |w, bi, row| {
        batch.gather(bi, &mut w.list);
        list_ranks_simd(w, inv_t);
        scatter(&w.list.idx, &w.r, row);
    });
    Ok(())
}

/// Vector-Jacobian product of `approx_ranks`: `grad_ranks [b * n]` to `d/dscores [b * n]`.
/// Padded positions of `grad_ranks` are ignored; padded outputs are zero.
pub fn approx_ranks_backward<F: Float>(
    batch: &Padded<F>,
    temperature: F,
    grad_ranks: &[F],
    out: &mut [F],
) -> Result<()> {
    let inv_t = check_temperature(temperature)?;
    batch.check_out(out, "grad")?;
    let with_grad = Padded::new(batch.scores, Some(grad_ranks), batch.mask, batch.b, batch.n)
        .map_err(|_| Error::invalid("grad_ranks", "must have the shape of scores"))?;
    with_grad.check_finite()?;
    for_each_row(batch.n, out, Work::<F>::default, |w, bi, row| {
        with_grad.gather(bi, &mut w.list);
        list_vjp_simd(w, inv_t);
        scatter(&w.list.idx, &w.g, row);
    });
    Ok(())
}

/// Per-list losses `[b]`, whether each list counts in a mean `[b]`, and with `grad` the
/// gradient of each list's loss with respect to its scores `[b * n]`.
pub fn approx_loss<F: Float>(
    batch: &Padded<F>,
    temperature: F,
    kind: ApproxLoss,
    losses: &mut [F],
    valid: &mut [bool],
    grad: Option<&mut [F]>,
) -> Result<()> {
    let inv_t = check_temperature(temperature)?;
    let targets =
        batch.list_outputs("losses", &[losses.len(), valid.len()], grad.as_deref().map(<[F]>::len))?;
    batch.check_finite()?;
    if let ApproxLoss::Ndcg { scale_gains: true } = kind {
        let n = batch.n.max(1);
        check_gain_range(targets, batch.mask, "targets", |k| k / n)?;
    }
    let want_grad = grad.is_some();
    for_each_list(batch.n, losses, valid, grad, Work::<F>::default, |w, bi, loss, ok, row| {
        batch.gather(bi, &mut w.list);
        let (l, counts) = list_loss_simd(w, inv_t, kind, want_grad);
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

#[cfg(test)]
mod tests;
