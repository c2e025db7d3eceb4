//! A one-way delay on every frame of an in-process connection, to emulate wide-area links.
//!
//! The wrapper sits directly on the memory transport's raw channel, below the security and muxer
//! upgrades, so handshakes pay the delay too, as they do on a real link. Bytes are stamped when
//! they arrive and handed to the reader once the delay has passed; writes go out at once. Each
//! direction of a connection is delayed by its reader, so a round trip costs twice the delay.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

/// Most bytes buffered ahead of the reader; past this the wrapper stops reading from the inner
/// stream, so a slow reader still exerts back-pressure.
const MAX_BUFFERED: usize = 1 << 20;

pub struct Delayed<S> {
    inner: S,
    delay: Duration,
    queue: VecDeque<(Instant, Vec<u8>, usize)>,
    buffered: usize,
    timer: Option<Pin<Box<Sleep>>>,
    eof: bool,
}

impl<S> Delayed<S> {
    pub fn new(inner: S, delay: Duration) -> Delayed<S> {
        Delayed {
            inner,
            delay,
            queue: VecDeque::new(),
            buffered: 0,
            timer: None,
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Delayed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.delay.is_zero() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // Take in whatever has arrived, stamping it with its delivery time.
        while !this.eof && this.buffered < MAX_BUFFERED {
            let mut chunk = vec![0u8; 16 * 1024];
            match Pin::new(&mut this.inner).poll_read(cx, &mut chunk) {
                Poll::Ready(Ok(0)) => this.eof = true,
                Poll::Ready(Ok(n)) => {
                    chunk.truncate(n);
                    this.buffered += n;
                    this.queue
                        .push_back((Instant::now() + this.delay, chunk, 0));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        loop {
            let Some((due, _, _)) = this.queue.front() else {
                return if this.eof {
                    Poll::Ready(Ok(0))
                } else {
                    Poll::Pending
                };
            };
            let due = *due;
            if due <= Instant::now() {
                this.timer = None;
                let (_, data, offset) = this.queue.front_mut().expect("checked above");
                let n = (data.len() - *offset).min(buf.len());
                buf[..n].copy_from_slice(&data[*offset..*offset + n]);
                *offset += n;
                if *offset == data.len() {
                    this.queue.pop_front();
                }
                this.buffered -= n;
                return Poll::Ready(Ok(n));
            }
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Delayed<S> {
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
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::AsyncReadExt;

    #[tokio::test]
    async fn bytes_arrive_after_the_delay_and_intact() {
        let data: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        let delay = Duration::from_millis(30);
        let mut reader = Delayed::new(futures::io::Cursor::new(data.clone()), delay);
        let start = Instant::now();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, data);
        assert!(
            start.elapsed() >= delay,
            "delivered after {:?}",
            start.elapsed()
        );
    }
}
