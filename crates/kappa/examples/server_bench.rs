//! The server over loopback: HTTP ingest, point queries over HTTP, and
//! subscription fan-out, each beside a baseline measured in the same run
//! (the same work in-process, without HTTP). Release build:
//!
//! ```sh
//! cargo run --release -p kappa --example server_bench -- [records] [clients]
//! ```
//!
//! Point queries over the PostgreSQL wire are measured with pgbench (see
//! docs/benchmarks.md). The server runs in this process, on its own
//! runtime; clients share the machine's cores with it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kappa_engine::Engine;
use kappa_log_embedded::{EmbeddedLog, LogOptions};
use kappa_server::{Server, ServerConfig};
use kappa_store::{RedbStore, StoreOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ACCOUNTS: u64 = 100_000;
const BATCH: usize = 1000;

fn batch(seed: u64, n: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::with_capacity(n * 60);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let amount = (x % 20_000) as f64 / 100.0 - 100.0;
        out.push_str(&format!(
            "{{\"account\":\"acc-{:05}\",\"amount\":{amount},\"kind\":\"debit\"}}\n",
            x % ACCOUNTS
        ));
    }
    out
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn post(client: &HttpClient, url: &str, body: Bytes, json: bool) -> (u16, Bytes) {
    let mut req = hyper::Request::post(url);
    if json {
        req = req.header("content-type", "application/json");
    }
    let res = client
        .request(req.body(Full::new(body)).unwrap())
        .await
        .expect("request");
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}

fn open(dir: &std::path::Path) -> Arc<Engine> {
    let log = Arc::new(EmbeddedLog::open(dir, LogOptions::default()).unwrap());
    std::fs::create_dir_all(dir.join("views")).unwrap();
    let store = RedbStore::open(&dir.join("views/state.redb"), &StoreOptions::default()).unwrap();
    Arc::new(Engine::open(log, Arc::new(store)).unwrap())
}

const TOPIC: &str = "CREATE TOPIC transactions (account TEXT NOT NULL, amount DOUBLE, kind TEXT) WITH (partitions = 4, key = 'account')";
const VIEW: &str = "CREATE VIEW balances AS SELECT account, SUM(amount) AS balance, COUNT(*) AS n FROM transactions GROUP BY account";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let records: usize = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
    let batches = records / BATCH;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..batches)
            .map(|i| Bytes::from(batch(i as u64 + 1, BATCH)))
            .collect(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Baseline: the same batches appended in-process (engine.append_json).
        let base_dir = tempfile::tempdir().unwrap();
        let engine = open(base_dir.path());
        engine.execute(TOPIC).await.unwrap();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (engine, bodies) = (engine.clone(), bodies.clone());
            tasks.push(tokio::spawn(async move {
                for b in bodies.iter().skip(c).step_by(clients) {
                    let lines: Vec<&[u8]> = b.split(|x| *x == b'\n').filter(|l| !l.is_empty()).collect();
                    engine.append_json("transactions", &lines).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let base_rate = (batches * BATCH) as f64 / started.elapsed().as_secs_f64();
        drop(engine);

        // The server.
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        engine.execute(TOPIC).await.unwrap();
        engine.execute(VIEW).await.unwrap();
        let maintenance = engine.maintain();
        let config = ServerConfig {
            http: "127.0.0.1:0".parse().unwrap(),
            pg: Some("127.0.0.1:0".parse().unwrap()),
            ..ServerConfig::default()
        };
        let server = Server::bind(engine.clone(), config).await.unwrap();
        let http = server.http_addr();
        let pg = server.pg_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(server.run(async { let _ = stop_rx.await; }, Duration::from_secs(5)));
        let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let records_url = format!("http://{http}/v1/topics/transactions/records");

        // 1. HTTP ingest.
        let started = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (client, bodies, url) = (client.clone(), bodies.clone(), records_url.clone());
            tasks.push(tokio::spawn(async move {
                for b in bodies.iter().skip(c).step_by(clients) {
                    let (st, body) = post(&client, &url, b.clone(), false).await;
                    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let ingest = (batches * BATCH) as f64 / started.elapsed().as_secs_f64();
        println!("HTTP ingest: {} records in batches of {BATCH} from {clients} clients: {ingest:.0} records/s", batches * BATCH);
        println!("  baseline, the same appends in-process: {base_rate:.0} records/s (HTTP at {:.2}x)", ingest / base_rate);

        // Let the view catch up before querying it.
        let head = engine.log().head().await.unwrap();
        engine.wait_for(&["balances".into()], head, Duration::from_secs(600)).await.unwrap();

        // 2. Point queries over HTTP, and the same in-process.
        let run_points = |over_http: bool| {
            let (client, engine) = (client.clone(), engine.clone());
            async move {
                let deadline = Instant::now() + Duration::from_secs(5);
                let mut tasks = Vec::new();
                for c in 0..clients {
                    let (client, engine) = (client.clone(), engine.clone());
                    let url = format!("http://{http}/v1/sql");
                    tasks.push(tokio::spawn(async move {
                        let mut lat = Vec::new();
                        let mut i = c as u64 * 7919;
                        while Instant::now() < deadline {
                            i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                            let sql = format!("SELECT balance, n FROM balances WHERE account = 'acc-{:05}'", (i >> 33) % ACCOUNTS);
                            let t = Instant::now();
                            if over_http {
                                let (st, _) = post(&client, &url, Bytes::from(sql), false).await;
                                assert_eq!(st, 200);
                            } else {
                                engine.execute(&sql).await.unwrap();
                            }
                            lat.push(t.elapsed().as_secs_f64() * 1e3);
                        }
                        lat
                    }));
                }
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await.unwrap());
                }
                all.sort_by(|a, b| a.partial_cmp(b).unwrap());
                (all.len() as f64 / 5.0, pct(&all, 0.5), pct(&all, 0.99))
            }
        };
        let (http_qps, h50, h99) = run_points(true).await;
        let (base_qps, b50, b99) = run_points(false).await;
        println!("point queries over HTTP ({clients} clients, 5 s): {http_qps:.0}/s, p50 {h50:.3} ms, p99 {h99:.3} ms");
        println!("  baseline in-process: {base_qps:.0}/s, p50 {b50:.3} ms, p99 {b99:.3} ms (HTTP at {:.2}x)", http_qps / base_qps);

        // 3. Fan-out: 100 SSE subscribers; 200 appends of one record, 20 ms
        // apart; latency from the append's start to each delivery.
        let subscribers = 100;
        let sent: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
        let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
        for _ in 0..subscribers {
            let (client, sent, lat_tx) = (client.clone(), sent.clone(), lat_tx.clone());
            let req = hyper::Request::get(format!("http://{http}/v1/views/balances/subscribe?snapshot=false"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let res = client.request(req).await.unwrap();
            tokio::spawn(async move {
                let mut body = res.into_body();
                let mut buf = String::new();
                while let Some(Ok(frame)) = body.frame().await {
                    let Some(d) = frame.data_ref() else { continue };
                    buf.push_str(&String::from_utf8_lossy(d));
                    while let Some(end) = buf.find('\n') {
                        let line: String = buf.drain(..=end).collect();
                        if let Some(data) = line.strip_prefix("data: ")
                            && let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
                            && let Some(acc) = v["after"]["account"].as_str()
                            && let Some(t) = sent.lock().unwrap().get(acc)
                        {
                            let _ = lat_tx.send(t.elapsed().as_secs_f64() * 1e3);
                        }
                    }
                }
            });
        }
        drop(lat_tx);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let appends = 200;
        for i in 0..appends {
            let acc = format!("fan-{i}");
            sent.lock().unwrap().insert(acc.clone(), Instant::now());
            let body = format!("{{\"account\":\"{acc}\",\"amount\":1,\"kind\":\"x\"}}");
            let (st, _) = post(&client, &records_url, Bytes::from(body), false).await;
            assert_eq!(st, 200);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut lat = Vec::new();
        let until = Instant::now() + Duration::from_secs(10);
        while lat.len() < subscribers * appends && Instant::now() < until {
            if let Ok(Some(l)) = tokio::time::timeout(Duration::from_secs(1), lat_rx.recv()).await {
                lat.push(l);
            }
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "fan-out to {subscribers} SSE subscribers, {appends} appends 20 ms apart: {} of {} deliveries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            lat.len(),
            subscribers * appends,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN)
        );
        println!("PostgreSQL listener for pgbench: {pg}");
        if std::env::var("KAPPA_BENCH_HOLD").is_ok() {
            println!("holding the server for 120 s (KAPPA_BENCH_HOLD)");
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        let _ = stop_tx.send(());
        let _ = served.await;
        maintenance.stop().await;
    });
}
