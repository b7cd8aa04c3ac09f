//! `kappa log check`: verify every checksum offline.

use anyhow::Context;
use clap::Subcommand;
use kappa_log_embedded::check::check;
use kappa_log_embedded::fs::OsFs;
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum LogCommand {
    /// Verify every frame, chunk and record checksum and report.
    Check,
}

pub fn run(data_dir: &Path, cmd: LogCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LogCommand::Check => {
            let report = check(&OsFs, data_dir)
                .with_context(|| format!("cannot check {}", data_dir.display()))?;
            println!(
                "checked {} segment(s), {} frame(s), {} chunk(s), {} record(s), {} bytes",
                report.segments, report.frames, report.chunks, report.records, report.bytes
            );
            if let Some(t) = &report.torn_tail {
                println!(
                    "torn tail (a crash mid-write; cut at next open): {} at byte {}: {}",
                    t.file.display(),
                    t.offset,
                    t.detail
                );
            }
            for p in &report.problems {
                println!(
                    "CORRUPT {} at byte {}: {}",
                    p.file.display(),
                    p.offset,
                    p.detail
                );
            }
            if report.problems.is_empty() {
                println!("ok: every checksum verified");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("{} problem(s) found", report.problems.len());
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
