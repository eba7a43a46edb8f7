//! Records out of stored batches: the one decoder every reader of records uses.
//!
//! [`Records`] walks concatenated RecordBatch v2 bytes as [`crate::Log::read`] returns them,
//! decompresses each batch (gzip, snappy, lz4, zstd) within a size bound, skips control
//! batches (transaction markers) and records before the first wanted offset, and yields
//! one [`StoredRecord`] at a time. Keys, values and header values share the batch's memory
//! when the batch is uncompressed.

use std::io::Read;

use bytes::{Buf, Bytes};

use crate::batch::{BatchHeader, HEADER_BYTES};
use crate::error::BatchError;
use crate::record::{get_varint, get_varlong};
use crate::txn::AbortedTxn;

/// Largest decompressed size of one batch's records; a batch that inflates beyond this is
/// reported as an error rather than allowed to exhaust memory.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// One record decoded from a stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Offset.
    pub offset: i64,
    /// Timestamp in ms since the epoch (the batch's append time for LogAppendTime topics).
    pub timestamp_ms: i64,
    /// Key, `None` for a null key.
    pub key: Option<Bytes>,
    /// Value, `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Headers in order; repeated names are kept.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// A batch whose records could not be decoded, and the offsets it spans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("batch at offsets {base_offset}..={last_offset} does not decode: {error}")]
pub struct UndecodableBatch {
    /// First offset of the batch.
    pub base_offset: i64,
    /// Last offset of the batch.
    pub last_offset: i64,
    /// What was wrong.
    #[source]
    pub error: BatchError,
}

/// The records of stored batches at or after an offset. See the module docs.
///
/// An undecodable batch is yielded as one `Err` and then skipped, so a reader can report it
/// and continue after it.
#[derive(Debug)]
pub struct Records {
    rest: Bytes,
    from: i64,
    batch: Option<BatchCursor>,
    next_offset: i64,
    /// Read committed: aborted transactions whose batches are skipped.
    aborted: Vec<AbortedTxn>,
}

#[derive(Debug)]
struct BatchCursor {
    header: BatchHeader,
    body: Bytes,
    index: i32,
}

impl Records {
    /// Records of `batches` with offsets at or after `from`.
    pub fn new(batches: Bytes, from: i64) -> Records {
        Records {
            rest: batches,
            from,
            batch: None,
            next_offset: from,
            aborted: Vec::new(),
        }
    }

    /// Records of `batches` at or after `from` for a read_committed reader: the batches of
    /// the `aborted` transactions are skipped like control batches. The bytes must end at
    /// or below the last stable offset.
    pub fn committed(batches: Bytes, from: i64, aborted: Vec<AbortedTxn>) -> Records {
        Records {
            aborted,
            ..Records::new(batches, from)
        }
    }

    fn is_aborted(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && self.aborted.iter().any(|a| {
                a.producer_id == header.producer_id
                    && (a.first_offset..=a.last_offset).contains(&header.base_offset)
            })
    }

    /// The offset to read from to continue after what was yielded: past the last yielded
    /// record, and past whole batches that held nothing to yield (control batches, records
    /// removed by compaction, an undecodable batch).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Moves to the next batch; `None` at the end of the bytes (a trailing partial batch
    /// counts as the end).
    fn open_batch(&mut self) -> Option<Result<(), UndecodableBatch>> {
        let header = BatchHeader::parse(&self.rest).ok()?;
        let total = header.total_bytes();
        if total < HEADER_BYTES || total > self.rest.len() {
            return None;
        }
        let bytes = self.rest.split_to(total);
        let skip = header.is_control() || header.next_offset() <= self.from || self.is_aborted(&header);
        if skip {
            self.next_offset = self.next_offset.max(header.next_offset());
            return Some(Ok(()));
        }
        match decompress(header.compression(), bytes.slice(HEADER_BYTES..)) {
            Ok(body) => {
                self.batch = Some(BatchCursor {
                    header,
                    body,
                    index: 0,
                });
                Some(Ok(()))
            }
            Err(error) => {
                self.next_offset = self.next_offset.max(header.next_offset());
                Some(Err(UndecodableBatch {
                    base_offset: header.base_offset,
                    last_offset: header.last_offset(),
                    error,
                }))
            }
        }
    }
}

impl Iterator for Records {
    type Item = Result<StoredRecord, UndecodableBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        // Each pass consumes a record or a batch: bounded by the bytes given.
        loop {
            let Some(cursor) = self.batch.as_mut() else {
                match self.open_batch()? {
                    Ok(()) => continue,
                    Err(e) => return Some(Err(e)),
                }
            };
            let header = cursor.header;
            if cursor.index >= header.record_count {
                if !cursor.body.is_empty() {
                    self.batch = None;
                    return Some(Err(undecodable(&header, "bytes after the last record")));
                }
                self.next_offset = self.next_offset.max(header.next_offset());
                self.batch = None;
                continue;
            }
            let index = cursor.index;
            cursor.index += 1;
            match decode_record(&header, &mut cursor.body, index) {
                Ok(record) if record.offset < self.from => continue,
                Ok(record) => {
                    self.next_offset = self.next_offset.max(record.offset + 1);
                    return Some(Ok(record));
                }
                Err(error) => {
                    self.next_offset = self.next_offset.max(header.next_offset());
                    self.batch = None;
                    return Some(Err(UndecodableBatch {
                        base_offset: header.base_offset,
                        last_offset: header.last_offset(),
                        error,
                    }));
                }
            }
        }
    }
}

fn undecodable(header: &BatchHeader, reason: &'static str) -> UndecodableBatch {
    UndecodableBatch {
        base_offset: header.base_offset,
        last_offset: header.last_offset(),
        error: BatchError::BadRecord {
            index: header.record_count.max(0) as usize,
            reason,
        },
    }
}

/// Decodes the record at the front of `body` and advances past it. Fields are read through
/// a cursor over the borrowed bytes; only the key, the value and header values become
/// `Bytes` (one reference count each, sharing the batch's buffer).
fn decode_record(header: &BatchHeader, body: &mut Bytes, index: i32) -> Result<StoredRecord, BatchError> {
    let bad = |reason| BatchError::BadRecord {
        index: index as usize,
        reason,
    };
    let (len, after_len) = get_varint(body).ok_or(bad("truncated length"))?;
    let len = usize::try_from(len).map_err(|_| bad("negative length"))?;
    let prefix = body.len() - after_len.len();
    if after_len.len() < len {
        return Err(bad("length runs past the batch"));
    }
    if len == 0 {
        return Err(bad("empty record"));
    }
    // The first byte holds the record's (unused) attributes.
    let mut r = Cursor {
        body,
        at: prefix + 1,
        end: prefix + len,
    };
    let timestamp_delta = r.varlong().ok_or(bad("truncated timestamp delta"))?;
    let offset_delta = r.varint().ok_or(bad("truncated offset delta"))?;
    let key = r.bytes().ok_or(bad("truncated key"))?;
    let value = r.bytes().ok_or(bad("truncated value"))?;
    let header_count = r.varint().ok_or(bad("truncated header count"))?;
    if header_count < 0 || header_count as usize > r.remaining() {
        return Err(bad("bad header count"));
    }
    let mut headers = Vec::with_capacity(header_count as usize);
    for _ in 0..header_count {
        let name = r
            .borrowed()
            .ok_or(bad("truncated header key"))?
            .ok_or(bad("null header key"))?;
        let name = std::str::from_utf8(name)
            .map_err(|_| bad("header key is not UTF-8"))?
            .to_owned();
        let value = r.bytes().ok_or(bad("truncated header value"))?;
        headers.push((name, value));
    }
    if r.remaining() != 0 {
        return Err(bad("trailing bytes inside record"));
    }
    body.advance(prefix + len);
    let timestamp_ms = if header.is_log_append_time() {
        header.max_timestamp
    } else {
        header.base_timestamp.saturating_add(timestamp_delta)
    };
    Ok(StoredRecord {
        offset: header.base_offset + i64::from(offset_delta),
        timestamp_ms,
        key,
        value,
        headers,
    })
}

/// One record's bytes, `at..end` of its batch's body, read front to back.
struct Cursor<'a> {
    body: &'a Bytes,
    at: usize,
    end: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &[u8] {
        &self.body[self.at..self.end]
    }

    fn remaining(&self) -> usize {
        self.end - self.at
    }

    fn varint(&mut self) -> Option<i32> {
        let rest = self.rest();
        let (v, after) = get_varint(rest)?;
        self.at += rest.len() - after.len();
        Some(v)
    }

    fn varlong(&mut self) -> Option<i64> {
        let rest = self.rest();
        let (v, after) = get_varlong(rest)?;
        self.at += rest.len() - after.len();
        Some(v)
    }

    /// The range of a length-prefixed byte string; `Some(None)` for length -1.
    fn range(&mut self) -> Option<Option<std::ops::Range<usize>>> {
        let len = self.varint()?;
        if len < 0 {
            return Some(None);
        }
        let len = len as usize;
        if self.remaining() < len {
            return None;
        }
        let range = self.at..self.at + len;
        self.at += len;
        Some(Some(range))
    }

    /// A length-prefixed byte string sharing the body's buffer.
    fn bytes(&mut self) -> Option<Option<Bytes>> {
        Some(self.range()?.map(|r| self.body.slice(r)))
    }

    /// A length-prefixed byte string, borrowed.
    fn borrowed(&mut self) -> Option<Option<&[u8]>> {
        let body: &Bytes = self.body;
        Some(self.range()?.map(|r| &body[r]))
    }
}

/// The xerial framing Kafka's Java client wraps snappy data in: magic, version, compatible
/// version, then blocks of `[u32 length][raw snappy]`.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

/// The records part of a batch, decompressed with `codec` and at most
/// [`DECOMPRESSED_BYTES_MAX`] bytes.
pub(crate) fn decompress(codec: i16, data: Bytes) -> Result<Bytes, BatchError> {
    let failed = |reason: String| BatchError::Decompress { codec, reason };
    let limited = |reader: &mut dyn Read| -> Result<Bytes, BatchError> {
        let mut out = Vec::new();
        reader
            .take(DECOMPRESSED_BYTES_MAX as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| failed(e.to_string()))?;
        if out.len() > DECOMPRESSED_BYTES_MAX {
            return Err(failed(format!("inflates beyond {DECOMPRESSED_BYTES_MAX} bytes")));
        }
        Ok(Bytes::from(out))
    };
    match codec {
        0 => Ok(data),
        1 => limited(&mut flate2::read::GzDecoder::new(&data[..])),
        2 => snappy(&data).map_err(failed),
        3 => {
            let mut decoder = lz4::Decoder::new(&data[..]).map_err(|e| failed(e.to_string()))?;
            limited(&mut decoder)
        }
        4 => {
            let mut decoder =
                zstd::stream::read::Decoder::new(&data[..]).map_err(|e| failed(e.to_string()))?;
            limited(&mut decoder)
        }
        codec => Err(BatchError::BadCompression { codec }),
    }
}

fn snappy(data: &[u8]) -> Result<Bytes, String> {
    if !data.starts_with(XERIAL_MAGIC) {
        return snappy_block(data, DECOMPRESSED_BYTES_MAX).map(Bytes::from);
    }
    let mut rest = data.get(XERIAL_HEADER_BYTES..).ok_or("truncated xerial header")?;
    let mut out = Vec::new();
    // Every block consumes at least its 4-byte length: bounded by the input.
    while !rest.is_empty() {
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or("truncated xerial block length")?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let block = rest.get(4..4 + len).ok_or("xerial block runs past the data")?;
        let room = DECOMPRESSED_BYTES_MAX - out.len();
        out.extend_from_slice(&snappy_block(block, room)?);
        rest = &rest[4 + len..];
    }
    Ok(Bytes::from(out))
}

fn snappy_block(block: &[u8], room: usize) -> Result<Vec<u8>, String> {
    let len = snap::raw::decompress_len(block).map_err(|e| e.to_string())?;
    if len > room {
        return Err(format!("inflates beyond {DECOMPRESSED_BYTES_MAX} bytes"));
    }
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(|e| e.to_string())
}
