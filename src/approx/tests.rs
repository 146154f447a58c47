//! Tests of the approximate-rank kernels against a direct O(N^2) evaluation.

use super::*;

use crate::testing::Rng;

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Direct O(N^2) evaluation of r, the loss and (via c and the definition) its gradient.
fn reference(s: &[f64], y: &[f64], t: f64, kind: ApproxLoss) -> (f64, bool, Vec<f64>) {
    reference_weighted(s, y, &vec![1.0; s.len()], t, kind)
}

/// `reference` with per-item weights `w` (SPEC 13): NDCG's gains times `w` (the ideal DCG that
/// of the weighted gains), MRR's `max_i w_i min(y_i, 1) / r_i`, RankMSE's terms times `w`; a list
/// with nothing weighted to rank does not count.
fn reference_weighted(s: &[f64], y: &[f64], w: &[f64], t: f64, kind: ApproxLoss) -> (f64, bool, Vec<f64>) {
    let n = s.len();
    let r: Vec<f64> = (0..n)
        .map(|i| 1.0 + (0..n).filter(|&j| j != i).map(|j| sig((s[j] - s[i]) / t)).sum::<f64>())
        .collect();
    if n < 2 {
        return (0.0, false, vec![0.0; n]);
    }
    let (loss, c): (f64, Vec<f64>) = match kind {
        ApproxLoss::Ndcg { scale_gains } => {
            let g: Vec<f64> = y.iter().zip(w).map(|(&v, &wi)| gain(v, scale_gains) * wi).collect();
            let mut sorted = g.clone();
            sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
            let idcg: f64 = sorted.iter().enumerate().map(|(p, &v)| v / (p as f64 + 2.0).log2()).sum();
            if idcg <= 0.0 {
                return (0.0, false, vec![0.0; n]);
            }
            let dcg: f64 = (0..n).map(|i| g[i] / (1.0 + r[i]).log2()).sum();
            let c = (0..n)
                .map(|i| g[i] * std::f64::consts::LN_2 / ((1.0 + r[i]) * (1.0 + r[i]).ln().powi(2)) / idcg)
                .collect();
            (1.0 - dcg / idcg, c)
        }
        ApproxLoss::Mrr => {
            let v: Vec<f64> = (0..n).map(|i| w[i] * y[i].clamp(0.0, 1.0) / r[i]).collect();
            if (0..n).all(|i| y[i] <= 0.0 || w[i] == 0.0) {
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
            if w.iter().all(|&wi| wi == 0.0) {
                return (0.0, false, vec![0.0; n]);
            }
            let wd = |i: usize| {
                w[i] * match discount {
                    Discount::None => 1.0,
                    Discount::Log2 => 1.0 / (tr[i] + 1.0).log2(),
                    Discount::Reciprocal => 1.0 / tr[i],
                }
            };
            let loss = (0..n).map(|i| wd(i) * (r[i] - tr[i]).powi(2)).sum::<f64>() / n as f64;
            let c = (0..n).map(|i| 2.0 * wd(i) * (r[i] - tr[i]) / n as f64).collect();
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
                    approx_loss(&batch, t, kind, Method::Exact, &mut l, &mut v, Some(&mut g)).unwrap();
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
            Method::Exact,
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
            Method::Exact,
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
        approx_ranks(&batch, 0.7, Method::Exact, &mut r).unwrap();
        let mut g = vec![0.0; b * n];
        approx_ranks_backward(&batch, 0.7, Method::Exact, &c, &mut g).unwrap();
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
                Method::Exact,
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
        approx_loss(&batch, 1.0, kind, Method::Exact, &mut l, &mut v, Some(&mut g)).unwrap();
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
        approx_loss(&batch, 1.0, kind, Method::Exact, &mut l, &mut v, None),
        Err(Error::NonFinite { arg: "scores", list: 0 })
    );
    let ok = [1.0f64, 2.0, 0.0, 1.0];
    let batch = Padded::new(&ok, Some(&y), None, 2, 2).unwrap();
    for t in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(
            approx_loss(&batch, t, kind, Method::Exact, &mut l, &mut v, None).unwrap_err().arg(),
            "temperature"
        );
    }
    let big = [1.0f64, 2000.0, 0.0, 1.0];
    let batch = Padded::new(&ok, Some(&big), None, 2, 2).unwrap();
    let err =
        approx_loss(&batch, 1.0, ApproxLoss::Ndcg { scale_gains: true }, Method::Exact, &mut l, &mut v, None)
            .unwrap_err();
    assert_eq!(err.arg(), "targets");
}

#[test]
fn extreme_temperatures_and_scores_give_no_nan() {
    // The smallest temperature the scale range admits, ties and gaps that overflow.
    let s = [0.0f32, 0.0, 3e38, -3e38, 1.0, 1.0];
    let y = [1.0f32, 0.0, 2.0, 1.0, 0.0, 3.0];
    let t = f32::scale_range().0;
    let batch = Padded::new(&s, Some(&y), None, 1, 6).unwrap();
    let mut r = vec![0.0f32; 6];
    approx_ranks(&batch, t, Method::Exact, &mut r).unwrap();
    // Ties count 1/2 each way; the rest is a hard step at such a small temperature.
    assert_eq!(r, vec![4.5, 4.5, 1.0, 6.0, 2.5, 2.5]);
    for kind in [
        ApproxLoss::Ndcg { scale_gains: true },
        ApproxLoss::Mrr,
        ApproxLoss::RankMse { discount: Discount::Log2 },
    ] {
        for temperature in [t, 1.0, f32::scale_range().1] {
            let (mut l, mut v, mut g) = (vec![0.0f32; 1], vec![false; 1], vec![0.0f32; 6]);
            approx_loss(&batch, temperature, kind, Method::Exact, &mut l, &mut v, Some(&mut g)).unwrap();
            assert!(l[0].is_finite() && g.iter().all(|x| !x.is_nan()), "{kind:?} {temperature} {l:?} {g:?}");
        }
    }
    let mut back = vec![0.0f32; 6];
    approx_ranks_backward(&batch, t, Method::Exact, &[1.0; 6], &mut back).unwrap();
    assert!(back.iter().all(|x| !x.is_nan()), "{back:?}");
    // Subnormal (and other out-of-range) temperatures are rejected, naming the argument.
    for bad in [1e-40f32, 1e-20, 1e20, 0.0] {
        assert_eq!(approx_ranks(&batch, bad, Method::Exact, &mut r).unwrap_err().arg(), "temperature");
    }
    let s64 = [1e308f64, -1e308, 0.0, 0.0];
    let batch = Padded::new(&s64, Some(&[1.0, 0.0, 2.0, 1.0]), None, 1, 4).unwrap();
    let (mut l, mut v, mut g) = (vec![0.0f64; 1], vec![false; 1], vec![0.0f64; 4]);
    approx_loss(
        &batch,
        f64::scale_range().0,
        ApproxLoss::Ndcg { scale_gains: true },
        Method::Exact,
        &mut l,
        &mut v,
        Some(&mut g),
    )
    .unwrap();
    assert!(l[0].is_finite() && g.iter().all(|x| !x.is_nan()), "{l:?} {g:?}");
}

/// Weighted batches (SPEC 13): per-item weights with zeros, padded weights holding NaN, inf and
/// negative values; both methods against the weighted reference, the HVP against central
/// differences of the gradient, and weights of 1 giving the unweighted bits.
#[test]
fn weighted_losses_match_reference_both_methods() {
    let mut rng = Rng(0x5EED_0013);
    for &(b, n) in &[(1, 2), (3, 5), (4, 17), (2, 40), (3, 130)] {
        for &t in &[0.3, 1.0] {
            for &kind in &KINDS {
                let s: Vec<f64> = (0..b * n).map(|_| (rng.normal() * 4.0).round() / 4.0).collect();
                let y: Vec<f64> =
                    (0..b * n).map(|_| if rng.next() < 0.5 { 0.0 } else { rng.label(3) }).collect();
                let mask: Vec<bool> = (0..b * n).map(|k| k % n == 0 || rng.next() < 0.8).collect();
                let w: Vec<f64> = (0..b * n)
                    .map(|k| match (mask[k], rng.int(5)) {
                        (false, 0) => f64::NAN,
                        (false, 1) => f64::INFINITY,
                        (false, _) => -2.0,
                        (true, 0) => 0.0,
                        (true, _) => rng.next() * 3.0,
                    })
                    .collect();
                let batch =
                    Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap().with_weights(Some(&w)).unwrap();
                for method in [Method::Exact, Method::Fast] {
                    let (mut l, mut v, mut g) = (vec![0.0; b], vec![false; b], vec![0.0; b * n]);
                    approx_loss(&batch, t, kind, method, &mut l, &mut v, Some(&mut g)).unwrap();
                    for bi in 0..b {
                        let idx: Vec<usize> = (0..n).filter(|&j| mask[bi * n + j]).collect();
                        let pick = |x: &[f64]| idx.iter().map(|&j| x[bi * n + j]).collect::<Vec<f64>>();
                        let (rl, rv, rg) = reference_weighted(&pick(&s), &pick(&y), &pick(&w), t, kind);
                        let ctx = format!("{kind:?} {method:?} b={bi} n={n} t={t}");
                        assert_eq!(v[bi], rv, "valid {ctx}");
                        assert!(close(l[bi], rl, 1e-10), "loss {} vs {rl} {ctx}", l[bi]);
                        for (k, &j) in idx.iter().enumerate() {
                            assert!(
                                close(g[bi * n + j], rg[k], 1e-9),
                                "grad {} vs {} {ctx}",
                                g[bi * n + j],
                                rg[k]
                            );
                        }
                        assert!((0..n).filter(|&j| !mask[bi * n + j]).all(|j| g[bi * n + j] == 0.0), "{ctx}");
                    }
                    // H v against central differences of the gradient.
                    let dir: Vec<f64> = (0..b * n).map(|_| rng.normal()).collect();
                    let mut hv = vec![0.0; b * n];
                    approx_loss_hvp(&batch, t, kind, method, &dir, &mut hv).unwrap();
                    let h = 1e-5;
                    let grad_at = |sign: f64| {
                        let sp: Vec<f64> = s.iter().zip(&dir).map(|(a, d)| a + sign * h * d).collect();
                        let bp = Padded::new(&sp, Some(&y), Some(&mask), b, n)
                            .unwrap()
                            .with_weights(Some(&w))
                            .unwrap();
                        let (mut l, mut v, mut g) = (vec![0.0; b], vec![false; b], vec![0.0; b * n]);
                        approx_loss(&bp, t, kind, method, &mut l, &mut v, Some(&mut g)).unwrap();
                        g
                    };
                    let (gp, gm) = (grad_at(1.0), grad_at(-1.0));
                    let scale = hv.iter().fold(1e-3f64, |a, x| a.max(x.abs()));
                    for k in 0..b * n {
                        let fd = (gp[k] - gm[k]) / (2.0 * h);
                        // MRR's choice of item may flip within +-h at exact ties of rel / r.
                        if kind != ApproxLoss::Mrr || (fd - hv[k]).abs() < 1e-3 * scale {
                            assert!(
                                (fd - hv[k]).abs() <= 1e-5 * scale,
                                "hvp {kind:?} {method:?} {} vs {fd}",
                                hv[k]
                            );
                        }
                    }
                }
                // Weights of 1 everywhere: the unweighted bits.
                let ones = vec![1.0; b * n];
                let plain = Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap();
                let unit = plain.with_weights(Some(&ones)).unwrap();
                for method in [Method::Exact, Method::Fast] {
                    let run = |batch: &Padded<f64>| {
                        let (mut l, mut v, mut g) = (vec![0.0; b], vec![false; b], vec![0.0; b * n]);
                        approx_loss(batch, t, kind, method, &mut l, &mut v, Some(&mut g)).unwrap();
                        (l, v, g)
                    };
                    let ((l0, v0, g0), (l1, v1, g1)) = (run(&plain), run(&unit));
                    assert_eq!(v0, v1);
                    assert!(l0.iter().zip(&l1).all(|(a, c)| a.to_bits() == c.to_bits()), "{kind:?}");
                    assert!(g0.iter().zip(&g1).all(|(a, c)| a.to_bits() == c.to_bits()), "{kind:?}");
                }
            }
        }
    }
}

#[test]
fn weights_that_zero_a_list_leave_it_out() {
    // List 0: its only relevant item weighs 0; list 1: every weight 0; list 2: counts.
    let s = [1.0f64, 2.0, 3.0, 0.5, 0.1, 0.2, 0.3, 0.9, 0.4];
    let y = [1.0f64, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.0, 2.0];
    let w = [0.0f64, 1.0, 2.0, 0.0, 0.0, 0.0, 1.0, 0.5, 2.0];
    let batch = Padded::new(&s, Some(&y), None, 3, 3).unwrap().with_weights(Some(&w)).unwrap();
    for kind in KINDS {
        let (mut l, mut v, mut g) = (vec![9.0; 3], vec![true; 3], vec![9.0; 9]);
        approx_loss(&batch, 1.0, kind, Method::Exact, &mut l, &mut v, Some(&mut g)).unwrap();
        let rank_mse = matches!(kind, ApproxLoss::RankMse { .. });
        // RankMSE weighs every item, so list 0 (weights 0, 1, 2) still counts.
        assert_eq!(v, vec![rank_mse, false, true], "{kind:?}");
        assert_eq!(&l[1..2], &[0.0]);
        assert!(g[3..6].iter().all(|&x| x == 0.0));
        if !rank_mse {
            assert_eq!((l[0], &g[..3]), (0.0, &[0.0; 3][..]), "{kind:?}");
        }
    }
}
