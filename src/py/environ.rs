//! Building the environ dict: a per-listener template, copied per request.
//!
//! The template holds every key whose value is the same for all requests on a
//! listener (DESIGN.md §2); a request copies it (`PyDict_Copy`, no Python code
//! runs) and adds its own keys from [`RequestVars`]. Per-request strings are
//! decoded from bytes as latin-1, which maps every byte to one character, so no
//! header value is ever dropped or emptied (PEP 3333 §"Unicode Issues").

use std::borrow::Cow;
use std::sync::Arc;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};

use super::errors::ErrorStream;
use super::file_wrapper::FileWrapper;
use crate::config::forwarded::{forwarded_client, TrustedProxies};
use crate::http::Peer;
use crate::wsgi::environ::RequestVars;

/// What the template of one listener is built from.
#[derive(Debug, Clone)]
pub(crate) struct ListenerInfo {
    /// `SERVER_NAME`: the listener's address (`localhost` for a Unix socket).
    pub server_name: String,
    /// `SERVER_PORT`: the listener's port (`80` for a Unix socket).
    pub server_port: String,
    /// `SCRIPT_NAME`: the `--root-path` mount point, or empty.
    pub root_path: String,
    /// `wsgi.url_scheme`.
    pub url_scheme: &'static str,
    /// `wsgi.multithread`: more than one Python thread calls the application.
    pub multithread: bool,
    /// `--forwarded-allow-ips`.
    pub trusted: Arc<TrustedProxies>,
}

/// The constant part of every environ on one listener.
pub(crate) fn template(py: Python<'_>, info: &ListenerInfo) -> PyResult<Py<PyDict>> {
    let env = PyDict::new(py);
    env.set_item("SERVER_NAME", &info.server_name)?;
    env.set_item("SERVER_PORT", &info.server_port)?;
    env.set_item("SCRIPT_NAME", &info.root_path)?;
    env.set_item(
        "SERVER_SOFTWARE",
        concat!("ferrule/", env!("CARGO_PKG_VERSION")),
    )?;
    env.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
    env.set_item("wsgi.url_scheme", info.url_scheme)?;
    env.set_item("wsgi.errors", Bound::new(py, ErrorStream)?)?;
    env.set_item("wsgi.multithread", PyBool::new(py, info.multithread))?;
    env.set_item("wsgi.multiprocess", false)?;
    env.set_item("wsgi.run_once", false)?;
    env.set_item("wsgi.input_terminated", true)?;
    env.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
    Ok(env.unbind())
}

/// Decode `bytes` as latin-1 into a `str`; never fails for valid memory.
pub(crate) fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let len = ffi::Py_ssize_t::try_from(bytes.len()).expect("a field shorter than isize::MAX");
    // SAFETY: the pointer and length describe `bytes`, which outlives the call;
    // PyUnicode_DecodeLatin1 copies them and returns a new reference or NULL.
    unsafe {
        let ptr = ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), len, std::ptr::null());
        Bound::from_owned_ptr_or_err(py, ptr).map(|s| s.downcast_into_unchecked())
    }
}

/// The environ of the request `parts` from `peer`: a copy of `template` plus the per-request keys.
///
/// `wsgi.input` is set by the caller, which owns the request body.
pub(crate) fn build<'py>(
    py: Python<'py>,
    template: &Bound<'py, PyDict>,
    parts: &http::request::Parts,
    peer: Peer,
    info: &ListenerInfo,
) -> PyResult<Bound<'py, PyDict>> {
    let (root_path, trusted) = (&info.root_path, &info.trusted);
    let env = template.copy()?;
    let vars = RequestVars::new(parts, root_path);
    env.set_item(
        intern!(py, "REQUEST_METHOD"),
        intern_method(py, vars.method),
    )?;
    env.set_item(intern!(py, "PATH_INFO"), latin1(py, &vars.path_info)?)?;
    env.set_item(
        intern!(py, "QUERY_STRING"),
        latin1(py, vars.query_string.as_bytes())?,
    )?;
    env.set_item(intern!(py, "SERVER_PROTOCOL"), vars.protocol)?;
    if let Some(value) = vars.content_type {
        env.set_item(intern!(py, "CONTENT_TYPE"), latin1(py, value)?)?;
    }
    if let Some(value) = vars.content_length {
        env.set_item(intern!(py, "CONTENT_LENGTH"), latin1(py, value)?)?;
    }
    match peer {
        Peer::Tcp(addr) => {
            env.set_item(intern!(py, "REMOTE_ADDR"), addr.ip().to_string())?;
            env.set_item(intern!(py, "REMOTE_PORT"), addr.port().to_string())?;
        }
        // As gunicorn: a Unix-socket peer has no address and no port.
        Peer::Unix => env.set_item(intern!(py, "REMOTE_ADDR"), "")?,
    }
    if !trusted.is_empty() && trusted.trusts(peer.ip()) {
        apply_forwarded(py, &env, parts)?;
    }
    for (key, value) in &vars.fields {
        // Only the names of the static table are interned: interned strings are
        // immortal in CPython 3.12+, and a client chooses the other names.
        let key = match key {
            Cow::Borrowed(common) => PyString::intern(py, common),
            Cow::Owned(other) => PyString::new(py, other),
        };
        env.set_item(key, latin1(py, value)?)?;
    }
    Ok(env)
}

/// A trusted proxy's `X-Forwarded-For` and `X-Forwarded-Proto` (see
/// [`crate::config::forwarded`]).
fn apply_forwarded(
    py: Python<'_>,
    env: &Bound<'_, PyDict>,
    parts: &http::request::Parts,
) -> PyResult<()> {
    // The last field line is the one the trusted proxy wrote: a proxy that adds
    // a line of its own (HAProxy's `option forwardfor`) follows a client's.
    if let Some(value) = parts.headers.get_all("x-forwarded-for").iter().next_back() {
        if let Some(client) = forwarded_client(value.as_bytes()) {
            env.set_item(intern!(py, "REMOTE_ADDR"), client)?;
            env.set_item(intern!(py, "REMOTE_PORT"), "0")?;
        }
    }
    if let Some(value) = parts
        .headers
        .get_all("x-forwarded-proto")
        .iter()
        .next_back()
    {
        let last = value
            .as_bytes()
            .rsplit(|&b| b == b',')
            .next()
            .unwrap_or_default();
        match last.trim_ascii().to_ascii_lowercase().as_slice() {
            b"https" => env.set_item(intern!(py, "wsgi.url_scheme"), "https")?,
            b"http" => env.set_item(intern!(py, "wsgi.url_scheme"), "http")?,
            _ => {}
        }
    }
    Ok(())
}

fn intern_method<'py>(py: Python<'py>, method: &str) -> Bound<'py, PyString> {
    match method {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        other => PyString::new(py, other),
    }
}
