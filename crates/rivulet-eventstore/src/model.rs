//! The event store's values: what is appended, what is read back, and the expected states
//! an append is checked against.

use std::fmt;

/// What a stream must look like for an append (or a delete) to go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedState {
    /// Whatever the stream's state (except tombstoned).
    Any,
    /// The stream has no events: never written, or deleted (soft) since.
    NoStream,
    /// The stream has events and is not deleted.
    StreamExists,
    /// The stream's last event has exactly this revision.
    Revision(u64),
}

impl fmt::Display for ExpectedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedState::Any => f.write_str("any state"),
            ExpectedState::NoStream => f.write_str("no stream"),
            ExpectedState::StreamExists => f.write_str("an existing stream"),
            ExpectedState::Revision(r) => write!(f, "revision {r}"),
        }
    }
}

/// How an event's data is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentType {
    /// `application/json`.
    #[default]
    Json,
    /// `application/octet-stream`: anything else.
    Binary,
}

impl ContentType {
    /// The MIME type.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Json => "application/json",
            ContentType::Binary => "application/octet-stream",
        }
    }

    /// The content type for a MIME type: JSON when it says so, binary otherwise.
    pub fn from_mime(mime: &str) -> ContentType {
        if mime.eq_ignore_ascii_case("application/json") {
            ContentType::Json
        } else {
            ContentType::Binary
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The event's id (a UUID): appending the same ids again to the same stream, in the same
    /// order, is answered with the first append's result and writes nothing.
    pub id: u128,
    /// The event type, such as `OrderPlaced`.
    pub event_type: String,
    /// How `data` is encoded.
    pub content_type: ContentType,
    /// The event's payload.
    pub data: Vec<u8>,
    /// Metadata the application attaches (correlation ids, ...); empty when none.
    pub metadata: Vec<u8>,
}

/// The events one stream receives in an append, and the state it must be in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAppend {
    /// The stream's name.
    pub stream: String,
    /// The state the stream must be in.
    pub expected: ExpectedState,
    /// Events, in order; at least one.
    pub events: Vec<NewEvent>,
}

/// What an append of one stream wrote (or, for a repeated append, had written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// The stream.
    pub stream: String,
    /// Revision of the first event appended.
    pub first_revision: u64,
    /// Revision of the last event appended: the expected revision of the next append.
    pub next_expected_revision: u64,
    /// Position in the global order (`$all`) of the last event appended.
    pub position: u64,
    /// True when the events were already in the stream (same ids, same order): nothing was
    /// written and the original revisions are returned.
    pub already_written: bool,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Its stream.
    pub stream: String,
    /// Its revision in the stream (0, 1, 2, ...).
    pub revision: u64,
    /// Its position in the global order: grows with every event and is never reused.
    pub position: u64,
    /// The id it was appended with.
    pub id: u128,
    /// Its type.
    pub event_type: String,
    /// How `data` is encoded.
    pub content_type: ContentType,
    /// Payload.
    pub data: Vec<u8>,
    /// Application metadata.
    pub metadata: Vec<u8>,
    /// When it was appended, in ms since the Unix epoch.
    pub created_ms: i64,
}

/// The direction of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first.
    Forwards,
    /// Newest first.
    Backwards,
}

/// A stream's state as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamHead {
    /// Revision of the last event ever appended (soft deletes keep it: revisions continue).
    pub last_revision: Option<u64>,
    /// Events below this revision are not readable (soft delete, `$tb`).
    pub truncate_before: u64,
    /// Soft-deleted and nothing appended since.
    pub deleted: bool,
    /// Deleted for good: no append or read, the name is never reused.
    pub tombstoned: bool,
    /// The stream's metadata as set (a JSON object; `$maxAge`, `$maxCount`, `$tb` apply).
    pub metadata: Vec<u8>,
}

impl StreamHead {
    /// True when the stream has events that are not deleted.
    pub fn exists(&self) -> bool {
        self.last_revision.is_some() && !self.deleted && !self.tombstoned
    }

    /// The revision an append checks against: the last one when the stream exists.
    pub fn current(&self) -> Option<u64> {
        if self.exists() {
            self.last_revision
        } else {
            None
        }
    }
}

/// One stream in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// The stream's name.
    pub name: String,
    /// Its state.
    pub head: StreamHead,
}
