//! A read buffer between a TCP socket and TLS that holds memory only while data flows.
//!
//! rustls pulls ciphertext from its transport at most 4 KiB at a time (its deframer grows
//! its buffer by 4 KiB per read and shrinks it whenever it is drained), so a bulk transfer
//! through TLS directly on a socket costs one `recv` system call per 4 KiB. Below TLS,
//! this wrapper reads up to [`READ_BUFFER`] bytes per call and hands them out from memory.
//!
//! Unlike `tokio::io::BufReader`, the buffer is allocated only when the socket is readable
//! and released as soon as it has been drained by a read that did not fill it (the peer
//! paused), so an idle tunnel — the management plane holds thousands — keeps no buffer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Largest read from the socket.
pub const READ_BUFFER: usize = 64 * 1024;

/// A [`TcpStream`] whose reads go through a transient buffer; writes pass straight through.
#[derive(Debug)]
pub struct ReadBuffered {
    inner: TcpStream,
    buf: BytesMut,
    /// The last fill used the whole buffer: more is probably queued, keep the memory.
    busy: bool,
}

impl ReadBuffered {
    /// Wraps `inner`.
    pub fn new(inner: TcpStream) -> Self {
        ReadBuffered {
            inner,
            buf: BytesMut::new(),
            busy: false,
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    /// Bytes currently held (for tests).
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn release(&mut self) {
        self.buf = BytesMut::new();
        self.busy = false;
    }
}

impl AsyncRead for ReadBuffered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            if dst.remaining() >= READ_BUFFER {
                this.release();
                return Pin::new(&mut this.inner).poll_read(cx, dst);
            }
            loop {
                if this.inner.poll_read_ready(cx)?.is_pending() {
                    this.release();
                    return Poll::Pending;
                }
                this.buf.clear();
                this.buf.reserve(READ_BUFFER);
                match this.inner.try_read_buf(&mut this.buf) {
                    Ok(0) => {
                        this.release();
                        return Poll::Ready(Ok(()));
                    }
                    Ok(n) => {
                        this.busy = n >= READ_BUFFER;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => {
                        this.release();
                        return Poll::Ready(Err(e));
                    }
                }
            }
        }
        let n = dst.remaining().min(this.buf.len());
        dst.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        if this.buf.is_empty() && !this.busy {
            this.release();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ReadBuffered {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.get_mut().inner).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (ReadBuffered, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (ReadBuffered::new(b.unwrap().0), a.unwrap())
    }

    #[tokio::test]
    async fn small_reads_see_every_byte_in_order_and_memory_is_released() {
        let (mut r, mut w) = pair().await;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w.flush().await.unwrap();
            w
        });
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while got.len() < data.len() {
            let n = r.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, data);
        let mut w = writer.await.unwrap();
        // Idle again: a pending read holds no buffer.
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), r.read(&mut chunk));
        assert!(pending.await.is_err());
        assert_eq!(r.buffered_capacity(), 0);
        // Writes pass through; end of stream is reported.
        r.write_all(b"pong").await.unwrap();
        let mut back = [0u8; 4];
        w.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"pong");
        drop(w);
        assert_eq!(r.read(&mut chunk).await.unwrap(), 0);
    }
}
