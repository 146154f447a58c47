//! The listwise family's Rust kernel: the LambdaLoss framework (Wang et al., CIKM 2018), as
//! allRank's `lambdaLoss` computes it (`softmax_loss` and `listmle_loss` are O(N log N) torch ops
//! in `rankgrad.listwise`, with no kernel here).
//!
//! Per list, over its real items ordered by score (descending, ties in input order), position
//! `p_i` (0-based), `D_i = log2(2 + p_i)`, `G_i = g(y_i) / maxDCG@k` (`g(y) = 2^y - 1`, or `y`;
//! targets below 0 count 0). Over the pairs with both positions `< k`:
//!
//! `L = -sum w_ij log2(sigmoid(sigma (s_i - s_j)))`
//!
//! with the weights held constant: `ndcg1` `G_i / D_i` over every ordered pair `i != j`; the
//! others over `y_i > y_j`: `ndcg2` `|rho(d) - rho(d + 1)| |G_i - G_j|` (`d = |p_i - p_j|`,
//! `rho(d) = 1 / log2(1 + d)`), `lambdarank` `|1/D_i - 1/D_j| |G_i - G_j|`, `ndcg2pp`
//! `mu ndcg2 + lambdarank`, `ranknet` 1.
//!
//! One pass per list: sort, the per-position weights (O(N)), then every unordered pair of the
//! top `k` positions once, giving the loss and the closed-form gradient together. Each pair
//! `(a, b)`, `a < b` in score order, with `x = sigma (s_a - s_b)` contributes
//! `A softplus(-x) + B softplus(x)` (`A` the weight of `(a, b)` as a pair, `B` that of `(b, a)`),
//! and `dL/ds_a = -dL/ds_b = sigma (B sigmoid(x) - A sigmoid(-x))`, all over `ln 2`.
//! O(N^2) time, O(N) memory, branch-free inner loop; a list with fewer than 2 real items, no pair
//! or zero maxDCG has loss 0, zero gradient and does not count in a mean.
//!
//! Per-item weights (SPEC 13, Rax's pairwise convention): the ordered pair `(i, j)` is weighted by
//! `w_i`, its more relevant item's weight (for `ndcg1`, which sums every ordered pair, the weight
//! of `i`, whose `G_i / D_i` weighs it); a list with no item of positive weight above the top k's
//! lowest label (`ndcg1`: of positive weight and gain) does not count.

use crate::batch::{for_each_list, scatter, Gathered, Padded};
use crate::error::{Error, Result};
use crate::float::{lane_sum, ln_1p_unit, mul3, select, simd_dispatch, Float, L};
use crate::gains::{check_gain_range, gain};

/// How each pair is weighted (allRank's `weighing_scheme`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weighting {
    Ndcg1,
    Ndcg2,
    LambdaRank,
    Ndcg2pp,
    RankNet,
}

impl Weighting {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "ndcg1" => Weighting::Ndcg1,
            "ndcg2" => Weighting::Ndcg2,
            "lambdarank" => Weighting::LambdaRank,
            "ndcg2pp" => Weighting::Ndcg2pp,
            "ranknet" => Weighting::RankNet,
            other => {
                return Err(Error::invalid(
                    "weighting",
                    format!(
                        "must be one of 'ndcg1', 'ndcg2', 'lambdarank', 'ndcg2pp', 'ranknet', got {other:?}"
                    ),
                ))
            }
        })
    }
}

/// The options of `lambda_loss`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    pub weighting: Weighting,
    pub sigma: f64,
    /// Only pairs with both positions `< k` (and maxDCG@k); `None`: all.
    pub k: Option<usize>,
    pub mu: f64,
    pub scale_gains: bool,
}

impl Options {
    #[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x > 0)` also rejects NaN
    fn check(&self) -> Result<()> {
        if !(self.sigma > 0.0) || !self.sigma.is_finite() {
            return Err(Error::invalid(
                "sigma",
                format!("must be a positive finite number, got {}", self.sigma),
            ));
        }
        if !(self.mu >= 0.0) || !self.mu.is_finite() {
            return Err(Error::invalid("mu", format!("must be a finite number >= 0, got {}", self.mu)));
        }
        if self.k == Some(0) {
            return Err(Error::invalid("k", "must be None or an integer >= 1, got 0"));
        }
        Ok(())
    }

    /// `[f1, c_rd, c_lr, c_one]`: a pair's weight is `c_rd rho-diff + c_lr |1/D_a - 1/D_b|`
    /// times `|G_a - G_b|`, plus `c_one`, for `y_a != y_b`; plus `f1 G/D` of its first item.
    fn coefficients(&self) -> [f64; 4] {
        match self.weighting {
            Weighting::Ndcg1 => [1.0, 0.0, 0.0, 0.0],
            Weighting::Ndcg2 => [0.0, 1.0, 0.0, 0.0],
            Weighting::LambdaRank => [0.0, 0.0, 1.0, 0.0],
            Weighting::Ndcg2pp => [0.0, self.mu, 1.0, 0.0],
            Weighting::RankNet => [0.0, 0.0, 0.0, 1.0],
        }
    }
}

/// The per-position values of one list's top `kk` positions, in score order.
#[derive(Default)]
struct Sorted<F> {
    s: Vec<F>,
    y: Vec<F>,
    /// `G_a`
    gn: Vec<F>,
    /// `1 / D_a`
    inv_d: Vec<F>,
    /// `G_a / D_a` (ndcg1)
    c1: Vec<F>,
    /// `|rho(d) - rho(d + 1)|` at index `d` (index 0 unused)
    rd: Vec<F>,
    /// SPEC 13's per-item weights (empty: none)
    wt: Vec<F>,
}

/// One pair's `(loss, dL/ds_a)` before the `1 / ln 2`. With `W` (SPEC 13), the ordered pair
/// `(a, b)` is weighted by `wa` (its first item's weight: the more relevant one, or for `ndcg1`
/// the one whose `G / D` weighs it, Rax's `compute_pairs(weights, lambda x, y: x)`), `(b, a)` by
/// `wb`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pair<F: Float, const W: bool>(
    sa: F,
    ya: F,
    ga: F,
    ia: F,
    ca: F,
    wa: F,
    sb: F,
    yb: F,
    gb: F,
    ib: F,
    cb: F,
    wb: F,
    rd: F,
    c: &[F; 5],
) -> (F, F) {
    let [sigma, f1, c_rd, c_lr, c_one] = *c;
    // h = x / 2 with x = sigma (s_a - s_b); the half gap `hd` is taken from halves (finite for
    // any finite scores), while `h` itself overflows when sigma > 1 and the gap is huge: only
    // its sign and exp(-|x|) are used.
    let half = F::from_f64(0.5);
    let hd = half * sa - half * sb;
    let h = sigma * hd;
    let e = (-(h + h).abs()).exp_fast();
    let q = F::ONE / (F::ONE + e);
    let pos = h >= F::ZERO;
    let sig_neg = select(pos, e * q, q); // sigmoid(-x)
    let sig_pos = select(pos, q, e * q); // sigmoid(x)
    let l1p = half * ln_1p_unit(e);
    let w = (c_rd * rd + c_lr * (ia - ib).abs()) * (ga - gb).abs() + c_one;
    let a = select(ya > yb, w, F::ZERO) + f1 * ca;
    let b = select(ya < yb, w, F::ZERO) + f1 * cb;
    let (a, b) = if W { (a * wa, b * wb) } else { (a, b) };
    // softplus(-x) / 2 = max(-h, 0) + l1p weighs a, softplus(x) / 2 = max(h, 0) + l1p weighs b:
    // the max term (the pair placed against its weight) is `weight * sigma * |hd|`, taken by
    // `mul3`, so the loss is inf only where it truly exceeds the dtype's range, never NaN (a zero
    // weight gives exactly 0).
    let lin = mul3(select(pos, b, a), sigma, hd.abs());
    ((lin + a * l1p + b * l1p) * F::from_f64(2.0), sigma * (b * sig_pos - a * sig_neg))
}

/// Sum over the unordered pairs of `t`'s positions of the pair losses (f64), and with `GRAD`
/// their gradient in `g` (which must hold zeros), both before the `1 / ln 2`.
#[inline(always)]
fn pair_sums<F: Float, const GRAD: bool, const W: bool>(t: &Sorted<F>, c: &[F; 5], g: &mut [F]) -> f64 {
    let m = t.s.len();
    let g = &mut g[..m];
    let mut total = 0.0f64;
    for a in 0..m {
        let (sa, ya, ga, ia, ca) = (t.s[a], t.y[a], t.gn[a], t.inv_d[a], t.c1[a]);
        let wa = if W { t.wt[a] } else { F::ONE };
        let (head, tail) = g.split_at_mut(a + 1);
        let r = a + 1..m;
        let wt = if W { &t.wt[r.clone()] } else { &t.s[r.clone()] }; // (unread without W)
        let (st, yt, gt, it, ct) =
            (&t.s[r.clone()], &t.y[r.clone()], &t.gn[r.clone()], &t.inv_d[r.clone()], &t.c1[r]);
        let rdt = &t.rd[1..m - a];
        let mut acc_l = [F::ZERO; L];
        let mut acc_g = [F::ZERO; L];
        let whole = tail.len() / L * L;
        let (tail_w, tail_r) = tail.split_at_mut(whole);
        let lanes = tail_w
            .chunks_exact_mut(L)
            .zip(st.chunks_exact(L))
            .zip(yt.chunks_exact(L))
            .zip(gt.chunks_exact(L))
            .zip(it.chunks_exact(L))
            .zip(ct.chunks_exact(L))
            .zip(rdt.chunks_exact(L))
            .zip(wt.chunks_exact(L));
        for (((((((gv, sv), yv), gnv), iv), cv), rv), wv) in lanes {
            let gv: &mut [F; L] = gv.try_into().unwrap();
            let (sv, yv): (&[F; L], &[F; L]) = (sv.try_into().unwrap(), yv.try_into().unwrap());
            let (gnv, iv): (&[F; L], &[F; L]) = (gnv.try_into().unwrap(), iv.try_into().unwrap());
            let (cv, rv): (&[F; L], &[F; L]) = (cv.try_into().unwrap(), rv.try_into().unwrap());
            let wv: &[F; L] = wv.try_into().unwrap();
            let mut d = [F::ZERO; L];
            for l in 0..L {
                let (lo, da) =
                    pair::<F, W>(sa, ya, ga, ia, ca, wa, sv[l], yv[l], gnv[l], iv[l], cv[l], wv[l], rv[l], c);
                acc_l[l] += lo;
                d[l] = da;
            }
            if GRAD {
                for l in 0..L {
                    acc_g[l] += d[l];
                    gv[l] -= d[l];
                }
            }
        }
        let (mut rest_l, mut rest_g) = (F::ZERO, F::ZERO);
        for (q, gj) in tail_r.iter_mut().enumerate() {
            let j = whole + q;
            let (lo, da) =
                pair::<F, W>(sa, ya, ga, ia, ca, wa, st[j], yt[j], gt[j], it[j], ct[j], wt[j], rdt[j], c);
            rest_l += lo;
            if GRAD {
                rest_g += da;
                *gj -= da;
            }
        }
        total += lane_sum(&acc_l, rest_l).to_f64();
        if GRAD {
            head[a] += lane_sum(&acc_g, rest_g);
        }
    }
    total
}

/// Per-thread scratch for one list.
#[derive(Default)]
struct Work<F> {
    list: Gathered<F>,
    order: Vec<usize>,
    gains: Vec<f64>,
    top: Sorted<F>,
    /// the gradient in score order, then in gathered order
    g: Vec<F>,
    out: Vec<F>,
}

/// One list's loss and whether it counts; with `grad`, leaves dL/ds in `w.out[..m]`
/// (gathered order).
#[inline(always)]
fn list_loss<F: Float>(w: &mut Work<F>, opts: &Options, grad: bool) -> (F, bool) {
    let m = w.list.s.len();
    w.out.clear();
    w.out.resize(m, F::ZERO);
    let kk = opts.k.map_or(m, |k| k.min(m));
    if kk < 2 {
        return (F::ZERO, false);
    }
    let (s, y) = (&w.list.s, &w.list.y);
    // maxDCG@k of the ideal order.
    w.gains.clear();
    w.gains.extend(y.iter().map(|v| gain(v.to_f64(), opts.scale_gains)));
    w.gains.sort_unstable_by(|a, b| b.partial_cmp(a).unwrap_or(std::cmp::Ordering::Equal));
    let max_dcg: f64 = w.gains[..kk].iter().enumerate().map(|(p, g)| g / (p as f64 + 2.0).log2()).sum();
    if max_dcg.is_nan() || max_dcg <= 0.0 {
        return (F::ZERO, false);
    }
    // Score order, descending, ties in input order (a stable sort).
    w.order.clear();
    w.order.extend(0..m);
    w.order.sort_by(|&i, &j| s[j].partial_cmp(&s[i]).unwrap_or(std::cmp::Ordering::Equal));
    let t = &mut w.top;
    t.s.clear();
    t.y.clear();
    t.gn.clear();
    t.inv_d.clear();
    t.c1.clear();
    t.rd.clear();
    t.wt.clear();
    let weighted = !w.list.w.is_empty();
    if weighted {
        t.wt.extend(w.order[..kk].iter().map(|&i| w.list.w[i]));
    }
    for (p, &i) in w.order[..kk].iter().enumerate() {
        let g = gain(y[i].to_f64(), opts.scale_gains) / max_dcg;
        let inv_d = 1.0 / (p as f64 + 2.0).log2();
        t.s.push(s[i]);
        t.y.push(y[i]);
        t.gn.push(F::from_f64(g));
        t.inv_d.push(F::from_f64(inv_d));
        t.c1.push(F::from_f64(g * inv_d));
        let d = p as f64; // rho(d) - rho(d + 1), d >= 1
        t.rd.push(F::from_f64(if p == 0 {
            0.0
        } else {
            (1.0 / (d + 1.0).log2() - 1.0 / (d + 2.0).log2()).abs()
        }));
    }
    if opts.weighting != Weighting::Ndcg1 && t.y.iter().all(|&v| v == t.y[0]) {
        return (F::ZERO, false);
    }
    // SPEC 13: something weighted to rank: an item of positive weight above the lowest label of
    // the top k (ndcg1: one of positive weight and gain, which weighs every pair it leads).
    if weighted {
        let exists = if opts.weighting == Weighting::Ndcg1 {
            t.y.iter().zip(&t.wt).any(|(&v, &wv)| wv > F::ZERO && gain(v.to_f64(), opts.scale_gains) > 0.0)
        } else {
            let low = t.y.iter().fold(t.y[0], |a, &v| if v < a { v } else { a });
            t.y.iter().zip(&t.wt).any(|(&v, &wv)| wv > F::ZERO && v > low)
        };
        if !exists {
            return (F::ZERO, false);
        }
    }
    let c = opts.coefficients();
    let c =
        [F::from_f64(opts.sigma), F::from_f64(c[0]), F::from_f64(c[1]), F::from_f64(c[2]), F::from_f64(c[3])];
    w.g.clear();
    w.g.resize(kk, F::ZERO);
    let total = match (grad, weighted) {
        (true, false) => pair_sums::<F, true, false>(t, &c, &mut w.g),
        (false, false) => pair_sums::<F, false, false>(t, &c, &mut w.g),
        (true, true) => pair_sums::<F, true, true>(t, &c, &mut w.g),
        (false, true) => pair_sums::<F, false, true>(t, &c, &mut w.g),
    };
    let inv_ln2 = std::f64::consts::LOG2_E;
    if grad {
        let f = F::from_f64(inv_ln2);
        for (&i, &v) in w.order[..kk].iter().zip(&w.g) {
            w.out[i] = v * f;
        }
    }
    (F::from_f64(total * inv_ln2), true)
}

simd_dispatch!(list_loss_simd, list_loss, (w: &mut Work<F>, opts: &Options, grad: bool) -> (F, bool));

/// Per-list LambdaLoss values `[b]`, whether each list counts in a mean `[b]`, and with `grad`
/// the gradient of each list's loss with respect to its scores `[b * n]` (zero at padding).
pub fn lambda_loss<F: Float>(
    batch: &Padded<F>,
    opts: &Options,
    losses: &mut [F],
    valid: &mut [bool],
    grad: Option<&mut [F]>,
) -> Result<()> {
    opts.check()?;
    let targets =
        batch.list_outputs("losses", &[losses.len(), valid.len()], grad.as_deref().map(<[F]>::len))?;
    batch.check_finite()?;
    if opts.scale_gains {
        let n = batch.n.max(1);
        check_gain_range(targets, batch.mask, "targets", |k| k / n)?;
    }
    let want_grad = grad.is_some();
    for_each_list(batch.n, losses, valid, grad, Work::<F>::default, |w, bi, loss, ok, row| {
        batch.gather(bi, &mut w.list);
        let (l, counts) = list_loss_simd(w, opts, want_grad);
        *loss = l;
        *ok = counts;
        if let Some(row) = row {
            scatter(&w.list.idx, &w.out, row);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::Rng;

    const ALL: [Weighting; 5] =
        [Weighting::Ndcg1, Weighting::Ndcg2, Weighting::LambdaRank, Weighting::Ndcg2pp, Weighting::RankNet];

    fn opts(weighting: Weighting, sigma: f64, k: Option<usize>, mu: f64, scale_gains: bool) -> Options {
        Options { weighting, sigma, k, mu, scale_gains }
    }

    /// Straight from the definition, in f64: every ordered pair, one at a time.
    fn reference(s: &[f64], y: &[f64], o: &Options) -> (f64, bool) {
        reference_weighted(s, y, &vec![1.0; s.len()], o)
    }

    /// `reference` with SPEC 13's per-item weights: the ordered pair `(i, j)` times `w_i`; a list
    /// with no pair of positive item weight (ndcg1: and gain) does not count.
    fn reference_weighted(s: &[f64], y: &[f64], wt: &[f64], o: &Options) -> (f64, bool) {
        let m = s.len();
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&i, &j| s[j].partial_cmp(&s[i]).unwrap());
        let mut pos = vec![0usize; m];
        for (p, &i) in order.iter().enumerate() {
            pos[i] = p;
        }
        let k = o.k.unwrap_or(m).min(m);
        let g = |v: f64| if o.scale_gains { 2f64.powf(v.max(0.0)) - 1.0 } else { v.max(0.0) };
        let mut ideal: Vec<f64> = y.iter().map(|&v| g(v)).collect();
        ideal.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let max_dcg: f64 = (0..k).map(|p| ideal[p] / (p as f64 + 2.0).log2()).sum();
        if k < 2 || max_dcg <= 0.0 {
            return (0.0, false);
        }
        let gn = |i: usize| g(y[i]) / max_dcg;
        let dd = |i: usize| (pos[i] as f64 + 2.0).log2();
        let rho = |d: f64| 1.0 / (1.0 + d).log2();
        let (mut total, mut pairs, mut weighted) = (0.0, 0, false);
        for i in 0..m {
            for j in 0..m {
                if i == j || pos[i] >= k || pos[j] >= k {
                    continue;
                }
                if o.weighting != Weighting::Ndcg1 && y[i] > y[j]
                    || o.weighting == Weighting::Ndcg1 && g(y[i]) > 0.0
                {
                    weighted |= wt[i] > 0.0;
                }
                let ndcg2 = || {
                    let d = (pos[i] as f64 - pos[j] as f64).abs();
                    (rho(d) - rho(d + 1.0)).abs() * (gn(i) - gn(j)).abs()
                };
                let lr = || (1.0 / dd(i) - 1.0 / dd(j)).abs() * (gn(i) - gn(j)).abs();
                let w = match o.weighting {
                    Weighting::Ndcg1 => gn(i) / dd(i),
                    _ if y[i] <= y[j] => continue,
                    Weighting::Ndcg2 => ndcg2(),
                    Weighting::LambdaRank => lr(),
                    Weighting::Ndcg2pp => o.mu * ndcg2() + lr(),
                    Weighting::RankNet => 1.0,
                };
                let x = o.sigma * (s[i] - s[j]);
                // -log2(sigmoid(x)) = softplus(-x) / ln 2, computed stably
                total += wt[i] * w * ((-x).max(0.0) + (-x.abs()).exp().ln_1p()) / 2f64.ln();
                pairs += 1;
            }
        }
        if pairs == 0 || !weighted {
            return (0.0, false);
        }
        (total, true)
    }

    #[test]
    fn weighted_loss_matches_reference_and_finite_differences() {
        let mut rng = Rng(0x13_13);
        for &(b, n) in &[(3, 5), (2, 17), (4, 9)] {
            for weighting in ALL {
                for &(sigma, k) in &[(1.0, None), (0.5, Some(3)), (2.0, Some(6))] {
                    let o = opts(weighting, sigma, k, 3.0, true);
                    let s: Vec<f64> = (0..b * n).map(|_| (rng.normal() * 8.0).round() / 4.0).collect();
                    let y: Vec<f64> = (0..b * n).map(|_| rng.label(3)).collect();
                    let mask: Vec<bool> = (0..b * n).map(|k| k % n == 0 || rng.next() < 0.8).collect();
                    let mut w: Vec<f64> = (0..b * n)
                        .map(|k| match (mask[k], rng.int(5)) {
                            (false, 0) => f64::NAN,
                            (false, 1) => f64::INFINITY,
                            (false, _) => -1.0,
                            (true, 0) => 0.0,
                            (true, _) => rng.next() * 2.0,
                        })
                        .collect();
                    w[..n].iter_mut().for_each(|v| *v = 0.0); // list 0: nothing weighted
                    let batch =
                        Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap().with_weights(Some(&w)).unwrap();
                    let (l, v, g) = run(&batch, &o);
                    assert!(!v[0] && l[0] == 0.0);
                    for bi in 0..b {
                        let idx: Vec<usize> = (0..n).filter(|&j| mask[bi * n + j]).collect();
                        let pick = |x: &[f64]| idx.iter().map(|&j| x[bi * n + j]).collect::<Vec<f64>>();
                        let (sr, yr, wr) = (pick(&s), pick(&y), pick(&w));
                        let (rl, rv) = reference_weighted(&sr, &yr, &wr, &o);
                        assert_eq!(v[bi], rv, "{o:?}");
                        assert!(close(l[bi], rl, 1e-12), "{o:?}: loss {} vs {rl}", l[bi]);
                        assert!((0..n).filter(|&j| !mask[bi * n + j]).all(|j| g[bi * n + j] == 0.0));
                        let h = 1e-6;
                        for (kx, &j) in idx.iter().enumerate() {
                            if sr.iter().enumerate().any(|(q, &x)| q != kx && x == sr[kx]) {
                                continue; // tied scores: a step would reorder them
                            }
                            let (mut sp, mut sm) = (sr.clone(), sr.clone());
                            sp[kx] += h;
                            sm[kx] -= h;
                            let fd = (reference_weighted(&sp, &yr, &wr, &o).0
                                - reference_weighted(&sm, &yr, &wr, &o).0)
                                / (2.0 * h);
                            assert!(
                                (g[bi * n + j] - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                                "{o:?}: {} vs {fd}",
                                g[bi * n + j]
                            );
                        }
                    }
                    // unit weights: the unweighted bits
                    let ones = vec![1.0; b * n];
                    let unit = Padded::new(&s, Some(&y), Some(&mask), b, n)
                        .unwrap()
                        .with_weights(Some(&ones))
                        .unwrap();
                    let plain = Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap();
                    let (a, c) = (run(&unit, &o), run(&plain, &o));
                    assert_eq!(a.1, c.1);
                    assert!(a
                        .0
                        .iter()
                        .chain(&a.2)
                        .zip(c.0.iter().chain(&c.2))
                        .all(|(x, z)| x.to_bits() == z.to_bits()));
                }
            }
        }
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    fn run<F: Float>(batch: &Padded<F>, o: &Options) -> (Vec<F>, Vec<bool>, Vec<F>) {
        let (b, n) = (batch.b, batch.n);
        let (mut l, mut v, mut g) =
            (vec![F::from_f64(9.0); b], vec![false; b], vec![F::from_f64(9.0); b * n]);
        lambda_loss(batch, o, &mut l, &mut v, Some(&mut g)).unwrap();
        (l, v, g)
    }

    #[test]
    fn loss_matches_reference_and_gradient_matches_finite_differences() {
        let mut rng = Rng(0x9E3779B97F4A7C15);
        for &(b, n) in &[(1, 2), (3, 5), (2, 17), (2, 9), (1, 31)] {
            for weighting in ALL {
                for &(sigma, k, mu, sg) in
                    &[(1.0, None, 10.0, true), (0.5, Some(3), 2.0, false), (2.0, Some(40), 0.0, true)]
                {
                    let o = opts(weighting, sigma, k, mu, sg);
                    // scores on a grid (ties), labels with ties, some padding
                    let s: Vec<f64> = (0..b * n).map(|_| (rng.normal() * 8.0).round() / 4.0).collect();
                    let y: Vec<f64> = (0..b * n).map(|_| rng.label(3)).collect();
                    let mask: Vec<bool> = (0..b * n).map(|k| k % n == 0 || rng.next() < 0.8).collect();
                    let batch = Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap();
                    let (l, v, g) = run(&batch, &o);
                    let (mut l2, mut v2) = (vec![0.0; b], vec![false; b]);
                    lambda_loss(&batch, &o, &mut l2, &mut v2, None).unwrap();
                    assert_eq!((&l, &v), (&l2, &v2), "the loss does not depend on grad");
                    for bi in 0..b {
                        let idx: Vec<usize> = (0..n).filter(|&j| mask[bi * n + j]).collect();
                        let sr: Vec<f64> = idx.iter().map(|&j| s[bi * n + j]).collect();
                        let yr: Vec<f64> = idx.iter().map(|&j| y[bi * n + j]).collect();
                        let (rl, rv) = reference(&sr, &yr, &o);
                        assert_eq!(v[bi], rv, "{o:?}");
                        assert!(close(l[bi], rl, 1e-12), "{o:?}: loss {} vs {rl}", l[bi]);
                        for j in (0..n).filter(|&j| !mask[bi * n + j]) {
                            assert_eq!(g[bi * n + j], 0.0);
                        }
                        // Central differences with the order held fixed: a step far smaller
                        // than the gap between distinct scores (grid 1/4) keeps the sort.
                        let h = 1e-6;
                        for (kx, &j) in idx.iter().enumerate() {
                            let mut sp = sr.clone();
                            let mut sm = sr.clone();
                            sp[kx] += h;
                            sm[kx] -= h;
                            // tied scores: moving one would reorder them; skip those items
                            if sr.iter().enumerate().any(|(q, &x)| q != kx && x == sr[kx]) {
                                continue;
                            }
                            let fd = (reference(&sp, &yr, &o).0 - reference(&sm, &yr, &o).0) / (2.0 * h);
                            assert!(
                                (g[bi * n + j] - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                                "{o:?}: {} vs {fd}",
                                g[bi * n + j]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ties_keep_input_order() {
        // All scores tied: positions follow the input order.
        let s = [0.5f64; 4];
        let y = [0.0f64, 2.0, 1.0, 3.0];
        let o = opts(Weighting::LambdaRank, 1.0, None, 10.0, true);
        let (l, v, _) = run(&Padded::new(&s, Some(&y), None, 1, 4).unwrap(), &o);
        assert!(v[0] && close(l[0], reference(&s, &y, &o).0, 1e-14));
        // k = 2 keeps the first two items only: the pair (item 1 over item 0).
        let o = opts(Weighting::RankNet, 1.0, Some(2), 10.0, true);
        let (l, v, g) = run(&Padded::new(&s, Some(&y), None, 1, 4).unwrap(), &o);
        assert!(v[0] && close(l[0], 1.0, 1e-14), "-log2(1/2) = 1, got {}", l[0]);
        assert!(g[2] == 0.0 && g[3] == 0.0 && close(g[1], -0.5 / 2f64.ln(), 1e-14));
    }

    #[test]
    fn extreme_scores_stay_finite() {
        let s = [1e4f64, -1e4, 0.0, 40.0];
        let y = [0.0f64, 3.0, 1.0, 2.0];
        for weighting in ALL {
            let o = opts(weighting, 1.0, None, 10.0, true);
            let (l, _, g) = run(&Padded::new(&s, Some(&y), None, 1, 4).unwrap(), &o);
            assert!(close(l[0], reference(&s, &y, &o).0, 1e-12));
            let s32 = s.map(|v| v as f32);
            let y32 = y.map(|v| v as f32);
            let (l32, _, g32) = run(&Padded::new(&s32, Some(&y32), None, 1, 4).unwrap(), &o);
            assert!(close(l32[0] as f64, l[0], 1e-5), "{} vs {}", l32[0], l[0]);
            assert!(g.iter().all(|x| x.is_finite()) && g32.iter().all(|x| x.is_finite()));
        }
    }

    #[test]
    fn huge_scores_with_sigma_above_one_give_no_nan() {
        // Two items far apart in score order: the pair in its order costs ~0 whatever sigma (it
        // was NaN for sigma > 1: the other direction's overflowed softplus times its zero
        // weight); against its order it costs w sigma |gap| / ln 2, inf only where that exceeds
        // the dtype's range.
        for weighting in ALL {
            for sigma in [1.5, 2.0, 4.0] {
                let o = opts(weighting, sigma, None, 10.0, true);
                let (l, v, g) =
                    run(&Padded::new(&[3e38f32, -3e38], Some(&[1.0f32, 0.0]), None, 1, 2).unwrap(), &o);
                assert!(
                    v[0] && (0.0..1e-30).contains(&l[0]) && g.iter().all(|x| x.is_finite()),
                    "{o:?} {l:?}"
                );
                let big = 0.9 * f64::MAX;
                let (l, v, g) = run(&Padded::new(&[big, -big], Some(&[1.0, 0.0]), None, 1, 2).unwrap(), &o);
                assert!(
                    v[0] && (0.0..1e-300).contains(&l[0]) && g.iter().all(|x| x.is_finite()),
                    "{o:?} {l:?}"
                );
                // misordered, 2e300 apart: the reference's x stays finite in f64
                let (s, y) = ([-1e300, 1e300, 0.0], [2.0, 0.0, 1.0]);
                let (l, _, g) = run(&Padded::new(&s, Some(&y), None, 1, 3).unwrap(), &o);
                let (rl, _) = reference(&s, &y, &o);
                assert!(close(l[0], rl, 1e-12) && g.iter().all(|x| x.is_finite()), "{o:?} {} vs {rl}", l[0]);
                // misordered at +-3e38 in f32: the true loss exceeds f32's range for every weighting
                let (l, _, g) =
                    run(&Padded::new(&[-3e38f32, 3e38], Some(&[1.0f32, 0.0]), None, 1, 2).unwrap(), &o);
                let (rl, _) = reference(&[-3e38, 3e38], &[1.0, 0.0], &o);
                assert!(rl > f32::MAX as f64 && l[0] == f32::INFINITY, "{o:?} {l:?} {rl}");
                assert!(g.iter().all(|x| x.is_finite()));
            }
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        let mut rng = Rng(4242);
        let (b, n) = (3, 70);
        let s: Vec<f64> = (0..b * n).map(|_| rng.normal()).collect();
        let y: Vec<f64> = (0..b * n).map(|_| rng.label(4)).collect();
        let s32: Vec<f32> = s.iter().map(|&v| v as f32).collect();
        let y32: Vec<f32> = y.iter().map(|&v| v as f32).collect();
        for weighting in ALL {
            let o = opts(weighting, 2.0, Some(50), 10.0, true);
            let (l, v, g) = run(&Padded::new(&s, Some(&y), None, b, n).unwrap(), &o);
            let (l32, v32, g32) = run(&Padded::new(&s32, Some(&y32), None, b, n).unwrap(), &o);
            assert_eq!(v, v32);
            for bi in 0..b {
                assert!(close(l32[bi] as f64, l[bi], 1e-5));
            }
            let gmax = g.iter().fold(0.0f64, |a, &x| a.max(x.abs()));
            for k in 0..b * n {
                assert!((g[k] - g32[k] as f64).abs() < 1e-5 * gmax);
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
        let o = opts(Weighting::Ndcg2pp, 1.0, None, 10.0, true);
        let go = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| run(&batch, &o))
        };
        let (one, two) = (go(1), go(2));
        assert!(one.0.iter().zip(&two.0).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(one.2.iter().zip(&two.2).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn degenerate_lists_give_zero() {
        // list 0: all labels tied; 1: one real item; 2: nothing real; 3: all gains zero.
        let s = [1.0f64, 2.0, 3.0, 0.5, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.0, 3.0];
        let y = [1.0f64, 1.0, 1.0, 2.0, 1.0, 0.0, 2.0, 1.0, 0.0, 0.0, -1.0, -2.0];
        let mask = [true, true, true, true, false, false, false, false, false, true, true, true];
        let batch = Padded::new(&s, Some(&y), Some(&mask), 4, 3).unwrap();
        for weighting in [Weighting::Ndcg2pp, Weighting::RankNet] {
            let (l, v, g) = run(&batch, &opts(weighting, 1.0, None, 10.0, true));
            assert_eq!((l, v, g), (vec![0.0; 4], vec![false; 4], vec![0.0; 12]));
        }
        // ndcg1 pairs every two real items: list 0 counts, the others do not.
        let (l, v, _) = run(&batch, &opts(Weighting::Ndcg1, 1.0, None, 10.0, true));
        assert_eq!(v, [true, false, false, false]);
        assert!(l[0] > 0.0 && l[1..] == [0.0; 3]);
        // k = 1: no pair anywhere.
        let (_, v, _) = run(&batch, &opts(Weighting::Ndcg1, 1.0, Some(1), 10.0, true));
        assert_eq!(v, [false; 4]);
        let batch = Padded::<f64>::new(&[], Some(&[]), None, 2, 0).unwrap();
        let (l, v, _) = run(&batch, &opts(Weighting::Ndcg1, 1.0, None, 10.0, true));
        assert_eq!((l, v), (vec![0.0; 2], vec![false; 2]));
    }

    #[test]
    fn bad_input_names_the_argument() {
        let s = [1.0f64, 2.0, 0.0, 1.0];
        let y = [1.0f64, 0.0, 1.0, 0.0];
        let batch = Padded::new(&s, Some(&y), None, 2, 2).unwrap();
        let (mut l, mut v) = (vec![0.0; 2], vec![false; 2]);
        let base = opts(Weighting::Ndcg2pp, 1.0, None, 10.0, true);
        for (o, arg) in [
            (Options { sigma: 0.0, ..base }, "sigma"),
            (Options { sigma: f64::NAN, ..base }, "sigma"),
            (Options { mu: -1.0, ..base }, "mu"),
            (Options { mu: f64::INFINITY, ..base }, "mu"),
            (Options { k: Some(0), ..base }, "k"),
        ] {
            assert_eq!(lambda_loss(&batch, &o, &mut l, &mut v, None).unwrap_err().arg(), arg);
        }
        let bad = [1.0f64, 0.0, 1.0, f64::NAN];
        let batch = Padded::new(&s, Some(&bad), None, 2, 2).unwrap();
        assert_eq!(
            lambda_loss(&batch, &base, &mut l, &mut v, None),
            Err(Error::NonFinite { arg: "targets", list: 1 })
        );
        let big = [1.0f64, 0.0, 1001.0, 0.0];
        let batch = Padded::new(&s, Some(&big), None, 2, 2).unwrap();
        assert_eq!(lambda_loss(&batch, &base, &mut l, &mut v, None).unwrap_err().arg(), "targets");
        let o = Options { scale_gains: false, ..base };
        assert!(lambda_loss(&batch, &o, &mut l, &mut v, None).is_ok());
        assert_eq!(Weighting::parse("ndcg3").unwrap_err().arg(), "weighting");
    }
}
