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
            40413,
            format!("no job named {name} has reported (instances write to {JOBS_TOPIC})"),
        ));
    }
    Ok(Json(job_json(&state.broker, &name, &instances, now_ms())))
}

/// Most bytes of one instance's answer.
const ANSWER_BYTES_MAX: usize = 4 << 20;
/// How long an instance may take to answer.
const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asks one instance for the windows it holds for `key`.
async fn ask(address: &str, key: &str) -> Result<Value, String> {
    use hyper_util::rt::TokioIo;
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = axum::http::Request::get(format!("/state/{}", path_segment(key)))
        .header(axum::http::header::HOST, address)
        .body(axum::body::Body::empty())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), ANSWER_BYTES_MAX)
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{address} answered {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// `GET /v1/jobs/{name}/state/{key}`: the open windows of `key` from every running instance
/// of the job that answers queries (the one holding the key has them).
pub(crate) async fn state(
    State(state): State<AppState>,
    Path((name, key)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let all = statuses(&state.broker);
    let now = now_ms();
    let instances: Vec<&JobStatus> = all
        .iter()
        .filter(|s| s.job == name && s.effective_state(now) == "running")
        .collect();
    if instances.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            40413,
            format!("no running instance of a job named {name} has reported"),
        ));
    }
    let mut answers = Vec::new();
    for s in instances {
        let Some(address) = &s.query_address else {
            continue;
        };
        let answer = match tokio::time::timeout(ASK_TIMEOUT, ask(address, &key)).await {
            Ok(Ok(v)) => json!({"instance": s.instance, "windows": v["windows"]}),
            Ok(Err(e)) => json!({"instance": s.instance, "error": e}),
            Err(_) => json!({"instance": s.instance, "error": "no answer within 5 s"}),
        };
        answers.push(answer);
    }
    if answers.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            50303,
            format!("no instance of {name} answers queries (JobOptions::query_listen)"),
        ));
    }
    Ok(Json(json!({"job": name, "key": key, "instances": answers})))
}
