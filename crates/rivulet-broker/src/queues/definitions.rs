//! `definitions.json`: exchanges, queues and bindings, so durable ones survive a restart.

use std::collections::BTreeMap;
use std::path::Path;

use rivulet_log::storage::Storage;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{BrokerError, Result};
use crate::meta::{read_file, write_atomically};
use crate::routing::{Binding, Exchange, ExchangeBinding, ExchangeKind, FieldValue, Headers};

use super::{QueueSpec, Registry};

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Definitions {
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
    /// Exchange-to-exchange bindings (absent from definitions written before them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exchange_bindings: Vec<ExchangeBindingDef>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ExchangeDef {
    pub name: String,
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct QueueDef {
    pub name: String,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: BTreeMap<String, Value>,
    /// The queue created its topic (false: declared over an existing Kafka topic, which
    /// outlives the queue).
    #[serde(default = "created")]
    pub owns_topic: bool,
}

fn created() -> bool {
    true
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct BindingDef {
    pub exchange: String,
    pub queue: String,
    pub key: String,
    pub arguments: BTreeMap<String, Value>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ExchangeBindingDef {
    pub source: String,
    pub destination: String,
    pub key: String,
    pub arguments: BTreeMap<String, Value>,
}

impl ExchangeBindingDef {
    pub fn binding(&self) -> ExchangeBinding {
        ExchangeBinding {
            destination: self.destination.clone(),
            key: self.key.clone(),
            arguments: headers_from(&self.arguments),
        }
    }
}

impl QueueDef {
    /// Restored at start: durable and not tied to a connection.
    pub fn survives(&self) -> bool {
        self.durable && !self.exclusive
    }

    pub fn spec(&self) -> QueueSpec {
        QueueSpec {
            durable: self.durable,
            exclusive: self.exclusive,
            auto_delete: self.auto_delete,
            arguments: headers_from(&self.arguments),
        }
    }
}

impl ExchangeDef {
    pub fn exchange(&self) -> Option<Exchange> {
        Some(Exchange {
            kind: ExchangeKind::parse(&self.kind)?,
            durable: self.durable,
            auto_delete: self.auto_delete,
            internal: self.internal,
            alternate: self.alternate.clone(),
        })
    }
}

impl BindingDef {
    pub fn binding(&self) -> Binding {
        Binding {
            queue: self.queue.clone(),
            key: self.key.clone(),
            arguments: headers_from(&self.arguments),
        }
    }
}

/// Every queue (transient ones too, so a restart removes their topics), durable exchanges,
/// the bindings between durable exchanges and durable queues, and those between durable
/// exchanges.
pub(super) fn snapshot(registry: &Registry) -> Definitions {
    let exchanges = registry
        .topology
        .exchanges()
        .filter(|(name, e)| e.durable && !name.starts_with("amq."))
        .map(|(name, e)| ExchangeDef {
            name: name.clone(),
            kind: e.kind.as_str().to_string(),
            durable: e.durable,
            auto_delete: e.auto_delete,
            internal: e.internal,
            alternate: e.alternate.clone(),
        })
        .collect();
    let queues: Vec<QueueDef> = registry
        .queues
        .values()
        .map(|q| QueueDef {
            name: q.name().to_string(),
            durable: q.spec().durable,
            exclusive: q.spec().exclusive,
            auto_delete: q.spec().auto_delete,
            arguments: headers_to(&q.spec().arguments),
            owns_topic: q.owns_topic(),
        })
        .collect();
    let durable_queue = |name: &str| queues.iter().any(|q| q.name == name && q.survives());
    let bindings = registry
        .topology
        .bindings()
        .filter(|(e, b)| registry.topology.exchange(e).is_some_and(|x| x.durable) && durable_queue(&b.queue))
        .map(|(e, b)| BindingDef {
            exchange: e.clone(),
            queue: b.queue.clone(),
            key: b.key.clone(),
            arguments: headers_to(&b.arguments),
        })
        .collect();
    let durable_exchange = |name: &str| registry.topology.exchange(name).is_some_and(|x| x.durable);
    let exchange_bindings = registry
        .topology
        .exchange_bindings()
        .filter(|(source, b)| durable_exchange(source) && durable_exchange(&b.destination))
        .map(|(source, b)| ExchangeBindingDef {
            source: source.clone(),
            destination: b.destination.clone(),
            key: b.key.clone(),
            arguments: headers_to(&b.arguments),
        })
        .collect();
    Definitions {
        exchanges,
        queues,
        bindings,
        exchange_bindings,
    }
}

pub(super) fn save(storage: &dyn Storage, path: &Path, defs: &Definitions) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(defs).map_err(|e| BrokerError::CorruptMetadata {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomically(storage, path, &bytes)
}

pub(super) fn load(storage: &dyn Storage, path: &Path) -> Result<Definitions> {
    let Some(bytes) = read_file(storage, path)? else {
        return Ok(Definitions::default());
    };
    serde_json::from_slice(&bytes).map_err(|e| BrokerError::CorruptMetadata {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn headers_to(headers: &Headers) -> BTreeMap<String, Value> {
    headers
        .iter()
        .map(|(k, v)| {
            let v = match v {
                FieldValue::Void => Value::Null,
                FieldValue::Bool(b) => json!(b),
                FieldValue::Int(i) => json!(i),
                FieldValue::Float(f) => json!({ "float": f }),
                FieldValue::Str(s) => json!(s),
                FieldValue::Bytes(b) => json!({ "bytes": b }),
            };
            (k.clone(), v)
        })
        .collect()
}

fn headers_from(values: &BTreeMap<String, Value>) -> Headers {
    values
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Bool(b) => FieldValue::Bool(*b),
                Value::Number(n) => FieldValue::Int(n.as_i64().unwrap_or_default()),
                Value::String(s) => FieldValue::Str(s.clone()),
                Value::Object(o) => match (o.get("float"), o.get("bytes")) {
                    (Some(f), _) => FieldValue::Float(f.as_f64().unwrap_or_default()),
                    (_, Some(Value::Array(b))) => FieldValue::Bytes(
                        b.iter()
                            .filter_map(|x| x.as_u64().and_then(|x| u8::try_from(x).ok()))
                            .collect(),
                    ),
                    _ => FieldValue::Void,
                },
                _ => FieldValue::Void,
            };
            (k.clone(), v)
        })
        .collect()
}
