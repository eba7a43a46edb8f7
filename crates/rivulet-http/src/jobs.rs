//! `GET /v1/jobs` and `GET /v1/jobs/{name}`: stream processing jobs as their instances
//! report themselves in `rivulet.jobs`, with their consumer group's lag.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rivulet_broker::Broker;
use rivulet_stream::status::{JobStatus, JOBS_TOPIC};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

/// Bytes per read of the status topic.
const READ_BYTES: usize = 1 << 20;
/// Most status records read (the topic is compacted: one per instance).
const RECORDS_MAX: usize = 100_000;

/// The latest status of every instance, by job and instance; statuses that do not decode
/// are skipped with a log line.
pub(crate) fn statuses(broker: &Broker) -> Vec<JobStatus> {
    let mut latest: BTreeMap<String, JobStatus> = BTreeMap::new();
    if broker.topic(JOBS_TOPIC).is_none() {
        return Vec::new();
    }
    let mut offset = 0;
    let mut seen = 0;
    // Bounded by RECORDS_MAX; each pass moves `offset` forward or stops.
    while seen < RECORDS_MAX {
        let read = match broker.read_records(JOBS_TOPIC, 0, offset, READ_BYTES, RECORDS_MAX - seen) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "Reading job statuses failed");
                break;
            }
        };
        for r in &read.records {
            let key = r.key.as_deref().map(|k| String::from_utf8_lossy(k).to_string());
            match (key, r.value.as_deref()) {
                (Some(k), None) => {
                    latest.remove(&k);
                }
                (Some(k), Some(v)) => match serde_json::from_slice::<JobStatus>(v) {
                    Ok(s) => {
                        latest.insert(k, s);
                    }
                    Err(e) => {
                        tracing::warn!(offset = r.offset, error = %e, "Job status not decodable; skipped")
                    }
                },
                (None, _) => {}
            }
        }
        seen += read.records.len();
        if read.next_offset <= offset || read.next_offset >= read.high_watermark {
            break;
        }
        offset = read.next_offset;
    }
    latest.into_values().collect()
}

fn instance_json(s: &JobStatus, now_ms: i64) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.insert("state".into(), json!(s.effective_state(now_ms)));
        map.insert("age_ms".into(), json!(now_ms - s.updated_ms));
    }
    v
}

fn job_json(broker: &Broker, name: &str, instances: &[&JobStatus], now_ms: i64) -> Value {
    let lag: Vec<Value> = broker
        .group_lag(name)
        .into_iter()
        .map(|l| json!({"topic": l.topic, "partition": l.partition, "committed": l.committed, "lag": l.lag}))
        .collect();
    let total: i64 = broker.group_lag(name).iter().filter_map(|l| l.lag).sum();
    let running = instances
        .iter()
        .filter(|s| s.effective_state(now_ms) == "running")
        .count();
    json!({
        "job": name,
        "instances_running": running,
        "lag": total,
        "partitions": lag,
        "instances": instances.iter().map(|s| instance_json(s, now_ms)).collect::<Vec<_>>(),
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `GET /v1/jobs`.
pub(crate) async fn list(State(state): State<AppState>) -> Json<Value> {
    let all = statuses(&state.broker);
    let now = now_ms();
    let mut by_job: BTreeMap<&str, Vec<&JobStatus>> = BTreeMap::new();
    for s in &all {
        by_job.entry(&s.job).or_default().push(s);
    }
    let jobs: Vec<Value> = by_job
        .iter()
        .map(|(name, instances)| job_json(&state.broker, name, instances, now))
        .collect();
    Json(json!({ "jobs": jobs }))
}

/// `GET /v1/jobs/{name}`.
pub(crate) async fn describe(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let all = statuses(&state.broker);
    let instances: Vec<&JobStatus> = all.iter().filter(|s| s.job == name).collect();
    if instances.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            40411,
            format!("no job named {name} has reported (instances write to {JOBS_TOPIC})"),
        ));
    }
    Ok(Json(job_json(&state.broker, &name, &instances, now_ms())))
}
