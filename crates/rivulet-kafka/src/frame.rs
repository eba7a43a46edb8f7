//! Response frames: encoded bytes, and for Fetch the record bytes left in the segment files
//! they lie in, to be sent from there without a copy through user space.
//!
//! A Fetch response is framed here rather than by `kafka-protocol` alone: its partitions
//! are encoded by `kafka-protocol` with no records, and the records field is then written
//! with the slice's length and the slice itself. `tests` checks, for every supported
//! version, that the result is byte for byte what `kafka-protocol` encodes with the
//! records in place.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use rivulet_broker::FileSlice;

use crate::error::ProtocolError;

/// One part of a frame.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Encoded bytes.
    Bytes(Bytes),
    /// Record bytes to send from a segment file.
    File(FileSlice),
}

impl Piece {
    /// Bytes of this piece.
    pub fn len(&self) -> u64 {
        match self {
            Piece::Bytes(b) => b.len() as u64,
            Piece::File(f) => f.len(),
        }
    }

    /// True when the piece holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A whole response frame (its length prefix included) in pieces.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// The pieces, in order.
    pub pieces: Vec<Piece>,
}

impl Frame {
    /// Bytes of the frame.
    pub fn len(&self) -> u64 {
        self.pieces.iter().map(Piece::len).sum()
    }

    /// True when the frame holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Frame {
        Frame {
            pieces: vec![Piece::Bytes(bytes)],
        }
    }
}

/// Encodes a handler's response as a frame: a Fetch with its slices, anything else whole.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
    slices: Vec<Option<FileSlice>>,
) -> Result<Frame, ProtocolError> {
    match body {
        ResponseKind::Fetch(fetch) => encode_fetch(version, correlation_id, fetch, slices),
        body => Ok(Frame::from(crate::codec::encode_response(
            api_key,
            version,
            correlation_id,
            body,
        )?)),
    }
}

/// Builds a frame from encoded bytes and slices.
struct Builder {
    pieces: Vec<Piece>,
    buf: BytesMut,
}

impl Builder {
    fn slice(&mut self, slice: FileSlice) {
        let done = std::mem::take(&mut self.buf).freeze();
        if !done.is_empty() {
            self.pieces.push(Piece::Bytes(done));
        }
        self.pieces.push(Piece::File(slice));
    }

    fn finish(mut self) -> Frame {
        if !self.buf.is_empty() {
            self.pieces.push(Piece::Bytes(self.buf.freeze()));
        }
        Frame { pieces: self.pieces }
    }
}

/// Encodes a Fetch response of `version` (4 to 12). `slices` holds, in topic then partition
/// order, each partition's records left in a file; a partition with a slice must have
/// `records: None` in `response`.
pub fn encode_fetch(
    version: i16,
    correlation_id: i32,
    response: &FetchResponse,
    slices: Vec<Option<FileSlice>>,
) -> Result<Frame, ProtocolError> {
    let fail = |reason: String| ProtocolError::Encode {
        api_key: ApiKey::Fetch as i16,
        version,
        reason,
    };
    if !(4..=12).contains(&version) {
        return Err(fail(format!("Fetch v{version} is not framed here")));
    }
    let flexible = version >= 12;
    let mut b = Builder {
        pieces: Vec::new(),
        buf: BytesMut::with_capacity(256),
    };
    b.buf.put_i32(0); // frame length, patched at the end
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut b.buf, ApiKey::Fetch.response_header_version(version))
        .map_err(|e| fail(format!("header: {e:#}")))?;
    b.buf.put_i32(response.throttle_time_ms);
    if version >= 7 {
        b.buf.put_i16(response.error_code);
        b.buf.put_i32(response.session_id);
    }
    put_len(&mut b.buf, flexible, response.responses.len());
    let mut slices = slices.into_iter();
    for topic in &response.responses {
        let name = topic.topic.0.as_bytes();
        if flexible {
            put_uvarint(&mut b.buf, name.len() as u64 + 1);
        } else {
            let len = i16::try_from(name.len()).map_err(|_| fail("topic name too long".into()))?;
            b.buf.put_i16(len);
        }
        b.buf.put_slice(name);
        put_len(&mut b.buf, flexible, topic.partitions.len());
        for partition in &topic.partitions {
            put_partition(&mut b, version, partition, slices.next().flatten()).map_err(fail)?;
        }
        if flexible {
            b.buf.put_u8(0); // no tagged fields
        }
    }
    if flexible {
        b.buf.put_u8(0);
    }
    let mut frame = b.finish();
    patch_length(&mut frame).map_err(fail)?;
    Ok(frame)
}

/// One partition: `kafka-protocol` encodes it with no records; with a slice, the null
/// records field is replaced by the slice's length and the slice.
fn put_partition(
    b: &mut Builder,
    version: i16,
    p: &PartitionData,
    slice: Option<FileSlice>,
) -> Result<(), String> {
    let Some(slice) = slice else {
        return p.encode(&mut b.buf, version).map_err(|e| format!("{e:#}"));
    };
    if p.records.is_some() {
        return Err("a partition with both records and a file slice".into());
    }
    let mut one = BytesMut::with_capacity(64);
    p.encode(&mut one, version).map_err(|e| format!("{e:#}"))?;
    // Null records, then (flexible versions) an empty tagged-field section.
    let tail: &[u8] = if version >= 12 { &[0, 0] } else { &[0xff; 4] };
    if !one.ends_with(tail) {
        return Err("partition fields after the records are not supported with file slices".into());
    }
    b.buf.put_slice(&one[..one.len() - tail.len()]);
    let len = slice.len();
    if version >= 12 {
        put_uvarint(&mut b.buf, len + 1);
    } else {
        b.buf
            .put_i32(i32::try_from(len).map_err(|_| "records over 2 GiB".to_string())?);
    }
    b.slice(slice);
    if version >= 12 {
        b.buf.put_u8(0);
    }
    Ok(())
}

fn put_len(buf: &mut BytesMut, flexible: bool, n: usize) {
    if flexible {
        put_uvarint(buf, n as u64 + 1);
    } else {
        buf.put_i32(n as i32);
    }
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Writes the frame's length into its first four bytes.
fn patch_length(frame: &mut Frame) -> Result<(), String> {
    let total = frame.len();
    let body = i32::try_from(total - 4).map_err(|_| "response over 2 GiB".to_string())?;
    let Some(Piece::Bytes(first)) = frame.pieces.first_mut() else {
        return Err("a frame must start with bytes".into());
    };
    let mut head = BytesMut::from(&first[..]);
    head[..4].copy_from_slice(&body.to_be_bytes());
    *first = head.freeze();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;
    use rivulet_broker::{LogError, SliceRead};

    /// A log holding one batch per payload, so tests can take real file slices of it.
    struct Fixture {
        _dir: tempfile::TempDir,
        log: rivulet_log::Log,
    }

    fn fixture(payloads: &[Vec<u8>]) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = rivulet_log::LogConfig {
            fsync: rivulet_log::FsyncPolicy::None,
            ..rivulet_log::LogConfig::default()
        };
        let log = rivulet_log::Log::open(dir.path().join("p"), config).expect("open");
        for p in payloads {
            let record = rivulet_log::record::Record::new(None, Some(p.clone()));
            log.append(&rivulet_log::batch::build(0, 1, None, &[record]))
                .expect("append");
        }
        Fixture { _dir: dir, log }
    }

    fn slice_of(log: &rivulet_log::Log, offset: i64) -> Result<SliceRead, LogError> {
        log.read_slice(offset, 1 << 20)
    }

    /// The frame's bytes with every slice read back.
    fn flatten(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &frame.pieces {
            match piece {
                Piece::Bytes(b) => out.extend_from_slice(b),
                Piece::File(f) => out.extend_from_slice(&f.read().expect("read slice")),
            }
        }
        out
    }

    /// A topic name with its partitions as (index, high watermark, with records).
    type TopicSpec = (String, Vec<(i32, i64, bool)>);

    fn response(topics: &[TopicSpec], aborted: bool) -> FetchResponse {
        let responses = topics
            .iter()
            .map(|(name, parts)| {
                let partitions = parts
                    .iter()
                    .map(|&(index, hw, _)| {
                        let mut p = PartitionData::default()
                            .with_partition_index(index)
                            .with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_log_start_offset(0)
                            .with_records(Some(Bytes::new()));
                        if aborted {
                            p.aborted_transactions = Some(vec![AbortedTransaction::default()
                                .with_producer_id(kafka_protocol::messages::ProducerId(7))
                                .with_first_offset(3)]);
                        }
                        p
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(name.clone())))
                    .with_partitions(partitions)
            })
            .collect();
        FetchResponse::default()
            .with_throttle_time_ms(5)
            .with_session_id(0)
            .with_responses(responses)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn frames_match_kafka_protocol_byte_for_byte(
            version in 4i16..=12,
            topics in proptest::collection::vec(
                ("[a-z]{1,12}", proptest::collection::vec((0i32..50, 0i64..1000, any::<bool>()), 0..5)),
                0..4,
            ),
            aborted in any::<bool>(),
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..6),
        ) {
            let fx = fixture(&payloads);
            let mut with_slices = response(&topics, aborted);
            let mut expected = with_slices.clone();
            let mut slices = Vec::new();
            let mut n = 0i64;
            for (t, (_, parts)) in topics.iter().enumerate() {
                for (i, &(_, _, sliced)) in parts.iter().enumerate() {
                    let slice = if sliced {
                        let read = slice_of(&fx.log, n % payloads.len() as i64).expect("slice");
                        n += 1;
                        read.slice
                    } else {
                        None
                    };
                    if let Some(s) = &slice {
                        with_slices.responses[t].partitions[i].records = None;
                        expected.responses[t].partitions[i].records = Some(s.read().expect("read"));
                    }
                    slices.push(slice);
                }
            }
            let frame = encode_fetch(version, 42, &with_slices, slices).expect("frame");
            let reference = crate::codec::encode_response(ApiKey::Fetch, version, 42, &ResponseKind::Fetch(expected))
                .expect("reference");
            prop_assert_eq!(flatten(&frame), reference.to_vec());
            prop_assert_eq!(frame.len(), reference.len() as u64);
        }
    }

    #[test]
    fn unsupported_versions_are_an_error() {
        let r = FetchResponse::default();
        assert!(encode_fetch(3, 1, &r, Vec::new()).is_err());
        assert!(encode_fetch(13, 1, &r, Vec::new()).is_err());
    }
}
