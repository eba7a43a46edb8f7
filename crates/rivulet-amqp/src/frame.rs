//! Splitting the byte stream into frames, with the negotiated `frame_max` enforced before a
//! frame's payload is buffered. Pure: no I/O, so the fuzz target drives it directly.

use amq_protocol::frame::parsing::parse_content_header;
use amq_protocol::protocol::{basic::AMQPProperties, parse_class, AMQPClass};
use bytes::{Buf, Bytes, BytesMut};

/// Frame type octets.
pub const FRAME_METHOD: u8 = 1;
/// A content header frame.
pub const FRAME_HEADER: u8 = 2;
/// A content body frame.
pub const FRAME_BODY: u8 = 3;
/// A heartbeat frame.
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet closing every frame.
pub const FRAME_END: u8 = 0xCE;
/// Type, channel and size.
pub const HEADER_BYTES: usize = 7;
/// The protocol header a client opens with.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// The smallest `frame_max` a peer may ask for (the spec's `frame-min-size`).
pub const FRAME_MIN_BYTES: u32 = 4096;

/// Why the byte stream is not valid AMQP framing. Every one closes the connection with
/// `FRAME_ERROR` (501) or `SYNTAX_ERROR` (502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame larger than the negotiated `frame_max`.
    #[error("frame of {size} bytes exceeds frame_max {frame_max}")]
    TooLarge {
        /// Payload plus the 8 framing bytes.
        size: u64,
        /// The negotiated limit.
        frame_max: u32,
    },
    /// The octet after the payload is not `0xCE`.
    #[error("frame end octet is {0:#04x}, not 0xce")]
    BadEnd(u8),
    /// An unknown frame type octet.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// A method or content header payload that does not decode.
    #[error("malformed {what} on channel {channel}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// The frame's channel.
        channel: u16,
    },
}

impl FrameError {
    /// The AMQP reply code of the connection error.
    pub fn reply_code(&self) -> u16 {
        match self {
            FrameError::TooLarge { .. } | FrameError::BadEnd(_) | FrameError::UnknownType(_) => 501,
            FrameError::Malformed { .. } => 502,
        }
    }
}

/// A content header: the parsed properties and their raw bytes, kept so a consumer gets
/// them back unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentHeader {
    /// The content class (60, basic).
    pub class_id: u16,
    /// Bytes of body that follow.
    pub body_size: u64,
    /// Decoded properties.
    pub properties: AMQPProperties,
    /// Property flags and list exactly as received.
    pub raw_properties: Bytes,
}

/// One frame from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A method.
    Method(u16, Box<AMQPClass>),
    /// A content header.
    Header(u16, Box<ContentHeader>),
    /// A piece of content body.
    Body(u16, Bytes),
    /// A heartbeat.
    Heartbeat(u16),
}

/// Takes the next whole frame off `buf`; `Ok(None)` when more bytes are needed. A frame
/// whose announced size exceeds `frame_max` is refused before its payload arrives.
pub fn next_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, FrameError> {
    if buf.len() < HEADER_BYTES {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    let total = HEADER_BYTES as u64 + size as u64 + 1;
    if total > u64::from(frame_max) {
        return Err(FrameError::TooLarge {
            size: total,
            frame_max,
        });
    }
    if buf.len() < HEADER_BYTES + size + 1 {
        buf.reserve(HEADER_BYTES + size + 1 - buf.len());
        return Ok(None);
    }
    let end = buf[HEADER_BYTES + size];
    if end != FRAME_END {
        return Err(FrameError::BadEnd(end));
    }
    buf.advance(HEADER_BYTES);
    let payload = buf.split_to(size).freeze();
    buf.advance(1);
    decode(kind, channel, payload).map(Some)
}

fn decode(kind: u8, channel: u16, payload: Bytes) -> Result<Frame, FrameError> {
    match kind {
        FRAME_METHOD => match parse_class(payload.as_ref()) {
            Ok(([], class)) => Ok(Frame::Method(channel, Box::new(class))),
            _ => Err(FrameError::Malformed {
                what: "method frame",
                channel,
            }),
        },
        FRAME_HEADER => match parse_content_header(payload.as_ref()) {
            Ok((rest, h)) if rest.is_empty() && payload.len() >= 12 => Ok(Frame::Header(
                channel,
                Box::new(ContentHeader {
                    class_id: h.class_id,
                    body_size: h.body_size,
                    properties: h.properties,
                    raw_properties: payload.slice(12..),
                }),
            )),
            _ => Err(FrameError::Malformed {
                what: "content header",
                channel,
            }),
        },
        FRAME_BODY => Ok(Frame::Body(channel, payload)),
        FRAME_HEARTBEAT => Ok(Frame::Heartbeat(channel)),
        other => Err(FrameError::UnknownType(other)),
    }
}

/// Appends a method frame.
pub fn put_method(out: &mut Vec<u8>, channel: u16, method: &AMQPClass) {
    let start = out.len();
    out.push(FRAME_METHOD);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    let body_start = out.len();
    // Generating into a Vec cannot fail: it only grows.
    let gen = amq_protocol::protocol::gen_class(method);
    let written = cookie_free_write(out, gen);
    debug_assert!(written, "generating into a Vec does not fail");
    let len = (out.len() - body_start) as u32;
    out[start + 3..start + 7].copy_from_slice(&len.to_be_bytes());
    out.push(FRAME_END);
}

fn cookie_free_write<F>(out: &mut Vec<u8>, gen: F) -> bool
where
    F: cookie_factory::SerializeFn<Vec<u8>>,
{
    match cookie_factory::gen_simple(gen, std::mem::take(out)) {
        Ok(written) => {
            *out = written;
            true
        }
        Err(_) => false,
    }
}

/// Appends a content header frame with raw property bytes.
pub fn put_header(out: &mut Vec<u8>, channel: u16, body_size: u64, raw_properties: &[u8]) {
    out.push(FRAME_HEADER);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&((12 + raw_properties.len()) as u32).to_be_bytes());
    out.extend_from_slice(&60u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&body_size.to_be_bytes());
    out.extend_from_slice(raw_properties);
    out.push(FRAME_END);
}

/// Appends body frames of at most `frame_max` bytes each.
pub fn put_body(out: &mut Vec<u8>, channel: u16, body: &[u8], frame_max: u32) {
    let chunk = (frame_max as usize).saturating_sub(HEADER_BYTES + 1).max(1);
    for piece in body.chunks(chunk) {
        out.push(FRAME_BODY);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(piece.len() as u32).to_be_bytes());
        out.extend_from_slice(piece);
        out.push(FRAME_END);
    }
}

/// Appends a heartbeat frame.
pub fn put_heartbeat(out: &mut Vec<u8>) {
    out.extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

/// The raw bytes of properties (flags and list), as a content header carries them.
pub fn properties_bytes(properties: &AMQPProperties) -> Vec<u8> {
    let mut out = Vec::new();
    let gen = amq_protocol::protocol::basic::gen_properties(properties);
    let written = cookie_free_write(&mut out, gen);
    debug_assert!(written, "generating into a Vec does not fail");
    out
}
