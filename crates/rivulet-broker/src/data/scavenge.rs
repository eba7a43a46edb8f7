//! Removing records no reader may see any more, for stores built on a topic that know
//! which those are (the event store's deleted and truncated streams).

use rivulet_log::StoredRecord;

use crate::error::Result;
use crate::Broker;

impl Broker {
    /// Rewrites the sealed segments of a partition without the records `keep` refuses.
    /// Kept records keep their offsets (readers see gaps, as after compaction); the
    /// segment being written is left alone. Returns the number of records removed.
    /// Blocking I/O: call from a thread that may block.
    pub fn scavenge_records(
        &self,
        topic: &str,
        partition: i32,
        keep: &mut dyn FnMut(&StoredRecord) -> bool,
    ) -> Result<u64> {
        let log = self.log_of(topic, partition)?;
        let removed = log.scavenge(keep)?;
        self.metrics().record_scavenged(topic, removed);
        Ok(removed)
    }
}
