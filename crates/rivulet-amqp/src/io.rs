//! The socket: a reader that yields frames within the negotiated limits, and a writer task
//! that drains the bounded outbound queue and sends heartbeats.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

/// The reading half of a connection, plain TCP or TLS.
pub type ReadHalf = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
/// The writing half of a connection, plain TCP or TLS.
pub type WriteHalf = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;
use tokio::sync::{mpsc, watch};

use crate::frame::{self, Frame, FrameError};

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The bytes are not valid framing.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// Nothing arrived within two heartbeat intervals.
    #[error("no frame for {0:?}: missed heartbeats")]
    Silent(Duration),
}

/// Frames from the socket.
pub struct Reader {
    half: ReadHalf,
    buf: BytesMut,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl Reader {
    /// Reads from `half`.
    pub fn new(half: ReadHalf) -> Reader {
        Reader {
            half,
            buf: BytesMut::with_capacity(64 * 1024),
        }
    }

    /// Reads exactly `n` bytes (the protocol header).
    pub async fn read_exact(&mut self, n: usize) -> std::io::Result<Bytes> {
        while self.buf.len() < n {
            if self.half.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// Reads and discards until the peer closes, for at most `limit`.
    pub async fn drain(&mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.buf.clear();
            match tokio::time::timeout_at(deadline, self.half.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => continue,
                _ => return,
            }
        }
    }

    /// The next frame already received, without reading the socket.
    pub fn buffered(&mut self, frame_max: u32) -> Result<Option<Frame>, FrameError> {
        frame::next_frame(&mut self.buf, frame_max)
    }

    /// The next frame; `Ok(None)` at end of stream. `silence` bounds the wait for bytes
    /// (two heartbeat intervals; `None`: no bound).
    pub async fn next(
        &mut self,
        frame_max: u32,
        silence: Option<Duration>,
    ) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(f) = frame::next_frame(&mut self.buf, frame_max)? {
                return Ok(Some(f));
            }
            let read = self.half.read_buf(&mut self.buf);
            let n = match silence {
                Some(limit) => tokio::time::timeout(limit, read)
                    .await
                    .map_err(|_| ReadError::Silent(limit))??,
                None => read.await?,
            };
            if n == 0 {
                return Ok(None);
            }
        }
    }
}

/// Bytes written before a flush when more frames are queued.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// Writes queued frames until the queue closes, sending a heartbeat when nothing else went
/// out for half the heartbeat interval (`heartbeat_s`; 0: none). Returns the write half,
/// still open.
pub async fn write_loop(
    half: WriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    mut heartbeat_s: watch::Receiver<u16>,
) -> WriteHalf {
    let mut w = BufWriter::with_capacity(WRITE_BATCH_BYTES, half);
    loop {
        let interval = match *heartbeat_s.borrow_and_update() {
            0 => Duration::from_secs(3600),
            s => Duration::from_millis(u64::from(s) * 500),
        };
        let next = tokio::select! {
            m = rx.recv() => m,
            r = heartbeat_s.changed() => {
                if r.is_err() { return w.into_inner(); }
                continue;
            }
            _ = tokio::time::sleep(interval) => {
                let mut beat = Vec::new();
                frame::put_heartbeat(&mut beat);
                Some(Bytes::from(beat))
            }
        };
        let Some(mut bytes) = next else {
            // No shutdown: after a close-ok the client closes first (some clients take an
            // end of stream that overtakes the close-ok for a broken connection).
            let _ = w.flush().await;
            return w.into_inner();
        };
        loop {
            if w.write_all(&bytes).await.is_err() {
                return w.into_inner();
            }
            match rx.try_recv() {
                Ok(more) => bytes = more,
                Err(_) => break,
            }
        }
        if w.flush().await.is_err() {
            return w.into_inner();
        }
    }
}
