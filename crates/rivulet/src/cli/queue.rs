//! `rivulet queue` and `rivulet exchange`: the broker's queues and exchanges (AMQP), through
//! the HTTP admin API.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::admin_http::HttpArgs;
use super::output::{emit, emit_json, key_values, Table};
use super::{ConnArgs, Format};

/// Arguments of `rivulet queue`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(subcommand)]
    command: QueueCommand,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// List queues with ready, unacknowledged and consumer counts.
    List,
    /// Show a queue's declaration, counts, ack floor and bindings.
    Describe {
        /// Queue name.
        name: String,
    },
    /// Drop every message of a queue not delivered to a consumer.
    Purge {
        /// Queue name.
        name: String,
    },
    /// Delete a queue, its bindings and its topic.
    Delete {
        /// Queue name.
        name: String,
    },
}

/// Arguments of `rivulet exchange`.
#[derive(Debug, Args)]
pub struct ExchangeArgs {
    #[command(subcommand)]
    command: ExchangeCommand,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Debug, Subcommand)]
enum ExchangeCommand {
    /// List exchanges.
    List,
    /// Show an exchange and its bindings.
    Describe {
        /// Exchange name.
        name: String,
    },
    /// Delete an exchange and its bindings.
    Delete {
        /// Exchange name.
        name: String,
    },
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn bindings_table(bindings: &Value) -> String {
    let mut table = Table::new(&["exchange", "queue", "routing key", "arguments"]);
    for b in bindings.as_array().into_iter().flatten() {
        table.row(vec![
            text(&b["exchange"]),
            text(&b["queue"]),
            text(&b["routing_key"]),
            b["arguments"].to_string(),
        ]);
    }
    table.render()
}

/// Runs `rivulet queue`.
pub fn run_queue(args: QueueArgs) -> Result<()> {
    let timeout = args.conn.timeout();
    let json = args.conn.format == Format::Json;
    let value = match &args.command {
        QueueCommand::List => args.http.call("GET", "/v1/queues", timeout)?,
        QueueCommand::Describe { name } => args.http.call("GET", &format!("/v1/queues/{name}"), timeout)?,
        QueueCommand::Purge { name } => {
            args.http
                .call("POST", &format!("/v1/queues/{name}/purge"), timeout)?
        }
        QueueCommand::Delete { name } => args.http.call("DELETE", &format!("/v1/queues/{name}"), timeout)?,
    };
    if json {
        return emit_json(&value);
    }
    match &args.command {
        QueueCommand::List => {
            let mut table = Table::new(&[
                "name",
                "durable",
                "ready",
                "unacked",
                "consumers",
                "publish/s",
                "deliver/s",
                "ack/s",
                "size bytes",
            ]);
            for q in value["queues"].as_array().into_iter().flatten() {
                table.row(vec![
                    text(&q["name"]),
                    text(&q["durable"]),
                    text(&q["messages_ready"]),
                    text(&q["messages_unacknowledged"]),
                    text(&q["consumers"]),
                    rate(&q["published_per_s"]),
                    rate(&q["delivered_per_s"]),
                    rate(&q["acknowledged_per_s"]),
                    text(&q["size_bytes"]),
                ]);
            }
            emit(&table.render())
        }
        QueueCommand::Describe { .. } => {
            let keys = [
                "name",
                "durable",
                "exclusive",
                "auto_delete",
                "messages_ready",
                "messages_unacknowledged",
                "consumers",
                "ack_floor",
                "end_offset",
                "size_bytes",
                "published_total",
                "delivered_total",
                "acknowledged_total",
                "published_per_s",
                "delivered_per_s",
                "acknowledged_per_s",
            ];
            let mut pairs: Vec<(&str, String)> = keys.iter().map(|k| (*k, text(&value[*k]))).collect();
            pairs.push(("arguments", value["arguments"].to_string()));
            emit(&format!(
                "{}\n{}",
                key_values(&pairs),
                bindings_table(&value["bindings"])
            ))
        }
        QueueCommand::Purge { name } => emit(&format!(
            "Purged {} messages from queue {name}\n",
            text(&value["purged"])
        )),
        QueueCommand::Delete { name } => emit(&format!(
            "Deleted queue {name} ({} messages)\n",
            text(&value["deleted_messages"])
        )),
    }
}

/// A per-second rate, one decimal.
fn rate(v: &serde_json::Value) -> String {
    v.as_f64().map_or_else(|| "-".to_string(), |r| format!("{r:.1}"))
}

/// Runs `rivulet exchange`.
pub fn run_exchange(args: ExchangeArgs) -> Result<()> {
    let timeout = args.conn.timeout();
    let json = args.conn.format == Format::Json;
    match &args.command {
        ExchangeCommand::List => {
            let value = args.http.call("GET", "/v1/exchanges", timeout)?;
            if json {
                return emit_json(&value);
            }
            let mut table = Table::new(&["name", "type", "durable", "auto delete", "internal", "bindings"]);
            for e in value["exchanges"].as_array().into_iter().flatten() {
                table.row(vec![
                    text(&e["name"]),
                    text(&e["type"]),
                    text(&e["durable"]),
                    text(&e["auto_delete"]),
                    text(&e["internal"]),
                    text(&e["bindings"]),
                ]);
            }
            emit(&table.render())
        }
        ExchangeCommand::Describe { name } => {
            let value = args.http.call("GET", &format!("/v1/exchanges/{name}"), timeout)?;
            if json {
                return emit_json(&value);
            }
            let keys = ["name", "type", "durable", "auto_delete", "internal"];
            let pairs: Vec<(&str, String)> = keys.iter().map(|k| (*k, text(&value[*k]))).collect();
            emit(&format!(
                "{}\n{}",
                key_values(&pairs),
                bindings_table(&value["bindings"])
            ))
        }
        ExchangeCommand::Delete { name } => {
            args.http
                .call("DELETE", &format!("/v1/exchanges/{name}"), timeout)?;
            if json {
                return emit_json(&serde_json::json!({"deleted": name}));
            }
            emit(&format!("Deleted exchange {name}\n"))
        }
    }
}
