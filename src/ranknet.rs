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
//!
//! Per-item weights (SPEC 13, Rax's `pairwise_logistic_loss(weights=)`): a pair `y_i > y_j` is
//! weighted by `w_i`, the weight of the more relevant item; `P` still counts every pair (Rax's
//! mean over the valid pairs divides by their number, not by the weights' sum). A list none of
//! whose pairs has a positive weight does not count.

use crate::batch::{for_each_list, scatter, Gathered, Padded};
use crate::error::Result;
use crate::float::{check_scale, lane_sum, ln_1p_unit, mul3, select, simd_dispatch, Float, L};

/// One pair's `(t^2 softplus(-x) / (2 P), sigmoid(-x))` for `x = sigma t (s_i - s_j)` (`t` the
/// label sign, `inv = 1/P`), from one `exp(-|x|)`. With `h = x / 2`:
/// `softplus(-x) / 2 = max(-h, 0) + ln(1 + e) / 2`. The gap is taken as `s_i / 2 - s_j / 2`
/// (finite for any finite scores) and `max(-h, 0) / P` as `mul3(1/P, sigma, |gap / 2|)`, so a
/// term overflows only where it truly exceeds the dtype's range (`sigma h` itself may overflow
/// for `sigma > 1`: only its sign and `exp(-|x|)` are used); exactly 0 for a tie (`t = 0`).
#[inline(always)]
fn pair_terms<F: Float>(sigma: F, t: F, si: F, sj: F, inv: F) -> (F, F) {
    let half = F::from_f64(0.5);
    let hd = half * si - half * sj;
    let h = select(t == F::ZERO, F::ZERO, sigma * t * hd);
    let e = (-(h + h).abs()).exp_fast();
    let q = F::ONE / (F::ONE + e);
    let sig_neg = select(h >= F::ZERO, e * q, q);
    let lin = select(h < F::ZERO, mul3(inv, sigma, hd.abs()), F::ZERO);
    (t.abs() * (lin + half * ln_1p_unit(e) * inv), sig_neg)
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
///
/// With `W`, pair `(i, j)` is weighted by `wt` of its more relevant item (`wt[i]` if
/// `y_i > y_j`, else `wt[j]`): its loss through the `1/P` factor (`w/P` never overflows), its
/// lambda by a product.
#[inline(always)]
fn pair_sums<F: Float, const GRAD: bool, const W: bool>(
    s: &[F],
    y: &[F],
    wt: &[F],
    sigma: F,
    g: &mut [F],
    inv: f64,
) -> f64 {
    let m = s.len();
    let inv_f = F::from_f64(inv);
    let g = &mut g[..m];
    let mut total = 0.0f64;
    for i in 0..m {
        let (si, yi) = (s[i], y[i]);
        let wi = if W { wt[i] } else { F::ONE };
        let (head, tail) = g.split_at_mut(i + 1);
        let (st, yt) = (&s[i + 1..], &y[i + 1..]);
        let wtt = if W { &wt[i + 1..] } else { &s[i + 1..] }; // (unread without W)
        let mut acc_l = [F::ZERO; L];
        let mut acc_g = [F::ZERO; L];
        let mut gc = tail.chunks_exact_mut(L);
        let mut sc = st.chunks_exact(L);
        let mut yc = yt.chunks_exact(L);
        let mut wc = wtt.chunks_exact(L);
        for (((gv, sv), yv), wv) in (&mut gc).zip(&mut sc).zip(&mut yc).zip(&mut wc) {
            let gv: &mut [F; L] = gv.try_into().unwrap();
            let sv: &[F; L] = sv.try_into().unwrap();
            let yv: &[F; L] = yv.try_into().unwrap();
            let wv: &[F; L] = wv.try_into().unwrap();
            let mut lam = [F::ZERO; L];
            for l in 0..L {
                let t = sign(yi, yv[l]);
                let wp = if W { select(t > F::ZERO, wi, wv[l]) } else { F::ONE };
                let (lo, sn) = pair_terms(sigma, t, si, sv[l], if W { inv_f * wp } else { inv_f });
                acc_l[l] += lo;
                lam[l] = if W { sigma * t * sn * wp } else { sigma * t * sn };
            }
            if GRAD {
                for l in 0..L {
                    acc_g[l] -= lam[l];
                    gv[l] += lam[l];
                }
            }
        }
        let (mut rest_l, mut rest_g) = (F::ZERO, F::ZERO);
        let rests =
            gc.into_remainder().iter_mut().zip(sc.remainder()).zip(yc.remainder()).zip(wc.remainder());
        for (((gj, &sj), &yj), &wj) in rests {
            let t = sign(yi, yj);
            let wp = if W { select(t > F::ZERO, wi, wj) } else { F::ONE };
            let (lo, sn) = pair_terms(sigma, t, si, sj, if W { inv_f * wp } else { inv_f });
            rest_l += lo;
            if GRAD {
                let lam = if W { sigma * t * sn * wp } else { sigma * t * sn };
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

/// Whether some pair `y_i > y_j` has a positive weight `w_i`: an item of positive weight above
/// the lowest label `y_min`.
fn weighted_pair_exists<F: Float>(y: &[F], wt: &[F], y_min: F) -> bool {
    y.iter().zip(wt).any(|(&v, &w)| w > F::ZERO && v > y_min)
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
    let (s, y, wt) = (&w.list.s[..], &w.list.y[..], &w.list.w[..]);
    if !wt.is_empty() && !weighted_pair_exists(y, wt, w.ys[0]) {
        return (F::ZERO, false);
    }
    let inv = 1.0 / pairs as f64;
    let total = match (grad, wt.is_empty()) {
        (true, true) => pair_sums::<F, true, false>(s, y, wt, sigma, &mut w.g, inv),
        (false, true) => pair_sums::<F, false, false>(s, y, wt, sigma, &mut w.g, inv),
        (true, false) => pair_sums::<F, true, true>(s, y, wt, sigma, &mut w.g, inv),
        (false, false) => pair_sums::<F, false, true>(s, y, wt, sigma, &mut w.g, inv),
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

    /// `reference` with per-item weights: pair `y_i > y_j` weighted by `w_i`, still over `P`;
    /// no pair of positive weight: the list does not count.
    fn reference_weighted(s: &[f64], y: &[f64], w: &[f64], sigma: f64) -> (f64, bool, Vec<f64>) {
        let n = s.len();
        let mut g = vec![0.0; n];
        let (mut total, mut pairs, mut any) = (0.0, 0usize, false);
        for i in 0..n {
            for j in 0..n {
                if y[i] > y[j] {
                    let x = sigma * (s[i] - s[j]);
                    total += w[i] * softplus(-x);
                    let lam = -sigma * w[i] / (1.0 + x.exp());
                    g[i] += lam;
                    g[j] -= lam;
                    pairs += 1;
                    any |= w[i] > 0.0;
                }
            }
        }
        if pairs == 0 || !any {
            return (0.0, false, vec![0.0; n]);
        }
        (total / pairs as f64, true, g.iter().map(|v| v / pairs as f64).collect())
    }

    #[test]
    fn weighted_loss_and_gradient_match_reference() {
        let mut rng = Rng(0x13);
        for &(b, n) in &[(1, 2), (3, 5), (4, 17), (2, 40), (5, 9)] {
            for &sigma in &[0.3, 1.0, 5.0] {
                let s: Vec<f64> = (0..b * n).map(|_| (rng.normal() * 3.0 * 8.0).round() / 8.0).collect();
                let y: Vec<f64> = (0..b * n).map(|_| rng.label(3)).collect();
                let mask: Vec<bool> = (0..b * n).map(|k| k % n == 0 || rng.next() < 0.8).collect();
                let w: Vec<f64> = (0..b * n)
                    .map(|k| match (mask[k], rng.int(4)) {
                        (false, 0) => f64::NAN,
                        (false, 1) => f64::INFINITY,
                        (false, _) => -1.0,
                        (true, 0) => 0.0,
                        (true, _) => rng.next() * 3.0,
                    })
                    .collect();
                let batch =
                    Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap().with_weights(Some(&w)).unwrap();
                let (mut l, mut v, mut g) = (vec![9.0; b], vec![false; b], vec![9.0; b * n]);
                ranknet_loss(&batch, sigma, &mut l, &mut v, Some(&mut g)).unwrap();
                for bi in 0..b {
                    let idx: Vec<usize> = (0..n).filter(|&j| mask[bi * n + j]).collect();
                    let pick = |x: &[f64]| idx.iter().map(|&j| x[bi * n + j]).collect::<Vec<f64>>();
                    let (rl, rv, rg) = reference_weighted(&pick(&s), &pick(&y), &pick(&w), sigma);
                    assert_eq!(v[bi], rv);
                    assert!(close(l[bi], rl, 1e-13), "loss {} vs {rl}", l[bi]);
                    for (k, &j) in idx.iter().enumerate() {
                        assert!(close(g[bi * n + j], rg[k], 1e-13), "grad {} vs {}", g[bi * n + j], rg[k]);
                    }
                    assert!((0..n).filter(|&j| !mask[bi * n + j]).all(|j| g[bi * n + j] == 0.0));
                }
                // unit weights: the unweighted bits
                let ones = vec![1.0; b * n];
                let unit =
                    Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap().with_weights(Some(&ones)).unwrap();
                let plain = Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap();
                let run = |batch: &Padded<f64>| {
                    let (mut l, mut v, mut g) = (vec![0.0; b], vec![false; b], vec![0.0; b * n]);
                    ranknet_loss(batch, sigma, &mut l, &mut v, Some(&mut g)).unwrap();
                    (l, v, g)
                };
                let (a, c) = (run(&unit), run(&plain));
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

    /// `reference`'s loss with `x / 16` taken from scores divided by 16, summed as
    /// `softplus / (16 P)`: finite in f64 wherever the mean is.
    fn scaled_reference(s: &[f64], y: &[f64], sigma: f64) -> f64 {
        let n = s.len();
        let pairs = (0..n).flat_map(|i| (0..n).map(move |j| (i, j))).filter(|&(i, j)| y[i] > y[j]).count();
        let mut total = 0.0;
        for i in 0..n {
            for j in 0..n {
                if y[i] > y[j] {
                    let x16 = sigma * (s[i] / 16.0 - s[j] / 16.0); // x / 16
                    total += ((-x16).max(0.0) + (-(16.0 * x16).abs()).exp().ln_1p() / 16.0) / pairs as f64;
                }
            }
        }
        total * 16.0
    }

    #[test]
    fn a_mean_that_fits_comes_out_when_pair_terms_overflow() {
        // Items 0 (score +big, label 0) and 1 (score -big, label 1) among n - 2 items with small
        // scores ordered like their labels 2, 3, ...: the pair (1 over 0) costs 2 sigma big and
        // each (c over 0) sigma big, beyond the dtype's range for sigma > 1, but the mean over
        // the ~n^2/2 pairs fits. It was inf (the pair term overflowed before the 1/P).
        for n in [20usize, 100] {
            let y: Vec<f64> = (0..n).map(|k| k as f64).map(|k| if k < 2.0 { k } else { k + 2.0 }).collect();
            for &sigma in &[2.0, 4.0] {
                let mut s: Vec<f64> = (0..n).map(|k| k as f64 / 100.0).collect();
                (s[0], s[1]) = (3e38, -3e38);
                let want = scaled_reference(&s, &y, sigma);
                let s32: Vec<f32> = s.iter().map(|&v| v as f32).collect();
                let y32: Vec<f32> = y.iter().map(|&v| v as f32).collect();
                let (l, v, g) = run(&s32, &y32, sigma as f32);
                assert!(
                    v && (l as f64 / (want as f32 as f64) - 1.0).abs() < 1e-6,
                    "{n} {sigma}: {l} vs {want}"
                );
                assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
                // float64 at +-0.9 max: the same, one scale up
                (s[0], s[1]) = (0.9 * f64::MAX, -0.9 * f64::MAX);
                let want = scaled_reference(&s, &y, sigma);
                let (l, v, g) = run(&s, &y, sigma);
                assert!(
                    want.is_finite() && v && (l / want - 1.0).abs() < 1e-12,
                    "{n} {sigma}: {l} vs {want}"
                );
                assert!(g.iter().all(|x| x.is_finite()), "{g:?}");
            }
        }
        // Three misordered pairs of 1.2e308 each: mean 1.2e308 although their sum overflows.
        let (l, _, _) = run(&[6e307, 6e307, 6e307, -6e307], &[0.0, 0.0, 0.0, 1.0], 1.0);
        assert!((l / 1.2e308 - 1.0).abs() < 1e-12, "{l}");
        // A mean beyond the range is inf, never NaN; its gradient stays finite.
        let (l, _, g) = run(&[3e38f32, -3e38], &[0.0, 1.0], 2.0);
        assert!(l == f32::INFINITY && g.iter().all(|x| x.is_finite()), "{l} {g:?}");
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
