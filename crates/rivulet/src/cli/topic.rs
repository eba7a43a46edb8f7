//! `rivulet topic create|list|describe|delete|add-partitions|delete-records|producers|alter-config`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use rdkafka::admin::{AlterConfig, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::{Metadata, MetadataTopic};
use serde::Serialize;

use super::output::{emit, emit_json, section, Table};
use super::{runtime, with_hint, ConnArgs, Format};

/// Arguments of `rivulet topic`.
#[derive(Debug, Args)]
pub struct TopicArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create topics.
    Create {
        /// Topic names
        #[arg(required = true)]
        topics: Vec<String>,
        /// Partitions per topic (-1: the broker's default)
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replication factor (-1: the broker's default)
        #[arg(short, long, default_value_t = -1, allow_negative_numbers = true)]
        replicas: i32,
        /// Topic config KEY=VALUE (repeatable), e.g. -c retention.ms=3600000
        #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Only validate the request; create nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// List topics with their partition and replica counts.
    List,
    /// Show a topic's summary, configs (with their source) and partitions (with log start
    /// offset and high watermark).
    Describe {
        /// Topic names
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Delete topics and all their records.
    Delete {
        /// Topic names
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Grow a topic to more partitions (partitions never shrink; keys may move to other
    /// partitions afterwards).
    AddPartitions {
        /// Topic name
        topic: String,
        /// The new total partition count
        #[arg(short, long)]
        partitions: usize,
        /// Only validate the request; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete a partition's records before an offset (all of them with --before -1).
    DeleteRecords {
        /// Topic name
        topic: String,
        /// Partition
        #[arg(short, long)]
        partition: i32,
        /// Records before this offset are deleted; -1: up to the high watermark
        #[arg(long, allow_negative_numbers = true)]
        before: i64,
    },
    /// Show the idempotent and transactional producers each partition remembers: epoch,
    /// last sequence, last write and the start of an open transaction (Kafka
    /// DescribeProducers)
    Producers {
        /// Topic name
        topic: String,
        /// Only this partition (repeatable); all partitions by default
        #[arg(short, long = "partition")]
        partitions: Vec<i32>,
    },
    /// Set or remove per-topic config overrides.
    AlterConfig {
        /// Topic name
        topic: String,
        /// Override KEY=VALUE (repeatable)
        #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove the override of KEY, returning it to the default (repeatable)
        #[arg(short = 'd', long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

/// Runs `rivulet topic`.
pub fn run(args: TopicArgs) -> Result<()> {
    let conn = &args.conn;
    match args.command {
        TopicCommand::Create {
            topics,
            partitions,
            replicas,
            configs,
            dry_run,
        } => create(conn, &topics, partitions, replicas, &configs, dry_run),
        TopicCommand::List => list(conn),
        TopicCommand::Describe { topics } => describe(conn, &topics),
        TopicCommand::Delete { topics } => delete(conn, &topics),
        TopicCommand::DeleteRecords {
            topic,
            partition,
            before,
        } => delete_records(conn, &topic, partition, before),
        TopicCommand::AddPartitions {
            topic,
            partitions,
            dry_run,
        } => add_partitions(conn, &topic, partitions, dry_run),
        TopicCommand::Producers { topic, partitions } => {
            super::topic_producers::run(conn, &topic, partitions)
        }
        TopicCommand::AlterConfig { topic, set, delete } => alter_config(conn, &topic, &set, &delete),
    }
}

/// Splits `KEY=VALUE`.
pub fn parse_key_value(s: &str) -> Result<(&str, &str)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim(), v)),
        _ => bail!("invalid setting {s:?}: expected KEY=VALUE"),
    }
}

/// One result row of create/delete/alter-config.
#[derive(Debug, Serialize)]
struct TopicStatus {
    topic: String,
    ok: bool,
    error: Option<String>,
}

fn print_statuses(conn: &ConnArgs, statuses: &[TopicStatus], verb: &str) -> Result<()> {
    match conn.format {
        Format::Json => emit_json(statuses)?,
        Format::Text => {
            let mut t = Table::new(&["topic", "status"]);
            for s in statuses {
                let status = match &s.error {
                    None => "OK".to_string(),
                    Some(e) => e.clone(),
                };
                t.row(vec![s.topic.clone(), status]);
            }
            emit(&t.render())?;
        }
    }
    let failed = statuses.iter().filter(|s| !s.ok).count();
    if failed > 0 {
        bail!("{failed} of {} topics could not be {verb}", statuses.len());
    }
    Ok(())
}

fn create(
    conn: &ConnArgs,
    topics: &[String],
    partitions: i32,
    replicas: i32,
    configs: &[String],
    dry_run: bool,
) -> Result<()> {
    let configs = configs
        .iter()
        .map(|c| parse_key_value(c))
        .collect::<Result<Vec<_>>>()?;
    let admin = conn.admin()?;
    let new_topics: Vec<NewTopic> = topics
        .iter()
        .map(|name| {
            let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(replicas));
            for (k, v) in &configs {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let opts = conn.admin_options().validate_only(dry_run);
    let results = runtime()?
        .block_on(admin.create_topics(new_topics.iter(), &opts))
        .map_err(|e| conn.error(e, "creating topics"))?;
    let statuses = statuses_of(results);
    print_statuses(conn, &statuses, "created")
}

/// One status row per topic of an admin operation's results.
fn statuses_of(results: Vec<Result<String, (String, RDKafkaErrorCode)>>) -> Vec<TopicStatus> {
    results
        .into_iter()
        .map(|r| match r {
            Ok(topic) => TopicStatus {
                topic,
                ok: true,
                error: None,
            },
            Err((topic, code)) => TopicStatus {
                topic,
                ok: false,
                error: Some(with_hint(code)),
            },
        })
        .collect()
}

/// The replication factor of a topic as the metadata shows it.
fn replicas_of(t: &MetadataTopic) -> usize {
    t.partitions().first().map_or(0, |p| p.replicas().len())
}

fn sorted_topics(metadata: &Metadata) -> Vec<&MetadataTopic> {
    let mut topics: Vec<&MetadataTopic> = metadata.topics().iter().collect();
    topics.sort_by(|a, b| a.name().cmp(b.name()));
    topics
}

fn list(conn: &ConnArgs) -> Result<()> {
    let consumer = conn.consumer(None)?;
    let metadata = conn.metadata(&consumer)?;
    let topics = sorted_topics(&metadata);
    match conn.format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = topics
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "name": t.name(),
                        "partitions": t.partitions().len(),
                        "replicas": replicas_of(t),
                    })
                })
                .collect();
            emit_json(&rows)
        }
        Format::Text => {
            let mut table = Table::new(&["name", "partitions", "replicas"]);
            for t in topics {
                table.row(vec![
                    t.name().to_string(),
                    t.partitions().len().to_string(),
                    replicas_of(t).to_string(),
                ]);
            }
            emit(&table.render())
        }
    }
}

/// Kafka's name for a config source.
pub fn source_name(source: &ConfigSource) -> &'static str {
    match source {
        ConfigSource::Unknown => "UNKNOWN",
        ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
        ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
        ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
        ConfigSource::Default => "DEFAULT_CONFIG",
    }
}

#[derive(Debug, Serialize)]
struct ConfigRow {
    key: String,
    value: Option<String>,
    source: &'static str,
}

#[derive(Debug, Serialize)]
struct PartitionRow {
    partition: i32,
    leader: i32,
    replicas: Vec<i32>,
    log_start_offset: i64,
    high_watermark: i64,
}

#[derive(Debug, Serialize)]
struct TopicDescription {
    name: String,
    partitions: usize,
    replicas: usize,
    configs: Vec<ConfigRow>,
    partition_details: Vec<PartitionRow>,
}

/// Fails with a hint when a topic is not in the metadata.
pub fn find_topic<'a>(metadata: &'a Metadata, name: &str) -> Result<&'a MetadataTopic> {
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == name && t.error().is_none())
        .with_context(|| format!("topic {name:?} does not exist; list topics with `rivulet topic list`"))
}

/// The configs of a topic, sorted by key.
fn topic_configs(conn: &ConnArgs, name: &str) -> Result<Vec<ConfigRow>> {
    let admin = conn.admin()?;
    let spec = ResourceSpecifier::Topic(name);
    let mut results = runtime()?
        .block_on(admin.describe_configs([&spec], &conn.admin_options()))
        .map_err(|e| conn.error(e, &format!("describing the configs of topic {name:?}")))?;
    let resource = match results.pop() {
        Some(Ok(r)) => r,
        Some(Err(code)) => bail!("describing the configs of topic {name:?}: {}", with_hint(code)),
        None => bail!("describing the configs of topic {name:?}: the broker returned no result"),
    };
    let mut rows: Vec<ConfigRow> = resource
        .entries
        .into_iter()
        .map(|e| ConfigRow {
            source: source_name(&e.source),
            value: if e.is_sensitive { None } else { e.value },
            key: e.name,
        })
        .collect();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(rows)
}

fn describe_one(conn: &ConnArgs, consumer: &BaseConsumer, topic: &MetadataTopic) -> Result<TopicDescription> {
    let name = topic.name();
    let configs = topic_configs(conn, name)?;
    let mut partition_details = Vec::with_capacity(topic.partitions().len());
    for p in topic.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(name, p.id(), conn.timeout())
            .map_err(|e| conn.error(e, &format!("reading offsets of {name}/{}", p.id())))?;
        partition_details.push(PartitionRow {
            partition: p.id(),
            leader: p.leader(),
            replicas: p.replicas().to_vec(),
            log_start_offset: low,
            high_watermark: high,
        });
    }
    partition_details.sort_by_key(|p| p.partition);
    Ok(TopicDescription {
        name: name.to_string(),
        partitions: topic.partitions().len(),
        replicas: replicas_of(topic),
        configs,
        partition_details,
    })
}

fn describe(conn: &ConnArgs, names: &[String]) -> Result<()> {
    let consumer = conn.consumer(None)?;
    let metadata = conn.metadata(&consumer)?;
    let topics = names
        .iter()
        .map(|n| find_topic(&metadata, n))
        .collect::<Result<Vec<_>>>()?;
    let descriptions = topics
        .into_iter()
        .map(|t| describe_one(conn, &consumer, t))
        .collect::<Result<Vec<_>>>()?;
    if conn.format == Format::Json {
        return emit_json(&descriptions);
    }
    let mut out = String::new();
    for (i, d) in descriptions.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&section("SUMMARY"));
        let mut summary = Table::new(&["name", "partitions", "replicas"]);
        summary.row(vec![
            d.name.clone(),
            d.partitions.to_string(),
            d.replicas.to_string(),
        ]);
        out.push_str(&summary.render());
        out.push('\n');
        out.push_str(&section("CONFIGS"));
        let mut configs = Table::new(&["key", "value", "source"]);
        for c in &d.configs {
            configs.row(vec![
                c.key.clone(),
                c.value.clone().unwrap_or_else(|| "-".to_string()),
                c.source.to_string(),
            ]);
        }
        out.push_str(&configs.render());
        out.push('\n');
        out.push_str(&section("PARTITIONS"));
        let mut parts = Table::new(&[
            "partition",
            "leader",
            "replicas",
            "log-start-offset",
            "high-watermark",
        ]);
        for p in &d.partition_details {
            let replicas: Vec<String> = p.replicas.iter().map(i32::to_string).collect();
            parts.row(vec![
                p.partition.to_string(),
                p.leader.to_string(),
                format!("[{}]", replicas.join(" ")),
                p.log_start_offset.to_string(),
                p.high_watermark.to_string(),
            ]);
        }
        out.push_str(&parts.render());
    }
    emit(&out)
}

fn delete(conn: &ConnArgs, topics: &[String]) -> Result<()> {
    let admin = conn.admin()?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let results = runtime()?
        .block_on(admin.delete_topics(&names, &conn.admin_options()))
        .map_err(|e| conn.error(e, "deleting topics"))?;
    let statuses = statuses_of(results);
    print_statuses(conn, &statuses, "deleted")
}

fn add_partitions(conn: &ConnArgs, topic: &str, partitions: usize, dry_run: bool) -> Result<()> {
    let admin = conn.admin()?;
    let request = rdkafka::admin::NewPartitions::new(topic, partitions);
    let options = conn.admin_options().validate_only(dry_run);
    let results = runtime()?
        .block_on(admin.create_partitions(&[request], &options))
        .map_err(|e| conn.error(e, "adding partitions"))?;
    let statuses = statuses_of(results);
    print_statuses(conn, &statuses, if dry_run { "valid" } else { "grown" })
}

fn delete_records(conn: &ConnArgs, topic: &str, partition: i32, before: i64) -> Result<()> {
    let admin = conn.admin()?;
    let offset = if before == -1 {
        rdkafka::Offset::End
    } else {
        rdkafka::Offset::Offset(before)
    };
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, offset)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = runtime()?
        .block_on(admin.delete_records(&tpl, &conn.admin_options()))
        .map_err(|e| conn.error(e, "deleting records"))?;
    let element = result
        .elements()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the broker answered for no partition"))?;
    if let Err(e) = element.error() {
        bail!("deleting records of {topic}[{partition}] failed: {e}");
    }
    match (conn.format, element.offset()) {
        (Format::Json, rdkafka::Offset::Offset(start)) => {
            emit_json(&serde_json::json!({"topic": topic, "partition": partition, "log_start_offset": start}))
        }
        (_, rdkafka::Offset::Offset(start)) => {
            emit(&format!("{topic}[{partition}] now starts at offset {start}\n"))
        }
        (_, other) => emit(&format!("{topic}[{partition}]: {other:?}\n")),
    }
}

fn alter_config(conn: &ConnArgs, topic: &str, set: &[String], delete: &[String]) -> Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: pass --set KEY=VALUE or --delete KEY");
    }
    let changes = set
        .iter()
        .map(|s| parse_key_value(s))
        .collect::<Result<Vec<_>>>()?;
    let consumer = conn.consumer(None)?;
    let metadata = conn.metadata(&consumer)?;
    find_topic(&metadata, topic)?;
    // AlterConfigs replaces the whole set of overrides, so start from the current overrides.
    let current = topic_configs(conn, topic)?;
    let mut overrides: BTreeMap<String, String> = current
        .into_iter()
        .filter(|c| c.source == source_name(&ConfigSource::DynamicTopic))
        .filter_map(|c| c.value.map(|v| (c.key, v)))
        .collect();
    for key in delete {
        if overrides.remove(key.as_str()).is_none() {
            bail!("topic {topic:?} has no override for {key:?}; see `rivulet topic describe {topic}`");
        }
    }
    for (k, v) in &changes {
        overrides.insert((*k).to_string(), (*v).to_string());
    }
    let mut request = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in &overrides {
        request = request.set(k, v);
    }
    let admin = conn.admin()?;
    let results = runtime()?
        .block_on(admin.alter_configs([&request], &conn.admin_options()))
        .map_err(|e| match e {
            KafkaError::AdminOp(RDKafkaErrorCode::UnsupportedFeature) => anyhow!(
                "altering the configs of topic {topic:?}: the broker does not implement \
                 AlterConfigs (Kafka API key 33); set configs when creating the topic with \
                 `rivulet topic create {topic} -c KEY=VALUE`"
            ),
            e => conn.error(e, &format!("altering the configs of topic {topic:?}")),
        })?;
    // librdkafka's binding reports every resource as altered even when the broker refused
    // it, so read the overrides back and compare.
    let now: BTreeMap<String, String> = topic_configs(conn, topic)?
        .into_iter()
        .filter(|c| c.source == source_name(&ConfigSource::DynamicTopic))
        .filter_map(|c| c.value.map(|v| (c.key, v)))
        .collect();
    let refused = (now != overrides).then(|| {
        format!(
            "the broker refused the change (overrides are now {now:?}); check the keys and values, \
             e.g. retention.ms takes milliseconds"
        )
    });
    let statuses: Vec<TopicStatus> = results
        .into_iter()
        .map(|r| match r {
            Ok(_) if refused.is_some() => TopicStatus {
                topic: topic.to_string(),
                ok: false,
                error: refused.clone(),
            },
            Ok(_) => TopicStatus {
                topic: topic.to_string(),
                ok: true,
                error: None,
            },
            Err((_, code)) => TopicStatus {
                topic: topic.to_string(),
                ok: false,
                error: Some(with_hint(code)),
            },
        })
        .collect();
    print_statuses(conn, &statuses, "altered")
}
