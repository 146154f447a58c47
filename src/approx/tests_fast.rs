//! Fast summation (and the new exact kernels) against plain float64 pair sums.

use super::*;

use crate::testing::Rng;

fn sig(d: f64) -> f64 {
    if d >= 0.0 {
        1.0 / (1.0 + (-d).exp())
    } else {
        let e = d.exp();
        e / (1.0 + e)
    }
}

/// (sigma'(d), sigma''(d)) in full precision.
fn sig12(d: f64) -> (f64, f64) {
    let e = (-d.abs()).exp();
    let q = 1.0 / (1.0 + e);
    let d1 = e * q * q;
    let t = (-d.abs()).exp_m1() * q;
    (d1, d1 * if d >= 0.0 { t } else { -t })
}

/// Plain float64 pair sums of one list: ranks, `J v` and its absolute-value scale.
struct Pass1 {
    r: Vec<f64>,
    jv: Vec<f64>,
    sjv: Vec<f64>,
}

fn pass1(s: &[f64], t: f64, v: &[f64]) -> Pass1 {
    let n = s.len();
    let (mut r, mut jv, mut sjv) = (vec![0.5; n], vec![0.0; n], vec![0.0; n]);
    for i in 0..n {
        for j in 0..n {
            let d = (s[j] - s[i]) / t;
            r[i] += sig(d);
            let (d1, _) = sig12(d);
            jv[i] += d1 * (v[j] - v[i]) / t;
            sjv[i] += d1 * (v[j].abs() + v[i].abs()) / t;
        }
    }
    Pass1 { r, jv, sjv }
}

/// `J^T c` and the double backward `h(c, v)`, each with its absolute-value scale `S` and its
/// saturation scale `A` (the same sum with every kernel value replaced by 1). The double
/// backward's `S` takes the envelope `sigma' >= |sigma''|` of its kernel (see `mod.rs`).
struct Pass2 {
    g: Vec<f64>,
    sg: Vec<f64>,
    ag: Vec<f64>,
    h: Vec<f64>,
    sh: Vec<f64>,
    ah: Vec<f64>,
}

fn pass2(s: &[f64], t: f64, c: &[f64], v: &[f64]) -> Pass2 {
    let n = s.len();
    let z = || vec![0.0; n];
    let (mut g, mut sg, mut ag, mut h, mut sh, mut ah) = (z(), z(), z(), z(), z(), z());
    for k in 0..n {
        for i in 0..n {
            let (d1, _) = sig12((s[i] - s[k]) / t);
            g[k] += d1 * (c[i] - c[k]) / t;
            sg[k] += d1 * (c[i].abs() + c[k].abs()) / t;
            ag[k] += (c[i].abs() + c[k].abs()) / t;
            let (e1, d2) = sig12((s[k] - s[i]) / t);
            let cv = (c[i].abs() + c[k].abs()) * (v[k].abs() + v[i].abs()) / t / t;
            h[k] += d2 * (c[i] - c[k]) * (v[k] - v[i]) / t / t;
            sh[k] += e1 * cv;
            ah[k] += cv;
        }
    }
    Pass2 { g, sg, ag, h, sh, ah }
}

/// `e^-D`: the most a saturated pair's kernel value can be.
fn sat() -> f64 {
    (-FAST_SATURATION).exp()
}

/// The error of `a` against `want`, in units of `1e-10`-style relative error:
/// `max_k max(0, |a_k - want_k| - e^-D max A) / max S`.
fn err_scaled(a: &[f64], want: &[f64], s: &[f64], sat_scale: &[f64]) -> f64 {
    let allow = sat() * max_abs(sat_scale);
    let scale = max_abs(s).max(f64::MIN_POSITIVE);
    (0..a.len()).map(|k| ((a[k] - want[k]).abs() - allow).max(0.0) / scale).fold(0.0, f64::max)
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |a, &x| a.max(x.abs()))
}

/// `max_k |a_k - b_k| / scale_k`.
fn err_by(a: &[f64], b: &[f64], scale: impl Fn(usize) -> f64) -> f64 {
    (0..a.len()).map(|k| (a[k] - b[k]).abs() / scale(k)).fold(0.0, f64::max)
}

const DISTS: [&str; 7] = ["normal", "cauchy", "clusters", "ties", "equal", "offset", "logspread"];

fn scores(rng: &mut Rng, dist: &str, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| match dist {
            "normal" => rng.normal(),
            "cauchy" => (std::f64::consts::PI * (rng.next() - 0.5)).tan(),
            "clusters" => 0.05 * rng.normal() + if i % 2 == 0 { 0.0 } else { 50.0 },
            "ties" => (rng.normal() * 4.0).round() / 4.0,
            "equal" => 0.3,
            "offset" => 1e6 + rng.normal(),
            "logspread" => {
                let sign = if rng.next() < 0.5 { -1.0 } else { 1.0 };
                sign * 10f64.powf(60.0 * rng.next() - 30.0)
            }
            _ => unreachable!(),
        })
        .collect()
}

const TEMPS: [f64; 5] = [0.01, 0.1, 1.0, 10.0, 1000.0];

/// One list through every batch kernel with `method`, f64: (ranks, J^T c, h(c, v)).
fn kernels(s: &[f64], t: f64, c: &[f64], v: &[f64], method: Method) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = s.len();
    let batch = Padded::new(s, None, None, 1, n).unwrap();
    let (mut r, mut g, mut h) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    approx_ranks(&batch, t, method, &mut r).unwrap();
    approx_ranks_backward(&batch, t, method, c, &mut g).unwrap();
    approx_ranks_double_backward(&batch, t, method, c, v, &mut h).unwrap();
    (r, g, h)
}

/// Worst errors seen, per distribution: (ranks, backward, double backward, loss, loss grad, hvp).
type Worst = std::collections::BTreeMap<&'static str, [f64; 6]>;

fn note(worst: &mut Worst, dist: &'static str, k: usize, e: f64) {
    let w = worst.entry(dist).or_insert([0.0; 6]);
    w[k] = w[k].max(e);
}

const LOSSES: [ApproxLoss; 4] = [
    ApproxLoss::Ndcg { scale_gains: true },
    ApproxLoss::Mrr,
    ApproxLoss::RankMse { discount: Discount::None },
    ApproxLoss::RankMse { discount: Discount::Log2 },
];

/// The f64 contract on one list: every kernel, every loss, against the plain pair sums.
fn check_list_f64(rng: &mut Rng, dist: &'static str, s: &[f64], t: f64, worst: &mut Worst, losses: bool) {
    let n = s.len();
    let c: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let v: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let p1 = pass1(s, t, &v);
    let p2 = pass2(s, t, &c, &v);
    let (r, g, h) = kernels(s, t, &c, &v, Method::Fast);
    let ctx = format!("{dist} n={n} T={t}");
    let e = err_by(&r, &p1.r, |k| p1.r[k].abs().max(1.0));
    note(worst, dist, 0, e);
    assert!(e <= 1e-10, "ranks {ctx}: {e:e}");
    let e = err_scaled(&g, &p2.g, &p2.sg, &p2.ag);
    note(worst, dist, 1, e);
    assert!(e <= 1e-10, "backward {ctx}: {e:e}");
    let e = err_scaled(&h, &p2.h, &p2.sh, &p2.ah);
    note(worst, dist, 2, e);
    assert!(e <= 1e-10, "double backward {ctx}: {e:e}");
    // The exact kernels against the same sums (the double backward is new).
    let (re, ge, he) = kernels(s, t, &c, &v, Method::Exact);
    assert!(err_by(&re, &p1.r, |k| p1.r[k].abs().max(1.0)) <= 1e-12, "exact ranks {ctx}");
    assert!(err_scaled(&ge, &p2.g, &p2.sg, &p2.ag) <= 1e-12, "exact vjp {ctx}");
    assert!(err_scaled(&he, &p2.h, &p2.sh, &p2.ah) <= 1e-12, "exact dbl {ctx}");
    if !losses {
        return;
    }
    let y: Vec<f64> = (0..n).map(|_| if rng.next() < 0.3 { rng.label(3) } else { 0.0 }).collect();
    let batch = Padded::new(s, Some(&y), None, 1, n).unwrap();
    for kind in LOSSES {
        // The reference: c and D from the plain ranks, then the plain sums.
        let mut lw = LossWork::default();
        let (mut cr, mut dr) = (vec![0.0; n], vec![0.0; n]);
        let counts = loss_rows(kind, &y, &[], &mut lw);
        let want = if counts {
            loss_from_ranks(kind, s, &y, &[], &p1.r, &mut lw, &mut cr, Some(&mut dr))
        } else {
            0.0
        };
        let q2 = pass2(s, t, &cr, &v);
        let u: Vec<f64> = (0..n).map(|i| dr[i] * p1.jv[i]).collect();
        let su: Vec<f64> = (0..n).map(|i| dr[i].abs() * p1.sjv[i]).collect();
        let q3 = pass2(s, t, &u, &v);
        let q3s = pass2(s, t, &su, &v);
        let hvp: Vec<f64> = (0..n).map(|k| q3.g[k] + q2.h[k]).collect();
        let shvp = vec![max_abs(&q3s.sg) + max_abs(&q2.sh)];
        let ahvp = vec![max_abs(&q3s.ag) + max_abs(&q2.ah)];
        let (mut l, mut ok, mut lg) = (vec![0.0], vec![false], vec![0.0; n]);
        approx_loss(&batch, t, kind, Method::Fast, &mut l, &mut ok, Some(&mut lg)).unwrap();
        let mut hv = vec![0.0; n];
        approx_loss_hvp(&batch, t, kind, Method::Fast, &v, &mut hv).unwrap();
        assert_eq!(ok[0], counts, "{kind:?} {ctx}");
        if !counts {
            assert!(lg.iter().chain(&hv).all(|&x| x == 0.0));
            continue;
        }
        let e = (l[0] - want).abs() / want.abs().max(1.0);
        note(worst, dist, 3, e);
        assert!(e <= 1e-10, "{kind:?} loss {ctx}: {} vs {want}", l[0]);
        let e = err_scaled(&lg, &q2.g, &q2.sg, &q2.ag);
        note(worst, dist, 4, e);
        assert!(e <= 1e-10, "{kind:?} grad {ctx}: {e:e}");
        let e = err_scaled(&hv, &hvp, &shvp, &ahvp);
        note(worst, dist, 5, e);
        assert!(e <= 1e-10, "{kind:?} hvp {ctx}: {e:e}");
        // The exact method agrees with the same reference.
        let mut hx = vec![0.0; n];
        approx_loss_hvp(&batch, t, kind, Method::Exact, &v, &mut hx).unwrap();
        assert!(err_scaled(&hx, &hvp, &shvp, &ahvp) <= 1e-12, "{kind:?} exact hvp {ctx}");
    }
}

#[test]
fn fast_matches_pair_sums_f64() {
    let mut rng = Rng(0x5EED_F00D);
    let mut worst = Worst::new();
    for dist in DISTS {
        for t in TEMPS {
            for n in [1, 2, 3, 40, 300, 1500] {
                let s = scores(&mut rng, dist, n);
                check_list_f64(&mut rng, dist, &s, t, &mut worst, n <= 300 || t == 1.0);
            }
        }
    }
    for (d, w) in &worst {
        eprintln!(
            "{d:>10}: ranks {:.1e} vjp {:.1e} dbl {:.1e} loss {:.1e} grad {:.1e} hvp {:.1e}",
            w[0], w[1], w[2], w[3], w[4], w[5]
        );
    }
}

#[test]
fn fast_matches_pair_sums_f64_long() {
    // A few thousand items in every distribution, and one ~20k list (all in a few cells).
    let mut rng = Rng(0xFA57);
    let mut worst = Worst::new();
    for dist in DISTS {
        let s = scores(&mut rng, dist, 4000);
        let t = [0.1, 1.0, 10.0][rng.int(3)];
        check_list_f64(&mut rng, dist, &s, t, &mut worst, false);
    }
    let s = scores(&mut rng, "normal", 20_000);
    check_list_f64(&mut rng, "normal", &s, 10.0, &mut worst, false);
    for (d, w) in &worst {
        eprintln!("{d:>10}: ranks {:.1e} vjp {:.1e} dbl {:.1e}", w[0], w[1], w[2]);
    }
}

#[test]
fn fast_f32_is_no_worse_than_exact_f32() {
    let mut rng = Rng(0xF32);
    for dist in DISTS {
        for t in TEMPS {
            for n in [2, 50, 700] {
                let s: Vec<f32> = scores(&mut rng, dist, n).iter().map(|&x| x as f32).collect();
                let c: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
                let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
                let wide = |x: &[f32]| x.iter().map(|&x| x as f64).collect::<Vec<f64>>();
                let (s64, c64, v64) = (wide(&s), wide(&c), wide(&v));
                let t32 = t as f32;
                let p1 = pass1(&s64, t32 as f64, &v64);
                let p2 = pass2(&s64, t32 as f64, &c64, &v64);
                let batch = Padded::new(&s, None, None, 1, n).unwrap();
                let run = |method| {
                    let (mut r, mut g, mut h) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
                    approx_ranks(&batch, t32, method, &mut r).unwrap();
                    approx_ranks_backward(&batch, t32, method, &c, &mut g).unwrap();
                    approx_ranks_double_backward(&batch, t32, method, &c, &v, &mut h).unwrap();
                    (wide(&r), wide(&g), wide(&h))
                };
                let (fast, exact) = (run(Method::Fast), run(Method::Exact));
                let ctx = format!("{dist} n={n} T={t}");
                let sc = |k: usize| p1.r[k].abs().max(1.0);
                let (ef, ee) = (err_by(&fast.0, &p1.r, sc), err_by(&exact.0, &p1.r, sc));
                assert!(ef <= (4.0 * ee).max(1e-6), "ranks {ctx}: fast {ef:e} exact {ee:e}");
                let grads =
                    [(&fast.1, &exact.1, &p2.g, &p2.sg, &p2.ag), (&fast.2, &exact.2, &p2.h, &p2.sh, &p2.ah)];
                for (what, (f, e, want, s, a)) in ["vjp", "dbl"].iter().zip(grads) {
                    let (ef, ee) = (err_scaled(f, want, s, a), err_scaled(e, want, s, a));
                    assert!(ef <= (4.0 * ee).max(1e-6), "{what} {ctx}: fast {ef:e} exact {ee:e}");
                }
            }
        }
    }
}

#[test]
fn fast_f32_losses_are_no_worse_than_exact_f32() {
    // Losses, gradients and HVPs in float32 against the float64 pair sums of the same inputs.
    let mut rng = Rng(0xF33);
    for dist in DISTS {
        for t in [0.1f32, 1.0, 10.0] {
            let n = 600;
            let s: Vec<f32> = scores(&mut rng, dist, n).iter().map(|&x| x as f32).collect();
            let y: Vec<f32> = (0..n).map(|_| rng.label(3) as f32).collect();
            let v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            let wide = |x: &[f32]| x.iter().map(|&x| x as f64).collect::<Vec<f64>>();
            let (s64, y64, v64, t64) = (wide(&s), wide(&y), wide(&v), t as f64);
            let p1 = pass1(&s64, t64, &v64);
            for kind in LOSSES {
                let mut lw = LossWork::default();
                let (mut cr, mut dr) = (vec![0.0; n], vec![0.0; n]);
                assert!(loss_rows(kind, &y64, &[], &mut lw));
                let want = loss_from_ranks(kind, &s64, &y64, &[], &p1.r, &mut lw, &mut cr, Some(&mut dr));
                let q2 = pass2(&s64, t64, &cr, &v64);
                let u: Vec<f64> = (0..n).map(|i| dr[i] * p1.jv[i]).collect();
                let su: Vec<f64> = (0..n).map(|i| dr[i].abs() * p1.sjv[i]).collect();
                let (q3, q3s) = (pass2(&s64, t64, &u, &v64), pass2(&s64, t64, &su, &v64));
                let hvp: Vec<f64> = (0..n).map(|k| q3.g[k] + q2.h[k]).collect();
                let shvp = vec![max_abs(&q3s.sg) + max_abs(&q2.sh)];
                let ahvp = vec![max_abs(&q3s.ag) + max_abs(&q2.ah)];
                let b32 = Padded::new(&s, Some(&y), None, 1, n).unwrap();
                let run = |method| {
                    let (mut l, mut ok, mut g, mut h) =
                        (vec![0.0f32], vec![false], vec![0.0f32; n], vec![0.0f32; n]);
                    approx_loss(&b32, t, kind, method, &mut l, &mut ok, Some(&mut g)).unwrap();
                    approx_loss_hvp(&b32, t, kind, method, &v, &mut h).unwrap();
                    (wide(&l), wide(&g), wide(&h))
                };
                let (fast, exact) = (run(Method::Fast), run(Method::Exact));
                let ctx = format!("{kind:?} {dist} T={t}");
                let el = |x: &[f64]| (x[0] - want).abs() / want.abs().max(1.0);
                assert!(el(&fast.0) <= (4.0 * el(&exact.0)).max(1e-6), "loss {ctx}");
                let (ef, ee) =
                    (err_scaled(&fast.1, &q2.g, &q2.sg, &q2.ag), err_scaled(&exact.1, &q2.g, &q2.sg, &q2.ag));
                assert!(ef <= (4.0 * ee).max(1e-6), "grad {ctx}: fast {ef:e} exact {ee:e}");
                let (ef, ee) =
                    (err_scaled(&fast.2, &hvp, &shvp, &ahvp), err_scaled(&exact.2, &hvp, &shvp, &ahvp));
                assert!(ef <= (4.0 * ee).max(1e-6), "hvp {ctx}: fast {ef:e} exact {ee:e}");
            }
        }
    }
}

#[test]
fn extreme_spreads_stay_finite_and_exact() {
    // Scores 1e-30 to 1e30 apart, values near +-1e300 with the smallest temperature.
    let tiny = f64::scale_range().0;
    let cases: Vec<(Vec<f64>, f64)> = vec![
        (vec![1e300, -1e300, 1.7e308, -1.7e308, 0.0, 0.0, 1e-300, 5.0], tiny),
        (vec![1e300, -1e300, 1.7e308, -1.7e308, 0.0, 0.0, 1e-300, 5.0], 1.0),
        ((0..100).map(|i| 1e300 + i as f64 * 1e284).collect(), tiny),
        ((0..100).map(|i| (i as f64 - 50.0) * 1e-30).collect(), 1e-30),
        ((0..300).map(|i| ((i % 7) as f64 - 3.0) * 1e30).collect(), 1e-3),
    ];
    for (s, t) in cases {
        let n = s.len();
        let c: Vec<f64> = (0..n).map(|i| (i % 5) as f64 - 2.0).collect();
        let v: Vec<f64> = (0..n).map(|i| (i % 3) as f64 - 1.0).collect();
        let (r, g, h) = kernels(&s, t, &c, &v, Method::Fast);
        let (re, ge, he) = kernels(&s, t, &c, &v, Method::Exact);
        assert!(r.iter().chain(&g).chain(&h).all(|x| x.is_finite()), "{r:?} {g:?} {h:?}");
        for k in 0..n {
            assert!((r[k] - re[k]).abs() <= 1e-10 * re[k].abs().max(1.0), "{k}: {} vs {}", r[k], re[k]);
        }
        let p2 = pass2(&s, t, &c, &v);
        assert!(err_scaled(&g, &p2.g, &p2.sg, &p2.ag) <= 1e-10, "{g:?} {:?}", p2.g);
        assert!(err_scaled(&h, &p2.h, &p2.sh, &p2.ah) <= 1e-10, "{h:?} {:?}", p2.h);
        assert!(
            err_scaled(&ge, &p2.g, &p2.sg, &p2.ag) <= 1e-12
                && err_scaled(&he, &p2.h, &p2.sh, &p2.ah) <= 1e-12
        );
    }
    let s = [0.0f32, 0.0, 3e38, -3e38, 1.0, 1.0];
    let batch = Padded::new(&s, None, None, 1, 6).unwrap();
    let mut r = vec![0.0f32; 6];
    approx_ranks(&batch, f32::scale_range().0, Method::Fast, &mut r).unwrap();
    assert_eq!(r, vec![4.5, 4.5, 1.0, 6.0, 2.5, 2.5]);
}

#[test]
fn edge_lists_and_padding() {
    // Empty lists, one-item lists, all-equal lists; padded items hold garbage.
    let (b, n) = (5, 6);
    let s = [
        [9.0, f64::NAN, 1.0, 1.0, 1.0, 1.0],
        [f64::INFINITY, 2.0, -1.0, 3.0, 3.0, 0.5],
        [0.0; 6],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        [7.0; 6],
    ]
    .concat();
    let mask = [
        [false; 6],
        [false, true, true, true, true, true],
        [true; 6],
        [false, false, true, false, false, false],
        [true, false, true, false, true, false],
    ]
    .concat();
    let y: Vec<f64> = (0..b * n).map(|k| (k % 3) as f64).collect();
    let other: Vec<f64> = (0..b * n).map(|k| if mask[k] { (k % 4) as f64 - 1.5 } else { f64::NAN }).collect();
    let batch = Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap();
    for method in [Method::Exact, Method::Fast, Method::Auto] {
        let mut out = vec![vec![7.0; b * n]; 5];
        approx_ranks(&batch, 1.0, method, &mut out[0]).unwrap();
        approx_ranks_backward(&batch, 1.0, method, &other, &mut out[1]).unwrap();
        approx_ranks_double_backward(&batch, 1.0, method, &other, &other, &mut out[2]).unwrap();
        let (mut l, mut ok) = (vec![0.0; b], vec![false; b]);
        approx_loss(&batch, 1.0, ApproxLoss::Mrr, method, &mut l, &mut ok, Some(&mut out[3])).unwrap();
        approx_loss_hvp(&batch, 1.0, ApproxLoss::Mrr, method, &other, &mut out[4]).unwrap();
        for o in &out {
            assert!(o.iter().zip(&mask).all(|(x, &m)| x.is_finite() && (m || *x == 0.0)), "{method:?} {o:?}");
        }
        // All-equal list: ranks (m + 1) / 2; a one-item list: 1.
        assert!(out[0][12..18].iter().all(|&r| r == 3.5), "{:?}", &out[0][12..18]);
        assert_eq!(out[0][20], 1.0);
        assert_eq!((ok[0], ok[3]), (false, false));
    }
}

/// Bitwise equality.
fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn same_bits_for_any_thread_count() {
    let mut rng = Rng(4242);
    // A batch of mixed lists and one list of 200k (split over the pool).
    let cases: Vec<(usize, usize, f64)> = vec![(6, 3000, 1.0), (1, 200_000, 1.0), (1, 200_000, 0.01)];
    for (b, n, t) in cases {
        let s: Vec<f32> = (0..b * n).map(|_| rng.normal() as f32).collect();
        let y: Vec<f32> = (0..b * n).map(|_| rng.label(4) as f32).collect();
        let v: Vec<f32> = (0..b * n).map(|_| rng.normal() as f32).collect();
        let batch = Padded::new(&s, Some(&y), None, b, n).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (mut l, mut ok, mut g) = (vec![0.0f32; b], vec![false; b], vec![0.0f32; b * n]);
                let kind = ApproxLoss::Ndcg { scale_gains: true };
                approx_loss(&batch, t as f32, kind, Method::Fast, &mut l, &mut ok, Some(&mut g)).unwrap();
                let mut hv = vec![0.0f32; b * n];
                approx_loss_hvp(&batch, t as f32, kind, Method::Fast, &v, &mut hv).unwrap();
                let mut r = vec![0.0f32; b * n];
                approx_ranks(&batch, t as f32, Method::Fast, &mut r).unwrap();
                [l, g, hv, r].map(|x| x.iter().map(|&x| x as f64).collect::<Vec<f64>>())
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            let other = run(threads);
            for (a, b) in one.iter().zip(&other) {
                assert!(same_bits(a, b), "{threads} threads, n={n}");
            }
        }
    }
}

#[test]
fn auto_is_exact_below_the_cutoff_and_fast_above() {
    let mut rng = Rng(31337);
    let n = FAST_MIN_N + 10;
    let b = 4;
    let s: Vec<f64> = (0..b * n).map(|_| rng.normal()).collect();
    let y: Vec<f64> = (0..b * n).map(|_| rng.label(3)).collect();
    let v: Vec<f64> = (0..b * n).map(|_| rng.normal()).collect();
    // Lists of FAST_MIN_N - 1, FAST_MIN_N, FAST_MIN_N + 10 and 5 real items.
    let real = [FAST_MIN_N - 1, FAST_MIN_N, n, 5];
    let mask: Vec<bool> = (0..b * n).map(|k| k % n < real[k / n]).collect();
    let batch = Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap();
    let run = |method| {
        let mut out = vec![vec![0.0; b * n]; 4];
        approx_ranks(&batch, 0.5, method, &mut out[0]).unwrap();
        approx_ranks_backward(&batch, 0.5, method, &v, &mut out[1]).unwrap();
        approx_loss_hvp(
            &batch,
            0.5,
            ApproxLoss::RankMse { discount: Discount::Log2 },
            method,
            &v,
            &mut out[2],
        )
        .unwrap();
        let (mut l, mut ok) = (vec![0.0; b], vec![false; b]);
        approx_loss(
            &batch,
            0.5,
            ApproxLoss::Ndcg { scale_gains: true },
            method,
            &mut l,
            &mut ok,
            Some(&mut out[3]),
        )
        .unwrap();
        out.push(l);
        out
    };
    let (auto, exact, fast) = (run(Method::Auto), run(Method::Exact), run(Method::Fast));
    for (k, ((a, e), f)) in auto.iter().zip(&exact).zip(&fast).enumerate() {
        for bi in 0..b {
            let rows =
                |x: &Vec<f64>| if k == 4 { x[bi..bi + 1].to_vec() } else { x[bi * n..(bi + 1) * n].to_vec() };
            let want = if real[bi] >= FAST_MIN_N { f } else { e };
            assert!(same_bits(&rows(a), &rows(want)), "output {k} list {bi}");
        }
    }
    assert!(!same_bits(&exact[0], &fast[0]));
}

#[test]
fn exact_hvp_matches_finite_differences() {
    let mut rng = Rng(777);
    let (b, n) = (3, 30);
    for kind in KINDS_ALL {
        for t in [0.3, 2.0] {
            let s: Vec<f64> = (0..b * n).map(|_| rng.normal()).collect();
            let y: Vec<f64> = (0..b * n).map(|_| rng.label(3)).collect();
            let v: Vec<f64> = (0..b * n).map(|_| rng.normal()).collect();
            let mask: Vec<bool> = (0..b * n).map(|k| k % n < 25 || rng.next() < 0.5).collect();
            let grad = |s: &[f64]| {
                let batch = Padded::new(s, Some(&y), Some(&mask), b, n).unwrap();
                let (mut l, mut ok, mut g) = (vec![0.0; b], vec![false; b], vec![0.0; b * n]);
                approx_loss(&batch, t, kind, Method::Exact, &mut l, &mut ok, Some(&mut g)).unwrap();
                g
            };
            let eps = 1e-5;
            let sp: Vec<f64> = (0..b * n).map(|k| s[k] + eps * v[k]).collect();
            let sm: Vec<f64> = (0..b * n).map(|k| s[k] - eps * v[k]).collect();
            let (gp, gm) = (grad(&sp), grad(&sm));
            let fd: Vec<f64> = (0..b * n).map(|k| (gp[k] - gm[k]) / (2.0 * eps)).collect();
            let batch = Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap();
            for method in [Method::Exact, Method::Fast] {
                let mut hv = vec![0.0; b * n];
                approx_loss_hvp(&batch, t, kind, method, &v, &mut hv).unwrap();
                let scale = max_abs(&fd).max(1e-12);
                for k in 0..b * n {
                    assert!(
                        (hv[k] - fd[k]).abs() <= 1e-6 * scale,
                        "{kind:?} {method:?} T={t} {k}: {} vs {}",
                        hv[k],
                        fd[k]
                    );
                }
            }
        }
    }
}

const KINDS_ALL: [ApproxLoss; 6] = [
    ApproxLoss::Ndcg { scale_gains: true },
    ApproxLoss::Ndcg { scale_gains: false },
    ApproxLoss::Mrr,
    ApproxLoss::RankMse { discount: Discount::None },
    ApproxLoss::RankMse { discount: Discount::Log2 },
    ApproxLoss::RankMse { discount: Discount::Reciprocal },
];

#[test]
fn mrr_choice_ignores_rank_differences_within_tolerance() {
    // Two relevance levels whose rel / r differ by less than the tolerance: the lower index
    // wins, whichever is larger by a hair.
    let s = [0.0f64, 0.0, -1.0];
    let y = [0.5f64, 1.0, 0.0];
    let r = [1.0f64, 2.0 * (1.0 - 1e-12), 3.0];
    let mut lw = LossWork::default();
    assert!(loss_rows(ApproxLoss::Mrr, &y, &[], &mut lw));
    let mut c = vec![0.0; 3];
    let loss = loss_from_ranks(ApproxLoss::Mrr, &s, &y, &[], &r, &mut lw, &mut c, None);
    assert_eq!(loss, 0.5);
    assert!(c[0] > 0.0 && c[1] == 0.0);
    // f32: a relative tolerance of 1e-5.
    let y32 = [0.5f32, 1.0, 0.0];
    let r32 = [1.0f32, 2.0 * (1.0 - 4e-6), 3.0];
    let mut c32 = vec![0.0f32; 3];
    loss_rows(ApproxLoss::Mrr, &y32, &[], &mut lw);
    loss_from_ranks(ApproxLoss::Mrr, &[0.0f32, 0.0, -1.0], &y32, &[], &r32, &mut lw, &mut c32, None);
    assert!(c32[0] > 0.0 && c32[1] == 0.0);
}

#[test]
fn constants_are_consistent() {
    assert_eq!(FAST_WINDOW as f64, (FAST_SATURATION / FAST_CELL).ceil() + 1.0);
    const { assert!(FAST_MIN_SEGMENT >= 1 && FAST_MIN_OCCUPANCY >= 1 && FAST_MIN_N >= 2) };
    assert_eq!(Method::parse("auto"), Some(Method::Auto));
    assert_eq!(Method::parse("Fast"), None);
}
