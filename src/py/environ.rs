//! Building the environ dict: a per-listener template, copied per request.
//!
//! The template holds every key whose value is the same for all requests on a
//! listener (DESIGN.md §2), and `REQUEST_METHOD`, `QUERY_STRING` and
//! `SERVER_PROTOCOL` as most requests have them (`GET`, empty, `HTTP/1.1`).
//! Each connection's first request copies it into the connection's own
//! template ([`Connection`]), which adds `REMOTE_ADDR`, `REMOTE_PORT` and the
//! `HTTP_*` keys of the fields a client repeats ([`VALUE_KEPT`]: `Host`,
//! `User-Agent`, `Accept`, ...; never cookies or credentials) and
//! `CONTENT_TYPE` as that first request had them. Every request copies the connection's template
//! (`PyDict_Copy`, no Python code runs), adds its own keys from
//! [`RequestVars`], sets those three and the kept fields only where it
//! differs, and deletes the kept fields it does not have: its environ has the
//! same keys and values (PEP 3333 §"environ Variables") whatever came before
//! it on the connection; only the dict's order depends on the first request.
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
    /// `--forwarded-allow-ips`.
    pub trusted: Arc<TrustedProxies>,
}

/// The entries the template's hash table is made for: CPython rounds that up
/// to 64 slots, room for 42 entries.
///
/// `PyDict_Copy` of a template clones its table, size and all, so the room
/// the template's fifteen keys leave is what a connection's template
/// ([`Connection`]: two keys, the fields of [`VALUE_KEPT`] and `CONTENT_TYPE`,
/// at most [`CONNECTION_KEYS_MAX`])
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

/// The environ of the request `head` from `peer`: a copy of the
/// connection's template (see [`Connection`]) plus the request's own keys.
///
/// The copy already holds the kept fields of the connection's first request:
/// a field whose value is byte-equal to the kept one is not set again (a
/// dict insert is ~130 instructions, issue 5), one that differs is set, and
/// a kept key this request lacks is deleted, so the environ has the same keys
/// and values as if every field were set on a copy without them (only the
/// dict's order differs).
///
/// `wsgi.input` is set by the caller, which owns the request body.
pub(crate) fn build<'py>(
    py: Python<'py>,
    template: &Bound<'py, PyDict>,
    head: &RequestHead,
    peer: Peer,
    kept: &ConnectionKept,
    info: &ListenerInfo,
) -> PyResult<Bound<'py, PyDict>> {
    let (root_path, trusted) = (&info.root_path, &info.trusted);
    let vars = RequestVars::new(head, root_path);
    let connection = Connection::of(py, template, peer, kept, &vars)?;
    let env = connection.env.bind(py).copy()?;
    // The template says GET, no query, HTTP/1.1 ([`template`]): a dict
    // insert is ~130 instructions, three of them a request (issue 5).
    if vars.method != "GET" {
        env.set_item(
            intern!(py, "REQUEST_METHOD"),
            intern_method(py, vars.method),
        )?;
    }
    env.set_item(intern!(py, "PATH_INFO"), latin1(py, &vars.path_info)?)?;
    if !vars.query_string.is_empty() {
        env.set_item(
            intern!(py, "QUERY_STRING"),
            latin1(py, vars.query_string.as_bytes())?,
        )?;
    }
    if vars.protocol != "HTTP/1.1" {
        env.set_item(
            intern!(py, "SERVER_PROTOCOL"),
            intern_protocol(py, vars.protocol),
        )?;
    }
    match (vars.content_type, &connection.content_type) {
        (Some(value), Some(kept)) if **kept == *value => {} // in the copy already
        (Some(value), _) => env.set_item(intern!(py, "CONTENT_TYPE"), latin1(py, value)?)?,
        (None, Some(_)) => env.del_item(intern!(py, "CONTENT_TYPE"))?,
        (None, None) => {}
    }
    if let Some(value) = vars.content_length {
        env.set_item(intern!(py, "CONTENT_LENGTH"), latin1(py, value)?)?;
    }
    if !trusted.is_empty() && trusted.trusts(peer.ip()) {
        apply_forwarded(py, &env, head)?;
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
                        continue; // in the copy already
                    }
                }
                env.set_item(common_key(py, i), common_value(py, i, &value)?)?;
            }
            FieldKey::Built(key) => env.set_item(PyString::new(py, &key), latin1(py, &value)?)?,
        }
    }
    let mut absent = connection.kept & !present;
    while absent != 0 {
        let i = absent.trailing_zeros() as usize;
        absent &= absent - 1;
        env.del_item(common_key(py, i))?;
    }
    Ok(env)
}

/// A trusted proxy's `X-Forwarded-For` and `X-Forwarded-Proto` (see
/// [`crate::config::forwarded`]).
fn apply_forwarded(py: Python<'_>, env: &Bound<'_, PyDict>, head: &RequestHead) -> PyResult<()> {
    // The last field line is the one the trusted proxy wrote: a proxy that adds
    // a line of its own (HAProxy's `option forwardfor`) follows a client's.
    if let Some(value) = head.values("x-forwarded-for").last() {
        if let Some(client) = forwarded_client(value) {
            env.set_item(intern!(py, "REMOTE_ADDR"), client)?;
            env.set_item(intern!(py, "REMOTE_PORT"), "0")?;
        }
    }
    if let Some(value) = head.values("x-forwarded-proto").last() {
        let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
        match last.trim_ascii().to_ascii_lowercase().as_slice() {
            b"https" => env.set_item(intern!(py, "wsgi.url_scheme"), "https")?,
            b"http" => env.set_item(intern!(py, "wsgi.url_scheme"), "http")?,
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
        // `VALUE_KEPT` has none left for it).
        let content_type = vars
            .content_type
            .filter(|value| value.len() <= VALUE_KEPT_MAX)
            // The connection's two keys and its kept fields, then this one.
            .filter(|_| 2 + (kept.count_ones() as usize) < CONNECTION_KEYS_MAX);
        if let Some(value) = content_type {
            env.set_item(intern!(py, "CONTENT_TYPE"), latin1(py, value)?)?;
        }
        Ok(Connection {
            env: env.unbind(),
            kept,
            values,
            content_type: content_type.map(Box::from),
        })
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

    fn listener(trusted: &str) -> ListenerInfo {
        ListenerInfo {
            server_name: "127.0.0.1".into(),
            server_port: "8000".into(),
            root_path: String::new(),
            url_scheme: "http",
            multithread: false,
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
