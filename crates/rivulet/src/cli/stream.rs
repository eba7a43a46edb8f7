//! `rivulet stream`: the event store's streams and persistent subscription groups, through
//! the HTTP API (`/v1/streams`, `/v1/subscriptions`).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::admin_http::HttpArgs;
use super::output::{emit, emit_json, Table};
use super::{ConnArgs, Format};

/// Arguments of `rivulet stream`.
#[derive(Debug, Args)]
pub struct StreamArgs {
    #[command(subcommand)]
    command: StreamCommand,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Debug, Subcommand)]
enum StreamCommand {
    /// List streams with their last revision and state.
    List {
        /// Only streams whose names start with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Read a stream (`$all`, `$ce-<category>` and `$et-<type>` too), one event per line.
    Read {
        /// Stream name.
        name: String,
        /// A revision (a position for `$all`), `start` or `end`.
        #[arg(long)]
        from: Option<String>,
        /// Newest first.
        #[arg(long)]
        backwards: bool,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Append one event with JSON data, if the stream is in the expected state.
    Append {
        /// Stream name.
        name: String,
        /// Event type.
        #[arg(long = "type")]
        event_type: String,
        /// `any`, `no_stream`, `stream_exists` or the stream's last revision.
        #[arg(long, default_value = "any")]
        expected: String,
        /// Event id (a UUID); the same id appended again answers the first result.
        #[arg(long)]
        id: Option<String>,
        /// The event's data: JSON.
        data: String,
    },
    /// Delete a stream: soft (appending again continues its revisions) or for good.
    Delete {
        /// Stream name.
        name: String,
        /// `any`, `no_stream`, `stream_exists` or the stream's last revision.
        #[arg(long, default_value = "any")]
        expected: String,
        /// Delete for good: the name can never be used again.
        #[arg(long)]
        tombstone: bool,
    },
    /// Remove from the log the events no reader sees any more (deleted and tombstoned
    /// streams, events below `$maxCount`, `$maxAge` and `$tb`); each stream keeps its last.
    Scavenge,
    /// List persistent subscription groups: consumers, checkpoint, lag, parked events.
    Groups {
        /// Only the groups of this stream (or `$all`).
        #[arg(long)]
        source: Option<String>,
    },
}

/// The expected state as the HTTP API takes it: a number or a keyword.
fn expected(e: &str) -> Value {
    e.parse::<u64>().map_or_else(|_| json!(e), |n| json!(n))
}

fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'$' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// Runs `rivulet stream`.
pub fn run(args: StreamArgs) -> Result<()> {
    let timeout = args.conn.timeout();
    let json_out = args.conn.format == Format::Json;
    let value = match &args.command {
        StreamCommand::List { prefix, limit } => args.http.call(
            "GET",
            &format!("/v1/streams?prefix={}&limit={limit}", path_segment(prefix)),
            timeout,
        )?,
        StreamCommand::Read {
            name,
            from,
            backwards,
            limit,
        } => {
            let mut path = format!("/v1/streams/{}?limit={limit}", path_segment(name));
            if let Some(from) = from {
                path.push_str(&format!("&from={}", path_segment(from)));
            }
            if *backwards {
                path.push_str("&direction=backwards");
            }
            args.http.call("GET", &path, timeout)?
        }
        StreamCommand::Append {
            name,
            event_type,
            expected: e,
            id,
            data,
        } => {
            let data: Value = serde_json::from_str(data).context("the event's data is not JSON")?;
            let mut event = json!({"type": event_type, "data": data});
            if let Some(id) = id {
                event["id"] = json!(id);
            }
            let body = json!({"expected": expected(e), "events": [event]});
            args.http.call_with(
                "POST",
                &format!("/v1/streams/{}", path_segment(name)),
                Some(&body),
                timeout,
            )?
        }
        StreamCommand::Delete {
            name,
            expected: e,
            tombstone,
        } => args.http.call(
            "DELETE",
            &format!(
                "/v1/streams/{}?expected={}&tombstone={tombstone}",
                path_segment(name),
                path_segment(e)
            ),
            timeout,
        )?,
        StreamCommand::Scavenge => args.http.call("POST", "/v1/scavenge", timeout)?,
        StreamCommand::Groups { source } => {
            let path = match source {
                Some(s) => format!("/v1/subscriptions?source={}", path_segment(s)),
                None => "/v1/subscriptions".to_string(),
            };
            args.http.call("GET", &path, timeout)?
        }
    };
    if json_out {
        return emit_json(&value);
    }
    match &args.command {
        StreamCommand::List { .. } => {
            let mut table = Table::new(&["stream", "last revision", "state"]);
            for s in value["streams"].as_array().into_iter().flatten() {
                table.row(vec![
                    text(&s["name"]),
                    text(&s["last_revision"]),
                    text(&s["state"]),
                ]);
            }
            emit(&table.render())
        }
        StreamCommand::Read { .. } => {
            let lines: Vec<String> = value["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(Value::to_string)
                .collect();
            emit(&lines.iter().map(|l| format!("{l}\n")).collect::<String>())
        }
        StreamCommand::Append { name, .. } => emit(&format!(
            "Appended to {name} at revision {} (position {}{})\n",
            text(&value["first_revision"]),
            text(&value["position"]),
            if value["already_written"] == true {
                "; already written by an earlier append with this id"
            } else {
                ""
            }
        )),
        StreamCommand::Delete { name, tombstone, .. } => emit(&format!(
            "{} stream {name}\n",
            if *tombstone { "Tombstoned" } else { "Deleted" }
        )),
        StreamCommand::Scavenge => emit(&format!(
            "Removed {} events in {} ms\n",
            text(&value["removed_events"]),
            text(&value["duration_ms"])
        )),
        StreamCommand::Groups { .. } => {
            let mut table = Table::new(&[
                "source",
                "group",
                "status",
                "consumers",
                "checkpoint",
                "lag",
                "in flight",
                "parked",
            ]);
            for g in value["subscriptions"].as_array().into_iter().flatten() {
                let consumers = g["consumers"].as_array().map_or(0, Vec::len);
                table.row(vec![
                    text(&g["source"]),
                    text(&g["group"]),
                    text(&g["status"]),
                    consumers.to_string(),
                    text(&g["checkpoint"]),
                    text(&g["lag"]),
                    text(&g["in_flight"]),
                    text(&g["parked"]),
                ]);
            }
            emit(&table.render())
        }
    }
}
