//! The coordinator's state machines, driven by a manual clock where time matters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

fn coordinator(dir: &std::path::Path) -> Arc<GroupCoordinator> {
    coordinator_with_clock(dir).0
}

fn coordinator_with_clock(dir: &std::path::Path) -> (Arc<GroupCoordinator>, Arc<ManualClock>) {
    let offsets =
        OffsetStore::open(&dir.join("offsets"), &rivulet_log::LogContext::default()).expect("offsets");
    let clock = Arc::new(ManualClock::default());
    let c = GroupCoordinator::with_clock(offsets, GroupLimits::default(), clock.clone());
    (Arc::new(c), clock)
}

fn join_req(member_id: &str, metadata: &'static [u8]) -> JoinRequest {
    JoinRequest {
        group_id: "g".to_string(),
        member_id: member_id.to_string(),
        group_instance_id: None,
        client_id: "client".to_string(),
        client_host: "127.0.0.1".to_string(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        protocol_type: "consumer".to_string(),
        protocols: vec![("range".to_string(), Bytes::from_static(metadata))],
        require_known_member_id: true,
    }
}

async fn join_new(c: &GroupCoordinator, metadata: &'static [u8]) -> String {
    let first = c.join(join_req("", metadata)).await;
    assert_eq!(first.error, Some(GroupError::MemberIdRequired));
    assert!(!first.member_id.is_empty());
    first.member_id
}

#[tokio::test]
async fn single_member_joins_syncs_and_heartbeats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path());
    let id = join_new(&c, b"meta-a").await;
    let joined = c.join(join_req(&id, b"meta-a")).await;
    assert_eq!(joined.error, None);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, id);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);
    assert_eq!(&joined.members[0].metadata[..], b"meta-a");

    let synced = c
        .sync("g", 1, &id, vec![(id.clone(), Bytes::from_static(b"assign-a"))])
        .await;
    assert_eq!(synced.error, None);
    assert_eq!(&synced.assignment[..], b"assign-a");
    assert_eq!(c.heartbeat("g", 1, &id), None);
    assert_eq!(c.heartbeat("g", 0, &id), Some(GroupError::IllegalGeneration));
    assert_eq!(c.heartbeat("g", 1, "nobody"), Some(GroupError::UnknownMemberId));
    assert_eq!(c.describe("g", &|_| 0).map(|d| d.state), Some(GroupState::Stable));
}

#[tokio::test]
async fn second_member_triggers_a_rebalance_and_every_member_gets_assignment_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path());
    let a = join_new(&c, b"meta-a").await;
    assert_eq!(c.join(join_req(&a, b"meta-a")).await.generation_id, 1);
    assert_eq!(c.sync("g", 1, &a, vec![]).await.error, None);

    let b = join_new(&c, b"meta-b").await;
    let c2 = c.clone();
    let b2 = b.clone();
    let b_join = tokio::spawn(async move { c2.join(join_req(&b2, b"meta-b")).await });
    // A learns about the rebalance from its heartbeat and rejoins.
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.heartbeat("g", 1, &a) != Some(GroupError::RebalanceInProgress) {
        assert!(Instant::now() < deadline, "rebalance never started");
        tokio::task::yield_now().await;
    }
    let a_joined = c.join(join_req(&a, b"meta-a")).await;
    let b_joined = b_join.await.expect("join task");
    assert_eq!(a_joined.generation_id, 2);
    assert_eq!(b_joined.generation_id, 2);
    assert_eq!(a_joined.leader, a, "the previous leader stays leader");
    assert_eq!(a_joined.members.len(), 2, "the leader sees every member");
    assert!(b_joined.members.is_empty(), "followers get no member list");

    // B waits for the leader's assignment; the leader leaves nothing for B explicitly.
    let c3 = c.clone();
    let b3 = b.clone();
    let b_sync = tokio::spawn(async move { c3.sync("g", 2, &b3, vec![]).await });
    tokio::task::yield_now().await;
    let a_sync = c
        .sync("g", 2, &a, vec![(a.clone(), Bytes::from_static(b"assign-a"))])
        .await;
    assert_eq!(&a_sync.assignment[..], b"assign-a");
    let b_sync = b_sync.await.expect("sync task");
    assert_eq!(b_sync.error, None);
    assert!(
        b_sync.assignment.is_empty(),
        "B still gets (empty) assignment bytes"
    );

    // A leaves: B must rejoin alone.
    assert_eq!(c.leave("g", std::slice::from_ref(&a)), vec![None]);
    assert_eq!(c.heartbeat("g", 2, &b), Some(GroupError::RebalanceInProgress));
    let b_alone = c.join(join_req(&b, b"meta-b")).await;
    assert_eq!(b_alone.generation_id, 3);
    assert_eq!(b_alone.leader, b);
}

#[tokio::test]
async fn standalone_commits_need_an_empty_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path());
    assert_eq!(c.validate_commit("g", -1, ""), None);
    assert_eq!(c.validate_commit("", -1, ""), Some(GroupError::InvalidGroupId));
    let id = join_new(&c, b"m").await;
    c.join(join_req(&id, b"m")).await;
    assert_eq!(c.validate_commit("g", -1, ""), Some(GroupError::UnknownMemberId));
    assert_eq!(
        c.validate_commit("g", 1, &id),
        Some(GroupError::RebalanceInProgress),
        "no commits between join and sync"
    );
    c.sync("g", 1, &id, vec![]).await;
    assert_eq!(c.validate_commit("g", 1, &id), None);
    assert_eq!(
        c.validate_commit("g", 7, &id),
        Some(GroupError::IllegalGeneration)
    );
}

/// A static member joins without the member-id round trip (KIP-345); its restart
/// replaces the old incarnation, which is fenced from then on.
#[tokio::test]
async fn a_restarted_static_member_replaces_its_old_incarnation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path());
    let static_req = |id: &str| JoinRequest {
        group_instance_id: Some("instance-1".to_string()),
        ..join_req(id, b"m")
    };
    let first = c.join(static_req("")).await;
    assert_eq!(first.error, None, "no MEMBER_ID_REQUIRED for a static member");
    assert_eq!(first.generation_id, 1);
    let old = first.member_id;
    c.sync("g", 1, &old, vec![]).await;
    let joined = c.join(static_req("")).await;
    assert_eq!(joined.error, None);
    assert_ne!(joined.member_id, old);
    assert_eq!(joined.leader, joined.member_id, "the old incarnation is gone");
    assert_eq!(joined.members.len(), 1);
    assert_eq!(
        c.check_static("g", &old, Some("instance-1")),
        Some(GroupError::FencedInstanceId)
    );
    assert_eq!(c.check_static("g", &joined.member_id, Some("instance-1")), None);
    assert_eq!(
        c.check_static("g", &old, None),
        None,
        "only static requests are checked"
    );
    assert_eq!(
        c.heartbeat("g", joined.generation_id, &old),
        Some(GroupError::UnknownMemberId)
    );
}

/// Joins a new member and completes its generation alone; returns its id.
async fn stable_member(c: &GroupCoordinator) -> String {
    let id = join_new(c, b"m").await;
    let joined = c.join(join_req(&id, b"m")).await;
    assert_eq!(joined.error, None);
    assert_eq!(c.sync("g", joined.generation_id, &id, vec![]).await.error, None);
    id
}

#[tokio::test]
async fn a_silent_member_expires_after_its_session_timeout_and_not_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, clock) = coordinator_with_clock(dir.path());
    let id = stable_member(&c).await;
    clock.advance(Duration::from_millis(9_999));
    c.tick();
    assert_eq!(
        c.heartbeat("g", 1, &id),
        None,
        "alive just inside the 10 s session"
    );
    clock.advance(Duration::from_millis(10_001));
    c.tick();
    assert_eq!(c.heartbeat("g", 1, &id), Some(GroupError::UnknownMemberId));
    assert_eq!(c.describe("g", &|_| 0).map(|d| d.members.len()), None);
}

#[tokio::test]
async fn a_group_whose_last_session_just_expired_can_be_deleted_before_the_next_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, clock) = coordinator_with_clock(dir.path());
    stable_member(&c).await;
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(c.delete("g").await, Some(GroupError::NonEmptyGroup));
    // One millisecond past the session: no periodic tick ran, yet the member is gone.
    clock.advance(Duration::from_millis(2));
    assert_eq!(c.list().first().map(|g| g.2), Some(GroupState::Empty));
    assert_eq!(c.delete("g").await, None);
    assert!(c.list().is_empty());
}

#[tokio::test]
async fn a_rebalance_drops_members_that_do_not_rejoin_within_the_rebalance_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, clock) = coordinator_with_clock(dir.path());
    let a = stable_member(&c).await;
    let b = join_new(&c, b"m").await;
    let c2 = c.clone();
    let b2 = b.clone();
    let b_join = tokio::spawn(async move { c2.join(join_req(&b2, b"m")).await });
    while c.heartbeat("g", 1, &a) != Some(GroupError::RebalanceInProgress) {
        tokio::task::yield_now().await;
    }
    // A keeps heartbeating but never rejoins; after the rebalance timeout B goes on alone.
    clock.advance(Duration::from_millis(5_000));
    c.tick();
    assert_eq!(c.heartbeat("g", 1, &a), Some(GroupError::RebalanceInProgress));
    clock.advance(Duration::from_millis(5_001));
    c.tick();
    let joined = b_join.await.expect("join task");
    assert_eq!(joined.error, None);
    assert_eq!(joined.leader, b);
    assert_eq!(joined.members.len(), 1, "A was dropped");
}

#[tokio::test]
async fn a_follower_waiting_for_an_absent_leader_is_told_to_rejoin_after_its_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, clock) = coordinator_with_clock(dir.path());
    let a = stable_member(&c).await;
    let b = join_new(&c, b"m").await;
    let c2 = c.clone();
    let b2 = b.clone();
    let b_join = tokio::spawn(async move { c2.join(join_req(&b2, b"m")).await });
    while c.heartbeat("g", 1, &a) != Some(GroupError::RebalanceInProgress) {
        tokio::task::yield_now().await;
    }
    assert_eq!(c.join(join_req(&a, b"m")).await.generation_id, 2);
    assert_eq!(b_join.await.expect("join").generation_id, 2);
    let c3 = c.clone();
    let follower = tokio::spawn(async move { c3.sync("g", 2, &b, vec![]).await });
    tokio::task::yield_now().await;
    c.tick();
    assert!(!follower.is_finished(), "still waiting for the leader");
    clock.advance(Duration::from_millis(10_001));
    c.tick();
    let synced = follower.await.expect("sync task");
    assert_eq!(synced.error, Some(GroupError::RebalanceInProgress));
}

#[tokio::test]
async fn broker_assigned_members_split_partitions_and_share_the_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path());
    let client = |name: &str| local::LocalClient {
        client_id: name.to_string(),
        client_host: "127.0.0.1".to_string(),
    };
    let topics = vec!["t".to_string()];
    let counts = |t: &str| if t == "t" { 4 } else { 0 };
    let (m1, mut gen1) = c.join_local("g", &topics, client("sse")).expect("join");
    assert_eq!(c.local_assignment("g", m1, &counts).len(), 4);
    gen1.borrow_and_update();
    let (m2, _) = c.join_local("g", &topics, client("sse")).expect("join");
    assert!(
        gen1.has_changed().expect("open"),
        "the first member hears of the second"
    );
    let a1 = c.local_assignment("g", m1, &counts);
    let a2 = c.local_assignment("g", m2, &counts);
    assert_eq!(a1, vec![("t".to_string(), 0), ("t".to_string(), 2)]);
    assert_eq!(a2, vec![("t".to_string(), 1), ("t".to_string(), 3)]);
    // A partition moves only once its holder lets go.
    assert!(c.claim_local("g", m1, "t", 1));
    assert!(!c.claim_local("g", m2, "t", 1));
    c.release_local("g", m1, "t", 1);
    assert!(c.claim_local("g", m2, "t", 1));
    // Listed, described with consumer-protocol assignments, not deletable while in use.
    assert_eq!(
        c.list(),
        vec![("g".to_string(), "consumer".to_string(), GroupState::Stable)]
    );
    let d = c.describe("g", &counts).expect("described");
    assert_eq!(d.members.len(), 2);
    assert_eq!(d.protocol_name, local::LOCAL_PROTOCOL);
    assert_eq!(
        &d.members[0].assignment[..],
        &protocol::assignment(&a1)[..],
        "tools decode the member's partitions"
    );
    assert_eq!(c.delete("g").await, Some(GroupError::NonEmptyGroup));
    // A Kafka consumer cannot join the same group.
    let refused = c.join(join_req("", b"m")).await;
    assert_eq!(refused.error, Some(GroupError::InconsistentGroupProtocol));
    c.leave_local("g", m1);
    c.leave_local("g", m2);
    assert!(c.describe("g", &counts).is_none(), "gone with its last member");
}

#[tokio::test]
async fn a_broker_assigned_member_cannot_join_a_kafka_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path());
    stable_member(&c).await;
    let client = local::LocalClient {
        client_id: "sse".to_string(),
        client_host: "127.0.0.1".to_string(),
    };
    let refused = c.join_local("g", &["t".to_string()], client);
    assert_eq!(refused.err(), Some(GroupError::InconsistentGroupProtocol));
}

/// OffsetDelete keeps the offsets of topics the members subscribe to and deletes the rest.
#[tokio::test]
async fn offsets_of_subscribed_topics_are_kept_and_others_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path());
    // Consumer-protocol subscription bytes for topic "t" (version 0, one topic, no data).
    const SUBSCRIBED_TO_T: &[u8] = &[0, 0, 0, 0, 0, 1, 0, 1, b't', 0xff, 0xff, 0xff, 0xff];
    let id = join_new(&c, SUBSCRIBED_TO_T).await;
    let joined = c.join(join_req(&id, SUBSCRIBED_TO_T)).await;
    assert_eq!(joined.error, None);
    let committed = CommittedOffset {
        offset: 5,
        leader_epoch: -1,
        metadata: None,
        commit_timestamp_ms: 0,
    };
    c.commit(
        "g",
        vec![
            ("t".to_string(), 0, committed.clone()),
            ("other".to_string(), 0, committed),
        ],
    )
    .await
    .expect("commit");
    let partitions = [("t".to_string(), 0), ("other".to_string(), 0)];
    let kept = c.delete_offsets("g", &partitions).await.expect("delete");
    assert_eq!(kept.into_iter().collect::<Vec<_>>(), vec!["t".to_string()]);
    let left: Vec<String> = c.offsets().group_offsets("g").into_iter().map(|o| o.0).collect();
    assert_eq!(left, vec!["t".to_string()]);
    assert_eq!(
        c.delete_offsets("nobody", &partitions).await.err(),
        Some(GroupError::GroupIdNotFound)
    );
}
