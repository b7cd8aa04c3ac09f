//! `kappa`: the command-line entry point. Thin glue over the library crates.

mod bench;
mod cli;
mod parse;

use clap::{Parser, Subcommand};
use cli::target::Views;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kappa",
    version,
    about = "Kappa: the database inside out, in one binary"
)]
struct Args {
    /// The data directory (locked while in use).
    #[arg(
        long,
        global = true,
        env = "KAPPA_DATA_DIR",
        default_value = "./kappa-data"
    )]
    data_dir: PathBuf,

    /// A running server to send client commands (topic, produce,
    /// consume, sql, view, status, subscribe) to. Without it they go to
    /// the server holding --data-dir, if one runs, else open the
    /// directory themselves.
    #[arg(long, global = true, env = "KAPPA_SERVER")]
    server: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(cli::topic::TopicCommand),
    /// Append NDJSON records (one JSON value per line) from a file or stdin.
    Produce(cli::produce::ProduceArgs),
    /// Print records as NDJSON, every partition, in log-time order.
    Consume(cli::consume::ConsumeArgs),
    /// Inspect the log's files.
    #[command(subcommand)]
    Log(cli::check::LogCommand),
    /// A first session: a topic with a schema, sample records, a view,
    /// a query, and what to try next (psql, curl, subscribe).
    Quickstart,
    /// Serve the data directory over HTTP and the PostgreSQL protocol
    /// (until SIGTERM or Ctrl-C).
    Serve(cli::serve::ServeArgs),
    /// Run one SQL statement (DDL, INSERT, a query, AS OF).
    Sql(cli::sql::SqlArgs),
    /// List and describe views.
    #[command(subcommand)]
    View(cli::view::ViewCommand),
    /// Where answers come from, and each view's frontier, lag and dead
    /// letters.
    Status,
    /// A view's rows, then every change as it happens.
    Subscribe(cli::subscribe::SubscribeArgs),
    /// The standard workload end to end (ingest, replay, queries, live
    /// latency, subscriptions, rebuilds) on a fresh embedded instance or
    /// --server, with the machine's floors, answers checked, and a report.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAPPA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    kappa_engine::memory::tune_allocator(match &args.command {
        Command::Serve(s) => s.view_memory,
        _ => kappa_engine::EngineOptions::default().memory_budget,
    });
    // A server uses every core; a one-shot command needs one thread.
    let runtime = match args.command {
        Command::Serve(_) | Command::Bench(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build()
    .expect("tokio runtime");
    let (server, data_dir) = (args.server.clone(), args.data_dir.clone());
    let target = |views| {
        let (server, data_dir) = (server.clone(), data_dir.clone());
        async move { cli::target::resolve(server.as_deref(), &data_dir, views).await }
    };
    let result = runtime.block_on(async {
        match args.command {
            Command::Topic(cmd) => {
                let target = target(Views::AsTheyAre).await?;
                cli::topic::run(target, cmd).await
            }
            Command::Produce(a) => {
                let target = target(Views::AsTheyAre).await?;
                cli::produce::run(target, a).await
            }
            Command::Consume(a) => {
                let target = target(Views::AsTheyAre).await?;
                cli::consume::run(target, a).await
            }
            Command::Log(cmd) => cli::check::run(&args.data_dir, cmd),
            Command::Quickstart => {
                let target = target(Views::AsTheyAre).await?;
                cli::quickstart::run(target).await
            }
            Command::Serve(a) => cli::serve::run(&args.data_dir, a).await,
            Command::Sql(a) => {
                let target = target(Views::CaughtUp).await?;
                cli::sql::run(target, a).await
            }
            Command::View(cmd) => {
                let target = target(Views::CaughtUp).await?;
                cli::view::run(target, cmd).await
            }
            Command::Status => {
                let target = target(Views::CaughtUp).await?;
                cli::view::status(target).await
            }
            Command::Subscribe(a) => {
                let target = target(Views::CaughtUp).await?;
                cli::subscribe::run(target, a).await
            }
            Command::Bench(a) => bench::run(args.server.as_deref(), a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
