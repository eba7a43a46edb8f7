//! The idempotency store: ids of events a group has handled, kept durably in a compacted
//! topic `<group>.handled` (key = event id, value = when it was handled, in ms as text).
//!
//! The store is loaded when a subscription starts and caught up whenever partitions are
//! assigned, so a member taking over partitions from another one knows what that one
//! handled. Ids older than the time to live are dropped when read and when memory is
//! trimmed; the topic itself is compacted and deletes segments older than the TTL.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::Result;
use crate::transport::{OutRecord, TopicSpec, Transport};

/// Records read per pass while loading.
const LOAD_RECORDS_PER_PASS: usize = 10_000;

/// Durable set of handled event ids with a time to live.
pub struct HandledStore {
    transport: Arc<dyn Transport>,
    topic: String,
    ttl_ms: i64,
    ids_max: usize,
    seen: Mutex<HashMap<String, i64>>,
    positions: tokio::sync::Mutex<BTreeMap<i32, i64>>,
}

impl std::fmt::Debug for HandledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandledStore")
            .field("topic", &self.topic)
            .finish()
    }
}

impl HandledStore {
    /// The topic holding a group's handled ids.
    pub fn topic_for(group: &str) -> String {
        format!("{group}.handled")
    }

    /// Opens (creating if needed) and loads the store of `group`.
    pub async fn open(
        transport: Arc<dyn Transport>,
        group: &str,
        ttl: Duration,
        ids_max: usize,
    ) -> Result<HandledStore> {
        let topic = HandledStore::topic_for(group);
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        configs.insert("retention.ms".to_string(), ttl_ms.to_string());
        transport
            .ensure_topic(
                &topic,
                TopicSpec {
                    partitions: 1,
                    configs,
                },
            )
            .await?;
        let store = HandledStore {
            transport,
            topic,
            ttl_ms,
            ids_max: ids_max.max(1),
            seen: Mutex::new(HashMap::new()),
            positions: tokio::sync::Mutex::new(BTreeMap::new()),
        };
        store.refresh().await?;
        Ok(store)
    }

    fn seen(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        match self.seen.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reads ids recorded since the last refresh (by this or any other member).
    pub async fn refresh(&self) -> Result<usize> {
        let mut positions = self.positions.lock().await;
        let now = crate::now_ms();
        let mut loaded = 0;
        // Each pass reads up to LOAD_RECORDS_PER_PASS; stops at the end the topic had.
        loop {
            let (records, next) = self
                .transport
                .read_to_end(&self.topic, positions.clone(), LOAD_RECORDS_PER_PASS)
                .await?;
            let count = records.len();
            {
                let mut seen = self.seen();
                for r in records {
                    let Some(key) = r.key.and_then(|k| String::from_utf8(k).ok()) else {
                        continue;
                    };
                    match r
                        .value
                        .as_deref()
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<i64>().ok())
                    {
                        Some(at) if now - at < self.ttl_ms => {
                            seen.insert(key, at);
                            loaded += 1;
                        }
                        _ => {
                            seen.remove(&key);
                        }
                    }
                }
            }
            *positions = next;
            if count < LOAD_RECORDS_PER_PASS {
                break;
            }
        }
        self.trim();
        Ok(loaded)
    }

    /// True when the event was handled within the time to live.
    pub fn contains(&self, id: &str) -> bool {
        let now = crate::now_ms();
        self.seen().get(id).is_some_and(|at| now - at < self.ttl_ms)
    }

    /// Durably records that the event was handled.
    pub async fn mark(&self, id: &str) -> Result<()> {
        let now = crate::now_ms();
        let record = OutRecord {
            key: Some(id.as_bytes().to_vec()),
            value: Some(now.to_string().into_bytes()),
            headers: Vec::new(),
            partition: Some(0),
        };
        self.transport.publish(&self.topic, vec![record]).await?;
        self.seen().insert(id.to_string(), now);
        if self.seen().len() > self.ids_max {
            self.trim();
        }
        Ok(())
    }

    /// Ids remembered in memory.
    pub fn len(&self) -> usize {
        self.seen().len()
    }

    /// True when no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired ids, then the oldest ones beyond `ids_max`.
    fn trim(&self) {
        let now = crate::now_ms();
        let mut seen = self.seen();
        seen.retain(|_, at| now - *at < self.ttl_ms);
        if seen.len() > self.ids_max {
            let mut ages: Vec<i64> = seen.values().copied().collect();
            ages.sort_unstable();
            let cutoff = ages[seen.len() - self.ids_max];
            seen.retain(|_, at| *at >= cutoff);
            tracing::warn!(
                topic = %self.topic,
                ids_max = self.ids_max,
                "Forgot the oldest handled ids to stay within the limit; their redelivery would repeat side effects"
            );
        }
    }
}
