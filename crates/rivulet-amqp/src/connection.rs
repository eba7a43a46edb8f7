//! One client connection: the handshake, then the client's frames applied strictly in
//! order, channel by channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::{basic, channel, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::Bytes;
use rivulet_broker::Broker;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::channel::Channel;
use crate::fault::{self, Fault};
use crate::frame::{self, Frame, PROTOCOL_HEADER};
use crate::io::{self, ReadError, Reader};
use crate::publish::PublishBatch;
use crate::AmqpConfig;

/// What the client said it understands (`client_properties.capabilities`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCaps {
    /// `basic.cancel` from the server when a queue goes.
    pub consumer_cancel_notify: bool,
    /// `connection.blocked` and `connection.unblocked` around a resource alarm.
    pub connection_blocked: bool,
}

/// A connection being served.
#[derive(Debug)]
pub struct Connection {
    /// Process-unique id; exclusive queues belong to it.
    pub id: u64,
    /// The broker core.
    pub broker: Broker,
    /// Listener settings.
    pub config: Arc<AmqpConfig>,
    /// Negotiated frame size.
    pub frame_max: u32,
    /// Highest channel number allowed.
    pub channel_max: u16,
    /// Outbound frames (bounded).
    pub out: mpsc::Sender<Bytes>,
    /// Open channels.
    pub channels: HashMap<u16, Channel>,
    /// What the client understands.
    pub caps: ClientCaps,
    /// Published messages not yet appended.
    pub batch: PublishBatch,
    /// The broker's resource alarm: publishing waits while it is raised.
    pub alarm: watch::Receiver<Option<String>>,
    /// The client's address (failed logins are counted per host).
    pub host: String,
    /// The user the client logged in as (none when logins are off).
    pub user: Option<String>,
    /// The common name of the client certificate, if the client presented one: the user
    /// of an `EXTERNAL` login.
    pub certificate_user: Option<String>,
}

/// Why the frame loop ended.
enum End {
    /// The socket ended.
    Done,
    /// The client closed the connection and got its close-ok.
    Closed,
    /// A connection error: `connection.close` goes out, then the socket closes.
    Fault(Fault),
}

/// Serves one accepted socket until it closes.
pub async fn serve(
    stream: TcpStream,
    id: u64,
    broker: Broker,
    config: Arc<AmqpConfig>,
    shutdown: watch::Receiver<bool>,
) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let handshake = Duration::from_millis(config.handshake_timeout_ms);
    let Some((rd, wr, certificate_user)) = split(stream, config.tls.as_ref(), handshake).await else {
        return;
    };
    let mut reader = Reader::new(rd);
    let header = match tokio::time::timeout(handshake, reader.read_exact(8)).await {
        Ok(Ok(h)) => h,
        _ => return,
    };
    let (tx, rx) = mpsc::channel(config.outbound_frames_max);
    let (beat_tx, beat_rx) = watch::channel(0u16);
    let writer = tokio::spawn(io::write_loop(wr, rx, beat_rx));
    if header.as_ref() != PROTOCOL_HEADER {
        tracing::info!(
            ?peer,
            "AMQP: wrong protocol header; answering with ours and closing"
        );
        let _ = tx.send(Bytes::from_static(PROTOCOL_HEADER)).await;
        drop(tx);
        let write_half = writer.await;
        drop(write_half);
        return;
    }
    let mut conn = Connection {
        id,
        broker: broker.clone(),
        frame_max: config.frame_max,
        channel_max: config.channel_max,
        config,
        out: tx,
        channels: HashMap::new(),
        caps: ClientCaps::default(),
        batch: PublishBatch::default(),
        alarm: broker.alarm(),
        host: peer.map_or_else(String::new, |p| p.ip().to_string()),
        user: None,
        certificate_user,
    };
    let metrics = conn.broker.metrics().clone();
    metrics.connection_opened("amqp");
    match tokio::time::timeout(handshake, conn.handshake(&mut reader)).await {
        Ok(Ok(heartbeat)) => {
            beat_tx.send_replace(heartbeat);
            tracing::debug!(?peer, connection = id, heartbeat, "AMQP connection open");
            let end = conn.run(&mut reader, heartbeat, shutdown).await;
            // Messages received before an error are kept, as if the error came after them.
            let _ = conn.flush_publishes().await;
            match end {
                End::Fault(f) => conn.close_with(&mut reader, f).await,
                End::Done | End::Closed => {}
            }
        }
        Ok(Err(f)) => conn.close_with(&mut reader, f).await,
        Err(_) => tracing::info!(?peer, "AMQP: handshake timed out"),
    }
    conn.cleanup();
    drop(conn);
    metrics.connection_closed("amqp");
    // The writer sends what is queued (the close-ok); the socket stays open until the
    // client closes it (or a second passes), so it closes without a reset.
    let write_half = writer.await;
    reader.drain(Duration::from_secs(1)).await;
    drop(write_half);
}

/// The connection's halves, after a TLS handshake when TLS is on (`None`: it failed),
/// and the common name of the client certificate the handshake verified, if any.
async fn split(
    stream: TcpStream,
    tls: Option<&rivulet_tls::Acceptor>,
    limit: Duration,
) -> Option<(io::ReadHalf, io::WriteHalf, Option<String>)> {
    let Some(acceptor) = tls else {
        let (rd, wr) = stream.into_split();
        return Some((Box::new(rd), Box::new(wr), None));
    };
    let peer = stream.peer_addr().ok();
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let name = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certificates| certificates.first())
                .and_then(|certificate| rivulet_tls::common_name(certificate));
            let (rd, wr) = tokio::io::split(tls);
            Some((Box::new(rd), Box::new(wr), name))
        }
        Ok(Err(e)) => {
            tracing::info!(?peer, error = %e, "AMQP: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(?peer, "AMQP: TLS handshake timed out");
            None
        }
    }
}

fn server_properties() -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "per_consumer_qos",
        "authentication_failure_close",
        "connection.blocked",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    props.insert("product".into(), text("Rivulet"));
    props.insert("version".into(), text(env!("CARGO_PKG_VERSION")));
    props.insert("platform".into(), text("Rust"));
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    props
}

impl Connection {
    /// Queues a method frame.
    pub async fn send(&self, channel: u16, method: AMQPClass) -> Result<(), Fault> {
        let mut out = Vec::new();
        frame::put_method(&mut out, channel, &method);
        self.send_bytes(Bytes::from(out)).await
    }

    /// Queues encoded frames.
    pub async fn send_bytes(&self, bytes: Bytes) -> Result<(), Fault> {
        self.out
            .send(bytes)
            .await
            .map_err(|_| Fault::connection(fault::CONNECTION_FORCED, "writer closed"))
    }

    /// Start, start-ok, tune, tune-ok, open, open-ok. Returns the heartbeat interval.
    async fn handshake(&mut self, reader: &mut Reader) -> Result<u16, Fault> {
        let start = connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: LongString::from(
                crate::login::mechanisms(self.certificate_user.is_some()).into_bytes(),
            ),
            locales: LongString::from(b"en_US".to_vec()),
        };
        self.send(0, AMQPClass::Connection(connection::AMQPMethod::Start(start)))
            .await?;
        let ok = match self.expect(reader).await? {
            connection::AMQPMethod::StartOk(ok) => ok,
            _ => {
                return Err(Fault::connection(
                    fault::COMMAND_INVALID,
                    "expected connection.start-ok",
                ))
            }
        };
        self.read_caps(&ok.client_properties);
        let login = crate::login::Login {
            host: &self.host,
            mechanism: ok.mechanism.as_str(),
            response: ok.response.as_bytes(),
            certificate_user: self.certificate_user.as_deref(),
        };
        self.user = crate::login::check(&self.broker, login)?;
        let tune = connection::Tune {
            channel_max: self.config.channel_max,
            frame_max: self.config.frame_max,
            heartbeat: self.config.heartbeat_s,
        };
        self.send(0, AMQPClass::Connection(connection::AMQPMethod::Tune(tune)))
            .await?;
        let tuned = match self.expect(reader).await? {
            connection::AMQPMethod::TuneOk(t) => t,
            _ => {
                return Err(Fault::connection(
                    fault::COMMAND_INVALID,
                    "expected connection.tune-ok",
                ))
            }
        };
        self.apply_tune(&tuned)?;
        let open = match self.expect(reader).await? {
            connection::AMQPMethod::Open(o) => o,
            _ => {
                return Err(Fault::connection(
                    fault::COMMAND_INVALID,
                    "expected connection.open",
                ))
            }
        };
        if open.virtual_host.as_str() != "/" {
            return Err(Fault::connection(
                fault::NOT_ALLOWED,
                format!(
                    "vhost '{}' not found; Rivulet has one vhost, '/'",
                    open.virtual_host
                ),
            ));
        }
        let ok = connection::OpenOk {};
        self.send(0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(ok)))
            .await?;
        Ok(tuned.heartbeat)
    }

    fn read_caps(&mut self, props: &FieldTable) {
        let caps = match props.inner().get("capabilities") {
            Some(AMQPValue::FieldTable(t)) => t.clone(),
            _ => return,
        };
        let has = |name: &str| matches!(caps.inner().get(name), Some(AMQPValue::Boolean(true)));
        self.caps.consumer_cancel_notify = has("consumer_cancel_notify");
        self.caps.connection_blocked = has("connection.blocked");
    }

    fn apply_tune(&mut self, tuned: &connection::TuneOk) -> Result<(), Fault> {
        if tuned.frame_max != 0 && tuned.frame_max < frame::FRAME_MIN_BYTES {
            return Err(Fault::connection(
                fault::NOT_ALLOWED,
                format!(
                    "frame_max {} below the minimum {}",
                    tuned.frame_max,
                    frame::FRAME_MIN_BYTES
                ),
            ));
        }
        if tuned.frame_max > self.config.frame_max {
            return Err(Fault::connection(
                fault::NOT_ALLOWED,
                format!(
                    "frame_max {} above the server's {}",
                    tuned.frame_max, self.config.frame_max
                ),
            ));
        }
        if tuned.frame_max != 0 {
            self.frame_max = tuned.frame_max;
        }
        if tuned.channel_max != 0 {
            self.channel_max = tuned.channel_max.min(self.config.channel_max);
        }
        Ok(())
    }

    /// The next handshake method on channel 0.
    async fn expect(&mut self, reader: &mut Reader) -> Result<connection::AMQPMethod, Fault> {
        loop {
            match reader.next(self.frame_max, None).await {
                Ok(Some(Frame::Method(0, class))) => match *class {
                    AMQPClass::Connection(m) => return Ok(m),
                    _ => {
                        return Err(Fault::connection(
                            fault::COMMAND_INVALID,
                            "handshake not finished",
                        ))
                    }
                },
                Ok(Some(Frame::Heartbeat(_))) => continue,
                Ok(Some(_)) => {
                    return Err(Fault::connection(
                        fault::UNEXPECTED_FRAME,
                        "handshake not finished",
                    ))
                }
                Ok(None) => {
                    return Err(Fault::connection(
                        fault::CONNECTION_FORCED,
                        "closed during handshake",
                    ))
                }
                Err(e) => return Err(read_fault(e)),
            }
        }
    }

    async fn run(&mut self, reader: &mut Reader, heartbeat: u16, mut shutdown: watch::Receiver<bool>) -> End {
        let silence = (heartbeat > 0).then(|| Duration::from_secs(u64::from(heartbeat) * 2));
        loop {
            let frame = match reader.buffered(self.frame_max) {
                Ok(Some(f)) => Ok(Some(f)),
                Ok(None) => {
                    // About to wait for bytes: what was published so far is appended now.
                    if let Err(f) = self.flush_or_fail().await {
                        return End::Fault(f);
                    }
                    tokio::select! {
                        r = reader.next(self.frame_max, silence) => r,
                        _ = shutdown.wait_for(|s| *s) => {
                            return End::Fault(Fault::connection(fault::CONNECTION_FORCED, "broker shutting down"));
                        }
                    }
                }
                Err(e) => Err(ReadError::Frame(e)),
            };
            let frame = match frame {
                Ok(Some(f)) => f,
                Ok(None) => return End::Done,
                Err(ReadError::Io(_)) => return End::Done,
                Err(ReadError::Silent(d)) => {
                    tracing::info!(connection = self.id, after = ?d, "AMQP: missed heartbeats; closing");
                    return End::Done;
                }
                Err(e) => return End::Fault(read_fault(e)),
            };
            if !is_publishing(&frame) {
                if let Err(f) = self.flush_or_fail().await {
                    return End::Fault(f);
                }
            }
            if is_publish(&frame) && self.alarm.borrow().is_some() {
                if let Err(f) = self.wait_while_blocked(&mut shutdown).await {
                    return End::Fault(f);
                }
            }
            match self.apply(frame).await {
                Ok(true) => {}
                Ok(false) => return End::Closed,
                Err(f) if f.connection || f.channel == 0 => return End::Fault(f),
                Err(f) => {
                    if let Err(f) = self.flush_or_fail().await {
                        return End::Fault(f);
                    }
                    if let Err(f) = self.channel_fault(f).await {
                        return End::Fault(f);
                    }
                }
            }
        }
    }

    /// Holds a publishing connection while the broker's alarm is raised, as RabbitMQ does:
    /// what it published so far is appended, the client is told (`connection.blocked`, if
    /// it understands it), nothing more is read until the alarm clears, then
    /// `connection.unblocked`. Consumers of the connection go on delivering meanwhile.
    async fn wait_while_blocked(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<(), Fault> {
        let Some(reason) = self.alarm.borrow().clone() else {
            return Ok(());
        };
        self.flush_or_fail().await?;
        tracing::info!(connection = self.id, %reason, "AMQP: publisher blocked");
        if self.caps.connection_blocked {
            let blocked = connection::Blocked {
                reason: ShortString::from(reason),
            };
            self.send(0, AMQPClass::Connection(connection::AMQPMethod::Blocked(blocked)))
                .await?;
        }
        tokio::select! {
            cleared = self.alarm.wait_for(Option::is_none) => {
                if cleared.is_err() {
                    return Err(Fault::connection(fault::CONNECTION_FORCED, "broker shutting down"));
                }
            }
            _ = shutdown.wait_for(|s| *s) => {
                return Err(Fault::connection(fault::CONNECTION_FORCED, "broker shutting down"));
            }
        }
        tracing::info!(connection = self.id, "AMQP: publisher unblocked");
        if self.caps.connection_blocked {
            let unblocked = connection::Unblocked {};
            self.send(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Unblocked(unblocked)),
            )
            .await?;
        }
        Ok(())
    }

    /// Applies one frame; `Ok(false)` when the client closed the connection. A channel
    /// fault names its channel.
    async fn apply(&mut self, frame: Frame) -> Result<bool, Fault> {
        match frame {
            Frame::Heartbeat(0) => Ok(true),
            Frame::Heartbeat(_) => Err(Fault::connection(
                fault::FRAME_ERROR,
                "heartbeat on a channel other than 0",
            )),
            Frame::Method(0, class) => self.connection_method(*class).await,
            Frame::Method(ch, class) => self.channel_method(ch, *class).await.map(|()| true),
            Frame::Header(ch, header) => self
                .content_header(ch, *header)
                .await
                .map(|()| true)
                .map_err(|f| on_publish(ch, f)),
            Frame::Body(ch, body) => self
                .content_body(ch, body)
                .await
                .map(|()| true)
                .map_err(|f| on_publish(ch, f)),
        }
    }

    async fn connection_method(&mut self, class: AMQPClass) -> Result<bool, Fault> {
        match class {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                tracing::debug!(connection = self.id, code = c.reply_code, text = %c.reply_text, "AMQP: client closed");
                self.quiesce().await;
                let ok = AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}));
                self.send(0, ok).await?;
                Ok(false)
            }
            AMQPClass::Connection(
                connection::AMQPMethod::Blocked(_) | connection::AMQPMethod::Unblocked(_),
            ) => Ok(true),
            other => Err(Fault::connection(
                fault::COMMAND_INVALID,
                format!(
                    "method {}.{} not allowed on channel 0",
                    other.get_amqp_class_id(),
                    other.get_amqp_method_id()
                ),
            )),
        }
    }

    async fn channel_method(&mut self, ch: u16, class: AMQPClass) -> Result<(), Fault> {
        if let AMQPClass::Channel(channel::AMQPMethod::Open(_)) = class {
            return self.open_channel(ch).await;
        }
        let Some(channel) = self.channels.get(&ch) else {
            return Err(Fault::connection(
                fault::CHANNEL_ERROR,
                format!("channel {ch} is not open"),
            ));
        };
        if channel.closing {
            // After a channel error only the close handshake counts.
            return match class {
                AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => {
                    self.channels.remove(&ch);
                    Ok(())
                }
                AMQPClass::Channel(channel::AMQPMethod::Close(_)) => self.close_channel(ch).await,
                _ => Ok(()),
            };
        }
        if channel.pending.is_some() {
            return Err(Fault::connection(
                fault::UNEXPECTED_FRAME,
                format!("method on channel {ch} while content was expected"),
            ));
        }
        let (class_id, method_id) = (class.get_amqp_class_id(), class.get_amqp_method_id());
        self.method(ch, class)
            .await
            .map_err(|f| f.at(ch, class_id, method_id))
    }

    async fn open_channel(&mut self, ch: u16) -> Result<(), Fault> {
        if ch == 0 || ch > self.channel_max {
            return Err(Fault::connection(
                fault::CHANNEL_ERROR,
                format!("channel {ch} above channel_max {}", self.channel_max),
            ));
        }
        if self.channels.contains_key(&ch) {
            return Err(Fault::connection(
                fault::CHANNEL_ERROR,
                format!("second 'channel.open' seen on channel {ch}"),
            ));
        }
        let owner: Arc<str> = Arc::from(format!("amqp-{}-{ch}", self.id));
        self.channels.insert(
            ch,
            Channel::new(ch, owner, self.out.clone(), self.frame_max, &self.broker),
        );
        let ok = AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {}));
        self.send(ch, ok).await
    }

    /// Ends a channel: consumers stop, unacknowledged deliveries go back to their queues.
    pub async fn close_channel(&mut self, ch: u16) -> Result<(), Fault> {
        if let Some(channel) = self.channels.remove(&ch) {
            channel.shut(&self.broker);
        }
        let ok = AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}));
        self.send(ch, ok).await
    }

    /// Sends `channel.close` for the channel a fault belongs to and waits for its close-ok.
    async fn channel_fault(&mut self, f: Fault) -> Result<(), Fault> {
        let ch = f.channel;
        tracing::info!(connection = self.id, channel = ch, code = f.code, text = %f.text, "AMQP channel error");
        self.broker
            .metrics()
            .request_error("amqp", fault::code_name(f.code));
        if let Some(channel) = self.channels.get_mut(&ch) {
            channel.closing = true;
            channel.pending = None;
            channel.release(&self.broker);
        }
        let close = channel::Close {
            reply_code: f.code,
            reply_text: ShortString::from(f.text),
            class_id: f.class_id,
            method_id: f.method_id,
        };
        self.send(ch, AMQPClass::Channel(channel::AMQPMethod::Close(close)))
            .await
    }

    /// Sends `connection.close` and waits briefly for the client's close-ok.
    async fn close_with(&mut self, reader: &mut Reader, f: Fault) {
        tracing::info!(connection = self.id, code = f.code, text = %f.text, "AMQP connection error");
        self.broker
            .metrics()
            .request_error("amqp", fault::code_name(f.code));
        let close = connection::Close {
            reply_code: f.code,
            reply_text: ShortString::from(f.text),
            class_id: f.class_id,
            method_id: f.method_id,
        };
        if self
            .send(0, AMQPClass::Connection(connection::AMQPMethod::Close(close)))
            .await
            .is_err()
        {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Ok(Some(frame))) =
            tokio::time::timeout_at(deadline, reader.next(self.frame_max, None)).await
        {
            if matches!(frame, Frame::Method(0, ref c) if matches!(**c, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))))
            {
                break;
            }
        }
    }

    /// Stops every consumer so that nothing follows the close-ok: each checks its flag
    /// under its channel's send lock, which is taken once here after the flags are set.
    async fn quiesce(&mut self) {
        for channel in self.channels.values_mut() {
            channel.confirms = None;
            for c in channel.consumers.values() {
                c.state
                    .cancelled
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            drop(channel.shared.send_lock.lock().await);
        }
    }

    /// Stops every channel and removes the connection's exclusive queues.
    fn cleanup(&mut self) {
        for (_, channel) in self.channels.drain() {
            channel.shut(&self.broker);
        }
        self.broker.queues_connection_closed(self.id);
    }
}

/// Frames of a publish: applying them may add to the batch without flushing it.
fn is_publishing(frame: &Frame) -> bool {
    match frame {
        Frame::Method(_, class) => matches!(**class, AMQPClass::Basic(basic::AMQPMethod::Publish(_))),
        Frame::Header(..) | Frame::Body(..) | Frame::Heartbeat(_) => true,
    }
}

/// A `basic.publish` method (the frame a blocked connection stops at).
fn is_publish(frame: &Frame) -> bool {
    matches!(frame, Frame::Method(_, class) if matches!(**class, AMQPClass::Basic(basic::AMQPMethod::Publish(_))))
}

/// A fault raised by a publish's content names `basic.publish` on its channel.
fn on_publish(ch: u16, f: Fault) -> Fault {
    if f.channel == 0 {
        f.at(ch, 60, 40)
    } else {
        f
    }
}

fn read_fault(e: ReadError) -> Fault {
    match e {
        ReadError::Frame(f) => Fault::connection(f.reply_code(), f.to_string()),
        other => Fault::connection(fault::CONNECTION_FORCED, other.to_string()),
    }
}
