//! Tables: the latest value per key of a (compacted) topic, held by every instance of a
//! job, for stream-table joins (Kafka Streams' global table).
//!
//! A job loads its tables to their end before it processes anything and then reads their
//! new records about once a second, so a join sees the table as of about a second ago;
//! unlike window results, join results therefore depend on timing when the table changes
//! while the stream flows.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;

use rivulet_sdk::{InRecord, Transport};

use crate::error::Result;

/// Records read per call when loading a table.
const LOAD_BATCH: usize = 100_000;
/// Most rows a table holds; updates for new keys beyond it are refused with a log line.
pub const TABLE_ROWS_MAX: usize = 10_000_000;

/// The latest value per key of a topic, decoded from JSON. Record keys are UTF-8 strings;
/// a record without a value (a tombstone) deletes its key.
pub struct Table<V> {
    topic: String,
    rows: Arc<RwLock<HashMap<String, V>>>,
    next: Arc<Mutex<BTreeMap<i32, i64>>>,
}

impl<V> Clone for Table<V> {
    fn clone(&self) -> Self {
        Table {
            topic: self.topic.clone(),
            rows: self.rows.clone(),
            next: self.next.clone(),
        }
    }
}

impl<V: DeserializeOwned + Send + Sync + 'static> Table<V> {
    /// The table of `topic`'s JSON values.
    pub fn json(topic: &str) -> Table<V> {
        Table {
            topic: topic.to_string(),
            rows: Arc::default(),
            next: Arc::default(),
        }
    }

    /// Calls `f` with the current value of `key`.
    pub fn with<R>(&self, key: &str, f: impl FnOnce(Option<&V>) -> R) -> R {
        match self.rows.read() {
            Ok(rows) => f(rows.get(key)),
            Err(poisoned) => f(poisoned.into_inner().get(key)),
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows.read().map_or(0, |r| r.len())
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn apply(&self, record: &InRecord) {
        let Some(key) = record.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()) else {
            tracing::warn!(topic = %self.topic, offset = record.offset, "Table record without a UTF-8 key; skipped");
            return;
        };
        let mut rows = match self.rows.write() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        match record.value.as_deref() {
            None => {
                rows.remove(key);
            }
            Some(bytes) => match serde_json::from_slice::<V>(bytes) {
                Ok(v) if rows.len() < TABLE_ROWS_MAX || rows.contains_key(key) => {
                    rows.insert(key.to_string(), v);
                }
                Ok(_) => tracing::error!(topic = %self.topic, "Table full; update of a new key refused"),
                Err(e) => {
                    tracing::warn!(topic = %self.topic, offset = record.offset, error = %e, "Table value not decodable; skipped")
                }
            },
        }
    }
}

/// What the runners need of a table: its topic and a way to read new records into it.
pub trait TableSource: Send + Sync {
    /// The topic.
    fn topic(&self) -> &str;
    /// Reads the topic's new records into the table; returns how many.
    fn refresh<'a>(&'a self, transport: &'a dyn Transport) -> BoxFuture<'a, Result<usize>>;
}

impl<V: DeserializeOwned + Send + Sync + 'static> TableSource for Table<V> {
    fn topic(&self) -> &str {
        &self.topic
    }

    fn refresh<'a>(&'a self, transport: &'a dyn Transport) -> BoxFuture<'a, Result<usize>> {
        Box::pin(async move {
            let mut total = 0;
            // Bounded: each pass reads a full batch or ends the loop.
            loop {
                let from = self.next.lock().map(|n| n.clone()).unwrap_or_default();
                let (records, next) = transport.read_to_end(&self.topic, from, LOAD_BATCH).await?;
                for r in &records {
                    self.apply(r);
                }
                if let Ok(mut n) = self.next.lock() {
                    *n = next;
                }
                total += records.len();
                if records.len() < LOAD_BATCH {
                    return Ok(total);
                }
            }
        })
    }
}
