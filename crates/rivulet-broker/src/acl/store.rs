//! The stored bindings and their in-memory index.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use rivulet_log::storage::Storage;
use serde::{Deserialize, Serialize};

use super::model::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType, WILDCARD};
use super::{AclError, ACLS_MAX};
use crate::error::BrokerError;
use crate::meta::{read_file, write_atomically};

/// Every binding, and the same bindings by resource.
#[derive(Debug, Default)]
struct Index {
    all: BTreeSet<AclBinding>,
    /// Literal bindings by (type, name); the wildcard under `*`.
    literal: HashMap<ResourceType, HashMap<String, Vec<AclBinding>>>,
    /// Prefixed bindings.
    prefixed: Vec<AclBinding>,
}

impl Index {
    fn of(all: BTreeSet<AclBinding>) -> Index {
        let mut literal: HashMap<ResourceType, HashMap<String, Vec<AclBinding>>> = HashMap::new();
        let mut prefixed = Vec::new();
        for b in &all {
            match b.pattern_type {
                PatternType::Prefixed => prefixed.push(b.clone()),
                _ => literal
                    .entry(b.resource_type)
                    .or_default()
                    .entry(b.resource_name.clone())
                    .or_default()
                    .push(b.clone()),
            }
        }
        Index {
            all,
            literal,
            prefixed,
        }
    }

    /// Every binding that applies to `(kind, name)`.
    fn applying<'a>(&'a self, kind: ResourceType, name: &'a str) -> impl Iterator<Item = &'a AclBinding> {
        let names = self.literal.get(&kind);
        let exact = names.and_then(|n| n.get(name)).into_iter().flatten();
        let wildcard = names
            .filter(|_| name != WILDCARD)
            .and_then(|n| n.get(WILDCARD))
            .into_iter()
            .flatten();
        let prefixed = self.prefixed.iter().filter(move |b| b.applies_to(kind, name));
        exact.chain(wildcard).chain(prefixed)
    }
}

/// True when `b` names `user` (or every user) and `host` (or every host).
fn concerns(b: &AclBinding, user: &str, host: &str) -> bool {
    let principal = b.principal.strip_prefix("User:").unwrap_or_default();
    (principal == user || principal == WILDCARD) && (b.host == host || b.host == WILDCARD)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    acls: Vec<AclBinding>,
}

/// The bindings of a broker.
#[derive(Debug)]
pub(crate) struct Acls {
    path: PathBuf,
    index: RwLock<Index>,
}

impl Acls {
    /// Loads `path` (no file: no bindings).
    pub(crate) fn load(storage: &dyn Storage, path: PathBuf) -> crate::Result<Acls> {
        let stored: Stored = match read_file(storage, &path)? {
            None => Stored::default(),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| BrokerError::CorruptMetadata {
                path: path.clone(),
                reason: e.to_string(),
            })?,
        };
        let mut all = BTreeSet::new();
        for b in stored.acls {
            match b.validate() {
                Ok(()) => {
                    all.insert(b);
                }
                Err(e) => tracing::warn!(error = %e, "Skipping an invalid stored ACL"),
            }
        }
        Ok(Acls {
            path,
            index: RwLock::new(Index::of(all)),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, storage: &dyn Storage, all: &BTreeSet<AclBinding>) -> crate::Result<()> {
        let stored = Stored {
            acls: all.iter().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(|e| BrokerError::CorruptMetadata {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        write_atomically(storage, &self.path, &bytes)
    }

    /// Allow or deny for a user who is not a superuser.
    pub(crate) fn decide(
        &self,
        user: &str,
        host: &str,
        op: Operation,
        kind: ResourceType,
        name: &str,
    ) -> bool {
        let index = self.read();
        let mut allowed = false;
        for b in index.applying(kind, name).filter(|b| concerns(b, user, host)) {
            match b.permission {
                Permission::Deny if b.operation == op || b.operation == Operation::All => return false,
                Permission::Allow if b.operation.implies(op) => allowed = true,
                _ => {}
            }
        }
        allowed
    }

    /// True when some allow of `op` on a resource of `kind` concerns the user, and no deny
    /// of it on every resource (`*`) does.
    pub(crate) fn decide_any(&self, user: &str, host: &str, op: Operation, kind: ResourceType) -> bool {
        let index = self.read();
        let mut allowed = false;
        for b in index
            .all
            .iter()
            .filter(|b| b.resource_type == kind && concerns(b, user, host))
        {
            let everything = b.pattern_type == PatternType::Literal && b.resource_name == WILDCARD;
            match b.permission {
                Permission::Deny if everything && (b.operation == op || b.operation == Operation::All) => {
                    return false
                }
                Permission::Allow if b.operation.implies(op) => allowed = true,
                _ => {}
            }
        }
        allowed
    }

    pub(crate) fn create(
        &self,
        storage: &dyn Storage,
        bindings: Vec<AclBinding>,
    ) -> Result<Vec<Result<(), AclError>>, AclError> {
        let mut index = self.write();
        let mut all = index.all.clone();
        let mut results: Vec<Result<(), AclError>> = Vec::with_capacity(bindings.len());
        for b in bindings {
            results.push(match b.validate() {
                Err(e) => Err(e),
                Ok(()) if all.len() >= ACLS_MAX && !all.contains(&b) => Err(AclError::LimitReached),
                Ok(()) => {
                    all.insert(b);
                    Ok(())
                }
            });
        }
        if all.len() != index.all.len() {
            self.save(storage, &all)?;
            *index = Index::of(all);
        }
        Ok(results)
    }

    pub(crate) fn delete(
        &self,
        storage: &dyn Storage,
        filters: &[AclFilter],
    ) -> Result<Vec<Vec<AclBinding>>, AclError> {
        let mut index = self.write();
        let mut all = index.all.clone();
        let mut removed = Vec::with_capacity(filters.len());
        for f in filters {
            let selected: Vec<AclBinding> = index.all.iter().filter(|b| f.matches(b)).cloned().collect();
            for b in &selected {
                all.remove(b);
            }
            removed.push(selected);
        }
        if all.len() != index.all.len() {
            self.save(storage, &all)?;
            *index = Index::of(all);
        }
        Ok(removed)
    }

    pub(crate) fn list(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.read()
            .all
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect()
    }
}
