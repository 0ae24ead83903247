//! The hyper service: checks a request head, queues it as a [`Job`], awaits the
//! application's response.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use std::sync::Arc;

use tokio::sync::{watch, Notify};

use super::{
    HeadBox, Limits, Peer, Reply, ReplyReceiver, ReplySender, ReplySlot, RequestHead, ResponseBody,
    SendfileQueue,
};

/// A request's message body, as the application side receives it.
#[derive(Debug)]
pub enum RequestBody {
    /// Streamed from the connection as it is read; reading it is what sends
    /// `100 Continue`.
    Stream(Incoming),
    /// Read whole before the application was called (the inline path).
    Buffered(Bytes),
}

impl RequestBody {
    /// Whether the request has no body bytes at all (none declared, or a
    /// `Content-Length: 0`, or an empty one read whole).
    pub fn is_empty(&self) -> bool {
        match self {
            RequestBody::Stream(incoming) => hyper::body::Body::is_end_stream(incoming),
            RequestBody::Buffered(data) => data.is_empty(),
        }
    }
}

/// Runs a request to completion on the event loop's own thread (see
/// [`Dispatch::with_inline`]); it must never block on the connection.
pub type InlineHandler = Arc<dyn Fn(Job) + Send + Sync>;

/// Request bodies up to this many bytes are read before an inline call.
pub const INLINE_BODY_MAX: u64 = 64 * 1024;

/// One request waiting for a Python thread.
#[derive(Debug)]
pub struct Job {
    /// Request line and fields.
    pub head: HeadBox,
    /// The message body.
    pub body: RequestBody,
    /// The client (`REMOTE_ADDR`, `REMOTE_PORT`).
    pub peer: Peer,
    /// Index of the listener that accepted the connection.
    pub listener: usize,
    /// Where the application thread sends the response head and body.
    pub reply: ReplySender,
    /// The connection's abort signal, for [`ResponseBody::channel`].
    pub abort: Arc<Notify>,
    /// The connection's file queue when it can send a [`ResponseBody::File`]
    /// (plain TCP and Unix sockets); `None` (TLS) means file bytes must be
    /// read into real buffers.
    pub sendfile: Option<Arc<SendfileQueue>>,
    /// When the request head was received (access log request time).
    pub received: std::time::Instant,
    /// What the application side keeps for the connection ([`Origin::kept`]).
    pub kept: Arc<ConnectionKept>,
    /// A buffer for the response's field lines: the connection's, from its
    /// last response ([`super::FieldLines::in_buffer`]), or empty.
    pub lines_buffer: Vec<u8>,
}

/// What the application side keeps between the requests of one connection,
/// set by its first request and dropped with the connection: the Python side
/// keeps the connection's part of the environ (`REMOTE_ADDR`, `REMOTE_PORT`, and
/// the repeated fields of its first request, `py::environ`).
pub type ConnectionKept = std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>;

/// What the requests of one connection share, for their [`Job`]s.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The client.
    pub peer: Peer,
    /// Index of the listener that accepted the connection.
    pub listener: usize,
    /// The connection's abort signal ([`Job::abort`]).
    pub abort: Arc<Notify>,
    /// The connection's file queue ([`Job::sendfile`]).
    pub sendfile: Option<Arc<SendfileQueue>>,
    /// Where the replies to the connection's requests arrive.
    pub replies: Arc<ReplySlot>,
    /// What the application side keeps for the connection ([`Job::kept`]).
    pub kept: Arc<ConnectionKept>,
}

/// Shared state of the service: the job queue and the request budget.
pub struct Dispatch {
    jobs: crossbeam_channel::Sender<Job>,
    served: AtomicU64,
    max_requests: Option<u64>,
    stop: watch::Sender<bool>,
    limits: Limits,
    inline: Option<(InlineHandler, std::time::Duration)>,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("max_requests", &self.max_requests)
            .field("limits", &self.limits)
            .field("inline", &self.inline.is_some())
            .finish_non_exhaustive()
    }
}

impl Dispatch {
    /// A dispatcher feeding `jobs`.
    ///
    /// With `max_requests`, the request that reaches the budget sets `stop`, so
    /// the server closes that connection after its response and stops accepting
    /// (wsgiref's `handle_request()`).
    pub fn new(
        jobs: crossbeam_channel::Sender<Job>,
        max_requests: Option<u64>,
        stop: watch::Sender<bool>,
        limits: Limits,
    ) -> Dispatch {
        Dispatch {
            jobs,
            served: AtomicU64::new(0),
            max_requests,
            stop,
            limits,
            inline: None,
        }
    }

    /// Serve eligible requests inline: on the event loop's thread, with no
    /// hand-off to another thread (bjoern's model, for `--threads 1`).
    ///
    /// Eligible: no `Expect: 100-continue` (its body must not be read ahead),
    /// and no body or a `Content-Length` body of at most [`INLINE_BODY_MAX`]
    /// bytes, which is read first (within `body_timeout`; 408 after), so the
    /// application never waits on the connection from the loop's thread.
    /// Everything else goes to the job queue.
    #[must_use]
    pub fn with_inline(
        mut self,
        handler: InlineHandler,
        body_timeout: std::time::Duration,
    ) -> Dispatch {
        self.inline = Some((handler, body_timeout));
        self
    }

    /// Answer one request hyper parsed: a 4xx for a bad head, else the
    /// application's response.
    ///
    /// `abort` and `sendfile` are the connection's, for the [`Job`].
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        origin: &Origin,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let received = std::time::Instant::now();
        let (parts, body) = req.into_parts();
        let head = RequestHead::from_parts(parts);
        let length = hyper::body::Body::size_hint(&body).exact();
        if let Err(refused) = self.check(&head, length) {
            return Ok(*refused);
        }
        let inline = self.inline.as_ref().filter(|_| {
            !head.contains("expect")
                && (hyper::body::Body::is_end_stream(&body)
                    || length.is_some_and(|n| n <= INLINE_BODY_MAX))
        });
        // The inline path reads a small body whole first, so the application
        // never waits on the connection from the loop's thread.
        let body = match inline {
            Some((_, body_timeout)) => match read_whole(body, *body_timeout).await {
                Ok(data) => RequestBody::Buffered(data),
                Err(refused) => return Ok(refused),
            },
            None => RequestBody::Stream(body),
        };
        let reply = self
            .submit(origin, HeadBox::new(head), body, received, Vec::new())
            .await;
        Ok(reply.into_response())
    }

    /// Whether the stop flag is set: the server is draining.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Check a request head before its body is read: RFC 9112 §3.2's Host
    /// rule, the `--limit-request-*` limits (`length` is the body's declared
    /// size, if known) and [`super::framing::check`].
    ///
    /// # Errors
    ///
    /// The response to send instead (400, 413, 414, 431 or 501; it closes
    /// the connection).
    pub fn check(
        &self,
        head: &RequestHead,
        length: Option<u64>,
    ) -> Result<(), Box<Response<ResponseBody>>> {
        let counts = super::framing::FieldCounts::of(head);
        self.check_counted(head, length, &counts, true)
    }

    /// [`Dispatch::check`] for a head ferrule's exchange parsed: `counts` as
    /// it counted them, `length` its `Content-Length` (0 without one), and no
    /// field line over `--limit-request-field-size` (the exchange measured
    /// each raw line, which is never shorter than the line checked here).
    ///
    /// # Errors
    ///
    /// As [`Dispatch::check`].
    pub(crate) fn check_plain(
        &self,
        head: &RequestHead,
        length: u64,
        counts: super::framing::FieldCounts,
    ) -> Result<(), Box<Response<ResponseBody>>> {
        debug_assert_eq!(counts, super::framing::FieldCounts::of(head));
        self.check_counted(head, Some(length), &counts, false)
    }

    /// [`Dispatch::check`] with the fields counted; `field_sizes`: whether
    /// to check each field line against `--limit-request-field-size`.
    fn check_counted(
        &self,
        head: &RequestHead,
        length: Option<u64>,
        counts: &super::framing::FieldCounts,
        field_sizes: bool,
    ) -> Result<(), Box<Response<ResponseBody>>> {
        // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
        // code to any HTTP/1.1 request message that lacks a Host header field and
        // to any request message that contains more than one Host header field".
        let hosts = counts.hosts;
        if hosts > 1 || (hosts == 0 && head.version == Version::HTTP_11) {
            return Err(Box::new(error_response(
                StatusCode::BAD_REQUEST,
                "HTTP/1.1 requests need exactly one Host field (RFC 9112 section 3.2)",
            )));
        }
        let checked = self
            .limits
            .check_head(head, field_sizes)
            .and_then(|()| match length {
                Some(length) => self.limits.check_body_length(length),
                None => Ok(()),
            });
        if let Err(refused) = checked {
            return Err(Box::new(error_response(refused.status, &refused.message)));
        }
        if let Err((status, why)) = super::framing::check_counted(head, counts) {
            return Err(Box::new(error_response(status, &why)));
        }
        Ok(())
    }

    /// Run a checked request: inline when this dispatcher serves inline and
    /// the body was read whole, else through the job queue; the returned
    /// future resolves to the application's response. `received` is when its
    /// head arrived; `lines_buffer` is lent to the reply ([`Job::lines_buffer`]).
    ///
    /// The request starts here, before the future is polled (an inline one
    /// runs to its reply): the future holds only the connection's reply
    /// receiver, so it is small to move into the caller's (an `async fn`'s
    /// held the request and a reply, and every move of it was a `memcpy`).
    pub fn submit(
        &self,
        origin: &Origin,
        head: HeadBox,
        body: RequestBody,
        received: std::time::Instant,
        lines_buffer: Vec<u8>,
    ) -> Submitted<'_> {
        if let Some(max) = self.max_requests {
            if self.served.fetch_add(1, Ordering::Relaxed) + 1 >= max {
                self.stop.send_replace(true);
            }
        }
        let (reply, response) = origin.replies.expect();
        let job = Job {
            head,
            body,
            peer: origin.peer,
            listener: origin.listener,
            reply,
            abort: origin.abort.clone(),
            sendfile: origin.sendfile.clone(),
            received,
            kept: origin.kept.clone(),
            lines_buffer,
        };
        match (&self.inline, &job.body) {
            (Some((handler, _)), RequestBody::Buffered(_)) => handler(job),
            _ => {
                if let Err(unsent) = self.jobs.send(job) {
                    // Answered through the connection's slot like any reply.
                    let refusal = error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the server is shutting down",
                    );
                    let _ = unsent.0.reply.send(refusal.into());
                }
            }
        }
        Submitted {
            dispatch: self,
            response,
        }
    }
}

/// The response to a request [`Dispatch::submit`] started: the
/// application's reply (a 500 if none came), told to close the connection
/// when the server is stopping (RFC 9112 §9.6).
#[derive(Debug)]
#[must_use = "the response must be awaited"]
pub struct Submitted<'a> {
    dispatch: &'a Dispatch,
    response: ReplyReceiver,
}

impl Future for Submitted<'_> {
    type Output = Reply;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let Poll::Ready(reply) = Pin::new(&mut self.response).poll(cx) else {
            return Poll::Pending;
        };
        let mut reply = reply.unwrap_or_else(|| {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into()
        });
        if self.dispatch.stopping() {
            // Stopping: this is the connection's last response (RFC 9112 §9.6).
            reply.close();
        }
        Poll::Ready(reply)
    }
}

/// Read a whole request body within `timeout`; the error response (400 for a
/// malformed or incomplete body, 408 when it is late) if it cannot be read.
async fn read_whole(
    body: Incoming,
    timeout: std::time::Duration,
) -> Result<Bytes, Response<ResponseBody>> {
    use http_body_util::BodyExt;
    if hyper::body::Body::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    match tokio::time::timeout(timeout, body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(failure_response(StatusCode::BAD_REQUEST)),
        Err(_) => Err(failure_response(StatusCode::REQUEST_TIMEOUT)),
    }
}

/// The [`error_response`] for a request that failed with `status`: 400 (its
/// body is malformed or ended early), 408 (its body is late), 413 (its body
/// is too large), anything else as a 500's message.
pub fn failure_response(status: StatusCode) -> Response<ResponseBody> {
    let message = match status {
        StatusCode::BAD_REQUEST => "The request body is malformed or incomplete.",
        StatusCode::REQUEST_TIMEOUT => "The request body did not arrive in time.",
        StatusCode::PAYLOAD_TOO_LARGE => "The request body is too large.",
        _ => "Internal Server Error",
    };
    error_response(status, message)
}

/// A short `text/plain` response that closes the connection.
pub fn error_response(status: StatusCode, message: &str) -> Response<ResponseBody> {
    let body = format!(
        "{} {}\n{message}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut response = Response::new(ResponseBody::Full(Some(Bytes::from(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONNECTION, http::HeaderValue::from_static("close"));
    response
}
