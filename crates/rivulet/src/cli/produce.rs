//! `rivulet produce TOPIC`: one record per stdin line, with acks=all; prints where each landed.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::Message;
use serde::Serialize;

use super::output::emit;
use super::topic::find_topic;
use super::{ConnArgs, Format};

/// Arguments of `rivulet produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Topic to produce to
    topic: String,
    /// Key of every record (unless the record format has %k)
    #[arg(short, long)]
    key: Option<String>,
    /// Header KEY=VALUE added to every record (repeatable)
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE")]
    headers: Vec<String>,
    /// Partition of every record (unless the record format has %p) [default: chosen by key]
    #[arg(short, long)]
    partition: Option<i32>,
    /// How each input line splits into fields: %k key, %v value, %p partition, %% a percent
    /// sign; text between fields is the delimiter (\t is a tab). Example: '%k %v'
    #[arg(short = 'f', long = "record-format", default_value = "%v", value_name = "FMT")]
    record_format: String,
    /// Produce an empty value as a null value (a tombstone)
    #[arg(short = 'Z', long)]
    tombstone: bool,
    /// Let the broker create the topic if it does not exist
    #[arg(long)]
    allow_auto_topic_creation: bool,
}

/// A piece of a record format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Key,
    Value,
    Partition,
}

/// Parses a record format into pieces; two fields must be separated by a delimiter.
fn parse_format(format: &str) -> Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut literal = Vec::new();
    let bytes = format.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let field = match bytes.get(i + 1) {
                    Some(b'k') => Piece::Key,
                    Some(b'v') => Piece::Value,
                    Some(b'p') => Piece::Partition,
                    Some(b'%') => {
                        literal.push(b'%');
                        i += 2;
                        continue;
                    }
                    _ => bail!("invalid record format {format:?}: use %k, %v, %p or %%"),
                };
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                if matches!(pieces.last(), Some(p) if !matches!(p, Piece::Literal(_))) {
                    bail!("invalid record format {format:?}: put a delimiter between two fields");
                }
                if pieces.contains(&field) {
                    bail!("invalid record format {format:?}: each field may appear once");
                }
                pieces.push(field);
                i += 2;
            }
            b'\\' => {
                match bytes.get(i + 1) {
                    Some(b't') => literal.push(b'\t'),
                    Some(b'\\') => literal.push(b'\\'),
                    _ => bail!("invalid record format {format:?}: use \\t or \\\\"),
                }
                i += 2;
            }
            b => {
                literal.push(b);
                i += 1;
            }
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

/// The fields of one input line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Fields<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    partition: Option<&'a [u8]>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits a line by the pieces of a record format.
fn split_line<'a>(pieces: &[Piece], mut line: &'a [u8]) -> Option<Fields<'a>> {
    let mut fields = Fields::default();
    for (i, piece) in pieces.iter().enumerate() {
        let slot = match piece {
            Piece::Literal(lit) => {
                line = line.strip_prefix(lit.as_slice())?;
                continue;
            }
            Piece::Key => &mut fields.key,
            Piece::Value => &mut fields.value,
            Piece::Partition => &mut fields.partition,
        };
        let taken = match pieces.get(i + 1) {
            Some(Piece::Literal(lit)) => {
                let at = find(line, lit)?;
                let (field, rest) = line.split_at(at);
                line = rest;
                field
            }
            _ => std::mem::take(&mut line),
        };
        *slot = Some(taken);
    }
    line.is_empty().then_some(fields)
}

/// Prints a delivery report per record.
struct Reporter {
    format: Format,
    delivered: AtomicU64,
    failed: AtomicU64,
}

#[derive(Serialize)]
struct Delivered<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
}

impl ClientContext for Reporter {}

impl ProducerContext for Reporter {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, line: usize) {
        match result {
            Ok(m) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                let text = match self.format {
                    Format::Text => format!(
                        "Produced to partition {} at offset {} with timestamp {}.\n",
                        m.partition(),
                        m.offset(),
                        m.timestamp()
                            .to_millis()
                            .map_or("-".to_string(), |t| t.to_string())
                    ),
                    Format::Json => {
                        let d = Delivered {
                            topic: m.topic(),
                            partition: m.partition(),
                            offset: m.offset(),
                            timestamp: m.timestamp().to_millis(),
                        };
                        match serde_json::to_string(&d) {
                            Ok(s) => s + "\n",
                            Err(e) => format!("{{\"error\":\"{e}\"}}\n"),
                        }
                    }
                };
                if let Err(e) = emit(&text) {
                    eprintln!("error: {e:#}");
                }
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("error: the record from input line {line} was not delivered: {e}");
            }
        }
    }
}

/// Runs `rivulet produce`.
pub fn run(args: ProduceArgs) -> Result<()> {
    let conn = &args.conn;
    let pieces = parse_format(&args.record_format)?;
    let headers = parse_headers(&args.headers)?;
    let partitions = if args.allow_auto_topic_creation {
        None
    } else {
        let consumer = conn.consumer(None)?;
        let metadata = conn.metadata(&consumer)?;
        Some(find_topic(&metadata, &args.topic)?.partitions().len())
    };
    let producer = create_producer(&args)?;
    let stdin = std::io::stdin();
    let mut reader = BufReader::new(stdin.lock());
    let mut buf = Vec::new();
    let mut line_no = 0usize;
    let mut sent = 0u64;
    // One record per input line, until end of input.
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).context("reading stdin")?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let mut line = buf.as_slice();
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(fields) = split_line(&pieces, line) else {
            bail!(
                "input line {line_no} does not match the record format {:?}; {sent} records were sent before it",
                args.record_format
            );
        };
        let partition = line_partition(&args, &fields, line_no, partitions)?;
        let record = build_record(&args, &fields, &headers, partition, line_no);
        send(&producer, conn, record, line_no)?;
        sent += 1;
    }
    finish(&producer, conn, sent)
}

fn parse_headers(headers: &[String]) -> Result<Vec<(String, String)>> {
    headers
        .iter()
        .map(|h| {
            let split = h.split_once('=').or_else(|| h.split_once(':'));
            match split {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => bail!("invalid header {h:?}: expected KEY=VALUE"),
            }
        })
        .collect()
}

fn create_producer(args: &ProduceArgs) -> Result<ThreadedProducer<Reporter>> {
    let conn = &args.conn;
    let mut cfg = conn.client_config();
    let auto_create = if args.allow_auto_topic_creation {
        "true"
    } else {
        "false"
    };
    // Idempotent: a retried request neither duplicates nor reorders lines.
    cfg.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", conn.timeout().as_millis().to_string())
        .set("allow.auto.create.topics", auto_create)
        .set("linger.ms", "5");
    let reporter = Reporter {
        format: conn.format,
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    };
    conn.finish(cfg)?
        .create_with_context(reporter)
        .map_err(|e| conn.error(e, "creating a producer (check -X)"))
}

/// The partition of one input line: its own field, else `--partition`; checked against the
/// topic's partition count when known.
fn line_partition(
    args: &ProduceArgs,
    fields: &Fields<'_>,
    line_no: usize,
    partitions: Option<usize>,
) -> Result<Option<i32>> {
    let partition = match fields.partition {
        Some(p) => {
            let text = String::from_utf8_lossy(p);
            Some(
                text.trim()
                    .parse::<i32>()
                    .with_context(|| format!("input line {line_no}: partition {text:?} is not a number"))?,
            )
        }
        None => args.partition,
    };
    if let (Some(p), Some(count)) = (partition, partitions) {
        if p < 0 || p as usize >= count {
            bail!(
                "input line {line_no}: topic {:?} has partitions 0..{}, not {p}",
                args.topic,
                count.saturating_sub(1)
            );
        }
    }
    Ok(partition)
}

fn build_record<'a>(
    args: &'a ProduceArgs,
    fields: &Fields<'a>,
    headers: &[(String, String)],
    partition: Option<i32>,
    line_no: usize,
) -> BaseRecord<'a, [u8], [u8], usize> {
    let key: Option<&[u8]> = fields.key.or(args.key.as_deref().map(str::as_bytes));
    let value: Option<&[u8]> = match fields.value {
        Some(v) if v.is_empty() && args.tombstone => None,
        Some(v) => Some(v),
        None if args.tombstone => None,
        None => Some(&[]),
    };
    let mut record: BaseRecord<[u8], [u8], usize> = BaseRecord::with_opaque_to(&args.topic, line_no);
    if let Some(k) = key {
        record = record.key(k);
    }
    if let Some(v) = value {
        record = record.payload(v);
    }
    if let Some(p) = partition {
        record = record.partition(p);
    }
    if !headers.is_empty() {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        record = record.headers(owned);
    }
    record
}

/// Queues one record, waiting while librdkafka's queue is full.
fn send(
    producer: &ThreadedProducer<Reporter>,
    conn: &ConnArgs,
    mut record: BaseRecord<'_, [u8], [u8], usize>,
    line_no: usize,
) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(conn.error(e, &format!("producing input line {line_no}"))),
        }
    }
}

/// Waits for every delivery report; fails when a record was not delivered.
fn finish(producer: &ThreadedProducer<Reporter>, conn: &ConnArgs, sent: u64) -> Result<()> {
    let flushed = producer.flush(conn.timeout() + Duration::from_secs(5));
    let ctx = producer.context();
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    if let Err(e) = flushed {
        return Err(conn.error(
            e,
            &format!("waiting for deliveries ({delivered} of {sent} records delivered)"),
        ));
    }
    if failed > 0 {
        bail!("{failed} of {sent} records were not delivered");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_key_and_value_on_the_delimiter() -> Result<()> {
        let pieces = parse_format("%k %v")?;
        let f = split_line(&pieces, b"user-1 hello world").context("matches")?;
        assert_eq!(f.key, Some(&b"user-1"[..]));
        assert_eq!(f.value, Some(&b"hello world"[..]));
        assert!(split_line(&pieces, b"no-delimiter").is_none());
        Ok(())
    }

    #[test]
    fn parses_partition_prefix_and_tab_delimiter() -> Result<()> {
        let pieces = parse_format("p=%p\\t%v")?;
        let f = split_line(&pieces, b"p=2\tbody").context("matches")?;
        assert_eq!(f.partition, Some(&b"2"[..]));
        assert_eq!(f.value, Some(&b"body"[..]));
        assert_eq!(f.key, None);
        assert!(split_line(&pieces, b"q=2\tbody").is_none());
        Ok(())
    }

    #[test]
    fn rejects_adjacent_or_unknown_fields() {
        assert!(parse_format("%k%v").is_err());
        assert!(parse_format("%x").is_err());
        assert!(parse_format("%v %v").is_err());
        assert!(parse_format("100%% %v").is_ok());
    }
}
