//! The idempotent producers of the partitions a shard owns: each
//! partition's [`ProducerStates`] (sans-IO, `crate::producers`) is asked
//! before a produce appends and told after every append, the leader's and
//! a follower's alike, so a new leader knows every producer's window. This
//! file keeps it beside the log: rebuilt when the log opens or is cut,
//! from the last snapshot and the batch headers after it, and written to
//! a snapshot on every retention pass and at shutdown, so a restart reads
//! only the batches appended since.

use super::{Partition, Shard};
use crate::producers::ProducerStates;
use crate::record;
use crate::storage::{file, StorageError};

/// The producer state snapshot in a partition's directory.
pub(super) const PRODUCERS_FILE: &str = "producers.snapshot";

/// Bytes read at a time when rebuilding from the log.
const REBUILD_READ_BYTES: usize = 1 << 20;

impl Partition {
    /// Rebuilds the producer state from the snapshot, if it covers no
    /// more than the log holds (a snapshot past the log's end was taken
    /// before a crash lost or a cut removed its last batches), and the
    /// batch headers after it.
    pub(super) async fn rebuild_producers(&self) -> Result<(), StorageError> {
        let max_producers = self.producers.borrow().max_producers();
        let log = self.log();
        let (start, end) = (log.log_start_offset(), log.next_offset());
        let path = self.dir.join(PRODUCERS_FILE);
        let mut states = match std::fs::read(&path) {
            Ok(bytes) => match ProducerStates::decode(&bytes, max_producers) {
                Ok(s) if s.end() <= end => s,
                Ok(_) => ProducerStates::starting_at(max_producers, start),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "damaged producer snapshot: rebuilding from the whole log");
                    ProducerStates::starting_at(max_producers, start)
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ProducerStates::starting_at(max_producers, start),
            Err(e) => return Err(StorageError::Io(e)),
        };
        // Batches below the log's start are gone; their producers stay
        // as the snapshot remembers them.
        let mut at = states.end().max(start);
        while at < end {
            let out = log.read(at, REBUILD_READ_BYTES).await?;
            let before = at;
            for chunk in &out.chunks {
                for item in record::batches(chunk) {
                    let Ok((_, info)) = item else { break };
                    if info.base_offset >= at {
                        states.record(&info, info.base_offset);
                        at = info.next_offset();
                    }
                }
            }
            if at == before {
                break;
            }
        }
        let skipped = end - states.end().max(start);
        if skipped > 0 {
            tracing::warn!(dir = %self.dir.display(), skipped, "producer state rebuilt short of the log's end");
        }
        *self.producers.borrow_mut() = states;
        Ok(())
    }

    /// Forgets producers idle past `expire_before_ms` (a record
    /// timestamp) and writes the state, if it moved since the last
    /// snapshot.
    pub(super) async fn snapshot_producers(&self, expire_before_ms: i64) -> Result<(), StorageError> {
        let bytes = {
            let mut s = self.producers.borrow_mut();
            let expired = s.expire(expire_before_ms);
            if expired == 0 && s.end() == self.producers_snapshot_end.get() {
                return Ok(());
            }
            self.producers_snapshot_end.set(s.end());
            s.encode()
        };
        file::write_atomic(&self.dir.join(PRODUCERS_FILE), &bytes).await?;
        Ok(())
    }
}

impl Shard {
    /// The record timestamp before which a producer is forgotten.
    pub(super) fn producer_expiry(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(i64::try_from(self.config.producer_id_expiration_ms).unwrap_or(i64::MAX))
    }
}
