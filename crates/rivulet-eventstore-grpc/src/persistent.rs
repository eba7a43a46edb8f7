//! The `PersistentSubscriptions` service: every call checks access, translates the request
//! and calls the store's groups. Joining a group (`Read`) is in `persistent_read`.

use rivulet_broker::acl::Operation;
use rivulet_eventstore::persistent::model::{
    ConsumerStrategy, GroupDefinition, GroupInfo, GroupSettings, GroupSource, StartFrom,
};
use rivulet_eventstore::PersistentSubscriptions;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::access::Access;
use crate::convert::stream_name;
use crate::errors::{invalid, status_of};
use crate::pb::event_store::client::persistent_subscriptions::persistent_subscriptions_server::PersistentSubscriptions as Service;
use crate::pb::event_store::client::persistent_subscriptions::{
    create_req, delete_req, get_info_req, list_req, replay_parked_req, subscription_info, update_req,
    CreateReq, CreateResp, DeleteReq, DeleteResp, GetInfoReq, GetInfoResp, ListReq, ListResp, ReadReq,
    ReadResp, ReplayParkedReq, ReplayParkedResp, SubscriptionInfo, UpdateReq, UpdateResp,
};
use crate::pb::event_store::client::Empty;
use crate::read::filter_spec_of;

/// 100-nanosecond ticks per millisecond.
const TICKS_PER_MS: i64 = 10_000;

/// The service.
#[derive(Debug, Clone)]
pub(crate) struct PersistentService {
    pub(crate) groups: PersistentSubscriptions,
    pub(crate) access: Access,
}

fn non_negative(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// Settings from either request's `Settings` (the same fields; only create has the
/// strategy by name).
macro_rules! settings_from {
    ($s:expr, $strategy_name:expr, $named:path) => {{
        use $named as named;
        let s = $s;
        let ms = |ticks: i64| u64::try_from(ticks / TICKS_PER_MS).unwrap_or(0);
        let strategy = match $strategy_name {
            Some(name) if !name.is_empty() => ConsumerStrategy::parse(name)
                .ok_or_else(|| invalid(format!("unknown consumer strategy {name:?}")))?,
            _ => match named::try_from(s.named_consumer_strategy) {
                Ok(named::DispatchToSingle) => ConsumerStrategy::DispatchToSingle,
                Ok(named::Pinned) => ConsumerStrategy::Pinned,
                Ok(named::RoundRobin) | Err(_) => ConsumerStrategy::RoundRobin,
            },
        };
        GroupSettings {
            start_from: StartFrom::Start,
            resolve_links: s.resolve_links,
            extra_statistics: s.extra_statistics,
            message_timeout_ms: match s.message_timeout {
                Some(MessageTimeout::MessageTimeoutTicks(t)) => ms(t),
                Some(MessageTimeout::MessageTimeoutMs(m)) => u64::from(non_negative(m)),
                None => 30_000,
            },
            max_retry_count: non_negative(s.max_retry_count),
            checkpoint_after_ms: match s.checkpoint_after {
                Some(CheckpointAfter::CheckpointAfterTicks(t)) => ms(t),
                Some(CheckpointAfter::CheckpointAfterMs(m)) => u64::from(non_negative(m)),
                None => 2_000,
            },
            checkpoint_count_min: non_negative(s.min_checkpoint_count),
            checkpoint_count_max: non_negative(s.max_checkpoint_count),
            subscriber_count_max: non_negative(s.max_subscriber_count),
            live_buffer_size: non_negative(s.live_buffer_size),
            read_batch_size: non_negative(s.read_batch_size).max(1),
            history_buffer_size: non_negative(s.history_buffer_size),
            strategy,
        }
    }};
}

/// Where a group starts, from the start/end/position oneof both requests carry (in
/// different generated types).
macro_rules! start_from {
    ($oneof:path, $v:expr, |$x:ident| $variant:ident => $at:expr) => {{
        use $oneof as o;
        match $v {
            Some(o::$variant($x)) => StartFrom::At($at),
            Some(o::End(_)) => StartFrom::End,
            Some(o::Start(_)) | None => StartFrom::Start,
        }
    }};
}

/// The legacy way to say where a stream group starts: a revision, with `u64::MAX` the end.
fn legacy_start(revision: u64) -> StartFrom {
    match revision {
        0 => StartFrom::Start,
        u64::MAX => StartFrom::End,
        r => StartFrom::At(r),
    }
}

fn create_definition(o: create_req::Options) -> Result<GroupDefinition, Status> {
    use create_req::settings::{CheckpointAfter, MessageTimeout};
    let s = o.settings.unwrap_or_default();
    let legacy_revision = s.revision;
    let mut settings = settings_from!(&s, Some(&s.consumer_strategy), create_req::ConsumerStrategy);
    let source = match o.stream_option {
        Some(create_req::options::StreamOption::Stream(st)) => {
            settings.start_from = start_from!(create_req::stream_options::RevisionOption, st.revision_option, |r| Revision => r);
            GroupSource::Stream(stream_name(st.stream_identifier.as_ref())?)
        }
        Some(create_req::options::StreamOption::All(all)) => {
            use create_req::all_options::{filter_options::Filter, AllOption, FilterOption};
            settings.start_from = start_from!(AllOption, all.all_option, |p| Position => p.commit_position);
            let filter = match all.filter_option {
                Some(FilterOption::Filter(f)) => {
                    use create_req::all_options::filter_options::Expression;
                    filter_spec_of!(Filter, f.filter)
                }
                Some(FilterOption::NoFilter(_)) | None => None,
            };
            GroupSource::All { filter }
        }
        None => {
            settings.start_from = legacy_start(legacy_revision);
            GroupSource::Stream(stream_name(o.stream_identifier.as_ref())?)
        }
    };
    Ok(GroupDefinition {
        source,
        group: o.group_name,
        settings,
    })
}

fn update_definition(o: update_req::Options) -> Result<GroupDefinition, Status> {
    use update_req::settings::{CheckpointAfter, MessageTimeout};
    let s = o.settings.unwrap_or_default();
    let legacy_revision = s.revision;
    let mut settings = settings_from!(&s, None::<&String>, update_req::ConsumerStrategy);
    let source = match o.stream_option {
        Some(update_req::options::StreamOption::Stream(st)) => {
            settings.start_from = start_from!(update_req::stream_options::RevisionOption, st.revision_option, |r| Revision => r);
            GroupSource::Stream(stream_name(st.stream_identifier.as_ref())?)
        }
        Some(update_req::options::StreamOption::All(all)) => {
            use update_req::all_options::AllOption;
            settings.start_from = start_from!(AllOption, all.all_option, |p| Position => p.commit_position);
            GroupSource::All { filter: None }
        }
        None => {
            settings.start_from = legacy_start(legacy_revision);
            GroupSource::Stream(stream_name(o.stream_identifier.as_ref())?)
        }
    };
    Ok(GroupDefinition {
        source,
        group: o.group_name,
        settings,
    })
}

/// A group's source from a request's `stream_identifier` / `all` oneof.
macro_rules! source_of {
    ($oneof:path, $v:expr) => {{
        use $oneof as o;
        match $v {
            Some(o::StreamIdentifier(s)) => crate::convert::stream_name(Some(&s)),
            Some(o::All(_)) => Ok("$all".to_string()),
            None => Err(crate::errors::invalid("a request names a stream or $all")),
        }
    }};
}
pub(crate) use source_of;

fn position_text(source: &GroupSource, p: u64) -> String {
    match source {
        GroupSource::Stream(_) => p.to_string(),
        GroupSource::All { .. } => format!("C:{p}/P:{p}"),
    }
}

fn start_text(source: &GroupSource, start: StartFrom) -> String {
    match (source, start) {
        (GroupSource::Stream(_), StartFrom::Start) => "0".into(),
        (GroupSource::Stream(_), StartFrom::End) => "-1".into(),
        (GroupSource::All { .. }, StartFrom::Start) => "C:0/P:0".into(),
        (GroupSource::All { .. }, StartFrom::End) => "C:-1/P:-1".into(),
        (s, StartFrom::At(p)) => position_text(s, p),
    }
}

fn clamp_i32(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Statistics as the clients read them.
pub(crate) fn info_of(i: GroupInfo) -> SubscriptionInfo {
    let d = &i.definition;
    let s = &d.settings;
    let connections = i
        .consumers
        .iter()
        .map(|c| subscription_info::ConnectionInfo {
            from: c.from.clone(),
            username: c.username.clone(),
            average_items_per_second: 0,
            total_items: i64::try_from(c.delivered_total).unwrap_or(i64::MAX),
            count_since_last_measurement: 0,
            observed_measurements: Vec::new(),
            available_slots: clamp_i32(u64::from(c.slots_free)),
            in_flight_messages: clamp_i32(u64::from(c.in_flight)),
            connection_name: c.connection_name.clone(),
        })
        .collect();
    SubscriptionInfo {
        event_source: d.source.name().to_string(),
        group_name: d.group.clone(),
        status: i.status.to_string(),
        connections,
        average_per_second: 0,
        total_items: i64::try_from(i.delivered_total).unwrap_or(i64::MAX),
        count_since_last_measurement: 0,
        last_checkpointed_event_position: i
            .checkpoint
            .filter(|c| *c > 0)
            .map(|c| position_text(&d.source, c - 1))
            .unwrap_or_default(),
        last_known_event_position: i
            .next_read
            .checked_sub(1)
            .map(|p| position_text(&d.source, p))
            .unwrap_or_default(),
        resolve_link_tos: s.resolve_links,
        start_from: start_text(&d.source, s.start_from),
        message_timeout_milliseconds: clamp_i32(s.message_timeout_ms),
        extra_statistics: s.extra_statistics,
        max_retry_count: clamp_i32(u64::from(s.max_retry_count)),
        live_buffer_size: clamp_i32(u64::from(s.live_buffer_size)),
        buffer_size: clamp_i32(u64::from(s.history_buffer_size)),
        read_batch_size: clamp_i32(u64::from(s.read_batch_size)),
        check_point_after_milliseconds: clamp_i32(s.checkpoint_after_ms),
        min_check_point_count: clamp_i32(u64::from(s.checkpoint_count_min)),
        max_check_point_count: clamp_i32(u64::from(s.checkpoint_count_max)),
        read_buffer_count: clamp_i32(i.outstanding as u64),
        live_buffer_count: 0,
        retry_buffer_count: clamp_i32(i.retry_waiting as u64),
        total_in_flight_messages: clamp_i32(i.in_flight as u64),
        outstanding_messages_count: clamp_i32(i.in_flight as u64),
        named_consumer_strategy: s.strategy.name().to_string(),
        max_subscriber_count: clamp_i32(u64::from(s.subscriber_count_max)),
        parked_message_count: i64::try_from(i.parked).unwrap_or(i64::MAX),
    }
}

#[tonic::async_trait]
impl Service for PersistentService {
    async fn create(&self, request: Request<CreateReq>) -> Result<Response<CreateResp>, Status> {
        self.access.check(&request, Operation::Write)?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("a create has options"))?;
        let definition = create_definition(options)?;
        self.groups
            .create(definition)
            .await
            .map_err(|e| status_of("Create", e))?;
        Ok(Response::new(CreateResp {}))
    }

    async fn update(&self, request: Request<UpdateReq>) -> Result<Response<UpdateResp>, Status> {
        self.access.check(&request, Operation::Write)?;
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("an update has options"))?;
        let definition = update_definition(options)?;
        self.groups
            .update(definition)
            .await
            .map_err(|e| status_of("Update", e))?;
        Ok(Response::new(UpdateResp {}))
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        self.access.check(&request, Operation::Write)?;
        let o = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("a delete has options"))?;
        let source = source_of!(delete_req::options::StreamOption, o.stream_option)?;
        self.groups
            .delete(&source, &o.group_name)
            .await
            .map_err(|e| status_of("Delete", e))?;
        Ok(Response::new(DeleteResp {}))
    }

    type ReadStream = ReceiverStream<Result<ReadResp, Status>>;

    async fn read(&self, request: Request<Streaming<ReadReq>>) -> Result<Response<Self::ReadStream>, Status> {
        self.access.check(&request, Operation::Read)?;
        crate::persistent_read::read(self.groups.clone(), request).await
    }

    async fn get_info(&self, request: Request<GetInfoReq>) -> Result<Response<GetInfoResp>, Status> {
        self.access.check(&request, Operation::Describe)?;
        let o = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("a request has options"))?;
        let source = source_of!(get_info_req::options::StreamOption, o.stream_option)?;
        let info = self
            .groups
            .info(&source, &o.group_name)
            .await
            .map_err(|e| status_of("GetInfo", e))?;
        Ok(Response::new(GetInfoResp {
            subscription_info: Some(info_of(info)),
        }))
    }

    async fn replay_parked(
        &self,
        request: Request<ReplayParkedReq>,
    ) -> Result<Response<ReplayParkedResp>, Status> {
        self.access.check(&request, Operation::Write)?;
        let o = request
            .into_inner()
            .options
            .ok_or_else(|| invalid("a request has options"))?;
        let source = source_of!(replay_parked_req::options::StreamOption, o.stream_option)?;
        let stop_at = match o.stop_at_option {
            Some(replay_parked_req::options::StopAtOption::StopAt(n)) => Some(u64::try_from(n).unwrap_or(0)),
            Some(replay_parked_req::options::StopAtOption::NoLimit(_)) | None => None,
        };
        self.groups
            .replay_parked(&source, &o.group_name, stop_at)
            .await
            .map_err(|e| status_of("ReplayParked", e))?;
        Ok(Response::new(ReplayParkedResp {}))
    }

    async fn list(&self, request: Request<ListReq>) -> Result<Response<ListResp>, Status> {
        self.access.check(&request, Operation::Describe)?;
        let o = request.into_inner().options.and_then(|o| o.list_option);
        let source = match o {
            Some(list_req::options::ListOption::ListForStream(s)) => match s.stream_option {
                Some(list_req::stream_option::StreamOption::Stream(id)) => Some(stream_name(Some(&id))?),
                Some(list_req::stream_option::StreamOption::All(_)) => Some("$all".to_string()),
                None => None,
            },
            Some(list_req::options::ListOption::ListAllSubscriptions(_)) | None => None,
        };
        let infos = self
            .groups
            .list(source.as_deref())
            .await
            .map_err(|e| status_of("List", e))?;
        Ok(Response::new(ListResp {
            subscriptions: infos.into_iter().map(info_of).collect(),
        }))
    }

    async fn restart_subsystem(&self, request: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.access.check(&request, Operation::Alter)?;
        self.groups
            .restart()
            .await
            .map_err(|e| status_of("RestartSubsystem", e))?;
        Ok(Response::new(Empty {}))
    }
}
