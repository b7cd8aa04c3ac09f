//! The bench's report: what ran where, the floors, each step's figures,
//! and the answer checks; as a table, JSON, or an HTML page.

pub mod html;
pub mod table;

use super::check::Check;
use super::floors::Floors;
use super::stats::Latency;
use super::{Bench, Settings, Step};
use anyhow::Context;
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Report {
    pub kappa: &'static str,
    pub command: String,
    pub machine: Machine,
    pub target: String,
    pub settings: Settings,
    pub steps_chosen: Vec<String>,
    pub floors: Floors,
    pub steps: Vec<StepReport>,
    /// The view's answers, checked against the generator's totals.
    pub check: Vec<Check>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: f64,
    pub kernel: String,
}

#[derive(Debug, Default, Serialize)]
pub struct StepReport {
    pub step: &'static str,
    pub figures: Vec<Figure>,
    /// Named latency distributions.
    pub latency: Vec<(String, Latency)>,
    /// Named series of `(seconds, records/s)`.
    pub timeline: Vec<(String, Vec<(f64, f64)>)>,
}

/// One measured figure, and its ratio to a floor where one applies.
#[derive(Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<Ratio>,
}

#[derive(Debug, Serialize)]
pub struct Ratio {
    pub value: f64,
    /// What it is a ratio to.
    pub to: String,
}

impl StepReport {
    pub fn new(step: Step) -> StepReport {
        StepReport {
            step: step.name(),
            ..StepReport::default()
        }
    }

    pub fn figure(&mut self, name: &str, value: f64, unit: &'static str) -> &mut Self {
        self.figures.push(Figure {
            name: name.to_string(),
            value,
            unit,
            ratio: None,
        });
        self
    }

    /// The last figure's ratio: `value / floor`, described by `to`.
    pub fn ratio(&mut self, floor: f64, to: &str) -> &mut Self {
        if let Some(f) = self.figures.last_mut() {
            f.ratio = Some(Ratio {
                value: f.value / floor,
                to: to.to_string(),
            });
        }
        self
    }

    /// p50, p99 and max of a distribution as figures (in ms when it is
    /// slow), the p50 as a ratio to `floor` if given.
    pub fn latency(&mut self, name: &str, l: Latency, floor: Option<(f64, &str)>) {
        let ms = l.p50_us >= 10_000.0;
        let (scale, unit) = if ms { (1e-3, "ms") } else { (1.0, "µs") };
        self.figure(&format!("{name} p50"), l.p50_us * scale, unit);
        if let Some((f, to)) = floor {
            self.ratio(f * scale, to);
        }
        self.figure(&format!("{name} p99"), l.p99_us * scale, unit);
        self.figure(&format!("{name} max"), l.max_us * scale, unit);
        self.latency.push((name.to_string(), l));
    }
}

impl Report {
    pub fn new(b: &Bench, floors: &Floors, steps: &[Step]) -> Report {
        Report {
            kappa: env!("CARGO_PKG_VERSION"),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine: Machine::read(),
            target: b.instance.describe(),
            settings: b.settings.clone(),
            steps_chosen: steps.iter().map(|s| s.name().to_string()).collect(),
            floors: floors.clone(),
            steps: Vec::new(),
            check: Vec::new(),
        }
    }
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(
                || std::env::consts::ARCH.to_string(),
                |s| s.trim().to_string(),
            );
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory_gib: (kib / 1_048_576.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
                |_| std::env::consts::OS.to_string(),
                |s| s.trim().to_string(),
            ),
        }
    }
}

/// Writes `index.html` and `report.json` into `dir`.
pub fn write(report: &Report, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json = dir.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    let html = dir.join("index.html");
    std::fs::write(&html, html::render(report)?)
        .with_context(|| format!("cannot write {}", html.display()))?;
    Ok(())
}
