//! The record generator: a seeded xorshift stream, so that the bytes do
//! not depend on a library's version.

use bytes::Bytes;
use rand_distr::Distribution as _;

/// How accounts are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// Every account equally likely.
    Uniform,
    /// Account `k` (from 0) drawn with probability proportional to
    /// `1 / (k + 1)^s`: a few hot accounts, a long tail.
    Zipf(f64),
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub records: u64,
    pub accounts: u64,
    pub seed: u64,
    pub distribution: Distribution,
}

impl Workload {
    /// The default: 1,000,000 records over 100,000 accounts, uniform.
    pub fn standard() -> Workload {
        Workload {
            records: 1_000_000,
            accounts: 100_000,
            seed: 42,
            distribution: Distribution::Uniform,
        }
    }
}

/// One generated record.
#[derive(Clone, Debug)]
pub struct Record {
    /// The account's name, the record's key.
    pub key: Bytes,
    /// The JSON object.
    pub value: Bytes,
    pub account: u64,
    /// The amount in cents (exact, for checking sums).
    pub cents: i64,
}

/// The infinite record stream of a workload: `Workload::records` is how
/// many a run takes first; later steps go on taking from the same stream.
#[derive(Debug)]
pub struct Generator {
    rng: XorShift,
    accounts: u64,
    zipf: Option<rand_distr::Zipf<f64>>,
    /// The next record's number (its event time is derived from it).
    index: u64,
}

impl Generator {
    /// Fails (saying why) on zero accounts or a Zipf exponent that is not
    /// a positive number.
    pub fn new(w: &Workload) -> Result<Generator, String> {
        if w.accounts == 0 {
            return Err("the workload needs at least one account (--keys)".into());
        }
        let zipf = match w.distribution {
            Distribution::Uniform => None,
            Distribution::Zipf(s) => {
                if !(s.is_finite() && s > 0.0) {
                    return Err(format!(
                        "the Zipf exponent must be a positive number, not {s} (try --zipf 1.1)"
                    ));
                }
                Some(
                    rand_distr::Zipf::new(w.accounts as f64, s)
                        .map_err(|e| format!("invalid Zipf distribution: {e}"))?,
                )
            }
        };
        Ok(Generator {
            rng: XorShift::new(w.seed),
            accounts: w.accounts,
            zipf,
            index: 0,
        })
    }

    /// The account name of account `n` (at least five digits).
    pub fn account_name(n: u64) -> String {
        format!("acc-{n:05}")
    }

    /// How many records were generated so far.
    pub fn generated(&self) -> u64 {
        self.index
    }

    pub fn next_record(&mut self) -> Record {
        let account = match &self.zipf {
            None => self.rng.next() % self.accounts,
            // Ranks are 1..=accounts, the most likely first.
            Some(z) => (z.sample(&mut self.rng) as u64)
                .saturating_sub(1)
                .min(self.accounts - 1),
        };
        let cents = (self.rng.next() % 100_000) as i64 - 50_000;
        let kind = if cents < 0 { "debit" } else { "credit" };
        let i = self.index;
        self.index += 1;
        let secs = i / 1000;
        let name = Generator::account_name(account);
        let value = format!(
            r#"{{"account":"{name}","amount":{:.2},"kind":"{kind}","ts":"2026-01-01T{:02}:{:02}:{:02}.{:03}Z"}}"#,
            cents as f64 / 100.0,
            (secs / 3600) % 24,
            (secs / 60) % 60,
            secs % 60,
            i % 1000
        );
        Record {
            key: Bytes::from(name),
            value: Bytes::from(value),
            account,
            cents,
        }
    }
}

/// xorshift64: fast, and its sequence is fixed by this code alone.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl rand::RngCore for XorShift {
    fn next_u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.next()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(w: &Workload, n: usize) -> Vec<u8> {
        let mut g = Generator::new(w).unwrap();
        let mut out = Vec::new();
        for _ in 0..n {
            let r = g.next_record();
            out.extend_from_slice(&r.key);
            out.push(b'\t');
            out.extend_from_slice(&r.value);
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        for distribution in [Distribution::Uniform, Distribution::Zipf(1.1)] {
            let w = Workload {
                records: 0,
                accounts: 1000,
                seed: 7,
                distribution,
            };
            assert_eq!(bytes_of(&w, 5000), bytes_of(&w, 5000));
            let other = Workload {
                seed: 8,
                ..w.clone()
            };
            assert_ne!(bytes_of(&w, 5000), bytes_of(&other, 5000));
        }
    }

    #[test]
    fn the_stream_is_fixed_by_this_code() {
        // Benchmarks compare runs of different builds: the records must
        // not change with a dependency's version.
        let mut g = Generator::new(&Workload::standard()).unwrap();
        let first = g.next_record();
        assert_eq!(
            std::str::from_utf8(&first.value).unwrap(),
            format!(
                r#"{{"account":"{}","amount":{:.2},"kind":"{}","ts":"2026-01-01T00:00:00.000Z"}}"#,
                std::str::from_utf8(&first.key).unwrap(),
                first.cents as f64 / 100.0,
                if first.cents < 0 { "debit" } else { "credit" }
            )
        );
        let digest = bytes_of(&Workload::standard(), 10_000)
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
            });
        assert_eq!(digest, GOLDEN_DIGEST, "the uniform stream changed");
    }

    /// FNV-1a of the first 10,000 records of the standard workload.
    const GOLDEN_DIGEST: u64 = 0x609c_a3aa_182f_5c6d;

    #[test]
    fn zipf_keys_are_skewed_and_in_range() {
        let w = Workload {
            records: 0,
            accounts: 10_000,
            seed: 1,
            distribution: Distribution::Zipf(1.1),
        };
        let mut g = Generator::new(&w).unwrap();
        let mut counts = vec![0u32; 10_000];
        for _ in 0..100_000 {
            counts[g.next_record().account as usize] += 1;
        }
        let hottest = counts[0];
        let median = {
            let mut c = counts.clone();
            c.sort_unstable();
            c[5000]
        };
        assert!(
            hottest > 50 * median.max(1),
            "hottest {hottest}, median {median}"
        );
    }

    #[test]
    fn bad_parameters_are_refused() {
        let mut w = Workload::standard();
        w.accounts = 0;
        assert!(
            Generator::new(&w)
                .unwrap_err()
                .contains("at least one account")
        );
        let w = Workload {
            distribution: Distribution::Zipf(-1.0),
            ..Workload::standard()
        };
        assert!(Generator::new(&w).unwrap_err().contains("positive"));
    }
}
