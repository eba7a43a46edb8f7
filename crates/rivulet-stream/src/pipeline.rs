//! A built pipeline and the options a job runs with.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Result, StreamError};
use crate::table::TableSource;
use crate::task::TaskLogic;
use crate::window::{duration_ms, Windows};

/// Makes the logic of one task.
pub type LogicFactory = Arc<dyn Fn() -> Box<dyn TaskLogic> + Send + Sync>;

/// A pipeline from input topics to one output topic, built with [`crate::Stream`].
#[derive(Clone)]
pub struct Pipeline {
    pub(crate) inputs: Vec<String>,
    pub(crate) output: String,
    /// The last stage (or the only one).
    pub(crate) factory: LogicFactory,
    /// The first stage when the job repartitions by key.
    pub(crate) shuffle: Option<LogicFactory>,
    pub(crate) windows: Option<(Windows, i64)>,
    /// Whether tasks hold state (windows, join buffers) mirrored to a changelog.
    pub(crate) stateful: bool,
    /// Why the pipeline cannot run, found while it was built.
    pub(crate) invalid: Option<String>,
    /// Tables the operators read (loaded before processing, refreshed while running).
    pub(crate) tables: Vec<Arc<dyn TableSource>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("inputs", &self.inputs)
            .field("output", &self.output)
            .field("windows", &self.windows)
            .field("repartitioned", &self.shuffle.is_some())
            .field(
                "tables",
                &self
                    .tables
                    .iter()
                    .map(|t| t.topic().to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Pipeline {
    pub(crate) fn new(inputs: Vec<String>, output: &str, factory: LogicFactory) -> Pipeline {
        Pipeline {
            inputs,
            output: output.to_string(),
            factory,
            shuffle: None,
            windows: None,
            stateful: false,
            invalid: None,
            tables: Vec::new(),
        }
    }

    /// The input topics.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// The output topic.
    pub fn output(&self) -> &str {
        &self.output
    }

    /// Reads every table's new records; returns how many.
    pub(crate) async fn refresh_tables(&self, transport: &dyn rivulet_sdk::Transport) -> Result<usize> {
        let mut n = 0;
        for t in &self.tables {
            n += t.refresh(transport).await?;
        }
        Ok(n)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(why) = &self.invalid {
            return Err(StreamError::Config(why.clone()));
        }
        if self.inputs.is_empty() || self.inputs.iter().any(String::is_empty) || self.output.is_empty() {
            return Err(StreamError::Config(
                "a pipeline needs input topics and an output topic".into(),
            ));
        }
        if self.inputs.contains(&self.output) {
            return Err(StreamError::Config(format!(
                "output {} is also an input",
                self.output
            )));
        }
        if let Some((w, _)) = &self.windows {
            w.validate()?;
        }
        Ok(())
    }
}

/// Processing guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Guarantee {
    /// Outputs, state changes and input offsets commit in one Kafka transaction per
    /// checkpoint: read_committed readers see every input's effect exactly once across
    /// crashes and rebalances.
    #[default]
    ExactlyOnce,
    /// Outputs and state are written, then offsets committed: after a crash the records
    /// since the last checkpoint are processed again (duplicates possible, never loss).
    AtLeastOnce,
}

/// How a job runs. Every default is visible in `describe` and the docs.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// The job's name: its consumer group, and the prefix of its topics
    /// (`<name>-changelog`, `<name>.late`, `<name>.dlq`).
    pub name: String,
    /// How far out of order records may arrive (watermark = greatest timestamp minus
    /// this). Default 1 s.
    pub out_of_orderness_ms: i64,
    /// An input without records for this long stops holding the watermark back. Default 5 s.
    pub idle_timeout_ms: i64,
    /// Records stamped further than this ahead of the wall clock go to the side output
    /// instead of moving the watermark. Default 1 h.
    pub future_limit_ms: i64,
    /// How often state, outputs and offsets are committed. Default 100 ms.
    pub checkpoint_interval_ms: i64,
    /// Most records held between checkpoints before one is forced. Default 10,000.
    pub pending_records_max: usize,
    /// Exactly-once (default) or at-least-once.
    pub guarantee: Guarantee,
    /// Partitions of the output and side topics when the job creates them. Default 3.
    pub output_partitions: i32,
    /// This instance's id: with exactly-once, its transactional id is `<name>-<instance>`.
    pub instance: String,
    /// Where this instance answers interactive queries (`GET /state/{key}`); none by default.
    pub query_listen: Option<std::net::SocketAddr>,
    /// A directory for this instance's local copy of its state
    /// (`<dir>/<name>-<instance>.redb`): a task restored here loads it and reads only the
    /// changelog written since. None by default (restores read the whole changelog).
    pub state_dir: Option<std::path::PathBuf>,
    /// How often the local copy takes the committed changes. Default 5 s.
    pub local_copy_interval_ms: i64,
}

impl JobOptions {
    /// Defaults for a job called `name`.
    pub fn new(name: &str) -> JobOptions {
        JobOptions {
            name: name.to_string(),
            out_of_orderness_ms: 1_000,
            idle_timeout_ms: 5_000,
            future_limit_ms: 3_600_000,
            checkpoint_interval_ms: 100,
            pending_records_max: 10_000,
            guarantee: Guarantee::ExactlyOnce,
            output_partitions: 3,
            instance: "0".to_string(),
            query_listen: None,
            state_dir: None,
            local_copy_interval_ms: 5_000,
        }
    }

    /// Sets the out-of-orderness bound.
    pub fn out_of_orderness(mut self, bound: Duration) -> JobOptions {
        self.out_of_orderness_ms = duration_ms(bound);
        self
    }

    /// Sets the idle timeout.
    pub fn idle_timeout(mut self, timeout: Duration) -> JobOptions {
        self.idle_timeout_ms = duration_ms(timeout);
        self
    }

    /// Sets the checkpoint interval.
    pub fn checkpoint_interval(mut self, interval: Duration) -> JobOptions {
        self.checkpoint_interval_ms = duration_ms(interval);
        self
    }

    /// Sets the guarantee.
    pub fn guarantee(mut self, guarantee: Guarantee) -> JobOptions {
        self.guarantee = guarantee;
        self
    }

    /// Sets the instance id.
    pub fn instance(mut self, instance: &str) -> JobOptions {
        self.instance = instance.to_string();
        self
    }

    /// Answers interactive queries on `addr` (port 0 picks one).
    pub fn query_listen(mut self, addr: std::net::SocketAddr) -> JobOptions {
        self.query_listen = Some(addr);
        self
    }

    /// Keeps a local copy of the state under `dir`.
    pub fn state_dir(mut self, dir: impl Into<std::path::PathBuf>) -> JobOptions {
        self.state_dir = Some(dir.into());
        self
    }

    /// Sets how often the local copy takes the committed changes.
    pub fn local_copy_interval(mut self, interval: Duration) -> JobOptions {
        self.local_copy_interval_ms = duration_ms(interval);
        self
    }

    /// The changelog topic.
    pub fn changelog_topic(&self) -> String {
        format!("{}-changelog", self.name)
    }

    /// The repartition topic (jobs whose `key_by` repartitions).
    pub fn repartition_topic(&self) -> String {
        format!("{}-repartition", self.name)
    }

    /// The side output topic (late and too-far-in-future records).
    pub fn late_topic(&self) -> String {
        format!("{}.late", self.name)
    }

    /// The dead-letter topic (records that did not decode).
    pub fn dlq_topic(&self) -> String {
        format!("{}.dlq", self.name)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 200
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(StreamError::Config(format!(
                "job name {:?} is not a valid topic prefix",
                self.name
            )));
        }
        if self.out_of_orderness_ms < 0
            || self.idle_timeout_ms <= 0
            || self.checkpoint_interval_ms <= 0
            || self.local_copy_interval_ms <= 0
        {
            return Err(StreamError::Config("durations must be positive".into()));
        }
        if self.pending_records_max == 0 || self.output_partitions <= 0 {
            return Err(StreamError::Config(
                "pending_records_max and output_partitions must be positive".into(),
            ));
        }
        Ok(())
    }
}
