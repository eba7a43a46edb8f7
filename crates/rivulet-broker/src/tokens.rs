//! Bearer tokens: a logged-in user asks for one (the HTTP gateway's `POST /v1/tokens`) and
//! presents it instead of its password until it expires or is revoked: scripts and
//! browsers (an `EventSource` cannot send a password) need not hold the password, and no
//! request pays PBKDF2. Tokens are 32 random bytes; only their SHA-256 is kept, in memory
//! (a restart revokes them all). A token stops working when its user is deleted or its
//! password changes.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::users::UserError;
use crate::Broker;

/// Tokens alive at most; issuing past it drops the one closest to expiry.
pub const TOKENS_MAX: usize = 10_000;
/// Lifetime of a token when none is asked for.
pub const TOKEN_TTL_DEFAULT: Duration = Duration::from_secs(3_600);
/// Longest lifetime a token may have.
pub const TOKEN_TTL_MAX: Duration = Duration::from_secs(24 * 3_600);

/// A token just issued (the only time its text exists on the broker).
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The bearer token.
    pub token: String,
    /// The user it logs in as.
    pub user: String,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

#[derive(Debug)]
struct Issued {
    user: String,
    expires: Instant,
    /// The user's credential when issued: a changed password invalidates the token.
    credential: Vec<u8>,
}

/// The live tokens by the SHA-256 of their text.
#[derive(Debug, Default)]
pub(crate) struct Tokens(Mutex<HashMap<Vec<u8>, Issued>>);

impl Tokens {
    fn lock(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Issued>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Broker {
    /// Issues a token for `user` valid for `ttl` (at most [`TOKEN_TTL_MAX`]).
    pub fn token_issue(&self, user: &str, ttl: Duration) -> Result<IssuedToken, UserError> {
        let credential = self
            .user_credential_key(user)
            .ok_or_else(|| UserError::NotFound(user.to_string()))?;
        let ttl = ttl.min(TOKEN_TTL_MAX);
        let mut bytes = [0u8; 32];
        rivulet_auth::random_bytes(&mut bytes)?;
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let mut tokens = self.inner.tokens.lock();
        let now = Instant::now();
        tokens.retain(|_, t| t.expires > now);
        if tokens.len() >= TOKENS_MAX {
            let soonest = tokens
                .iter()
                .min_by_key(|(_, t)| t.expires)
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                tokens.remove(&k);
            }
        }
        let issued = Issued {
            user: user.to_string(),
            expires: now + ttl,
            credential,
        };
        tokens.insert(rivulet_auth::fingerprint(&token), issued);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Ok(IssuedToken {
            token,
            user: user.to_string(),
            expires_ms: now_ms + ttl.as_millis() as u64,
        })
    }

    /// The user a token logs in as, if it is live and its user unchanged.
    pub fn token_user(&self, token: &str) -> Option<String> {
        let key = rivulet_auth::fingerprint(token);
        let mut tokens = self.inner.tokens.lock();
        let issued = tokens.get(&key)?;
        let valid = issued.expires > Instant::now()
            && self.user_credential_key(&issued.user).as_ref() == Some(&issued.credential);
        if !valid {
            tokens.remove(&key);
            return None;
        }
        Some(issued.user.clone())
    }

    /// Revokes a token; false when it was not live.
    pub fn token_revoke(&self, token: &str) -> bool {
        self.inner
            .tokens
            .lock()
            .remove(&rivulet_auth::fingerprint(token))
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BrokerConfig;

    #[test]
    fn tokens_log_in_until_revoked_expired_or_the_password_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let broker = Broker::open(BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            journal: None,
            ..BrokerConfig::default()
        })
        .expect("open");
        assert!(broker.token_issue("nobody", TOKEN_TTL_DEFAULT).is_err());
        broker.user_set_password("alice", "alice-password").expect("user");
        let a = broker.token_issue("alice", TOKEN_TTL_DEFAULT).expect("token");
        let b = broker.token_issue("alice", TOKEN_TTL_DEFAULT).expect("token");
        assert_ne!(a.token, b.token);
        assert_eq!(broker.token_user(&a.token).as_deref(), Some("alice"));
        assert_eq!(broker.token_user("made-up"), None);
        assert!(broker.token_revoke(&a.token));
        assert_eq!(broker.token_user(&a.token), None);
        let short = broker
            .token_issue("alice", Duration::from_millis(1))
            .expect("token");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(broker.token_user(&short.token), None, "expired");
        broker
            .user_set_password("alice", "another-password")
            .expect("passwd");
        assert_eq!(broker.token_user(&b.token), None, "a new password ends the token");
    }
}
