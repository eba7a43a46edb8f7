//! `rivulet job`: stream processing jobs as their instances report themselves, with their
//! consumer group's lag, through the HTTP API (`/v1/jobs`).

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::Value;

use super::admin_http::HttpArgs;
use super::output::{emit, emit_json, key_values, section, Table};
use super::{ConnArgs, Format};

/// Arguments of `rivulet job`.
#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(subcommand)]
    command: JobCommand,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// List jobs: instances running, lag, watermark, late records, open windows.
    List,
    /// Describe a job: its topics, settings, each instance and the lag per partition.
    Describe {
        /// Job name (its consumer group).
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

/// Sums a field over a job's instances.
fn total(job: &Value, field: &str) -> u64 {
    job["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i[field].as_u64())
        .sum()
}

/// The lowest watermark of a job's running instances.
fn watermark(job: &Value) -> String {
    job["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["state"] == "running")
        .filter_map(|i| i["watermark_ms"].as_i64())
        .min()
        .map_or_else(|| "-".to_string(), |w| w.to_string())
}

/// Runs `rivulet job`.
pub fn run(args: JobArgs) -> Result<()> {
    let timeout = args.conn.timeout();
    let value = match &args.command {
        JobCommand::List => args.http.call("GET", "/v1/jobs", timeout)?,
        JobCommand::Describe { name } => args.http.call("GET", &format!("/v1/jobs/{name}"), timeout)?,
    };
    if args.conn.format == Format::Json {
        return emit_json(&value);
    }
    match &args.command {
        JobCommand::List => {
            let mut table = Table::new(&[
                "job",
                "running",
                "lag",
                "watermark ms",
                "records in",
                "late",
                "open windows",
            ]);
            for j in value["jobs"].as_array().into_iter().flatten() {
                table.row(vec![
                    text(&j["job"]),
                    text(&j["instances_running"]),
                    text(&j["lag"]),
                    watermark(j),
                    total(j, "records_in").to_string(),
                    total(j, "late").to_string(),
                    total(j, "state_entries").to_string(),
                ]);
            }
            emit(&table.render())
        }
        JobCommand::Describe { .. } => describe(&value),
    }
}

fn describe(job: &Value) -> Result<()> {
    let mut out = String::new();
    let first = &job["instances"][0];
    out.push_str(&section(&format!("Job {}", text(&job["job"]))));
    out.push_str(&key_values(&[
        ("inputs", text(&first["inputs"])),
        ("output", text(&first["output"])),
        ("late records to", text(&first["late_topic"])),
        ("changelog", text(&first["changelog_topic"])),
        ("repartition", text(&first["repartition_topic"])),
        ("tables", text(&first["tables"])),
        ("windows", text(&first["windows"])),
        ("allowed lateness ms", text(&first["lateness_ms"])),
        ("out of orderness ms", text(&first["out_of_orderness_ms"])),
        ("idle timeout ms", text(&first["idle_timeout_ms"])),
        ("checkpoint interval ms", text(&first["checkpoint_interval_ms"])),
        ("guarantee", text(&first["guarantee"])),
        ("lag", text(&job["lag"])),
    ]));
    out.push_str(&section("Instances"));
    let mut table = Table::new(&[
        "instance",
        "state",
        "tasks",
        "records in",
        "results",
        "late",
        "dead letters",
        "open windows",
        "watermark ms",
        "checkpoints",
        "last checkpoint ms",
        "restore ms",
        "age ms",
    ]);
    for i in job["instances"].as_array().into_iter().flatten() {
        table.row(
            [
                "instance",
                "state",
                "tasks",
                "records_in",
                "results_out",
                "late",
                "dead_lettered",
                "state_entries",
                "watermark_ms",
                "checkpoints",
                "checkpoint_last_ms",
                "restore_ms",
                "age_ms",
            ]
            .iter()
            .map(|f| text(&i[*f]))
            .collect(),
        );
    }
    out.push_str(&table.render());
    out.push_str(&section("Lag"));
    let mut lag = Table::new(&["topic", "partition", "committed", "lag"]);
    for p in job["partitions"].as_array().into_iter().flatten() {
        lag.row(
            ["topic", "partition", "committed", "lag"]
                .iter()
                .map(|f| text(&p[*f]))
                .collect(),
        );
    }
    out.push_str(&lag.render());
    emit(&out)
}
