//! The float types the kernels run in (f32 and f64), with an `exp` the compiler can vectorise.
//!
//! `std`'s `exp` is a libm call, which keeps a loop scalar. `exp_fast` is Cody–Waite range
//! reduction plus a Taylor polynomial written with plain `+`/`*` and bit tricks only, so a
//! loop of them becomes SIMD code. Its error is below 2 ulp (f32) and 1e-15 relative (f64).
//! No `mul_add`: results are the same on every instruction set.

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

pub trait Float:
    Copy
    + Send
    + Sync
    + Debug
    + PartialOrd
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + 'static
{
    const ZERO: Self;
    const ONE: Self;

    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
    fn exp_fast(self) -> Self;
    fn abs(self) -> Self;
    fn is_finite(self) -> bool;
    /// `[sqrt(smallest normal), sqrt(largest)]`, rounded in `Self`: where a temperature or
    /// sigma keeps itself, its reciprocal and its square finite and normal (`_inputs.scale_range`
    /// in Python, the same numbers).
    fn scale_range() -> (Self, Self);
}

/// `v` if it lies in `F::scale_range()`, else an error naming `arg`. Inside the range `x / T`,
/// `sigma * x` and `sigma^2` never turn a finite input into NaN by themselves.
pub fn check_scale<F: Float>(arg: &'static str, v: F) -> crate::Result<F> {
    let (lo, hi) = F::scale_range();
    if v >= lo && v <= hi {
        return Ok(v);
    }
    let what = if v > F::ZERO && v.is_finite() {
        format!("is out of range: it must lie in [{:e}, {:e}]", lo.to_f64(), hi.to_f64())
    } else {
        "must be a positive finite number".to_string()
    };
    Err(crate::Error::invalid(arg, format!("{what}, got {v:?}")))
}

/// `a` if `cond` else `b`, written so that a loop of it stays branch-free (a blend).
#[inline(always)]
pub fn select<F: Copy>(cond: bool, a: F, b: F) -> F {
    if cond {
        a
    } else {
        b
    }
}

/// Lanes a reduction is split into so that it vectorises; the lanes are summed in a fixed
/// order, so results do not depend on the instruction set.
pub const L: usize = 8;

/// `init + acc[0] + ... + acc[L - 1]`, in that order.
#[inline(always)]
pub fn lane_sum<F: Float>(acc: &[F; L], init: F) -> F {
    acc.iter().fold(init, |a, &b| a + b)
}

/// Sums `v` in `L` lanes, then the lanes in order: vectorises, and the order is fixed.
#[inline(always)]
pub fn lane_total<F: Float>(v: &[F]) -> F {
    let mut acc = [F::ZERO; L];
    let mut chunks = v.chunks_exact(L);
    for c in &mut chunks {
        let c: &[F; L] = c.try_into().unwrap();
        for l in 0..L {
            acc[l] += c[l];
        }
    }
    lane_sum(&acc, chunks.remainder().iter().fold(F::ZERO, |a, &b| a + b))
}

/// `sum_k a[k] * b[k]` in `L` lanes, then the lanes in order (like `lane_total`).
#[inline(always)]
pub fn lane_dot<F: Float>(a: &[F], b: &[F]) -> F {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [F::ZERO; L];
    let mut ca = a.chunks_exact(L);
    let mut cb = b.chunks_exact(L);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let x: &[F; L] = x.try_into().unwrap();
        let y: &[F; L] = y.try_into().unwrap();
        for l in 0..L {
            acc[l] += x[l] * y[l];
        }
    }
    let rest = ca.remainder().iter().zip(cb.remainder()).fold(F::ZERO, |s, (&x, &y)| s + x * y);
    lane_sum(&acc, rest)
}

impl Float for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;

    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        const LN2_HI: f32 = 0.693_359_4; // 355/512, exact
        const LN2_LO: f32 = -2.121_944_4e-4;
        const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
                                         // Keeps 2^n and the sigmoid built on it in the normal range (no denormals).
        let x = select(self < -87.0, -87.0, self);
        let x = select(x > 87.0, 87.0, x);
        let t = x * LOG2E + MAGIC;
        let n = t - MAGIC;
        let r = x - n * LN2_HI - n * LN2_LO;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0
                        + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
        // t's low mantissa bits hold n + 2^22; shift n + 127 into the exponent field.
        let e = (t.to_bits() as i32).wrapping_sub(0x4B40_0000 - 127) << 23;
        p * f32::from_bits(e as u32)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::from_bits(self.to_bits() & 0x7FFF_FFFF)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
    fn scale_range() -> (Self, Self) {
        (f32::MIN_POSITIVE.sqrt(), f32::MAX.sqrt())
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;

    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        const LOG2E: f64 = std::f64::consts::LOG2_E;
        #[allow(clippy::excessive_precision)]
        const LN2_HI: f64 = 6.931_471_803_691_238_2e-1;
        const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
        const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
        let x = select(self < -708.0, -708.0, self);
        let x = select(x > 708.0, 708.0, x);
        let t = x * LOG2E + MAGIC;
        let n = t - MAGIC;
        let r = x - n * LN2_HI - n * LN2_LO;
        // Taylor series to degree 13, Horner form; |r| <= ln2/2 so the remainder is < 1e-17.
        let mut p = 1.0 / 6_227_020_800.0;
        p = p * r + 1.0 / 479_001_600.0;
        p = p * r + 1.0 / 39_916_800.0;
        p = p * r + 1.0 / 3_628_800.0;
        p = p * r + 1.0 / 362_880.0;
        p = p * r + 1.0 / 40_320.0;
        p = p * r + 1.0 / 5_040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        let e = (t.to_bits() as i64).wrapping_sub(0x4338_0000_0000_0000 - 1023) << 52;
        p * f64::from_bits(e as u64)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f64::from_bits(self.to_bits() & 0x7FFF_FFFF_FFFF_FFFF)
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
    fn scale_range() -> (Self, Self) {
        (f64::MIN_POSITIVE.sqrt(), f64::MAX.sqrt())
    }
}

/// `1 / (2k + 1)`, the coefficients of `atanh(z) / z = sum_k z^(2k) / (2k + 1)` (`ln_1p_unit`;
/// the LambdaRank AVX2 kernel evaluates the same series with the same operations).
pub(crate) const ATANH: [f64; 17] = [
    1.0,
    1.0 / 3.0,
    1.0 / 5.0,
    1.0 / 7.0,
    1.0 / 9.0,
    1.0 / 11.0,
    1.0 / 13.0,
    1.0 / 15.0,
    1.0 / 17.0,
    1.0 / 19.0,
    1.0 / 21.0,
    1.0 / 23.0,
    1.0 / 25.0,
    1.0 / 27.0,
    1.0 / 29.0,
    1.0 / 31.0,
    1.0 / 33.0,
];

/// `ln(1 + u)` for `u in [0, 1]`, in plain arithmetic so that a loop of it vectorises:
/// `ln(1 + u) = 2 atanh(z)`, `z = u / (2 + u) in [0, 1/3]`, a truncated odd series. Relative
/// error of the series below 2e-9 (f32, 8 terms) and 2e-17 (f64, 17 terms), a few ulp after
/// rounding; full relative accuracy for tiny `u` (no `1 + u` is formed).
#[inline(always)]
pub fn ln_1p_unit<F: Float>(u: F) -> F {
    let z = u / (F::from_f64(2.0) + u);
    let z2 = z * z;
    let terms = if std::mem::size_of::<F>() == 4 { 8 } else { ATANH.len() };
    let mut p = F::ZERO;
    for &c in ATANH[..terms].iter().rev() {
        p = p * z2 + F::from_f64(c);
    }
    F::from_f64(2.0) * z * p
}

/// `a b c` for finite `a` (any sign) and non-negative finite `b`, `c`, multiplied as
/// `(a * min(b, c)) * max(b, c)`: finite whenever the true product is (`a * min(b, c)`
/// overflows only if `|a| min(b, c) > MAX`, and then `max(b, c) >= 1`, or else
/// `min(b, c) < 1` and `|a| min(b, c) < |a|`), never NaN, exactly 0 when a factor is 0. It
/// loses precision (a subnormal intermediate) only where `|a| min(b, c)` is below
/// `MIN_POSITIVE`. Compares and selects only, so a loop of it vectorises (`_mm256_min_pd(x, y)`
/// and `_mm256_max_pd(x, y)` are exactly `select(x < y, x, y)` and `select(x > y, x, y)`).
#[inline(always)]
pub fn mul3<F: Float>(a: F, b: F, c: F) -> F {
    let lo = select(b < c, b, c);
    let hi = select(b > c, b, c);
    a * lo * hi
}

/// `(sigmoid(x), sigmoid(-x), sigmoid'(x))` from one `exp(-|x|)`, each without cancellation.
#[inline(always)]
pub fn sigmoid3<F: Float>(x: F) -> (F, F, F) {
    let e = (-x.abs()).exp_fast();
    let q = F::ONE / (F::ONE + e);
    let eq = e * q;
    let pos = x >= F::ZERO;
    (select(pos, q, eq), select(pos, eq, q), eq * q)
}

/// `(sigmoid(x), sigmoid(-x))`.
#[inline(always)]
pub fn sigmoid2<F: Float>(x: F) -> (F, F) {
    let (p, pc, _) = sigmoid3(x);
    (p, pc)
}

/// `sigmoid'(x) = sigmoid(x) sigmoid(-x)`.
#[inline(always)]
pub fn sigmoid_grad<F: Float>(x: F) -> F {
    let e = (-x.abs()).exp_fast();
    let q = F::ONE / (F::ONE + e);
    e * q * q
}

/// `(sigmoid'(x), sigmoid''(x))` from one `exp(-|x|)`, both exactly 0 where `exp_fast` clamps
/// (|x| >= 87 in f32, >= 708 in f64): there the true values are below the smallest normal, and
/// a `1 / T^2` of up to `2^126` (f32) must not scale the clamp's floor into a visible term.
/// `sigmoid''(x) = sigmoid'(x) (1 - 2 sigmoid(x))` is odd; its absolute error is ~1 ulp of
/// `sigmoid'(x)`.
#[inline(always)]
pub fn sigmoid_grad_hess<F: Float>(x: F) -> (F, F) {
    let floor = F::from_f64(f64::MIN).exp_fast();
    let e = (-x.abs()).exp_fast();
    let e = select(e > floor, e, F::ZERO);
    let q = F::ONE / (F::ONE + e);
    let d1 = e * q * q;
    let d2 = d1 * q * select(x >= F::ZERO, e - F::ONE, F::ONE - e);
    (d1, d2)
}

/// The instruction set a `simd_dispatch!` variant was compiled for. A kernel that has a
/// hand-written intrinsics version (the LambdaRank row kernel) takes it as an argument; being a
/// constant in each inlined variant, the choice costs nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Portable,
    /// x86_64 with AVX2. Only `simd_dispatch!` (after checking the CPU) and tests that check
    /// it themselves may pass it: it licenses AVX2 intrinsics.
    Avx2,
    /// x86_64 with AVX-512 (F, BW, VL, DQ), which includes AVX2.
    Avx512,
}

impl Isa {
    /// The best variant this CPU runs.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512dq")
            {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// AVX2 intrinsics may run.
    #[inline(always)]
    pub fn has_avx2(self) -> bool {
        self >= Isa::Avx2
    }
}

/// `$name` runs `$generic` compiled for AVX-512 or AVX2 when the CPU has it, else as it is.
/// No fused multiply-add is used, so every version gives bitwise the same results.
///
/// Forms: `simd_dispatch!(name, generic, (args) -> ret)` for `generic<F: Float>(args)`;
/// `simd_dispatch!(name, generic(isa), [generic params], [generic args], (args) -> ret)` for a
/// `generic(isa: Isa, args)` that also picks hand-written intrinsics by `isa`.
macro_rules! simd_dispatch {
    ($vis:vis $name:ident, $generic:ident, ($($arg:ident : $ty:ty),*) -> $ret:ty) => {
        simd_dispatch!(@emit $vis $name, [F: $crate::float::Float], [F], ($($arg: $ty),*) -> $ret,
            |_isa| $generic::<F>($($arg),*));
    };
    ($vis:vis $name:ident, $generic:ident(isa), [$($gp:tt)*], [$($ga:tt)*], ($($arg:ident : $ty:ty),*) -> $ret:ty) => {
        simd_dispatch!(@emit $vis $name, [$($gp)*], [$($ga)*], ($($arg: $ty),*) -> $ret,
            |isa| $generic::<$($ga)*>(isa, $($arg),*));
    };
    (@emit $vis:vis $name:ident, [$($gp:tt)*], [$($ga:tt)*], ($($arg:ident : $ty:ty),*) -> $ret:ty, |$isa:ident| $call:expr) => {
        #[allow(clippy::too_many_arguments)]
        $vis fn $name<$($gp)*>($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::float::Isa;
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512<$($gp)*>($($arg: $ty),*) -> $ret {
                    let $isa = Isa::Avx512;
                    $call
                }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2<$($gp)*>($($arg: $ty),*) -> $ret {
                    let $isa = Isa::Avx2;
                    $call
                }
                match Isa::detect() {
                    // SAFETY: the CPU supports these features (`Isa::detect`).
                    Isa::Avx512 => return unsafe { avx512::<$($ga)*>($($arg),*) },
                    // SAFETY: the CPU supports AVX2 (`Isa::detect`).
                    Isa::Avx2 => return unsafe { avx2::<$($ga)*>($($arg),*) },
                    Isa::Portable => {}
                }
            }
            let $isa = $crate::float::Isa::Portable;
            $call
        }
    };
}
pub(crate) use simd_dispatch;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_fast_matches_std_f32() {
        let mut x = -87.0f32;
        while x <= 87.0 {
            let (a, b) = (x.exp_fast(), x.exp());
            assert!(((a - b) / b).abs() < 5e-7, "x={x} fast={a} std={b}");
            x += 0.0137;
        }
    }

    #[test]
    fn exp_fast_matches_std_f64() {
        let mut x = -700.0f64;
        while x <= 700.0 {
            let (a, b) = (x.exp_fast(), x.exp());
            assert!(((a - b) / b).abs() < 2e-15, "x={x} fast={a} std={b}");
            x += 0.00731;
        }
    }

    #[test]
    fn exp_fast_clamps_without_inf_or_denormal() {
        assert!(1e30f32.exp_fast().is_finite());
        assert!((-1e30f32).exp_fast() >= f32::MIN_POSITIVE);
        assert!(f64::MAX.exp_fast().is_finite());
        assert!(f64::MIN.exp_fast() >= f64::MIN_POSITIVE);
    }

    #[test]
    fn scale_range_is_pythons() {
        // numpy: sqrt(finfo.tiny), sqrt(finfo.max) in the dtype itself.
        assert_eq!(f32::scale_range(), (2f32.powi(-63), 1.844_674_3e19));
        assert_eq!(f64::scale_range().0, 2f64.powi(-511));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-200, 1e200] {
            let e = check_scale("temperature", bad).unwrap_err();
            assert_eq!(e.arg(), "temperature");
        }
        assert_eq!(check_scale("sigma", 1e150f64), Ok(1e150));
        assert!(check_scale("sigma", 1e-19f32).is_err() && check_scale("sigma", 1e-18f32).is_ok());
    }

    #[test]
    fn ln_1p_unit_matches_std() {
        let mut u = 0.0f64;
        while u <= 1.0 {
            let (a, b) = (ln_1p_unit(u), u.ln_1p());
            assert!((a - b).abs() <= 1e-15 * b, "u={u} {a} {b}");
            let (a, b) = (ln_1p_unit(u as f32) as f64, (u as f32 as f64).ln_1p());
            assert!((a - b).abs() <= 3e-7 * b, "u={u} {a} {b}");
            u += 0.000_37;
        }
        for &u in &[1e-300f64, 1e-30, 1e-10, 1.0] {
            assert!((ln_1p_unit(u) - u.ln_1p()).abs() <= 1e-15 * u.ln_1p());
        }
        assert_eq!(ln_1p_unit(0.0f64), 0.0);
    }

    #[test]
    fn mul3_is_finite_where_the_product_is() {
        let max = f64::MAX;
        // The same finite value whatever the order of b and c, where a naive product overflows.
        for &(a, b, c, want) in &[
            (0.25, 4.0, max, max),
            (2.0, max / 4.0, 1.0, max / 2.0),
            (1e-10, 1e300, 1e10, 1e300),
            (0.5, 1e154, 1.6e308 / 1e154, 0.8e308),
            (-0.5, 1e154, 1.6e308 / 1e154, -0.8e308),
        ] {
            for (x, y) in [(b, c), (c, b)] {
                let p = mul3(a, x, y);
                assert!((p - want).abs() <= 1e-15 * want.abs(), "{a} {x} {y}: {p} vs {want}");
            }
        }
        // A zero factor gives exactly 0 (never 0 * inf = NaN); a truly huge product is inf.
        for (a, b, c) in [(0.0, max, 1e10), (max, 0.0, 2.0), (1e10, max, 0.0)] {
            assert_eq!(mul3(a, b, c), 0.0);
        }
        assert_eq!(mul3(2.0, max, 1.0), f64::INFINITY);
        assert_eq!(mul3(-2.0, 1.0, max), f64::NEG_INFINITY);
        assert_eq!(mul3(0.125f32, 2.0, 3e38), 7.5e37);
        assert_eq!(mul3(2.0f32, 3e38, 4.0), f32::INFINITY);
        // Exact for small integers (no rounding), like a * b * c.
        assert_eq!(mul3(3.0f64, 5.0, 7.0), 105.0);
    }

    #[test]
    fn sigmoid_parts_are_consistent() {
        for &x in &[-30.0f64, -3.0, -0.5, 0.0, 0.25, 2.0, 40.0] {
            let (p, pc, d) = sigmoid3(x);
            let want = 1.0 / (1.0 + (-x).exp());
            assert!((p - want).abs() < 1e-15);
            assert!((pc - (1.0 - want)).abs() < 1e-15);
            assert!((d - want * (1.0 - want)).abs() < 1e-15);
            assert_eq!(sigmoid_grad(x), d);
            assert_eq!(sigmoid2(x), (p, pc));
            let (d1, d2) = sigmoid_grad_hess(x);
            assert!((d1 - d).abs() < 1e-16);
            assert!((d2 - want * (1.0 - want) * (1.0 - 2.0 * want)).abs() < 1e-16);
        }
        assert_eq!(sigmoid_grad_hess(87.5f32), (0.0, 0.0));
        assert_eq!(sigmoid_grad_hess(-1e30f64), (0.0, 0.0));
        assert!(sigmoid_grad_hess(80.0f32).0 > 0.0);
    }
}
