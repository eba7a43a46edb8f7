//! Event-sourced aggregates: state rebuilt from the events of its stream (`<category>-<id>`),
//! commands decided against that state and appended with the revision they were decided at.
//! When another writer got there first the append is refused, and [`Repository::execute`]
//! loads again and decides again, a bounded number of times. Event ids come from the
//! command's id, so a command retried after a lost answer is written once.
//!
//! Backends: the embedded event store (feature `embedded`) and the KurrentDB gRPC API
//! (feature `eventstore-grpc`), which both Rivulet and a KurrentDB cluster serve.
//!
//! ```no_run
//! # async fn demo(store: std::sync::Arc<dyn rivulet_sdk::aggregate::EventStoreBackend>)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use rivulet_sdk::aggregate::{Aggregate, Repository};
//! #[derive(Default)]
//! struct Stock { units: u64 }
//! #[derive(serde::Serialize, serde::Deserialize)]
//! enum StockEvent { Received(u64), Reserved(u64) }
//! impl Aggregate for Stock {
//!     type Event = StockEvent;
//!     const CATEGORY: &'static str = "stock";
//!     fn event_type(e: &StockEvent) -> &'static str {
//!         match e { StockEvent::Received(_) => "Received", StockEvent::Reserved(_) => "Reserved" }
//!     }
//!     fn apply(&mut self, e: &StockEvent) {
//!         match e { StockEvent::Received(n) => self.units += n, StockEvent::Reserved(n) => self.units -= n }
//!     }
//! }
//! let stock = Repository::<Stock>::new(store);
//! let done = stock
//!     .execute("apple", uuid::Uuid::new_v4(), |s| {
//!         if s.units >= 1 { Ok(vec![StockEvent::Reserved(1)]) } else { Err("sold out") }
//!     })
//!     .await?;
//! println!("{} left at revision {:?}", done.state.units, done.revision);
//! # Ok(()) }
//! ```

#[cfg(feature = "embedded")]
mod embedded;
#[cfg(feature = "eventstore-grpc")]
mod grpc;
mod store;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::SdkError;
#[cfg(feature = "eventstore-grpc")]
pub use grpc::GrpcEventStore;
pub use store::{AppendOutcome, EventStoreBackend, Expected, NewStoredEvent, StoredEvent};

/// Events one read of a stream asks for while loading.
const LOAD_PAGE: usize = 1000;
/// Attempts of a command unless set otherwise.
pub const ATTEMPTS_DEFAULT: u32 = 10;
/// Longest pause between attempts.
const BACKOFF_MAX: Duration = Duration::from_millis(200);

/// State rebuilt from events.
pub trait Aggregate: Default + Send + Sync {
    /// The events that change it, stored as JSON.
    type Event: Serialize + DeserializeOwned + Send + Sync;
    /// Its streams are `<CATEGORY>-<id>` (so `$ce-<CATEGORY>` reads them all).
    const CATEGORY: &'static str;
    /// The type stored with an event.
    fn event_type(event: &Self::Event) -> &'static str;
    /// Applies one event.
    fn apply(&mut self, event: &Self::Event);
}

/// An aggregate as loaded: its state and the revision it was rebuilt to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The stream's last revision, `None` when it has no events.
    pub revision: Option<u64>,
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<R> {
    /// The decision refused it.
    #[error("refused")]
    Rejected(R),
    /// Other writers kept changing the stream; every attempt met a newer revision.
    #[error("the stream kept changing: {attempts} attempts conflicted")]
    Conflicts {
        /// Attempts made.
        attempts: u32,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] SdkError),
}

/// Loads and changes aggregates of one type.
pub struct Repository<A> {
    store: Arc<dyn EventStoreBackend>,
    attempts_max: u32,
    aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Repository<A> {
    /// A repository over `store`, retrying conflicts [`ATTEMPTS_DEFAULT`] times.
    pub fn new(store: Arc<dyn EventStoreBackend>) -> Repository<A> {
        Repository {
            store,
            attempts_max: ATTEMPTS_DEFAULT,
            aggregate: PhantomData,
        }
    }

    /// Sets how many times a command is decided and appended before giving up (at least 1).
    pub fn with_attempts(mut self, attempts: u32) -> Repository<A> {
        self.attempts_max = attempts.max(1);
        self
    }

    /// The stream of an aggregate.
    pub fn stream_of(id: &str) -> String {
        format!("{}-{id}", A::CATEGORY)
    }

    /// Rebuilds an aggregate from its events.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, SdkError> {
        let stream = Self::stream_of(id);
        let mut state = A::default();
        let mut revision = None;
        loop {
            let from = revision.map_or(0, |r: u64| r + 1);
            let page = self.store.read(&stream, from, LOAD_PAGE).await?;
            let full = page.len() == LOAD_PAGE;
            for e in page {
                let event: A::Event = serde_json::from_slice(&e.data).map_err(|err| {
                    SdkError::Decode(format!(
                        "{stream} revision {}: {} {err}",
                        e.revision, e.event_type
                    ))
                })?;
                state.apply(&event);
                revision = Some(e.revision);
            }
            if !full {
                return Ok(Loaded { state, revision });
            }
        }
    }

    /// Decides a command against the current state and appends its events at the revision it
    /// was decided at; on a conflict, loads and decides again. The events' ids derive from
    /// `command_id`: running a command again after an unknown outcome does not repeat it.
    pub async fn execute<R>(
        &self,
        id: &str,
        command_id: uuid::Uuid,
        decide: impl Fn(&A) -> Result<Vec<A::Event>, R>,
    ) -> Result<Loaded<A>, ExecuteError<R>> {
        let stream = Self::stream_of(id);
        for attempt in 0..self.attempts_max {
            let Loaded { mut state, revision } = self.load(id).await?;
            let events = decide(&state).map_err(ExecuteError::Rejected)?;
            if events.is_empty() {
                return Ok(Loaded { state, revision });
            }
            let proposed = events
                .iter()
                .enumerate()
                .map(|(n, e)| {
                    Ok(NewStoredEvent {
                        id: uuid::Uuid::from_u128(command_id.as_u128().wrapping_add(n as u128)),
                        event_type: A::event_type(e).to_string(),
                        data: serde_json::to_vec(e).map_err(SdkError::Encode)?,
                    })
                })
                .collect::<Result<Vec<_>, SdkError>>()?;
            let expected = revision.map_or(Expected::NoStream, Expected::Revision);
            match self.store.append(&stream, expected, proposed).await? {
                AppendOutcome::Written { last_revision } => {
                    events.iter().for_each(|e| state.apply(e));
                    return Ok(Loaded {
                        state,
                        revision: Some(last_revision),
                    });
                }
                AppendOutcome::Conflict { .. } => {
                    let pause = Duration::from_millis(1 << attempt.min(8)).min(BACKOFF_MAX);
                    let jitter = rand::random::<u64>() % (pause.as_millis() as u64 + 1);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
            }
        }
        Err(ExecuteError::Conflicts {
            attempts: self.attempts_max,
        })
    }
}
