//! Share groups (KIP-932) through the coordinator: membership, acquiring and settling
//! records, departures, lock expiry and the stored start offset.

use std::sync::Arc;
use std::time::Duration;

use super::share_api::LogBounds;
use super::*;
use crate::settle::{AcquiredRange, Settle};

fn coordinator(dir: &std::path::Path, earliest: bool) -> (Arc<GroupCoordinator>, Arc<ManualClock>) {
    let ctx = rivulet_log::LogContext::default();
    let offsets = OffsetStore::open(&dir.join("offsets"), &ctx).expect("offsets");
    let state = OffsetStore::open_named(&dir.join("share"), &ctx, "share-test").expect("share state");
    let clock = Arc::new(ManualClock::default());
    let limits = GroupLimits {
        share_start_at_earliest: earliest,
        share_delivery_count_limit: 2,
        ..GroupLimits::default()
    };
    let c = GroupCoordinator::with_clock(offsets, limits, clock.clone()).with_share_state(state);
    (Arc::new(c), clock)
}

fn join(c: &GroupCoordinator, member: &str) -> HeartbeatOutcome {
    let req = ShareHeartbeat {
        group_id: "q".to_string(),
        member_id: member.to_string(),
        member_epoch: 0,
        subscribed_topics: Some(vec!["t".to_string()]),
        ..ShareHeartbeat::default()
    };
    c.share_heartbeat(&req, &|t| if t == "t" { 2 } else { 0 })
}

fn acquire(c: &GroupCoordinator, member: &str, max: usize) -> Vec<AcquiredRange> {
    let bounds = LogBounds {
        log_start: 0,
        available_end: 10,
    };
    c.share_acquire("q", member, ("t", 0), bounds, max)
        .expect("acquire")
        .0
}

#[tokio::test]
async fn members_share_every_partition_and_each_record_goes_to_one_of_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, _clock) = coordinator(dir.path(), true);
    let a = join(&c, "a");
    let b = join(&c, "b");
    for joined in [&a, &b] {
        let parts = joined.assignment.as_ref().expect("assignment");
        assert_eq!(parts["t"].len(), 2, "every member gets every partition");
    }
    assert_eq!(b.member_epoch, 2);
    let described = c.describe("q", &|_| 2).expect("described");
    assert_eq!(
        (described.protocol_type.as_str(), described.members.len()),
        ("share", 2)
    );
    assert_eq!(
        super::protocol::subscribed_topics(&described.members[0].metadata),
        Some(vec!["t".to_string()])
    );
    assert!(
        !described.members[0].assignment.is_empty(),
        "partitions in consumer-protocol bytes"
    );
    let got_a = acquire(&c, "a", 4);
    let got_b = acquire(&c, "b", 4);
    assert_eq!((got_a[0].first, got_a[0].last), (0, 3));
    assert_eq!((got_b[0].first, got_b[0].last), (4, 7));
    let settled = c
        .share_settle("q", "b", ("t", 0), &[(4, 7, Settle::Accept)])
        .expect("settle b");
    assert!(settled.is_none(), "0..3 still held: the start stays");
    assert_eq!(
        c.share_settle("q", "b", ("t", 0), &[(0, 0, Settle::Accept)])
            .err(),
        Some(GroupError::InvalidRecordState)
    );
    let durable = c
        .share_settle("q", "a", ("t", 0), &[(0, 3, Settle::Accept)])
        .expect("settle a")
        .expect("the start moved to 8");
    durable.wait().await.expect("stored");
    assert_eq!(
        c.share_state()
            .and_then(|s| s.fetch("q", "t", 0))
            .map(|o| o.offset),
        Some(8)
    );
    // A different kind of member cannot use the group meanwhile.
    let refused = c.consumer_heartbeat(
        &ConsumerHeartbeat {
            group_id: "q".to_string(),
            member_id: "x".to_string(),
            subscribed_topics: Some(vec!["t".to_string()]),
            ..ConsumerHeartbeat::default()
        },
        &|_| 2,
        &Vec::new,
    );
    assert_eq!(refused.error, Some(GroupError::GroupIdNotFound));
}

#[tokio::test]
async fn a_leaving_members_records_go_to_the_others_and_locks_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, clock) = coordinator(dir.path(), true);
    join(&c, "a");
    join(&c, "b");
    acquire(&c, "a", 3);
    let leave = ShareHeartbeat {
        group_id: "q".to_string(),
        member_id: "a".to_string(),
        member_epoch: -1,
        ..ShareHeartbeat::default()
    };
    let left = c.share_heartbeat(&leave, &|_| 2);
    assert_eq!((left.error, left.member_epoch), (None, -1));
    assert_eq!(
        acquire(&c, "b", 3),
        vec![AcquiredRange {
            first: 0,
            last: 2,
            delivery_count: 2
        }],
        "a's records come back to b, delivered a second time"
    );
    // B's lock runs out; with a delivery limit of 2 the records are archived.
    clock.advance(Duration::from_millis(30_001));
    c.tick();
    assert_eq!(
        acquire(&c, "b", 3),
        vec![AcquiredRange {
            first: 3,
            last: 5,
            delivery_count: 1
        }]
    );
    let bounds = LogBounds {
        log_start: 0,
        available_end: 10,
    };
    let unknown = c.share_acquire("q", "nobody", ("t", 0), bounds, 1);
    assert_eq!(unknown.err(), Some(GroupError::UnknownMemberId));
}

#[tokio::test]
async fn a_new_group_starts_at_the_end_and_a_restart_resumes_at_the_stored_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (c, _clock) = coordinator(dir.path(), false);
        join(&c, "a");
        let bounds = LogBounds {
            log_start: 0,
            available_end: 10,
        };
        let (got, stored) = c.share_acquire("q", "a", ("t", 0), bounds, 5).expect("acquire");
        assert!(got.is_empty(), "latest: nothing before the end is offered");
        stored
            .expect("the start is stored")
            .wait()
            .await
            .expect("durable");
        let later = LogBounds {
            log_start: 0,
            available_end: 13,
        };
        let (got, _) = c.share_acquire("q", "a", ("t", 0), later, 5).expect("acquire");
        assert_eq!((got[0].first, got[0].last), (10, 12));
        let moved = c
            .share_settle("q", "a", ("t", 0), &[(10, 11, Settle::Accept)])
            .expect("settle")
            .expect("moved");
        moved.wait().await.expect("durable");
        c.share_state().expect("store").close().expect("close");
        c.offsets().close().expect("close");
    }
    let (c, _clock) = coordinator(dir.path(), false);
    join(&c, "b");
    let bounds = LogBounds {
        log_start: 0,
        available_end: 13,
    };
    let (got, _) = c.share_acquire("q", "b", ("t", 0), bounds, 5).expect("acquire");
    assert_eq!(
        got,
        vec![AcquiredRange {
            first: 12,
            last: 12,
            delivery_count: 1
        }],
        "offset 12 was never accepted"
    );
}
