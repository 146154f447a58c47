//! The pair loop of one row `i` against every later position `j > i`, in two versions that
//! do the very same operations in the same order (no FMA, fixed lanes), so they give bitwise
//! the same results: portable Rust, and AVX2 intrinsics (~3-4x faster where the compiler does
//! not vectorise the portable one as well). `row_kernel` picks one by the `Isa` that
//! `simd_dispatch!` compiled the list code for.

use crate::float::{select, Isa};

/// The per-row constants of the pair loop.
#[derive(Clone, Copy)]
pub(super) struct Row {
    pub si: f64,
    pub yi: f64,
    pub gi: f64,
    pub di: f64,
    /// `e_j = ev[j] * wi`.
    pub wi: f64,
    /// `D = (gi - g_j) (di - d_j) scale`.
    pub scale: f64,
    pub sigma: f64,
    pub c0: f64,
    pub c1: f64,
}

/// One pair `(i, j)`, `j > i`: with `diff = min(s_i - s_j, f64::MAX) >= 0` (scores like
/// +-1e308 overflow the difference; capped, `c1 diff` is never `0 * inf`), `pos` = item i has the higher
/// label, `D = (gi - g_j) (di - d_j) scale` (sigma times delta, signed by pos, before norm):
///
/// ```text
/// e = exp(-sigma diff)  (given)       q = 1 / ((1 + e)^2 (c0 + c1 diff))
/// rho / den = select(pos, e, 1) (1 + e) q =: r q
/// t   = D q r              grad[j] += t, grad[i] -= t
/// hes = (sigma e) |D| q    hess[j] += hes, hess[i] += hes   (= sigma^2 delta rho (1 - rho) / den)
/// st  = |D| q r            S += 2 st                        (= sigma delta rho / den)
/// ```
///
/// `|D|` stands for `select(pos, D, -D)`, i.e. sigma times delta (custom gains may make it
/// negative). The AVX2 kernel does the very same operations in the same order.
#[inline(always)]
fn pair_terms(k: &Row, sj: f64, yj: f64, gj: f64, dj: f64, evj: f64) -> (f64, f64, f64) {
    let diff = capped(k.si - sj);
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
    // sigma e first: finite whatever sigma, so a vanishing e never meets an overflowed product.
    (t, k.sigma * e * sdq, sdq * r)
}

/// `min(x, f64::MAX)` as `_mm256_min_pd(x, MAX)` computes it.
#[inline(always)]
fn capped(x: f64) -> f64 {
    select(x < f64::MAX, x, f64::MAX)
}

/// The loss term of a pair: `delta / den * log(1 + exp(-sigma ds))`, ds = diff when i is h,
/// else -diff. For a misordered pair `sigma diff / den` is taken as
/// `sigma h / (c0 / 2 + c1 h)` with `h = s_i / 2 - s_j / 2` (never overflows): the true,
/// finite value when the score gap overflows, 0 for a tie; a pair with delta 0 adds exactly 0.
#[inline(always)]
pub(super) fn pair_loss(k: &Row, sj: f64, yj: f64, gj: f64, dj: f64, evj: f64) -> f64 {
    let diff = k.si - sj;
    let half = 0.5 * k.si - 0.5 * sj;
    let pos = k.yi > yj;
    let dd = (k.gi - gj) * (k.di - dj) * k.scale;
    let e = evj * k.wi;
    let delta = select(pos, dd, -dd) / k.sigma;
    let den = k.c0 + k.c1 * capped(diff);
    let mis = select(pos, 0.0, delta * (k.sigma * half) / (0.5 * k.c0 + k.c1 * half));
    select(delta == 0.0, 0.0, mis + delta * e.ln_1p() / den)
}

/// Lanes of the row sums; summed as `rest + lane 0 + ... + lane 3` in both kernels.
pub(super) const W: usize = 4;

/// Row `i` against every `j > i` (all slices start at `i + 1` and have one length): updates
/// grad[j], hess[j]; returns the sums over j of (t, hes, st). Portable version.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub(super) fn row_portable(
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
    let big = _mm256_set1_pd(f64::MAX);
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
        let diff = _mm256_min_pd(_mm256_sub_pd(si, sv), big);
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
        let hes = _mm256_mul_pd(_mm256_mul_pd(sigma, e), sdq);
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

/// The row kernel for the instruction set the caller was compiled for (`simd_dispatch!`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn row_kernel(
    isa: Isa,
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
    if isa.has_avx2() {
        // SAFETY: `isa` is Avx2 or Avx512 only when the CPU has AVX2 (see `Isa`).
        return unsafe { row_avx2(k, s, y, g, d, ev, grad, hess) };
    }
    let _ = isa;
    row_portable(k, s, y, g, d, ev, grad, hess)
}
