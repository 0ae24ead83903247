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

use http::Version;
use percent_encoding::percent_decode;

use crate::http::head::name_is;
use crate::http::RequestHead;

/// The per-request CGI variables of one request, as bytes to decode as latin-1.
#[derive(Debug, Clone)]
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
    head: &'a RequestHead,
    /// The [`sketch`] bits two or more field names share: only a name with
    /// one of them can repeat.
    shared: u64,
    /// Bit i: field line i (of the first 64) is a `Content-Type` or
    /// `Content-Length` line, which has no `HTTP_` key (rule 2): found by
    /// [`RequestVars::new`], so [`RequestVars::fields`] need not compare
    /// its name again.
    framing: u64,
}

impl<'a> RequestVars<'a> {
    /// Compute the variables of the request whose head is `head`.
    ///
    /// `root_path` is the `--root-path` mount point (empty, or `/prefix` with no
    /// trailing slash); it becomes `SCRIPT_NAME` in the environ template.
    pub fn new(head: &'a RequestHead, root_path: &str) -> RequestVars<'a> {
        let path = head.uri.path();
        let decoded: Cow<'a, [u8]> = percent_decode(path.as_bytes()).into();
        let path_info = strip_root_path(decoded, root_path.as_bytes());
        let mut vars = RequestVars {
            method: head.method.as_str(),
            path_info,
            query_string: head.uri.query().unwrap_or(""),
            protocol: protocol(head.version),
            content_type: None,
            content_length: None,
            head,
            shared: 0,
            framing: 0,
        };
        let mut seen = 0u64;
        for (i, (name, value)) in head.fields().enumerate() {
            let bit = sketch(name);
            vars.shared |= seen & bit;
            seen |= bit;
            // The first of each (a second Content-Type is refused earlier).
            let slot = match content_field(name) {
                Some(Content::Type) => &mut vars.content_type,
                Some(Content::Length) => &mut vars.content_length,
                None => continue,
            };
            *slot = slot.or(Some(value));
            if i < 64 {
                vars.framing |= 1 << i;
            }
        }
        vars
    }

    /// The `HTTP_*` keys with their values (rules 3 and 4 of the module
    /// docs): one per field name, in the order names first appear, the
    /// values of a repeated name joined. Computed as they are taken, with no
    /// list made.
    pub fn fields(&self) -> impl Iterator<Item = (FieldKey, Cow<'a, [u8]>)> + '_ {
        let head = self.head;
        head.fields()
            .enumerate()
            .filter_map(move |(i, (name, value))| {
                let kin = self.shared & sketch(name) != 0;
                let same = move |&(other, _): &(&[u8], &[u8])| other.eq_ignore_ascii_case(name);
                if kin && head.fields().take(i).any(|field| same(&field)) {
                    return None; // joined to the first field of its name
                }
                let framing = if i < 64 {
                    self.framing >> i & 1 == 1
                } else {
                    content_field(name).is_some()
                };
                if framing {
                    return None; // rule 2: no HTTP_ key
                }
                let key = http_key(name)?;
                if !kin {
                    return Some((key, Cow::Borrowed(value)));
                }
                let values = head.fields().skip(i).filter(same).map(|(_, value)| value);
                let cookie = name_is(name, b"cookie");
                Some((key, combined(values, if cookie { b"; " } else { b"," })))
            })
    }
}

/// The two fields whose values become `CONTENT_TYPE` and `CONTENT_LENGTH`
/// (rule 2 of the module docs).
enum Content {
    Type,
    Length,
}

/// Which of the two `name` (any case) is, if either.
fn content_field(name: &[u8]) -> Option<Content> {
    match name.len() {
        12 if name_is(name, b"content-type") => Some(Content::Type),
        14 if name_is(name, b"content-length") => Some(Content::Length),
        _ => None,
    }
}

/// One bit of 64 for a field name, the same for a name in any case, from
/// its length, its fourth-last and its last byte (`Sec-Fetch-Dest`, `-Mode`
/// and `-Site` differ there). Names with different bits differ; equal bits
/// only say two names may be equal.
fn sketch(name: &[u8]) -> u64 {
    let len = name.len();
    let at = |i: usize| usize::from(name.get(i).map_or(0, u8::to_ascii_lowercase));
    let mix = len * 31 + at(len.saturating_sub(4)) * 7 + at(len.wrapping_sub(1));
    1 << (mix % 64)
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

/// `values` (one field's, in order), joined with `sep` per rule 3 of the
/// module docs; borrowed when there is only one.
fn combined<'a>(mut values: impl Iterator<Item = &'a [u8]>, sep: &[u8]) -> Cow<'a, [u8]> {
    let first = values.next().unwrap_or_default();
    let Some(second) = values.next() else {
        return Cow::Borrowed(first);
    };
    let mut joined = Vec::with_capacity(first.len() + sep.len() + second.len());
    joined.extend_from_slice(first);
    for value in std::iter::once(second).chain(values) {
        joined.extend_from_slice(sep);
        joined.extend_from_slice(value);
    }
    Cow::Owned(joined)
}

/// The environ key of a request field (rule 3 of the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKey {
    /// The key of `COMMON_FIELDS[i]`: a common name, whose key the Python
    /// layer keeps as one interned `str`.
    Common(usize),
    /// `HTTP_` + a name outside the table, built for this request.
    Built(String),
}

impl FieldKey {
    /// The key as text, e.g. `HTTP_HOST`.
    pub fn as_str(&self) -> &str {
        match self {
            FieldKey::Common(i) => COMMON_FIELDS[*i].1,
            FieldKey::Built(key) => key,
        }
    }
}

/// Common field names and their environ keys; [`FieldKey::Common`] indexes it.
pub const COMMON_FIELDS: [(&str, &str); 37] = [
    ("host", "HTTP_HOST"),
    ("user-agent", "HTTP_USER_AGENT"),
    ("accept", "HTTP_ACCEPT"),
    ("accept-encoding", "HTTP_ACCEPT_ENCODING"),
    ("accept-language", "HTTP_ACCEPT_LANGUAGE"),
    ("connection", "HTTP_CONNECTION"),
    ("cookie", "HTTP_COOKIE"),
    ("referer", "HTTP_REFERER"),
    ("origin", "HTTP_ORIGIN"),
    ("authorization", "HTTP_AUTHORIZATION"),
    ("cache-control", "HTTP_CACHE_CONTROL"),
    ("pragma", "HTTP_PRAGMA"),
    ("if-none-match", "HTTP_IF_NONE_MATCH"),
    ("if-modified-since", "HTTP_IF_MODIFIED_SINCE"),
    ("range", "HTTP_RANGE"),
    ("expect", "HTTP_EXPECT"),
    ("transfer-encoding", "HTTP_TRANSFER_ENCODING"),
    (
        "upgrade-insecure-requests",
        "HTTP_UPGRADE_INSECURE_REQUESTS",
    ),
    ("x-forwarded-for", "HTTP_X_FORWARDED_FOR"),
    ("x-forwarded-proto", "HTTP_X_FORWARDED_PROTO"),
    ("x-forwarded-host", "HTTP_X_FORWARDED_HOST"),
    ("x-real-ip", "HTTP_X_REAL_IP"),
    ("x-requested-with", "HTTP_X_REQUESTED_WITH"),
    ("x-csrftoken", "HTTP_X_CSRFTOKEN"),
    ("sec-fetch-site", "HTTP_SEC_FETCH_SITE"),
    ("sec-fetch-mode", "HTTP_SEC_FETCH_MODE"),
    ("sec-fetch-dest", "HTTP_SEC_FETCH_DEST"),
    ("dnt", "HTTP_DNT"),
    ("sec-fetch-user", "HTTP_SEC_FETCH_USER"),
    ("sec-ch-ua", "HTTP_SEC_CH_UA"),
    ("sec-ch-ua-mobile", "HTTP_SEC_CH_UA_MOBILE"),
    ("sec-ch-ua-platform", "HTTP_SEC_CH_UA_PLATFORM"),
    ("priority", "HTTP_PRIORITY"),
    ("x-forwarded-port", "HTTP_X_FORWARDED_PORT"),
    ("x-request-id", "HTTP_X_REQUEST_ID"),
    ("x-amzn-trace-id", "HTTP_X_AMZN_TRACE_ID"),
    ("traceparent", "HTTP_TRACEPARENT"),
];

/// The environ key for field `name`: `HTTP_` + upper-cased name, `-` → `_`.
///
/// Returns `None` for names containing `_` (rule 4). Common names come from a
/// table, so the hot path allocates nothing for them.
///
/// # Examples
///
/// ```
/// use _ferrule::wsgi::environ::http_key;
/// assert_eq!(http_key(b"X-Request-Id").unwrap().as_str(), "HTTP_X_REQUEST_ID");
/// assert_eq!(http_key(b"host").unwrap().as_str(), "HTTP_HOST");
/// assert!(http_key(b"x_forwarded_for").is_none());
/// ```
pub fn http_key(name: &[u8]) -> Option<FieldKey> {
    if let Some(index) = common_index(name) {
        return Some(FieldKey::Common(index));
    }
    if name.contains(&b'_') {
        return None;
    }
    let mut key = String::with_capacity(5 + name.len());
    key.push_str("HTTP_");
    key.extend(name.iter().map(|&b| match b {
        b'-' => '_',
        b => char::from(b.to_ascii_uppercase()),
    }));
    Some(FieldKey::Built(key))
}

/// The longest name in [`COMMON_FIELDS`], in bytes.
const COMMON_NAME_MAX: usize = 25;

/// The index of `name` (any case) in [`COMMON_FIELDS`] (a unit test keeps
/// the two in step).
fn common_index(name: &[u8]) -> Option<usize> {
    let mut lower = [0; COMMON_NAME_MAX];
    let lower = lower.get_mut(..name.len())?;
    for (l, b) in lower.iter_mut().zip(name) {
        *l = b.to_ascii_lowercase();
    }
    Some(match &*lower {
        b"host" => 0,
        b"user-agent" => 1,
        b"accept" => 2,
        b"accept-encoding" => 3,
        b"accept-language" => 4,
        b"connection" => 5,
        b"cookie" => 6,
        b"referer" => 7,
        b"origin" => 8,
        b"authorization" => 9,
        b"cache-control" => 10,
        b"pragma" => 11,
        b"if-none-match" => 12,
        b"if-modified-since" => 13,
        b"range" => 14,
        b"expect" => 15,
        b"transfer-encoding" => 16,
        b"upgrade-insecure-requests" => 17,
        b"x-forwarded-for" => 18,
        b"x-forwarded-proto" => 19,
        b"x-forwarded-host" => 20,
        b"x-real-ip" => 21,
        b"x-requested-with" => 22,
        b"x-csrftoken" => 23,
        b"sec-fetch-site" => 24,
        b"sec-fetch-mode" => 25,
        b"sec-fetch-dest" => 26,
        b"dnt" => 27,
        b"sec-fetch-user" => 28,
        b"sec-ch-ua" => 29,
        b"sec-ch-ua-mobile" => 30,
        b"sec-ch-ua-platform" => 31,
        b"priority" => 32,
        b"x-forwarded-port" => 33,
        b"x-request-id" => 34,
        b"x-amzn-trace-id" => 35,
        b"traceparent" => 36,
        _ => return None,
    })
}

/// `REMOTE_PORT`: the decimal digits of `port`, written into `buf`.
///
/// # Examples
///
/// ```
/// let mut buf = [0; 5];
/// assert_eq!(_ferrule::wsgi::environ::port_text(8080, &mut buf), b"8080");
/// ```
pub fn port_text(port: u16, buf: &mut [u8; 5]) -> &[u8] {
    let mut n = port;
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// `REMOTE_ADDR` of an IPv4 peer: dotted decimal (`203.0.113.7`), written
/// into `buf`; the same text as its `Display`, without `core::fmt`.
pub fn ipv4_text(ip: std::net::Ipv4Addr, buf: &mut [u8; 15]) -> &[u8] {
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    &buf[..len]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(raw_target: &str, headers: &[(&str, &[u8])]) -> RequestHead {
        let mut builder = http::Request::builder().uri(raw_target);
        for (name, value) in headers {
            builder = builder.header(*name, http::HeaderValue::from_bytes(value).unwrap());
        }
        RequestHead::from_parts(builder.body(()).unwrap().into_parts().0)
    }

    fn field(vars: &RequestVars<'_>, key: &str) -> Option<Vec<u8>> {
        vars.fields()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v.into_owned())
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
        assert!(vars.fields().next().is_none());
        let p = parts("/", &[]);
        let vars = RequestVars::new(&p, "");
        assert_eq!((vars.content_type, vars.content_length), (None, None));
    }

    #[test]
    fn content_fields_get_no_key_wherever_they_are_among_many() {
        // The lines past the 64th are judged by name, the others by the
        // bits `new` set: both give rule 2.
        let names: Vec<String> = (0..70).map(|i| format!("X-Field-{i}")).collect();
        let mut fields: Vec<(&str, &[u8])> =
            names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
        fields[3] = ("Content-Length", b"3");
        fields[40] = ("content-type", b"text/plain");
        fields[66] = ("CONTENT-TYPE", b"text/html");
        fields[68] = ("Content-Length", b"4");
        let head = RequestHead::from_lines("/", &fields);
        let vars = RequestVars::new(&head, "");
        assert_eq!(vars.content_type, Some(&b"text/plain"[..]));
        assert_eq!(vars.content_length, Some(&b"3"[..]));
        let keys: Vec<String> = vars.fields().map(|(k, _)| k.as_str().to_owned()).collect();
        assert_eq!(keys.len(), 66);
        assert!(
            keys.iter().all(|k| k.starts_with("HTTP_X_FIELD_")),
            "{keys:?}"
        );
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
        assert_eq!(vars.fields().count(), 3, "one entry per name");
        assert_eq!(field(&vars, "HTTP_X_MULTI").as_deref(), Some(&b"a,b"[..]));
        assert_eq!(field(&vars, "HTTP_X_OTHER").as_deref(), Some(&b"z"[..]));
        assert_eq!(
            field(&vars, "HTTP_COOKIE").as_deref(),
            Some(&b"a=1; b=2"[..])
        );
    }

    #[test]
    fn a_raw_heads_repeats_are_joined_whatever_their_case() {
        let fields: [(&str, &[u8]); 9] = [
            ("Sec-Fetch-Dest", b"document"),
            ("X-Multi", b"a"),
            ("Sec-Fetch-Mode", b"navigate"),
            ("Cookie", b"a=1"),
            ("x-multi", b"b"),
            ("Sec-Fetch-Site", b"none"),
            ("cookie", b"b=2"),
            ("Content-Type", b"text/plain"),
            ("X-MULTI", b"c"),
        ];
        let head = RequestHead::from_lines("/", &fields);
        let vars = RequestVars::new(&head, "");
        let keys: Vec<String> = vars.fields().map(|(k, _)| k.as_str().to_owned()).collect();
        assert_eq!(
            keys,
            [
                "HTTP_SEC_FETCH_DEST",
                "HTTP_X_MULTI",
                "HTTP_SEC_FETCH_MODE",
                "HTTP_COOKIE",
                "HTTP_SEC_FETCH_SITE"
            ],
            "one key per name, in the order names first appear"
        );
        assert_eq!(field(&vars, "HTTP_X_MULTI").as_deref(), Some(&b"a,b,c"[..]));
        assert_eq!(
            field(&vars, "HTTP_COOKIE").as_deref(),
            Some(&b"a=1; b=2"[..])
        );
        assert_eq!(
            field(&vars, "HTTP_SEC_FETCH_MODE").as_deref(),
            Some(&b"navigate"[..])
        );
        assert_eq!(vars.content_type, Some(&b"text/plain"[..]));
        // hyper's map of the same fields gives the same variables.
        let mut builder = http::Request::builder().uri("/");
        for (name, value) in fields {
            builder = builder.header(name, value);
        }
        let map = RequestHead::from_parts(builder.body(()).unwrap().into_parts().0);
        let from_map = RequestVars::new(&map, "");
        let sorted = |v: &RequestVars<'_>| {
            let mut all: Vec<(String, Vec<u8>)> = v
                .fields()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_vec()))
                .collect();
            all.sort();
            all
        };
        assert_eq!(sorted(&vars), sorted(&from_map));
    }

    #[test]
    fn names_that_look_alike_are_not_joined() {
        // Same length, same fourth-last and last byte: the same sketch.
        assert_eq!(sketch(b"X-Aa-Dz"), sketch(b"x-ba-dZ"));
        let head = RequestHead::from_lines("/", &[("X-Aa-Dz", b"1"), ("X-Ba-Dz", b"2")]);
        let vars = RequestVars::new(&head, "");
        assert_eq!(vars.fields().count(), 2);
        assert_eq!(field(&vars, "HTTP_X_AA_DZ").as_deref(), Some(&b"1"[..]));
        assert_eq!(field(&vars, "HTTP_X_BA_DZ").as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn underscore_names_are_dropped_and_latin1_kept() {
        let p = parts(
            "/",
            &[("x_forwarded_for", b"1.2.3.4"), ("x-name", b"caf\xe9")],
        );
        let vars = RequestVars::new(&p, "");
        assert_eq!(vars.fields().count(), 1);
        assert_eq!(
            field(&vars, "HTTP_X_NAME").as_deref(),
            Some(&b"caf\xe9"[..])
        );
    }

    #[test]
    fn table_agrees_with_the_rule() {
        for (i, (name, key)) in COMMON_FIELDS.iter().enumerate() {
            let rule = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
            assert_eq!(*key, rule);
            assert_eq!(common_index(name.as_bytes()), Some(i), "{name}");
            assert!(name.len() <= COMMON_NAME_MAX, "{name}");
            assert_eq!(http_key(name.as_bytes()), Some(FieldKey::Common(i)));
            let upper = name.to_ascii_uppercase();
            assert_eq!(http_key(upper.as_bytes()), Some(FieldKey::Common(i)));
        }
        let built = http_key(b"X-Tenant-ID").unwrap();
        assert_eq!(built, FieldKey::Built("HTTP_X_TENANT_ID".to_owned()));
    }

    #[test]
    fn ports_in_decimal() {
        let mut buf = [0; 5];
        for (port, text) in [
            (0, &b"0"[..]),
            (7, b"7"),
            (80, b"80"),
            (443, b"443"),
            (8080, b"8080"),
            (10000, b"10000"),
            (65535, b"65535"),
        ] {
            assert_eq!(port_text(port, &mut buf), text);
        }
        for port in 0..=u16::MAX {
            assert_eq!(port_text(port, &mut buf), port.to_string().as_bytes());
        }
    }

    #[test]
    fn ipv4_addresses_in_dotted_decimal() {
        use std::net::Ipv4Addr;
        let mut buf = [0; 15];
        for (ip, text) in [
            (Ipv4Addr::new(127, 0, 0, 1), &b"127.0.0.1"[..]),
            (Ipv4Addr::new(0, 0, 0, 0), b"0.0.0.0"),
            (Ipv4Addr::new(255, 255, 255, 255), b"255.255.255.255"),
            (Ipv4Addr::new(10, 99, 100, 9), b"10.99.100.9"),
            (Ipv4Addr::new(192, 168, 1, 250), b"192.168.1.250"),
        ] {
            assert_eq!(ipv4_text(ip, &mut buf), text);
        }
        for octet in 0..=u8::MAX {
            let ip = Ipv4Addr::new(octet, 255 - octet, octet / 3, octet % 7);
            assert_eq!(ipv4_text(ip, &mut buf), ip.to_string().as_bytes());
        }
    }
}
