//! Ragged <-> padded (SPEC section 15): where each flat row goes in a padded `[B, N]` batch.
//!
//! The data movement (any dtype, any trailing dims, numpy or torch on any device) is a gather
//! done by the caller; this module computes the one index it needs, in O(n):
//!
//! - from list sizes (`group`, LightGBM's convention, validated by `Groups`): row `r` of list
//!   `g` at position `p` goes to `g * N + p`;
//! - from query ids (`qid`, contiguous or not): lists in order of first appearance, rows
//!   keeping their order within a list. One pass with a hash map (and a shortcut for a row
//!   whose id is the previous row's, the common contiguous case) gives each row its list and
//!   position; a second, parallel, elementwise pass turns them into the index.
//!
//! A separate module rather than part of `ragged`: `ragged` is the validated layout the GBDT
//! kernels read (`Groups`), this is a conversion between layouts that only uses it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ragged::Groups;

/// Rows per rayon task in the elementwise passes.
const CHUNK: usize = 1 << 14;

/// What the index of a row means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `list * N + position`: the row's flat position in the padded `[B, N]` batch
    /// (`N` the longest list).
    Padded,
    /// `offsets[list] + position`: the row's position among the real items in list order
    /// (what `padded[mask]` gives, row-major).
    Flat,
}

/// One index per row, and the size of each list (`B = sizes.len()`, `N = width`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PadIndex {
    pub index: Vec<i64>,
    pub sizes: Vec<i64>,
    pub width: usize,
}

/// A query id as a hash-map key: an injective map into `u64` of the values that compare
/// equal (`None` for a value equal to nothing, NaN).
pub trait QueryId: Copy + Send + Sync {
    fn key(self) -> Option<u64>;
}

macro_rules! int_ids {
    ($($t:ty => $wide:ty),*) => {$(
        impl QueryId for $t {
            #[inline]
            fn key(self) -> Option<u64> {
                Some(self as $wide as u64)
            }
        }
    )*};
}
int_ids!(i8 => i64, i16 => i64, i32 => i64, i64 => i64, u8 => u64, u16 => u64, u32 => u64, u64 => u64);

impl QueryId for f64 {
    #[inline]
    fn key(self) -> Option<u64> {
        (!self.is_nan()).then(|| (self + 0.0).to_bits()) // -0.0 + 0.0 is +0.0: one list
    }
}

impl QueryId for f32 {
    #[inline]
    fn key(self) -> Option<u64> {
        (!self.is_nan()).then(|| u64::from((self + 0.0).to_bits()))
    }
}

/// murmur3's 64-bit finaliser: every input bit reaches the bits the table uses (ids that
/// differ only in their high bits, `k << 32`, do not collide). Not keyed: ids are data the
/// caller owns, not an adversary's.
#[derive(Default)]
struct Mix(u64);

impl Hasher for Mix {
    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// `list * width + position` (`Padded`) for the rows of lists given by their sizes; `n` rows.
pub fn index_from_sizes(group: &[i64], n: usize) -> Result<PadIndex> {
    let groups = Groups::from_sizes(group, n)?;
    let width = groups.max_size();
    check_shape(groups.len(), width)?;
    let mut index = vec![0i64; n];
    groups.split_mut(&mut index).into_par_iter().enumerate().with_min_len(64).for_each(|(g, part)| {
        let start = (g * width) as i64;
        for (p, out) in part.iter_mut().enumerate() {
            *out = start + p as i64;
        }
    });
    Ok(PadIndex { index, sizes: group.to_vec(), width })
}

/// The index of each row for lists given by query ids: lists in order of first appearance,
/// rows in their order within a list. An error naming `qid` for a NaN id.
pub fn index_from_ids<T: QueryId>(ids: &[T], layout: Layout) -> Result<PadIndex> {
    let n = ids.len();
    // pass 1 (sequential: first appearance is an order): list and position of each row
    let mut list = vec![0usize; n];
    let mut pos = vec![0i64; n];
    let mut sizes: Vec<i64> = Vec::new();
    let mut lists: HashMap<u64, usize, BuildHasherDefault<Mix>> = HashMap::default();
    let mut prev: Option<(u64, usize)> = None;
    for (r, &id) in ids.iter().enumerate() {
        let k = id
            .key()
            .ok_or_else(|| Error::invalid("qid", format!("row {r} is NaN (ids must equal themselves)")))?;
        let l = match prev {
            Some((pk, pl)) if pk == k => pl,
            _ => {
                let next = sizes.len();
                let l = *lists.entry(k).or_insert(next);
                if l == next {
                    sizes.push(0);
                }
                prev = Some((k, l));
                l
            }
        };
        list[r] = l;
        pos[r] = sizes[l];
        sizes[l] += 1;
    }
    let width = sizes.iter().copied().max().unwrap_or(0) as usize;
    // pass 2 (elementwise, parallel): the index, in place of the positions
    let base: Vec<i64> = match layout {
        Layout::Padded => {
            check_shape(sizes.len(), width)?;
            (0..sizes.len()).map(|l| (l * width) as i64).collect()
        }
        Layout::Flat => sizes
            .iter()
            .scan(0i64, |acc, &s| {
                let start = *acc;
                *acc += s;
                Some(start)
            })
            .collect(),
    };
    pos.par_chunks_mut(CHUNK).zip(list.par_chunks(CHUNK)).for_each(|(p, l)| {
        for (p, &l) in p.iter_mut().zip(l) {
            *p += base[l];
        }
    });
    Ok(PadIndex { index: pos, sizes, width })
}

/// `B * N` must be addressable by an int64 index.
fn check_shape(b: usize, width: usize) -> Result<()> {
    b.checked_mul(width).filter(|&t| t <= i64::MAX as usize).map(|_| ()).ok_or_else(|| {
        Error::invalid("values", format!("the padded batch ({b} lists x {width}) is too large"))
    })
}

#[cfg(test)]
mod ragged_pad_tests {
    use super::*;

    /// The plain reference: lists in order of first appearance (a linear search), positions
    /// by counting.
    fn reference(keys: &[i64], layout: Layout) -> PadIndex {
        let mut ids: Vec<i64> = Vec::new();
        let mut rows: Vec<Vec<usize>> = Vec::new();
        for (r, k) in keys.iter().enumerate() {
            match ids.iter().position(|x| x == k) {
                Some(l) => rows[l].push(r),
                None => {
                    ids.push(*k);
                    rows.push(vec![r]);
                }
            }
        }
        let width = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut index = vec![0i64; keys.len()];
        let mut flat = 0;
        for (l, rs) in rows.iter().enumerate() {
            for (p, &r) in rs.iter().enumerate() {
                index[r] = match layout {
                    Layout::Padded => (l * width + p) as i64,
                    Layout::Flat => (flat + p) as i64,
                };
            }
            flat += rs.len();
        }
        PadIndex { index, sizes: rows.iter().map(|r| r.len() as i64).collect(), width }
    }

    #[test]
    fn ids_in_order_of_first_appearance() {
        let q = [7i64, 7, 3, 7, 3, 9, 3];
        let p = index_from_ids(&q, Layout::Padded).unwrap();
        assert_eq!(p.sizes, vec![3, 3, 1]);
        assert_eq!(p.width, 3);
        assert_eq!(p.index, vec![0, 1, 3, 2, 4, 6, 5]);
        let f = index_from_ids(&q, Layout::Flat).unwrap();
        assert_eq!(f.index, vec![0, 1, 3, 2, 4, 6, 5]);
        let f = index_from_ids(&[1i64, 2, 1], Layout::Flat).unwrap();
        assert_eq!((f.index, f.width), (vec![0, 2, 1], 2));
    }

    #[test]
    fn matches_the_reference() {
        let mut state = 12345u64;
        for case in 0..200 {
            let n = case % 37 + (case / 50) * 500;
            let distinct = 1 + case % 9 + (case % 3) * 40;
            let keys: Vec<i64> = (0..n)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((state >> 33) % distinct as u64) as i64 - 3 + ((state >> 20) as i64 & 1) * (1 << 40)
                })
                .collect();
            for layout in [Layout::Padded, Layout::Flat] {
                assert_eq!(index_from_ids(&keys, layout).unwrap(), reference(&keys, layout), "{keys:?}");
            }
        }
    }

    #[test]
    fn key_types() {
        // every integer width, sign extension kept injective
        let a = index_from_ids(&[-1i8, 1, -1], Layout::Padded).unwrap();
        let b = index_from_ids(&[u64::MAX, 1, u64::MAX], Layout::Padded).unwrap();
        assert_eq!(a, b);
        // -0.0 and 0.0 are one id; NaN is refused
        let f = index_from_ids(&[0.0f64, -0.0, 1.5], Layout::Padded).unwrap();
        assert_eq!(f.sizes, vec![2, 1]);
        let f = index_from_ids(&[0.0f32, -0.0, 1.5], Layout::Padded).unwrap();
        assert_eq!(f.sizes, vec![2, 1]);
        let e = index_from_ids(&[1.0, f64::NAN], Layout::Padded).unwrap_err();
        assert_eq!(e.arg(), "qid");
        assert!(e.to_string().contains("row 1"), "{e}");
    }

    #[test]
    fn empty() {
        let p = index_from_ids::<i64>(&[], Layout::Padded).unwrap();
        assert_eq!(p, PadIndex { index: vec![], sizes: vec![], width: 0 });
        let p = index_from_sizes(&[], 0).unwrap();
        assert_eq!(p, PadIndex { index: vec![], sizes: vec![], width: 0 });
        let p = index_from_sizes(&[0, 0], 0).unwrap();
        assert_eq!((p.sizes, p.width), (vec![0, 0], 0));
    }

    #[test]
    fn from_sizes() {
        let p = index_from_sizes(&[2, 0, 3, 1], 6).unwrap();
        assert_eq!(p.width, 3);
        assert_eq!(p.index, vec![0, 1, 6, 7, 8, 9]);
        let big: Vec<i64> = vec![1; 1000].into_iter().chain([5000]).collect();
        let p = index_from_sizes(&big, 6000).unwrap();
        assert_eq!(p.index[999], 999 * 5000);
        assert_eq!(p.index[5999], 1000 * 5000 + 4999);
        assert_eq!(index_from_sizes(&[2, 2], 3).unwrap_err().arg(), "group");
    }

    #[test]
    fn same_index_at_any_thread_count() {
        let keys: Vec<i64> = (0..100_000).map(|i| (i * 7919) % 1013).collect();
        let run = |t| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
            pool.install(|| index_from_ids(&keys, Layout::Padded).unwrap())
        };
        assert_eq!(run(1), run(2));
    }
}
