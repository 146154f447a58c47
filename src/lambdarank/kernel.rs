//! The pair loop of one row `i` against every later position `j > i`, in two versions that
//! do the very same operations in the same order (no FMA, fixed lanes), so they give bitwise
//! the same results: portable Rust, and AVX2 intrinsics (~3-4x faster where the compiler does
//! not vectorise the portable one as well). `row_kernel` picks one by the `Isa` that
//! `simd_dispatch!` compiled the list code for. With `LOSS`, the same pass also sums the loss
//! terms (one more log-sigmoid per pair, `ln_1p_unit`, vectorised like the rest).

use crate::float::{mul3, select, Isa, ATANH};

/// The per-row constants of the pair loop.
#[derive(Clone, Copy)]
pub(super) struct Row {
    /// `s_i / 2`.
    pub hsi: f64,
    pub yi: f64,
    pub gi: f64,
    pub di: f64,
    /// `e_j = ev[j] * wi`.
    pub wi: f64,
    /// `D = (gi - g_j) (di - d_j) hscale`: half of sigma times delta (`sigma inv / 2`, or
    /// `-sigma / 2` for MRR).
    pub hscale: f64,
    pub sigma: f64,
    /// `c0 / 2`: `hden = hc0 + c1 hd` is half of `den = c0 + c1 |ds|`.
    pub hc0: f64,
    pub c1: f64,
    /// The loss (`LOSS`): `delta = (gi - g_j) (di - d_j) lscale` (signed by pos; `inv` for NDCG,
    /// -1 for MRR).
    pub lscale: f64,
    /// The weight of item i (`WT`, SPEC 13): a pair is weighted by its higher-labelled item's
    /// weight, `select(pos, whi, wt_j)`.
    pub whi: f64,
}

/// One pair `(i, j)`, `j > i`, with the half gap `hd = s_i / 2 - s_j / 2 >= 0` (finite for any
/// finite scores, where `s_i - s_j` itself may overflow: it is never formed), `pos` = item i has
/// the higher label, `D = (gi - g_j) (di - d_j) hscale` (half of sigma times delta, signed by
/// pos, before norm) and `hden = c0 / 2 + c1 hd = den / 2`:
///
/// ```text
/// e = exp(-sigma |ds|)  (given)       q = 1 / ((1 + e)^2 hden)     (D q = sigma delta / ((1 + e)^2 den))
/// rho / den = select(pos, e, 1) (1 + e) q / 2 =: r q / 2
/// t   = D q r              grad[j] += t, grad[i] -= t
/// hes = (sigma e) |D| q    hess[j] += hes, hess[i] += hes   (= sigma^2 delta rho (1 - rho) / den)
/// st  = |D| q r            S += 2 st                        (= sigma delta rho / den)
/// ```
///
/// `|D|` stands for `select(pos, D, -D)` (custom gains may make it negative). Halving both
/// factors changes no bit away from subnormal numbers (binary scaling commutes with rounding)
/// but keeps a gap beyond f64's range exact. With `LOSS`, also the pair's loss `delta / den * log(1 + exp(-sigma ds))` (ds =
/// |ds| when i is h, else -|ds|):
///
/// ```text
/// kd = delta / hden = delta q (1 + e)^2
/// kd * ln(1 + e) / 2  +  (misordered only) mul3(kd, hd, sigma)     (= sigma delta |ds| / den)
/// ```
///
/// `ln(1 + e) / 2` from `half_ln_1p` (one more division), the linear term by `mul3`: so it
/// overflows only where it truly exceeds f64, never NaN; exactly 0 for delta = 0 (a tie of
/// labels). The AVX2 kernel does the very same operations in the same order.
///
/// With `WT` (the loss only), the pair's weight `wh = select(pos, whi, wt_j)` (its higher-labelled
/// item's) multiplies `t` and the loss term, not `st` (norm's S is that of the unweighted pairs,
/// as LightGBM applies its weights after the norm).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pair_terms<const LOSS: bool, const SHORT: bool, const WT: bool>(
    k: &Row,
    sj: f64,
    yj: f64,
    gj: f64,
    dj: f64,
    evj: f64,
    wtj: f64,
) -> [f64; 4] {
    let hd = k.hsi - 0.5 * sj;
    let pos = k.yi > yj;
    let gd = (k.gi - gj) * (k.di - dj);
    let dd = gd * k.hscale;
    let e = evj * k.wi;
    let ope = 1.0 + e;
    let hden = k.hc0 + k.c1 * hd;
    let o2 = ope * ope;
    let q = 1.0 / (o2 * hden);
    let dq = dd * q;
    let r = select(pos, e, 1.0) * ope;
    let wh = select(pos, k.whi, wtj);
    let t = if WT { (dq * r) * wh } else { dq * r };
    let sdq = select(pos, dq, -dq);
    // sigma e first: finite whatever sigma, so a vanishing e never meets an overflowed product.
    let hes = k.sigma * e * sdq;
    let st = sdq * r;
    if !LOSS {
        return [t, hes, st, 0.0];
    }
    let dl = gd * k.lscale;
    let delta = select(pos, dl, -dl);
    let kd = delta * (q * o2); // delta / hden
    let lin = mul3(kd, hd, k.sigma);
    let lo = kd * half_ln_1p::<SHORT>(e) + select(pos, 0.0, lin);
    [t, hes, st, if WT { lo * wh } else { lo }]
}

/// `ATANH[k]`, `k <= 10`: the coefficients of `half_ln_1p` (`atanh(z) / z` in `z^2`).
const LN_SERIES: [f64; 11] = [
    ATANH[0], ATANH[1], ATANH[2], ATANH[3], ATANH[4], ATANH[5], ATANH[6], ATANH[7], ATANH[8], ATANH[9],
    ATANH[10],
];

/// Where `half_ln_1p` switches to `ln 2 + ln((1 + u) / 2)`: `sqrt(2) - 1`.
const LN_SPLIT: f64 = std::f64::consts::SQRT_2 - 1.0;

/// `ln(1 + u) / 2` for `u in [0, 1]` (`float::ln_1p_unit`'s series, cheaper): `atanh(z)` with
/// `z = u / (2 + u)` for `u <= sqrt(2) - 1`, else `ln 2 / 2 + atanh(z)` with
/// `z = (u - 1) / (u + 3)` (`ln((1 + u) / 2) = 2 atanh(z)`), so `|z| <= 0.1716` and 11 terms of
/// the odd series reach full precision (the next is below 1e-18 relative); `SHORT` (the loss of
/// float32 inputs, rounded to 24 bits, half an ulp 3e-8): 5 terms, 2e-9 relative. Evaluated by Estrin's scheme (a
/// short dependency chain); accurate also for tiny `u` (no `1 + u` is formed there). `row_avx2`
/// does the same operations.
#[inline(always)]
fn half_ln_1p<const SHORT: bool>(u: f64) -> f64 {
    let c = LN_SERIES;
    let hi = u > LN_SPLIT;
    let z = select(hi, u - 1.0, u) / (u + select(hi, 3.0, 2.0));
    let w = z * z;
    let w2 = w * w;
    let w4 = w2 * w2;
    let a0 = c[0] + c[1] * w;
    let a1 = c[2] + c[3] * w;
    let b0 = a0 + a1 * w2;
    let p = if SHORT {
        b0 + c[4] * w4
    } else {
        let w8 = w4 * w4;
        let a2 = c[4] + c[5] * w;
        let a3 = c[6] + c[7] * w;
        let a4 = c[8] + c[9] * w;
        let b1 = a2 + a3 * w2;
        let b2 = a4 + c[10] * w2;
        (b0 + b1 * w4) + b2 * w8
    };
    z * p + select(hi, 0.5 * std::f64::consts::LN_2, 0.0)
}

/// Lanes of the row sums; summed as `rest + lane 0 + ... + lane 3` in both kernels.
pub(super) const W: usize = 4;

/// The row kernels' precondition (the AVX2 kernel's unchecked loads rely on it): every slice
/// has the scores' length `len` (`wt` only with `WT`).
#[inline(always)]
fn row_lengths_agree<const WT: bool>(
    len: usize,
    inputs: [&[f64]; 4],
    wt: &[f64],
    grad: &[f64],
    hess: &[f64],
) -> bool {
    inputs.iter().all(|x| x.len() == len)
        && (!WT || wt.len() == len)
        && grad.len() == len
        && hess.len() == len
}

/// Row `i` against every `j > i` (all slices start at `i + 1` and have one length; `wt` the
/// weights with `WT`, else unread): updates grad[j], and hess[j] unless `LOSS` (the loss needs
/// no hessian); returns the sums over j of (t, hes, st, loss) (loss 0 unless `LOSS`, hes unused
/// with it). Portable version.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
pub(super) fn row_portable<const LOSS: bool, const SHORT: bool, const WT: bool>(
    k: &Row,
    s: &[f64],
    y: &[f64],
    g: &[f64],
    d: &[f64],
    ev: &[f64],
    wt: &[f64],
    grad: &mut [f64],
    hess: &mut [f64],
) -> [f64; 4] {
    let len = s.len();
    assert!(row_lengths_agree::<WT>(len, [y, g, d, ev], wt, grad, hess));
    let full = len / W * W;
    let mut acc = [[0.0f64; W]; 4];
    for j0 in (0..full).step_by(W) {
        for l in 0..W {
            let j = j0 + l;
            let wtj = if WT { wt[j] } else { 1.0 };
            let [t, hes, st, lo] = pair_terms::<LOSS, SHORT, WT>(k, s[j], y[j], g[j], d[j], ev[j], wtj);
            grad[j] += t;
            if !LOSS {
                hess[j] += hes;
            }
            acc[0][l] += t;
            acc[1][l] += hes;
            acc[2][l] += st;
            acc[3][l] += lo;
        }
    }
    finish::<LOSS, SHORT, WT>(k, s, y, g, d, ev, wt, grad, hess, full, acc)
}

/// The tail after the last full lane group, and the lane sums.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn finish<const LOSS: bool, const SHORT: bool, const WT: bool>(
    k: &Row,
    s: &[f64],
    y: &[f64],
    g: &[f64],
    d: &[f64],
    ev: &[f64],
    wt: &[f64],
    grad: &mut [f64],
    hess: &mut [f64],
    full: usize,
    acc: [[f64; W]; 4],
) -> [f64; 4] {
    let mut rest = [0.0f64; 4];
    for j in full..s.len() {
        let wtj = if WT { wt[j] } else { 1.0 };
        let [t, hes, st, lo] = pair_terms::<LOSS, SHORT, WT>(k, s[j], y[j], g[j], d[j], ev[j], wtj);
        grad[j] += t;
        if !LOSS {
            hess[j] += hes;
        }
        rest[0] += t;
        rest[1] += hes;
        rest[2] += st;
        rest[3] += lo;
    }
    let sum = |c: usize| acc[c].iter().fold(rest[c], |a, &b| a + b);
    [sum(0), sum(1), sum(2), sum(3)]
}

/// `row_portable` in AVX2 intrinsics: the same operations in the same order, four lanes at a
/// time (no FMA), so both give bitwise the same results.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn row_avx2<const LOSS: bool, const SHORT: bool, const WT: bool>(
    k: &Row,
    s: &[f64],
    y: &[f64],
    g: &[f64],
    d: &[f64],
    ev: &[f64],
    wt: &[f64],
    grad: &mut [f64],
    hess: &mut [f64],
) -> [f64; 4] {
    use std::arch::x86_64::*;
    let len = s.len();
    assert!(row_lengths_agree::<WT>(len, [y, g, d, ev], wt, grad, hess));
    let full = len / W * W;
    let (hsi, yi, gi, di) =
        (_mm256_set1_pd(k.hsi), _mm256_set1_pd(k.yi), _mm256_set1_pd(k.gi), _mm256_set1_pd(k.di));
    let (wi, hscale, sigma) = (_mm256_set1_pd(k.wi), _mm256_set1_pd(k.hscale), _mm256_set1_pd(k.sigma));
    let (hc0, c1) = (_mm256_set1_pd(k.hc0), _mm256_set1_pd(k.c1));
    let one = _mm256_set1_pd(1.0);
    let sign = _mm256_set1_pd(-0.0);
    let zero = _mm256_setzero_pd();
    let (two, three, half) = (_mm256_set1_pd(2.0), _mm256_set1_pd(3.0), _mm256_set1_pd(0.5));
    let (split, hln2) = (_mm256_set1_pd(LN_SPLIT), _mm256_set1_pd(0.5 * std::f64::consts::LN_2));
    let lscale = _mm256_set1_pd(k.lscale);
    let whi = _mm256_set1_pd(k.whi);
    let cs = LN_SERIES.map(|c| _mm256_set1_pd(c));
    let (mut at, mut ah, mut as_, mut al) = (zero, zero, zero, zero);
    let mut j = 0;
    // SAFETY: j + 4 <= full <= len for every slice (asserted above).
    while j < full {
        let sv = _mm256_loadu_pd(s.as_ptr().add(j));
        let yv = _mm256_loadu_pd(y.as_ptr().add(j));
        let gv = _mm256_loadu_pd(g.as_ptr().add(j));
        let dv = _mm256_loadu_pd(d.as_ptr().add(j));
        let evv = _mm256_loadu_pd(ev.as_ptr().add(j));
        let hd = _mm256_sub_pd(hsi, _mm256_mul_pd(half, sv));
        let pos = _mm256_cmp_pd::<_CMP_GT_OQ>(yi, yv);
        let gd = _mm256_mul_pd(_mm256_sub_pd(gi, gv), _mm256_sub_pd(di, dv));
        let dd = _mm256_mul_pd(gd, hscale);
        let e = _mm256_mul_pd(evv, wi);
        let ope = _mm256_add_pd(one, e);
        let hden = _mm256_add_pd(hc0, _mm256_mul_pd(c1, hd));
        let o2 = _mm256_mul_pd(ope, ope);
        let q = _mm256_div_pd(one, _mm256_mul_pd(o2, hden));
        let dq = _mm256_mul_pd(dd, q);
        let r = _mm256_mul_pd(_mm256_blendv_pd(one, e, pos), ope);
        // the pair's weight (WT): select(pos, whi, wt_j)
        let wh = if WT { _mm256_blendv_pd(_mm256_loadu_pd(wt.as_ptr().add(j)), whi, pos) } else { one };
        let t = if WT { _mm256_mul_pd(_mm256_mul_pd(dq, r), wh) } else { _mm256_mul_pd(dq, r) };
        let sdq = _mm256_blendv_pd(_mm256_xor_pd(dq, sign), dq, pos);
        let hes = _mm256_mul_pd(_mm256_mul_pd(sigma, e), sdq);
        let st = _mm256_mul_pd(sdq, r);
        let gp = grad.as_mut_ptr().add(j);
        _mm256_storeu_pd(gp, _mm256_add_pd(_mm256_loadu_pd(gp), t));
        if !LOSS {
            let hp = hess.as_mut_ptr().add(j);
            _mm256_storeu_pd(hp, _mm256_add_pd(_mm256_loadu_pd(hp), hes));
        }
        at = _mm256_add_pd(at, t);
        ah = _mm256_add_pd(ah, hes);
        as_ = _mm256_add_pd(as_, st);
        if LOSS {
            // delta = select(pos, dl, -dl), dl = gd * lscale; kd = delta / hden = delta (q ope^2)
            let dl = _mm256_mul_pd(gd, lscale);
            let delta = _mm256_blendv_pd(_mm256_xor_pd(dl, sign), dl, pos);
            let kd = _mm256_mul_pd(delta, _mm256_mul_pd(q, o2));
            // half_ln_1p(e)
            let hi = _mm256_cmp_pd::<_CMP_GT_OQ>(e, split);
            let num = _mm256_blendv_pd(e, _mm256_sub_pd(e, one), hi);
            let z = _mm256_div_pd(num, _mm256_add_pd(e, _mm256_blendv_pd(two, three, hi)));
            let w = _mm256_mul_pd(z, z);
            let w2 = _mm256_mul_pd(w, w);
            let w4 = _mm256_mul_pd(w2, w2);
            let a0 = _mm256_add_pd(cs[0], _mm256_mul_pd(cs[1], w));
            let a1 = _mm256_add_pd(cs[2], _mm256_mul_pd(cs[3], w));
            let b0 = _mm256_add_pd(a0, _mm256_mul_pd(a1, w2));
            let p = if SHORT {
                _mm256_add_pd(b0, _mm256_mul_pd(cs[4], w4))
            } else {
                let w8 = _mm256_mul_pd(w4, w4);
                let a2 = _mm256_add_pd(cs[4], _mm256_mul_pd(cs[5], w));
                let a3 = _mm256_add_pd(cs[6], _mm256_mul_pd(cs[7], w));
                let a4 = _mm256_add_pd(cs[8], _mm256_mul_pd(cs[9], w));
                let b1 = _mm256_add_pd(a2, _mm256_mul_pd(a3, w2));
                let b2 = _mm256_add_pd(a4, _mm256_mul_pd(cs[10], w2));
                _mm256_add_pd(_mm256_add_pd(b0, _mm256_mul_pd(b1, w4)), _mm256_mul_pd(b2, w8))
            };
            let l1p = _mm256_add_pd(_mm256_mul_pd(z, p), _mm256_blendv_pd(zero, hln2, hi));
            // mul3(kd, hd, sigma): min/max are exactly mul3's selects
            let (lo, hi_) = (_mm256_min_pd(hd, sigma), _mm256_max_pd(hd, sigma));
            let lin = _mm256_mul_pd(_mm256_mul_pd(kd, lo), hi_);
            let term = _mm256_mul_pd(kd, l1p);
            let lo = _mm256_add_pd(term, _mm256_blendv_pd(lin, zero, pos));
            al = _mm256_add_pd(al, if WT { _mm256_mul_pd(lo, wh) } else { lo });
        }
        j += W;
    }
    let mut acc = [[0.0f64; W]; 4];
    _mm256_storeu_pd(acc[0].as_mut_ptr(), at);
    _mm256_storeu_pd(acc[1].as_mut_ptr(), ah);
    _mm256_storeu_pd(acc[2].as_mut_ptr(), as_);
    _mm256_storeu_pd(acc[3].as_mut_ptr(), al);
    finish::<LOSS, SHORT, WT>(k, s, y, g, d, ev, wt, grad, hess, full, acc)
}

/// The row kernel for the instruction set the caller was compiled for (`simd_dispatch!`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn row_kernel<const LOSS: bool, const SHORT: bool, const WT: bool>(
    isa: Isa,
    k: &Row,
    s: &[f64],
    y: &[f64],
    g: &[f64],
    d: &[f64],
    ev: &[f64],
    wt: &[f64],
    grad: &mut [f64],
    hess: &mut [f64],
) -> [f64; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        /// `row_avx2` compiled for AVX2.
        #[target_feature(enable = "avx2")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx2<const LOSS: bool, const SHORT: bool, const WT: bool>(
            k: &Row,
            s: &[f64],
            y: &[f64],
            g: &[f64],
            d: &[f64],
            ev: &[f64],
            wt: &[f64],
            grad: &mut [f64],
            hess: &mut [f64],
        ) -> [f64; 4] {
            row_avx2::<LOSS, SHORT, WT>(k, s, y, g, d, ev, wt, grad, hess)
        }
        /// `row_avx2` compiled with AVX-512VL too: the same 256-bit operations (so the same
        /// bits), with 32 vector registers instead of 16 (the loss terms need more than 16 live
        /// values; spilling them halves the loop's speed).
        #[target_feature(enable = "avx2,avx512f,avx512vl")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx512<const LOSS: bool, const SHORT: bool, const WT: bool>(
            k: &Row,
            s: &[f64],
            y: &[f64],
            g: &[f64],
            d: &[f64],
            ev: &[f64],
            wt: &[f64],
            grad: &mut [f64],
            hess: &mut [f64],
        ) -> [f64; 4] {
            row_avx2::<LOSS, SHORT, WT>(k, s, y, g, d, ev, wt, grad, hess)
        }
        if isa == Isa::Avx512 {
            // SAFETY: `isa` is Avx512 only when the CPU has AVX-512 F/BW/VL/DQ (see `Isa`).
            return unsafe { avx512::<LOSS, SHORT, WT>(k, s, y, g, d, ev, wt, grad, hess) };
        }
        if isa.has_avx2() {
            // SAFETY: `isa` is Avx2 or Avx512 only when the CPU has AVX2 (see `Isa`).
            return unsafe { avx2::<LOSS, SHORT, WT>(k, s, y, g, d, ev, wt, grad, hess) };
        }
    }
    let _ = isa;
    row_portable::<LOSS, SHORT, WT>(k, s, y, g, d, ev, wt, grad, hess)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_ln_1p_matches_std() {
        let split = LN_SPLIT;
        let mut us: Vec<f64> = (0..2700).map(|k| k as f64 * 0.000_37).collect();
        us.extend([1e-300, 1e-30, 1e-10, split, f64::from_bits(split.to_bits() + 1), 0.5, 1.0]);
        for u in us {
            let b = u.ln_1p();
            let (full, short) = (2.0 * half_ln_1p::<false>(u), 2.0 * half_ln_1p::<true>(u));
            assert!((full - b).abs() <= 1e-15 * b, "u={u} {full} {b}");
            assert!((short - b).abs() <= 2.5e-9 * b, "u={u} {short} {b}");
        }
        assert_eq!(half_ln_1p::<true>(0.0), 0.0);
        assert_eq!(half_ln_1p::<false>(0.0), 0.0);
    }
}
