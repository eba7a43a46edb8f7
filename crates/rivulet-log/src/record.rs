//! Records inside an uncompressed RecordBatch v2: varint codec, no I/O.
//!
//! The log never re-encodes a producer's batch. This codec exists to validate offset deltas
//! on append, to read keys for compaction, and to build batches in tools and tests.

use crate::error::BatchError;

/// One record of a RecordBatch v2.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Attributes byte (unused by Kafka, always 0).
    pub attributes: i8,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Key, or `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Value, or `None` for a tombstone.
    pub value: Option<Vec<u8>>,
    /// Headers in order; duplicate keys are kept.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// A record with a key and value and no headers.
    pub fn new(key: Option<Vec<u8>>, value: Option<Vec<u8>>) -> Record {
        Record {
            key,
            value,
            ..Record::default()
        }
    }

    /// Appends the record's wire encoding (length-prefixed) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(32);
        body.push(self.attributes as u8);
        put_varlong(&mut body, self.timestamp_delta);
        put_varint(&mut body, self.offset_delta);
        put_bytes(&mut body, self.key.as_deref());
        put_bytes(&mut body, self.value.as_deref());
        put_varint(&mut body, self.headers.len() as i32);
        for (k, v) in &self.headers {
            put_bytes(&mut body, Some(k.as_bytes()));
            put_bytes(&mut body, v.as_deref());
        }
        put_varint(out, body.len() as i32);
        out.extend_from_slice(&body);
    }
}

/// Decodes the records of an uncompressed batch body (the bytes after the 61-byte header).
pub fn decode_all(mut body: &[u8], record_count: i32) -> Result<Vec<Record>, BatchError> {
    let count = usize::try_from(record_count).map_err(|_| BatchError::BadRecord {
        index: 0,
        reason: "negative record count",
    })?;
    let mut out = Vec::with_capacity(count.min(4096));
    for index in 0..count {
        let (record, rest) = decode_one(body, index)?;
        out.push(record);
        body = rest;
    }
    if !body.is_empty() {
        return Err(BatchError::BadRecord {
            index: count,
            reason: "trailing bytes after the last record",
        });
    }
    Ok(out)
}

/// Checks that an uncompressed batch body holds exactly `record_count` well-formed records
/// whose offset deltas run 0, 1, 2, ...
pub fn check_offset_deltas(mut body: &[u8], record_count: i32) -> Result<(), BatchError> {
    let count = usize::try_from(record_count).map_err(|_| BatchError::BadRecord {
        index: 0,
        reason: "negative record count",
    })?;
    for index in 0..count {
        let bad = |reason| BatchError::BadRecord { index, reason };
        let (len, rest) = get_varint(body).ok_or(bad("truncated length"))?;
        let len = usize::try_from(len).map_err(|_| bad("negative length"))?;
        if rest.len() < len {
            return Err(bad("length runs past the batch"));
        }
        let (record, after) = rest.split_at(len);
        // attributes (1 byte), timestampDelta (varlong), offsetDelta (varint)
        let r = record.get(1..).ok_or(bad("empty record"))?;
        let (_, r) = get_varlong(r).ok_or(bad("truncated timestamp delta"))?;
        let (delta, _) = get_varint(r).ok_or(bad("truncated offset delta"))?;
        if delta as i64 != index as i64 {
            return Err(bad("offset delta out of sequence"));
        }
        body = after;
    }
    if !body.is_empty() {
        return Err(BatchError::BadRecord {
            index: count,
            reason: "trailing bytes after the last record",
        });
    }
    Ok(())
}

fn decode_one(body: &[u8], index: usize) -> Result<(Record, &[u8]), BatchError> {
    let bad = |reason| BatchError::BadRecord { index, reason };
    let (len, rest) = get_varint(body).ok_or(bad("truncated length"))?;
    let len = usize::try_from(len).map_err(|_| bad("negative length"))?;
    if rest.len() < len {
        return Err(bad("length runs past the batch"));
    }
    let (mut r, after) = rest.split_at(len);
    let attributes = *r.first().ok_or(bad("empty record"))? as i8;
    r = &r[1..];
    let (timestamp_delta, r2) = get_varlong(r).ok_or(bad("truncated timestamp delta"))?;
    let (offset_delta, r3) = get_varint(r2).ok_or(bad("truncated offset delta"))?;
    let (key, r4) = get_bytes(r3).ok_or(bad("truncated key"))?;
    let (value, r5) = get_bytes(r4).ok_or(bad("truncated value"))?;
    let (header_count, mut r6) = get_varint(r5).ok_or(bad("truncated header count"))?;
    if header_count < 0 || header_count as usize > r6.len() {
        return Err(bad("bad header count"));
    }
    let mut headers = Vec::with_capacity(header_count as usize);
    for _ in 0..header_count {
        let (k, rest) = get_bytes(r6).ok_or(bad("truncated header key"))?;
        let (v, rest) = get_bytes(rest).ok_or(bad("truncated header value"))?;
        let k = k.ok_or(bad("null header key"))?;
        let k = String::from_utf8(k.to_vec()).map_err(|_| bad("header key is not UTF-8"))?;
        headers.push((k, v.map(<[u8]>::to_vec)));
        r6 = rest;
    }
    if !r6.is_empty() {
        return Err(bad("trailing bytes inside record"));
    }
    Ok((
        Record {
            attributes,
            timestamp_delta,
            offset_delta,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers,
        },
        after,
    ))
}

fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, ((v << 1) ^ (v >> 31)) as u32 as u64);
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

fn get_uvarint(buf: &[u8], max_bytes: usize) -> Option<(u64, &[u8])> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(max_bytes) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, &buf[i + 1..]));
        }
    }
    None
}

pub(crate) fn get_varint(buf: &[u8]) -> Option<(i32, &[u8])> {
    let (u, rest) = get_uvarint(buf, 5)?;
    let u = u32::try_from(u).ok()?;
    Some((((u >> 1) as i32) ^ -((u & 1) as i32), rest))
}

pub(crate) fn get_varlong(buf: &[u8]) -> Option<(i64, &[u8])> {
    let (u, rest) = get_uvarint(buf, 10)?;
    Some((((u >> 1) as i64) ^ -((u & 1) as i64), rest))
}

fn get_bytes(buf: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let (len, rest) = get_varint(buf)?;
    if len < 0 {
        return Some((None, rest));
    }
    let len = len as usize;
    if rest.len() < len {
        return None;
    }
    Some((Some(&rest[..len]), &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            any::<i64>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            proptest::collection::vec(
                (
                    "[a-z]{0,8}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
                ),
                0..4,
            ),
        )
            .prop_map(|(ts, key, value, headers)| Record {
                attributes: 0,
                timestamp_delta: ts,
                offset_delta: 0,
                key,
                value,
                headers,
            })
    }

    proptest! {
        #[test]
        fn records_round_trip(records in proptest::collection::vec(arb_record(), 1..20)) {
            let mut body = Vec::new();
            let mut expected = records.clone();
            for (i, r) in expected.iter_mut().enumerate() {
                r.offset_delta = i as i32;
                r.encode(&mut body);
            }
            check_offset_deltas(&body, expected.len() as i32).expect("deltas in order");
            let decoded = decode_all(&body, expected.len() as i32).expect("decodes");
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), n in 0i32..10) {
            let _ = decode_all(&bytes, n);
            let _ = check_offset_deltas(&bytes, n);
        }
    }
}
