//! Per-partition log settings.

use std::time::Duration;

use crate::error::{LogError, Result};
pub use crate::rewrite::TimestampBounds;

/// When appended bytes are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// An append is durable before it is acknowledged; concurrent appends share one
    /// fdatasync (group commit). Readers only see durable data. The default.
    Always,
    /// Bytes are forced to disk at least every interval; appends do not wait.
    Interval(Duration),
    /// Appends never wait for the disk. The log's flusher writes each partition back in the
    /// background every [`crate::WRITEBACK_BYTES`] appended, so dirty pages stay bounded;
    /// segments are also synced when they roll and when the log closes.
    None,
}

impl FsyncPolicy {
    /// Parses `always`, `none`, `interval` (1 s) or `interval:<ms>`.
    pub fn parse(text: &str) -> Result<FsyncPolicy> {
        match text {
            "always" => Ok(FsyncPolicy::Always),
            "none" => Ok(FsyncPolicy::None),
            "interval" => Ok(FsyncPolicy::Interval(Duration::from_millis(1_000))),
            other => {
                let ms = other
                    .strip_prefix("interval:")
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| {
                        LogError::Config(format!(
                            "fsync policy {other:?}: expected always, none, interval or interval:<ms>"
                        ))
                    })?;
                Ok(FsyncPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }

    /// The text form accepted by [`FsyncPolicy::parse`].
    pub fn as_string(&self) -> String {
        match self {
            FsyncPolicy::Always => "always".to_string(),
            FsyncPolicy::None => "none".to_string(),
            FsyncPolicy::Interval(d) => format!("interval:{}", d.as_millis()),
        }
    }
}

/// What happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Whole segments are deleted by time and size retention.
    pub delete: bool,
    /// Sealed segments are compacted to the latest record per key.
    pub compact: bool,
}

impl CleanupPolicy {
    /// `cleanup.policy=delete`, the default.
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    /// `cleanup.policy=compact`.
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };

    /// Parses Kafka's `cleanup.policy` values: `delete`, `compact`, `compact,delete`.
    pub fn parse(text: &str) -> Result<CleanupPolicy> {
        let mut policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in text.split(',').map(str::trim) {
            match part {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                other => {
                    return Err(LogError::Config(format!(
                        "cleanup.policy {other:?}: expected delete, compact or both"
                    )))
                }
            }
        }
        if !policy.delete && !policy.compact {
            return Err(LogError::Config("cleanup.policy is empty".into()));
        }
        Ok(policy)
    }

    /// The text form Kafka uses.
    pub fn as_str(&self) -> &'static str {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        }
    }
}

/// Settings of one partition log. Field names follow Kafka's topic configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when it would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment when it is older than this.
    pub segment_ms: Option<u64>,
    /// Bytes of batches between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_batch_bytes: usize,
    /// When appended bytes reach the disk.
    pub fsync: FsyncPolicy,
    /// `retention.ms`: delete sealed segments whose newest record is older. `None` keeps all.
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: delete oldest sealed segments while the log is larger.
    pub retention_bytes: Option<u64>,
    /// `cleanup.policy`.
    pub cleanup: CleanupPolicy,
    /// `delete.retention.ms`: how long tombstones survive compaction.
    pub delete_retention_ms: u64,
    /// Open file handles of sealed segments kept per log; idle ones close beyond this.
    pub max_open_sealed_segments: usize,
    /// `message.timestamp.type=LogAppendTime`: each appended batch is stamped with the
    /// broker's clock (its maxTimestamp, and the timestamp-type attribute), which readers
    /// then give every record of the batch.
    pub log_append_time: bool,
    /// `compression.type`: the codec batches are stored with (0 none, 1 gzip, 2 snappy,
    /// 3 lz4, 4 zstd); batches written with another are recompressed. `None` (`producer`)
    /// keeps each batch as its producer wrote it.
    pub compression: Option<i16>,
    /// `message.timestamp.before.max.ms` and `.after.max.ms`: CreateTime records further
    /// from the broker's clock are refused.
    pub timestamp_bounds: TimestampBounds,
    /// `min.compaction.lag.ms`: compaction leaves segments holding records younger than
    /// this alone.
    pub min_compaction_lag_ms: u64,
    /// `max.compaction.lag.ms`: on compacted logs, the active segment is sealed (and so
    /// becomes compactable) once it is this old, even before `segment.ms`.
    pub max_compaction_lag_ms: Option<u64>,
    /// `segment.jitter.ms`: each segment's `segment.ms` is shortened by up to this much
    /// (a fixed share per segment), so partitions created together do not all roll at once.
    pub segment_jitter_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            index_interval_bytes: 4096,
            max_batch_bytes: 1_048_588,
            fsync: FsyncPolicy::Always,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            cleanup: CleanupPolicy::DELETE,
            delete_retention_ms: 24 * 3600 * 1000,
            max_open_sealed_segments: 16,
            log_append_time: false,
            compression: None,
            timestamp_bounds: TimestampBounds {
                before_max_ms: None,
                after_max_ms: None,
            },
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: None,
            segment_jitter_ms: 0,
        }
    }
}

/// Largest segment the 32-bit index positions can address.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;

impl LogConfig {
    /// How old the active segment starting at `base_offset` may grow before it is sealed:
    /// `segment.ms` less its jitter, or `max.compaction.lag.ms` when the log is compacted and
    /// that is sooner.
    pub fn roll_after_ms(&self, base_offset: i64) -> Option<u64> {
        let lag = self.max_compaction_lag_ms.filter(|_| self.cleanup.compact);
        let segment_ms = self.segment_ms.map(|ms| {
            let jitter = jitter_share(base_offset, self.segment_jitter_ms.min(ms.saturating_sub(1)));
            ms - jitter
        });
        match (segment_ms, lag) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Checks that every value is in range.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes < 1024 || self.segment_bytes > SEGMENT_BYTES_MAX {
            return Err(LogError::Config(format!(
                "segment.bytes {} must be within [1024, {SEGMENT_BYTES_MAX}]",
                self.segment_bytes
            )));
        }
        if self.max_batch_bytes < 61 || self.max_batch_bytes as u64 > SEGMENT_BYTES_MAX {
            return Err(LogError::Config(format!(
                "max.message.bytes {} must be within [61, {SEGMENT_BYTES_MAX}]",
                self.max_batch_bytes
            )));
        }
        if self.index_interval_bytes == 0 {
            return Err(LogError::Config("index interval must be positive".into()));
        }
        if self.compression.is_some_and(|c| !(0..=4).contains(&c)) {
            return Err(LogError::Config(format!(
                "unknown compression codec {:?}",
                self.compression
            )));
        }
        if self.max_open_sealed_segments == 0 {
            return Err(LogError::Config(
                "max open sealed segments must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// A segment's share of `jitter_ms`, in `[0, jitter_ms)`: spread by the segment's base
/// offset (a multiplicative hash), fixed for the segment's life.
fn jitter_share(base_offset: i64, jitter_ms: u64) -> u64 {
    if jitter_ms == 0 {
        return 0;
    }
    (base_offset as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % jitter_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_roll_by_age_less_their_jitter_or_at_the_compaction_lag() {
        let config = LogConfig {
            segment_ms: Some(1_000),
            segment_jitter_ms: 400,
            ..LogConfig::default()
        };
        let rolls: Vec<u64> = (0..64)
            .map(|base| config.roll_after_ms(base * 997).unwrap_or(0))
            .collect();
        assert!(rolls.iter().all(|ms| (601..=1_000).contains(ms)), "{rolls:?}");
        assert!(rolls.iter().any(|ms| *ms != rolls[0]), "segments differ");
        assert_eq!(
            config.roll_after_ms(5),
            config.roll_after_ms(5),
            "fixed per segment"
        );
        let compacted = LogConfig {
            cleanup: CleanupPolicy::COMPACT,
            max_compaction_lag_ms: Some(100),
            ..config.clone()
        };
        assert_eq!(compacted.roll_after_ms(7), Some(100));
        let plain = LogConfig {
            segment_ms: None,
            ..compacted
        };
        assert_eq!(plain.roll_after_ms(7), Some(100));
        assert_eq!(
            LogConfig {
                segment_ms: None,
                ..LogConfig::default()
            }
            .roll_after_ms(0),
            None
        );
    }
}
