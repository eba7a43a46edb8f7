//! A `rivulet serve` started for `compare`, on a free port, stopped when dropped.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{bail, Context, Result};

/// How long a started Rivulet may take to accept connections.
const RIVULET_START_SECS_MAX: u64 = 30;

/// A `rivulet serve` started for the run; stopped and cleaned up on drop.
pub(super) struct StartedRivulet {
    /// Its Kafka address.
    pub address: String,
    /// Its AMQP 0-9-1 URL.
    pub amqp_url: String,
    child: Child,
    data_dir: PathBuf,
    remove_data_dir: bool,
}

impl StartedRivulet {
    /// Starts `rivulet serve` (this executable) on a free port with `data_dir`, or a new
    /// directory under `base` that is removed afterwards, and `extra` arguments, and waits
    /// until it listens.
    pub fn start(
        data_dir: Option<PathBuf>,
        base: &std::path::Path,
        extra: &[&str],
    ) -> Result<StartedRivulet> {
        let (data_dir, remove_data_dir) = match data_dir {
            Some(dir) => (dir, false),
            None => (
                base.join(format!("rivulet-bench-compare-{}", std::process::id())),
                true,
            ),
        };
        // Both held until both are known, so they differ.
        let kafka = TcpListener::bind("127.0.0.1:0").context("finding a free port for Rivulet")?;
        let amqp = TcpListener::bind("127.0.0.1:0").context("finding a free port for Rivulet")?;
        let port = |l: &TcpListener| l.local_addr().map(|a| a.port()).context("a bound port");
        let address = format!("127.0.0.1:{}", port(&kafka)?);
        let amqp_address = format!("127.0.0.1:{}", port(&amqp)?);
        drop((kafka, amqp));
        let exe = std::env::current_exe().context("finding the rivulet executable")?;
        let child = Command::new(exe)
            .args(["serve", "--listen", &address, "--http-listen", "off"])
            .args(["--amqp-listen", &amqp_address])
            .args(extra)
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting rivulet serve")?;
        let mut started = StartedRivulet {
            child,
            address,
            amqp_url: format!("amqp://{amqp_address}"),
            data_dir,
            remove_data_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(RIVULET_START_SECS_MAX);
        loop {
            if TcpStream::connect(&started.address).is_ok() {
                return Ok(started);
            }
            if let Ok(Some(status)) = started.child.try_wait() {
                bail!("rivulet serve exited at start: {status}");
            }
            if Instant::now() > deadline {
                bail!("rivulet serve did not listen within {RIVULET_START_SECS_MAX} s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for StartedRivulet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.remove_data_dir {
            let _ = fs::remove_dir_all(&self.data_dir);
        }
    }
}
