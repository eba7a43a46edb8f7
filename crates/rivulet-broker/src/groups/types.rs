//! What group requests and answers look like, independent of any wire protocol.

use bytes::Bytes;

use super::assignor::Assignment;

/// Why a group request was refused. The front end maps these to wire error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The member id is not part of the group.
    #[error("unknown member id")]
    UnknownMemberId,
    /// The generation does not match the group's current generation.
    #[error("illegal generation")]
    IllegalGeneration,
    /// The group is rebalancing; the member must rejoin.
    #[error("rebalance in progress")]
    RebalanceInProgress,
    /// The member's protocol type or protocols do not fit the group's.
    #[error("inconsistent group protocol")]
    InconsistentGroupProtocol,
    /// First join without a member id: retry with the returned id.
    #[error("member id required")]
    MemberIdRequired,
    /// The session timeout is outside the accepted range.
    #[error("invalid session timeout")]
    InvalidSessionTimeout,
    /// The group does not exist.
    #[error("group id not found")]
    GroupIdNotFound,
    /// The group still has members.
    #[error("group is not empty")]
    NonEmptyGroup,
    /// The group id is empty.
    #[error("invalid group id")]
    InvalidGroupId,
    /// The group already has the maximum number of members, or too many groups exist.
    #[error("group max size reached")]
    GroupMaxSizeReached,
    /// Storing offsets failed.
    #[error("coordinator storage failed")]
    StorageFailed,
    /// Another member with the same `group.instance.id` replaced this one (a static
    /// member's zombie): fatal for the client.
    #[error("fenced by a newer member with the same group instance id")]
    FencedInstanceId,
    /// A consumer group member's epoch is not its current one (KIP-848): it must rejoin
    /// with epoch 0.
    #[error("fenced member epoch: rejoin the group")]
    FencedMemberEpoch,
    /// An offset commit carried an epoch other than the member's current one.
    #[error("stale member epoch")]
    StaleMemberEpoch,
    /// Another member of the consumer group holds this static instance id.
    #[error("the group instance id is held by another member")]
    UnreleasedInstanceId,
    /// The request lacks something this step needs (a joining member's subscription).
    #[error("invalid request")]
    InvalidRequest,
    /// A subscription pattern does not compile.
    #[error("invalid regular expression")]
    InvalidRegularExpression,
    /// A share group member settled records it does not hold (their lock expired, they were
    /// settled already, or never handed to it).
    #[error("invalid record state")]
    InvalidRecordState,
}

/// State of a group, named as Kafka names it in DescribeGroups/ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// A consumer group (KIP-848) whose target assignment is being computed.
    Assigning,
    /// A consumer group whose members are moving to their target assignment.
    Reconciling,
}

impl GroupState {
    /// Kafka's name for the state.
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Assigning => "Assigning",
            GroupState::Reconciling => "Reconciling",
        }
    }
}

/// Limits of the coordinator.
#[derive(Debug, Clone)]
pub struct GroupLimits {
    /// Groups kept in memory at once.
    pub groups_max: usize,
    /// Members per group.
    pub members_per_group_max: usize,
    /// Smallest session timeout accepted.
    pub session_timeout_ms_min: i32,
    /// Largest session timeout accepted.
    pub session_timeout_ms_max: i32,
    /// How long the first rebalance of an empty group waits for more members
    /// (Kafka's `group.initial.rebalance.delay.ms`; `rivulet serve` uses Kafka's 3 s). Each
    /// member joining meanwhile extends it, within the rebalance timeout.
    pub initial_rebalance_delay_ms: u64,
    /// How often consumer group (KIP-848) members heartbeat (Kafka's
    /// `group.consumer.heartbeat.interval.ms`, 5 s).
    pub consumer_heartbeat_interval_ms: u64,
    /// A consumer group member silent this long is removed (Kafka's
    /// `group.consumer.session.timeout.ms`, 45 s).
    pub consumer_session_timeout_ms: u64,
    /// How often share group members heartbeat (Kafka's
    /// `group.share.heartbeat.interval.ms`, 5 s).
    pub share_heartbeat_interval_ms: u64,
    /// A share group member silent this long is removed and its records released (Kafka's
    /// `group.share.session.timeout.ms`, 45 s).
    pub share_session_timeout_ms: u64,
    /// How long a share group member holds a record it acquired (Kafka's
    /// `group.share.record.lock.duration.ms`, 30 s).
    pub share_record_lock_ms: u64,
    /// Deliveries after which a record is archived (Kafka's
    /// `group.share.delivery.count.limit`, 5).
    pub share_delivery_count_limit: u16,
    /// Offsets of a partition tracked one by one per share group (Kafka's
    /// `group.share.partition.max.record.locks`, 2000).
    pub share_partition_records_max: usize,
    /// Where a share group starts reading a partition it never read: `true` at the log
    /// start, `false` at its end (Kafka's `share.auto.offset.reset`, `latest`).
    pub share_start_at_earliest: bool,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            groups_max: 10_000,
            members_per_group_max: 1_000,
            session_timeout_ms_min: 1_000,
            session_timeout_ms_max: 1_800_000,
            initial_rebalance_delay_ms: 0,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_session_timeout_ms: 45_000,
            share_heartbeat_interval_ms: 5_000,
            share_session_timeout_ms: 45_000,
            share_record_lock_ms: 30_000,
            share_delivery_count_limit: 5,
            share_partition_records_max: 2_000,
            share_start_at_earliest: false,
        }
    }
}

/// A JoinGroup request.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Group id.
    pub group_id: String,
    /// Member id, empty on first join.
    pub member_id: String,
    /// Static membership id (treated like a dynamic member).
    pub group_instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type, e.g. `consumer`.
    pub protocol_type: String,
    /// Supported protocols (assignors) with their opaque metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a first join without member id gets [`GroupError::MemberIdRequired`].
    pub require_known_member_id: bool,
}

/// A member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    /// Error, if any.
    pub error: Option<GroupError>,
    /// Generation, -1 on error.
    pub generation_id: i32,
    /// Chosen protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// All members (only for the leader).
    pub members: Vec<JoinedMember>,
}

impl JoinOutcome {
    pub(crate) fn error(error: GroupError, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error: Some(error),
            generation_id: -1,
            member_id: member_id.to_string(),
            ..JoinOutcome::default()
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    /// Error, if any.
    pub error: Option<GroupError>,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Protocol name.
    pub protocol_name: Option<String>,
    /// This member's assignment bytes (empty when the leader assigned nothing).
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub(crate) fn error(error: GroupError) -> SyncOutcome {
        SyncOutcome {
            error: Some(error),
            ..SyncOutcome::default()
        }
    }
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Metadata for the chosen protocol.
    pub metadata: Bytes,
    /// Current assignment.
    pub assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// State.
    pub state: GroupState,
    /// Protocol type (empty when none).
    pub protocol_type: String,
    /// Chosen protocol (empty when none).
    pub protocol_name: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// The answer to a consumer-protocol or share group heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    /// Why the heartbeat was refused.
    pub error: Option<GroupError>,
    /// The member id.
    pub member_id: String,
    /// The member's epoch after this heartbeat.
    pub member_epoch: i32,
    /// How often the member should heartbeat.
    pub heartbeat_interval_ms: i32,
    /// The member's full assignment when it changed; `None` when unchanged.
    pub assignment: Option<Assignment>,
}

impl HeartbeatOutcome {
    /// A heartbeat of `member_id` at `member_epoch` answered with `error`.
    pub fn refused(error: GroupError, member_id: &str, member_epoch: i32) -> HeartbeatOutcome {
        HeartbeatOutcome {
            error: Some(error),
            member_id: member_id.to_string(),
            member_epoch,
            heartbeat_interval_ms: 0,
            assignment: None,
        }
    }

    /// A member's leave (epoch -1 or -2), accepted.
    pub fn left(member_id: &str, member_epoch: i32) -> HeartbeatOutcome {
        HeartbeatOutcome {
            error: None,
            ..HeartbeatOutcome::refused(GroupError::UnknownMemberId, member_id, member_epoch)
        }
    }
}
