//! Malformed input and limits: the broker closes the offending connection (or answers with
//! an error code), logs it, and keeps serving everyone else.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use crate::harness::Rivulet;

fn connect(server: &Rivulet) -> TcpStream {
    let s = TcpStream::connect(server.bootstrap()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// An ApiVersions request frame (header v1: key, version, correlation id, client id).
fn api_versions_frame(version: i16, correlation_id: i32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes());
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"test");
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("response length");
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("response body");
    body
}

/// True when the server closed the connection (EOF or reset) within the read timeout.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

fn assert_api_versions_works(s: &mut TcpStream, correlation_id: i32) {
    s.write_all(&api_versions_frame(0, correlation_id)).expect("send");
    let resp = read_frame(s);
    assert_eq!(&resp[0..4], &correlation_id.to_be_bytes());
    assert_eq!(&resp[4..6], &0i16.to_be_bytes(), "error code NONE");
}

/// A Produce v3 request for `topic` partition 0 carrying `records` (non-flexible encoding).
fn produce_frame(topic: &str, records: &[u8], correlation_id: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0i16.to_be_bytes()); // Produce
    b.extend_from_slice(&3i16.to_be_bytes()); // v3
    b.extend_from_slice(&correlation_id.to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // null transactional id
    b.extend_from_slice(&1i16.to_be_bytes()); // acks=1
    b.extend_from_slice(&5000i32.to_be_bytes()); // timeout
    b.extend_from_slice(&1i32.to_be_bytes()); // one topic
    b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    b.extend_from_slice(topic.as_bytes());
    b.extend_from_slice(&1i32.to_be_bytes()); // one partition
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&(records.len() as i32).to_be_bytes());
    b.extend_from_slice(records);
    let mut frame = (b.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&b);
    frame
}

#[test]
fn malformed_frames_close_only_the_offending_connection() {
    let mut server = Rivulet::start_with(&["--request-bytes-max", "1048576"], &[]);
    let mut healthy = connect(&server);
    assert_api_versions_works(&mut healthy, 1);

    // Garbage bytes.
    let mut s = connect(&server);
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = s.write_all(&garbage);
    assert!(closed_by_server(&mut s), "garbage closes the connection");

    // Oversized and negative lengths.
    for len in [i32::MAX, 2 << 20, -5, 3] {
        let mut s = connect(&server);
        s.write_all(&len.to_be_bytes()).expect("send length");
        assert!(closed_by_server(&mut s), "length {len} closes the connection");
    }

    // Truncated frame: length says 100, 10 bytes arrive, then the client stops sending.
    let mut s = connect(&server);
    s.write_all(&100i32.to_be_bytes()).expect("send");
    s.write_all(&[0u8; 10]).expect("send");
    s.shutdown(Shutdown::Write).expect("half close");
    assert!(closed_by_server(&mut s), "truncated frame closes the connection");

    // Unknown API key with valid framing.
    let mut s = connect(&server);
    let mut frame = api_versions_frame(0, 9);
    frame[4..6].copy_from_slice(&999i16.to_be_bytes());
    s.write_all(&frame).expect("send");
    assert!(closed_by_server(&mut s), "unknown API closes the connection");

    // A too-new ApiVersions gets error 35 with the supported list in a v0 body.
    let mut s = connect(&server);
    s.write_all(&api_versions_frame(99, 42)).expect("send");
    let resp = read_frame(&mut s);
    assert_eq!(&resp[0..4], &42i32.to_be_bytes());
    assert_eq!(&resp[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    let count = i32::from_be_bytes([resp[6], resp[7], resp[8], resp[9]]);
    assert!(count > 10, "supported APIs are listed ({count})");

    // A bad record batch is refused with CORRUPT_MESSAGE; the connection stays usable.
    let mut s = connect(&server);
    s.write_all(&produce_frame("bad-batch", &[7u8; 80], 5))
        .expect("send");
    let resp = read_frame(&mut s);
    assert_eq!(&resp[0..4], &5i32.to_be_bytes());
    // topics(4) name(2+9) partitions(4) index(4) error_code(2)
    let at = 4 + 4 + 2 + "bad-batch".len() + 4 + 4;
    assert_eq!(&resp[at..at + 2], &2i16.to_be_bytes(), "CORRUPT_MESSAGE");
    assert_api_versions_works(&mut s, 6);

    // The healthy connection and new clients are unaffected.
    assert_api_versions_works(&mut healthy, 2);
    let mut fresh = connect(&server);
    assert_api_versions_works(&mut fresh, 3);
    assert!(server.is_running());
    let log = server.log();
    assert!(log.contains("Closing connection"), "bad input is logged:\n{log}");
    assert!(log.contains("Produce rejected"), "bad batch is logged:\n{log}");
}

#[test]
fn connections_beyond_the_limit_are_refused_and_others_keep_working() {
    let server = Rivulet::start_with(&["--connections-max", "2"], &[]);
    // The harness's readiness probe may hold a slot for a moment; wait until two are served.
    let mut a = connect_served(&server);
    let mut b = connect_served(&server);
    assert_api_versions_works(&mut a, 1);
    assert_api_versions_works(&mut b, 2);
    let mut c = connect(&server);
    let _ = c.write_all(&api_versions_frame(0, 3));
    assert!(closed_by_server(&mut c), "third connection is refused");
    assert_api_versions_works(&mut a, 4);
    drop(b);
    // Once a slot frees up, a new connection is served.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut d = connect(&server);
        if d.write_all(&api_versions_frame(0, 5)).is_ok() {
            let mut len = [0u8; 4];
            if d.read_exact(&mut len).is_ok() {
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "a freed slot is reused");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.log().contains("connections_max reached"));
}

/// Connects, retrying until the server answers an ApiVersions request.
fn connect_served(server: &Rivulet) -> TcpStream {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut s = connect(server);
        if s.write_all(&api_versions_frame(0, 0)).is_ok() {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).is_ok() {
                let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
                if s.read_exact(&mut body).is_ok() {
                    return s;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server never had a free slot"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produce v3 with a chosen `acks` (non-flexible encoding), one record batch.
fn produce_frame_acks(topic: &str, records: &[u8], correlation_id: i32, acks: i16) -> Vec<u8> {
    let mut frame = produce_frame(topic, records, correlation_id);
    // length(4) key(2) version(2) correlation(4) client id(2) transactional id(2) => acks
    frame[16..18].copy_from_slice(&acks.to_be_bytes());
    frame
}

/// A valid uncompressed RecordBatch v2 with one record (value "x"); CRC-32C computed here.
fn one_record_batch() -> Vec<u8> {
    // record: length varint, attributes, ts delta, offset delta, key len -1, value len 1, "x", 0 headers
    let record: Vec<u8> = vec![0, 0, 0, 1, 2, b'x', 0];
    let mut body = vec![(record.len() as u8) << 1];
    body.extend_from_slice(&record);
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes()); // base offset
    b.extend_from_slice(&((49 + body.len()) as i32).to_be_bytes()); // batch length
    b.extend_from_slice(&0i32.to_be_bytes()); // leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc
    b.extend_from_slice(&0i16.to_be_bytes()); // attributes
    b.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    b.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    b.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    b.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    b.extend_from_slice(&1i32.to_be_bytes()); // record count
    b.extend_from_slice(&body);
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b
}

fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn produce_with_acks_0_gets_no_response_and_acks_1_gets_its_offset() {
    let server = Rivulet::start();
    let mut s = connect(&server);
    s.write_all(&produce_frame_acks("acks-zero", &one_record_batch(), 10, 0))
        .expect("send");
    s.write_all(&produce_frame_acks("acks-zero", &one_record_batch(), 11, 1))
        .expect("send");
    // The first response on the wire belongs to the acks=1 request.
    let resp = read_frame(&mut s);
    assert_eq!(&resp[0..4], &11i32.to_be_bytes(), "acks=0 got no response");
    let at = 4 + 4 + 2 + "acks-zero".len() + 4 + 4;
    assert_eq!(&resp[at..at + 2], &0i16.to_be_bytes(), "NONE");
    assert_eq!(
        &resp[at + 2..at + 10],
        &1i64.to_be_bytes(),
        "the acks=1 batch follows the acks=0 batch at offset 1"
    );
}

/// InitProducerId v0 → (error code, producer id, epoch).
fn init_producer_id(s: &mut TcpStream, correlation_id: i32) -> (i16, i64, i16) {
    let mut b = Vec::new();
    b.extend_from_slice(&22i16.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&correlation_id.to_be_bytes());
    b.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
    b.extend_from_slice(&(-1i16).to_be_bytes()); // null transactional id
    b.extend_from_slice(&60_000i32.to_be_bytes());
    let mut frame = (b.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&b);
    s.write_all(&frame).expect("send");
    let resp = read_frame(s);
    assert_eq!(&resp[0..4], &correlation_id.to_be_bytes());
    let error = i16::from_be_bytes([resp[8], resp[9]]);
    let mut pid = [0u8; 8];
    pid.copy_from_slice(&resp[10..18]);
    (
        error,
        i64::from_be_bytes(pid),
        i16::from_be_bytes([resp[18], resp[19]]),
    )
}

/// Sends an idempotent one-record batch with acks=1; returns (error code, base offset).
fn produce_idempotent(
    s: &mut TcpStream,
    topic: &str,
    producer: (i64, i16),
    sequence: i32,
    correlation_id: i32,
) -> (i16, i64) {
    let batch = rivulet_log::batch::build(
        0,
        1_700_000_000_000,
        Some((producer.0, producer.1, sequence)),
        &[rivulet_log::record::Record::new(
            None,
            Some(format!("seq-{sequence}").into_bytes()),
        )],
    );
    s.write_all(&produce_frame_acks(topic, &batch, correlation_id, 1))
        .expect("send");
    let resp = read_frame(s);
    assert_eq!(&resp[0..4], &correlation_id.to_be_bytes());
    let at = 4 + 4 + 2 + topic.len() + 4 + 4;
    let error = i16::from_be_bytes([resp[at], resp[at + 1]]);
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&resp[at + 2..at + 10]);
    (error, i64::from_be_bytes(offset))
}

#[test]
fn idempotent_producer_state_survives_a_restart() {
    let mut server = Rivulet::start();
    let topic = "idem-restart";
    let mut s = connect(&server);
    let (error, pid, epoch) = init_producer_id(&mut s, 1);
    assert_eq!(error, 0);
    assert!(pid >= 0);
    assert_eq!(produce_idempotent(&mut s, topic, (pid, epoch), 0, 2), (0, 0));
    assert_eq!(produce_idempotent(&mut s, topic, (pid, epoch), 1, 3), (0, 1));
    drop(s);

    server.restart();
    let mut s = connect(&server);
    // A retried batch is answered with its original offset and not stored again.
    assert_eq!(produce_idempotent(&mut s, topic, (pid, epoch), 1, 4), (0, 1));
    // A gap in the sequence is refused with OUT_OF_ORDER_SEQUENCE_NUMBER.
    assert_eq!(produce_idempotent(&mut s, topic, (pid, epoch), 5, 5).0, 45);
    // The next sequence continues the log.
    assert_eq!(produce_idempotent(&mut s, topic, (pid, epoch), 2, 6), (0, 2));
    // Producer ids are not reused after a restart.
    let (_, pid2, _) = init_producer_id(&mut s, 7);
    assert_ne!(pid2, pid);
}

#[test]
fn request_memory_stays_bounded_under_a_flood_of_large_requests() {
    let server = Rivulet::start_with(
        &[
            "--request-bytes-max",
            "4194304",
            "--request-memory-bytes-max",
            "4194304",
        ],
        &[],
    );
    let Some(before_kib) = server.rss_kib() else {
        println!("SKIPPED request_memory_stays_bounded_under_a_flood_of_large_requests: no /proc");
        return;
    };
    // 40 connections each announce a 3 MiB request, send 2.5 MiB of it, and stall.
    // Unbounded, the broker would hold 100 MiB of partial requests.
    let chunk = vec![0x5au8; 64 * 1024];
    let mut flood = Vec::new();
    for _ in 0..40 {
        let mut s = connect(&server);
        s.write_all(&(3i32 << 20).to_be_bytes()).expect("length");
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        for _ in 0..40 {
            if s.write_all(&chunk).is_err() {
                break; // the broker is not reading this connection: backpressure
            }
        }
        flood.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after_kib = server.rss_kib().expect("rss");
    let grown_mib = after_kib.saturating_sub(before_kib) / 1024;
    assert!(
        grown_mib < 40,
        "resident memory grew by {grown_mib} MiB under the flood"
    );
    // Other clients are still served.
    let mut fresh = connect(&server);
    assert_api_versions_works(&mut fresh, 1);
    drop(flood);
}

#[test]
fn huge_array_counts_are_rejected_without_crashing() {
    let mut server = Rivulet::start();
    // Metadata v1 (header v1, null client id) whose topic array claims 2^31-1 entries.
    let mut classic = Vec::new();
    classic.extend_from_slice(&3i16.to_be_bytes());
    classic.extend_from_slice(&1i16.to_be_bytes());
    classic.extend_from_slice(&7i32.to_be_bytes());
    classic.extend_from_slice(&(-1i16).to_be_bytes());
    classic.extend_from_slice(&i32::MAX.to_be_bytes());
    // Metadata v9 (flexible: header v2 with empty tagged fields) whose compact topic array
    // claims 2^32-2 entries (unsigned varint 0xffffffff).
    let mut flexible = Vec::new();
    flexible.extend_from_slice(&3i16.to_be_bytes());
    flexible.extend_from_slice(&9i16.to_be_bytes());
    flexible.extend_from_slice(&8i32.to_be_bytes());
    flexible.extend_from_slice(&(-1i16).to_be_bytes());
    flexible.push(0); // no tagged fields
    flexible.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    for body in [classic, flexible] {
        let mut s = connect(&server);
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        s.write_all(&frame).expect("send");
        assert!(closed_by_server(&mut s), "the bad request closes its connection");
        assert!(server.is_running(), "the broker survives:\n{}", server.log());
    }
    let mut fresh = connect(&server);
    assert_api_versions_works(&mut fresh, 1);
}

#[test]
fn pipelined_idempotent_produces_are_appended_and_answered_in_request_order() {
    let server = Rivulet::start();
    let topic = "pipelined";
    let mut s = connect(&server);
    let (error, pid, epoch) = init_producer_id(&mut s, 1);
    assert_eq!(error, 0);
    // Eight acks=all requests with consecutive sequences, then an ApiVersions request, all
    // written before any response is read: the broker reads on while earlier produces wait
    // for their syncs, and must still append them in order (else the sequences would be
    // refused as out of order) and answer in order.
    let mut wire = Vec::new();
    for sequence in 0..8 {
        let batch = rivulet_log::batch::build(
            0,
            1_700_000_000_000,
            Some((pid, epoch, sequence)),
            &[rivulet_log::record::Record::new(
                None,
                Some(format!("seq-{sequence}").into_bytes()),
            )],
        );
        wire.extend_from_slice(&produce_frame_acks(topic, &batch, 100 + sequence, -1));
    }
    wire.extend_from_slice(&api_versions_frame(0, 200));
    s.write_all(&wire).expect("send pipelined requests");
    for sequence in 0..8i32 {
        let resp = read_frame(&mut s);
        assert_eq!(&resp[0..4], &(100 + sequence).to_be_bytes(), "answered in order");
        let at = 4 + 4 + 2 + topic.len() + 4 + 4;
        assert_eq!(
            i16::from_be_bytes([resp[at], resp[at + 1]]),
            0,
            "sequence {sequence}"
        );
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&resp[at + 2..at + 10]);
        assert_eq!(
            i64::from_be_bytes(offset),
            i64::from(sequence),
            "appended in order"
        );
    }
    let resp = read_frame(&mut s);
    assert_eq!(&resp[0..4], &200i32.to_be_bytes(), "the last response comes last");
    // A retry of the whole pipeline is recognised batch by batch.
    assert_eq!(produce_idempotent(&mut s, topic, (pid, epoch), 3, 300), (0, 3));
}
