//! One task: the state of one partition index of a job's inputs, and what processing a
//! record produced. The runner drives tasks; a pipeline ([`crate::Pipeline`]) makes them.

use rivulet_sdk::{InRecord, OutRecord, TopicPartition};

use crate::clock::TaskClock;
use crate::window::Window;

/// Header naming why a record went to the side output.
pub const HEADER_REASON: &str = "rivulet-reason";
/// Header with the start of the window a late record missed (ms).
pub const HEADER_WINDOW_START: &str = "rivulet-window-start-ms";
/// Header with the end of the window a late record missed (ms).
pub const HEADER_WINDOW_END: &str = "rivulet-window-end-ms";
/// Header with the task watermark when the record arrived (ms).
pub const HEADER_WATERMARK: &str = "rivulet-watermark-ms";
/// Header with the record's event time (ms).
pub const HEADER_EVENT_TIME: &str = "rivulet-event-time-ms";
/// Header with where the record came from: `topic/partition/offset`.
pub const HEADER_SOURCE: &str = "rivulet-source";

/// Header of a repartitioned record: the upstream task (input partition index) that wrote it.
pub const HEADER_UPSTREAM: &str = "rivulet-upstream";
/// Header of a repartitioned record: the upstream task's watermark before the record (ms).
pub const HEADER_UPSTREAM_WATERMARK: &str = "rivulet-upstream-watermark-ms";

/// Header of a repartitioned record of a join: `l` (left) or `r` (right).
pub const HEADER_SIDE: &str = "rivulet-side";

/// Why a record went to the side output instead of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SideReason {
    /// Its window had closed (watermark past end plus allowed lateness).
    Late,
    /// Its timestamp was further in the future than the job accepts.
    TooFarInFuture,
}

impl SideReason {
    /// The reason as written in the `rivulet-reason` header.
    pub fn as_str(self) -> &'static str {
        match self {
            SideReason::Late => "late",
            SideReason::TooFarInFuture => "too-far-in-future",
        }
    }
}

/// What processing produced, waiting for the next checkpoint.
#[derive(Debug, Default)]
pub struct TaskOut {
    /// Records for the job's output topic.
    pub results: Vec<OutRecord>,
    /// Records for the side output (`<job>.late`).
    pub side: Vec<OutRecord>,
    /// Records that could not be decoded, for `<job>.dlq`.
    pub dead: Vec<OutRecord>,
    /// Keyed records for the repartition topic (the runner picks their partitions).
    pub shuffled: Vec<OutRecord>,
}

impl TaskOut {
    /// Records held.
    pub fn len(&self) -> usize {
        self.results.len() + self.side.len() + self.dead.len() + self.shuffled.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The context of processing one input record.
pub struct Ctx<'a> {
    /// The record.
    pub record: &'a InRecord,
    /// Its partition.
    pub input: &'a TopicPartition,
    /// The task's clock.
    pub clock: &'a mut TaskClock,
    /// Timestamps above this go to the side output.
    pub future_limit_ms: i64,
    /// Where outputs go.
    pub out: &'a mut TaskOut,
}

impl Ctx<'_> {
    /// Sends the input record to the side output.
    pub fn side(&mut self, reason: SideReason, ts_ms: i64, window: Option<Window>) {
        let r = self.record;
        let has_source = r.header(HEADER_SOURCE).is_some();
        let mut headers: Vec<(String, Vec<u8>)> = r
            .headers
            .iter()
            .filter(|(k, _)| k != HEADER_UPSTREAM && k != HEADER_UPSTREAM_WATERMARK && k != HEADER_EVENT_TIME)
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        let mut add = |k: &str, v: String| headers.push((k.to_string(), v.into_bytes()));
        add(HEADER_REASON, reason.as_str().to_string());
        if let Some(w) = window {
            add(HEADER_WINDOW_START, w.start_ms.to_string());
            add(HEADER_WINDOW_END, w.end_ms.to_string());
        }
        add(HEADER_WATERMARK, self.clock.watermark_ms.to_string());
        add(HEADER_EVENT_TIME, ts_ms.to_string());
        // A repartitioned record already names its original source.
        if !has_source {
            add(HEADER_SOURCE, format!("{}/{}/{}", r.topic, r.partition, r.offset));
        }
        self.out.side.push(OutRecord {
            key: r.key.clone(),
            value: r.value.clone(),
            headers,
            partition: None,
        });
    }

    /// Sends the input record to the dead-letter topic: it could not be decoded.
    pub fn dead_letter(&mut self, reason: &str) {
        let r = self.record;
        tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, reason, "Record not decodable; dead-lettered");
        let mut headers: Vec<(String, Vec<u8>)> = r
            .headers
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        headers.push((
            HEADER_REASON.to_string(),
            format!("undecodable: {reason}").into_bytes(),
        ));
        headers.push((
            HEADER_SOURCE.to_string(),
            format!("{}/{}/{}", r.topic, r.partition, r.offset).into_bytes(),
        ));
        self.out.dead.push(OutRecord {
            key: r.key.clone(),
            value: r.value.clone(),
            headers,
            partition: None,
        });
    }
}

/// A changelog entry: encoded key and value (`None` deletes).
pub type ChangelogEntry = (Vec<u8>, Option<Vec<u8>>);

/// The processing logic and state of one task.
pub trait TaskLogic: Send {
    /// Processes one input record.
    fn process(&mut self, ctx: &mut Ctx<'_>);

    // The defaults below are those of logic without state (operators, first stages).

    /// The watermark moved without a record (idleness, end of input): closes windows.
    fn advance(&mut self, _watermark_ms: i64, _out: &mut TaskOut) {}

    /// State entries changed since the last call, for the changelog.
    fn take_changelog(&mut self) -> Result<Vec<ChangelogEntry>, String> {
        Ok(Vec::new())
    }

    /// Puts back one changelog entry.
    fn restore(&mut self, _key: &[u8], _value: Option<&[u8]>) -> Result<(), String> {
        Ok(())
    }

    /// State entries held (open windows).
    fn state_len(&self) -> usize {
        0
    }

    /// The open windows of `key` (its text, or JSON for other key types) as JSON
    /// `{"start_ms", "end_ms", "value"}`, for interactive queries; `None` when the logic
    /// keeps no state by key.
    fn query(&self, _key: &str) -> Option<Vec<serde_json::Value>> {
        None
    }
}
