//! Zero-copy file bodies: `sendfile(2)` underneath hyper, on plain sockets.
//!
//! hyper owns a connection's writes: it queues the head and the body's
//! [`Bytes`] and flushes them with one vectored write per round. A file body
//! sent that way would have to be read into memory first. Instead:
//!
//! 1. A [`FileBody`] yields *placeholder* chunks: [`Bytes`] whose memory is
//!    `ZEROS`, a static region that is never written (it lives in `.bss`, so
//!    it costs address space but no memory). For each chunk it first records a
//!    `Segment` (file, offset, length) in the connection's
//!    [`SendfileQueue`].
//! 2. hyper queues those chunks without copying them (its "queue" write
//!    strategy, used when the IO is vectored, which [`SendfileIo`] always is;
//!    the connection's builder also asks for it explicitly) and hands them
//!    back as `IoSlice`s to [`SendfileIo::poll_write_vectored`].
//! 3. [`SendfileIo`] writes the slices before the first placeholder with
//!    `sendmsg` (with `MSG_MORE` on TCP, so the head and the file's first bytes
//!    can share a packet), and the placeholder with `sendfile(2)` from the
//!    front segment of the queue. The file offset comes from the slice's
//!    address: a placeholder that hyper has advanced by `k` bytes starts `k`
//!    bytes into `ZEROS`, so partial writes need no bookkeeping of ours.
//! 4. It returns the bytes really written, like any write: hyper advances its
//!    buffers by exactly that, and calls again for the rest. A segment leaves
//!    the queue once its placeholder was written to its end.
//!
//! Invariants:
//!
//! - Placeholders are only made for connections whose IO is a
//!   [`SendfileIo`] straight on the socket (plain TCP, Unix): nothing above
//!   the socket ever reads their bytes. TLS connections get no queue, so the
//!   application side keeps reading the file into real buffers for them.
//! - hyper writes the chunks of one response in order, and writes a new head
//!   only after everything queued before it was flushed. So within a body the
//!   queue's order is the placeholders' order, and a body's first segment may
//!   clear whatever an earlier body left behind (a placeholder hyper dropped
//!   when it cut a chunk to a shorter `Content-Length`).
//! - A placeholder without a matching segment is an error that closes the
//!   connection: zero bytes never go out in place of a file's.
//! - `sendfile` returning 0 before the segment's end means the file shrank
//!   after its size was taken: an error, so the connection closes before the
//!   declared length and the client sees a truncated response.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;

use super::BodyError;

/// Most bytes one placeholder chunk stands for: 8 MiB.
///
/// hyper flushes a chunk this large before it asks the body for the next one
/// (it is above its buffer limit), so one chunk per file of up to 8 MiB.
pub const SEGMENT_MAX: usize = 8 << 20;

/// The placeholder region: zeroed, never written, never read.
///
/// The `UnsafeCell` makes the static writable in the eyes of the linker, which
/// puts a zeroed writable static in `.bss` (no bytes in the shared object, no
/// memory until a page is touched); an immutable one would go to `.rodata`
/// and add 8 MiB to the file.
struct Zeros(UnsafeCell<[u8; SEGMENT_MAX]>);

// SAFETY: nothing ever writes through the cell (see `zeros`), so sharing it
// between threads is sharing an immutable array.
unsafe impl Sync for Zeros {}

static ZEROS: Zeros = Zeros(UnsafeCell::new([0; SEGMENT_MAX]));

/// The placeholder region as a slice.
fn zeros() -> &'static [u8] {
    // SAFETY: the cell is never written through, so a shared reference to it
    // is valid for the whole program.
    unsafe { &*ZEROS.0.get() }
}

/// A placeholder chunk of `len` bytes (at most [`SEGMENT_MAX`]).
fn placeholder(len: usize) -> Bytes {
    Bytes::from_static(&zeros()[..len])
}

/// Where a non-empty `slice` starts inside the placeholder region, if it lies
/// wholly inside it.
fn placeholder_offset(slice: &[u8]) -> Option<usize> {
    let base = zeros().as_ptr() as usize;
    let start = slice.as_ptr() as usize;
    let inside = !slice.is_empty() && start >= base && start + slice.len() <= base + SEGMENT_MAX;
    inside.then(|| start - base)
}

/// What one placeholder chunk stands for.
#[derive(Debug)]
struct Segment {
    file: Arc<File>,
    /// File offset of the placeholder's first byte.
    offset: u64,
    /// Bytes of the placeholder (and of the file from `offset`).
    len: usize,
}

/// One connection's file segments, in the order hyper will write their
/// placeholders (module docs).
///
/// Shared by the connection's [`SendfileIo`] and the [`FileBody`]s of its
/// responses; both are polled by the connection's task, so the lock is never
/// contended.
#[derive(Debug, Default)]
pub struct SendfileQueue {
    segments: Mutex<VecDeque<Segment>>,
}

impl SendfileQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Segment>> {
        self.segments.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record the segment behind the placeholder about to be yielded;
    /// `first` (a body's first chunk) drops what earlier bodies left.
    fn push(&self, segment: Segment, first: bool) {
        let mut segments = self.lock();
        if first {
            segments.clear();
        }
        segments.push_back(segment);
    }

    /// The file and file offset behind a placeholder slice that starts `at`
    /// bytes into the region and is `len` bytes long.
    ///
    /// # Errors
    ///
    /// `InvalidData` when no segment matches: the queue is out of step with
    /// hyper's buffers, and the connection must close.
    fn locate(&self, at: usize, len: usize) -> io::Result<(Arc<File>, u64)> {
        let segments = self.lock();
        match segments.front() {
            Some(segment) if at + len <= segment.len => {
                Ok((segment.file.clone(), segment.offset + at as u64))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a file placeholder without its segment (sendfile queue out of step)",
            )),
        }
    }

    /// The front segment's placeholder was written to its end.
    fn pop(&self) {
        self.lock().pop_front();
    }

    /// Segments waiting (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A response body that is a regular file, sent with `sendfile(2)` by the
/// connection's [`SendfileIo`] (module docs).
///
/// It yields placeholder chunks of up to [`SEGMENT_MAX`] bytes, `length`
/// bytes in all. With `short` (the application declared a longer
/// `Content-Length` than the file has), it then fails like a
/// [`super::ResponseBody::Stream`] that received an error: it never ends, and
/// the connection's abort signal closes the connection.
#[derive(Debug)]
pub struct FileBody {
    file: Arc<File>,
    offset: u64,
    left: u64,
    short: bool,
    started: bool,
    aborted: bool,
    queue: Arc<SendfileQueue>,
    abort: Arc<Notify>,
}

impl FileBody {
    /// `length` bytes of `file` from `offset`, through the connection's
    /// `queue`; `abort` is the connection's (see [`crate::http::Job::abort`]).
    pub fn new(
        file: File,
        offset: u64,
        length: u64,
        short: bool,
        queue: Arc<SendfileQueue>,
        abort: Arc<Notify>,
    ) -> FileBody {
        FileBody {
            file: Arc::new(file),
            offset,
            left: length,
            short,
            started: false,
            aborted: false,
            queue,
            abort,
        }
    }

    /// The next placeholder chunk, the end, or (when `short`, after the last
    /// chunk) a failure: the connection must close before the declared length.
    pub(crate) fn poll_chunk(&mut self) -> Poll<Option<Result<Bytes, BodyError>>> {
        if self.left == 0 {
            if !self.short {
                return Poll::Ready(None);
            }
            if self.aborted {
                return Poll::Pending;
            }
            self.aborted = true;
            return Poll::Ready(Some(Err(BodyError(
                "the file is shorter than its Content-Length".into(),
            ))));
        }
        let len = usize::try_from(self.left)
            .unwrap_or(SEGMENT_MAX)
            .min(SEGMENT_MAX);
        let segment = Segment {
            file: self.file.clone(),
            offset: self.offset,
            len,
        };
        self.queue.push(segment, !self.started);
        self.started = true;
        self.offset += len as u64;
        self.left -= len as u64;
        Poll::Ready(Some(Ok(placeholder(len))))
    }

    /// Wake the connection task to close the socket (hyper's path, after
    /// [`FileBody::poll_chunk`] failed).
    pub(crate) fn abort(&self) {
        self.abort.notify_one();
    }

    /// Whether the last chunk has been yielded and the body ends cleanly.
    pub(crate) fn is_end_stream(&self) -> bool {
        self.left == 0 && !self.short
    }
}

/// A socket that [`SendfileIo`] can write to directly: a non-blocking file
/// descriptor with tokio's write readiness.
pub trait Socket: AsyncRead + AsyncWrite + AsRawFd + Unpin {
    /// Flags for the `sendmsg` of the bytes before a file: `MSG_MORE` where
    /// the protocol coalesces (TCP), else none.
    const MORE: libc::c_int;

    /// Whether the socket is TCP, where `UNSENT_LOWAT` applies.
    const TCP: bool;

    /// Wait until the socket may be writable (tokio's `poll_write_ready`).
    ///
    /// # Errors
    ///
    /// As tokio's: the reactor is gone.
    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Run a non-blocking write syscall; `WouldBlock` clears the readiness
    /// (tokio's `try_io` with `Interest::WRITABLE`).
    ///
    /// # Errors
    ///
    /// The syscall's.
    fn try_write_with(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize>;
}

impl Socket for TcpStream {
    const MORE: libc::c_int = libc::MSG_MORE;
    const TCP: bool = true;

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_ready(cx)
    }

    fn try_write_with(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize> {
        self.try_io(Interest::WRITABLE, f)
    }
}

impl Socket for UnixStream {
    const MORE: libc::c_int = 0;
    const TCP: bool = false;

    fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_ready(cx)
    }

    fn try_write_with(&self, f: &mut dyn FnMut() -> io::Result<usize>) -> io::Result<usize> {
        self.try_io(Interest::WRITABLE, f)
    }
}

/// Most bytes of a file a TCP socket holds unsent once a `sendfile` call
/// could not take a whole segment (`TCP_NOTSENT_LOWAT`, Linux 3.12): 16 KiB.
///
/// Without it the kernel queues file pages up to the send buffer (up to
/// `tcp_wmem`'s 4 MiB), beyond what the congestion window lets go out; with
/// it a `sendfile` call returns once that much waits unsent, and the socket
/// is writable again when less does. The bytes in flight are not limited,
/// only the queue behind them, so a slow download holds 16 KiB of socket
/// memory beyond its window instead of up to 4 MiB. With 64 connections each
/// fetching a 1 MiB file over loopback (`benchmarks/`, `file`, ten
/// interleaved runs each) the median rate rose from 2,704 to 3,557 requests/s
/// (see `benchmarks/README.md`). Set only on a connection whose file did not
/// fit at once, so small files never pay the system call.
const UNSENT_LOWAT: libc::c_int = 16 * 1024;

/// A plain socket whose writes turn file placeholders into `sendfile(2)`
/// (module docs). Reads, flushes and shutdown pass straight through.
#[derive(Debug)]
pub struct SendfileIo<S> {
    inner: S,
    queue: Arc<SendfileQueue>,
    /// Whether [`UNSENT_LOWAT`] was set on the socket.
    lowat: std::sync::atomic::AtomicBool,
}

impl<S: AsRawFd> AsRawFd for SendfileIo<S> {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.as_raw_fd()
    }
}

impl<S: Socket> SendfileIo<S> {
    /// Wrap `inner`; the queue is for the [`FileBody`]s of its responses.
    pub fn new(inner: S) -> (SendfileIo<S>, Arc<SendfileQueue>) {
        let queue = Arc::new(SendfileQueue::default());
        let io = SendfileIo {
            inner,
            queue: queue.clone(),
            lowat: std::sync::atomic::AtomicBool::new(false),
        };
        (io, queue)
    }

    /// Run `syscall` once the socket is writable; `Pending` while it is not.
    fn poll_syscall(
        &self,
        cx: &mut Context<'_>,
        mut syscall: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.inner.poll_writable(cx))?;
            match self.inner.try_write_with(&mut syscall) {
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                result => return Poll::Ready(result),
            }
        }
    }

    /// Write `bufs` (no placeholders among them) with one `sendmsg`, telling
    /// TCP that more follows.
    fn poll_send_more(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let fd = self.inner.as_raw_fd();
        self.poll_syscall(cx, || {
            // SAFETY: an all-zero msghdr is valid (no name, no control data).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            // IoSlice is ABI-compatible with iovec on Unix (std guarantees it);
            // sendmsg only reads through the pointer.
            msg.msg_iov = bufs.as_ptr().cast_mut().cast::<libc::iovec>();
            msg.msg_iovlen = bufs.len().min(1024) as _;
            // SAFETY: `fd` is our open socket and `msg` describes live buffers.
            let n = unsafe { libc::sendmsg(fd, &msg, S::MORE | libc::MSG_NOSIGNAL) };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        })
    }

    /// Set [`UNSENT_LOWAT`] on the (TCP) socket. A failure (a kernel
    /// without the option) leaves the socket as it was.
    fn limit_unsent(&self) {
        let value = UNSENT_LOWAT;
        // SAFETY: the socket is ours and open; the option reads one c_int.
        unsafe {
            libc::setsockopt(
                self.inner.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                std::ptr::from_ref(&value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    /// Send the file bytes behind the placeholder slice at `at`, `len` bytes.
    ///
    /// # Errors
    ///
    /// The socket's; `InvalidData` for a placeholder with no segment;
    /// `UnexpectedEof` when the file ends before the segment does.
    fn poll_sendfile(
        &self,
        cx: &mut Context<'_>,
        at: usize,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let (file, offset) = self.queue.locate(at, len)?;
        let Ok(mut offset) = libc::off_t::try_from(offset) else {
            return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
        };
        let (out, from) = (self.inner.as_raw_fd(), file.as_raw_fd());
        let n = ready!(self.poll_syscall(cx, || {
            // SAFETY: both descriptors are open (the socket is ours, the file
            // is held by `file`), and `offset` is a live off_t.
            let n = unsafe { libc::sendfile(out, from, &mut offset, len) };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        }))?;
        if n == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while being sent",
            )));
        }
        if n == len {
            self.queue.pop();
        } else if S::TCP && !self.lowat.swap(true, std::sync::atomic::Ordering::Relaxed) {
            self.limit_unsent();
        }
        Poll::Ready(Ok(n))
    }
}

impl<S: Socket> AsyncRead for SendfileIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: Socket> AsyncWrite for SendfileIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match placeholder_offset(data) {
            Some(at) => self.poll_sendfile(cx, at, data.len()),
            None => Pin::new(&mut self.inner).poll_write(cx, data),
        }
    }

    /// Write `bufs` up to and including the first placeholder (module docs,
    /// point 3): returns the bytes written, fewer than all of `bufs` whenever
    /// the socket took less or a placeholder had slices after it.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let found = bufs
            .iter()
            .enumerate()
            .find_map(|(i, buf)| placeholder_offset(buf).map(|at| (i, at)));
        let Some((index, at)) = found else {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        };
        let before = &bufs[..index];
        let want: usize = before.iter().map(|buf| buf.len()).sum();
        let mut written = 0;
        if want > 0 {
            written = ready!(self.poll_send_more(cx, before))?;
            if written < want {
                return Poll::Ready(Ok(written));
            }
        }
        match self.poll_sendfile(cx, at, bufs[index].len()) {
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(written + n)),
            Poll::Ready(Err(err)) if written == 0 => Poll::Ready(Err(err)),
            Poll::Pending if written == 0 => Poll::Pending,
            // What was written counts; the wait or the error comes back on
            // the next call, which starts at the placeholder.
            Poll::Ready(Err(_)) | Poll::Pending => Poll::Ready(Ok(written)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
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
    use std::io::Read;

    fn temp_file(data: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!(
            "ferrule-sendfile-{}-{}",
            std::process::id(),
            data.len()
        ));
        std::fs::write(&path, data).unwrap();
        let file = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    #[test]
    fn placeholders_are_recognised_by_address_only() {
        let chunk = placeholder(100);
        assert_eq!(placeholder_offset(&chunk), Some(0));
        assert_eq!(placeholder_offset(&chunk[10..]), Some(10));
        assert_eq!(placeholder_offset(&chunk[..0]), None);
        assert_eq!(placeholder_offset(&[0u8; 100]), None);
        assert_eq!(placeholder_offset(b"head"), None);
    }

    #[test]
    fn a_body_yields_segments_then_ends() {
        let queue = Arc::new(SendfileQueue::default());
        let abort = Arc::new(Notify::new());
        let length = SEGMENT_MAX as u64 + 3;
        let mut body = FileBody::new(temp_file(b"x"), 5, length, false, queue.clone(), abort);
        let mut sizes = Vec::new();
        while let Poll::Ready(Some(Ok(chunk))) = body.poll_chunk() {
            sizes.push(chunk.len());
        }
        assert_eq!(sizes, vec![SEGMENT_MAX, 3]);
        assert!(body.is_end_stream());
        assert_eq!(queue.len(), 2);
        let (_, offset) = queue.locate(0, SEGMENT_MAX).unwrap();
        assert_eq!(offset, 5);
        queue.pop();
        let (_, offset) = queue.locate(1, 2).unwrap();
        assert_eq!(offset, 5 + SEGMENT_MAX as u64 + 1);
        assert!(queue.locate(0, 4).is_err(), "longer than the segment");
    }

    #[test]
    fn a_new_body_drops_segments_left_behind() {
        let queue = Arc::new(SendfileQueue::default());
        let abort = Arc::new(Notify::new());
        let mut old = FileBody::new(temp_file(b"a"), 0, 10, false, queue.clone(), abort.clone());
        let _ = old.poll_chunk();
        let mut new = FileBody::new(temp_file(b"b"), 7, 10, false, queue.clone(), abort);
        let _ = new.poll_chunk();
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.locate(0, 10).unwrap().1, 7);
    }

    #[test]
    fn a_short_body_fails_after_its_last_chunk() {
        let queue = Arc::new(SendfileQueue::default());
        let abort = Arc::new(Notify::new());
        let mut body = FileBody::new(temp_file(b"abc"), 0, 3, true, queue, abort);
        assert!(matches!(body.poll_chunk(), Poll::Ready(Some(Ok(_)))));
        assert!(!body.is_end_stream());
        assert!(matches!(body.poll_chunk(), Poll::Ready(Some(Err(_)))));
        assert!(body.poll_chunk().is_pending(), "nothing after the failure");
    }

    /// Through a real socket pair: a head, a partial file from an offset, and
    /// what comes after it, with a placeholder the size of the whole segment.
    #[test]
    fn vectored_writes_send_the_file_bytes() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).unwrap();
            got
        });
        let file = temp_file(&data);
        runtime.block_on(async move {
            let (mut io, queue) = SendfileIo::new(UnixStream::from_std(ours).unwrap());
            let abort = Arc::new(Notify::new());
            let mut body = FileBody::new(file, 1000, 150_000, false, queue, abort);
            let Poll::Ready(Some(Ok(mut chunk))) = body.poll_chunk() else {
                panic!("no chunk")
            };
            let mut head: &[u8] = b"HEAD\r\n";
            let mut tail: &[u8] = b"TAIL";
            use bytes::Buf;
            while head.has_remaining() || chunk.has_remaining() || tail.has_remaining() {
                let bufs = [IoSlice::new(head), IoSlice::new(&chunk), IoSlice::new(tail)];
                let n = std::future::poll_fn(|cx| Pin::new(&mut io).poll_write_vectored(cx, &bufs))
                    .await
                    .unwrap();
                assert!(n > 0);
                let mut n = n;
                for part in [&mut head as &mut dyn Buf, &mut chunk, &mut tail] {
                    let step = n.min(part.remaining());
                    part.advance(step);
                    n -= step;
                }
            }
            let mut io = io;
            tokio::io::AsyncWriteExt::shutdown(&mut io).await.unwrap();
        });
        let got = reader.join().unwrap();
        let mut expected = b"HEAD\r\n".to_vec();
        expected.extend_from_slice(&data[1000..151_000]);
        expected.extend_from_slice(b"TAIL");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ");
    }

    /// The socket's `TCP_NOTSENT_LOWAT` (0: the system's default).
    fn unsent_lowat(socket: &TcpStream) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: an open socket, and out-pointers to a live c_int and its size.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                std::ptr::from_mut(&mut value).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        value
    }

    /// Over loopback TCP: a file the socket takes at once leaves the socket
    /// as it was; one it cannot (8 MiB, past `tcp_wmem`'s largest buffer and
    /// the reader's 64 KiB window) sets [`UNSENT_LOWAT`], and every byte of
    /// both still arrives.
    #[test]
    fn a_file_too_large_for_the_socket_limits_what_waits_unsent() {
        let small: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let large: Vec<u8> = (0..SEGMENT_MAX as u32).map(|i| (i % 253) as u8).collect();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // A reader draining as fast as the sender writes could take all 8 MiB
        // within one `sendfile` (the test failed 4 runs in 25): the reader
        // starts only after the large file's first write, and its receive
        // buffer, set before connecting, keeps the window small meanwhile.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        socket
            .connect(&listener.local_addr().unwrap().into())
            .unwrap();
        let mut theirs: std::net::TcpStream = socket.into();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let total = small.len() + large.len();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let _ = wait.recv();
            let mut got = vec![0; total];
            theirs.read_exact(&mut got).unwrap();
            got
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (small_file, large_file) = (temp_file(&small), temp_file(&large));
        let lowats = runtime.block_on(async move {
            let (mut io, queue) = SendfileIo::new(TcpStream::from_std(ours).unwrap());
            let mut lowats = Vec::new();
            for (file, len) in [(small_file, 4096), (large_file, SEGMENT_MAX as u64)] {
                let abort = Arc::new(Notify::new());
                let mut body = FileBody::new(file, 0, len, false, queue.clone(), abort);
                let Poll::Ready(Some(Ok(chunk))) = body.poll_chunk() else {
                    panic!("no chunk")
                };
                let mut sent = 0;
                while sent < chunk.len() {
                    let rest = &chunk[sent..];
                    sent += std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, rest))
                        .await
                        .unwrap();
                    if len == SEGMENT_MAX as u64 {
                        let _ = go.send(());
                    }
                }
                lowats.push(unsent_lowat(&io.inner));
            }
            lowats
        });
        assert_eq!(lowats, [0, UNSENT_LOWAT]);
        let got = reader.join().unwrap();
        assert!(
            got[..4096] == small[..] && got[4096..] == large[..],
            "bytes differ"
        );
    }

    #[test]
    fn a_file_that_shrank_is_an_error() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let file = temp_file(b"0123456789");
        runtime.block_on(async move {
            let (mut io, queue) = SendfileIo::new(UnixStream::from_std(ours).unwrap());
            let mut body = FileBody::new(file, 0, 20, false, queue, Arc::new(Notify::new()));
            let Poll::Ready(Some(Ok(chunk))) = body.poll_chunk() else {
                panic!("no chunk")
            };
            let n = std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &chunk))
                .await
                .unwrap();
            assert_eq!(n, 10, "the bytes the file has");
            let err = std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, &chunk[10..]))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            let err = std::future::poll_fn(|cx| Pin::new(&mut io).poll_write(cx, b"x"))
                .await
                .map(|_| ());
            assert!(err.is_ok(), "ordinary bytes still pass");
        });
    }
}
