//! Reading a view's topic for its operators: a batch of records at a
//! time from the frontier to a head, decoded into table form. With one
//! worker the catch-up reads and decodes in turn ([`Source::Inline`]);
//! with more, [`produce`] reads ahead on its own task and decodes several
//! batches at once on blocking threads, in order ([`Source::Channel`]).

use crate::EngineError;
use crate::dead_letters::dead_letter;
use crate::schema::TopicDef;
use kappa_log::{ReadLimits, RecordColumns};
use kappa_store::Puts;
use std::sync::Arc;

/// A batch of a topic's records in table form, ready for the operators.
pub(crate) struct Decoded {
    pub(crate) batch: datafusion::arrow::array::RecordBatch,
    /// Records that do not fit the topic.
    pub(crate) dead: Puts,
    pub(crate) records: usize,
    /// The log time the view reaches with this batch.
    pub(crate) position: u64,
    /// (partition, next offset) after this batch.
    pub(crate) next_offsets: Vec<(u32, u64)>,
    /// Memory this batch took: the records read, then the columns
    /// decoded from them.
    pub(crate) bytes: usize,
}

impl Decoded {
    /// Memory the reading holds while this batch is applied: with
    /// `decoders` decoding ahead, that many batches, the ones waiting for
    /// the operators, and the one being read.
    pub(crate) fn reading_bytes(&self, decoders: usize) -> usize {
        self.bytes * batches_held(decoders)
    }
}

/// Batches a reading holds at once with `decoders` decoding ahead (0: it
/// reads inline): those decoding, those waiting for the operators, and the
/// one being read.
pub(crate) fn batches_held(decoders: usize) -> usize {
    if decoders == 0 {
        1
    } else {
        decoders + READ_QUEUE + 1
    }
}

/// Decoded batches waiting for the operators. Six, not two: with two the
/// reading often waited on a full queue while the operators' thread ran
/// alone (encoding history between batches), leaving a core idle; a 1M
/// replay went from 0.35-0.39 s to 0.34-0.36 s (eight alternated rounds;
/// twelve did no better). The batches held stay within an eighth of the
/// view's budget (they are made smaller to fit).
pub(crate) const READ_QUEUE: usize = 6;

/// The topic from a view's frontier to `head`, read a batch at a time.
pub(crate) struct Reading {
    pub(crate) reader: Box<dyn kappa_log::MergedReader>,
    pub(crate) topic: TopicDef,
    /// The log time reached so far.
    pub(crate) position: u64,
    pub(crate) head: u64,
    pub(crate) limits: ReadLimits,
    /// The topic's columns the view reads (`None`: all).
    pub(crate) reads: Option<Arc<[bool]>>,
}

impl Reading {
    /// The next batch of records and the log time the view reaches with
    /// it; `None` once `head` is reached.
    async fn next(&mut self) -> Option<Result<(RecordColumns, u64), EngineError>> {
        if self.position >= self.head {
            return None;
        }
        Some(match self.reader.next_columns(self.limits).await {
            Err(e) => Err(EngineError::from(e)),
            Ok(records) => {
                // Nothing more: every record of the topic up to `head` has
                // been read, so the view reaches `head`.
                self.position = if records.is_empty() {
                    self.head
                } else {
                    self.reader.position().0
                };
                Ok((records, self.position))
            }
        })
    }
}

/// A batch this small (a live step) is decoded where it was read.
const SMALL_BATCH: usize = 4096;

/// Where a catch-up's decoded batches come from.
pub(crate) enum Source {
    /// Read and decoded on the catch-up's own task, in turn.
    Inline(Reading),
    /// From the producer task, ahead.
    Channel(tokio::sync::mpsc::Receiver<Result<Decoded, EngineError>>),
}

impl Source {
    pub(crate) async fn next(&mut self) -> Option<Result<Decoded, EngineError>> {
        match self {
            Source::Inline(r) => {
                let read = r.next().await?;
                Some(read.map(|(records, position)| {
                    decode(&r.topic, &records, position, r.reads.as_deref())
                }))
            }
            Source::Channel(rx) => rx.recv().await,
        }
    }
}

/// Reads the topic and decodes it into `tx`, with up to `decoders`
/// batches being decoded at once (on blocking threads), in order. Stops
/// at the head, at an error, or when the receiver is gone.
pub(crate) async fn produce(
    mut reading: Reading,
    decoders: usize,
    tx: tokio::sync::mpsc::Sender<Result<Decoded, EngineError>>,
) {
    let topic = Arc::new(reading.topic.clone());
    let mut decoding: std::collections::VecDeque<tokio::task::JoinHandle<Decoded>> =
        std::collections::VecDeque::new();
    let mut reading_done = false;
    // A batch read and not yet decoding.
    let mut ahead: Option<(RecordColumns, u64)> = None;
    loop {
        // Start decoding what is read, while decoders are free; then read
        // the next batch while they work.
        loop {
            if ahead.is_none() && !reading_done {
                match reading.next().await {
                    None => reading_done = true,
                    Some(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Some(Ok(batch)) => ahead = Some(batch),
                }
            }
            if decoding.len() >= decoders.max(1) {
                break;
            }
            let Some((records, position)) = ahead.take() else {
                break;
            };
            let topic = topic.clone();
            let reads = reading.reads.clone();
            let small = records.len() < SMALL_BATCH;
            let decode_it = move || decode(&topic, &records, position, reads.as_deref());
            decoding.push_back(if small {
                // A live step: not worth a thread hop.
                let decoded = decode_it();
                tokio::spawn(async move { decoded })
            } else {
                tokio::task::spawn_blocking(decode_it)
            });
        }
        let Some(next) = decoding.pop_front() else {
            return;
        };
        let decoded = next
            .await
            .map_err(|e| EngineError::Query(format!("the view's decoder failed: {e}")));
        let stop = decoded.is_err();
        if tx.send(decoded).await.is_err() || stop {
            return;
        }
    }
}

fn decode(
    topic: &TopicDef,
    records: &RecordColumns,
    position: u64,
    reads: Option<&[bool]>,
) -> Decoded {
    let (batch, rejected) = topic.to_batch_reading(records, reads);
    let mut dead = Puts::default();
    for (i, reason) in rejected {
        let r = records.entry(i);
        dead_letter(
            &mut dead,
            &topic.name,
            r.partition,
            r.offset,
            r.log_time.0,
            &reason,
        );
    }
    let mut next_offsets: Vec<(u32, u64)> = Vec::new();
    for r in records.entries() {
        match next_offsets.iter_mut().find(|(p, _)| *p == r.partition) {
            Some(e) => e.1 = e.1.max(r.offset + 1),
            None => next_offsets.push((r.partition, r.offset + 1)),
        }
    }
    Decoded {
        bytes: records.heap_bytes() + batch.get_array_memory_size(),
        batch,
        dead,
        records: records.len(),
        position,
        next_offsets,
    }
}
