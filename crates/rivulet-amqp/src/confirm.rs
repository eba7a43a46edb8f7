//! Publisher confirms: each published message is acknowledged once every copy of it is
//! durable by its queue's policy, in publish order, consecutive ones coalesced into one
//! `basic.ack` with `multiple`.

use amq_protocol::protocol::{basic, AMQPClass};
use bytes::Bytes;
use rivulet_broker::Durable;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::frame;

/// Messages awaiting their confirm at most, per channel; publishing waits beyond.
pub const UNCONFIRMED_MAX: usize = 8_192;

/// A run of published messages: the last one's sequence number and the appends to wait for.
#[derive(Debug)]
pub struct Pending {
    /// Publish sequence number of the run's last message (numbers start at 1).
    pub seq: u64,
    /// Messages in the run.
    pub count: u64,
    /// What the run's appends wait for; empty for unroutable messages (confirmed at once).
    pub durables: Vec<Durable>,
    /// An append failed: the run is nacked.
    pub failed: bool,
}

/// A channel in confirm mode.
#[derive(Debug)]
pub struct Confirms {
    /// Sequence number of the last publish.
    pub last_seq: u64,
    tx: mpsc::Sender<Pending>,
    task: JoinHandle<()>,
}

impl Confirms {
    /// Starts confirming for `channel`, writing to `out`.
    pub fn start(channel: u16, out: mpsc::Sender<Bytes>) -> Confirms {
        let (tx, rx) = mpsc::channel(UNCONFIRMED_MAX);
        Confirms {
            last_seq: 0,
            tx,
            task: tokio::spawn(run(channel, rx, out)),
        }
    }

    /// Queues the confirm of the next `count` publishes (waits when [`UNCONFIRMED_MAX`]
    /// runs are pending).
    pub async fn push(&mut self, count: u64, durables: Vec<Durable>, failed: bool) {
        self.last_seq += count;
        let pending = Pending {
            seq: self.last_seq,
            count,
            durables,
            failed,
        };
        if self.tx.send(pending).await.is_err() {
            tracing::debug!("AMQP: confirm task gone");
        }
    }
}

impl Drop for Confirms {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(channel: u16, mut rx: mpsc::Receiver<Pending>, out: mpsc::Sender<Bytes>) {
    // The highest sequence number durable but not yet acknowledged to the client.
    let mut done: Option<u64> = None;
    loop {
        let next = match done {
            Some(seq) => match rx.try_recv() {
                Ok(p) => Some(p),
                Err(mpsc::error::TryRecvError::Empty) => {
                    done = None;
                    if send(&out, channel, ack(seq)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            },
            None => rx.recv().await,
        };
        let Some(pending) = next else {
            if let Some(seq) = done {
                let _ = send(&out, channel, ack(seq)).await;
            }
            return;
        };
        let result = match pending.failed {
            true => Err("the append failed".to_string()),
            false => Durable::wait_all(pending.durables)
                .await
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => done = Some(pending.seq),
            Err(e) => {
                tracing::error!(seq = pending.seq, messages = pending.count, error = %e, "AMQP: published messages did not become durable");
                if let Some(seq) = done.take() {
                    if send(&out, channel, ack(seq)).await.is_err() {
                        return;
                    }
                }
                if send(&out, channel, nack(pending.seq, pending.count > 1))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

fn ack(seq: u64) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
        delivery_tag: seq,
        multiple: true,
    }))
}

fn nack(seq: u64, multiple: bool) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
        delivery_tag: seq,
        multiple,
        requeue: false,
    }))
}

async fn send(out: &mpsc::Sender<Bytes>, channel: u16, method: AMQPClass) -> Result<(), ()> {
    let mut bytes = Vec::new();
    frame::put_method(&mut bytes, channel, &method);
    out.send(Bytes::from(bytes)).await.map_err(|_| ())
}
