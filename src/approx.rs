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
use crate::float::{lane_total, sigmoid2, sigmoid_grad, simd_dispatch, Float};
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
            let mut best = (rows[0], rel(rows[0]) / r[rows[0]].to_f64());
            for &i in rows.iter().skip(1) {
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

#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(t > 0)` also rejects NaN
fn check_temperature<F: Float>(temperature: F) -> Result<F> {
    if !(temperature > F::ZERO) || !temperature.is_finite() {
        return Err(Error::invalid(
            "temperature",
            format!("must be a positive finite number, got {temperature:?}"),
        ));
    }
    Ok(F::ONE / temperature)
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
mod tests {
    use super::*;

    use crate::testing::Rng;

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// Direct O(N^2) evaluation of r, the loss and (via c and the definition) its gradient.
    fn reference(s: &[f64], y: &[f64], t: f64, kind: ApproxLoss) -> (f64, bool, Vec<f64>) {
        let n = s.len();
        let r: Vec<f64> = (0..n)
            .map(|i| 1.0 + (0..n).filter(|&j| j != i).map(|j| sig((s[j] - s[i]) / t)).sum::<f64>())
            .collect();
        if n < 2 {
            return (0.0, false, vec![0.0; n]);
        }
        let (loss, c): (f64, Vec<f64>) = match kind {
            ApproxLoss::Ndcg { scale_gains } => {
                let g: Vec<f64> = y.iter().map(|&v| gain(v, scale_gains)).collect();
                let mut sorted = g.clone();
                sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
                let idcg: f64 = sorted.iter().enumerate().map(|(p, &v)| v / (p as f64 + 2.0).log2()).sum();
                if idcg <= 0.0 {
                    return (0.0, false, vec![0.0; n]);
                }
                let dcg: f64 = (0..n).map(|i| g[i] / (1.0 + r[i]).log2()).sum();
                let c = (0..n)
                    .map(|i| {
                        g[i] * std::f64::consts::LN_2 / ((1.0 + r[i]) * (1.0 + r[i]).ln().powi(2)) / idcg
                    })
                    .collect();
                (1.0 - dcg / idcg, c)
            }
            ApproxLoss::Mrr => {
                let v: Vec<f64> = (0..n).map(|i| y[i].clamp(0.0, 1.0) / r[i]).collect();
                if y.iter().all(|&v| v <= 0.0) {
                    return (0.0, false, vec![0.0; n]);
                }
                let best = (0..n).fold(0, |b, i| if v[i] > v[b] { i } else { b });
                let mut c = vec![0.0; n];
                c[best] = v[best] / r[best];
                (1.0 - v[best], c)
            }
            ApproxLoss::RankMse { discount } => {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| y[b].partial_cmp(&y[a]).unwrap());
                let mut tr = vec![0.0; n];
                for (p, &i) in order.iter().enumerate() {
                    tr[i] = p as f64 + 1.0;
                }
                let w = |t: f64| match discount {
                    Discount::None => 1.0,
                    Discount::Log2 => 1.0 / (t + 1.0).log2(),
                    Discount::Reciprocal => 1.0 / t,
                };
                let loss = (0..n).map(|i| w(tr[i]) * (r[i] - tr[i]).powi(2)).sum::<f64>() / n as f64;
                let c = (0..n).map(|i| 2.0 * w(tr[i]) * (r[i] - tr[i]) / n as f64).collect();
                (loss, c)
            }
        };
        // d r_i / d s_k, straight from the definition of r.
        let mut grad = vec![0.0; n];
        for k in 0..n {
            for i in 0..n {
                let drik = if i == k {
                    -(0..n)
                        .filter(|&j| j != i)
                        .map(|j| {
                            let p = sig((s[j] - s[i]) / t);
                            p * (1.0 - p) / t
                        })
                        .sum::<f64>()
                } else {
                    let p = sig((s[k] - s[i]) / t);
                    p * (1.0 - p) / t
                };
                grad[k] += c[i] * drik;
            }
        }
        (loss, true, grad)
    }

    const KINDS: [ApproxLoss; 6] = [
        ApproxLoss::Ndcg { scale_gains: true },
        ApproxLoss::Ndcg { scale_gains: false },
        ApproxLoss::Mrr,
        ApproxLoss::RankMse { discount: Discount::None },
        ApproxLoss::RankMse { discount: Discount::Log2 },
        ApproxLoss::RankMse { discount: Discount::Reciprocal },
    ];

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn losses_and_gradients_match_reference_f64() {
        let mut rng = Rng(0x9E3779B97F4A7C15);
        for &(b, n) in &[(1, 1), (1, 2), (3, 5), (4, 17), (2, 40), (5, 9)] {
            for &t in &[0.1, 1.0, 3.0] {
                for &kind in &KINDS {
                    for &sparse in &[false, true] {
                        let s: Vec<f64> = (0..b * n).map(|_| rng.normal()).collect();
                        // Sparse relevance exercises the row paths, dense the symmetric ones.
                        let y: Vec<f64> = (0..b * n)
                            .map(|_| if sparse && rng.next() < 0.8 { 0.0 } else { rng.label(3) })
                            .collect();
                        let mask: Vec<bool> = (0..b * n).map(|k| k % n == 0 || rng.next() < 0.8).collect();
                        let batch = Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap();
                        let (mut l, mut v, mut g) = (vec![0.0; b], vec![false; b], vec![0.0; b * n]);
                        approx_loss(&batch, t, kind, &mut l, &mut v, Some(&mut g)).unwrap();
                        for bi in 0..b {
                            let idx: Vec<usize> = (0..n).filter(|&j| mask[bi * n + j]).collect();
                            let sr: Vec<f64> = idx.iter().map(|&j| s[bi * n + j]).collect();
                            let yr: Vec<f64> = idx.iter().map(|&j| y[bi * n + j]).collect();
                            let (rl, rv, rg) = reference(&sr, &yr, t, kind);
                            assert_eq!(v[bi], rv, "{kind:?} valid b={bi}");
                            assert!(close(l[bi], rl, 1e-12), "{kind:?} loss {} vs {rl}", l[bi]);
                            for (k, &j) in idx.iter().enumerate() {
                                assert!(
                                    close(g[bi * n + j], rg[k], 1e-11),
                                    "{kind:?} grad {} vs {}",
                                    g[bi * n + j],
                                    rg[k]
                                );
                            }
                            for j in (0..n).filter(|&j| !mask[bi * n + j]) {
                                assert_eq!(g[bi * n + j], 0.0);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        let mut rng = Rng(12345);
        let (b, n) = (3, 70);
        let s: Vec<f64> = (0..b * n).map(|_| rng.normal()).collect();
        let y: Vec<f64> = (0..b * n).map(|_| rng.label(4)).collect();
        let (s32, y32): (Vec<f32>, Vec<f32>) =
            (s.iter().map(|&v| v as f32).collect(), y.iter().map(|&v| v as f32).collect());
        for &kind in &KINDS {
            let (mut l, mut v, mut g) = (vec![0.0; b], vec![false; b], vec![0.0; b * n]);
            approx_loss(
                &Padded::new(&s, Some(&y), None, b, n).unwrap(),
                1.0,
                kind,
                &mut l,
                &mut v,
                Some(&mut g),
            )
            .unwrap();
            let (mut l32, mut v32, mut g32) = (vec![0.0f32; b], vec![false; b], vec![0.0f32; b * n]);
            approx_loss(
                &Padded::new(&s32, Some(&y32), None, b, n).unwrap(),
                1.0,
                kind,
                &mut l32,
                &mut v32,
                Some(&mut g32),
            )
            .unwrap();
            assert_eq!(v, v32);
            for bi in 0..b {
                assert!((l[bi] - l32[bi] as f64).abs() < 1e-4 * (1.0 + l[bi].abs()), "{kind:?}");
            }
            let gmax = g.iter().fold(0.0f64, |a, &x| a.max(x.abs()));
            for k in 0..b * n {
                assert!((g[k] - g32[k] as f64).abs() < 1e-4 * gmax, "{kind:?} {} {}", g[k], g32[k]);
            }
        }
    }

    #[test]
    fn ranks_and_their_vjp_match_reference() {
        let mut rng = Rng(777);
        let (b, n) = (4, 23);
        for &dense in &[true, false] {
            let s: Vec<f64> = (0..b * n).map(|_| (rng.normal() * 4.0).round() / 4.0).collect(); // ties
            let c: Vec<f64> =
                (0..b * n).map(|_| if dense || rng.next() < 0.2 { rng.normal() } else { 0.0 }).collect();
            let mask: Vec<bool> = (0..b * n).map(|k| k / n != 3 && rng.next() < 0.9).collect(); // list 3 empty
            let batch = Padded::new(&s, None, Some(&mask), b, n).unwrap();
            let mut r = vec![0.0; b * n];
            approx_ranks(&batch, 0.7, &mut r).unwrap();
            let mut g = vec![0.0; b * n];
            approx_ranks_backward(&batch, 0.7, &c, &mut g).unwrap();
            for bi in 0..b {
                let idx: Vec<usize> = (0..n).filter(|&j| mask[bi * n + j]).collect();
                for &i in &idx {
                    let want = 1.0
                        + idx
                            .iter()
                            .filter(|&&j| j != i)
                            .map(|&j| sig((s[bi * n + j] - s[bi * n + i]) / 0.7))
                            .sum::<f64>();
                    assert!(close(r[bi * n + i], want, 1e-13));
                    // dL/ds_k = (1/T) sum_{i != k} sigmoid'((s_k - s_i)/T) (c_i - c_k)
                    let k = i;
                    let want: f64 = idx
                        .iter()
                        .filter(|&&j| j != k)
                        .map(|&j| {
                            let p = sig((s[bi * n + k] - s[bi * n + j]) / 0.7);
                            p * (1.0 - p) * (c[bi * n + j] - c[bi * n + k]) / 0.7
                        })
                        .sum();
                    assert!(close(g[bi * n + k], want, 1e-12), "{} vs {want}", g[bi * n + k]);
                }
                for j in (0..n).filter(|&j| !mask[bi * n + j]) {
                    assert_eq!((r[bi * n + j], g[bi * n + j]), (0.0, 0.0));
                }
            }
        }
    }

    #[test]
    fn same_bits_with_one_and_two_threads() {
        let mut rng = Rng(99);
        let (b, n) = (7, 300);
        let s: Vec<f32> = (0..b * n).map(|_| rng.normal() as f32).collect();
        let y: Vec<f32> = (0..b * n).map(|_| rng.label(4) as f32).collect();
        let batch = Padded::new(&s, Some(&y), None, b, n).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (mut l, mut v, mut g) = (vec![0.0f32; b], vec![false; b], vec![0.0f32; b * n]);
                approx_loss(
                    &batch,
                    0.5,
                    ApproxLoss::Ndcg { scale_gains: true },
                    &mut l,
                    &mut v,
                    Some(&mut g),
                )
                .unwrap();
                (l, g)
            })
        };
        let (one, two) = (run(1), run(2));
        assert!(one.0.iter().zip(&two.0).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(one.1.iter().zip(&two.1).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn degenerate_lists_give_zero() {
        let s = [1.0f64, 2.0, 3.0, 0.5, 0.1, 0.2];
        let y = [0.0f64, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mask = [true, true, true, true, false, false];
        let batch = Padded::new(&s, Some(&y), Some(&mask), 2, 3).unwrap();
        for kind in [ApproxLoss::Ndcg { scale_gains: true }, ApproxLoss::Mrr] {
            let (mut l, mut v, mut g) = (vec![9.0; 2], vec![true; 2], vec![9.0; 6]);
            approx_loss(&batch, 1.0, kind, &mut l, &mut v, Some(&mut g)).unwrap();
            // list 0: nothing relevant; list 1: a single real item.
            assert_eq!((l, v, g), (vec![0.0; 2], vec![false; 2], vec![0.0; 6]));
        }
    }

    #[test]
    fn bad_input_names_the_argument() {
        let s = [1.0f64, f64::NAN, 0.0, 1.0];
        let y = [1.0f64; 4];
        let batch = Padded::new(&s, Some(&y), None, 2, 2).unwrap();
        let (mut l, mut v) = (vec![0.0; 2], vec![false; 2]);
        let kind = ApproxLoss::Mrr;
        assert_eq!(
            approx_loss(&batch, 1.0, kind, &mut l, &mut v, None),
            Err(Error::NonFinite { arg: "scores", list: 0 })
        );
        let ok = [1.0f64, 2.0, 0.0, 1.0];
        let batch = Padded::new(&ok, Some(&y), None, 2, 2).unwrap();
        for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(approx_loss(&batch, t, kind, &mut l, &mut v, None).unwrap_err().arg(), "temperature");
        }
        let big = [1.0f64, 2000.0, 0.0, 1.0];
        let batch = Padded::new(&ok, Some(&big), None, 2, 2).unwrap();
        let err = approx_loss(&batch, 1.0, ApproxLoss::Ndcg { scale_gains: true }, &mut l, &mut v, None)
            .unwrap_err();
        assert_eq!(err.arg(), "targets");
    }
}
