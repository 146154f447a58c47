//! RankNet: the pairwise logistic loss and its lambda-form gradient.
//!
//! Per list, over the real items, with `P = #{(i, j) : y_i > y_j}` ordered pairs (ties are not
//! pairs):
//!
//! `L = (1/P) sum_{y_i > y_j} log(1 + exp(-sigma (s_i - s_j)))`
//!
//! and the gradient in lambda form, `dL/ds_k = (1/P) (sum_j lambda_kj - sum_j lambda_jk)` with
//! `lambda_ij = -sigma sigmoid(-sigma (s_i - s_j))` for each pair `y_i > y_j`.
//!
//! One pass computes both: every unordered pair is visited once (N^2/2 exps), the label
//! comparison becomes a sign `t in {-1, 0, 1}` (branch-free selects, so the inner loop
//! vectorises), and a tie contributes exactly zero. No N x N buffer: O(N) scratch per list.
//! `P` is counted exactly (u64) from the label multiplicities, so a list without pairs is known
//! before the O(N^2) loop. A list with no pair (or fewer than 2 real items) has loss 0, zero
//! gradient and does not count in a mean.

use crate::batch::{for_each_list, scatter, Gathered, Padded};
use crate::error::Result;
use crate::float::{check_scale, lane_sum, select, simd_dispatch, Float, L};

/// `1 / (2k + 1)`, the coefficients of `atanh(z) / z = sum_k z^(2k) / (2k + 1)`.
const ATANH: [f64; 17] = [
    1.0,
    1.0 / 3.0,
    1.0 / 5.0,
    1.0 / 7.0,
    1.0 / 9.0,
    1.0 / 11.0,
    1.0 / 13.0,
    1.0 / 15.0,
    1.0 / 17.0,
    1.0 / 19.0,
    1.0 / 21.0,
    1.0 / 23.0,
    1.0 / 25.0,
    1.0 / 27.0,
    1.0 / 29.0,
    1.0 / 31.0,
    1.0 / 33.0,
];

/// `ln(1 + u)` for `u in [0, 1]`, in plain arithmetic so that a loop of it vectorises:
/// `ln(1 + u) = 2 atanh(z)`, `z = u / (2 + u) in [0, 1/3]`, a truncated odd series. Relative
/// error of the series below 2e-9 (f32, 8 terms) and 2e-17 (f64, 17 terms), a few ulp after
/// rounding; full relative accuracy for tiny `u` (no `1 + u` is formed).
#[inline(always)]
pub fn ln_1p_unit<F: Float>(u: F) -> F {
    let z = u / (F::from_f64(2.0) + u);
    let z2 = z * z;
    let terms = if std::mem::size_of::<F>() == 4 { 8 } else { ATANH.len() };
    let mut p = F::ZERO;
    for &c in ATANH[..terms].iter().rev() {
        p = p * z2 + F::from_f64(c);
    }
    F::from_f64(2.0) * z * p
}

/// `(softplus(-x) / 2, sigmoid(-x))` for `x = 2 h`, from one `exp(-|x|)`:
/// `softplus(-x) / 2 = max(-h, 0) + ln(1 + e) / 2`, finite for every finite `h`.
#[inline(always)]
fn pair_terms<F: Float>(h: F) -> (F, F) {
    let e = (-(h + h).abs()).exp_fast();
    let q = F::ONE / (F::ONE + e);
    let sig_neg = select(h >= F::ZERO, e * q, q);
    let sp = select(h < F::ZERO, -h, F::ZERO) + F::from_f64(0.5) * ln_1p_unit(e);
    (sp, sig_neg)
}

/// `sigma t (s_i - s_j) / 2`, taken as `sigma t (s_i / 2 - s_j / 2)`: finite for any finite
/// scores, so an ordered pair whose gap overflows still gets its true (finite) loss; exactly 0
/// for a tie (`t = 0`).
#[inline(always)]
fn scaled_gap<F: Float>(sigma: F, t: F, si: F, sj: F) -> F {
    let half = F::from_f64(0.5);
    select(t == F::ZERO, F::ZERO, sigma * t * (half * si - half * sj))
}

/// `+1` if `a > b`, `-1` if `a < b`, `0` on a tie.
#[inline(always)]
fn sign<F: Float>(a: F, b: F) -> F {
    select(a > b, F::ONE, select(a < b, -F::ONE, F::ZERO))
}

/// Ordered pairs `y_i > y_j`: `(m^2 - sum_v c_v^2) / 2` over the multiplicities `c_v`.
/// Sorts `ys` (a copy of the labels) in place.
fn count_pairs<F: Float>(ys: &mut [F]) -> u64 {
    ys.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let m = ys.len() as u64;
    let mut same = 0u64;
    let mut run = 0u64;
    for k in 0..ys.len() {
        if k > 0 && ys[k] == ys[k - 1] {
            run += 1;
        } else {
            same += run * run;
            run = 1;
        }
    }
    same += run * run;
    (m * m - same) / 2
}

/// The sums over the pairs of one list: returns `sum softplus / (2 P)` (f64; each half-loss is
/// scaled by `1/P` before it is added, so the sum overflows only where the mean does) and, with
/// `GRAD`, leaves `sum_j lambda_kj - sum_j lambda_jk` in `g` (which must hold zeros).
#[inline(always)]
fn pair_sums<F: Float, const GRAD: bool>(s: &[F], y: &[F], sigma: F, g: &mut [F], inv: f64) -> f64 {
    let m = s.len();
    let inv_f = F::from_f64(inv);
    let g = &mut g[..m];
    let mut total = 0.0f64;
    for i in 0..m {
        let (si, yi) = (s[i], y[i]);
        let (head, tail) = g.split_at_mut(i + 1);
        let (st, yt) = (&s[i + 1..], &y[i + 1..]);
        let mut acc_l = [F::ZERO; L];
        let mut acc_g = [F::ZERO; L];
        let mut gc = tail.chunks_exact_mut(L);
        let mut sc = st.chunks_exact(L);
        let mut yc = yt.chunks_exact(L);
        for ((gv, sv), yv) in (&mut gc).zip(&mut sc).zip(&mut yc) {
            let gv: &mut [F; L] = gv.try_into().unwrap();
            let sv: &[F; L] = sv.try_into().unwrap();
            let yv: &[F; L] = yv.try_into().unwrap();
            let mut lam = [F::ZERO; L];
            for l in 0..L {
                let t = sign(yi, yv[l]);
                let (sp, sn) = pair_terms(scaled_gap(sigma, t, si, sv[l]));
                acc_l[l] += t.abs() * sp * inv_f;
                lam[l] = sigma * t * sn;
            }
            if GRAD {
                for l in 0..L {
                    acc_g[l] -= lam[l];
                    gv[l] += lam[l];
                }
            }
        }
        let (mut rest_l, mut rest_g) = (F::ZERO, F::ZERO);
        for ((gj, &sj), &yj) in gc.into_remainder().iter_mut().zip(sc.remainder()).zip(yc.remainder()) {
            let t = sign(yi, yj);
            let (sp, sn) = pair_terms(scaled_gap(sigma, t, si, sj));
            rest_l += t.abs() * sp * inv_f;
            if GRAD {
                let lam = sigma * t * sn;
                rest_g -= lam;
                *gj += lam;
            }
        }
        total += lane_sum(&acc_l, rest_l).to_f64();
        if GRAD {
            head[i] += lane_sum(&acc_g, rest_g);
        }
    }
    total
}

/// Per-thread scratch for one list.
#[derive(Default)]
struct Work<F> {
    list: Gathered<F>,
    ys: Vec<F>,
    g: Vec<F>,
}

/// One list's loss and whether it counts; with `grad`, leaves dL/ds in `w.g[..m]`.
#[inline(always)]
fn list_loss<F: Float>(w: &mut Work<F>, sigma: F, grad: bool) -> (F, bool) {
    let m = w.list.s.len();
    w.g.clear();
    w.g.resize(m, F::ZERO);
    if m < 2 {
        return (F::ZERO, false);
    }
    w.ys.clear();
    w.ys.extend_from_slice(&w.list.y);
    let pairs = count_pairs(&mut w.ys);
    if pairs == 0 {
        return (F::ZERO, false);
    }
    let (s, y) = (&w.list.s[..], &w.list.y[..]);
    let inv = 1.0 / pairs as f64;
    let total = if grad {
        pair_sums::<F, true>(s, y, sigma, &mut w.g, inv)
    } else {
        pair_sums::<F, false>(s, y, sigma, &mut w.g, inv)
    };
    if grad {
        let inv = F::from_f64(inv);
        for v in w.g.iter_mut() {
            *v *= inv;
        }
    }
    (F::from_f64(2.0 * total), true)
}

simd_dispatch!(list_loss_simd, list_loss, (w: &mut Work<F>, sigma: F, grad: bool) -> (F, bool));

/// Per-list RankNet losses `[b]`, whether each list counts in a mean `[b]`, and with `grad`
/// the gradient of each list's loss with respect to its scores `[b * n]` (zero at padding).
pub fn ranknet_loss<F: Float>(
    batch: &Padded<F>,
    sigma: F,
    losses: &mut [F],
    valid: &mut [bool],
    grad: Option<&mut [F]>,
) -> Result<()> {
    check_scale("sigma", sigma)?;
    batch.list_outputs("losses", &[losses.len(), valid.len()], grad.as_deref().map(<[F]>::len))?;
    batch.check_finite()?;
    let want_grad = grad.is_some();
    for_each_list(batch.n, losses, valid, grad, Work::<F>::default, |w, bi, loss, ok, row| {
        batch.gather(bi, &mut w.list);
        let (l, counts) = list_loss_simd(w, sigma, want_grad);
        *loss = l;
        *ok = counts;
        if let Some(row) = row {
            scatter(&w.list.idx, &w.g, row);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    use crate::testing::Rng;

    fn softplus(z: f64) -> f64 {
        z.max(0.0) + (-z.abs()).exp().ln_1p()
    }

    /// Straight from the definition: every ordered pair with y_i > y_j, in f64.
    fn reference(s: &[f64], y: &[f64], sigma: f64) -> (f64, bool, Vec<f64>) {
        let n = s.len();
        let mut g = vec![0.0; n];
        let (mut total, mut pairs) = (0.0, 0usize);
        for i in 0..n {
            for j in 0..n {
                if y[i] > y[j] {
                    let x = sigma * (s[i] - s[j]);
                    total += softplus(-x);
                    let lam = -sigma / (1.0 + x.exp());
                    g[i] += lam;
                    g[j] -= lam;
                    pairs += 1;
                }
            }
        }
        if pairs == 0 {
            return (0.0, false, vec![0.0; n]);
        }
        (total / pairs as f64, true, g.iter().map(|v| v / pairs as f64).collect())
    }

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * (1.0 + b.abs())
    }

    #[test]
    fn ln_1p_unit_matches_std() {
        let mut u = 0.0f64;
        while u <= 1.0 {
            let (a, b) = (ln_1p_unit(u), u.ln_1p());
            assert!((a - b).abs() <= 1e-15 * b, "u={u} {a} {b}");
            let (a, b) = (ln_1p_unit(u as f32) as f64, (u as f32 as f64).ln_1p());
            assert!((a - b).abs() <= 3e-7 * b, "u={u} {a} {b}");
            u += 0.000_37;
        }
        for &u in &[1e-300f64, 1e-30, 1e-10, 1.0] {
            assert!((ln_1p_unit(u) - u.ln_1p()).abs() <= 1e-15 * u.ln_1p());
        }
        assert_eq!(ln_1p_unit(0.0f64), 0.0);
    }

    #[test]
    fn pairs_are_counted_exactly() {
        let mut ys = [1.0f64, 0.0, 1.0, 2.0, 0.0, 0.0];
        // counts 3, 2, 1: (36 - 9 - 4 - 1) / 2 = 11
        assert_eq!(count_pairs(&mut ys), 11);
        assert_eq!(count_pairs(&mut [3.0f64; 5]), 0);
        assert_eq!(count_pairs::<f64>(&mut []), 0);
    }

    #[test]
    fn loss_and_gradient_match_reference_f64() {
        let mut rng = Rng(0x9E3779B97F4A7C15);
        for &(b, n) in &[(1, 1), (1, 2), (3, 5), (4, 17), (2, 40), (5, 9), (2, 8), (1, 16)] {
            for &sigma in &[0.3, 1.0, 5.0] {
                for &levels in &[1, 2, 5] {
                    let s: Vec<f64> = (0..b * n).map(|_| (rng.normal() * 3.0 * 8.0).round() / 8.0).collect();
                    let y: Vec<f64> = (0..b * n).map(|_| rng.label(levels)).collect();
                    let mask: Vec<bool> = (0..b * n).map(|k| k % n == 0 || rng.next() < 0.8).collect();
                    let batch = Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap();
                    let (mut l, mut v, mut g) = (vec![9.0; b], vec![false; b], vec![9.0; b * n]);
                    ranknet_loss(&batch, sigma, &mut l, &mut v, Some(&mut g)).unwrap();
                    let (mut l2, mut v2) = (vec![9.0; b], vec![false; b]);
                    ranknet_loss(&batch, sigma, &mut l2, &mut v2, None).unwrap();
                    assert_eq!((&l, &v), (&l2, &v2), "the loss does not depend on grad");
                    for bi in 0..b {
                        let idx: Vec<usize> = (0..n).filter(|&j| mask[bi * n + j]).collect();
                        let sr: Vec<f64> = idx.iter().map(|&j| s[bi * n + j]).collect();
                        let yr: Vec<f64> = idx.iter().map(|&j| y[bi * n + j]).collect();
                        let (rl, rv, rg) = reference(&sr, &yr, sigma);
                        assert_eq!(v[bi], rv);
                        assert!(close(l[bi], rl, 1e-13), "loss {} vs {rl}", l[bi]);
                        for (k, &j) in idx.iter().enumerate() {
                            assert!(
                                close(g[bi * n + j], rg[k], 1e-13),
                                "grad {} vs {}",
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

    #[test]
    fn extreme_margins_stay_finite_and_accurate() {
        // Pairs far apart in either direction: the loss is ~|x| or ~exp(-|x|), never inf/NaN.
        let s = [1e3f64, -1e3, 0.0, 40.0];
        let y = [2.0f64, 1.0, 1.0, 0.0];
        let batch = Padded::new(&s, Some(&y), None, 1, 4).unwrap();
        let (mut l, mut v, mut g) = (vec![0.0; 1], vec![false; 1], vec![0.0; 4]);
        ranknet_loss(&batch, 1.0, &mut l, &mut v, Some(&mut g)).unwrap();
        let (rl, _, rg) = reference(&s, &y, 1.0);
        assert!(close(l[0], rl, 1e-14));
        for k in 0..4 {
            assert!(close(g[k], rg[k], 1e-14));
        }
        let s32 = [1e3f32, -1e3, 0.0, 40.0];
        let y32 = [2.0f32, 1.0, 1.0, 0.0];
        let batch = Padded::new(&s32, Some(&y32), None, 1, 4).unwrap();
        let (mut l, mut v, mut g) = (vec![0.0f32; 1], vec![false; 1], vec![0.0f32; 4]);
        ranknet_loss(&batch, 1.0, &mut l, &mut v, Some(&mut g)).unwrap();
        assert!(close(l[0] as f64, rl, 1e-6) && g.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn f32_agrees_with_f64() {
        let mut rng = Rng(4242);
        let (b, n) = (3, 70);
        let s: Vec<f64> = (0..b * n).map(|_| rng.normal()).collect();
        let y: Vec<f64> = (0..b * n).map(|_| rng.label(4)).collect();
        let s32: Vec<f32> = s.iter().map(|&v| v as f32).collect();
        let y32: Vec<f32> = y.iter().map(|&v| v as f32).collect();
        let (mut l, mut v, mut g) = (vec![0.0; b], vec![false; b], vec![0.0; b * n]);
        ranknet_loss(&Padded::new(&s, Some(&y), None, b, n).unwrap(), 2.0, &mut l, &mut v, Some(&mut g))
            .unwrap();
        let (mut l32, mut v32, mut g32) = (vec![0.0f32; b], vec![false; b], vec![0.0f32; b * n]);
        ranknet_loss(
            &Padded::new(&s32, Some(&y32), None, b, n).unwrap(),
            2.0,
            &mut l32,
            &mut v32,
            Some(&mut g32),
        )
        .unwrap();
        assert_eq!(v, v32);
        for bi in 0..b {
            assert!(close(l32[bi] as f64, l[bi], 1e-5));
        }
        let gmax = g.iter().fold(0.0f64, |a, &x| a.max(x.abs()));
        for k in 0..b * n {
            assert!((g[k] - g32[k] as f64).abs() < 1e-5 * gmax);
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
                ranknet_loss(&batch, 1.0, &mut l, &mut v, Some(&mut g)).unwrap();
                (l, g)
            })
        };
        let (one, two) = (run(1), run(2));
        assert!(one.0.iter().zip(&two.0).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(one.1.iter().zip(&two.1).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn degenerate_lists_give_zero() {
        // list 0: all tied; list 1: one real item; list 2: nothing real.
        let s = [1.0f64, 2.0, 3.0, 0.5, 0.1, 0.2, 0.3, 0.4, 0.5];
        let y = [1.0f64, 1.0, 1.0, 2.0, 1.0, 0.0, 2.0, 1.0, 0.0];
        let mask = [true, true, true, true, false, false, false, false, false];
        let batch = Padded::new(&s, Some(&y), Some(&mask), 3, 3).unwrap();
        let (mut l, mut v, mut g) = (vec![9.0; 3], vec![true; 3], vec![9.0; 9]);
        ranknet_loss(&batch, 1.0, &mut l, &mut v, Some(&mut g)).unwrap();
        assert_eq!((l, v, g), (vec![0.0; 3], vec![false; 3], vec![0.0; 9]));
        // n = 0 and b = 0 are fine too.
        let batch = Padded::<f64>::new(&[], Some(&[]), None, 2, 0).unwrap();
        let (mut l, mut v, mut g) = (vec![9.0; 2], vec![true; 2], vec![]);
        ranknet_loss(&batch, 1.0, &mut l, &mut v, Some(&mut g)).unwrap();
        assert_eq!((l, v), (vec![0.0; 2], vec![false; 2]));
    }

    #[test]
    fn bad_input_names_the_argument() {
        let s = [1.0f64, f64::NAN, 0.0, 1.0];
        let y = [1.0f64, 0.0, 1.0, 0.0];
        let batch = Padded::new(&s, Some(&y), None, 2, 2).unwrap();
        let (mut l, mut v) = (vec![0.0; 2], vec![false; 2]);
        assert_eq!(
            ranknet_loss(&batch, 1.0, &mut l, &mut v, None),
            Err(Error::NonFinite { arg: "scores", list: 0 })
        );
        let ok = [1.0f64, 2.0, 0.0, 1.0];
        let yb = [1.0f64, 0.0, f64::INFINITY, 0.0];
        let batch = Padded::new(&ok, Some(&yb), None, 2, 2).unwrap();
        assert_eq!(
            ranknet_loss(&batch, 1.0, &mut l, &mut v, None),
            Err(Error::NonFinite { arg: "targets", list: 1 })
        );
        let batch = Padded::new(&ok, Some(&y), None, 2, 2).unwrap();
        for sigma in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(ranknet_loss(&batch, sigma, &mut l, &mut v, None).unwrap_err().arg(), "sigma");
        }
        let batch = Padded::new(&ok, None, None, 2, 2).unwrap();
        assert_eq!(ranknet_loss(&batch, 1.0, &mut l, &mut v, None).unwrap_err().arg(), "targets");
    }

    fn run<F: Float>(s: &[F], y: &[F], sigma: F) -> (F, bool, Vec<F>) {
        let n = s.len();
        let batch = Padded::new(s, Some(y), None, 1, n).unwrap();
        let (mut l, mut v, mut g) = (vec![F::ZERO; 1], vec![false; 1], vec![F::ZERO; n]);
        ranknet_loss(&batch, sigma, &mut l, &mut v, Some(&mut g)).unwrap();
        (l[0], v[0], g)
    }

    #[test]
    fn overflowing_gaps_give_no_nan() {
        // The tie (items 0 and 1) has a gap that overflows; it must contribute exactly 0.
        let y = [1.0, 1.0, 0.0, 2.0];
        let (l, v, g) = run(&[3e38f32, -3e38, 0.0, 1.0], &y.map(|v| v as f32), 1.0);
        // Two misordered pairs of loss 3e38 each, three ordered ones: mean (6e38 + ln(1 + e^-1)) / 5.
        assert!(v && l.is_finite() && (l as f64 / 1.2e38 - 1.0).abs() < 1e-6, "{l}");
        assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
        let (rl, _, rg) = reference(&[3e38, -3e38, 0.0, 1.0], &y, 1.0);
        assert!((l as f64 - rl).abs() <= 1e-6 * rl);
        for (a, b) in g.iter().zip(&rg) {
            assert!((*a as f64 - b).abs() < 1e-6, "{g:?} {rg:?}");
        }
        let (l, v, g) = run(&[1e308f64, -1e308, 0.0, 1.0], &y, 1.0);
        assert!(v && l.is_finite() && (l / 4e307 - 1.0).abs() < 1e-12, "{l}");
        let (_, _, rg) = reference(&[1e308, -1e308, 0.0, 1.0], &y, 1.0);
        assert_eq!(g.iter().map(|x| x.is_finite()).collect::<Vec<_>>(), vec![true; 4]);
        for (a, b) in g.iter().zip(&rg) {
            assert!((a - b).abs() < 1e-12, "{g:?} {rg:?}");
        }
    }

    #[test]
    fn sigma_outside_the_scale_range_is_rejected() {
        let (s, y) = ([0.0f32, 1.0], [1.0f32, 0.0]);
        let batch = Padded::new(&s, Some(&y), None, 1, 2).unwrap();
        let (mut l, mut v) = (vec![0.0f32; 1], vec![false; 1]);
        for sigma in [1e-20f32, 1e20, 0.0, f32::NAN] {
            assert_eq!(ranknet_loss(&batch, sigma, &mut l, &mut v, None).unwrap_err().arg(), "sigma");
        }
        let (lo, hi) = f32::scale_range();
        for sigma in [lo, hi] {
            let (l, _, g) = run(&[0.0f32, 0.0, 3e38, -3e38], &[1.0, 0.0, 1.0, 1.0], sigma);
            // At the largest sigma the misordered pair truly costs ~1e58: inf in float32, never NaN.
            assert!(!l.is_nan() && g.iter().all(|x| x.is_finite()), "{sigma} {l} {g:?}");
            assert!(sigma == hi || l.is_finite());
        }
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    #[test]
    #[ignore]
    fn bench_pair_sums() {
        let n = 2000;
        let s: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 300.0).collect();
        let y: Vec<f32> = (0..n).map(|i| ((i * 31) % 5) as f32).collect();
        let mut g = vec![0.0f32; n];
        for grad in [false, true] {
            let t = std::time::Instant::now();
            let mut w = Work::<f32>::default();
            w.list.s = s.clone();
            w.list.y = y.clone();
            let r = list_loss_simd(&mut w, 1.0, grad);
            let el = t.elapsed().as_secs_f64();
            g.copy_from_slice(&w.g);
            println!("grad={grad} {:.2} ns/pair {:?} {}", el / (n * n / 2) as f64 * 1e9, r, g[0]);
        }
    }
}
