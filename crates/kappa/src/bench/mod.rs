//! `kappa bench`: the standard workload, end to end. It generates the
//! bank-transactions records (deterministic for a seed), runs the chosen
//! steps against a fresh embedded instance or a running server, measures
//! the machine's floors in the same run, checks the view's answers
//! against the generator's own aggregates (a fast wrong answer fails the
//! bench), and reports a table, JSON, or an HTML page with charts.

mod check;
mod floors;
mod instance;
mod progress;
mod report;
mod stats;
mod steps;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use instance::Instance;
use kappa_log::LogTime;
use kappa_workload::{Distribution, Expected, Generator, Workload};
use report::{Report, StepReport};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct BenchArgs {
    /// Records appended by the ingest step (the log the view replays).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Distinct accounts (the view's rows).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// The generator's seed: the same seed gives the same records.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Draw accounts from a Zipf distribution with this exponent (e.g.
    /// 1.1: a few hot accounts) instead of uniformly.
    #[arg(long)]
    zipf: Option<f64>,
    /// The steps to run, in this order whatever the order given; what a
    /// step needs (records, the view) is set up unmeasured.
    #[arg(long, value_delimiter = ',', default_values_t = Step::all())]
    steps: Vec<Step>,
    /// Records per append in the ingest step.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Appends in flight at once in the ingest step.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Records per second appended in the live and subscribe steps.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Seconds the live and subscribe steps append for.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Point queries (and as many AS OF point queries) in the query step.
    #[arg(long, default_value_t = 2000)]
    queries: usize,
    /// Subscribers in the subscribe step.
    #[arg(long, default_value_t = 8)]
    subscribers: usize,
    /// Backfill workers of the parallel rebuild (embedded; default: one
    /// per core). The rebuild step runs with 1 worker, then this many.
    #[arg(long)]
    workers: Option<usize>,
    /// A small run (20,000 records, 2,000 accounts, 1 s of live appends,
    /// smaller floors) that checks everything in seconds, as CI does.
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON (on stdout) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also write the report to this directory: index.html (charts, no
    /// network needed to view) and report.json.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Where the embedded instance's temporary directory goes (default:
    /// the system's temporary directory); the disk floor is measured there.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Step {
    /// Durable appends: records/s, MB/s, append latency.
    Ingest,
    /// A new view replaying the whole log.
    Replay,
    /// Point, AS OF and scan queries.
    Query,
    /// Append at --rate; latency from append to visible in a query.
    Live,
    /// --subscribers subscriptions while appending: delivery latency.
    Subscribe,
    /// Rebuild the view from the log with 1 and N workers.
    Rebuild,
}

impl Step {
    fn all() -> Vec<Step> {
        Step::value_variants().to_vec()
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Ingest => "ingest",
            Step::Replay => "replay",
            Step::Query => "query",
            Step::Live => "live",
            Step::Subscribe => "subscribe",
            Step::Rebuild => "rebuild",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the steps share.
pub struct Bench {
    pub instance: Instance,
    pub settings: Settings,
    pub generator: Generator,
    /// What the view must hold for every record appended so far.
    pub expected: Expected,
    pub topic: String,
    pub view: String,
    /// The log time of the last append.
    pub last: Option<LogTime>,
    /// A log time half way through the ingest (for AS OF queries).
    pub middle: Option<LogTime>,
    pub bars: progress::Bars,
}

/// The run's parameters, after --quick.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Settings {
    pub records: u64,
    pub keys: u64,
    pub seed: u64,
    pub zipf: Option<f64>,
    pub batch: usize,
    pub concurrency: usize,
    pub rate: u64,
    pub duration_s: f64,
    pub queries: usize,
    pub subscribers: usize,
    pub workers: usize,
    pub quick: bool,
}

impl Settings {
    fn of(a: &BenchArgs) -> anyhow::Result<Settings> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut s = Settings {
            records: a.records,
            keys: a.keys,
            seed: a.seed,
            zipf: a.zipf,
            batch: a.batch,
            concurrency: a.concurrency,
            rate: a.rate,
            duration_s: a.duration,
            queries: a.queries,
            subscribers: a.subscribers,
            workers: a.workers.unwrap_or(cores),
            quick: a.quick,
        };
        if a.quick {
            s.records = s.records.min(20_000);
            s.keys = s.keys.min(2_000);
            s.rate = s.rate.min(2_000);
            s.duration_s = s.duration_s.min(1.0);
            s.queries = s.queries.min(200);
            s.subscribers = s.subscribers.min(2);
        }
        if s.records == 0 {
            bail!("--records must be at least 1");
        }
        if s.batch == 0 || s.concurrency == 0 || s.workers == 0 {
            bail!("--batch, --concurrency and --workers must be at least 1");
        }
        if !(s.duration_s.is_finite() && s.duration_s > 0.0) || s.rate == 0 {
            bail!("--duration and --rate must be positive");
        }
        Ok(s)
    }

    fn workload(&self) -> Workload {
        Workload {
            records: self.records,
            accounts: self.keys,
            seed: self.seed,
            distribution: self.zipf.map_or(Distribution::Uniform, Distribution::Zipf),
        }
    }
}

impl Bench {
    pub fn new(instance: Instance, settings: Settings) -> anyhow::Result<Bench> {
        let generator = Generator::new(&settings.workload()).map_err(anyhow::Error::msg)?;
        // Names of their own on a server, so that a bench never touches a
        // user's topics and views (dropped at the end).
        let suffix = match &instance {
            Instance::Embedded(_) => String::new(),
            Instance::Server(_) => format!("_{}_{}", std::process::id(), now_secs()),
        };
        Ok(Bench {
            instance,
            expected: Expected::new(settings.keys),
            generator,
            topic: format!("bench_transactions{suffix}"),
            view: format!("bench_balances{suffix}"),
            last: None,
            middle: None,
            bars: progress::Bars::new(),
            settings,
        })
    }

    /// The next `n` records of the stream, counted in the expected totals
    /// (an append that fails fails the bench).
    pub fn take(&mut self, n: usize) -> Vec<Bytes> {
        (0..n)
            .map(|_| {
                let r = self.generator.next_record();
                self.expected.add(&r);
                r.value
            })
            .collect()
    }

    pub fn saw(&mut self, t: LogTime) {
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
    }
}

pub async fn run(server: Option<&str>, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::of(&args)?;
    let temp = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    // The generator first: bad parameters fail before anything starts.
    Generator::new(&settings.workload()).map_err(anyhow::Error::msg)?;
    let instance = match server {
        Some(url) => Instance::server(url).await?,
        None => Instance::embedded(&temp, Some(settings.workers))?,
    };
    let mut bench = Bench::new(instance, settings)?;
    let result = run_steps(&mut bench, &args, &temp).await;
    if matches!(bench.instance, Instance::Server(_)) {
        let _ = bench
            .instance
            .execute(&format!("DROP VIEW {}", bench.view))
            .await;
        let _ = bench
            .instance
            .execute(&format!("DROP TOPIC {}", bench.topic))
            .await;
    }
    bench.bars.clear();
    bench.instance.close().await;
    let report = result?;
    if let Some(dir) = &args.report {
        report::write(&report, dir)?;
        eprintln!("report written to {}", dir.join("index.html").display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::table::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_steps(
    b: &mut Bench,
    args: &BenchArgs,
    temp: &std::path::Path,
) -> anyhow::Result<Report> {
    let chosen = |s: Step| args.steps.contains(&s);
    // The ingest step's records, generated before anything is timed.
    let n = b.settings.records as usize;
    let records = b.take(n);
    let floor_dir = b
        .instance
        .dir()
        .map_or_else(|| temp.to_path_buf(), |d| d.to_path_buf());
    let (mib, syncs) = if b.settings.quick { (8, 20) } else { (64, 200) };
    let bar = b
        .bars
        .spinner("floors", "fdatasync and JSON parse-and-fold");
    let floors = floors::measure(&floor_dir, mib, syncs, &records)?;
    bar.finish_and_clear();
    let mut report = Report::new(b, &floors, &args.steps);
    b.instance
        .execute(&format!(
            "CREATE TOPIC {} (account TEXT, amount DOUBLE, kind TEXT, ts TIMESTAMP) WITH (partitions = 4, key = 'account', event_time = 'ts')",
            b.topic
        ))
        .await
        .context("cannot create the bench's topic")?;
    let ingest = steps::ingest::run(b, records, &floors).await?;
    if chosen(Step::Ingest) {
        report.steps.push(ingest);
    }
    let replay = steps::replay::run(b, &floors).await?;
    report
        .check
        .push(check::check(b, "after the replay").await?);
    if chosen(Step::Replay) {
        report.steps.push(replay);
    }
    let steps: [(Step, steps::StepFn); 4] = [
        (Step::Query, |b, f| Box::pin(steps::query::run(b, f))),
        (Step::Live, |b, f| Box::pin(steps::live::run(b, f))),
        (Step::Subscribe, |b, f| {
            Box::pin(steps::subscribe::run(b, f))
        }),
        (Step::Rebuild, |b, f| Box::pin(steps::rebuild::run(b, f))),
    ];
    for (step, run) in steps {
        if chosen(step) {
            let r: StepReport = run(b, &floors)
                .await
                .with_context(|| format!("the {step} step failed"))?;
            report.steps.push(r);
            report
                .check
                .push(check::check(b, &format!("after the {step} step")).await?);
        }
    }
    Ok(report)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
