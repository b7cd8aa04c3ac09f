//! Server-sent event streams: `subscribe` (a view's snapshot, then every
//! change, with progress marks) and `follow` (a topic's records as they
//! are appended). Both resume exactly from `Last-Event-ID`.
//!
//! Each stream has a producer task that reads (the feed or the log) and a
//! bounded queue of rendered events to the connection, so a subscriber's
//! memory is bounded by the queue. A subscriber that does not keep up
//! (its queue is full and what it is being sent is older than the lag
//! limit) gets a `slow_subscriber` error event and is disconnected; one
//! that stops reading altogether is cut by the connection's send timeout.

use super::AppState;
use crate::error::ApiError;
use crate::format;
use crate::topic_read::{ReadStart, TopicRead};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use kappa_engine::feed::{Feed, FeedEvent, FeedStart};
use kappa_log::{LogTime, ReadLimits};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Snapshot rows per event.
const SNAPSHOT_CHUNK: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// Start with the view's rows (default); `false`: changes only.
    snapshot: Option<bool>,
    /// The snapshot's point (a timestamp or a token) instead of now.
    as_of: Option<String>,
    /// No snapshot: every change after this point (as `Last-Event-ID`).
    after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowParams {
    /// Records after this point (a timestamp, a token or an event id);
    /// without it, records appended from now on.
    after: Option<String>,
    /// From the topic's first retained record.
    from_start: Option<bool>,
    /// Every partition from this offset.
    from_offset: Option<u64>,
    /// `head`: end the stream (with an `end` event) at the log's head as
    /// it is when the request arrives, as a consumer that exits at the
    /// end of the topic does.
    until: Option<String>,
}

fn point(s: &str) -> Result<LogTime, ApiError> {
    crate::point::parse_point(s).map_err(ApiError::bad_request)
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<LogTime>, ApiError> {
    match headers.get("last-event-id").map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(v)) if !v.trim().is_empty() => point(v).map(Some),
        Some(_) => Ok(None),
    }
}

pub async fn subscribe(
    State(state): State<AppState>,
    Path(view): Path<String>,
    params: Result<Query<SubscribeParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(super::query_rejected)?;
    let start = if let Some(t) = last_event_id(&headers)? {
        FeedStart::After(t)
    } else if let Some(after) = &p.after {
        FeedStart::After(point(after)?)
    } else if let Some(at) = &p.as_of {
        FeedStart::SnapshotAt(point(at)?)
    } else if p.snapshot == Some(false) {
        FeedStart::After(state.engine.frontier(&view).await?)
    } else {
        FeedStart::Now
    };
    let feed = state.engine.subscribe(&view, start).await?;
    let stream = Stream::open(&state);
    tokio::spawn(pump_feed(feed, stream.sender));
    Ok(stream.response)
}

pub async fn follow(
    State(state): State<AppState>,
    Path(topic): Path<String>,
    params: Result<Query<FollowParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(super::query_rejected)?;
    let until_head = match p.until.as_deref() {
        None => false,
        Some("head") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "until={other:?}: the only end is `head` (the log's head when the request arrives)"
            )));
        }
    };
    let start = if let Some(t) = last_event_id(&headers)? {
        ReadStart::After(t)
    } else {
        match (&p.after, p.from_start, p.from_offset) {
            (Some(after), None, None) => ReadStart::After(point(after)?),
            (None, Some(true), None) => ReadStart::Beginning,
            (None, None, Some(offset)) => ReadStart::Offset(offset),
            (None, None | Some(false), None) => ReadStart::Now,
            _ => {
                return Err(ApiError::bad_request(
                    "give one of after, from_start and from_offset",
                ));
            }
        }
    };
    let log = state.engine.log().clone();
    let read = TopicRead::open(log, &topic, start, until_head).await?;
    let stream = Stream::open(&state);
    tokio::spawn(pump_records(read, stream.sender));
    Ok(stream.response)
}

/// The producer's end of a stream.
struct Sender {
    tx: mpsc::Sender<Event>,
    /// Set when the producer gives up; sent after the queue drains.
    last_word: Arc<Mutex<Option<Event>>>,
    max_lag: Duration,
    metrics: Arc<crate::metrics::ServerMetrics>,
}

struct Stream {
    sender: Sender,
    response: Response,
}

impl Stream {
    fn open(state: &AppState) -> Stream {
        let (tx, rx) = mpsc::channel(state.limits.subscriber_queue_events.max(1));
        let last_word = Arc::new(Mutex::new(None));
        let words = last_word.clone();
        let events = futures_util::stream::unfold(Some(rx), move |rx| {
            let words = words.clone();
            async move {
                let mut rx = rx?;
                match rx.recv().await {
                    Some(e) => Some((Ok::<_, Infallible>(e), Some(rx))),
                    None => {
                        let last = words.lock().expect("last word").take()?;
                        Some((Ok(last), None))
                    }
                }
            }
        });
        state.metrics.subscribers.fetch_add(1, Ordering::Relaxed);
        let mut response = Sse::new(events)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response();
        // A stream ends only when it fails: then the connection goes too.
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        Stream {
            sender: Sender {
                tx,
                last_word,
                max_lag: state.limits.subscriber_max_lag,
                metrics: state.metrics.clone(),
            },
            response,
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.metrics.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Sent {
    Ok,
    /// The subscriber left, or was cut off: stop.
    Stop,
}

impl Sender {
    /// Queues `event`. When the queue is full, waits for room only while
    /// what is being sent (from log time `at`) is within the lag limit.
    async fn send(&self, event: Event, at: Option<LogTime>) -> Sent {
        let event = match self.tx.try_send(event) {
            Ok(()) => return Sent::Ok,
            Err(mpsc::error::TrySendError::Closed(_)) => return Sent::Stop,
            Err(mpsc::error::TrySendError::Full(e)) => e,
        };
        let lag = at.map_or(Duration::ZERO, |t| {
            Duration::from_micros(now_micros().saturating_sub(t.0))
        });
        let budget = self
            .max_lag
            .saturating_sub(lag)
            .max(Duration::from_millis(1));
        match tokio::time::timeout(budget, self.tx.reserve()).await {
            Ok(Ok(permit)) => {
                permit.send(event);
                Sent::Ok
            }
            Ok(Err(_)) => Sent::Stop,
            Err(_) => {
                self.metrics
                    .slow_subscribers
                    .fetch_add(1, Ordering::Relaxed);
                self.stop_with(
                    "slow_subscriber",
                    format!(
                        "this subscriber fell more than {} ms behind and its buffer is full; disconnected. Read faster, or resume from the last event id",
                        self.max_lag.as_millis()
                    ),
                );
                Sent::Stop
            }
        }
    }

    /// Ends the stream with an error event (after what is queued).
    fn stop_with(&self, code: &str, message: String) {
        let data = json!({ "error": { "code": code, "message": message } });
        self.end_with(Event::default().event("error").data(data.to_string()));
    }

    /// The event sent once the queue has drained, before the stream ends.
    fn end_with(&self, event: Event) {
        *self.last_word.lock().expect("last word") = Some(event);
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn pump_feed(mut feed: Feed, out: Sender) {
    let mut schema = feed.schema().clone();
    loop {
        let event = tokio::select! {
            e = feed.next() => e,
            _ = out.tx.closed() => return,
        };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                let e = ApiError::from(e);
                out.stop_with(e.code, e.message);
                return;
            }
        };
        match event {
            FeedEvent::Replaced { version } => {
                // The new version's snapshot follows (its columns may differ).
                schema = feed.schema().clone();
                let e = Event::default()
                    .event("replaced")
                    .data(json!({ "version": version }).to_string());
                if let Sent::Stop = out.send(e, None).await {
                    return;
                }
            }
            FeedEvent::Snapshot { at, rows, last } => {
                let chunks = snapshot_chunks(&schema, &rows);
                let n = chunks.len();
                for (i, chunk) in chunks.into_iter().enumerate() {
                    let end = last && i + 1 == n;
                    let mut data = json!({ "at": at.to_rfc3339(), "rows": chunk });
                    if end {
                        data["last"] = Value::Bool(true);
                    }
                    let mut e = Event::default().event("snapshot").data(data.to_string());
                    // Resuming after the whole snapshot means: changes after it.
                    if end {
                        e = e.id(at.0.to_string());
                    }
                    if let Sent::Stop = out.send(e, None).await {
                        return;
                    }
                }
            }
            FeedEvent::Change {
                log_time,
                key,
                before,
                after,
            } => {
                let row = |values: &Option<Vec<datafusion::common::ScalarValue>>| match values {
                    None => Value::Null,
                    Some(v) => Value::Object(
                        schema
                            .fields()
                            .iter()
                            .zip(v)
                            .map(|(f, v)| (f.name().clone(), format::scalar(v)))
                            .collect::<Map<String, Value>>(),
                    ),
                };
                let data = json!({
                    "log_time": log_time.to_rfc3339(),
                    "key": hex(&key),
                    "before": row(&before),
                    "after": row(&after),
                });
                let mut e = Event::default().event("change").data(data.to_string());
                // An id only on the last change of a log time: resuming
                // after it repeats and skips nothing.
                let more_at_same_time = matches!(
                    feed.queued(),
                    Some(FeedEvent::Change { log_time: t, .. }) if *t == log_time
                );
                if !more_at_same_time {
                    e = e.id(log_time.0.to_string());
                }
                if let Sent::Stop = out.send(e, Some(log_time)).await {
                    return;
                }
            }
            FeedEvent::Progress { frontier } => {
                let data = json!({ "frontier": frontier.to_rfc3339() });
                let e = Event::default()
                    .event("progress")
                    .id(frontier.0.to_string())
                    .data(data.to_string());
                if let Sent::Stop = out.send(e, Some(frontier)).await {
                    return;
                }
            }
        }
    }
}

async fn pump_records(mut read: TopicRead, out: Sender) {
    let limits = ReadLimits {
        max_records: 1000,
        max_bytes: 1 << 20,
    };
    loop {
        let batch = tokio::select! {
            b = read.next(limits) => b,
            _ = out.tx.closed() => return,
        };
        let batch = match batch {
            Ok(Some(b)) => b,
            Ok(None) => {
                let data = json!({ "position": read.position().to_rfc3339() });
                out.end_with(Event::default().event("end").data(data.to_string()));
                return;
            }
            Err(e) => {
                let e = ApiError::from(e);
                out.stop_with(e.code, e.message);
                return;
            }
        };
        if batch.is_empty() {
            let waited = tokio::select! {
                w = read.wait(Duration::from_secs(15)) => w,
                _ = out.tx.closed() => return,
            };
            if let Err(e) = waited {
                let e = ApiError::from(e);
                out.stop_with(e.code, e.message);
                return;
            }
            continue;
        }
        for r in batch {
            let data = crate::topic_read::record_json(&r);
            let e = Event::default()
                .event("record")
                .id(r.log_time.0.to_string())
                .data(data.to_string());
            if let Sent::Stop = out.send(e, Some(r.log_time)).await {
                return;
            }
        }
    }
}

fn snapshot_chunks(schema: &Schema, rows: &RecordBatch) -> Vec<Value> {
    let objects = format::objects(schema, rows);
    if objects.is_empty() {
        return vec![Value::Array(Vec::new())];
    }
    objects
        .chunks(SNAPSHOT_CHUNK)
        .map(|c| Value::Array(c.to_vec()))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
