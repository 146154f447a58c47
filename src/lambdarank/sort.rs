//! The score order of one list: a stable sort by score descending, packed into `u64` keys.

/// `idx`: the positions of `s` by score descending, ties in input order (a stable sort;
/// -0.0 == 0.0 as in C++). The scores' bits, made order-preserving, are sorted as `u64` with
/// the position in the low bits (fast, branch-free); runs whose truncated keys tie are then
/// put in order by their full keys. `keys` is scratch.
pub(super) fn sort_desc(s: &[f64], keys: &mut Vec<u64>, idx: &mut Vec<usize>) {
    let m = s.len();
    let bits = usize::BITS - (m.max(2) - 1).leading_zeros();
    let mask: u64 = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let desc = |s: f64| -> u64 {
        let b = (s + 0.0).to_bits(); // -0.0 + 0.0 = +0.0
        !(if b >> 63 == 1 { !b } else { b | (1 << 63) })
    };
    keys.clear();
    keys.extend(s.iter().enumerate().map(|(p, &v)| (desc(v) & !mask) | p as u64));
    keys.sort_unstable();
    let mut a = 0;
    while a < m {
        let hi = keys[a] & !mask;
        let mut b = a + 1;
        while b < m && keys[b] & !mask == hi {
            b += 1;
        }
        if b - a > 1 {
            let full = desc(s[(keys[a] & mask) as usize]);
            if keys[a + 1..b].iter().any(|&k| desc(s[(k & mask) as usize]) != full) {
                keys[a..b].sort_unstable_by_key(|&k| (desc(s[(k & mask) as usize]), k & mask));
            }
        }
        a = b;
    }
    idx.clear();
    idx.extend(keys.iter().map(|&k| (k & mask) as usize));
}
