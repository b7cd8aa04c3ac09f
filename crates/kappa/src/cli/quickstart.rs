//! `kappa quickstart`: a first session with the embedded log.

use kappa_log::{AppendBatch, AppendRecord, Log, LogTime, ReadLimits, TopicConfig};
use std::path::Path;
use std::process::ExitCode;

pub async fn run(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let log = super::open(data_dir)?;
    let topic = "quickstart-transactions";
    if log.describe_topic(topic).await.is_err() {
        log.create_topic(topic, TopicConfig::with_partitions(4))
            .await?;
        println!(
            "created topic {topic} (4 partitions) in {}",
            data_dir.display()
        );
    }
    let records: Vec<AppendRecord> = (0..1000)
        .map(|i| {
            let account = format!("acc-{:05}", i % 100);
            let amount = if i % 3 == 0 { -12.5 } else { 20.0 };
            let value = format!(
                r#"{{"account":"{account}","amount":{amount},"kind":"{}","ts":"2026-01-01T00:00:{:02}.000Z"}}"#,
                if amount < 0.0 { "debit" } else { "credit" },
                i % 60
            );
            AppendRecord::new(topic, value).with_key(account)
        })
        .collect();
    let result = log.append(AppendBatch::new(records)).await?;
    println!(
        "appended 1000 records atomically and durably; token {}",
        result.token
    );
    let mut reader = log.merged_reader(&[topic], LogTime::ZERO).await?;
    let first = reader
        .next_batch(ReadLimits {
            max_records: 3,
            max_bytes: 1 << 20,
        })
        .await?;
    println!("the first records, in log-time order:");
    for r in &first {
        println!("  {}", super::consume::to_json(r));
    }
    let dir = data_dir.display();
    println!(
        "\nnext, try:\n  kappa --data-dir {dir} topic describe {topic}\n  kappa --data-dir {dir} consume {topic} --limit 5\n  echo '{{\"account\":\"acc-00001\",\"amount\":5}}' | kappa --data-dir {dir} produce {topic} --key-field account\n  kappa --data-dir {dir} consume {topic} --follow    # then produce from another terminal\n  kappa --data-dir {dir} log check"
    );
    Ok(ExitCode::SUCCESS)
}
