//! What an aggregate needs from an event store: read a stream from a revision, append with
//! an expected revision. Implemented by the embedded store and by the KurrentDB gRPC API
//! (Rivulet's, or a KurrentDB cluster's).

use futures_util::future::BoxFuture;

use crate::error::Result;

/// An event read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its revision in the stream.
    pub revision: u64,
    /// Its id.
    pub id: uuid::Uuid,
    /// Its type.
    pub event_type: String,
    /// Its JSON data.
    pub data: Vec<u8>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStoredEvent {
    /// Its id: the same id appended again to the same stream is not written twice.
    pub id: uuid::Uuid,
    /// Its type.
    pub event_type: String,
    /// Its JSON data.
    pub data: Vec<u8>,
}

/// What an append expects of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// The stream has no events.
    NoStream,
    /// Its last revision is this.
    Revision(u64),
}

/// How an append ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Written (or written before, with the same event ids); the stream's last revision.
    Written {
        /// The last revision after the append.
        last_revision: u64,
    },
    /// The stream was not in the expected state; its actual last revision.
    Conflict {
        /// `None` when it has no events.
        actual: Option<u64>,
    },
}

/// An event store an aggregate repository uses.
pub trait EventStoreBackend: Send + Sync {
    /// Events of a stream from `from` on, at most `max` (none when the stream does not exist).
    fn read<'a>(&'a self, stream: &'a str, from: u64, max: usize) -> BoxFuture<'a, Result<Vec<StoredEvent>>>;

    /// Appends events if the stream is as expected; durable when it returns `Written`.
    fn append<'a>(
        &'a self,
        stream: &'a str,
        expected: Expected,
        events: Vec<NewStoredEvent>,
    ) -> BoxFuture<'a, Result<AppendOutcome>>;
}
