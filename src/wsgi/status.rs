//! Validation of what an application passes to `start_response`.
//!
//! PEP 3333 §"The start_response() Callable": `status` is a string like
//! `"200 OK"`; `response_headers` is a list of `(name, value)` tuples. Neither
//! may contain control characters (PEP 3333 "must not contain control
//! characters, including carriage returns or linefeeds"), so a malicious or
//! buggy value can never split the response. A value that breaks these rules is
//! the application's error: the server answers 500 and logs this error.
//!
//! Hop-by-hop fields (RFC 9110 §7.6.1) belong to the server: PEP 3333 forbids
//! them in `response_headers`. `Connection: close` is honoured (the connection
//! closes after the response); the others are dropped with a warning.

use std::fmt;

use http::header::{HeaderName, CONNECTION, CONTENT_LENGTH, DATE};
use http::StatusCode;

use crate::http::FieldLines;

/// A validated response head, ready to be sent.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// The status code (200–999).
    pub status: StatusCode,
    /// The reason phrase, when it differs from the code's canonical one.
    pub reason: Option<String>,
    /// The response fields as field lines, minus dropped hop-by-hop ones and
    /// the `Content-Length` and `Connection` (which are the next two fields).
    pub fields: FieldLines,
    /// The application's `Content-Length`, in bytes, if it sent one.
    pub content_length: Option<u64>,
    /// Whether the application asked for `Connection: close`.
    pub close: bool,
    /// One message per hop-by-hop field that was dropped, for the error log.
    pub warnings: Vec<String>,
}

/// Why `start_response` arguments were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadError(String);

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HeadError {}

impl ResponseHead {
    /// Validate a status line and fields given as latin-1 bytes.
    ///
    /// `status` is `"NNN reason"` (the reason may be empty); each field name must
    /// be a token (RFC 9110 §5.1) and each value free of CR, LF, NUL and other
    /// control characters except HTAB (§5.5).
    ///
    /// # Errors
    ///
    /// A [`HeadError`] whose message quotes the offending status or field: the
    /// status's if it is bad, else the first bad field's.
    pub fn new<'a, I>(status: &[u8], headers: I) -> Result<ResponseHead, HeadError>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut fields = HeadFields::with_capacity(0);
        for (name, value) in headers {
            fields.add(name, value);
        }
        fields.finish(status)
    }
}

/// [`ResponseHead::new`] in pieces: fields are validated one at a time as
/// they are read, so no list of them is kept, then joined to the status by
/// [`HeadFields::finish`].
#[derive(Debug)]
pub struct HeadFields {
    fields: FieldLines,
    content_length: Option<u64>,
    close: bool,
    warnings: Vec<String>,
    /// The first field refused; later ones are not looked at.
    error: Option<HeadError>,
}

impl HeadFields {
    /// No fields yet, with room for `fields` of them (more may come).
    pub fn with_capacity(fields: usize) -> HeadFields {
        HeadFields::in_buffer(Vec::new(), fields)
    }

    /// [`HeadFields::with_capacity`], the lines written into `buffer`
    /// ([`FieldLines::in_buffer`]).
    pub fn in_buffer(buffer: Vec<u8>, fields: usize) -> HeadFields {
        HeadFields {
            // Room for `fields` lines of a typical length, in bytes.
            fields: FieldLines::in_buffer(buffer, fields * 32),
            content_length: None,
            close: false,
            warnings: Vec::new(),
            error: None,
        }
    }

    /// Validate and add one field given as latin-1 bytes (the rules of
    /// [`ResponseHead::new`]); a refusal waits for [`HeadFields::finish`].
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        let field = FieldName::new(name).and_then(|name| self.try_add(&name, value));
        self.refuse(field);
    }

    /// [`HeadFields::add`] for a name already read by [`FieldName::new`].
    pub fn add_named(&mut self, name: &FieldName, value: &[u8]) {
        let field = self.try_add(name, value);
        self.refuse(field);
    }

    fn refuse(&mut self, field: Result<(), HeadError>) {
        if let (Err(err), None) = (field, &self.error) {
            self.error = Some(err);
        }
    }

    /// The head of `status` (latin-1 bytes, `"NNN reason"`) and these fields.
    ///
    /// # Errors
    ///
    /// A [`HeadError`] for a bad status, else for the first bad field.
    pub fn finish(self, status: &[u8]) -> Result<ResponseHead, HeadError> {
        let (status, reason) = parse_status(status)?;
        if let Some(err) = self.error {
            return Err(err);
        }
        Ok(ResponseHead {
            status,
            reason,
            fields: self.fields,
            content_length: self.content_length,
            close: self.close,
            warnings: self.warnings,
        })
    }

    fn try_add(&mut self, name: &FieldName, value: &[u8]) -> Result<(), HeadError> {
        if self.error.is_some() {
            return Ok(()); // only the first refusal is reported
        }
        // RFC 9110 §5.5: visible ASCII, obs-text, SP and HTAB (the http
        // crate's rule for a `HeaderValue`).
        if !field_text(value) {
            return Err(HeadError(format!(
                "response header {}: {:?} contains a control character (CR, LF, NUL, ...)",
                name.as_str(),
                latin1(value)
            )));
        }
        match name.kind {
            NameKind::ContentLength => {
                let length = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| {
                        HeadError(format!(
                            "Content-Length {:?} is not a number of bytes",
                            latin1(value)
                        ))
                    })?;
                if self.content_length.is_some_and(|old| old != length) {
                    return Err(HeadError("two different Content-Length headers".to_owned()));
                }
                self.content_length = Some(length);
            }
            NameKind::Connection => {
                if value
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
                {
                    self.close = true;
                }
            }
            NameKind::HopByHop => self.warnings.push(format!(
                "dropped hop-by-hop response header {:?} (PEP 3333: only the server sets it)",
                name.as_str()
            )),
            NameKind::Date => self.fields.push_line(&name.start, value, true),
            NameKind::Other => self.fields.push_line(&name.start, value, false),
        }
        Ok(())
    }
}

/// What a response field name means to the server (see [`HeadFields`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameKind {
    /// `Content-Length`: the server frames the body with it.
    ContentLength,
    /// `Connection`: a `close` token closes the connection after the response.
    Connection,
    /// Another hop-by-hop field (RFC 9110 §7.6.1): dropped with a warning.
    HopByHop,
    /// `Date`: sent as given, and the server adds none.
    Date,
    /// Any other field: sent as given.
    Other,
}

/// A response field name, validated and read once: what it means to the
/// server and the start of its field line, `name: ` in lowercase (RFC 9112
/// §5), so a name the application passes request after request (a `str`
/// kept by `start_response`'s name cache) costs a copy of its line, not a
/// parse and comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldName {
    kind: NameKind,
    /// `name: `, the name in lowercase.
    start: Box<[u8]>,
}

impl FieldName {
    /// Read a field name given as latin-1 bytes (the http crate's
    /// [`HeaderName`] rules).
    ///
    /// # Errors
    ///
    /// [`HeadError`] when it is not a token (RFC 9110 §5.1).
    pub fn new(name: &[u8]) -> Result<FieldName, HeadError> {
        let name = HeaderName::from_bytes(name).map_err(|_| {
            HeadError(format!(
                "response header name {:?} is not a valid field name (RFC 9110 §5.1 token)",
                latin1(name)
            ))
        })?;
        let kind = if name == CONTENT_LENGTH {
            NameKind::ContentLength
        } else if name == CONNECTION {
            NameKind::Connection
        } else if is_hop_by_hop(&name) {
            NameKind::HopByHop
        } else if name == DATE {
            NameKind::Date
        } else {
            NameKind::Other
        };
        let start = [name.as_str().as_bytes(), b": "]
            .concat()
            .into_boxed_slice();
        Ok(FieldName { kind, start })
    }

    /// The name, in lowercase.
    pub fn as_str(&self) -> &str {
        // Made from a `HeaderName`: ASCII.
        std::str::from_utf8(&self.start[..self.start.len() - 2]).unwrap_or_default()
    }
}

/// Parse `"NNN reason"` into a status code and a non-canonical reason phrase.
fn parse_status(status: &[u8]) -> Result<(StatusCode, Option<String>), HeadError> {
    let bad = |why: &str| {
        Err(HeadError(format!(
            "status {:?} {why} (PEP 3333: a string like \"200 OK\")",
            latin1(status)
        )))
    };
    let (code, reason) = match status.get(3) {
        None if status.len() == 3 => (status, &b""[..]),
        Some(b' ') => (&status[..3], &status[4..]),
        _ => return bad("does not start with a 3-digit code and a space"),
    };
    if !code.iter().all(u8::is_ascii_digit) {
        return bad("does not start with a 3-digit code");
    }
    let Ok(code) = StatusCode::from_bytes(code) else {
        return bad("has no valid code");
    };
    if code.is_informational() {
        return bad("is informational (1xx): the server sends those itself");
    }
    if !field_text(reason) {
        return bad("contains a control character");
    }
    let canonical = code.canonical_reason().map(str::as_bytes);
    Ok((code, (canonical != Some(reason)).then(|| latin1(reason))))
}

/// Whether `bytes` may stand in a field value or a reason phrase (RFC 9110
/// §5.5, RFC 9112 §4): visible ASCII, obs-text, SP and HTAB, so no control
/// character (CR, LF, NUL, DEL, ...) that could split the response.
///
/// Eight bytes are judged at a time: a word with no byte below 0x20 and none
/// equal to 0x7f is all allowed; a word with one is looked at byte by byte,
/// where an HTAB passes.
fn field_text(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let allowed = |b: u8| (b >= 0x20 && b != 0x7f) || b == b'\t';
    let mut words = bytes.chunks_exact(8);
    let clean = words.by_ref().all(|word| {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        // A byte below 0x20, or a zero byte of x ^ 0x7f..7f (a DEL), sets
        // its high bit here (exact for "any": a borrow only reaches bytes
        // above one that set it).
        let below = x.wrapping_sub(ONES * 0x20) & !x;
        let del = (x ^ (ONES * 0x7f)).wrapping_sub(ONES) & !(x ^ (ONES * 0x7f));
        (below | del) & HIGH == 0 || word.iter().all(|&b| allowed(b))
    });
    clean && words.remainder().iter().all(|&b| allowed(b))
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
    )
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: &str, headers: &[(&str, &str)]) -> Result<ResponseHead, HeadError> {
        ResponseHead::new(
            status.as_bytes(),
            headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        )
    }

    #[test]
    fn field_text_judges_every_byte_at_every_position_as_one_at_a_time_would() {
        let one_at_a_time = |bytes: &[u8]| {
            bytes
                .iter()
                .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
        };
        let mut judged = 0;
        // Two whole words and a remainder, around bytes from every range.
        for fill in [b'a', b' ', 0x80, 0xff, b'\t'] {
            for at in 0..19 {
                for b in 0..=255u8 {
                    let mut bytes = [fill; 19];
                    bytes[at] = b;
                    for len in [at + 1, 8, 16, 19] {
                        let text = &bytes[..len.max(at + 1)];
                        assert_eq!(field_text(text), one_at_a_time(text), "{text:?}");
                        judged += 1;
                    }
                }
            }
        }
        assert_eq!(judged, 5 * 19 * 256 * 4);
        assert!(field_text(b""));
        assert!(!field_text(b"application/json\r\nX-Evil: 1"));
        assert!(field_text(b"text/html;\tcharset=\xe9t\xe9"));
    }

    #[test]
    fn statuses() {
        let h = head("200 OK", &[]).unwrap();
        assert_eq!((h.status.as_u16(), h.reason), (200, None));
        let h = head("200 Fine", &[]).unwrap();
        assert_eq!(h.reason.as_deref(), Some("Fine"));
        assert_eq!(head("404", &[]).unwrap().status.as_u16(), 404);
        assert_eq!(head("599 Custom", &[]).unwrap().status.as_u16(), 599);
        for bad in [
            "",
            "OK",
            "20 OK",
            "2000 OK",
            "abc OK",
            "200OK",
            "200 OK\r\nX: y",
            "100 Go",
        ] {
            assert!(head(bad, &[]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fields_cannot_split_the_response() {
        assert!(head("200 OK", &[("X-A", "1\r\nSet-Cookie: x=1")]).is_err());
        assert!(head("200 OK", &[("X-A", "1\n")]).is_err());
        assert!(head("200 OK", &[("X-A", "a\0b")]).is_err());
        assert!(head("200 OK", &[("X A", "1")]).is_err());
        assert!(head("200 OK", &[("X:A", "1")]).is_err());
        let err = head("200 OK", &[("X-A", "1\r\n")]).unwrap_err().to_string();
        assert!(err.contains("x-a") && err.contains("control"), "{err}");
    }

    #[test]
    fn latin1_values_and_tabs_pass() {
        let value = "caf\u{e9}\tx";
        let bytes: Vec<u8> = value.chars().map(|c| c as u8).collect();
        let h = ResponseHead::new(b"200 OK", [(&b"X-A"[..], &bytes[..])]).unwrap();
        assert_eq!(h.fields.as_bytes(), b"x-a: caf\xe9\tx\r\n");
    }

    #[test]
    fn content_length_and_connection() {
        let h = head(
            "200 OK",
            &[("Content-Length", "12"), ("Connection", "Close")],
        )
        .unwrap();
        assert_eq!(h.content_length, Some(12));
        assert!(h.close);
        assert!(
            h.fields.as_bytes().is_empty(),
            "both are the server's to write"
        );
        assert!(head("200 OK", &[("Content-Length", "-1")]).is_err());
        assert!(head(
            "200 OK",
            &[("Content-Length", "1"), ("Content-Length", "2")]
        )
        .is_err());
        let h = head(
            "200 OK",
            &[("Content-Length", "3"), ("Content-Length", "3")],
        )
        .unwrap();
        assert_eq!(h.content_length, Some(3));
        assert_eq!(h.fields.get_all("content-length").count(), 0);
    }

    #[test]
    fn a_bad_status_is_named_first_then_the_first_bad_field() {
        let err = head("20 OK", &[("X A", "1")]).unwrap_err().to_string();
        assert!(err.starts_with("status \"20 OK\" does not"), "{err}");
        let err = head("200 OK", &[("X-A", "1\n"), ("X B", "1")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "response header x-a: \"1\\n\" contains a control character (CR, LF, NUL, ...)"
        );
    }

    #[test]
    fn fields_added_one_at_a_time() {
        let mut fields = HeadFields::with_capacity(2);
        fields.add(b"Content-Type", b"text/plain");
        fields.add(b"Content-Length", b"13");
        fields.add(b"X-Note", b"d\xe9j\xe0 vu");
        let h = fields.finish(b"200 Tr\xe8s bien").unwrap();
        assert_eq!(
            h.fields.as_bytes(),
            b"content-type: text/plain\r\nx-note: d\xe9j\xe0 vu\r\n"
        );
        assert_eq!(h.content_length, Some(13));
        assert_eq!(h.reason.as_deref(), Some("Tr\u{e8}s bien"));
        assert_eq!(head("404 Not Found", &[]).unwrap().reason, None);
    }

    #[test]
    fn hop_by_hop_dropped_with_a_warning() {
        let h = head(
            "200 OK",
            &[("Transfer-Encoding", "chunked"), ("Keep-Alive", "5")],
        )
        .unwrap();
        assert!(h.fields.is_empty());
        assert_eq!(h.warnings.len(), 2);
        assert!(h.warnings[0].contains("transfer-encoding"));
    }
}
