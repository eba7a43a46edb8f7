//! The checkpoint file: where replay starts. Everything the journal held before that
//! position is in the logs' segment files and on disk.
//!
//! ```text
//! magic u32 | version u32 | ring_bytes u64 | position u64 | lsn u64 | crc32c u32
//! ```
//!
//! Replaced atomically (written beside, synced, renamed, directory synced).

use std::io;
use std::path::Path;

use crate::storage::Storage;

const MAGIC: u32 = 0x5256_4A43; // "RVJC"
const VERSION: u32 = 1;
const BYTES: usize = 36;

/// A point in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Size of the journal's ring; positions wrap at it.
    pub ring_bytes: u64,
    /// Logical position (bytes since the journal began) of the first record to replay.
    pub position: u64,
    /// The sequence number that record carries.
    pub lsn: u64,
}

impl Checkpoint {
    fn encode(&self) -> [u8; BYTES] {
        let mut b = [0u8; BYTES];
        b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&VERSION.to_be_bytes());
        b[8..16].copy_from_slice(&self.ring_bytes.to_be_bytes());
        b[16..24].copy_from_slice(&self.position.to_be_bytes());
        b[24..32].copy_from_slice(&self.lsn.to_be_bytes());
        let crc = crc32c::crc32c(&b[..32]);
        b[32..36].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Result<Checkpoint, String> {
        if b.len() != BYTES {
            return Err(format!("{} bytes where {BYTES} were expected", b.len()));
        }
        let u32_at = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| {
            let mut v = [0u8; 8];
            v.copy_from_slice(&b[at..at + 8]);
            u64::from_be_bytes(v)
        };
        if u32_at(0) != MAGIC || u32_at(4) != VERSION {
            return Err("not a version 1 journal checkpoint".into());
        }
        if crc32c::crc32c(&b[..32]) != u32_at(32) {
            return Err("checksum mismatch".into());
        }
        Ok(Checkpoint {
            ring_bytes: u64_at(8),
            position: u64_at(16),
            lsn: u64_at(24),
        })
    }
}

/// Reads the checkpoint in `dir`; `Ok(None)` when there is none yet.
pub fn read(storage: &dyn Storage, dir: &Path) -> io::Result<Option<Result<Checkpoint, String>>> {
    let path = dir.join(FILE);
    if !storage.exists(&path) {
        return Ok(None);
    }
    let file = storage.open(&path, false)?;
    let len = file.len()?;
    let mut bytes = vec![0u8; len.min(BYTES as u64 + 1) as usize];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(Some(Checkpoint::decode(&bytes)))
}

/// Name of the checkpoint file in the journal's directory.
pub const FILE: &str = "checkpoint";
const TMP_FILE: &str = "checkpoint.tmp";

/// Durably replaces the checkpoint in `dir`.
pub fn write(storage: &dyn Storage, dir: &Path, checkpoint: &Checkpoint) -> io::Result<()> {
    let tmp = dir.join(TMP_FILE);
    let file = storage.open(&tmp, true)?;
    file.set_len(0)?;
    file.write_all_at(&checkpoint.encode(), 0)?;
    file.sync_data()?;
    storage.rename(&tmp, &dir.join(FILE))?;
    storage.sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FsStorage;

    #[test]
    fn checkpoints_round_trip_and_damage_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read(&FsStorage, dir.path()).expect("read").is_none());
        let cp = Checkpoint {
            ring_bytes: 1 << 28,
            position: 123 << 12,
            lsn: 99,
        };
        write(&FsStorage, dir.path(), &cp).expect("write");
        assert_eq!(read(&FsStorage, dir.path()).expect("read"), Some(Ok(cp)));
        let mut bytes = cp.encode();
        bytes[20] ^= 1;
        assert!(Checkpoint::decode(&bytes).is_err());
        assert!(Checkpoint::decode(&bytes[..10]).is_err());
    }
}
