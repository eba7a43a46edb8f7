//! `rivulet txn`: transactions as the broker's transaction coordinator sees them, through
//! the Kafka ListTransactions and DescribeTransactions requests (KIP-664), so it works
//! against Rivulet and any Kafka 3.0+ broker.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use kafka_protocol::messages::{DescribeTransactionsRequest, ListTransactionsRequest, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::output::{emit, emit_json, Table};
use super::{runtime, ConnArgs, Format};

/// Arguments of `rivulet txn`.
#[derive(Debug, Args)]
pub struct TxnArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: TxnCommand,
}

#[derive(Debug, Subcommand)]
enum TxnCommand {
    /// List transactional ids with their state; open ones first (abort a hanging one with
    /// POST /v1/transactions/ID/abort on the HTTP gateway)
    List {
        /// Only ids in this state (Ongoing, PrepareCommit, CompleteAbort, ...; repeatable)
        #[arg(long = "state")]
        states: Vec<String>,
        /// Only transactions open at least this long
        #[arg(long, value_name = "MS")]
        open_ms_min: Option<i64>,
    },
    /// Describe transactional ids: producer id and epoch, state, timeout, start time and
    /// the partitions of the open transaction
    Describe {
        /// Transactional ids
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Debug, Serialize)]
struct Listed {
    transactional_id: String,
    producer_id: i64,
    state: String,
}

#[derive(Debug, Serialize)]
struct Described {
    transactional_id: String,
    state: String,
    producer_id: i64,
    producer_epoch: i16,
    timeout_ms: i32,
    start_time_ms: i64,
    partitions: Vec<String>,
}

/// Runs `rivulet txn`.
pub fn run(args: TxnArgs) -> Result<()> {
    let conn = &args.conn;
    match args.command {
        TxnCommand::List { states, open_ms_min } => list(conn, states, open_ms_min),
        TxnCommand::Describe { ids } => describe(conn, ids),
    }
}

fn list(conn: &ConnArgs, states: Vec<String>, open_ms_min: Option<i64>) -> Result<()> {
    let request = ListTransactionsRequest::default()
        .with_state_filters(states.into_iter().map(StrBytes::from_string).collect())
        .with_duration_filter(open_ms_min.unwrap_or(-1));
    let response = runtime()?.block_on(conn.ask(&request, 0))?;
    if response.error_code != 0 {
        bail!("listing transactions failed: Kafka error {}", response.error_code);
    }
    for unknown in &response.unknown_state_filters {
        eprintln!("warning: the broker knows no state {:?}", unknown.as_str());
    }
    let mut rows: Vec<Listed> = response
        .transaction_states
        .into_iter()
        .map(|t| Listed {
            transactional_id: t.transactional_id.0.to_string(),
            producer_id: t.producer_id.0,
            state: t.transaction_state.to_string(),
        })
        .collect();
    rows.sort_by(|a, b| {
        (!is_open(&a.state), &a.transactional_id).cmp(&(!is_open(&b.state), &b.transactional_id))
    });
    match conn.format {
        Format::Json => emit_json(&rows),
        Format::Text => {
            let mut t = Table::new(&["transactional-id", "producer-id", "state"]);
            for r in rows {
                t.row(vec![r.transactional_id, r.producer_id.to_string(), r.state]);
            }
            emit(&t.render())
        }
    }
}

fn is_open(state: &str) -> bool {
    matches!(state, "Ongoing" | "PrepareCommit" | "PrepareAbort")
}

fn describe(conn: &ConnArgs, ids: Vec<String>) -> Result<()> {
    let request = DescribeTransactionsRequest::default().with_transactional_ids(
        ids.iter()
            .map(|id| TransactionalId(StrBytes::from_string(id.clone())))
            .collect(),
    );
    let response = runtime()?.block_on(conn.ask(&request, 0))?;
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for t in response.transaction_states {
        if t.error_code != 0 {
            missing.push(format!("{} (Kafka error {})", t.transactional_id.0, t.error_code));
            continue;
        }
        let partitions = t
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(move |p| format!("{}:{p}", topic.topic.0))
            })
            .collect();
        out.push(Described {
            transactional_id: t.transactional_id.0.to_string(),
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions,
        });
    }
    match conn.format {
        Format::Json => emit_json(&out)?,
        Format::Text if out.is_empty() => {}
        Format::Text => {
            let mut t = Table::new(&[
                "transactional-id",
                "state",
                "producer-id",
                "epoch",
                "timeout-ms",
                "started-ms",
                "partitions",
            ]);
            for d in out {
                let partitions = if d.partitions.is_empty() {
                    "-".to_string()
                } else {
                    d.partitions.join(",")
                };
                t.row(vec![
                    d.transactional_id,
                    d.state,
                    d.producer_id.to_string(),
                    d.producer_epoch.to_string(),
                    d.timeout_ms.to_string(),
                    d.start_time_ms.to_string(),
                    partitions,
                ]);
            }
            emit(&t.render())?;
        }
    }
    if !missing.is_empty() {
        bail!("not found: {}", missing.join(", "));
    }
    Ok(())
}
