//! Produce: appended in request order, answered once durable.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use rivulet_broker::acl::Operation;
use rivulet_broker::{AppendOutcome, BrokerError, Create, Durable};

use super::codes::broker_error_code;
use super::{str_bytes, ClientInfo, Handler};
use crate::errors as ec;

/// A Produce request whose records are appended and whose syncs are requested.
#[derive(Debug)]
pub struct ProduceInFlight {
    acks: i16,
    responses: Vec<TopicProduceResponse>,
    /// `(topic index, partition index, durability)` awaited before answering (acks=all).
    pending: Vec<(usize, usize, Durable)>,
}

impl Handler {
    /// The part of a Produce that must run in request order: validation and appends. Each
    /// partition's sync is requested by its append, so the partitions of one request sync
    /// in parallel.
    pub(super) fn produce_append(&self, v: i16, r: ProduceRequest, client: &ClientInfo) -> ProduceInFlight {
        let acks = r.acks;
        let txn_refused = r
            .transactional_id
            .as_ref()
            .is_some_and(|id| !self.may_txn(client, Operation::Write, id));
        let refused = if acks != 0 && acks != 1 && acks != -1 {
            Some(ec::INVALID_REQUIRED_ACKS)
        } else if txn_refused {
            Some(ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        } else {
            None
        };
        let mut pending = Vec::new();
        let mut responses = Vec::with_capacity(r.topic_data.len());
        for (ti, td) in r.topic_data.into_iter().enumerate() {
            let denied = (refused.is_none() && !self.may_topic(client, Operation::Write, &td.name.0))
                .then_some(ec::TOPIC_AUTHORIZATION_FAILED);
            let refused = refused.or(denied);
            let create = self.create_on_produce(client, &td.name.0);
            let mut parts = Vec::with_capacity(td.partition_data.len());
            for (pi, pd) in td.partition_data.into_iter().enumerate() {
                let result = match (refused, pd.records.as_ref().filter(|b| !b.is_empty())) {
                    (Some(code), _) => Err((code, None)),
                    (None, None) => Err((ec::CORRUPT_MESSAGE, Some("no records".to_string()))),
                    (None, Some(records)) => self
                        .broker
                        .produce(&td.name.0, pd.index, records, create)
                        .map_err(|e: BrokerError| (broker_error_code(&e), Some(e.to_string()))),
                };
                let resp = partition_response(v, pd.index, result, |durable| {
                    if acks == -1 {
                        pending.push((ti, pi, durable));
                    }
                });
                parts.push(resp);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(td.name)
                    .with_partition_responses(parts),
            );
        }
        ProduceInFlight {
            acks,
            responses,
            pending,
        }
    }
}

impl Handler {
    /// Whether producing to a missing topic creates it: when auto-creation is on and the
    /// client may create the topic.
    fn create_on_produce(&self, client: &ClientInfo, topic: &str) -> Create {
        if !self.broker.auth_required()
            || self.broker.topic(topic).is_some()
            || self.may_create_topic(client, topic)
        {
            Create::IfAllowed
        } else {
            Create::Never
        }
    }
}

/// One partition's answer; `wait` receives the durability of a successful append.
fn partition_response(
    v: i16,
    index: i32,
    result: Result<AppendOutcome, (i16, Option<String>)>,
    wait: impl FnOnce(Durable),
) -> PartitionProduceResponse {
    let mut resp = PartitionProduceResponse::default().with_index(index);
    match result {
        Ok(outcome) => {
            resp.base_offset = outcome.base_offset;
            resp.log_append_time_ms = outcome.log_append_time_ms;
            if v >= 5 {
                resp.log_start_offset = outcome.log_start_offset;
            }
            // With acks 0 or 1 nobody waits; the append requested the sync anyway, so the
            // records become durable and visible.
            wait(outcome.durable);
        }
        Err((code, message)) => {
            resp.error_code = code;
            resp.base_offset = -1;
            if v >= 8 {
                resp.error_message = message.map(str_bytes);
            }
        }
    }
    resp
}

impl ProduceInFlight {
    /// Waits until every acks=all partition is durable and returns the response, or `None`
    /// for acks=0.
    pub async fn finish(self) -> Option<ProduceResponse> {
        let ProduceInFlight {
            acks,
            mut responses,
            pending,
        } = self;
        // Every sync was requested at append time: waiting in turn takes as long as the
        // slowest one.
        for (ti, pi, durable) in pending {
            if let Err(e) = durable.wait().await {
                tracing::error!(error = %e, "Waiting for durability failed");
                if let Some(p) = responses
                    .get_mut(ti)
                    .and_then(|t| t.partition_responses.get_mut(pi))
                {
                    p.error_code = super::codes::log_error_code(&e);
                    p.base_offset = -1;
                }
            }
        }
        if acks == 0 {
            return None;
        }
        Some(ProduceResponse::default().with_responses(responses))
    }
}
