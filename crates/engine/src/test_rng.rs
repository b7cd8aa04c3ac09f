//! The seeded generator the crate's randomized unit tests share: the seed
//! from `KAPPA_SEED`, or the clock, printed so a failure can be repeated.

/// A xorshift generator: each call gives a number below its argument.
pub(crate) fn seeded() -> impl FnMut(u64) -> u64 {
    let seed: u64 = std::env::var("KAPPA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("seed {seed} (KAPPA_SEED={seed} repeats this run)");
    let mut rng = seed | 1;
    move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    }
}
