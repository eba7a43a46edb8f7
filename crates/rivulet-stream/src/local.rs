//! An instance's local copy of its state, in redb: per changelog partition, the latest
//! value of every key and the changelog offset it reflects. A task restored on the same
//! machine loads it and reads only the changelog written since, instead of all of it.
//!
//! The changelog stays the source of truth. Changelog records are upserts per key, so a
//! copy taken at position `X` (every record below `X` applied, some above it perhaps too)
//! plus the records from `X` on gives exactly the state the whole changelog gives.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use rivulet_sdk::OutRecord;

use crate::error::{Result, StreamError};

/// The key of a state entry: (changelog partition, key).
type EntryKey<'a> = (u32, &'a [u8]);
/// State entries: (changelog partition, key) -> value.
const ENTRIES: TableDefinition<EntryKey, &[u8]> = TableDefinition::new("entries");
/// Per changelog partition: (offset the entries reflect, wall clock ms when written).
const POSITIONS: TableDefinition<u32, (i64, i64)> = TableDefinition::new("positions");

/// How long opening waits for an earlier instance of this process to let go of the file.
const OPEN_WAIT: Duration = Duration::from_secs(10);

/// A copy older than this is not used: compaction may since have removed a tombstone
/// it would need (half of the default `delete.retention.ms`, 24 h).
pub(crate) const COPY_AGE_MAX_MS: i64 = 12 * 3_600_000;

/// Upserts (`Some`) and deletions (`None`) by key.
pub(crate) type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// What one partition's copy holds.
pub(crate) struct Copy {
    /// Every changelog record below it is reflected.
    pub position: i64,
    /// When it was written (ms since the epoch).
    pub written_ms: i64,
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Copy {
    /// Whether restoring from it plus the changelog from `position` is exact, given the
    /// partition's (log start, high watermark).
    pub fn usable(&self, range: (i64, i64), now_ms: i64) -> bool {
        let (start, end) = range;
        start <= self.position && self.position <= end && now_ms - self.written_ms <= COPY_AGE_MAX_MS
    }
}

/// The open database of one job instance (`<dir>/<job>-<instance>.redb`).
#[derive(Clone)]
pub(crate) struct LocalState {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for LocalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalState").field("path", &self.path).finish()
    }
}

fn store_error(path: &Path, e: impl std::fmt::Display) -> StreamError {
    StreamError::State(format!("{}: {e}", path.display()))
}

impl LocalState {
    /// Opens (or creates) the database of `job`'s `instance` under `dir`, waiting a
    /// while for an instance being stopped to close it.
    #[cfg(test)]
    pub async fn open(dir: &Path, job: &str, instance: &str) -> Result<LocalState> {
        std::fs::create_dir_all(dir).map_err(|e| store_error(dir, e))?;
        let path = dir.join(format!("{job}-{instance}.redb"));
        match open_path(&path).await {
            Ok(db) => Ok(LocalState {
                db: Arc::new(db),
                path,
            }),
            Err(OpenFailure::InUse) => Err(StreamError::State(format!(
                "{} is in use by another instance (give each instance its own id)",
                path.display()
            ))),
            Err(OpenFailure::Broken(e)) => Err(e),
        }
    }

    /// Opens the database, or, when it does not open (damaged, unreadable), renames it to
    /// `<file>.damaged` and starts an empty one; `None` (the job runs on its changelog
    /// alone) when it is in use or even that fails. The copy only speeds restores up, so
    /// it never stops a job from starting.
    pub async fn open_or_set_aside(dir: &Path, job: &str, instance: &str) -> Option<LocalState> {
        let without = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, dir = %dir.display(), "Local state copy not opened; running without one");
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            without(&e);
            return None;
        }
        let path = dir.join(format!("{job}-{instance}.redb"));
        match open_path(&path).await {
            Ok(db) => {
                return Some(LocalState {
                    db: Arc::new(db),
                    path,
                })
            }
            Err(OpenFailure::InUse) => {
                without(&"in use by another instance");
                return None;
            }
            Err(OpenFailure::Broken(e)) => {
                tracing::warn!(error = %e, "Local state copy does not open; setting it aside");
            }
        }
        if let Err(e) = std::fs::rename(&path, path.with_extension("redb.damaged")) {
            without(&e);
            return None;
        }
        match open_path(&path).await {
            Ok(db) => Some(LocalState {
                db: Arc::new(db),
                path,
            }),
            Err(OpenFailure::InUse) => None,
            Err(OpenFailure::Broken(e)) => {
                without(&e);
                None
            }
        }
    }

    /// The copy of changelog partition `p`, if one was written.
    pub async fn load(&self, p: i32) -> Result<Option<Copy>> {
        let this = self.clone();
        blocking(move || this.load_blocking(p)).await
    }

    fn load_blocking(&self, p: i32) -> Result<Option<Copy>> {
        let err = |e: redb::Error| store_error(&self.path, e);
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let positions = match txn.open_table(POSITIONS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(e.into())),
        };
        let Some((position, written_ms)) = positions
            .get(p as u32)
            .map_err(|e| err(e.into()))?
            .map(|v| v.value())
        else {
            return Ok(None);
        };
        let table = txn.open_table(ENTRIES).map_err(|e| err(e.into()))?;
        let lower: EntryKey = (p as u32, &[]);
        let mut entries = Vec::new();
        for item in table.range(lower..).map_err(|e| err(e.into()))? {
            let (k, v) = item.map_err(|e| err(e.into()))?;
            let (part, key) = k.value();
            if part != p as u32 {
                break;
            }
            entries.push((key.to_vec(), v.value().to_vec()));
        }
        Ok(Some(Copy {
            position,
            written_ms,
            entries,
        }))
    }

    /// Writes changes to partitions' copies in one durable transaction: for each
    /// partition, `clear` first drops the old copy, then the changes apply and the copy
    /// is marked as reflecting `position`.
    pub async fn write(&self, parts: Vec<PartitionWrite>) -> Result<()> {
        if parts.is_empty() {
            return Ok(());
        }
        let this = self.clone();
        blocking(move || this.write_blocking(parts)).await
    }

    fn write_blocking(&self, parts: Vec<PartitionWrite>) -> Result<()> {
        let err = |e: redb::Error| store_error(&self.path, e);
        let mut txn = self.db.begin_write().map_err(|e| err(e.into()))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| err(e.into()))?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(|e| err(e.into()))?;
            let mut positions = txn.open_table(POSITIONS).map_err(|e| err(e.into()))?;
            let now_ms = crate::now_ms();
            for part in &parts {
                let p = part.partition as u32;
                if part.clear {
                    let (lower, upper): (EntryKey, EntryKey) = ((p, &[]), (p + 1, &[]));
                    entries
                        .retain_in(lower..upper, |_, _| false)
                        .map_err(|e| err(e.into()))?;
                }
                for (key, value) in &part.changes {
                    match value {
                        Some(v) => entries.insert((p, key.as_slice()), v.as_slice()),
                        None => entries.remove((p, key.as_slice())),
                    }
                    .map_err(|e| err(e.into()))?;
                }
                positions
                    .insert(p, (part.position, now_ms))
                    .map_err(|e| err(e.into()))?;
            }
        }
        txn.commit().map_err(|e| err(e.into()))?;
        Ok(())
    }
}

/// Why a database did not open.
enum OpenFailure {
    /// Another instance holds it (after waiting [`OPEN_WAIT`]).
    InUse,
    /// It does not open: damaged, unreadable, or the directory is not writable.
    Broken(StreamError),
}

/// Opens or creates the database at `path`, waiting for an instance being stopped.
async fn open_path(path: &Path) -> Result<Database, OpenFailure> {
    let deadline = Instant::now() + OPEN_WAIT;
    // Bounded by the deadline.
    loop {
        let p = path.to_path_buf();
        match blocking(move || Ok(Database::create(&p))).await {
            Ok(Ok(db)) => return Ok(db),
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => return Err(OpenFailure::InUse),
            Ok(Err(e)) => return Err(OpenFailure::Broken(store_error(path, e))),
            Err(e) => return Err(OpenFailure::Broken(e)),
        }
    }
}

/// Changes to one partition's copy.
pub(crate) struct PartitionWrite {
    pub partition: i32,
    /// Drop the old copy first (it was not usable: the changes are the whole state).
    pub clear: bool,
    pub changes: Changes,
    /// The changelog offset the copy reflects afterwards.
    pub position: i64,
}

/// Keeps a member's local copy: notes committed changelog records per partition and
/// writes them every `interval`, in the background, one write after another.
///
/// Only partitions whose every writer (each stage's task of that index) this instance has
/// held since it restored them are copied: a copy must see every change below its
/// position, and another instance's changes reach this one only through a restore. After
/// a failed write nothing more is written (each copy stays at a position it reflects).
pub(crate) struct Copier {
    local: LocalState,
    changes: BTreeMap<i32, Changes>,
    complete: BTreeSet<i32>,
    last: Instant,
    interval: Duration,
    flush: bool,
    writing: Option<tokio::task::JoinHandle<()>>,
    failed: Arc<AtomicBool>,
}

impl Copier {
    pub fn new(local: LocalState, interval: Duration) -> Copier {
        Copier {
            local,
            changes: BTreeMap::new(),
            complete: BTreeSet::new(),
            last: Instant::now(),
            interval,
            flush: false,
            writing: None,
            failed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The store copies are read from.
    pub fn local(&self) -> &LocalState {
        &self.local
    }

    /// Starts copying partition `p`: its copy was just submitted at restore and this
    /// instance holds every task writing to it.
    pub fn complete(&mut self, p: i32) {
        self.complete.insert(p);
    }

    /// Notes a checkpoint's changelog records (of complete partitions).
    pub fn record(&mut self, records: &[OutRecord]) {
        for r in records {
            let (Some(p), Some(key)) = (r.partition, r.key.as_ref()) else {
                continue;
            };
            if !self.complete.contains(&p) {
                continue;
            }
            self.changes
                .entry(p)
                .or_default()
                .insert(key.clone(), r.value.clone());
        }
    }

    /// Forgets a partition this instance no longer holds: its copy stays at the
    /// position it had, which the changelog completes.
    pub fn forget(&mut self, p: i32) {
        self.changes.remove(&p);
        self.complete.remove(&p);
    }

    /// Whether a copy is due (and the previous write is done).
    pub fn due(&self) -> bool {
        !self.changes.is_empty()
            && (self.flush || self.last.elapsed() >= self.interval)
            && self.writing.as_ref().is_none_or(|w| w.is_finished())
            && !self.failed.load(Ordering::Relaxed)
    }

    /// Makes the next checkpoint write the copy (a graceful stop).
    pub fn flush_next(&mut self) {
        self.flush = true;
    }

    /// Writes the changes noted, marked with `positions` (taken before the checkpoint
    /// that committed the last of them).
    pub fn copy(&mut self, positions: &BTreeMap<i32, (i64, i64)>) {
        self.last = Instant::now();
        self.flush = false;
        let writes = std::mem::take(&mut self.changes)
            .into_iter()
            .filter_map(|(partition, changes)| {
                let (_, position) = *positions.get(&partition)?;
                Some(PartitionWrite {
                    partition,
                    clear: false,
                    changes,
                    position,
                })
            })
            .collect();
        self.submit(writes);
    }

    /// Queues writes behind the one in progress.
    pub fn submit(&mut self, writes: Vec<PartitionWrite>) {
        let (local, failed, previous) = (self.local.clone(), self.failed.clone(), self.writing.take());
        self.writing = Some(tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            if failed.load(Ordering::Relaxed) {
                return;
            }
            if let Err(e) = local.write(writes).await {
                failed.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "Local state copy not written; restores read the changelog from the last copy");
            }
        }));
    }

    /// Waits for the writes submitted.
    pub async fn finish(&mut self) {
        if let Some(w) = self.writing.take() {
            let _ = w.await;
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StreamError::State(format!("local state task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(pairs: &[(&str, Option<&str>)]) -> Changes {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    #[tokio::test]
    async fn copies_are_per_partition_and_follow_upserts_and_deletes() {
        let dir = tempfile::tempdir().expect("local state");
        let local = LocalState::open(dir.path(), "job", "0")
            .await
            .expect("local state");
        assert!(local.load(0).await.expect("local state").is_none());
        let write = |partition, clear, c: Changes, position| PartitionWrite {
            partition,
            clear,
            changes: c,
            position,
        };
        local
            .write(vec![
                write(0, false, changes(&[("a", Some("1")), ("b", Some("2"))]), 10),
                write(1, false, changes(&[("a", Some("x"))]), 3),
            ])
            .await
            .expect("local state");
        local
            .write(vec![write(
                0,
                false,
                changes(&[("a", None), ("c", Some("3"))]),
                12,
            )])
            .await
            .expect("local state");
        let copy = local.load(0).await.expect("local state").expect("local state");
        assert_eq!(copy.position, 12);
        assert_eq!(
            copy.entries,
            vec![(b"b".to_vec(), b"2".to_vec()), (b"c".to_vec(), b"3".to_vec())]
        );
        local
            .write(vec![write(0, true, changes(&[("d", Some("4"))]), 20)])
            .await
            .expect("local state");
        drop(local);
        // Reopened, as after a restart.
        let local = LocalState::open(dir.path(), "job", "0")
            .await
            .expect("local state");
        let copy = local.load(0).await.expect("local state").expect("local state");
        assert_eq!(
            (copy.position, copy.entries),
            (20, vec![(b"d".to_vec(), b"4".to_vec())])
        );
        let other = local.load(1).await.expect("local state").expect("local state");
        assert_eq!(other.entries, vec![(b"a".to_vec(), b"x".to_vec())]);
    }

    #[tokio::test]
    async fn a_damaged_copy_is_set_aside_and_an_empty_one_started() {
        let dir = tempfile::tempdir().expect("local state");
        std::fs::write(
            dir.path().join("job-0.redb"),
            b"not a redb file at all, not even close",
        )
        .expect("local state");
        let local = LocalState::open_or_set_aside(dir.path(), "job", "0")
            .await
            .expect("a fresh copy");
        assert!(local.load(0).await.expect("local state").is_none());
        let aside = std::fs::read(dir.path().join("job-0.redb.damaged")).expect("set aside");
        assert!(aside.starts_with(b"not a redb file"));
    }

    #[test]
    fn a_copy_outside_the_changelog_or_too_old_is_not_used() {
        let now = crate::now_ms();
        let copy = |position, written_ms| Copy {
            position,
            written_ms,
            entries: Vec::new(),
        };
        assert!(copy(5, now).usable((0, 5), now));
        assert!(copy(0, now).usable((0, 5), now));
        assert!(!copy(6, now).usable((0, 5), now), "topic recreated");
        assert!(
            !copy(2, now).usable((3, 5), now),
            "records below the log start are gone"
        );
        assert!(!copy(5, now - COPY_AGE_MAX_MS - 1).usable((0, 5), now));
    }

    #[tokio::test]
    async fn the_copier_keeps_the_latest_change_per_key_of_partitions_it_holds_whole() {
        let dir = tempfile::tempdir().expect("local state");
        let local = LocalState::open(dir.path(), "job", "0")
            .await
            .expect("local state");
        let rec = |p, k: &str, v: Option<&str>| OutRecord {
            key: Some(k.as_bytes().to_vec()),
            value: v.map(|v| v.as_bytes().to_vec()),
            headers: Vec::new(),
            partition: Some(p),
        };
        let mut copier = Copier::new(local.clone(), Duration::ZERO);
        for p in 0..3 {
            copier.complete(p);
        }
        copier.record(&[rec(3, "z", Some("not held"))]);
        assert!(!copier.due());
        copier.record(&[rec(0, "a", Some("1")), rec(0, "a", None), rec(0, "b", Some("0"))]);
        copier.record(&[rec(1, "b", Some("2")), rec(2, "c", Some("3"))]);
        copier.forget(2);
        assert!(copier.due());
        copier.copy(&BTreeMap::from([(0, (0, 7)), (1, (0, 9)), (2, (0, 4))]));
        copier.finish().await;
        assert!(!copier.due());
        let zero = local.load(0).await.expect("local state").expect("local state");
        assert_eq!(
            (zero.position, zero.entries),
            (7, vec![(b"b".to_vec(), b"0".to_vec())])
        );
        assert_eq!(
            local
                .load(1)
                .await
                .expect("local state")
                .expect("local state")
                .position,
            9
        );
        assert!(local.load(2).await.expect("local state").is_none(), "forgotten");
        assert!(
            local.load(3).await.expect("local state").is_none(),
            "never held whole"
        );
    }
}
