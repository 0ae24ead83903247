//! Building the environ dict: a per-listener template, copied per connection,
//! and one dict a connection's requests reuse when the application lets go of it.
//!
//! The template holds every key whose value is the same for all requests on a
//! listener (DESIGN.md §2), and `REQUEST_METHOD`, `QUERY_STRING` and
//! `SERVER_PROTOCOL` as most requests have them (`GET`, empty, `HTTP/1.1`).
//! Each connection's first request copies it into the connection's own
//! template ([`Connection`]), which adds `REMOTE_ADDR`, `REMOTE_PORT` and the
//! `HTTP_*` keys of the fields a client repeats ([`VALUE_KEPT`]: `Host`,
//! `User-Agent`, `Accept`, ...; never cookies or credentials) and
//! `CONTENT_TYPE` as that first request had them. A request takes the last
//! request's dict when the application neither kept nor changed it
//! ([`Reuse`]), else a copy of the connection's template (`PyDict_Copy`, no
//! Python code runs); it adds its own keys from [`RequestVars`], sets those
//! three and the kept fields only where it differs, deletes the kept fields it
//! does not have, and puts back what the last request on a reused dict
//! changed: its environ has the same keys and values (PEP 3333 §"environ
//! Variables") whatever came before it on the connection; only the dict's
//! order depends on the requests before.
//! Per-request strings are decoded from bytes as latin-1, which maps every
//! byte to one character, so no header value is ever dropped or emptied (PEP
//! 3333 §"Unicode Issues").

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::{GILOnceCell, GILProtected};
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};

use super::errors::ErrorStream;
use super::file_wrapper::FileWrapper;
use crate::config::forwarded::{forwarded_client, TrustedProxies};
use crate::http::{ConnectionKept, Peer, RequestHead};
use crate::wsgi::environ::{ipv4_text, port_text, FieldKey, RequestVars, COMMON_FIELDS};

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
    /// `wsgi.multiprocess`: other processes call the same application.
    pub multiprocess: bool,
    /// `--forwarded-allow-ips`.
    pub trusted: Arc<TrustedProxies>,
}

/// The entries the template's hash table is made for: CPython rounds that up
/// to 64 slots, room for 42 entries.
///
/// `PyDict_Copy` of a template clones its table, size and all, so the room
/// the template's fifteen keys leave is what a connection's template
/// ([`Connection`]: two keys, the fields of [`VALUE_KEPT`], `CONTENT_TYPE`
/// and `CONTENT_LENGTH`, at most [`CONNECTION_KEYS_MAX`])
/// and then a request's own keys fill without the dict growing (a resize,
/// and the old table freed, per request). A request's field that the
/// connection keeps takes no more room; one it does not keep takes an entry,
/// and so does a kept field the request lacks (a deleted entry keeps its
/// place until a resize). A table sized for the template alone had room for
/// 9 more: a bare request's 8 fit, a browser's 15 to 20 did not.
const TEMPLATE_ROOM: ffi::Py_ssize_t = 40;

/// The most keys a connection's template adds to the listener's fifteen
/// ([`Connection`]), so that the 42 entries of [`TEMPLATE_ROOM`]'s table
/// leave room for a request's `PATH_INFO` and `wsgi.input`.
const CONNECTION_KEYS_MAX: usize = 25;

/// The constant part of every environ on one listener.
pub(crate) fn template(py: Python<'_>, info: &ListenerInfo) -> PyResult<Py<PyDict>> {
    // SAFETY: _PyDict_NewPresized returns a new reference to an empty dict,
    // or NULL with an exception set.
    let env = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::_PyDict_NewPresized(TEMPLATE_ROOM))?
            .downcast_into_unchecked::<PyDict>()
    };
    // The request's own keys as most requests have them: a request that
    // matches sets none of the three (see [`build`]).
    env.set_item(intern!(py, "REQUEST_METHOD"), intern!(py, "GET"))?;
    env.set_item(intern!(py, "QUERY_STRING"), intern!(py, ""))?;
    env.set_item(intern!(py, "SERVER_PROTOCOL"), intern!(py, "HTTP/1.1"))?;
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
    env.set_item("wsgi.multiprocess", PyBool::new(py, info.multiprocess))?;
    env.set_item("wsgi.run_once", false)?;
    env.set_item("wsgi.input_terminated", true)?;
    env.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
    // Untracked by the garbage collector, and so are the copies made of it
    // (`PyDict_Copy` keeps a copy untracked): `gc.get_objects()` lists
    // neither the server's templates nor a request's environ, so an
    // application cannot find and change another connection's. None of the
    // values here can hold a reference to a dict (strs, ints, bools, the
    // frozen `wsgi.errors`, an immutable type), so such a dict is in no
    // cycle; one a request or an application puts a tracked object in is
    // tracked again by CPython (its cycles are collected as usual).
    // SAFETY: `env` is a live dict (GIL held); untracking a tracked object
    // is the public API's documented use.
    unsafe { ffi::PyObject_GC_UnTrack(env.as_ptr().cast()) };
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

/// The environ of the request `head` from `peer`, with `input` as its
/// `wsgi.input`: the connection's last environ when it can serve again
/// ([`Reuse`]), else a copy of the connection's template (see
/// [`Connection`]), plus the request's own keys.
///
/// The dict already holds the kept fields, method, `Content-Type` and
/// `Content-Length` of the connection's first request:
/// a field whose value is byte-equal to the kept one is not set again (a
/// dict insert is ~130 instructions, issue 5), one that differs is set, and
/// a kept key this request lacks is deleted; a key the last request on a
/// reused dict changed and this one does not is put back as the template has
/// it. So the environ has the same keys and values as if every field were set
/// on a copy without them (only the dict's order differs).
///
/// Hand it back with [`release`] when the request is over.
pub(crate) fn build<'py>(
    py: Python<'py>,
    template: &Bound<'py, PyDict>,
    head: &RequestHead,
    peer: Peer,
    kept: &ConnectionKept,
    info: &ListenerInfo,
    input: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let (root_path, trusted) = (&info.root_path, &info.trusted);
    let vars = RequestVars::new(head, root_path);
    let connection = Connection::of(py, template, peer, kept, &vars)?;
    let (mut env, stale) = connection.take_environ(py)?;
    // The connection's template has its first request's method (the
    // listener's says GET), no query, HTTP/1.1 ([`template`]): a dict insert
    // is ~130 instructions, three of them a request (issue 5).
    if vars.method != &*connection.method {
        env.set(
            intern!(py, "REQUEST_METHOD"),
            intern_method(py, vars.method),
        )?;
    }
    // Set by every request: never put back.
    env.dict
        .set_item(intern!(py, "PATH_INFO"), latin1(py, &vars.path_info)?)?;
    if !vars.query_string.is_empty() {
        env.set(
            intern!(py, "QUERY_STRING"),
            latin1(py, vars.query_string.as_bytes())?,
        )?;
    }
    if vars.protocol != "HTTP/1.1" {
        env.set(
            intern!(py, "SERVER_PROTOCOL"),
            intern_protocol(py, vars.protocol),
        )?;
    }
    let framing = [
        (
            intern!(py, "CONTENT_TYPE"),
            vars.content_type,
            &connection.content_type,
        ),
        (
            intern!(py, "CONTENT_LENGTH"),
            vars.content_length,
            &connection.content_length,
        ),
    ];
    for (key, value, kept) in framing {
        match (value, kept) {
            (Some(value), Some(kept)) if **kept == *value => {} // as the template has it
            (Some(value), _) => env.set(key, latin1(py, value)?)?,
            (None, Some(_)) => env.delete(key)?,
            (None, None) => {}
        }
    }
    if !trusted.is_empty() && trusted.trusts(peer.ip()) {
        apply_forwarded(py, &mut env, head)?;
    }
    // Bit i: this request has the kept field `COMMON_FIELDS[i]`.
    let mut present = 0u64;
    for (key, value) in vars.fields() {
        // Only the keys of the static table are interned: interned strings are
        // immortal in CPython 3.12+, and a client chooses the other names.
        match key {
            FieldKey::Common(i) => {
                if let Some(kept) = &connection.values[i] {
                    present |= 1 << i;
                    if **kept == *value {
                        continue; // as the template has it
                    }
                }
                env.set(common_key(py, i), common_value(py, i, &value)?)?;
            }
            FieldKey::Built(key) => env.set(&PyString::new(py, &key), latin1(py, &value)?)?,
        }
    }
    let mut absent = connection.kept & !present;
    while absent != 0 {
        let i = absent.trailing_zeros() as usize;
        absent &= absent - 1;
        env.delete(common_key(py, i))?;
    }
    connection.put_back(py, &env, stale)?;
    env.dict.set_item(intern!(py, "wsgi.input"), input)?;
    connection.in_flight(py, env.dict.clone(), env.keys);
    Ok(env.dict)
}

/// The request of `env` ([`build`] on the connection of `kept`) is over:
/// keep the dict for the connection's next request when nothing but this
/// call holds it and no one changed it since [`build`] ([`Reuse`]); else it
/// is let go. `input`, the request's own `wsgi.input` if it had one, is let
/// go of then, `placeholder` (the bodiless requests' `wsgi.input`) put in
/// its place, so that the object is judged for reuse on its own.
pub(crate) fn release(
    py: Python<'_>,
    env: Py<PyDict>,
    kept: &ConnectionKept,
    input: Option<&Bound<'_, PyAny>>,
    placeholder: &Bound<'_, PyAny>,
) {
    let Some(connection) = kept.get().and_then(|k| k.downcast_ref::<Connection>()) else {
        return;
    };
    let flight = connection.reuse.get(py).borrow_mut().flight.take();
    let Some((address, version, keys)) = flight else {
        return;
    };
    let env = env.into_bound(py);
    if address != env.as_ptr() as usize || !as_left(&env, version) {
        return;
    }
    if input.is_some()
        && env
            .set_item(intern!(py, "wsgi.input"), placeholder)
            .is_err()
    {
        return;
    }
    if let Some(version) = version_of(&env) {
        connection.reuse.get(py).borrow_mut().spare = Some((env.unbind(), version, keys));
    }
}

/// The version tag of `dict` (PEP 509): CPython 3.10 to 3.13 give it a new
/// value on every change of the dict (an insert, a replaced value, a delete,
/// `clear()`), so an unchanged tag means unchanged contents. `None` where the
/// tag is gone (3.14) or the interpreter is not CPython's full API.
fn version_of(dict: &Bound<'_, PyDict>) -> Option<u64> {
    #[cfg(not(any(Py_3_14, PyPy, GraalPy, Py_LIMITED_API, Py_GIL_DISABLED)))]
    // SAFETY: `dict` is a live dict (borrowed, GIL held), whose object
    // starts with CPython's `PyDictObject`; the field is read, not written.
    #[allow(deprecated)]
    return Some(unsafe { (*dict.as_ptr().cast::<ffi::PyDictObject>()).ma_version_tag });
    #[cfg(any(Py_3_14, PyPy, GraalPy, Py_LIMITED_API, Py_GIL_DISABLED))]
    {
        let _ = dict;
        None
    }
}

/// Whether `env` is as the server left it at `version`: nothing but the
/// caller's reference holds it and its version tag is unchanged ([`Reuse`]).
fn as_left(env: &Bound<'_, PyDict>, version: u64) -> bool {
    env.get_refcnt() == 1 && version_of(env) == Some(version)
}

/// Delete `key` from `dict` if it has it.
fn delete_if_present(dict: &Bound<'_, PyDict>, key: &Bound<'_, PyString>) -> PyResult<()> {
    if dict.contains(key)? {
        dict.del_item(key)?;
    }
    Ok(())
}

/// A request's writes to its environ, and the keys they change from the
/// connection's template (to put back before a later request's, [`Reuse`]).
struct Changes<'py> {
    dict: Bound<'py, PyDict>,
    keys: Vec<Py<PyString>>,
}

impl<'py> Changes<'py> {
    /// Changes to `dict`, listed in `keys` (empty; its room is reused).
    fn new(dict: Bound<'py, PyDict>, keys: Vec<Py<PyString>>) -> Changes<'py> {
        debug_assert!(keys.is_empty());
        Changes { dict, keys }
    }

    fn set(&mut self, key: &Bound<'py, PyString>, value: impl IntoPyObject<'py>) -> PyResult<()> {
        self.dict.set_item(key, value)?;
        self.keys.push(key.clone().unbind());
        Ok(())
    }

    /// Delete `key` if the dict has it (a reused one may not: the last
    /// request deleted it too).
    fn delete(&mut self, key: &Bound<'py, PyString>) -> PyResult<()> {
        delete_if_present(&self.dict, key)?;
        self.keys.push(key.clone().unbind());
        Ok(())
    }

    /// Whether this request changed `key`: the same `str` first (the
    /// interned keys, nearly every one), then an equal one (a field's key,
    /// made per request).
    fn changed(&self, key: &Bound<'py, PyString>) -> bool {
        let py = key.py();
        self.keys.iter().any(|k| k.bind(py).is(key))
            || self
                .keys
                .iter()
                .any(|k| k.bind(py).as_any().eq(key).unwrap_or(false))
    }
}

/// A trusted proxy's `X-Forwarded-For` and `X-Forwarded-Proto` (see
/// [`crate::config::forwarded`]).
fn apply_forwarded<'py>(
    py: Python<'py>,
    env: &mut Changes<'py>,
    head: &RequestHead,
) -> PyResult<()> {
    // The last field line is the one the trusted proxy wrote: a proxy that adds
    // a line of its own (HAProxy's `option forwardfor`) follows a client's.
    if let Some(value) = head.values("x-forwarded-for").last() {
        if let Some(client) = forwarded_client(value) {
            env.set(intern!(py, "REMOTE_ADDR"), client)?;
            env.set(intern!(py, "REMOTE_PORT"), "0")?;
        }
    }
    if let Some(value) = head.values("x-forwarded-proto").last() {
        let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
        match last.trim_ascii().to_ascii_lowercase().as_slice() {
            b"https" => env.set(intern!(py, "wsgi.url_scheme"), "https")?,
            b"http" => env.set(intern!(py, "wsgi.url_scheme"), "http")?,
            _ => {}
        }
    }
    Ok(())
}

/// The interned key of `COMMON_FIELDS[index]`, made once per process.
fn common_key<'a>(py: Python<'a>, index: usize) -> &'a Bound<'a, PyString> {
    static KEYS: GILOnceCell<Vec<Py<PyString>>> = GILOnceCell::new();
    let keys = KEYS.get_or_init(py, || {
        COMMON_FIELDS
            .iter()
            .map(|(_, key)| PyString::intern(py, key).unbind())
            .collect()
    });
    keys[index].bind(py)
}

/// What one connection keeps between its requests, in its
/// [`ConnectionKept`]: made by its first request and read by every request.
struct Connection {
    /// The connection's template: the listener's `template` plus the
    /// client's `REMOTE_ADDR` and `REMOTE_PORT` (only an empty `REMOTE_ADDR`
    /// for a Unix-socket peer, as gunicorn) and the `HTTP_*` key of each
    /// field of `kept`, with the first request's value as `str` (latin-1).
    env: Py<PyDict>,
    /// Bit i set: `env` holds the key of `COMMON_FIELDS[i]`, a field of
    /// [`VALUE_KEPT`] the first request had, with the value `values[i]`.
    kept: u64,
    /// By `COMMON_FIELDS` index, the kept value as the first request sent
    /// it: the field's bytes, its repeated lines joined with `,` (RFC 9110
    /// §5.3), at most [`VALUE_KEPT_MAX`] bytes; `None` where `kept` has no bit.
    values: [Option<Box<[u8]>>; COMMON_FIELDS.len()],
    /// The first request's `Content-Type` (an API client sends the same one
    /// request after request), at most [`VALUE_KEPT_MAX`] bytes: `env` holds
    /// it as `CONTENT_TYPE`.
    content_type: Option<Box<[u8]>>,
    /// The first request's `Content-Length`, at most [`VALUE_KEPT_MAX`]
    /// bytes: `env` holds it as `CONTENT_LENGTH` (a client that posts the
    /// same form or the same size of record sends the same one).
    content_length: Option<Box<[u8]>>,
    /// The first request's method: `env` holds it as `REQUEST_METHOD` (the
    /// listener's template says GET; a client that posts keeps posting).
    method: Box<str>,
    /// The environ of the request in flight, then of the last one ([`Reuse`]).
    reuse: GILProtected<RefCell<Reuse>>,
}

#[cfg(test)]
thread_local! {
    /// How many times [`Connection::take_environ`] copied a template on this
    /// thread (tests).
    static TEMPLATE_COPIES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A connection's environ between its requests: the last request's dict
/// serves the next one when nothing but the server held it at its end and
/// its version tag ([`version_of`]) says no one changed it since the server
/// did (the application neither kept nor changed it, nor found it through
/// `gc.get_objects()` and kept it since). The next request then sets its own
/// keys in it and puts back, as the connection's template has them, the keys
/// the last one changed and it does not: no `PyDict_Copy` of the template
/// and no free of the last copy (~1,000 instructions a request, issue 5).
/// Kept only for a connection; where the tag is gone (CPython 3.14) every
/// request copies the template.
#[derive(Default)]
struct Reuse {
    /// The environ of the request in flight: its address, its version tag
    /// after the server's last write, the keys its request changed from the
    /// connection's template ([`Changes`]).
    flight: Option<(usize, u64, Vec<Py<PyString>>)>,
    /// The last request's environ, its version tag as [`release`] left it,
    /// and the keys its request changed.
    spare: Option<(Py<PyDict>, u64, Vec<Py<PyString>>)>,
    /// An empty list of keys with room, for the next request's [`Changes`]:
    /// the last request's stale keys' list, emptied by [`Connection::put_back`]
    /// (no allocation per request that changes a key).
    keys: Vec<Py<PyString>>,
}

// `Connection::kept` has a bit for each common field.
const _: () = assert!(COMMON_FIELDS.len() <= 64);

impl Connection {
    /// The connection's kept state, made from `vars` (its first request) when
    /// `kept` holds none yet.
    fn of<'k>(
        py: Python<'_>,
        template: &Bound<'_, PyDict>,
        peer: Peer,
        kept: &'k ConnectionKept,
        vars: &RequestVars<'_>,
    ) -> PyResult<&'k Connection> {
        if let Some(made) = kept.get().and_then(|k| k.downcast_ref::<Connection>()) {
            return Ok(made);
        }
        let made = Connection::new(py, template, peer, vars)?;
        // Requests of one HTTP/1.1 connection run one after the other; should
        // two first requests race, one's state serves both: a request sets
        // every field that differs from the kept value, whichever it is.
        kept.get_or_init(|| Box::new(made))
            .downcast_ref::<Connection>()
            .ok_or_else(|| {
                pyo3::exceptions::PyRuntimeError::new_err("a connection keeps another state")
            })
    }

    fn new(
        py: Python<'_>,
        template: &Bound<'_, PyDict>,
        peer: Peer,
        vars: &RequestVars<'_>,
    ) -> PyResult<Connection> {
        let env = template.copy()?;
        match peer {
            Peer::Tcp(addr) => {
                let ip = match addr.ip() {
                    IpAddr::V4(v4) => latin1(py, ipv4_text(v4, &mut [0; 15]))?,
                    IpAddr::V6(v6) => PyString::new(py, &v6.to_string()),
                };
                env.set_item(intern!(py, "REMOTE_ADDR"), ip)?;
                let port = latin1(py, port_text(addr.port(), &mut [0; 5]))?;
                env.set_item(intern!(py, "REMOTE_PORT"), port)?;
            }
            Peer::Unix => env.set_item(intern!(py, "REMOTE_ADDR"), "")?,
        }
        let mut kept = 0u64;
        let mut values = [const { None }; COMMON_FIELDS.len()];
        for (key, value) in vars.fields() {
            if let FieldKey::Common(i) = key {
                if VALUE_KEPT[i] && value.len() <= VALUE_KEPT_MAX {
                    env.set_item(common_key(py, i), common_value(py, i, &value)?)?;
                    values[i] = Some(Box::from(&*value));
                    kept |= 1 << i;
                }
            }
        }
        // Kept only while the connection's template leaves the room
        // [`TEMPLATE_ROOM`] counts on (a first request with every field of
        // `VALUE_KEPT` has none left for them): the connection's two keys
        // and its kept fields, then these.
        let mut keys = 2 + kept.count_ones() as usize;
        let mut keep = |key: &Bound<'_, PyString>, value: Option<&[u8]>| {
            let value = value
                .filter(|value| value.len() <= VALUE_KEPT_MAX)
                .filter(|_| keys < CONNECTION_KEYS_MAX);
            if let Some(value) = value {
                env.set_item(key, latin1(py, value)?)?;
                keys += 1;
            }
            PyResult::Ok(value.map(Box::from))
        };
        let content_type = keep(intern!(py, "CONTENT_TYPE"), vars.content_type)?;
        let content_length = keep(intern!(py, "CONTENT_LENGTH"), vars.content_length)?;
        if vars.method != "GET" {
            env.set_item(
                intern!(py, "REQUEST_METHOD"),
                intern_method(py, vars.method),
            )?;
        }
        Ok(Connection {
            env: env.unbind(),
            kept,
            values,
            content_type,
            content_length,
            method: vars.method.into(),
            reuse: GILProtected::new(RefCell::new(Reuse::default())),
        })
    }

    /// The dict for a new request, as [`Changes`] listed in the list kept
    /// for it ([`Reuse::keys`]), and the keys to put back in it
    /// ([`Connection::put_back`]): the last request's environ if it can
    /// serve again ([`Reuse`]), else a copy of the template and none.
    fn take_environ<'py>(&self, py: Python<'py>) -> PyResult<(Changes<'py>, Vec<Py<PyString>>)> {
        let (spare, keys) = {
            let mut reuse = self.reuse.get(py).borrow_mut();
            (reuse.spare.take(), std::mem::take(&mut reuse.keys))
        };
        if let Some((env, version, stale)) = spare {
            let env = env.into_bound(py);
            // One found (`gc.get_objects()`) and held or changed since it
            // was kept is left to its finder.
            if as_left(&env, version) {
                return Ok((Changes::new(env, keys), stale));
            }
        }
        #[cfg(test)]
        TEMPLATE_COPIES.set(TEMPLATE_COPIES.get() + 1);
        Ok((Changes::new(self.env.bind(py).copy()?, keys), Vec::new()))
    }

    /// Put each of `stale` (keys the last request on the dict changed) that
    /// the request of `env` did not change back as the template has it; the
    /// emptied list is kept for the next request ([`Reuse::keys`]).
    fn put_back(
        &self,
        py: Python<'_>,
        env: &Changes<'_>,
        mut stale: Vec<Py<PyString>>,
    ) -> PyResult<()> {
        let template = self.env.bind(py);
        for key in stale.drain(..) {
            let key = key.bind(py);
            if env.changed(key) {
                continue;
            }
            match template.get_item(key)? {
                Some(value) => env.dict.set_item(key, value)?,
                None => delete_if_present(&env.dict, key)?,
            }
        }
        if stale.capacity() > 0 {
            self.reuse.get(py).borrow_mut().keys = stale;
        }
        Ok(())
    }

    /// `env` is the environ of the request in flight, its request changed
    /// `keys`; the server writes no more to it.
    fn in_flight(&self, py: Python<'_>, env: Bound<'_, PyDict>, keys: Vec<Py<PyString>>) {
        self.reuse.get(py).borrow_mut().flight =
            version_of(&env).map(|version| (env.as_ptr() as usize, version, keys));
    }
}

/// Whether [`common_value`] keeps the value of `COMMON_FIELDS[i]`: fields a
/// deployment or a client sends the same on request after request. Cookies,
/// credentials and per-request fields are never kept.
const VALUE_KEPT: [bool; COMMON_FIELDS.len()] = [
    true,  // host
    true,  // user-agent
    true,  // accept
    true,  // accept-encoding
    true,  // accept-language
    true,  // connection
    false, // cookie
    false, // referer
    true,  // origin
    false, // authorization
    true,  // cache-control
    true,  // pragma
    false, // if-none-match
    false, // if-modified-since
    false, // range
    false, // expect
    false, // transfer-encoding
    true,  // upgrade-insecure-requests
    false, // x-forwarded-for
    true,  // x-forwarded-proto
    true,  // x-forwarded-host
    false, // x-real-ip
    true,  // x-requested-with
    false, // x-csrftoken
    true,  // sec-fetch-site
    true,  // sec-fetch-mode
    true,  // sec-fetch-dest
    true,  // dnt
    true,  // sec-fetch-user
    true,  // sec-ch-ua
    true,  // sec-ch-ua-mobile
    true,  // sec-ch-ua-platform
    true,  // priority
    true,  // x-forwarded-port
    false, // x-request-id
    false, // x-amzn-trace-id
    false, // traceparent
];

/// The longest field value [`common_value`] keeps, in bytes.
const VALUE_KEPT_MAX: usize = 256;

/// The `str` of the value of `COMMON_FIELDS[index]`, decoded as latin-1.
///
/// A server sees the same `Host` on nearly every request, and a client sends
/// the same `User-Agent`, `Accept`, `Accept-Encoding` on each of its requests:
/// for the fields of [`VALUE_KEPT`], the last value (up to [`VALUE_KEPT_MAX`]
/// bytes) is kept with its `str`, and an equal value shares that `str` (a
/// `str` never changes) instead of being decoded again.
fn common_value<'py>(
    py: Python<'py>,
    index: usize,
    value: &[u8],
) -> PyResult<Bound<'py, PyString>> {
    type Slot = Option<(Vec<u8>, Py<PyString>)>;
    static LAST: GILProtected<RefCell<[Slot; COMMON_FIELDS.len()]>> =
        GILProtected::new(RefCell::new([const { None }; COMMON_FIELDS.len()]));
    if !VALUE_KEPT[index] || value.len() > VALUE_KEPT_MAX {
        return latin1(py, value);
    }
    let slot = &mut LAST.get(py).borrow_mut()[index];
    kept_str(py, slot, value, || latin1(py, value))
}

/// The `str` kept in `slot` when it was made for `key`; otherwise `make`'s,
/// then kept there in its place. A `str` never changes, so one made for an
/// equal key serves again; the caller's `GILProtected` cell guards `slot`.
fn kept_str<'py, K, Q>(
    py: Python<'py>,
    slot: &mut Option<(K, Py<PyString>)>,
    key: &Q,
    make: impl FnOnce() -> PyResult<Bound<'py, PyString>>,
) -> PyResult<Bound<'py, PyString>>
where
    K: std::borrow::Borrow<Q>,
    Q: PartialEq + ToOwned<Owned = K> + ?Sized,
{
    if let Some((kept, text)) = slot.as_ref() {
        if kept.borrow() == key {
            return Ok(text.bind(py).clone());
        }
    }
    let text = make()?;
    *slot = Some((key.to_owned(), text.clone().unbind()));
    Ok(text)
}

fn intern_protocol<'py>(py: Python<'py>, protocol: &'static str) -> Bound<'py, PyString> {
    match protocol {
        "HTTP/1.1" => intern!(py, "HTTP/1.1").clone(),
        "HTTP/1.0" => intern!(py, "HTTP/1.0").clone(),
        other => PyString::new(py, other),
    }
}

fn intern_method<'py>(py: Python<'py>, method: &str) -> Bound<'py, PyString> {
    match method {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        other => PyString::new(py, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`super::build`] with `None` for `wsgi.input`.
    fn build<'py>(
        py: Python<'py>,
        template: &Bound<'py, PyDict>,
        head: &RequestHead,
        peer: Peer,
        kept: &ConnectionKept,
        info: &ListenerInfo,
    ) -> PyResult<Bound<'py, PyDict>> {
        super::build(
            py,
            template,
            head,
            peer,
            kept,
            info,
            &py.None().into_bound(py),
        )
    }

    /// [`super::release`] of a request without a body.
    fn release(py: Python<'_>, env: Bound<'_, PyDict>, kept: &ConnectionKept) {
        super::release(py, env.unbind(), kept, None, &py.None().into_bound(py));
    }

    /// The copies of a connection's template this test's thread made so far.
    fn copies() -> usize {
        TEMPLATE_COPIES.get()
    }

    fn listener(trusted: &str) -> ListenerInfo {
        ListenerInfo {
            server_name: "127.0.0.1".into(),
            server_port: "8000".into(),
            root_path: String::new(),
            url_scheme: "http",
            multithread: false,
            multiprocess: false,
            trusted: Arc::new(TrustedProxies::parse(trusted).unwrap()),
        }
    }

    fn request(fields: &[(&str, &str)]) -> RequestHead {
        let mut builder = http::Request::builder().uri("/p?q=1");
        for (name, value) in fields {
            builder = builder.header(*name, *value);
        }
        RequestHead::from_parts(builder.body(()).unwrap().into_parts().0)
    }

    fn text(env: &Bound<'_, PyDict>, key: &str) -> Option<String> {
        env.get_item(key).unwrap().map(|v| v.extract().unwrap())
    }

    #[test]
    fn a_connection_makes_its_remote_keys_once_and_its_requests_share_them() {
        Python::with_gil(|py| {
            let info = listener("");
            let template = template(py, &info).unwrap();
            let template = template.bind(py);
            for (peer, addr) in [
                ("203.0.113.7:40001", "203.0.113.7"),
                ("[2001:db8::1]:40001", "2001:db8::1"),
                ("[::ffff:127.0.0.1]:65535", "::ffff:127.0.0.1"),
            ] {
                let peer = Peer::Tcp(peer.parse().unwrap());
                let kept = ConnectionKept::new();
                let first = build(py, template, &request(&[]), peer, &kept, &info).unwrap();
                let second = build(py, template, &request(&[]), peer, &kept, &info).unwrap();
                assert_eq!(text(&first, "REMOTE_ADDR").as_deref(), Some(addr));
                let port = peer_port(peer);
                assert_eq!(text(&first, "REMOTE_PORT"), Some(port.to_string()));
                assert!(!first.is(&second), "each request has its own dict");
                for key in ["REMOTE_ADDR", "REMOTE_PORT"] {
                    let (a, b) = (first.get_item(key).unwrap(), second.get_item(key).unwrap());
                    assert!(a.unwrap().is(b.unwrap()), "{key} shared, not made again");
                }
                // The listener's template is untouched.
                assert!(template.get_item("REMOTE_ADDR").unwrap().is_none());
            }
            let kept = ConnectionKept::new();
            let env = build(py, template, &request(&[]), Peer::Unix, &kept, &info).unwrap();
            assert_eq!(text(&env, "REMOTE_ADDR").as_deref(), Some(""));
            assert_eq!(text(&env, "REMOTE_PORT"), None);
        });
    }

    fn peer_port(peer: Peer) -> u16 {
        match peer {
            Peer::Tcp(addr) => addr.port(),
            Peer::Unix => unreachable!(),
        }
    }

    #[test]
    fn a_trusted_proxys_client_is_the_requests_alone() {
        Python::with_gil(|py| {
            let info = listener("127.0.0.1");
            let template = template(py, &info).unwrap();
            let template = template.bind(py);
            let peer = Peer::Tcp("127.0.0.1:5000".parse().unwrap());
            let kept = ConnectionKept::new();
            let forwarded = request(&[("x-forwarded-for", "198.51.100.2")]);
            let env = build(py, template, &forwarded, peer, &kept, &info).unwrap();
            assert_eq!(text(&env, "REMOTE_ADDR").as_deref(), Some("198.51.100.2"));
            assert_eq!(text(&env, "REMOTE_PORT").as_deref(), Some("0"));
            // The next request on the connection comes from the proxy again.
            let env = build(py, template, &request(&[]), peer, &kept, &info).unwrap();
            assert_eq!(text(&env, "REMOTE_ADDR").as_deref(), Some("127.0.0.1"));
            assert_eq!(text(&env, "REMOTE_PORT").as_deref(), Some("5000"));
        });
    }

    /// Every entry of `env` as (key, `repr` of the value), sorted: two environs
    /// equal as dicts give equal lists.
    fn entries(env: &Bound<'_, PyDict>) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.extract().unwrap(), v.repr().unwrap().to_string()))
            .collect();
        all.sort();
        all
    }

    /// A raw head of `fields` in `version`, as the exchange makes one.
    fn head(version: http::Version, fields: &[(&str, &[u8])]) -> RequestHead {
        let mut head = RequestHead::from_lines("/p?q=1", fields);
        head.version = version;
        head
    }

    /// A listener's info and template, and a client.
    fn connection_setup(py: Python<'_>) -> (ListenerInfo, Py<PyDict>, Peer) {
        let info = listener("");
        let template = template(py, &info).unwrap();
        (
            info,
            template,
            Peer::Tcp("203.0.113.7:40001".parse().unwrap()),
        )
    }

    /// Build each request of `sequence` on the connection of `kept`, each
    /// environ equal to the one the same request gets on a fresh connection.
    fn same_as_fresh(
        py: Python<'_>,
        template: &Bound<'_, PyDict>,
        info: &ListenerInfo,
        peer: Peer,
        kept: &ConnectionKept,
        sequence: &[(&str, RequestHead)],
    ) {
        for (name, head) in sequence {
            let env = build(py, template, head, peer, kept, info).unwrap();
            let fresh = build(py, template, head, peer, &ConnectionKept::new(), info);
            assert_eq!(entries(&env), entries(&fresh.unwrap()), "{name}");
            // The next request reuses this dict ([`Reuse`]).
            release(py, env, kept);
        }
    }

    #[test]
    fn a_kept_connections_requests_have_a_fresh_connections_environ() {
        use http::Version;
        const UA: &str = "user-agent";
        let browser: [(&str, &[u8]); 6] = [
            ("Host", b"example.com:8000"),
            ("User-Agent", b"Mozilla/5.0"),
            ("Accept", b"text/html"),
            ("Accept-Language", b"en"),
            ("Cookie", b"a=1"),
            ("Sec-Fetch-Mode", b"navigate"),
        ];
        let sequence: Vec<(&str, RequestHead)> = vec![
            ("first", head(Version::HTTP_11, &browser)),
            ("same fields", head(Version::HTTP_11, &browser)),
            (
                "same host only",
                head(Version::HTTP_11, &[("Host", b"example.com:8000")]),
            ),
            (
                "other host",
                head(
                    Version::HTTP_11,
                    &[("host", b"example.org"), (UA, b"Mozilla/5.0")],
                ),
            ),
            ("no host", head(Version::HTTP_10, &[("Accept", b"*/*")])),
            ("nothing", head(Version::HTTP_10, &[])),
            (
                "accept again, other",
                head(
                    Version::HTTP_11,
                    &[("Host", b"example.com:8000"), ("accept", b"*/*")],
                ),
            ),
            ("accept as kept", head(Version::HTTP_11, &browser)),
            (
                "repeated lines joined",
                head(
                    Version::HTTP_11,
                    &[
                        ("Host", b"example.com:8000"),
                        ("Accept", b"text/html"),
                        ("X-A", b"1"),
                        ("accept", b"*/*"),
                        ("Cookie", b"a=1"),
                        ("cookie", b"b=2"),
                    ],
                ),
            ),
            (
                "lines joined to the kept value",
                head(
                    Version::HTTP_11,
                    &[
                        ("Host", b"example.com:8000"),
                        ("Accept-Language", b"e"),
                        ("accept-language", b""),
                        ("Accept", b"text"),
                        ("ACCEPT", b"/html"),
                    ],
                ),
            ),
            (
                "empty value",
                head(Version::HTTP_11, &[("Host", b""), ("Accept", b"")]),
            ),
            (
                "latin-1",
                head(Version::HTTP_11, &[("Host", b"caf\xe9"), (UA, b"\xff")]),
            ),
            ("first again", head(Version::HTTP_11, &browser)),
        ];
        Python::with_gil(|py| {
            let (info, template, peer) = connection_setup(py);
            let template = template.bind(py);
            let kept = ConnectionKept::new();
            same_as_fresh(py, template, &info, peer, &kept, &sequence);
            // The connection's template kept the first request's fields, and
            // no request changed it.
            let made = kept.get().unwrap().downcast_ref::<Connection>().unwrap();
            let made = made.env.bind(py);
            assert_eq!(text(made, "HTTP_HOST").as_deref(), Some("example.com:8000"));
            assert_eq!(
                text(made, "HTTP_SEC_FETCH_MODE").as_deref(),
                Some("navigate")
            );
            assert_eq!(text(made, "HTTP_COOKIE"), None, "cookies are not kept");
            assert_eq!(made.len(), 15 + 2 + 5);
        });
    }

    #[test]
    fn a_released_environ_serves_the_connections_next_request() {
        let plain = |path: &str, fields: &[(&str, &[u8])]| {
            let mut head = RequestHead::from_lines(path, fields);
            head.version = http::Version::HTTP_11;
            head
        };
        Python::with_gil(|py| {
            let (info, template, peer) = connection_setup(py);
            let template = template.bind(py);
            let kept = ConnectionKept::new();
            let host: (&str, &[u8]) = ("Host", b"a");
            let first = build(py, template, &plain("/one", &[host]), peer, &kept, &info).unwrap();
            let before = copies();
            release(py, first, &kept);
            let second = plain("/two?x=1", &[host, ("X-Extra", b"1")]);
            let env = build(py, template, &second, peer, &kept, &info).unwrap();
            assert_eq!(copies(), before, "reused, not copied");
            assert_eq!(text(&env, "PATH_INFO").as_deref(), Some("/two"));
            assert_eq!(text(&env, "HTTP_X_EXTRA").as_deref(), Some("1"));
            release(py, env, &kept);
            let env = build(py, template, &plain("/three", &[host]), peer, &kept, &info).unwrap();
            assert_eq!(copies(), before, "reused again");
            assert_eq!(text(&env, "QUERY_STRING").as_deref(), Some(""), "put back");
            assert_eq!(text(&env, "HTTP_X_EXTRA"), None, "put back");

            // Kept by the application: its environ stays as it was, the next
            // request gets a copy.
            let kept_env = env.clone();
            release(py, env, &kept);
            let env = build(py, template, &plain("/four", &[]), peer, &kept, &info).unwrap();
            assert_eq!(copies(), before + 1, "copied");
            assert_eq!(text(&kept_env, "PATH_INFO").as_deref(), Some("/three"));
            assert_eq!(text(&kept_env, "HTTP_HOST").as_deref(), Some("a"));
            assert_eq!(text(&env, "HTTP_HOST"), None);

            // Changed by the application (then let go): not reused, and
            // nothing it added reaches the next request.
            env.set_item("app.key", "x").unwrap();
            release(py, env, &kept);
            let env = build(py, template, &plain("/five", &[host]), peer, &kept, &info).unwrap();
            assert_eq!(copies(), before + 2, "copied");
            assert_eq!(text(&env, "app.key"), None);

            // Found while kept for the next request (`gc.get_objects()`) and
            // held: left to its finder, unchanged.
            release(py, env, &kept);
            let made = kept.get().unwrap().downcast_ref::<Connection>().unwrap();
            // The dict kept for the next request, as one who found it holds it.
            let find = || {
                let reuse = made.reuse.get(py).borrow();
                reuse.spare.as_ref().unwrap().0.clone_ref(py).into_bound(py)
            };
            let found = find();
            let env = build(py, template, &plain("/six", &[]), peer, &kept, &info).unwrap();
            assert_eq!(copies(), before + 3, "copied");
            assert!(!env.is(&found));
            assert_eq!(text(&found, "PATH_INFO").as_deref(), Some("/five"));
            assert_eq!(text(&env, "PATH_INFO").as_deref(), Some("/six"));

            // Found, changed and let go while kept: not reused either.
            release(py, env, &kept);
            let found = find();
            found.del_item("PATH_INFO").unwrap();
            drop(found);
            let env = build(py, template, &plain("/seven", &[]), peer, &kept, &info).unwrap();
            assert_eq!(copies(), before + 4, "copied");
            assert_eq!(text(&env, "PATH_INFO").as_deref(), Some("/seven"));
        });
    }

    #[test]
    fn a_kept_content_type_is_set_only_where_it_differs() {
        use http::Version;
        let json: (&str, &[u8]) = ("Content-Type", b"application/json");
        let long = [b'x'; VALUE_KEPT_MAX + 1];
        let sequence: Vec<(&str, RequestHead)> = vec![
            ("first", head(Version::HTTP_11, &[("Host", b"a"), json])),
            ("same", head(Version::HTTP_11, &[("Host", b"a"), json])),
            (
                "other",
                head(Version::HTTP_11, &[("content-type", b"text/plain")]),
            ),
            ("none", head(Version::HTTP_11, &[("Host", b"a")])),
            ("again", head(Version::HTTP_11, &[json])),
            ("empty", head(Version::HTTP_11, &[("Content-Type", b"")])),
            ("long", head(Version::HTTP_11, &[("Content-Type", &long)])),
            (
                "latin-1",
                head(Version::HTTP_11, &[("Content-Type", b"\xe9")]),
            ),
        ];
        Python::with_gil(|py| {
            let (info, template, peer) = connection_setup(py);
            let template = template.bind(py);
            let kept = ConnectionKept::new();
            same_as_fresh(py, template, &info, peer, &kept, &sequence);
            let made = kept.get().unwrap().downcast_ref::<Connection>().unwrap();
            let made = made.env.bind(py);
            assert_eq!(
                text(made, "CONTENT_TYPE").as_deref(),
                Some("application/json")
            );
            // A first request over the limit keeps none.
            let kept = ConnectionKept::new();
            let over = head(Version::HTTP_11, &[("Content-Type", &long)]);
            build(py, template, &over, peer, &kept, &info).unwrap();
            let made = kept.get().unwrap().downcast_ref::<Connection>().unwrap();
            assert_eq!(text(made.env.bind(py), "CONTENT_TYPE"), None);
            // Nor one whose kept fields leave it no room (every one of them).
            let mut every: Vec<(&str, &[u8])> = COMMON_FIELDS
                .iter()
                .zip(VALUE_KEPT)
                .filter(|(_, kept)| *kept)
                .map(|((name, _), _)| (*name, &b"v"[..]))
                .collect();
            every.push(json);
            let kept = ConnectionKept::new();
            let full = head(Version::HTTP_11, &every);
            let env = build(py, template, &full, peer, &kept, &info).unwrap();
            assert_eq!(
                text(&env, "CONTENT_TYPE").as_deref(),
                Some("application/json")
            );
            let made = kept.get().unwrap().downcast_ref::<Connection>().unwrap();
            assert_eq!(made.kept.count_ones() as usize, every.len() - 1);
            assert_eq!(text(made.env.bind(py), "CONTENT_TYPE"), None);
            assert!(made.env.bind(py).len() <= 15 + CONNECTION_KEYS_MAX);
        });
    }

    #[test]
    fn a_kept_method_and_content_length_are_set_only_where_they_differ() {
        use http::Method;
        let with = |method: &str, fields: &[(&str, &[u8])]| {
            // No query: a request with one sets `QUERY_STRING`.
            let mut head = RequestHead::from_lines("/p", fields);
            head.method = Method::from_bytes(method.as_bytes()).unwrap();
            head
        };
        let length: (&str, &[u8]) = ("Content-Length", b"4096");
        let sequence: Vec<(&str, RequestHead)> = vec![
            ("first", with("POST", &[length])),
            ("same", with("POST", &[length])),
            ("other length", with("POST", &[("Content-Length", b"10")])),
            ("get", with("GET", &[])),
            ("put", with("PUT", &[length])),
            ("again", with("POST", &[length])),
            ("extension", with("PURGE", &[("content-length", b"0")])),
            ("head", with("HEAD", &[])),
            ("last", with("POST", &[length])),
        ];
        Python::with_gil(|py| {
            let (info, template, peer) = connection_setup(py);
            let template = template.bind(py);
            let kept = ConnectionKept::new();
            same_as_fresh(py, template, &info, peer, &kept, &sequence);
            let made = kept.get().unwrap().downcast_ref::<Connection>().unwrap();
            let made_env = made.env.bind(py);
            assert_eq!(text(made_env, "REQUEST_METHOD").as_deref(), Some("POST"));
            assert_eq!(text(made_env, "CONTENT_LENGTH").as_deref(), Some("4096"));
            // The request that repeats the first changes no key of the
            // connection's template: nothing to set, nothing to put back.
            let changed = || {
                let reuse = made.reuse.get(py).borrow();
                reuse.flight.as_ref().unwrap().2.len()
            };
            let (_, repeat) = &sequence[1];
            let env = build(py, template, repeat, peer, &kept, &info).unwrap();
            assert_eq!(changed(), 0, "a repeated POST sets no key");
            release(py, env, &kept);
            let (_, get) = &sequence[3];
            build(py, template, get, peer, &kept, &info).unwrap();
            assert_eq!(
                changed(),
                2,
                "a GET sets REQUEST_METHOD, deletes CONTENT_LENGTH"
            );
            // A connection that starts with a GET keeps the listener's.
            let kept = ConnectionKept::new();
            let plain = with("GET", &[]);
            build(py, template, &plain, peer, &kept, &info).unwrap();
            let made = kept.get().unwrap().downcast_ref::<Connection>().unwrap();
            assert_eq!(
                text(made.env.bind(py), "REQUEST_METHOD").as_deref(),
                Some("GET")
            );
            assert_eq!(text(made.env.bind(py), "CONTENT_LENGTH"), None);
        });
    }

    #[test]
    fn a_request_that_sends_a_kept_value_again_sets_nothing() {
        // An equal value is the kept `str` itself: it was not set again
        // (`common_value` would share the `str` too, so a field whose last
        // value elsewhere differs tells the two apart).
        Python::with_gil(|py| {
            let (info, template, peer) = connection_setup(py);
            let template = template.bind(py);
            let kept = ConnectionKept::new();
            let ours = head(http::Version::HTTP_11, &[("Host", b"kept.test")]);
            let first = build(py, template, &ours, peer, &kept, &info).unwrap();
            // Another connection's Host becomes common_value's last.
            let other = head(http::Version::HTTP_11, &[("Host", b"other.test")]);
            build(py, template, &other, peer, &ConnectionKept::new(), &info).unwrap();
            let again = build(py, template, &ours, peer, &kept, &info).unwrap();
            let host =
                |env: Bound<'_, PyDict>| env.get_item("HTTP_HOST").unwrap().unwrap().as_ptr();
            assert_eq!(host(again), host(first), "the kept str");
        });
    }

    #[test]
    fn neither_templates_nor_environs_are_listed_by_the_garbage_collector() {
        Python::with_gil(|py| {
            let (info, template, peer) = connection_setup(py);
            let template = template.bind(py);
            let gc = py.import("gc").unwrap();
            let tracked = |d: &Bound<'_, PyDict>| -> bool {
                gc.call_method1("is_tracked", (d,))
                    .unwrap()
                    .extract()
                    .unwrap()
            };
            assert!(!tracked(template));
            let kept = ConnectionKept::new();
            let head = RequestHead::from_lines("/p", &[("Host", b"a")]);
            let env = build(py, template, &head, peer, &kept, &info).unwrap();
            assert!(!tracked(&env), "a request's environ");
            let made = kept.get().unwrap().downcast_ref::<Connection>().unwrap();
            assert!(!tracked(made.env.bind(py)), "the connection's template");
            // A tracked value makes it tracked again: its cycles are collected.
            env.set_item("app.list", vec![1]).unwrap();
            assert!(tracked(&env));
        });
    }

    #[test]
    fn a_copy_of_the_template_has_room_for_a_browser_request() {
        Python::with_gil(|py| {
            let template = template(py, &listener("")).unwrap();
            let template = template.bind(py);
            assert_eq!(template.len(), 15);
            let env = template.copy().unwrap();
            // CPython's dict (3.10 to 3.13) keeps its keys in one allocation
            // whose size sys.getsizeof includes: it grows only on a resize.
            let sizeof = py.import("sys").unwrap().getattr("getsizeof").unwrap();
            let size =
                |d: &Bound<'_, PyDict>| sizeof.call1((d,)).unwrap().extract::<usize>().unwrap();
            let before = size(&env);
            // A connection's keys, then a browser request's own.
            let kept = VALUE_KEPT.iter().filter(|&&k| k).count();
            assert!(
                2 + kept <= CONNECTION_KEYS_MAX,
                "a connection's template fits"
            );
            for i in 0..25 {
                env.set_item(format!("HTTP_X_{i}"), "v").unwrap();
            }
            assert_eq!(env.len(), 40);
            assert_eq!(size(&env), before, "no resize for 25 more keys");
        });
    }

    #[test]
    fn kept_values_are_the_fields_a_client_repeats() {
        let kept: Vec<&str> = COMMON_FIELDS
            .iter()
            .zip(VALUE_KEPT)
            .filter_map(|((name, _), kept)| kept.then_some(*name))
            .collect();
        for secret in [
            "cookie",
            "authorization",
            "x-csrftoken",
            "range",
            "referer",
            "x-request-id",
            "traceparent",
        ] {
            assert!(!kept.contains(&secret), "{secret}");
        }
        for repeated in ["host", "user-agent", "accept", "accept-encoding"] {
            assert!(kept.contains(&repeated), "{repeated}");
        }
    }

    #[test]
    fn an_equal_field_value_shares_the_str_of_the_last() {
        Python::with_gil(|py| {
            let host = COMMON_FIELDS
                .iter()
                .position(|(n, _)| *n == "host")
                .unwrap();
            let cookie = COMMON_FIELDS
                .iter()
                .position(|(n, _)| *n == "cookie")
                .unwrap();
            let first = common_value(py, host, b"example.com:8000").unwrap();
            let again = common_value(py, host, b"example.com:8000").unwrap();
            assert!(again.is(&first), "shared");
            let other = common_value(py, host, b"example.org").unwrap();
            assert_eq!(other.to_str().unwrap(), "example.org");
            assert!(!other.is(&first));
            // latin-1: every byte is one character.
            let high = common_value(py, host, b"caf\xe9").unwrap();
            assert_eq!(high.to_str().unwrap(), "caf\u{e9}");
            let a = common_value(py, cookie, b"session=1").unwrap();
            let b = common_value(py, cookie, b"session=1").unwrap();
            assert!(!a.is(&b), "cookies are decoded each time, never kept");
            let long = vec![b'a'; VALUE_KEPT_MAX + 1];
            let x = common_value(py, host, &long).unwrap();
            let y = common_value(py, host, &long).unwrap();
            assert!(!x.is(&y), "values over the limit are not kept");
        });
    }

    #[test]
    fn common_keys_are_the_interned_strs() {
        Python::with_gil(|py| {
            for (i, (_, key)) in COMMON_FIELDS.iter().enumerate() {
                let interned = PyString::intern(py, key);
                assert!(common_key(py, i).is(&interned), "{key}");
            }
        });
    }
}
