//! Latency distributions and throughput over time.

use serde::Serialize;
use std::time::{Duration, Instant};

/// A latency distribution, in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub count: usize,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    /// `[from_us, to_us, count]`, on a logarithmic scale (for charts).
    pub histogram: Vec<(f64, f64, u64)>,
}

impl Latency {
    /// `None` for no samples.
    pub fn of(samples: &[Duration]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        us.sort_by(f64::total_cmp);
        // Nearest rank: the smallest sample with at least q of them at or
        // below it.
        let at = |q: f64| us[((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1];
        Some(Latency {
            count: us.len(),
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            max_us: us[us.len() - 1],
            mean_us: us.iter().sum::<f64>() / us.len() as f64,
            histogram: histogram(&us),
        })
    }
}

/// Sorted samples in bins of equal width on a log scale: four per
/// doubling, from the smallest sample to the largest.
fn histogram(sorted: &[f64]) -> Vec<(f64, f64, u64)> {
    let lo = sorted[0].max(1.0);
    let hi = sorted[sorted.len() - 1].max(lo * 1.01);
    let step = 2f64.powf(0.25);
    let mut bins = Vec::new();
    let mut from = lo;
    let mut i = 0;
    while from < hi {
        let to = from * step;
        let start = i;
        while i < sorted.len() && (sorted[i] < to || to >= hi) {
            i += 1;
        }
        bins.push((from, to, (i - start) as u64));
        from = to;
    }
    if let Some(last) = bins.last_mut() {
        last.2 += (sorted.len() - i) as u64;
    }
    bins
}

/// Records done over time: `add` as work completes; `series` gives the
/// rate in each interval.
pub struct Timeline {
    start: Instant,
    points: Vec<(f64, u64)>,
}

impl Timeline {
    pub fn start() -> Timeline {
        Timeline {
            start: Instant::now(),
            points: Vec::new(),
        }
    }

    /// `total` records were done by now.
    pub fn at(&mut self, total: u64) {
        self.points
            .push((self.start.elapsed().as_secs_f64(), total));
    }

    /// `total` records were done `secs` after the start.
    pub fn point(&mut self, secs: f64, total: u64) {
        self.points.push((secs, total));
    }

    /// `[seconds, records/s]` per `bin` seconds (at least 20 bins when
    /// the run is short).
    pub fn series(&self) -> Vec<(f64, f64)> {
        let Some(&(end, _)) = self.points.last() else {
            return Vec::new();
        };
        let bin = (end / 20.0).clamp(0.01, 1.0);
        let mut out = Vec::new();
        let (mut t, mut done) = (0.0, 0u64);
        let mut i = 0;
        while t < end {
            let next = t + bin;
            let mut total = done;
            while i < self.points.len() && self.points[i].0 <= next {
                total = self.points[i].1;
                i += 1;
            }
            out.push((
                next.min(end),
                (total - done) as f64 / (next.min(end) - t).max(1e-9),
            ));
            done = total;
            t = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_histogram_cover_every_sample() {
        let samples: Vec<Duration> = (1..=1000).map(Duration::from_micros).collect();
        let l = Latency::of(&samples).unwrap();
        assert_eq!(l.count, 1000);
        assert_eq!(l.p50_us, 500.0);
        assert_eq!(l.p99_us, 990.0);
        assert_eq!(l.max_us, 1000.0);
        assert_eq!(l.histogram.iter().map(|b| b.2).sum::<u64>(), 1000);
        assert!(Latency::of(&[]).is_none());
        let one = Latency::of(&[Duration::from_micros(7)]).unwrap();
        assert_eq!(one.histogram.iter().map(|b| b.2).sum::<u64>(), 1);
    }

    #[test]
    fn a_timeline_gives_rates() {
        let mut t = Timeline::start();
        for i in 1..=100 {
            t.point(i as f64 / 100.0, i * 1000);
        }
        let s = t.series();
        assert!(!s.is_empty());
        let total: f64 = s
            .windows(1)
            .enumerate()
            .map(|(i, w)| w[0].1 * (w[0].0 - if i == 0 { 0.0 } else { s[i - 1].0 }))
            .sum();
        assert!((total - 100_000.0).abs() < 1.0, "{total}");
        assert!(
            s.iter().all(|p| (p.1 - 100_000.0).abs() < 20_000.0),
            "{s:?}"
        );
    }
}
