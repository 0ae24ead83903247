//! What the application side sends back for a request: a [`Reply`].
//!
//! The fields an application passes to `start_response` are validated once
//! (`wsgi::status`) and kept as the HTTP/1.1 field lines they will be sent as
//! ([`FieldLines`]): ferrule's own exchange ([`super::h1`]) copies them into
//! the response head as they are, with no `HeaderMap` built, filled and
//! dropped per response. hyper, for the connections it serves, gets them as a
//! map ([`Reply::into_response`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, DATE};
use http::{HeaderMap, Response, StatusCode};

use super::ResponseBody;

/// A response for the connection: status, body, the application's fields in
/// `lines`, and what only a few responses have in `extra`.
///
/// Kept small (at most 128 bytes; a `Response` made it 208): a reply moves
/// from `start_response` through the connection's [`ReplySlot`] and several
/// futures to the writer, and a move of a larger value is a `memcpy` call
/// each time.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// The body.
    pub body: ResponseBody,
    /// The application's fields, validated.
    pub lines: FieldLines,
    /// A reason phrase of its own, or fields the server made (an error
    /// response's); `None` for the usual response (no allocation).
    pub extra: Option<Box<ReplyExtra>>,
}

// The size the doc comment of `Reply` promises (x86-64).
const _: () = assert!(std::mem::size_of::<Reply>() <= 128);

/// What few replies have ([`Reply::extra`]).
#[derive(Debug, Default)]
pub struct ReplyExtra {
    /// The reason phrase, when not the status code's canonical one.
    pub reason: Option<hyper::ext::ReasonPhrase>,
    /// Fields the server made, sent after the application's.
    pub headers: HeaderMap,
}

impl From<Response<ResponseBody>> for Reply {
    /// The status, fields, reason phrase (`hyper::ext::ReasonPhrase`) and
    /// body of `response`; its version and other extensions are dropped.
    fn from(response: Response<ResponseBody>) -> Reply {
        let (mut parts, body) = response.into_parts();
        let reason = parts.extensions.remove::<hyper::ext::ReasonPhrase>();
        let extra = (reason.is_some() || !parts.headers.is_empty()).then(|| {
            Box::new(ReplyExtra {
                reason,
                headers: parts.headers,
            })
        });
        Reply {
            status: parts.status,
            body,
            lines: FieldLines::default(),
            extra,
        }
    }
}

impl Reply {
    /// The whole response as hyper takes it: the lines first, then
    /// `content-length`, `connection: close`, then the server's fields.
    pub fn into_response(self) -> Response<ResponseBody> {
        let Reply {
            status,
            body,
            lines,
            extra,
        } = self;
        let body = match body {
            ResponseBody::Small => ResponseBody::Full(Some(Bytes::copy_from_slice(lines.body()))),
            body => body,
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        let (reason, headers) = match extra {
            Some(extra) => (extra.reason, extra.headers),
            None => (None, HeaderMap::new()),
        };
        if let Some(reason) = reason {
            response.extensions_mut().insert(reason);
        }
        if lines.is_empty() {
            *response.headers_mut() = headers;
            return response;
        }
        let mut map = lines.to_header_map();
        for (name, value) in headers {
            if let Some(name) = name {
                map.append(name, value);
            }
        }
        *response.headers_mut() = map;
        response
    }

    /// The fields the server made (none for the usual response).
    pub fn headers(&self) -> Option<&HeaderMap> {
        self.extra.as_ref().map(|extra| &extra.headers)
    }

    /// The reason phrase of its own, if any.
    pub fn reason(&self) -> Option<&hyper::ext::ReasonPhrase> {
        self.extra.as_ref().and_then(|extra| extra.reason.as_ref())
    }

    /// Ask for the connection to close after this response (RFC 9112 §9.6).
    pub fn close(&mut self) {
        // A `connection: close` line comes where the server's field would
        // when there are none of either: one rule but for an error response.
        match &mut self.extra {
            Some(extra) if self.lines.is_empty() && !extra.headers.is_empty() => {
                extra
                    .headers
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            _ => self.lines.close = true,
        }
    }
}

/// Validated response fields as field lines: `name: value` and CRLF each,
/// names in lowercase (RFC 9112 §5), plus the two fields the server frames
/// itself: the `Content-Length` and `Connection: close`.
///
/// A small whole body may follow the lines in the same buffer
/// ([`FieldLines::set_body`], sent as [`ResponseBody::Small`]), and the
/// buffer goes back to its connection after the write
/// ([`FieldLines::into_buffer`]) for the next response: the usual response
/// allocates nothing for its fields or its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldLines {
    /// The lines, then `body_len` bytes of body.
    lines: Vec<u8>,
    /// The length of the body after the lines, in bytes (0: none).
    body_len: u32,
    date: bool,
    /// The body's length in bytes, sent as `content-length`.
    pub content_length: Option<u64>,
    /// Send `connection: close` and close after the response.
    pub close: bool,
}

impl FieldLines {
    /// No fields, with room for `bytes` of lines.
    pub fn with_capacity(bytes: usize) -> FieldLines {
        FieldLines::in_buffer(Vec::new(), bytes)
    }

    /// No fields, written into `buffer` (emptied first; a connection's from
    /// [`FieldLines::into_buffer`]), with room for `bytes` of lines.
    pub fn in_buffer(mut buffer: Vec<u8>, bytes: usize) -> FieldLines {
        buffer.clear();
        buffer.reserve(bytes);
        FieldLines {
            lines: buffer,
            ..FieldLines::default()
        }
    }

    /// The buffer, to write the next response's lines into
    /// ([`FieldLines::in_buffer`]).
    pub fn into_buffer(self) -> Vec<u8> {
        self.lines
    }

    /// Put `body`, the whole body, after the lines (replacing one put
    /// before); no line is added after it. At most `u32::MAX` bytes (meant
    /// for a few KiB).
    pub fn set_body(&mut self, body: &[u8]) {
        let len = u32::try_from(body.len()).expect("a small body");
        self.lines
            .truncate(self.lines.len() - self.body_len as usize);
        self.lines.extend_from_slice(body);
        self.body_len = len;
    }

    /// The body put after the lines (empty if none).
    pub fn body(&self) -> &[u8] {
        &self.lines[self.lines.len() - self.body_len as usize..]
    }

    /// Add a field. `value` must be a valid field value (no CR, LF, NUL or
    /// other control character but HTAB; RFC 9110 §5.5), as
    /// [`HeaderValue::from_bytes`] checks; `name` is not `content-length` or
    /// `connection` (see the fields of the type).
    pub fn push(&mut self, name: &HeaderName, value: &[u8]) {
        debug_assert!(name != CONTENT_LENGTH && name != CONNECTION);
        let start = [name.as_str().as_bytes(), b": "].concat();
        self.push_line(&start, value, name == DATE);
    }

    /// [`FieldLines::push`] for a name already written as the start of its
    /// line, `name: ` in lowercase; `date` says whether the name is `date`.
    pub fn push_line(&mut self, start: &[u8], value: &[u8], date: bool) {
        debug_assert!(HeaderValue::from_bytes(value).is_ok());
        debug_assert_eq!(self.body_len, 0, "the lines come before a body");
        self.date |= date;
        self.lines.reserve(start.len() + value.len() + 2);
        self.lines.extend_from_slice(start);
        self.lines.extend_from_slice(value);
        self.lines.extend_from_slice(b"\r\n");
    }

    /// The field lines, without `content-length` and `connection`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.lines[..self.lines.len() - self.body_len as usize]
    }

    /// Whether a `date` field is among the lines.
    pub fn has_date(&self) -> bool {
        self.date
    }

    /// No lines, no length and no close.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty() && self.content_length.is_none() && !self.close
    }

    /// The values of `name` (lowercase), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.pairs()
            .filter(move |(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.as_bytes()
            .split(|&b| b == b'\n')
            .filter_map(|line| line.strip_suffix(b"\r"))
            .filter_map(|line| {
                let at = line.iter().position(|&b| b == b':')?;
                Some((&line[..at], &line[at + 2..]))
            })
    }

    /// All the fields as a map, `content-length` and `connection` included.
    pub fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in self.pairs() {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name),
                HeaderValue::from_maybe_shared(Bytes::copy_from_slice(value)),
            ) {
                map.append(name, value);
            }
        }
        if let Some(length) = self.content_length {
            map.insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        if self.close {
            map.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        map
    }
}

/// Where the replies of one connection's requests arrive, one at a time.
///
/// An HTTP/1.1 connection has one request in flight, so one slot made per
/// connection serves all its requests: [`ReplySlot::expect`] arms it for the
/// next and returns both ends, with no allocation per request (a tokio
/// `oneshot` allocates its channel every time).
#[derive(Debug, Default)]
pub struct ReplySlot(Mutex<Slot>);

#[derive(Debug, Default)]
struct Slot {
    /// The request the slot is armed for; a sender of an older one finds the
    /// receiver gone.
    request: u64,
    state: State,
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
enum State {
    /// Waiting for the reply.
    #[default]
    Waiting,
    /// The reply, not yet taken.
    Sent(Reply),
    /// The sender went away without a reply.
    Dropped,
    /// The receiver went away: a reply has nowhere to go.
    Closed,
}

impl ReplySlot {
    /// Arm the slot for the connection's next request.
    ///
    /// # Panics
    ///
    /// Never in use: a connection arms it only after the previous reply was
    /// taken or its receiver dropped.
    pub fn expect(self: &Arc<Self>) -> (ReplySender, ReplyReceiver) {
        let mut slot = self.lock();
        slot.request += 1;
        slot.state = State::Waiting;
        slot.waker = None;
        let request = slot.request;
        drop(slot);
        (
            ReplySender {
                slot: Some(self.clone()),
                request,
            },
            ReplyReceiver {
                slot: self.clone(),
                request,
            },
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sends the reply to one request (see [`ReplySlot`]); dropping it unsent
/// tells the connection that no reply will come.
#[derive(Debug)]
pub struct ReplySender {
    slot: Option<Arc<ReplySlot>>,
    request: u64,
}

impl ReplySender {
    /// Send `reply`.
    ///
    /// # Errors
    ///
    /// [`ReplyClosed`] when the connection no longer waits for it (the
    /// client went away); `reply` is dropped.
    pub fn send(mut self, reply: Reply) -> Result<(), ReplyClosed> {
        let Some(slot) = self.slot.take() else {
            return Err(ReplyClosed);
        };
        let mut guard = slot.lock();
        if guard.request != self.request || !matches!(guard.state, State::Waiting) {
            return Err(ReplyClosed);
        }
        guard.state = State::Sent(reply);
        let waker = guard.waker.take();
        drop(guard);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl Drop for ReplySender {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let mut guard = slot.lock();
        if guard.request == self.request && matches!(guard.state, State::Waiting) {
            guard.state = State::Dropped;
            let waker = guard.waker.take();
            drop(guard);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// The connection no longer waits for a reply ([`ReplySender::send`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyClosed;

/// Resolves to the reply to one request, or `None` if its sender was dropped
/// without one.
#[derive(Debug)]
pub struct ReplyReceiver {
    slot: Arc<ReplySlot>,
    request: u64,
}

impl Future for ReplyReceiver {
    type Output = Option<Reply>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Reply>> {
        let mut slot = self.slot.lock();
        match std::mem::replace(&mut slot.state, State::Closed) {
            State::Sent(reply) => Poll::Ready(Some(reply)),
            State::Dropped | State::Closed => Poll::Ready(None),
            State::Waiting => {
                slot.state = State::Waiting;
                if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    slot.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for ReplyReceiver {
    fn drop(&mut self) {
        let mut slot = self.slot.lock();
        if slot.request == self.request {
            // A reply sent but not taken is dropped here, not by a sender.
            slot.state = State::Closed;
            slot.waker = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            body: ResponseBody::Empty,
            lines: FieldLines::default(),
            extra: None,
        }
    }

    fn status(reply: Option<Reply>) -> Option<u16> {
        reply.map(|r| r.status.as_u16())
    }

    #[tokio::test]
    async fn one_slot_serves_a_connection_s_requests_in_turn() {
        let slot = Arc::new(ReplySlot::default());
        let (tx, rx) = slot.expect();
        tx.send(reply(201)).unwrap();
        assert_eq!(status(rx.await), Some(201));
        // A reply from another thread, after the receiver waits.
        let (tx, rx) = slot.expect();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            tx.send(reply(202)).unwrap();
        });
        assert_eq!(status(rx.await), Some(202));
        sender.join().unwrap();
    }

    #[tokio::test]
    async fn a_sender_dropped_unsent_resolves_to_none() {
        let slot = Arc::new(ReplySlot::default());
        let (tx, rx) = slot.expect();
        std::thread::spawn(move || drop(tx)).join().unwrap();
        assert_eq!(status(rx.await), None);
    }

    #[test]
    fn a_reply_finds_no_receiver_once_it_is_gone_or_the_slot_moved_on() {
        let slot = Arc::new(ReplySlot::default());
        let (tx, rx) = slot.expect();
        drop(rx);
        assert!(tx.send(reply(200)).is_err(), "the client went away");
        let (old, _rx) = slot.expect();
        let (_new, new_rx) = slot.expect();
        assert!(old.send(reply(200)).is_err(), "an older request's sender");
        drop(new_rx);
    }

    #[test]
    fn lines_read_back_as_a_map_in_order() {
        let mut lines = FieldLines::with_capacity(64);
        lines.push(&HeaderName::from_static("x-multi"), b"a");
        lines.push(&http::header::CONTENT_TYPE, b"text/plain; charset=\xe9");
        lines.push(&HeaderName::from_static("x-multi"), b"b: c");
        lines.content_length = Some(12);
        lines.close = true;
        assert_eq!(
            lines.as_bytes(),
            b"x-multi: a\r\ncontent-type: text/plain; charset=\xe9\r\nx-multi: b: c\r\n"
        );
        assert!(!lines.has_date());
        let map = lines.to_header_map();
        let multi: Vec<_> = map.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b: c"]);
        assert_eq!(map["content-type"].as_bytes(), b"text/plain; charset=\xe9");
        assert_eq!(map["content-length"], "12");
        assert_eq!(map["connection"], "close");
        let got: Vec<_> = lines.get_all("x-multi").collect();
        assert_eq!(got, [&b"a"[..], b"b: c"]);
    }

    #[test]
    fn a_reply_becomes_one_map_for_hyper() {
        let mut lines = FieldLines::default();
        lines.push(&DATE, b"Mon, 30 Nov 2026 07:00:00 GMT");
        assert!(lines.has_date());
        let mut response = Response::new(ResponseBody::Empty);
        response
            .headers_mut()
            .insert("x-server", HeaderValue::from_static("1"));
        let mut reply = Reply::from(response);
        reply.lines = lines;
        reply.close();
        let response = reply.into_response();
        let names: Vec<_> = response.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["date", "connection", "x-server"]);
    }

    #[test]
    fn a_response_s_reason_and_fields_go_through_a_reply() {
        let mut response = Response::new(ResponseBody::Empty);
        *response.status_mut() = StatusCode::from_u16(299).unwrap();
        let reason = hyper::ext::ReasonPhrase::try_from(&b"Fine Thing"[..]).unwrap();
        response.extensions_mut().insert(reason.clone());
        response
            .headers_mut()
            .insert("x-server", HeaderValue::from_static("1"));
        let reply = Reply::from(response);
        assert_eq!(reply.reason(), Some(&reason));
        assert_eq!(reply.headers().unwrap()["x-server"], "1");
        let response = reply.into_response();
        assert_eq!(response.status().as_u16(), 299);
        assert_eq!(
            response.extensions().get::<hyper::ext::ReasonPhrase>(),
            Some(&reason)
        );
        assert_eq!(response.headers()["x-server"], "1");
        // The usual response carries nothing more, and closes by a line.
        let mut plain = Reply::from(Response::new(ResponseBody::Empty));
        assert!(plain.extra.is_none());
        plain.close();
        assert!(plain.lines.close);
        assert_eq!(plain.into_response().headers()["connection"], "close");
    }
}
