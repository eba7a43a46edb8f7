//! Log append and read throughput beside a raw-disk baseline measured in the same run.
//!
//! `cargo bench -p rivulet-log --bench log` (env: `RIVULET_BENCH_MB` MiB per case,
//! default 256; `RIVULET_BENCH_REPEAT` runs per case, default 3 (medians reported);
//! `RIVULET_BENCH_ONLY` e.g. `1 MiB/none`; `RIVULET_BENCH_CRC=1` measures batch validation alone; `RIVULET_BENCH_DIR` where files go, default the system temp dir).
//!
//! Workloads: 1 KiB records in 16 KiB and 1 MiB batches, fsync policy `none` and `always`,
//! 1, 4 and 16 concurrent appenders; then a sequential read of the log. Baselines use the
//! same sizes with no log logic: plain sequential `pwrite`s (plus one fdatasync per write
//! for `always`) and plain sequential `pread`s of a file of the same size.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rivulet_log::batch;
use rivulet_log::record::Record;
use rivulet_log::{FsyncPolicy, Log, LogConfig};

const RECORD_BYTES: usize = 1024;

fn make_batch(batch_bytes: usize) -> Vec<u8> {
    let n = (batch_bytes / (RECORD_BYTES + 16)).max(1);
    let records: Vec<Record> = (0..n)
        .map(|i| {
            Record::new(
                Some(format!("key-{i}").into_bytes()),
                Some(vec![b'x'; RECORD_BYTES]),
            )
        })
        .collect();
    batch::build(0, 1_700_000_000_000, None, &records)
}

/// Writes back all dirty pages so every measurement starts from the same page-cache state.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn mbps(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

fn raw_write(dir: &Path, batch: &[u8], total_bytes: u64, fsync_each: bool) -> f64 {
    let path = dir.join("raw.bin");
    let _ = std::fs::remove_file(&path);
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("raw file");
    let count = (total_bytes / batch.len() as u64).max(1);
    let start = Instant::now();
    let mut position = 0u64;
    for _ in 0..count {
        file.write_all_at(batch, position).expect("write");
        if fsync_each {
            file.sync_data().expect("fdatasync");
        }
        position += batch.len() as u64;
    }
    let elapsed = start.elapsed();
    mbps(position, elapsed)
}

fn raw_read(dir: &Path, chunk_bytes: usize) -> f64 {
    let path = dir.join("raw.bin");
    let file = OpenOptions::new().read(true).open(&path).expect("raw file");
    let len = file.metadata().expect("meta").len();
    let mut buf = vec![0u8; chunk_bytes];
    let start = Instant::now();
    let mut position = 0u64;
    while position < len {
        let n = file.read_at(&mut buf, position).expect("read");
        if n == 0 {
            break;
        }
        position += n as u64;
    }
    mbps(position, start.elapsed())
}

fn log_append(
    dir: &Path,
    batch: &[u8],
    total_bytes: u64,
    fsync: FsyncPolicy,
    appenders: usize,
) -> (f64, u64, u64) {
    let log_dir = dir.join(format!("log-{}-{}-{appenders}", batch.len(), fsync.as_string()));
    let _ = std::fs::remove_dir_all(&log_dir);
    let config = LogConfig {
        fsync,
        max_batch_bytes: 2 << 20,
        ..LogConfig::default()
    };
    let log = Log::open(&log_dir, config).expect("open log");
    let count = (total_bytes / batch.len() as u64).max(appenders as u64);
    let per = count / appenders as u64;
    // Appenders are tasks on a two-worker runtime, as producer connections are in the broker:
    // each appends, then awaits durability.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let start = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..appenders)
            .map(|_| {
                let log = log.clone();
                // Each appender sends its own buffer, as separate producers would.
                let batch = batch.to_vec();
                tokio::spawn(async move {
                    for _ in 0..per {
                        let out = log.append(&batch).expect("append");
                        out.durable.wait().await.expect("durable");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("appender");
        }
    });
    let elapsed = start.elapsed();
    let bytes = per * appenders as u64 * batch.len() as u64;
    let appends = per * appenders as u64;
    let syncs = log.fsync_count();
    log.close().expect("close");
    (mbps(bytes, elapsed), appends, syncs)
}

fn log_read(dir: &Path, batch_len: usize, chunk_bytes: usize) -> f64 {
    let log_dir = dir.join(format!("log-{batch_len}-none-1"));
    let log = Log::open(&log_dir, LogConfig::default()).expect("open log");
    let start = Instant::now();
    let mut offset = log.log_start_offset();
    let mut bytes = 0u64;
    loop {
        let r = log.read(offset, chunk_bytes).expect("read");
        if r.records.is_empty() {
            break;
        }
        bytes += r.records.len() as u64;
        // Next offset: after the last batch returned.
        let mut at = 0;
        let mut next = offset;
        while at < r.records.len() {
            let h = batch::BatchHeader::parse(&r.records[at..]).expect("header");
            next = h.next_offset();
            at += h.total_bytes();
        }
        offset = next;
    }
    mbps(bytes, start.elapsed())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total_mb: u64 = std::env::var("RIVULET_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let total = total_mb << 20;
    let repeat: usize = std::env::var("RIVULET_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let base = std::env::var("RIVULET_BENCH_DIR").map_or_else(|_| std::env::temp_dir(), Into::into);
    let dir = tempfile::Builder::new()
        .prefix("rivulet-log-bench")
        .tempdir_in(base)
        .expect("bench dir");
    if std::env::var("RIVULET_BENCH_CRC").is_ok() {
        crc_and_validate();
        return;
    }
    // e.g. RIVULET_BENCH_ONLY="1 MiB/none,16 KiB/always"
    let only = std::env::var("RIVULET_BENCH_ONLY").unwrap_or_default();
    println!(
        "# rivulet-log append/read benchmark: {total_mb} MiB per case, 1 KiB records, dir {}",
        dir.path().display()
    );
    println!();
    println!(
        "| batch | fsync | appenders | log MB/s | baseline MB/s | log / baseline | appends per fdatasync |"
    );
    println!("|---|---|---|---|---|---|---|");
    for batch_bytes in [16 << 10, 1 << 20] {
        let batch = make_batch(batch_bytes);
        let label = if batch_bytes == 16 << 10 {
            "16 KiB"
        } else {
            "1 MiB"
        };
        for (fsync, name) in [(FsyncPolicy::None, "none"), (FsyncPolicy::Always, "always")] {
            if !only.is_empty() && !only.contains(&format!("{label}/{name}")) {
                continue;
            }
            // fsync-per-append cases are slow: cap their volume so a run stays short.
            let case_total = if fsync == FsyncPolicy::Always {
                total / 4
            } else {
                total
            };
            for appenders in [1usize, 4, 16] {
                if std::env::var("RIVULET_BENCH_APPENDERS").is_ok_and(|a| a != appenders.to_string()) {
                    continue;
                }
                append_case(
                    dir.path(),
                    &batch,
                    (label, name),
                    fsync,
                    appenders,
                    case_total,
                    repeat,
                );
            }
        }
        let _ = raw_write(dir.path(), &batch, total, false);
        settle();
        let mut raws: Vec<f64> = (0..repeat).map(|_| raw_read(dir.path(), 1 << 20)).collect();
        let mut gots: Vec<f64> = (0..repeat)
            .map(|_| log_read(dir.path(), batch.len(), 1 << 20))
            .collect();
        let (raw, got) = (median(&mut raws), median(&mut gots));
        let _ = std::fs::remove_dir_all(dir.path().join(format!("log-{}-none-1", batch.len())));
        println!(
            "| {label} | read (1 MiB fetches) | 1 | {got:.0} | {raw:.0} | {:.2} | - |",
            got / raw
        );
    }
}

/// CRC-32C and batch validation speed on 1 MiB buffers.
fn crc_and_validate() {
    let buf = vec![7u8; 1 << 20];
    let start = Instant::now();
    let mut acc = 0u32;
    for _ in 0..2000 {
        acc ^= crc32c::crc32c(&buf);
    }
    println!("crc32c: {:.0} MB/s ({acc})", mbps(2000 << 20, start.elapsed()));
    let b = make_batch(1 << 20);
    let start = Instant::now();
    for _ in 0..500 {
        batch::validate(&b, 2 << 20).expect("valid");
    }
    println!(
        "validate: {:.0} MB/s",
        mbps(500 * b.len() as u64, start.elapsed())
    );
}

/// One table row: the log against the raw-disk baseline for one batch size, policy and
/// appender count. Baseline and log alternate, each from a settled page cache; medians of
/// `repeat` runs are reported because this machine is noisy.
fn append_case(
    dir: &std::path::Path,
    batch: &[u8],
    (label, name): (&str, &str),
    fsync: FsyncPolicy,
    appenders: usize,
    case_total: u64,
    repeat: usize,
) {
    let mut baselines = Vec::new();
    let mut results = Vec::new();
    let (mut appends, mut syncs) = (0, 0);
    for _ in 0..repeat {
        settle();
        baselines.push(raw_write(dir, batch, case_total, fsync == FsyncPolicy::Always));
        settle();
        let (got, a, s) = log_append(dir, batch, case_total, fsync, appenders);
        results.push(got);
        (appends, syncs) = (appends + a, syncs + s);
    }
    let baseline = median(&mut baselines);
    let got = median(&mut results);
    let keep_for_read = fsync == FsyncPolicy::None && appenders == 1;
    if !keep_for_read {
        let _ = std::fs::remove_dir_all(dir.join(format!(
            "log-{}-{}-{appenders}",
            batch.len(),
            fsync.as_string()
        )));
    }
    let per_sync = if syncs == 0 {
        "-".to_string()
    } else {
        format!("{:.1}", appends as f64 / syncs as f64)
    };
    println!(
        "| {label} | {name} | {appenders} | {got:.0} | {baseline:.0} | {:.2} | {per_sync} |",
        got / baseline
    );
}
