//! The journal's on-disk format: commit records of entries, and the aligned buffer they are
//! built in.
//!
//! A commit record starts at a multiple of [`ALIGN_BYTES`] and is padded to one:
//!
//! ```text
//! magic u32 | crc32c u32 | lsn u64 | payload_len u32 | entry_count u32 | reserved u64
//! payload: entry_count x (key_len u8 | key | data_len u32 | data)
//! ```
//!
//! The CRC covers everything after itself up to the payload's end. An entry's data is one
//! or more whole RecordBatch v2, base offsets already assigned; its key names the log.
//! Every number is big-endian.

/// Alignment of record positions and lengths (direct I/O needs the device's block size).
pub const ALIGN_BYTES: usize = 4096;
/// Bytes of a record header.
pub const HEADER_BYTES: usize = 32;
/// First bytes of every record.
const MAGIC: u32 = 0x5256_4A31; // "RVJ1"
/// Longest key an entry carries.
pub const KEY_BYTES_MAX: usize = 255;
/// Bytes an entry adds to its key and data.
pub const ENTRY_OVERHEAD_BYTES: usize = 1 + 4;

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Log sequence number: one more than the previous record's.
    pub lsn: u64,
    /// Bytes of entries after the header.
    pub payload_bytes: u32,
    /// Entries in the payload.
    pub entries: u32,
}

impl RecordHeader {
    /// Bytes the record occupies in the journal, padding included.
    pub fn padded_bytes(&self) -> usize {
        padded(HEADER_BYTES + self.payload_bytes as usize)
    }
}

/// `len` rounded up to [`ALIGN_BYTES`].
pub fn padded(len: usize) -> usize {
    len.div_ceil(ALIGN_BYTES) * ALIGN_BYTES
}

/// Reads a header without checking the CRC (see [`check`]); `None` when the bytes cannot be
/// the start of a record.
pub fn parse_header(bytes: &[u8]) -> Option<RecordHeader> {
    let h = bytes.get(..HEADER_BYTES)?;
    if u32_at(h, 0) != MAGIC {
        return None;
    }
    Some(RecordHeader {
        lsn: u64::from_be_bytes(h[8..16].try_into().ok()?),
        payload_bytes: u32_at(h, 16),
        entries: u32_at(h, 20),
    })
}

/// True when `record` (header and payload, at least) carries a valid CRC.
pub fn check(record: &[u8], header: &RecordHeader) -> bool {
    let end = HEADER_BYTES + header.payload_bytes as usize;
    match record.get(8..end) {
        Some(covered) => crc32c::crc32c(covered) == u32_at(record, 4),
        None => false,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One entry of a checked record's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The log it belongs to.
    pub key: &'a [u8],
    /// Where `data` starts, counted from the record's start.
    pub data_at: usize,
    /// Whole record batches.
    pub data: &'a [u8],
}

/// The entries of a checked record; `None` when the payload does not parse (a record that
/// passed its CRC but was written by a broken writer).
pub fn entries<'a>(record: &'a [u8], header: &RecordHeader) -> Option<Vec<Entry<'a>>> {
    let end = HEADER_BYTES + header.payload_bytes as usize;
    let payload = record.get(..end)?;
    let mut at = HEADER_BYTES;
    let mut out = Vec::with_capacity(header.entries.min(1 << 16) as usize);
    // Bounded by the entry count the CRC vouched for.
    for _ in 0..header.entries {
        let key_len = usize::from(*payload.get(at)?);
        let key = payload.get(at + 1..at + 1 + key_len)?;
        let len_at = at + 1 + key_len;
        let data_len = u32::from_be_bytes(payload.get(len_at..len_at + 4)?.try_into().ok()?) as usize;
        let data_at = len_at + 4;
        let data = payload.get(data_at..data_at + data_len)?;
        out.push(Entry { key, data_at, data });
        at = data_at + data_len;
    }
    (at == end).then_some(out)
}

/// A fixed-capacity buffer whose payload starts at an [`ALIGN_BYTES`] boundary of memory,
/// so a whole record can be written with direct I/O. Never reallocates.
#[derive(Debug)]
pub struct RecordBuf {
    mem: Vec<u8>,
    /// Where the record starts in `mem` (aligned in memory).
    start: usize,
    /// Payload bytes written so far.
    payload_bytes: usize,
    entries: u32,
    /// Most payload bytes the buffer takes.
    payload_bytes_max: usize,
}

impl RecordBuf {
    /// A buffer for records of at most `payload_bytes_max` payload bytes.
    pub fn new(payload_bytes_max: usize) -> RecordBuf {
        let record_max = padded(HEADER_BYTES + payload_bytes_max);
        let mem = vec![0u8; record_max + ALIGN_BYTES];
        let start = mem.as_ptr().align_offset(ALIGN_BYTES).min(ALIGN_BYTES);
        RecordBuf {
            mem,
            start,
            payload_bytes: 0,
            entries: 0,
            payload_bytes_max,
        }
    }

    /// Entries added since the last [`RecordBuf::clear`].
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// Payload bytes added so far.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// True when an entry of `key_len` and `data_len` bytes still fits.
    pub fn fits(&self, key_len: usize, data_len: usize) -> bool {
        key_len <= KEY_BYTES_MAX
            && self.payload_bytes + ENTRY_OVERHEAD_BYTES + key_len + data_len <= self.payload_bytes_max
    }

    /// Adds an entry whose data is the concatenation of `parts`. The caller checked
    /// [`RecordBuf::fits`].
    pub fn push(&mut self, key: &[u8], parts: &[&[u8]]) {
        let data_len: usize = parts.iter().map(|p| p.len()).sum();
        assert!(self.fits(key.len(), data_len), "an entry that does not fit");
        let mut at = self.start + HEADER_BYTES + self.payload_bytes;
        self.mem[at] = key.len() as u8;
        at += 1;
        self.mem[at..at + key.len()].copy_from_slice(key);
        at += key.len();
        self.mem[at..at + 4].copy_from_slice(&(data_len as u32).to_be_bytes());
        at += 4;
        for part in parts {
            self.mem[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        self.payload_bytes = at - self.start - HEADER_BYTES;
        self.entries += 1;
    }

    /// Writes the header for sequence number `lsn`, zeroes the padding, and returns the
    /// whole padded record (aligned in memory and in length).
    pub fn seal(&mut self, lsn: u64) -> &[u8] {
        let s = self.start;
        let end = s + HEADER_BYTES + self.payload_bytes;
        let padded_end = s + padded(HEADER_BYTES + self.payload_bytes);
        self.mem[s..s + 4].copy_from_slice(&MAGIC.to_be_bytes());
        self.mem[s + 8..s + 16].copy_from_slice(&lsn.to_be_bytes());
        self.mem[s + 16..s + 20].copy_from_slice(&(self.payload_bytes as u32).to_be_bytes());
        self.mem[s + 20..s + 24].copy_from_slice(&self.entries.to_be_bytes());
        self.mem[s + 24..s + 32].fill(0);
        let crc = crc32c::crc32c(&self.mem[s + 8..end]);
        self.mem[s + 4..s + 8].copy_from_slice(&crc.to_be_bytes());
        self.mem[end..padded_end].fill(0);
        &self.mem[s..padded_end]
    }

    /// Empties the buffer for the next record.
    pub fn clear(&mut self) {
        self.payload_bytes = 0;
        self.entries = 0;
    }
}

/// Zero bytes aligned in memory, for preallocating with direct writes.
#[derive(Debug)]
pub struct Zeros {
    mem: Vec<u8>,
    start: usize,
    len: usize,
}

impl Zeros {
    /// `len` aligned zero bytes.
    pub fn new(len: usize) -> Zeros {
        let mem = vec![0u8; len + ALIGN_BYTES];
        let start = mem.as_ptr().align_offset(ALIGN_BYTES).min(ALIGN_BYTES);
        Zeros { mem, start, len }
    }

    /// The first `n` of them (at most the length given at creation).
    pub fn get(&self, n: usize) -> &[u8] {
        &self.mem[self.start..self.start + n.min(self.len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(entries: &[(Vec<u8>, Vec<u8>)], lsn: u64) -> Vec<u8> {
        let mut buf = RecordBuf::new(1 << 16);
        for (key, data) in entries {
            buf.push(key, &[&data[..data.len() / 2], &data[data.len() / 2..]]);
        }
        let record = buf.seal(lsn);
        assert_eq!(record.as_ptr() as usize % ALIGN_BYTES, 0, "memory alignment");
        assert_eq!(record.len() % ALIGN_BYTES, 0, "length alignment");
        record.to_vec()
    }

    proptest! {
        #[test]
        fn records_round_trip(
            entries in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40), proptest::collection::vec(any::<u8>(), 0..2000)),
                0..12,
            ),
            lsn in any::<u64>(),
        ) {
            let record = build(&entries, lsn);
            let header = parse_header(&record).expect("header");
            prop_assert_eq!(header.lsn, lsn);
            prop_assert_eq!(header.entries as usize, entries.len());
            prop_assert_eq!(header.padded_bytes(), record.len());
            prop_assert!(check(&record, &header));
            let parsed = entries_of(&record, &header);
            prop_assert_eq!(parsed, entries);
        }

        #[test]
        fn a_flipped_byte_fails_the_check_or_the_header(
            data in proptest::collection::vec(any::<u8>(), 1..3000),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut record = build(&[(b"k".to_vec(), data)], 7);
            let header = parse_header(&record).expect("header");
            let covered = HEADER_BYTES + header.payload_bytes as usize;
            let at = flip.index(covered);
            record[at] ^= 1 << bit;
            let still = parse_header(&record).is_some_and(|h| h == header && check(&record, &h));
            prop_assert!(!still, "flipping byte {} went unnoticed", at);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            if let Some(h) = parse_header(&bytes) {
                if check(&bytes, &h) {
                    let _ = entries(&bytes, &h);
                }
            }
        }
    }

    fn entries_of(record: &[u8], header: &RecordHeader) -> Vec<(Vec<u8>, Vec<u8>)> {
        entries(record, header)
            .expect("entries")
            .into_iter()
            .map(|e| {
                assert_eq!(&record[e.data_at..e.data_at + e.data.len()], e.data);
                (e.key.to_vec(), e.data.to_vec())
            })
            .collect()
    }

    #[test]
    fn a_full_buffer_refuses_more() {
        let mut buf = RecordBuf::new(100);
        assert!(buf.fits(10, 85));
        assert!(!buf.fits(10, 86));
        assert!(!buf.fits(KEY_BYTES_MAX + 1, 0));
        buf.push(b"0123456789", &[&[1u8; 85]]);
        assert_eq!(buf.payload_bytes(), 100);
        assert!(!buf.fits(0, 0));
        buf.clear();
        assert_eq!((buf.entries(), buf.payload_bytes()), (0, 0));
    }
}
