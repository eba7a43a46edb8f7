//! `POST /v1/topics/{topic}/records`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use rivulet_log::batch;
use rivulet_log::record::Record;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::records::{partition_for_key, EncodedRecord, ProduceRecord};
use crate::AppState;

/// Maps a body extraction failure to a JSON error.
pub(crate) fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            41301,
            "request body is larger than the gateway accepts; send fewer records per request",
        )
    } else {
        ApiError::bad_request(format!("could not read the request body: {rejection}"))
    }
}

pub(crate) async fn produce(
    State(state): State<AppState>,
    Path(topic_name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let items: Vec<ProduceRecord> = match first {
        Some(b'[') => serde_json::from_slice(&body),
        Some(b'{') => serde_json::from_slice(&body).map(|r| vec![r]),
        _ => {
            return Err(ApiError::bad_request(
                "send a record object or an array of records",
            ))
        }
    }
    .map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::bad_request(format!("request body is not valid JSON: {e}"))
        } else {
            ApiError::bad_request(format!("invalid record: {e}"))
        }
    })?;
    if items.is_empty() {
        return Err(ApiError::bad_request("no records to produce"));
    }
    let max = state.config.records_per_request_max;
    if items.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            41303,
            format!("{} records in one request; at most {max}", items.len()),
        ));
    }
    let mut records = Vec::with_capacity(items.len());
    for (i, r) in items.into_iter().enumerate() {
        records.push(
            r.encode()
                .map_err(|e| ApiError::bad_request(format!("record {i}: {}", e.message)))?,
        );
    }
    let topic = state
        .broker
        .topic(&topic_name)
        .ok_or_else(|| ApiError::unknown_topic(&topic_name))?;
    let partitions = topic.partition_count();
    let now = rivulet_log::now_ms();
    // Group by partition, remembering each record's place in the request.
    let mut by_partition: BTreeMap<i32, Vec<(usize, EncodedRecord)>> = BTreeMap::new();
    for (i, r) in records.into_iter().enumerate() {
        let p = match (r.partition, &r.key) {
            (Some(p), _) => {
                if p < 0 || p as usize >= partitions {
                    return Err(ApiError::unknown_partition(&topic_name, p, partitions));
                }
                p
            }
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => (state.round_robin.fetch_add(1, Ordering::Relaxed) % partitions) as i32,
        };
        by_partition.entry(p).or_default().push((i, r));
    }
    let mut results: Vec<Option<Value>> = vec![None; by_partition.values().map(Vec::len).sum()];
    let mut appended = Vec::with_capacity(by_partition.len());
    for (p, group) in by_partition {
        let log = topic
            .partition(p)
            .ok_or_else(|| ApiError::unknown_partition(&topic_name, p, partitions))?;
        let base_ts = group[0].1.timestamp_ms.unwrap_or(now);
        let recs: Vec<Record> = group
            .iter()
            .map(|(_, r)| Record {
                timestamp_delta: r.timestamp_ms.unwrap_or(now) - base_ts,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
                ..Record::default()
            })
            .collect();
        let bytes = batch::build(0, base_ts, None, &recs);
        let out = log.append(&bytes)?;
        // Sync now; the waits below then overlap, one per partition.
        log.request_sync(out.last_offset + 1);
        appended.push((log, out.last_offset + 1));
        if let Some(m) = state.broker_metrics() {
            m.record_produced(&topic_name, recs.len() as u64, bytes.len() as u64);
        }
        for (k, (i, r)) in group.iter().enumerate() {
            results[*i] = Some(json!({
                "partition": p,
                "offset": out.base_offset + k as i64,
                "timestamp": r.timestamp_ms.unwrap_or(now),
            }));
        }
    }
    // Answered only once every record is durable (acks=all).
    for (log, next_offset) in appended {
        log.wait_durable(next_offset).await?;
    }
    Ok(Json(json!({
        "topic": topic_name,
        "offsets": results.into_iter().map(|r| r.unwrap_or(Value::Null)).collect::<Vec<_>>(),
    })))
}
