//! What the peer commands (`nats`, `rabbitmq-stream`, `rabbitmq-quorum`) share: their
//! arguments and how a peer run starts.

use crate::baseline::{run_baselines, Baseline};
use crate::driver::Driver;
use crate::error::Result;
use crate::report::Report;
use crate::run::{self, default_prefix, Target};
use crate::workload::WorkloadArgs;
use crate::Format;

/// Bytes per write of the disk baselines (peers have no batch size of their own).
const BASELINE_WRITE_BYTES: usize = 1 << 20;

/// Arguments every peer command shares.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// The workload.
    #[command(flatten)]
    pub load: WorkloadArgs,
    /// Name prefix of the streams or queues created for the run [default: rivulet-bench-<pid>]
    #[arg(long)]
    pub prefix: Option<String>,
    /// Output format: text or json
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

impl PeerArgs {
    /// `load` with the command line's defaults for the rest.
    pub(crate) fn with_defaults(load: &WorkloadArgs) -> PeerArgs {
        PeerArgs {
            load: load.clone(),
            prefix: None,
            format: Format::Text,
        }
    }
}

/// Runs the whole benchmark against one peer: baselines (unless `--baseline false`), then
/// each durability level. `server` says where the peer was reached; `client` describes the
/// client settings.
pub(crate) fn run_peer<D: Driver>(driver: D, args: &PeerArgs, server: &str, client: &str) -> Result<Report> {
    args.load.validate()?;
    let baseline = if args.load.baseline {
        Some(run_baselines(&args.load, BASELINE_WRITE_BYTES)?)
    } else {
        None
    };
    measure_peer(driver, args, server, client, baseline)
}

/// [`run_peer`] without baselines; `baseline` is the machine's limits measured earlier in
/// the same run, if any.
pub(crate) fn measure_peer<D: Driver>(
    driver: D,
    args: &PeerArgs,
    server: &str,
    client: &str,
    baseline: Option<Baseline>,
) -> Result<Report> {
    let target = Target {
        server: server.to_string(),
        client: client.to_string(),
        prefix: args.prefix.clone().unwrap_or_else(default_prefix),
    };
    run::measure(driver, &args.load, &target, baseline)
}
