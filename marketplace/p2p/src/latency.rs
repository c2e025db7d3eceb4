//! A one-way delay on every frame of an in-process connection, to emulate wide-area links.
//!
//! The wrapper sits directly on the memory transport's raw channel, below the security and muxer
//! upgrades, so handshakes pay the delay too, as they do on a real link. Bytes are stamped when
//! they arrive and handed to the reader once the delay has passed; writes go out at once. Each
//! direction of a connection is delayed by its reader, so a round trip costs twice the delay.
//!
//! The delay is a [`FrameDelay`] handle shared by every connection of a node, so a network built
//! once can be measured with and without wide-area links (benches build a large network once and
//! switch its links to 20 ms, instead of building a second one).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

/// Most bytes buffered ahead of the reader; past this the wrapper stops reading from the inner
/// stream, so a slow reader still exerts back-pressure.
const MAX_BUFFERED: usize = 1 << 20;

/// The one-way delay of a node's in-process links, changeable while connections are open. Clones
/// share the value. A change applies to bytes arriving after it; bytes already queued keep their
/// delivery time, so nothing is reordered.
#[derive(Debug, Clone, Default)]
pub struct FrameDelay(Arc<AtomicU64>);

impl FrameDelay {
    pub fn new(delay: Duration) -> FrameDelay {
        let d = FrameDelay::default();
        d.set(delay);
        d
    }

    pub fn set(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.0.store(nanos, Ordering::Relaxed);
    }

    pub fn get(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

pub struct Delayed<S> {
    inner: S,
    delay: FrameDelay,
    queue: VecDeque<(Instant, Vec<u8>, usize)>,
    buffered: usize,
    timer: Option<Pin<Box<Sleep>>>,
    eof: bool,
}

impl<S> Delayed<S> {
    pub fn new(inner: S, delay: FrameDelay) -> Delayed<S> {
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
        let delay = this.delay.get();
        // Without a delay, bytes pass straight through, once the ones queued under an earlier
        // delay have been delivered.
        if delay.is_zero() && this.queue.is_empty() {
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
                    this.queue.push_back((Instant::now() + delay, chunk, 0));
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
    use futures::{AsyncReadExt, StreamExt};

    #[tokio::test]
    async fn bytes_arrive_after_the_delay_and_intact() {
        let data: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        let delay = Duration::from_millis(30);
        let mut reader = Delayed::new(
            futures::io::Cursor::new(data.clone()),
            FrameDelay::new(delay),
        );
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

    #[tokio::test]
    async fn a_delay_set_later_applies_to_later_bytes_and_nothing_is_reordered() {
        use futures::TryStreamExt;
        let (tx, rx) = futures::channel::mpsc::unbounded::<Vec<u8>>();
        let stream = rx.map(Ok::<_, io::Error>).into_async_read();
        let handle = FrameDelay::default();
        let mut reader = Delayed::new(stream, handle.clone());
        let mut got = [0u8; 5];

        tx.unbounded_send(b"fast ".to_vec()).unwrap();
        reader.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"fast ");

        handle.set(Duration::from_millis(30));
        tx.unbounded_send(b"slow ".to_vec()).unwrap();
        let start = Instant::now();
        reader.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"slow ");
        assert!(start.elapsed() >= Duration::from_millis(30));

        // Bytes queued under the delay come out before bytes that arrive after it is lifted.
        tx.unbounded_send(b"queued ".to_vec()).unwrap();
        let mut probe = [0u8; 16];
        assert!(futures::poll!(reader.read(&mut probe)).is_pending());
        handle.set(Duration::ZERO);
        tx.unbounded_send(b"after".to_vec()).unwrap();
        drop(tx);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"queued after");
    }
}
