//! What a running job says about itself: a small status record per instance in the
//! compacted topic `rivulet.jobs`, keyed `<job>/<instance>`, written at start, every few
//! seconds and at stop. `rivulet job list|describe`, the HTTP API (`/v1/jobs`) and the
//! broker's `/metrics` read it, so jobs are visible wherever they run.

use serde::{Deserialize, Serialize};

use crate::pipeline::{Guarantee, JobOptions, Pipeline};
use crate::stats::JobStats;

/// The topic of job status records.
pub const JOBS_TOPIC: &str = "rivulet.jobs";
/// How often a running instance writes its status (ms).
pub const STATUS_INTERVAL_MS: i64 = 5_000;

/// One instance's status as written to [`JOBS_TOPIC`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Job name (its consumer group).
    pub job: String,
    /// Instance id.
    pub instance: String,
    /// `running`, `stopped` or `failed`.
    pub state: String,
    /// Input topics.
    pub inputs: Vec<String>,
    /// Output topic.
    pub output: String,
    /// Tables joined.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Side output topic.
    pub late_topic: String,
    /// Changelog topic (stateful jobs).
    pub changelog_topic: Option<String>,
    /// Repartition topic (jobs whose `key_by` repartitions).
    pub repartition_topic: Option<String>,
    /// Windows, e.g. `Tumbling { size_ms: 60000 }`.
    pub windows: Option<String>,
    /// Allowed lateness (ms).
    pub lateness_ms: Option<i64>,
    /// Out-of-orderness bound (ms).
    pub out_of_orderness_ms: i64,
    /// Idle timeout (ms).
    pub idle_timeout_ms: i64,
    /// Checkpoint interval (ms).
    pub checkpoint_interval_ms: i64,
    /// `exactly_once` or `at_least_once`.
    pub guarantee: String,
    /// What the instance has done so far (its fields appear at the top level of the JSON).
    #[serde(flatten)]
    pub stats: JobStats,
    /// When this status was written (ms since the epoch).
    pub updated_ms: i64,
    /// Where the instance answers interactive queries (`GET /state/{key}`).
    #[serde(default)]
    pub query_address: Option<String>,
}

impl JobStatus {
    /// The status of an instance running `pipeline` with `options`, at `stats`.
    pub fn new(pipeline: &Pipeline, options: &JobOptions, stats: &JobStats, state: &str) -> JobStatus {
        let stateful = pipeline.stateful;
        JobStatus {
            job: options.name.clone(),
            instance: options.instance.clone(),
            state: state.to_string(),
            inputs: pipeline.inputs.clone(),
            output: pipeline.output.clone(),
            tables: pipeline.tables.iter().map(|t| t.topic().to_string()).collect(),
            late_topic: options.late_topic(),
            changelog_topic: stateful.then(|| options.changelog_topic()),
            repartition_topic: pipeline.shuffle.as_ref().map(|_| options.repartition_topic()),
            windows: pipeline.windows.map(|(w, _)| format!("{w:?}")),
            lateness_ms: pipeline.windows.map(|(_, l)| l),
            out_of_orderness_ms: options.out_of_orderness_ms,
            idle_timeout_ms: options.idle_timeout_ms,
            checkpoint_interval_ms: options.checkpoint_interval_ms,
            guarantee: match options.guarantee {
                Guarantee::ExactlyOnce => "exactly_once",
                Guarantee::AtLeastOnce => "at_least_once",
            }
            .to_string(),
            stats: *stats,
            updated_ms: crate::now_ms(),
            query_address: None,
        }
    }

    /// The record key: `<job>/<instance>`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.job, self.instance)
    }

    /// The state a reader should show: `unresponsive` for a running instance that has not
    /// written for three intervals.
    pub fn effective_state(&self, now_ms: i64) -> &str {
        if self.state == "running" && now_ms - self.updated_ms > 3 * STATUS_INTERVAL_MS {
            "unresponsive"
        } else {
            &self.state
        }
    }
}
