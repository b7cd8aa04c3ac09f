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
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter {
            total: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::from([(Instant::now(), 0)])),
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
