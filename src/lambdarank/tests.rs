//! Tests of the LambdaRank kernels against a direct transcription of the per-list pseudocode.

use super::list::{list_lambdas, Work};
use super::sort::sort_desc;
use super::*;
use crate::float::Isa;

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
                LambdaMetric::Ndcg => (g(h) - g(l)) * (disc(ph) - disc(pl)).abs() * inv,
                LambdaMetric::Mrr => {
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
            let x = -o.sigma * ds; // softplus(x), stable
            loss += delta * (x.max(0.0) + (-x.abs()).exp().ln_1p());
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
    for metric in [LambdaMetric::Ndcg, LambdaMetric::Mrr] {
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
    for metric in [LambdaMetric::Ndcg, LambdaMetric::Mrr] {
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
    if !Isa::detect().has_avx2() {
        return;
    }
    let mut rng = Rng(2024);
    let gain = default_label_gain();
    for metric in [LambdaMetric::Ndcg, LambdaMetric::Mrr] {
        for &(norm, spread) in &[(true, 1.0), (false, 1.0), (true, 500.0)] {
            for m in [2usize, 3, 5, 8, 33, 101] {
                let s: Vec<f64> = (0..m).map(|_| (rng.next() * 8.0).floor() * spread / 4.0).collect();
                let y: Vec<f64> = (0..m).map(|_| rng.int(4) as f64).collect();
                let o = LambdaOptions { sigma: 1.1, truncation: 20, norm, metric };
                let disc = discounts(m);
                let run = |isa: Isa| {
                    let mut w = Work::default();
                    w.rs.extend(&s);
                    w.ry.extend(&y);
                    w.rg.extend(y.iter().map(|&v| gain[v as usize]));
                    list_lambdas::<true>(isa, &mut w, &disc, &o, Some(&gain));
                    (w.grad, w.hess)
                };
                let (a, b) = (run(Isa::Portable), run(Isa::Avx2));
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
            let (mut keys, mut idx) = (Vec::new(), Vec::new());
            sort_desc(&s, &mut keys, &mut idx);
            let mut want: Vec<usize> = (0..m).collect();
            want.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap());
            assert_eq!(idx, want, "m={m} case={case}");
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
    assert_eq!(run(&s, &y, &[2, -1, 3], &gain, None, &o).arg(), "group");
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
    for metric in [LambdaMetric::Ndcg, LambdaMetric::Mrr] {
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
                        lambdarank_gradients(&sr, &yr, &[sr.len() as i64], &gain, None, &o, &mut gg, &mut hh)
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
    lambdarank_loss(&batch, Gains::Exp2, &LambdaOptions::default(), &mut l, &mut v, Some(&mut g)).unwrap();
    assert!(v[0] && l[0] > 0.0 && g.iter().all(|x| x.is_finite()));
    let big = [0.0f32, 1001.0, 0.0, 0.0];
    let batch = Padded::new(&s, Some(&big), None, 1, 4).unwrap();
    let e =
        lambdarank_loss(&batch, Gains::Exp2, &LambdaOptions::default(), &mut l, &mut v, None).unwrap_err();
    assert_eq!(e.arg(), "targets");
}

#[test]
fn extreme_scores_and_sigma_give_no_nan() {
    let s = [1e308f64, -1e308, 0.0, 1.0, 1.0];
    let y = [0.0f64, 2.0, 1.0, 0.0, 3.0];
    let gain = default_label_gain();
    for metric in [LambdaMetric::Ndcg, LambdaMetric::Mrr] {
        for norm in [true, false] {
            let o = LambdaOptions { sigma: 1.0, truncation: usize::MAX, norm, metric };
            let batch = Padded::new(&s, Some(&y), None, 1, 5).unwrap();
            let (mut l, mut v, mut g) = (vec![0.0; 1], vec![false; 1], vec![0.0; 5]);
            lambdarank_loss(&batch, Gains::Exp2, &o, &mut l, &mut v, Some(&mut g)).unwrap();
            assert!(v[0] && g.iter().all(|x| x.is_finite()), "{o:?} {g:?}");
            // With norm, each pair's loss is bounded by sigma * delta: finite. Without, a
            // misordered pair 2e308 apart truly costs ~2e308 * delta: inf, but never NaN.
            assert!(if norm { l[0].is_finite() } else { !l[0].is_nan() }, "{o:?} {l:?}");
            let (mut gg, mut hh) = (vec![0.0; 5], vec![0.0; 5]);
            lambdarank_gradients(&s, &y, &[5], &gain, None, &o, &mut gg, &mut hh).unwrap();
            assert!(gg.iter().chain(&hh).all(|x| x.is_finite()), "{o:?} {gg:?} {hh:?}");
            assert_eq!(g, gg);
        }
    }
    // The loss with norm, by hand: the misordered pairs far apart cost sigma * delta each.
    let o = LambdaOptions { sigma: 1.0, truncation: usize::MAX, norm: true, metric: LambdaMetric::Ndcg };
    let (_, _, rl) = reference(&[1e300, -1e300, 0.0, 1.0, 1.0], &y, &gain, &o);
    let batch = Padded::new(&s, Some(&y), None, 1, 5).unwrap();
    let mut l = vec![0.0; 1];
    lambdarank_loss(&batch, Gains::Table(&gain), &o, &mut l, &mut [false], None).unwrap();
    assert!((l[0] - rl).abs() < 1e-9 * rl, "{} vs {rl}", l[0]);

    // sigma whose square overflows: rejected; a large one whose square is finite: finite.
    let (s, y) = ([0.5, 0.5, 0.25, 1.0], [1.0, 0.0, 2.0, 0.0]);
    let (mut g, mut h) = (vec![0.0; 4], vec![0.0; 4]);
    for sigma in [1e200, 1e-200] {
        let o = LambdaOptions { sigma, ..Default::default() };
        let e = lambdarank_gradients(&s, &y, &[4], &gain, None, &o, &mut g, &mut h).unwrap_err();
        assert_eq!(e.arg(), "sigma");
    }
    for sigma in [1e150, 1e-150] {
        for norm in [true, false] {
            let o = LambdaOptions { sigma, norm, ..Default::default() };
            lambdarank_gradients(&s, &y, &[4], &gain, None, &o, &mut g, &mut h).unwrap();
            assert!(g.iter().chain(&h).all(|x| x.is_finite()), "{o:?} {g:?} {h:?}");
        }
    }
}

#[test]
fn empty_groups_are_empty_lists() {
    let mut rng = Rng(3);
    let (s, y, _) = random_case(&mut rng, &[5, 7], 4);
    let gain = default_label_gain();
    let o = LambdaOptions::default();
    let (mut g1, mut h1, mut g2, mut h2) = (vec![0.0; 12], vec![0.0; 12], vec![0.0; 12], vec![0.0; 12]);
    lambdarank_gradients(&s, &y, &[5, 7], &gain, None, &o, &mut g1, &mut h1).unwrap();
    lambdarank_gradients(&s, &y, &[0, 5, 0, 0, 7, 0], &gain, None, &o, &mut g2, &mut h2).unwrap();
    assert_eq!((g1, h1), (g2, h2));
}

#[test]
fn outputs_are_untouched_when_an_input_is_bad() {
    let gain = default_label_gain();
    let o = LambdaOptions::default();
    let s = [1.0, 2.0, 3.0, 4.0, 0.5, 0.1];
    let y = [0.0, 1.0, 2.0, 1.0, 0.0, 1.0];
    // The bad value sits in the last list, which would be computed last (or first).
    for (s2, y2, w) in [
        (&[1.0, 2.0, 3.0, 4.0, 0.5, f64::NAN][..], &y[..], None),
        (&s[..], &[0.0, 1.0, 2.0, 1.0, 0.0, 0.5][..], None),
        (&s[..], &y[..], Some(&[1.0, 1.0, 1.0, 1.0, 1.0, -1.0][..])),
    ] {
        let (mut g, mut h) = (vec![7.0; 6], vec![7.0; 6]);
        assert!(lambdarank_gradients(s2, y2, &[4, 2], &gain, w, &o, &mut g, &mut h).is_err());
        assert_eq!((g, h), (vec![7.0; 6], vec![7.0; 6]));
    }
}
