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
use crate::gains::MAX_GAIN_EXPONENT;
use crate::ragged::Groups;

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
                // y as usize truncates (no libm call); equal back means an integer
                if y >= 0.0 && y < t.len() as f64 && (y as usize) as f64 == y {
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
    keys: Vec<u64>,
    idx: Vec<usize>,
    s: Vec<f64>,
    y: Vec<f64>,
    g: Vec<f64>,
    u: Vec<f64>,
    grad: Vec<f64>,
    hess: Vec<f64>,
    dv: Vec<f64>,
    z: Vec<f64>,
    top: Vec<(f64, f64)>,
    counts: Vec<[u32; 4]>,
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
    /// -0.0 == 0.0 as in C++). The scores' bits, made order-preserving, are sorted as `u64`
    /// with the position in the low bits (fast, branch-free); runs whose truncated keys tie
    /// are then put in order by their full keys.
    fn sort(&mut self) {
        let m = self.rs.len();
        let bits = usize::BITS - (m.max(2) - 1).leading_zeros();
        let mask: u64 = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let desc = |s: f64| -> u64 {
            let b = (s + 0.0).to_bits(); // -0.0 + 0.0 = +0.0
            !(if b >> 63 == 1 { !b } else { b | (1 << 63) })
        };
        self.keys.clear();
        self.keys.extend(self.rs.iter().enumerate().map(|(p, &s)| (desc(s) & !mask) | p as u64));
        self.keys.sort_unstable();
        let (keys, rs) = (&mut self.keys, &self.rs);
        let mut a = 0;
        while a < m {
            let hi = keys[a] & !mask;
            let mut b = a + 1;
            while b < m && keys[b] & !mask == hi {
                b += 1;
            }
            if b - a > 1 {
                let full = desc(rs[(keys[a] & mask) as usize]);
                if keys[a + 1..b].iter().any(|&k| desc(rs[(k & mask) as usize]) != full) {
                    keys[a..b].sort_unstable_by_key(|&k| (desc(rs[(k & mask) as usize]), k & mask));
                }
            }
            a = b;
        }
        self.idx.clear();
        self.idx.extend(self.keys.iter().map(|&k| (k & mask) as usize));
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

#[inline(always)]
fn select(c: bool, a: f64, b: f64) -> f64 {
    if c {
        a
    } else {
        b
    }
}

/// The per-row constants of the pair loop.
#[derive(Clone, Copy)]
struct Row {
    si: f64,
    yi: f64,
    gi: f64,
    di: f64,
    /// `e_j = ev[j] * wi`.
    wi: f64,
    /// `D = (gi - g_j) (di - d_j) scale`.
    scale: f64,
    sigma: f64,
    c0: f64,
    c1: f64,
}

/// One pair `(i, j)`, `j > i`: with `diff = s_i - s_j >= 0`, `pos` = item i has the higher
/// label, `D = (gi - g_j) (di - d_j) scale` (sigma times delta, signed by pos, before norm):
///
/// ```text
/// e = exp(-sigma diff)  (given)       q = 1 / ((1 + e)^2 (c0 + c1 diff))
/// rho / den = select(pos, e, 1) (1 + e) q =: r q
/// t   = D q r              grad[j] += t, grad[i] -= t
/// hes = sigma |D| q e      hess[j] += hes, hess[i] += hes   (= sigma^2 delta rho (1 - rho) / den)
/// st  = |D| q r            S += 2 st                        (= sigma delta rho / den)
/// ```
///
/// `|D|` stands for `select(pos, D, -D)`, i.e. sigma times delta (custom gains may make it
/// negative). The AVX2 kernel does the very same operations in the same order.
#[inline(always)]
fn pair_terms(k: &Row, sj: f64, yj: f64, gj: f64, dj: f64, evj: f64) -> (f64, f64, f64) {
    let diff = k.si - sj;
    let pos = k.yi > yj;
    let dd = (k.gi - gj) * (k.di - dj) * k.scale;
    let e = evj * k.wi;
    let ope = 1.0 + e;
    let den = k.c0 + k.c1 * diff;
    let q = 1.0 / (ope * ope * den);
    let dq = dd * q;
    let r = select(pos, e, 1.0) * ope;
    let t = dq * r;
    let sdq = select(pos, dq, -dq);
    (t, k.sigma * sdq * e, sdq * r)
}

/// The loss term of a pair: `delta / den * log(1 + exp(-sigma ds))`, ds = diff when i is h,
/// else -diff.
#[inline(always)]
fn pair_loss(k: &Row, sj: f64, yj: f64, gj: f64, dj: f64, evj: f64) -> f64 {
    let diff = k.si - sj;
    let pos = k.yi > yj;
    let dd = (k.gi - gj) * (k.di - dj) * k.scale;
    let e = evj * k.wi;
    let delta = select(pos, dd, -dd) / k.sigma;
    delta / (k.c0 + k.c1 * diff) * (select(pos, 0.0, k.sigma * diff) + e.ln_1p())
}

/// Lanes of the row sums; summed as `rest + lane 0 + ... + lane 3` in both kernels.
const W: usize = 4;

/// Row `i` against every `j > i` (all slices start at `i + 1` and have one length): updates
/// grad[j], hess[j]; returns the sums over j of (t, hes, st). Portable version.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn row_portable(
    k: &Row,
    s: &[f64],
    y: &[f64],
    g: &[f64],
    d: &[f64],
    ev: &[f64],
    grad: &mut [f64],
    hess: &mut [f64],
) -> [f64; 3] {
    let len = s.len();
    assert!(
        y.len() == len
            && g.len() == len
            && d.len() == len
            && ev.len() == len
            && grad.len() == len
            && hess.len() == len
    );
    let full = len / W * W;
    let mut acc = [[0.0f64; W]; 3];
    for j0 in (0..full).step_by(W) {
        for l in 0..W {
            let j = j0 + l;
            let (t, hes, st) = pair_terms(k, s[j], y[j], g[j], d[j], ev[j]);
            grad[j] += t;
            hess[j] += hes;
            acc[0][l] += t;
            acc[1][l] += hes;
            acc[2][l] += st;
        }
    }
    finish(k, s, y, g, d, ev, grad, hess, full, acc)
}

/// The tail after the last full lane group, and the lane sums.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn finish(
    k: &Row,
    s: &[f64],
    y: &[f64],
    g: &[f64],
    d: &[f64],
    ev: &[f64],
    grad: &mut [f64],
    hess: &mut [f64],
    full: usize,
    acc: [[f64; W]; 3],
) -> [f64; 3] {
    let mut rest = [0.0f64; 3];
    for j in full..s.len() {
        let (t, hes, st) = pair_terms(k, s[j], y[j], g[j], d[j], ev[j]);
        grad[j] += t;
        hess[j] += hes;
        rest[0] += t;
        rest[1] += hes;
        rest[2] += st;
    }
    let sum = |c: usize| acc[c].iter().fold(rest[c], |a, &b| a + b);
    [sum(0), sum(1), sum(2)]
}

/// `row_portable` in AVX2 intrinsics: the same operations in the same order, four lanes at a
/// time (no FMA), so both give bitwise the same results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn row_avx2(
    k: &Row,
    s: &[f64],
    y: &[f64],
    g: &[f64],
    d: &[f64],
    ev: &[f64],
    grad: &mut [f64],
    hess: &mut [f64],
) -> [f64; 3] {
    use std::arch::x86_64::*;
    let len = s.len();
    assert!(
        y.len() == len
            && g.len() == len
            && d.len() == len
            && ev.len() == len
            && grad.len() == len
            && hess.len() == len
    );
    let full = len / W * W;
    let (si, yi, gi, di) =
        (_mm256_set1_pd(k.si), _mm256_set1_pd(k.yi), _mm256_set1_pd(k.gi), _mm256_set1_pd(k.di));
    let (wi, scale, sigma) = (_mm256_set1_pd(k.wi), _mm256_set1_pd(k.scale), _mm256_set1_pd(k.sigma));
    let (c0, c1) = (_mm256_set1_pd(k.c0), _mm256_set1_pd(k.c1));
    let one = _mm256_set1_pd(1.0);
    let sign = _mm256_set1_pd(-0.0);
    let (mut at, mut ah, mut as_) = (_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd());
    let mut j = 0;
    // SAFETY: j + 4 <= full <= len for every slice (asserted above).
    while j < full {
        let sv = _mm256_loadu_pd(s.as_ptr().add(j));
        let yv = _mm256_loadu_pd(y.as_ptr().add(j));
        let gv = _mm256_loadu_pd(g.as_ptr().add(j));
        let dv = _mm256_loadu_pd(d.as_ptr().add(j));
        let evv = _mm256_loadu_pd(ev.as_ptr().add(j));
        let diff = _mm256_sub_pd(si, sv);
        let pos = _mm256_cmp_pd::<_CMP_GT_OQ>(yi, yv);
        let dd = _mm256_mul_pd(_mm256_mul_pd(_mm256_sub_pd(gi, gv), _mm256_sub_pd(di, dv)), scale);
        let e = _mm256_mul_pd(evv, wi);
        let ope = _mm256_add_pd(one, e);
        let den = _mm256_add_pd(c0, _mm256_mul_pd(c1, diff));
        let q = _mm256_div_pd(one, _mm256_mul_pd(_mm256_mul_pd(ope, ope), den));
        let dq = _mm256_mul_pd(dd, q);
        let r = _mm256_mul_pd(_mm256_blendv_pd(one, e, pos), ope);
        let t = _mm256_mul_pd(dq, r);
        let sdq = _mm256_blendv_pd(_mm256_xor_pd(dq, sign), dq, pos);
        let hes = _mm256_mul_pd(_mm256_mul_pd(sigma, sdq), e);
        let st = _mm256_mul_pd(sdq, r);
        let gp = grad.as_mut_ptr().add(j);
        _mm256_storeu_pd(gp, _mm256_add_pd(_mm256_loadu_pd(gp), t));
        let hp = hess.as_mut_ptr().add(j);
        _mm256_storeu_pd(hp, _mm256_add_pd(_mm256_loadu_pd(hp), hes));
        at = _mm256_add_pd(at, t);
        ah = _mm256_add_pd(ah, hes);
        as_ = _mm256_add_pd(as_, st);
        j += W;
    }
    let mut acc = [[0.0f64; W]; 3];
    _mm256_storeu_pd(acc[0].as_mut_ptr(), at);
    _mm256_storeu_pd(acc[1].as_mut_ptr(), ah);
    _mm256_storeu_pd(acc[2].as_mut_ptr(), as_);
    finish(k, s, y, g, d, ev, grad, hess, full, acc)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn row_kernel(
    avx2: bool,
    k: &Row,
    s: &[f64],
    y: &[f64],
    g: &[f64],
    d: &[f64],
    ev: &[f64],
    grad: &mut [f64],
    hess: &mut [f64],
) -> [f64; 3] {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only when the CPU has AVX2 (see `has_avx2`).
        return unsafe { row_avx2(k, s, y, g, d, ev, grad, hess) };
    }
    let _ = avx2;
    row_portable(k, s, y, g, d, ev, grad, hess)
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
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

/// Largest `sigma * (best - worst)` for which the factorised exponentials stay normal numbers.
const MAX_SPAN: f64 = 600.0;

/// One list: fills `w.grad`, `w.hess` (score order, norm scaling applied, no weights).
/// `table`: the gain table when the labels are known to be integers below its length.
///
/// Precision: the factorised exponentials carry a relative error of about
/// `1e-16 * sigma * (best - worst)` (at most ~1e-13), far below anything a booster sees.
#[inline(always)]
fn list_lambdas<const LOSS: bool>(
    w: &mut Work,
    disc: &[f64],
    o: &LambdaOptions,
    avx2: bool,
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
        Metric::Ndcg if table.is_some_and(|t| t.len() <= 4 * m + 64) => {
            inverse_max_dcg_counting(&w.ry, table.unwrap_or(&[]), &mut w.counts, disc, o.truncation)
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
    let Work { rs, ry, rg, idx, s, y, g, u, grad, hess, dv, z, .. } = w;
    s.clear();
    y.clear();
    g.clear();
    for &k in idx.iter() {
        s.push(rs[k]);
        y.push(ry[k]);
        g.push(rg[k]);
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
    let rows = (m - 1).min(o.truncation);
    let mut total = [0.0f64; 2]; // S / 2, loss
                                 // For MRR the signed deltas of a row go to `dv` and enter as g (with gi = 0, d = 0, di = 1,
                                 // scale = -sigma); for NDCG scale = sigma * inv.
    let (ndcg, scale) = match o.metric {
        Metric::Ndcg => (true, o.sigma * inv),
        Metric::Mrr => (false, -o.sigma),
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
        let k = Row { si: s[i], yi: y[i], gi, di, wi, scale, sigma: o.sigma, c0, c1 };
        let (st, yt, ev) = (&s[i + 1..m], &y[i + 1..m], &u[i + 1..m]);
        let r = row_kernel(avx2, &k, st, yt, gs, ds, ev, &mut grad[i + 1..m], &mut hess[i + 1..m]);
        grad[i] -= r[0];
        hess[i] += r[1];
        total[0] += r[2];
        if LOSS {
            for j in 0..st.len() {
                total[1] += pair_loss(&k, st[j], yt[j], gs[j], ds[j], ev[j]);
            }
        }
    }
    // Each pair's S term above is half its share of S.
    let total = [2.0 * total[0], total[1]];
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

// The list code compiled for AVX2 (with the AVX2 row kernel) and chosen at run time; no fused
// multiply-add is used and the lanes are fixed, so both give bitwise the same results.
fn list_lambdas_simd<const LOSS: bool>(
    w: &mut Work,
    disc: &[f64],
    o: &LambdaOptions,
    table: Option<&[f64]>,
) -> ListOut {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<const LOSS: bool>(
            w: &mut Work,
            disc: &[f64],
            o: &LambdaOptions,
            table: Option<&[f64]>,
        ) -> ListOut {
            list_lambdas::<LOSS>(w, disc, o, true, table)
        }
        if has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { avx2::<LOSS>(w, disc, o, table) };
        }
    }
    list_lambdas::<LOSS>(w, disc, o, false, table)
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
                ragged_list_simd(
                    w,
                    gi,
                    groups.range(gi),
                    preds,
                    labels,
                    label_gain,
                    weights,
                    &disc,
                    opts,
                    gout,
                    hout,
                )
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
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ragged_list<P: Float, Y: Float>(
    w: &mut Work,
    gi: usize,
    r: std::ops::Range<usize>,
    preds: &[P],
    labels: &[Y],
    table: &[f64],
    weights: Option<&[f64]>,
    disc: &[f64],
    opts: &LambdaOptions,
    gout: &mut [f64],
    hout: &mut [f64],
    avx2: bool,
) -> Result<()> {
    w.clear();
    // Copy, then check with folds that do not stop early (so they vectorise).
    w.rs.extend(preds[r.clone()].iter().map(|v| v.to_f64()));
    w.ry.extend(labels[r.clone()].iter().map(|v| v.to_f64()));
    if !w.rs.iter().fold(true, |ok, v| ok & v.is_finite()) {
        gout.fill(0.0);
        hout.fill(0.0);
        return Err(Error::NonFinite { arg: "preds", list: gi });
    }
    let len = table.len() as f64;
    if !w.ry.iter().fold(true, |ok, &v| ok & (v >= 0.0) & (v < len) & (v.floor() == v)) {
        gout.fill(0.0);
        hout.fill(0.0);
        let bad =
            w.ry.iter().find(|&&v| !(v >= 0.0 && v < len && v.floor() == v)).copied().unwrap_or(f64::NAN);
        return Err(Gains::Table(table).describe("labels", bad, gi, "group"));
    }
    w.rg.extend(w.ry.iter().map(|&v| table[v as usize]));
    let wt = weights.map(|wt| &wt[r]);
    if let Some(wt) = wt {
        if let Some(&v) = wt.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            gout.fill(0.0);
            hout.fill(0.0);
            return Err(Error::invalid(
                "weights",
                format!("value {v} in group {gi} is not a finite non-negative number"),
            ));
        }
    }
    list_lambdas::<false>(w, disc, opts, avx2, Some(table));
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

/// `ragged_list` compiled for AVX2 when the CPU has it (bitwise the same results).
#[allow(clippy::too_many_arguments)]
fn ragged_list_simd<P: Float, Y: Float>(
    w: &mut Work,
    gi: usize,
    r: std::ops::Range<usize>,
    preds: &[P],
    labels: &[Y],
    table: &[f64],
    weights: Option<&[f64]>,
    disc: &[f64],
    opts: &LambdaOptions,
    gout: &mut [f64],
    hout: &mut [f64],
) -> Result<()> {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx2<P: Float, Y: Float>(
            w: &mut Work,
            gi: usize,
            r: std::ops::Range<usize>,
            preds: &[P],
            labels: &[Y],
            table: &[f64],
            weights: Option<&[f64]>,
            disc: &[f64],
            opts: &LambdaOptions,
            gout: &mut [f64],
            hout: &mut [f64],
        ) -> Result<()> {
            ragged_list(w, gi, r, preds, labels, table, weights, disc, opts, gout, hout, true)
        }
        if has_avx2() {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { avx2(w, gi, r, preds, labels, table, weights, disc, opts, gout, hout) };
        }
    }
    ragged_list(w, gi, r, preds, labels, table, weights, disc, opts, gout, hout, false)
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
    let targets =
        batch.list_outputs("losses", &[losses.len(), valid.len()], grad.as_deref().map(<[F]>::len))?;
    batch.check_finite()?;
    let n = batch.n;
    let bad = (0..batch.b).into_par_iter().find_first(|&bi| {
        (bi * n..(bi + 1) * n)
            .any(|k| batch.mask.is_none_or(|m| m[k]) && gains.of(targets[k].to_f64()).is_none())
    });
    if let Some(bi) = bad {
        let k = (bi * n..(bi + 1) * n)
            .find(|&k| batch.mask.is_none_or(|m| m[k]) && gains.of(targets[k].to_f64()).is_none())
            .unwrap_or(bi * n);
        return Err(gains.describe("targets", targets[k].to_f64(), bi, "list"));
    }
    let disc = discounts(n);
    let table = match gains {
        Gains::Table(t) => Some(t),
        Gains::Exp2 => None,
    };
    for_each_list(n, losses, valid, grad, Work::default, |w, bi, loss, ok, row| {
        w.clear();
        let lo = bi * n;
        w.list.idx.clear();
        for j in 0..n {
            if batch.mask.is_none_or(|m| m[lo + j]) {
                let yv = targets[lo + j].to_f64();
                w.rs.push(batch.scores[lo + j].to_f64());
                w.list.idx.push(j);
                w.ry.push(yv);
                w.rg.push(gains.of(yv).unwrap_or(0.0));
            }
        }
        let out = list_lambdas_simd::<true>(w, &disc, opts, table);
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

    use crate::testing::Rng;

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
                let rho_c = 1.0 / (1.0 + (-o.sigma * ds).exp()); // 1 - rho without cancellation
                let lam = -o.sigma * delta * rho;
                let hes = o.sigma * o.sigma * delta * rho * rho_c;
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
                                lambdarank_gradients(&s, &y, &group, gain, weights, &o, &mut grad, &mut hess)
                                    .unwrap();
                                let mut lo = 0;
                                for &m in &sizes {
                                    let (rg, rh, _) = reference(&s[lo..lo + m], &y[lo..lo + m], gain, &o);
                                    let scale = rg.iter().chain(&rh).fold(1e-300f64, |a, v| a.max(v.abs()));
                                    for k2 in 0..m {
                                        let wt = weights.map_or(1.0, |w| w[lo + k2]);
                                        assert!(
                                            close(grad[lo + k2], rg[k2] * wt, scale),
                                            "{o:?} grad {} vs {}",
                                            grad[lo + k2],
                                            rg[k2] * wt
                                        );
                                        assert!(
                                            close(hess[lo + k2], rh[k2] * wt, scale),
                                            "{o:?} hess {} vs {}",
                                            hess[lo + k2],
                                            rh[k2] * wt
                                        );
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
    fn wide_score_spans_match_reference() {
        // sigma * (best - worst) > MAX_SPAN: exponentials pair by pair instead of factorised.
        let mut rng = Rng(31337);
        let gain = default_label_gain();
        for metric in [Metric::Ndcg, Metric::Mrr] {
            for &norm in &[true, false] {
                let sizes = [13usize, 40, 7];
                let (mut s, y, group) = random_case(&mut rng, &sizes, 4);
                s.iter_mut().for_each(|v| *v *= 400.0);
                let o = LambdaOptions { sigma: 1.5, truncation: 10, norm, metric };
                let (mut grad, mut hess) = (vec![0.0; s.len()], vec![0.0; s.len()]);
                lambdarank_gradients(&s, &y, &group, &gain, None, &o, &mut grad, &mut hess).unwrap();
                let mut lo = 0;
                for &m in &sizes {
                    let (rg, rh, _) = reference(&s[lo..lo + m], &y[lo..lo + m], &gain, &o);
                    let scale = rg.iter().chain(&rh).fold(1e-300f64, |a, v| a.max(v.abs()));
                    for k in 0..m {
                        assert!(
                            close(grad[lo + k], rg[k], scale) && close(hess[lo + k], rh[k], scale),
                            "{o:?} {k} {} {} {} {}",
                            grad[lo + k],
                            rg[k],
                            hess[lo + k],
                            rh[k]
                        );
                    }
                    lo += m;
                }
            }
        }
    }

    #[test]
    fn portable_and_avx2_kernels_give_the_same_bits() {
        if !has_avx2() {
            return;
        }
        let mut rng = Rng(2024);
        let gain = default_label_gain();
        for metric in [Metric::Ndcg, Metric::Mrr] {
            for &(norm, spread) in &[(true, 1.0), (false, 1.0), (true, 500.0)] {
                for m in [2usize, 3, 5, 8, 33, 101] {
                    let s: Vec<f64> = (0..m).map(|_| (rng.next() * 8.0).floor() * spread / 4.0).collect();
                    let y: Vec<f64> = (0..m).map(|_| rng.int(4) as f64).collect();
                    let o = LambdaOptions { sigma: 1.1, truncation: 20, norm, metric };
                    let disc = discounts(m);
                    let run = |avx2: bool| {
                        let mut w = Work::default();
                        w.rs.extend(&s);
                        w.ry.extend(&y);
                        w.rg.extend(y.iter().map(|&v| gain[v as usize]));
                        list_lambdas::<true>(&mut w, &disc, &o, avx2, Some(&gain));
                        (w.grad, w.hess)
                    };
                    let (a, b) = (run(false), run(true));
                    assert!(a.0.iter().zip(&b.0).all(|(x, y)| x.to_bits() == y.to_bits()), "{o:?} m={m}");
                    assert!(a.1.iter().zip(&b.1).all(|(x, y)| x.to_bits() == y.to_bits()), "{o:?} m={m}");
                }
            }
        }
    }

    #[test]
    fn packed_key_sort_is_a_stable_descending_sort() {
        let mut rng = Rng(8);
        for m in [1usize, 2, 3, 4, 7, 64, 300, 5000] {
            for case in 0..4 {
                let base = [1.0f64, -3.5, 0.0, 1e-300][case];
                // Scores a few ulps apart (they collide once the low bits hold the position),
                // exact ties, and signed zeros.
                let s: Vec<f64> = (0..m)
                    .map(|_| match rng.int(4) {
                        0 => f64::from_bits(base.to_bits() + rng.int(6) as u64),
                        1 => -0.0,
                        2 => 0.0,
                        _ => base,
                    })
                    .collect();
                let mut w = Work::default();
                w.rs.extend(&s);
                w.sort();
                let mut want: Vec<usize> = (0..m).collect();
                want.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap());
                assert_eq!(w.idx, want, "m={m} case={case}");
            }
        }
    }

    #[test]
    fn f32_preds_and_labels() {
        let mut rng = Rng(5);
        let (s, y, group) = random_case(&mut rng, &[30, 12], 4);
        let (s32, y32): (Vec<f32>, Vec<f32>) =
            (s.iter().map(|&v| v as f32).collect(), y.iter().map(|&v| v as f32).collect());
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
        let mut run =
            |s: &[f64], y: &[f64], group: &[i64], gain: &[f64], w: Option<&[f64]>, o: &LambdaOptions| {
                lambdarank_gradients(s, y, group, gain, w, o, &mut g, &mut h).unwrap_err()
            };
        assert_eq!(run(&s, &y, &[2, 1], &gain, None, &o).arg(), "group");
        assert_eq!(run(&s, &y, &[2, 0, 2], &gain, None, &o).arg(), "group");
        assert_eq!(run(&s, &y[..3], &[2, 2], &gain, None, &o).arg(), "labels");
        let e = run(&s, &[0.0, 1.0, 1.5, 0.0], &[2, 2], &gain, None, &o);
        assert!(e.arg() == "labels" && e.to_string().contains("group 1"), "{e}");
        assert_eq!(run(&s, &[0.0, -1.0, 1.0, 0.0], &[2, 2], &gain, None, &o).arg(), "labels");
        assert_eq!(run(&s, &[0.0, 3.0, 1.0, 0.0], &[2, 2], &[0.0, 1.0, 3.0], None, &o).arg(), "labels");
        assert_eq!(
            run(&[1.0, f64::NAN, 0.0, 1.0], &y, &[1, 1, 2], &gain, None, &o),
            Error::NonFinite { arg: "preds", list: 1 }
        );
        assert_eq!(run(&s, &y, &[2, 2], &gain, Some(&[1.0, 1.0, -1.0, 1.0]), &o).arg(), "weights");
        assert_eq!(run(&s, &y, &[2, 2], &[], None, &o).arg(), "label_gain");
        assert_eq!(run(&s, &y, &[2, 2], &[0.0, f64::NAN], None, &o).arg(), "label_gain");
        for sigma in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(run(&s, &y, &[4], &gain, None, &LambdaOptions { sigma, ..o }).arg(), "sigma");
        }
        assert_eq!(
            run(&s, &y, &[4], &gain, None, &LambdaOptions { truncation: 0, ..o }).arg(),
            "truncation_level"
        );
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
                    let y: Vec<f64> =
                        (0..b * n).map(|k| if k / n == 2 { 1.0 } else { rng.int(4) as f64 }).collect();
                    // list 1 has a single real item, list 2 a single label.
                    let mask: Vec<bool> =
                        (0..b * n).map(|k| if k / n == 1 { k % n == 3 } else { rng.next() < 0.8 }).collect();
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
                            lambdarank_gradients(
                                &sr,
                                &yr,
                                &[sr.len() as i64],
                                &gain,
                                None,
                                &o,
                                &mut gg,
                                &mut hh,
                            )
                            .unwrap();
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
        lambdarank_loss(&batch, Gains::Exp2, &LambdaOptions::default(), &mut l, &mut v, Some(&mut g))
            .unwrap();
        assert!(v[0] && l[0] > 0.0 && g.iter().all(|x| x.is_finite()));
        let big = [0.0f32, 1001.0, 0.0, 0.0];
        let batch = Padded::new(&s, Some(&big), None, 1, 4).unwrap();
        let e = lambdarank_loss(&batch, Gains::Exp2, &LambdaOptions::default(), &mut l, &mut v, None)
            .unwrap_err();
        assert_eq!(e.arg(), "targets");
    }
}
