//! CloudEvents 1.0 envelopes in Kafka records (binary content mode).
//!
//! The attributes travel as record headers named by the CloudEvents Kafka protocol binding
//! (`ce_id`, `ce_source`, `ce_type`, `ce_specversion`, `ce_time`, `ce_subject`, and
//! `content-type` for `datacontenttype`); the record value is the data, JSON by default; the
//! record key is the partition key.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, SdkError};
use crate::transport::{InRecord, OutRecord};

/// The CloudEvents version written in `ce_specversion`.
pub const SPEC_VERSION: &str = "1.0";
/// Header carrying the event id.
pub const CE_ID: &str = "ce_id";
/// Header carrying the event source.
pub const CE_SOURCE: &str = "ce_source";
/// Header carrying the event type.
pub const CE_TYPE: &str = "ce_type";
/// Header carrying the CloudEvents version.
pub const CE_SPECVERSION: &str = "ce_specversion";
/// Header carrying the event time (RFC 3339).
pub const CE_TIME: &str = "ce_time";
/// Header carrying the event subject.
pub const CE_SUBJECT: &str = "ce_subject";
/// Header carrying the data content type.
pub const CONTENT_TYPE: &str = "content-type";
/// Content type of JSON data, the default.
pub const JSON: &str = "application/json";

/// A typed CloudEvent.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<T> {
    /// Unique id; the unit of deduplication. Producers retrying an event keep its id.
    pub id: String,
    /// URI-reference naming the producer, e.g. `/shop/orders`.
    pub source: String,
    /// Event type, e.g. `shop.order.placed`.
    pub ty: String,
    /// When the event happened (RFC 3339).
    pub time: Option<String>,
    /// What the event is about within the source, e.g. an order id.
    pub subject: Option<String>,
    /// Media type of the encoded data.
    pub data_content_type: String,
    /// The payload.
    pub data: T,
}

impl<T> Event<T> {
    /// A new event with a random id, the current time and JSON data.
    pub fn new(source: impl Into<String>, ty: impl Into<String>, data: T) -> Event<T> {
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            source: source.into(),
            ty: ty.into(),
            time: Some(rfc3339(crate::now_ms())),
            subject: None,
            data_content_type: JSON.to_string(),
            data,
        }
    }

    /// Sets the id (for events derived deterministically from others).
    pub fn with_id(mut self, id: impl Into<String>) -> Event<T> {
        self.id = id.into();
        self
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Event<T> {
        self.subject = Some(subject.into());
        self
    }
}

impl<T: Serialize> Event<T> {
    /// Encodes the event as a record in binary content mode with `key` choosing the
    /// partition.
    pub fn to_record(&self, key: Option<&str>) -> Result<OutRecord> {
        if self.data_content_type != JSON && !self.data_content_type.ends_with("+json") {
            return Err(SdkError::Config(format!(
                "data content type {:?}: only JSON data is encoded by the SDK",
                self.data_content_type
            )));
        }
        let value = serde_json::to_vec(&self.data).map_err(SdkError::Encode)?;
        let mut headers = vec![
            (CE_ID.to_string(), self.id.clone().into_bytes()),
            (CE_SOURCE.to_string(), self.source.clone().into_bytes()),
            (CE_TYPE.to_string(), self.ty.clone().into_bytes()),
            (CE_SPECVERSION.to_string(), SPEC_VERSION.as_bytes().to_vec()),
            (
                CONTENT_TYPE.to_string(),
                self.data_content_type.clone().into_bytes(),
            ),
        ];
        if let Some(t) = &self.time {
            headers.push((CE_TIME.to_string(), t.clone().into_bytes()));
        }
        if let Some(s) = &self.subject {
            headers.push((CE_SUBJECT.to_string(), s.clone().into_bytes()));
        }
        Ok(OutRecord {
            key: key.map(|k| k.as_bytes().to_vec()),
            value: Some(value),
            headers,
            partition: None,
        })
    }
}

/// An event as received by a handler: CloudEvents attributes, encoded data and where the
/// record came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// `ce_id`; for a record without CloudEvents headers, `<topic>/<partition>/<offset>`.
    pub id: String,
    /// `ce_source`, empty when absent.
    pub source: String,
    /// `ce_type`, empty when absent.
    pub ty: String,
    /// `ce_time`.
    pub time: Option<String>,
    /// `ce_subject`.
    pub subject: Option<String>,
    /// `content-type`.
    pub data_content_type: Option<String>,
    /// True when the record carried `ce_id`, `ce_source`, `ce_type` and `ce_specversion`.
    pub is_cloud_event: bool,
    /// The record as it was read.
    pub record: InRecord,
    /// 1 for the first try, 2 for the first retry, ...
    pub attempt: u32,
}

impl Received {
    /// Reads the CloudEvents attributes from a record's headers.
    pub fn from_record(record: InRecord) -> Received {
        let text = |name: &str| {
            record
                .header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let id = text(CE_ID);
        let source = text(CE_SOURCE);
        let ty = text(CE_TYPE);
        let is_cloud_event =
            id.is_some() && source.is_some() && ty.is_some() && record.header(CE_SPECVERSION).is_some();
        Received {
            id: id.unwrap_or_else(|| format!("{}/{}/{}", record.topic, record.partition, record.offset)),
            source: source.unwrap_or_default(),
            ty: ty.unwrap_or_default(),
            time: text(CE_TIME),
            subject: text(CE_SUBJECT),
            data_content_type: text(CONTENT_TYPE),
            is_cloud_event,
            record,
            attempt: 1,
        }
    }

    /// The record key as UTF-8, if it is.
    pub fn key(&self) -> Option<&str> {
        self.record
            .key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    /// Decodes the data as JSON.
    pub fn data<T: DeserializeOwned>(&self) -> Result<T> {
        let bytes = self.record.value.as_deref().unwrap_or(b"null");
        serde_json::from_slice(bytes).map_err(|e| {
            SdkError::Decode(format!(
                "event {} ({}) data does not decode: {e}",
                self.id, self.ty
            ))
        })
    }

    /// Decodes the whole typed event.
    pub fn event<T: DeserializeOwned>(&self) -> Result<Event<T>> {
        Ok(Event {
            id: self.id.clone(),
            source: self.source.clone(),
            ty: self.ty.clone(),
            time: self.time.clone(),
            subject: self.subject.clone(),
            data_content_type: self.data_content_type.clone().unwrap_or_else(|| JSON.to_string()),
            data: self.data()?,
        })
    }
}

/// Formats milliseconds since the Unix epoch as RFC 3339 in UTC, e.g.
/// `2026-11-25T12:00:00.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_795_608_000_000), "2026-11-25T12:00:00.000Z");
    }
}
