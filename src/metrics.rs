//! Exact ranking metrics, per list: NDCG@k, MRR@k, AP@k, recall@k and precision@k.
//!
//! Items are ordered by score descending, ties by input position (a stable sort), and a list
//! with no relevant item scores 0 (trec_eval's convention; its `valid` flag is false so a
//! caller can apply another one).
//!
//! - NDCG@k: `DCG@k / IDCG@k`, `DCG@k = sum_{p < k} g(y_(p)) / log2(2 + p)` for 0-based
//!   position `p`, gain `g(y) = 2^y - 1` (`scale_gains`) or `y`, targets below 0 counting as 0,
//!   and `IDCG@k` the DCG@k of the ideal order (gains descending).
//! - MRR@k: `1 / (1 + p)` for the position `p` of the first item with target > 0 if `p < k`,
//!   else 0.
//! - AP@k (trec_eval's `map_cut`): `sum_{p < k, y_(p) > 0} hits@(p + 1) / (p + 1)`, divided by
//!   the list's number of relevant items R (target > 0), not by `min(R, k)`.
//! - Recall@k: `hits@k / R`; Precision@k: `hits@k / k` (trec_eval's `P_k`: divided by k even
//!   when the list is shorter; `k = None`: the list's length).
//!
//! NDCG takes O(N + k log k) per list (a selection, then a sort of the top k, under a total
//! order with the position as tie-break); MRR takes O(N) (the first relevant item is the
//! relevant item with the best (score, position), and its position is a count).
//! Gains and sums are in f64 whatever the input type. Lists are computed in parallel, each on
//! one thread, so results do not depend on the number of threads.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::batch::{Gathered, Padded};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::gains::{check_gain_range, discount, gain};
use crate::ragged::Groups;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExactMetric {
    /// NDCG@k (`k = None`: the whole list).
    Ndcg { k: Option<usize>, scale_gains: bool },
    /// MRR@k (`k = None`: the whole list).
    Mrr { k: Option<usize> },
    /// AP@k: `sum_{p < k, rel(p)} precision@(p + 1) / R`, R the list's relevant items.
    AveragePrecision { k: Option<usize> },
    /// Recall@k: relevant items in the top k / R.
    Recall { k: Option<usize> },
    /// Precision@k: relevant items in the top k / k (`k = None`: the list's length).
    Precision { k: Option<usize> },
}

impl ExactMetric {
    fn k(&self) -> Option<usize> {
        match *self {
            ExactMetric::Ndcg { k, .. }
            | ExactMetric::Mrr { k }
            | ExactMetric::AveragePrecision { k }
            | ExactMetric::Recall { k }
            | ExactMetric::Precision { k } => k,
        }
    }

    fn check(&self) -> Result<()> {
        if self.k() == Some(0) {
            return Err(Error::invalid("k", "must be a positive integer or None, got 0"));
        }
        Ok(())
    }

    fn caps_targets(&self) -> bool {
        matches!(self, ExactMetric::Ndcg { scale_gains: true, .. })
    }
}

/// Per-thread scratch.
#[derive(Default)]
pub struct Scratch {
    gains: Vec<f64>,
    order: Vec<usize>,
}

/// `(value, has a relevant item)` for one list given as contiguous slices.
pub fn list_metric<F: Float>(s: &[F], y: &[F], metric: ExactMetric, w: &mut Scratch) -> (f64, bool) {
    let m = s.len();
    let k = metric.k().map_or(m, |k| k.min(m));
    match metric {
        ExactMetric::Ndcg { scale_gains, .. } => {
            let gains = &mut w.gains;
            gains.clear();
            gains.extend(y.iter().map(|&v| gain(v.to_f64(), scale_gains)));
            if !gains.iter().any(|&g| g > 0.0) {
                return (0.0, false);
            }
            let order = top_k_by_score(&mut w.order, s, k);
            let dcg: f64 = order.iter().enumerate().map(|(p, &i)| gains[i] * discount(p)).sum();
            let by_gain = |a: &f64, b: &f64| b.total_cmp(a);
            top_k(gains, k, by_gain);
            let idcg: f64 = gains[..k].iter().enumerate().map(|(p, &g)| g * discount(p)).sum();
            (dcg / idcg, true)
        }
        ExactMetric::Mrr { .. } => {
            let mut best: Option<usize> = None;
            for i in 0..m {
                if y[i] > F::ZERO && best.is_none_or(|b| s[i] > s[b]) {
                    best = Some(i);
                }
            }
            let Some(r) = best else { return (0.0, false) };
            let sr = s[r];
            let pos =
                s[..r].iter().filter(|&&v| v >= sr).count() + s[r + 1..].iter().filter(|&&v| v > sr).count();
            (if pos < k { 1.0 / (pos as f64 + 1.0) } else { 0.0 }, true)
        }
        ExactMetric::AveragePrecision { .. } | ExactMetric::Recall { .. } | ExactMetric::Precision { .. } => {
            let relevant = y.iter().filter(|&&v| v > F::ZERO).count();
            if relevant == 0 {
                return (0.0, false);
            }
            let order = top_k_by_score(&mut w.order, s, k);
            let (mut hits, mut ap) = (0usize, 0.0f64);
            for (p, &i) in order.iter().enumerate() {
                if y[i] > F::ZERO {
                    hits += 1;
                    ap += hits as f64 / (p as f64 + 1.0);
                }
            }
            let value = match metric {
                ExactMetric::AveragePrecision { .. } => ap / relevant as f64,
                ExactMetric::Recall { .. } => hits as f64 / relevant as f64,
                // trec_eval's P_k: divided by k even when the list is shorter.
                _ => hits as f64 / metric.k().unwrap_or(m) as f64,
            };
            (value, true)
        }
    }
}

/// Puts the `k` smallest elements under `cmp` (a total order), sorted, at the front.
/// `order[..k]` (returned): the k best items of `s` by score, in a total order (score desc,
/// position asc), so an unstable selection or sort gives the stable order.
fn top_k_by_score<'a, F: Float>(order: &'a mut Vec<usize>, s: &[F], k: usize) -> &'a [usize] {
    order.clear();
    order.extend(0..s.len());
    top_k(order, k, |a: &usize, b: &usize| {
        s[*b].partial_cmp(&s[*a]).unwrap_or(Ordering::Equal).then(a.cmp(b))
    });
    &order[..k]
}

fn top_k<T, C: Fn(&T, &T) -> Ordering>(v: &mut [T], k: usize, cmp: C) {
    if k == 0 {
        return;
    }
    if k < v.len() {
        v.select_nth_unstable_by(k - 1, &cmp);
    }
    v[..k].sort_unstable_by(&cmp);
}

/// Per-list metric values `[b]` of a padded batch and whether each list has a relevant item.
pub fn metric_padded<F: Float>(
    batch: &Padded<F>,
    metric: ExactMetric,
    values: &mut [f64],
    valid: &mut [bool],
) -> Result<()> {
    metric.check()?;
    let targets = batch.list_outputs("values", &[values.len(), valid.len()], None)?;
    batch.check_finite()?;
    if metric.caps_targets() {
        let n = batch.n.max(1);
        check_gain_range(targets, batch.mask, "targets", |k| k / n)?;
    }
    values.par_iter_mut().zip(valid.par_iter_mut()).enumerate().for_each_init(
        || (Gathered::<F>::default(), Scratch::default()),
        |(list, w), (bi, (v, ok))| {
            batch.gather(bi, list);
            (*v, *ok) = list_metric(&list.s, &list.y, metric, w);
        },
    );
    Ok(())
}

/// Per-group metric values `[G]` for flat `preds [n]`, `labels [n]` and list sizes `group [G]`
/// summing to n (each list's rows contiguous), and whether each group has a relevant item.
pub fn metric_ragged<F: Float>(
    preds: &[F],
    labels: &[F],
    group: &[i64],
    metric: ExactMetric,
    values: &mut [f64],
    valid: &mut [bool],
) -> Result<()> {
    metric.check()?;
    let n = preds.len();
    if labels.len() != n {
        return Err(Error::invalid(
            "labels",
            format!("has {} values, expected {n} like preds", labels.len()),
        ));
    }
    if values.len() != group.len() || valid.len() != group.len() {
        return Err(Error::invalid("values", "output buffers must have one value per list"));
    }
    let groups = Groups::from_sizes(group, n)?;
    let list_of = |k: usize| groups.list_of(k);
    if let Some(k) = preds.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite { arg: "preds", list: list_of(k) });
    }
    if let Some(k) = labels.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite { arg: "labels", list: list_of(k) });
    }
    if metric.caps_targets() {
        check_gain_range(labels, None, "labels", list_of)?;
    }
    values.par_iter_mut().zip(valid.par_iter_mut()).enumerate().for_each_init(
        Scratch::default,
        |w, (g, (v, ok))| {
            let r = groups.range(g);
            (*v, *ok) = list_metric(&preds[r.clone()], &labels[r], metric, w);
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::Rng;

    /// Full stable sort, then the definitions.
    fn reference(s: &[f64], y: &[f64], metric: ExactMetric) -> (f64, bool) {
        let m = s.len();
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| s[b].partial_cmp(&s[a]).unwrap()); // stable
        let k = metric.k().unwrap_or(m).min(m);
        match metric {
            ExactMetric::Ndcg { scale_gains, .. } => {
                let g: Vec<f64> = y.iter().map(|&v| gain(v, scale_gains)).collect();
                let mut ideal = g.clone();
                ideal.sort_by(|a, b| b.partial_cmp(a).unwrap());
                let idcg: f64 = (0..k).map(|p| ideal[p] / (p as f64 + 2.0).log2()).sum();
                if idcg == 0.0 {
                    return (0.0, false);
                }
                let dcg: f64 = (0..k).map(|p| g[order[p]] / (p as f64 + 2.0).log2()).sum();
                (dcg / idcg, true)
            }
            ExactMetric::Mrr { .. } => match order.iter().position(|&i| y[i] > 0.0) {
                None => (0.0, false),
                Some(p) if p < k => (1.0 / (p as f64 + 1.0), true),
                Some(_) => (0.0, true),
            },
            _ => {
                // Brute force: precision at every cut-off, as trec_eval defines them.
                let rel: Vec<bool> = order.iter().map(|&i| y[i] > 0.0).collect();
                let total = rel.iter().filter(|&&r| r).count();
                if total == 0 {
                    return (0.0, false);
                }
                let prec_at = |c: usize| rel[..c].iter().filter(|&&r| r).count() as f64 / c as f64;
                let value = match metric {
                    ExactMetric::AveragePrecision { .. } => {
                        (0..k).filter(|&p| rel[p]).map(|p| prec_at(p + 1)).sum::<f64>() / total as f64
                    }
                    ExactMetric::Recall { .. } => {
                        rel[..k].iter().filter(|&&r| r).count() as f64 / total as f64
                    }
                    _ => rel[..k].iter().filter(|&&r| r).count() as f64 / metric.k().unwrap_or(m) as f64,
                };
                (value, true)
            }
        }
    }

    fn metrics() -> Vec<ExactMetric> {
        let mut out = Vec::new();
        for k in [None, Some(1), Some(3), Some(10), Some(100)] {
            out.push(ExactMetric::Ndcg { k, scale_gains: true });
            out.push(ExactMetric::Ndcg { k, scale_gains: false });
            out.push(ExactMetric::Mrr { k });
            out.push(ExactMetric::AveragePrecision { k });
            out.push(ExactMetric::Recall { k });
            out.push(ExactMetric::Precision { k });
        }
        out
    }

    #[test]
    fn padded_and_ragged_match_reference() {
        let mut rng = Rng(0xDEADBEEF12345);
        for &(b, n) in &[(1, 1), (3, 5), (4, 17), (6, 40), (2, 2)] {
            for metric in metrics() {
                // Coarse scores: many ties; sparse labels: some lists without a relevant item.
                let s: Vec<f64> = (0..b * n).map(|_| (rng.next() * 6.0).floor() - 2.0).collect();
                let y: Vec<f64> = (0..b * n)
                    .map(|_| if rng.next() < 0.6 { 0.0 } else { (rng.next() * 5.0).floor() - 1.0 })
                    .collect();
                let mask: Vec<bool> = (0..b * n).map(|_| rng.next() < 0.8).collect();
                let batch = Padded::new(&s, Some(&y), Some(&mask), b, n).unwrap();
                let (mut v, mut ok) = (vec![9.0; b], vec![true; b]);
                metric_padded(&batch, metric, &mut v, &mut ok).unwrap();
                // The same lists, ragged.
                let (mut fs, mut fy, mut group) = (vec![], vec![], vec![]);
                for bi in 0..b {
                    let idx: Vec<usize> = (0..n).filter(|&j| mask[bi * n + j]).map(|j| bi * n + j).collect();
                    fs.extend(idx.iter().map(|&k| s[k]));
                    fy.extend(idx.iter().map(|&k| y[k]));
                    group.push(idx.len() as i64);
                    let (rv, rok) =
                        reference(&fs[fs.len() - idx.len()..], &fy[fy.len() - idx.len()..], metric);
                    assert_eq!(ok[bi], rok, "{metric:?}");
                    assert!((v[bi] - rv).abs() < 1e-14, "{metric:?} {} vs {rv}", v[bi]);
                }
                let (mut rv, mut rok) = (vec![9.0; b], vec![true; b]);
                metric_ragged(&fs, &fy, &group, metric, &mut rv, &mut rok).unwrap();
                assert_eq!((&rv, &rok), (&v, &ok));
            }
        }
    }

    #[test]
    fn ties_keep_input_order() {
        // Two tied scores: the earlier one ranks first.
        let s = [1.0f64, 1.0, 0.0];
        let (mut w, m) = (Scratch::default(), ExactMetric::Mrr { k: None });
        assert_eq!(list_metric(&s, &[0.0, 1.0, 0.0], m, &mut w), (0.5, true));
        assert_eq!(list_metric(&s, &[1.0, 0.0, 0.0], m, &mut w), (1.0, true));
        assert_eq!(list_metric(&s, &[0.0, 0.0, 1.0], ExactMetric::Mrr { k: Some(2) }, &mut w), (0.0, true));
        let nd = ExactMetric::Ndcg { k: Some(1), scale_gains: true };
        assert_eq!(list_metric(&s, &[0.0, 1.0, 0.0], nd, &mut w), (0.0, true));
        assert_eq!(list_metric(&s, &[1.0, 0.0, 0.0], nd, &mut w), (1.0, true));
        // -0.0 and 0.0 tie.
        assert_eq!(list_metric(&[-0.0f64, 0.0], &[0.0, 1.0], m, &mut w), (0.5, true));
    }

    #[test]
    fn empty_and_negative_lists() {
        let mut w = Scratch::default();
        let nd = ExactMetric::Ndcg { k: None, scale_gains: true };
        assert_eq!(list_metric::<f64>(&[], &[], nd, &mut w), (0.0, false));
        assert_eq!(list_metric(&[1.0f64, 2.0], &[-1.0, 0.0], nd, &mut w), (0.0, false));
        assert_eq!(
            list_metric(&[1.0f64, 2.0], &[-1.0, 0.0], ExactMetric::Mrr { k: None }, &mut w),
            (0.0, false)
        );
        assert_eq!(list_metric(&[1.0f32], &[3.0], nd, &mut w), (1.0, true));
    }

    #[test]
    fn same_bits_with_one_and_two_threads() {
        let mut rng = Rng(7);
        let (b, n) = (9, 500);
        let s: Vec<f32> = (0..b * n).map(|_| rng.next() as f32).collect();
        let y: Vec<f32> = (0..b * n).map(|_| (rng.next() * 4.0).floor() as f32).collect();
        let batch = Padded::new(&s, Some(&y), None, b, n).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let (mut v, mut ok) = (vec![0.0; b], vec![false; b]);
                metric_padded(&batch, ExactMetric::Ndcg { k: Some(10), scale_gains: true }, &mut v, &mut ok)
                    .unwrap();
                v
            })
        };
        assert!(run(1).iter().zip(&run(2)).all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn bad_input_names_the_argument() {
        let (mut v, mut ok) = (vec![0.0; 2], vec![false; 2]);
        let nd = ExactMetric::Ndcg { k: Some(0), scale_gains: true };
        let s = [0.0f64, 1.0, 2.0];
        assert_eq!(metric_ragged(&s, &s, &[1, 2], nd, &mut v, &mut ok).unwrap_err().arg(), "k");
        let nd = ExactMetric::Ndcg { k: None, scale_gains: true };
        assert_eq!(metric_ragged(&s, &s, &[1, 1], nd, &mut v, &mut ok).unwrap_err().arg(), "group");
        assert_eq!(metric_ragged(&s, &s, &[4, -1], nd, &mut v, &mut ok).unwrap_err().arg(), "group");
        assert_eq!(metric_ragged(&s, &s, &[3, 0], nd, &mut v, &mut ok), Ok(()));
        assert_eq!((v[1], ok[1]), (0.0, false), "an empty list is a degenerate list");
        assert_eq!(metric_ragged(&s, &s[..2], &[1, 2], nd, &mut v, &mut ok).unwrap_err().arg(), "labels");
        let bad = [0.0f64, 1.0, f64::NAN];
        assert_eq!(
            metric_ragged(&bad, &s, &[1, 2], nd, &mut v, &mut ok),
            Err(Error::NonFinite { arg: "preds", list: 1 })
        );
        assert_eq!(
            metric_ragged(&s, &bad, &[2, 1], nd, &mut v, &mut ok),
            Err(Error::NonFinite { arg: "labels", list: 1 })
        );
        let big = [0.0f64, 1.0, 2000.0];
        let err = metric_ragged(&s, &big, &[1, 2], nd, &mut v, &mut ok).unwrap_err();
        assert!(err.to_string().contains("list 1"), "{err}");
        // ... but fine without gain scaling, and for MRR.
        assert!(metric_ragged(
            &s,
            &big,
            &[1, 2],
            ExactMetric::Ndcg { k: None, scale_gains: false },
            &mut v,
            &mut ok
        )
        .is_ok());
        let batch = Padded::new(&s[..2], Some(&big[1..]), Some(&[true, false]), 1, 2).unwrap();
        assert!(metric_padded(&batch, nd, &mut v[..1], &mut ok[..1]).is_ok(), "padded targets are ignored");
    }

    #[test]
    fn set_metrics_by_hand() {
        // Score order: items 1, 0, 3, 2, 4 (items 0 and 3 tie: input order); relevant: 0, 2, 4.
        let s = [2.0f64, 3.0, 1.0, 2.0, 0.5];
        let y = [1.0f64, 0.0, 2.0, -1.0, 1.0];
        let mut w = Scratch::default();
        let mut ap = |k| list_metric(&s, &y, ExactMetric::AveragePrecision { k }, &mut w).0;
        // Relevant at ranks 2, 4, 5: (1/2 + 2/4 + 3/5) / 3.
        assert!((ap(None) - (0.5 + 0.5 + 0.6) / 3.0).abs() < 1e-15);
        assert!((ap(Some(2)) - 0.5 / 3.0).abs() < 1e-15);
        let mut w = Scratch::default();
        assert_eq!(list_metric(&s, &y, ExactMetric::Recall { k: Some(4) }, &mut w), (2.0 / 3.0, true));
        assert_eq!(list_metric(&s, &y, ExactMetric::Precision { k: Some(4) }, &mut w), (0.5, true));
        // P@10 of a 5-item list divides by 10 (trec_eval).
        assert_eq!(list_metric(&s, &y, ExactMetric::Precision { k: Some(10) }, &mut w), (0.3, true));
        assert_eq!(list_metric(&s, &y, ExactMetric::Precision { k: None }, &mut w), (0.6, true));
        let none = [0.0f64, -1.0, 0.0, 0.0, 0.0];
        for metric in [
            ExactMetric::AveragePrecision { k: None },
            ExactMetric::Recall { k: Some(2) },
            ExactMetric::Precision { k: Some(2) },
        ] {
            assert_eq!(list_metric(&s, &none, metric, &mut w), (0.0, false));
        }
    }
}
