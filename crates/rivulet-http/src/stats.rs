//! `GET /v1/stats` and `GET /v1/stats/events`: the broker's live figures (rates in and out,
//! durable-write latency, connections, disk), one reading or a reading every second over
//! Server-Sent Events. Readings are shared: however many streams are open, the broker is
//! sampled at most once per [`SAMPLE_INTERVAL`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::stream::{self, Stream};
use rivulet_broker::Broker;
use rivulet_metrics::TotalsSnapshot;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::authz::Caller;
use crate::error::ApiError;
use crate::AppState;

/// How often the figures are refreshed and pushed.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Topics listed with their produce rate in one reading, busiest first.
const TOPIC_RATES_MAX: usize = 100;
/// Partitions listed in a group's lag in one reading.
const GROUP_PARTITIONS_MAX: usize = 1_000;

/// The last reading and what the next one is measured against.
#[derive(Debug, Default)]
pub(crate) struct Sampler(Mutex<Option<Reading>>);

#[derive(Debug)]
struct Reading {
    at: Instant,
    totals: TotalsSnapshot,
    topic_ends: HashMap<String, i64>,
    view: Arc<Value>,
}

fn per_second(now: u64, before: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64().max(0.001);
    now.saturating_sub(before) as f64 / secs
}

/// Sum of the high watermarks of each topic: its records ever appended.
fn topic_ends(broker: &Broker) -> HashMap<String, i64> {
    broker
        .topics()
        .iter()
        .map(|t| {
            let end: i64 = t.partition_infos().iter().map(|p| p.high_watermark).sum();
            (t.name().to_string(), end)
        })
        .collect()
}

fn topic_rates(now: &HashMap<String, i64>, before: &HashMap<String, i64>, elapsed: Duration) -> Vec<Value> {
    let mut rates: Vec<(&String, f64)> = now
        .iter()
        .filter_map(|(name, end)| {
            let prev = before.get(name).copied().unwrap_or(*end);
            let grown = u64::try_from(end - prev).unwrap_or(0);
            (grown > 0).then(|| (name, per_second(grown, 0, elapsed)))
        })
        .collect();
    rates.sort_by(|a, b| b.1.total_cmp(&a.1));
    rates.truncate(TOPIC_RATES_MAX);
    rates
        .into_iter()
        .map(|(topic, r)| json!({"topic": topic, "records_per_s": r}))
        .collect()
}

impl Sampler {
    /// The newest reading, taken now when the last one is older than the interval.
    pub(crate) fn current(&self, state: &AppState) -> Arc<Value> {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = SAMPLE_INTERVAL.mul_f64(0.9);
        if let Some(r) = last.as_ref().filter(|r| r.at.elapsed() < fresh) {
            return r.view.clone();
        }
        let at = Instant::now();
        let totals = state.broker.metrics().take_totals();
        let ends = topic_ends(&state.broker);
        let (before, before_ends, elapsed) = match last.as_ref() {
            Some(r) => (r.totals, Some(&r.topic_ends), at - r.at),
            None => (totals, None, state.started.elapsed()),
        };
        let rates = before_ends.map_or_else(Vec::new, |b| topic_rates(&ends, b, elapsed));
        let view = Arc::new(render(state, &totals, &before, elapsed, rates));
        *last = Some(Reading {
            at,
            totals,
            topic_ends: ends,
            view: view.clone(),
        });
        view
    }
}

fn render(
    state: &AppState,
    now: &TotalsSnapshot,
    before: &TotalsSnapshot,
    elapsed: Duration,
    rates: Vec<Value>,
) -> Value {
    let broker = &state.broker;
    let metrics = broker.metrics();
    let usage = broker.log_dir_usage();
    let fsyncs = now.fsyncs.saturating_sub(before.fsyncs);
    let fsync_us = now.fsync_us_sum.saturating_sub(before.fsync_us_sum);
    let fsync_ms_avg = if fsyncs == 0 {
        0.0
    } else {
        fsync_us as f64 / fsyncs as f64 / 1_000.0
    };
    let topics = broker.topics();
    json!({
        "time_ms": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
        "interval_ms": elapsed.as_millis() as u64,
        "produced": {
            "records_per_s": per_second(now.records_produced, before.records_produced, elapsed),
            "bytes_per_s": per_second(now.bytes_produced, before.bytes_produced, elapsed),
            "records_total": now.records_produced,
        },
        "fetched": {
            "records_per_s": per_second(now.records_fetched, before.records_fetched, elapsed),
            "bytes_per_s": per_second(now.bytes_fetched, before.bytes_fetched, elapsed),
            "records_total": now.records_fetched,
        },
        "fsync": {
            "per_s": per_second(now.fsyncs, before.fsyncs, elapsed),
            "ms_avg": fsync_ms_avg,
            "ms_max": now.fsync_us_max as f64 / 1_000.0,
        },
        "connections": {
            "kafka": metrics.connections_open("kafka"),
            "amqp": metrics.connections_open("amqp"),
            "sse": state.sse_streams.load(Ordering::Relaxed),
        },
        "disk": {
            "path": usage.path.display().to_string(),
            "topics_bytes": usage.topics_bytes,
            "usable_bytes": usage.usable_bytes,
            "total_bytes": usage.total_bytes,
            "alarm": *broker.alarm().borrow(),
        },
        "topics": topics.len(),
        "partitions": topics.iter().map(|t| t.partition_count()).sum::<usize>(),
        "groups": broker.groups().list().len(),
        "topic_rates": rates,
        "listeners": crate::listeners(&state.config),
        "uptime_seconds": state.started.elapsed().as_secs(),
    })
}

/// Query of the stats routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsQuery {
    /// Adds this consumer group's lag to every reading.
    group: Option<String>,
    /// Adds the AMQP queues the caller may describe (as `GET /v1/queues` lists them).
    #[serde(default)]
    queues: bool,
}

/// The shared reading plus what this caller asked for: a group's lag, the queues.
fn personal(state: &AppState, caller: &Caller, reading: &Value, q: &StatsQuery) -> Value {
    let mut out = match q.group.as_deref() {
        Some(group) => with_group(&state.broker, reading, group),
        None => reading.clone(),
    };
    if q.queues {
        out["queues"] = Value::Array(crate::queues::visible_queues(state, caller));
    }
    out
}

fn with_group(broker: &Broker, reading: &Value, group: &str) -> Value {
    let lags = broker.group_lag(group);
    let total: i64 = lags.iter().filter_map(|l| l.lag).sum();
    let seconds = lags.iter().filter_map(|l| l.lag_seconds).fold(0.0, f64::max);
    let partitions: Vec<Value> = lags
        .iter()
        .take(GROUP_PARTITIONS_MAX)
        .map(crate::admin::lag_json)
        .collect();
    let (state, members) = match broker.describe_group(group) {
        Some(d) => {
            let members: Vec<Value> = d
                .members
                .iter()
                .take(GROUP_PARTITIONS_MAX)
                .map(crate::admin::member_json)
                .collect();
            (d.state.as_str().to_string(), members)
        }
        None => ("Empty".to_string(), Vec::new()),
    };
    let mut out = reading.clone();
    out["group"] = json!({
        "group": group,
        "state": state,
        "members": members,
        "total_lag": total,
        "lag_seconds_max": seconds,
        "partitions": partitions,
    });
    out
}

/// `GET /v1/stats`: one reading.
pub(crate) async fn once(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query?;
    let reading = state.stats.current(&state);
    Ok(Json(personal(&state, &caller, &reading, &q)))
}

/// An open stats stream; gives its slot back when dropped.
struct Ticker {
    state: AppState,
    caller: Caller,
    query: StatsQuery,
    interval: tokio::time::Interval,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.state.sse_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /v1/stats/events`: a reading every second, as `stats` events.
pub(crate) async fn events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<StatsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    crate::sse::reserve_stream(&state)?;
    let mut interval = tokio::time::interval(SAMPLE_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ticker = Ticker {
        state,
        caller,
        query: q,
        interval,
    };
    Ok(Sse::new(stat_stream(ticker))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn stat_stream(ticker: Ticker) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(ticker, |mut t| async move {
        t.interval.tick().await;
        if t.state.broker.is_shutting_down() {
            return None;
        }
        let reading = t.state.stats.current(&t.state);
        let body = personal(&t.state, &t.caller, &reading, &t.query);
        let event = Event::default().event("stats").data(body.to_string());
        Some((Ok(event), t))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_and_only_for_topics_that_grew() {
        let before: HashMap<String, i64> = [("a".to_string(), 10), ("b".to_string(), 5)].into();
        let now: HashMap<String, i64> =
            [("a".to_string(), 30), ("b".to_string(), 5), ("c".to_string(), 7)].into();
        let rates = topic_rates(&now, &before, Duration::from_millis(500));
        assert_eq!(rates, vec![json!({"topic": "a", "records_per_s": 40.0})]);
        assert_eq!(per_second(10, 4, Duration::from_secs(2)), 3.0);
        assert_eq!(per_second(4, 10, Duration::from_secs(2)), 0.0);
    }
}
