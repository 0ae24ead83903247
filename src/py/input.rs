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

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::pool::{Pool, Reusable};
use crate::http::RequestBody;
use pyo3::exceptions::{PyOSError, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use tokio::runtime::Handle;

/// The `wsgi.input` object of one request at a time: once its request is
/// over and nothing else holds it, it serves a later one ([`acquire`]).
#[pyclass(module = "ferrule._ferrule")]
#[derive(Debug)]
pub struct Input {
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
        *self = arm;
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
        }
    }

    /// Drop the body at the end of the request, so hyper can drain it or close.
    pub(crate) fn finish(&mut self) {
        self.body = None;
        self.eof = true;
    }

    /// The status a failed body read calls for: 408 after a timeout, 400 for a
    /// malformed or incomplete body. `None` if every read succeeded.
    pub(crate) fn failure(&self) -> Option<StatusCode> {
        self.failure
    }

    /// Pull the next data frame into the buffer; sets `eof` at the end.
    fn fill(&mut self, py: Python<'_>) -> PyResult<()> {
        let Some(body) = self.body.as_mut() else {
            self.eof = true;
            return Ok(());
        };
        let runtime = &self.runtime;
        let timeout = self.timeout;
        let next = py.allow_threads(|| {
            runtime.block_on(async { tokio::time::timeout(timeout, body.frame()).await })
        });
        match next {
            Err(_) => {
                self.failure = Some(StatusCode::REQUEST_TIMEOUT);
                Err(PyTimeoutError::new_err(format!(
                    "the client sent no request body data for {} s (--body-timeout)",
                    timeout.as_secs_f64()
                )))
            }
            Ok(None) => {
                self.finish();
                Ok(())
            }
            Ok(Some(Ok(frame))) => {
                // Trailer fields are read and discarded: PEP 3333 has no place for
                // them. Fields that frame or route a message never belong there
                // (RFC 9110 §6.5.1): such a trailer section is refused.
                let frame = match frame.into_trailers() {
                    Ok(trailers) => {
                        if let Some(name) = ["content-length", "transfer-encoding", "host"]
                            .into_iter()
                            .find(|name| trailers.contains_key(*name))
                        {
                            self.finish();
                            self.failure = Some(StatusCode::BAD_REQUEST);
                            return Err(PyOSError::new_err(format!(
                                "{name} is not allowed in a trailer section (RFC 9110 section 6.5.1)"
                            )));
                        }
                        return Ok(());
                    }
                    Err(frame) => frame,
                };
                if let Ok(data) = frame.into_data() {
                    self.received += data.len() as u64;
                    if self.limit > 0 && self.received > self.limit {
                        self.finish();
                        self.failure = Some(StatusCode::PAYLOAD_TOO_LARGE);
                        return Err(PyOSError::new_err(format!(
                            "the request body is over --limit-request-body {} bytes",
                            self.limit
                        )));
                    }
                    self.append(data);
                }
                Ok(())
            }
            Ok(Some(Err(err))) => {
                self.finish();
                self.failure = Some(StatusCode::BAD_REQUEST);
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

    fn read_line<'py>(
        &mut self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut searched = 0;
        loop {
            let window = limit.map_or(self.buffer.len(), |l| l.min(self.buffer.len()));
            if let Some(pos) = self.buffer[searched..window]
                .iter()
                .position(|&b| b == b'\n')
            {
                return Ok(self.take(py, searched + pos + 1));
            }
            if limit.is_some_and(|l| self.buffer.len() >= l) || self.eof {
                return Ok(self.take(py, window));
            }
            searched = window;
            self.fill(py)?;
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
    /// :raises TimeoutError: the client sent nothing for 60 s.
    /// :raises OSError: the client disconnected or sent a malformed body.
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        match limit(size) {
            Some(n) => {
                while self.buffer.len() < n && !self.eof {
                    self.fill(py)?;
                }
                Ok(self.take(py, n))
            }
            None => {
                while !self.eof {
                    self.fill(py)?;
                }
                Ok(self.take(py, self.buffer.len()))
            }
        }
    }

    /// Read one line, including its `\n`, or at most `size` bytes of it.
    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.read_line(py, limit(size))
    }

    /// Read lines until the end, or until `hint` bytes have been read.
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let lines = PyList::empty(py);
        let hint = limit(hint).filter(|&h| h > 0);
        let mut total = 0;
        loop {
            let line = self.read_line(py, None)?;
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

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.read_line(py, None)?;
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
