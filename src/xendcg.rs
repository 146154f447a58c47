//! XE-NDCG (Bruch et al., "An Alternative Cross Entropy Loss for Learning-to-Rank", 2020), as
//! LightGBM's `rank_xendcg` computes it (`RankXENDCG::GetGradientsForOneQuery`).
//!
//! Per list of `m >= 2` items (a shorter list gets zero grad and hess):
//!
//! ```text
//! rho_i = softmax(s)_i;   phi_i = 2^y_i - gamma_i;   q_i = phi_i / S,  S = sum phi
//! t1_i = rho_i - q_i                      c1_i = t1_i / (1 - rho_i)
//! t2_i = rho_i * sum_{j != i} c1_j        c2_i = t2_i / (1 - rho_i)
//! t3_i = rho_i * sum_{j != i} c2_j
//! grad_i = t1_i + t2_i + t3_i;   hess_i = rho_i * (1 - rho_i)
//! ```
//!
//! then both times the row's weight. `gamma` is uniform in [0, 1): either given, or drawn from one
//! stream per list, LightGBM's generator (`x <- 214013 x + 2531011 mod 2^32`, `gamma = ((x >> 16) &
//! 0x7fff) / 32768`, stream `q` seeded `seed + q`), advanced by `m` draws per call for lists with
//! `m >= 2`. Each list owns its stream, so results do not depend on the number of threads.
//!
//! `q` is computed so that finite gammas of any size give the exact `phi_i / S` whenever it is a
//! float64: `S = sum 2^y - sum gamma` as a compensated (Neumaier) sum, both `phi` and `S` scaled by
//! a power of two when a gamma is huge (so neither overflows). Gammas of +-1e300 thus give the
//! limit `q_i = 1/m`, not NaN. `|S| < 1e-15` is taken as `S = 1e-15`, LightGBM's floor
//! (`max(kEpsilon, sum phi)`); that floor also turns LightGBM's `S <= -1e-15` into `1e-15`, which
//! can only happen with gammas outside LightGBM's [0, 1) and is not reproduced. With given gammas
//! whose gradients overflow float64 anyway (`|q|` near 1e308), an error names `gammas`.
//!
//! Where LightGBM divides by `1 - rho_i` computed as a difference, the list's largest `rho`
//! (the only one that can be near 1) uses `sum_{j != i} e^(s_j - max) / sum_j e^(s_j - max)`
//! instead, and the sums over `j != i` leave that item out exactly, so a dominant item gives
//! finite, accurate results instead of NaN. The softmax uses `Float::exp_fast` (within 1e-15
//! relative; exponents below -708 are taken as -708, so a list's scores more than 708 apart
//! give finite but approximate results where LightGBM gives NaN).

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::float::Float;
use crate::ragged::Groups;

/// Labels at or above this would overflow `2^y` in the float32 LightGBM computes it in.
pub const MAX_LABEL: f64 = 31.0;

/// `2^y` for the labels allowed.
const POW2: [f64; 31] = {
    let mut t = [1.0; 31];
    let mut i = 1;
    while i < 31 {
        t[i] = t[i - 1] * 2.0;
        i += 1;
    }
    t
};

/// LightGBM's `kEpsilon` (a float literal), the floor of `sum phi`.
const EPS: f64 = 1e-15f32 as f64;

/// Where the gammas come from.
pub enum Gammas<'a> {
    /// One gamma per row, `[n]`.
    Given(&'a [f64]),
    /// One generator state per list, `[G]`, advanced in place.
    Streams(&'a mut [u32]),
}

/// LightGBM's `Random::NextFloat`: the next uniform in [0, 1) of the stream `state`.
#[inline]
pub fn next_gamma(state: &mut u32) -> f64 {
    *state = state.wrapping_mul(214_013).wrapping_add(2_531_011);
    (((*state >> 16) & 0x7fff) as f32 / 32768.0f32) as f64
}

/// The initial states of `lists` streams for `seed` (LightGBM's `Random(seed + q)`).
pub fn stream_states(seed: i64, lists: usize) -> Vec<u32> {
    (0..lists).map(|q| (seed as i32).wrapping_add(q as i32) as u32).collect()
}

#[derive(Default)]
struct Work {
    rho: Vec<f64>,
    one_minus: Vec<f64>,
    c1: Vec<f64>,
    c2: Vec<f64>,
    q: Vec<f64>,
}

/// Gammas below this in magnitude cannot make `phi` or its sum overflow (lists of up to 2^63 items).
const SAFE_GAMMA: f64 = 1.0e288;

/// The scale of `phi` when a gamma is not below `SAFE_GAMMA`: `2^-960` (a power of two, so scaling
/// is exact), which takes any finite gamma to at most `2^64` and `2^y`, `1e-15` to normal numbers.
const HUGE_SCALE: f64 = f64::from_bits((1023 - 960) << 52);

/// Neumaier's compensated sum: `(sum, compensation)` after adding `x`.
#[inline]
fn neumaier(acc: (f64, f64), x: f64) -> (f64, f64) {
    let (s, c) = acc;
    let t = s + x;
    let c = if s.abs() >= x.abs() { c + ((s - t) + x) } else { c + ((x - t) + s) };
    (t, c)
}

/// The targets `q_i = phi_i / S` of one list (module docs): `phi_i = 2^y_i - gamma_i` from `pow`
/// (`2^y`) and `gam`, `S = sum phi` compensated, both scaled by a power of two (exactly) when a
/// gamma is so large that `phi` or `S` could overflow; `|S| < EPS` is taken as `EPS`.
fn targets(pow: &[f64], gam: &[f64], q: &mut Vec<f64>) {
    let big = gam.iter().fold(0.0f64, |a, g| a.max(g.abs()));
    // 2^y <= 2^30: only a gamma can overflow.
    let scale = if big < SAFE_GAMMA { 1.0 } else { HUGE_SCALE };
    let (s, c) = pow
        .iter()
        .zip(gam)
        .fold((0.0, 0.0), |acc, (&p, &g)| neumaier(neumaier(acc, p * scale), -(g * scale)));
    let total = s + c; // S * scale
    q.clear();
    if total.abs() >= EPS * scale {
        let inv = 1.0 / total;
        q.extend(pow.iter().zip(gam).map(|(&p, &g)| (p * scale - g * scale) * inv));
    } else {
        // LightGBM's floor; with a huge gamma here `q` overflows (reported by the caller).
        q.extend(pow.iter().zip(gam).map(|(&p, &g)| (p - g) / EPS));
    }
}

/// `out_i = rho_i * sum_{j != i} c_j` for every i, from `rest = sum_{j != top} c_j`: at `top`
/// exactly `rest`, elsewhere `(rest + c_top) - c_i` (where `c_top` may be huge, `rho_i` is tiny).
#[inline]
fn times_leave_one_out(rho: &[f64], c: &[f64], top: usize, rest: f64, out: &mut [f64]) {
    let total = rest + c[top];
    for ((o, &r), &v) in out.iter_mut().zip(rho).zip(c) {
        *o = r * (total - v);
    }
    out[top] = rho[top] * rest;
}

/// One list: scores `s`, gains `pow = 2^y` and `gam` (`[m]`) in, `grad`, `hess` (`[m]`) out.
fn one_list(w: &mut Work, s: &[f64], pow: &[f64], gam: &[f64], grad: &mut [f64], hess: &mut [f64]) {
    let m = s.len();
    if m <= 1 {
        grad.fill(0.0);
        hess.fill(0.0);
        return;
    }
    let Work { rho, one_minus, c1, c2, q } = w;
    let mut top = 0;
    for (i, &v) in s.iter().enumerate() {
        if v > s[top] {
            top = i;
        }
    }
    let smax = s[top];
    rho.clear();
    rho.extend(s.iter().map(|&v| (v - smax).exp_fast()));
    rho[top] = 0.0;
    let others: f64 = rho.iter().sum();
    rho[top] = 1.0;
    let sum = others + 1.0;
    for r in rho.iter_mut() {
        *r /= sum;
    }
    one_minus.clear();
    one_minus.extend(rho.iter().map(|&r| 1.0 - r));
    if one_minus[top] < 0.25 {
        one_minus[top] = (others / sum).max(f64::MIN_POSITIVE);
    }
    targets(pow, gam, q);
    // First-order terms t1, and c1 = t1 / (1 - rho).
    c1.clear();
    c1.resize(m, 0.0);
    for i in 0..m {
        let t = rho[i] - q[i];
        grad[i] = t;
        c1[i] = t / one_minus[i];
    }
    let rest1 = sum_but(c1, top);
    // Second-order terms t2 (in c2), then c2 = t2 / (1 - rho).
    c2.clear();
    c2.resize(m, 0.0);
    times_leave_one_out(rho, c1, top, rest1, c2);
    for i in 0..m {
        grad[i] += c2[i];
        c2[i] /= one_minus[i];
    }
    let rest2 = sum_but(c2, top);
    // Third-order terms (into c1, no longer needed).
    times_leave_one_out(rho, c2, top, rest2, c1);
    for i in 0..m {
        grad[i] += c1[i];
        hess[i] = rho[i] * one_minus[i];
    }
}

/// `sum_{j != top} c_j`, summed without `c_top` (which may dwarf the rest).
fn sum_but(c: &[f64], top: usize) -> f64 {
    c[..top].iter().sum::<f64>() + c[top + 1..].iter().sum::<f64>()
}

/// XE-NDCG gradients and hessians for the ragged layout (module docs): `preds`, `labels`
/// (`[n]`), `group` (list sizes summing to n), optional per-row `weights`, `gammas` given or
/// drawn; writes `grad`, `hess` (`[n]`). Labels must be integers in `[0, 31)`, preds and
/// gammas finite, weights finite and non-negative; errors name the argument and the group
/// (also given gammas whose gradients overflow float64; `grad` and `hess` are then unspecified).
#[allow(clippy::too_many_arguments)]
pub fn xendcg_gradients<Y: Float>(
    preds: &[f64],
    labels: &[Y],
    group: &[i64],
    weights: Option<&[f64]>,
    gammas: Gammas<'_>,
    grad: &mut [f64],
    hess: &mut [f64],
) -> Result<()> {
    let n = preds.len();
    let same = |arg: &'static str, len: usize| {
        if len != n {
            Err(Error::invalid(arg, format!("has {len} values, expected {n} like preds")))
        } else {
            Ok(())
        }
    };
    same("labels", labels.len())?;
    if let Some(wt) = weights {
        same("weights", wt.len())?;
    }
    if grad.len() != n || hess.len() != n {
        return Err(Error::invalid("grad", "output buffers must have one value per row"));
    }
    let groups = Groups::from_sizes(group, n)?;
    // Validate everything before a stream advances, so an error leaves the states untouched.
    let bad = (0..groups.len())
        .into_par_iter()
        .find_first(|&q| check_list(q, &groups, preds, labels, weights).is_err());
    if let Some(q) = bad {
        return check_list(q, &groups, preds, labels, weights);
    }
    let (given, mut states): (Option<&[f64]>, Vec<Option<&mut u32>>) = match gammas {
        Gammas::Given(g) => {
            same("gammas", g.len())?;
            if let Some(q) = (0..groups.len()).find(|&q| !g[groups.range(q)].iter().all(|v| v.is_finite())) {
                return Err(Error::NonFinite { arg: "gammas", list: q });
            }
            (Some(g), (0..groups.len()).map(|_| None).collect())
        }
        Gammas::Streams(st) => {
            if st.len() != groups.len() {
                return Err(Error::invalid(
                    "states",
                    format!("has {} values, expected one per group ({})", st.len(), groups.len()),
                ));
            }
            (None, st.iter_mut().map(Some).collect())
        }
    };
    let tasks: Vec<_> = groups
        .split_mut(grad)
        .into_iter()
        .zip(groups.split_mut(hess))
        .zip(states.drain(..))
        .enumerate()
        .collect();
    tasks.into_par_iter().for_each_init(
        || (Work::default(), Vec::new(), Vec::new(), Vec::new()),
        |(w, s, pow, gam), (q, ((gout, hout), state))| {
            let r = groups.range(q);
            s.clear();
            s.extend_from_slice(&preds[r.clone()]);
            pow.clear();
            pow.extend(labels[r.clone()].iter().map(|y| POW2[y.to_f64() as usize]));
            gam.clear();
            match (given, state) {
                (Some(g), _) => gam.extend_from_slice(&g[r.clone()]),
                (None, Some(st)) if r.len() > 1 => gam.extend((0..r.len()).map(|_| next_gamma(st))),
                _ => gam.resize(r.len(), 0.0),
            }
            one_list(w, s, pow, gam, gout, hout);
            if let Some(wt) = weights {
                for ((gv, hv), &wv) in gout.iter_mut().zip(hout.iter_mut()).zip(&wt[r]) {
                    *gv *= wv;
                    *hv *= wv;
                }
            }
        },
    );
    // Drawn gammas are in [0, 1) (phi >= 2^-15): only given ones can overflow.
    if given.is_some() {
        let bad = (0..groups.len())
            .into_par_iter()
            .find_first(|&q| !grad[groups.range(q)].iter().all(|v| v.is_finite()));
        if let Some(q) = bad {
            return Err(Error::invalid(
                "gammas",
                format!(
                    "the XE-NDCG gradients of group {q} overflow float64 \
                     (|phi_i / sum(phi)| too large, phi = 2^y - gamma)"
                ),
            ));
        }
    }
    Ok(())
}

/// The value checks of list `q`: finite preds, integer labels in `[0, MAX_LABEL)`, finite
/// non-negative weights.
fn check_list<Y: Float>(
    q: usize,
    groups: &Groups,
    preds: &[f64],
    labels: &[Y],
    weights: Option<&[f64]>,
) -> Result<()> {
    let r = groups.range(q);
    if !preds[r.clone()].iter().fold(true, |ok, v| ok & v.is_finite()) {
        return Err(Error::NonFinite { arg: "preds", list: q });
    }
    // An integer in range: in [0, MAX_LABEL) and equal to its truncation (no libm floor call).
    let ok = |v: f64| (0.0..MAX_LABEL).contains(&v) && (v as i32) as f64 == v;
    let all_ok = labels[r.clone()].iter().fold(true, |acc, v| acc & ok(v.to_f64()));
    if let Some(y) =
        (!all_ok).then(|| labels[r.clone()].iter().map(|v| v.to_f64()).find(|&v| !ok(v))).flatten()
    {
        return Err(Error::invalid(
            "labels",
            format!("value {y} in group {q} is not an integer in [0, {MAX_LABEL})"),
        ));
    }
    if let Some(wt) = weights {
        if let Some(&v) = wt[r].iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return Err(Error::invalid(
                "weights",
                format!("value {v} in group {q} is not a finite non-negative number"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    /// LightGBM's `GetGradientsForOneQuery`, line for line (in f64).
    fn reference(s: &[f64], y: &[f64], gam: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let m = s.len();
        if m <= 1 {
            return (vec![0.0; m], vec![0.0; m]);
        }
        let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|v| (v - mx).exp()).collect();
        let z: f64 = e.iter().sum();
        let rho: Vec<f64> = e.iter().map(|v| v / z).collect();
        let mut params: Vec<f64> = (0..m).map(|i| 2f64.powi(y[i] as i32) - gam[i]).collect();
        let inv = 1.0 / params.iter().sum::<f64>().max(EPS);
        let mut g = vec![0.0; m];
        let mut sum1 = 0.0;
        for i in 0..m {
            let t = -params[i] * inv + rho[i];
            g[i] = t;
            params[i] = t / (1.0 - rho[i]);
            sum1 += params[i];
        }
        let mut sum2 = 0.0;
        for i in 0..m {
            let t = rho[i] * (sum1 - params[i]);
            g[i] += t;
            params[i] = t / (1.0 - rho[i]);
            sum2 += params[i];
        }
        let mut h = vec![0.0; m];
        for i in 0..m {
            g[i] += rho[i] * (sum2 - params[i]);
            h[i] = rho[i] * (1.0 - rho[i]);
        }
        (g, h)
    }

    fn random_lists(rng: &mut Rng, sizes: &[i64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let n: i64 = sizes.iter().sum();
        let s: Vec<f64> = (0..n).map(|_| (rng.normal() * 2.0 * 4.0).round() / 4.0).collect();
        let y: Vec<f64> = (0..n).map(|_| rng.label(4)).collect();
        let gam: Vec<f64> = (0..n).map(|_| rng.next()).collect();
        (s, y, gam)
    }

    #[test]
    fn matches_lightgbm_transcription() {
        let mut rng = Rng(7);
        let sizes = [1i64, 2, 5, 17, 3, 40, 1];
        let (s, mut y, gam) = random_lists(&mut rng, &sizes);
        y[1..3].fill(0.0); // an all-zero list
        let n = s.len();
        let (mut g, mut h) = (vec![9.0; n], vec![9.0; n]);
        xendcg_gradients(&s, &y, &sizes, None, Gammas::Given(&gam), &mut g, &mut h).unwrap();
        let mut lo = 0;
        for &m in &sizes {
            let r = lo..lo + m as usize;
            let (rg, rh) = reference(&s[r.clone()], &y[r.clone()], &gam[r.clone()]);
            for (a, b) in g[r.clone()].iter().zip(&rg).chain(h[r.clone()].iter().zip(&rh)) {
                assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
            }
            lo = r.end;
        }
        assert!(g.iter().any(|v| v.abs() > 1e-3));
    }

    #[test]
    fn a_dominant_item_stays_finite() {
        // rho_0 = 1 - 4e-18 rounds to 1: LightGBM divides by 1 - rho_0 = 0 there.
        let y = [0.0, 2.0, 1.0];
        let gam = [0.5, 0.25, 0.75];
        let (mut g, mut h) = (vec![0.0; 3], vec![0.0; 3]);
        xendcg_gradients(&[40.0, 0.0, -3.0], &y, &[3], None, Gammas::Given(&gam), &mut g, &mut h).unwrap();
        // Limit as s_0 grows: t1_0 + t2_0 + t3_0 -> (1 - q_0) - (1 - q_0) + (1 - q_0), q_0 = 0.5 / 5.5.
        assert!((g[0] - (1.0 - 0.5 / 5.5)).abs() < 1e-9, "{g:?}");
        assert!(g[1] < 0.0 && g[2] < 0.0 && h.iter().all(|v| v.is_finite()));
        // Scores so far apart that exp underflows: still finite.
        xendcg_gradients(&[800.0, 0.0, -3.0], &y, &[3], None, Gammas::Given(&gam), &mut g, &mut h).unwrap();
        assert!(g.iter().chain(&h).all(|v| v.is_finite()), "{g:?} {h:?}");
    }

    #[test]
    fn targets_are_exact_for_huge_gammas() {
        let mut q = Vec::new();
        let close = |a: f64, b: f64| (a - b).abs() <= 4.0 * f64::EPSILON * b.abs();
        // gammas cancel exactly: S = 1 + 2 + 4 = 7 (a plain sum of phi loses the 1 and the 2)
        targets(&[1.0, 2.0, 4.0], &[1e300, -1e300, 0.0], &mut q);
        let want = [-1e300 / 7.0, 1e300 / 7.0, 4.0 / 7.0];
        assert!(q.iter().zip(&want).all(|(&a, &b)| close(a, b)), "{q:?}");
        assert_eq!(HUGE_SCALE, 2f64.powi(-960));
        // the limit 1/m, where sum phi overflows or LightGBM's floor would divide by 1e-15
        for g in [1e300, -1e300, 1.7e308, -1.7e308, f64::MAX] {
            targets(&[1.0, 2.0, 4.0], &[g; 3], &mut q);
            assert!(q.iter().all(|&v| close(v, 1.0 / 3.0)), "{g}: {q:?}");
        }
        // sum phi = 0: LightGBM's floor
        targets(&[1.0, 1.0], &[1.5, 0.5], &mut q);
        assert_eq!(q, vec![-0.5 / EPS, 0.5 / EPS]);
        // LightGBM's gammas: phi / sum phi as before
        targets(&[1.0, 4.0], &[0.25, 0.5], &mut q);
        assert_eq!(q, vec![0.75 * (1.0 / 4.25), 3.5 * (1.0 / 4.25)]); // phi * (1 / S) as LightGBM
    }

    #[test]
    fn huge_gammas_give_the_limit_or_an_error() {
        let s = [0.3, -1.2, 0.7, 2.0];
        let y = [0.0, 3.0, 1.0, 0.0];
        let (mut g, mut h) = (vec![0.0; 4], vec![0.0; 4]);
        let (mut g0, mut h0) = (vec![0.0; 4], vec![0.0; 4]);
        // q = 1/m either way: all gammas equal and huge, or all labels equal with gammas 0
        xendcg_gradients(&s, &[0.0; 4], &[4], None, Gammas::Given(&[0.0; 4]), &mut g0, &mut h0).unwrap();
        for gam in [1e300, -1e300, -1.7e308] {
            xendcg_gradients(&s, &y, &[4], None, Gammas::Given(&[gam; 4]), &mut g, &mut h).unwrap();
            assert!(g.iter().zip(&g0).all(|(a, b)| (a - b).abs() < 1e-15), "{gam}: {g:?} {g0:?}");
            assert_eq!(h, h0);
        }
        // |q| ~ 1e300 / 1e-15: the gradients are not float64 numbers
        // (sum 2^y = 12 = sum gamma: S = 0, LightGBM's floor 1e-15)
        let gam = [1e300, -1e300, 4.0, 8.0];
        let e = xendcg_gradients(&s, &y, &[4], None, Gammas::Given(&gam), &mut g, &mut h);
        assert_eq!(e.unwrap_err().arg(), "gammas");
    }

    #[test]
    fn streams_are_lightgbms_generator_and_advance() {
        let mut st = stream_states(0, 2);
        assert_eq!(st, vec![0, 1]);
        // x1 = 2531011 for seed 0: (2531011 >> 16) & 0x7fff = 38
        assert_eq!(next_gamma(&mut st[0]), 38.0 / 32768.0);
        let mut rng = Rng(3);
        let sizes = [4i64, 1, 6];
        let (s, y, _) = random_lists(&mut rng, &sizes);
        let run = |states: &mut Vec<u32>| {
            let (mut g, mut h) = (vec![0.0; 11], vec![0.0; 11]);
            xendcg_gradients(&s, &y, &sizes, None, Gammas::Streams(states), &mut g, &mut h).unwrap();
            g
        };
        let mut a = stream_states(5, 3);
        let mut b = stream_states(5, 3);
        let (a1, b1) = (run(&mut a), run(&mut b));
        assert_eq!(a1, b1);
        assert_eq!(a[1], 6, "a one-row list draws nothing");
        assert_ne!(run(&mut a), a1, "the next round draws new gammas");
    }

    #[test]
    fn same_bits_on_any_thread_count() {
        let mut rng = Rng(11);
        let sizes: Vec<i64> = (0..300).map(|_| 1 + rng.int(60) as i64).collect();
        let (s, y, _) = random_lists(&mut rng, &sizes);
        let n = s.len();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut st = stream_states(42, sizes.len());
            let (mut g, mut h) = (vec![0.0; n], vec![0.0; n]);
            pool.install(|| {
                xendcg_gradients(&s, &y, &sizes, None, Gammas::Streams(&mut st), &mut g, &mut h).unwrap()
            });
            (g, h, st)
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn errors_name_the_argument_and_leave_streams_alone() {
        let s = [0.0, 1.0, f64::NAN, 2.0];
        let y = [0.0, 1.0, 0.0, 1.0];
        let mut st = stream_states(0, 2);
        let (mut g, mut h) = (vec![0.0; 4], vec![0.0; 4]);
        let e = xendcg_gradients(&s, &y, &[2, 2], None, Gammas::Streams(&mut st), &mut g, &mut h);
        assert_eq!(e, Err(Error::NonFinite { arg: "preds", list: 1 }));
        assert_eq!(st, vec![0, 1]);
        let e = xendcg_gradients(
            &[0.0, 1.0],
            &[0.5, 1.0],
            &[2],
            None,
            Gammas::Given(&[0.0, 0.0]),
            &mut g[..2],
            &mut h[..2],
        );
        assert_eq!(e.unwrap_err().arg(), "labels");
        let e = xendcg_gradients(
            &[0.0, 1.0],
            &[0.0, 1.0],
            &[2],
            None,
            Gammas::Given(&[0.0]),
            &mut g[..2],
            &mut h[..2],
        );
        assert_eq!(e.unwrap_err().arg(), "gammas");
        let e = xendcg_gradients(
            &[0.0, 1.0],
            &[0.0, 1.0],
            &[3],
            None,
            Gammas::Given(&[0.0, 0.0]),
            &mut g[..2],
            &mut h[..2],
        );
        assert_eq!(e.unwrap_err().arg(), "group");
        let e = xendcg_gradients(
            &[0.0, 1.0],
            &[0.0, 1.0],
            &[2],
            Some(&[1.0, -1.0]),
            Gammas::Given(&[0.0, 0.0]),
            &mut g[..2],
            &mut h[..2],
        );
        assert_eq!(e.unwrap_err().arg(), "weights");
    }
}
