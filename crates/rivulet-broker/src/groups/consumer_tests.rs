//! Consumer groups (KIP-848) through the coordinator: joins, incremental reconciliation,
//! fencing, leaves, expiry and offset commits, on a manual clock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::assignor::Assignment;
use super::*;

const PARTITIONS: usize = 4;

fn coordinator() -> (tempfile::TempDir, Arc<GroupCoordinator>, Arc<ManualClock>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let offsets =
        OffsetStore::open(&dir.path().join("offsets"), &rivulet_log::LogContext::default()).expect("offsets");
    let clock = Arc::new(ManualClock::default());
    let c = GroupCoordinator::with_clock(offsets, GroupLimits::default(), clock.clone());
    (dir, Arc::new(c), clock)
}

fn parts(list: &[i32]) -> Assignment {
    let mut a = BTreeMap::new();
    if !list.is_empty() {
        a.insert("t".to_string(), list.iter().copied().collect::<BTreeSet<i32>>());
    }
    a
}

fn beat(c: &GroupCoordinator, member: &str, epoch: i32, owned: Option<&[i32]>) -> HeartbeatOutcome {
    let req = ConsumerHeartbeat {
        group_id: "g".to_string(),
        member_id: member.to_string(),
        member_epoch: epoch,
        rebalance_timeout_ms: 30_000,
        subscribed_topics: (epoch == 0).then(|| vec!["t".to_string()]),
        owned: owned.map(parts),
        client_id: "client".to_string(),
        client_host: "127.0.0.1".to_string(),
        ..ConsumerHeartbeat::default()
    };
    c.consumer_heartbeat(&req, &|t| if t == "t" { PARTITIONS } else { 0 }, &Vec::new)
}

fn owned_by(outcome: &HeartbeatOutcome) -> Vec<i32> {
    let a = outcome.assignment.as_ref().expect("an assignment");
    a.get("t")
        .map(|ps| ps.iter().copied().collect())
        .unwrap_or_default()
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_gave_them_up() {
    let (_dir, c, _clock) = coordinator();
    let a = beat(&c, "a", 0, None);
    assert_eq!(
        (a.error, a.member_epoch, owned_by(&a)),
        (None, 1, vec![0, 1, 2, 3])
    );
    assert_eq!(a.heartbeat_interval_ms, 5_000);

    // B joins: epoch 2 at once, but nothing yet: A still holds everything.
    let b = beat(&c, "b", 0, None);
    assert_eq!((b.error, b.member_epoch), (None, 2));
    assert!(owned_by(&b).is_empty());

    // A is told to give up two partitions and stays at epoch 1 until it has.
    let a = beat(&c, "a", 1, Some(&[0, 1, 2, 3]));
    assert_eq!(a.member_epoch, 1);
    let kept = owned_by(&a);
    assert_eq!(kept.len(), 2);
    let still = beat(&c, "a", 1, None);
    assert_eq!(still.member_epoch, 1, "no acknowledgement yet");
    let b = beat(&c, "b", 2, Some(&[]));
    assert!(
        b.assignment.is_none(),
        "B waits while A still owns its partitions"
    );

    // A acknowledges: epoch 2; B then gets the two released partitions.
    let a = beat(&c, "a", 1, Some(&kept));
    assert_eq!(a.member_epoch, 2);
    let b = beat(&c, "b", 2, Some(&[]));
    let given = owned_by(&b);
    assert_eq!(given.len(), 2);
    assert!(given.iter().all(|p| !kept.contains(p)), "{given:?} vs {kept:?}");
    let described = c.describe_consumer_group("g").expect("group");
    assert_eq!(described.state, GroupState::Stable);
    assert_eq!((described.epoch, described.assignment_epoch), (2, 2));
}

#[test]
fn a_wrong_epoch_is_fenced_and_an_unknown_member_is_refused() {
    let (_dir, c, _clock) = coordinator();
    let a = beat(&c, "a", 0, None);
    assert_eq!(a.member_epoch, 1);
    assert_eq!(beat(&c, "a", 7, None).error, Some(GroupError::FencedMemberEpoch));
    assert_eq!(
        beat(&c, "nobody", 1, None).error,
        Some(GroupError::UnknownMemberId)
    );
    // Rejoining with epoch 0 starts the member over.
    let again = beat(&c, "a", 0, None);
    assert_eq!((again.error, owned_by(&again)), (None, vec![0, 1, 2, 3]));
    assert!(again.member_epoch > 1);
}

#[tokio::test]
async fn a_leaving_members_partitions_go_to_the_others_and_commits_follow_epochs() {
    let (_dir, c, _clock) = coordinator();
    beat(&c, "a", 0, None);
    beat(&c, "b", 0, None);
    let a = beat(&c, "a", 1, Some(&[0, 1, 2, 3]));
    let kept = owned_by(&a);
    let a = beat(&c, "a", 1, Some(&kept));
    assert_eq!(a.member_epoch, 2);
    assert_eq!(c.validate_commit("g", 2, "a"), None);
    assert_eq!(c.validate_commit("g", 1, "a"), Some(GroupError::StaleMemberEpoch));
    assert_eq!(c.validate_commit("g", 2, "zz"), Some(GroupError::UnknownMemberId));
    assert_eq!(c.delete("g").await, Some(GroupError::NonEmptyGroup));

    let left = beat(&c, "a", -1, None);
    assert_eq!((left.error, left.member_epoch), (None, -1));
    let b = beat(&c, "b", 2, Some(&[]));
    assert_eq!(b.member_epoch, 3);
    assert_eq!(owned_by(&b), vec![0, 1, 2, 3]);
}

#[test]
fn a_silent_member_expires_and_a_stuck_revocation_is_cut_short() {
    let (_dir, c, clock) = coordinator();
    beat(&c, "a", 0, None);
    beat(&c, "b", 0, None);
    // A is asked to revoke and never acknowledges; it keeps heartbeating without owned.
    beat(&c, "a", 1, Some(&[0, 1, 2, 3]));
    clock.advance(Duration::from_millis(29_000));
    beat(&c, "a", 1, None);
    beat(&c, "b", 2, None);
    c.tick();
    assert_eq!(c.describe_consumer_group("g").map(|g| g.members.len()), Some(2));
    clock.advance(Duration::from_millis(2_000));
    c.tick();
    let g = c.describe_consumer_group("g").expect("group");
    assert_eq!(g.members.len(), 1, "A overran its 30 s rebalance timeout");
    // B alone then goes silent past the 45 s session: the group is gone.
    let b = beat(&c, "b", 2, None);
    assert_eq!(owned_by(&b), vec![0, 1, 2, 3]);
    clock.advance(Duration::from_millis(45_001));
    c.tick();
    assert!(c.describe_consumer_group("g").is_none());
}

#[test]
fn kinds_do_not_mix_in_one_group() {
    let (_dir, c, _clock) = coordinator();
    beat(&c, "a", 0, None);
    let refused = c.join_local(
        "g",
        &["t".to_string()],
        local::LocalClient {
            client_id: "sse".to_string(),
            client_host: "127.0.0.1".to_string(),
        },
    );
    assert_eq!(refused.err(), Some(GroupError::InconsistentGroupProtocol));
    let listed = c.list();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].0.as_str(), listed[0].2), ("g", GroupState::Stable));
}

#[test]
fn a_pattern_subscribes_to_matching_topics_as_they_appear() {
    let (_dir, c, _clock) = coordinator();
    let topics = std::sync::Mutex::new(vec![
        "orders-eu".to_string(),
        "orders-us".to_string(),
        "audit".to_string(),
    ]);
    let beat_with = |epoch: i32, regex: Option<&str>| {
        let req = ConsumerHeartbeat {
            group_id: "g".to_string(),
            member_id: "a".to_string(),
            member_epoch: epoch,
            rebalance_timeout_ms: 30_000,
            subscribed_regex: regex.map(str::to_string),
            ..ConsumerHeartbeat::default()
        };
        let list = || topics.lock().expect("lock").clone();
        c.consumer_heartbeat(&req, &|_| 2, &list)
    };
    let joined = beat_with(0, Some("orders-.*"));
    let got = joined.assignment.expect("assignment");
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        vec!["orders-eu", "orders-us"]
    );
    topics.lock().expect("lock").push("orders-asia".to_string());
    let grown = beat_with(joined.member_epoch, None);
    assert!(grown.member_epoch > joined.member_epoch);
    assert_eq!(
        grown.assignment.expect("assignment").len(),
        3,
        "the new topic matched"
    );
    let bad = beat_with(0, Some("orders-("));
    assert_eq!(bad.error, Some(GroupError::InvalidRegularExpression));
    let partial = beat_with(grown.member_epoch, Some("orders"));
    assert_eq!(partial.error, None);
    assert_eq!(
        partial.assignment,
        Some(Assignment::new()),
        "a pattern matches whole names only"
    );
}

#[test]
fn a_restarted_static_member_takes_its_partitions_back_without_a_rebalance() {
    let (_dir, c, clock) = coordinator();
    let beat_static = |member: &str, epoch: i32, owned: Option<&[i32]>| {
        let req = ConsumerHeartbeat {
            group_id: "g".to_string(),
            member_id: member.to_string(),
            member_epoch: epoch,
            instance_id: Some("worker-1".to_string()),
            rebalance_timeout_ms: 30_000,
            subscribed_topics: (epoch == 0).then(|| vec!["t".to_string()]),
            owned: owned.map(parts),
            ..ConsumerHeartbeat::default()
        };
        c.consumer_heartbeat(&req, &|_| PARTITIONS, &Vec::new)
    };
    beat_static("s1", 0, None);
    beat(&c, "b", 0, None);
    let s1 = beat_static("s1", 1, Some(&[0, 1, 2, 3]));
    let kept = owned_by(&s1);
    let s1 = beat_static("s1", 1, Some(&kept));
    let b = beat(&c, "b", 2, Some(&[]));
    let b_parts = owned_by(&b);
    let epoch = c.describe_consumer_group("g").expect("group").epoch;
    // The static member leaves for a restart: its partitions stay its own meanwhile.
    let left = beat_static("s1", -2, None);
    assert_eq!((left.error, left.member_epoch), (None, -2));
    let b = beat(&c, "b", 2, Some(&b_parts));
    assert!(b.assignment.is_none(), "nothing moved to b");
    // While it is departed, a restart with the same instance id takes over.
    let back = beat_static("s1-restarted", 0, None);
    assert_eq!(back.error, None);
    assert_eq!(
        (back.member_epoch, owned_by(&back)),
        (s1.member_epoch, kept.clone())
    );
    assert_eq!(
        c.describe_consumer_group("g").expect("group").epoch,
        epoch,
        "no new group epoch"
    );
    // A second live claim on the instance id is refused.
    let clash = beat_static("s1-again", 0, None);
    assert_eq!(clash.error, Some(GroupError::UnreleasedInstanceId));
    // Departed and never back: its partitions go to the others after the session timeout.
    beat_static("s1-restarted", -2, None);
    clock.advance(Duration::from_millis(45_001));
    beat(&c, "b", 2, Some(&b_parts));
    c.tick();
    assert_eq!(c.describe_consumer_group("g").expect("group").members.len(), 1);
}
