//! Tests of the LambdaRank kernels against a direct transcription of the per-list pseudocode.

use super::list::{list_lambdas, Work};
use super::sort::sort_desc;
use super::*;
use crate::float::Isa;

use crate::testing::Rng;

/// The SPEC's per-list pseudocode, written out directly: (grad, hess, S-scaled loss).
fn reference(s: &[f64], y: &[f64], gain: &[f64], o: &LambdaOptions) -> (Vec<f64>, Vec<f64>, f64) {
    reference_weighted(s, y, &vec![1.0; s.len()], gain, o)
}

/// `reference` with SPEC 13's per-item weights: each pair's lambda and loss term times the
/// weight of its higher-labelled item `w[h]`; S (norm) from the unweighted lambdas.
fn reference_weighted(
    s: &[f64],
    y: &[f64],
    w: &[f64],
    gain: &[f64],
    o: &LambdaOptions,
) -> (Vec<f64>, Vec<f64>, f64) {
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
            grad[h] += lam * w[h];
            grad[l] -= lam * w[h];
            hess[h] += hes;
            hess[l] += hes;
            sum -= 2.0 * lam;
            let x = -o.sigma * ds; // softplus(x), stable
            loss += w[h] * delta * (x.max(0.0) + (-x.abs()).exp().ln_1p());
        }
    }
    if o.norm && sum > 0.0 {
        // log2(1 + S) / S, computed accurately also for a tiny S (where 1 + S rounds to 1)
        let f = sum.ln_1p() / (sum * std::f64::consts::LN_2);
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
                    let out = list_lambdas::<true, false>(isa, &mut w, &disc, &o, Some(&gain));
                    let short = list_lambdas::<true, true>(isa, &mut w, &disc, &o, Some(&gain));
                    (w.grad, w.hess, out, short)
                };
                let (a, b) = (run(Isa::Portable), run(Isa::Avx2));
                assert!(a.0.iter().zip(&b.0).all(|(x, y)| x.to_bits() == y.to_bits()), "{o:?} m={m}");
                assert!(a.1.iter().zip(&b.1).all(|(x, y)| x.to_bits() == y.to_bits()), "{o:?} m={m}");
                assert_eq!(a.2.loss.to_bits(), b.2.loss.to_bits(), "{o:?} m={m}");
                assert_eq!(a.3.loss.to_bits(), b.3.loss.to_bits(), "{o:?} m={m}");
                assert!((a.3.loss - a.2.loss).abs() <= 2.5e-9 * a.2.loss.abs(), "{o:?} m={m}");
            }
        }
    }
}

#[test]
fn portable_and_avx2_loss_terms_give_the_same_bits_at_extremes() {
    // The loss sum of the row kernel (log-sigmoid series, mul3 of the misordered term) at huge
    // and tiny gaps, huge and tiny sigma, custom gains of either sign.
    if !Isa::detect().has_avx2() {
        return;
    }
    let mut rng = Rng(7);
    let gains: [&[f64]; 2] = [&default_label_gain(), &[0.0, 3.0, -1.0, 2.5]];
    for gain in gains {
        for &(sigma, spread) in &[(1.0, 1e300), (4.0, 4e307), (1e-150, 1.0), (1e150, 1e-150), (2.0, 1.0)] {
            for metric in [LambdaMetric::Ndcg, LambdaMetric::Mrr] {
                for norm in [true, false] {
                    for m in [2usize, 5, 9, 37] {
                        let s: Vec<f64> = (0..m).map(|_| (rng.next() * 2.0 - 1.0) * spread).collect();
                        let y: Vec<f64> = (0..m).map(|_| rng.int(4) as f64).collect();
                        let o = LambdaOptions { sigma, truncation: usize::MAX, norm, metric };
                        let disc = discounts(m);
                        let run = |isa: Isa, short: bool| {
                            let mut w = Work::default();
                            w.rs.extend(&s);
                            w.ry.extend(&y);
                            w.rg.extend(y.iter().map(|&v| gain[v as usize]));
                            if short {
                                list_lambdas::<true, true>(isa, &mut w, &disc, &o, Some(gain)).loss
                            } else {
                                list_lambdas::<true, false>(isa, &mut w, &disc, &o, Some(gain)).loss
                            }
                        };
                        for short in [false, true] {
                            let (a, b) = (run(Isa::Portable, short), run(Isa::Avx2, short));
                            assert_eq!(a.to_bits(), b.to_bits(), "{o:?} m={m} {a} {b}");
                            assert!(!a.is_nan(), "{o:?} m={m}");
                        }
                    }
                }
            }
        }
    }
}

/// `lambdarank_loss` of one list (f64, every pair) and its gradient.
fn loss_of(s: &[f64], y: &[f64], o: &LambdaOptions) -> (f64, Vec<f64>) {
    let n = s.len();
    let batch = Padded::new(s, Some(y), None, 1, n).unwrap();
    let (mut l, mut v, mut g) = (vec![0.0; 1], vec![false; 1], vec![0.0; n]);
    lambdarank_loss(&batch, Gains::Exp2, o, &mut l, &mut v, Some(&mut g)).unwrap();
    assert!(v[0]);
    (l[0], g)
}

#[test]
fn norm_factor_is_accurate_for_a_tiny_sum() {
    // sigma -> 0: rho -> 1/2 and S -> sigma sum(delta) -> 0, where 1 + S rounds to 1; the
    // factor log2(1 + S) / S tends to 1 / ln 2 (it was 0: every gradient and loss vanished).
    // In the limit: grad = sum over pairs of -+sigma delta / 2 / ln 2, loss = sum of delta
    // (softplus(0) = ln 2 times 1 / ln 2); delta with norm's 1 / (0.01 + |ds|).
    let (s, y) = ([0.5, 2.0, -1.0], [1.0, 0.0, 2.0]);
    let gain = default_label_gain();
    let disc = |p: usize| 1.0 / (2.0 + p as f64).log2();
    // score order: 2.0 (y 0), 0.5 (y 1), -1.0 (y 2); maxDCG = 3 + 1 / log2(3)
    let inv = 1.0 / (3.0 + disc(1));
    let pairs = [(2usize, 0usize, 2, 1, 2.0), (0, 1, 1, 0, 1.0), (2, 1, 2, 0, 3.0)]; // (h, l, p_h, p_l, G_h - G_l)
    let (mut want_g, mut want_l) = ([0.0; 3], 0.0);
    for &(h, l, ph, pl, dg) in &pairs {
        let delta = dg * (disc(ph) - disc(pl)).abs() * inv / (0.01 + (s[h] - s[l]).abs());
        want_l += delta;
        want_g[h] -= delta / 2.0 / std::f64::consts::LN_2;
        want_g[l] += delta / 2.0 / std::f64::consts::LN_2;
    }
    for sigma in [1e-17, 1e-100, 1e-150] {
        let o = LambdaOptions { sigma, truncation: usize::MAX, norm: true, metric: LambdaMetric::Ndcg };
        let (mut g, mut h) = (vec![0.0; 3], vec![0.0; 3]);
        lambdarank_gradients(&s, &y, &[3], &gain, None, &o, &mut g, &mut h).unwrap();
        for k in 0..3 {
            assert!((g[k] / sigma - want_g[k]).abs() < 1e-12 * want_g[k].abs(), "{sigma} {g:?} {want_g:?}");
        }
        assert!(h.iter().all(|&v| v > 0.0));
        let (l, lg) = loss_of(&s, &y, &o);
        assert!((l - want_l).abs() < 1e-12 * want_l, "{sigma}: {l} vs {want_l}");
        assert_eq!(lg, g);
    }
}

#[test]
fn huge_scores_with_sigma_above_one_give_the_true_loss() {
    // One misordered pair 3.4e308 apart (its gap overflows f64): with norm its loss is
    // factor * delta / (0.01 + |ds|) * sigma |ds|, S = 2 sigma delta / (0.01 + |ds|) ~ 1e-309,
    // so the factor is 1 / ln 2 and the loss sigma delta / ln 2 (to ~1e-309 relative).
    // It was NaN (0 * inf) on the Rust path, inf on the torch path.
    let delta = 1.0 - 1.0 / 3f64.log2(); // (G_1 - G_0) |d(0) - d(1)| / maxDCG, maxDCG = 1
    for sigma in [2.0, 4.0, 1e100, 1.0] {
        let o = LambdaOptions { sigma, truncation: usize::MAX, norm: true, metric: LambdaMetric::Ndcg };
        for s in [[1.7e308, -1.7e308], [f64::MAX, -f64::MAX], [0.9e308, -0.9e308]] {
            let (l, g) = loss_of(&s, &[0.0, 1.0], &o);
            let want = sigma * delta / std::f64::consts::LN_2;
            assert!((l - want).abs() < 1e-14 * want, "{sigma} {s:?}: {l} vs {want}");
            assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
        }
        // Without norm: sigma delta |ds|, finite where it fits (here 2e300 apart), inf beyond.
        let o = LambdaOptions { norm: false, ..o };
        for v in [1e300, 1.7e308] {
            let (l, g) = loss_of(&[v, -v], &[0.0, 1.0], &o);
            let want = sigma * delta * 2.0 * v; // overflows only where the true value does
            if want.is_finite() {
                assert!((l - want).abs() < 1e-14 * want, "{sigma} {v}: {l} vs {want}");
            } else {
                assert_eq!(l, f64::INFINITY, "{sigma} {v}");
            }
            assert!(g.iter().all(|v| v.is_finite()));
        }
        // An ordered pair far apart costs nothing, whatever sigma.
        let (l, _) = loss_of(&[1.7e308, -1.7e308], &[1.0, 0.0], &o);
        assert_eq!(l, 0.0);
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

/// SPEC 13: the padded loss with per-item weights (zeros, padded NaN / inf / negative) against
/// the weighted reference; a list none of whose pairs weighs anything does not count; the
/// portable and AVX2 kernels give the same bits; unit weights give the unweighted bits.
#[test]
fn weighted_padded_loss_matches_reference() {
    let mut rng = Rng(0x5EED);
    let (b, n) = (7, 19);
    let gain = default_label_gain();
    for metric in [LambdaMetric::Ndcg, LambdaMetric::Mrr] {
        for &norm in &[false, true] {
            for &k in &[1usize, 3, usize::MAX] {
                let s: Vec<f64> = (0..b * n).map(|_| (rng.next() * 12.0).floor() / 3.0).collect();
                let y: Vec<f64> = (0..b * n).map(|_| rng.int(4) as f64).collect();
                let mask: Vec<bool> = (0..b * n).map(|k| k % n < 2 || rng.next() < 0.8).collect();
                let mut w: Vec<f64> = (0..b * n)
                    .map(|k| match (mask[k], rng.int(5)) {
                        (false, 0) => f64::NAN,
                        (false, 1) => f64::INFINITY,
                        (false, _) => -3.0,
                        (true, 0) => 0.0,
                        (true, _) => rng.next() * 2.5,
                    })
                    .collect();
                w[n..2 * n].iter_mut().for_each(|v| *v = 0.0); // list 1: nothing weighted
                let batch =
                    Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap().with_weights(Some(&w)).unwrap();
                let o = LambdaOptions { sigma: 1.3, truncation: k, norm, metric };
                let (mut l, mut v, mut g) = (vec![0.0; b], vec![false; b], vec![0.0; b * n]);
                lambdarank_loss(&batch, Gains::Table(&gain), &o, &mut l, &mut v, Some(&mut g)).unwrap();
                let plain = Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap();
                let (mut lp, mut vp) = (vec![0.0; b], vec![false; b]);
                lambdarank_loss(&plain, Gains::Table(&gain), &o, &mut lp, &mut vp, None).unwrap();
                for bi in 0..b {
                    let idx: Vec<usize> = (0..n).filter(|&j| mask[bi * n + j]).collect();
                    let pick = |x: &[f64]| idx.iter().map(|&j| x[bi * n + j]).collect::<Vec<f64>>();
                    let (sr, yr, wr) = (pick(&s), pick(&y), pick(&w));
                    let (rg, _, rl) = reference_weighted(&sr, &yr, &wr, &gain, &o);
                    let ctx = format!("{o:?} list {bi}");
                    if bi == 1 {
                        assert!(!v[bi] && l[bi] == 0.0, "{ctx}");
                    }
                    assert!(!v[bi] || vp[bi], "{ctx}");
                    if !v[bi] {
                        assert!(rg.iter().all(|&x| x == 0.0) && rl == 0.0, "{ctx}: {rl}");
                        assert!(g[bi * n..(bi + 1) * n].iter().all(|&x| x == 0.0));
                        continue;
                    }
                    assert!(close(l[bi], rl, 1e-300), "loss {} vs {rl} {ctx}", l[bi]);
                    let scale = rg.iter().fold(1e-300f64, |a, x| a.max(x.abs()));
                    for (p, &j) in idx.iter().enumerate() {
                        assert!(close(g[bi * n + j], rg[p], scale), "{ctx}");
                    }
                    assert!((0..n).filter(|&j| !mask[bi * n + j]).all(|j| g[bi * n + j] == 0.0));
                }
                // unit weights: the unweighted bits
                let ones = vec![1.0; b * n];
                let unit =
                    Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap().with_weights(Some(&ones)).unwrap();
                let (mut lu, mut vu, mut gu) = (vec![0.0; b], vec![false; b], vec![0.0; b * n]);
                lambdarank_loss(&unit, Gains::Table(&gain), &o, &mut lu, &mut vu, Some(&mut gu)).unwrap();
                let (mut l0, mut v0, mut g0) = (vec![0.0; b], vec![false; b], vec![0.0; b * n]);
                lambdarank_loss(&plain, Gains::Table(&gain), &o, &mut l0, &mut v0, Some(&mut g0)).unwrap();
                assert_eq!(vu, v0);
                assert!(lu
                    .iter()
                    .chain(&gu)
                    .zip(l0.iter().chain(&g0))
                    .all(|(a, c)| a.to_bits() == c.to_bits()));
            }
        }
    }
    if !Isa::detect().has_avx2() {
        return;
    }
    for m in [2usize, 5, 8, 33, 101] {
        let s: Vec<f64> = (0..m).map(|_| (rng.next() * 8.0).floor() / 4.0).collect();
        let y: Vec<f64> = (0..m).map(|_| rng.int(4) as f64).collect();
        let wt: Vec<f64> = (0..m).map(|_| if rng.next() < 0.2 { 0.0 } else { rng.next() * 3.0 }).collect();
        for metric in [LambdaMetric::Ndcg, LambdaMetric::Mrr] {
            let o = LambdaOptions { sigma: 1.1, truncation: 20, norm: true, metric };
            let disc = discounts(m);
            let run = |isa: Isa| {
                let mut w = Work::default();
                w.rs.extend(&s);
                w.ry.extend(&y);
                w.rg.extend(y.iter().map(|&v| gain[v as usize]));
                w.rw.extend(&wt);
                let out = list_lambdas::<true, false>(isa, &mut w, &disc, &o, Some(&gain));
                (w.grad, out)
            };
            let (a, c) = (run(Isa::Portable), run(Isa::Avx2));
            assert!(a.0.iter().zip(&c.0).all(|(x, z)| x.to_bits() == z.to_bits()), "{o:?} m={m}");
            assert_eq!(a.1.loss.to_bits(), c.1.loss.to_bits(), "{o:?} m={m}");
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
