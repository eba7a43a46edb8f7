//! This machine's raw limits, measured in the same run as the broker (disk write, write +
//! fdatasync, 4 KiB append + fdatasync latency, loopback TCP), and the process probes the run
//! loop uses: CPU time and RSS from `/proc`, the broker's data directory, `sync` before a run.

use std::fs::{self, File};
use std::io::{IsTerminal, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::error::{err, Context, Result};
use crate::workload::{new_histogram, Latency, WorkloadArgs};

/// Bytes each disk baseline writes at most (the file is deleted afterwards), and never more
/// than half the file system's free space. Large on purpose: virtual disks often absorb the
/// first gigabyte or so in a host-side cache at several times their sustained rate, and the
/// broker runs it is compared with write many gigabytes.
const BASELINE_DISK_BYTES_MAX: u64 = 16 << 30;
/// Largest single write of the loopback TCP baseline.
const BASELINE_TCP_WRITE_BYTES_MAX: usize = 1 << 20;
/// Bytes per append of the fdatasync latency baseline: a few records, as a produce request
/// to one partition at a moderate rate carries.
const SYNC_LATENCY_WRITE_BYTES: usize = 4096;
/// Longest fdatasync latency baseline.
const SYNC_LATENCY_SECS_MAX: f64 = 5.0;
/// Linux reports process CPU time in clock ticks of 1/100 s (USER_HZ).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// Raw limits of this machine, measured in the same run.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    /// Directory the disk baselines wrote in.
    pub dir: String,
    /// Bytes per write of the disk and loopback baselines.
    pub write_size_bytes: usize,
    /// Buffered sequential writes.
    pub disk_write_mb_per_sec: f64,
    /// Bytes the buffered baseline wrote.
    pub disk_write_bytes: u64,
    /// Seconds the buffered baseline took.
    pub disk_write_secs: f64,
    /// Sequential writes, each followed by fdatasync.
    pub disk_write_fdatasync_mb_per_sec: f64,
    /// Bytes the fdatasync baseline wrote.
    pub disk_write_fdatasync_bytes: u64,
    /// Seconds the fdatasync baseline took.
    pub disk_write_fdatasync_secs: f64,
    /// fdatasyncs per second of the fdatasync baseline.
    pub fdatasyncs_per_sec: f64,
    /// Latency of appending 4 KiB and fdatasync, one at a time: the floor under any D1
    /// acknowledgement on this disk.
    pub append_fdatasync_latency_ms: Option<Latency>,
    /// One sender and one receiver thread over 127.0.0.1.
    pub loopback_tcp_mb_per_sec: f64,
    /// Seconds the loopback baseline took.
    pub loopback_tcp_secs: f64,
}

/// One disk baseline measurement.
#[derive(Debug, Clone, Copy)]
struct DiskSample {
    bytes: u64,
    syncs: u64,
    secs: f64,
}

impl DiskSample {
    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs.max(1e-9)
    }
}

/// Measures every baseline for `load.baseline_secs` (default `load.duration`) each, writing
/// `write_size` bytes at a time, in `load.baseline_dir` or next to the broker's data directory.
pub fn run_baselines(load: &WorkloadArgs, write_size: usize) -> Result<Baseline> {
    let args = load;
    // Next to the data directory (same file system) rather than inside it, which the broker owns.
    let dir = match (&args.baseline_dir, args.broker_pid.and_then(broker_data_dir)) {
        (Some(dir), _) => dir.clone(),
        (None, Some(data)) => data.parent().map_or(data.clone(), Path::to_path_buf),
        (None, None) => std::env::temp_dir(),
    };
    let secs = args.baseline_secs.unwrap_or(args.duration).max(1) as f64;
    if std::io::stderr().is_terminal() {
        eprint!("\rbaseline: disk and loopback TCP, {secs} s each  ");
    }
    let write = disk_baseline(&dir, write_size, secs, false)?;
    let sync = disk_baseline(&dir, write_size, secs, true)?;
    let small_sync = sync_latency_baseline(&dir, secs.min(SYNC_LATENCY_SECS_MAX))?;
    let (tcp_mbps, tcp_secs) = tcp_baseline(write_size.min(BASELINE_TCP_WRITE_BYTES_MAX), secs)?;
    if std::io::stderr().is_terminal() {
        eprint!("\r{:70}\r", "");
    }
    Ok(Baseline {
        dir: dir.display().to_string(),
        write_size_bytes: write_size,
        disk_write_mb_per_sec: write.mb_per_sec(),
        disk_write_bytes: write.bytes,
        disk_write_secs: write.secs,
        disk_write_fdatasync_mb_per_sec: sync.mb_per_sec(),
        disk_write_fdatasync_bytes: sync.bytes,
        disk_write_fdatasync_secs: sync.secs,
        fdatasyncs_per_sec: sync.syncs as f64 / sync.secs.max(1e-9),
        append_fdatasync_latency_ms: Latency::of(&small_sync),
        loopback_tcp_mb_per_sec: tcp_mbps,
        loopback_tcp_secs: tcp_secs,
    })
}

/// Appends of [`SYNC_LATENCY_WRITE_BYTES`] to a new file, each followed by fdatasync, for
/// `secs`: the latency of each (in microseconds) in a histogram.
fn sync_latency_baseline(dir: &Path, secs: f64) -> Result<Histogram<u64>> {
    let path = dir.join(format!(".rivulet-bench-sync-{}", std::process::id()));
    let mut hist = new_histogram()?;
    let mut measure = || -> std::io::Result<()> {
        let mut file = File::create(&path)?;
        let buf = vec![0x5au8; SYNC_LATENCY_WRITE_BYTES];
        let limit = Duration::from_secs_f64(secs);
        let started = Instant::now();
        let mut bytes: u64 = 0;
        while started.elapsed() < limit && bytes < BASELINE_DISK_BYTES_MAX {
            let t = Instant::now();
            file.write_all(&buf)?;
            file.sync_data()?;
            let us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
            hist.saturating_record(us.max(1));
            bytes += buf.len() as u64;
        }
        Ok(())
    };
    let result = measure();
    let _ = fs::remove_file(&path);
    result.with_context(|| format!("fdatasync latency baseline in {}", dir.display()))?;
    Ok(hist)
}

/// Sequential writes of `write_size` into a new file for `secs` (at most
/// [`BASELINE_DISK_BYTES_MAX`] or half the free space), optionally with an fdatasync after
/// each.
fn disk_baseline(dir: &Path, write_size: usize, secs: f64, sync: bool) -> Result<DiskSample> {
    let path = dir.join(format!(".rivulet-bench-baseline-{}", std::process::id()));
    let measure = || -> std::io::Result<(u64, u64, f64)> {
        let free = rustix::fs::statvfs(dir)
            .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
            .map_err(std::io::Error::from)?;
        let bytes_max = BASELINE_DISK_BYTES_MAX.min(free / 2);
        let mut file = File::create(&path)?;
        let buf = vec![0xa5u8; write_size];
        let limit = Duration::from_secs_f64(secs);
        let started = Instant::now();
        let mut bytes: u64 = 0;
        let mut syncs: u64 = 0;
        while started.elapsed() < limit && bytes < bytes_max {
            file.write_all(&buf)?;
            bytes += buf.len() as u64;
            if sync {
                file.sync_data()?;
                syncs += 1;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        // Not timed: leave no dirty pages behind for the next measurement.
        file.sync_all()?;
        Ok((bytes, syncs, elapsed))
    };
    let result = measure();
    let _ = fs::remove_file(&path);
    let (bytes, syncs, elapsed) = result.with_context(|| {
        format!(
            "disk baseline in {} (choose another with --baseline-dir)",
            dir.display()
        )
    })?;
    Ok(DiskSample {
        bytes,
        syncs,
        secs: elapsed,
    })
}

/// A sender and a receiver thread over 127.0.0.1 for `secs`; MB/s received and seconds taken.
fn tcp_baseline(write_size: usize, secs: f64) -> Result<(f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0").context("loopback baseline: bind")?;
    let addr = listener.local_addr().context("loopback baseline")?;
    let receiver = thread::spawn(move || -> Result<u64> {
        let (mut stream, _) = listener.accept().context("loopback baseline: accept")?;
        let mut buf = vec![0u8; BASELINE_TCP_WRITE_BYTES_MAX];
        let mut total: u64 = 0;
        loop {
            let n = stream.read(&mut buf).context("loopback baseline: read")?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    });
    let mut stream = TcpStream::connect(addr).context("loopback baseline: connect")?;
    let buf = vec![0x5au8; write_size];
    let limit = Duration::from_secs_f64(secs);
    let started = Instant::now();
    while started.elapsed() < limit {
        stream.write_all(&buf).context("loopback baseline: write")?;
    }
    stream
        .shutdown(Shutdown::Write)
        .context("loopback baseline: shutdown")?;
    let total = receiver
        .join()
        .map_err(|_| err!("a loopback receiver thread panicked"))??;
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    Ok((total as f64 / 1e6 / elapsed, elapsed))
}

/// Writes back every dirty page (`sync`) before a run, so the previous run's page-cache
/// writes are not flushed during this one: a D0 run can leave gigabytes dirty, and their
/// writeback would slow the next run's fdatasyncs.
pub(crate) fn settle_disk() {
    match std::process::Command::new("sync").status() {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("warning: sync before the run exited with {status}"),
        Err(e) => eprintln!("warning: cannot run sync before the run: {e}"),
    }
}

/// Process CPU time (user + system) in seconds from /proc/<pid>/stat.
pub(crate) fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS_PER_SEC)
}

/// CPU seconds of this process and the broker's resource counters at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSample {
    pub generator: Option<f64>,
    pub broker: Option<f64>,
    /// Context switches of all the broker's threads, voluntary and not.
    pub broker_context_switches: Option<f64>,
    /// Read- and write-family system calls of the broker (`syscr` + `syscw` of
    /// `/proc/<pid>/io`: read, pread, recv..., write, pwrite, send...; not futex, epoll or
    /// fdatasync).
    pub broker_rw_syscalls: Option<f64>,
    /// CPU seconds every CPU of the machine spent busy (`/proc/stat`: all but idle and
    /// iowait), kernel threads included: writeback, interrupts and other processes too.
    pub machine: Option<f64>,
}

/// Busy CPU seconds of the whole machine since boot.
fn machine_busy_secs() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(busy as f64 / CLOCK_TICKS_PER_SEC)
}

/// CPU time of this process and, when its pid is known, the broker's counters.
pub(crate) fn sample_cpu(broker_pid: Option<u32>) -> CpuSample {
    CpuSample {
        generator: cpu_secs("self"),
        broker: broker_pid.and_then(|pid| cpu_secs(&pid.to_string())),
        broker_context_switches: broker_pid.and_then(context_switches),
        broker_rw_syscalls: broker_pid.and_then(rw_syscalls),
        machine: machine_busy_secs(),
    }
}

/// Context switches summed over every thread of `pid`.
fn context_switches(pid: u32) -> Option<f64> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let Ok(status) = fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if line.starts_with("voluntary_ctxt_switches:") || line.starts_with("nonvoluntary_ctxt_switches:")
            {
                total += line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Some(total as f64)
}

/// `syscr` + `syscw` of `/proc/<pid>/io`.
fn rw_syscalls(pid: u32) -> Option<f64> {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| -> Option<u64> {
        io.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("syscr:")? + field("syscw:")?) as f64)
}

/// Threads of `pid` now.
pub(crate) fn threads(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("Threads:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Resident set size of a process in MiB, from /proc/<pid>/status.
pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The broker's `--data-dir` from its command line, resolved against its working directory.
fn broker_data_dir(pid: u32) -> Option<PathBuf> {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let dir = words.iter().enumerate().find_map(|(i, w)| {
        if w == "--data-dir" {
            words.get(i + 1).cloned()
        } else {
            w.strip_prefix("--data-dir=").map(str::to_string)
        }
    })?;
    let dir = PathBuf::from(dir);
    if dir.is_absolute() {
        Some(dir)
    } else {
        Some(fs::read_link(format!("/proc/{pid}/cwd")).ok()?.join(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(cpu_secs("self").is_some_and(|s| s >= 0.0));
        assert!(rss_mib(std::process::id()).is_some_and(|m| m > 0.0));
        let me = std::process::id();
        assert!(threads(me).is_some_and(|n| n >= 1));
        assert!(context_switches(me).is_some());
        let before = rw_syscalls(me).expect("syscalls counted");
        let _ = std::fs::read_to_string("/proc/self/stat");
        assert!(
            rw_syscalls(me).expect("syscalls counted") > before,
            "a read was counted"
        );
        assert_eq!(broker_data_dir(std::process::id()), None);
    }
}
