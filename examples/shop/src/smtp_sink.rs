//! A local SMTP server that stores the mail it receives, one file per message, so a person
//! can read what the shop sent. Plain SMTP (no TLS, no auth), for demos and tests.
//!
//! The store keeps one copy per Message-ID, as many mail stores do: a retransmission of a
//! message already stored is acknowledged, counted and not stored again.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Longest command or data line accepted.
const LINE_BYTES_MAX: u64 = 4096;
/// Largest message accepted.
const MESSAGE_BYTES_MAX: usize = 1 << 20;
/// Recipients per message.
const RECIPIENTS_MAX: usize = 100;
/// A client silent this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Settings of the sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where to store messages (`*.eml`).
    pub mail_dir: PathBuf,
    /// Pause before answering each message (to make tests observe mail in flight).
    pub delay: Duration,
    /// Concurrent connections.
    pub connections_max: usize,
}

/// Counters of the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SinkStats {
    /// Messages received (accepted DATA).
    pub deliveries: u64,
    /// Messages stored.
    pub stored: u64,
    /// Retransmissions of a Message-ID already stored.
    pub retransmissions: u64,
}

/// A stored message, summarised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailSummary {
    /// File name under the mail directory.
    pub file: String,
    /// `To:` header.
    pub to: String,
    /// `Subject:` header.
    pub subject: String,
    /// `Message-ID:` header.
    pub message_id: String,
}

#[derive(Debug)]
struct State {
    dir: PathBuf,
    delay: Duration,
    ids: Mutex<HashSet<String>>,
    seq: AtomicU64,
    deliveries: AtomicU64,
    stored: AtomicU64,
    retransmissions: AtomicU64,
}

/// A running SMTP sink.
#[derive(Debug, Clone)]
pub struct Sink {
    addr: SocketAddr,
    state: Arc<State>,
}

fn header(text: &str, name: &str) -> String {
    text.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

impl Sink {
    /// Binds and starts serving; messages already in the directory count as stored.
    pub async fn start(config: SinkConfig) -> io::Result<Sink> {
        tokio::fs::create_dir_all(&config.mail_dir).await?;
        let existing = summaries(&config.mail_dir)?;
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            dir: config.mail_dir.clone(),
            delay: config.delay,
            ids: Mutex::new(existing.iter().map(|m| m.message_id.clone()).collect()),
            seq: AtomicU64::new(existing.len() as u64),
            deliveries: AtomicU64::new(0),
            stored: AtomicU64::new(existing.len() as u64),
            retransmissions: AtomicU64::new(0),
        });
        let permits = Arc::new(Semaphore::new(config.connections_max.max(1)));
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "SMTP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "Too many SMTP connections; closing one");
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    if let Err(e) = session(stream, &s).await {
                        tracing::debug!(%peer, error = %e, "SMTP session ended");
                    }
                    drop(permit);
                });
            }
        });
        tracing::info!(address = %addr, dir = %config.mail_dir.display(), "SMTP sink listening");
        Ok(Sink { addr, state })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The mail directory.
    pub fn dir(&self) -> &Path {
        &self.state.dir
    }

    /// Counters.
    pub fn stats(&self) -> SinkStats {
        SinkStats {
            deliveries: self.state.deliveries.load(Ordering::SeqCst),
            stored: self.state.stored.load(Ordering::SeqCst),
            retransmissions: self.state.retransmissions.load(Ordering::SeqCst),
        }
    }

    /// Stored messages, oldest first.
    pub fn mails(&self) -> io::Result<Vec<MailSummary>> {
        summaries(&self.state.dir)
    }
}

/// Summaries of the messages stored in a directory, oldest first.
pub fn summaries(dir: &Path) -> io::Result<Vec<MailSummary>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        out.push(MailSummary {
            file: path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            to: header(&text, "To"),
            subject: header(&text, "Subject"),
            message_id: header(&text, "Message-ID"),
        });
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(out)
}

fn lock(m: &Mutex<HashSet<String>>) -> MutexGuard<'_, HashSet<String>> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<usize> {
    buf.clear();
    let read = tokio::time::timeout(IDLE_TIMEOUT, reader.take(LINE_BYTES_MAX).read_until(b'\n', buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client idle"))??;
    if read > 0 && !buf.ends_with(b"\n") {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    Ok(read)
}

async fn session(stream: TcpStream, state: &State) -> io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    w.write_all(b"220 shop-sink ESMTP ready\r\n").await?;
    let mut line = Vec::new();
    let mut recipients: Vec<String> = Vec::new();
    let mut from: Option<String> = None;
    loop {
        if read_line(&mut reader, &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let verb = text.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-shop-sink\r\n250-8BITMIME\r\n250 SIZE 1048576\r\n",
            "HELO" => b"250 shop-sink\r\n",
            "MAIL" => {
                from = Some(text.clone());
                recipients.clear();
                b"250 OK\r\n"
            }
            "RCPT" if from.is_none() => b"503 MAIL first\r\n",
            "RCPT" if recipients.len() >= RECIPIENTS_MAX => b"452 too many recipients\r\n",
            "RCPT" => {
                recipients.push(text.clone());
                b"250 OK\r\n"
            }
            "DATA" if recipients.is_empty() => b"503 RCPT first\r\n",
            "DATA" => {
                w.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut message = Vec::new();
                let mut too_big = false;
                loop {
                    if read_line(&mut reader, &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    let body = if line.starts_with(b"..") {
                        &line[1..]
                    } else {
                        &line[..]
                    };
                    if message.len() + body.len() > MESSAGE_BYTES_MAX {
                        too_big = true;
                    } else {
                        message.extend_from_slice(body);
                    }
                }
                from = None;
                recipients.clear();
                if too_big {
                    b"552 message too large\r\n"
                } else {
                    if !state.delay.is_zero() {
                        tokio::time::sleep(state.delay).await;
                    }
                    store(state, &message).await?;
                    b"250 OK stored\r\n"
                }
            }
            "RSET" => {
                from = None;
                recipients.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                w.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        w.write_all(reply).await?;
    }
}

async fn store(state: &State, message: &[u8]) -> io::Result<()> {
    state.deliveries.fetch_add(1, Ordering::SeqCst);
    let text = String::from_utf8_lossy(message);
    let id = header(&text, "Message-ID");
    if !id.is_empty() && !lock(&state.ids).insert(id.clone()) {
        state.retransmissions.fetch_add(1, Ordering::SeqCst);
        tracing::info!(message_id = %id, "Received a retransmission of a stored message; kept the first copy");
        return Ok(());
    }
    let seq = state.seq.fetch_add(1, Ordering::SeqCst);
    let name = format!(
        "{:06}-{}.eml",
        seq,
        rivulet_sdk::event::rfc3339(now_ms()).replace(':', "")
    );
    let tmp = state.dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&tmp, message).await?;
    tokio::fs::rename(&tmp, state.dir.join(&name)).await?;
    state.stored.fetch_add(1, Ordering::SeqCst);
    tracing::info!(file = %name, subject = %header(&text, "Subject"), "Stored a message");
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
