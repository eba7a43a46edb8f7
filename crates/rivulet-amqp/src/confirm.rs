//! Publisher confirms: each published message is acknowledged once every copy of it is
//! durable by its queue's policy, in publish order, consecutive ones coalesced into one
//! `basic.ack` with `multiple`.

use amq_protocol::protocol::{basic, AMQPClass};
use bytes::Bytes;
use rivulet_broker::Appended;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::frame;

/// Messages awaiting their confirm at most, per channel; publishing waits beyond.
pub const UNCONFIRMED_MAX: usize = 8_192;

/// One published message: its sequence number and the appends to wait for.
#[derive(Debug)]
pub struct Pending {
    /// Publish sequence number, from 1.
    pub seq: u64,
    /// One per target queue; empty for an unroutable message (confirmed at once).
    pub appends: Vec<Appended>,
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

    /// Queues the next publish's confirm (waits when [`UNCONFIRMED_MAX`] are pending).
    pub async fn push(&mut self, appends: Vec<Appended>) {
        self.last_seq += 1;
        let pending = Pending {
            seq: self.last_seq,
            appends,
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
        match wait_all(pending.appends).await {
            Ok(()) => done = Some(pending.seq),
            Err(e) => {
                tracing::error!(seq = pending.seq, error = %e, "AMQP: a published message did not become durable");
                if let Some(seq) = done.take() {
                    if send(&out, channel, ack(seq)).await.is_err() {
                        return;
                    }
                }
                if send(&out, channel, nack(pending.seq)).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn wait_all(appends: Vec<Appended>) -> rivulet_broker::Result<()> {
    for a in appends {
        a.durable().await?;
    }
    Ok(())
}

fn ack(seq: u64) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
        delivery_tag: seq,
        multiple: true,
    }))
}

fn nack(seq: u64) -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
        delivery_tag: seq,
        multiple: false,
        requeue: false,
    }))
}

async fn send(out: &mpsc::Sender<Bytes>, channel: u16, method: AMQPClass) -> Result<(), ()> {
    let mut bytes = Vec::new();
    frame::put_method(&mut bytes, channel, &method);
    out.send(Bytes::from(bytes)).await.map_err(|_| ())
}
