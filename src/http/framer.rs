//! A request framer in front of hyper: what hyper's parse cannot show.
//!
//! (A connection reaches the framer and hyper only once it sends a head that
//! is not plain; until then [`super::h1`] serves it and applies the same
//! line rules and timers to plain heads itself.)
//!
//! hyper parses request heads leniently in places and drops some evidence
//! before the server sees the head: a `Content-Length` beside
//! `Transfer-Encoding`, line ends that are a bare LF, the whitespace padding
//! of a field line. The [`Framer`] follows the byte stream of a connection as
//! it is read, message by message, and judges each raw head before hyper gets
//! it:
//!
//! 1. Head bytes are held back until the head is complete (an empty line), then
//!    checked: every line ends in CRLF (RFC 9112 §2.2: a bare CR is invalid,
//!    and ferrule also refuses a bare LF); `Transfer-Encoding` and
//!    `Content-Length` together are 400 (RFC 9112 §6.1, request smuggling); a
//!    field line longer than `--limit-request-field-size`, counted raw with its
//!    padding and CRLF, is 431.
//! 2. A refused head never reaches hyper: the connection ends there (hyper
//!    sees the end of input, finishes the responses of the requests before
//!    it, and shuts down), and the refusal is written last, before the close.
//! 3. Body bytes pass through as they arrive; the framer only counts them
//!    (Content-Length) or follows the chunked framing, to know where the next
//!    head starts.
//! 4. Time between requests and within a head is watched here too: a
//!    connection idle (no byte of a next request) for `--keep-alive` is
//!    closed; a head that has started but is not complete within
//!    `--header-timeout` (slowloris) gets a 408, written like a refusal.
//! 5. Anything the framer cannot follow — a head hyper will refuse anyway, a
//!    chunk line it cannot read, a message after which the connection closes —
//!    ends its judging: the rest passes through untouched, for hyper to handle.
//!    Such a connection still ends its input after a silence longer than any
//!    allowed wait (`--header-timeout` plus `--keep-alive`, or `--body-timeout`):
//!    the framer is the only read timer (hyper's own header timer is off, it
//!    cost a timer registration per request).

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes a head may take before the framer refuses it (431); the
/// exchange ([`super::h1`]) serves no larger head either.
pub(super) const MAX_HEAD: usize = 1024 * 1024;

/// The most field lines of a head the framer parses; a head with more passes
/// through unjudged, and hyper refuses it by `--limit-request-fields` (431)
/// unless that limit is raised past this.
const MAX_FIELDS: usize = 256;

/// Finds the empty line that ends a well-formed head.
static CRLF_CRLF: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));

/// The allocation `held` keeps between heads, in bytes: one that a larger head
/// grew is freed.
const HELD_KEPT: usize = 16 * 1024;

/// A refused head: the status and a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 408 or 431.
    pub status: StatusCode,
    /// Why, for the response body.
    pub reason: String,
}

impl Refusal {
    /// The 408 for a head not whole within `header` (`--header-timeout`).
    pub fn late_head(header: Duration) -> Refusal {
        Refusal {
            status: StatusCode::REQUEST_TIMEOUT,
            reason: format!(
                "the request head did not arrive within {} s (--header-timeout)",
                header.as_secs_f64()
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Collecting a head (held back).
    Head,
    /// `n` body bytes still to pass.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkLine,
    /// `n` chunk-data bytes still to pass, then CRLF.
    ChunkData(u64),
    /// The CRLF after chunk data: bytes of it still expected.
    ChunkEnd(u8),
    /// Trailer section lines, until an empty line.
    Trailers,
    /// No more judging: everything passes (point 4).
    PassThrough,
    /// A head was refused: nothing more passes.
    Refused,
}

/// Follows one connection's request stream (module docs).
#[derive(Debug)]
pub struct Framer {
    state: State,
    held: Vec<u8>,
    line: Vec<u8>,
    field_size: usize,
}

impl Framer {
    /// A framer for a new connection; `field_size` is `--limit-request-field-size`
    /// (0: unlimited).
    pub fn new(field_size: usize) -> Framer {
        Framer {
            state: State::Head,
            held: Vec::new(),
            line: Vec::new(),
            field_size,
        }
    }

    /// Whether the framer waits for a head, and whether some of it has arrived.
    fn awaiting_head(&self) -> Option<bool> {
        (self.state == State::Head).then_some(!self.held.is_empty())
    }

    /// Whether the framer has stopped judging (point 5 of the module docs).
    fn passing_through(&self) -> bool {
        self.state == State::PassThrough
    }

    /// Feed bytes read from the socket; append what may reach hyper to `out`.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] of a head; `out` then holds everything before it, and
    /// every later call passes nothing.
    pub fn feed(&mut self, mut data: &[u8], out: &mut impl Sink) -> Result<(), Refusal> {
        while !data.is_empty() {
            match self.state {
                State::Refused => return Ok(()),
                State::PassThrough => {
                    out.pass(data);
                    return Ok(());
                }
                State::Head => {
                    let judged = match self.collect_head(&mut data) {
                        Collected::Partial if self.held.len() > MAX_HEAD => Err(Refusal {
                            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                            reason: "the request head is too large".into(),
                        }),
                        Collected::Partial => continue,
                        Collected::InData(head) => self.judge(head).inspect(|_| {
                            out.pass(head);
                        }),
                        Collected::Held => {
                            let judged = self.judge(&self.held).inspect(|_| {
                                out.pass(&self.held);
                            });
                            self.release_held();
                            judged
                        }
                    };
                    match judged {
                        Ok(next) => self.state = next,
                        Err(refusal) => {
                            self.state = State::Refused;
                            self.release_held();
                            return Err(refusal);
                        }
                    }
                }
                State::Body(n) => {
                    let left = pass(n, &mut data, out);
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                }
                State::ChunkData(n) => {
                    let left = pass(n, &mut data, out);
                    self.state = if left == 0 {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(left)
                    };
                }
                State::ChunkEnd(left) => {
                    let expected = if left == 2 { b'\r' } else { b'\n' };
                    if data[0] != expected {
                        // Malformed chunk framing: hyper will refuse it.
                        self.state = State::PassThrough;
                        continue;
                    }
                    out.pass(&data[..1]);
                    data = &data[1..];
                    self.state = if left == 2 {
                        State::ChunkEnd(1)
                    } else {
                        State::ChunkLine
                    };
                }
                State::ChunkLine | State::Trailers => {
                    // A chunk-size line is held back until it is whole and
                    // checked; trailer lines pass as they come.
                    let holding = self.state == State::ChunkLine;
                    let Some(pos) = memchr::memchr(b'\n', data) else {
                        if !holding {
                            out.pass(data);
                        }
                        self.line.extend_from_slice(data);
                        if self.line.len() > 64 * 1024 {
                            if holding {
                                out.pass(POISON);
                            }
                            self.state = State::PassThrough;
                        }
                        return Ok(());
                    };
                    let end = &data[..=pos];
                    data = &data[pos + 1..];
                    // A line that arrived whole is read where it lies.
                    let whole = self.line.is_empty();
                    if !whole {
                        self.line.extend_from_slice(end);
                    }
                    let line = if whole { end } else { &self.line[..] };
                    let next = self.after_line(line);
                    match (holding, &next) {
                        // A malformed chunk line: hand hyper a chunk size it
                        // refuses, so the body fails where it is read (400
                        // from the application side), and pass nothing more.
                        (true, State::Refused) => out.pass(POISON),
                        (true, _) => out.pass(line),
                        (false, _) => out.pass(end),
                    }
                    self.line.clear();
                    self.state = next;
                }
            }
        }
        Ok(())
    }

    /// Take the head at the front of `data`, advancing `data` past what it took.
    ///
    /// A head that arrived whole in one read is judged where it lies, in
    /// `data`, with no copy; the bytes of a head split across reads are held
    /// back in `held` until its end arrives. Only the new bytes (and the three
    /// before them) are searched, so a head trickled byte by byte costs linear
    /// time.
    fn collect_head<'a>(&mut self, data: &mut &'a [u8]) -> Collected<'a> {
        if self.held.is_empty() {
            // Leading empty lines before a request line are ignored (RFC 9112 §2.2).
            let start = data
                .iter()
                .position(|&b| b != b'\r' && b != b'\n')
                .unwrap_or(data.len());
            let rest = &data[start..];
            // The usual head ends at its first CRLFCRLF, found in one search.
            // A head that ends earlier, at an empty line after a bare LF, is
            // refused for its first bare LF; judged with what follows up to
            // that CRLFCRLF, it is refused for the same one.
            let end = match CRLF_CRLF.find(rest) {
                Some(at) => Some(at + 4),
                None => head_end(rest, 0),
            };
            if let Some(end) = end {
                let (head, after) = rest.split_at(end);
                *data = after;
                return Collected::InData(head);
            }
            self.held.extend_from_slice(rest);
            *data = &[];
            return Collected::Partial;
        }
        let old = self.held.len();
        self.held.extend_from_slice(data);
        match head_end(&self.held, old.saturating_sub(3)) {
            Some(end) => {
                *data = &data[end - old..];
                self.held.truncate(end);
                Collected::Held
            }
            None => {
                *data = &[];
                Collected::Partial
            }
        }
    }

    /// Empty `held` for the next head, keeping its allocation unless a large
    /// head grew it.
    fn release_held(&mut self) {
        if self.held.capacity() > HELD_KEPT {
            self.held = Vec::new();
        } else {
            self.held.clear();
        }
    }

    fn after_line(&self, line: &[u8]) -> State {
        let Some(content) = line.strip_suffix(b"\r\n") else {
            return State::PassThrough; // a bare LF in the body framing: hyper decides
        };
        if self.state == State::Trailers {
            return if content.is_empty() {
                State::Head
            } else {
                State::Trailers
            };
        }
        // chunk-size = 1*HEXDIG, then chunk-ext (RFC 9112 §7.1, §7.1.1).
        let digits = content.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 16 || !valid_chunk_ext(&content[digits..]) {
            return State::Refused;
        }
        let text = std::str::from_utf8(&content[..digits]).expect("hex digits are ASCII");
        match u64::from_str_radix(text, 16) {
            Ok(0) => State::Trailers,
            Ok(n) => State::ChunkData(n),
            Err(_) => State::Refused,
        }
    }

    /// Check a complete head; the state that follows it.
    fn judge(&self, head: &[u8]) -> Result<State, Refusal> {
        let bad = |reason: &str| Refusal {
            status: StatusCode::BAD_REQUEST,
            reason: reason.to_owned(),
        };
        let oversized = check_lines(head, self.field_size)?;
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut request = httparse::Request::new(&mut []);
        if !matches!(
            request.parse_with_uninit_headers(head, &mut fields),
            Ok(httparse::Status::Complete(_))
        ) {
            // hyper parses it too, and answers what is wrong with it.
            return Ok(State::PassThrough);
        }
        if let Some(size) = oversized {
            return Err(Refusal {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                reason: format!(
                    "a field line of {size} bytes is over --limit-request-field-size {}",
                    self.field_size
                ),
            });
        }
        let mut length = None;
        let mut chunked = false;
        let mut transfer_encoding = false;
        let http10 = request.version == Some(0);
        let mut persistence = Persistence::default();
        // Only the values of these three names are read, as bytes: a value
        // with bytes outside ASCII matches no token, as in hyper.
        for field in request.headers.iter() {
            let value = field.value.trim_ascii();
            if field.name.eq_ignore_ascii_case("content-length") {
                let number = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                length = Some(number.unwrap_or(u64::MAX));
            } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoding = true;
                chunked = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if field.name.eq_ignore_ascii_case("connection") {
                persistence.read(value);
            }
        }
        let close = !persistence.persists(http10);
        if transfer_encoding && length.is_some() {
            return Err(bad(
                "Transfer-Encoding and Content-Length together (RFC 9112 section 6.1)",
            ));
        }
        Ok(match (transfer_encoding, chunked, length) {
            // After the last message of a connection, or a body framing hyper
            // will refuse, there is nothing more to judge.
            _ if close => State::PassThrough,
            (true, false, _) => State::PassThrough,
            (true, true, _) => State::ChunkLine,
            (false, _, Some(u64::MAX)) => State::PassThrough,
            (false, _, Some(0) | None) => State::Head,
            (false, _, Some(n)) => State::Body(n),
        })
    }
}

/// Check the line ends of a complete head: every line ends in CRLF, and no
/// CR stands alone (RFC 9112 §2.2). Returns the size of the first field
/// line longer than `field_size` (0: no limit), counted raw with its padding
/// and CRLF.
///
/// # Errors
///
/// A 400 [`Refusal`] naming the first bare LF or CR.
pub(super) fn check_lines(head: &[u8], field_size: usize) -> Result<Option<usize>, Refusal> {
    let bad = || Refusal {
        status: StatusCode::BAD_REQUEST,
        reason: bare_line_end(head).to_owned(),
    };
    // One pass over the LFs checks that each ends a CRLF and measures the
    // field lines; then no CR may be left over: as many CRs as LFs.
    let mut oversized = None;
    let mut line_start = None; // None on the request line
    let mut crlfs = 0;
    for i in memchr::memchr_iter(b'\n', head) {
        if i == 0 || head[i - 1] != b'\r' {
            return Err(bad());
        }
        crlfs += 1;
        if let Some(start) = line_start {
            let size = i + 1 - start;
            if oversized.is_none() && field_size > 0 && size > field_size && size > 2 {
                oversized = Some(size);
            }
        }
        line_start = Some(i + 1);
    }
    if memchr::memchr_iter(b'\r', head).count() != crlfs {
        return Err(bad());
    }
    Ok(oversized)
}

/// Where [`Framer::feed`] puts the bytes it passes, in order.
pub trait Sink {
    /// Append `bytes` to what passes.
    fn pass(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn pass(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A [`Sink`] for bytes already where they must go: while what passes is the
/// input itself, in order from its start (the usual case: whole heads and body
/// bytes), it only counts; the first byte passed from elsewhere (a head held
/// over reads, a poisoned chunk line) or out of order (dropped leading empty
/// lines) copies what passed so far into `copy` and carries on there.
#[derive(Debug)]
struct InPlace<'a> {
    input: &'a [u8],
    passed: usize,
    copy: &'a mut Vec<u8>,
    copying: bool,
}

impl<'a> InPlace<'a> {
    /// `copy` must be empty.
    fn new(input: &'a [u8], copy: &'a mut Vec<u8>) -> InPlace<'a> {
        InPlace {
            input,
            passed: 0,
            copy,
            copying: false,
        }
    }

    /// `Some(n)`: what passed is the first `n` bytes of the input;
    /// `None`: it is all in `copy`.
    fn finish(self) -> Option<usize> {
        (!self.copying).then_some(self.passed)
    }
}

impl Sink for InPlace<'_> {
    fn pass(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if !self.copying {
            let next = &self.input[self.passed..];
            // Two live allocations never overlap: a slice that starts where
            // the unpassed input starts, and fits in it, is that input.
            if std::ptr::eq(bytes.as_ptr(), next.as_ptr()) && bytes.len() <= next.len() {
                self.passed += bytes.len();
                return;
            }
            self.copy.extend_from_slice(&self.input[..self.passed]);
            self.copying = true;
        }
        self.copy.extend_from_slice(bytes);
    }
}

/// Where [`Framer::collect_head`] found a complete head, if it did.
enum Collected<'a> {
    /// Whole within the bytes just read.
    InData(&'a [u8]),
    /// In `held`, having arrived over more than one read.
    Held,
    /// Not complete yet: all of it so far is in `held`.
    Partial,
}

/// Why a head with a bare CR or LF is refused: the first of them decides.
fn bare_line_end(head: &[u8]) -> &'static str {
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' && (i == 0 || head[i - 1] != b'\r') {
            return "a line of the request head ends in a bare LF (RFC 9112 section 2.2)";
        }
        if b == b'\r' && head.get(i + 1) != Some(&b'\n') {
            break;
        }
    }
    "a bare CR in the request head (RFC 9112 section 2.2)"
}

/// Whether the comma-separated list `value` holds `token` (ASCII
/// case-insensitive). A value with a byte that is not visible ASCII, SP or
/// HTAB (obs-text, RFC 9110 §5.5) holds no token: hyper reads `Connection`
/// tokens only from a value `HeaderValue::to_str` accepts.
pub(super) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        && value
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// What a request's `Connection` fields say about the connection after it,
/// read as hyper 1.x reads them: every field counts, in any order.
///
/// RFC 9112 §9.3: HTTP/1.1 persists unless a `close` token is present;
/// HTTP/1.0 persists only with a `keep-alive` token (§C.2.2). hyper
/// (`proto/h1/role.rs`, `Server::parse`) lets a `close` in any field win over
/// any `keep-alive`, before or after it, and a field with neither token
/// changes nothing. The framer ([`Framer`]) and ferrule's own exchange
/// ([`super::h1`]) both decide by this, so neither can stop following a
/// connection hyper keeps open, or follow one it closes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Persistence {
    /// Some field holds `close`.
    close: bool,
    /// Some field holds `keep-alive`.
    keep_alive: bool,
}

impl Persistence {
    /// Read the value of one `Connection` field (see [`has_token`]).
    pub(super) fn read(&mut self, value: &[u8]) {
        self.close |= has_token(value, b"close");
        self.keep_alive |= has_token(value, b"keep-alive");
    }

    /// Whether the connection may carry another request after this one's
    /// response; `http10`: the request line says HTTP/1.0 (else HTTP/1.1).
    pub(super) fn persists(self, http10: bool) -> bool {
        !self.close && (!http10 || self.keep_alive)
    }
}

/// What the framer hands hyper in place of a malformed chunk-size line.
pub(crate) const POISON: &[u8] = b"!\r\n";

/// `chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )`, with
/// `ext-val = token / quoted-string` (RFC 9112 §7.1.1, RFC 9110 §5.6).
fn valid_chunk_ext(mut rest: &[u8]) -> bool {
    fn tchar(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
    }
    fn bws(rest: &mut &[u8]) {
        while let [b' ' | b'\t', tail @ ..] = rest {
            *rest = tail;
        }
    }
    fn token<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
        let n = rest.iter().take_while(|&&b| tchar(b)).count();
        let (name, tail) = rest.split_at(n);
        *rest = tail;
        name
    }
    loop {
        if rest.is_empty() {
            return true;
        }
        // BWS only ever comes before a ";" or an "=": "0 " is malformed.
        bws(&mut rest);
        let [b';', tail @ ..] = rest else {
            return false;
        };
        rest = tail;
        bws(&mut rest);
        if token(&mut rest).is_empty() {
            return false;
        }
        let before = rest;
        bws(&mut rest);
        let [b'=', tail @ ..] = rest else {
            rest = before;
            continue;
        };
        rest = tail;
        bws(&mut rest);
        if let [b'"', tail @ ..] = rest {
            // quoted-string: qdtext or quoted-pair up to the closing quote.
            let mut i = 0;
            loop {
                match tail.get(i) {
                    None => return false,
                    Some(b'"') => break,
                    Some(b'\\')
                        if tail
                            .get(i + 1)
                            .is_some_and(|&c| c == b'\t' || c >= 0x20 && c != 0x7f) =>
                    {
                        i += 2
                    }
                    Some(&c) if c == b'\t' || (c >= 0x20 && c != 0x7f && c != b'\\') => i += 1,
                    Some(_) => return false,
                }
            }
            rest = &tail[i + 1..];
        } else if token(&mut rest).is_empty() {
            return false;
        }
    }
}

/// Move up to `n` body bytes from the front of `data` to `out`; the bytes of
/// the `n` still to come.
fn pass(n: u64, data: &mut &[u8], out: &mut impl Sink) -> u64 {
    let take = usize::try_from(n).unwrap_or(usize::MAX).min(data.len());
    out.pass(&data[..take]);
    *data = &data[take..];
    n - take as u64
}

/// The length of a head (through its empty line) if `buf` holds all of it,
/// looking for the empty line from `from` on.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    // A bare-LF empty line ends a head too, so that it can be judged (refused):
    // the head ends at the first LF followed by LF or CRLF.
    memchr::memchr_iter(b'\n', &buf[from..]).find_map(|i| match &buf[from + i + 1..] {
        [b'\n', ..] => Some(from + i + 2),
        [b'\r', b'\n', ..] => Some(from + i + 3),
        _ => None,
    })
}

/// A connection's byte stream, judged by a [`Framer`] on the way in.
///
/// Reads give hyper only what the framer passes; after a refusal they end the
/// input. Writes go straight through; the refusal's response is written at
/// shutdown, after hyper's own responses to the requests before it.
#[derive(Debug)]
pub struct Framed<S> {
    inner: S,
    framer: Framer,
    /// Bytes passed but not yet handed to hyper (when they could not be
    /// left where they were read), from `pos` on.
    ready: Vec<u8>,
    pos: usize,
    /// Bytes read from `inner` before the framer was put in front of it
    /// ([`Framed::with_unread`]): they are judged first, as if read now.
    unread: bytes::BytesMut,
    reply: Option<(Vec<u8>, usize)>,
    eof: bool,
    timeouts: Timeouts,
    /// When the current wait began: idle since, or head started at.
    since: Instant,
    /// The deadline `timer` is set to, and what it means (true: head started).
    armed: Option<(Instant, bool)>,
    timer: Pin<Box<tokio::time::Sleep>>,
}

/// `--keep-alive` and `--header-timeout`, for [`Framed`].
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Longest idle time between requests.
    pub keep_alive: Duration,
    /// Longest time from a head's first byte to its end.
    pub header: Duration,
    /// `--body-timeout`: longest silence within a request body.
    pub body: Duration,
}

impl<S> Framed<S> {
    /// Wrap `inner`; `field_size` is `--limit-request-field-size` (0: unlimited).
    pub fn new(inner: S, field_size: usize, timeouts: Timeouts) -> Framed<S> {
        let now = Instant::now();
        Framed {
            inner,
            framer: Framer::new(field_size),
            ready: Vec::new(),
            pos: 0,
            unread: bytes::BytesMut::new(),
            reply: None,
            eof: false,
            timeouts,
            since: now,
            armed: None,
            timer: Box::pin(tokio::time::sleep_until(now + timeouts.header)),
        }
    }

    /// Judge `unread` first: bytes already read from `inner` (by
    /// [`super::h1`], which hands a connection over at the start of a head).
    #[must_use]
    pub fn with_unread(mut self, unread: bytes::BytesMut) -> Framed<S> {
        self.unread = unread;
        self
    }

    /// Whether the input ended quietly: the client ended its side, or the
    /// framer ended it after a silence (idle past `--keep-alive`, or the
    /// longest wait once it stopped judging; point 4 of the module docs),
    /// with nothing read that waits. A connection that ended otherwise (hyper
    /// closed it after a response, or a head was refused) may still have
    /// bytes coming: its close lingers ([`super::linger`]).
    pub fn ended_quietly(&self) -> bool {
        self.eof
    }

    /// The connection under the framer, for its last reads
    /// ([`super::linger`]): they bypass the framer.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// While the socket has nothing to read: arm the timer for the wait the
    /// framer is in, and act when it has run out (point 4 of the module docs).
    fn watch(&mut self, cx: &mut Context<'_>) {
        let deadline = match self.framer.awaiting_head() {
            Some(true) => Some((self.since + self.timeouts.header, true)),
            Some(false) => Some((self.since + self.timeouts.keep_alive, false)),
            // No longer judged (the bytes may be a head or a body): end the
            // input after a silence longer than any wait allowed (hyper then
            // closes the connection once its response is out).
            None if self.framer.passing_through() => Some((
                self.since
                    + (self.timeouts.header + self.timeouts.keep_alive).max(self.timeouts.body),
                false,
            )),
            None => None, // inside a body: --body-timeout is the reader's
        };
        let Some((at, started)) = deadline else {
            return;
        };
        if self.armed != Some((at, started)) {
            self.timer.as_mut().reset(at);
            self.armed = Some((at, started));
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            if started {
                self.reply = Some((
                    refusal_response(&Refusal::late_head(self.timeouts.header)),
                    0,
                ));
            } else {
                self.eof = true; // idle past --keep-alive: close quietly
            }
        }
    }
}

/// The response to a refused head: a short text body and `Connection: close`.
pub(super) fn refusal_response(refusal: &Refusal) -> Vec<u8> {
    let status = refusal.status;
    let body = format!(
        "{} {}\n{}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        refusal.reason
    );
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
         connection: close\r\ndate: {}\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        httpdate::fmt_http_date(std::time::SystemTime::now()),
    )
    .into_bytes()
}

/// Reads go straight into hyper's buffer, and the framer judges them there:
/// what it passes unchanged stays (no copy), what it holds back (the start of
/// a head) is cut off the end, and only when it passes other bytes (a head
/// held over reads, a poisoned chunk line) is the read rewritten from `ready`.
impl<S: AsyncRead + Unpin> AsyncRead for Framed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pos < this.ready.len() {
                let n = (this.ready.len() - this.pos).min(buf.remaining());
                buf.put_slice(&this.ready[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.eof || this.reply.is_some() || buf.remaining() == 0 {
                return Poll::Ready(Ok(())); // end of input for hyper
            }
            let start = buf.filled().len();
            if !this.unread.is_empty() {
                let n = this.unread.len().min(buf.remaining());
                buf.put_slice(&this.unread.split_to(n));
            } else if Pin::new(&mut this.inner).poll_read(cx, buf)?.is_pending() {
                this.watch(cx);
                if this.eof || this.reply.is_some() {
                    continue;
                }
                return Poll::Pending;
            }
            if buf.filled().len() == start {
                this.eof = true;
                continue;
            }
            let before = this.framer.awaiting_head();
            this.ready.clear();
            this.pos = 0;
            let mut sink = InPlace::new(&buf.filled()[start..], &mut this.ready);
            let judged = this.framer.feed(sink.input, &mut sink);
            let passed = match sink.finish() {
                Some(passed) => {
                    buf.set_filled(start + passed);
                    passed > 0
                }
                None => {
                    buf.set_filled(start); // `ready` has it: the loop's top
                    true
                }
            };
            if let Err(refusal) = judged {
                this.reply = Some((refusal_response(&refusal), 0));
            }
            // A new wait starts when a head begins or a message ends; empty
            // lines between messages, which pass nothing, are no activity.
            let after = this.framer.awaiting_head();
            if after != before || (after == Some(false) && passed) || this.framer.passing_through()
            {
                this.since = Instant::now();
            }
            if buf.filled().len() > start {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Framed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some((reply, written)) = &mut this.reply {
            while *written < reply.len() {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &reply[*written..]))?;
                if n == 0 {
                    break;
                }
                *written += n;
            }
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(framer: &mut Framer, chunks: &[&[u8]]) -> (Vec<u8>, Option<Refusal>) {
        let mut out = Vec::new();
        for chunk in chunks {
            if let Err(refusal) = framer.feed(chunk, &mut out) {
                return (out, Some(refusal));
            }
        }
        (out, None)
    }

    fn whole(raw: &[u8]) -> (Vec<u8>, Option<Refusal>) {
        run(&mut Framer::new(8190), &[raw])
    }

    fn bytewise(raw: &[u8]) -> (Vec<u8>, Option<Refusal>) {
        let chunks: Vec<&[u8]> = raw.chunks(1).collect();
        run(&mut Framer::new(8190), &chunks)
    }

    /// What `Framed` hands hyper for these reads: each judged in place, as
    /// `poll_read` does; and how many of the reads needed a copy.
    fn in_place(framer: &mut Framer, chunks: &[&[u8]]) -> (Vec<u8>, Option<Refusal>, usize) {
        let (mut out, mut copied) = (Vec::new(), 0);
        for chunk in chunks {
            let mut copy = Vec::new();
            let mut sink = InPlace::new(chunk, &mut copy);
            let judged = framer.feed(chunk, &mut sink);
            match sink.finish() {
                Some(n) => out.extend_from_slice(&chunk[..n]),
                None => {
                    copied += 1;
                    out.extend_from_slice(&copy);
                }
            }
            if let Err(refusal) = judged {
                return (out, Some(refusal), copied);
            }
        }
        (out, None, copied)
    }

    #[test]
    fn reads_judged_in_place_pass_what_a_copy_passes() {
        let streams: [&[u8]; 7] = [
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\n\
              Content-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nHost: x\r\n\r\n",
            b"\r\n\r\nGET /lead HTTP/1.1\r\nHost: x\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n\
              GET /d HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 bad\r\nabc\r\n0\r\n\r\n",
            b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\
              Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
            b"GET /ok HTTP/1.1\r\n\r\nGET /bare HTTP/1.1\nHost: x\r\n\r\n",
            b"GET /close HTTP/1.1\r\nConnection: close\r\n\r\nanything at all\r\n\r\n",
        ];
        for raw in streams {
            let expected = run(&mut Framer::new(8190), &[raw]);
            // Every split into two reads, and every read a single byte.
            for mid in 0..=raw.len() {
                let (out, refusal, _) =
                    in_place(&mut Framer::new(8190), &[&raw[..mid], &raw[mid..]]);
                assert_eq!((out, refusal), expected, "split at {mid} of {raw:?}");
            }
            let bytes: Vec<&[u8]> = raw.chunks(1).collect();
            let (out, refusal, _) = in_place(&mut Framer::new(8190), &bytes);
            assert_eq!((out, refusal), expected, "bytewise {raw:?}");
        }
    }

    #[test]
    fn whole_heads_and_bodies_in_one_read_are_not_copied() {
        let raw = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                    POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
                    GET /d HTTP/1.1\r\nHost: x\r\n\r\nGET /partial HTTP/1.1\r\nHo";
        let (out, refusal, copied) = in_place(&mut Framer::new(8190), &[raw]);
        assert_eq!((refusal, copied), (None, 0));
        // The partial head at the end is held back, cut off the read.
        assert_eq!(out, raw[..raw.len() - b"GET /partial HTTP/1.1\r\nHo".len()]);
        // Its completion arrives split from its start: that read is a copy.
        let mut framer = Framer::new(8190);
        let (out, _, copied) = in_place(&mut framer, &[b"GET / HTTP/1.1\r\nHo", b"st: x\r\n\r\n"]);
        assert_eq!(
            (out.as_slice(), copied),
            (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], 1)
        );
    }

    #[test]
    fn valid_pipelines_pass_unchanged() {
        let raw = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
                    POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                    POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                    3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n\
                    GET /d HTTP/1.1\r\nHost: x\r\n\r\n";
        for (out, refusal) in [whole(raw), bytewise(raw)] {
            assert_eq!(refusal, None);
            assert_eq!(out, raw.to_vec());
        }
    }

    #[test]
    fn smuggling_is_refused_and_nothing_after_passes() {
        let raw = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n\
                    POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
                    0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
        for (out, refusal) in [whole(raw), bytewise(raw)] {
            assert_eq!(refusal.unwrap().status, StatusCode::BAD_REQUEST);
            assert_eq!(out, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
        }
    }

    #[test]
    fn bare_lf_and_bare_cr_are_refused() {
        let (out, refusal) = whole(b"GET / HTTP/1.1\r\nHost: x\nX-A: a\r\n\r\n");
        assert!(out.is_empty());
        assert!(refusal.unwrap().reason.contains("bare LF"));
        let (_, refusal) = whole(b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n");
        assert!(refusal.unwrap().reason.contains("bare CR"));
        let (_, refusal) = whole(b"GET / HTTP/1.1\nHost: x\n\n");
        assert!(refusal.is_some());
    }

    #[test]
    fn a_head_ended_by_a_bare_lf_is_refused_before_a_good_one_after_it() {
        for raw in [
            &b"GET /a HTTP/1.1\r\nA: x\n\r\nGET /b HTTP/1.1\r\nHost: y\r\n\r\n"[..],
            b"GET /a HTTP/1.1\nHost: x\n\nGET /b HTTP/1.1\r\nHost: y\r\n\r\n",
        ] {
            for (out, refusal) in [whole(raw), bytewise(raw)] {
                assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
                assert!(refusal.unwrap().reason.contains("bare LF"));
            }
        }
    }

    #[test]
    fn the_first_bare_cr_or_lf_is_named() {
        for (raw, reason) in [
            (
                &b"GET / HTTP/1.1\r\nA: 1\rB: 2\nC: 3\r\n\r\n"[..],
                "bare CR",
            ),
            (b"GET / HTTP/1.1\r\nA: 1\nB: 2\rC: 3\r\n\r\n", "bare LF"),
            (b"GET / HTTP/1.1\r\nA: 1\r\r\n\r\n", "bare CR"),
            (b"GET / HTTP/1.1\r\nA: 1\r\n\n", "bare LF"),
            (b"\nGET / HTTP/1.1\r\n\r\n", "bare LF"),
            (b"GET / HTTP/1.1\r\nA: \r1\r\n\r\n", "bare CR"),
        ] {
            let refusal = Framer::new(8190).judge(raw).unwrap_err();
            assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
            assert!(
                refusal.reason.contains(reason),
                "{:?}: {}",
                String::from_utf8_lossy(raw),
                refusal.reason
            );
        }
    }

    #[test]
    fn padded_field_lines_count_raw() {
        let mut framer = Framer::new(64);
        let raw = [
            &b"GET / HTTP/1.1\r\nHost: x\r\nX:"[..],
            &[b' '; 100],
            b"v\r\n\r\n",
        ]
        .concat();
        let (_, refusal) = run(&mut framer, &[&raw]);
        assert_eq!(
            refusal.unwrap().status,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let mut framer = Framer::new(64);
        let (out, refusal) = run(&mut framer, &[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]);
        assert_eq!((out.len(), refusal), (27, None));
    }

    #[test]
    fn after_a_closing_message_everything_passes() {
        let raw = b"GET / HTTP/1.0\r\n\r\nGARBAGE\nMORE\r\n\r\n";
        let (out, refusal) = whole(raw);
        assert_eq!((out, refusal), (raw.to_vec(), None));
    }

    #[test]
    fn leading_empty_lines_are_dropped() {
        let (out, refusal) = whole(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(refusal, None);
        assert_eq!(out, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
    }

    #[test]
    fn chunk_extensions_are_checked() {
        for ext in [&b""[..], b";a", b";a=b", b" ; a = \"q \\\" x\"", b";a;b=c"] {
            assert!(valid_chunk_ext(ext), "{:?}", String::from_utf8_lossy(ext));
        }
        for ext in [
            &b";"[..],
            b";a b",
            b";a=\x01",
            b";a=\"b",
            b";=b",
            b";a\0b",
            b"x",
            b" ",
            b";a ",
        ] {
            assert!(!valid_chunk_ext(ext), "{:?}", String::from_utf8_lossy(ext));
        }
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a b\r\nhello\r\n0\r\n\r\n";
        let (out, refusal) = whole(raw);
        assert_eq!(
            refusal, None,
            "mid-body: hyper is made to fail the body instead"
        );
        assert!(
            out.ends_with(b"\r\n\r\n!\r\n"),
            "{:?}",
            String::from_utf8_lossy(&out)
        );
        let (out, _) = whole(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n");
        assert!(out.ends_with(b"!\r\n"));
    }

    #[test]
    fn head_end_finds_the_first_empty_line() {
        for (buf, from, end) in [
            (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"[..], 0, Some(27)),
            (b"GET / HTTP/1.1\nHost: x\n\nbody", 0, Some(24)),
            (b"GET / HTTP/1.1\r\nHost: x\n\r\n", 0, Some(26)),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r", 0, None),
            (b"GET / HTTP/1.1\r\nHost: x\r\n", 0, None),
            (b"\r\n\r\n", 0, Some(4)),
            (b"\n\n", 0, Some(2)),
            (b"a\r\n\r\n", 2, Some(5)),
            (b"a\r\n\r\n", 3, None),
            (b"", 0, None),
        ] {
            assert_eq!(
                head_end(buf, from),
                end,
                "{:?} from {from}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    #[test]
    fn head_end_agrees_with_a_bytewise_search() {
        // The framer's first search, kept as the reference: the first offset
        // at which CRLFCRLF, LFLF or LFCRLF starts.
        fn reference(buf: &[u8], from: usize) -> Option<usize> {
            (from..buf.len()).find_map(|i| {
                [&b"\r\n\r\n"[..], b"\n\n", b"\n\r\n"]
                    .iter()
                    .find(|end| buf[i..].starts_with(end))
                    .map(|end| i + end.len())
            })
        }
        // Every string of up to 7 bytes over {x, CR, LF}, from every offset.
        let mut checked = 0;
        for len in 0..=7u32 {
            for mut n in 0..3usize.pow(len) {
                let buf: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = [b'x', b'\r', b'\n'][n % 3];
                        n /= 3;
                        b
                    })
                    .collect();
                for from in 0..=buf.len() {
                    assert_eq!(
                        head_end(&buf, from),
                        reference(&buf, from),
                        "{buf:?} {from}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 24_604);
    }

    #[test]
    fn a_whole_head_is_judged_in_place_a_split_one_reuses_held() {
        let mut framer = Framer::new(8190);
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (out, refusal) = run(&mut framer, &[head]);
        assert_eq!((out, refusal), (head.to_vec(), None));
        assert_eq!(framer.held.capacity(), 0, "a whole head is never copied");
        let (out, refusal) = run(&mut framer, &[&head[..10], &head[10..]]);
        assert_eq!((out, refusal), (head.to_vec(), None));
        assert!(framer.held.is_empty());
        let kept = framer.held.capacity();
        assert!(kept >= head.len(), "{kept}");
        let (out, _) = run(&mut framer, &[&head[..5], &head[5..]]);
        assert_eq!(out, head.to_vec());
        assert_eq!(framer.held.capacity(), kept, "the allocation is reused");
        // A large head's allocation is not kept.
        let big = [
            &b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "[..],
            &[b'v'; 8000],
            b"\r\n\r\n",
        ]
        .concat();
        let chunks: Vec<&[u8]> = big.chunks(4000).collect();
        let (out, refusal) = run(&mut framer, &chunks);
        assert_eq!((out.len(), refusal), (big.len(), None));
        let (out, refusal) = run(&mut framer, &[&[b'x'; 20000][..]]);
        assert_eq!((out.len(), refusal), (0, None));
        assert!(framer.held.capacity() >= 20000);
        let (_, refusal) = run(&mut framer, &[b"\r\n\r\n"]);
        assert_eq!(refusal, None, "garbage passes through for hyper");
        assert_eq!(framer.held.capacity(), 0);
    }

    #[test]
    fn framing_fields_are_read_without_case_or_padding() {
        for (raw, state) in [
            (
                &b"POST / HTTP/1.1\r\nContent-Length:  7 \r\n\r\n"[..],
                State::Body(7),
            ),
            (b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n", State::Head),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 7x\r\n\r\n",
                State::PassThrough,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: +7\r\n\r\n",
                State::Body(7),
            ),
            // U+00A0 is no padding: hyper refuses the value, so nothing is followed.
            (
                b"POST / HTTP/1.1\r\nContent-Length: 7\xc2\xa0\r\n\r\n",
                State::PassThrough,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked \r\n\r\n",
                State::ChunkLine,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                State::PassThrough,
            ),
            (
                b"GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
                State::PassThrough,
            ),
            (b"GET / HTTP/1.1\r\nConnection: closed\r\n\r\n", State::Head),
            // A byte outside ASCII: no token for hyper, so the connection
            // goes on.
            (
                b"GET / HTTP/1.1\r\nConnection: close, \xe9\r\n\r\n",
                State::Head,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive \r\n\r\n",
                State::Head,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n",
                State::PassThrough,
            ),
            // Every `Connection` field counts, as in hyper: a later field
            // without the token undoes nothing, and `close` wins.
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: foo\r\n\r\n",
                State::Head,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: foo\r\nConnection: Keep-Alive\r\n\r\n",
                State::Head,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                State::PassThrough,
            ),
            (
                b"GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
                State::PassThrough,
            ),
            (
                b"GET / HTTP/1.1\r\nConnection: close\r\nConnection: foo\r\n\r\n",
                State::PassThrough,
            ),
            (
                b"GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
                State::PassThrough,
            ),
            (
                b"GET / HTTP/1.1\r\nConnection: foo\r\nConnection: bar\r\n\r\n",
                State::Head,
            ),
        ] {
            let framer = Framer::new(8190);
            assert_eq!(
                framer.judge(raw),
                Ok(state),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn persistence_is_decided_by_every_connection_field() {
        // (fields, HTTP/1.0 persists, HTTP/1.1 persists): hyper's
        // `Server::parse` (proto/h1/role.rs) decides the same.
        for (fields, http10, http11) in [
            (&[][..], false, true),
            (&[&b"keep-alive"[..]], true, true),
            (&[&b"close"[..]], false, false),
            (&[&b"keep-alive"[..], b"foo"], true, true),
            (&[&b"foo"[..], b"keep-alive"], true, true),
            (&[&b"keep-alive"[..], b"close"], false, false),
            (&[&b"close"[..], b"keep-alive"], false, false),
            (&[&b"close"[..], b"foo"], false, false),
            (&[&b"foo, Keep-Alive"[..]], true, true),
            (&[&b"keep-alive, close"[..]], false, false),
            // A byte outside visible ASCII: the value names no token.
            (&[&b"keep-alive, \xe9"[..]], false, true),
            (&[&b"close, \xe9"[..]], false, true),
        ] {
            let mut persistence = Persistence::default();
            for value in fields {
                persistence.read(value);
            }
            let said = (persistence.persists(true), persistence.persists(false));
            assert_eq!(said, (http10, http11), "{fields:?}");
        }
    }

    #[test]
    fn the_first_oversized_field_line_is_named() {
        let raw = [
            &b"GET / HTTP/1.1\r\nHost: x\r\nX-A: "[..],
            &[b'a'; 60],
            b"\r\nX-B: ",
            &[b'b'; 90],
            b"\r\n\r\n",
        ]
        .concat();
        let refusal = Framer::new(64).judge(&raw).unwrap_err();
        assert_eq!(refusal.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(
            refusal.reason,
            "a field line of 67 bytes is over --limit-request-field-size 64"
        );
        assert_eq!(
            Framer::new(67)
                .judge(&raw)
                .unwrap_err()
                .reason
                .split(' ')
                .nth(4),
            Some("97")
        );
        assert_eq!(Framer::new(0).judge(&raw), Ok(State::Head));
    }

    #[test]
    fn heads_hyper_refuses_pass_through_for_hyper() {
        let raw = b"GARBAGE\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(whole(raw), (raw.to_vec(), None));
    }
}
