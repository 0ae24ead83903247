//! Per-request environ entries, computed from a parsed request head.
//!
//! PEP 3333 §"environ Variables" and RFC 3875 §4.1 define the keys; the strings
//! are "bytes as latin-1" (PEP 3333 §"Unicode Issues"), so this module hands out
//! byte slices and the Python layer decodes them with latin-1, which never
//! fails and never drops a byte.
//!
//! Rules enforced here:
//!
//! 1. `PATH_INFO` is the request-target's path, percent-decoded (RFC 3875
//!    §4.1.5: "not URL-encoded"), with the `--root-path` prefix removed when the
//!    path starts with it at a segment boundary; `QUERY_STRING` stays encoded
//!    (§4.1.7).
//! 2. `CONTENT_TYPE` and `CONTENT_LENGTH` carry no `HTTP_` prefix and are absent
//!    when the request has no such field.
//! 3. Every other field becomes `HTTP_` + its name upper-cased with `-` → `_`.
//!    Repeated fields are combined into one value, in order, joined with `,`
//!    (RFC 3875 §4.1.18, RFC 9110 §5.3), and `Cookie` with `; ` (RFC 6265 §5.4).
//! 4. A field whose name contains `_` is dropped: after the `-` → `_` mapping it
//!    could pose as another field (`X_Forwarded_For` vs `X-Forwarded-For`).

use std::borrow::Cow;

use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, Version};
use percent_encoding::percent_decode;

/// The per-request CGI variables of one request, as bytes to decode as latin-1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestVars<'a> {
    /// `REQUEST_METHOD`, e.g. `GET`.
    pub method: &'a str,
    /// `PATH_INFO`: percent-decoded path, `--root-path` removed.
    pub path_info: Cow<'a, [u8]>,
    /// `QUERY_STRING`: everything after `?`, still percent-encoded; empty if none.
    pub query_string: &'a str,
    /// `SERVER_PROTOCOL`: `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: &'static str,
    /// `CONTENT_TYPE`, absent when the request has no `Content-Type` field.
    pub content_type: Option<&'a [u8]>,
    /// `CONTENT_LENGTH`, absent when the request has no `Content-Length` field.
    pub content_length: Option<&'a [u8]>,
    /// `HTTP_*` keys with their combined values, one entry per field name.
    pub fields: Vec<(Cow<'static, str>, Cow<'a, [u8]>)>,
}

impl<'a> RequestVars<'a> {
    /// Compute the variables of the request whose head is `parts`.
    ///
    /// `root_path` is the `--root-path` mount point (empty, or `/prefix` with no
    /// trailing slash); it becomes `SCRIPT_NAME` in the environ template.
    pub fn new(parts: &'a Parts, root_path: &str) -> RequestVars<'a> {
        let path = parts.uri.path();
        let decoded: Cow<'a, [u8]> = percent_decode(path.as_bytes()).into();
        let path_info = strip_root_path(decoded, root_path.as_bytes());
        let mut vars = RequestVars {
            method: parts.method.as_str(),
            path_info,
            query_string: parts.uri.query().unwrap_or(""),
            protocol: protocol(parts.version),
            content_type: None,
            content_length: None,
            fields: Vec::with_capacity(parts.headers.keys_len()),
        };
        for name in parts.headers.keys() {
            if *name == header::CONTENT_TYPE {
                vars.content_type = parts.headers.get(name).map(|v| v.as_bytes());
            } else if *name == header::CONTENT_LENGTH {
                vars.content_length = parts.headers.get(name).map(|v| v.as_bytes());
            } else if let Some(key) = http_key(name) {
                vars.fields.push((key, combined(&parts.headers, name)));
            }
        }
        vars
    }
}

/// `SERVER_PROTOCOL` for an HTTP version.
pub fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// Remove `root` from the front of `path` when it matches at a segment boundary.
///
/// `/app/x` under `/app` is `/x`; `/app` is empty; `/apple` is left alone, as
/// gunicorn does for a path outside the mount point.
fn strip_root_path<'a>(path: Cow<'a, [u8]>, root: &[u8]) -> Cow<'a, [u8]> {
    if root.is_empty() || !path.starts_with(root) {
        return path;
    }
    let rest = &path[root.len()..];
    if !rest.is_empty() && rest[0] != b'/' {
        return path;
    }
    match path {
        Cow::Borrowed(p) => Cow::Borrowed(&p[root.len()..]),
        Cow::Owned(p) => Cow::Owned(p[root.len()..].to_vec()),
    }
}

/// All values of field `name`, joined per rule 3 of the module docs.
fn combined<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Cow<'a, [u8]> {
    let mut values = headers.get_all(name).iter();
    let first = values.next().map_or(&b""[..], |v| v.as_bytes());
    let Some(second) = values.next() else {
        return Cow::Borrowed(first);
    };
    let sep: &[u8] = if *name == header::COOKIE { b"; " } else { b"," };
    let mut joined = Vec::with_capacity(first.len() + sep.len() + second.len());
    joined.extend_from_slice(first);
    for value in std::iter::once(second).chain(values) {
        joined.extend_from_slice(sep);
        joined.extend_from_slice(value.as_bytes());
    }
    Cow::Owned(joined)
}

/// The environ key for field `name`: `HTTP_` + upper-cased name, `-` → `_`.
///
/// Returns `None` for names containing `_` (rule 4). Common names come from a
/// table, so the hot path allocates nothing for them.
///
/// # Examples
///
/// ```
/// use http::header::HeaderName;
/// use _ferrule::wsgi::environ::http_key;
/// let name = HeaderName::from_static("x-request-id");
/// assert_eq!(http_key(&name).unwrap(), "HTTP_X_REQUEST_ID");
/// assert!(http_key(&HeaderName::from_static("x_forwarded_for")).is_none());
/// ```
pub fn http_key(name: &HeaderName) -> Option<Cow<'static, str>> {
    let name = name.as_str();
    if let Some(key) = common_key(name) {
        return Some(Cow::Borrowed(key));
    }
    if name.contains('_') {
        return None;
    }
    let mut key = String::with_capacity(5 + name.len());
    key.push_str("HTTP_");
    key.extend(name.chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    Some(Cow::Owned(key))
}

fn common_key(name: &str) -> Option<&'static str> {
    Some(match name {
        "host" => "HTTP_HOST",
        "user-agent" => "HTTP_USER_AGENT",
        "accept" => "HTTP_ACCEPT",
        "accept-encoding" => "HTTP_ACCEPT_ENCODING",
        "accept-language" => "HTTP_ACCEPT_LANGUAGE",
        "connection" => "HTTP_CONNECTION",
        "cookie" => "HTTP_COOKIE",
        "referer" => "HTTP_REFERER",
        "origin" => "HTTP_ORIGIN",
        "authorization" => "HTTP_AUTHORIZATION",
        "cache-control" => "HTTP_CACHE_CONTROL",
        "pragma" => "HTTP_PRAGMA",
        "if-none-match" => "HTTP_IF_NONE_MATCH",
        "if-modified-since" => "HTTP_IF_MODIFIED_SINCE",
        "range" => "HTTP_RANGE",
        "expect" => "HTTP_EXPECT",
        "transfer-encoding" => "HTTP_TRANSFER_ENCODING",
        "upgrade-insecure-requests" => "HTTP_UPGRADE_INSECURE_REQUESTS",
        "x-forwarded-for" => "HTTP_X_FORWARDED_FOR",
        "x-forwarded-proto" => "HTTP_X_FORWARDED_PROTO",
        "x-forwarded-host" => "HTTP_X_FORWARDED_HOST",
        "x-real-ip" => "HTTP_X_REAL_IP",
        "x-requested-with" => "HTTP_X_REQUESTED_WITH",
        "x-csrftoken" => "HTTP_X_CSRFTOKEN",
        "sec-fetch-site" => "HTTP_SEC_FETCH_SITE",
        "sec-fetch-mode" => "HTTP_SEC_FETCH_MODE",
        "sec-fetch-dest" => "HTTP_SEC_FETCH_DEST",
        "dnt" => "HTTP_DNT",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(raw_target: &str, headers: &[(&str, &[u8])]) -> Parts {
        let mut builder = http::Request::builder().uri(raw_target);
        for (name, value) in headers {
            builder = builder.header(*name, http::HeaderValue::from_bytes(value).unwrap());
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn field<'a>(vars: &'a RequestVars<'_>, key: &str) -> Option<&'a [u8]> {
        vars.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &v[..])
    }

    #[test]
    fn path_is_percent_decoded_query_is_not() {
        let p = parts("/caf%C3%A9/a%2Fb?x=%20y", &[]);
        let vars = RequestVars::new(&p, "");
        assert_eq!(&vars.path_info[..], b"/caf\xc3\xa9/a/b");
        assert_eq!(vars.query_string, "x=%20y");
        assert_eq!(vars.method, "GET");
        assert_eq!(vars.protocol, "HTTP/1.1");
    }

    #[test]
    fn malformed_escapes_pass_through() {
        let p = parts("/a%zz%4", &[]);
        assert_eq!(&RequestVars::new(&p, "").path_info[..], b"/a%zz%4");
    }

    #[test]
    fn root_path_is_stripped_at_segment_boundaries() {
        for (target, expected) in [
            ("/app/x", &b"/x"[..]),
            ("/app", b""),
            ("/app/", b"/"),
            ("/apple", b"/apple"),
            ("/other", b"/other"),
            ("/ap%70/x", b"/x"),
        ] {
            let p = parts(target, &[]);
            assert_eq!(
                &RequestVars::new(&p, "/app").path_info[..],
                expected,
                "{target}"
            );
        }
    }

    #[test]
    fn content_fields_have_no_prefix_and_are_optional() {
        let p = parts(
            "/",
            &[("content-type", b"text/plain"), ("content-length", b"3")],
        );
        let vars = RequestVars::new(&p, "");
        assert_eq!(vars.content_type, Some(&b"text/plain"[..]));
        assert_eq!(vars.content_length, Some(&b"3"[..]));
        assert!(vars.fields.is_empty());
        let p = parts("/", &[]);
        let vars = RequestVars::new(&p, "");
        assert_eq!((vars.content_type, vars.content_length), (None, None));
    }

    #[test]
    fn repeats_are_joined_in_order() {
        let p = parts(
            "/",
            &[
                ("x-multi", b"a"),
                ("x-other", b"z"),
                ("x-multi", b"b"),
                ("cookie", b"a=1"),
                ("cookie", b"b=2"),
            ],
        );
        let vars = RequestVars::new(&p, "");
        assert_eq!(field(&vars, "HTTP_X_MULTI"), Some(&b"a,b"[..]));
        assert_eq!(field(&vars, "HTTP_X_OTHER"), Some(&b"z"[..]));
        assert_eq!(field(&vars, "HTTP_COOKIE"), Some(&b"a=1; b=2"[..]));
    }

    #[test]
    fn underscore_names_are_dropped_and_latin1_kept() {
        let p = parts(
            "/",
            &[("x_forwarded_for", b"1.2.3.4"), ("x-name", b"caf\xe9")],
        );
        let vars = RequestVars::new(&p, "");
        assert_eq!(vars.fields.len(), 1);
        assert_eq!(field(&vars, "HTTP_X_NAME"), Some(&b"caf\xe9"[..]));
    }

    #[test]
    fn table_agrees_with_the_rule() {
        for name in [
            "host",
            "user-agent",
            "x-forwarded-for",
            "sec-fetch-dest",
            "dnt",
        ] {
            let rule = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
            assert_eq!(common_key(name), Some(rule.as_str()));
        }
    }
}
