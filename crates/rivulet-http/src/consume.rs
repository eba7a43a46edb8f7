//! `GET /v1/topics/{topic}/partitions/{partition}/records`: a long-poll read.

use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use rivulet_broker::{PartitionInfo, Woke};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::filter::Filter;
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
    /// How long to wait for data when there is none; default 0 (filtered reads never wait).
    timeout_ms: Option<u64>,
    /// Start at the first record at or after this time (ms since the epoch) instead of
    /// `offset`; the end when there is none.
    timestamp: Option<i64>,
    /// Only records with this key.
    key: Option<String>,
    /// Only records with this header (`name` or `name=value`).
    header: Option<String>,
    /// Only records whose JSON value has this field (`a.b=value`).
    field: Option<String>,
    /// Records a filtered read looks at before answering; default 100,000.
    scan_records_max: Option<usize>,
}

const MAX_BYTES_CAP: usize = 8 << 20;
const MAX_RECORDS_CAP: usize = 10_000;
const SCAN_RECORDS_DEFAULT: usize = 100_000;
const SCAN_RECORDS_CAP: usize = 2_000_000;

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
    let offset = match q.timestamp {
        Some(ts) => state
            .broker
            .offset_for_timestamp(&topic_name, partition, ts)?
            .map_or(info.high_watermark, |found| found.offset),
        None => parse_offset(q.offset.as_deref(), &info)?,
    };
    let max_bytes = q.max_bytes.unwrap_or(1 << 20).clamp(1, MAX_BYTES_CAP);
    let max_records = q.max_records.unwrap_or(500).clamp(1, MAX_RECORDS_CAP);
    if let Some(filter) = Filter::parse(q.key, q.header, q.field)? {
        let scan = q
            .scan_records_max
            .unwrap_or(SCAN_RECORDS_DEFAULT)
            .clamp(1, SCAN_RECORDS_CAP);
        let limits = (max_bytes, max_records, scan);
        // A scan may decode many batches: off the async workers.
        let answer = tokio::task::spawn_blocking(move || {
            filtered(&state, &topic_name, partition, offset, &filter, limits)
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
        return Ok(Json(answer));
    }
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

fn parse_offset(text: Option<&str>, info: &PartitionInfo) -> Result<i64, ApiError> {
    Ok(match text.unwrap_or("start") {
        "start" | "beginning" | "earliest" => info.log_start_offset,
        "end" | "latest" => info.high_watermark,
        n => n
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("offset {n:?}: expected start, end or a number")))?,
    })
}

/// Scans forward from `offset` for records passing `filter`, until `max_records` matched,
/// `scan` records were looked at, or the high watermark.
fn filtered(
    state: &AppState,
    topic: &str,
    partition: i32,
    offset: i64,
    filter: &Filter,
    (max_bytes, max_records, scan): (usize, usize, usize),
) -> Result<Value, ApiError> {
    let mut next = offset;
    let mut scanned = 0usize;
    let mut matched: Vec<JsonRecord> = Vec::new();
    let mut read = state
        .broker
        .read_records(topic, partition, next, max_bytes, MAX_RECORDS_CAP)?;
    // Bounded by `scan`: every pass looks at records or stops.
    loop {
        next = next.max(read.log_start_offset);
        for r in &read.records {
            if matched.len() >= max_records || scanned >= scan {
                break;
            }
            scanned += 1;
            next = r.offset + 1;
            if filter.matches(r) {
                matched.push(JsonRecord::from_stored(topic, partition, r));
            }
        }
        let all_seen = read.records.last().is_none_or(|r| r.offset < next);
        if all_seen {
            next = next.max(read.next_offset);
        }
        let done = matched.len() >= max_records || scanned >= scan || !all_seen;
        if done || next >= read.high_watermark || read.records.is_empty() && read.next_offset <= next {
            return Ok(json!({
                "topic": topic,
                "partition": partition,
                "records": matched,
                "next_offset": next,
                "scanned": scanned,
                "high_watermark": read.high_watermark,
                "log_start_offset": read.log_start_offset,
            }));
        }
        let batch = (scan - scanned).min(MAX_RECORDS_CAP);
        read = state
            .broker
            .read_records(topic, partition, next, max_bytes, batch)?;
    }
}
