//! The listener: accepts sockets and serves each as a connection, within a connection limit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rivulet_broker::Broker;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::{connection, AmqpConfig};

/// Connection ids, unique in the process (exclusive queues belong to one).
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Bound AMQP listeners.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<TcpListener>,
    broker: Broker,
    config: Arc<AmqpConfig>,
}

impl Server {
    /// Serves on already bound listeners.
    pub fn from_listeners(listeners: Vec<TcpListener>, config: AmqpConfig, broker: Broker) -> Server {
        Server {
            listeners,
            broker,
            config: Arc::new(config),
        }
    }

    /// The bound addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Accepts connections until `shutdown` turns true; open connections then get
    /// `connection.close` (320).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.config.connections_max));
        let mut tasks = Vec::new();
        for listener in self.listeners {
            let (broker, config) = (self.broker.clone(), self.config.clone());
            let (permits, shutdown) = (permits.clone(), shutdown.clone());
            tasks.push(tokio::spawn(accept_loop(
                listener, broker, config, permits, shutdown,
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    broker: Broker,
    config: Arc<AmqpConfig>,
    permits: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "AMQP: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = config.connections_max, "AMQP: connection limit reached; closing");
            drop(stream);
            continue;
        };
        let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
        let (broker, config, shutdown) = (broker.clone(), config.clone(), shutdown.clone());
        tokio::spawn(async move {
            connection::serve(stream, id, broker, config, shutdown).await;
            drop(permit);
        });
    }
}
