//! Per-channel state shared between the connection task (which applies the client's
//! frames in order) and the channel's consumer tasks (which deliver messages): delivery
//! tags, unacknowledged deliveries and prefetch credit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rivulet_broker::queues::Queue;
use tokio::sync::{mpsc, watch};

/// Deliveries one consumer task hands out per pass.
pub const DELIVERY_BATCH_MAX: usize = 64;

/// One consumer: its tag, prefetch and deliveries outstanding.
#[derive(Debug)]
pub struct ConsumerState {
    /// The consumer tag.
    pub tag: String,
    /// Unacknowledged deliveries allowed (0: unlimited).
    pub prefetch: u32,
    /// Deliveries not yet acknowledged.
    pub unacked: AtomicU32,
    /// Set by `basic.cancel` or the channel closing; checked under the send lock.
    pub cancelled: AtomicBool,
    /// Without acknowledgements (`no-ack`).
    pub no_ack: bool,
}

/// A delivery waiting for its acknowledgement.
#[derive(Debug, Clone)]
pub struct Unacked {
    /// Where it came from.
    pub queue: Arc<Queue>,
    /// Its offset there.
    pub offset: i64,
    /// The consumer it went to (`None`: `basic.get`).
    pub consumer: Option<Arc<ConsumerState>>,
}

#[derive(Debug, Default)]
struct Deliveries {
    next_tag: u64,
    unacked: BTreeMap<u64, Unacked>,
    prefetch: u32,
}

/// State shared by a channel and its consumers.
#[derive(Debug)]
pub struct ChannelShared {
    /// Channel number.
    pub id: u16,
    /// The settlement owner of everything delivered on this channel.
    pub owner: Arc<str>,
    /// Outbound frames to the connection's writer (bounded: backpressure).
    pub out: mpsc::Sender<Bytes>,
    /// Negotiated frame size.
    pub frame_max: u32,
    /// Held while a delivery's frames are queued, so delivery tags leave in order and no
    /// delivery follows a `cancel-ok`.
    pub send_lock: tokio::sync::Mutex<()>,
    deliveries: Mutex<Deliveries>,
    credit: watch::Sender<u64>,
}

impl ChannelShared {
    /// A channel's shared state.
    pub fn new(id: u16, owner: Arc<str>, out: mpsc::Sender<Bytes>, frame_max: u32) -> ChannelShared {
        ChannelShared {
            id,
            owner,
            out,
            frame_max,
            send_lock: tokio::sync::Mutex::new(()),
            deliveries: Mutex::new(Deliveries::default()),
            credit: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Deliveries> {
        self.deliveries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the channel-wide prefetch (`basic.qos` with `global`).
    pub fn set_prefetch(&self, count: u32) {
        self.lock().prefetch = count;
        self.wake_credit();
    }

    /// The channel-wide prefetch (0: none).
    pub fn prefetch(&self) -> u32 {
        self.lock().prefetch
    }

    /// Deliveries `consumer` may receive now.
    pub fn room(&self, consumer: &ConsumerState) -> usize {
        if consumer.no_ack {
            return DELIVERY_BATCH_MAX;
        }
        let state = self.lock();
        let channel = match state.prefetch {
            0 => usize::MAX,
            p => (p as usize).saturating_sub(state.unacked.len()),
        };
        let own = match consumer.prefetch {
            0 => usize::MAX,
            p => p.saturating_sub(consumer.unacked.load(Ordering::Acquire)) as usize,
        };
        channel.min(own).min(DELIVERY_BATCH_MAX)
    }

    /// Assigns the next delivery tag, remembering the delivery unless `unacked` is `None`.
    pub fn next_tag(&self, unacked: Option<Unacked>) -> u64 {
        let mut state = self.lock();
        state.next_tag += 1;
        let tag = state.next_tag;
        if let Some(u) = unacked {
            if let Some(c) = &u.consumer {
                c.unacked.fetch_add(1, Ordering::AcqRel);
            }
            state.unacked.insert(tag, u);
        }
        tag
    }

    /// Takes the deliveries an `ack`/`nack`/`reject` names: `tag` alone, or every one up
    /// to it with `multiple` (`tag` 0 with `multiple`: all). `None` when `tag` is unknown.
    pub fn take(&self, tag: u64, multiple: bool) -> Option<Vec<Unacked>> {
        let mut state = self.lock();
        let taken: Vec<Unacked> = if multiple {
            let last = if tag == 0 { u64::MAX } else { tag };
            let keys: Vec<u64> = state.unacked.range(..=last).map(|(k, _)| *k).collect();
            if keys.is_empty() && tag != 0 {
                return None;
            }
            keys.iter().filter_map(|k| state.unacked.remove(k)).collect()
        } else {
            vec![state.unacked.remove(&tag)?]
        };
        drop(state);
        for u in &taken {
            if let Some(c) = &u.consumer {
                c.unacked.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.wake_credit();
        Some(taken)
    }

    /// The unacknowledged delivery tags an `ack`/`nack`/`reject` names, without taking
    /// them (see [`ChannelShared::take`]).
    pub fn tags(&self, tag: u64, multiple: bool) -> Vec<u64> {
        let state = self.lock();
        if !multiple {
            return state
                .unacked
                .contains_key(&tag)
                .then_some(tag)
                .into_iter()
                .collect();
        }
        let last = if tag == 0 { u64::MAX } else { tag };
        state.unacked.range(..=last).map(|(k, _)| *k).collect()
    }

    /// Takes every unacknowledged delivery (recover, channel close).
    pub fn take_all(&self) -> Vec<Unacked> {
        self.take(0, true).unwrap_or_default()
    }

    /// Unacknowledged deliveries.
    pub fn unacked_count(&self) -> usize {
        self.lock().unacked.len()
    }

    /// A receiver that changes when credit may have grown.
    pub fn credit_changes(&self) -> watch::Receiver<u64> {
        self.credit.subscribe()
    }

    /// Wakes consumers waiting for credit.
    pub fn wake_credit(&self) {
        self.credit.send_modify(|n| *n = n.wrapping_add(1));
    }
}
