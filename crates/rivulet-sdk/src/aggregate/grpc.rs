//! The KurrentDB gRPC API (`Streams.Read`, `Streams.Append`) as an aggregate backend: the
//! same code runs against Rivulet's event store or a KurrentDB cluster.

use futures_util::future::BoxFuture;
use rivulet_eventstore_grpc::pb::event_store::client::streams::read_resp::{self, read_event};
use rivulet_eventstore_grpc::pb::event_store::client::streams::streams_client::StreamsClient;
use rivulet_eventstore_grpc::pb::event_store::client::streams::{
    append_req, append_resp, read_req, AppendReq, ReadReq,
};
use rivulet_eventstore_grpc::pb::event_store::client::{uuid as id_form, Empty, StreamIdentifier, Uuid};
use tonic::transport::Channel;

use super::store::{AppendOutcome, EventStoreBackend, Expected, NewStoredEvent, StoredEvent};
use crate::error::{Result, SdkError};

/// A KurrentDB-protocol event store over the network.
#[derive(Debug, Clone)]
pub struct GrpcEventStore {
    client: StreamsClient<Channel>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> SdkError {
    SdkError::EventStore(format!("{what}: {e}"))
}

impl GrpcEventStore {
    /// Connects to `host:port` (Rivulet's `--eventstore-listen`, 2113 by default), without TLS.
    pub async fn connect(address: &str) -> Result<GrpcEventStore> {
        let channel = Channel::from_shared(format!("http://{address}"))
            .map_err(|e| failed(address, e))?
            .connect()
            .await
            .map_err(|e| failed(address, e))?;
        Ok(GrpcEventStore {
            client: StreamsClient::new(channel),
        })
    }
}

fn stream_id(stream: &str) -> Option<StreamIdentifier> {
    Some(StreamIdentifier {
        stream_name: stream.as_bytes().to_vec(),
    })
}

fn event_of(e: read_event::RecordedEvent) -> Result<StoredEvent> {
    let id = match e.id.and_then(|u| u.value) {
        Some(id_form::Value::String(s)) => {
            uuid::Uuid::parse_str(&s).map_err(|err| failed("event id", err))?
        }
        Some(id_form::Value::Structured(s)) => {
            uuid::Uuid::from_u64_pair(s.most_significant_bits as u64, s.least_significant_bits as u64)
        }
        None => uuid::Uuid::nil(),
    };
    Ok(StoredEvent {
        revision: e.stream_revision,
        id,
        event_type: e.metadata.get("type").cloned().unwrap_or_default(),
        data: e.data,
    })
}

impl EventStoreBackend for GrpcEventStore {
    fn read<'a>(&'a self, stream: &'a str, from: u64, max: usize) -> BoxFuture<'a, Result<Vec<StoredEvent>>> {
        Box::pin(async move {
            use read_req::options::{self, stream_options::RevisionOption};
            let options = read_req::Options {
                stream_option: Some(options::StreamOption::Stream(options::StreamOptions {
                    stream_identifier: stream_id(stream),
                    revision_option: Some(RevisionOption::Revision(from)),
                })),
                read_direction: options::ReadDirection::Forwards as i32,
                resolve_links: false,
                count_option: Some(options::CountOption::Count(max as u64)),
                filter_option: Some(options::FilterOption::NoFilter(Empty {})),
                uuid_option: Some(options::UuidOption {
                    content: Some(options::uuid_option::Content::String(Empty {})),
                }),
                control_option: None,
            };
            let mut responses = self
                .client
                .clone()
                .read(ReadReq {
                    options: Some(options),
                })
                .await
                .map_err(|e| failed("read", e))?
                .into_inner();
            let mut out = Vec::new();
            while let Some(r) = responses.message().await.map_err(|e| failed("read", e))? {
                match r.content {
                    Some(read_resp::Content::Event(e)) => {
                        if let Some(event) = e.event {
                            out.push(event_of(event)?);
                        }
                    }
                    Some(read_resp::Content::StreamNotFound(_)) => return Ok(Vec::new()),
                    _ => {}
                }
            }
            Ok(out)
        })
    }

    fn append<'a>(
        &'a self,
        stream: &'a str,
        expected: Expected,
        events: Vec<NewStoredEvent>,
    ) -> BoxFuture<'a, Result<AppendOutcome>> {
        Box::pin(async move {
            use append_req::options::ExpectedStreamRevision as E;
            let options = append_req::Options {
                stream_identifier: stream_id(stream),
                expected_stream_revision: Some(match expected {
                    Expected::NoStream => E::NoStream(Empty {}),
                    Expected::Revision(r) => E::Revision(r),
                }),
            };
            let mut reqs = vec![AppendReq {
                content: Some(append_req::Content::Options(options)),
            }];
            for e in events {
                let metadata = [
                    ("type", e.event_type.as_str()),
                    ("content-type", "application/json"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                reqs.push(AppendReq {
                    content: Some(append_req::Content::ProposedMessage(
                        append_req::ProposedMessage {
                            id: Some(Uuid {
                                value: Some(id_form::Value::String(e.id.to_string())),
                            }),
                            metadata,
                            custom_metadata: Vec::new(),
                            data: e.data,
                        },
                    )),
                });
            }
            let resp = self
                .client
                .clone()
                .append(tokio_stream::iter(reqs))
                .await
                .map_err(|e| failed("append", e))?
                .into_inner();
            use append_resp::wrong_expected_version::CurrentRevisionOption as Current;
            match resp.result {
                Some(append_resp::Result::Success(s)) => match s.current_revision_option {
                    Some(append_resp::success::CurrentRevisionOption::CurrentRevision(r)) => {
                        Ok(AppendOutcome::Written { last_revision: r })
                    }
                    _ => Err(failed("append", "the answer has no revision")),
                },
                Some(append_resp::Result::WrongExpectedVersion(w)) => Ok(AppendOutcome::Conflict {
                    actual: match w.current_revision_option {
                        Some(Current::CurrentRevision(r)) => Some(r),
                        Some(Current::CurrentNoStream(_)) | None => None,
                    },
                }),
                None => Err(failed("append", "an empty answer")),
            }
        })
    }
}
