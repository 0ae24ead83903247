//! Access log lines in gunicorn's `--access-logformat` language.
//!
//! A format is text with `%(atom)s` placeholders. The atoms are gunicorn's:
//!
//! | atom | value |
//! |---|---|
//! | `h` | remote address |
//! | `l` | `-` |
//! | `u` | user name from HTTP Basic authorization, or `-` |
//! | `t` | date of the request, `[29/Nov/2026:23:10:00 +0000]` |
//! | `r` | request line, `GET /path?q=1 HTTP/1.1` |
//! | `m` `U` `q` `H` | method, path, query string, protocol |
//! | `s` | status code |
//! | `B` `b` | response body bytes sent (0 for HEAD, 204 and 304) |
//! | `f` `a` | `Referer` and `User-Agent` |
//! | `T` `M` `D` `L` | request time in whole seconds, milliseconds, microseconds, decimal seconds |
//! | `p` | process id (`<pid>`) |
//! | `{name}i` `{name}o` | a request or response header |
//! | `{key}e` | a key of the WSGI environ (looked up by the caller) |
//!
//! Unknown atoms and missing values print `-`. [`AccessFormat::json`] renders
//! the same atoms as one JSON object per line, keyed by atom.

use std::fmt::Write as _;
use std::time::Duration;

use http::HeaderMap;

/// gunicorn's default access log format.
pub const DEFAULT_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// One piece of a parsed format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Atom(Atom),
}

/// A placeholder of the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Atom {
    /// A one-letter atom (`h`, `s`, ...).
    Simple(char),
    /// `{name}i`: a request header.
    RequestHeader(String),
    /// `{name}o`: a response header.
    ResponseHeader(String),
    /// `{key}e`: a WSGI environ key.
    Environ(String),
}

impl Atom {
    /// The atom as written between `%(` and `)s`, the key of its JSON field.
    pub fn key(&self) -> String {
        match self {
            Atom::Simple(c) => c.to_string(),
            Atom::RequestHeader(n) => format!("{{{n}}}i"),
            Atom::ResponseHeader(n) => format!("{{{n}}}o"),
            Atom::Environ(n) => format!("{{{n}}}e"),
        }
    }
}

/// A parsed `--access-logformat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessFormat {
    pieces: Vec<Piece>,
}

/// What one finished request contributes to its access log line.
#[derive(Debug, Clone)]
pub struct AccessRecord<'a> {
    /// Client address (`h`).
    pub remote: &'a str,
    /// Request method.
    pub method: &'a str,
    /// Request path as sent (still percent-encoded).
    pub path: &'a str,
    /// Query string, without `?`.
    pub query: &'a str,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: &'a str,
    /// Request fields.
    pub request_headers: &'a HeaderMap,
    /// Status code sent.
    pub status: u16,
    /// Response fields sent.
    pub response_headers: &'a HeaderMap,
    /// Body bytes sent.
    pub bytes: u64,
    /// Time from the request's arrival to the end of its response.
    pub elapsed: Duration,
    /// `t`, already formatted (`[29/Nov/2026:23:10:00 +0000]`).
    pub time: &'a str,
    /// Process id.
    pub pid: u32,
}

impl AccessFormat {
    /// Parse a format in gunicorn's syntax.
    ///
    /// # Errors
    ///
    /// A message for a `%(` with no closing `)s`.
    pub fn parse(format: &str) -> Result<AccessFormat, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = format;
        while let Some(start) = rest.find("%(") {
            text.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find(")s") else {
                return Err(format!(
                    "--access-logformat: '%(' at byte {} has no closing ')s'",
                    format.len() - rest.len() + start
                ));
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Atom(parse_atom(&after[..end])));
            rest = &after[end + 2..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(AccessFormat { pieces })
    }

    /// The `{key}e` atoms, whose values the caller looks up in the environ.
    pub fn environ_keys(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Atom(Atom::Environ(key)) => Some(key.as_str()),
            _ => None,
        })
    }

    /// Render one line; `environ` resolves `{key}e` atoms.
    pub fn line(
        &self,
        record: &AccessRecord<'_>,
        environ: &dyn Fn(&str) -> Option<String>,
    ) -> String {
        let mut line = String::with_capacity(160);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => line.push_str(text),
                Piece::Atom(atom) => line.push_str(&value(atom, record, environ)),
            }
        }
        line
    }

    /// Render the same atoms as one JSON object.
    pub fn json(
        &self,
        record: &AccessRecord<'_>,
        environ: &dyn Fn(&str) -> Option<String>,
    ) -> String {
        let mut out = String::from("{");
        let mut first = true;
        for piece in &self.pieces {
            let Piece::Atom(atom) = piece else { continue };
            if !first {
                out.push_str(", ");
            }
            first = false;
            json_string(&mut out, &atom.key());
            out.push_str(": ");
            json_string(&mut out, &value(atom, record, environ));
        }
        out.push('}');
        out
    }
}

fn parse_atom(name: &str) -> Atom {
    if let Some(inner) = name.strip_prefix('{') {
        if let Some((key, kind)) = inner.rsplit_once('}') {
            return match kind {
                "i" => Atom::RequestHeader(key.to_ascii_lowercase()),
                "o" => Atom::ResponseHeader(key.to_ascii_lowercase()),
                "e" => Atom::Environ(key.to_owned()),
                _ => Atom::Simple('?'),
            };
        }
    }
    let mut chars = name.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Atom::Simple(c),
        _ => Atom::Simple('?'),
    }
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).map_or_else(
        || "-".to_owned(),
        |v| v.as_bytes().iter().map(|&b| char::from(b)).collect(),
    )
}

fn value(atom: &Atom, r: &AccessRecord<'_>, environ: &dyn Fn(&str) -> Option<String>) -> String {
    let micros = r.elapsed.as_micros();
    match atom {
        Atom::RequestHeader(name) => header(r.request_headers, name),
        Atom::ResponseHeader(name) => header(r.response_headers, name),
        Atom::Environ(key) => environ(key).unwrap_or_else(|| "-".to_owned()),
        Atom::Simple(c) => match c {
            'h' => r.remote.to_owned(),
            'l' => "-".to_owned(),
            'u' => basic_user(r.request_headers).unwrap_or_else(|| "-".to_owned()),
            't' => r.time.to_owned(),
            'r' => {
                let q = if r.query.is_empty() { "" } else { "?" };
                format!("{} {}{q}{} {}", r.method, r.path, r.query, r.protocol)
            }
            'm' => r.method.to_owned(),
            'U' => r.path.to_owned(),
            'q' => r.query.to_owned(),
            'H' => r.protocol.to_owned(),
            's' => r.status.to_string(),
            // gunicorn prints `b` as a number too, 0 included; `-` only when
            // it does not know, which never happens here.
            'B' | 'b' => r.bytes.to_string(),
            'f' => header(r.request_headers, "referer"),
            'a' => header(r.request_headers, "user-agent"),
            'T' => r.elapsed.as_secs().to_string(),
            'M' => (micros / 1000).to_string(),
            'D' => micros.to_string(),
            'L' => format!("{:.6}", r.elapsed.as_secs_f64()),
            'p' => format!("<{}>", r.pid),
            _ => "-".to_owned(),
        },
    }
}

/// The user name of an `Authorization: Basic` field.
fn basic_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(token.trim())?;
    let text = String::from_utf8_lossy(&decoded);
    Some(
        text.split_once(':')
            .map_or(text.as_ref(), |(user, _)| user)
            .to_owned(),
    )
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes: Vec<u8> = text.bytes().filter(|&b| b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= sextet(c)? << (18 - 6 * i);
        }
        let n = chunk.len().saturating_sub(1);
        out.extend_from_slice(&acc.to_be_bytes()[1..=n]);
    }
    Some(out)
}

fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The current local time in Common Log Format, `[29/Nov/2026:23:10:00 +0000]`.
pub fn clf_now() -> String {
    // SAFETY: time/localtime_r/strftime with a local buffer and struct; the
    // format has no locale-dependent parts beyond %b, which is English in the
    // C locale a server runs in.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return "[-]".to_owned();
        }
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"[%d/%b/%Y:%H:%M:%S %z]".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(req: &'a HeaderMap, resp: &'a HeaderMap) -> AccessRecord<'a> {
        AccessRecord {
            remote: "127.0.0.1",
            method: "GET",
            path: "/a%20b",
            query: "x=1",
            protocol: "HTTP/1.1",
            request_headers: req,
            status: 200,
            response_headers: resp,
            bytes: 13,
            elapsed: Duration::from_micros(1_234_567),
            time: "[29/Nov/2026:23:10:00 +0000]",
            pid: 42,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| {
                (
                    http::HeaderName::from_static(n),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn default_format_is_gunicorns() {
        let req = headers(&[("user-agent", "curl/8"), ("referer", "http://x/")]);
        let resp = HeaderMap::new();
        let line = AccessFormat::parse(DEFAULT_FORMAT)
            .unwrap()
            .line(&record(&req, &resp), &|_| None);
        assert_eq!(
            line,
            r#"127.0.0.1 - - [29/Nov/2026:23:10:00 +0000] "GET /a%20b?x=1 HTTP/1.1" 200 13 "http://x/" "curl/8""#
        );
    }

    #[test]
    fn every_atom() {
        let req = headers(&[("x-id", "7"), ("authorization", "Basic dXNlcjpwYXNz")]);
        let resp = headers(&[("content-type", "text/plain")]);
        let format = "%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(B)s|%(T)s|%(M)s|%(D)s|%(L)s|%(p)s|%(u)s|%({X-Id}i)s|%({content-type}o)s|%({REMOTE_USER}e)s|%(f)s|%(zz)s";
        let line = AccessFormat::parse(format)
            .unwrap()
            .line(&record(&req, &resp), &|k| {
                (k == "REMOTE_USER").then(|| "bob".to_owned())
            });
        assert_eq!(
            line,
            "GET|/a%20b|x=1|HTTP/1.1|200|13|1|1234|1234567|1.234567|<42>|user|7|text/plain|bob|-|-"
        );
    }

    #[test]
    fn zero_bytes_print_as_zero_like_gunicorn() {
        let (req, resp) = (HeaderMap::new(), HeaderMap::new());
        let mut r = record(&req, &resp);
        r.bytes = 0;
        let line = AccessFormat::parse("%(b)s %(B)s")
            .unwrap()
            .line(&r, &|_| None);
        assert_eq!(line, "0 0");
    }

    #[test]
    fn json_has_the_same_fields() {
        let req = headers(&[("user-agent", "a \"quoted\" agent")]);
        let resp = HeaderMap::new();
        let json = AccessFormat::parse(r#"%(h)s "%(a)s" %(s)s"#)
            .unwrap()
            .json(&record(&req, &resp), &|_| None);
        assert_eq!(
            json,
            r#"{"h": "127.0.0.1", "a": "a \"quoted\" agent", "s": "200"}"#
        );
    }

    #[test]
    fn unclosed_atom_is_an_error() {
        let err = AccessFormat::parse("%(h)s %(t").unwrap_err();
        assert!(
            err.contains("--access-logformat") && err.contains("6"),
            "{err}"
        );
    }

    #[test]
    fn base64_user() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("!!").is_none());
    }
}
