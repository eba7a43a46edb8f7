//! `GET /v1/topics/{topic}/partitions/{partition}/records`: a long-poll read.

use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::records::decode;
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
    let log = topic
        .partition(partition)
        .ok_or_else(|| ApiError::unknown_partition(&topic_name, partition, topic.partition_count()))?
        .clone();
    let offset = match q.offset.as_deref().unwrap_or("start") {
        "start" | "beginning" | "earliest" => log.log_start_offset(),
        "end" | "latest" => log.high_watermark(),
        n => n
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("offset {n:?}: expected start, end or a number")))?,
    };
    let max_bytes = q.max_bytes.unwrap_or(1 << 20).clamp(1, MAX_BYTES_CAP);
    let max_records = q.max_records.unwrap_or(500).clamp(1, MAX_RECORDS_CAP);
    let wait = Duration::from_millis(q.timeout_ms.unwrap_or(0).min(state.config.poll_wait_ms_max));
    let deadline = tokio::time::Instant::now() + wait;
    let mut rx = log.subscribe();
    loop {
        let read = log.read(offset, max_bytes)?;
        let records = decode(&topic_name, partition, read.records, offset, max_records)?;
        let now = tokio::time::Instant::now();
        if !records.is_empty() || now >= deadline {
            let next = records
                .last()
                .map_or(offset.max(read.log_start_offset), |r| r.offset + 1);
            if let Some(m) = state.broker_metrics() {
                let bytes: usize = records
                    .iter()
                    .map(|r| r.value.as_ref().map_or(0, String::len))
                    .sum();
                m.record_fetched(&topic_name, records.len() as u64, bytes as u64);
            }
            return Ok(Json(json!({
                "topic": topic_name,
                "partition": partition,
                "records": records,
                "next_offset": next,
                "high_watermark": read.high_watermark,
                "log_start_offset": read.log_start_offset,
            })));
        }
        // Woken by the log when the high watermark moves; no polling.
        if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
            continue;
        }
    }
}
