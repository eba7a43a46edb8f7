//! Hostile input on raw sockets: the right connection error, and the broker keeps serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::Rivulet;

fn connect(server: &Rivulet) -> TcpStream {
    let addr = server.amqp_url().trim_start_matches("amqp://").to_string();
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s
}

/// Everything the server sends until it closes the socket.
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    f
}

fn short(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// Protocol header, start-ok, tune-ok (frame_max 4096), open: a client through the
/// handshake, the server's replies read.
fn handshake(server: &Rivulet) -> TcpStream {
    let mut s = connect(server);
    s.write_all(b"AMQP\x00\x00\x09\x01").expect("header");
    let mut start_ok = vec![0, 10, 0, 11, 0, 0, 0, 0];
    start_ok.extend(short("PLAIN"));
    start_ok.extend_from_slice(&12u32.to_be_bytes());
    start_ok.extend_from_slice(b"\0guest\0guest");
    start_ok.extend(short("en_US"));
    s.write_all(&frame(1, 0, &start_ok)).expect("start-ok");
    let mut tune_ok = vec![0, 10, 0, 31, 0, 16];
    tune_ok.extend_from_slice(&4096u32.to_be_bytes());
    tune_ok.extend_from_slice(&[0, 0]);
    s.write_all(&frame(1, 0, &tune_ok)).expect("tune-ok");
    let mut open = vec![0, 10, 0, 40];
    open.extend(short("/"));
    open.extend_from_slice(&[0, 0]);
    s.write_all(&frame(1, 0, &open)).expect("open");
    // start, tune, open-ok
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !contains(&seen, &[0, 10, 0, 41]) {
        let n = s.read(&mut buf).expect("handshake replies");
        assert!(n > 0, "closed during handshake");
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// connection.close (10, 50) with this reply code.
fn closes_with(bytes: &[u8], code: u16) -> bool {
    let mut needle = vec![0, 10, 0, 50];
    needle.extend_from_slice(&code.to_be_bytes());
    contains(bytes, &needle)
}

fn still_serves(server: &Rivulet) {
    let mut s = handshake(server);
    s.write_all(&frame(1, 1, &[0, 20, 0, 10, 0]))
        .expect("channel.open");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).expect("open-ok");
    assert!(
        contains(&buf[..n], &[0, 20, 0, 11]),
        "channel.open-ok after the hostile clients"
    );
}

#[test]
fn a_wrong_protocol_header_gets_ours_back() {
    let server = Rivulet::start();
    let mut s = connect(&server);
    s.write_all(b"HTTP/1.1").expect("write");
    assert_eq!(read_all(&mut s), b"AMQP\x00\x00\x09\x01");
    still_serves(&server);
}

#[test]
fn garbage_oversized_and_misplaced_frames_close_with_the_right_code() {
    let server = Rivulet::start();
    // A frame larger than the negotiated frame_max (4096): FRAME_ERROR.
    let mut s = handshake(&server);
    s.write_all(&frame(3, 1, &vec![0u8; 5000])).expect("write");
    assert!(closes_with(&read_all(&mut s), 501), "oversized frame: 501");
    // A frame whose end octet is wrong: FRAME_ERROR.
    let mut s = handshake(&server);
    let mut bad = frame(1, 1, &[0, 20, 0, 10, 0]);
    *bad.last_mut().expect("end") = 0x00;
    s.write_all(&bad).expect("write");
    assert!(closes_with(&read_all(&mut s), 501), "bad frame end: 501");
    // A method that does not decode: SYNTAX_ERROR.
    let mut s = handshake(&server);
    s.write_all(&frame(1, 1, &[0, 99, 0, 99, 1, 2, 3]))
        .expect("write");
    assert!(closes_with(&read_all(&mut s), 502), "undecodable method: 502");
    // A method on a channel never opened: CHANNEL_ERROR.
    let mut s = handshake(&server);
    s.write_all(&frame(1, 7, &[0, 50, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0]))
        .expect("write");
    assert!(
        closes_with(&read_all(&mut s), 504),
        "method on a closed channel: 504"
    );
    // A channel above channel_max (16 was asked for): CHANNEL_ERROR.
    let mut s = handshake(&server);
    s.write_all(&frame(1, 17, &[0, 20, 0, 10, 0])).expect("write");
    assert!(
        closes_with(&read_all(&mut s), 504),
        "channel above channel_max: 504"
    );
    // Content with no publish before it: UNEXPECTED_FRAME.
    let mut s = handshake(&server);
    s.write_all(&frame(1, 1, &[0, 20, 0, 10, 0]))
        .expect("channel.open");
    s.write_all(&frame(3, 1, b"body")).expect("write");
    assert!(closes_with(&read_all(&mut s), 505), "body without publish: 505");
    // Truncated frame then EOF: the connection just ends.
    let mut s = handshake(&server);
    s.write_all(&[1, 0, 1, 0, 0, 0, 50, 0, 20]).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let _ = read_all(&mut s);
    still_serves(&server);
}
