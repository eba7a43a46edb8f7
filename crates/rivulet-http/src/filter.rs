//! Record filters of the records route: by key, by header, by a field of a JSON value. A
//! filtered read scans forward until it has enough matches or has looked at its scan limit.

use rivulet_broker::StoredRecord;
use serde_json::Value;

use crate::error::ApiError;

/// Path segments of a field filter at most.
const FIELD_DEPTH_MAX: usize = 16;

/// What a record must have to be returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Filter {
    key: Option<String>,
    header: Option<(String, Option<String>)>,
    field: Option<(Vec<String>, String)>,
}

fn split_eq(text: &str) -> (String, Option<String>) {
    match text.split_once('=') {
        Some((name, value)) => (name.to_string(), Some(value.to_string())),
        None => (text.to_string(), None),
    }
}

impl Filter {
    /// The filter of a query: `key` (exact), `header` (`name` or `name=value`), `field`
    /// (`a.b.c=value` into a JSON value). `None` when none is given.
    pub(crate) fn parse(
        key: Option<String>,
        header: Option<String>,
        field: Option<String>,
    ) -> Result<Option<Filter>, ApiError> {
        if key.is_none() && header.is_none() && field.is_none() {
            return Ok(None);
        }
        let field = match field {
            None => None,
            Some(text) => {
                let (path, value) = split_eq(&text);
                let value = value.ok_or_else(|| {
                    ApiError::bad_request(format!("field {text:?}: expected path=value, like data.sku=A-1"))
                })?;
                let path: Vec<String> = path.split('.').map(str::to_string).collect();
                if path.len() > FIELD_DEPTH_MAX || path.iter().any(String::is_empty) {
                    return Err(ApiError::bad_request(format!(
                        "field {text:?}: expected up to {FIELD_DEPTH_MAX} non-empty names joined by dots"
                    )));
                }
                Some((path, value))
            }
        };
        Ok(Some(Filter {
            key,
            header: header.as_deref().map(split_eq),
            field,
        }))
    }

    /// Does the record pass?
    pub(crate) fn matches(&self, r: &StoredRecord) -> bool {
        if let Some(key) = &self.key {
            if r.key.as_deref() != Some(key.as_bytes()) {
                return false;
            }
        }
        if let Some((name, value)) = &self.header {
            let found = r.headers.iter().any(|(k, v)| {
                k == name
                    && value
                        .as_ref()
                        .is_none_or(|want| v.as_deref() == Some(want.as_bytes()))
            });
            if !found {
                return false;
            }
        }
        match &self.field {
            None => true,
            Some((path, want)) => field_equals(r.value.as_deref(), path, want),
        }
    }
}

fn field_equals(value: Option<&[u8]>, path: &[String], want: &str) -> bool {
    let Some(Ok(json)) = value.map(serde_json::from_slice::<Value>) else {
        return false;
    };
    let mut at = &json;
    for name in path {
        let next = match at {
            Value::Object(map) => map.get(name),
            Value::Array(items) => name.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    match at {
        Value::String(s) => s == want,
        other => serde_json::from_str::<Value>(want).is_ok_and(|w| &w == other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(key: &str, value: &str, headers: &[(&str, &str)]) -> StoredRecord {
        StoredRecord {
            offset: 0,
            timestamp_ms: 0,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), Some(Bytes::copy_from_slice(v.as_bytes()))))
                .collect(),
        }
    }

    #[test]
    fn each_filter_accepts_and_refuses() {
        let r = record(
            "k1",
            r#"{"data":{"sku":"A-1","qty":3,"tags":["x","y"]}}"#,
            &[("ce_type", "order")],
        );
        let f = |k: Option<&str>, h: Option<&str>, fl: Option<&str>| {
            Filter::parse(k.map(Into::into), h.map(Into::into), fl.map(Into::into))
                .expect("parses")
                .expect("some")
        };
        assert!(f(Some("k1"), None, None).matches(&r));
        assert!(!f(Some("k2"), None, None).matches(&r));
        assert!(f(None, Some("ce_type"), None).matches(&r));
        assert!(f(None, Some("ce_type=order"), None).matches(&r));
        assert!(!f(None, Some("ce_type=refund"), None).matches(&r));
        assert!(!f(None, Some("other"), None).matches(&r));
        assert!(f(None, None, Some("data.sku=A-1")).matches(&r));
        assert!(f(None, None, Some("data.qty=3")).matches(&r));
        assert!(f(None, None, Some("data.tags.1=y")).matches(&r));
        assert!(!f(None, None, Some("data.sku=B")).matches(&r));
        assert!(!f(None, None, Some("data.missing=1")).matches(&r));
        assert!(!f(Some("k1"), None, Some("data.sku=B")).matches(&r));
        assert!(!f(None, None, Some("data.sku=A-1")).matches(&record("k", "not json", &[])));
        assert!(Filter::parse(None, None, None).expect("ok").is_none());
        assert!(Filter::parse(None, None, Some("nofield".into())).is_err());
        assert!(Filter::parse(None, None, Some("a..b=1".into())).is_err());
    }
}
