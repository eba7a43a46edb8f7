//! TCP server: accepts connections, frames requests, runs handlers, writes responses.
//!
//! Each connection reads one request at a time and answers in order. A Produce is appended
//! as soon as it is read, and only its wait for durability overlaps with the requests after
//! it (at most [`PIPELINE_DEPTH_MAX`] responses in flight): a producer with several requests
//! in flight gets them appended back to back and their syncs shared, instead of one sync per
//! request. Further pipelined requests wait in the socket buffer (TCP backpressure). Memory is
//! bounded by `connections_max`, a global budget of large-request bytes in flight and a
//! global budget of Fetch response bytes.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use rivulet_broker::FileSlice;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::codec::{self, Decoded};
use crate::frame::{self, Frame, Piece};
use crate::handler::{ClientInfo, Handler, HandlerConfig, Response, Started};
use crate::listener::SecurityProtocol;
use crate::sasl::SaslState;
use crate::transport::{Accepted, Reader, Writer};
use kafka_protocol::messages::ResponseKind;
use rivulet_broker::Broker;

/// Requests up to this size are read without drawing on `request_memory_bytes_max`; memory
/// for requests is bounded by `request_memory_bytes_max + connections_max * SMALL_REQUEST_BYTES`.
pub const SMALL_REQUEST_BYTES: usize = 64 * 1024;

/// Settings of the Kafka listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Handler settings (advertised address, fetch limits).
    pub handler: HandlerConfig,
    /// Largest request frame accepted; larger ones close the connection.
    pub request_bytes_max: usize,
    /// Request bytes held in memory across all connections at once. Fetch response bytes
    /// have a separate budget of the same size.
    pub request_memory_bytes_max: usize,
    /// Concurrent connections; further ones are closed at once.
    pub connections_max: usize,
    /// Time allowed to receive the rest of a frame once its length arrived.
    pub request_read_timeout_ms: u64,
    /// Connections idle this long are closed.
    pub idle_timeout_ms: u64,
    /// A connection whose socket accepts no response bytes for this long is closed: a client
    /// that stopped reading would otherwise hold its Fetch response memory, which all
    /// connections share, for ever.
    pub write_stall_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout_ms: u64,
    /// The TLS certificate of the listeners that speak TLS.
    pub tls: Option<rivulet_tls::Acceptor>,
    /// Each listen address's security protocol, in order. An address without one (`None`,
    /// or past the end) uses TLS when `tls` is set and SASL when the broker requires
    /// logins (`SSL`, `SASL_PLAINTEXT` or `SASL_SSL`; `PLAINTEXT` with neither).
    pub protocols: Vec<Option<SecurityProtocol>>,
}

impl ServerConfig {
    /// The security protocol of the listener at `index`.
    pub fn protocol(&self, index: usize, auth_required: bool) -> SecurityProtocol {
        self.protocols
            .get(index)
            .copied()
            .flatten()
            .unwrap_or_else(|| SecurityProtocol::default_for(self.tls.is_some(), auth_required))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 9092))],
            handler: HandlerConfig::default(),
            request_bytes_max: 100 << 20,
            request_memory_bytes_max: 256 << 20,
            connections_max: 1024,
            request_read_timeout_ms: 30_000,
            idle_timeout_ms: 600_000,
            write_stall_timeout_ms: 30_000,
            shutdown_timeout_ms: 10_000,
            tls: None,
            protocols: Vec::new(),
        }
    }
}

/// A bound, not yet running, Kafka server.
#[derive(Debug)]
pub struct Server {
    listeners: Vec<TcpListener>,
    config: ServerConfig,
    broker: Broker,
}

impl Server {
    /// Binds every listen address.
    pub async fn bind(config: ServerConfig, broker: Broker) -> io::Result<Server> {
        if config.request_bytes_max > config.request_memory_bytes_max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "request_bytes_max must not exceed request_memory_bytes_max",
            ));
        }
        let mut listeners = Vec::with_capacity(config.listen.len());
        for addr in &config.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
            listeners.push(listener);
        }
        Server::from_listeners(listeners, config, broker)
    }

    /// A server over listeners bound by the caller (`config.listen` is ignored).
    pub fn from_listeners(
        listeners: Vec<TcpListener>,
        config: ServerConfig,
        broker: Broker,
    ) -> io::Result<Server> {
        if config.request_bytes_max > config.request_memory_bytes_max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "request_bytes_max must not exceed request_memory_bytes_max",
            ));
        }
        let auth = broker.auth_required();
        for (i, _) in listeners.iter().enumerate() {
            let protocol = config.protocol(i, auth);
            if protocol.tls() && config.tls.is_none() {
                let message = format!("listener {i} is {protocol}, which needs a TLS certificate");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
            }
            if protocol.sasl() && !auth {
                let message = format!("listener {i} is {protocol}, which needs logins on (--auth)");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
            }
        }
        Ok(Server {
            listeners,
            config,
            broker,
        })
    }

    /// The bound addresses.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests
    /// finish (up to the shutdown timeout) and returns. Connections, request durations and
    /// errors are recorded in the broker's metrics. The caller closes the broker.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let handler = Handler::new(
            self.broker.clone(),
            self.config.handler.clone(),
            stop_rx.clone(),
            self.config.request_memory_bytes_max,
        );
        let connections = Arc::new(Semaphore::new(self.config.connections_max));
        let memory = Arc::new(Semaphore::new(self.config.request_memory_bytes_max));
        let config = Arc::new(self.config);
        let mut tasks = tokio::task::JoinSet::new();
        for (index, listener) in self.listeners.into_iter().enumerate() {
            tasks.spawn(accept_loop(
                (index, listener),
                handler.clone(),
                config.clone(),
                connections.clone(),
                memory.clone(),
                stop_rx.clone(),
            ));
        }
        shutdown.await;
        tracing::info!("Shutting down: no new connections, finishing in-flight requests");
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        let all = u32::try_from(config.connections_max).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(
            Duration::from_millis(config.shutdown_timeout_ms),
            connections.acquire_many(all),
        )
        .await;
        if drained.is_err() {
            tracing::warn!("Shutdown timeout: closing connections with requests still in flight");
        }
        Ok(())
    }
}

async fn accept_loop(
    (index, listener): (usize, TcpListener),
    handler: Handler,
    config: Arc<ServerConfig>,
    connections: Arc<Semaphore>,
    memory: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "Accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, limit = config.connections_max, "Refusing a connection: connections_max reached");
            drop(stream);
            continue;
        };
        let handler = handler.clone();
        let config = config.clone();
        let memory = memory.clone();
        let stop = stop.clone();
        let protocol = config.protocol(index, handler.broker().auth_required());
        let tls = config.tls.clone().filter(|_| protocol.tls());
        tokio::spawn(async move {
            tracing::debug!(peer = %peer, "Connection opened");
            let metrics = handler.metrics().clone();
            metrics.connection_opened("kafka");
            let served = match accept_tls(stream, peer, tls.as_ref()).await {
                Some(accepted) => {
                    let listener = (index, protocol);
                    serve_connection(accepted, peer, listener, handler, config, memory, stop).await
                }
                None => Ok(()),
            };
            metrics.connection_closed("kafka");
            if let Err(e) = &served {
                if !matches!(e, crate::ProtocolError::Io(_)) {
                    metrics.request_error("kafka", "malformed_request");
                }
            }
            match served {
                Ok(()) => tracing::debug!(peer = %peer, "Connection closed"),
                Err(crate::ProtocolError::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    tracing::debug!(peer = %peer, error = %e, "Client went away")
                }
                Err(e) => tracing::warn!(peer = %peer, error = %e, code = e.code(), "Closing connection"),
            }
            drop(permit);
        });
    }
}

/// Time a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection, after a TLS handshake when TLS is on; `None` when the handshake fails.
async fn accept_tls(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<&rivulet_tls::Acceptor>,
) -> Option<Accepted> {
    let Some(acceptor) = tls else {
        return Some(Accepted::Plain(stream));
    };
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(Accepted::Tls(Box::new(s))),
        Ok(Err(e)) => {
            tracing::info!(peer = %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(peer = %peer, "TLS handshake timed out");
            None
        }
    }
}

/// Bytes each connection reads ahead; larger request bodies are read straight into their
/// frame. Bounded by `connections_max * READ_BUFFER_BYTES` in all.
pub const READ_BUFFER_BYTES: usize = 16 * 1024;

/// Most responses one connection may have in flight: appended Produce requests waiting for
/// their syncs, and the responses queued behind them. librdkafka keeps at most 5 requests
/// in flight with idempotence (more without); further requests wait in the socket buffer.
pub const PIPELINE_DEPTH_MAX: usize = 16;

/// An encoded response and the memory reservation it holds until written.
type Encoded = (Frame, Option<OwnedSemaphorePermit>);

/// A response on its way: resolves when it can be written (`None`: nothing to write).
type InFlight = Pin<Box<dyn Future<Output = Result<Option<Encoded>, crate::ProtocolError>> + Send>>;

async fn serve_connection(
    stream: Accepted,
    peer: SocketAddr,
    (listener, protocol): (usize, SecurityProtocol),
    handler: Handler,
    config: Arc<ServerConfig>,
    memory: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) -> Result<(), crate::ProtocolError> {
    let certificate_user = stream.certificate_name();
    let (reader, writer) = stream.split();
    let (tx, rx) = mpsc::channel::<InFlight>(PIPELINE_DEPTH_MAX);
    let client = ClientInfo {
        host: peer.ip().to_string(),
        connection: next_connection(),
        user: None,
        listener,
    };
    // Share fetch sessions of this connection end with it (see below).
    let closing = (handler.clone(), client.connection);
    let sasl = SaslState::new(handler.broker(), protocol.sasl(), certificate_user);
    let read = read_requests(
        reader,
        tx,
        peer,
        client,
        sasl,
        handler,
        config.clone(),
        memory,
        stop,
    );
    let write = write_responses(writer, rx, peer, config);
    tokio::pin!(read, write);
    // When the reader ends (end of stream, a malformed frame, shutdown) the responses already
    // in flight are still written; when the writer ends (the client stopped reading, an I/O
    // error) the connection closes at once.
    let result = tokio::select! {
        read_result = &mut read => {
            let write_result = write.await;
            read_result.and(write_result)
        }
        write_result = &mut write => write_result,
    };
    closing.0.connection_closed(closing.1);
    result
}

/// A number no other connection of this process had.
fn next_connection() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Reads requests one after another and starts each: Produce appends happen here, in
/// request order; the responses go to the writer in the same order.
// One argument per piece of the connection's state; grouping them would only rename them.
#[allow(clippy::too_many_arguments)]
async fn read_requests(
    stream: Reader,
    responses: mpsc::Sender<InFlight>,
    peer: SocketAddr,
    mut client: ClientInfo,
    mut sasl: SaslState,
    handler: Handler,
    config: Arc<ServerConfig>,
    memory: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), crate::ProtocolError> {
    let idle = Duration::from_millis(config.idle_timeout_ms);
    // One receive usually brings a small request's length and body together.
    let mut stream = BufReader::with_capacity(READ_BUFFER_BYTES, stream);
    loop {
        let mut prefix = [0u8; 4];
        let read = tokio::select! {
            r = stream.read_exact(&mut prefix) => r,
            _ = stop.changed() => return Ok(()),
            _ = tokio::time::sleep(idle) => {
                tracing::debug!(peer = %peer, "Closing idle connection");
                return Ok(());
            }
        };
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let len = codec::frame_length(prefix, sasl.request_bytes_max(config.request_bytes_max))?;
        // Small requests (heartbeats, metadata, fetch requests) skip the shared budget so a
        // flood of large, stalled requests cannot starve them; each connection holds at most
        // one small request at a time.
        let permit = if len <= SMALL_REQUEST_BYTES {
            None
        } else {
            Some(
                memory
                    .clone()
                    .acquire_many_owned(len as u32)
                    .await
                    .map_err(|_| io::Error::other("request memory budget closed"))?,
            )
        };
        // Read into uninitialised capacity: no zeroing of bytes about to be overwritten.
        let mut frame = BytesMut::with_capacity(len);
        let body = (&mut stream).take(len as u64);
        let read = tokio::time::timeout(
            Duration::from_millis(config.request_read_timeout_ms),
            read_frame_body(body, &mut frame, len),
        );
        match read.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                tracing::warn!(peer = %peer, expected_bytes = len, "Connection closed in the middle of a request frame");
                return Ok(());
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                tracing::warn!(peer = %peer, expected_bytes = len, "Timed out reading a request frame");
                return Ok(());
            }
        }
        let response = start_request(&handler, frame.freeze(), &client, peer, &mut sasl).await?;
        if client.user.as_deref() != sasl.principal() {
            client.user = sasl.principal().map(Arc::from);
        }
        // The request's bytes are no longer needed: a Produce's records are in the log.
        drop(permit);
        if responses.send(response).await.is_err() {
            // The writer is gone (the client stopped reading or the socket failed).
            return Ok(());
        }
    }
}

/// Reads exactly `len` bytes (the limit of `reader`) into `frame`'s spare capacity; fails
/// with `UnexpectedEof` when the stream ends sooner.
async fn read_frame_body(
    mut reader: impl tokio::io::AsyncRead + Unpin,
    frame: &mut BytesMut,
    len: usize,
) -> io::Result<()> {
    // Each pass reads at least one byte or ends: bounded by `len`.
    while frame.len() < len {
        if reader.read_buf(frame).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Decodes one request frame and starts it: the returned future resolves to the encoded
/// response when it can be written.
async fn start_request(
    handler: &Handler,
    frame: Bytes,
    client: &ClientInfo,
    peer: SocketAddr,
    sasl: &mut SaslState,
) -> Result<InFlight, crate::ProtocolError> {
    let request = match codec::decode_request(frame)? {
        Decoded::ApiVersionsTooNew {
            correlation_id,
            version,
        } => {
            tracing::debug!(peer = %peer, version, "ApiVersions request newer than supported");
            let bytes = codec::api_versions_unsupported_response(correlation_id)?;
            return Ok(Box::pin(std::future::ready(Ok(Some((Frame::from(bytes), None))))));
        }
        Decoded::Request(request) => request,
    };
    let api_key = request.api_key;
    let version = request.version;
    let correlation_id = request.header.correlation_id;
    tracing::trace!(peer = %peer, api = ?api_key, version, correlation_id, "Request");
    let started = std::time::Instant::now();
    let metrics = handler.metrics().clone();
    let finish = move |resp: Option<Response>| -> Result<Option<Encoded>, crate::ProtocolError> {
        metrics.observe_request("kafka", &format!("{api_key:?}"), started.elapsed());
        match resp {
            // Keep the record-bytes reservation until the response is written.
            Some(resp) => {
                let frame =
                    frame::encode_response(api_key, version, correlation_id, &resp.body, resp.slices)?;
                Ok(Some((frame, resp.reservation)))
            }
            None => Ok(None),
        }
    };
    if let Some(body) = sasl.intercept(handler.broker(), &client.host, api_key, &request.body)? {
        let response = Response {
            body,
            slices: Vec::new(),
            reservation: None,
        };
        return Ok(Box::pin(std::future::ready(finish(Some(response)))));
    }
    Ok(match handler.start(*request, client).await {
        Started::Done(resp) => Box::pin(std::future::ready(finish(resp.map(|r| *r)))),
        Started::Produce(in_flight) => Box::pin(async move {
            let resp = in_flight.finish().await.map(|body| Response {
                body: ResponseKind::Produce(body),
                slices: Vec::new(),
                reservation: None,
            });
            finish(resp)
        }),
    })
}

/// Writes responses in request order as each becomes ready.
async fn write_responses(
    mut stream: Writer,
    mut responses: mpsc::Receiver<InFlight>,
    peer: SocketAddr,
    config: Arc<ServerConfig>,
) -> Result<(), crate::ProtocolError> {
    let stall = Duration::from_millis(config.write_stall_timeout_ms);
    while let Some(response) = responses.recv().await {
        let Some((frame, reservation)) = response.await? else {
            continue;
        };
        if !write_frame(&mut stream, &frame, stall).await? {
            tracing::warn!(
                peer = %peer,
                response_bytes = frame.len(),
                stall_ms = config.write_stall_timeout_ms,
                "Closing connection: the client stopped reading responses"
            );
            return Ok(());
        }
        drop(reservation);
    }
    Ok(())
}

/// Writes a frame's pieces; `Ok(false)` when the socket accepted nothing for `stall`.
async fn write_frame(stream: &mut Writer, frame: &Frame, stall: Duration) -> io::Result<bool> {
    for piece in &frame.pieces {
        let written = match piece {
            Piece::Bytes(bytes) => write_unless_stalled(stream, bytes, stall).await?,
            Piece::File(slice) => send_file(stream, slice, stall).await?,
        };
        if !written {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Sends a segment-file slice with sendfile: the bytes go from the page cache to the
/// socket without a copy through this process. Storage without a file descriptor, and TLS
/// connections (the bytes must be encrypted), read
/// and written instead. A slice of data not in the page cache blocks this thread while
/// the kernel reads it, as a read would.
async fn send_file(stream: &mut Writer, slice: &FileSlice, stall: Duration) -> io::Result<bool> {
    let (Some(fd), Some(socket)) = (slice.file().as_fd(), stream.socket()) else {
        let bytes = slice.read().map_err(io::Error::other)?;
        return write_unless_stalled(stream, &bytes, stall).await;
    };
    let mut offset = slice.position();
    let end = slice.position() + slice.len();
    // Each pass sends at least one byte or waits for the socket: bounded by the length.
    while offset < end {
        match tokio::time::timeout(stall, socket.writable()).await {
            Err(_) => return Ok(false),
            Ok(ready) => ready?,
        }
        let count = usize::try_from(end - offset).unwrap_or(usize::MAX);
        let sent = socket.try_io(tokio::io::Interest::WRITABLE, || {
            rustix::fs::sendfile(socket, fd, Some(&mut offset), count).map_err(io::Error::from)
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment file shorter than its slice",
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes all of `bytes`; `Ok(false)` when the socket accepted nothing for `stall`.
async fn write_unless_stalled(
    stream: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
    stall: Duration,
) -> io::Result<bool> {
    let mut written = 0;
    while written < bytes.len() {
        match tokio::time::timeout(stall, stream.write(&bytes[written..])).await {
            Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(false),
        }
    }
    Ok(true)
}
