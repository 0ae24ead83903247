//! The response body type handed to hyper.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Chunks in flight between the Python thread and the connection, per response.
///
/// Small on purpose: a slow client makes the application thread wait (with the
/// GIL released) instead of growing memory without bound.
pub const STREAM_CAPACITY: usize = 8;

/// A response body: nothing, one buffer, or a stream of chunks from Python.
///
/// A stream ends cleanly when its sender is dropped; an `Err` item makes hyper
/// abort the connection, so a truncated response never looks complete (PEP 3333:
/// an error after the headers were sent must not produce a second response).
#[derive(Debug)]
pub enum ResponseBody {
    /// No content (`Content-Length: 0`, or none for HEAD/204/304).
    Empty,
    /// The whole content in one buffer, known before the head is sent.
    Full(Option<Bytes>),
    /// Chunks sent by the application thread as it produces them.
    Stream(mpsc::Receiver<Result<Bytes, BodyError>>),
}

impl ResponseBody {
    /// A stream body and the sender that feeds it.
    pub fn channel() -> (mpsc::Sender<Result<Bytes, BodyError>>, ResponseBody) {
        let (tx, rx) = mpsc::channel(STREAM_CAPACITY);
        (tx, ResponseBody::Stream(rx))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ResponseBody::Empty => Poll::Ready(None),
            ResponseBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ResponseBody::Stream(rx) => rx
                .poll_recv(cx)
                .map(|item| item.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResponseBody::Empty | ResponseBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Empty | ResponseBody::Full(None) => SizeHint::with_exact(0),
            ResponseBody::Full(Some(data)) => SizeHint::with_exact(data.len() as u64),
            ResponseBody::Stream(_) => SizeHint::default(),
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
