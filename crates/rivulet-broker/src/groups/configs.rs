//! Per-group configs (Kafka's GROUP config resource): today `share.auto.offset.reset`, where
//! a share group starts reading a partition it never read.
//!
//! They are stored in the same internal log as share groups' start offsets, under the
//! empty topic name and partition -1 (no topic has an empty name), with the configs as JSON
//! in the entry's metadata, so they survive restarts with it.

use std::collections::BTreeMap;

use super::GroupCoordinator;
use crate::offsets::CommittedOffset;

/// The config keys a group accepts, with their default.
pub const GROUP_CONFIG_KEYS: &[(&str, &str)] = &[("share.auto.offset.reset", "latest")];

/// Why a group config change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupConfigError {
    /// Not a group config Rivulet knows.
    #[error("unknown group config {0:?}")]
    UnknownKey(String),
    /// The value is not one the key takes.
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What it should be.
        reason: &'static str,
    },
    /// Storing failed.
    #[error("storing the group config failed")]
    Storage,
}

const CONFIG_TOPIC: &str = "";
const CONFIG_PARTITION: i32 = -1;

/// Checks one key and value.
pub fn check(key: &str, value: &str) -> Result<(), GroupConfigError> {
    match key {
        "share.auto.offset.reset" => match value {
            "earliest" | "latest" => Ok(()),
            _ => Err(GroupConfigError::InvalidValue {
                key: key.to_string(),
                value: value.to_string(),
                reason: "expected earliest or latest",
            }),
        },
        other => Err(GroupConfigError::UnknownKey(other.to_string())),
    }
}

impl GroupCoordinator {
    /// A group's config overrides.
    pub fn group_configs(&self, group_id: &str) -> BTreeMap<String, String> {
        self.share_state
            .as_ref()
            .and_then(|s| s.fetch(group_id, CONFIG_TOPIC, CONFIG_PARTITION))
            .and_then(|c| c.metadata)
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default()
    }

    /// Every config key of a group with its value and whether it is the default.
    pub fn describe_group_configs(&self, group_id: &str) -> Vec<(String, String, bool)> {
        let overrides = self.group_configs(group_id);
        GROUP_CONFIG_KEYS
            .iter()
            .map(|(key, default)| match overrides.get(*key) {
                Some(v) => (key.to_string(), v.clone(), false),
                None => (key.to_string(), default.to_string(), true),
            })
            .collect()
    }

    /// Replaces a group's config overrides (each checked) and stores them durably.
    pub async fn set_group_configs(
        &self,
        group_id: &str,
        overrides: BTreeMap<String, String>,
    ) -> Result<(), GroupConfigError> {
        if group_id.is_empty() {
            return Err(GroupConfigError::InvalidValue {
                key: "group".to_string(),
                value: String::new(),
                reason: "the group id is empty",
            });
        }
        for (k, v) in &overrides {
            check(k, v)?;
        }
        let Some(store) = self.share_state.as_ref() else {
            return Err(GroupConfigError::Storage);
        };
        let json = serde_json::to_string(&overrides).map_err(|_| GroupConfigError::Storage)?;
        let entry = CommittedOffset {
            offset: -1,
            leader_epoch: -1,
            metadata: Some(json),
            commit_timestamp_ms: rivulet_log::now_ms(),
        };
        let stored = store
            .commit(
                group_id,
                vec![(CONFIG_TOPIC.to_string(), CONFIG_PARTITION, entry)],
            )
            .await;
        stored.map_err(|e| {
            tracing::error!(group = %group_id, error = %e, "Storing group configs failed");
            GroupConfigError::Storage
        })?;
        tracing::info!(group = %group_id, ?overrides, "Group configs changed");
        Ok(())
    }

    /// True when share group `group_id` starts new partitions at the log start.
    pub(super) fn share_starts_at_earliest(&self, group_id: &str) -> bool {
        match self
            .group_configs(group_id)
            .get("share.auto.offset.reset")
            .map(String::as_str)
        {
            Some("earliest") => true,
            Some(_) => false,
            None => self.limits.share_start_at_earliest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groups::{GroupLimits, OffsetStore};

    #[tokio::test]
    async fn configs_are_checked_stored_and_described() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = rivulet_log::LogContext::default();
        let offsets = OffsetStore::open(&dir.path().join("o"), &ctx).expect("offsets");
        let state = OffsetStore::open_named(&dir.path().join("s"), &ctx, "configs-test").expect("state");
        let c = GroupCoordinator::new(offsets, GroupLimits::default()).with_share_state(state);
        assert!(!c.share_starts_at_earliest("q"));
        let mut set = BTreeMap::new();
        set.insert("share.auto.offset.reset".to_string(), "earliest".to_string());
        c.set_group_configs("q", set).await.expect("set");
        assert!(c.share_starts_at_earliest("q"));
        assert_eq!(
            c.describe_group_configs("q"),
            vec![(
                "share.auto.offset.reset".to_string(),
                "earliest".to_string(),
                false
            )]
        );
        assert!(!c.share_starts_at_earliest("other"), "per group");
        let mut bad = BTreeMap::new();
        bad.insert("share.auto.offset.reset".to_string(), "soon".to_string());
        assert!(matches!(
            c.set_group_configs("q", bad).await,
            Err(GroupConfigError::InvalidValue { .. })
        ));
        let mut unknown = BTreeMap::new();
        unknown.insert("no.such.key".to_string(), "1".to_string());
        assert_eq!(
            c.set_group_configs("q", unknown).await,
            Err(GroupConfigError::UnknownKey("no.such.key".to_string()))
        );
        assert!(
            c.share_starts_at_earliest("q"),
            "a refused change changes nothing"
        );
    }
}
