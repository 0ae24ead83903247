//! ferrule's own HTTP/1.1 exchange for the common request; hyper for the rest.
//!
//! Almost every request a WSGI server sees is an HTTP/1.1 (or, behind nginx's
//! default `proxy_http_version`, HTTP/1.0) `GET`, or a `POST` with a small
//! `Content-Length` body. hyper's connection machinery (its buffers, state
//! machine, service futures and encoder) cost more per such request than
//! everything else on the Rust side together (issue 5's profile), so a
//! connection starts here:
//!
//! 1. Bytes are read straight from the connection into one buffer, and each
//!    head is parsed with `httparse`. The waits the framer would watch are
//!    watched here: `--keep-alive` while idle (close quietly),
//!    `--header-timeout` once a head has started (408). Empty lines before a
//!    request line are dropped and are no activity.
//! 2. A head is served here when it is *plain*: HTTP/1.1 or HTTP/1.0, not
//!    `CONNECT`, no `Transfer-Encoding` (hyper refuses it in HTTP/1.0), no
//!    `Expect`, at most one `Content-Length` of at most [`INLINE_BODY_MAX`]
//!    bytes, within hyper's own field count, head size and name length
//!    (`NAME_MAX`), and within the framer's head size and line rules (every
//!    line ends in CRLF, no field line over `--limit-request-field-size`).
//!    Its body is read whole (within `--body-timeout`: 408 after, 400 if the
//!    client ends it early), the head is checked by [`Dispatch::check`] (an
//!    HTTP/1.0 request needs no `Host`), and the request runs through
//!    [`Dispatch::submit`] like one hyper parsed, with its version (the
//!    environ's `SERVER_PROTOCOL`). The connection persists after it as
//!    hyper decides (RFC 9112 §9.3): HTTP/1.1 unless a `Connection` field
//!    says `close`, HTTP/1.0 only if one says `keep-alive` and none says
//!    `close`.
//! 3. The response is framed by hyper's rules for an HTTP/1.1 server (RFC
//!    9112 §6), byte for byte: its `Content-Length` when known, else
//!    `chunked`; no body for `HEAD`, 204 and 304; a `date` field;
//!    `connection: close` when an HTTP/1.1 request asked for it. An HTTP/1.0
//!    request gets an `HTTP/1.0` status line; `connection: keep-alive` when
//!    it asked for that (as a token added to the response's own `Connection`
//!    field, if any, even one that says `close`); and a body of unknown length
//!    close-delimited, with no framing field: the connection closes after it.
//!    Head and body go out in one vectored write when the body is ready;
//!    stream chunks are gathered while they keep coming. On the inline path a
//!    whole response of up to 1 KiB after which the connection stays open is
//!    left in the connection's [`Outbox`], which the end of the loop's turn
//!    writes ([`super::turn`]); the next request's call, and anything else
//!    this connection writes, waits until the outbox is empty.
//!    A body that fails, or ends short of its `Content-Length`, closes the
//!    connection without completing the message; bytes past the length are
//!    cut off (never sent, so the framing holds), as hyper does.
//! 4. The first head that is not plain — and anything this module cannot
//!    parse — hands the connection to the framer and hyper for the rest of
//!    its life ([`super::server`]): the bytes read so far, from the start of
//!    that head, are the framer's to judge first
//!    ([`super::framer::Framed::with_unread`]), so hyper answers it (or the
//!    framer refuses it) as if the connection had been theirs from the start.
//! 5. Graceful stop: once the stop flag is set, an idle connection is closed
//!    after the drain window ([`super::RunOptions::drain_window`]); a
//!    response in flight is finished first, and a request pipelined behind it
//!    is started only within the window. Every response from then on says
//!    `connection: close` ([`Dispatch::submit`]); one whose head is written
//!    after the window has passed is encoded as if its request had not asked
//!    for keep-alive, as hyper's is once `graceful_shutdown()` has turned its
//!    keep-alive off (`proto/h1/conn.rs`, `fix_keep_alive`): no `keep-alive`
//!    token for an HTTP/1.0 client.
//! 6. A connection this module ends (`close`) is torn down in stages (RFC
//!    9112 §9.6): the outbox settled, the last bytes written, the write side
//!    shut down, then — when the client may still send: after a response,
//!    or a 408 for a late head — what it sends is read and discarded until
//!    it ends its side or a bound passes ([`super::linger`]), and only then
//!    is the socket dropped: closed with unread bytes in it, it would be
//!    reset, and the tail of the last response lost. A client that ended
//!    its side first, or an idle connection closed with nothing read
//!    (`--keep-alive`, the drain window), needs no lingering.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice, Write as _};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE};
use http::{Method, Response, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::dispatch::{failure_response, INLINE_BODY_MAX};
use super::framer::Timeouts;
use super::head::{name_is, FieldSpan, HeadBox};
use super::turn::Outbox;
use super::{
    Dispatch, FieldLines, Limits, Origin, Reply, ReplyExtra, RequestBody, RequestHead, ResponseBody,
};

/// The most fields a head served here may have (more: hyper's).
const MAX_FIELDS: usize = 64;

/// The longest field name the http crate's `HeaderName` holds, in bytes
/// (`http::header::name::MAX_HEADER_NAME_LEN`); httparse takes any length.
const NAME_MAX: usize = (1 << 16) - 1;

/// Bytes asked of each read.
const READ_SIZE: usize = 8 * 1024;

/// The most body chunks gathered into one write.
const BATCH: usize = 16;

/// How a connection left [`serve`].
pub(super) enum Served<S> {
    /// It is closed (or its client is gone).
    Closed,
    /// hyper serves the rest: `unread` holds what was read of it (from the
    /// start of a head); `drain_at` is when an idle connection must close, if
    /// the stop flag is already set.
    Handoff {
        io: S,
        unread: BytesMut,
        drain_at: Option<Instant>,
    },
}

/// What [`serve`] needs besides the connection.
pub(super) struct Conn<'a> {
    pub dispatch: &'a Dispatch,
    pub origin: &'a Origin,
    /// The socket, when bytes written to it straight need nothing more
    /// (plain TCP or Unix: no TLS): whole responses then go out at the end
    /// of the loop's turn ([`super::turn::Outbox`]).
    pub fd: Option<std::os::fd::RawFd>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub drain_window: Duration,
}

/// A plain head, parsed (module docs, point 2).
struct Head {
    /// Bytes of the head, through its empty line.
    len: usize,
    /// The `Content-Length` (0 without one).
    body: usize,
    /// The request line says HTTP/1.0 (else HTTP/1.1).
    http10: bool,
    /// The connection may carry another request after this one's response
    /// (RFC 9112 §9.3): HTTP/1.1 unless a `Connection` field says `close`;
    /// HTTP/1.0 only if one says `keep-alive` and none says `close`
    /// ([`super::framer::Persistence`], the framer's rule too).
    keep_alive: bool,
    /// The method is `HEAD`.
    head_method: bool,
    method: (usize, usize),
    target: (usize, usize),
    /// Its `Host` and `Content-Type` fields, counted as they were parsed
    /// (a plain head has no `Transfer-Encoding`).
    counts: super::framing::FieldCounts,
}

enum Parsed {
    Plain(Head),
    Partial,
    Hyper,
}

/// Serve `io` until it closes, or until a head that is not plain hands it to
/// hyper (module docs).
pub(super) async fn serve<S>(mut io: S, cx: Conn<'_>, stop: &mut watch::Receiver<bool>) -> Served<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    let mut out = Vec::with_capacity(256);
    // Lent to each request's reply for its field lines and back ([`respond`]).
    let mut lines_buffer = Vec::new();
    let mut spans = Vec::with_capacity(16);
    let max_fields = cx.limits.hyper_max_headers().min(MAX_FIELDS);
    // hyper's buffer may be larger (with raised limits), but the framer in
    // front of it refuses a head over its own limit.
    let max_head = cx.limits.head_buffer().min(super::framer::MAX_HEAD);
    let body_timeout = cx.timeouts.body;
    let mut outbox = cx.fd.and_then(Outbox::new);
    // Registered once and kept: waiting on them again costs at most a poll,
    // not a new registration per request, and no poll while nothing changed
    // ([`Kept`]).
    let stop_seen = stop.clone();
    let stop_signal = stopped(stop);
    tokio::pin!(stop_signal);
    let mut stop_signal = Kept::new(stop_signal, move |_| {
        stop_seen.has_changed().unwrap_or(false)
    });
    let timer = tokio::time::sleep(FAR);
    tokio::pin!(timer);
    let mut timer = Kept::new(timer, tokio::time::Sleep::is_elapsed);
    let now = Instant::now();
    let mut clock = Clock {
        timeouts: cx.timeouts,
        armed: now + FAR,
        idle_since: now,
        head_since: None,
        drain_at: None,
        drain_window: cx.drain_window,
    };
    loop {
        let head = loop {
            if !buf.is_empty() {
                match parse(&buf, max_fields, max_head, &mut spans) {
                    Parsed::Plain(head) => {
                        // The framer's line rules (bare LF: 400; a field line
                        // over --limit-request-field-size: 431) are its to
                        // answer, after the hand-off.
                        if !lines_ok(&buf[..head.len], &spans, cx.limits.field_size) {
                            return handoff(io, buf, clock.drain_at, &mut outbox).await;
                        }
                        break head;
                    }
                    Parsed::Partial if buf.len() <= max_head => {}
                    _ => return handoff(io, buf, clock.drain_at, &mut outbox).await,
                }
            }
            let wait = read_more(
                &mut io,
                &mut buf,
                &mut stop_signal,
                &mut timer,
                &mut clock,
                &mut outbox,
            );
            match wait.await {
                Ok(Wait::Read) => {}
                Ok(Wait::Unwritten) => {
                    if settle(&mut io, &mut outbox).await.is_err() {
                        return Served::Closed;
                    }
                }
                Ok(Wait::End) if !buf.is_empty() => {
                    return handoff(io, buf, clock.drain_at, &mut outbox).await
                }
                // The client ended its side, or nothing was read and
                // nothing is waiting (the read came first, and found none).
                Ok(Wait::End | Wait::Idle | Wait::Drained) => {
                    return close(&mut io, &mut outbox, &[], Ending::Quiet).await;
                }
                Ok(Wait::Late) => {
                    let refusal = super::framer::Refusal::late_head(cx.timeouts.header);
                    let reply = super::framer::refusal_response(&refusal);
                    return close(&mut io, &mut outbox, &reply, Ending::Linger).await;
                }
                Err(_) => return Served::Closed,
            }
        };
        // A request pipelined behind a response the outbox holds: that
        // response goes out before this request's call, which may take long
        // (the end of the turn writes it; the task then goes on).
        if settle(&mut io, &mut outbox).await.is_err() {
            return Served::Closed;
        }
        let received = std::time::Instant::now();
        clock.head_since = None;
        let frozen = buf.split_to(head.len).freeze();
        let request = match build(frozen, &head, &spans) {
            Ok(request) => request,
            Err(frozen) => {
                // A token the http crate refuses: hyper answers it.
                let mut all = BytesMut::from(&frozen[..]);
                all.extend_from_slice(&buf);
                return handoff(io, all, clock.drain_at, &mut outbox).await;
            }
        };
        // The request, then its response; a stop meanwhile starts the drain
        // window (the connection closes after this response once it has
        // passed). Each future is pinned where it is made: moved into
        // `watching`, the whole future (its largest state, not just what it
        // captured) was copied.
        let reply = {
            let exchange = std::pin::pin!(async {
                // The counts parse took; the field sizes `lines_ok` judged.
                match cx
                    .dispatch
                    .check_plain(&request, head.body as u64, head.counts)
                {
                    Err(refused) => Reply::from(*refused),
                    Ok(()) => {
                        match read_body(&mut io, &mut buf, head.body, body_timeout).await {
                            Ok(body) => {
                                let body = RequestBody::Buffered(body);
                                let lines = std::mem::take(&mut lines_buffer);
                                // A turn past its budget ends before this call.
                                super::turn::admit(received).await;
                                cx.dispatch
                                    .submit(cx.origin, request, body, received, lines)
                                    .await
                            }
                            Err(refused) => refused.into(),
                        }
                    }
                }
            });
            watching(exchange, &mut stop_signal, &mut clock).await
        };
        // hyper's keep-alive is off once its graceful shutdown has run
        // (module docs, point 5).
        let keep_alive = head.keep_alive && !clock.drained(cx.dispatch.stopping());
        let keep = {
            let response = std::pin::pin!(respond(
                &mut io,
                reply,
                &head,
                keep_alive,
                &mut out,
                &mut lines_buffer,
                (&mut outbox, received),
            ));
            watching(response, &mut stop_signal, &mut clock).await
        };
        // After a response the client may have sent more (pipelined
        // requests, the rest of a refused body): the close lingers.
        match keep {
            Ok(true) => {}
            Ok(false) => return close(&mut io, &mut outbox, &[], Ending::Linger).await,
            Err(_) => return Served::Closed,
        }
        clock.idle_since = Instant::now();
        if clock.drain_at.is_some_and(|at| clock.idle_since >= at) {
            return close(&mut io, &mut outbox, &[], Ending::Linger).await;
        }
    }
}

/// Run `exchange`; should the stop flag turn while it runs, start the drain
/// window then (as hyper's connection task does), not when it is over.
async fn watching<F: Future, W: Future<Output = ()>>(
    mut exchange: Pin<&mut F>,
    stop_signal: &mut Kept<'_, W, impl FnMut(&W) -> bool>,
    clock: &mut Clock,
) -> F::Output {
    poll_fn(|cx| {
        if let Poll::Ready(done) = exchange.as_mut().poll(cx) {
            return Poll::Ready(done);
        }
        if clock.drain_at.is_none() && stop_signal.poll(cx).is_ready() {
            clock.start_drain();
        }
        Poll::Pending
    })
    .await
}

/// A wait that stays registered between the polls of a connection's task,
/// polled again only when it may be over.
///
/// A future that returned `Pending` wakes the waker of that poll once it can
/// make progress (`std::future::Future`'s contract), so polling it again with
/// the same waker only repeats the registration: for the stop signal's
/// `watch` wait a lock and a waker comparison, for the timer the task budget
/// and its state, ~280 instructions a request between them (issue 5). A
/// `Kept` wait is polled when it has not been, when the task's waker is not
/// the one it holds, or when `may_be_over` (a cheap look at the wait's state:
/// the watch's version, the timer's) says it may be ready. Its polls run
/// outside tokio's task budget: a poll refused for the budget would register
/// nothing, and the wait would never wake the task.
struct Kept<'p, W, M> {
    wait: Pin<&'p mut W>,
    may_be_over: M,
    /// The waker the wait was last polled with (`None`: poll it next time).
    waker: Option<std::task::Waker>,
}

impl<'p, W: Future, M: FnMut(&W) -> bool> Kept<'p, W, M> {
    fn new(wait: Pin<&'p mut W>, may_be_over: M) -> Self {
        Kept {
            wait,
            may_be_over,
            waker: None,
        }
    }

    /// Poll the wait if it may be over (type docs); `Pending` otherwise.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<W::Output> {
        if self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
            && !(self.may_be_over)(&self.wait)
        {
            return Poll::Pending;
        }
        let wait = &mut self.wait;
        let mut unbudgeted = tokio::task::unconstrained(poll_fn(|cx| wait.as_mut().poll(cx)));
        let poll = Pin::new(&mut unbudgeted).poll(cx);
        self.waker = poll.is_pending().then(|| cx.waker().clone());
        poll
    }

    /// The wait itself, to change it (a timer's deadline): it is polled
    /// again next time, so that its registration follows the change whatever
    /// the wait keeps of the last one (once per `--keep-alive` on a busy
    /// connection).
    fn get_mut(&mut self) -> Pin<&mut W> {
        self.waker = None;
        self.wait.as_mut()
    }
}

/// Longer than any wait (a year): a timer that is not meant to fire.
const FAR: Duration = Duration::from_secs(365 * 86400);

/// The waits of a connection between requests and within a head.
struct Clock {
    timeouts: Timeouts,
    /// The deadline the timer is set to; it may be earlier than the real one
    /// (activity since moved that later), never later.
    armed: Instant,
    /// When the connection last became idle (accepted, or a response sent).
    idle_since: Instant,
    /// When the connection began to wait for the rest of a head (`None`
    /// until a head is found incomplete).
    head_since: Option<Instant>,
    /// When an idle connection closes, once the stop flag is set.
    drain_at: Option<Instant>,
    drain_window: Duration,
}

impl Clock {
    /// The stop flag turned: idle from now on, the connection may wait out
    /// the drain window.
    fn start_drain(&mut self) {
        self.drain_at = Some(Instant::now() + self.drain_window);
    }

    /// Whether the drain window has passed, `stopping` being whether the
    /// stop flag is set: hyper's connection task calls `graceful_shutdown()`
    /// then, which turns its keep-alive off ([`super::server`]). A stop not
    /// noticed yet (it came with the reply) starts the window now.
    fn drained(&mut self, stopping: bool) -> bool {
        if !stopping {
            return false;
        }
        if self.drain_at.is_none() {
            self.start_drain();
        }
        self.drain_at.is_some_and(|at| Instant::now() >= at)
    }
}

/// How [`close`] ends a connection (module docs, point 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client ended its side, or the connection is idle: nothing was
    /// read that is not answered, and nothing waits to be read.
    Quiet,
    /// The client may still send: read and discard until it ends its side
    /// ([`super::linger`]).
    Linger,
}

/// End the connection (RFC 9112 §9.6): write what its outbox holds, then
/// `last` (a refusal, or nothing), shut down the write side (the FIN follows
/// the response), and with [`Ending::Linger`] read and discard what the
/// client still sends, within [`super::linger`]'s bounds. The caller drops
/// `io` after.
///
/// A write that fails (the client is gone) ends it there.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    outbox: &mut Option<Outbox>,
    last: &[u8],
    ending: Ending,
) -> Served<S> {
    if settle(io, outbox).await.is_err()
        || write_all(io, &mut [last]).await.is_err()
        || io.shutdown().await.is_err()
    {
        return Served::Closed;
    }
    if ending == Ending::Linger {
        super::linger::linger(io, super::linger::Bounds::default()).await;
    }
    Served::Closed
}

/// Hand the connection to hyper, once the responses its outbox holds are
/// written (hyper's go after them).
async fn handoff<S: AsyncWrite + Unpin>(
    mut io: S,
    unread: BytesMut,
    drain_at: Option<Instant>,
    outbox: &mut Option<Outbox>,
) -> Served<S> {
    if settle(&mut io, outbox).await.is_err() {
        return Served::Closed;
    }
    Served::Handoff {
        io,
        unread,
        drain_at,
    }
}

/// Write what the connection's outbox holds that the end of the turn could
/// not: wait for the end of the turn if bytes were left in this one, then
/// write what it did not (the socket's buffer was full) through `io`.
///
/// # Errors
///
/// The error the end of the turn's write met, or this write's.
async fn settle<S: AsyncWrite + Unpin>(io: &mut S, outbox: &mut Option<Outbox>) -> io::Result<()> {
    let Some(outbox) = outbox.as_mut().filter(|outbox| outbox.pending()) else {
        return Ok(());
    };
    match outbox.rest().await {
        None => Ok(()),
        Some(Ok(rest)) => write_all(io, &mut [&rest]).await,
        Some(Err(err)) => Err(err),
    }
}

enum Wait {
    /// Bytes arrived.
    Read,
    /// The client ended its side.
    End,
    /// Idle past `--keep-alive`: close quietly.
    Idle,
    /// A head started but is not whole within `--header-timeout`: 408.
    Late,
    /// Idle once the drain window after the stop flag has passed.
    Drained,
    /// The end of the turn could not write all of a response the outbox
    /// held: the task writes the rest ([`settle`]).
    Unwritten,
}

/// Read more bytes into `buf`, watching the connection's waits (module docs
/// of [`super::framer`], point 4, and point 5 here).
///
/// The timer is re-armed only when it is later than the wait's deadline or
/// when it fires early: a busy connection registers a timer once per
/// `--keep-alive`, not once per request.
async fn read_more<S: AsyncRead + Unpin, W: Future<Output = ()>>(
    io: &mut S,
    buf: &mut BytesMut,
    stop_signal: &mut Kept<'_, W, impl FnMut(&W) -> bool>,
    timer: &mut Kept<'_, tokio::time::Sleep, impl FnMut(&tokio::time::Sleep) -> bool>,
    clock: &mut Clock,
    outbox: &mut Option<Outbox>,
) -> io::Result<Wait> {
    // Between requests (nothing unread), a buffer down to half its room gets
    // it back: once the last request's bytes are released this reuses the
    // allocation without copying, where a request read into the tail of it
    // had to be moved to a new one when its body did not fit (a 4 KiB POST:
    // every other request).
    let low = if buf.is_empty() {
        READ_SIZE / 2
    } else {
        READ_SIZE / 4
    };
    if buf.capacity() - buf.len() < low {
        buf.reserve(READ_SIZE);
    }
    let idle = buf.is_empty();
    let deadline = if idle {
        clock.idle_since + clock.timeouts.keep_alive
    } else {
        *clock.head_since.get_or_insert_with(Instant::now) + clock.timeouts.header
    };
    if clock.armed > deadline {
        timer.get_mut().reset(deadline);
        clock.armed = deadline;
    }
    loop {
        tokio::select! {
            biased;
            read = io.read_buf(buf) => {
                if read? == 0 {
                    return Ok(Wait::End);
                }
                if idle {
                    // Empty lines before a request line are ignored (RFC
                    // 9112 §2.2), and are no activity.
                    let skip = buf.iter().position(|&b| b != b'\r' && b != b'\n');
                    buf.advance(skip.unwrap_or(buf.len()));
                    if buf.is_empty() {
                        continue;
                    }
                }
                return Ok(Wait::Read);
            }
            () = poll_fn(|cx| stop_signal.poll(cx)), if clock.drain_at.is_none() => {
                clock.start_drain();
            }
            () = poll_fn(|cx| timer.poll(cx)) => {
                if Instant::now() >= deadline {
                    return Ok(if idle { Wait::Idle } else { Wait::Late });
                }
                timer.get_mut().reset(deadline);
                clock.armed = deadline;
            }
            () = sleep_until(clock.drain_at), if idle && clock.drain_at.is_some() => {
                return Ok(Wait::Drained);
            }
            () = poll_fn(|_| outbox.as_mut().map_or(Poll::Pending, Outbox::poll_stopped)),
                if outbox.as_ref().is_some_and(Outbox::pending) => {
                return Ok(Wait::Unwritten);
            }
        }
    }
}

/// Resolves at `at` (never without one); no timer exists until it is polled.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves once the stop flag is `true` (never if its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Read a `Content-Length` body of `len` bytes whole, each piece within
/// `timeout` of the one before (`--body-timeout`).
///
/// # Errors
///
/// The response to send instead: 408 when a piece is late, 400 when the
/// client ends the body early (as [`super::dispatch`]'s `read_whole`).
async fn read_body<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    len: usize,
    timeout: Duration,
) -> Result<Bytes, Response<ResponseBody>> {
    if buf.len() < len {
        buf.reserve(len - buf.len());
        while buf.len() < len {
            match tokio::time::timeout(timeout, io.read_buf(buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return Err(failure_response(StatusCode::BAD_REQUEST)),
                Err(_) => return Err(failure_response(StatusCode::REQUEST_TIMEOUT)),
            }
        }
    }
    Ok(buf.split_to(len).freeze())
}

/// Parse the head at the start of `buf` and decide whether it is plain;
/// `spans` receives where its fields are.
fn parse(buf: &[u8], max_fields: usize, max_head: usize, spans: &mut Vec<FieldSpan>) -> Parsed {
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, &mut fields[..max_fields]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Hyper,
    };
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Parsed::Hyper;
    };
    if len > max_head || method == "CONNECT" {
        return Parsed::Hyper;
    }
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let mut head = Head {
        len,
        body: 0,
        http10: version == 0,
        keep_alive: false,
        head_method: method == "HEAD",
        method: span(method.as_bytes()),
        target: span(target.as_bytes()),
        counts: super::framing::FieldCounts::default(),
    };
    let mut length = None;
    let mut persistence = super::framer::Persistence::default();
    spans.clear();
    for field in request.headers.iter() {
        let name = field.name.as_bytes();
        spans.push(FieldSpan {
            name: span(name),
            value: span(field.value),
        });
        // Only six names matter here; their lengths tell them apart cheaply
        // (and rule out a name too long for hyper).
        match name.len() {
            4 if name_is(name, b"host") => head.counts.hosts += 1,
            12 if name_is(name, b"content-type") => head.counts.content_types += 1,
            14 if name_is(name, b"content-length") => {
                if length.is_some() {
                    return Parsed::Hyper;
                }
                match content_length(field.value) {
                    Some(n) if n <= INLINE_BODY_MAX => length = Some(n),
                    _ => return Parsed::Hyper,
                }
            }
            // In HTTP/1.0 too: hyper refuses it there (400).
            17 if name_is(name, b"transfer-encoding") => return Parsed::Hyper,
            6 if name_is(name, b"expect") => return Parsed::Hyper,
            10 if name_is(name, b"connection") => persistence.read(field.value),
            // A name the http crate cannot hold: hyper answers it (431).
            len if len > NAME_MAX => return Parsed::Hyper,
            _ => {}
        }
    }
    head.body = length.map_or(0, |n| n as usize);
    head.keep_alive = persistence.persists(head.http10);
    Parsed::Plain(head)
}

/// Whether a plain head keeps the framer's line rules (see
/// [`super::framer::check_lines`]): every line ends in CRLF, and no field
/// line, counted raw from its name to its CRLF, is longer than `field_size`
/// (0: no limit).
fn lines_ok(head: &[u8], spans: &[FieldSpan], field_size: usize) -> bool {
    // httparse ends a line at its LF (each field name starts right after
    // one) and refuses a CR that does not start a CRLF, so every line ends in
    // CRLF when the byte before each such LF is a CR: the head's last two
    // lines end it as CRLF CRLF, and a CR comes two bytes before each name.
    // An empty line before the request line is the framer's to judge.
    let crlf_before = |at: usize| at >= 2 && head[at - 2] == b'\r';
    if !head.ends_with(b"\r\n\r\n")
        || matches!(head.first(), Some(b'\r' | b'\n'))
        || !spans.iter().all(|span| crlf_before(span.name.0))
    {
        return false;
    }
    if field_size == 0 {
        return true;
    }
    let ends = spans
        .iter()
        .skip(1)
        .map(|span| span.name.0)
        .chain(std::iter::once(head.len() - 2));
    spans
        .iter()
        .zip(ends)
        .all(|(span, end)| end - span.name.0 <= field_size)
}

/// A `Content-Length` value: 1 to 19 ASCII digits.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// The request head of the plain head `bytes`, boxed as [`Dispatch::submit`]
/// takes it.
///
/// # Errors
///
/// `bytes` back, when the http crate refuses the method or request-target
/// (the fields are httparse's to check, a token name and a field-content
/// value, and [`parse`]'s: a name of at most [`NAME_MAX`] bytes).
fn build(bytes: Bytes, head: &Head, spans: &[FieldSpan]) -> Result<HeadBox, Bytes> {
    let (start, len) = head.method;
    let Ok(method) = Method::from_bytes(&bytes[start..start + len]) else {
        return Err(bytes);
    };
    let (start, len) = head.target;
    let Ok(uri) = Uri::from_maybe_shared(bytes.slice(start..start + len)) else {
        return Err(bytes);
    };
    // Boxed here, where it is made: the exchange's future holds the box, not
    // the 216-byte head (each move of which was a `memcpy`).
    Ok(HeadBox::new(RequestHead::raw(
        method,
        uri,
        if head.http10 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        },
        bytes,
        spans,
    )))
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Exactly this many bytes (0: none at all).
    Length(u64),
    /// The chunked transfer coding (RFC 9112 §7.1).
    Chunked,
    /// Every byte until the connection closes (RFC 9112 §6.3, point 8): a
    /// body of unknown length to an HTTP/1.0 request.
    Close,
}

/// Write `response` to the request `head`; whether the connection stays open
/// for another request. `keep_alive` is the request's
/// ([`Head::keep_alive`]) unless a stop has turned it off (module docs,
/// point 5).
///
/// # Errors
///
/// A write failed: the client is gone.
///
/// The buffer of the reply's field lines is left in `lines` for the next
/// request's reply ([`FieldLines::in_buffer`]) once written.
async fn respond<S: AsyncWrite + Unpin>(
    io: &mut S,
    reply: Reply,
    head: &Head,
    keep_alive: bool,
    out: &mut Vec<u8>,
    lines_buffer: &mut Vec<u8>,
    (outbox, received): (&mut Option<Outbox>, std::time::Instant),
) -> io::Result<bool> {
    let Reply {
        status,
        mut body,
        lines,
        extra,
    } = reply;
    let whole = match &body {
        ResponseBody::Empty | ResponseBody::Full(None) => Some(&[][..]),
        ResponseBody::Full(Some(data)) => Some(&data[..]),
        ResponseBody::Small => Some(lines.body()),
        ResponseBody::Stream { .. } | ResponseBody::File(_) => None,
    };
    let (framing, close) = encode_head(
        status,
        extra.as_deref(),
        &lines,
        whole.map(|data| data.len() as u64),
        head,
        keep_alive,
        out,
    );
    // The usual case: head and body in one write. Bytes past the length
    // are cut off; a body short of it leaves the message incomplete.
    let copied = match (whole, framing) {
        (_, Framing::Length(0)) => Some(true),
        (Some(data), Framing::Length(n)) if data.len().min(n as usize) <= COPIED_INTO_HEAD => {
            out.extend_from_slice(&data[..data.len().min(n as usize)]);
            Some(data.len() as u64 >= n)
        }
        _ => None,
    };
    // The outbox holds nothing of this connection's here: the request's
    // `settle` ran before its call.
    let complete = if let Some(full_length) = copied {
        // A whole response after which the connection stays open goes out
        // with the end of the loop's turn, which writes it (`turn`: inline
        // only): the task goes on to the next request at once.
        let left = full_length
            && !close
            && match outbox.as_mut() {
                Some(outbox) => {
                    poll_fn(|cx| Poll::Ready(outbox.leave(out, received, cx.waker()))).await
                }
                None => false,
            };
        if !left {
            super::turn::wait(received).await;
            write_all(io, &mut [out]).await?;
        }
        full_length
    } else {
        if whole.is_some() {
            // A whole body goes out with the rest of the loop's turn.
            super::turn::wait(received).await;
        }
        match (whole, framing) {
            (Some(data), Framing::Length(n)) => {
                write_all(io, &mut [out, &data[..data.len().min(n as usize)]]).await?;
                data.len() as u64 >= n
            }
            _ => send_body(io, &mut body, framing, out).await?,
        }
    };
    let buffer = lines.into_buffer();
    if buffer.capacity() <= LINES_BUFFER_MAX {
        *lines_buffer = buffer;
    }
    Ok(complete && !close)
}

/// The largest whole body [`respond`] copies after the head, in bytes: the
/// response goes out in one plain write, not a vectored one.
const COPIED_INTO_HEAD: usize = 1024;

/// The largest field lines buffer a connection keeps for its next response,
/// in bytes: a larger one (a response with many or long fields) is freed.
const LINES_BUFFER_MAX: usize = 16 * 1024;

/// Send a streamed body after the head in `out`; whether the message was
/// completed (every declared byte, the last chunk, or the end of a
/// close-delimited body).
async fn send_body<S: AsyncWrite + Unpin>(
    io: &mut S,
    body: &mut ResponseBody,
    framing: Framing,
    head: &[u8],
) -> io::Result<bool> {
    let mut head = Some(head);
    let mut remaining = match framing {
        Framing::Length(n) => Some(n),
        Framing::Chunked | Framing::Close => None,
    };
    let chunked = framing == Framing::Chunked;
    let mut batch: Vec<Bytes> = Vec::with_capacity(BATCH);
    let mut lines: Vec<u8> = Vec::new();
    loop {
        let step = poll_fn(|cx| gather(body, cx, &mut batch, head.is_some(), remaining)).await;
        // Fit the batch to the declared length: bytes past it are cut off
        // (never sent, so the framing holds, as in hyper).
        if let Some(left) = remaining.as_mut() {
            for chunk in &mut batch {
                let take = (chunk.len() as u64).min(*left);
                chunk.truncate(take as usize);
                *left -= take;
            }
        }
        lines.clear();
        if chunked {
            for chunk in batch.iter().filter(|c| !c.is_empty()) {
                let _ = write!(lines, "{:x}\r\n", chunk.len());
            }
        }
        let last: &[u8] = if chunked && step == Step::End {
            b"0\r\n\r\n"
        } else {
            b""
        };
        {
            let mut slices: Vec<&[u8]> = Vec::with_capacity(SLICES);
            if let Some(head) = head.take() {
                slices.push(head);
            }
            let mut at = 0;
            for chunk in batch.iter().filter(|c| !c.is_empty()) {
                if chunked {
                    let end = at + lines[at..].iter().position(|&b| b == b'\n').unwrap_or(0) + 1;
                    slices.push(&lines[at..end]);
                    at = end;
                    slices.push(chunk);
                    slices.push(b"\r\n");
                } else {
                    slices.push(chunk);
                }
            }
            slices.push(last);
            write_all(io, &mut slices).await?;
        }
        batch.clear();
        if remaining == Some(0) {
            // Complete: the rest of the body is not asked for (hyper drops it
            // too), and the connection can carry the next request.
            return Ok(true);
        }
        match step {
            Step::Failed => return Ok(false),
            Step::End => return Ok(remaining.is_none()),
            Step::More => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `batch` holds chunks (or the head must go out on its own).
    More,
    /// The body ended cleanly.
    End,
    /// The body failed: send what is gathered, then close.
    Failed,
}

/// Gather the chunks that are ready, up to [`BATCH`] or until they cover
/// `remaining` bytes (the rest of a declared length); pending only when none
/// is and no head waits to be written.
fn gather(
    body: &mut ResponseBody,
    cx: &mut Context<'_>,
    batch: &mut Vec<Bytes>,
    head_waiting: bool,
    remaining: Option<u64>,
) -> Poll<Step> {
    let mut gathered = 0u64;
    while batch.len() < BATCH && remaining.map_or(true, |left| gathered < left) {
        match body.poll_chunk(cx) {
            Poll::Ready(Some(Ok(data))) => {
                gathered += data.len() as u64;
                batch.push(data);
            }
            Poll::Ready(Some(Err(_))) => return Poll::Ready(Step::Failed),
            Poll::Ready(None) => return Poll::Ready(Step::End),
            Poll::Pending => break,
        }
    }
    if batch.is_empty() && !head_waiting {
        Poll::Pending
    } else {
        Poll::Ready(Step::More)
    }
}

/// The most slices one write takes (head, then size line, data and CRLF per
/// chunk, then the last chunk).
const SLICES: usize = 2 + 3 * BATCH;

/// Write every byte of `parts`, in as few vectored writes as the IO takes.
async fn write_all<S: AsyncWrite + Unpin>(io: &mut S, parts: &mut [&[u8]]) -> io::Result<()> {
    let mut parts = parts;
    loop {
        while parts.first().is_some_and(|p| p.is_empty()) {
            parts = &mut parts[1..];
        }
        if parts.is_empty() {
            return io.flush().await;
        }
        let mut n = poll_fn(|cx| poll_write_parts(io, cx, parts)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        for part in parts.iter_mut() {
            let step = n.min(part.len());
            *part = &part[step..];
            n -= step;
            if n == 0 {
                break;
            }
        }
    }
}

/// One write of the first [`SLICES`] of `parts`: bytes written. A single
/// part is a plain write (`send(2)`: no vector for the kernel to import).
///
/// The `IoSlice`s live on this poll's stack, only as many as there are
/// parts: kept in [`write_all`]'s future, they made it (and every future
/// holding it) [`SLICES`] slices larger, and were all set on every write.
fn poll_write_parts<S: AsyncWrite + Unpin>(
    io: &mut S,
    cx: &mut Context<'_>,
    parts: &[&[u8]],
) -> Poll<io::Result<usize>> {
    if let [part] = parts {
        return Pin::new(io).poll_write(cx, part);
    }
    let count = parts.len().min(SLICES);
    let mut slices = [MaybeUninit::<IoSlice<'_>>::uninit(); SLICES];
    for (slot, part) in slices.iter_mut().zip(parts) {
        slot.write(IoSlice::new(part));
    }
    // SAFETY: the first `count` slots were written just above, and
    // `MaybeUninit<IoSlice>` has the layout of `IoSlice`.
    let slices =
        unsafe { std::slice::from_raw_parts(slices.as_ptr().cast::<IoSlice<'_>>(), count) };
    Pin::new(io).poll_write_vectored(cx, slices)
}

/// Encode the status line and fields of a response to the plain request
/// `head` into `out` (module docs, point 3): the application's field lines
/// as they are, then its `content-length` and `connection: close`, then the
/// fields the server made (the order [`Reply::into_response`] gives hyper).
/// `known` is the body's length when it is whole; `keep_alive` is whether
/// the connection may persist as far as the request and the server go (see
/// [`respond`]). Returns the body's framing and whether the connection
/// closes after.
fn encode_head(
    status: StatusCode,
    extra: Option<&ReplyExtra>,
    lines: &FieldLines,
    known: Option<u64>,
    head: &Head,
    keep_alive: bool,
    out: &mut Vec<u8>,
) -> (Framing, bool) {
    out.clear();
    // RFC 9110 §6.2: a server sends a version no higher than the request's
    // major version; hyper answers an HTTP/1.0 request as HTTP/1.0.
    out.extend_from_slice(if head.http10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    let reason = extra.and_then(|extra| extra.reason.as_ref());
    if status == StatusCode::OK && reason.is_none() {
        out.extend_from_slice(b"200 OK\r\n");
    } else {
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        match reason {
            Some(reason) => out.extend_from_slice(reason.as_bytes()),
            None => out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes()),
        }
        out.extend_from_slice(b"\r\n");
    }
    let head_method = head.head_method;
    let mut close = !keep_alive;
    // RFC 9110 §6.4.1: no content for HEAD, 204 and 304; a 204 or 304
    // carries no Content-Length of its own making.
    let no_content = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let mut framing = None;
    // The first Content-Length frames the body, unless the body is empty and
    // the request not HEAD (then `content-length: 0` follows, as hyper does).
    let frame_by = |framing: &mut Option<Framing>, declared: Option<u64>| {
        if framing.is_some() || (known == Some(0) && !head_method) {
            return false;
        }
        *framing = Some(Framing::Length(known.or(declared).unwrap_or(0)));
        true
    };
    out.extend_from_slice(lines.as_bytes());
    let mut date = lines.has_date();
    if let Some(length) = lines.content_length {
        if frame_by(&mut framing, Some(length)) {
            push_length(out, length);
        }
    }
    // Where the last `connection` field line ends (before its CRLF), and
    // whether one says `keep-alive`.
    let mut connection = None;
    let mut keep_alive_said = false;
    if lines.close {
        close = true;
        push_field(out, b"connection", b"close");
        connection = Some(out.len() - 2);
    }
    for (name, value) in extra.iter().flat_map(|extra| &extra.headers) {
        if name == CONTENT_LENGTH {
            if !frame_by(&mut framing, content_length(value.as_bytes())) {
                continue; // a repeat, or a length the (empty) body denies
            }
        } else if name == CONNECTION {
            close |= super::framer::has_token(value.as_bytes(), b"close");
            keep_alive_said |= super::framer::has_token(value.as_bytes(), b"keep-alive");
        } else if name == DATE {
            date = true;
        }
        push_field(out, name.as_str().as_bytes(), value.as_bytes());
        if name == CONNECTION {
            connection = Some(out.len() - 2);
        }
    }
    if head.http10 {
        // An HTTP/1.0 client keeps the connection only when told so (RFC
        // 9112 §C.2.2); hyper adds the token to the response's own
        // `Connection` field, even beside a `close` that ends it anyway.
        if keep_alive && !keep_alive_said {
            match connection {
                Some(at) => drop(out.splice(at..at, b", keep-alive".iter().copied())),
                None => push_field(out, b"connection", b"keep-alive"),
            }
        }
    } else if close && connection.is_none() {
        push_field(out, b"connection", b"close");
    }
    let framing = match (framing, known) {
        (Some(framing), _) => framing,
        (None, Some(0)) => {
            if !no_content && !head_method {
                push_field(out, b"content-length", b"0");
            }
            Framing::Length(0)
        }
        (None, Some(n)) => {
            if !no_content {
                push_length(out, n);
            }
            Framing::Length(n)
        }
        (None, None) if no_content || head_method => Framing::Length(0),
        (None, None) if head.http10 => {
            // RFC 9112 §6.1: no Transfer-Encoding in a response to an
            // HTTP/1.0 request; the end of the connection ends the body.
            close = true;
            Framing::Close
        }
        (None, None) => {
            push_field(out, b"transfer-encoding", b"chunked");
            Framing::Chunked
        }
    };
    if !date {
        out.extend_from_slice(b"date: ");
        push_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let framing = if no_content || head_method {
        Framing::Length(0)
    } else {
        framing
    };
    (framing, close)
}

/// Append `content-length: n` and CRLF.
fn push_length(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    push_field(out, b"content-length", &digits[at..]);
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `date` value of the current second (RFC 9110 §5.6.7), per thread.
    static DATE_VALUE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Append the current time as an IMF-fixdate, formatted once per second.
fn push_date(out: &mut Vec<u8>) {
    // time(2), the vDSO's read of the kernel's last tick, in whole seconds:
    // a sixth of the instructions of `SystemTime::now()` and a subtraction
    // (issue 5). It lags the fine clock by at most a tick at a second's
    // turn, far below the field's one-second resolution.
    // SAFETY: a null pointer asks time(2) only for its return value.
    let second = u64::try_from(unsafe { libc::time(std::ptr::null_mut()) }).unwrap_or(0);
    DATE_VALUE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            let when = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(second);
            let text = httpdate::fmt_http_date(when);
            if text.len() == 29 {
                cached.1.copy_from_slice(text.as_bytes());
                cached.0 = second;
            } else {
                out.extend_from_slice(text.as_bytes());
                return;
            }
        }
        out.extend_from_slice(&cached.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_field_is_the_current_second() {
        let mut out = Vec::new();
        let before = SystemTime::now();
        push_date(&mut out);
        push_date(&mut out); // the second one comes from the cache
        let after = SystemTime::now();
        assert_eq!(out.len(), 58);
        let (first, second) = out.split_at(29);
        let date = httpdate::parse_http_date(std::str::from_utf8(first).unwrap()).unwrap();
        let second = httpdate::parse_http_date(std::str::from_utf8(second).unwrap()).unwrap();
        let whole = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        // time(2) may lag the fine clock by a tick at a second's turn.
        assert!(whole(date) + 1 >= whole(before), "{date:?} {before:?}");
        assert!(whole(date) <= whole(after), "{date:?} {after:?}");
        assert!(whole(second) >= whole(date) && whole(second) <= whole(after));
    }

    #[test]
    fn parse_counts_the_fields_the_head_check_counts() {
        use crate::http::framing::FieldCounts;
        for text in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.0\r\nhOsT: a\r\nHOST: b\r\nX-Host: c\r\nHosts: d\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: x\r\ncontent-type: y\r\n\
              Content-Length: 0\r\nContent-Types: z\r\n\r\n",
        ] {
            let mut spans = Vec::new();
            let Parsed::Plain(head) = parse(text, MAX_FIELDS, 1 << 20, &mut spans) else {
                panic!("plain: {text:?}");
            };
            let bytes = Bytes::copy_from_slice(&text[..head.len]);
            let request = build(bytes, &head, &spans).unwrap();
            assert_eq!(head.counts, FieldCounts::of(&request), "{text:?}");
        }
    }

    /// The rule [`lines_ok`] stands for: no empty line before the request
    /// line, and a CR before every LF.
    fn every_line_ends_in_crlf(head: &[u8]) -> bool {
        !matches!(head.first(), Some(b'\r' | b'\n'))
            && (0..head.len()).all(|i| head[i] != b'\n' || (i > 0 && head[i - 1] == b'\r'))
    }

    /// xorshift64: a repeatable stream of numbers below `n`.
    struct Draws(u64);

    impl Draws {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        fn line_end(&mut self) -> &'static [u8] {
            if self.below(4) == 0 {
                b"\n"
            } else {
                b"\r\n"
            }
        }
    }

    #[test]
    fn line_ends_are_judged_as_every_lf_after_a_cr() {
        let mut draws = Draws(0x9e37_79b9_7f4a_7c15);
        let mut spans = Vec::new();
        let (mut plain, mut kept) = (0, 0);
        for _ in 0..5000 {
            let mut head = Vec::new();
            if draws.below(4) == 0 {
                head.extend_from_slice(draws.line_end());
            }
            head.extend_from_slice(b"GET /p HTTP/1.1");
            head.extend_from_slice(draws.line_end());
            for i in 0..draws.below(5) {
                head.extend_from_slice(format!("X-F{i}: v{i}").as_bytes());
                head.extend_from_slice(draws.line_end());
            }
            head.extend_from_slice(draws.line_end());
            if let Parsed::Plain(parsed) = parse(&head, 64, 1 << 20, &mut spans) {
                assert_eq!(parsed.len, head.len());
                let ok = lines_ok(&head, &spans, 0);
                assert_eq!(
                    ok,
                    every_line_ends_in_crlf(&head),
                    "{:?}",
                    String::from_utf8_lossy(&head)
                );
                plain += 1;
                kept += usize::from(ok);
            }
        }
        assert!(plain > 4000 && kept > 500 && kept < plain, "{plain} {kept}");
    }
}
