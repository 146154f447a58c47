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
//! `Metric::Mrr` replaces the NDCG delta by `|RR' - RR|`: RR = 1/(1 + f), `f` the 0-based
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
use crate::float::Float;
use crate::ragged::Groups;

/// Lanes a row of pairs is split into (fixed, so sums do not depend on the instruction set).
const L: usize = 8;

/// Largest target for `2^y - 1` gains in the padded (torch) form.
const MAX_GAIN_EXPONENT: f64 = 1000.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
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
    pub metric: Metric,
}

impl Default for LambdaOptions {
    fn default() -> Self {
        LambdaOptions { sigma: 1.0, truncation: 30, norm: true, metric: Metric::Ndcg }
    }
}

impl LambdaOptions {
    fn check(&self) -> Result<()> {
        if !(self.sigma > 0.0 && self.sigma.is_finite()) {
            return Err(Error::invalid(
                "sigma",
                format!("must be a positive finite number, got {}", self.sigma),
            ));
        }
        if self.truncation < 1 {
            return Err(Error::invalid("truncation_level", "must be at least 1"));
        }
        Ok(())
    }
}

/// The gain of a label.
#[derive(Clone, Copy, Debug)]
pub enum Gains<'a> {
    /// `2^max(y, 0) - 1` for any real y (padded form only).
    Exp2,
    /// `table[y]`; labels must be integers in `0..table.len()`.
    Table(&'a [f64]),
}

/// LightGBM's default `label_gain`: `2^i - 1` for `i` in `0..31`.
pub fn default_label_gain() -> Vec<f64> {
    (0..31).map(|i| (1u64 << i) as f64 - 1.0).collect()
}

impl Gains<'_> {
    fn check(&self) -> Result<()> {
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

    /// The gain of `y`, or None when `y` is not a valid label.
    #[inline]
    fn of(&self, y: f64) -> Option<f64> {
        match self {
            Gains::Exp2 => (y <= MAX_GAIN_EXPONENT).then(|| y.max(0.0).exp2() - 1.0),
            Gains::Table(t) => {
                if y >= 0.0 && y.fract() == 0.0 && y < t.len() as f64 {
                    Some(t[y as usize])
                } else {
                    None
                }
            }
        }
    }

    fn describe(&self, arg: &'static str, y: f64, list: usize, what: &str) -> Error {
        match self {
            Gains::Exp2 => Error::invalid(
                arg,
                format!("value {y} in {what} {list} is too large for 2^y - 1 gains (at most {MAX_GAIN_EXPONENT})"),
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
}

/// `1/log2(2 + p)` for `p` in `0..n`.
fn discounts(n: usize) -> Vec<f64> {
    (0..n).map(|p| 1.0 / (p as f64 + 2.0).log2()).collect()
}

/// Per-thread scratch for one list. The caller fills `rs` (scores), `ry` (labels) and `rg`
/// (gains) in input order; results come back in score order in `grad`, `hess`, position `p`
/// belonging to input item `idx[p]`.
#[derive(Default)]
struct Work {
    rs: Vec<f64>,
    ry: Vec<f64>,
    rg: Vec<f64>,
    keys: Vec<(u64, usize)>,
    idx: Vec<usize>,
    s: Vec<f64>,
    y: Vec<f64>,
    g: Vec<f64>,
    u: Vec<f64>,
    grad: Vec<f64>,
    hess: Vec<f64>,
    dv: Vec<f64>,
    top: Vec<(f64, f64)>,
    /// Labels are integers below this (a gain table's length), or 0: not known to be.
    labels_below: usize,
    counts: Vec<(usize, f64)>,
    buf: RowBuf,
    list: Gathered<f64>,
}

thread_local! {
    static WORK: std::cell::RefCell<Work> = std::cell::RefCell::new(Work::default());
}

impl Work {
    fn clear(&mut self) {
        self.rs.clear();
        self.ry.clear();
        self.rg.clear();
    }

    /// `idx`: input positions by score descending, ties in input order (a stable sort;
    /// -0.0 == 0.0 as in C++). Integer keys: the score's bits made order-preserving, then the
    /// position.
    fn sort(&mut self) {
        self.keys.clear();
        self.keys.extend(self.rs.iter().enumerate().map(|(p, &s)| {
            let b = (s + 0.0).to_bits(); // -0.0 + 0.0 = +0.0
            let asc = if b >> 63 == 1 { !b } else { b | (1 << 63) };
            (!asc, p)
        }));
        self.keys.sort_by_key(|k| k.0); // stable: ties stay in input order
        self.idx.clear();
        self.idx.extend(self.keys.iter().map(|k| k.1));
    }
}

/// What one list gives besides its gradient.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ListOut {
    /// The loss `factor * sum delta * log(1 + exp(-sigma * ds))` (LOSS only).
    loss: f64,
    /// The list has a pair and a nonzero normaliser.
    valid: bool,
}

#[derive(Clone, Copy)]
struct Consts {
    sigma: f64,
    sigma2: f64,
    two_sigma: f64,
    /// The norm denominator is `c0 + c1 * |ds|`: (0.01, 1) with norm, (1, 0) without.
    c0: f64,
    c1: f64,
}

#[inline(always)]
fn select(c: bool, a: f64, b: f64) -> f64 {
    if c {
        a
    } else {
        b
    }
}

/// One pair at positions `i < j`: `diff = s_i - s_j >= 0`, `e = exp(-sigma * diff)`, `pos` =
/// item i has the higher label, `dd` = delta with the sign of `pos` (delta if i is h, -delta
/// if j is h). Returns (lam added to grad[i] and taken from grad[j], hes, the term of S, the
/// loss term).
#[inline(always)]
fn pair<const LOSS: bool>(c: &Consts, diff: f64, e: f64, pos: bool, dd: f64) -> (f64, f64, f64, f64) {
    let ope = 1.0 + e;
    let den = c.c0 + c.c1 * diff;
    // One division: rho / den and rho (1 - rho) / den, rho = 1 / (1 + exp(sigma ds)),
    // ds = diff when i is h (rho = e / (1 + e)) and -diff otherwise (rho = 1 / (1 + e)).
    let q = 1.0 / (ope * ope * den);
    let rho_w = select(pos, e, 1.0) * ope * q;
    let rr_w = e * q;
    let sd = select(pos, dd, -dd);
    let lam = -c.sigma * dd * rho_w;
    let hes = c.sigma2 * sd * rr_w;
    let st = c.two_sigma * sd * rho_w;
    let loss = if LOSS {
        // log(1 + exp(-sigma ds)) = log1p(e) (+ sigma diff when ds = -diff)
        sd / den * (select(pos, 0.0, c.sigma * diff) + e.ln_1p())
    } else {
        0.0
    };
    (lam, hes, st, loss)
}

/// A lane-split sum (fixed order, so it vectorises and does not depend on the machine).
#[inline(always)]
fn lane_sum(v: &[f64]) -> f64 {
    let mut acc = [0.0f64; L];
    let mut chunks = v.chunks_exact(L);
    for c in &mut chunks {
        let c: &[f64; L] = c.try_into().unwrap();
        for l in 0..L {
            acc[l] += c[l];
        }
    }
    let rest = chunks.remainder().iter().fold(0.0, |a, &b| a + b);
    acc.iter().fold(rest, |a, &b| a + b)
}

/// Scratch for one row of pairs: per-pair lam, hes, S term and loss term.
#[derive(Default)]
struct RowBuf {
    lam: Vec<f64>,
    hes: Vec<f64>,
    st: Vec<f64>,
    lo: Vec<f64>,
}

impl RowBuf {
    fn resize(&mut self, m: usize) {
        for v in [&mut self.lam, &mut self.hes, &mut self.st, &mut self.lo] {
            v.clear();
            v.resize(m, 0.0);
        }
    }
}

/// Row `i` against every `j > i`: updates grad[j], hess[j] and returns (grad_i, hess_i, S,
/// loss) contributions. `dv[j]` is pair (i, j)'s signed delta (see `pair`), `ex(j - i - 1)`
/// its `exp(-sigma (s_i - s_j))`. Element-wise first (no reduction, so the loop vectorises),
/// lane-split sums after.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row<const LOSS: bool, E: Fn(usize) -> f64>(
    c: &Consts,
    i: usize,
    s: &[f64],
    y: &[f64],
    dv: &[f64],
    ex: E,
    grad: &mut [f64],
    hess: &mut [f64],
    buf: &mut RowBuf,
) -> [f64; 4] {
    let m = s.len();
    let len = m - i - 1;
    let (si, yi) = (s[i], y[i]);
    let (s, y, dv) = (&s[i + 1..m], &y[i + 1..m], &dv[i + 1..m]);
    let (grad, hess) = (&mut grad[i + 1..m], &mut hess[i + 1..m]);
    let (lam, hes, st, lo) = (&mut buf.lam[..len], &mut buf.hes[..len], &mut buf.st[..len], &mut buf.lo[..len]);
    assert!(s.len() == len && y.len() == len && dv.len() == len && grad.len() == len && hess.len() == len);
    for j in 0..len {
        let (a, b, e, f) = pair::<LOSS>(c, si - s[j], ex(j), yi > y[j], dv[j]);
        grad[j] -= a;
        hess[j] += b;
        lam[j] = a;
        hes[j] = b;
        st[j] = e;
        if LOSS {
            lo[j] = f;
        }
    }
    let lsum = if LOSS { lane_sum(lo) } else { 0.0 };
    [lane_sum(lam), lane_sum(hes), lane_sum(st), lsum]
}

/// Row `i` with the exponentials from `u` (`u[p] = exp(sigma (s_p - s_0))`, so that
/// `exp(-sigma (s_i - s_j)) = u[j] / u[i]`) or, when the list's scores span too much for
/// that, computed pair by pair.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_any<const LOSS: bool>(
    c: &Consts,
    i: usize,
    s: &[f64],
    y: &[f64],
    dv: &[f64],
    u: Option<&[f64]>,
    grad: &mut [f64],
    hess: &mut [f64],
    buf: &mut RowBuf,
) -> [f64; 4] {
    let m = s.len();
    match u {
        Some(u) => {
            let wi = 1.0 / u[i];
            let ut = &u[i + 1..m];
            row::<LOSS, _>(c, i, s, y, dv, |j| ut[j] * wi, grad, hess, buf)
        }
        None => {
            let (si, st) = (s[i], &s[i + 1..m]);
            let sigma = c.sigma;
            row::<LOSS, _>(c, i, s, y, dv, |j| (-(sigma * (si - st[j]))).exp_fast(), grad, hess, buf)
        }
    }
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

/// `inverse_max_dcg` for integer labels below `counts.len()`, by counting (LightGBM's way).
fn inverse_max_dcg_counting(y: &[f64], g: &[f64], counts: &mut [(usize, f64)], disc: &[f64], k: usize) -> f64 {
    counts.fill((0, 0.0));
    for (&yv, &gv) in y.iter().zip(g) {
        let c = &mut counts[yv as usize];
        c.0 += 1;
        c.1 = gv;
    }
    let k = k.min(y.len());
    let (mut p, mut max_dcg) = (0, 0.0);
    for &(c, gv) in counts.iter().rev() {
        if p >= k {
            break;
        }
        for &d in &disc[p..k.min(p + c)] {
            max_dcg += gv * d;
        }
        p += c;
    }
    if max_dcg > 0.0 {
        1.0 / max_dcg
    } else {
        0.0
    }
}

/// Largest `sigma * (best - worst)` for which the factorised exponentials stay normal numbers.
const MAX_SPAN: f64 = 600.0;

/// One list: fills `w.grad`, `w.hess` (score order, norm scaling applied, no weights).
#[inline(always)]
fn list_lambdas<const LOSS: bool>(w: &mut Work, disc: &[f64], o: &LambdaOptions) -> ListOut {
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
        Metric::Ndcg if w.labels_below > 0 && w.labels_below <= 4 * m + 64 => {
            w.counts.resize(w.labels_below, (0, 0.0));
            inverse_max_dcg_counting(&w.ry, &w.rg, &mut w.counts, disc, o.truncation)
        }
        Metric::Ndcg => inverse_max_dcg(&w.ry, &w.rg, &mut w.top, disc, o.truncation),
        Metric::Mrr => {
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
    let Work { rs, ry, rg, idx, s, y, g, u, grad, hess, dv, buf, .. } = w;
    s.clear();
    y.clear();
    g.clear();
    for &k in idx.iter() {
        s.push(rs[k]);
        y.push(ry[k]);
        g.push(rg[k]);
    }
    let spread = s[0] != s[m - 1];
    let c = Consts {
        sigma: o.sigma,
        sigma2: o.sigma * o.sigma,
        two_sigma: 2.0 * o.sigma,
        c0: if o.norm && spread { 0.01 } else { 1.0 },
        c1: if o.norm && spread { 1.0 } else { 0.0 },
    };
    let span = o.sigma * (s[0] - s[m - 1]);
    let u = if span <= MAX_SPAN {
        let (s0, sigma) = (s[0], o.sigma);
        u.clear();
        u.extend(s.iter().map(|&v| (sigma * (v - s0)).exp_fast()));
        Some(&u[..])
    } else {
        None
    };
    buf.resize(m);
    dv.clear();
    dv.resize(m, 0.0);
    let rows = (m - 1).min(o.truncation);
    let mut total = [0.0f64; 2]; // S, loss
    let mut add = |i: usize, r: [f64; 4], grad: &mut [f64], hess: &mut [f64]| {
        grad[i] += r[0];
        hess[i] += r[1];
        total[0] += r[2];
        total[1] += r[3];
    };
    match o.metric {
        Metric::Ndcg => {
            let d = &disc[..m];
            for i in 0..rows {
                let (gi, di) = (g[i], d[i]);
                for ((v, &gj), &dj) in dv[i + 1..].iter_mut().zip(&g[i + 1..]).zip(&d[i + 1..]) {
                    *v = (gi - gj) * (di - dj) * inv;
                }
                let r = row_any::<LOSS>(&c, i, s, y, dv, u, grad, hess, buf);
                add(i, r, grad, hess);
            }
        }
        Metric::Mrr => {
            let mut relp = y.iter().enumerate().filter(|(_, &v)| v > 0.0).map(|(p, _)| p);
            let f = relp.next().unwrap_or(m);
            let f2 = relp.next().unwrap_or(m);
            let rr = |p: usize| 1.0 / (p as f64 + 1.0);
            for i in 0..rows.min(f + 1) {
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
                let r = row_any::<LOSS>(&c, i, s, y, dv, u, grad, hess, buf);
                add(i, r, grad, hess);
            }
        }
    }
    let (sum, loss) = (total[0], total[1]);
    let mut factor = 1.0;
    if o.norm && sum > 0.0 {
        factor = (1.0 + sum).log2() / sum;
        for v in grad.iter_mut() {
            *v *= factor;
        }
        for v in hess.iter_mut() {
            *v *= factor;
        }
    }
    ListOut { loss: factor * loss, valid: true }
}

// The same code compiled for AVX2 and chosen at run time; no fused multiply-add is used and
// the lane count is fixed, so both give bitwise the same results.
fn list_lambdas_simd<const LOSS: bool>(w: &mut Work, disc: &[f64], o: &LambdaOptions) -> ListOut {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<const LOSS: bool>(w: &mut Work, disc: &[f64], o: &LambdaOptions) -> ListOut {
            list_lambdas::<LOSS>(w, disc, o)
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { avx2::<LOSS>(w, disc, o) };
        }
    }
    list_lambdas::<LOSS>(w, disc, o)
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
        return Err(Error::invalid("labels", format!("has {} values, expected {n} like preds", labels.len())));
    }
    if let Some(wt) = weights {
        if wt.len() != n {
            return Err(Error::invalid("weights", format!("has {} values, expected {n} like preds", wt.len())));
        }
    }
    if grad.len() != n || hess.len() != n {
        return Err(Error::invalid("grad", "output buffers must have one value per row"));
    }
    let groups = Groups::from_sizes(group, n)?;
    let disc = discounts(groups.max_size());
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
    let first_error = tasks
        .into_par_iter()
        .with_max_len(1)
        .filter_map(|(gi, gout, hout)| {
            WORK.with(|w| {
                let w = &mut w.borrow_mut();
                w.labels_below = label_gain.len();
                ragged_list(w, gi, groups.range(gi), preds, labels, gains, weights, &disc, opts, gout, hout)
                    .err()
                    .map(|e| (gi, e))
            })
        })
        .min_by_key(|(gi, _)| *gi);
    match first_error {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// One list of the ragged layout: validates its rows, computes, writes `gout`, `hout`.
#[allow(clippy::too_many_arguments)]
fn ragged_list<P: Float, Y: Float>(
    w: &mut Work,
    gi: usize,
    r: std::ops::Range<usize>,
    preds: &[P],
    labels: &[Y],
    gains: Gains,
    weights: Option<&[f64]>,
    disc: &[f64],
    opts: &LambdaOptions,
    gout: &mut [f64],
    hout: &mut [f64],
) -> Result<()> {
    gout.fill(0.0);
    hout.fill(0.0);
    w.clear();
    for row in r.clone() {
        let s = preds[row].to_f64();
        let yv = labels[row].to_f64();
        if !s.is_finite() {
            return Err(Error::NonFinite { arg: "preds", list: gi });
        }
        let Some(gv) = gains.of(yv) else {
            return Err(gains.describe("labels", yv, gi, "group"));
        };
        w.rs.push(s);
        w.ry.push(yv);
        w.rg.push(gv);
    }
    let wt = weights.map(|wt| &wt[r]);
    if let Some(wt) = wt {
        if let Some(&v) = wt.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return Err(Error::invalid(
                "weights",
                format!("value {v} in group {gi} is not a finite non-negative number"),
            ));
        }
    }
    list_lambdas_simd::<false>(w, disc, opts);
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
    Ok(())
}

/// LambdaRank as a loss on a padded batch: per-list losses `[b]`, whether each list counts
/// `[b]`, and with `grad` the gradient of each list's loss with respect to its scores.
/// `truncation = usize::MAX` takes every pair.
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
    let Some(targets) = batch.targets else {
        return Err(Error::invalid("targets", "are required"));
    };
    if losses.len() != batch.b || valid.len() != batch.b {
        return Err(Error::invalid("losses", "output buffers must have one value per list"));
    }
    if let Some(g) = grad.as_deref() {
        if g.len() != batch.b * batch.n {
            return Err(Error::invalid("grad", "output buffer must have the shape of scores"));
        }
    }
    batch.check_finite()?;
    let n = batch.n;
    let bad = (0..batch.b).into_par_iter().find_first(|&bi| {
        (bi * n..(bi + 1) * n).any(|k| batch.mask.map_or(true, |m| m[k]) && gains.of(targets[k].to_f64()).is_none())
    });
    if let Some(bi) = bad {
        let k = (bi * n..(bi + 1) * n)
            .find(|&k| batch.mask.map_or(true, |m| m[k]) && gains.of(targets[k].to_f64()).is_none())
            .unwrap_or(bi * n);
        return Err(gains.describe("targets", targets[k].to_f64(), bi, "list"));
    }
    let disc = discounts(n);
    let labels_below = match gains {
        Gains::Table(t) => t.len(),
        Gains::Exp2 => 0,
    };
    for_each_list(n, losses, valid, grad, Work::default, |w, bi, loss, ok, row| {
        w.clear();
        w.labels_below = labels_below;
        let lo = bi * n;
        w.list.idx.clear();
        for j in 0..n {
            if batch.mask.map_or(true, |m| m[lo + j]) {
                let yv = targets[lo + j].to_f64();
                w.rs.push(batch.scores[lo + j].to_f64());
                w.list.idx.push(j);
                w.ry.push(yv);
                w.rg.push(gains.of(yv).unwrap_or(0.0));
            }
        }
        let out = list_lambdas_simd::<true>(w, &disc, opts);
        *loss = F::from_f64(out.loss);
        *ok = out.valid;
        if let Some(row) = row {
            row.fill(F::ZERO);
            if out.valid {
                for (p, &k) in w.idx.iter().enumerate() {
                    row[w.list.idx[k]] = F::from_f64(w.grad[p]);
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so tests need no crates.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn int(&mut self, below: usize) -> usize {
            (self.next() * below as f64) as usize
        }
    }

    /// The SPEC's per-list pseudocode, written out directly: (grad, hess, S-scaled loss).
    fn reference(s: &[f64], y: &[f64], gain: &[f64], o: &LambdaOptions) -> (Vec<f64>, Vec<f64>, f64) {
        let n = s.len();
        let mut grad = vec![0.0; n];
        let mut hess = vec![0.0; n];
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap()); // stable
        let disc = |p: usize| 1.0 / (2.0 + p as f64).log2();
        let g = |k: usize| gain[y[k] as usize];
        let mut ideal: Vec<usize> = (0..n).collect();
        ideal.sort_by(|&a, &b| y[b].partial_cmp(&y[a]).unwrap());
        let max_dcg: f64 = ideal.iter().take(o.truncation).enumerate().map(|(p, &k)| g(k) * disc(p)).sum();
        let inv = if max_dcg > 0.0 { 1.0 / max_dcg } else { 0.0 };
        let rr = |ord: &[usize]| ord.iter().position(|&k| y[k] > 0.0).map_or(0.0, |p| 1.0 / (p as f64 + 1.0));
        let (best, worst) = if n > 0 { (s[order[0]], s[order[n - 1]]) } else { (0.0, 0.0) };
        let mut sum = 0.0;
        let mut loss = 0.0;
        for i in 0..n.saturating_sub(1).min(o.truncation) {
            for j in i + 1..n {
                let (a, b) = (order[i], order[j]);
                if y[a] == y[b] {
                    continue;
                }
                let ((h, ph), (l, pl)) = if y[a] > y[b] { ((a, i), (b, j)) } else { ((b, j), (a, i)) };
                let ds = s[h] - s[l];
                let mut delta = match o.metric {
                    Metric::Ndcg => (g(h) - g(l)) * (disc(ph) - disc(pl)).abs() * inv,
                    Metric::Mrr => {
                        let mut swapped = order.clone();
                        swapped.swap(i, j);
                        (rr(&swapped) - rr(&order)).abs()
                    }
                };
                if o.norm && best != worst {
                    delta /= 0.01 + ds.abs();
                }
                let rho = 1.0 / (1.0 + (o.sigma * ds).exp());
                let lam = -o.sigma * delta * rho;
                let hes = o.sigma * o.sigma * delta * rho * (1.0 - rho);
                grad[h] += lam;
                grad[l] -= lam;
                hess[h] += hes;
                hess[l] += hes;
                sum -= 2.0 * lam;
                loss += delta * (1.0 + (-o.sigma * ds).exp()).ln();
            }
        }
        if o.norm && sum > 0.0 {
            let f = (1.0 + sum).log2() / sum;
            grad.iter_mut().for_each(|v| *v *= f);
            hess.iter_mut().for_each(|v| *v *= f);
            loss *= f;
        }
        (grad, hess, loss)
    }

    fn close(a: f64, b: f64, scale: f64) -> bool {
        (a - b).abs() <= 1e-11 * (b.abs() + scale)
    }

    fn random_case(rng: &mut Rng, sizes: &[usize], levels: usize) -> (Vec<f64>, Vec<f64>, Vec<i64>) {
        let n: usize = sizes.iter().sum();
        // Scores on a coarse grid so that ties are common; one list all tied.
        let s: Vec<f64> = (0..n).map(|_| (rng.next() * 8.0).floor() / 4.0 - 1.0).collect();
        let y: Vec<f64> = (0..n).map(|_| rng.int(levels) as f64).collect();
        (s, y, sizes.iter().map(|&m| m as i64).collect())
    }

    #[test]
    fn gradients_match_reference() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let default_gain = default_label_gain();
        let custom = [0.0, 0.5, 4.0, 2.0, 10.0];
        let sizes = [1usize, 2, 5, 17, 40, 3, 64, 9];
        for metric in [Metric::Ndcg, Metric::Mrr] {
            for &norm in &[true, false] {
                for &k in &[1usize, 3, 10, 30, usize::MAX] {
                    for &sigma in &[1.0, 0.3, 2.5] {
                        for gain in [&default_gain[..], &custom[..]] {
                            let (mut s, y, group) = random_case(&mut rng, &sizes, 5);
                            s[8..25].iter_mut().for_each(|v| *v = 0.5); // list 4 all tied
                            let w: Vec<f64> = (0..s.len()).map(|_| rng.next() * 2.0).collect();
                            let o = LambdaOptions { sigma, truncation: k, norm, metric };
                            for weights in [None, Some(&w[..])] {
                                let mut grad = vec![0.0; s.len()];
                                let mut hess = vec![0.0; s.len()];
                                lambdarank_gradients(&s, &y, &group, gain, weights, &o, &mut grad, &mut hess).unwrap();
                                let mut lo = 0;
                                for &m in &sizes {
                                    let (rg, rh, _) = reference(&s[lo..lo + m], &y[lo..lo + m], gain, &o);
                                    let scale = rg.iter().chain(&rh).fold(1e-300f64, |a, v| a.max(v.abs()));
                                    for k2 in 0..m {
                                        let wt = weights.map_or(1.0, |w| w[lo + k2]);
                                        assert!(close(grad[lo + k2], rg[k2] * wt, scale), "{o:?} grad {} vs {}", grad[lo + k2], rg[k2] * wt);
                                        assert!(close(hess[lo + k2], rh[k2] * wt, scale), "{o:?} hess {} vs {}", hess[lo + k2], rh[k2] * wt);
                                    }
                                    lo += m;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn f32_preds_and_labels() {
        let mut rng = Rng(5);
        let (s, y, group) = random_case(&mut rng, &[30, 12], 4);
        let (s32, y32): (Vec<f32>, Vec<f32>) = (s.iter().map(|&v| v as f32).collect(), y.iter().map(|&v| v as f32).collect());
        let gain = default_label_gain();
        let o = LambdaOptions::default();
        let (mut g1, mut h1, mut g2, mut h2) = (vec![0.0; 42], vec![0.0; 42], vec![0.0; 42], vec![0.0; 42]);
        lambdarank_gradients(&s, &y, &group, &gain, None, &o, &mut g1, &mut h1).unwrap();
        lambdarank_gradients(&s32, &y32, &group, &gain, None, &o, &mut g2, &mut h2).unwrap();
        assert_eq!((g1, h1), (g2, h2)); // the grid values are exact in f32
    }

    #[test]
    fn one_long_list_is_fast_and_right_on_its_head() {
        let mut rng = Rng(77);
        let n = 200_000;
        let s: Vec<f64> = (0..n).map(|_| rng.next()).collect();
        let y: Vec<f64> = (0..n).map(|_| rng.int(5) as f64).collect();
        let gain = default_label_gain();
        let o = LambdaOptions { truncation: 30, ..Default::default() };
        let (mut g, mut h) = (vec![0.0; n], vec![0.0; n]);
        let t = std::time::Instant::now();
        lambdarank_gradients(&s, &y, &[n as i64], &gain, None, &o, &mut g, &mut h).unwrap();
        assert!(t.elapsed().as_secs_f64() < 5.0);
        assert!(g.iter().chain(&h).all(|v| v.is_finite()));
        assert!(h.iter().all(|&v| v >= 0.0));
        assert!(g.iter().sum::<f64>().abs() < 1e-9 * g.iter().map(|v| v.abs()).sum::<f64>());
    }

    #[test]
    fn same_bits_with_one_and_two_threads() {
        let mut rng = Rng(99);
        let sizes: Vec<usize> = (0..60).map(|i| if i == 7 { 3000 } else { 1 + rng.int(300) }).collect();
        let (s, y, group) = random_case(&mut rng, &sizes, 5);
        let gain = default_label_gain();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (mut g, mut h) = (vec![0.0; s.len()], vec![0.0; s.len()]);
                let o = LambdaOptions { truncation: 200, ..Default::default() };
                lambdarank_gradients(&s, &y, &group, &gain, None, &o, &mut g, &mut h).unwrap();
                (g, h)
            })
        };
        let (one, two) = (run(1), run(2));
        assert!(one.0.iter().zip(&two.0).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(one.1.iter().zip(&two.1).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn bad_input_names_argument_and_group() {
        let gain = default_label_gain();
        let o = LambdaOptions::default();
        let s = [1.0, 2.0, 3.0, 4.0];
        let y = [0.0, 1.0, 2.0, 1.0];
        let (mut g, mut h) = (vec![0.0; 4], vec![0.0; 4]);
        let mut run = |s: &[f64], y: &[f64], group: &[i64], gain: &[f64], w: Option<&[f64]>, o: &LambdaOptions| {
            lambdarank_gradients(s, y, group, gain, w, o, &mut g, &mut h).unwrap_err()
        };
        assert_eq!(run(&s, &y, &[2, 1], &gain, None, &o).arg(), "group");
        assert_eq!(run(&s, &y, &[2, 0, 2], &gain, None, &o).arg(), "group");
        assert_eq!(run(&s, &y[..3], &[2, 2], &gain, None, &o).arg(), "labels");
        let e = run(&s, &[0.0, 1.0, 1.5, 0.0], &[2, 2], &gain, None, &o);
        assert!(e.arg() == "labels" && e.to_string().contains("group 1"), "{e}");
        assert_eq!(run(&s, &[0.0, -1.0, 1.0, 0.0], &[2, 2], &gain, None, &o).arg(), "labels");
        assert_eq!(run(&s, &[0.0, 3.0, 1.0, 0.0], &[2, 2], &[0.0, 1.0, 3.0], None, &o).arg(), "labels");
        assert_eq!(run(&[1.0, f64::NAN, 0.0, 1.0], &y, &[1, 1, 2], &gain, None, &o), Error::NonFinite { arg: "preds", list: 1 });
        assert_eq!(run(&s, &y, &[2, 2], &gain, Some(&[1.0, 1.0, -1.0, 1.0]), &o).arg(), "weights");
        assert_eq!(run(&s, &y, &[2, 2], &[], None, &o).arg(), "label_gain");
        assert_eq!(run(&s, &y, &[2, 2], &[0.0, f64::NAN], None, &o).arg(), "label_gain");
        for sigma in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(run(&s, &y, &[4], &gain, None, &LambdaOptions { sigma, ..o }).arg(), "sigma");
        }
        assert_eq!(run(&s, &y, &[4], &gain, None, &LambdaOptions { truncation: 0, ..o }).arg(), "truncation_level");
    }

    #[test]
    fn padded_loss_gradient_is_the_lambdas() {
        let mut rng = Rng(4242);
        let (b, n) = (6, 23);
        let gain = default_label_gain();
        for metric in [Metric::Ndcg, Metric::Mrr] {
            for &norm in &[false, true] {
                for &k in &[2usize, 10, usize::MAX] {
                    let s: Vec<f64> = (0..b * n).map(|_| (rng.next() * 12.0).floor() / 3.0).collect();
                    let y: Vec<f64> = (0..b * n).map(|k| if k / n == 2 { 1.0 } else { rng.int(4) as f64 }).collect();
                    // list 1 has a single real item, list 2 a single label.
                    let mask: Vec<bool> = (0..b * n).map(|k| if k / n == 1 { k % n == 3 } else { rng.next() < 0.8 }).collect();
                    let batch = Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap();
                    let o = LambdaOptions { sigma: 1.3, truncation: k, norm, metric };
                    let (mut l, mut v, mut g) = (vec![0.0; b], vec![false; b], vec![0.0; b * n]);
                    lambdarank_loss(&batch, Gains::Table(&gain), &o, &mut l, &mut v, Some(&mut g)).unwrap();
                    for bi in 0..b {
                        let idx: Vec<usize> = (0..n).filter(|&j| mask[bi * n + j]).collect();
                        let sr: Vec<f64> = idx.iter().map(|&j| s[bi * n + j]).collect();
                        let yr: Vec<f64> = idx.iter().map(|&j| y[bi * n + j]).collect();
                        let (rg, _, rl) = reference(&sr, &yr, &gain, &o);
                        assert_eq!(v[bi], bi != 1 && bi != 2, "valid {bi}");
                        assert!(close(l[bi], rl, 1e-300), "loss {} vs {rl}", l[bi]);
                        let scale = rg.iter().fold(1e-300f64, |a, x| a.max(x.abs()));
                        for (p, &j) in idx.iter().enumerate() {
                            assert!(close(g[bi * n + j], rg[p], scale));
                        }
                        for j in (0..n).filter(|&j| !mask[bi * n + j]) {
                            assert_eq!(g[bi * n + j], 0.0);
                        }
                        // Also bitwise the ragged kernel's gradient.
                        let (mut gg, mut hh) = (vec![0.0; sr.len()], vec![0.0; sr.len()]);
                        if !sr.is_empty() {
                            lambdarank_gradients(&sr, &yr, &[sr.len() as i64], &gain, None, &o, &mut gg, &mut hh).unwrap();
                            for (p, &j) in idx.iter().enumerate() {
                                assert_eq!(g[bi * n + j].to_bits(), gg[p].to_bits());
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn padded_exp2_gains_take_real_targets() {
        let s = [0.3f32, -1.0, 2.0, 0.0];
        let y = [0.5f32, 2.25, -1.0, 0.0];
        let batch = Padded::new(&s, Some(&y), None, 1, 4).unwrap();
        let (mut l, mut v, mut g) = (vec![0.0f32; 1], vec![false; 1], vec![0.0f32; 4]);
        lambdarank_loss(&batch, Gains::Exp2, &LambdaOptions::default(), &mut l, &mut v, Some(&mut g)).unwrap();
        assert!(v[0] && l[0] > 0.0 && g.iter().all(|x| x.is_finite()));
        let big = [0.0f32, 1001.0, 0.0, 0.0];
        let batch = Padded::new(&s, Some(&big), None, 1, 4).unwrap();
        let e = lambdarank_loss(&batch, Gains::Exp2, &LambdaOptions::default(), &mut l, &mut v, None).unwrap_err();
        assert_eq!(e.arg(), "targets");
    }
}
