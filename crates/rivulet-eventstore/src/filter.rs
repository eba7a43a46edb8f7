//! Filters of `$all` by stream name or event type, by prefixes or a regular expression:
//! what catch-up readers ask for on each call and what a persistent subscription group on
//! `$all` keeps with its definition.

use serde::{Deserialize, Serialize};

use crate::error::{EventStoreError, Result};
use crate::model::RecordedEvent;

/// Longest regular expression a filter may give, in bytes.
pub const REGEX_BYTES_MAX: usize = 4096;
/// Most prefixes one filter may give.
pub const PREFIXES_MAX: usize = 256;

/// What a filter looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOn {
    /// The event's stream name.
    Stream,
    /// The event's type.
    EventType,
}

/// A filter as given (and stored): a regular expression, or else any of some prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterSpec {
    /// What is matched.
    pub on: FilterOn,
    /// A regular expression (with look-around, as the KurrentDB clients send); wins over
    /// `prefixes` when present.
    pub regex: Option<String>,
    /// Names or types starting with any of these pass.
    pub prefixes: Vec<String>,
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub struct EventFilter {
    on: FilterOn,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    Regex(Box<fancy_regex::Regex>),
    Prefixes(Vec<String>),
}

impl EventFilter {
    /// Compiles a filter; a bad or oversized expression is an [`EventStoreError::Invalid`].
    pub fn compile(spec: &FilterSpec) -> Result<EventFilter> {
        let matcher = match spec.regex.as_deref().filter(|r| !r.is_empty()) {
            Some(regex) => {
                if regex.len() > REGEX_BYTES_MAX {
                    return Err(EventStoreError::Invalid(format!(
                        "a filter's regex has at most {REGEX_BYTES_MAX} bytes"
                    )));
                }
                let compiled = fancy_regex::Regex::new(regex)
                    .map_err(|e| EventStoreError::Invalid(format!("filter regex {regex:?}: {e}")))?;
                Matcher::Regex(Box::new(compiled))
            }
            None => {
                if spec.prefixes.len() > PREFIXES_MAX {
                    return Err(EventStoreError::Invalid(format!(
                        "a filter has at most {PREFIXES_MAX} prefixes"
                    )));
                }
                Matcher::Prefixes(spec.prefixes.clone())
            }
        };
        Ok(EventFilter { on: spec.on, matcher })
    }

    /// True when the event passes.
    pub fn matches(&self, e: &RecordedEvent) -> bool {
        let subject = match self.on {
            FilterOn::Stream => e.stream.as_str(),
            FilterOn::EventType => e.event_type.as_str(),
        };
        match &self.matcher {
            // A pattern that exhausts its backtracking budget matches nothing.
            Matcher::Regex(r) => r.is_match(subject).unwrap_or(false),
            Matcher::Prefixes(p) => p.iter().any(|p| subject.starts_with(p.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContentType;

    fn event(stream: &str, event_type: &str) -> RecordedEvent {
        RecordedEvent {
            stream: stream.into(),
            revision: 0,
            position: 0,
            id: 1,
            event_type: event_type.into(),
            content_type: ContentType::Json,
            data: Vec::new(),
            metadata: Vec::new(),
            created_ms: 0,
        }
    }

    #[test]
    fn regexes_with_look_ahead_and_prefixes_both_filter() {
        let no_system = EventFilter::compile(&FilterSpec {
            on: FilterOn::EventType,
            regex: Some(r"^(?!\$).*".into()),
            prefixes: Vec::new(),
        })
        .expect("compiles");
        assert!(no_system.matches(&event("order-1", "Placed")));
        assert!(!no_system.matches(&event("order-1", "$metadata")));
        let orders = EventFilter::compile(&FilterSpec {
            on: FilterOn::Stream,
            regex: None,
            prefixes: vec!["order-".into(), "cart-".into()],
        })
        .expect("compiles");
        assert!(orders.matches(&event("cart-9", "x")));
        assert!(!orders.matches(&event("user-9", "x")));
        let bad = EventFilter::compile(&FilterSpec {
            on: FilterOn::Stream,
            regex: Some("(".into()),
            prefixes: Vec::new(),
        });
        assert!(matches!(bad, Err(EventStoreError::Invalid(_))));
    }
}
