//! `rivulet dlq`: inspect and redrive dead-letter topics written by the services SDK.
//!
//! A dead letter keeps the original key, value and headers and adds `dlq.original.topic`,
//! `dlq.original.partition`, `dlq.original.offset`, `dlq.error`, `dlq.attempts` and
//! `dlq.group` (see docs/sdk.md). Redrive publishes dead letters back to their original
//! topic and partition without the `dlq.*` headers, and remembers how far it got in the consumer group
//! `<dlq-topic>.redrive`, so each dead letter is redriven once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;

use super::output::{bytes_text, emit, emit_json, or_dash, Table};
use super::{runtime, ConnArgs, Format};

const ORIGINAL_TOPIC: &str = "dlq.original.topic";
const ORIGINAL_PARTITION: &str = "dlq.original.partition";
const ORIGINAL_OFFSET: &str = "dlq.original.offset";
const ERROR: &str = "dlq.error";
const ATTEMPTS: &str = "dlq.attempts";
const GROUP: &str = "dlq.group";
const HEADER_PREFIX: &str = "dlq.";
const REDRIVE_GROUP_SUFFIX: &str = ".redrive";

/// Arguments of `rivulet dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List the dead letters of a dead-letter topic (e.g. orders.dlq)
    List {
        /// Dead-letter topic
        topic: String,
        /// Most dead letters to show
        #[arg(short = 'n', long, default_value_t = 1_000)]
        max: usize,
    },
    /// Publish dead letters not redriven before back to their original topics
    Redrive {
        /// Dead-letter topic
        topic: String,
        /// Most dead letters to redrive in one run
        #[arg(short = 'n', long, default_value_t = 100_000)]
        max: usize,
        /// Show what would be redriven without publishing or committing
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs `rivulet dlq`.
pub fn run(args: DlqArgs) -> Result<()> {
    match args.command {
        DlqCommand::List { topic, max } => list(&args.conn, &topic, max),
        DlqCommand::Redrive { topic, max, dry_run } => redrive(&args.conn, &topic, max, dry_run),
    }
}

#[derive(Debug, Serialize)]
struct DeadLetterOut {
    partition: i32,
    offset: i64,
    key: Option<String>,
    original_topic: Option<String>,
    original_partition: Option<String>,
    original_offset: Option<String>,
    attempts: Option<String>,
    group: Option<String>,
    error: Option<String>,
    event_id: Option<String>,
    event_type: Option<String>,
}

struct Letter {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Letter {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn out(&self) -> DeadLetterOut {
        DeadLetterOut {
            partition: self.partition,
            offset: self.offset,
            key: self.key.as_deref().map(|k| bytes_text(k).0),
            original_topic: self.header(ORIGINAL_TOPIC),
            original_partition: self.header(ORIGINAL_PARTITION),
            original_offset: self.header(ORIGINAL_OFFSET),
            attempts: self.header(ATTEMPTS),
            group: self.header(GROUP),
            error: self.header(ERROR),
            event_id: self.header("ce_id"),
            event_type: self.header("ce_type"),
        }
    }
}

/// Reads the topic from `from` (earliest where absent) to the end it has now.
fn read(
    conn: &ConnArgs,
    consumer: &BaseConsumer,
    topic: &str,
    from: &BTreeMap<i32, i64>,
    max: usize,
) -> Result<(Vec<Letter>, BTreeMap<i32, i64>)> {
    let metadata = consumer
        .fetch_metadata(Some(topic), conn.timeout())
        .map_err(|e| conn.error(e, "fetching topic metadata"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        bail!("topic {topic:?} does not exist; dead-letter topics are named <topic>.dlq (list topics with `rivulet topic list`)");
    }
    let mut next = BTreeMap::new();
    let mut end = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, conn.timeout())
            .map_err(|e| conn.error(e, "fetching offsets"))?;
        let start = from.get(&p).copied().unwrap_or(low).max(low);
        next.insert(p, start);
        if start < high {
            end.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Offset(start))
                .map_err(|e| anyhow!("{e}"))?;
        }
    }
    let mut letters = Vec::new();
    if end.is_empty() {
        return Ok((letters, next));
    }
    consumer
        .assign(&tpl)
        .map_err(|e| conn.error(e, "assigning partitions"))?;
    let deadline = Instant::now() + conn.timeout() * 3;
    while !end.is_empty() && letters.len() < max {
        if Instant::now() > deadline {
            bail!(
                "reading {topic} did not reach its end within {}s",
                (conn.timeout() * 3).as_secs()
            );
        }
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg.map_err(|e| conn.error(e, "reading dead letters"))?;
        let p = msg.partition();
        let Some(high) = end.get(&p).copied() else {
            continue;
        };
        if msg.offset() + 1 >= high {
            end.remove(&p);
        }
        if msg.offset() >= high {
            continue;
        }
        next.insert(p, msg.offset() + 1);
        let mut headers = Vec::new();
        if let Some(h) = msg.headers() {
            for i in 0..h.count() {
                let header = h.get(i);
                headers.push((header.key.to_string(), header.value.map(<[u8]>::to_vec)));
            }
        }
        letters.push(Letter {
            partition: p,
            offset: msg.offset(),
            key: msg.key().map(<[u8]>::to_vec),
            value: msg.payload().map(<[u8]>::to_vec),
            headers,
        });
    }
    Ok((letters, next))
}

fn list(conn: &ConnArgs, topic: &str, max: usize) -> Result<()> {
    let consumer = conn.consumer(Some("rivulet-cli-dlq"))?;
    let (letters, _) = read(conn, &consumer, topic, &BTreeMap::new(), max)?;
    let out: Vec<DeadLetterOut> = letters.iter().map(Letter::out).collect();
    if conn.format == Format::Json {
        return emit_json(&out);
    }
    let mut table = Table::new(&["partition", "offset", "from", "attempts", "event-id", "error"]);
    for l in &out {
        let from = format!(
            "{}[{}]@{}",
            l.original_topic.as_deref().unwrap_or("-"),
            l.original_partition.as_deref().unwrap_or("-"),
            l.original_offset.as_deref().unwrap_or("-")
        );
        table.row(vec![
            l.partition.to_string(),
            l.offset.to_string(),
            from,
            or_dash(l.attempts.clone()),
            or_dash(l.event_id.clone()),
            or_dash(l.error.clone()),
        ]);
    }
    emit(&table.render())
}

/// Where the last redrive of `topic` stopped, per partition.
fn redrive_progress(conn: &ConnArgs, consumer: &BaseConsumer, topic: &str) -> Result<BTreeMap<i32, i64>> {
    let mut from = BTreeMap::new();
    let metadata = consumer
        .fetch_metadata(Some(topic), conn.timeout())
        .map_err(|e| conn.error(e, "fetching topic metadata"))?;
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition(topic, p.id());
        }
    }
    if tpl.count() > 0 {
        let committed = consumer
            .committed_offsets(tpl, conn.timeout())
            .map_err(|e| conn.error(e, "fetching committed offsets"))?;
        for e in committed.elements() {
            if let Offset::Offset(o) = e.offset() {
                from.insert(e.partition(), o);
            }
        }
    }
    Ok(from)
}

/// Publishes every dead letter back to its target topic (and original partition), without
/// the dead-letter headers, waiting for each acknowledgement.
fn republish(conn: &ConnArgs, letters: &[Letter], targets: &[String]) -> Result<()> {
    let mut cfg = conn.client_config();
    cfg.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random");
    let producer: FutureProducer = conn
        .finish(cfg)?
        .create()
        .map_err(|e| anyhow!("cannot create a Kafka producer: {e}; check -b/--brokers and -X"))?;
    runtime()?.block_on(async {
        for (letter, target) in letters.iter().zip(targets) {
            let mut headers = OwnedHeaders::new();
            for (k, v) in letter
                .headers
                .iter()
                .filter(|(k, _)| !k.starts_with(HEADER_PREFIX))
            {
                headers = headers.insert(Header {
                    key: k.as_str(),
                    value: v.as_deref(),
                });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(target).headers(headers);
            if let Some(k) = &letter.key {
                record = record.key(k.as_slice());
            }
            if let Some(v) = &letter.value {
                record = record.payload(v.as_slice());
            }
            // Back to the partition it came from, next to its key's other records.
            if letter.header(ORIGINAL_TOPIC).is_some() {
                if let Some(p) = letter
                    .header(ORIGINAL_PARTITION)
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    record = record.partition(p);
                }
            }
            producer
                .send(record, conn.timeout())
                .await
                .map_err(|(e, _)| conn.error(e, &format!("publishing to {target}")))?;
        }
        Ok::<(), anyhow::Error>(())
    })
}

#[derive(Debug, Serialize)]
struct RedriveOut {
    dlq_topic: String,
    redriven: usize,
    dry_run: bool,
    to_topics: BTreeMap<String, usize>,
}

fn redrive(conn: &ConnArgs, topic: &str, max: usize, dry_run: bool) -> Result<()> {
    let group = format!("{topic}{REDRIVE_GROUP_SUFFIX}");
    let consumer = conn.consumer(Some(&group))?;
    let from = redrive_progress(conn, &consumer, topic)?;
    let (letters, next) = read(conn, &consumer, topic, &from, max)?;
    let fallback = topic.strip_suffix(".dlq").unwrap_or(topic).to_string();
    let mut to_topics: BTreeMap<String, usize> = BTreeMap::new();
    let targets: Vec<String> = letters
        .iter()
        .map(|l| l.header(ORIGINAL_TOPIC).unwrap_or_else(|| fallback.clone()))
        .collect();
    for t in &targets {
        *to_topics.entry(t.clone()).or_insert(0) += 1;
    }
    if !dry_run && !letters.is_empty() {
        republish(conn, &letters, &targets)?;
        let mut done = TopicPartitionList::new();
        for (p, o) in &next {
            done.add_partition_offset(topic, *p, Offset::Offset(*o))
                .map_err(|e| anyhow!("{e}"))?;
        }
        consumer
            .commit(&done, CommitMode::Sync)
            .map_err(|e| conn.error(e, &format!("recording progress in group {group}")))?;
    }
    let out = RedriveOut {
        dlq_topic: topic.to_string(),
        redriven: letters.len(),
        dry_run,
        to_topics,
    };
    if conn.format == Format::Json {
        return emit_json(&out);
    }
    let verb = if dry_run { "Would redrive" } else { "Redrove" };
    let mut text = format!("{verb} {} dead letters from {topic}\n", out.redriven);
    if !out.to_topics.is_empty() {
        let mut table = Table::new(&["topic", "records"]);
        for (t, n) in &out.to_topics {
            table.row(vec![t.clone(), n.to_string()]);
        }
        text.push_str(&table.render());
    }
    emit(&text)
}
