//! `wsgi.file_wrapper`: serving files from Rust.
//!
//! PEP 3333 §"Optional Platform-Specific File Handling": the application returns
//! `environ['wsgi.file_wrapper'](filelike, block_size)`. When `filelike` is a
//! regular file (it has `fileno()`), the server sends it from its current offset
//! (`tell()`) to the end, or to the application's `Content-Length`, from a
//! duplicate of its descriptor:
//!
//! - on plain TCP and Unix connections, the connection itself sends it with
//!   `sendfile(2)` ([`crate::http::sendfile`]): the Python thread hands over the
//!   descriptor and moves on, and no file byte is read into memory;
//! - on TLS connections, [`OpenFile::send`] reads it in blocks, with the GIL
//!   released for the whole transfer, into the response's channel.
//!
//! Any other file-like object is iterated in `block_size` reads, like a plain
//! iterable. `close()` closes `filelike` and is called by the server once the
//! response is handed over (the duplicate descriptor keeps the file open for as
//! long as the connection needs it).

use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;

use bytes::BytesMut;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::start_response::Chunk;
use super::worker;
use crate::http::BodyError;

/// Bytes read per block when sending a real file.
const FILE_BLOCK: usize = 256 * 1024;

/// `wsgi.file_wrapper(filelike, block_size=8192)`.
#[pyclass(module = "ferrule._ferrule")]
#[derive(Debug)]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    block_size: usize,
}

/// A regular file to send: a duplicated descriptor, its offset and length.
#[derive(Debug)]
pub(crate) struct OpenFile {
    file: File,
    offset: u64,
    length: u64,
}

impl FileWrapper {
    /// The file behind `filelike`, if it is a regular file with an offset.
    ///
    /// Returns `None` (iterate instead) for objects without `fileno()`, pipes,
    /// sockets and anything whose offset cannot be told.
    pub(crate) fn regular_file(&self, py: Python<'_>) -> Option<OpenFile> {
        let filelike = self.filelike.bind(py);
        let fd: i32 = filelike.call_method0("fileno").ok()?.extract().ok()?;
        let offset: u64 = filelike.call_method0("tell").ok()?.extract().ok()?;
        // SAFETY: `fd` is open while `filelike` is alive (we hold it); dup gives
        // us a descriptor of our own, which `File` then owns and closes.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return None;
        }
        // SAFETY: `dup` is a fresh descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(dup) };
        let meta = file.metadata().ok()?;
        if !meta.is_file() {
            return None;
        }
        Some(OpenFile {
            length: meta.len().saturating_sub(offset),
            file,
            offset,
        })
    }
}

impl OpenFile {
    /// Bytes from the offset to the end of the file.
    pub(crate) fn length(&self) -> u64 {
        self.length
    }

    /// The descriptor, the offset and the bytes from it to the end of the file.
    pub(crate) fn into_parts(self) -> (File, u64, u64) {
        (self.file, self.offset, self.length)
    }

    /// Send up to `limit` bytes into `tx` (the read path, for connections that
    /// cannot use `sendfile(2)`); call without the GIL.
    ///
    /// Returns the bytes delivered and whether the client went away.
    ///
    /// # Errors
    ///
    /// A read error; the body then ends in an error so the connection closes.
    pub(crate) fn send(self, tx: &mpsc::Sender<Chunk>, limit: u64) -> std::io::Result<(u64, bool)> {
        let mut sent = 0;
        let total = self.length.min(limit);
        while sent < total {
            let want = usize::try_from(total - sent)
                .unwrap_or(FILE_BLOCK)
                .min(FILE_BLOCK);
            let mut block = BytesMut::zeroed(want);
            let n = match self.file.read_at(&mut block, self.offset + sent) {
                Ok(0) => {
                    deliver(
                        tx,
                        Err(BodyError("the file shrank while being sent".into())),
                    );
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    deliver(
                        tx,
                        Err(BodyError(format!("reading the file failed: {err}"))),
                    );
                    return Err(err);
                }
            };
            block.truncate(n);
            if !deliver(tx, Ok(block.freeze())) {
                return Ok((sent, true));
            }
            sent += n as u64;
        }
        Ok((sent, false))
    }
}

/// Put `item` in `tx`, waiting while it is full (for a slow client: the
/// wait does not count toward `--timeout`, [`worker::waiting_for_client`]);
/// false if the client is gone.
fn deliver(tx: &mpsc::Sender<Chunk>, item: Chunk) -> bool {
    match tx.try_send(item) {
        Ok(()) => true,
        Err(TrySendError::Full(item)) => worker::send_when_room(tx, item),
        Err(TrySendError::Closed(_)) => false,
    }
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size = 8192))]
    fn new(filelike: Py<PyAny>, block_size: usize) -> FileWrapper {
        FileWrapper {
            filelike,
            block_size: block_size.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1("read", (self.block_size,))?;
        let empty = block.len().map_err(|e| PyOSError::new_err(e.to_string()))? == 0;
        Ok((!empty).then_some(block))
    }

    /// Close the wrapped file-like object, if it has `close()`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr("close")? {
            filelike.call_method0("close")?;
        }
        Ok(())
    }

    /// The wrapped file-like object.
    #[getter]
    fn filelike(&self, py: Python<'_>) -> Py<PyAny> {
        self.filelike.clone_ref(py)
    }
}
