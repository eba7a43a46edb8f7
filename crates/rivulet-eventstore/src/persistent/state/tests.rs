use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::model::ContentType;

fn event(id: u128, stream: &str) -> Arc<RecordedEvent> {
    Arc::new(RecordedEvent {
        stream: stream.into(),
        revision: 0,
        position: 0,
        id,
        event_type: "T".into(),
        content_type: ContentType::Json,
        data: Vec::new(),
        metadata: Vec::new(),
        created_ms: 0,
    })
}

fn rules(strategy: ConsumerStrategy, max_retry_count: u32) -> Rules {
    Rules {
        strategy,
        max_retry_count,
        message_timeout: Some(Duration::from_secs(30)),
    }
}

#[test]
fn round_robin_shares_and_the_checkpoint_waits_for_the_oldest() {
    let mut g = GroupState::new(rules(ConsumerStrategy::RoundRobin, 10), 0);
    for seq in 0..6 {
        g.offer(event(u128::from(seq), "s"), seq);
    }
    g.next_read = 6;
    g.join(1, 10);
    g.join(2, 10);
    let now = Instant::now();
    let out = g.dispatch(now);
    let to = |c: u64| out.iter().filter(|(x, _)| *x == c).count();
    assert_eq!((to(1), to(2)), (3, 3));
    assert_eq!(g.checkpoint(), 0);
    assert_eq!(g.ack(1, &[1, 2, 3]), 3);
    assert_eq!(g.checkpoint(), 0, "event 0 is still unfinished");
    assert_eq!(g.ack(2, &[0]), 1);
    assert_eq!(g.checkpoint(), 4);
    g.ack(2, &[4, 5]);
    assert_eq!(g.checkpoint(), 6);
    g.check();
}

#[test]
fn retries_count_up_then_park() {
    let mut g = GroupState::new(rules(ConsumerStrategy::DispatchToSingle, 2), 0);
    g.offer(event(7, "s"), 0);
    g.join(1, 1);
    let now = Instant::now();
    for attempt in 0..3 {
        let out = g.dispatch(now);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.retry_count, attempt);
        g.nack(1, &[7], NackAction::Retry);
        g.check();
    }
    assert!(g.dispatch(now).is_empty());
    let parked = g.take_to_park();
    assert_eq!(parked.len(), 1);
    assert_eq!(g.checkpoint(), 0, "not finished until the parked stream has it");
    g.parked(parked[0].0);
    assert_eq!(g.outstanding(), 0);
    assert_eq!(g.checkpoint(), g.next_read);
}

#[test]
fn timeouts_and_leaving_consumers_give_events_to_others() {
    let mut g = GroupState::new(rules(ConsumerStrategy::DispatchToSingle, 10), 0);
    g.offer(event(1, "s"), 0);
    g.offer(event(2, "s"), 1);
    g.join(1, 1);
    g.join(2, 1);
    let now = Instant::now();
    let first = g.dispatch(now);
    assert_eq!(first.len(), 2);
    g.leave(1);
    let again = g.dispatch(now);
    assert_eq!(again.len(), 0, "consumer 2 is full");
    g.ack(2, &[2]);
    let again = g.dispatch(now);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.event.id, 1);
    assert_eq!(g.expire(now + Duration::from_secs(31)), 1);
    let retried = g.dispatch(now + Duration::from_secs(31));
    assert_eq!(retried[0].1.retry_count, 1);
    g.check();
}

#[test]
fn an_ack_sent_before_leaving_still_counts() {
    let mut g = GroupState::new(rules(ConsumerStrategy::RoundRobin, 10), 0);
    g.offer(event(1, "s"), 0);
    g.offer(event(2, "s"), 1);
    g.next_read = 2;
    g.join(1, 10);
    assert_eq!(g.dispatch(Instant::now()).len(), 2);
    // The consumer's channel closed before its acknowledgements were read.
    g.leave(1);
    assert_eq!(g.ack(1, &[1, 2]), 2);
    assert_eq!((g.outstanding(), g.checkpoint()), (0, 2));
    g.check();
}

#[test]
fn pinned_keeps_a_stream_on_one_consumer() {
    let mut g = GroupState::new(rules(ConsumerStrategy::Pinned, 10), 0);
    for seq in 0..40 {
        g.offer(event(u128::from(seq), &format!("s-{}", seq % 4)), seq);
    }
    g.join(1, 100);
    g.join(2, 100);
    g.join(3, 100);
    let out = g.dispatch(Instant::now());
    assert_eq!(out.len(), 40);
    let mut owner = std::collections::HashMap::new();
    for (c, d) in &out {
        let prev = owner.insert(d.event.stream.clone(), *c);
        assert!(prev.is_none_or(|p| p == *c), "stream {} moved", d.event.stream);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Offer,
    Join(u64, u32),
    Leave(u64),
    Dispatch,
    Ack(u8),
    AckAny(u8),
    Nack(u8, u8),
    Expire,
    Park(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Offer),
        1 => (0u64..4, 1u32..4).prop_map(|(c, s)| Op::Join(c, s)),
        1 => (0u64..4).prop_map(Op::Leave),
        3 => Just(Op::Dispatch),
        3 => any::<u8>().prop_map(Op::Ack),
        1 => any::<u8>().prop_map(Op::AckAny),
        2 => (any::<u8>(), 0u8..4).prop_map(|(i, a)| Op::Nack(i, a)),
        1 => Just(Op::Expire),
        1 => any::<bool>().prop_map(Op::Park),
    ]
}

proptest! {
    /// Whatever consumers do, every event is finished at most once, the checkpoint never
    /// passes an unfinished event, and once everyone acknowledges everything, every event
    /// was finished exactly once.
    #[test]
    fn no_event_lost_or_finished_twice(ops in proptest::collection::vec(op(), 1..200)) {
        let mut g = GroupState::new(rules(ConsumerStrategy::RoundRobin, 2), 0);
        let mut now = Instant::now();
        let mut offered = 0u64;
        let mut held: Vec<(u64, u128)> = Vec::new();
        let mut finished: BTreeSet<u128> = BTreeSet::new();
        let mut last_checkpoint = 0;
        for op in ops {
            match op {
                Op::Offer => {
                    g.offer(event(u128::from(offered), "s"), offered);
                    offered += 1;
                    g.next_read = offered;
                }
                Op::Join(c, s) => if !g.consumers().contains_key(&c) { g.join(c, s) },
                Op::Leave(c) => { g.leave(c); held.retain(|(h, _)| *h != c); }
                Op::Dispatch => held.extend(g.dispatch(now).into_iter().map(|(c, d)| (c, d.event.id))),
                Op::Ack(i) => if let Some(&(h, id)) = held.get(i as usize % held.len().max(1)) {
                    if g.ack(h, &[id]) == 1 { prop_assert!(finished.insert(id)); }
                    held.retain(|(_, x)| *x != id);
                },
                Op::AckAny(i) => if offered > 0 {
                    let id = u128::from(u64::from(i) % offered);
                    if g.ack(0, &[id]) == 1 { prop_assert!(finished.insert(id)); }
                    held.retain(|(_, x)| *x != id);
                },
                Op::Nack(i, a) => if let Some(&(h, id)) = held.get(i as usize % held.len().max(1)) {
                    let action = [NackAction::Park, NackAction::Retry, NackAction::Skip, NackAction::Stop][a as usize];
                    if g.nack(h, &[id], action) == 1 && action == NackAction::Skip { prop_assert!(finished.insert(id)); }
                    held.retain(|(_, x)| *x != id);
                },
                Op::Expire => { now += Duration::from_secs(31); g.expire(now); held.clear(); }
                Op::Park(ok) => for (t, e) in g.take_to_park() {
                    if ok { g.parked(t); prop_assert!(finished.insert(e.id)); } else { g.park_failed(t); }
                },
            }
            g.check();
            let cp = g.checkpoint();
            prop_assert!(cp >= last_checkpoint, "the checkpoint only moves forwards");
            for seq in 0..cp {
                prop_assert!(finished.contains(&u128::from(seq)), "checkpoint {cp} passed unfinished {seq}");
            }
            last_checkpoint = cp;
        }
        // Drain: one consumer acknowledges everything, parking what must be parked.
        g.join(99, 1000);
        for _ in 0..100 {
            for (t, e) in g.take_to_park() { g.parked(t); prop_assert!(finished.insert(e.id)); }
            let out = g.dispatch(now);
            if out.is_empty() && g.outstanding() == 0 { break; }
            now += Duration::from_secs(31);
            g.expire(now);
            for (_, d) in g.dispatch(now).into_iter().chain(out) {
                if g.ack(99, &[d.event.id]) == 1 { prop_assert!(finished.insert(d.event.id)); }
            }
        }
        prop_assert_eq!(g.outstanding(), 0);
        prop_assert_eq!(finished.len() as u64, offered);
        prop_assert_eq!(g.checkpoint(), offered);
    }
}
