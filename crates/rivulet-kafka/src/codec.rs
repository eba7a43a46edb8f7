//! Request decoding and response encoding. Pure functions over bytes: no I/O.
//!
//! A Kafka frame is a big-endian `i32` length followed by that many bytes: the request
//! header (api key, api version, correlation id, client id, tagged fields in flexible
//! versions) and the body.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::error::ProtocolError;
use crate::versions;

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    /// The API.
    pub api_key: ApiKey,
    /// The API version.
    pub version: i16,
    /// The decoded header (correlation id, client id).
    pub header: RequestHeader,
    /// The decoded body.
    pub body: RequestKind,
}

/// Result of decoding one frame.
#[derive(Debug)]
pub enum Decoded {
    /// A supported request.
    Request(Box<Request>),
    /// An ApiVersions request newer than supported: answer with
    /// [`api_versions_unsupported_response`].
    ApiVersionsTooNew {
        /// Correlation id to echo.
        correlation_id: i32,
        /// The requested version.
        version: i16,
    },
}

/// Reads the length prefix of a frame and checks it against the limit.
pub fn frame_length(prefix: [u8; 4], request_bytes_max: usize) -> Result<usize, ProtocolError> {
    let len = i32::from_be_bytes(prefix);
    if len < 8 || len as usize > request_bytes_max {
        return Err(ProtocolError::FrameTooLarge {
            len_bytes: len as i64,
            limit_bytes: request_bytes_max,
        });
    }
    Ok(len as usize)
}

/// Peeks the api key, version and correlation id of a frame (without its length prefix).
pub fn peek_header(frame: &[u8]) -> Result<(i16, i16, i32), ProtocolError> {
    if frame.len() < 8 {
        return Err(ProtocolError::FrameTooShort {
            len_bytes: frame.len(),
        });
    }
    Ok((
        i16::from_be_bytes([frame[0], frame[1]]),
        i16::from_be_bytes([frame[2], frame[3]]),
        i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    ))
}

/// Decodes one frame (without its length prefix).
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, ProtocolError> {
    let (raw_key, version, correlation_id) = peek_header(&frame)?;
    let api_key =
        ApiKey::try_from(raw_key).map_err(|_| ProtocolError::UnsupportedApi { api_key: raw_key })?;
    let range = versions::supported(api_key).ok_or(ProtocolError::UnsupportedApi { api_key: raw_key })?;
    if version < range.0 || version > range.1 {
        if api_key == ApiKey::ApiVersions && version > range.1 {
            return Ok(Decoded::ApiVersionsTooNew {
                correlation_id,
                version,
            });
        }
        return Err(ProtocolError::UnsupportedVersion {
            api_key: raw_key,
            version,
        });
    }
    let decode_err = |reason: String| ProtocolError::Decode {
        api_key: raw_key,
        version,
        reason,
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| decode_err(format!("header: {e:#}")))?;
    let body = RequestKind::decode(api_key, &mut frame, version).map_err(|e| decode_err(format!("{e:#}")))?;
    Ok(Decoded::Request(Box::new(Request {
        api_key,
        version,
        header,
        body,
    })))
}

/// Encodes a response frame, length prefix included.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Result<Bytes, ProtocolError> {
    let encode_err = |e: String| ProtocolError::Encode {
        api_key: api_key as i16,
        version,
        reason: e,
    };
    // ApiVersions responses always use header v0 so clients can parse them before
    // knowing the broker's versions.
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    let mut out = BytesMut::with_capacity(256 + body_size_hint(response, version));
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, header_version)
        .map_err(|e| encode_err(format!("header: {e:#}")))?;
    response
        .encode(&mut out, version)
        .map_err(|e| encode_err(format!("{e:#}")))?;
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out.freeze())
}

/// Bytes a response body will take where that is large (Fetch), so its buffer is
/// allocated once instead of growing through copies of the record bytes.
fn body_size_hint(response: &ResponseKind, version: i16) -> usize {
    match response {
        ResponseKind::Fetch(fetch) => fetch.compute_size(version).unwrap_or(0),
        _ => 0,
    }
}

/// The response to an ApiVersions request newer than supported: error 35
/// (UNSUPPORTED_VERSION) in a v0 body that still lists the supported APIs.
pub fn api_versions_unsupported_response(correlation_id: i32) -> Result<Bytes, ProtocolError> {
    let mut response = versions::api_versions_response(0);
    response.error_code = crate::errors::UNSUPPORTED_VERSION;
    encode_response(
        ApiKey::ApiVersions,
        0,
        correlation_id,
        &ResponseKind::ApiVersions(response),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    fn frame_of(api_key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut out = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .encode(&mut out, api_key.request_header_version(version))
            .expect("header");
        body.encode(&mut out, version).expect("body");
        out.freeze()
    }

    #[test]
    fn decodes_a_metadata_request() {
        let frame = frame_of(ApiKey::Metadata, 9, &MetadataRequest::default());
        match decode_request(frame).expect("decodes") {
            Decoded::Request(r) => {
                assert_eq!(r.api_key, ApiKey::Metadata);
                assert_eq!(r.header.correlation_id, 7);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn too_new_api_versions_gets_v0_error_with_list() {
        let frame = frame_of(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let mut raw = frame.to_vec();
        raw[2..4].copy_from_slice(&9i16.to_be_bytes());
        match decode_request(Bytes::from(raw)).expect("decodes") {
            Decoded::ApiVersionsTooNew {
                correlation_id,
                version,
            } => {
                assert_eq!((correlation_id, version), (7, 9));
                let resp = api_versions_unsupported_response(correlation_id).expect("encodes");
                // length(4) + correlation id(4), then the v0 body.
                assert_eq!(&resp[4..8], &7i32.to_be_bytes());
                // v0 body: error_code i16, then api_keys as an i32-counted array of
                // (key, min, max) i16 triples.
                assert_eq!(&resp[8..10], &35i16.to_be_bytes());
                let count = i32::from_be_bytes([resp[10], resp[11], resp[12], resp[13]]);
                assert_eq!(count as usize, versions::SUPPORTED.len());
                assert_eq!(resp.len(), 14 + 6 * count as usize);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for len in 0..64usize {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = decode_request(Bytes::from(junk));
        }
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 3, 0])),
            Err(ProtocolError::FrameTooShort { .. })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0x7f, 0, 0, 1, 0, 0, 0, 1])),
            Err(ProtocolError::UnsupportedApi { .. })
        ));
        assert!(frame_length((-1i32).to_be_bytes(), 1 << 20).is_err());
        assert!(frame_length((2i32 << 20).to_be_bytes(), 1 << 20).is_err());
    }

    proptest::proptest! {
        /// Arbitrary bodies behind a valid header never panic or abort the decoder (length
        /// prefixes inside the body are attacker-controlled).
        #[test]
        fn decoding_arbitrary_bodies_never_panics(
            key_index in 0usize..versions::SUPPORTED.len(),
            version_offset in 0i16..16,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let (key, min, max) = versions::SUPPORTED[key_index];
            let version = (min + version_offset).min(max);
            let mut frame = Vec::with_capacity(body.len() + 11);
            frame.extend_from_slice(&(key as i16).to_be_bytes());
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(&1i32.to_be_bytes());
            frame.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
            if key.request_header_version(version) >= 2 {
                frame.push(0); // no tagged fields
            }
            frame.extend_from_slice(&body);
            let _ = decode_request(Bytes::from(frame));
        }
    }
}
