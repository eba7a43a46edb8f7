//! Who may call: with logins on, a call carries `authorization: Basic` credentials (the
//! clients send them over TLS) or is anonymous; either way the ACLs decide, on the event
//! store's topic, as they do for Kafka clients reading it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use base64::Engine;
use rivulet_broker::acl::{Operation, ResourceType, Who};
use rivulet_broker::Broker;
use tonic::{Request, Status};

/// Passwords verified recently (SHA-256 of user and password), so a client that sends its
/// credentials with every call costs one key derivation, not one per call.
const VERIFIED_MAX: usize = 1024;

/// The check every call makes.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    broker: Broker,
    topic: String,
    verified: Arc<Mutex<(u64, HashSet<[u8; 32]>)>>,
}

impl Access {
    pub(crate) fn new(broker: Broker, topic: String) -> Access {
        Access {
            broker,
            topic,
            verified: Arc::new(Mutex::new((0, HashSet::new()))),
        }
    }

    /// The call's user: `None` for anonymous; an error for wrong credentials.
    fn user<T>(&self, request: &Request<T>, host: &str) -> Result<Option<String>, Status> {
        let Some(header) = request.metadata().get("authorization") else {
            return Ok(None);
        };
        let unauthenticated = || Status::unauthenticated("bad credentials");
        let encoded = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Basic "))
            .ok_or_else(unauthenticated)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| unauthenticated())?;
        let text = String::from_utf8(decoded).map_err(|_| unauthenticated())?;
        let (user, password) = text.split_once(':').ok_or_else(unauthenticated)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        // A change to any user (a new password, a deletion) forgets every verified login.
        let generation = self.broker.users_generation();
        let known = {
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if verified.0 != generation {
                *verified = (generation, HashSet::new());
            }
            verified.1.contains(&key)
        };
        if !known {
            if !self.broker.login_allowed(host) || !self.broker.verify_password(user, password) {
                self.broker.login_failed(host, "kurrentdb", user);
                return Err(unauthenticated());
            }
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if verified.1.len() >= VERIFIED_MAX {
                verified.1.clear();
            }
            verified.1.insert(key);
        }
        Ok(Some(user.to_string()))
    }

    /// Checks that the caller may do `op` on streams.
    pub(crate) fn check<T>(&self, request: &Request<T>, op: Operation) -> Result<(), Status> {
        if !self.broker.auth_required() {
            return Ok(());
        }
        let host = request
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string());
        let user = self.user(request, &host)?;
        let who = Who {
            protocol: "kurrentdb",
            user: user.as_deref(),
            host: &host,
        };
        if self.broker.authorize(who, op, ResourceType::Topic, &self.topic) {
            Ok(())
        } else {
            Err(crate::errors::access_denied())
        }
    }
}
