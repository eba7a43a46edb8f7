//! Starts and stops `rivulet serve` for tests.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a server may take to start accepting connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `rivulet serve`, killed on drop.
pub struct Rivulet {
    child: Option<Child>,
    port: u16,
    http_port: u16,
    amqp_port: u16,
    eventstore_port: u16,
    dir: Arc<tempfile::TempDir>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

/// Picks a free TCP port on 127.0.0.1 for a server.
///
/// Ports come from 20000-31999, below the kernel's ephemeral range, so a port released by a
/// server that is restarting is not handed out again by `bind(0)` to another test or to a
/// client socket in the meantime; none is handed out twice by one test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for _ in 0..1_000 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mixed = (nanos ^ u64::from(std::process::id()) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .wrapping_mul(0xbf58_476d_1ce4_e5b9)
            .rotate_left(31);
        let port = 20_000 + (mixed % 12_000) as u16;
        // A port handed out before may not be bound yet (a server still starting): never
        // hand it out twice in one process.
        static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Line `rivulet serve` logs once all its listeners are bound.
const SERVING_LINE: &str = "Rivulet is serving";

impl Rivulet {
    /// Starts a server with a fresh data directory.
    pub fn start() -> Rivulet {
        Rivulet::start_with(&[], &[])
    }

    /// Starts a server with extra flags and environment variables.
    pub fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Rivulet {
        Rivulet::start_on(free_port(), args, envs)
    }

    /// Starts a server whose `--listen` (if given in `args`) uses `port`.
    pub fn start_on(port: u16, args: &[&str], envs: &[(&str, &str)]) -> Rivulet {
        let mut r = Rivulet::unstarted(port, args, envs);
        r.spawn();
        r
    }

    /// A server that is not running yet (its temporary directory exists, its data directory
    /// does not): prepare [`Rivulet::data_dir`], then call [`Rivulet::respawn`].
    pub fn unstarted(port: u16, args: &[&str], envs: &[(&str, &str)]) -> Rivulet {
        let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
        Rivulet {
            child: None,
            port,
            http_port: free_port(),
            amqp_port: free_port(),
            eventstore_port: free_port(),
            dir,
            args: args.iter().map(|s| s.to_string()).collect(),
            envs: envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    /// The data directory (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temporary directory (the data directory is `data` inside it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("rivulet.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rivulet"));
        cmd.arg("serve");
        if !self.args.iter().any(|a| a == "--listen") {
            cmd.arg("--listen").arg(format!("127.0.0.1:{}", self.port));
        }
        if !self.args.iter().any(|a| a == "--http-listen") {
            cmd.arg("--http-listen")
                .arg(format!("127.0.0.1:{}", self.http_port));
        }
        if !self.args.iter().any(|a| a == "--amqp-listen") {
            cmd.arg("--amqp-listen")
                .arg(format!("127.0.0.1:{}", self.amqp_port));
        }
        if !self.args.iter().any(|a| a == "--eventstore-listen") {
            cmd.arg("--eventstore-listen")
                .arg(format!("127.0.0.1:{}", self.eventstore_port));
        }
        cmd.arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env_remove("RIVULET_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        // This process's own "serving" line, not a connect that another test's server on a
        // reused port could answer, says the server is up.
        let serving_before = self.log().matches(SERVING_LINE).count();
        let child = cmd.spawn().expect("spawn rivulet serve");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if self.log().matches(SERVING_LINE).count() > serving_before
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("rivulet serve exited early with {status}:\n{}", self.log());
                }
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "rivulet serve did not start listening:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The AMQP URL of this server.
    pub fn amqp_url(&self) -> String {
        format!("amqp://127.0.0.1:{}", self.amqp_port)
    }

    /// `127.0.0.1:<port>` of the event store's gRPC listener (`kurrentdb://` clients).
    pub fn eventstore_address(&self) -> String {
        format!("127.0.0.1:{}", self.eventstore_port)
    }

    /// `http://127.0.0.1:<http port>`: the HTTP gateway.
    pub fn http_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("server running")
    }

    /// Resident memory of the server in KiB (Linux), if readable.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }

    /// The server's log output so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("rivulet serve did not stop after SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL (no shutdown, no final fsync) and waits for it to exit.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("server running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait after SIGKILL");
    }

    /// Starts the process again on the same port, data directory and settings after
    /// [`Rivulet::kill9`] or [`Rivulet::stop`].
    pub fn respawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        self.spawn();
    }

    /// Stops gracefully (asserting exit code 0) and starts again on the same port and data.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "graceful shutdown exited with {status}:\n{}",
            self.log()
        );
        self.spawn();
    }
}

impl Drop for Rivulet {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: String = log
                .lines()
                .rev()
                .take(80)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("---- rivulet serve log (tail) ----\n{tail}");
        }
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Asserts that a client program exited 0 and printed each of `checks` (its `OK ...`
/// lines); shows its output otherwise.
pub fn assert_client_checks(output: &std::process::Output, checks: &[&str]) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for check in checks {
        assert!(stdout.contains(check), "{check} missing from:\n{stdout}");
    }
}

/// The bootstrap user of servers started with logins on.
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// A server with `--auth` and its bootstrap user.
pub fn start_with_auth() -> Rivulet {
    Rivulet::start_with(
        &["--auth", "true"],
        &[
            ("RIVULET_BOOTSTRAP_USER", ADMIN),
            ("RIVULET_BOOTSTRAP_PASSWORD", ADMIN_PASSWORD),
        ],
    )
}

/// A program's status and output, for assertion messages.
pub fn show(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `curl` status code of `path` with `user:password`, or without credentials.
pub fn http_status(server: &Rivulet, path: &str, login: Option<&str>) -> String {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
    if let Some(login) = login {
        cmd.args(["-u", login]);
    }
    let out = cmd
        .arg(format!("{}{path}", server.http_base()))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `curl` status and body of a request with extra arguments.
pub fn curl(server: &Rivulet, method: &str, path: &str, args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", method])
        .args(args)
        .arg(format!("{}{path}", server.http_base()))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}
