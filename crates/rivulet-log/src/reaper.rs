//! Gradual deletion of segment files that retention retired.
//!
//! Unlinking a large segment frees all of its blocks and drops all of its cached pages in
//! one file-system transaction. On ext4 that transaction is committed by the journal that
//! every partition's fdatasync also waits on, so deleting a 64 MiB segment stalls the group
//! commits of every other partition for tens to hundreds of milliseconds. Retention
//! therefore only renames a retired segment to `<base>.log.deleted` (and syncs the
//! directory: the segment is gone from then on, also after a crash), and one background
//! thread per process shrinks the file a few MiB at a time with pauses in between before
//! unlinking it. A `.deleted` file left behind by a crash is removed when the log is opened.
//! Deleting a whole topic goes the same way: [`retire_dir`] takes a directory its owner has
//! already moved out of the way.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tracing::{debug, warn};

use crate::storage::Storage;

/// Suffix a retired segment file carries until it is gone.
pub const DELETED_SUFFIX: &str = ".deleted";

/// Most retired segments waiting for the reaper; beyond this they are deleted at once.
const REAP_QUEUE_MAX: usize = 4_096;

/// Bytes freed per truncation step.
const REAP_STEP_BYTES: u64 = 4 * 1024 * 1024;

/// Pause between truncation steps: at most 4 MiB per 5 ms, 800 MiB/s, far above any
/// production rate, while no single step holds the journal for long.
const REAP_PAUSE: Duration = Duration::from_millis(5);

/// A retired segment file waiting to be deleted.
pub(crate) struct Retired {
    pub storage: Arc<dyn Storage>,
    pub path: PathBuf,
}

/// Deepest directory nesting [`retire_dir`] walks (a topic: partitions, then files).
const REAP_DEPTH_MAX: usize = 4;

/// Deletes a directory tree in the background, shrinking each file gradually as retention
/// does with segments, so deleting a topic of many gigabytes does not stall the fdatasyncs
/// of every other partition. The caller must already have moved the directory where
/// nothing reads it and made that durable; whatever is left after a crash is the caller's
/// to retire again on the next start. Falls back to deleting at once when the reaper's
/// queue is full.
pub fn retire_dir(path: PathBuf) {
    let storage: Arc<dyn Storage> = Arc::new(crate::storage::FsStorage);
    let mut files = Vec::new();
    collect_files(&path, REAP_DEPTH_MAX, &mut files);
    for file in files {
        retire(Retired {
            storage: storage.clone(),
            path: file,
        });
    }
    // The directories go once their files are gone: queue the tree itself last.
    retire(Retired { storage, path });
}

fn collect_files(dir: &std::path::Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() && depth > 0 => collect_files(&path, depth - 1, out),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
}

static REAPER: OnceLock<Option<SyncSender<Retired>>> = OnceLock::new();

/// Hands a retired (already renamed) segment file to the reaper thread, or deletes it at
/// once if the reaper is busy beyond its queue bound or could not be started.
pub(crate) fn retire(retired: Retired) {
    let sender = REAPER.get_or_init(start);
    let retired = match sender {
        Some(tx) => match tx.try_send(retired) {
            Ok(()) => return,
            Err(TrySendError::Full(r) | TrySendError::Disconnected(r)) => r,
        },
        None => retired,
    };
    reap(&retired, Duration::ZERO);
}

fn start() -> Option<SyncSender<Retired>> {
    let (tx, rx) = sync_channel(REAP_QUEUE_MAX);
    match std::thread::Builder::new()
        .name("rivulet-reaper".into())
        .spawn(move || run(rx))
    {
        Ok(_) => Some(tx),
        Err(e) => {
            warn!(error = %e, "Cannot start the segment reaper thread; retired segments are deleted at once");
            None
        }
    }
}

fn run(rx: Receiver<Retired>) {
    while let Ok(retired) = rx.recv() {
        reap(&retired, REAP_PAUSE);
    }
}

/// Shrinks the file step by step, then unlinks it. Errors are logged, never fatal: the file
/// is already out of the log, and a leftover is removed when the log is next opened.
fn reap(retired: &Retired, pause: Duration) {
    let path = &retired.path;
    if path.is_dir() {
        match retired.storage.remove_dir_all(path) {
            Ok(()) => debug!(dir = %path.display(), "Deleted retired directory"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(dir = %path.display(), error = %e, "Cannot delete a retired directory"),
        }
        return;
    }
    if let Ok(file) = retired.storage.open(path, false) {
        let mut len = file.len().unwrap_or(0);
        // At most len / REAP_STEP_BYTES steps (512 for the largest 2 GiB segment).
        while len > REAP_STEP_BYTES {
            len -= REAP_STEP_BYTES;
            if let Err(e) = file.set_len(len) {
                warn!(file = %path.display(), error = %e, "Cannot shrink a retired segment");
                break;
            }
            if !pause.is_zero() {
                std::thread::sleep(pause);
            }
        }
    }
    match retired.storage.remove_file(path) {
        Ok(()) => debug!(file = %path.display(), "Deleted retired segment"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(file = %path.display(), error = %e, "Cannot delete a retired segment"),
    }
}
