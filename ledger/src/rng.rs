//! A small deterministic xorshift generator: benchmarks and tests reproduce exactly, and the
//! auditor's sampling needs no cryptographic randomness (it only spreads samples).

/// Xorshift64 state; seed with any non-zero value.
pub struct Rng(pub u64);

impl Rng {
    /// The next value below `n` (0 for `n` = 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
