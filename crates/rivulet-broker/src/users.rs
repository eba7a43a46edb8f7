//! Users and their SCRAM credentials, shared by every front end: Kafka SASL (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512), AMQP PLAIN and AMQPLAIN, HTTP basic auth. Kept in
//! `<data_dir>/users.json` (replaced atomically on every change); no password is stored,
//! only each mechanism's salt, iterations and derived keys.
//!
//! Failed logins are counted per client host: past [`FAILURES_PER_HOST_MAX`] in
//! [`FAILURE_WINDOW`], a host's further attempts fail without being checked until the
//! window ends.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rivulet_auth::{AuthError, Credential, Mechanism};
use serde::{Deserialize, Serialize};

use crate::error::BrokerError;
use crate::meta::{read_file, write_atomically};
use crate::Broker;

/// Most users.
pub const USERS_MAX: usize = 10_000;
/// Longest user name.
pub const USERNAME_BYTES_MAX: usize = 255;
/// PBKDF2 iterations of credentials Rivulet makes from a password.
pub const ITERATIONS_DEFAULT: u32 = 4_096;
/// Failed logins a host may make within [`FAILURE_WINDOW`].
pub const FAILURES_PER_HOST_MAX: u32 = 20;
/// The window failed logins are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Hosts whose failures are remembered at most (the oldest window is dropped beyond).
const FAILING_HOSTS_MAX: usize = 10_000;

/// Why a user change was refused. Codes are stable.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// No user of that name (or no credential of that mechanism).
    #[error("no user {0:?}")]
    NotFound(String),
    /// The name is empty, too long, or holds control characters.
    #[error("invalid user name {0:?}: 1 to 255 characters, no control characters")]
    InvalidName(String),
    /// The credential or password is not acceptable.
    #[error(transparent)]
    Credential(#[from] AuthError),
    /// [`USERS_MAX`] users exist.
    #[error("{USERS_MAX} users exist already")]
    LimitReached,
    /// Storing the users failed.
    #[error(transparent)]
    Storage(#[from] BrokerError),
}

impl UserError {
    /// A stable numeric code.
    pub fn code(&self) -> u32 {
        match self {
            UserError::NotFound(_) => 8101,
            UserError::InvalidName(_) => 8102,
            UserError::Credential(e) => e.code(),
            UserError::LimitReached => 8103,
            UserError::Storage(e) => e.code(),
        }
    }
}

/// What an operator sees of a user: the mechanisms it can log in with, and their
/// iterations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The name.
    pub name: String,
    /// Mechanism and iterations of each credential.
    pub credentials: Vec<(Mechanism, u32)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredUsers {
    users: BTreeMap<String, Vec<StoredCredential>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredCredential {
    mechanism: String,
    iterations: u32,
    salt: String,
    stored_key: String,
    server_key: String,
}

impl StoredCredential {
    fn of(c: &Credential) -> StoredCredential {
        StoredCredential {
            mechanism: c.mechanism.name().to_string(),
            iterations: c.iterations,
            salt: STANDARD.encode(&c.salt),
            stored_key: STANDARD.encode(&c.stored_key),
            server_key: STANDARD.encode(&c.server_key),
        }
    }

    fn credential(&self) -> Option<Credential> {
        Some(Credential {
            mechanism: Mechanism::from_name(&self.mechanism)?,
            iterations: self.iterations,
            salt: STANDARD.decode(&self.salt).ok()?,
            stored_key: STANDARD.decode(&self.stored_key).ok()?,
            server_key: STANDARD.decode(&self.server_key).ok()?,
        })
    }
}

type UserMap = BTreeMap<String, BTreeMap<Mechanism, Credential>>;

/// The users and the failed-login counts.
#[derive(Debug)]
pub struct Users {
    path: PathBuf,
    users: Mutex<UserMap>,
    /// Changes made so far: a cached login is valid only for the generation it was
    /// checked in.
    generation: std::sync::atomic::AtomicU64,
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Users {
    /// Loads `path` (no file: no users).
    pub(crate) fn load(storage: &dyn rivulet_log::storage::Storage, path: PathBuf) -> crate::Result<Users> {
        let stored: StoredUsers = match read_file(storage, &path)? {
            None => StoredUsers::default(),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| BrokerError::CorruptMetadata {
                path: path.clone(),
                reason: e.to_string(),
            })?,
        };
        let mut users = UserMap::new();
        for (name, credentials) in stored.users {
            let mut by_mechanism = BTreeMap::new();
            for c in &credentials {
                match c.credential() {
                    Some(c) => {
                        by_mechanism.insert(c.mechanism, c);
                    }
                    None => tracing::warn!(user = %name, "Skipping an unreadable stored credential"),
                }
            }
            users.insert(name, by_mechanism);
        }
        Ok(Users {
            path,
            users: Mutex::new(users),
            generation: std::sync::atomic::AtomicU64::new(0),
            failures: Mutex::new(HashMap::new()),
        })
    }

    fn save(&self, storage: &dyn rivulet_log::storage::Storage, users: &UserMap) -> crate::Result<()> {
        let stored = StoredUsers {
            users: users
                .iter()
                .map(|(name, cs)| (name.clone(), cs.values().map(StoredCredential::of).collect()))
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(|e| BrokerError::CorruptMetadata {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        write_atomically(storage, &self.path, &bytes)
    }
}

fn check_name(name: &str) -> Result<(), UserError> {
    if name.is_empty() || name.len() > USERNAME_BYTES_MAX || name.chars().any(char::is_control) {
        return Err(UserError::InvalidName(name.chars().take(64).collect()));
    }
    Ok(())
}

impl Broker {
    /// True when every front end requires a login (`BrokerConfig::auth_required`).
    pub fn auth_required(&self) -> bool {
        self.inner.config.auth_required
    }

    /// Creates a user, or gives an existing one a new password, with credentials for both
    /// SCRAM mechanisms.
    pub fn user_set_password(&self, name: &str, password: &str) -> Result<(), UserError> {
        check_name(name)?;
        let mut made = Vec::new();
        for m in Mechanism::ALL {
            made.push(Credential::new(m, password, ITERATIONS_DEFAULT)?);
        }
        self.change_users(|users| {
            if !users.contains_key(name) && users.len() >= USERS_MAX {
                return Err(UserError::LimitReached);
            }
            let entry = users.entry(name.to_string()).or_default();
            for c in made {
                entry.insert(c.mechanism, c);
            }
            Ok(())
        })
    }

    /// Sets one mechanism's credential (Kafka's AlterUserScramCredentials upsertion).
    pub fn user_set_credential(&self, name: &str, credential: Credential) -> Result<(), UserError> {
        check_name(name)?;
        self.change_users(|users| {
            if !users.contains_key(name) && users.len() >= USERS_MAX {
                return Err(UserError::LimitReached);
            }
            users
                .entry(name.to_string())
                .or_default()
                .insert(credential.mechanism, credential);
            Ok(())
        })
    }

    /// Removes one mechanism's credential; a user left without any is removed.
    pub fn user_delete_credential(&self, name: &str, mechanism: Mechanism) -> Result<(), UserError> {
        self.change_users(|users| {
            let entry = users
                .get_mut(name)
                .ok_or_else(|| UserError::NotFound(name.to_string()))?;
            entry
                .remove(&mechanism)
                .ok_or_else(|| UserError::NotFound(name.to_string()))?;
            if entry.is_empty() {
                users.remove(name);
            }
            Ok(())
        })
    }

    /// Removes a user.
    pub fn user_delete(&self, name: &str) -> Result<(), UserError> {
        self.change_users(|users| {
            users
                .remove(name)
                .map(|_| ())
                .ok_or_else(|| UserError::NotFound(name.to_string()))
        })
    }

    fn change_users(
        &self,
        change: impl FnOnce(&mut UserMap) -> Result<(), UserError>,
    ) -> Result<(), UserError> {
        let users = &self.inner.users;
        let mut map = lock(&users.users);
        let mut next = map.clone();
        change(&mut next)?;
        users.save(self.inner.context.storage.as_ref(), &next)?;
        *map = next;
        users.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(())
    }

    /// Changes to the users so far. A front end that remembers verified logins forgets
    /// them when this moves (a deleted user or a changed password takes effect at once).
    pub fn users_generation(&self) -> u64 {
        self.inner
            .users
            .generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<UserInfo> {
        lock(&self.inner.users.users)
            .iter()
            .map(|(name, cs)| UserInfo {
                name: name.clone(),
                credentials: cs.values().map(|c| (c.mechanism, c.iterations)).collect(),
            })
            .collect()
    }

    /// A key that changes whenever the user's password does (its first credential's
    /// stored key); `None` when there is no such user.
    pub(crate) fn user_credential_key(&self, name: &str) -> Option<Vec<u8>> {
        let users = lock(&self.inner.users.users);
        users.get(name)?.values().next().map(|c| c.stored_key.clone())
    }

    /// A user's credential for one mechanism.
    pub fn scram_credential(&self, name: &str, mechanism: Mechanism) -> Option<Credential> {
        lock(&self.inner.users.users).get(name)?.get(&mechanism).cloned()
    }

    /// Checks a user's password (PLAIN logins, HTTP basic auth) against its stored
    /// credential. Blocking for a few milliseconds (PBKDF2).
    pub fn verify_password(&self, name: &str, password: &str) -> bool {
        let credential = {
            let users = lock(&self.inner.users.users);
            users.get(name).and_then(|cs| cs.values().next().cloned())
        };
        match credential {
            Some(c) => c.verify_password(password),
            None => false,
        }
    }

    /// False while `host` is past its failed logins for the current window.
    pub fn login_allowed(&self, host: &str) -> bool {
        let failures = lock(&self.inner.users.failures);
        match failures.get(host) {
            Some((since, count)) => since.elapsed() >= FAILURE_WINDOW || *count < FAILURES_PER_HOST_MAX,
            None => true,
        }
    }

    /// Records a failed login from `host` over `protocol` (logged and counted; the user
    /// name is logged, never the password).
    pub fn login_failed(&self, host: &str, protocol: &str, user: &str) {
        self.inner
            .metrics
            .request_error(protocol, "authentication_failed");
        tracing::warn!(%host, protocol, user, "Login failed");
        let mut failures = lock(&self.inner.users.failures);
        if failures.len() >= FAILING_HOSTS_MAX && !failures.contains_key(host) {
            let oldest = failures
                .iter()
                .min_by_key(|(_, (since, _))| *since)
                .map(|(h, _)| h.clone());
            if let Some(h) = oldest {
                failures.remove(&h);
            }
        }
        let now = Instant::now();
        let entry = failures.entry(host.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= FAILURE_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}
