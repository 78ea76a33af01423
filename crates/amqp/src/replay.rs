//! The protocol header a client opens with, read ahead: clients that authenticate with SASL
//! send `AMQP 3 1 0 0` first, those that go straight to claims-based security (the Node
//! service SDK's rhea) send `AMQP 0 1 0 0`. The connection acceptor is chosen by it, then
//! reads the header again from [`Replay`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The SASL layer's protocol id, the fifth byte of the header.
pub const SASL_PROTOCOL: u8 = 3;

/// Reads the 8-byte protocol header.
pub async fn read_header<Io: AsyncRead + Unpin>(io: &mut Io) -> io::Result<[u8; 8]> {
    let mut header = [0u8; 8];
    io.read_exact(&mut header).await?;
    Ok(header)
}

/// A stream that yields `prefix` before what `inner` reads.
#[derive(Debug)]
pub struct Replay<Io> {
    prefix: Vec<u8>,
    inner: Io,
}

impl<Io> Replay<Io> {
    pub fn new(prefix: &[u8], inner: Io) -> Self {
        Replay {
            prefix: prefix.to_vec(),
            inner,
        }
    }
}

impl<Io: AsyncRead + Unpin> AsyncRead for Replay<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.drain(..n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Replay<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_header_is_read_again() {
        let mut source: &[u8] = b"AMQP\x00\x01\x00\x00rest";
        let header = read_header(&mut source).await.unwrap();
        assert_eq!(header[4], 0);
        let mut replay = Replay::new(&header, source);
        let mut all = Vec::new();
        replay.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"AMQP\x00\x01\x00\x00rest");
    }
}
