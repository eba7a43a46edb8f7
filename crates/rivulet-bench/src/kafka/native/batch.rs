//! RecordBatch v2 for the native client: uncompressed batches of null-key records without
//! headers, written and read with as little work per record as the format allows.

/// Bytes of a RecordBatch v2 header.
const HEADER_BYTES: usize = 61;
/// Where the CRC-32C's coverage starts.
const CRC_START: usize = 21;

/// Appends a batch holding `payloads` (record values) with `base_timestamp` to `out`.
pub(super) fn encode(out: &mut Vec<u8>, payloads: &[&[u8]], base_timestamp: i64) {
    assert!(!payloads.is_empty(), "a batch holds at least one record");
    let start = out.len();
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset, set by the broker
    out.extend_from_slice(&0i32.to_be_bytes()); // batch length, patched below
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    out.push(2); // magic
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, patched below
    out.extend_from_slice(&0i16.to_be_bytes()); // attributes: uncompressed, create time
    out.extend_from_slice(&(payloads.len() as i32 - 1).to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&base_timestamp.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    out.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    out.extend_from_slice(&(payloads.len() as i32).to_be_bytes());
    for (i, payload) in payloads.iter().enumerate() {
        let mut body = [0u8; 24];
        let mut n = 0;
        body[n] = 0; // attributes
        n += 1;
        n += put_varint(&mut body[n..], 0); // timestamp delta
        n += put_varint(&mut body[n..], i as i64); // offset delta
        n += put_varint(&mut body[n..], -1); // null key
        n += put_varint(&mut body[n..], payload.len() as i64);
        let headers_len = 1; // header count 0
        let record_len = n + payload.len() + headers_len;
        let mut len = [0u8; 10];
        let l = put_varint(&mut len, record_len as i64);
        out.extend_from_slice(&len[..l]);
        out.extend_from_slice(&body[..n]);
        out.extend_from_slice(payload);
        out.push(0); // header count 0 (zigzag varint)
    }
    let batch_length = (out.len() - start - 12) as i32;
    out[start + 8..start + 12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&out[start + CRC_START..]);
    out[start + 17..start + 21].copy_from_slice(&crc.to_be_bytes());
}

/// Zigzag varint into `buf`; returns the bytes used.
fn put_varint(buf: &mut [u8], v: i64) -> usize {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 0;
    while u >= 0x80 {
        buf[n] = (u as u8) | 0x80;
        u >>= 7;
        n += 1;
    }
    buf[n] = u as u8;
    n + 1
}

fn get_varint(buf: &[u8]) -> Option<(i64, usize)> {
    let mut u: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        u |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((((u >> 1) as i64) ^ -((u & 1) as i64), i + 1));
        }
    }
    None
}

/// Calls `f` with each record value of the uncompressed batches in `bytes` at or after
/// `from`; returns the offset after the last whole batch, or `None` when a batch is
/// compressed or malformed (the caller counts an error and skips it).
pub(super) fn for_each_value(bytes: &[u8], from: i64, mut f: impl FnMut(&[u8])) -> Option<i64> {
    let mut at = 0usize;
    let mut next = from;
    // Each pass consumes one whole batch.
    while at + HEADER_BYTES <= bytes.len() {
        let b = &bytes[at..];
        let base = i64::from_be_bytes(b[0..8].try_into().ok()?);
        let total = 12 + usize::try_from(i32::from_be_bytes(b[8..12].try_into().ok()?)).ok()?;
        if total < HEADER_BYTES || total > b.len() {
            break;
        }
        let attributes = i16::from_be_bytes([b[21], b[22]]);
        let last_delta = i32::from_be_bytes(b[23..27].try_into().ok()?);
        let count = i32::from_be_bytes(b[57..61].try_into().ok()?);
        if attributes & 0x20 == 0 {
            if attributes & 0x07 != 0 {
                return None;
            }
            values(&b[HEADER_BYTES..total], base, count, from, &mut f)?;
        }
        next = next.max(base + i64::from(last_delta) + 1);
        at += total;
    }
    Some(next)
}

fn values(mut body: &[u8], base: i64, count: i32, from: i64, f: &mut impl FnMut(&[u8])) -> Option<()> {
    for _ in 0..count {
        let (len, used) = get_varint(body)?;
        let record = body.get(used..used + usize::try_from(len).ok()?)?;
        body = &body[used + record.len()..];
        let mut r = record.get(1..)?; // attributes
        let (_, n) = get_varint(r)?; // timestamp delta
        r = &r[n..];
        let (delta, n) = get_varint(r)?;
        r = &r[n..];
        let (key_len, n) = get_varint(r)?;
        r = &r[n..];
        if key_len > 0 {
            r = r.get(key_len as usize..)?;
        }
        let (value_len, n) = get_varint(r)?;
        r = &r[n..];
        if base + delta >= from && value_len >= 0 {
            f(r.get(..value_len as usize)?);
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_carry_a_valid_crc() {
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + i as usize]).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let mut out = Vec::new();
        encode(&mut out, &refs, 1_700_000_000_000);
        encode(&mut out, &refs[..2], 1_700_000_000_001);
        // The second batch continues at offset 5, as a broker would number it.
        let second = 12 + i32::from_be_bytes(out[8..12].try_into().expect("len")) as usize;
        out[second..second + 8].copy_from_slice(&5i64.to_be_bytes());
        let crc = u32::from_be_bytes(out[17..21].try_into().expect("crc"));
        assert_eq!(crc, crc32c::crc32c(&out[21..second]));
        let mut seen = Vec::new();
        let next = for_each_value(&out, 3, |v| seen.push(v.to_vec())).expect("decodes");
        assert_eq!(next, 7);
        assert_eq!(
            seen,
            vec![
                payloads[3].clone(),
                payloads[4].clone(),
                payloads[0].clone(),
                payloads[1].clone()
            ]
        );
    }
}
