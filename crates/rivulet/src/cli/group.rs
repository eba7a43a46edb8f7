//! `rivulet group list|describe|seek|delete`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::groups::GroupInfo;
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::offsets::{now_ms, parse_position, Position};
use super::output::{emit, emit_json, key_values, or_dash, Table};
use super::topic::find_topic;
use super::{runtime, with_hint, ConnArgs, Format};

/// Arguments of `rivulet group`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// List consumer groups with their state and member count.
    List,
    /// Show a group's members and, per partition, committed offset, log end offset and lag.
    /// Partitions without a committed offset show `-` and do not count toward TOTAL-LAG.
    Describe {
        /// Group ids
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move an empty group's committed offsets.
    Seek {
        /// Group id
        group: String,
        /// Target: start, end, an offset N (clamped to the log), -N (N before the end),
        /// or @TIME (ms since the epoch, YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ, @-1h)
        #[arg(long, allow_hyphen_values = true, value_name = "POSITION")]
        to: String,
        /// Topics to move, comma-separated [default: the topics the group has committed]
        #[arg(long, value_delimiter = ',', value_name = "TOPIC,...")]
        topics: Vec<String>,
        /// Print the plan without committing anything
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete empty groups and their committed offsets.
    Delete {
        /// Group ids
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Delete an empty group's committed offsets of one topic (Kafka OffsetDelete).
    DeleteOffsets {
        /// Group id
        group: String,
        /// Topic whose offsets to forget
        #[arg(long)]
        topic: String,
    },
}

/// Runs `rivulet group`.
pub fn run(args: GroupArgs) -> Result<()> {
    let conn = &args.conn;
    match args.command {
        GroupCommand::List => list(conn),
        GroupCommand::Describe { groups } => describe(conn, &groups),
        GroupCommand::Seek {
            group,
            to,
            topics,
            dry_run,
        } => seek(conn, &group, &to, &topics, dry_run),
        GroupCommand::Delete { groups } => delete(conn, &groups),
        GroupCommand::DeleteOffsets { group, topic } => delete_offsets(conn, &group, &topic),
    }
}

fn list(conn: &ConnArgs) -> Result<()> {
    let consumer = conn.consumer(None)?;
    conn.metadata(&consumer)?;
    let groups = consumer
        .fetch_group_list(None, conn.timeout())
        .map_err(|e| conn.error(e, "listing groups"))?;
    let mut rows: Vec<&GroupInfo> = groups.groups().iter().collect();
    rows.sort_by(|a, b| a.name().cmp(b.name()));
    match conn.format {
        Format::Json => {
            let out: Vec<serde_json::Value> = rows
                .iter()
                .map(|g| {
                    serde_json::json!({
                        "group": g.name(),
                        "state": g.state(),
                        "members": g.members().len(),
                        "protocol_type": g.protocol_type(),
                    })
                })
                .collect();
            emit_json(&out)
        }
        Format::Text => {
            let mut t = Table::new(&["group", "state", "members", "protocol-type"]);
            for g in rows {
                t.row(vec![
                    g.name().to_string(),
                    g.state().to_string(),
                    g.members().len().to_string(),
                    non_empty(g.protocol_type()),
                ]);
            }
            emit(&t.render())
        }
    }
}

fn non_empty(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.to_string()
    }
}

/// A group's state and members as the coordinator reports them.
struct GroupState {
    state: String,
    protocol: String,
    members: Vec<Member>,
}

/// A group member and the partitions assigned to it.
struct Member {
    id: String,
    client_id: String,
    host: String,
    assigned: Vec<(String, i32)>,
}

fn group_state(conn: &ConnArgs, consumer: &BaseConsumer, group: &str) -> Result<GroupState> {
    let list = match consumer.fetch_group_list(Some(group), conn.timeout()) {
        Ok(list) => list,
        Err(KafkaError::GroupListFetch(RDKafkaErrorCode::GroupIdNotFound)) => {
            return Ok(GroupState {
                state: "Dead".to_string(),
                protocol: String::new(),
                members: Vec::new(),
            })
        }
        Err(e) => return Err(conn.error(e, &format!("describing group {group:?}"))),
    };
    let Some(info) = list.groups().iter().find(|g| g.name() == group) else {
        return Ok(GroupState {
            state: "Dead".to_string(),
            protocol: String::new(),
            members: Vec::new(),
        });
    };
    let members = info
        .members()
        .iter()
        .map(|m| {
            let assigned = if info.protocol_type() == "consumer" {
                m.assignment().map(decode_assignment).unwrap_or_default()
            } else {
                Vec::new()
            };
            Member {
                id: m.id().to_string(),
                client_id: m.client_id().to_string(),
                host: m.client_host().to_string(),
                assigned,
            }
        })
        .collect();
    Ok(GroupState {
        state: info.state().to_string(),
        protocol: info.protocol().to_string(),
        members,
    })
}

/// Decodes a consumer-protocol member assignment into (topic, partition)s; malformed input
/// yields what was decoded before the error.
fn decode_assignment(bytes: &[u8]) -> Vec<(String, i32)> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    fn i16_of(b: &mut &[u8]) -> Option<i16> {
        take(b, 2).and_then(|s| s.try_into().ok()).map(i16::from_be_bytes)
    }
    fn i32_of(b: &mut &[u8]) -> Option<i32> {
        take(b, 4).and_then(|s| s.try_into().ok()).map(i32::from_be_bytes)
    }
    let mut out = Vec::new();
    let mut b = bytes;
    let mut decode = || -> Option<()> {
        i16_of(&mut b)?; // version
        let topics = i32_of(&mut b)?;
        for _ in 0..topics.max(0) {
            let len = usize::try_from(i16_of(&mut b)?).ok()?;
            let name = String::from_utf8_lossy(take(&mut b, len)?).into_owned();
            let count = i32_of(&mut b)?;
            for _ in 0..count.max(0) {
                out.push((name.clone(), i32_of(&mut b)?));
            }
        }
        Some(())
    };
    let _ = decode();
    out
}

/// Committed offsets of a group for every partition of `topics` (or of all topics).
fn committed(
    conn: &ConnArgs,
    group_consumer: &BaseConsumer,
    metadata: &Metadata,
    topics: Option<&BTreeSet<String>>,
) -> Result<BTreeMap<(String, i32), i64>> {
    let mut tpl = TopicPartitionList::new();
    for t in metadata.topics() {
        if t.error().is_some() || topics.is_some_and(|set| !set.contains(t.name())) {
            continue;
        }
        for p in t.partitions() {
            tpl.add_partition(t.name(), p.id());
        }
    }
    if tpl.count() == 0 {
        return Ok(BTreeMap::new());
    }
    let result = group_consumer
        .committed_offsets(tpl, conn.timeout())
        .map_err(|e| conn.error(e, "reading committed offsets"))?;
    Ok(result
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(n) => Some(((e.topic().to_string(), e.partition()), n)),
            _ => None,
        })
        .collect())
}

#[derive(Debug, Serialize)]
struct LagRow {
    topic: String,
    partition: i32,
    current_offset: Option<i64>,
    log_start_offset: i64,
    log_end_offset: i64,
    lag: Option<i64>,
    member_id: Option<String>,
    client_id: Option<String>,
    host: Option<String>,
}

#[derive(Debug, Serialize)]
struct GroupDescription {
    group: String,
    state: String,
    balancer: String,
    members: usize,
    total_lag: i64,
    partitions: Vec<LagRow>,
}

fn describe_one(conn: &ConnArgs, metadata: &Metadata, group: &str) -> Result<GroupDescription> {
    let consumer = conn.consumer(Some(group))?;
    let state = group_state(conn, &consumer, group)?;
    let offsets = committed(conn, &consumer, metadata, None)?;
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for m in &state.members {
        for tp in &m.assigned {
            owners.insert(tp.clone(), (m.id.clone(), m.client_id.clone(), m.host.clone()));
        }
    }
    if state.state == "Dead" && offsets.is_empty() && state.members.is_empty() {
        bail!("group {group:?} does not exist; list groups with `rivulet group list`");
    }
    // Every partition of a topic the group has committed or been assigned, like rpk.
    let group_topics: BTreeSet<&str> = offsets
        .keys()
        .chain(owners.keys())
        .map(|(t, _)| t.as_str())
        .collect();
    let keys: BTreeSet<(String, i32)> = metadata
        .topics()
        .iter()
        .filter(|t| group_topics.contains(t.name()))
        .flat_map(|t| t.partitions().iter().map(|p| (t.name().to_string(), p.id())))
        .chain(offsets.keys().cloned())
        .chain(owners.keys().cloned())
        .collect();
    let mut partitions = Vec::with_capacity(keys.len());
    let mut total_lag = 0i64;
    for (topic, partition) in keys {
        let (low, high) = consumer
            .fetch_watermarks(&topic, partition, conn.timeout())
            .map_err(|e| conn.error(e, &format!("reading offsets of {topic}/{partition}")))?;
        let current = offsets.get(&(topic.clone(), partition)).copied();
        let lag = current.map(|c| (high - c).max(0));
        total_lag += lag.unwrap_or(0);
        let owner = owners.get(&(topic.clone(), partition));
        partitions.push(LagRow {
            topic,
            partition,
            current_offset: current,
            log_start_offset: low,
            log_end_offset: high,
            lag,
            member_id: owner.map(|o| o.0.clone()),
            client_id: owner.map(|o| o.1.clone()),
            host: owner.map(|o| o.2.clone()),
        });
    }
    Ok(GroupDescription {
        group: group.to_string(),
        state: state.state,
        balancer: state.protocol,
        members: state.members.len(),
        total_lag,
        partitions,
    })
}

fn describe(conn: &ConnArgs, groups: &[String]) -> Result<()> {
    let consumer = conn.consumer(None)?;
    let metadata = conn.metadata(&consumer)?;
    let descriptions = groups
        .iter()
        .map(|g| describe_one(conn, &metadata, g))
        .collect::<Result<Vec<_>>>()?;
    if conn.format == Format::Json {
        return emit_json(&descriptions);
    }
    let mut out = String::new();
    for (i, d) in descriptions.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&key_values(&[
            ("group", d.group.clone()),
            ("state", d.state.clone()),
            ("balancer", non_empty(&d.balancer)),
            ("members", d.members.to_string()),
            ("total-lag", d.total_lag.to_string()),
        ]));
        out.push('\n');
        let with_members = d.partitions.iter().any(|p| p.member_id.is_some());
        let mut headers = vec![
            "topic",
            "partition",
            "current-offset",
            "log-start-offset",
            "log-end-offset",
            "lag",
        ];
        if with_members {
            headers.extend(["member-id", "client-id", "host"]);
        }
        let mut t = Table::new(&headers);
        for p in &d.partitions {
            let mut row = vec![
                p.topic.clone(),
                p.partition.to_string(),
                or_dash(p.current_offset),
                p.log_start_offset.to_string(),
                p.log_end_offset.to_string(),
                or_dash(p.lag),
            ];
            if with_members {
                row.extend([
                    or_dash(p.member_id.clone()),
                    or_dash(p.client_id.clone()),
                    or_dash(p.host.clone()),
                ]);
            }
            t.row(row);
        }
        out.push_str(&t.render());
    }
    emit(&out)
}

#[derive(Debug, Serialize)]
struct SeekRow {
    topic: String,
    partition: i32,
    current_offset: Option<i64>,
    new_offset: i64,
    new_lag: i64,
}

#[derive(Debug, Serialize)]
struct SeekPlan {
    group: String,
    dry_run: bool,
    partitions: Vec<SeekRow>,
}

fn seek(conn: &ConnArgs, group: &str, to: &str, topics: &[String], dry_run: bool) -> Result<()> {
    let position = parse_position(to, now_ms())?;
    let consumer = conn.consumer(Some(group))?;
    let metadata = conn.metadata(&consumer)?;
    let state = group_state(conn, &consumer, group)?;
    if !state.members.is_empty() {
        bail!(
            "group {group:?} has {} active members (state {}); stop its consumers, then seek \
             (only an empty group's offsets can be changed)",
            state.members.len(),
            state.state
        );
    }
    let selected = seek_topics(conn, &consumer, &metadata, group, topics)?;
    let current = committed(conn, &consumer, &metadata, Some(&selected))?;
    let rows = plan_seek(conn, &consumer, &metadata, &selected, &current, position)?;
    if !dry_run {
        commit_seek(conn, &consumer, group, &rows)?;
    }
    print_seek(
        conn,
        SeekPlan {
            group: group.to_string(),
            dry_run,
            partitions: rows,
        },
    )
}

/// The topics a seek moves: those named, or every topic the group committed.
fn seek_topics(
    conn: &ConnArgs,
    consumer: &BaseConsumer,
    metadata: &Metadata,
    group: &str,
    topics: &[String],
) -> Result<BTreeSet<String>> {
    if topics.is_empty() {
        let offsets = committed(conn, consumer, metadata, None)?;
        let set: BTreeSet<String> = offsets.keys().map(|(t, _)| t.clone()).collect();
        if set.is_empty() {
            bail!("group {group:?} has no committed offsets; name the topics to seek with --topics");
        }
        return Ok(set);
    }
    for t in topics {
        find_topic(metadata, t)?;
    }
    Ok(topics.iter().cloned().collect())
}

/// The new offset of every partition of the selected topics.
fn plan_seek(
    conn: &ConnArgs,
    consumer: &BaseConsumer,
    metadata: &Metadata,
    selected: &BTreeSet<String>,
    current: &BTreeMap<(String, i32), i64>,
    position: Position,
) -> Result<Vec<SeekRow>> {
    let mut rows = Vec::new();
    let mut by_time = TopicPartitionList::new();
    for t in metadata.topics().iter().filter(|t| selected.contains(t.name())) {
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        for p in ids {
            let (low, high) = consumer
                .fetch_watermarks(t.name(), p, conn.timeout())
                .map_err(|e| conn.error(e, &format!("reading offsets of {}/{p}", t.name())))?;
            let new_offset = match position {
                Position::Start => low,
                Position::End => high,
                Position::Offset(n) => n.clamp(low, high),
                Position::Tail(n) => (high - n).max(low),
                Position::Timestamp(ts) => {
                    by_time
                        .add_partition_offset(t.name(), p, Offset::Offset(ts))
                        .map_err(|e| conn.error(e, "building the timestamp lookup"))?;
                    high
                }
            };
            rows.push(SeekRow {
                topic: t.name().to_string(),
                partition: p,
                current_offset: current.get(&(t.name().to_string(), p)).copied(),
                new_offset,
                new_lag: high - new_offset,
            });
        }
    }
    if by_time.count() > 0 {
        let found = consumer
            .offsets_for_times(by_time, conn.timeout())
            .map_err(|e| conn.error(e, "looking up offsets by timestamp"))?;
        for row in rows.iter_mut() {
            if let Some(Offset::Offset(n)) = found
                .find_partition(&row.topic, row.partition)
                .map(|e| e.offset())
            {
                // new_offset holds the high watermark until the lookup answers.
                let high = row.new_offset;
                row.new_offset = n.min(high);
                row.new_lag = high - row.new_offset;
            }
        }
    }
    Ok(rows)
}

fn commit_seek(conn: &ConnArgs, consumer: &BaseConsumer, group: &str, rows: &[SeekRow]) -> Result<()> {
    let mut tpl = TopicPartitionList::with_capacity(rows.len());
    for r in rows {
        tpl.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.new_offset))
            .map_err(|e| conn.error(e, "building the commit"))?;
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::UnknownMemberId | RDKafkaErrorCode::RebalanceInProgress) => {
                anyhow::anyhow!(
                    "committing the new offsets of group {group:?}: {e}; a consumer joined \
                     the group meanwhile, stop it and retry"
                )
            }
            _ => conn.error(e, &format!("committing the new offsets of group {group:?}")),
        })?;
    Ok(())
}

fn print_seek(conn: &ConnArgs, plan: SeekPlan) -> Result<()> {
    match conn.format {
        Format::Json => emit_json(&plan),
        Format::Text => {
            let mut t = Table::new(&["topic", "partition", "current-offset", "new-offset", "new-lag"]);
            for r in &plan.partitions {
                t.row(vec![
                    r.topic.clone(),
                    r.partition.to_string(),
                    or_dash(r.current_offset),
                    r.new_offset.to_string(),
                    r.new_lag.to_string(),
                ]);
            }
            let mut out = t.render();
            if plan.dry_run {
                out.push_str("\nDry run: nothing was committed. Run again without --dry-run to apply.\n");
            }
            emit(&out)
        }
    }
}

fn delete_offsets(conn: &ConnArgs, group: &str, topic: &str) -> Result<()> {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::{FindCoordinatorRequest, GroupId, OffsetDeleteRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let consumer = conn.consumer(None)?;
    let metadata = conn.metadata(&consumer)?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .ok_or_else(|| anyhow!("topic {topic:?} does not exist"))?;
    let bootstrap = conn
        .brokers
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let rt = runtime()?;
    let ask_timeout = conn.timeout();
    let find = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
    let coordinator = rt
        .block_on(async {
            tokio::time::timeout(
                ask_timeout,
                rivulet_bench::kafka::request_once(&bootstrap, &find, 1),
            )
            .await
        })
        .map_err(|_| anyhow!("{bootstrap} did not answer FindCoordinator in time"))?
        .map_err(|e| anyhow!("finding the coordinator of {group:?}: {e}"))?;
    if coordinator.error_code != 0 {
        bail!(
            "finding the coordinator of {group:?}: Kafka error {}",
            coordinator.error_code
        );
    }
    let address = format!("{}:{}", coordinator.host, coordinator.port);
    let request = OffsetDeleteRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(
                (0..partitions as i32)
                    .map(|p| OffsetDeleteRequestPartition::default().with_partition_index(p))
                    .collect(),
            )]);
    let response = rt
        .block_on(async {
            tokio::time::timeout(
                ask_timeout,
                rivulet_bench::kafka::request_once(&address, &request, 0),
            )
            .await
        })
        .map_err(|_| anyhow!("{address} did not answer OffsetDelete in time"))?
        .map_err(|e| anyhow!("deleting offsets: {e}"))?;
    let code = std::iter::once(response.error_code)
        .chain(
            response
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        )
        .find(|c| *c != 0);
    match code {
        None => emit(&format!("deleted the offsets of {group} for {topic}\n")),
        Some(86) => bail!("group {group:?} has members consuming {topic:?}; stop them first"),
        Some(69) => bail!("group {group:?} does not exist"),
        Some(c) => bail!("deleting the offsets of {group:?} for {topic:?} failed: Kafka error {c}"),
    }
}

fn delete(conn: &ConnArgs, groups: &[String]) -> Result<()> {
    let admin = conn.admin()?;
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let results = runtime()?
        .block_on(admin.delete_groups(&names, &conn.admin_options()))
        .map_err(|e| conn.error(e, "deleting groups"))?;
    let mut failed = 0;
    let rows: Vec<serde_json::Value> = results
        .iter()
        .map(|r| match r {
            Ok(g) => serde_json::json!({"group": g, "ok": true, "error": null}),
            Err((g, code)) => {
                failed += 1;
                serde_json::json!({"group": g, "ok": false, "error": with_hint(*code)})
            }
        })
        .collect();
    match conn.format {
        Format::Json => emit_json(&rows)?,
        Format::Text => {
            let mut t = Table::new(&["group", "status"]);
            for r in &results {
                match r {
                    Ok(g) => t.row(vec![g.clone(), "OK".to_string()]),
                    Err((g, code)) => t.row(vec![g.clone(), with_hint(*code)]),
                }
            }
            emit(&t.render())?;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} groups could not be deleted", results.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_consumer_assignment() {
        let mut b = vec![0, 0, 0, 0, 0, 1, 0, 3];
        b.extend_from_slice(b"abc");
        b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0]);
        assert_eq!(
            decode_assignment(&b),
            vec![("abc".to_string(), 0), ("abc".to_string(), 5)]
        );
        assert_eq!(decode_assignment(&b[..5]), Vec::<(String, i32)>::new());
    }
}
