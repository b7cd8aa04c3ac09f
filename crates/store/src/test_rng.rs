//! The random generator of this crate's randomized tests: seeded from
//! `KAPPA_SEED` when set, else at random, and the seed printed so that a
//! failure can be run again.

use rand::{SeedableRng, rngs::StdRng};

/// The seed (for failure messages) and the generator.
pub(crate) fn seeded() -> (u64, StdRng) {
    let seed: u64 = std::env::var("KAPPA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("seed {seed} (KAPPA_SEED={seed} repeats this run)");
    (seed, StdRng::seed_from_u64(seed))
}
