//! Request framing and request-target rules hyper leaves to the server.
//!
//! hyper parses the message and enforces most of RFC 9112 itself (invalid
//! tokens, bad Content-Length, a final coding other than chunked, chunk
//! syntax). What it accepts but a careful server refuses is checked here, on
//! the parsed head, before the application is called:
//!
//! - RFC 9112 §6.1: `chunked` more than once is 400 ("A sender MUST NOT apply
//!   the chunked transfer coding more than once"); a coding the server does not
//!   know is 501 ("A server that receives a request message with a transfer
//!   coding it does not understand SHOULD respond with 501"). Registered
//!   codings before the final `chunked` (gzip, deflate, compress; identity is a
//!   no-op) pass to the
//!   application undecoded, with `HTTP_TRANSFER_ENCODING` set, as gunicorn does.
//! - RFC 9112 §3.2.3-4: the asterisk-form is only for OPTIONS and the
//!   authority-form only for CONNECT.
//! - RFC 9110 §8.3: `Content-Type` is a singleton field; two are refused.

use http::{Method, StatusCode};

use super::head::name_is;
use super::RequestHead;

/// Codings a request may carry before its final `chunked` (RFC 9112 §7).
const KNOWN_CODINGS: [&str; 7] = [
    "gzip",
    "x-gzip",
    "deflate",
    "compress",
    "x-compress",
    "identity",
    "chunked",
];

/// Check the framing and target rules of the module docs.
///
/// # Errors
///
/// The status to answer (400 or 501) and a one-line reason.
pub fn check(head: &RequestHead) -> Result<(), (StatusCode, String)> {
    check_counted(head, &FieldCounts::of(head))
}

/// How often the fields the head checks look at occur in a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldCounts {
    /// `Host` fields.
    pub hosts: usize,
    /// `Content-Type` fields.
    pub content_types: usize,
    /// `Transfer-Encoding` fields.
    pub transfer_encodings: usize,
}

impl FieldCounts {
    /// Count them in one pass over the fields (no look-up per name; the
    /// length of a name rules out most names at once).
    pub fn of(head: &RequestHead) -> FieldCounts {
        let mut counts = FieldCounts::default();
        for (name, _) in head.fields() {
            let count = match name.len() {
                4 if name_is(name, b"host") => &mut counts.hosts,
                12 if name_is(name, b"content-type") => &mut counts.content_types,
                17 if name_is(name, b"transfer-encoding") => &mut counts.transfer_encodings,
                _ => continue,
            };
            *count += 1;
        }
        counts
    }
}

/// [`check`] with the fields already counted.
///
/// # Errors
///
/// As [`check`].
pub fn check_counted(head: &RequestHead, counts: &FieldCounts) -> Result<(), (StatusCode, String)> {
    let mut chunked = 0;
    let codings = match counts.transfer_encodings {
        0 => None,
        _ => Some(head.values("transfer-encoding")),
    };
    for value in codings.into_iter().flatten() {
        // Visible ASCII and tabs only (what `HeaderValue::to_str` accepts).
        let ascii = value
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
        let Some(value) = std::str::from_utf8(value).ok().filter(|_| ascii) else {
            return Err((
                StatusCode::BAD_REQUEST,
                "Transfer-Encoding is not ASCII".into(),
            ));
        };
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let name = coding
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !KNOWN_CODINGS.contains(&name.as_str()) {
                return Err((
                    StatusCode::NOT_IMPLEMENTED,
                    format!("transfer coding {name:?} is not supported (RFC 9112 section 6.1)"),
                ));
            }
            if name == "chunked" {
                chunked += 1;
            }
        }
    }
    if chunked > 1 {
        return Err((
            StatusCode::BAD_REQUEST,
            "chunked applied more than once (RFC 9112 section 6.1)".into(),
        ));
    }
    let uri = &head.uri;
    let asterisk = uri.path() == "*" && uri.authority().is_none();
    if asterisk && head.method != Method::OPTIONS {
        return Err((
            StatusCode::BAD_REQUEST,
            "the asterisk-form is only for OPTIONS (RFC 9112 section 3.2.4)".into(),
        ));
    }
    let authority_form = uri.scheme().is_none() && uri.authority().is_some();
    if authority_form && head.method != Method::CONNECT {
        return Err((
            StatusCode::BAD_REQUEST,
            "the authority-form is only for CONNECT (RFC 9112 section 3.2.3)".into(),
        ));
    }
    if counts.content_types > 1 {
        return Err((
            StatusCode::BAD_REQUEST,
            "two Content-Type fields (RFC 9110 section 8.3)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, target: &str, headers: &[(&str, &str)]) -> RequestHead {
        let mut builder = http::Request::builder().method(method).uri(target);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        RequestHead::from_parts(builder.body(()).unwrap().into_parts().0)
    }

    fn status(p: &RequestHead) -> Option<u16> {
        check(p).err().map(|(s, _)| s.as_u16())
    }

    #[test]
    fn transfer_codings() {
        let te = |v| parts("POST", "/", &[("transfer-encoding", v)]);
        assert_eq!(status(&te("chunked")), None);
        assert_eq!(status(&te("gzip, chunked")), None);
        assert_eq!(status(&te("chunked, chunked")), Some(400));
        assert_eq!(status(&te("x-custom, chunked")), Some(501));
        let twice = parts(
            "POST",
            "/",
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
        );
        assert_eq!(status(&twice), Some(400));
    }

    #[test]
    fn target_forms() {
        assert_eq!(status(&parts("OPTIONS", "*", &[])), None);
        assert_eq!(status(&parts("GET", "*", &[])), Some(400));
        assert_eq!(status(&parts("GET", "example.com:443", &[])), Some(400));
        assert_eq!(status(&parts("CONNECT", "example.com:443", &[])), None);
        assert_eq!(status(&parts("GET", "http://example.com/x", &[])), None);
    }

    #[test]
    fn fields_are_counted_per_value() {
        let p = parts(
            "POST",
            "/",
            &[
                ("host", "a"),
                ("content-type", "a/b"),
                ("x-other", "1"),
                ("host", "b"),
                ("transfer-encoding", "chunked"),
            ],
        );
        let counts = FieldCounts::of(&p);
        assert_eq!(
            counts,
            FieldCounts {
                hosts: 2,
                content_types: 1,
                transfer_encodings: 1
            }
        );
        let none = FieldCounts::of(&parts("GET", "/", &[]));
        assert_eq!(none, FieldCounts::default());
    }

    #[test]
    fn one_content_type() {
        let two = parts(
            "POST",
            "/",
            &[("content-type", "a/b"), ("content-type", "c/d")],
        );
        assert_eq!(status(&two), Some(400));
    }
}
