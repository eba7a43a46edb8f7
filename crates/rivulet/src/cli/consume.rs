//! `rivulet consume TOPIC`: one JSON object (or a format string) per record.

use std::collections::BTreeSet;
use std::io::{self, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;

use super::offsets::{now_ms, parse_position, Position, POSITION_HELP};
use super::output::{base64, bytes_text};
use super::topic::find_topic;
use super::{runtime, ConnArgs};

/// Arguments of `rivulet consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    conn: ConnArgs,
    /// Topic to consume
    topic: String,
    /// Where to start: start, end, N, -N (N before the end), @TIME (ms since the epoch,
    /// YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ) or @-DURATION (e.g. @-1h). With -g only start or
    /// end, used when the group has no committed offset
    #[arg(
        short,
        long,
        default_value = "start",
        allow_hyphen_values = true,
        value_name = "POSITION"
    )]
    offset: String,
    /// Stop after this many records
    #[arg(short = 'n', long = "num", value_name = "N")]
    num: Option<u64>,
    /// Consume as a member of this group and commit its progress
    #[arg(short, long)]
    group: Option<String>,
    /// Exit when every partition has been read to its end
    #[arg(short, long)]
    exit_at_end: bool,
    /// Only these partitions, comma-separated (not with -g)
    #[arg(short, long, value_delimiter = ',', value_name = "P,...")]
    partitions: Vec<i32>,
    /// Print each record with this format instead of JSON: %t topic, %p partition, %o offset,
    /// %d timestamp (ms), %k key, %v value, %h headers (k=v,...), %% percent, \n newline,
    /// \t tab. A newline is added when the format has none
    #[arg(short = 'f', long = "record-format", value_name = "FMT")]
    record_format: Option<String>,
}

#[derive(Serialize)]
struct HeaderOut {
    key: String,
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_encoding: Option<&'static str>,
}

#[derive(Serialize)]
struct RecordOut<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_encoding: Option<&'static str>,
    headers: Vec<HeaderOut>,
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_encoding: Option<&'static str>,
}

fn text_and_encoding(bytes: Option<&[u8]>) -> (Option<String>, Option<&'static str>) {
    match bytes {
        None => (None, None),
        Some(b) => {
            let (text, is_base64) = bytes_text(b);
            (Some(text), is_base64.then_some("base64"))
        }
    }
}

fn headers_of(m: &BorrowedMessage<'_>) -> Vec<HeaderOut> {
    let Some(headers) = m.headers() else {
        return Vec::new();
    };
    headers
        .iter()
        .map(|h| {
            let (value, value_encoding) = text_and_encoding(h.value);
            HeaderOut {
                key: h.key.to_string(),
                value,
                value_encoding,
            }
        })
        .collect()
}

/// Renders one record as a JSON line.
fn render_json(m: &BorrowedMessage<'_>) -> Result<Vec<u8>> {
    let (key, key_encoding) = text_and_encoding(m.key());
    let (value, value_encoding) = text_and_encoding(m.payload());
    let record = RecordOut {
        topic: m.topic(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m.timestamp().to_millis(),
        key,
        key_encoding,
        headers: headers_of(m),
        value,
        value_encoding,
    };
    let mut out = serde_json::to_vec(&record).context("rendering a record as JSON")?;
    out.push(b'\n');
    Ok(out)
}

/// Checks a record format and adds a trailing newline when it has none.
fn prepare_format(format: &str) -> Result<String> {
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('t' | 'p' | 'o' | 'd' | 'k' | 'v' | 'h' | '%') => {}
                _ => bail!("invalid record format {format:?}: use %t %p %o %d %k %v %h or %%"),
            },
            '\\' => match chars.next() {
                Some('n' | 't' | '\\') => {}
                _ => bail!("invalid record format {format:?}: use \\n, \\t or \\\\"),
            },
            _ => {}
        }
    }
    if format.contains("\\n") {
        Ok(format.to_string())
    } else {
        Ok(format!("{format}\\n"))
    }
}

/// Renders one record with a checked format (see [`prepare_format`]).
fn render_format(format: &str, m: &BorrowedMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('t') => out.extend_from_slice(m.topic().as_bytes()),
                Some('p') => out.extend_from_slice(m.partition().to_string().as_bytes()),
                Some('o') => out.extend_from_slice(m.offset().to_string().as_bytes()),
                Some('d') => out.extend_from_slice(
                    m.timestamp()
                        .to_millis()
                        .map_or("-".to_string(), |t| t.to_string())
                        .as_bytes(),
                ),
                Some('k') => out.extend_from_slice(m.key().unwrap_or_default()),
                Some('v') => out.extend_from_slice(m.payload().unwrap_or_default()),
                Some('h') => {
                    let headers: Vec<String> = m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| {
                                    let v = h.value.map_or(String::new(), |v| {
                                        String::from_utf8(v.to_vec()).unwrap_or_else(|_| base64(v))
                                    });
                                    format!("{}={v}", h.key)
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out.extend_from_slice(headers.join(",").as_bytes());
                }
                _ => out.push(b'%'),
            },
            '\\' => match chars.next() {
                Some('n') => out.push(b'\n'),
                Some('t') => out.push(b'\t'),
                _ => out.push(b'\\'),
            },
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

/// A flag set when Ctrl-C is pressed.
fn interrupted_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    std::thread::spawn(move || {
        if let Ok(rt) = runtime() {
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    set.store(true, Ordering::SeqCst);
                }
            });
        }
    });
    flag
}

/// The partitions to read and where to start, for a consumer without a group.
fn assignment(
    conn: &ConnArgs,
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    position: Position,
) -> Result<TopicPartitionList> {
    let offset = match position {
        Position::Start => Offset::Beginning,
        Position::End => Offset::End,
        Position::Offset(n) => Offset::Offset(n),
        Position::Tail(n) => Offset::OffsetTail(n),
        Position::Timestamp(ts) => Offset::Offset(ts),
    };
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for &p in partitions {
        tpl.add_partition_offset(topic, p, offset)
            .map_err(|e| conn.error(e, "building the assignment"))?;
    }
    if let Position::Timestamp(_) = position {
        tpl = consumer
            .offsets_for_times(tpl, conn.timeout())
            .map_err(|e| conn.error(e, "looking up offsets by timestamp"))?;
    }
    Ok(tpl)
}

/// Runs `rivulet consume`.
pub fn run(args: ConsumeArgs) -> Result<()> {
    let conn = &args.conn;
    let position = parse_position(&args.offset, now_ms())?;
    let format = args.record_format.as_deref().map(prepare_format).transpose()?;
    if args.group.is_some() && !matches!(position, Position::Start | Position::End) {
        bail!(
            "with -g, -o accepts only start or end (where to begin without a committed offset); \
             move a group's offsets with `rivulet group seek`"
        );
    }
    if args.group.is_some() && !args.partitions.is_empty() {
        bail!("-p cannot be combined with -g: the group assigns partitions");
    }

    let mut cfg = conn.client_config();
    cfg.set("enable.partition.eof", "true");
    if let Some(group) = &args.group {
        cfg.set("group.id", group)
            .set("enable.auto.commit", "true")
            // Offsets are stored explicitly once a record has been written out.
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set(
                "auto.offset.reset",
                if position == Position::End {
                    "latest"
                } else {
                    "earliest"
                },
            );
    } else {
        // librdkafka needs a group id to assign partitions; nothing is committed under it.
        cfg.set("group.id", "rivulet-cli-reader")
            .set("enable.auto.commit", "false");
    }
    let consumer: BaseConsumer = conn
        .finish(cfg)?
        .create()
        .map_err(|e| conn.error(e, "creating a consumer (check -X)"))?;
    let metadata = conn.metadata(&consumer)?;
    let topic = find_topic(&metadata, &args.topic)?;
    let all: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
    let partitions = if args.partitions.is_empty() {
        all
    } else {
        for p in &args.partitions {
            if !all.contains(p) {
                bail!(
                    "topic {:?} has no partition {p} (it has {})",
                    args.topic,
                    all.len()
                );
            }
        }
        args.partitions.clone()
    };

    if args.group.is_some() {
        consumer
            .subscribe(&[args.topic.as_str()])
            .map_err(|e| conn.error(e, "subscribing"))?;
    } else {
        let tpl = assignment(conn, &consumer, &args.topic, &partitions, position)
            .with_context(|| format!("positions are {POSITION_HELP}"))?;
        consumer
            .assign(&tpl)
            .map_err(|e| conn.error(e, "assigning partitions"))?;
    }

    let result = consume_loop(&args, &consumer, format.as_deref(), &partitions);
    if args.group.is_some() {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                let e = conn.error(e, "committing the group's offsets");
                return result.and(Err(e));
            }
        }
    }
    result
}

fn consume_loop(
    args: &ConsumeArgs,
    consumer: &BaseConsumer,
    format: Option<&str>,
    partitions: &[i32],
) -> Result<()> {
    let interrupted = interrupted_flag();
    let mut out = BufWriter::new(io::stdout().lock());
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    let mut count = 0u64;
    if args.num == Some(0) {
        return Ok(());
    }
    while !interrupted.load(Ordering::SeqCst) {
        let polled = match consumer.poll(Duration::ZERO) {
            Some(r) => Some(r),
            None => {
                if let Err(e) = out.flush() {
                    return stdout_error(e);
                }
                consumer.poll(Duration::from_millis(100))
            }
        };
        match polled {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                if args.exit_at_end {
                    let expected: BTreeSet<i32> = if args.group.is_some() {
                        consumer
                            .assignment()
                            .map(|a| a.elements().iter().map(|e| e.partition()).collect())
                            .unwrap_or_default()
                    } else {
                        partitions.iter().copied().collect()
                    };
                    if !expected.is_empty() && expected.is_subset(&at_end) {
                        break;
                    }
                }
            }
            Some(Err(e)) => {
                let _ = out.flush();
                return Err(args.conn.error(e, "consuming"));
            }
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                let bytes = match format {
                    Some(f) => render_format(f, &m),
                    None => render_json(&m)?,
                };
                if let Err(e) = out.write_all(&bytes) {
                    return stdout_error(e);
                }
                if args.group.is_some() {
                    consumer
                        .store_offset_from_message(&m)
                        .map_err(|e| args.conn.error(e, "storing the consumed position"))?;
                }
                count += 1;
                if args.num.is_some_and(|n| count >= n) {
                    break;
                }
            }
        }
    }
    match out.flush() {
        Ok(()) => Ok(()),
        Err(e) => stdout_error(e),
    }
}

/// A closed stdout (e.g. `| head`) ends consumption cleanly; other errors fail.
fn stdout_error(e: io::Error) -> Result<()> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e).context("writing to stdout")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_format_gets_a_newline_and_rejects_unknown_fields() -> Result<()> {
        assert_eq!(prepare_format("%k %v")?, "%k %v\\n");
        assert_eq!(prepare_format("%k\\t%v\\n")?, "%k\\t%v\\n");
        assert!(prepare_format("%q").is_err());
        assert!(prepare_format("\\x").is_err());
        Ok(())
    }
}
