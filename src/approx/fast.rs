//! Fast summation of the approximate-rank sums: O(N log N + N p) per list instead of O(N^2).
//!
//! Every sum the family needs has the shape `F_i = sum_j w_j K(x_j - x_i)`, `x = s / T`, with
//! `K` one of `sigma`, `sigma'` (even) or `sigma''` (odd) (`/work/shared/design/fast-summation.md`):
//!
//! 1. Sort the items by score (ties by index). A gap wider than `FAST_SATURATION` (`D`, in x
//!    units) starts a new segment; every pair across segments is saturated (`sigma` exactly 1
//!    above, 0 below, `sigma'`, `sigma''` 0), so each segment has its own origin: local
//!    coordinates `(s - s_seg0) / T` never overflow and exact ties stay exact.
//! 2. A segment holding at least `FAST_MIN_SEGMENT` items and `FAST_MIN_OCCUPANCY` items per
//!    occupied cell (width `FAST_CELL`) is interpolated: the `p = FAST_NODES` Chebyshev nodes of
//!    each cell carry the anterpolated weights `Q[B, b] = sum_{j in B} w_j L_b(u_j)`; cell A
//!    gets `Phi[A, a] = sum_{|B - A| <= W} sum_b K(h (B - A + tau_b - tau_a)) Q[B, b]` (one p x p
//!    matrix per offset, built once), and item i in A gets `sum_a L_a(u_i) Phi[A, a]`; sources
//!    more than `W = ceil(D / h) + 1` cells above count 1 for `sigma` (a count: the items from
//!    the first cell above the window to the end of the list). Sparser segments sum each
//!    item's neighbours within `D` directly (the same count beyond them).
//!
//! Everything is float64. The work is split over the thread pool on a fixed partition
//! (`BLK` sorted positions, cells), partial sums combined in a fixed order: the result does
//! not depend on the number of threads. Lists of at most `SERIAL` items run on one thread with
//! exactly the same arithmetic.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::float::{lane_dot, select, simd_dispatch, Float, Isa};

/// Cell width h, in units of `x = s / T`.
pub const FAST_CELL: f64 = 1.0;
/// Chebyshev nodes per cell (p). With h = 1 the interpolation error is ~ rho^-p,
/// rho = 2 pi / h + sqrt(4 pi^2 / h^2 + 1) ~ 12.6: ~1e-13 at p = 12.
pub const FAST_NODES: usize = 12;
/// D: a pair farther apart than this (in x units) is saturated; the error is at most
/// `m e^-D` per sum (~1e-12 at m = 1e7).
pub const FAST_SATURATION: f64 = 44.0;
/// W = ceil(D / h) + 1: the cells each side of a cell whose sources are interpolated.
pub const FAST_WINDOW: usize = 45;
/// A segment with fewer items sums its pairs within `D` directly.
pub const FAST_MIN_SEGMENT: usize = 16;
/// A segment with fewer items per occupied cell sums its pairs within `D` directly.
pub const FAST_MIN_OCCUPANCY: usize = 4;

const P: usize = FAST_NODES;
const W: i64 = FAST_WINDOW as i64;
const D: f64 = FAST_SATURATION;
const INV_H: f64 = 1.0 / FAST_CELL;
/// Sorted positions per block of the fixed partition (anterpolation partials, outputs).
pub(crate) const BLK: usize = 4096;
/// Lists up to this size run every step on the calling thread (same partition, same bits).
const SERIAL: usize = 2 * BLK;
/// Units (cells) per parallel task; any value gives the same bits.
const CHUNK: usize = 32;
const NONE: usize = usize::MAX;

/// Whether a segment of `n` items in `occupied` cells is interpolated (else summed directly);
/// tests may force either (`force` 1: interpolate, 2: direct, else the global `FORCE`).
#[inline(always)]
fn interpolates(n: usize, occupied: usize, force: u8) -> bool {
    #[cfg(test)]
    match if force == 0 { FORCE.load(std::sync::atomic::Ordering::Relaxed) } else { force } {
        1 => return true,
        2 => return false,
        _ => {}
    }
    let _ = force;
    n >= FAST_MIN_SEGMENT && n >= FAST_MIN_OCCUPANCY * occupied
}

/// Benchmarks: 1 interpolates every segment, 2 sums every segment directly.
#[cfg(test)]
pub(crate) static FORCE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// The kernels, as const parameters: `sigma`, `sigma'`, `sigma''`.
pub(crate) const SIG: u8 = 0;
pub(crate) const D1: u8 = 1;
pub(crate) const D2: u8 = 2;

type Mat = [[f64; P]; P];

struct Nodes {
    tau: [f64; P],
    bw: [f64; P],
}

/// Chebyshev nodes of the first kind on [0, 1], ascending, and their barycentric weights.
fn nodes() -> &'static Nodes {
    static N: OnceLock<Nodes> = OnceLock::new();
    N.get_or_init(|| {
        let mut tau = [0.0; P];
        let mut bw = [0.0; P];
        for a in 0..P {
            let th = (2 * a + 1) as f64 * std::f64::consts::PI / (2 * P) as f64;
            tau[a] = (1.0 - th.cos()) / 2.0;
            bw[a] = if a % 2 == 0 { th.sin() } else { -th.sin() };
        }
        Nodes { tau, bw }
    })
}

/// `K(d)` in full precision (`std` exp), for the per-offset matrices.
fn kernel_exact(k: u8, d: f64) -> f64 {
    let e = (-d.abs()).exp();
    let q = 1.0 / (1.0 + e);
    match k {
        SIG => {
            if d >= 0.0 {
                q
            } else {
                e * q
            }
        }
        D1 => e * q * q,
        _ => {
            // 1 - 2 sigma(d) = -sign(d) tanh(|d| / 2) = sign(d) expm1(-|d|) / (1 + e^-|d|).
            let t = (-d.abs()).exp_m1() * q;
            e * q * q * if d >= 0.0 { t } else { -t }
        }
    }
}

/// `K(d)` from `exp_fast` (vectorises), for the directly summed pairs.
#[inline(always)]
fn kernel<const K: u8>(d: f64) -> f64 {
    let e = (-d.abs()).exp_fast();
    let q = 1.0 / (1.0 + e);
    match K {
        SIG => select(d >= 0.0, q, e * q),
        D1 => e * q * q,
        _ => e * q * q * q * select(d >= 0.0, e - 1.0, 1.0 - e),
    }
}

/// The `2W + 1` transposed offset matrices of kernel `k`: `[o + W][b][a] = K(h (o + tau_b - tau_a))`.
fn mats(k: u8) -> &'static [Mat] {
    static M: [OnceLock<Vec<Mat>>; 3] = [const { OnceLock::new() }; 3];
    M[k as usize].get_or_init(|| {
        let nd = nodes();
        (-W..=W)
            .map(|o| {
                let mut mt = [[0.0; P]; P];
                for (b, row) in mt.iter_mut().enumerate() {
                    for (a, v) in row.iter_mut().enumerate() {
                        *v = kernel_exact(k, FAST_CELL * (o as f64 + nd.tau[b] - nd.tau[a]));
                    }
                }
                mt
            })
            .collect()
    })
}

/// The Lagrange values `L_a(u)` of the nodes (barycentric formula; a node takes its own value).
#[inline(always)]
fn lagrange(u: f64, nd: &Nodes) -> [f64; P] {
    let mut t = [0.0; P];
    let mut hit = false;
    for ((t, &tau), &bw) in t.iter_mut().zip(&nd.tau).zip(&nd.bw) {
        let d = u - tau;
        hit |= d == 0.0;
        *t = bw / d;
    }
    if hit {
        for (a, v) in t.iter_mut().enumerate() {
            *v = if u == nd.tau[a] { 1.0 } else { 0.0 };
        }
        return t;
    }
    let mut sum = 0.0;
    for &v in &t {
        sum += v;
    }
    let inv = 1.0 / sum;
    for v in t.iter_mut() {
        *v *= inv;
    }
    t
}

/// `sum_a a[k] b[k]` in four lanes, combined in a fixed order.
#[inline(always)]
fn dot(a: &[f64; P], b: &[f64; P]) -> f64 {
    let mut acc = [0.0; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let rest = ca.remainder().iter().zip(cb.remainder()).fold(0.0, |s, (&x, &y)| s + x * y);
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + rest
}

/// A total order on finite f64 (as `<`, with -0 == +0) in an integer.
#[inline(always)]
fn order_key(v: f64) -> u64 {
    let b = (v + 0.0).to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// A total order on finite f32 (as `<`, with -0 == +0) in an integer.
#[inline(always)]
fn order_key32(v: f32) -> u32 {
    let b = (v + 0.0).to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | (1 << 31)
    }
}

/// Sorts `v`, given in index order, by `key` (ties keep their order): a stable LSD radix sort on
/// the key's bytes from `first_byte` up, skipping bytes that are the same in every key; with
/// `par`, each pass is split over the pool (the sorted order is unique: the same result). Short
/// inputs are sorted by `Ord`, which must order by key, then index.
#[inline(always)]
fn radix_sort<T: Copy + Default + Ord + Send + Sync>(
    v: &mut Vec<T>,
    tmp: &mut Vec<T>,
    key: impl Fn(&T) -> u64 + Sync,
    first_byte: usize,
    par: bool,
) {
    let n = v.len();
    if n <= 64 {
        v.sort_unstable();
        return;
    }
    grow(tmp, n, T::default(), par);
    let k0 = key(&v[0]);
    if par {
        let diff = v.par_iter().map(|e| key(e) ^ k0).reduce(|| 0, |a, b| a | b);
        for d in first_byte..8 {
            if (diff >> (8 * d)) & 0xFF != 0 {
                radix_pass_par(v, tmp, &key, 8 * d);
                std::mem::swap(v, tmp);
            }
        }
        return;
    }
    let mut diff = 0;
    let mut count = [[0usize; 256]; 8];
    for e in v.iter() {
        let k = key(e);
        diff |= k ^ k0;
        for (d, c) in count.iter_mut().enumerate().skip(first_byte) {
            c[((k >> (8 * d)) & 0xFF) as usize] += 1;
        }
    }
    for (d, c) in count.iter_mut().enumerate().skip(first_byte) {
        let shift = 8 * d;
        if (diff >> shift) & 0xFF == 0 {
            continue;
        }
        let mut sum = 0;
        for c in c.iter_mut() {
            let t = *c;
            *c = sum;
            sum += t;
        }
        for &e in v.iter() {
            let b = ((key(&e) >> shift) & 0xFF) as usize;
            tmp[c[b]] = e;
            c[b] += 1;
        }
        std::mem::swap(v, tmp);
    }
}

/// One stable counting pass of `radix_sort` on the byte at `shift`, `src` to `dst`, split over
/// the pool: chunks of `src` count their bytes, and each writes into its own run of every
/// bucket of `dst` (bucket-major, chunk order within a bucket).
fn radix_pass_par<T: Copy + Send + Sync>(
    src: &[T],
    dst: &mut [T],
    key: &(impl Fn(&T) -> u64 + Sync),
    shift: usize,
) {
    const CH: usize = 1 << 16;
    let byte = |e: &T| ((key(e) >> shift) & 0xFF) as usize;
    let hist: Vec<[usize; 256]> = src
        .par_chunks(CH)
        .map(|c| {
            let mut h = [0usize; 256];
            for e in c {
                h[byte(e)] += 1;
            }
            h
        })
        .collect();
    let mut runs: Vec<Vec<&mut [T]>> = (0..hist.len()).map(|_| Vec::with_capacity(256)).collect();
    let mut rest = dst;
    for b in 0..256 {
        for (c, h) in hist.iter().enumerate() {
            let (run, r) = std::mem::take(&mut rest).split_at_mut(h[b]);
            runs[c].push(run);
            rest = r;
        }
    }
    runs.into_par_iter().zip(src.par_chunks(CH)).for_each(|(mut runs, c)| {
        let mut at = [0usize; 256];
        for e in c {
            let b = byte(e);
            runs[b][at[b]] = *e;
            at[b] += 1;
        }
    });
}

#[derive(Clone, Copy, Debug, Default)]
struct Cell {
    id: i64,
    /// Its items: sorted positions `start..end`.
    start: usize,
    end: usize,
    /// The occupied cells within the window: `cells[nb.0..nb.1]`.
    nb: (usize, usize),
    /// The first sorted position above the window: sources from there on count 1 for sigma.
    far: usize,
    /// Its anterpolation units: `units[u.0..u.1]`.
    u: (usize, usize),
}

/// One list's plan: sort, segments, cells, Lagrange values. Built once per list per call and
/// shared by every sum of that call.
#[derive(Default)]
pub(crate) struct Plan {
    m: usize,
    /// Sort keys: `(key, index)`, or for f32 `key << 32 | index` in one word.
    keys: Vec<(u64, usize)>,
    tmp: Vec<(u64, usize)>,
    keys32: Vec<u64>,
    tmp32: Vec<u64>,
    /// Sorted position -> index in the list, and its inverse.
    perm: Vec<usize>,
    inv: Vec<AtomicUsize>,
    /// Local coordinate `(s - s_seg0) / T` per sorted position.
    x: Vec<f64>,
    starts: Vec<usize>,
    /// A segment's cell boundaries (relative positions).
    bounds: Vec<usize>,
    /// Per sorted position: its cell, or NONE where the segment is summed directly.
    pcell: Vec<usize>,
    /// Per directly summed position: the positions within `D`, `lo..hi`.
    win: Vec<(usize, usize)>,
    max_win: usize,
    /// Per interpolated position: the Lagrange values of its place in its cell.
    lag: Vec<[f64; P]>,
    cells: Vec<Cell>,
    /// Anterpolation units `(cell, start, end)`: a cell cut at multiples of `BLK`.
    units: Vec<(usize, usize, usize)>,
    /// Tests: 1 interpolates every segment, 2 sums every segment directly.
    force: u8,
}

/// `v` with length `m`: new elements set to `value` (on the pool when `par`, so that big
/// buffers are first touched in parallel), old ones left as they are.
pub(crate) fn grow<T: Copy + Send + Sync>(v: &mut Vec<T>, m: usize, value: T, par: bool) {
    if v.len() < m {
        let more = m - v.len();
        if par {
            v.par_extend(rayon::iter::repeat_n(value, more));
        } else {
            v.resize(m, value);
        }
    }
    v.truncate(m);
}

/// `v` with length `m`, every element `value`.
pub(crate) fn fill<T: Copy + Send + Sync>(v: &mut Vec<T>, m: usize, value: T, par: bool) {
    let old = v.len().min(m);
    grow(v, m, value, par);
    for_chunks(par, &mut v[..old], BLK, |_, c| c.fill(value));
}

/// `f(chunk index, chunk)` over `data.chunks_mut(size)`, in parallel when `par`.
pub(crate) fn for_chunks<T: Send>(
    par: bool,
    data: &mut [T],
    size: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let size = size.max(1);
    if par {
        data.par_chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        data.chunks_mut(size).enumerate().for_each(|(i, c)| f(i, c));
    }
}

impl Plan {
    pub(crate) fn len(&self) -> usize {
        self.m
    }

    /// The items its buffers hold room for.
    pub(crate) fn capacity(&self) -> usize {
        self.x.capacity()
    }

    /// Whether the steps run on the pool.
    pub(crate) fn par(&self) -> bool {
        self.m > SERIAL
    }

    /// (items in interpolated segments, items summed directly, occupied cells).
    #[cfg(test)]
    pub(crate) fn stats(&self) -> (usize, usize, usize) {
        let interp = self.pcell.iter().filter(|&&c| c != NONE).count();
        (interp, self.m - interp, self.cells.len())
    }

    /// Plans the sums over `s` (finite) at `1 / T = inv_t`.
    pub(crate) fn build<F: Float>(&mut self, s: &[F], inv_t: f64) {
        build_d::<F>(self, s, inv_t);
    }

    /// The sort: `perm` (sorted position -> index), its inverse, and the scores in sorted order.
    #[inline(always)]
    fn sort<F: Float>(&mut self, s: &[F]) {
        let m = s.len();
        let par = self.par();
        grow(&mut self.perm, m, 0, par);
        if std::mem::size_of::<F>() == 4 && m <= u32::MAX as usize {
            self.keys32.clear();
            let key = |(i, &v): (usize, &F)| (order_key32(v.to_f64() as f32) as u64) << 32 | i as u64;
            if par {
                self.keys32.par_extend(s.par_iter().enumerate().map(key));
            } else {
                self.keys32.extend(s.iter().enumerate().map(key));
            }
            radix_sort(&mut self.keys32, &mut self.tmp32, |&k| k, 4, par);
            let keys = &self.keys32;
            for_chunks(par, &mut self.perm, BLK, |c, chunk| {
                for (k, p) in chunk.iter_mut().enumerate() {
                    *p = (keys[c * BLK + k] & 0xFFFF_FFFF) as usize;
                }
            });
        } else {
            self.keys.clear();
            let key = |(i, &v): (usize, &F)| (order_key(v.to_f64()), i);
            if par {
                self.keys.par_extend(s.par_iter().enumerate().map(key));
            } else {
                self.keys.extend(s.iter().enumerate().map(key));
            }
            radix_sort(&mut self.keys, &mut self.tmp, |&(k, _)| k, 0, par);
            let keys = &self.keys;
            for_chunks(par, &mut self.perm, BLK, |c, chunk| {
                for (k, p) in chunk.iter_mut().enumerate() {
                    *p = keys[c * BLK + k].1;
                }
            });
        }
        // The inverse by scattered (relaxed atomic: plain) stores, each index stored once.
        if self.inv.len() < m {
            let more = m - self.inv.len();
            if par {
                self.inv.par_extend((0..more).into_par_iter().map(|_| AtomicUsize::new(0)));
            } else {
                self.inv.extend((0..more).map(|_| AtomicUsize::new(0)));
            }
        }
        self.inv.truncate(m);
        let (perm, inv) = (&self.perm, &self.inv);
        let store = |(k, &i): (usize, &usize)| inv[i].store(k, Ordering::Relaxed);
        if par {
            perm.par_iter().enumerate().for_each(store);
        } else {
            perm.iter().enumerate().for_each(store);
        }
        grow(&mut self.x, m, 0.0, par);
        let perm = &self.perm;
        for_chunks(par, &mut self.x, BLK, |c, chunk| {
            for (k, x) in chunk.iter_mut().enumerate() {
                *x = s[perm[c * BLK + k]].to_f64();
            }
        });
    }

    /// Local coordinates, cells or windows of the segment at sorted positions `a..b` (a long
    /// segment's maps and counts on the pool).
    #[inline(always)]
    fn segment(&mut self, a: usize, b: usize, inv_t: f64) {
        let n = b - a;
        let par = n > SERIAL;
        let x0 = self.x[a];
        for_chunks(par, &mut self.x[a..b], BLK, |_, chunk| {
            for v in chunk {
                *v = (*v - x0) * inv_t;
            }
        });
        let x = &self.x[a..b];
        let cell_of = |v: f64| (v * INV_H).floor() as i64;
        // Relative positions where a new cell begins.
        let new_cell = |k: &usize| *k == 0 || cell_of(x[k - 1]) != cell_of(x[*k]);
        self.bounds.clear();
        if par {
            self.bounds.par_extend((0..n).into_par_iter().filter(new_cell));
        } else {
            self.bounds.extend((0..n).filter(new_cell));
        }
        if interpolates(n, self.bounds.len(), self.force) {
            let c0 = self.cells.len();
            for (i, &k) in self.bounds.iter().enumerate() {
                let end = self.bounds.get(i + 1).map_or(b, |&e| a + e);
                self.cells.push(Cell { id: cell_of(x[k]), start: a + k, end, ..Cell::default() });
            }
            let c1 = self.cells.len();
            let cells = &self.cells[c0..c1];
            for_chunks(par, &mut self.pcell[a..b], BLK, |i, chunk| {
                let p0 = a + i * BLK;
                let mut c = cells.partition_point(|cell| cell.end <= p0);
                for (k, pc) in chunk.iter_mut().enumerate() {
                    while cells[c].end <= p0 + k {
                        c += 1;
                    }
                    *pc = c0 + c;
                }
            });
            let (mut lo, mut hi) = (c0, c0);
            for c in c0..c1 {
                let id = self.cells[c].id;
                while self.cells[lo].id < id - W {
                    lo += 1;
                }
                while hi < c1 && self.cells[hi].id <= id + W {
                    hi += 1;
                }
                self.cells[c].nb = (lo, hi);
                self.cells[c].far = if hi < c1 { self.cells[hi].start } else { b };
            }
        } else {
            if self.win.len() < self.m {
                grow(&mut self.win, self.m, (0, 0), self.m > SERIAL);
            }
            let x = &self.x;
            let (mut lo, mut hi) = (a, a);
            for k in a..b {
                let xk = x[k];
                while xk - x[lo] > D {
                    lo += 1;
                }
                while hi < b && x[hi] - xk <= D {
                    hi += 1;
                }
                self.win[k] = (lo, hi);
                self.pcell[k] = NONE;
                self.max_win = self.max_win.max(hi - lo);
            }
        }
    }

    /// `dst[k] = src[perm[k]]`: list order to sorted order.
    pub(crate) fn to_sorted(&self, src: impl Fn(usize) -> f64 + Sync, dst: &mut [f64]) {
        let perm = &self.perm;
        for_chunks(self.par(), &mut dst[..self.m], BLK, |i, chunk| {
            for (k, d) in chunk.iter_mut().enumerate() {
                *d = src(perm[i * BLK + k]);
            }
        });
    }

    /// `dst[i] = f(sorted position of i)`: back to list order, rounded once to `F`.
    pub(crate) fn to_list<F: Float>(&self, f: impl Fn(usize) -> f64 + Sync, dst: &mut [F]) {
        let inv = &self.inv;
        for_chunks(self.par(), &mut dst[..self.m], BLK, |i, chunk| {
            for (k, d) in chunk.iter_mut().enumerate() {
                *d = F::from_f64(f(inv[i * BLK + k].load(Ordering::Relaxed)));
            }
        });
    }

    /// `out[k * NW + w] = sum_j ws[w * m + j] K(x_j - x_k)` over sorted positions (for `SIG`,
    /// with the saturated sources above counted as 1: `NW = 1`, `ws` all ones, for ranks).
    pub(crate) fn sums<const K: u8, const NW: usize>(
        &self,
        ws: &[f64],
        out: &mut Vec<f64>,
        sc: &mut Scratch,
    ) {
        let m = self.m;
        assert!(ws.len() >= NW * m && (K != SIG || NW == 1));
        grow(out, m * NW, 0.0, self.par());
        let zero = [0.0; P];
        sc.part.resize(self.units.len() * NW, zero);
        sc.q.resize(self.cells.len() * NW, zero);
        sc.phi.resize(self.cells.len() * NW, zero);
        if !self.par() {
            sums_serial::<K, NW>(self, ws, out, sc);
            return;
        }
        let Scratch { part, q, phi } = sc;
        for_chunks(true, part, NW * CHUNK, |i, chunk| anterpolate_d::<NW>(self, ws, i * CHUNK, chunk));
        for_chunks(true, q, NW * CHUNK, |i, chunk| combine::<NW>(self, part, i * CHUNK, chunk));
        for_chunks(true, phi, NW * CHUNK, |i, chunk| cell_to_cell_d::<K, NW>(self, q, i * CHUNK, chunk));
        for_chunks(true, out, NW * BLK, |i, chunk| interpolate_d::<K, NW>(self, ws, phi, i * BLK, chunk));
    }
}

/// `Plan::build`, compiled for the best instruction set (`floor`, the divisions).
#[inline(always)]
fn build_generic<F: Float>(isa: Isa, plan: &mut Plan, s: &[F], inv_t: f64) {
    let m = s.len();
    plan.m = m;
    let par = plan.par();
    plan.sort(s);
    grow(&mut plan.pcell, m, NONE, par);
    plan.max_win = 0;
    plan.cells.clear();
    plan.units.clear();
    // Segment breaks, on the scores themselves (a gap may overflow to +inf: a break).
    plan.starts.clear();
    let x = &plan.x;
    let breaks = |k: &usize| *k == 0 || (x[*k] - x[k - 1]) * inv_t > D;
    if par {
        plan.starts.par_extend((0..m).into_par_iter().filter(breaks));
    } else {
        plan.starts.extend((0..m).filter(breaks));
    }
    plan.starts.push(m);
    for si in 0..plan.starts.len() - 1 {
        plan.segment(plan.starts[si], plan.starts[si + 1], inv_t);
    }
    for c in 0..plan.cells.len() {
        let (u0, Cell { start, end, .. }) = (plan.units.len(), plan.cells[c]);
        let mut p = start;
        while p < end {
            let e = end.min((p / BLK + 1) * BLK);
            plan.units.push((c, p, e));
            p = e;
        }
        plan.cells[c].u = (u0, plan.units.len());
    }
    grow(&mut plan.lag, m, [0.0; P], par);
    let (x, pcell) = (&plan.x, &plan.pcell);
    if par {
        for_chunks(true, &mut plan.lag, BLK, |i, chunk| lagrange_chunk_d(x, pcell, i * BLK, chunk));
    } else {
        lagrange_chunk(isa, x, pcell, 0, &mut plan.lag);
    }
}

/// The Lagrange values of the interpolated positions `p0..` (as `lagrange`, eight positions at
/// a time so that the divisions vectorise across positions).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn lagrange_chunk(_isa: Isa, x: &[f64], pcell: &[usize], p0: usize, lag: &mut [[f64; P]]) {
    const G: usize = 8;
    let nd = nodes();
    for (g, out) in lag.chunks_mut(G).enumerate() {
        let k0 = p0 + g * G;
        let mut u = [0.5; G];
        for (j, u) in u.iter_mut().enumerate().take(out.len()) {
            let xh = x[k0 + j] * INV_H;
            *u = xh - xh.floor();
        }
        let mut t = [[0.0; G]; P];
        let mut sum = [0.0; G];
        let mut hit = [false; G];
        for a in 0..P {
            for j in 0..G {
                let d = u[j] - nd.tau[a];
                hit[j] |= d == 0.0;
                t[a][j] = nd.bw[a] / d;
                sum[j] += t[a][j];
            }
        }
        for (j, l) in out.iter_mut().enumerate() {
            if pcell[k0 + j] == NONE {
                continue;
            }
            if hit[j] {
                *l = lagrange(u[j], nd);
            } else {
                let inv = 1.0 / sum[j];
                for a in 0..P {
                    l[a] = t[a][j] * inv;
                }
            }
        }
    }
}

simd_dispatch!(build_d, build_generic(isa), [F: Float], [F], (plan: &mut Plan, s: &[F], inv_t: f64) -> ());
simd_dispatch!(lagrange_chunk_d, lagrange_chunk(isa), [], [],
    (x: &[f64], pcell: &[usize], p0: usize, lag: &mut [[f64; P]]) -> ());

/// Per-list scratch of `Plan::sums`.
#[derive(Default)]
pub(crate) struct Scratch {
    part: Vec<[f64; P]>,
    q: Vec<[f64; P]>,
    phi: Vec<[f64; P]>,
}

/// Partial anterpolation of units `u0..`: `part[u * NW + w] = sum_{j in u} w_j L(u_j)`.
#[inline(always)]
fn anterpolate<const NW: usize>(_isa: Isa, plan: &Plan, ws: &[f64], u0: usize, part: &mut [[f64; P]]) {
    let m = plan.m;
    for (k, pu) in part.chunks_exact_mut(NW).enumerate() {
        let (_, a, b) = plan.units[u0 + k];
        let mut acc = [[0.0; P]; NW];
        for j in a..b {
            let l = &plan.lag[j];
            for (w, acc) in acc.iter_mut().enumerate() {
                let wt = ws[w * m + j];
                for t in 0..P {
                    acc[t] += wt * l[t];
                }
            }
        }
        pu.copy_from_slice(&acc);
    }
}

/// `q` of cells `c0..`: their units' partials added in order.
#[inline(always)]
fn combine<const NW: usize>(plan: &Plan, part: &[[f64; P]], c0: usize, q: &mut [[f64; P]]) {
    for (k, qc) in q.chunks_exact_mut(NW).enumerate() {
        let (u0, u1) = plan.cells[c0 + k].u;
        qc.copy_from_slice(&part[u0 * NW..(u0 + 1) * NW]);
        for u in u0 + 1..u1 {
            for (acc, p) in qc.iter_mut().zip(&part[u * NW..(u + 1) * NW]) {
                for t in 0..P {
                    acc[t] += p[t];
                }
            }
        }
    }
}

/// `phi` of cells `c0..`: the offset matrices applied to the window's `q`, offsets in order.
#[inline(always)]
fn cell_to_cell<const K: u8, const NW: usize>(
    _isa: Isa,
    plan: &Plan,
    q: &[[f64; P]],
    c0: usize,
    phi: &mut [[f64; P]],
) {
    let mats = mats(K);
    for (k, ph) in phi.chunks_exact_mut(NW).enumerate() {
        let cell = &plan.cells[c0 + k];
        let mut acc = [[0.0; P]; NW];
        for nb in cell.nb.0..cell.nb.1 {
            let mt = &mats[(plan.cells[nb].id - cell.id + W) as usize];
            for (w, acc) in acc.iter_mut().enumerate() {
                let qb = &q[nb * NW + w];
                for b in 0..P {
                    let (qv, row) = (qb[b], &mt[b]);
                    for a in 0..P {
                        acc[a] += row[a] * qv;
                    }
                }
            }
        }
        ph.copy_from_slice(&acc);
    }
}

/// The sums at sorted positions `p0..`: interpolated from `phi`, or the window summed directly.
#[inline(always)]
fn interpolate<const K: u8, const NW: usize>(
    _isa: Isa,
    plan: &Plan,
    ws: &[f64],
    phi: &[[f64; P]],
    p0: usize,
    out: &mut [f64],
) {
    let m = plan.m;
    let mut tmp = Vec::new();
    for (k, o) in out.chunks_exact_mut(NW).enumerate() {
        let pos = p0 + k;
        let c = plan.pcell[pos];
        if c != NONE {
            let l = &plan.lag[pos];
            for (w, o) in o.iter_mut().enumerate() {
                *o = dot(l, &phi[c * NW + w]);
            }
            if K == SIG {
                o[0] += (m - plan.cells[c].far) as f64;
            }
        } else {
            let (lo, hi) = plan.win[pos];
            let xk = plan.x[pos];
            tmp.resize(plan.max_win, 0.0);
            let t = &mut tmp[..hi - lo];
            for (tj, &xj) in t.iter_mut().zip(&plan.x[lo..hi]) {
                *tj = kernel::<K>(xj - xk);
            }
            for (w, o) in o.iter_mut().enumerate() {
                *o = lane_dot(t, &ws[w * m + lo..w * m + hi]);
            }
            if K == SIG {
                o[0] += (m - hi) as f64;
            }
        }
    }
}

/// All four steps on the calling thread (the same partition and arithmetic as in parallel).
#[inline(always)]
fn sums_serial_generic<const K: u8, const NW: usize>(
    isa: Isa,
    plan: &Plan,
    ws: &[f64],
    out: &mut [f64],
    sc: &mut Scratch,
) {
    anterpolate::<NW>(isa, plan, ws, 0, &mut sc.part);
    combine::<NW>(plan, &sc.part, 0, &mut sc.q);
    cell_to_cell::<K, NW>(isa, plan, &sc.q, 0, &mut sc.phi);
    interpolate::<K, NW>(isa, plan, ws, &sc.phi, 0, out);
}

simd_dispatch!(anterpolate_d, anterpolate(isa), [const NW: usize], [NW],
    (plan: &Plan, ws: &[f64], u0: usize, part: &mut [[f64; P]]) -> ());
simd_dispatch!(cell_to_cell_d, cell_to_cell(isa), [const K: u8, const NW: usize], [K, NW],
    (plan: &Plan, q: &[[f64; P]], c0: usize, phi: &mut [[f64; P]]) -> ());
simd_dispatch!(interpolate_d, interpolate(isa), [const K: u8, const NW: usize], [K, NW],
    (plan: &Plan, ws: &[f64], phi: &[[f64; P]], p0: usize, out: &mut [f64]) -> ());
simd_dispatch!(sums_serial, sums_serial_generic(isa), [const K: u8, const NW: usize], [K, NW],
    (plan: &Plan, ws: &[f64], out: &mut [f64], sc: &mut Scratch) -> ());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;

    #[test]
    fn radix_sort_orders_by_value_then_index() {
        let mut rng = Rng(5);
        for n in [0, 1, 3, 64, 65, 1000, 200_000] {
            // Ties, both zeros, magnitudes far apart.
            let s: Vec<f64> = (0..n)
                .map(|i| match i % 4 {
                    0 => (rng.normal() * 3.0).round(),
                    1 => -0.0,
                    2 => rng.normal() * 1e300,
                    _ => rng.normal() * 1e-300,
                })
                .collect();
            let mut want: Vec<usize> = (0..n).collect();
            want.sort_by(|&a, &b| s[a].partial_cmp(&s[b]).unwrap().then(a.cmp(&b)));
            for par in [false, true] {
                let mut keys: Vec<(u64, usize)> =
                    s.iter().enumerate().map(|(i, &v)| (order_key(v), i)).collect();
                radix_sort(&mut keys, &mut Vec::new(), |&(k, _)| k, 0, par);
                assert!(keys.iter().map(|k| k.1).eq(want.iter().copied()), "n={n} par={par}");
                let mut k32: Vec<u64> = s
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| (order_key32(v as f32) as u64) << 32 | i as u64)
                    .collect();
                radix_sort(&mut k32, &mut Vec::new(), |&k| k, 4, par);
                let mut want32: Vec<usize> = (0..n).collect();
                want32.sort_by(|&a, &b| (s[a] as f32).partial_cmp(&(s[b] as f32)).unwrap().then(a.cmp(&b)));
                assert!(k32.iter().map(|&k| (k & 0xFFFF_FFFF) as usize).eq(want32.iter().copied()));
            }
        }
    }

    /// `F_k = sum_j w_j K(x_j - x_k)` by every pair, in full precision, with `sum_j |w_j K|`
    /// and `sum_j |w_j|` (the error scales; `sigma''` takes its envelope `sigma'`).
    fn pairs(k: u8, s: &[f64], inv_t: f64, w: &[f64]) -> (Vec<f64>, f64, f64) {
        let n = s.len();
        let mut f = vec![0.0; n];
        let (mut sm, mut am) = (0.0f64, 0.0f64);
        for i in 0..n {
            let (mut sa, mut aa) = (0.0, 0.0);
            for j in 0..n {
                let d = (s[j] - s[i]) * inv_t;
                f[i] += w[j] * kernel_exact(k, d);
                let env = if k == D2 { kernel_exact(D1, d) } else { kernel_exact(k, d) };
                sa += (w[j] * env).abs();
                aa += w[j].abs();
            }
            sm = sm.max(sa);
            am = am.max(aa);
        }
        (f, sm, am)
    }

    fn check_sums<const K: u8, const NW: usize>(
        plan: &Plan,
        s: &[f64],
        inv_t: f64,
        w: &[Vec<f64>],
        what: &str,
    ) {
        let m = s.len();
        let mut ws = vec![0.0; NW * m];
        for (set, wv) in w.iter().enumerate() {
            plan.to_sorted(|i| wv[i], &mut ws[set * m..(set + 1) * m]);
        }
        let mut out = Vec::new();
        plan.sums::<K, NW>(&ws, &mut out, &mut Scratch::default());
        for (set, wv) in w.iter().enumerate() {
            let (want, sm, am) = pairs(K, s, inv_t, wv);
            let mut got = vec![0.0; m];
            plan.to_list(|k| out[k * NW + set], &mut got);
            let tol = 1e-10 * sm.max(if K == SIG { 1.0 } else { 0.0 }) + (-D).exp() * am;
            for i in 0..m {
                assert!(
                    (got[i] - want[i]).abs() <= tol,
                    "{what} K={K} set {set} item {i}: {} vs {}",
                    got[i],
                    want[i]
                );
            }
        }
    }

    #[test]
    fn interpolated_and_direct_segments_both_match_the_pairs() {
        let mut rng = Rng(11);
        let n = 400;
        for dist in 0..5 {
            let s: Vec<f64> = (0..n)
                .map(|i| match dist {
                    0 => rng.normal(),
                    1 => (std::f64::consts::PI * (rng.next() - 0.5)).tan(),
                    2 => (rng.normal() * 2.0).round() / 2.0,
                    3 => rng.normal() * 30.0,
                    _ => 7.0 + if i % 3 == 0 { 1e-9 * rng.normal() } else { 60.0 * rng.next() },
                })
                .collect();
            let w: Vec<Vec<f64>> = (0..4).map(|_| (0..n).map(|_| rng.normal()).collect()).collect();
            for inv_t in [0.3, 1.0, 10.0] {
                for force in [1, 2] {
                    let mut plan = Plan { force, ..Plan::default() };
                    plan.build(&s, inv_t);
                    let (interp, direct, _) = plan.stats();
                    assert_eq!((interp, direct), if force == 1 { (n, 0) } else { (0, n) });
                    let what = format!("dist {dist} 1/T {inv_t} force {force}");
                    check_sums::<SIG, 1>(&plan, &s, inv_t, &[vec![1.0; n]], &what);
                    check_sums::<D1, 2>(&plan, &s, inv_t, &w[..2], &what);
                    check_sums::<D2, 4>(&plan, &s, inv_t, &w, &what);
                }
            }
        }
    }

    #[test]
    fn lagrange_is_a_partition_of_unity_and_exact_on_nodes() {
        let nd = nodes();
        for u in [0.0, 0.1, 0.5, 0.999_999, nd.tau[3]] {
            let l = lagrange(u, nd);
            assert!((l.iter().sum::<f64>() - 1.0).abs() < 1e-14);
            let mut chunk = [[0.0; P]; 1];
            lagrange_chunk(Isa::Portable, &[u], &[0], 0, &mut chunk);
            assert_eq!(chunk[0], l);
        }
        assert_eq!(lagrange(nd.tau[3], nd)[3], 1.0);
    }
}
