//! `GET /v1/topics/{topic}/partitions/{partition}/records`: a long-poll read.

use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use rivulet_broker::Woke;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::records::JsonRecord;
use crate::AppState;

/// Query of a long-poll read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PollQuery {
    /// `start`, `end` or an offset; default `start`.
    offset: Option<String>,
    /// Bytes of batches to read (at least one batch is always returned); default 1 MiB.
    max_bytes: Option<usize>,
    /// Records to return at most; default 500.
    max_records: Option<usize>,
    /// How long to wait for data when there is none; default 0.
    timeout_ms: Option<u64>,
}

const MAX_BYTES_CAP: usize = 8 << 20;
const MAX_RECORDS_CAP: usize = 10_000;

pub(crate) async fn poll(
    State(state): State<AppState>,
    path: Result<Path<(String, i32)>, PathRejection>,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path((topic_name, partition)) = path?;
    let Query(q) = query?;
    let topic = state
        .broker
        .topic(&topic_name)
        .ok_or_else(|| ApiError::unknown_topic(&topic_name))?;
    let info = topic
        .partition_info(partition)
        .ok_or_else(|| ApiError::unknown_partition(&topic_name, partition, topic.partition_count()))?;
    let offset = match q.offset.as_deref().unwrap_or("start") {
        "start" | "beginning" | "earliest" => info.log_start_offset,
        "end" | "latest" => info.high_watermark,
        n => n
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("offset {n:?}: expected start, end or a number")))?,
    };
    let max_bytes = q.max_bytes.unwrap_or(1 << 20).clamp(1, MAX_BYTES_CAP);
    let max_records = q.max_records.unwrap_or(500).clamp(1, MAX_RECORDS_CAP);
    let wait = Duration::from_millis(q.timeout_ms.unwrap_or(0).min(state.config.poll_wait_ms_max));
    let deadline = tokio::time::Instant::now() + wait;
    // Woken by the broker when the partition grows; no polling.
    let mut watch = state.broker.watch([(topic_name.as_str(), partition)]);
    let mut last_pass = false;
    // Each pass either answers or waits; the deadline (or shutdown) bounds the waits.
    loop {
        let read = state
            .broker
            .read_records(&topic_name, partition, offset, max_bytes, max_records)?;
        if !read.records.is_empty() || last_pass || tokio::time::Instant::now() >= deadline {
            let records: Vec<JsonRecord> = read
                .records
                .iter()
                .map(|r| JsonRecord::from_stored(&topic_name, partition, r))
                .collect();
            return Ok(Json(json!({
                "topic": topic_name,
                "partition": partition,
                "records": records,
                "next_offset": read.next_offset.max(read.log_start_offset),
                "high_watermark": read.high_watermark,
                "log_start_offset": read.log_start_offset,
            })));
        }
        last_pass = watch.wait(deadline).await == Woke::ShuttingDown;
    }
}
