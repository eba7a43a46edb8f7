//! One Kafka request frame (without its 4-byte length prefix), as the broker's connection
//! loop hands it to the codec: `peek_header`, then `decode_request`. The first four bytes
//! are also read as a length prefix by `frame_length`.
//!
//! Nothing here may panic or abort, whatever the bytes: a malformed request must be an error.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rivulet_kafka::codec::{self, Decoded};

/// The broker's default `request_bytes_max`, large enough not to cut fuzzed frames short.
const REQUEST_BYTES_MAX: usize = 100 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    if let Some(prefix) = data.first_chunk::<4>() {
        if let Ok(len) = codec::frame_length(*prefix, REQUEST_BYTES_MAX) {
            assert!(
                (8..=REQUEST_BYTES_MAX).contains(&len),
                "frame_length accepted {len}"
            );
        }
    }
    let peeked = codec::peek_header(data);
    match codec::decode_request(Bytes::copy_from_slice(data)) {
        Ok(Decoded::Request(request)) => {
            // The decoded header re-reads the fields that were peeked.
            let (api_key, version, correlation_id) = peeked.expect("decoded a frame peek_header rejected");
            assert_eq!(request.api_key as i16, api_key);
            assert_eq!(request.version, version);
            assert_eq!(request.header.request_api_key, api_key);
            assert_eq!(request.header.request_api_version, version);
            assert_eq!(request.header.correlation_id, correlation_id);
        }
        Ok(Decoded::ApiVersionsTooNew {
            correlation_id,
            version,
        }) => {
            let peeked = peeked.expect("decoded a frame peek_header rejected");
            assert_eq!((peeked.1, peeked.2), (version, correlation_id));
            // The broker answers this one without a decoded body.
            codec::api_versions_unsupported_response(correlation_id).expect("encodes");
        }
        Err(_) => {}
    }
});
