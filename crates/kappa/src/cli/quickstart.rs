//! `kappa quickstart`: a first session. Creates a topic with a schema,
//! streams sample records into it, defines a view, queries it, and says
//! how to reach it with psql, curl and `kappa subscribe`. Goes through
//! the running server if there is one, else opens the data directory.

use super::sql::{SqlArgs, SqlFormat};
use super::target::Target;
use anyhow::bail;
use bytes::Bytes;
use std::process::ExitCode;

const TOPIC: &str = "quickstart_transactions";
const VIEW: &str = "quickstart_balances";
const RECORDS: usize = 1000;

pub async fn run(target: Target) -> anyhow::Result<ExitCode> {
    let via = match &target {
        Target::Server(http) => format!("through the server at {}", http.url()),
        Target::Embedded(_) => "on the data directory (no server running)".to_string(),
    };
    println!("Kappa quickstart, {via}\n");
    let steps = [
        format!(
            "CREATE TOPIC {TOPIC} (account TEXT, amount DOUBLE, kind TEXT, ts TIMESTAMP) \
             WITH (partitions = 4, key = 'account', event_time = 'ts')"
        ),
        format!(
            "CREATE VIEW {VIEW} AS SELECT account, SUM(amount) AS balance, COUNT(*) AS n \
             FROM {TOPIC} GROUP BY account"
        ),
    ];
    for sql in &steps {
        println!("> {sql}");
        match target.statement(sql).await {
            Ok(message) => println!("{message}\n"),
            Err(e) if e.to_string().contains("already exists") => {
                println!("(already there from an earlier quickstart)\n")
            }
            Err(e) => return Err(e),
        }
    }
    let records: Vec<Bytes> = (0..RECORDS)
        .map(|i| {
            let amount = if i % 3 == 0 { -12.5 } else { 20.0 };
            Bytes::from(format!(
                r#"{{"account":"acc-{:03}","amount":{amount},"kind":"{}","ts":"2026-01-01T00:{:02}:{:02}Z"}}"#,
                i % 100,
                if amount < 0.0 { "debit" } else { "credit" },
                i / 60 % 60,
                i % 60
            ))
        })
        .collect();
    let token = match target.append(TOPIC, records, None).await? {
        Ok(token) => token,
        Err(refused) => bail!("{}", refused.message),
    };
    println!("appended {RECORDS} records in one atomic, durable batch; token {token}\n");
    let query = format!("SELECT * FROM {VIEW} ORDER BY account LIMIT 5");
    println!("> {query}   (answered once the view has applied that token)");
    let hints = hints(&target);
    super::sql::run(
        target,
        SqlArgs {
            sql: query,
            format: SqlFormat::Table,
            token: Some(token),
        },
    )
    .await?;
    println!("{hints}");
    Ok(ExitCode::SUCCESS)
}

fn hints(target: &Target) -> String {
    let mut out = String::from("\nnext, try:\n");
    match target {
        Target::Server(http) => {
            let url = http.url();
            out += &format!(
                "  psql -h 127.0.0.1 -p 6875 -U kappa -c 'SELECT * FROM {VIEW} ORDER BY balance DESC LIMIT 3'\n\
                 \x20 curl -s {url}/v1/sql -d 'SELECT count(*) FROM {TOPIC}'\n\
                 \x20 kappa subscribe {VIEW}            # a live table; run the quickstart again in another terminal\n\
                 \x20 curl -N {url}/v1/views/{VIEW}/subscribe\n\
                 \x20 psql -h 127.0.0.1 -p 6875 -U kappa -c 'COPY (SUBSCRIBE {VIEW}) TO STDOUT'\n\
                 \x20 kappa consume {TOPIC} --limit 3\n\
                 \x20 kappa status\n"
            );
        }
        Target::Embedded(_) => {
            out += &format!(
                "  kappa sql 'SELECT * FROM {VIEW} ORDER BY balance DESC LIMIT 3'\n\
                 \x20 kappa consume {TOPIC} --limit 3\n\
                 \x20 kappa status\n\
                 \x20 kappa serve    # then psql -h 127.0.0.1 -p 6875 -U kappa, curl localhost:8080, kappa subscribe {VIEW}\n"
            );
        }
    }
    out
}
