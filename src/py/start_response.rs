//! `start_response`, the `write()` callable, and sending the response to hyper.
//!
//! Theory of operation (PEP 3333 §"The start_response() Callable",
//! §"Buffering and Streaming", §"Error Handling"):
//!
//! 1. `start_response(status, response_headers, exc_info=None)` validates its
//!    arguments ([`ResponseHead::new`], in pieces: [`HeadFields`]) and stores the head; nothing is sent.
//!    Called again without `exc_info` it raises; with `exc_info` it replaces the
//!    head if none was sent, else re-raises `exc_info` ("the application must
//!    not trap it").
//! 2. The head goes out with the first non-empty body chunk, whether it comes
//!    from `write()` or from the returned iterable, or at the end of an empty
//!    body. Once sent it cannot change.
//! 3. With an application `Content-Length`, at most that many bytes are sent
//!    (extra bytes are dropped); fewer make the body end in an error, so hyper
//!    closes the connection instead of leaving the client waiting. Without one,
//!    a body known whole (a one-element list) gets one computed; otherwise
//!    hyper uses chunked coding (HTTP/1.1) or closes the connection (HTTP/1.0).
//! 4. An exception before the head was sent becomes a 500; after, the body ends
//!    in an error and hyper aborts the connection: a client never mistakes a
//!    truncated response for a complete one.
//! 5. When the client goes away, sending fails; the caller stops iterating and
//!    still calls `close()`.

use std::borrow::Cow;

use bytes::Bytes;
use http::StatusCode;
use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList, PyString, PyStringData, PyTuple};
use std::sync::Arc;
use tokio::sync::mpsc::error::TrySendError;

use tokio::sync::{mpsc, Notify};

use super::errors;
use super::pool::{Companions, Pool, Reusable};
use super::worker;
use crate::http::dispatch::failure_response;
use crate::http::{
    BodyError, FileBody, Reply, ReplyExtra, ReplySender, ResponseBody, SendfileQueue,
};
use crate::wsgi::status::{FieldName, HeadFields, ResponseHead};

pub(crate) type Chunk = Result<Bytes, BodyError>;

/// Whether a chunk that finds the connection's channel full waits where it
/// is sent or is handed back to `write` ([`StartResponse::write`]).
#[derive(Debug, Default)]
enum Parking {
    /// Wait for room where it is sent.
    #[default]
    Off,
    /// Keep it here for `write`, which waits with the object let go.
    On,
    /// The chunk kept, with a sender of its own: the response may end (its
    /// sender dropped) before the chunk is delivered, and the channel stays
    /// open until it is.
    Parked(mpsc::Sender<Chunk>, Chunk),
}

/// The largest whole body [`StartResponse::send_whole`] copies, in bytes.
const COPIED_BODY: usize = 4096;

/// The `start_response` callable of one request; its `write` method is the
/// PEP 3333 write callable.
#[pyclass(module = "ferrule._ferrule")]
#[derive(Debug)]
pub struct StartResponse {
    reply: Option<ReplySender>,
    abort: Arc<Notify>,
    /// The connection's file queue, when it sends files with `sendfile(2)`.
    sendfile: Option<Arc<SendfileQueue>>,
    /// Where `start_response()` writes the field lines (`Arm::lines_buffer`),
    /// taken by its first call.
    lines_buffer: Vec<u8>,
    stream: Option<mpsc::Sender<Chunk>>,
    pending: Option<ResponseHead>,
    sent: bool,
    remaining: Option<u64>,
    /// HEAD request, or a 204/304 status: the head goes out, a body never does.
    no_body: bool,
    disconnected: bool,
    /// Status and fields as sent, kept only for the access log.
    sent_head: Option<(u16, http::HeaderMap)>,
    keep_head: bool,
    /// Body bytes handed to the connection.
    bytes_sent: u64,
    /// Called on the event loop's thread (the inline path): never block on the
    /// connection; chunks that do not fit wait in `overflow` until a worker
    /// thread takes the response over ([`StartResponse::leave_inline`]).
    inline: bool,
    overflow: std::collections::VecDeque<Chunk>,
    /// The body is complete but chunks still wait in `overflow`: the channel
    /// closes once they are delivered ([`StartResponse::pump`]).
    ending: bool,
    /// A chunk `write` waits to send without holding this object
    /// ([`StartResponse::write`]).
    parking: Parking,
    /// This object's bound `start_response` method, the callable the
    /// application is given ([`StartResponse::callable`]): a call of a bound
    /// method of a native type is a vectorcall, with no tuple of arguments
    /// made and freed (the object's own `__call__` gets one). Made once and
    /// kept while the object is reused, as `write` is.
    call: Option<Py<PyAny>>,
    /// This object's bound `write` method, made once and kept while the
    /// object is reused ([`acquire`]); the cycle it makes is broken by
    /// [`release`], or by the garbage collector ([`StartResponse::__clear__`]).
    write: Option<Py<PyAny>>,
}

/// Finished `start_response` objects, each with its `write`, that nothing
/// else references ([`release`]).
static POOL: Pool<StartResponse> = Pool::new();

/// What a request gives its `start_response` ([`acquire`]).
#[derive(Debug)]
pub(crate) struct Arm {
    /// Where the reply goes.
    pub reply: ReplySender,
    /// The connection's abort signal (`Job::abort`).
    pub abort: Arc<Notify>,
    /// The connection's file queue, when it sends files with `sendfile(2)`.
    pub sendfile: Option<Arc<SendfileQueue>>,
    /// The connection's buffer for the field lines (`Job::lines_buffer`).
    pub lines_buffer: Vec<u8>,
    /// A HEAD request: the head goes out, a body never does.
    pub no_body: bool,
    /// Served on the event loop's thread (the inline path).
    pub inline: bool,
    /// Keep a copy of the head as sent, for [`StartResponse::access`].
    pub keep_head: bool,
}

/// The `start_response` callable for a new request (`arm`): a finished
/// one from the pool, re-armed in place, or a new one with its bound `write`
/// made.
///
/// A request's `start_response` and `write` cost an object each to make and
/// to free (a pyclass instance and a bound method, ~800 instructions); a
/// pooled pair costs neither.
///
/// # Errors
///
/// The Python error of making a new object (out of memory).
pub(crate) fn acquire(py: Python<'_>, arm: Arm) -> PyResult<Bound<'_, StartResponse>> {
    POOL.acquire(py, arm)
}

/// The request of `start_response` is over: keep it for [`acquire`] when
/// nothing but this call and its own `write` reference it and nothing but
/// itself references `write`, not even weakly (the application kept neither,
/// so no one can see it reused); else break its cycle with `write`, so it is
/// freed with its last reference. A kept object drops its connection's state now,
/// except the abort signal (an idle `Notify`) until it is reused.
pub(crate) fn release(py: Python<'_>, start_response: Bound<'_, StartResponse>) {
    POOL.release(py, start_response);
}

/// Reused with its bound `start_response` and `write` (its companions: the
/// `__self__` of each is the object), which only it may hold.
impl Reusable for StartResponse {
    const COMPANIONS: usize = 2;

    type Arm = Arm;

    fn new(arm: Arm) -> StartResponse {
        StartResponse::new(arm)
    }

    fn rearm(&mut self, arm: Arm) {
        StartResponse::rearm(self, arm);
    }

    fn take_companions(&mut self) -> Companions {
        [self.call.take(), self.write.take()]
    }

    fn set_companions(&mut self, [call, write]: Companions) {
        self.call = call;
        self.write = write;
    }

    /// Make the bound `start_response` and `write` kept while the object is
    /// reused.
    fn made(start_response: &Bound<'_, Self>) -> PyResult<()> {
        let py = start_response.py();
        let call = start_response
            .getattr(intern!(py, "start_response"))?
            .unbind();
        let write = start_response.getattr(intern!(py, "write"))?.unbind();
        let mut this = start_response.borrow_mut();
        this.call = Some(call);
        this.write = Some(write);
        Ok(())
    }

    fn retire(&mut self) {
        self.reply = None;
        self.sendfile = None;
        self.lines_buffer = Vec::new();
        self.stream = None;
        self.pending = None;
        self.sent_head = None;
        self.overflow = std::collections::VecDeque::new();
    }
}

impl StartResponse {
    /// What the application is given as `start_response`: the bound method
    /// (a vectorcall), or the object itself before one is made.
    pub(crate) fn callable<'py>(slf: &Bound<'py, Self>) -> Bound<'py, PyAny> {
        match &slf.borrow().call {
            Some(call) => call.bind(slf.py()).clone(),
            None => slf.clone().into_any(),
        }
    }

    /// The state of a new request's response (see [`Arm`]), with no `write` yet.
    pub(crate) fn new(arm: Arm) -> StartResponse {
        StartResponse {
            reply: Some(arm.reply),
            abort: arm.abort,
            sendfile: arm.sendfile,
            lines_buffer: arm.lines_buffer,
            stream: None,
            pending: None,
            sent: false,
            remaining: None,
            no_body: arm.no_body,
            disconnected: false,
            sent_head: None,
            keep_head: arm.keep_head,
            bytes_sent: 0,
            inline: arm.inline,
            overflow: std::collections::VecDeque::new(),
            ending: false,
            parking: Parking::Off,
            call: None,
            write: None,
        }
    }

    /// Become what [`StartResponse::new`] makes of `arm`, keeping `write`.
    ///
    /// Field by field, in place: assigning a whole new state copied all of
    /// it (a `memcpy` call per request).
    fn rearm(&mut self, arm: Arm) {
        // Every field named: one added later must be thought of here.
        let StartResponse {
            reply,
            abort,
            sendfile,
            lines_buffer,
            stream,
            pending,
            sent,
            remaining,
            no_body,
            disconnected,
            sent_head,
            keep_head,
            bytes_sent,
            inline,
            overflow,
            ending,
            parking,
            call: _,
            write: _,
        } = self;
        *reply = Some(arm.reply);
        *abort = arm.abort;
        *sendfile = arm.sendfile;
        *lines_buffer = arm.lines_buffer;
        *stream = None;
        *pending = None;
        *sent = false;
        *remaining = None;
        *no_body = arm.no_body;
        *disconnected = false;
        *sent_head = None;
        *keep_head = arm.keep_head;
        *bytes_sent = 0;
        *inline = arm.inline;
        *overflow = std::collections::VecDeque::new();
        *ending = false;
        *parking = Parking::Off;
    }

    /// A worker thread takes the response over: deliver what waited.
    pub(crate) fn leave_inline(&mut self, py: Python<'_>) {
        self.inline = false;
        while let Some(item) = self.overflow.pop_front() {
            if !self.deliver(py, item) {
                self.overflow.clear();
            }
        }
        if self.ending {
            self.stream = None;
        }
    }

    /// Inline: move chunks that waited in `overflow` into the connection's
    /// channel while it has room. Returns the channel to wait on when some
    /// still wait (`None`: nothing waits, or the client is gone).
    pub(crate) fn pump(&mut self) -> Option<mpsc::Sender<Chunk>> {
        while let Some(item) = self.overflow.pop_front() {
            let Some(tx) = &self.stream else {
                self.overflow.clear();
                return None;
            };
            match tx.try_send(item) {
                Ok(()) => {}
                Err(TrySendError::Full(item)) => {
                    self.overflow.push_front(item);
                    return Some(tx.clone());
                }
                Err(TrySendError::Closed(_)) => {
                    self.overflow.clear();
                    self.disconnected = true;
                    self.stream = None;
                    return None;
                }
            }
        }
        if self.ending {
            self.stream = None;
        }
        None
    }

    /// The connection's channel when it is full (inline: wait before the
    /// next chunk is produced, so a slow client parks only its response).
    pub(crate) fn full_stream(&self) -> Option<mpsc::Sender<Chunk>> {
        self.stream
            .as_ref()
            .filter(|tx| tx.capacity() == 0)
            .cloned()
    }

    /// Close the channel, once the chunks waiting in `overflow` are in it.
    fn end_stream(&mut self) {
        if self.overflow.is_empty() {
            self.stream = None;
        } else {
            self.ending = true;
        }
    }

    /// Status, fields and body bytes as sent (status 0 if nothing was sent).
    pub(crate) fn access(&self) -> (u16, Option<&http::HeaderMap>, u64) {
        match &self.sent_head {
            Some((status, headers)) => (*status, Some(headers), self.bytes_sent),
            None => (0, None, self.bytes_sent),
        }
    }

    /// Whether the head has been sent.
    pub(crate) fn sent(&self) -> bool {
        self.sent
    }

    /// Whether the client went away while the response was being sent.
    pub(crate) fn disconnected(&self) -> bool {
        self.disconnected
    }

    /// Whether more body bytes would reach the client (false for HEAD, after a
    /// disconnect, or once the declared Content-Length is complete).
    pub(crate) fn wants_body(&self) -> bool {
        // `ending`: the body is complete and only waits to be delivered; a
        // `write` kept and called later must not add to it.
        !(self.disconnected
            || self.ending
            || (self.sent && (self.no_body || self.remaining == Some(0))))
    }

    /// The application's declared Content-Length, if start_response was called.
    pub(crate) fn declared_length(&self) -> Option<u64> {
        self.pending.as_ref().and_then(|h| h.content_length)
    }

    /// Send the head with `body`; `length` is set as Content-Length when the
    /// application gave none.
    fn commit(&mut self, body: ResponseBody, length: Option<u64>) -> PyResult<()> {
        let Some(mut head) = self.pending.take() else {
            return Err(PyRuntimeError::new_err(
                "the application sent body data before calling start_response() (PEP 3333)",
            ));
        };
        self.sent = true;
        // RFC 9110 §15.3.5, §15.4.5: 204 and 304 carry no content; a 204 has no
        // Content-Length, and a 304's (the selected representation's) is kept.
        let mut body = body;
        let mut length = length;
        if matches!(
            head.status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        ) {
            self.no_body = true;
            body = ResponseBody::Empty;
            length = None;
            if head.status == StatusCode::NO_CONTENT {
                head.content_length = None;
            }
        }
        if head.content_length.is_none() {
            head.content_length = length;
        }
        // A whole body (Full or Empty) leaves nothing to send later.
        self.remaining = match body {
            ResponseBody::Stream { .. } if !self.no_body => head.content_length,
            _ => Some(0),
        };
        let reason = head.reason.and_then(|reason| {
            let reason: Vec<u8> = reason.chars().map(|c| c as u8).collect();
            hyper::ext::ReasonPhrase::try_from(reason).ok()
        });
        let mut lines = head.fields;
        lines.content_length = head.content_length;
        lines.close = head.close;
        if !self.no_body {
            match &body {
                ResponseBody::Full(Some(data)) => self.bytes_sent = data.len() as u64,
                ResponseBody::Small => self.bytes_sent = lines.body().len() as u64,
                _ => {}
            }
        }
        if self.keep_head {
            self.sent_head = Some((head.status.as_u16(), lines.to_header_map()));
        }
        let sender = self.reply.take().expect("the head is sent once");
        let reply = Reply {
            status: head.status,
            body,
            lines,
            extra: reason.map(|reason| {
                Box::new(ReplyExtra {
                    reason: Some(reason),
                    headers: http::HeaderMap::new(),
                })
            }),
        };
        if sender.send(reply).is_err() {
            self.disconnected = true;
        }
        Ok(())
    }

    fn commit_stream(&mut self, length: Option<u64>) -> PyResult<()> {
        let (tx, body) = ResponseBody::channel(self.abort.clone());
        self.stream = Some(tx);
        self.commit(body, length)
    }

    /// Hand `item` to the connection, waiting (GIL released) while it is full.
    fn push(&mut self, py: Python<'_>, item: Chunk) {
        let Some(tx) = &self.stream else { return };
        if self.inline {
            if !self.overflow.is_empty() {
                self.overflow.push_back(item);
                return;
            }
            match tx.try_send(item) {
                Ok(()) => {}
                Err(TrySendError::Full(item)) => self.overflow.push_back(item),
                Err(TrySendError::Closed(_)) => {
                    self.disconnected = true;
                    self.stream = None;
                }
            }
            return;
        }
        self.deliver(py, item);
    }

    /// Send `item`, waiting (GIL released) while the channel is full; false
    /// if the client is gone.
    fn deliver(&mut self, py: Python<'_>, item: Chunk) -> bool {
        let Some(tx) = &self.stream else { return false };
        let delivered = match tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(item)) if matches!(self.parking, Parking::On) => {
                self.parking = Parking::Parked(tx.clone(), item);
                return true;
            }
            Err(TrySendError::Full(item)) => py.allow_threads(|| worker::send_when_room(tx, item)),
            Err(TrySendError::Closed(_)) => false,
        };
        if !delivered {
            self.disconnected = true;
            self.stream = None;
        }
        delivered
    }

    /// Send one body chunk (rule 2 and 3 of the module docs).
    pub(crate) fn send(&mut self, py: Python<'_>, mut data: Bytes) -> PyResult<()> {
        if data.is_empty() || !self.wants_body() {
            return Ok(());
        }
        if !self.sent {
            // The first chunk is the whole declared body (a framework's usual
            // response): no channel needed.
            if self.declared_length() == Some(data.len() as u64) {
                return self.commit(ResponseBody::Full(Some(data)), None);
            }
            self.commit_stream(None)?;
            if !self.wants_body() {
                return Ok(());
            }
        }
        if let Some(remaining) = self.remaining.as_mut() {
            let n = usize::try_from(*remaining)
                .unwrap_or(usize::MAX)
                .min(data.len());
            data.truncate(n);
            *remaining -= n as u64;
        }
        self.bytes_sent += data.len() as u64;
        self.push(py, Ok(data));
        if self.remaining == Some(0) {
            self.end_stream();
        }
        Ok(())
    }

    /// Send `body`, a `bytes` object, as the whole body, known before the
    /// head (the one-element list case).
    ///
    /// A body of at most [`COPIED_BODY`] bytes is copied (after the field
    /// lines, into their buffer: [`ResponseBody::Small`]) and nothing keeps
    /// the object; a larger one is shared with it (no copy). A shared object is
    /// released after the write: with `--threads N` on the event loop's
    /// thread, which does not hold the GIL, so it waits in pyo3's
    /// pending-decref pool (a lock and a push, then another lock to drain it
    /// at the next GIL acquisition). With one thread the loop's thread holds
    /// the GIL (`super::loop_gil`), so the release there would be immediate;
    /// small bodies are copied in both modes so that both take one path.
    pub(crate) fn send_whole(&mut self, py: Python<'_>, body: &Bound<'_, PyBytes>) -> PyResult<()> {
        let data = body.as_bytes();
        let small = data.len() <= COPIED_BODY;
        let chunk = || {
            if small {
                Bytes::copy_from_slice(data)
            } else {
                Bytes::from_owner(PyBackedBytes::from(body.clone()))
            }
        };
        if self.sent {
            return self.send(py, chunk());
        }
        let len = data.len() as u64;
        let whole = match self.declared_length() {
            Some(declared) if declared > len => {
                self.commit_stream(None)?;
                return self.send(py, chunk());
            }
            _ if len == 0 => return self.commit(ResponseBody::Empty, Some(0)),
            // Bytes past the declared length are cut off.
            Some(declared) => &data[..declared as usize],
            None => data,
        };
        if !small {
            let data = chunk().slice(..whole.len());
            return self.commit(ResponseBody::Full(Some(data)), Some(len));
        }
        // After the field lines, in their buffer: no allocation.
        if let Some(head) = self.pending.as_mut() {
            head.fields.set_body(whole);
        }
        self.commit(ResponseBody::Small, Some(len))
    }

    /// Whether a file body would be sent by the connection with `sendfile(2)`:
    /// the connection can, the head is not sent yet, and a body is wanted
    /// (not HEAD).
    pub(crate) fn can_sendfile(&self) -> bool {
        self.sendfile.is_some() && !self.sent && !self.no_body
    }

    /// Send `length` bytes of `file` from `offset` as the whole body, with
    /// `sendfile(2)` on the connection: nothing is read here and nothing waits
    /// for the client. `available` is what the file has from `offset`.
    ///
    /// A `Content-Length` the file cannot fill is logged and makes the body end
    /// in an error after the file's bytes (rule 3), as a short iterable does.
    ///
    /// # Errors
    ///
    /// `RuntimeError` if `start_response` was not called.
    pub(crate) fn send_file(
        &mut self,
        py: Python<'_>,
        file: std::fs::File,
        offset: u64,
        available: u64,
    ) -> PyResult<()> {
        let Some(queue) = self.sendfile.clone().filter(|_| self.can_sendfile()) else {
            return Err(PyRuntimeError::new_err("this connection cannot send files"));
        };
        let declared = self.declared_length();
        let length = declared.map_or(available, |d| d.min(available));
        let short = declared.is_some_and(|d| d > available);
        if short {
            errors::log(
                py,
                "warning",
                "the body was shorter than its Content-Length; closing the connection",
            );
        }
        if length == 0 && !short {
            return self.commit(ResponseBody::Empty, Some(0));
        }
        let body = FileBody::new(file, offset, length, short, queue, self.abort.clone());
        self.commit(ResponseBody::File(body), Some(length))?;
        if !self.no_body {
            // Counted when handed to the connection, as streamed chunks are.
            self.bytes_sent = length;
        }
        Ok(())
    }

    /// Start a streamed body of exactly `length` bytes (a file's remainder).
    pub(crate) fn start_sized_stream(&mut self, length: u64) -> PyResult<()> {
        self.commit_stream(Some(length))
    }

    /// The channel of a streamed body and the bytes it may still carry, for
    /// senders that run without the GIL (`wsgi.file_wrapper`).
    pub(crate) fn raw_stream(&self) -> Option<(mpsc::Sender<Chunk>, u64)> {
        if !self.wants_body() {
            return None;
        }
        let tx = self.stream.clone()?;
        Some((tx, self.remaining.unwrap_or(u64::MAX)))
    }

    /// Record that a raw sender delivered `sent` bytes and whether the client left.
    pub(crate) fn raw_stream_done(&mut self, sent: u64, disconnected: bool) {
        self.bytes_sent += sent;
        if let Some(remaining) = self.remaining.as_mut() {
            *remaining = remaining.saturating_sub(sent);
        }
        if disconnected {
            self.disconnected = true;
            self.stream = None;
        }
    }

    /// End a successful response (an empty body sends the head now).
    pub(crate) fn finish(&mut self, py: Python<'_>) -> PyResult<()> {
        if !self.sent {
            return match self.declared_length() {
                Some(declared) if declared > 0 && !self.no_body => {
                    self.commit_stream(None)?;
                    self.finish(py)
                }
                _ => self.commit(ResponseBody::Empty, Some(0)),
            };
        }
        // A client that left mid-body is not the application's fault: only a body
        // that really ended short is worth a warning.
        if self.remaining.is_some_and(|r| r > 0) && !self.no_body && !self.disconnected {
            let why = "the body was shorter than its Content-Length; closing the connection";
            errors::log(py, "warning", why);
            self.push(py, Err(BodyError(why.to_owned())));
        }
        self.end_stream();
        Ok(())
    }

    /// End a failed response: `status` (500, or 400/408 for a bad request body)
    /// if nothing was sent, else abort the connection (rule 4).
    pub(crate) fn fail(&mut self, py: Python<'_>, status: StatusCode) {
        if self.sent {
            self.push(
                py,
                Err(BodyError("the application failed mid-response".to_owned())),
            );
            self.end_stream();
        } else if let Some(reply) = self.reply.take() {
            self.sent = true;
            let response = failure_response(status);
            if self.keep_head {
                self.sent_head = Some((status.as_u16(), response.headers().clone()));
            }
            if let ResponseBody::Full(Some(data)) = response.body() {
                self.bytes_sent = data.len() as u64;
            }
            let _ = reply.send(response.into());
        }
    }
}

/// A native `str` as latin-1 bytes (PEP 3333: code points < 256), borrowed
/// from the string itself when CPython stores it one byte per character.
///
/// # Errors
///
/// `TypeError` if `value` is not a `str` (a subclass is one), `ValueError` if
/// it holds a character above U+00FF; `what` names it in the message.
fn latin1<'a>(value: &'a Bound<'_, PyAny>, what: &str) -> PyResult<Cow<'a, [u8]>> {
    let text = value.downcast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a str, not {} (PEP 3333 native string)",
            value
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })?;
    // SAFETY: ferrule is built for CPython's full API (not the limited API,
    // PyPy or GraalPy), where `data` reads the string's own storage; a `str`
    // is immutable, and the slice lives no longer than the borrow of `value`.
    let narrow: Option<Vec<u8>> = match unsafe { text.data() }? {
        PyStringData::Ucs1(bytes) => return Ok(Cow::Borrowed(bytes)),
        // CPython stores a `str` in the narrowest kind its characters fit, so
        // a wider one holds a character above U+00FF; one built wider than it
        // needs (PyUnicode_New from C) is still read character by character.
        PyStringData::Ucs2(units) => units.iter().map(|&c| u8::try_from(c).ok()).collect(),
        PyStringData::Ucs4(units) => units.iter().map(|&c| u8::try_from(c).ok()).collect(),
    };
    narrow.map(Cow::Owned).ok_or_else(|| {
        PyValueError::new_err(format!(
            "{what} {:?} has characters outside latin-1: encode them (RFC 8187 / RFC 2047)",
            text.to_string_lossy()
        ))
    })
}

/// Slots of [`NAMES`]: a power of two.
const NAME_SLOTS: usize = 64;

/// Field names read before, by the identity of their `str`: an application
/// passes the same string objects request after request (literals in its
/// code, a framework's constants), and a `str` never changes, so a name
/// read once need not be decoded, checked and lowercased again. Direct-mapped
/// by address; each slot holds its `str` alive, so an address in it is never
/// another object's. At most [`NAME_SLOTS`] names of at most
/// [`NAME_CACHED_MAX`] bytes are kept.
static NAMES: pyo3::sync::GILProtected<std::cell::RefCell<[NameSlot; NAME_SLOTS]>> =
    pyo3::sync::GILProtected::new(std::cell::RefCell::new([const { None }; NAME_SLOTS]));

/// A slot of [`NAMES`]: a `str` and the field name read from it.
type NameSlot = Option<(Py<PyString>, FieldName)>;

/// The longest field name [`NAMES`] keeps, in bytes.
const NAME_CACHED_MAX: usize = 64;

/// `f` of the field name `name` (a `str`), from [`NAMES`] or read and kept
/// there; of `None` if it is not a valid one (`f` then reports why).
///
/// # Errors
///
/// `TypeError` if `name` is not a `str`, `ValueError` if it is not latin-1.
fn with_name<R>(name: &Bound<'_, PyAny>, f: impl FnOnce(Option<&FieldName>) -> R) -> PyResult<R> {
    let py = name.py();
    let address = name.as_ptr() as usize;
    // CPython objects are 16-byte aligned: the bits above pick the slot.
    let slot = (address >> 4) % NAME_SLOTS;
    {
        // No Python code runs in `f` (it reads a `str` and validates
        // bytes), so the borrow is held while it reads the kept name.
        let names = NAMES.get(py).borrow();
        if let Some((held, parsed)) = &names[slot] {
            if held.as_ptr() as usize == address {
                return Ok(f(Some(parsed)));
            }
        }
    }
    let Ok(parsed) = FieldName::new(&latin1(name, "header name")?) else {
        return Ok(f(None));
    };
    let result = f(Some(&parsed));
    // Only an exact `str` is kept: a subclass may carry other state.
    if let Ok(text) = name.downcast_exact::<PyString>() {
        if parsed.as_str().len() <= NAME_CACHED_MAX {
            NAMES.get(py).borrow_mut()[slot] = Some((text.clone().unbind(), parsed));
        }
    }
    Ok(result)
}

/// Validate one `(name, value)` item of `response_headers` into `fields`.
fn add_field(fields: &mut HeadFields, item: &Bound<'_, PyAny>) -> PyResult<()> {
    let pair = item
        .downcast::<PyTuple>()
        .ok()
        .filter(|t| t.len() == 2)
        .ok_or_else(|| {
            PyTypeError::new_err(format!(
                "response_headers items must be (name, value) tuples, got {item:?}"
            ))
        })?;
    let (name, value) = (pair.get_borrowed_item(0)?, pair.get_borrowed_item(1)?);
    // The name is read first, so its error is the one reported.
    let added = with_name(&name, |parsed| {
        let Some(parsed) = parsed else {
            return Ok::<_, PyErr>(false);
        };
        fields.add_named(parsed, &latin1(&value, "header value")?);
        Ok(true)
    })??;
    if !added {
        // Not a token: `add` reports why.
        fields.add(
            &latin1(&name, "header name")?,
            &latin1(&value, "header value")?,
        );
    }
    Ok(())
}

#[pymethods]
impl StartResponse {
    /// `start_response(status, response_headers, exc_info=None)` → `write`:
    /// the object called as the method, for a caller that holds the object.
    #[pyo3(signature = (status, response_headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        response_headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        StartResponse::start_response(slf, status, response_headers, exc_info)
    }

    /// `start_response(status, response_headers, exc_info=None)` → `write`
    /// (PEP 3333): `status` a str such as ``"200 OK"``, `response_headers`
    /// a list of ``(name, value)`` str tuples, `exc_info` a
    /// ``sys.exc_info()`` tuple to replace a head not yet sent.
    ///
    /// :raises TypeError, ValueError: a bad status or header (the request becomes a 500).
    /// :raises RuntimeError: called twice without ``exc_info``.
    #[pyo3(signature = (status, response_headers, exc_info = None))]
    fn start_response<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        response_headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let exc_info = exc_info.filter(|e| !e.is_none());
        let lines_buffer = {
            let mut this = slf.borrow_mut();
            match exc_info {
                Some(exc_info) if this.sent => {
                    let exc_info = exc_info.downcast::<PyTuple>()?;
                    let value = exc_info.get_item(1)?;
                    let value = value.call_method1("with_traceback", (exc_info.get_item(2)?,))?;
                    return Err(PyErr::from_value(value));
                }
                None if this.pending.is_some() || this.sent => {
                    return Err(PyRuntimeError::new_err(
                        "start_response() called a second time without exc_info (PEP 3333)",
                    ));
                }
                _ => {}
            }
            std::mem::take(&mut this.lines_buffer)
        };
        let status = latin1(status, "status")?;
        // A plain list (the usual case) is read in place; anything else
        // through the iterator protocol.
        let fields = match response_headers.downcast_exact::<PyList>() {
            Ok(list) => {
                let mut fields = HeadFields::in_buffer(lines_buffer, (list.len() + 2).min(64));
                for item in list {
                    add_field(&mut fields, &item)?;
                }
                fields
            }
            Err(_) => {
                let mut fields = HeadFields::in_buffer(lines_buffer, 8);
                for item in response_headers.try_iter()? {
                    add_field(&mut fields, &item?)?;
                }
                fields
            }
        };
        let head = fields
            .finish(&status)
            .map_err(|err| PyValueError::new_err(err.to_string()))?;
        for warning in &head.warnings {
            errors::log(py, "warning", warning);
        }
        let mut this = slf.borrow_mut();
        this.pending = Some(head);
        match &this.write {
            Some(write) => Ok(write.clone_ref(py).into_bound(py)),
            None => {
                drop(this);
                slf.getattr(intern!(py, "write"))
            }
        }
    }

    /// The garbage collector's view: the bound methods this object keeps.
    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        for bound in [&self.call, &self.write].into_iter().flatten() {
            visit.call(bound)?;
        }
        Ok(())
    }

    /// Break the cycles with the bound `start_response` and `write` (the
    /// garbage collector's call).
    fn __clear__(&mut self) {
        self.call = None;
        self.write = None;
    }

    /// The PEP 3333 write callable: send `data` (bytes) at once.
    ///
    /// :raises TypeError: ``data`` is not bytes.
    /// :raises ConnectionError: the client has disconnected.
    ///
    /// With ``--threads N`` a chunk that finds the connection's buffer full
    /// waits for room with the GIL released and this object let go: a thread
    /// the application started may call ``write`` after the response was
    /// handed back, and the worker thread must still be able to end it.
    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let data = data.downcast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() takes bytes, not {}: encode text first",
                data.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        let parked = {
            let mut this = slf.try_borrow_mut()?;
            this.parking = Parking::On;
            let sent = this.send(py, Bytes::copy_from_slice(data.as_bytes()));
            let parked = match std::mem::take(&mut this.parking) {
                Parking::Parked(tx, item) => Some((tx, item)),
                Parking::Off | Parking::On => None,
            };
            sent?;
            parked
        };
        let mut disconnected = false;
        if let Some((tx, item)) = parked {
            if !py.allow_threads(|| worker::send_when_room(&tx, item)) {
                disconnected = true;
                // Busy (the worker thread waits on the connection in turn):
                // its own send finds the client gone.
                if let Ok(mut this) = slf.try_borrow_mut() {
                    this.disconnected = true;
                    this.stream = None;
                }
            }
        }
        if disconnected || slf.try_borrow().is_ok_and(|this| this.disconnected) {
            return Err(PyConnectionError::new_err("the client disconnected"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::py::pool::POOL_TESTS;
    use http::Response;
    use pyo3::ffi;

    /// `send_whole` of `body` (shared with a `bytes` object, as the worker
    /// makes it): the response, and the object's reference count after.
    fn send_whole_of(py: Python<'_>, body: &[u8]) -> (Response<ResponseBody>, isize, isize) {
        let object = PyBytes::new(py, body);
        let before = object.get_refcnt();
        let slot = Arc::new(crate::http::ReplySlot::default());
        let (reply, response) = slot.expect();
        let mut sr = StartResponse::new(arm(reply, false));
        sr.pending = Some(ResponseHead::new(b"200 OK", std::iter::empty()).unwrap());
        sr.send_whole(py, &object).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let response = runtime.block_on(response).expect("a reply").into_response();
        (response, before, object.get_refcnt())
    }

    #[test]
    fn a_small_whole_body_is_copied_and_its_bytes_released_with_the_gil() {
        Python::with_gil(|py| {
            let (response, before, after) = send_whole_of(py, b"Hello, World!");
            assert_eq!(after, before, "released in send_whole");
            assert_eq!(response.headers()["content-length"], "13");
            let ResponseBody::Full(Some(data)) = response.body() else {
                panic!("a whole body");
            };
            assert_eq!(&data[..], b"Hello, World!");
        });
    }

    #[test]
    fn a_large_whole_body_is_shared_not_copied() {
        Python::with_gil(|py| {
            let body = vec![b'x'; COPIED_BODY + 1];
            let (response, before, after) = send_whole_of(py, &body);
            assert_eq!(after, before + 1, "the response holds the bytes object");
            assert_eq!(response.headers()["content-length"], "4097");
            drop(response);
        });
    }

    /// What a request on a connection of its own, not HEAD, gives its
    /// response; served inline if `inline`.
    fn arm(reply: ReplySender, inline: bool) -> Arm {
        Arm {
            reply,
            abort: Arc::new(Notify::new()),
            sendfile: None,
            lines_buffer: Vec::new(),
            no_body: false,
            inline,
            keep_head: false,
        }
    }

    /// A fresh response state on a connection of its own.
    fn fresh() -> Arm {
        let slot = Arc::new(crate::http::ReplySlot::default());
        let (reply, _response) = slot.expect();
        arm(reply, false)
    }

    #[test]
    fn a_write_after_the_body_ended_adds_nothing_while_it_drains() {
        Python::with_gil(|py| {
            let slot = Arc::new(crate::http::ReplySlot::default());
            let (reply, _response) = slot.expect();
            let mut sr = StartResponse::new(arm(reply, true));
            sr.pending = Some(ResponseHead::new(b"200 OK", std::iter::empty()).unwrap());
            // More chunks than the channel holds: the rest wait in `overflow`.
            for _ in 0..64 {
                sr.send(py, Bytes::from_static(b"chunk")).unwrap();
            }
            let waiting = sr.overflow.len();
            assert!(waiting > 0, "the channel is full");
            sr.finish(py).unwrap();
            assert!(sr.ending, "the body waits to be delivered");
            // A write kept from this request, called by a later one.
            sr.send(py, Bytes::from_static(b"INJECTED")).unwrap();
            assert_eq!(sr.overflow.len(), waiting, "nothing added after the end");
            assert_eq!(sr.bytes_sent, 64 * 5);
        });
    }

    /// `start_response("200 OK", [])`: its `write`.
    fn start<'py>(sr: &Bound<'py, StartResponse>) -> PyResult<Bound<'py, PyAny>> {
        sr.call1(("200 OK", PyList::empty(sr.py())))
    }

    #[test]
    fn a_start_response_nobody_kept_is_reused_one_kept_is_not() {
        let _pool = POOL_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        Python::with_gil(|py| {
            // An empty pool: what other tests left in it would be handed out
            // below instead of new objects (the test ran after the weakref one).
            let taken = POOL.take_all(py);
            let first = acquire(py, fresh()).unwrap();
            let write = start(&first).unwrap();
            assert!(
                write.getattr("__self__").unwrap().is(&first),
                "its own write"
            );
            let address = first.as_ptr();
            drop(write);
            let pooled = POOL.len(py);
            release(py, first);
            assert_eq!(POOL.len(py), pooled + 1, "kept");
            let again = acquire(py, fresh()).unwrap();
            assert_eq!(again.as_ptr(), address, "reused");
            assert_eq!(POOL.len(py), pooled);
            // Re-armed, not carried over: the new request may start once.
            let write = start(&again).unwrap();
            assert!(start(&again).is_err(), "a second start_response is refused");
            // The application kept `write`: not reused, and its cycle is broken.
            release(py, again);
            assert_eq!(POOL.len(py), pooled);
            let other = acquire(py, fresh()).unwrap();
            assert_ne!(other.as_ptr(), address);
            let kept_self = write.getattr("__self__").unwrap();
            let kept_self = kept_self.downcast::<StartResponse>().unwrap();
            assert!(kept_self.borrow().write.is_none());
            // The application kept `start_response`: not reused either, and
            // it still works (a bound `write` made on demand).
            let kept = other.clone();
            let address = other.as_ptr();
            release(py, other);
            assert_eq!(POOL.len(py), pooled);
            let next = acquire(py, fresh()).unwrap();
            assert_ne!(next.as_ptr(), address);
            let write = start(&kept).unwrap();
            assert!(write.getattr("__self__").unwrap().is(&kept));
            release(py, next);
            drop(taken);
        });
    }

    #[test]
    fn a_start_response_whose_write_is_weakly_referenced_is_not_reused() {
        let _pool = POOL_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        Python::with_gil(|py| {
            let weakref = py.import("weakref").unwrap();
            // New objects, and room in the pool for them.
            let taken = POOL.take_all(py);
            let unseen: Vec<_> = (0..4).map(|_| acquire(py, fresh()).unwrap()).collect();
            for sr in unseen {
                drop(start(&sr).unwrap());
                release(py, sr);
            }
            assert_eq!(POOL.len(py), 4, "none weakly referenced");
            drop(taken);
            let first = acquire(py, fresh()).unwrap();
            let write = start(&first).unwrap();
            let weak = weakref.call_method1("ref", (&write,)).unwrap();
            drop(write);
            let pooled = POOL.len(py);
            release(py, first);
            assert_eq!(POOL.len(py), pooled, "not kept");
            assert!(
                weak.call0().unwrap().is_none(),
                "write died with its request"
            );
        });
    }

    #[test]
    fn a_pooled_start_response_someone_found_is_not_handed_out() {
        let _pool = POOL_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        Python::with_gil(|py| {
            let taken = POOL.take_all(py);
            let sr = acquire(py, fresh()).unwrap();
            drop(start(&sr).unwrap());
            release(py, sr);
            // Found while pooled (`gc.get_objects()` lists it) and kept.
            let found = POOL.find(py).expect("pooled");
            let next = acquire(py, fresh()).unwrap();
            assert!(!next.is(&found), "a new one");
            assert!(POOL.len(py) == 0, "the found one left the pool");
            assert!(found.borrow(py).write.is_none(), "its cycle is broken");
            release(py, next);
            drop(taken);
        });
    }

    #[test]
    fn a_field_name_is_read_once_per_str_object() {
        Python::with_gil(|py| {
            let slot_of = |name: &Bound<'_, PyAny>| (name.as_ptr() as usize >> 4) % NAME_SLOTS;
            let held = |name: &Bound<'_, PyAny>| {
                NAMES.get(py).borrow()[slot_of(name)]
                    .as_ref()
                    .is_some_and(|(s, _)| s.as_ptr() == name.as_ptr())
            };
            let name_of = |name: &Bound<'_, PyAny>| with_name(name, |n| n.cloned());
            let name = PyString::new(py, "X-Request-Id").into_any();
            let first = name_of(&name).unwrap().unwrap();
            assert_eq!(first.as_str(), "x-request-id");
            assert!(held(&name));
            assert_eq!(name_of(&name).unwrap(), Some(first));
            // Not a token: nothing kept, the caller reports it.
            let bad = PyString::new(py, "Bad Name").into_any();
            assert_eq!(name_of(&bad).unwrap(), None);
            assert!(!held(&bad));
            // A str subclass is read every time, never kept.
            let sub = py
                .eval(c"type('S', (str,), {})('X-Sub')", None, None)
                .unwrap();
            assert_eq!(name_of(&sub).unwrap().unwrap().as_str(), "x-sub");
            assert!(!held(&sub));
            // Not a str at all: the TypeError of PEP 3333's native strings.
            let number = 5i32.into_pyobject(py).unwrap().into_any();
            assert!(name_of(&number)
                .unwrap_err()
                .is_instance_of::<PyTypeError>(py));
        });
    }

    #[test]
    fn latin1_borrows_a_one_byte_str() {
        Python::with_gil(|py| {
            let text = PyString::new(py, "caf\u{e9} au lait");
            let bytes = latin1(text.as_any(), "status").unwrap();
            assert!(matches!(bytes, Cow::Borrowed(_)));
            assert_eq!(&bytes[..], b"caf\xe9 au lait");
            let empty = PyString::new(py, "");
            assert_eq!(
                latin1(empty.as_any(), "status").unwrap(),
                Cow::Borrowed(b"")
            );
        });
    }

    #[test]
    fn latin1_refuses_characters_above_ff() {
        Python::with_gil(|py| {
            for (text, shown) in [("\u{20ac}5", "\"€5\""), ("\u{1f600}", "\"😀\"")] {
                let err = latin1(PyString::new(py, text).as_any(), "header value").unwrap_err();
                assert!(err.is_instance_of::<PyValueError>(py));
                assert_eq!(
                    err.value(py).to_string(),
                    format!(
                        "header value {shown} has characters outside latin-1: encode them \
                         (RFC 8187 / RFC 2047)"
                    )
                );
            }
        });
    }

    #[test]
    fn latin1_reads_a_wider_str_whose_characters_fit() {
        Python::with_gil(|py| {
            // SAFETY: a new 2-byte-kind str of 3 characters, written before it
            // is shared; PyUnicode_New returns a new reference or NULL.
            let text = unsafe {
                let ptr = ffi::PyUnicode_New(3, 0x1000);
                for (i, c) in "ok\u{e9}".chars().enumerate() {
                    assert_eq!(ffi::PyUnicode_WriteChar(ptr, i as isize, u32::from(c)), 0);
                }
                Bound::from_owned_ptr(py, ptr)
            };
            assert_eq!(unsafe { ffi::PyUnicode_KIND(text.as_ptr()) }, 2);
            let bytes = latin1(&text, "header name").unwrap();
            assert_eq!(bytes, Cow::<[u8]>::Owned(b"ok\xe9".to_vec()));
        });
    }

    #[test]
    fn latin1_takes_a_str_subclass_and_refuses_bytes() {
        Python::with_gil(|py| {
            let sub = py
                .eval(c"type('Header', (str,), {})('X-Ok')", None, None)
                .unwrap();
            assert_eq!(sub.get_type().name().unwrap(), "Header");
            assert_eq!(&latin1(&sub, "header name").unwrap()[..], b"X-Ok");
            let raw = PyBytes::new(py, b"200 OK");
            let err = latin1(raw.as_any(), "status").unwrap_err();
            assert!(err.is_instance_of::<PyTypeError>(py));
            assert_eq!(
                err.value(py).to_string(),
                "status must be a str, not bytes (PEP 3333 native string)"
            );
        });
    }
}
