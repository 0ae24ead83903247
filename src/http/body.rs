//! The response body type handed to hyper.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{mpsc, Notify};

/// Chunks in flight between the Python thread and the connection, per response.
///
/// Small on purpose: a slow client makes the application thread wait (with the
/// GIL released) instead of growing memory without bound.
pub const STREAM_CAPACITY: usize = 8;

/// A response body: nothing, one buffer, a stream of chunks from Python, or a
/// file the connection sends itself.
///
/// A stream ends cleanly when its sender is dropped. An `Err` item aborts the
/// connection: the body stops producing (so hyper never writes a last-chunk
/// that would make the truncated response look complete), hyper flushes what
/// it already has, and the connection task, woken through `abort`, closes the
/// socket (PEP 3333 §"Error Handling": after the headers were sent, the server
/// cannot send another response).
#[derive(Debug)]
pub enum ResponseBody {
    /// No content (`Content-Length: 0`, or none for HEAD/204/304).
    Empty,
    /// The whole content in one buffer, known before the head is sent.
    Full(Option<Bytes>),
    /// The whole content, a few KiB at most, after the field lines in the
    /// [`super::Reply`]'s buffer ([`super::FieldLines::body`]): no buffer of
    /// its own. Only a reply carries it; [`super::Reply::into_response`]
    /// makes it `Full` for hyper, so a body that holds it has nothing to
    /// give (it reads as empty).
    Small,
    /// Chunks sent by the application thread as it produces them.
    Stream {
        /// The chunks, or an error that aborts the connection.
        chunks: mpsc::Receiver<Result<Bytes, BodyError>>,
        /// Wakes the connection task to close the socket after an error.
        abort: Arc<Notify>,
        /// Set once an error arrived: the body then never completes.
        aborted: bool,
    },
    /// A regular file, sent with `sendfile(2)` by the connection (only on
    /// connections that have a [`super::sendfile::SendfileQueue`]).
    File(super::sendfile::FileBody),
}

impl ResponseBody {
    /// A stream body and the sender that feeds it; `abort` is the
    /// connection's (see [`crate::http::Job::abort`]).
    pub fn channel(abort: Arc<Notify>) -> (mpsc::Sender<Result<Bytes, BodyError>>, ResponseBody) {
        let (tx, chunks) = mpsc::channel(STREAM_CAPACITY);
        let body = ResponseBody::Stream {
            chunks,
            abort,
            aborted: false,
        };
        (tx, body)
    }
}

impl ResponseBody {
    /// The next chunk, the end (`None`), or a failure (`Err`): the body ended
    /// early and the connection must close without completing the message.
    ///
    /// Unlike [`Body::poll_frame`], a failure is returned rather than
    /// signalled through the connection's abort; after one, the body yields
    /// nothing more.
    pub(crate) fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, BodyError>>> {
        match self {
            ResponseBody::Empty | ResponseBody::Small => Poll::Ready(None),
            ResponseBody::Full(data) => Poll::Ready(data.take().map(Ok)),
            ResponseBody::Stream {
                chunks, aborted, ..
            } => {
                if *aborted {
                    return Poll::Pending;
                }
                let item = ready!(chunks.poll_recv(cx));
                if let Some(Err(_)) = item {
                    *aborted = true;
                }
                Poll::Ready(item)
            }
            ResponseBody::File(file) => file.poll_chunk(),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match ready!(this.poll_chunk(cx)) {
            Some(Ok(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            // hyper would end the message cleanly on an error it is given
            // (see the type's docs): the body stalls instead, and the
            // connection task closes the socket.
            Some(Err(_)) => {
                match this {
                    ResponseBody::Stream { abort, .. } => abort.notify_one(),
                    ResponseBody::File(file) => file.abort(),
                    _ => {}
                }
                Poll::Pending
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Empty | ResponseBody::Small | ResponseBody::Full(None) => true,
            ResponseBody::File(file) => file.is_end_stream(),
            ResponseBody::Full(Some(_)) | ResponseBody::Stream { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty | ResponseBody::Small | ResponseBody::Full(None) => {
                SizeHint::with_exact(0)
            }
            ResponseBody::Full(Some(data)) => SizeHint::with_exact(data.len() as u64),
            // The head's Content-Length frames a file: hyper reads it from there.
            ResponseBody::Stream { .. } | ResponseBody::File(_) => SizeHint::default(),
        }
    }
}

/// Why a response body ended early; hyper closes the connection on it.
#[derive(Debug, Clone)]
pub struct BodyError(pub String);

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BodyError {}
