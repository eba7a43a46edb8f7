//! `rivulet bench eventstore`: appends with exact expected revisions (the read-decide-append
//! of event-sourced services) against Rivulet's event store over the KurrentDB gRPC API, and
//! the same workload against PostgreSQL with the events table users build instead
//! (`(stream_id, version)` unique, a global `bigserial` position, one transaction per append,
//! synchronous commit), in one run; then reads of one 1,000-event stream from each.
//!
//! Each writer owns the streams `s` with `s % writers == w`, so it always knows their
//! revisions and every append is accepted: the figures are the cost of a checked, durable
//! append, not of conflicts.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rivulet_eventstore_grpc::pb::event_store::client::streams::streams_client::StreamsClient;
use rivulet_eventstore_grpc::pb::event_store::client::streams::{
    append_req, append_resp, read_req, AppendReq, ReadReq,
};
use rivulet_eventstore_grpc::pb::event_store::client::{uuid as id_form, Empty, StreamIdentifier, Uuid};
use serde::Serialize;
use tonic::transport::Channel;

use crate::error::{bail, err, BenchError, Result};
use crate::Format;

/// Arguments of `rivulet bench eventstore`.
#[derive(Debug, Clone, clap::Args)]
pub struct EventStoreArgs {
    /// Rivulet's event store gRPC address (`rivulet serve --eventstore-listen`)
    #[arg(long, default_value = "127.0.0.1:2113")]
    pub grpc: String,
    /// PostgreSQL connection string; `off` skips it
    #[arg(long, default_value = "host=127.0.0.1 user=postgres dbname=test")]
    pub postgres: String,
    /// Concurrent writers (one connection each)
    #[arg(long, default_value_t = 16)]
    pub writers: usize,
    /// Streams written
    #[arg(long, default_value_t = 1000)]
    pub streams: usize,
    /// Events per append
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Seconds measured per system
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of warm-up before measuring
    #[arg(long, default_value_t = 3)]
    pub warmup_seconds: u64,
    /// Reads of the 1,000-event stream per system
    #[arg(long, default_value_t = 500)]
    pub reads: usize,
    /// Bytes of JSON data per event
    #[arg(long, default_value_t = 200)]
    pub event_bytes: usize,
    /// Output format: text or json
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// One system's figures.
#[derive(Debug, Clone, Serialize)]
pub struct SystemReport {
    /// `rivulet` or `postgresql`.
    pub system: String,
    /// Appends accepted per second.
    pub appends_per_s: f64,
    /// Events written per second.
    pub events_per_s: f64,
    /// Append latency percentiles, microseconds.
    pub append_us_p50: u64,
    /// 99th percentile.
    pub append_us_p99: u64,
    /// 99.9th percentile.
    pub append_us_p999: u64,
    /// Reading one stream of 1,000 events, microseconds.
    pub read_1000_us_p50: u64,
    /// 99th percentile.
    pub read_1000_us_p99: u64,
}

/// The run's report.
#[derive(Debug, Clone, Serialize)]
pub struct EventStoreReport {
    /// Writers, streams, events per append, seconds, event size.
    pub workload: String,
    /// Rivulet, then PostgreSQL when measured.
    pub systems: Vec<SystemReport>,
}

fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| err!("histogram: {e}"))
}

fn data(bytes: usize, n: u64) -> Vec<u8> {
    let pad = "x".repeat(bytes.saturating_sub(40));
    format!("{{\"n\":{n},\"pad\":\"{pad}\"}}").into_bytes()
}

fn uuid_of(n: u128) -> Uuid {
    Uuid {
        value: Some(id_form::Value::String(uuid::Uuid::from_u128(n).to_string())),
    }
}

/// Runs the benchmark.
pub fn run(args: &EventStoreArgs) -> Result<EventStoreReport> {
    if args.writers == 0 || args.streams < args.writers || args.batch == 0 {
        bail!(config, "need writers >= 1, streams >= writers and batch >= 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| err!("runtime: {e}"))?;
    runtime.block_on(async {
        let mut systems = vec![rivulet(args).await?];
        if args.postgres != "off" {
            systems.push(postgres(args).await?);
        }
        Ok(EventStoreReport {
            workload: format!(
                "{} writers, {} streams, {} event(s) per append with the exact expected revision, {} B events, {} s after {} s warm-up",
                args.writers, args.streams, args.batch, args.event_bytes, args.seconds, args.warmup_seconds
            ),
            systems,
        })
    })
}

/// What each writer does per append: `append(stream, expected, first_event_number)`.
async fn drive<F, Fut>(args: &EventStoreArgs, make: impl Fn(usize) -> F) -> Result<(u64, Histogram<u64>)>
where
    F: FnMut(usize, Option<u64>, u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let warm_until = Instant::now() + Duration::from_secs(args.warmup_seconds);
    let until = warm_until + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let mut append = make(w);
        let own: Vec<usize> = (w..args.streams).step_by(args.writers).collect();
        let batch = args.batch as u64;
        tasks.push(tokio::spawn(async move {
            let mut revisions: Vec<Option<u64>> = vec![None; own.len()];
            let mut hist = histogram()?;
            let mut count = 0u64;
            let mut n = (w as u64) << 40;
            // Each pass makes one append; the deadline ends the loop.
            for k in (0..own.len()).cycle() {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                append(own[k], revisions[k], n).await?;
                n += batch;
                revisions[k] = Some(revisions[k].map_or(batch - 1, |r| r + batch));
                if now >= warm_until {
                    count += 1;
                    let _ = hist.record(now.elapsed().as_micros() as u64);
                }
            }
            Ok::<_, BenchError>((count, hist))
        }));
    }
    let mut total = 0;
    let mut hist = histogram()?;
    for t in tasks {
        let (count, h) = t.await.map_err(|e| err!("writer: {e}"))??;
        total += count;
        hist.add(h).map_err(|e| err!("histogram: {e}"))?;
    }
    Ok((total, hist))
}

fn report(
    system: &str,
    args: &EventStoreArgs,
    appends: u64,
    hist: &Histogram<u64>,
    reads: &Histogram<u64>,
) -> SystemReport {
    let appends_per_s = appends as f64 / args.seconds as f64;
    SystemReport {
        system: system.to_string(),
        appends_per_s,
        events_per_s: appends_per_s * args.batch as f64,
        append_us_p50: hist.value_at_quantile(0.5),
        append_us_p99: hist.value_at_quantile(0.99),
        append_us_p999: hist.value_at_quantile(0.999),
        read_1000_us_p50: reads.value_at_quantile(0.5),
        read_1000_us_p99: reads.value_at_quantile(0.99),
    }
}

async fn connect(args: &EventStoreArgs) -> Result<StreamsClient<Channel>> {
    let channel = Channel::from_shared(format!("http://{}", args.grpc))
        .map_err(|e| err!("{}: {e}", args.grpc))?
        .connect()
        .await
        .map_err(|e| err!("connecting to {}: {e}", args.grpc))?;
    Ok(StreamsClient::new(channel))
}

fn append_reqs(
    stream: String,
    expected: Option<u64>,
    first: u64,
    batch: usize,
    bytes: usize,
) -> Vec<AppendReq> {
    use append_req::options::ExpectedStreamRevision as E;
    let options = append_req::Options {
        stream_identifier: Some(StreamIdentifier {
            stream_name: stream.into_bytes(),
        }),
        expected_stream_revision: Some(expected.map_or(E::NoStream(Empty {}), E::Revision)),
    };
    let mut reqs = vec![AppendReq {
        content: Some(append_req::Content::Options(options)),
    }];
    for k in 0..batch as u64 {
        let metadata = [("type", "Deposited"), ("content-type", "application/json")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        reqs.push(AppendReq {
            content: Some(append_req::Content::ProposedMessage(
                append_req::ProposedMessage {
                    id: Some(uuid_of(u128::from(first + k) | (0x5249_5655 << 96))),
                    metadata,
                    custom_metadata: Vec::new(),
                    data: data(bytes, first + k),
                },
            )),
        });
    }
    reqs
}

async fn rivulet(args: &EventStoreArgs) -> Result<SystemReport> {
    let run = std::process::id();
    let mut clients = Vec::new();
    for _ in 0..args.writers {
        clients.push(connect(args).await?);
    }
    let (batch, bytes) = (args.batch, args.event_bytes);
    let (appends, hist) = drive(args, |w| {
        let client = clients[w].clone();
        move |stream: usize, expected: Option<u64>, first: u64| {
            let mut client = client.clone();
            let reqs = append_reqs(format!("bench{run}-{stream}"), expected, first, batch, bytes);
            async move {
                let resp = client
                    .append(tokio_stream::iter(reqs))
                    .await
                    .map_err(|e| err!("append: {e}"))?;
                match resp.into_inner().result {
                    Some(append_resp::Result::Success(_)) => Ok(()),
                    other => Err(err!("append refused: {other:?}")),
                }
            }
        }
    })
    .await?;
    let reads = rivulet_reads(args, run).await?;
    Ok(report("rivulet", args, appends, &hist, &reads))
}

async fn rivulet_reads(args: &EventStoreArgs, run: u32) -> Result<Histogram<u64>> {
    let mut client = connect(args).await?;
    let stream = format!("bench{run}-read");
    for chunk in 0..10u64 {
        let expected = chunk.checked_mul(100).and_then(|n| n.checked_sub(1));
        let reqs = append_reqs(
            stream.clone(),
            expected,
            (1 << 50) + chunk * 100,
            100,
            args.event_bytes,
        );
        client
            .append(tokio_stream::iter(reqs))
            .await
            .map_err(|e| err!("append: {e}"))?;
    }
    let mut hist = histogram()?;
    for _ in 0..args.reads {
        let options = read_req::Options {
            stream_option: Some(read_req::options::StreamOption::Stream(
                read_req::options::StreamOptions {
                    stream_identifier: Some(StreamIdentifier {
                        stream_name: stream.clone().into_bytes(),
                    }),
                    revision_option: Some(read_req::options::stream_options::RevisionOption::Start(Empty {})),
                },
            )),
            read_direction: 0,
            resolve_links: false,
            count_option: Some(read_req::options::CountOption::Count(1000)),
            filter_option: Some(read_req::options::FilterOption::NoFilter(Empty {})),
            uuid_option: Some(read_req::options::UuidOption {
                content: Some(read_req::options::uuid_option::Content::String(Empty {})),
            }),
            control_option: None,
        };
        let started = Instant::now();
        let mut responses = client
            .read(ReadReq {
                options: Some(options),
            })
            .await
            .map_err(|e| err!("read: {e}"))?
            .into_inner();
        let mut events = 0;
        while let Some(r) = responses.message().await.map_err(|e| err!("read: {e}"))? {
            events += usize::from(r.content.is_some());
        }
        let _ = hist.record(started.elapsed().as_micros() as u64);
        if events != 1000 {
            bail!("a read of the 1,000-event stream returned {events} messages");
        }
    }
    Ok(hist)
}

const PG_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS bench_events (
    position bigserial PRIMARY KEY,
    stream_id text NOT NULL,
    version bigint NOT NULL,
    event_id uuid NOT NULL,
    type text NOT NULL,
    data jsonb NOT NULL,
    created timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version))";

async fn pg_connect(args: &EventStoreArgs) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(&args.postgres, tokio_postgres::NoTls)
        .await
        .map_err(|e| err!("connecting to PostgreSQL ({}): {e}", args.postgres))?;
    tokio::spawn(connection);
    Ok(client)
}

async fn postgres(args: &EventStoreArgs) -> Result<SystemReport> {
    let setup = pg_connect(args).await?;
    setup
        .batch_execute(&format!("DROP TABLE IF EXISTS bench_events; {PG_SCHEMA}"))
        .await
        .map_err(|e| err!("PostgreSQL schema: {e}"))?;
    let sync: String = setup
        .query_one("SHOW synchronous_commit", &[])
        .await
        .map_err(|e| err!("PostgreSQL: {e}"))?
        .get(0);
    if sync != "on" {
        bail!("PostgreSQL's synchronous_commit is {sync}; the comparison needs it on");
    }
    let mut clients = Vec::new();
    for _ in 0..args.writers {
        clients.push(std::sync::Arc::new(pg_connect(args).await?));
    }
    let (batch, bytes) = (args.batch, args.event_bytes);
    let (appends, hist) = drive(args, |w| {
        let client = clients[w].clone();
        move |stream: usize, expected: Option<u64>, first: u64| {
            let client = client.clone();
            async move { pg_append(&client, &format!("s-{stream}"), expected, first, batch, bytes).await }
        }
    })
    .await?;
    let reads = pg_reads(args, &setup).await?;
    Ok(report("postgresql", args, appends, &hist, &reads))
}

/// One append: a transaction inserting the events at the next versions; the unique
/// `(stream_id, version)` refuses a concurrent writer's.
async fn pg_append(
    client: &tokio_postgres::Client,
    stream: &str,
    expected: Option<u64>,
    first: u64,
    batch: usize,
    bytes: usize,
) -> Result<()> {
    let next = expected.map_or(0, |r| r as i64 + 1);
    let versions: Vec<i64> = (0..batch as i64).map(|k| next + k).collect();
    let ids: Vec<uuid::Uuid> = (0..batch as u64)
        .map(|k| uuid::Uuid::from_u128(u128::from(first + k)))
        .collect();
    let datas: Vec<String> = (0..batch as u64)
        .map(|k| String::from_utf8_lossy(&data(bytes, first + k)).into_owned())
        .collect();
    client
        .execute(
            "INSERT INTO bench_events (stream_id, version, event_id, type, data) \
             SELECT $1, v, i, 'Deposited', d::jsonb FROM unnest($2::bigint[], $3::uuid[], $4::text[]) AS t(v, i, d)",
            &[&stream, &versions, &ids, &datas],
        )
        .await
        .map_err(|e| err!("PostgreSQL append: {e}"))?;
    Ok(())
}

async fn pg_reads(args: &EventStoreArgs, client: &tokio_postgres::Client) -> Result<Histogram<u64>> {
    for chunk in 0..10u64 {
        pg_append(
            client,
            "read",
            chunk.checked_mul(100).and_then(|n| n.checked_sub(1)),
            (1 << 50) + chunk * 100,
            100,
            args.event_bytes,
        )
        .await?;
    }
    let statement = client
        .prepare("SELECT position, version, event_id, type, data::text FROM bench_events WHERE stream_id = $1 ORDER BY version")
        .await
        .map_err(|e| err!("PostgreSQL: {e}"))?;
    let mut hist = histogram()?;
    for _ in 0..args.reads {
        let started = Instant::now();
        let rows = client
            .query(&statement, &[&"read"])
            .await
            .map_err(|e| err!("PostgreSQL read: {e}"))?;
        let _ = hist.record(started.elapsed().as_micros() as u64);
        if rows.len() != 1000 {
            bail!(
                "PostgreSQL returned {} rows of the 1,000-event stream",
                rows.len()
            );
        }
    }
    Ok(hist)
}

/// The report as text.
pub fn render(r: &EventStoreReport) -> String {
    let mut out = format!("Event store appends: {}\n\n", r.workload);
    out.push_str(
        "system        appends/s   events/s   p50 us   p99 us  p99.9 us   read 1000: p50 us  p99 us\n",
    );
    for s in &r.systems {
        out.push_str(&format!(
            "{:<12} {:>10.0} {:>10.0} {:>8} {:>8} {:>9}   {:>17} {:>7}\n",
            s.system,
            s.appends_per_s,
            s.events_per_s,
            s.append_us_p50,
            s.append_us_p99,
            s.append_us_p999,
            s.read_1000_us_p50,
            s.read_1000_us_p99
        ));
    }
    if let [ours, pg] = r.systems.as_slice() {
        out.push_str(&format!(
            "\nRivulet / PostgreSQL: {:.2}x appends/s, p99 {:.2}x\n",
            ours.appends_per_s / pg.appends_per_s.max(1e-9),
            ours.append_us_p99 as f64 / pg.append_us_p99.max(1) as f64
        ));
    }
    out
}
