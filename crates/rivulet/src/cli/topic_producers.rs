//! `rivulet topic producers`: the producers each partition remembers, through Kafka's
//! DescribeProducers request (KIP-664), so it works against Rivulet and Kafka 3.0+.

use anyhow::{bail, Result};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{DescribeProducersRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::output::{emit, emit_json, Table};
use super::{runtime, ConnArgs, Format};

#[derive(Debug, Serialize)]
struct Producer {
    partition: i32,
    producer_id: i64,
    producer_epoch: i32,
    last_sequence: i32,
    last_timestamp_ms: i64,
    transaction_start_offset: Option<i64>,
}

/// Runs `rivulet topic producers TOPIC [-p N ...]`.
pub fn run(conn: &ConnArgs, topic: &str, partitions: Vec<i32>) -> Result<()> {
    let rt = runtime()?;
    let partitions = if partitions.is_empty() {
        rt.block_on(all_partitions(conn, topic))?
    } else {
        partitions
    };
    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_indexes(partitions)]);
    let response = rt.block_on(conn.ask(&request, 0))?;
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for p in response.topics.iter().flat_map(|t| t.partitions.iter()) {
        if p.error_code != 0 {
            let why = p
                .error_message
                .as_ref()
                .map_or(String::new(), |m| format!(": {m}"));
            failed.push(format!(
                "partition {} (Kafka error {}{why})",
                p.partition_index, p.error_code
            ));
            continue;
        }
        rows.extend(p.active_producers.iter().map(|a| Producer {
            partition: p.partition_index,
            producer_id: a.producer_id.0,
            producer_epoch: a.producer_epoch,
            last_sequence: a.last_sequence,
            last_timestamp_ms: a.last_timestamp,
            transaction_start_offset: (a.current_txn_start_offset >= 0).then_some(a.current_txn_start_offset),
        }));
    }
    print(conn, rows)?;
    if !failed.is_empty() {
        bail!("{topic}: {}", failed.join(", "));
    }
    Ok(())
}

fn print(conn: &ConnArgs, rows: Vec<Producer>) -> Result<()> {
    match conn.format {
        Format::Json => emit_json(&rows),
        Format::Text if rows.is_empty() => emit("no producers\n"),
        Format::Text => {
            let mut t = Table::new(&[
                "partition",
                "producer-id",
                "epoch",
                "last-sequence",
                "last-timestamp-ms",
                "txn-start-offset",
            ]);
            for r in rows {
                t.row(vec![
                    r.partition.to_string(),
                    r.producer_id.to_string(),
                    r.producer_epoch.to_string(),
                    r.last_sequence.to_string(),
                    r.last_timestamp_ms.to_string(),
                    r.transaction_start_offset
                        .map_or("-".to_string(), |o| o.to_string()),
                ]);
            }
            emit(&t.render())
        }
    }
}

/// Every partition index of `topic`, from a Metadata request.
async fn all_partitions(conn: &ConnArgs, topic: &str) -> Result<Vec<i32>> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]))
        .with_allow_auto_topic_creation(false);
    // v4: the first version that can ask not to create the topic.
    let response = conn.ask(&request, 4).await?;
    let Some(t) = response.topics.first() else {
        bail!("the broker described no topic {topic:?}");
    };
    if t.error_code != 0 {
        bail!("topic {topic:?}: Kafka error {} (does it exist?)", t.error_code);
    }
    let mut partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    partitions.sort_unstable();
    Ok(partitions)
}
