//! `wsgi.input`: the request body as a binary file-like object.
//!
//! PEP 3333 §"Input and Error Streams": `read(size)`, `readline()`,
//! `readline(size)`, `readlines(hint)` and iteration, with EOF at the end of the
//! body (Content-Length or chunked; `wsgi.input_terminated` is `True`).
//!
//! The body is pulled from hyper on demand, with the GIL released while the
//! thread waits. Nothing is read before the application asks: for a request with
//! `Expect: 100-continue`, the first read is what makes hyper send
//! `100 Continue` (RFC 9110 §10.1.1), so an application that answers without
//! reading never makes the client upload.
//!
//! No borrow of the object is held while a read waits: the reader takes the
//! body out of it for the wait and puts it back after. So the end of the
//! request can finish the object meanwhile (the waiting read then returns as
//! at the end of the body, at once), and reads from several threads take
//! turns: a read that finds another waiting for the client waits for it to
//! return, then goes on with what follows; each returns a contiguous piece of
//! the body and no byte is returned twice, as with a buffered file.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};

use super::pool::{Pool, Reusable};
use super::worker;
use crate::http::RequestBody;
use pyo3::exceptions::{PyOSError, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use tokio::runtime::Handle;
use tokio::sync::Notify;

/// The `wsgi.input` object of one request at a time: once its request is
/// over and nothing else holds it, it serves a later one ([`acquire`]).
#[pyclass(module = "ferrule._ferrule")]
#[derive(Debug)]
pub struct Input {
    /// The stream still to read; `None` once at its end, and while a read
    /// waits for its next frame (the reader holds it then, `eof` is false).
    body: Option<Incoming>,
    /// Read from the body, not yet taken: a body read whole before the call
    /// is held as it came (no copy); streamed data joins it as it arrives.
    buffer: Bytes,
    eof: bool,
    runtime: Handle,
    failure: Option<StatusCode>,
    /// Bytes received so far, and the most allowed (0: unlimited).
    received: u64,
    limit: u64,
    timeout: Duration,
    /// Signalled when a read that held the body returns (for the reads waiting
    /// their turn) and when the request ends ([`Input::finish`]: for the read
    /// waiting for the client). Made by the first read that waits on the
    /// stream; kept when the object is reused.
    turn: Option<Arc<Notify>>,
}

/// How a wait for the next frame of the body ended.
enum Waited {
    /// The next frame, the end of the body (`None`), or a read error.
    Frame(Option<Result<Frame<Bytes>, hyper::Error>>),
    /// `--body-timeout` passed with nothing from the client.
    TimedOut,
    /// The request ended meanwhile ([`Input::finish`]).
    Finished,
}

/// Finished `wsgi.input` objects that nothing else references ([`release`]).
static POOL: Pool<Input> = Pool::new();

/// The `wsgi.input` for a new request's body in `state` ([`Input::new`]): a
/// finished one from the pool with `state` put in it whole (nothing of its
/// last body, position, stream or failure is left), or a new one.
///
/// A request's `wsgi.input` costs a pyclass instance to make and to free; a
/// pooled one costs neither.
///
/// # Errors
///
/// The Python error of making a new object (out of memory).
pub(crate) fn acquire(py: Python<'_>, state: Input) -> PyResult<Bound<'_, Input>> {
    POOL.acquire(py, state)
}

/// The request of `input` is over (its environ let go): keep it for
/// [`acquire`] when nothing but this call references it, not even weakly
/// (the application kept neither it, nor its environ, nor a bound method of
/// it, so no one can see it reused); it drops its body then. Else it is left
/// as it is (a kept object still reads what was left of its own body) and
/// freed with its last reference.
pub(crate) fn release(py: Python<'_>, input: Bound<'_, Input>) {
    POOL.release(py, input);
}

/// Reused alone: it keeps no Python object.
impl Reusable for Input {
    /// A whole [`Input::new`] state.
    type Arm = Input;

    fn new(arm: Input) -> Input {
        arm
    }

    fn rearm(&mut self, arm: Input) {
        let turn = self.turn.take();
        *self = arm;
        self.turn = turn;
    }

    /// Drop the body and what was read of it: a body read whole shares the
    /// connection's read buffer, which gets its room back only once no one
    /// holds a piece of it.
    fn retire(&mut self) {
        self.finish();
        self.buffer = Bytes::new();
    }
}

impl Input {
    /// `limit` is `--limit-request-body` (0: unlimited), `timeout` `--body-timeout`.
    pub(crate) fn new(body: RequestBody, runtime: Handle, limit: u64, timeout: Duration) -> Input {
        use hyper::body::Body;
        let (body, buffer) = match body {
            RequestBody::Stream(incoming) if !incoming.is_end_stream() => {
                (Some(incoming), Bytes::new())
            }
            RequestBody::Stream(_) => (None, Bytes::new()),
            // Read whole before the call (the inline path): nothing left to wait for.
            RequestBody::Buffered(data) => (None, data),
        };
        Input {
            eof: body.is_none(),
            received: buffer.len() as u64,
            body,
            buffer,
            runtime,
            failure: None,
            limit,
            timeout,
            turn: None,
        }
    }

    /// Drop the body at the end of the request, so hyper can drain it or close.
    /// A read waiting for the client meanwhile returns at once, as at the end
    /// of the body, and drops the body it holds.
    pub(crate) fn finish(&mut self) {
        self.body = None;
        self.eof = true;
        if let Some(turn) = &self.turn {
            turn.notify_waiters();
        }
    }

    /// The status a failed body read calls for: 408 after a timeout, 400 for a
    /// malformed or incomplete body. `None` if every read succeeded.
    pub(crate) fn failure(&self) -> Option<StatusCode> {
        self.failure
    }

    /// Pull the next data frame of `slf` into its buffer; sets `eof` at the
    /// end. Returns at once at the end; after waiting its turn when another
    /// read holds the body (then it pulls nothing: the caller looks again).
    ///
    /// The wait is with the GIL released and no borrow of `slf` held: the body
    /// is taken out of it meanwhile, and put back after unless the request
    /// ended meanwhile ([`Input::finish`]; the body and the frame are dropped
    /// then, and `slf` is at its end).
    ///
    /// # Errors
    ///
    /// `TimeoutError` after `--body-timeout` with nothing from the client
    /// ([`Input::failure`] 408; the body is kept: a later read waits again);
    /// `OSError` for a read error or a refused trailer section (400) or a body
    /// over `--limit-request-body` (413), which end the body.
    fn fill(slf: &Bound<'_, Self>, py: Python<'_>) -> PyResult<()> {
        let mut this = slf.borrow_mut();
        let body = this.body.take();
        if body.is_none() && this.eof {
            return Ok(());
        }
        let turn = Arc::clone(this.turn.get_or_insert_with(Arc::default));
        let runtime = this.runtime.clone();
        let timeout = this.timeout;
        drop(this);
        let Some(mut body) = body else {
            // Another read holds the body: wait until it returns (it does
            // within --body-timeout) or the request ends. Made with the GIL
            // held, `returned` sees every signal given after this point.
            let returned = turn.notified();
            py.allow_threads(|| worker::waiting_for_client(|| runtime.block_on(returned)));
            return Ok(());
        };
        let finished = turn.notified();
        // Waiting for the client does not count toward --timeout (bounded by
        // --body-timeout instead).
        let waited = py.allow_threads(|| {
            worker::waiting_for_client(|| {
                runtime.block_on(async {
                    tokio::select! {
                        biased;
                        () = finished => Waited::Finished,
                        next = tokio::time::timeout(timeout, body.frame()) => match next {
                            Ok(next) => Waited::Frame(next),
                            Err(_) => Waited::TimedOut,
                        },
                    }
                })
            })
        });
        let mut this = slf.borrow_mut();
        // The reads waiting their turn look again once the GIL is free.
        turn.notify_waiters();
        if this.eof {
            // Finished meanwhile: the body goes (with the frame), as at its end.
            return Ok(());
        }
        this.body = Some(body);
        let next = match waited {
            Waited::Frame(next) => next,
            Waited::Finished => {
                this.finish(); // not reached: finishing sets `eof`
                return Ok(());
            }
            Waited::TimedOut => {
                this.failure = Some(StatusCode::REQUEST_TIMEOUT);
                return Err(PyTimeoutError::new_err(format!(
                    "the client sent no request body data for {} s (--body-timeout)",
                    timeout.as_secs_f64()
                )));
            }
        };
        match next {
            None => {
                this.finish();
                Ok(())
            }
            Some(Ok(frame)) => {
                // Trailer fields are read and discarded: PEP 3333 has no place for
                // them. Fields that frame or route a message never belong there
                // (RFC 9110 §6.5.1): such a trailer section is refused.
                let frame = match frame.into_trailers() {
                    Ok(trailers) => {
                        if let Some(name) = ["content-length", "transfer-encoding", "host"]
                            .into_iter()
                            .find(|name| trailers.contains_key(*name))
                        {
                            this.finish();
                            this.failure = Some(StatusCode::BAD_REQUEST);
                            return Err(PyOSError::new_err(format!(
                                "{name} is not allowed in a trailer section (RFC 9110 section 6.5.1)"
                            )));
                        }
                        return Ok(());
                    }
                    Err(frame) => frame,
                };
                if let Ok(data) = frame.into_data() {
                    this.received += data.len() as u64;
                    if this.limit > 0 && this.received > this.limit {
                        this.finish();
                        this.failure = Some(StatusCode::PAYLOAD_TOO_LARGE);
                        return Err(PyOSError::new_err(format!(
                            "the request body is over --limit-request-body {} bytes",
                            this.limit
                        )));
                    }
                    this.append(data);
                }
                Ok(())
            }
            Some(Err(err)) => {
                this.finish();
                this.failure = Some(StatusCode::BAD_REQUEST);
                Err(PyOSError::new_err(format!(
                    "reading the request body failed: {err}"
                )))
            }
        }
    }

    /// Add `data` after what is unread: kept as it is when nothing is.
    fn append(&mut self, data: Bytes) {
        if self.buffer.is_empty() {
            self.buffer = data;
        } else {
            let mut joined = BytesMut::with_capacity(self.buffer.len() + data.len());
            joined.extend_from_slice(&self.buffer);
            joined.extend_from_slice(&data);
            self.buffer = joined.freeze();
        }
    }

    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyBytes> {
        let n = n.min(self.buffer.len());
        let bytes = PyBytes::new(py, &self.buffer[..n]);
        self.buffer.advance(n);
        bytes
    }

    /// One line of the body of `slf`, with its `\n`, or its first `limit`
    /// bytes, or what is left of the body before its end.
    ///
    /// # Errors
    ///
    /// Those of [`Input::fill`].
    fn read_line<'py>(
        slf: &Bound<'py, Self>,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let py = slf.py();
        // How far the unread bytes were searched; their offset in the body.
        let mut searched: usize = 0;
        let mut start: u64 = 0;
        loop {
            {
                let mut this = slf.borrow_mut();
                // Another thread's read took bytes from the front meanwhile.
                let now = this.received - this.buffer.len() as u64;
                searched = searched.saturating_sub((now - start) as usize);
                start = now;
                let window = limit.map_or(this.buffer.len(), |l| l.min(this.buffer.len()));
                if let Some(pos) = this.buffer[searched.min(window)..window]
                    .iter()
                    .position(|&b| b == b'\n')
                {
                    let end = searched.min(window) + pos + 1;
                    return Ok(this.take(py, end));
                }
                if limit.is_some_and(|l| this.buffer.len() >= l) || this.eof {
                    return Ok(this.take(py, window));
                }
                searched = window;
            }
            Self::fill(slf, py)?;
        }
    }
}

/// `None` and negative sizes mean "no limit", as in `io.RawIOBase`.
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    /// Read up to `size` bytes (all remaining when `size` is omitted, None or
    /// negative); `b""` at the end of the body.
    ///
    /// A read while another thread's read waits for the client waits for it,
    /// then reads what follows; a read waiting when the request ends returns
    /// what it has, as at the end of the body.
    ///
    /// :raises TimeoutError: the client sent nothing for 60 s.
    /// :raises OSError: the client disconnected or sent a malformed body.
    #[pyo3(signature = (size = None))]
    fn read<'py>(slf: &Bound<'py, Self>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let py = slf.py();
        let size = limit(size);
        loop {
            {
                let mut this = slf.borrow_mut();
                match size {
                    Some(n) if this.eof || this.buffer.len() >= n => return Ok(this.take(py, n)),
                    None if this.eof => {
                        let n = this.buffer.len();
                        return Ok(this.take(py, n));
                    }
                    _ => {}
                }
            }
            Self::fill(slf, py)?;
        }
    }

    /// Read one line, including its `\n`, or at most `size` bytes of it.
    #[pyo3(signature = (size = None))]
    fn readline<'py>(slf: &Bound<'py, Self>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        Self::read_line(slf, limit(size))
    }

    /// Read lines until the end, or until `hint` bytes have been read.
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(slf: &Bound<'py, Self>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let lines = PyList::empty(slf.py());
        let hint = limit(hint).filter(|&h| h > 0);
        let mut total = 0;
        loop {
            let line = Self::read_line(slf, None)?;
            let len = line.as_bytes().len();
            if len == 0 {
                break;
            }
            lines.append(line)?;
            total += len;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = Self::read_line(slf, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }
}

/// `wsgi.input` of a request without a body (none declared, or a
/// `Content-Length` of 0): every read is at the end. It has no state, so one
/// object per worker serves every such request, with no borrow to collide on
/// when threads share it.
#[pyclass(module = "ferrule._ferrule", frozen)]
#[derive(Debug)]
pub struct EmptyInput;

#[pymethods]
impl EmptyInput {
    /// `b""`: there is no body.
    #[pyo3(signature = (size = None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> Bound<'py, PyBytes> {
        let _ = size;
        PyBytes::new(py, b"")
    }

    /// `b""`: there is no body.
    #[pyo3(signature = (size = None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> Bound<'py, PyBytes> {
        let _ = size;
        PyBytes::new(py, b"")
    }

    /// `[]`: there is no body.
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> Bound<'py, PyList> {
        let _ = hint;
        PyList::empty(py)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self) -> Option<PyObject> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::py::pool::POOL_TESTS;

    /// The state of a request whose body `data` was read whole.
    fn body(runtime: &tokio::runtime::Runtime, data: Bytes) -> Input {
        let body = RequestBody::Buffered(data);
        Input::new(body, runtime.handle().clone(), 0, Duration::from_secs(5))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn read_all(input: &Bound<'_, Input>) -> Vec<u8> {
        let data = input.call_method0("read").unwrap();
        data.downcast::<PyBytes>().unwrap().as_bytes().to_vec()
    }

    #[test]
    fn an_input_nobody_kept_is_reused_afresh_one_kept_is_not() {
        let _pool = POOL_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let rt = runtime();
        Python::with_gil(|py| {
            let taken = POOL.take_all(py);
            let first = acquire(py, body(&rt, Bytes::from_static(b"first\nbody"))).unwrap();
            assert_eq!(
                first.call_method0("readline").unwrap().to_string(),
                "b'first\\n'"
            );
            let address = first.as_ptr();
            release(py, first);
            assert_eq!(POOL.len(py), 1, "kept");
            let again = acquire(py, body(&rt, Bytes::from_static(b"second"))).unwrap();
            assert_eq!(again.as_ptr(), address, "reused");
            assert_eq!(POOL.len(py), 0);
            // Nothing of the last body is left: not its unread `body`.
            assert_eq!(again.borrow().received, 6);
            assert_eq!(read_all(&again), b"second");
            assert_eq!(read_all(&again), b"", "at the end");
            // The application kept it (with part of its body unread).
            let third = acquire(py, body(&rt, Bytes::from_static(b"third\nrest"))).unwrap();
            assert_eq!(
                third.call_method0("readline").unwrap().to_string(),
                "b'third\\n'"
            );
            let kept = third.clone();
            release(py, again);
            release(py, third);
            assert_eq!(POOL.len(py), 1, "only the one nobody kept");
            let next = acquire(py, body(&rt, Bytes::from_static(b"other request"))).unwrap();
            assert!(!next.is(&kept), "not reused");
            assert_eq!(read_all(&kept), b"rest", "still its own body");
            release(py, next);
            drop(taken);
        });
    }

    #[test]
    fn a_pooled_input_someone_found_is_not_handed_out() {
        let _pool = POOL_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let rt = runtime();
        Python::with_gil(|py| {
            let taken = POOL.take_all(py);
            let input = acquire(py, body(&rt, Bytes::from_static(b"mine"))).unwrap();
            release(py, input);
            // Found while pooled and kept.
            let found = POOL.find(py).expect("pooled");
            let next = acquire(py, body(&rt, Bytes::from_static(b"someone else's"))).unwrap();
            assert!(!next.is(&found), "a new one");
            assert_eq!(POOL.len(py), 0, "the found one left the pool");
            assert_eq!(read_all(found.bind(py)), b"", "it read nothing new");
            release(py, next);
            drop(taken);
        });
    }

    #[test]
    fn a_pooled_input_holds_no_body() {
        let _pool = POOL_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let rt = runtime();
        Python::with_gil(|py| {
            let taken = POOL.take_all(py);
            let data = Bytes::from(b"unread body".to_vec());
            let input = acquire(py, body(&rt, data.clone())).unwrap();
            release(py, input);
            assert_eq!(POOL.len(py), 1);
            // The body's storage is no longer shared: it is this handle's alone.
            assert!(data.is_unique(), "released with the request");
            drop(taken);
        });
    }
}
