//! Records per second over the last few seconds: what view status shows
//! as `rate`. Counting is a few atomic adds; a sample is kept at most
//! every quarter second.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The rate is averaged over this long.
const WINDOW: Duration = Duration::from_secs(10);
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct RateMeter {
    total: AtomicU64,
    /// (when, total then), oldest first; one sample older than the
    /// window is kept as its base.
    samples: Mutex<VecDeque<(Instant, u64)>>,
    /// The next offset of each partition after the records counted so
    /// far: what is left to count, for an ETA.
    next_offsets: Mutex<std::collections::BTreeMap<u32, u64>>,
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter {
            total: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::from([(Instant::now(), 0)])),
            next_offsets: Mutex::default(),
        }
    }
}

impl RateMeter {
    pub fn add(&self, n: u64) {
        let total = self.total.fetch_add(n, Ordering::Relaxed) + n;
        let now = Instant::now();
        let mut samples = self.samples.lock().expect("rate samples");
        if samples
            .back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= SAMPLE_EVERY)
        {
            samples.push_back((now, total));
            while samples.len() > 2 && now.duration_since(samples[1].0) >= WINDOW {
                samples.pop_front();
            }
        }
    }

    /// The counted records reached these (partition, next offset).
    pub fn reached(&self, next_offsets: &[(u32, u64)]) {
        let mut at = self.next_offsets.lock().expect("rate offsets");
        for (p, o) in next_offsets {
            let e = at.entry(*p).or_default();
            *e = (*e).max(*o);
        }
    }

    /// Records left before a topic whose partitions end at `ends`
    /// (partition, start offset, end offset) is counted in full; `None`
    /// before anything was counted.
    pub fn remaining(&self, ends: &[(u32, u64, u64)]) -> Option<u64> {
        let at = self.next_offsets.lock().expect("rate offsets");
        if at.is_empty() {
            return None;
        }
        Some(
            ends.iter()
                .map(|(p, start, end)| {
                    let from = at.get(p).copied().unwrap_or(0).max(*start);
                    end.saturating_sub(from)
                })
                .sum(),
        )
    }

    /// Seconds until what is `remaining` is counted, at the current rate.
    pub fn eta_seconds(&self, remaining: u64) -> Option<f64> {
        let rate = self.per_second();
        (rate > 0.0).then(|| remaining as f64 / rate)
    }

    /// Everything counted so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Records per second over the last [`WINDOW`] (or since the meter
    /// started, if that is shorter).
    pub fn per_second(&self) -> f64 {
        let now = Instant::now();
        let total = self.total();
        let samples = self.samples.lock().expect("rate samples");
        // The last sample at or before the window's start is the base;
        // failing that (a young meter), the first one.
        let start = now.checked_sub(WINDOW);
        let base = samples
            .iter()
            .rev()
            .find(|(t, _)| start.is_some_and(|s| *t <= s))
            .or(samples.front());
        let Some(&(t, counted)) = base else {
            return 0.0;
        };
        let span = now
            .duration_since(t)
            .min(WINDOW)
            .max(Duration::from_millis(1));
        (total - counted) as f64 / span.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates() {
        let m = RateMeter::default();
        assert_eq!(m.per_second(), 0.0);
        m.add(1000);
        std::thread::sleep(Duration::from_millis(300));
        m.add(1000);
        assert_eq!(m.total(), 2000);
        let r = m.per_second();
        // 2,000 records in ~0.3 s (a slow machine stretches the span).
        assert!(r > 1000.0 && r < 10_000.0, "{r}");
    }

    #[test]
    fn remaining_counts_what_is_past_each_partitions_position() {
        let m = RateMeter::default();
        let ends = [(0, 0, 100), (1, 10, 50), (2, 0, 30)];
        assert_eq!(m.remaining(&ends), None, "nothing counted yet");
        m.reached(&[(0, 40), (1, 5)]);
        m.reached(&[(0, 30)]);
        // 60 left of partition 0, 40 of 1 (from its start), 30 of 2.
        assert_eq!(m.remaining(&ends), Some(130));
    }

    #[test]
    fn an_idle_meter_decays_to_nothing() {
        let m = RateMeter::default();
        {
            // Pretend the records came long ago.
            let mut s = m.samples.lock().unwrap();
            let old = Instant::now() - Duration::from_secs(60);
            s.clear();
            s.push_back((old, 0));
            s.push_back((old + Duration::from_secs(1), 5000));
        }
        m.total.store(5000, Ordering::Relaxed);
        assert_eq!(m.per_second(), 0.0);
    }
}
