//! `PersistentSubscriptions.Read`: a consumer joins a group with its first message, then
//! sends acknowledgements while the group sends it events. One task per consumer relays
//! both ways; the group bounds what the consumer holds, the channel what is queued.

use rivulet_eventstore::persistent::model::{Delivery, JoinRequest, NackAction};
use rivulet_eventstore::{PersistentSubscriptions, RecordedEvent, Subscription};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status, Streaming};

use crate::convert::{recorded, uuid_of};
use crate::errors::{invalid, status_of, with_trailers};
use crate::pb::event_store::client::persistent_subscriptions::read_req::{self, nack, options};
use crate::pb::event_store::client::persistent_subscriptions::read_resp::{self, read_event};
use crate::pb::event_store::client::persistent_subscriptions::{ReadReq, ReadResp};
use crate::persistent::source_of;

/// Responses queued for a consumer beyond its unacknowledged events.
const RESPONSES_QUEUED_MAX: usize = 32;
/// Ids one acknowledgement may carry.
const ACK_IDS_MAX: usize = 10_000;

type Sender = mpsc::Sender<Result<ReadResp, Status>>;

fn event_of(e: &RecordedEvent, string_ids: bool) -> read_event::RecordedEvent {
    let r = recorded(e.clone(), string_ids);
    read_event::RecordedEvent {
        id: r.id,
        stream_identifier: r.stream_identifier,
        stream_revision: r.stream_revision,
        prepare_position: r.prepare_position,
        commit_position: r.commit_position,
        metadata: r.metadata,
        custom_metadata: r.custom_metadata,
        data: r.data,
    }
}

fn delivery_resp(d: &Delivery, string_ids: bool) -> ReadResp {
    ReadResp {
        content: Some(read_resp::Content::Event(read_resp::ReadEvent {
            event: Some(event_of(&d.event, string_ids)),
            link: None,
            position: Some(read_event::Position::CommitPosition(d.event.position)),
            count: Some(read_event::Count::RetryCount(
                i32::try_from(d.retry_count).unwrap_or(i32::MAX),
            )),
        })),
    }
}

/// Joins the group the first message names and relays until either side ends.
pub(crate) async fn read(
    groups: PersistentSubscriptions,
    request: Request<Streaming<ReadReq>>,
) -> Result<Response<ReceiverStream<Result<ReadResp, Status>>>, Status> {
    let from = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
    let connection_name = request
        .metadata()
        .get("connection-name")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut incoming = request.into_inner();
    let first = incoming.message().await?.and_then(|m| m.content);
    let Some(read_req::Content::Options(o)) = first else {
        return Err(invalid("a persistent subscription read starts with its options"));
    };
    let source = source_of!(options::StreamOption, o.stream_option)?;
    let string_ids = matches!(
        o.uuid_option.and_then(|u| u.content),
        Some(options::uuid_option::Content::String(_))
    );
    let join = JoinRequest {
        buffer_size: u32::try_from(o.buffer_size).unwrap_or(1).max(1),
        from,
        username: String::new(),
        connection_name,
    };
    let subscription = groups
        .join(&source, &o.group_name, join)
        .await
        .map_err(|e| status_of("Read", e))?;
    let (tx, rx) = mpsc::channel(RESPONSES_QUEUED_MAX);
    let confirmation = ReadResp {
        content: Some(read_resp::Content::SubscriptionConfirmation(
            read_resp::SubscriptionConfirmation {
                subscription_id: subscription.id().to_string(),
            },
        )),
    };
    tx.send(Ok(confirmation))
        .await
        .map_err(|_| Status::cancelled("the client left"))?;
    tokio::spawn(relay(subscription, incoming, tx, string_ids));
    Ok(Response::new(ReceiverStream::new(rx)))
}

fn dropped(id: &str, reason: &str) -> Status {
    let (stream, group) = id.split_once("::").unwrap_or((id, ""));
    with_trailers(
        Code::Cancelled,
        format!("Subscription group {group} on stream {stream} was dropped: {reason}"),
        &[
            ("exception", "persistent-subscription-dropped".into()),
            ("stream-name", stream.to_string()),
            ("group-name", group.to_string()),
        ],
    )
}

async fn relay(
    mut subscription: Subscription,
    mut incoming: Streaming<ReadReq>,
    tx: Sender,
    string_ids: bool,
) {
    loop {
        tokio::select! {
            delivery = subscription.next() => {
                let Some(d) = delivery else {
                    let _ = tx.send(Err(dropped(subscription.id(), "the group stopped"))).await;
                    return;
                };
                if tx.send(Ok(delivery_resp(&d, string_ids))).await.is_err() {
                    return;
                }
            }
            message = incoming.message() => {
                let content = match message {
                    Ok(Some(m)) => m.content,
                    // The client closed its side or went away: leave the group.
                    Ok(None) | Err(_) => return,
                };
                if let Err(status) = handle(&subscription, content).await {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}

fn ids_of(ids: &[crate::pb::event_store::client::Uuid]) -> Result<Vec<u128>, Status> {
    if ids.len() > ACK_IDS_MAX {
        return Err(invalid(format!("at most {ACK_IDS_MAX} ids per acknowledgement")));
    }
    ids.iter().map(|u| uuid_of(Some(u))).collect()
}

async fn handle(subscription: &Subscription, content: Option<read_req::Content>) -> Result<(), Status> {
    let result = match content {
        Some(read_req::Content::Ack(a)) => subscription.ack(ids_of(&a.ids)?).await,
        Some(read_req::Content::Nack(n)) => {
            let action = match nack::Action::try_from(n.action) {
                Ok(nack::Action::Park) => NackAction::Park,
                Ok(nack::Action::Skip) => NackAction::Skip,
                Ok(nack::Action::Stop) => NackAction::Stop,
                Ok(nack::Action::Retry | nack::Action::Unknown) | Err(_) => NackAction::Retry,
            };
            subscription.nack(ids_of(&n.ids)?, action, n.reason).await
        }
        Some(read_req::Content::Options(_)) => {
            return Err(invalid("a consumer sends its options once, first"))
        }
        None => Ok(()),
    };
    result.map_err(|e| status_of("Read", e))
}
