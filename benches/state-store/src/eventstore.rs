//! `--workload eventstore-index`: the `rivulet-eventstore` index (see
//! `crates/rivulet-eventstore/src/{index,append,indexer}.rs`) on redb and on fjall.
//!
//! Per append, as `EventStore::write_appends` does under the writer lock: one read view,
//! the event id looked up (pending writes first, then the index), the stream head looked
//! up the same way, the writer's `pending` map noted and pruned. Every `--group` appends
//! the indexer applies them in one non-durable commit (redb `Durability::None`, fjall a
//! `WriteBatch` with no persist) that re-reads heads and projection counters and writes
//! head, revision -> position, id -> (revision, position), a `$ce-` and an `$et-` link,
//! the projection counters and `next_position`. A syncer thread makes the index durable
//! every `--sync-ms` while commits are pending (redb: `sync_data` on the file without the
//! lock, then an empty `Durability::Immediate` commit under it; fjall:
//! `persist(SyncAll)`). Then: `--reads` timed reads of one stream's `--read-events`
//! revision -> position entries, close + reopen, and a check of what was reopened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::ReadableTable;

use crate::{cpu_seconds, disk_usage, peak_rss_mib, Args, Res, XorShift};

/// Event types: each event is linked into `$et-<type>` (and `$ce-order`).
const EVENT_TYPES: [&str; 5] = [
    "OrderPlaced",
    "OrderPaid",
    "OrderShipped",
    "OrderDelivered",
    "OrderCancelled",
];

/// The stream that gets exactly `--read-events` events, spread over the load, and is read.
const READ_STREAM: &str = "order-0";

/// Streams kept in `pending` before the writer drops those the index has caught up with
/// (as `append.rs`).
const PRUNE_STREAMS_MIN: usize = 256;

/// A stream head as `codec::encode_head` stores it (no metadata in this workload): flags,
/// last revision and truncate-before, 17 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Head {
    last_revision: Option<u64>,
    truncate_before: u64,
}

const HAS_LAST: u8 = 1;

impl Head {
    fn encode(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[0] = if self.last_revision.is_some() { HAS_LAST } else { 0 };
        out[1..9].copy_from_slice(&self.last_revision.unwrap_or(0).to_le_bytes());
        out[9..17].copy_from_slice(&self.truncate_before.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Res<Head> {
        if bytes.len() < 17 {
            return Err(format!("a stream head of {} bytes", bytes.len()).into());
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        Ok(Head {
            last_revision: (bytes[0] & HAS_LAST != 0).then(|| u64_at(1)),
            truncate_before: u64_at(9),
        })
    }

    fn next_revision(&self) -> u64 {
        self.last_revision.map_or(0, |r| r + 1)
    }
}

/// One event as the indexer sees it in the log.
struct Event {
    stream: String,
    id: u128,
    event_type: &'static str,
    revision: u64,
    position: u64,
}

/// `index::projections_of`: `$ce-<category>` (the part before the first `-`) and
/// `$et-<type>`.
fn projections_of(stream: &str, event_type: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(2);
    if let Some((category, _)) = stream.split_once('-').filter(|_| !stream.starts_with('$')) {
        out.push(format!("$ce-{category}"));
    }
    out.push(format!("$et-{event_type}"));
    out
}

/// What the event store needs from its index.
trait IndexStore: Sized + Send + Sync + 'static {
    /// A consistent read view (redb read transaction, fjall snapshot).
    type View;
    /// Opens (or creates) the index in `dir`, with its tables.
    fn open(dir: &Path) -> Res<Self>;
    fn view(&self) -> Res<Self::View>;
    fn head(&self, view: &Self::View, stream: &str) -> Res<Option<Head>>;
    fn id(&self, view: &Self::View, stream: &str, id: u128) -> Res<Option<(u64, u64)>>;
    /// (revision, position) of `stream`'s revisions `from..=to`, after reading its head,
    /// as `EventStore::read_stream` does.
    fn read_stream(&self, stream: &str, from: u64, to: u64) -> Res<Vec<(u64, u64)>>;
    /// How many events a projection stream has linked.
    fn projection_len(&self, projection: &str) -> Res<u64>;
    fn next_position(&self) -> Res<u64>;
    /// `Index::apply` with `durable = false`.
    fn apply(&self, events: &[Event], next_position: u64) -> Res<()>;
    /// Makes every commit so far durable; `commits` is the indexer's lock and its count of
    /// commits since the last durable one (reset here).
    fn sync(&self, commits: &Mutex<u64>) -> Res<()>;
}

const STREAMS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("streams");
const EVENTS: redb::TableDefinition<(&str, u64), u64> = redb::TableDefinition::new("events");
const IDS: redb::TableDefinition<(&str, u128), (u64, u64)> = redb::TableDefinition::new("ids");
const LINKS: redb::TableDefinition<(&str, u64), (&str, u64, u64)> = redb::TableDefinition::new("links");
const PROJECTIONS: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("projections");
const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
const NEXT_POSITION: &str = "next_position";

/// The index as `rivulet-eventstore` has it: one redb file.
struct RedbIndex {
    db: redb::Database,
    path: PathBuf,
}

impl IndexStore for RedbIndex {
    type View = redb::ReadTransaction;

    fn open(dir: &Path) -> Res<Self> {
        let path = dir.join("index.redb");
        let db = redb::Database::create(&path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(STREAMS)?;
            txn.open_table(EVENTS)?;
            txn.open_table(IDS)?;
            txn.open_table(LINKS)?;
            txn.open_table(PROJECTIONS)?;
            txn.open_table(META)?;
        }
        txn.commit()?;
        Ok(RedbIndex { db, path })
    }

    fn view(&self) -> Res<Self::View> {
        use redb::ReadableDatabase;
        Ok(self.db.begin_read()?)
    }

    fn head(&self, view: &Self::View, stream: &str) -> Res<Option<Head>> {
        let streams = view.open_table(STREAMS)?;
        let found = streams.get(stream)?;
        found.map(|v| Head::decode(v.value())).transpose()
    }

    fn id(&self, view: &Self::View, stream: &str, id: u128) -> Res<Option<(u64, u64)>> {
        let ids = view.open_table(IDS)?;
        let found = ids.get((stream, id))?;
        Ok(found.map(|v| v.value()))
    }

    fn read_stream(&self, stream: &str, from: u64, to: u64) -> Res<Vec<(u64, u64)>> {
        let view = self.view()?;
        self.head(&view, stream)?.ok_or("no such stream")?;
        let events = view.open_table(EVENTS)?;
        let mut out = Vec::with_capacity(((to - from + 1) as usize).min(1024));
        for item in events.range((stream, from)..=(stream, to))? {
            let (k, v) = item?;
            out.push((k.value().1, v.value()));
        }
        Ok(out)
    }

    fn projection_len(&self, projection: &str) -> Res<u64> {
        use redb::ReadableDatabase;
        let txn = self.db.begin_read()?;
        let projections = txn.open_table(PROJECTIONS)?;
        let found = projections.get(projection)?;
        Ok(found.map_or(0, |v| v.value()))
    }

    fn next_position(&self) -> Res<u64> {
        use redb::ReadableDatabase;
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        let found = meta.get(NEXT_POSITION)?;
        Ok(found.map_or(0, |v| v.value()))
    }

    fn apply(&self, entries: &[Event], next_position: u64) -> Res<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::None)?;
        {
            let mut streams = txn.open_table(STREAMS)?;
            let mut events = txn.open_table(EVENTS)?;
            let mut ids = txn.open_table(IDS)?;
            let mut links = txn.open_table(LINKS)?;
            let mut projections = txn.open_table(PROJECTIONS)?;
            for e in entries {
                let stream = e.stream.as_str();
                let found = streams
                    .get(stream)?
                    .map(|v| Head::decode(v.value()))
                    .transpose()?;
                let mut head = found.unwrap_or_default();
                head.last_revision = Some(e.revision);
                events.insert((stream, e.revision), e.position)?;
                ids.insert((stream, e.id), (e.revision, e.position))?;
                for projection in projections_of(stream, e.event_type) {
                    let n = projections.get(projection.as_str())?.map_or(0, |v| v.value());
                    links.insert((projection.as_str(), n), (stream, e.revision, e.position))?;
                    projections.insert(projection.as_str(), n + 1)?;
                }
                streams.insert(stream, head.encode().as_slice())?;
            }
            txn.open_table(META)?.insert(NEXT_POSITION, next_position)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn sync(&self, commits: &Mutex<u64>) -> Res<()> {
        // As `indexer::spawn_syncer`: write the dirty pages back without the lock, then
        // the durable commit (which has little left to write) under it.
        std::fs::File::open(&self.path)?.sync_data()?;
        let mut commits = commits.lock().unwrap_or_else(|p| p.into_inner());
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        txn.commit()?;
        *commits = 0;
        Ok(())
    }
}

/// The same tables as fjall keyspaces. Keys: a 2-byte big-endian length and the name,
/// then big-endian numbers (so a stream's revisions are one ordered range).
struct FjallIndex {
    db: fjall::Database,
    streams: fjall::Keyspace,
    events: fjall::Keyspace,
    ids: fjall::Keyspace,
    links: fjall::Keyspace,
    projections: fjall::Keyspace,
    meta: fjall::Keyspace,
}

/// `name` length-prefixed, then `suffix`.
fn fkey(name: &str, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + name.len() + suffix.len());
    k.extend_from_slice(&(name.len() as u16).to_be_bytes());
    k.extend_from_slice(name.as_bytes());
    k.extend_from_slice(suffix);
    k
}

fn u64_be(bytes: &[u8]) -> Res<u64> {
    Ok(u64::from_be_bytes(bytes.try_into()?))
}

impl IndexStore for FjallIndex {
    type View = fjall::Snapshot;

    fn open(dir: &Path) -> Res<Self> {
        let db = fjall::Database::builder(dir).open()?;
        let ks = |name: &str| db.keyspace(name, fjall::KeyspaceCreateOptions::default);
        Ok(FjallIndex {
            streams: ks("streams")?,
            events: ks("events")?,
            ids: ks("ids")?,
            links: ks("links")?,
            projections: ks("projections")?,
            meta: ks("meta")?,
            db,
        })
    }

    fn view(&self) -> Res<Self::View> {
        Ok(self.db.snapshot())
    }

    fn head(&self, view: &Self::View, stream: &str) -> Res<Option<Head>> {
        use fjall::Readable;
        let found = view.get(&self.streams, stream.as_bytes())?;
        found.map(|v| Head::decode(&v)).transpose()
    }

    fn id(&self, view: &Self::View, stream: &str, id: u128) -> Res<Option<(u64, u64)>> {
        use fjall::Readable;
        let found = view.get(&self.ids, fkey(stream, &id.to_be_bytes()))?;
        found
            .map(|v| Ok((u64_be(&v[..8])?, u64_be(&v[8..16])?)))
            .transpose()
    }

    fn read_stream(&self, stream: &str, from: u64, to: u64) -> Res<Vec<(u64, u64)>> {
        use fjall::Readable;
        let view = self.view()?;
        self.head(&view, stream)?.ok_or("no such stream")?;
        let (lo, hi) = (fkey(stream, &from.to_be_bytes()), fkey(stream, &to.to_be_bytes()));
        let mut out = Vec::with_capacity(((to - from + 1) as usize).min(1024));
        for guard in view.range(&self.events, lo..=hi) {
            let (k, v) = guard.into_inner()?;
            out.push((u64_be(&k[k.len() - 8..])?, u64_be(&v)?));
        }
        Ok(out)
    }

    fn projection_len(&self, projection: &str) -> Res<u64> {
        let found = self.projections.get(projection.as_bytes())?;
        found.map_or(Ok(0), |v| u64_be(&v))
    }

    fn next_position(&self) -> Res<u64> {
        let found = self.meta.get(NEXT_POSITION.as_bytes())?;
        found.map_or(Ok(0), |v| u64_be(&v))
    }

    fn apply(&self, entries: &[Event], next_position: u64) -> Res<()> {
        // A batch does not read its own writes: heads and projection counters changed
        // earlier in this commit are kept here (the only writer is the indexer).
        let mut heads: HashMap<&str, Head> = HashMap::new();
        let mut counters: HashMap<String, u64> = HashMap::new();
        let mut batch = self.db.batch().durability(None);
        for e in entries {
            let stream = e.stream.as_str();
            let mut head = match heads.get(stream) {
                Some(h) => *h,
                None => self
                    .streams
                    .get(stream.as_bytes())?
                    .map(|v| Head::decode(&v))
                    .transpose()?
                    .unwrap_or_default(),
            };
            head.last_revision = Some(e.revision);
            let mut rev_pos = [0u8; 16];
            rev_pos[..8].copy_from_slice(&e.revision.to_be_bytes());
            rev_pos[8..].copy_from_slice(&e.position.to_be_bytes());
            let events_key = fkey(stream, &e.revision.to_be_bytes());
            batch.insert(&self.events, events_key, e.position.to_be_bytes());
            batch.insert(&self.ids, fkey(stream, &e.id.to_be_bytes()), rev_pos);
            for projection in projections_of(stream, e.event_type) {
                let n = match counters.get(&projection) {
                    Some(n) => *n,
                    None => self
                        .projections
                        .get(projection.as_bytes())?
                        .map_or(Ok(0), |v| u64_be(&v))?,
                };
                let link_key = fkey(&projection, &n.to_be_bytes());
                batch.insert(&self.links, link_key, fkey(stream, &rev_pos));
                counters.insert(projection, n + 1);
            }
            heads.insert(stream, head);
        }
        for (stream, head) in heads {
            batch.insert(&self.streams, stream.as_bytes(), head.encode());
        }
        for (projection, n) in counters {
            batch.insert(&self.projections, projection.as_bytes(), n.to_be_bytes());
        }
        let next = next_position.to_be_bytes();
        batch.insert(&self.meta, NEXT_POSITION.as_bytes(), next);
        batch.commit()?;
        Ok(())
    }

    fn sync(&self, commits: &Mutex<u64>) -> Res<()> {
        // The journal is fsynced under fjall's own journal lock; the indexer's lock is only
        // taken to read and settle its count.
        let seen = *commits.lock().unwrap_or_else(|p| p.into_inner());
        self.db.persist(fjall::PersistMode::SyncAll)?;
        *commits.lock().unwrap_or_else(|p| p.into_inner()) -= seen;
        Ok(())
    }
}

/// `append::Writer`: the heads and event ids of streams written since the index last
/// caught up.
#[derive(Default)]
struct Writer {
    pending: HashMap<String, Pending>,
    prune_at: usize,
}

struct Pending {
    head: Head,
    ids: Vec<(u128, u64, u64)>,
    last_position: u64,
}

impl Writer {
    fn prune(&mut self, indexed: u64) {
        if self.pending.len() < self.prune_at.max(PRUNE_STREAMS_MIN) {
            return;
        }
        self.pending.retain(|_, p| p.last_position >= indexed);
        self.prune_at = self.pending.len() * 2;
    }

    fn note(&mut self, stream: &str, head: Head, position: u64) -> &mut Pending {
        let pending = self.pending.entry(stream.to_string()).or_insert_with(|| Pending {
            head: Head::default(),
            ids: Vec::new(),
            last_position: 0,
        });
        pending.head = head;
        pending.last_position = position;
        pending
    }

    fn id_of<S: IndexStore>(&self, s: &S, v: &S::View, stream: &str, id: u128) -> Res<Option<(u64, u64)>> {
        let pending = self
            .pending
            .get(stream)
            .and_then(|p| p.ids.iter().find(|(i, _, _)| *i == id));
        match pending {
            Some((_, revision, position)) => Ok(Some((*revision, *position))),
            None => s.id(v, stream, id),
        }
    }

    fn head_of<S: IndexStore>(&self, s: &S, v: &S::View, stream: &str) -> Res<Head> {
        match self.pending.get(stream) {
            Some(p) => Ok(p.head),
            None => Ok(s.head(v, stream)?.unwrap_or_default()),
        }
    }
}

/// Whether append `i` of `n` goes to [`READ_STREAM`]: exactly `read_events` of them do,
/// evenly spread (all of them when `n <= read_events`).
fn to_read_stream(i: u64, n: u64, read_events: u64) -> bool {
    (i + 1) * read_events / n > i * read_events / n
}

/// The load phase. Returns the number of durable syncs.
fn load<S: IndexStore>(args: &Args, store: &Arc<S>) -> Res<u64> {
    let commits = Arc::new(Mutex::new(0u64));
    let syncs = Arc::new(Mutex::new(0u64));
    let (stop, stopped) = mpsc::channel::<()>();
    let syncer = {
        let (store, commits, syncs) = (store.clone(), commits.clone(), syncs.clone());
        let interval = Duration::from_millis(args.sync_ms);
        std::thread::spawn(move || -> Result<(), String> {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                if *commits.lock().unwrap_or_else(|p| p.into_inner()) == 0 {
                    continue;
                }
                store.sync(&commits).map_err(|e| e.to_string())?;
                *syncs.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            }
            Ok(())
        })
    };

    let (n, read_events) = (args.appends, args.read_events);
    let mut rng = XorShift(args.seed | 1);
    let mut writer = Writer::default();
    let mut group = Vec::with_capacity(args.group as usize);
    let mut indexed = 0;
    for position in 0..n {
        let stream = if to_read_stream(position, n, read_events) {
            READ_STREAM.to_string()
        } else {
            format!("order-{}", 1 + rng.next() % (args.streams - 1))
        };
        let id = (u128::from(rng.next()) << 64) | u128::from(rng.next());
        let event_type = EVENT_TYPES[(rng.next() % EVENT_TYPES.len() as u64) as usize];

        // Under the writer lock (single writer here): one view, the id, then the head.
        let view = store.view()?;
        if writer.id_of(&**store, &view, &stream, id)?.is_some() {
            return Err(format!("event id {id:x} already in {stream}").into());
        }
        let mut head = writer.head_of(&**store, &view, &stream)?;
        drop(view);
        let revision = head.next_revision();
        head.last_revision = Some(revision);
        writer
            .note(&stream, head, position)
            .ids
            .push((id, revision, position));
        writer.prune(indexed);
        group.push(Event {
            stream,
            id,
            event_type,
            revision,
            position,
        });

        if group.len() as u64 == args.group || position + 1 == n {
            let mut commits = commits.lock().unwrap_or_else(|p| p.into_inner());
            store.apply(&group, position + 1)?;
            *commits += 1;
            indexed = position + 1;
            group.clear();
        }
    }

    // Shutdown, as `EventStore` closing: stop the syncer, one last durable commit.
    drop(stop);
    syncer.join().map_err(|_| "the syncer panicked")??;
    store.sync(&commits)?;
    let syncs = *syncs.lock().unwrap_or_else(|p| p.into_inner()) + 1;
    Ok(syncs)
}

/// Checks what a (reopened) index holds after `n` appends.
fn verify<S: IndexStore>(args: &Args, store: &S) -> Res<()> {
    let n = args.appends;
    let want_head = Some(args.read_events.min(n) - 1);
    let head = store.head(&store.view()?, READ_STREAM)?.ok_or("no read stream")?;
    let ce = store.projection_len("$ce-order")?;
    let et: u64 = EVENT_TYPES
        .iter()
        .map(|t| store.projection_len(&format!("$et-{t}")))
        .sum::<Res<u64>>()?;
    let next = store.next_position()?;
    if head.last_revision != want_head || ce != n || et != n || next != n {
        return Err(format!(
            "reopened index: head {:?} (want {want_head:?}), $ce-order {ce}, $et-* {et}, next {next} (want {n})",
            head.last_revision
        )
        .into());
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e6
}

/// Runs the workload against a fresh index in `dir` and prints one table row.
fn run<S: IndexStore>(args: &Args, name: &str, dir: &Path) -> Res<()> {
    let store = Arc::new(S::open(dir)?);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let syncs = load(args, &store)?;
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    let n = args.appends;

    let last = args.read_events.min(n) - 1;
    let mut times = Vec::with_capacity(args.reads as usize);
    for _ in 0..args.reads {
        let t = Instant::now();
        let found = store.read_stream(READ_STREAM, 0, last)?;
        times.push(t.elapsed());
        let in_order = found.iter().enumerate().all(|(k, &(r, _))| r == k as u64);
        if found.len() as u64 != last + 1 || !in_order {
            return Err(format!("read {} entries of {READ_STREAM}", found.len()).into());
        }
        std::hint::black_box(found);
    }
    times.sort();

    let t = Instant::now();
    let store = Arc::into_inner(store).ok_or("the index is still shared")?;
    drop(store);
    let close = t.elapsed();
    let size = disk_usage(dir);
    let t = Instant::now();
    let store = S::open(dir)?;
    let (close, open) = (close.as_secs_f64(), t.elapsed().as_secs_f64());
    verify(args, &store)?;

    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "| {} | {name} | {n} | {wall:.2} | {:.0} | {cpu:.2} | {:.1} | {syncs} | {:.0} | {:.0} | {close:.3} / {open:.3} | {:.1} / {:.1} | {:.0} |",
        args.run,
        n as f64 / wall,
        cpu / n as f64 * 1e6,
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        mib(size.0),
        mib(size.1),
        peak_rss_mib(),
    );
    Ok(())
}

/// Runs `store` once in `dir` (this process is the child for one store and run).
pub fn child(args: &Args, store: &str, dir: &Path) -> Res<()> {
    match store {
        "redb" => run::<RedbIndex>(args, store, dir),
        "fjall" => run::<FjallIndex>(args, store, dir),
        _ => Err(format!("unknown store {store}").into()),
    }
}

/// The table header the rows of [`child`] belong under.
pub fn header() {
    println!("| run | store | appends | wall s | appends/s | CPU s | CPU µs/append | durable syncs | read p50 µs | read p99 µs | close / reopen s | disk MiB (alloc / apparent) | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}
