//! `wsgi.errors` and logging through Python's `logging` (logger `ferrule.error`).

use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::PyDict;

static ERROR_LOGGER: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

/// The `ferrule.error` logger.
pub(crate) fn error_logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    ERROR_LOGGER
        .get_or_try_init(py, || {
            Ok(py
                .import("logging")?
                .call_method1("getLogger", ("ferrule.error",))?
                .unbind())
        })
        .map(|logger| logger.bind(py))
}

static ACCESS_LOGGER: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

/// Write one access log line to the `ferrule.access` logger, at INFO.
pub(crate) fn log_access(py: Python<'_>, line: &str) {
    let logger = ACCESS_LOGGER.get_or_try_init(py, || {
        Ok::<_, PyErr>(
            py.import("logging")?
                .call_method1("getLogger", ("ferrule.access",))?
                .unbind(),
        )
    });
    if let Err(err) = logger.and_then(|l| l.bind(py).call_method1("info", (line,))) {
        err.print(py);
    }
}

/// Log `message` at `level` (`"info"`, `"warning"`, `"error"`) on `ferrule.error`.
///
/// Logging must never take the server down: a failing handler is reported to
/// `sys.unraisablehook` style stderr output and otherwise ignored.
pub(crate) fn log(py: Python<'_>, level: &str, message: &str) {
    if let Err(err) = error_logger(py).and_then(|l| l.call_method1(level, (message,))) {
        err.print(py);
    }
}

/// Log `message` with the traceback of `err` at ERROR level.
pub(crate) fn log_exception(py: Python<'_>, message: &str, err: &PyErr) {
    let result = error_logger(py).and_then(|logger| {
        let kwargs = PyDict::new(py);
        // A (type, value, traceback) tuple: on Python 3.11 the value alone may
        // not carry its __traceback__, and the log would lose the stack.
        let exc_info = (err.get_type(py), err.value(py), err.traceback(py));
        kwargs.set_item("exc_info", exc_info)?;
        logger.call_method("error", (message,), Some(&kwargs))
    });
    if let Err(log_err) = result {
        err.print(py);
        log_err.print(py);
    }
}

/// `wsgi.errors`: a text stream whose writes go to the `ferrule.error` logger.
///
/// PEP 3333 §"Input and Error Streams": supports `write(str)`,
/// `writelines(seq)` and `flush()`. Each write is logged as one ERROR record,
/// with a trailing newline removed.
#[pyclass(module = "ferrule._ferrule", frozen)]
#[derive(Debug)]
pub struct ErrorStream;

#[pymethods]
impl ErrorStream {
    /// Log `text`; returns the number of characters written.
    fn write(&self, py: Python<'_>, text: &str) -> usize {
        let line = text.strip_suffix('\n').unwrap_or(text);
        if !line.is_empty() {
            log(py, "error", line);
        }
        text.chars().count()
    }

    /// Write every string of `lines`.
    fn writelines(&self, py: Python<'_>, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(py, &line?.extract::<String>()?);
        }
        Ok(())
    }

    /// Nothing to do: records are handed to `logging` as they are written.
    fn flush(&self) {}
}
