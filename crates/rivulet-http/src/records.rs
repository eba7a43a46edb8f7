//! Records as JSON: what clients send to produce and what they get back.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use rivulet_broker::{NewRecord, StoredRecord};

use crate::error::ApiError;

/// Headers a record may carry in one request.
pub const HEADERS_MAX: usize = 64;

/// A record to produce.
///
/// `key` and `value` are JSON: a string is stored as its UTF-8 bytes, anything else as its
/// JSON text. `key_base64` / `value_base64` carry binary data instead. Headers are an object
/// of string values (or `{"name": ..., "value": ...}` pairs to repeat a name).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceRecord {
    /// Key as JSON, kept as the client wrote it.
    #[serde(default)]
    pub key: Option<Box<RawValue>>,
    /// Key as base64.
    #[serde(default)]
    pub key_base64: Option<String>,
    /// Value as JSON, kept as the client wrote it; absent or null for a tombstone.
    #[serde(default)]
    pub value: Option<Box<RawValue>>,
    /// Value as base64.
    #[serde(default)]
    pub value_base64: Option<String>,
    /// Headers.
    #[serde(default)]
    pub headers: Option<Value>,
    /// Target partition; otherwise chosen from the key (murmur2, as Kafka's Java client
    /// does) or round-robin.
    #[serde(default)]
    pub partition: Option<i32>,
    /// Record timestamp in ms since the epoch; defaults to now.
    #[serde(default)]
    pub timestamp: Option<i64>,
}

/// A JSON string is stored as its text; any other JSON exactly as written.
fn json_bytes(raw: &RawValue) -> Result<Option<Vec<u8>>, ApiError> {
    let text = raw.get();
    if text == "null" {
        return Ok(None);
    }
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).map_err(|e| ApiError::bad_request(e.to_string()))?;
        return Ok(Some(s.into_bytes()));
    }
    Ok(Some(text.as_bytes().to_vec()))
}

fn field(json: Option<Box<RawValue>>, b64: Option<String>, name: &str) -> Result<Option<Vec<u8>>, ApiError> {
    match (json, b64) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
            "give either {name} or {name}_base64, not both"
        ))),
        (None, Some(s)) => B64
            .decode(s.as_bytes())
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("{name}_base64 is not valid base64: {e}"))),
        (None, None) => Ok(None),
        (Some(raw), None) => json_bytes(&raw),
    }
}

impl ProduceRecord {
    /// Validates and encodes the record.
    pub fn encode(self) -> Result<NewRecord, ApiError> {
        let key = field(self.key, self.key_base64, "key")?;
        let value = field(self.value, self.value_base64, "value")?;
        let mut headers = Vec::new();
        match self.headers {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    headers.push((k, header_value(v)?));
                }
            }
            Some(Value::Array(items)) => {
                for item in items {
                    let Value::Object(mut obj) = item else {
                        return Err(ApiError::bad_request(
                            "each header must be {\"name\": ..., \"value\": ...}",
                        ));
                    };
                    let Some(Value::String(name)) = obj.remove("name") else {
                        return Err(ApiError::bad_request("a header needs a string \"name\""));
                    };
                    headers.push((name, header_value(obj.remove("value").unwrap_or(Value::Null))?));
                }
            }
            Some(_) => return Err(ApiError::bad_request("headers must be an object or an array")),
        }
        if headers.len() > HEADERS_MAX {
            return Err(ApiError::bad_request(format!(
                "{} headers; at most {HEADERS_MAX} per record",
                headers.len()
            )));
        }
        // Milliseconds since the epoch; negative values are not timestamps, and excluding them
        // keeps every timestamp difference within a batch from overflowing.
        if let Some(ts) = self.timestamp.filter(|ts| *ts < 0) {
            return Err(ApiError::bad_request(format!(
                "timestamp {ts} is negative; give milliseconds since the Unix epoch"
            )));
        }
        Ok(NewRecord {
            key,
            value,
            headers,
            partition: self.partition,
            timestamp_ms: self.timestamp,
        })
    }
}

fn header_value(v: Value) -> Result<Option<Vec<u8>>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.into_bytes())),
        other => Ok(Some(other.to_string().into_bytes())),
    }
}

/// A record as the gateway returns it. Keys, values and header values that are valid UTF-8
/// come as strings; others as base64 in `key_base64` / `value_base64`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JsonRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in ms since the epoch.
    pub timestamp: i64,
    /// Key as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Key as base64 when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// Value as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value as base64 when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// Headers (UTF-8 values as strings, others as base64, null stays null).
    pub headers: Map<String, Value>,
}

fn text_or_base64(b: Option<&Bytes>) -> (Option<String>, Option<String>) {
    match b {
        None => (None, None),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => (Some(s.to_string()), None),
            Err(_) => (None, Some(B64.encode(b))),
        },
    }
}

impl JsonRecord {
    /// A stored record as JSON.
    pub fn from_stored(topic: &str, partition: i32, r: &StoredRecord) -> JsonRecord {
        let (key, key_base64) = text_or_base64(r.key.as_ref());
        let (value, value_base64) = text_or_base64(r.value.as_ref());
        let mut headers = Map::new();
        for (k, v) in &r.headers {
            let v = match v {
                None => Value::Null,
                Some(b) => match std::str::from_utf8(b) {
                    Ok(s) => Value::String(s.to_string()),
                    Err(_) => Value::String(B64.encode(b)),
                },
            };
            headers.insert(k.clone(), v);
        }
        JsonRecord {
            topic: topic.to_string(),
            partition,
            offset: r.offset,
            timestamp: r.timestamp_ms,
            key,
            key_base64,
            value,
            value_base64,
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fields_encode() {
        let r: ProduceRecord =
            serde_json::from_str(r#"{"key":"k","value":{"a":1},"headers":{"h":"v","n":null},"partition":2}"#)
                .expect("parses");
        let e = r.encode().expect("encodes");
        assert_eq!(e.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(e.value.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(
            e.headers,
            vec![("h".into(), Some(b"v".to_vec())), ("n".into(), None)]
        );
        let bad: ProduceRecord =
            serde_json::from_str(r#"{"value":"x","value_base64":"eA=="}"#).expect("parses");
        assert!(bad.encode().is_err());
        let b: ProduceRecord = serde_json::from_str(r#"{"value_base64":"AP8="}"#).expect("parses");
        assert_eq!(b.encode().expect("ok").value, Some(vec![0, 255]));
    }
}
