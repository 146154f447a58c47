//! The ragged layout (GBDT): flat `[n]` arrays, each list a contiguous run of rows, `group`
//! the list sizes in order (LightGBM's convention). No cap on a list's size.
//!
//! One rule for every ragged kernel (LambdaRank gradients, the exact metrics): sizes are
//! integers >= 0 summing to n. A size-0 list is an empty list, exactly like a padded row with
//! no real item: a degenerate list (metric 0 and not valid, no rows to write). LightGBM
//! itself has no meaning for an empty query (old versions crashed on one, LightGBM#1104);
//! rankgrad keeps the ragged and padded layouts twins instead.

use crate::error::{Error, Result};

/// Validated list boundaries: list `g` is rows `offsets[g]..offsets[g + 1]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Groups {
    pub offsets: Vec<usize>,
}

impl Groups {
    /// From list sizes: each must be >= 0, and they must sum to `n`.
    pub fn from_sizes(group: &[i64], n: usize) -> Result<Self> {
        let mut offsets = Vec::with_capacity(group.len() + 1);
        offsets.push(0usize);
        let mut total = 0usize;
        for (g, &size) in group.iter().enumerate() {
            if size < 0 {
                return Err(Error::invalid("group", format!("size of group {g} is negative ({size})")));
            }
            total = usize::try_from(size)
                .ok()
                .and_then(|s| total.checked_add(s))
                .filter(|&t| t <= n)
                .ok_or_else(|| {
                    Error::invalid(
                        "group",
                        format!("sizes sum to more than the {n} rows (reached at group {g})"),
                    )
                })?;
            offsets.push(total);
        }
        if total != n {
            return Err(Error::invalid("group", format!("sizes sum to {total}, but there are {n} rows")));
        }
        Ok(Groups { offsets })
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row range of list `g`.
    pub fn range(&self, g: usize) -> std::ops::Range<usize> {
        self.offsets[g]..self.offsets[g + 1]
    }

    /// The list holding row `row` (`row < n`).
    pub fn list_of(&self, row: usize) -> usize {
        self.offsets.partition_point(|&o| o <= row) - 1
    }

    /// The largest list size (0 when there is none).
    pub fn max_size(&self) -> usize {
        self.offsets.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
    }

    /// Splits `out` (one value per row) into one mutable slice per list, in order.
    pub fn split_mut<'a, T>(&self, mut out: &'a mut [T]) -> Vec<&'a mut [T]> {
        let mut parts = Vec::with_capacity(self.len());
        for w in self.offsets.windows(2) {
            let (head, tail) = std::mem::take(&mut out).split_at_mut(w[1] - w[0]);
            parts.push(head);
            out = tail;
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_become_offsets() {
        let g = Groups::from_sizes(&[2, 1, 3], 6).unwrap();
        assert_eq!(g.offsets, vec![0, 2, 3, 6]);
        assert_eq!((g.len(), g.range(1), g.max_size()), (3, 2..3, 3));
        assert_eq!((0..6).map(|k| g.list_of(k)).collect::<Vec<_>>(), vec![0, 0, 1, 2, 2, 2]);
        let mut v = [0, 1, 2, 3, 4, 5];
        let parts = g.split_mut(&mut v);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![2, 1, 3]);
        assert_eq!(parts[2], &mut [3, 4, 5]);
    }

    #[test]
    fn bad_sizes_name_group() {
        for (sizes, n) in [(&[2i64, -1, 2][..], 3), (&[2, 2], 5), (&[2, 2], 3), (&[i64::MAX, 2], 3)] {
            let e = Groups::from_sizes(sizes, n).unwrap_err();
            assert_eq!(e.arg(), "group", "{sizes:?}");
        }
        assert!(Groups::from_sizes(&[], 0).unwrap().is_empty());
        let g = Groups::from_sizes(&[2, 0, 1, 0], 3).unwrap(); // empty lists are lists
        assert_eq!((g.len(), g.range(1), g.list_of(2)), (4, 2..2, 2));
        assert!(Groups::from_sizes(&[], 1).is_err());
    }
}
