//! The exact pair kernels: every pair of a list's real items, in the input dtype, O(N^2).
//!
//! Two ways over the pairs, chosen per list by cost:
//! - symmetric: each unordered pair once (N^2/2 sigmoids), updating both ends;
//! - rows: only the rows that matter (the relevant items for NDCG/MRR, the nonzero `c_i` in
//!   the backward), N sigmoids each.
//!
//! The pair loops are element-wise maps (`tmp` holds the terms of a row sum), so that the
//! compiler vectorises them; the row sums are then taken by `lane_total`.

use crate::float::{lane_total, sigmoid2, sigmoid_grad, sigmoid_grad_hess, Float};

/// `r[i]` for every item: each pair once; `r[i] += p`, `r[j] += 1 - p`.
#[inline(always)]
pub(super) fn ranks_symmetric<F: Float>(s: &[F], inv_t: F, r: &mut [F], tmp: &mut [F]) {
    let n = s.len();
    let r = &mut r[..n];
    r.fill(F::ONE);
    for i in 0..n {
        let si = s[i];
        let (head, tail) = r.split_at_mut(i + 1);
        let st = &s[i + 1..];
        let tmp = &mut tmp[..st.len()];
        for ((rj, &sj), tj) in tail.iter_mut().zip(st).zip(tmp.iter_mut()) {
            let (p, pc) = sigmoid2((sj - si) * inv_t);
            *tj = p;
            *rj += pc;
        }
        head[i] += lane_total(tmp);
    }
}

/// `r_i` for one item: its full row, the self term `sigmoid(0) = 1/2` taken back out.
#[inline(always)]
fn rank_row<F: Float>(s: &[F], i: usize, inv_t: F, tmp: &mut [F]) -> F {
    let si = s[i];
    let tmp = &mut tmp[..s.len()];
    for (tj, &sj) in tmp.iter_mut().zip(s) {
        *tj = sigmoid2((sj - si) * inv_t).0;
    }
    F::from_f64(0.5) + lane_total(tmp)
}

/// Ranks of the items in `rows` only (others left untouched), or of all when that is cheaper.
#[inline(always)]
pub(super) fn ranks_of<F: Float>(s: &[F], rows: &[usize], inv_t: F, r: &mut [F], tmp: &mut [F]) {
    if 2 * rows.len() >= s.len() {
        ranks_symmetric(s, inv_t, r, tmp);
    } else {
        for &i in rows {
            r[i] = rank_row(s, i, inv_t, tmp);
        }
    }
}

/// `g = J^T c` for `r(s)` (`J = dr/ds` is symmetric, so this is also `J c`), written to `g[..n]`:
/// `g_k = (1/T) sum_{i != k} sigmoid'((s_k - s_i) / T) (c_i - c_k)`.
#[inline(always)]
pub(super) fn ranks_vjp<F: Float>(
    s: &[F],
    c: &[F],
    inv_t: F,
    g: &mut [F],
    rows: &mut Vec<usize>,
    tmp: &mut [F],
) {
    let n = s.len();
    let g = &mut g[..n];
    g.fill(F::ZERO);
    rows.clear();
    rows.extend((0..n).filter(|&i| c[i] != F::ZERO));
    if 2 * rows.len() < n {
        // Only rows with c_i != 0 feed the first term; the row sum of w gives the second.
        for &i in rows.iter() {
            let (si, ci) = (s[i], c[i]);
            let tmp = &mut tmp[..n];
            for ((gk, &sk), tk) in g.iter_mut().zip(s).zip(tmp.iter_mut()) {
                let w = sigmoid_grad((sk - si) * inv_t);
                *gk += w * ci;
                *tk = w;
            }
            // The loop also gave g_i the self term w_ii c_i; -c_i * (row sum incl. w_ii)
            // removes it and subtracts c_i sum_{k != i} w_ik.
            g[i] -= ci * lane_total(tmp);
        }
    } else {
        for i in 0..n {
            let (si, ci) = (s[i], c[i]);
            let (head, tail) = g.split_at_mut(i + 1);
            let st = &s[i + 1..];
            let ct = &c[i + 1..];
            let tmp = &mut tmp[..st.len()];
            for (((gj, &sj), &cj), tj) in tail.iter_mut().zip(st).zip(ct).zip(tmp.iter_mut()) {
                let d = sigmoid_grad((sj - si) * inv_t) * (cj - ci);
                *tj = d;
                *gj -= d;
            }
            head[i] += lane_total(tmp);
        }
    }
    for gk in g.iter_mut() {
        *gk *= inv_t;
    }
}

/// The ranks' double backward `h = d<v, J^T c>/ds` (c held fixed),
/// `h_l = (1/T^2) sum_{k != l} sigmoid''((s_l - s_k)/T) (c_k - c_l) (v_l - v_k)`, into `h[..n]`;
/// with `JV`, also `jv = J v`, `(Jv)_i = (1/T) sum_j sigmoid'((s_j - s_i)/T) (v_j - v_i)`, at
/// least at every `i` with `c_i != 0` or `rows_of[i] != 0` (all of them unless the rows are
/// few), from the same exponentials. Pairs are taken once (the terms are antisymmetric), or
/// only the rows with `c_i != 0` (`h` is linear in `c`) when those are fewer than half.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn double_backward<F: Float, const JV: bool>(
    s: &[F],
    c: &[F],
    v: &[F],
    rows_of: &[F],
    inv_t: F,
    h: &mut [F],
    jv: &mut [F],
    rows: &mut Vec<usize>,
    tmp: &mut [F],
    tmp2: &mut [F],
) {
    let n = s.len();
    let h = &mut h[..n];
    h.fill(F::ZERO);
    if JV {
        jv[..n].fill(F::ZERO);
    }
    rows.clear();
    rows.extend((0..n).filter(|&i| c[i] != F::ZERO || (JV && rows_of[i] != F::ZERO)));
    if 2 * rows.len() < n {
        for &i in rows.iter() {
            let (si, ci, vi) = (s[i], c[i], v[i]);
            let (tmp, tmp2) = (&mut tmp[..n], &mut tmp2[..n]);
            for ((((hl, &sl), &vl), t), t2) in
                h.iter_mut().zip(s).zip(v).zip(tmp.iter_mut()).zip(tmp2.iter_mut())
            {
                // h(e_i)_l = sigmoid''(x_l - x_i) (v_l - v_i) for l != i (0 at l = i).
                let (g1, g2) = sigmoid_grad_hess((sl - si) * inv_t);
                let dv = vl - vi;
                let term = g2 * dv;
                *hl += ci * term;
                *t = term;
                if JV {
                    *t2 = g1 * dv;
                }
            }
            // h(e_i)_i = -sum_l sigmoid''(x_l - x_i) (v_l - v_i).
            h[i] -= ci * lane_total(tmp);
            if JV {
                jv[i] = lane_total(tmp2);
            }
        }
    } else {
        for i in 0..n {
            let (si, ci, vi) = (s[i], c[i], v[i]);
            let (head, tail) = h.split_at_mut(i + 1);
            let (st, ct, vt) = (&s[i + 1..], &c[i + 1..], &v[i + 1..]);
            let (tmp, tmp2) = (&mut tmp[..st.len()], &mut tmp2[..st.len()]);
            if JV {
                let (jhead, jtail) = jv[..n].split_at_mut(i + 1);
                for ((((((hj, jj), &sj), &cj), &vj), t), t2) in tail
                    .iter_mut()
                    .zip(jtail.iter_mut())
                    .zip(st)
                    .zip(ct)
                    .zip(vt)
                    .zip(tmp.iter_mut())
                    .zip(tmp2.iter_mut())
                {
                    let (g1, g2) = sigmoid_grad_hess((sj - si) * inv_t);
                    let dv = vj - vi;
                    let a = g1 * dv;
                    let b = g2 * (cj - ci) * dv;
                    *t = b;
                    *hj -= b;
                    *t2 = a;
                    *jj -= a;
                }
                jhead[i] += lane_total(tmp2);
            } else {
                for ((((hj, &sj), &cj), &vj), t) in
                    tail.iter_mut().zip(st).zip(ct).zip(vt).zip(tmp.iter_mut())
                {
                    let (_, g2) = sigmoid_grad_hess((sj - si) * inv_t);
                    let b = g2 * (cj - ci) * (vj - vi);
                    *t = b;
                    *hj -= b;
                }
            }
            head[i] += lane_total(tmp);
        }
    }
    for hl in h.iter_mut() {
        *hl = *hl * inv_t * inv_t;
    }
    if JV {
        for j in jv[..n].iter_mut() {
            *j *= inv_t;
        }
    }
}
