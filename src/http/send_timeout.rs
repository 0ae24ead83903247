//! `--send-timeout`: a connection whose client takes no response bytes for
//! that long is closed (nginx's `send_timeout`).
//!
//! nginx sets its `send_timeout` "only between two successive write
//! operations, not for the transmission of the whole response": a client
//! that reads slowly but steadily is never cut off; one that stops reading
//! is, once it has taken no byte for that long while some wait to be sent.
//! Without such a bound a client that stops reading holds its connection
//! (its socket and buffered response) forever, and with `--threads N` the
//! worker thread that feeds the response too. RFC 9112 §9.5 leaves the
//! timeout to the server ("servers will usually have some timeout value
//! beyond which they will no longer maintain an inactive connection").
//!
//! [`SendTimeout`] wraps a connection's socket, below everything that writes
//! to it: ferrule's own exchange ([`super::h1`]), hyper, `sendfile(2)`
//! ([`super::sendfile`], whose [`super::sendfile::SendfileIo`] it wraps) and TLS
//! (it sits under rustls, so it sees the socket's writes, not rustls'
//! buffering). Theory of operation:
//!
//! 1. A write that completes while no wait runs is passed through: one test,
//!    no timer, no clock read, no system call (the fast path, nearly every
//!    write).
//! 2. A write, flush or shutdown that returns `Pending` (the socket's send
//!    buffer is full: `EAGAIN`) starts a wait: the timer is set to the
//!    timeout from now, and the socket is asked how many bytes it holds that
//!    the client has not taken (`SIOCOUTQ`: not yet acknowledged on TCP, not
//!    yet read on a Unix socket). The timer is allocated at the connection's
//!    first stall and reused after.
//! 3. While the wait runs, each `Pending` polls the timer too, so the
//!    connection's task wakes when it fires, and writes that complete count
//!    their bytes. A partial write is no proof the client reads (the kernel
//!    takes a few bytes into a full buffer now and then), and a stalled socket
//!    is writable again only once a third of its send buffer, which grows to
//!    megabytes, is free: seconds apart for a client that reads slowly.
//! 4. When the timer fires, the socket is asked again: if it holds fewer
//!    bytes than it held then plus those written since, the client took some,
//!    and the wait starts again from now. A client that reads a steady
//!    trickle is never cut off; one that stops is cut off between one and
//!    two timeouts after the last byte it took, and after one when it takes
//!    nothing. (A Unix socket counts in whole buffers of up to 64 KiB, not in
//!    bytes.)
//! 5. Otherwise the write fails with `TimedOut` (and so does any later
//!    stalled one): the task drops the connection, which closes the
//!    socket and drops the response body, so the application's iterable gets
//!    its `close()` and a worker thread waiting for room in the body's
//!    channel sees its send fail. The connection is reported once
//!    ([`Report`]).
//!
//! Reads pass through untouched: waiting for the client to *send* is the
//! other timeouts' (`--keep-alive`, `--header-timeout`, `--body-timeout`).

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::Peer;

/// Where a connection closed for its send timeout is reported: it is given a
/// line for the error log (the Python side writes it to `ferrule.error`).
#[derive(Clone)]
pub struct Report(Arc<dyn Fn(&str) + Send + Sync>);

impl Report {
    /// A report that hands each line to `log`.
    pub fn new(log: impl Fn(&str) + Send + Sync + 'static) -> Report {
        Report(Arc::new(log))
    }
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Report(..)")
    }
}

/// A connection's socket with the send timeout on its writes (module docs).
#[derive(Debug)]
pub struct SendTimeout<S> {
    io: S,
    /// The timeout; zero disables it.
    after: Duration,
    /// The client, for the report.
    peer: Peer,
    /// Taken when the connection is reported, so it is reported once.
    report: Option<Report>,
    /// The timer, from the connection's first stall on.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether a wait runs (from the first stall on: the next stall that
    /// finds the timer fired checks the client's progress, and starts anew).
    waiting: bool,
    /// The bytes the socket held, not taken by the client, when the current
    /// wait started.
    held: usize,
    /// The bytes written since the current wait started.
    written: usize,
}

impl<S: AsRawFd> SendTimeout<S> {
    /// `io`, closed once its client takes no bytes for `after` (zero: never)
    /// while some wait to be sent; `report` is told then.
    pub fn new(io: S, after: Duration, peer: Peer, report: Option<Report>) -> SendTimeout<S> {
        SendTimeout {
            io,
            after,
            peer,
            report,
            timer: None,
            waiting: false,
            held: 0,
            written: 0,
        }
    }

    /// A write's outcome: one that completed is counted while a wait runs;
    /// one that stalled waits (module docs, points 1 to 3).
    #[inline]
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(done) = &poll {
            if self.waiting {
                self.written += done.as_ref().map_or(0, |n| *n);
            }
            return poll;
        }
        self.stalled(cx).map(Err)
    }

    /// A flush's or shutdown's outcome: one that stalled waits, as a write
    /// does.
    #[inline]
    fn flushed(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<()>>,
    ) -> Poll<io::Result<()>> {
        if poll.is_ready() {
            return poll;
        }
        self.stalled(cx).map(Err)
    }

    /// The socket could not take bytes: arm the timer if it is not, and
    /// fail once it has fired with nothing taken meanwhile (module docs).
    #[cold]
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if self.after.is_zero() {
            return Poll::Pending;
        }
        if !self.waiting {
            let deadline = Instant::now() + self.after;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.held = unsent(&self.io);
            self.written = 0;
            self.waiting = true;
        }
        let timer = self.timer.as_mut().expect("set above");
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = unsent(&self.io);
            if now >= self.held.saturating_add(self.written) {
                break;
            }
            // The client took bytes since: wait again, from now.
            self.held = now;
            self.written = 0;
            timer.as_mut().reset(Instant::now() + self.after);
        }
        if let Some(report) = self.report.take() {
            let client = match self.peer {
                Peer::Tcp(addr) => addr.to_string(),
                Peer::Unix => "a Unix-socket client".to_owned(),
            };
            (report.0)(&format!(
                "{client} took no response bytes for {} s (--send-timeout): closing the connection",
                self.after.as_secs_f64()
            ));
        }
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took no response bytes within --send-timeout",
        ))
    }
}

/// Bytes written to `socket` that its peer has not taken: not yet
/// acknowledged (TCP) or not yet read (a Unix socket); 0 if it cannot tell.
fn unsent(socket: &impl AsRawFd) -> usize {
    let mut bytes: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ's number) writes one int through the pointer,
    // which points to one; the descriptor is the caller's, open while borrowed.
    let done = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut bytes) };
    if done == 0 {
        usize::try_from(bytes).unwrap_or(0)
    } else {
        0
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + AsRawFd + Unpin> AsyncWrite for SendTimeout<S> {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(cx, poll)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(cx, poll)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.flushed(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.flushed(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    /// More than a Unix socket pair buffers, so a write of it stalls until
    /// the other end reads.
    const MUCH: usize = 4 << 20;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    }

    /// Our end of a socket pair, timed out after `after`; and the client's.
    fn pair(after: Duration, report: Option<Report>) -> (SendTimeout<UnixStream>, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let peer = Peer::Tcp("127.0.0.1:4000".parse().unwrap());
        (SendTimeout::new(ours, after, peer, report), theirs)
    }

    #[test]
    fn a_client_that_takes_nothing_is_timed_out_and_reported_once() {
        runtime().block_on(async {
            let lines = Arc::new(Mutex::new(Vec::<String>::new()));
            let seen = lines.clone();
            let report = Report::new(move |line| seen.lock().unwrap().push(line.to_owned()));
            let (mut io, _theirs) = pair(Duration::from_secs(2), Some(report));
            let start = Instant::now();
            let err = io.write_all(&vec![b'x'; MUCH]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert_eq!(start.elapsed(), Duration::from_secs(2));
            // A later stalled write fails at once; the report is not repeated.
            let err = io.write_all(&vec![b'x'; MUCH]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert_eq!(start.elapsed(), Duration::from_secs(2));
            let lines = lines.lock().unwrap();
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].starts_with("127.0.0.1:4000 took no response bytes for 2 s"));
        });
    }

    #[test]
    fn a_steady_reader_slower_than_the_writer_wakes_is_not_cut_off() {
        // 64 KiB every 2 s against a timeout of 3 s: the socket is writable
        // again only once three quarters of its buffer are free (about 6 s),
        // but the client takes bytes all along. (A Unix socket counts what
        // its peer has not read in whole buffers of up to 64 KiB: a client
        // that reads less than one in a timeout looks stalled.)
        runtime().block_on(async {
            let (mut io, mut theirs) = pair(Duration::from_secs(3), None);
            let total = 2 << 20;
            let reader = tokio::spawn(async move {
                let mut got = Vec::with_capacity(total);
                let mut piece = vec![0u8; 64 * 1024];
                while got.len() < total {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let n = theirs.read(&mut piece).await.unwrap();
                    got.extend_from_slice(&piece[..n]);
                }
                got
            });
            let start = Instant::now();
            io.write_all(&vec![b'y'; total]).await.unwrap();
            assert!(start.elapsed() > Duration::from_secs(30));
            assert_eq!(reader.await.unwrap(), vec![b'y'; total]);
        });
    }

    #[test]
    fn zero_disables_it_and_a_write_that_completes_arms_nothing() {
        runtime().block_on(async {
            let (mut io, _theirs) = pair(Duration::ZERO, None);
            let data = vec![b'z'; MUCH];
            let write = io.write_all(&data);
            let waited = tokio::time::timeout(Duration::from_secs(3600), write).await;
            assert!(waited.is_err(), "still waiting after an hour");
            let (mut io, _theirs) = pair(Duration::from_secs(1), None);
            io.write_all(&[b'z'; 1024]).await.unwrap();
            assert!(io.timer.is_none());
        });
    }
}
