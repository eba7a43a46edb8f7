//! Compares `redb` and `fjall` as the stream engine's local state store.
//!
//! Without `--store`, the binary is the orchestrator: it re-runs itself once per
//! store and run (in a fresh process, so CPU accounting and background threads
//! never leak between stores), alternating the order, and prints one markdown
//! table. With `--store redb|fjall` it runs the workload once and prints rows.
//!
//! Workload, per store: `load` (all entries in durable snapshot commits),
//! `update` (durable snapshots of upserts + deletes), then close, reopen and
//! `restore` (one full prefix scan per partition). See README.md.
//!
//! `--workload eventstore-index` runs the event store index workload instead
//! (module `eventstore`).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

mod eventstore;

type Res<T> = Result<T, Box<dyn Error>>;

/// One durable snapshot: upserts, deletes and per-partition source positions.
#[derive(Default)]
struct Snapshot {
    upserts: Vec<(Vec<u8>, Vec<u8>)>,
    deletes: Vec<Vec<u8>>,
    positions: Vec<(u32, u64)>,
}

/// The operations the engine needs from a local state store.
trait Store: Sized {
    /// Opens (or creates) the store inside directory `dir`.
    fn open(dir: &Path) -> Res<Self>;
    /// Applies `snap` atomically and returns once it is durable (fsynced).
    fn commit(&mut self, snap: &Snapshot) -> Res<()>;
    /// Reads every entry under `prefix`; returns (entries, key+value bytes).
    fn scan_prefix(&self, prefix: &[u8]) -> Res<(u64, u64)>;
}

const STATE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("state");
const POSITIONS: redb::TableDefinition<u32, u64> = redb::TableDefinition::new("positions");

impl Store for redb::Database {
    fn open(dir: &Path) -> Res<Self> {
        Ok(redb::Database::create(dir.join("state.redb"))?)
    }

    fn commit(&mut self, snap: &Snapshot) -> Res<()> {
        let mut tx = self.begin_write()?;
        tx.set_durability(redb::Durability::Immediate)?;
        {
            let mut state = tx.open_table(STATE)?;
            for (k, v) in &snap.upserts {
                state.insert(k.as_slice(), v.as_slice())?;
            }
            for k in &snap.deletes {
                state.remove(k.as_slice())?;
            }
            let mut positions = tx.open_table(POSITIONS)?;
            for &(p, off) in &snap.positions {
                positions.insert(p, off)?;
            }
        }
        Ok(tx.commit()?)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Res<(u64, u64)> {
        use redb::ReadableDatabase;
        let tx = self.begin_read()?;
        let table = tx.open_table(STATE)?;
        let (mut n, mut bytes) = (0, 0);
        for item in table.range(prefix..)? {
            let (k, v) = item?;
            if !k.value().starts_with(prefix) {
                break;
            }
            n += 1;
            bytes += (k.value().len() + v.value().len()) as u64;
        }
        Ok((n, bytes))
    }
}

/// fjall database with one keyspace for state and one for positions.
struct Fjall {
    db: fjall::Database,
    state: fjall::Keyspace,
    positions: fjall::Keyspace,
}

impl Store for Fjall {
    fn open(dir: &Path) -> Res<Self> {
        let db = fjall::Database::builder(dir).open()?;
        let state = db.keyspace("state", fjall::KeyspaceCreateOptions::default)?;
        let positions = db.keyspace("positions", fjall::KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, state, positions })
    }

    fn commit(&mut self, snap: &Snapshot) -> Res<()> {
        let mut batch = self.db.batch();
        for (k, v) in &snap.upserts {
            batch.insert(&self.state, k.as_slice(), v.as_slice());
        }
        for k in &snap.deletes {
            batch.remove(&self.state, k.as_slice());
        }
        for &(p, off) in &snap.positions {
            batch.insert(&self.positions, p.to_be_bytes(), off.to_be_bytes());
        }
        batch.commit()?;
        Ok(self.db.persist(fjall::PersistMode::SyncAll)?)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Res<(u64, u64)> {
        let (mut n, mut bytes) = (0, 0);
        for guard in self.state.prefix(prefix) {
            let (k, v) = guard.into_inner()?;
            n += 1;
            bytes += (k.len() + v.len()) as u64;
        }
        Ok((n, bytes))
    }
}

/// Benchmark sizes; every field is settable as `--field-name value`.
#[derive(Clone, Debug)]
struct Args {
    workload: String,
    store: Option<String>,
    run: u32,
    runs: u32,
    partitions: u32,
    entries: u64,
    snapshot_size: u64,
    update_snapshots: u32,
    updates: u64,
    deletes: u64,
    seed: u64,
    // eventstore-index workload
    appends: u64,
    streams: u64,
    group: u64,
    sync_ms: u64,
    reads: u32,
    read_events: u64,
}

impl Args {
    fn parse() -> Res<Self> {
        let mut a = Args {
            store: None,
            run: 1,
            runs: 3,
            partitions: 8,
            entries: 1_000_000,
            snapshot_size: 50_000,
            update_snapshots: 20,
            updates: 25_000,
            deletes: 5_000,
            seed: 0x5eed_cafe,
            workload: "state-store".into(),
            appends: 200_000,
            streams: 1_000,
            group: 16,
            sync_ms: 1_000,
            reads: 500,
            read_events: 1_000,
        };
        let argv: Vec<String> = std::env::args().skip(1).collect();
        for pair in argv.chunks(2) {
            let [flag, val] = pair else {
                return Err(format!("missing value for {pair:?}").into());
            };
            match flag.as_str() {
                "--store" => a.store = Some(val.clone()),
                "--run" => a.run = val.parse()?,
                "--runs" => a.runs = val.parse()?,
                "--partitions" => a.partitions = val.parse()?,
                "--entries" => a.entries = val.parse()?,
                "--snapshot-size" => a.snapshot_size = val.parse()?,
                "--update-snapshots" => a.update_snapshots = val.parse()?,
                "--updates" => a.updates = val.parse()?,
                "--deletes" => a.deletes = val.parse()?,
                "--seed" => a.seed = val.parse()?,
                "--workload" => a.workload = val.clone(),
                "--appends" => a.appends = val.parse()?,
                "--streams" => a.streams = val.parse()?,
                "--group" => a.group = val.parse()?,
                "--sync-ms" => a.sync_ms = val.parse()?,
                "--reads" => a.reads = val.parse()?,
                "--read-events" => a.read_events = val.parse()?,
                _ => return Err(format!("unknown flag {flag}").into()),
            }
        }
        match a.workload.as_str() {
            "state-store" => {}
            "eventstore-index" if a.streams >= 2 && a.group >= 1 && a.read_events >= 1 => {}
            "eventstore-index" => return Err("need --streams >= 2, --group and --read-events >= 1".into()),
            w => return Err(format!("unknown workload {w} (state-store, eventstore-index)").into()),
        }
        Ok(a)
    }

    /// The flags that pass the workload sizes on to a child process.
    fn size_flags(&self) -> Vec<String> {
        let pairs = [
            ("--partitions", self.partitions.to_string()),
            ("--entries", self.entries.to_string()),
            ("--snapshot-size", self.snapshot_size.to_string()),
            ("--update-snapshots", self.update_snapshots.to_string()),
            ("--updates", self.updates.to_string()),
            ("--deletes", self.deletes.to_string()),
            ("--seed", self.seed.to_string()),
            ("--workload", self.workload.clone()),
            ("--appends", self.appends.to_string()),
            ("--streams", self.streams.to_string()),
            ("--group", self.group.to_string()),
            ("--sync-ms", self.sync_ms.to_string()),
            ("--reads", self.reads.to_string()),
            ("--read-events", self.read_events.to_string()),
        ];
        pairs.into_iter().flat_map(|(f, v)| [f.to_string(), v]).collect()
    }
}

/// Tiny xorshift64* generator: deterministic, seeded, no `rand` dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Key of entry `i`: 4-byte big-endian partition + JSON-like key.
///
/// The auction id is scrambled (a bijection mod 10^6) so inserts are not
/// in key order; the timestamp keeps every key unique.
fn key(i: u64, partitions: u32) -> Vec<u8> {
    let partition = (i % u64::from(partitions)) as u32;
    let auction = (i * 611_953) % 1_000_000;
    let mut k = partition.to_be_bytes().to_vec();
    k.extend_from_slice(format!("[\"auction-{auction:06}\",{}]", 1_700_000_000_000 + i).as_bytes());
    k
}

/// About 100 bytes of JSON-ish value for entry `i` at `version`.
fn value(i: u64, version: u64) -> Vec<u8> {
    format!(
        "{{\"bidder\":{},\"price\":{},\"count\":{version},\"channel\":\"web\",\"currency\":\"USD\",\"extra\":\"{:016x}\"}}",
        1_000_000 + i % 7_919,
        (i * 31 + version * 17) % 100_000,
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ version,
    )
    .into_bytes()
}

/// Process CPU seconds (user + system, all threads) from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|s| s.parse().unwrap_or(0)).collect();
    (f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) as f64 / 100.0 // CLK_TCK = 100
}

/// Peak resident set size in MiB (`VmHWM`), cumulative over the process.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap_or("");
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Allocated and apparent bytes of everything under `path` (like `du`).
fn disk_usage(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return (0, 0);
    };
    let own = (meta.blocks() * 512, meta.len());
    if !meta.is_dir() {
        return own;
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| disk_usage(&e.path()))
        .fold(own, |(a, b), (c, d)| (a + c, b + d))
}

/// Times `f` (which returns the number of entries it handled); returns a table
/// row that still lacks its last (disk size) cell.
fn phase(args: &Args, store: &str, name: &str, f: impl FnOnce() -> Res<u64>) -> Res<String> {
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let entries = f()?;
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    Ok(format!(
        "| {} | {store} | {name} | {entries} | {wall:.2} | {} | {cpu:.2} | {:.0} |",
        args.run,
        if entries == 0 {
            "-".into()
        } else {
            format!("{:.0}", entries as f64 / wall)
        },
        peak_rss_mib(),
    ))
}

/// Runs load, update and restore against a fresh store in `dir`.
fn run_store<S: Store>(args: &Args, name: &str, dir: &Path) -> Res<()> {
    let parts = args.partitions;
    let positions = |s: u64| (0..parts).map(|p| (p, s)).collect::<Vec<_>>();
    let mut live = vec![true; args.entries as usize];
    let mut db = S::open(dir)?;

    let load = phase(args, name, "load", || {
        let mut start = 0;
        while start < args.entries {
            let end = (start + args.snapshot_size).min(args.entries);
            let upserts = (start..end).map(|i| (key(i, parts), value(i, 0))).collect();
            db.commit(&Snapshot {
                upserts,
                deletes: vec![],
                positions: positions(end),
            })?;
            start = end;
        }
        Ok(args.entries)
    })?;
    println!("{load} |");

    let mut rng = XorShift(args.seed | 1);
    // Last snapshot that touched each entry, so no key appears twice in one batch.
    let mut touched = vec![0u32; args.entries as usize];
    let mut pick = |round: u32, live: &[bool]| loop {
        let i = rng.next() % args.entries;
        if live[i as usize] && touched[i as usize] != round {
            touched[i as usize] = round;
            return i;
        }
    };
    let update = phase(args, name, "update", || {
        let mut ops = 0;
        for round in 1..=args.update_snapshots {
            let mut snap = Snapshot {
                positions: positions(args.entries + u64::from(round)),
                ..Default::default()
            };
            for _ in 0..args.deletes {
                let i = pick(round, &live);
                live[i as usize] = false;
                snap.deletes.push(key(i, parts));
            }
            for _ in 0..args.updates {
                let i = pick(round, &live);
                snap.upserts.push((key(i, parts), value(i, u64::from(round))));
            }
            ops += (snap.upserts.len() + snap.deletes.len()) as u64;
            db.commit(&snap)?;
        }
        Ok(ops)
    })?;

    // Close, measure the files, reopen: what a restarted process would pay.
    // Timed, because closing fjall waits for in-flight flushes/compactions.
    let (mut size, mut reopened) = ((0, 0), None);
    let reopen = phase(args, name, "close+reopen", || {
        drop(db);
        size = disk_usage(dir);
        reopened = Some(S::open(dir)?);
        Ok(0)
    })?;
    let mib = |b: u64| b as f64 / 1048576.0;
    println!("{update} {:.1} / {:.1} |", mib(size.0), mib(size.1));
    println!("{reopen} |");

    let db = reopened.ok_or("reopen produced no store")?;
    let expected = live.iter().filter(|&&l| l).count() as u64;
    let restore = phase(args, name, "restore", || {
        let (mut n, mut bytes) = (0, 0);
        for p in 0..parts {
            let (pn, pb) = db.scan_prefix(&p.to_be_bytes())?;
            (n, bytes) = (n + pn, bytes + pb);
        }
        if n != expected {
            return Err(format!("{name}: restored {n} entries, expected {expected}").into());
        }
        std::hint::black_box(bytes);
        Ok(n)
    })?;
    println!("{restore} |");
    Ok(())
}

/// Runs one store once, in this process, in a fresh directory under /tmp.
fn child(args: &Args, store: &str) -> Res<()> {
    let dir = PathBuf::from(format!("/tmp/ssb-{store}-{}-run{}", std::process::id(), args.run));
    std::fs::create_dir_all(&dir)?;
    let result = match (args.workload.as_str(), store) {
        ("eventstore-index", _) => eventstore::child(args, store, &dir),
        (_, "redb") => run_store::<redb::Database>(args, store, &dir),
        (_, "fjall") => run_store::<Fjall>(args, store, &dir),
        _ => Err(format!("unknown store {store}").into()),
    };
    std::fs::remove_dir_all(&dir)?;
    result
}

fn main() -> Res<()> {
    let args = Args::parse()?;
    if let Some(store) = &args.store {
        return child(&args, store);
    }
    println!("Sizes: {args:?}");
    if args.workload == "eventstore-index" {
        println!();
        eventstore::header();
    } else {
        println!(
            "Key bytes (entry 0): {}, value bytes: {}\n",
            key(0, 8).len(),
            value(0, 0).len()
        );
        println!("| run | store | phase | entries | wall s | entries/s | CPU s | peak RSS MiB | disk MiB after update (alloc / apparent) |");
        println!("|---|---|---|---|---|---|---|---|---|");
    }
    let exe = std::env::current_exe()?;
    for run in 1..=args.runs {
        let order = if run % 2 == 1 {
            ["redb", "fjall"]
        } else {
            ["fjall", "redb"]
        };
        for store in order {
            let status = Command::new(&exe)
                .args(["--store", store, "--run", &run.to_string()])
                .args(args.size_flags())
                .status()?;
            if !status.success() {
                return Err(format!("{store} run {run} failed: {status}").into());
            }
        }
    }
    Ok(())
}
