//! Authorization: Kafka's ACL model ([`model`]) applied by every front end. With
//! `BrokerConfig::auth_required` each request is checked against the bindings: superusers
//! (`BrokerConfig::superusers`) may do everything; otherwise a matching deny refuses, a
//! matching allow grants, and nothing matching refuses. Without `auth_required` everything
//! is allowed, as before logins existed.
//!
//! Bindings are kept in `<data_dir>/acls.json`, replaced atomically on every change, and
//! indexed in memory by resource so a check costs a hash lookup plus the prefixed bindings.

pub mod model;
mod store;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use model::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType, CLUSTER_NAME};
pub(crate) use store::Acls;

use crate::error::BrokerError;
use crate::Broker;

/// Most bindings stored.
pub const ACLS_MAX: usize = 100_000;
/// Denials logged per second at most (all are counted in the metrics).
const DENIALS_LOGGED_PER_SECOND_MAX: u64 = 10;

/// Why an ACL change was refused. Codes are stable.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// The binding or filter is not acceptable.
    #[error("invalid ACL: {0}")]
    Invalid(String),
    /// [`ACLS_MAX`] bindings exist.
    #[error("{ACLS_MAX} ACLs exist already")]
    LimitReached,
    /// Storing the bindings failed.
    #[error(transparent)]
    Storage(#[from] BrokerError),
}

impl AclError {
    /// A stable numeric code.
    pub fn code(&self) -> u32 {
        match self {
            AclError::Invalid(_) => 42_201,
            AclError::LimitReached => 42_901,
            AclError::Storage(_) => 50_001,
        }
    }
}

/// Who makes a request: the front end, the logged-in user (none before login or when
/// logins are off) and the client's address.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// `kafka`, `amqp`, `http`.
    pub protocol: &'static str,
    /// The user, if logged in.
    pub user: Option<&'a str>,
    /// The client's IP address.
    pub host: &'a str,
}

impl Broker {
    /// True when `who` may perform `op` on the resource `(kind, name)`; a refusal is
    /// counted and logged (rate-limited), so callers only map it to their protocol's error.
    pub fn authorize(&self, who: Who<'_>, op: Operation, kind: ResourceType, name: &str) -> bool {
        let allowed = self.authorized(who, op, kind, name);
        if !allowed {
            self.denied(who, op, kind, name);
        }
        allowed
    }

    /// [`Broker::authorize`] without counting or logging: for filtering lists (a topic
    /// list shows only what the user may describe) and for authorized-operation sets.
    pub fn authorized(&self, who: Who<'_>, op: Operation, kind: ResourceType, name: &str) -> bool {
        if !self.auth_required() {
            return true;
        }
        let Some(user) = who.user else {
            return false;
        };
        if self.is_superuser(user) {
            return true;
        }
        self.inner.acls.decide(user, who.host, op, kind, name)
    }

    /// True when `who` may perform `op` on some resource of `kind` (Kafka's check for
    /// idempotent producers without a transactional id: write on any topic).
    pub fn authorized_any(&self, who: Who<'_>, op: Operation, kind: ResourceType) -> bool {
        if !self.auth_required() {
            return true;
        }
        let Some(user) = who.user else {
            return false;
        };
        self.is_superuser(user) || self.inner.acls.decide_any(user, who.host, op, kind)
    }

    /// True when `user` is one of `BrokerConfig::superusers`.
    pub fn is_superuser(&self, user: &str) -> bool {
        self.inner.config.superusers.iter().any(|s| s == user)
    }

    /// Adds bindings (those already present are kept once); each gets its own result, and
    /// storing them fails all.
    pub fn acl_create(&self, bindings: Vec<AclBinding>) -> Result<Vec<Result<(), AclError>>, AclError> {
        let storage = self.inner.context.storage.as_ref();
        let results = self.inner.acls.create(storage, bindings)?;
        tracing::info!(
            count = results.iter().filter(|r| r.is_ok()).count(),
            "ACLs created"
        );
        Ok(results)
    }

    /// Removes the bindings each filter selects; returns them, per filter.
    pub fn acl_delete(&self, filters: &[AclFilter]) -> Result<Vec<Vec<AclBinding>>, AclError> {
        let storage = self.inner.context.storage.as_ref();
        let removed = self.inner.acls.delete(storage, filters)?;
        tracing::info!(
            count = removed.iter().map(Vec::len).sum::<usize>(),
            "ACLs deleted"
        );
        Ok(removed)
    }

    /// The bindings `filter` selects, in a stable order.
    pub fn acls(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.inner.acls.list(filter)
    }

    fn denied(&self, who: Who<'_>, op: Operation, kind: ResourceType, name: &str) {
        self.inner
            .metrics
            .request_error(who.protocol, "authorization_failed");
        static WINDOW: AtomicU64 = AtomicU64::new(0);
        static LOGGED: AtomicU64 = AtomicU64::new(0);
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if WINDOW.swap(second, Ordering::Relaxed) != second {
            LOGGED.store(0, Ordering::Relaxed);
        }
        if LOGGED.fetch_add(1, Ordering::Relaxed) < DENIALS_LOGGED_PER_SECOND_MAX {
            let user = who.user.unwrap_or("(none)");
            tracing::info!(protocol = who.protocol, user, host = who.host, operation = %op, resource_type = %kind, resource = name, "Authorization denied");
        }
    }
}

#[cfg(test)]
mod tests;
