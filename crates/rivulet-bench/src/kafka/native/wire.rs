//! Kafka request framing for the native client: requests encoded and responses decoded with
//! the `kafka-protocol` crate, written and read as 4-byte length-prefixed frames.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{err, Result};

/// Largest response frame the native client accepts.
const RESPONSE_BYTES_MAX: usize = 256 << 20;

/// One encoded request frame (length prefix included).
pub(super) fn encode<R: Request>(request: &R, version: i16, correlation_id: i32) -> Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("rivulet-bench-native")));
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    header
        .encode(&mut buf, R::header_version(version))
        .map_err(|e| err!("encoding a request header: {e}"))?;
    request
        .encode(&mut buf, version)
        .map_err(|e| err!("encoding a request: {e}"))?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| err!("request too large"))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Reads one response frame: its correlation id and body bytes.
pub(super) async fn read_frame(stream: &mut (impl AsyncReadExt + Unpin)) -> Result<Option<Bytes>> {
    let mut prefix = [0u8; 4];
    match stream.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(err!("reading a response: {e}")),
    }
    let len = usize::try_from(i32::from_be_bytes(prefix)).map_err(|_| err!("negative response length"))?;
    if len > RESPONSE_BYTES_MAX {
        return Err(err!("response of {len} bytes is over {RESPONSE_BYTES_MAX}"));
    }
    // Read into uninitialised capacity: zeroing a large response first would cost as much
    // as reading it.
    let mut frame = BytesMut::with_capacity(len);
    let mut body = stream.take(len as u64);
    // Each pass reads at least one byte or fails: bounded by `len`.
    while frame.len() < len {
        let n = body
            .read_buf(&mut frame)
            .await
            .map_err(|e| err!("reading a response: {e}"))?;
        if n == 0 {
            return Err(err!("the broker closed the connection in a response"));
        }
    }
    Ok(Some(frame.freeze()))
}

/// The correlation id and decoded body of a response frame to request `R` at `version`.
pub(super) fn decode<R: Request>(mut frame: Bytes, version: i16) -> Result<(i32, R::Response)> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| err!("decoding a response header: {e}"))?;
    let body = <R::Response as Decodable>::decode(&mut frame, version)
        .map_err(|e| err!("decoding a response: {e}"))?;
    if frame.has_remaining() {
        return Err(err!("{} bytes after a response", frame.remaining()));
    }
    Ok((header.correlation_id, body))
}

/// Writes a whole frame.
pub(super) async fn write_frame(stream: &mut (impl AsyncWriteExt + Unpin), frame: &[u8]) -> Result<()> {
    stream
        .write_all(frame)
        .await
        .map_err(|e| err!("sending a request: {e}"))
}

/// Sends one request to `address` on a new connection and returns the response; for
/// operator tools that ask a broker one question.
pub async fn request_once<R: Request>(address: &str, request: &R, version: i16) -> Result<R::Response> {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| err!("cannot connect to {address}: {e}"))?;
    let frame = encode(request, version, 1)?;
    write_frame(&mut stream, &frame).await?;
    let response = read_frame(&mut stream)
        .await?
        .ok_or_else(|| err!("{address} closed the connection without answering"))?;
    let (correlation_id, body) = decode::<R>(response, version)?;
    if correlation_id != 1 {
        return Err(err!("{address} answered another request ({correlation_id})"));
    }
    Ok(body)
}
