//! A connection's two halves, over plain TCP or TLS. Plain connections send segment-file
//! slices with sendfile; TLS ones read them and write them through the encryption.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rivulet_tls::TlsStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// An accepted connection.
pub enum Accepted {
    /// Plain TCP.
    Plain(TcpStream),
    /// After a TLS handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

/// The reading half.
pub enum Reader {
    /// Plain TCP.
    Plain(OwnedReadHalf),
    /// TLS.
    Tls(tokio::io::ReadHalf<Box<TlsStream<TcpStream>>>),
}

/// The writing half.
pub enum Writer {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// TLS.
    Tls(tokio::io::WriteHalf<Box<TlsStream<TcpStream>>>),
}

impl Accepted {
    /// The common name of the client certificate presented in the TLS handshake, if any
    /// (with `--tls-client-ca` every TLS client presents a verified one).
    pub fn certificate_name(&self) -> Option<String> {
        match self {
            Accepted::Plain(_) => None,
            Accepted::Tls(s) => {
                let certificates = s.get_ref().1.peer_certificates()?;
                rivulet_tls::common_name(certificates.first()?)
            }
        }
    }

    /// Splits the connection.
    pub fn split(self) -> (Reader, Writer) {
        match self {
            Accepted::Plain(s) => {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (Reader::Plain(r), Writer::Plain(w))
            }
            Accepted::Tls(s) => {
                let _ = s.get_ref().0.set_nodelay(true);
                let (r, w) = tokio::io::split(s);
                (Reader::Tls(r), Writer::Tls(w))
            }
        }
    }
}

impl Writer {
    /// The socket, when bytes may go to it directly (sendfile): plain TCP only.
    pub fn socket(&self) -> Option<&TcpStream> {
        match self {
            Writer::Plain(w) => Some(w.as_ref()),
            Writer::Tls(_) => None,
        }
    }
}

impl AsyncRead for Reader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Plain(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Tls(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Plain(w) => Pin::new(w).poll_write(cx, buf),
            Writer::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Plain(w) => Pin::new(w).poll_flush(cx),
            Writer::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Plain(w) => Pin::new(w).poll_shutdown(cx),
            Writer::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
