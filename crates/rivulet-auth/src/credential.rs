//! SCRAM credentials: what is kept of a password for one mechanism.

use std::num::NonZeroU32;

use ring::{digest, hmac, pbkdf2};

use crate::AuthError;

/// Fewest PBKDF2 iterations accepted (RFC 7677's recommendation, Kafka's minimum).
pub const ITERATIONS_MIN: u32 = 4_096;
/// Most PBKDF2 iterations accepted (Kafka's maximum): bounds the work one login costs.
pub const ITERATIONS_MAX: u32 = 16_384;
/// Length of the salts Rivulet generates.
pub const SALT_BYTES: usize = 32;
/// Longest salt accepted from a client (AlterUserScramCredentials).
const SALT_BYTES_MAX: usize = 1_024;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl Mechanism {
    /// Both mechanisms.
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    /// The SASL name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's number for it (ScramMechanism: 1 = SHA-256, 2 = SHA-512).
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::ScramSha256 => 1,
            Mechanism::ScramSha512 => 2,
        }
    }

    /// The mechanism of Kafka's number.
    pub fn from_kafka_type(t: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    /// Bytes of the hash (and of every key).
    pub fn key_bytes(self) -> usize {
        match self {
            Mechanism::ScramSha256 => 32,
            Mechanism::ScramSha512 => 64,
        }
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Mechanism::ScramSha256 => hmac::HMAC_SHA256,
            Mechanism::ScramSha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::ScramSha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::ScramSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::ScramSha256 => &digest::SHA256,
            Mechanism::ScramSha512 => &digest::SHA512,
        }
    }

    /// `HMAC(key, data)`.
    pub(crate) fn hmac_of(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data)
            .as_ref()
            .to_vec()
    }

    /// `H(data)`.
    pub(crate) fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    /// `Hi(password, salt, iterations)`: PBKDF2 with the mechanism's HMAC.
    pub fn salted_password(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<Vec<u8>, AuthError> {
        let rounds = check_iterations(iterations)?;
        let mut out = vec![0u8; self.key_bytes()];
        pbkdf2::derive(self.pbkdf2(), rounds, salt, password, &mut out);
        Ok(out)
    }
}

fn check_iterations(iterations: u32) -> Result<NonZeroU32, AuthError> {
    if !(ITERATIONS_MIN..=ITERATIONS_MAX).contains(&iterations) {
        return Err(AuthError::InvalidCredential(
            "iterations must be within [4096, 16384]",
        ));
    }
    NonZeroU32::new(iterations).ok_or(AuthError::InvalidCredential("iterations must be positive"))
}

/// What is kept of a password for one SCRAM mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("Credential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// The credential of `password` with a new random salt.
    pub fn new(mechanism: Mechanism, password: &str, iterations: u32) -> Result<Credential, AuthError> {
        let mut salt = vec![0u8; SALT_BYTES];
        crate::random_bytes(&mut salt)?;
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations)?;
        Credential::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// The credential of a password already salted by the client (Kafka's
    /// AlterUserScramCredentials sends `SaltedPassword`, never the password).
    pub fn from_salted_password(
        mechanism: Mechanism,
        salted: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Credential, AuthError> {
        check_iterations(iterations)?;
        if salt.is_empty() || salt.len() > SALT_BYTES_MAX {
            return Err(AuthError::InvalidCredential("the salt must hold 1 to 1024 bytes"));
        }
        if salted.len() != mechanism.key_bytes() {
            return Err(AuthError::InvalidCredential(
                "the salted password has the wrong length",
            ));
        }
        let client_key = mechanism.hmac_of(salted, b"Client Key");
        Ok(Credential {
            mechanism,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac_of(salted, b"Server Key"),
            salt,
            iterations,
        })
    }

    /// True when `password` is the one this credential was made from (constant time in
    /// the keys compared).
    pub fn verify_password(&self, password: &str) -> bool {
        let Ok(salted) = self
            .mechanism
            .salted_password(password.as_bytes(), &self.salt, self.iterations)
        else {
            return false;
        };
        let client_key = self.mechanism.hmac_of(&salted, b"Client Key");
        constant_time_eq(&self.mechanism.hash(&client_key), &self.stored_key)
    }
}

/// Compares two byte strings in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_and_another_does_not() {
        for mechanism in Mechanism::ALL {
            let c = Credential::new(mechanism, "pencil", ITERATIONS_MIN).expect("credential");
            assert_eq!(c.stored_key.len(), mechanism.key_bytes());
            assert!(c.verify_password("pencil"));
            assert!(!c.verify_password("pencil "));
            assert!(!c.verify_password(""));
        }
    }

    #[test]
    fn iterations_and_salts_out_of_range_are_refused() {
        let m = Mechanism::ScramSha256;
        assert!(Credential::new(m, "p", 4_095).is_err());
        assert!(Credential::new(m, "p", ITERATIONS_MAX + 1).is_err());
        let salted = vec![0u8; 32];
        assert!(Credential::from_salted_password(m, &salted, Vec::new(), 4_096).is_err());
        assert!(Credential::from_salted_password(m, &salted[..31], vec![1], 4_096).is_err());
        assert!(Credential::from_salted_password(m, &salted, vec![1], 4_096).is_ok());
    }

    #[test]
    fn the_debug_form_holds_no_key() {
        let c = Credential::new(Mechanism::ScramSha512, "secret", 4_096).expect("credential");
        let text = format!("{c:?}");
        assert!(!text.contains("stored_key") && !text.contains("salt:"), "{text}");
    }
}
