//! Errors of the Kafka front end.

use std::io;

/// Why a request could not be decoded or a response encoded, or a connection failed.
///
/// Every variant has a stable numeric code ([`ProtocolError::code`]); codes are never reused.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The frame is shorter than the fixed request header prefix.
    #[error("frame of {len_bytes} bytes is too short for a request header")]
    FrameTooShort {
        /// Frame length.
        len_bytes: usize,
    },
    /// The length prefix is negative or above the configured limit.
    #[error("request length {len_bytes} is outside [8, {limit_bytes}]")]
    FrameTooLarge {
        /// Declared length.
        len_bytes: i64,
        /// The configured limit (`request_bytes_max`).
        limit_bytes: usize,
    },
    /// The API key is unknown or not served by Rivulet.
    #[error("unsupported API key {api_key}")]
    UnsupportedApi {
        /// The raw API key.
        api_key: i16,
    },
    /// The API version is outside the advertised range.
    #[error("unsupported version {version} of API {api_key}")]
    UnsupportedVersion {
        /// The raw API key.
        api_key: i16,
        /// The requested version.
        version: i16,
    },
    /// The request header or body failed to decode.
    #[error("cannot decode API {api_key} v{version}: {reason}")]
    Decode {
        /// The raw API key.
        api_key: i16,
        /// The version.
        version: i16,
        /// What the decoder reported.
        reason: String,
    },
    /// A response failed to encode (a Rivulet bug; the connection is closed).
    #[error("cannot encode response to API {api_key} v{version}: {reason}")]
    Encode {
        /// The raw API key.
        api_key: i16,
        /// The version.
        version: i16,
        /// What the encoder reported.
        reason: String,
    },
    /// Socket I/O failed.
    #[error("connection I/O: {0}")]
    Io(#[from] io::Error),
    /// A request other than ApiVersions and the SASL ones before the client authenticated,
    /// or any request after a failed authentication: the connection is closed.
    #[error("API {api_key} before authentication")]
    Unauthenticated {
        /// The raw API key.
        api_key: i16,
    },
}

impl ProtocolError {
    /// A stable numeric code for this error.
    pub fn code(&self) -> u32 {
        match self {
            ProtocolError::FrameTooShort { .. } => 4001,
            ProtocolError::FrameTooLarge { .. } => 4002,
            ProtocolError::UnsupportedApi { .. } => 4003,
            ProtocolError::UnsupportedVersion { .. } => 4004,
            ProtocolError::Decode { .. } => 4005,
            ProtocolError::Encode { .. } => 4006,
            ProtocolError::Io(_) => 4007,
            ProtocolError::Unauthenticated { .. } => 4008,
        }
    }
}
