//! The accept loop and per-connection tasks, with graceful shutdown.
//!
//! Theory of operation:
//!
//! 1. One future, [`run`], accepts on every listener and spawns one task per
//!    connection (or serves connections one at a time, in order, when
//!    [`RunOptions::sequential`] is set: wsgiref's `handle_request()`).
//! 2. Every connection task watches the same stop flag. When it turns `true`,
//!    the accept loop ends, the listeners are dropped (this process's
//!    descriptors of them closed), and each connection gets hyper's
//!    `graceful_shutdown()` (or the same from [`super::h1`]): the response in
//!    flight is finished, keep-alive is switched off, an idle connection is
//!    closed at once.
//! 3. [`run`] returns when every connection has finished, or when
//!    [`RunOptions::graceful_timeout`] has passed since the stop (then the
//!    remaining connections are aborted).
//! 4. A connection's IO is its socket, then TLS if configured. ferrule's own
//!    exchange ([`super::h1`]) serves it while its requests are plain; the
//!    first other one hands it to hyper behind the request
//!    [`super::framer::Framed`]. A plain TCP or Unix socket is first
//!    wrapped in a [`SendfileIo`], and only such a connection gives its jobs a
//!    [`SendfileQueue`]: file bodies are sent with `sendfile(2)` where nothing
//!    above the socket would see their placeholder bytes (see
//!    [`super::sendfile`]).
//! 5. Every connection's socket is wrapped in a [`SendTimeout`] (under TLS,
//!    over the [`SendfileIo`]): a client that takes no response bytes for
//!    [`RunOptions::send_timeout`] while some wait to be sent is cut off,
//!    whichever of the above writes to it (see [`super::send_timeout`]).
//! 6. Once a second the accept loop asks whether open connections have come
//!    down from a burst; if so, the C allocator's free memory is given back
//!    to the system (see [`super::trim`]).
//! 7. A connection the server ends is torn down in stages (RFC 9112 §9.6):
//!    after hyper's last response and its shutdown of the write side, the
//!    socket is read and discarded until the client ends its side or a bound
//!    passes ([`super::linger`]), unless its input had ended quietly (the
//!    client's end, or `--keep-alive`); [`super::h1`] does the same for the
//!    connections it closes. The graceful timeout bounds it like any other
//!    connection task.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;

use super::send_timeout::{Report, SendTimeout};
use super::sendfile::{SendfileIo, SendfileQueue};
use super::trim::{self, IdleTrim};
use super::{proxy_protocol, Dispatch, Limits, Origin};
use crate::config::forwarded::TrustedProxies;

/// How [`run`] serves.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Serve one connection at a time, in accept order. Default is `false`.
    pub sequential: bool,
    /// How long in-flight requests get after the stop flag is set. Default is 30 s.
    pub graceful_timeout: Duration,
    /// How long a client may take to send a whole request head. Default is 10 s.
    pub header_timeout: Duration,
    /// How long a connection may stay idle between requests. Default is 5 s.
    pub keep_alive: Duration,
    /// `--body-timeout`: the longest wait for the next piece of a request
    /// body. Default is 60 s.
    pub body_timeout: Duration,
    /// `--send-timeout`: the longest a client may take no response bytes
    /// while some wait to be sent (nginx's `send_timeout`, measured between
    /// two writes, not over the whole response); then the connection is
    /// closed. Zero disables it. Default is 60 s.
    pub send_timeout: Duration,
    /// Where a connection closed for `send_timeout` is reported. Default is
    /// none: nothing is logged.
    pub send_timeout_report: Option<Report>,
    /// After the stop, how long a connection may still start a request before
    /// it is closed when idle. Default is 0 (close idle connections at once).
    ///
    /// A client that sent its next request just as the server closed the
    /// connection would see a reset: a window lets those requests in, each
    /// answered with `Connection: close` (see [`Dispatch`]).
    pub drain_window: Duration,
    /// Head size limits hyper enforces while parsing (see [`Limits`]).
    pub limits: Limits,
    /// TLS for TCP listeners (`--certfile`); `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `--proxy-protocol`: the peers that must send a PROXY header first.
    pub proxy_protocol: Option<Arc<TrustedProxies>>,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            sequential: false,
            graceful_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            send_timeout_report: None,
            drain_window: Duration::ZERO,
            limits: Limits::default(),
            tls: None,
            proxy_protocol: None,
        }
    }
}

/// A listening socket the accept loop serves.
#[derive(Debug)]
pub enum Listener {
    /// TCP (`HOST:PORT`, or an inherited TCP socket).
    Tcp(TcpListener),
    /// A Unix stream socket (`unix:/path`, or an inherited one).
    Unix(UnixListener),
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP client's address.
    Tcp(SocketAddr),
    /// A Unix-socket client (typically a proxy on the same machine).
    Unix,
}

impl Peer {
    /// The client's IP address, if it has one.
    pub fn ip(self) -> Option<std::net::IpAddr> {
        match self {
            Peer::Tcp(addr) => Some(addr.ip()),
            Peer::Unix => None,
        }
    }
}

enum Accepted {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

/// Serve `listeners` until `stop` turns `true`, then drain (module docs).
///
/// Returns the number of connections still open when the graceful timeout
/// ran out (they were aborted); 0 after a clean drain.
pub async fn run(
    listeners: Vec<Listener>,
    dispatch: Arc<Dispatch>,
    mut stop: watch::Receiver<bool>,
    options: RunOptions,
) -> usize {
    let mut connections = JoinSet::new();
    // Free memory goes back to the system after a burst (see super::trim).
    let mut idle_trim = IdleTrim::new();
    let mut trim_check = tokio::time::interval(trim::CHECK_EVERY);
    trim_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stop.borrow_and_update() {
            break;
        }
        tokio::select! {
            biased;
            _ = stop.changed() => {}
            accepted = accept_any(&listeners) => match accepted {
                (index, Ok(Accepted::Tcp(stream, addr))) => {
                    let task = serve_tcp(stream, addr, index, dispatch.clone(), stop.clone(), options.clone());
                    if options.sequential {
                        task.await;
                    } else {
                        connections.spawn(task);
                        idle_trim.opened(connections.len());
                    }
                }
                (index, Ok(Accepted::Unix(stream))) => {
                    let fd = stream.as_raw_fd();
                    let (stream, files) = SendfileIo::new(stream);
                    let stream = send_timed(stream, Peer::Unix, &options);
                    let task = serve_connection(stream, Peer::Unix, index, Some((files, fd)), dispatch.clone(), stop.clone(), &options);
                    if options.sequential {
                        task.await;
                    } else {
                        connections.spawn(task);
                        idle_trim.opened(connections.len());
                    }
                }
                (_, Err(err)) => accept_error(err).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = trim_check.tick(), if !options.sequential => {
                if idle_trim.due(connections.len(), std::time::Instant::now()) {
                    trim::release_free_memory();
                }
            }
        }
    }
    // Accept no more: a process that holds no other descriptor of a listener
    // no longer keeps it open (a worker stopping for a reload or
    // --max-requests; the master keeps its own for the next workers).
    drop(listeners);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(options.graceful_timeout, drain)
        .await
        .is_err()
    {
        let left = connections.len();
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        return left;
    }
    0
}

/// Accept on whichever listener has a connection ready.
async fn accept_any(listeners: &[Listener]) -> (usize, io::Result<Accepted>) {
    poll_fn(|cx| {
        for (index, listener) in listeners.iter().enumerate() {
            let ready = match listener {
                Listener::Tcp(l) => l
                    .poll_accept(cx)
                    .map(|r| r.map(|(s, addr)| Accepted::Tcp(s, addr))),
                Listener::Unix(l) => l.poll_accept(cx).map(|r| r.map(|(s, _)| Accepted::Unix(s))),
            };
            if let Poll::Ready(result) = ready {
                return Poll::Ready((index, result));
            }
        }
        Poll::Pending
    })
    .await
}

/// A TCP connection: the PROXY header if its peer must send one, then TLS
/// if configured, then HTTP.
async fn serve_tcp(
    mut stream: TcpStream,
    mut addr: SocketAddr,
    index: usize,
    dispatch: Arc<Dispatch>,
    stop: watch::Receiver<bool>,
    options: RunOptions,
) {
    let _ = stream.set_nodelay(true);
    if let Some(allowed) = &options.proxy_protocol {
        if allowed.trusts(Some(addr.ip())) {
            match proxy_protocol::read_header(&mut stream, addr, options.header_timeout).await {
                Ok(client) => addr = client,
                Err(_) => return,
            }
        }
    }
    match &options.tls {
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            // Under rustls, so the timer sees the socket's writes, not its buffer.
            let stream = send_timed(stream, Peer::Tcp(addr), &options);
            // The handshake counts toward the time a client has to send its head.
            let handshake = tokio::time::timeout(options.header_timeout, acceptor.accept(stream));
            if let Ok(Ok(tls)) = handshake.await {
                // No sendfile queue: rustls must be given the file's real bytes.
                serve_connection(tls, Peer::Tcp(addr), index, None, dispatch, stop, &options).await;
            }
        }
        None => {
            let fd = stream.as_raw_fd();
            let (stream, files) = SendfileIo::new(stream);
            let peer = Peer::Tcp(addr);
            let stream = send_timed(stream, peer, &options);
            serve_connection(
                stream,
                peer,
                index,
                Some((files, fd)),
                dispatch,
                stop,
                &options,
            )
            .await;
        }
    }
}

/// `stream` with `--send-timeout` on its writes (module docs, point 5).
fn send_timed<S: AsRawFd>(stream: S, peer: Peer, options: &RunOptions) -> SendTimeout<S> {
    let report = options.send_timeout_report.clone();
    SendTimeout::new(stream, options.send_timeout, peer, report)
}

/// Back off after an accept error: EMFILE and ENFILE clear when connections close.
async fn accept_error(_err: io::Error) {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Serve HTTP/1.1 on `stream`; `plain` is given when `stream` is a
/// [`SendfileIo`] right on the socket (see [`super::sendfile`]), with the
/// socket's descriptor: bytes written to it straight need nothing more (no
/// TLS).
fn serve_connection<S>(
    stream: S,
    peer: Peer,
    listener: usize,
    plain: Option<(Arc<SendfileQueue>, std::os::fd::RawFd)>,
    dispatch: Arc<Dispatch>,
    mut stop: watch::Receiver<bool>,
    options: &RunOptions,
) -> impl Future<Output = ()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let drain_window = options.drain_window;
    let header_timeout = options.header_timeout;
    let limits = options.limits;
    let keep_alive = options.keep_alive;
    let body_timeout = options.body_timeout;
    let (sendfile, fd) = plain.unzip();
    async move {
        let abort = Arc::new(Notify::new());
        let writev = sendfile.is_some();
        let origin = Origin {
            peer,
            listener,
            abort: abort.clone(),
            sendfile,
            replies: Arc::default(),
            kept: Arc::default(),
        };
        let timeouts = super::framer::Timeouts {
            keep_alive,
            header: header_timeout,
            body: body_timeout,
        };
        // ferrule's own exchange serves plain requests; the first other one
        // hands the connection to hyper, behind the framer (see super::h1).
        let conn = super::h1::Conn {
            dispatch: &dispatch,
            origin: &origin,
            fd,
            limits,
            timeouts,
            drain_window,
        };
        let (stream, unread, drain_at) = match super::h1::serve(stream, conn, &mut stop).await {
            super::h1::Served::Closed => return,
            super::h1::Served::Handoff {
                io,
                unread,
                drain_at,
            } => (io, unread, drain_at),
        };
        let stream =
            super::framer::Framed::new(stream, limits.field_size, timeouts).with_unread(unread);
        let service = service_fn(move |req| {
            let dispatch = dispatch.clone();
            let origin = origin.clone();
            async move { dispatch.handle(req, &origin).await }
        });
        let mut builder = http1::Builder::new();
        if writev {
            // File placeholders must reach the IO as the body's own slices,
            // never copied into hyper's flat buffer (see super::sendfile).
            builder.writev(true);
        }
        builder
            // The framer ends the input at a refused head; the responses to the
            // requests before it must still go out, so end of input must not
            // abort the connection.
            .half_close(true)
            // The framer times heads (408), idle connections, and connections it
            // stopped judging; hyper's header timer would add a timer
            // registration and an allocation to every request.
            .header_read_timeout(None)
            .max_headers(limits.hyper_max_headers())
            .max_buf_size(limits.head_buffer());
        // pipeline_flush stays off: with it, hyper 1.x buffers its automatic
        // 400/414/431 for a malformed head and closes without flushing it, so the
        // client gets nothing (tests/rust/http_raw.rs malformed_heads_get_a_4xx).
        // It would also switch hyper to flattening (copying) body chunks, which
        // file placeholders must never go through.
        // Not pinned: it is taken apart once done, for its socket (the
        // lingering close below).
        let mut connection = builder.serve_connection(TokioIo::new(stream), service);
        let far = || tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
        let mut stopping = drain_at.is_some();
        let drain = tokio::time::sleep_until(drain_at.unwrap_or_else(far));
        tokio::pin!(drain);
        loop {
            tokio::select! {
                _ = &mut connection => break,
                () = stopped(&mut stop), if !stopping => {
                    stopping = true;
                    drain.as_mut().reset(tokio::time::Instant::now() + drain_window);
                }
                () = drain.as_mut(), if stopping => {
                    std::pin::Pin::new(&mut connection).graceful_shutdown();
                    drain.as_mut().reset(far());
                }
                () = abort.notified() => {
                    // A response body failed (see ResponseBody): one more poll lets
                    // hyper flush what it holds, then dropping the connection closes
                    // the socket without a clean end of the message.
                    poll_fn(|cx| {
                        let _ = std::pin::Pin::new(&mut connection).poll(cx);
                        Poll::Ready(())
                    })
                    .await;
                    return;
                }
            }
        }
        // hyper has written its last response and shut the write side down
        // (after an error it may not have: again, then, which is harmless).
        // The rest of RFC 9112 §9.6's close: the client may still send,
        // unless its input ended quietly (see super::linger). An idle
        // connection hyper closes for a graceful stop lingers too (nothing
        // here tells it from one closed after a response): at most
        // LINGER_GAP more of the stop, for a client that keeps its side open.
        let mut framed = connection.into_parts().io.into_inner();
        if framed.shutdown().await.is_ok() && !framed.ended_quietly() {
            let mut stream = framed.into_inner();
            super::linger::linger(&mut stream, super::linger::Bounds::default()).await;
        }
    }
}

/// Resolves once the stop flag is `true`.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}
