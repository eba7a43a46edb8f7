//! Rivulet's authentication messages and credentials: SASL PLAIN (RFC 4616) and SCRAM
//! (RFC 5802) with SHA-256 and SHA-512 (RFC 7677), as Kafka clients speak them. Pure
//! functions over bytes, no I/O: the broker keeps the users, the front ends carry the
//! messages.
//!
//! A user's password is never stored: each SCRAM mechanism keeps a salt, an iteration count
//! and two keys derived from the salted password (`StoredKey`, `ServerKey`), the form Kafka
//! keeps in its metadata. PLAIN logins are checked against the same keys.

mod credential;
mod plain;
mod scram;

pub use credential::{Credential, Mechanism, ITERATIONS_MAX, ITERATIONS_MIN, SALT_BYTES};
pub use plain::{parse_plain, PlainLogin};
pub use scram::{ClientFirst, ScramExchange, MESSAGE_BYTES_MAX};

/// Why an authentication message was refused. The text never holds a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The message does not follow the mechanism's grammar.
    #[error("malformed {mechanism} message: {reason}")]
    Malformed {
        /// The SASL mechanism.
        mechanism: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// The message is longer than [`MESSAGE_BYTES_MAX`].
    #[error("{mechanism} message of {len_bytes} bytes is over the limit of {limit_bytes}")]
    TooLarge {
        /// The SASL mechanism.
        mechanism: &'static str,
        /// Its length.
        len_bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },
    /// Something the mechanism allows that Rivulet does not: channel binding, delegation
    /// tokens, an authorization identity other than the user.
    #[error("{mechanism}: {what} is not supported")]
    Unsupported {
        /// The SASL mechanism.
        mechanism: &'static str,
        /// What was asked.
        what: &'static str,
    },
    /// The user is unknown or the password or proof is wrong (the two are not told apart).
    #[error("authentication failed: invalid credentials")]
    InvalidCredentials,
    /// Salt or iteration count out of range.
    #[error("invalid SCRAM credential: {0}")]
    InvalidCredential(&'static str),
}

impl AuthError {
    /// A stable numeric code.
    pub fn code(&self) -> u32 {
        match self {
            AuthError::Malformed { .. } => 8001,
            AuthError::TooLarge { .. } => 8002,
            AuthError::Unsupported { .. } => 8003,
            AuthError::InvalidCredentials => 8004,
            AuthError::InvalidCredential(_) => 8005,
        }
    }
}

/// A one-way fingerprint of a password (SHA-256), for remembering a verified login
/// without keeping the password.
pub fn fingerprint(password: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, password.as_bytes())
        .as_ref()
        .to_vec()
}

/// Fills `out` with random bytes from the operating system.
pub fn random_bytes(out: &mut [u8]) -> Result<(), AuthError> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(out)
        .map_err(|_| AuthError::InvalidCredential("the system random source failed"))
}
