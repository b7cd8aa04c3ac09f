//! Dropping a topic's history before a point (Kafka's DeleteRecords): each
//! partition's start offset rises to its first record at or after the
//! point. The new start offsets are made durable in the catalog first;
//! readers skip what lies below them at once, and the cleaner reclaims the
//! bytes on its next pass.

use crate::catalog::TopicMeta;
use crate::log::Shared;
use crate::read::read_partition;
use crate::segment::PartitionId;
use kappa_log::{LogError, LogTime, ReadFrom, ReadLimits};
use std::sync::Arc;

/// Raises the start offset of every partition of `topic` past its records
/// with a log time before `before`. Returns each partition's start offset
/// afterwards.
pub fn truncate_before(
    shared: &Shared,
    topic: &Arc<TopicMeta>,
    before: LogTime,
) -> Result<Vec<(u32, u64)>, LogError> {
    let head = *shared.head_tx.borrow();
    if before.0 > head.saturating_add(1) {
        return Err(LogError::InvalidArgument(format!(
            "cannot truncate topic {} before log time {}: the log's head is at {}, and only history can be dropped",
            topic.name, before.0, head
        )));
    }
    // Serialized with retention, which raises the same start offsets.
    let _pass = shared.cleaner_lock.lock().expect("cleaner lock");
    let mut raised = Vec::new();
    let mut starts = Vec::new();
    for partition in 0..topic.config.partitions {
        let pid = PartitionId {
            topic_id: topic.id,
            partition,
        };
        let (start, next) = {
            let state = shared.state.read().expect("state lock");
            match state.partitions.get(&pid) {
                Some(p) => (p.start_offset, p.next_offset),
                None => {
                    let floor = shared.catalog.read().expect("catalog lock").floor(pid);
                    (floor.start_offset, floor.next_offset)
                }
            }
        };
        // Read after `next`: a record appended meanwhile has a log time
        // past the head seen above, so it is kept either way.
        let first_kept = read_partition(
            shared,
            topic,
            partition,
            ReadFrom::LogTime(before),
            ReadLimits {
                max_records: 1,
                max_bytes: usize::MAX,
            },
            None,
        )?
        .first()
        .map_or(next, |r| r.offset);
        if first_kept > start {
            raised.push((pid, first_kept, next));
        }
        starts.push((partition, first_kept.max(start)));
    }
    if !raised.is_empty() {
        crate::cleaner::persist_floors(shared, &raised)?;
        let mut state = shared.state.write().expect("state lock");
        for (pid, start, _) in &raised {
            if let Some(p) = state.partitions.get_mut(pid) {
                p.start_offset = p.start_offset.max(*start);
            }
        }
    }
    Ok(starts)
}
