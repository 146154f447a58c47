//! Helpers for the kernels' unit tests.

/// A small deterministic generator (xorshift), so tests need no crates.
pub struct Rng(pub u64);

impl Rng {
    /// Uniform in [0, 1).
    pub fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-300), self.next());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// An integer label in 0..=max, as f64.
    pub fn label(&mut self, max: u32) -> f64 {
        (self.next() * (max + 1) as f64).floor()
    }

    /// An integer in 0..below.
    pub fn int(&mut self, below: usize) -> usize {
        (self.next() * below as f64) as usize
    }
}
