//! The traffic generator's seeded pseudo-random numbers: `fastrand`'s generator (wyrand)
//! with the few helpers the model needs, so `--log-seed` makes the generated traffic
//! reproducible. Not for anything secret.

/// A seeded generator; the same seed gives the same sequence.
#[derive(Debug, Clone)]
pub struct Rng(fastrand::Rng);

impl Rng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(fastrand::Rng::with_seed(seed))
    }

    /// A seed from the operating system.
    pub fn random_seed() -> u64 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("OS randomness");
        u64::from_le_bytes(b)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.u64(..)
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        self.0.u64(lo..=hi)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.0.f64() < p
    }

    /// A uniformly chosen element (`None` if empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        items.get(self.range(0, items.len() as u64 - 1) as usize)
    }

    /// An index chosen with the given weights (`None` if they sum to 0).
    pub fn weighted(&mut self, weights: &[u32]) -> Option<usize> {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        if total == 0 {
            return None;
        }
        let mut x = self.range(0, total - 1);
        for (i, w) in weights.iter().enumerate() {
            if x < u64::from(*w) {
                return Some(i);
            }
            x -= u64::from(*w);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_ranges_hold() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            let x = a.range(3, 9);
            assert!((3..=9).contains(&x));
            b.range(3, 9);
        }
        assert_eq!(a.weighted(&[0, 5, 0]), Some(1));
        assert_eq!(a.weighted(&[0, 0]), None);
        assert_eq!(a.pick::<u8>(&[]), None);
    }
}
