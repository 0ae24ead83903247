"""Issue 3: one named regression test per published advisory against gunicorn and waitress.

Each test replays the advisory's attack shape over a raw socket to 127.0.0.1 and checks
the behaviour RFC 9110/9112 requires, not ferrule's internals. For request smuggling the
attack is a second request hidden where a lenient parser would find it, always aimed at
a path unique to the test case (``/smuggled-<id>``): the application's call log
(``apps.hardening_apps``) must never show that path, the refused request gets its status
and the connection is closed with nothing more sent.

- gunicorn: CVE-2024-1135, CVE-2024-6827, CVE-2018-1000164
- waitress: CVE-2019-16785, CVE-2019-16786, CVE-2019-16789, CVE-2019-16792,
  CVE-2020-5236, CVE-2022-24761, CVE-2024-49768, CVE-2024-49769

The slowloris test is in ``test_slowloris.py``.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import struct
import time

import pytest
from apps.advisory_apps import cpu_seconds, fd_count, worker_pids
from apps.hardening_apps import calls
from apps.wire import Response, Wire, chunked
from conftest import RunningServer
from conftest import ServerPool as Servers

IO_TIMEOUT = 5.0
ECHO = "apps.hardening_apps:echo"
REDIRECT = "apps.advisory_apps:redirect"
_ids = itertools.count()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    s = Servers(tmp_path_factory.mktemp("advisories-state"), "--threads", "4")
    yield s
    s.stop()


# ------------------------------------------------------------------------ helpers


def smuggled_path() -> str:
    return f"/smuggled-{next(_ids)}-{time.monotonic_ns()}"


def get(path: str) -> bytes:
    """A complete, valid request for ``path``: the request an attacker hides."""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def paths_called(servers: Servers) -> list[str]:
    return [c["path"] for c in calls(servers.state)]


def assert_never_called(servers: Servers, path: str) -> None:
    """``path`` never reached the application (given a moment to arrive, if it was going to)."""
    time.sleep(0.1)
    assert path not in paths_called(servers), f"smuggled request {path} reached the application"


def assert_refused(
    servers: Servers,
    raw: bytes,
    status: int | set[int],
    smuggled: str | None = None,
    server: RunningServer | None = None,
) -> Response:
    """``raw`` gets ``status``, then a close with nothing more (bounded: a connection
    still open after IO_TIMEOUT fails); ``smuggled`` never reaches the application."""
    want = {status} if isinstance(status, int) else status
    server = server or servers.get(ECHO)
    with Wire(server.port, timeout=IO_TIMEOUT) as w:
        try:
            w.send(raw)
        except OSError:
            pass  # the server may answer and close before it has read everything
        resp = w.read_response()
        assert resp.status in want, f"{resp.status} {resp.body[:300]!r}"
        try:
            rest = w.read_to_eof(IO_TIMEOUT)
        except TimeoutError:
            pytest.fail(f"connection left open after {resp.status}")
    assert rest == b"", f"more after the {resp.status}: {rest[:200]!r}"
    if smuggled:
        assert_never_called(servers, smuggled)
    return resp


def echoed(resp: Response) -> dict:
    assert resp.status == 200, f"{resp.status} {resp.body[:300]!r}"
    return json.loads(resp.body)


def post(fields: list[tuple[str, str]], body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    lines = [f"POST /upload {version}", "Host: x", *(f"{k}: {v}" for k, v in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ===================================================================== gunicorn


CVE_2024_1135 = {
    # chunked, then gzip in a second field line: the combined list ends in gzip.
    "chunked-then-gzip": [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "gzip")],
    "chunked-then-identity": [
        ("Transfer-Encoding", "chunked"),
        ("Transfer-Encoding", "identity"),
    ],
    "chunked-twice-in-two-fields": [
        ("Transfer-Encoding", "chunked"),
        ("Transfer-Encoding", "chunked"),
    ],
    "gzip-then-chunked-with-content-length": [
        ("Content-Length", "5"),
        ("Transfer-Encoding", "gzip"),
        ("Transfer-Encoding", "chunked"),
    ],
}


@pytest.mark.parametrize("case", sorted(CVE_2024_1135))
def test_cve_2024_1135_conflicting_transfer_encoding_fields(servers, case):
    """gunicorn CVE-2024-1135 (fixed in 22.0.0): with several, conflicting
    Transfer-Encoding field lines gunicorn treated the request as chunked whatever the
    final coding was, so a front end that honoured the final coding and gunicorn disagreed
    on where the body ended and a hidden request reached restricted endpoints.

    RFC 9110 §5.3: field lines with the same name combine into one comma-separated list;
    RFC 9112 §6.3 (rule 4) and §6.1: if ``chunked`` is not the final coding of a request
    (or is applied twice), the length cannot be determined: 400 and close; Transfer-Encoding
    with Content-Length: 400 and close. Nothing after it is processed.
    """
    hidden = smuggled_path()
    body = b"0\r\n\r\n" + get(hidden)
    assert_refused(servers, post(CVE_2024_1135[case], body), 400, hidden)


CVE_2024_6827 = {
    "chunked,gzip": "chunked,gzip",
    "gzip": "gzip",
    "identity": "identity",
    "chunked, identity": "chunked, identity",
    "xchunked": "xchunked",
    "chunked-with-junk": "chunked x",
    "empty": "",
}


@pytest.mark.parametrize("with_cl", [True, False], ids=["with-content-length", "alone"])
@pytest.mark.parametrize("case", sorted(CVE_2024_6827))
def test_cve_2024_6827_invalid_transfer_encoding_never_falls_back(servers, case, with_cl):
    """gunicorn CVE-2024-6827 (21.2.0; fixed 22.0.0/23.0.0): a Transfer-Encoding value
    gunicorn did not recognise exactly as ``chunked`` was ignored and the body was framed
    by Content-Length instead (TE.CL request smuggling: the front end reads the chunked
    body, gunicorn reads 4 bytes of it and takes the rest for a new request).

    RFC 9112 §6.1: Transfer-Encoding overrides Content-Length, whose presence with it is an
    error (400 and close); §6.3 rule 4: a final coding other than chunked → 400 and close;
    an unknown coding → 501 (RFC 9112 §6.1). A server never falls back to Content-Length.
    """
    hidden = smuggled_path()
    smuggle = get(hidden)
    # The TE.CL shape: Content-Length covers the chunk-size line only.
    body = f"{len(smuggle):x}\r\n".encode() + smuggle + b"\r\n0\r\n\r\n"
    fields = [("Transfer-Encoding", CVE_2024_6827[case])]
    if with_cl:
        fields.insert(0, ("Content-Length", str(len(f"{len(smuggle):x}\r\n"))))
    want = {400} if with_cl else {400, 501}
    assert_refused(servers, post(fields, body), want, hidden)


@pytest.mark.parametrize(
    ("target", "injected"),
    [
        ("/%0d%0aSet-Cookie:%20evil=1", b"set-cookie"),
        ("/%0aSet-Cookie:%20evil=1", b"set-cookie"),
        ("/%0dSet-Cookie:%20evil=1", b"set-cookie"),
        ("/a%00b", b"\x00"),
        ("/%0d%0a%0d%0a%3Cscript%3Ex%3C/script%3E", b"<script>"),
    ],
    ids=["crlf", "lf", "cr", "nul", "response-splitting"],
)
def test_cve_2018_1000164_crlf_in_application_header_is_never_emitted(servers, target, injected):
    """gunicorn CVE-2018-1000164 (fixed in 19.5.0): ``process_headers`` passed header
    values from the application to the wire unchecked, so an application reflecting
    request data (a redirect to the decoded path) let a client inject headers or split the
    response (CWE-113).

    RFC 9110 §5.5: a field value never contains CR, LF or NUL; RFC 9112 §2.2/§4: the header
    section is CRLF-delimited, so one embedded CRLF ends a field line. PEP 3333 leaves the
    check to the server: ferrule answers 500 and never emits the value.
    """
    server = servers.get(REDIRECT)
    logged = re.compile(r"ERROR.*\bLocation\b", re.IGNORECASE)
    errors_before = len(logged.findall(server.log()))
    raw = f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with Wire(server.port, timeout=IO_TIMEOUT) as w:
        w.send(raw)
        resp = w.read_response()
        head_and_body = (
            "\r\n".join(f"{k}: {v}" for k, v in resp.headers).encode("latin-1") + resp.body
        )
    assert resp.status == 500, f"{resp.status} {resp.headers} for {raw!r}"
    assert resp.header("Location") is None, resp.headers
    assert injected not in head_and_body.lower(), head_and_body[:300]
    # ... and logged, naming the header.
    deadline = time.monotonic() + IO_TIMEOUT
    while len(logged.findall(server.log())) == errors_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(logged.findall(server.log())) > errors_before, (
        f"no error naming Location:\n{server.log()[-1500:]}"
    )
    # The server stays healthy: the next request to a harmless path is redirected.
    with Wire(server.port, timeout=IO_TIMEOUT) as w:
        w.send(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
        ok = w.read_response()
    assert (ok.status, ok.header("Location")) == (302, "http://example.invalid/fine/")


# ===================================================================== waitress

CVE_2019_16785 = {
    # The advisory's shape: LF-terminated field lines that hide a Content-Length.
    "lf-hides-content-length": b"GET /a HTTP/1.1\r\nHost: x\r\nX-Pad: y\nContent-Length: %d"
    b"\r\n\r\n%s",
    "lf-ends-request-line": b"GET /a HTTP/1.1\nHost: x\r\n\r\n%s",
    "lf-ends-field-line": b"GET /a HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n%s",
    "lf-ends-head": b"GET /a HTTP/1.1\r\nHost: x\r\n\n%s",
    "lf-only-head": b"GET /a HTTP/1.1\nHost: x\n\n%s",
    "cr-ends-field-line": b"GET /a HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n%s",
}


@pytest.mark.parametrize("case", sorted(CVE_2019_16785))
def test_cve_2019_16785_bare_lf_is_not_a_line_terminator(servers, case):
    """waitress CVE-2019-16785 (fixed in 1.4.0): waitress took a bare LF as a line
    terminator (the "MAY" of RFC 7230 §3.5), while a front end did not, so the two split
    the same bytes into different field lines and requests.

    RFC 9112 §2.2: the line terminator is CRLF; accepting a bare LF is only a MAY and is
    exactly the disagreement smuggling needs, and a bare CR MUST be rejected or replaced
    by SP. ferrule refuses both: 400, close, the application never called.
    """
    hidden = smuggled_path()
    smuggle = get(hidden)
    template = CVE_2019_16785[case]
    raw = template % ((len(smuggle), smuggle) if template.count(b"%") == 2 else (smuggle,))
    mark = len(calls(servers.state))
    assert_refused(servers, raw, 400, hidden)
    assert "/a" not in [c["path"] for c in calls(servers.state)[mark:]]


CVE_2019_16786_REFUSED = {
    "identity": ("identity", {400, 501}),
    "chunked-identity": ("chunked, identity", {400}),
    "gzip-only": ("gzip", {400}),
    "unknown-before-chunked": ("x-custom, chunked", {501}),
    "chunked-gzip-chunked": ("chunked, gzip, chunked", {400}),
}


@pytest.mark.parametrize("case", sorted(CVE_2019_16786_REFUSED))
def test_cve_2019_16786_unsupported_transfer_encoding_is_refused(servers, case):
    """waitress CVE-2019-16786 (fixed in 1.4.0): waitress only compared Transfer-Encoding
    with the single value ``chunked``; any other value made it fall through to
    Content-Length (or no body), so a chunked body became the next request.

    RFC 9112 §6.1 and §6.3 rule 4: a request whose final transfer coding is not chunked
    (or that applies chunked more than once) is 400 and close; a coding the server does not
    implement is 501 (RFC 9112 §6.1). Nothing behind it is processed.
    """
    hidden = smuggled_path()
    te, want = CVE_2019_16786_REFUSED[case]
    body = chunked(get(hidden)) + get(hidden)
    assert_refused(servers, post([("Transfer-Encoding", te)], body), want, hidden)


@pytest.mark.parametrize("te", ["gzip, chunked", "Chunked", "deflate,chunked", "chunked"])
def test_cve_2019_16786_chunked_framing_follows_the_final_coding(servers, te):
    """The accepted side of CVE-2019-16786: whenever the final coding is ``chunked``
    (names are case-insensitive, RFC 9112 §7), the body is framed by its chunks, whatever
    it contains, and the pipelined request after it is a request of its own."""
    server = servers.get(ECHO)
    payload = get("/inside-the-body")  # must stay body bytes
    raw = post([("Transfer-Encoding", te)], chunked(payload, 7)) + get("/after")
    with Wire(server.port, timeout=IO_TIMEOUT) as w:
        w.send(raw)
        first = echoed(w.read_response())
        second = echoed(w.read_response())
    assert first["body"].encode("latin-1") == payload
    assert second["environ"]["PATH_INFO"] == "/after"
    assert "/inside-the-body" not in paths_called(servers)


CVE_2019_16789 = {
    f"{name}-{where}": (prefix + "chunked" if where == "before" else "chunked" + prefix)
    for name, prefix in [
        ("vt", "\x0b"),
        ("ff", "\x0c"),
        ("fs", "\x1c"),
        ("nel", "\x85"),
        ("nbsp", "\xa0"),
    ]
    for where in ("before", "after")
}


@pytest.mark.parametrize("with_cl", [True, False], ids=["with-content-length", "alone"])
@pytest.mark.parametrize("case", sorted(CVE_2019_16789))
def test_cve_2019_16789_only_sp_and_htab_are_whitespace(servers, case, with_cl):
    """waitress CVE-2019-16789 (fixed in 1.4.1, follow-up 1.4.2): waitress stripped
    characters such as VT (``Transfer-Encoding: \\x0bchunked``) as if they were whitespace
    and saw a chunked request, while a front end saw an invalid Transfer-Encoding and used
    Content-Length.

    RFC 9110 §5.5 and §5.6.3: the only optional whitespace around a field value is SP and
    HTAB; VT, FF, FS are not field-value characters, and NEL/NBSP (obs-text) are part of
    the value, which then names no coding ferrule knows. So the request is never read as
    chunked: 400 with Content-Length (RFC 9112 §6.1), 400 or 501 alone; close either way.
    """
    hidden = smuggled_path()
    smuggle = get(hidden)
    body = b"0\r\n\r\n" + smuggle
    fields = [("Transfer-Encoding", CVE_2019_16789[case])]
    if with_cl:
        fields.insert(0, ("Content-Length", str(len(body))))
    want = {400} if with_cl else {400, 501}
    assert_refused(servers, post(fields, body), want, hidden)


def test_cve_2019_16789_sp_and_htab_around_a_value_are_ows(servers):
    """The accepted side: SP and HTAB around ``chunked`` are OWS (RFC 9110 §5.5), the
    request is chunked and its body is exactly the chunk data."""
    server = servers.get(ECHO)
    with Wire(server.port, timeout=IO_TIMEOUT) as w:
        w.send(post([("Transfer-Encoding", "\t chunked \t")], chunked(b"hello")))
        assert echoed(w.read_response())["body"] == "hello"


@pytest.mark.parametrize(
    ("values", "accepted"),
    [
        (["{n}", "{n}"], True),
        (["{n}, {n}"], True),
        (["{n}", "0"], False),
        (["0", "{n}"], False),
        (["{n}, 0"], False),
        (["{n}", "{m}"], False),
    ],
    ids=["same-twice", "same-list", "n-then-0", "0-then-n", "list-n-0", "n-then-m"],
)
def test_cve_2019_16792_content_length_sent_twice(servers, values, accepted):
    """waitress CVE-2019-16792 (fixed in 1.4.0): two Content-Length field lines were
    folded into ``"n, n"``, which waitress failed to parse and read as 0: the body became
    the next pipelined request.

    RFC 9110 §8.6 and RFC 9112 §6.3 rule 5: differing Content-Length values make the
    length invalid: 400 and close. Identical repeated values (as two lines or a list) MAY
    be taken as one value; either way the body is never taken for a request.
    """
    hidden = smuggled_path()
    body = get(hidden)
    n = len(body)
    fields = [("Content-Length", v.format(n=n, m=n + 7)) for v in values]
    raw = post(fields, body)
    if not accepted:
        assert_refused(servers, raw, 400, hidden)
        return
    server = servers.get(ECHO)
    resp, rest = _first_and_rest(server.port, raw)
    if resp.status == 200:
        assert json.loads(resp.body)["body"].encode("latin-1") == body
    else:
        assert resp.status == 400 and rest == b"", (resp.status, rest[:200])
    assert_never_called(servers, hidden)


def _first_and_rest(port: int, raw: bytes) -> tuple[Response, bytes]:
    """One response, then whatever else arrives within 0.5 s (keep-alive stays open)."""
    with Wire(port, timeout=IO_TIMEOUT) as w:
        w.send(raw)
        resp = w.read_response()
        w.sock.settimeout(0.5)
        try:
            while w._fill():
                pass
        except TimeoutError:
            pass
        return resp, w.buf


CVE_2020_5236_VALUES = {
    # waitress's proof of concept: a long run of field-vchars ending in a CTL.
    "x-run-then-ctl": ("x" * 102_400 + "\x10", 400),
    # Interleaved whitespace: the shape that makes an ambiguous OWS/obs-fold regex
    # backtrack over every split of the run.
    "ws-run-then-ctl": ("x" + " \t" * 51_200 + "\x10", 400),
    "ws-run-then-nul": ("x" + " x\t" * 34_134 + "\x00", 400),
    "x-run-valid": ("x" * 102_400, 200),
    "ws-run-valid": ("x" + " \t" * 51_200 + "y", 200),
    "obs-text-run-valid": ("x" + "\xa0 " * 51_200 + "y", 200),
}
UNLIMITED_FIELDS = ("--limit-request-field-size", "0")


@pytest.mark.parametrize("case", sorted(CVE_2020_5236_VALUES))
def test_cve_2020_5236_long_crafted_header_value_in_linear_time(servers, case):
    """waitress CVE-2020-5236 (1.4.2, fixed in 1.4.3): the regular expression that
    validated header values backtracked catastrophically on a value like
    ``xxxx…\\x10``; one request pinned a CPU and took the server offline.

    RFC 9110 §5.5: field-value = *field-content, field-vchar and SP/HTAB inside, no CTL.
    With the field-size limit lifted, a 100 KiB crafted value is judged (400 for a CTL,
    200 for a valid one, echoed intact) well within 2 s, a bound generous enough to check
    behaviour (linear work) rather than speed. The default limit answers 431 as promptly.
    """
    value, status = CVE_2020_5236_VALUES[case]
    assert len(value) >= 100 * 1024
    raw = b"GET /long HTTP/1.1\r\nHost: x\r\nX-Crafted: " + value.encode("latin-1") + b"\r\n\r\n"
    # Under the default limit an invalid value may be judged oversized or invalid first.
    for args, want in ((UNLIMITED_FIELDS, {status}), ((), {431} if status == 200 else {400, 431})):
        server = servers.get(ECHO, *args)
        start = time.monotonic()
        with Wire(server.port, timeout=IO_TIMEOUT) as w:
            try:
                w.send(raw)
            except OSError:
                pass
            resp = w.read_response()
        elapsed = time.monotonic() - start
        assert resp.status in want, (args, resp.status, resp.body[:200])
        assert elapsed < 2.0, f"{elapsed:.2f}s for a 100 KiB header value ({args})"
        if resp.status == 200:
            got = json.loads(resp.body)["environ"]["HTTP_X_CRAFTED"]
            assert got == value.strip(" \t")


# U+0665 ARABIC-INDIC DIGIT FIVE, which int() reads as 5, as the UTF-8 bytes on the wire.
ARABIC_5 = "\u0665".encode().decode("latin-1")
CVE_2022_24761_CONTENT_LENGTH = ["+5", "-5", "0x5", "5_0", "5.0", "\x0c5", ARABIC_5]
CVE_2022_24761_CHUNK_SIZE = ["+5", "-5", "0x5", "5_0", " 5", "-0", ARABIC_5]


@pytest.mark.parametrize("value", CVE_2022_24761_CONTENT_LENGTH)
def test_cve_2022_24761_content_length_is_only_digits(servers, value):
    """waitress CVE-2022-24761 (fixed in 2.1.1), part 1: Content-Length went through
    Python's ``int()``, which also takes ``+5``, ``5_0``, whitespace and non-ASCII digits,
    so waitress found a length where a front end saw none (or another).

    RFC 9110 §8.6: Content-Length = 1*DIGIT; anything else is invalid: 400 and close
    (RFC 9112 §6.3 rule 5), and the bytes after the head are never a request.
    """
    hidden = smuggled_path()
    raw = post([("Content-Length", value)], b"hello" + get(hidden))
    assert_refused(servers, raw, 400, hidden)


@pytest.mark.parametrize("size", CVE_2022_24761_CHUNK_SIZE)
def test_cve_2022_24761_chunk_size_is_only_hexdig(servers, size):
    """waitress CVE-2022-24761, part 2: chunk sizes went through ``int(x, 16)``, which
    accepts ``0x5``, ``+5``, ``-0``, ``5_0`` and surrounding whitespace.

    RFC 9112 §7.1: chunk-size = 1*HEXDIG: anything else is 400 and close; the request
    never completes in the application and nothing after it is processed.
    """
    hidden = smuggled_path()
    raw = (
        post([("Transfer-Encoding", "chunked")])
        + size.encode("latin-1")
        + b"\r\nhello\r\n0\r\n\r\n"
    )
    assert_refused(servers, raw + get(hidden), 400, hidden)


CHUNK_EXT = {
    "nul-in-ext": b"5;a\x00b",
    "space-in-ext-name": b"5;a b",
    "ctl-in-ext-value": b"5;a=\x01",
    "unterminated-quote": b'5;a="b',
    "bare-equals": b"5;=b",
    "lf-in-ext": b"5;a\nb",
    "cr-in-ext": b"5;a\rb",
}


@pytest.mark.parametrize("case", sorted(CHUNK_EXT))
def test_cve_2022_24761_invalid_chunk_extension_is_refused(servers, case):
    """waitress CVE-2022-24761, part 3: waitress did not implement chunk extensions and
    discarded them without checking them, so invalid bytes in one were passed over where
    a front end stopped.

    RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
    with token names and token/quoted-string values: no CTL, no bare CR/LF, no space inside
    a name. An invalid extension is a malformed chunk: 400 and close (issue 3, item 2).
    """
    hidden = smuggled_path()
    raw = post([("Transfer-Encoding", "chunked")]) + CHUNK_EXT[case] + b"\r\nhello\r\n0\r\n\r\n"
    mark = len(calls(servers.state))
    assert_refused(servers, raw + get(hidden), 400, hidden)
    assert not [c for c in calls(servers.state)[mark:] if c["event"] == "done"]


def test_cve_2022_24761_valid_chunk_extensions_are_ignored(servers):
    """The accepted side: well-formed extensions (BWS, token and quoted-string values)
    are skipped and the body is the chunk data (RFC 9112 §7.1.1)."""
    server = servers.get(ECHO)
    body = b'5;a=b;c="d e"\r\nhello\r\n3 ; x = y\r\n, w\r\n0;last\r\n\r\n'
    with Wire(server.port, timeout=IO_TIMEOUT) as w:
        w.send(post([("Transfer-Encoding", "chunked")], body))
        assert echoed(w.read_response())["body"] == "hello, w"


def _exact_size_bad_request(size: int) -> bytes:
    """A request head of exactly ``size`` bytes whose last field line has an invalid
    name (a space before the colon): the head is whole, and invalid."""
    start = b"GET /first HTTP/1.1\r\nHost: x\r\nX-Pad: "
    end = b"\r\nBad Name: v\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


CVE_2024_49768_FIRST = {
    "space-before-colon": (b"GET /first HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", {400}),
    "te-and-cl": (
        b"POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "no-host": (b"GET /first HTTP/1.1\r\n\r\n", {400}),
    "bad-version": (b"GET /first HTTP/1.2x\r\nHost: x\r\n\r\n", {400, 505}),
    "field-too-large": (
        b"GET /first HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
        {431},
    ),
    "exactly-8192-bytes": (_exact_size_bad_request(8192), {400}),
    "exactly-16384-bytes": (_exact_size_bad_request(16384), {400, 431}),
    "bad-chunk-size": (
        b"POST /first HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        {400},
    ),
}


@pytest.mark.parametrize("split", [False, True], ids=["one-send", "two-sends"])
@pytest.mark.parametrize("case", sorted(CVE_2024_49768_FIRST))
def test_cve_2024_49768_nothing_processed_after_a_failing_first_request(servers, case, split):
    """waitress CVE-2024-49768 (3.0.0, fixed in 3.0.1): with request lookahead on, a
    request that failed to parse (the proof of concept: exactly recv_bytes = 8192 bytes)
    was answered with an error while the pipelined request behind it was still queued and
    served on a connection that should have been closed.

    RFC 9112 §9.6 and §9.3.2: a server that answers an invalid request with 4xx and closes
    must not process anything received after it; issue 3: after any 4xx the connection is
    closed and no further request on it reaches the application. Checked with the
    follower in the same segment and in a second send before the error is read.
    """
    hidden = smuggled_path()
    first, want = CVE_2024_49768_FIRST[case]
    if case.startswith("exactly-"):
        assert len(first) == int(case.split("-")[1])
    server = servers.get(ECHO)
    with Wire(server.port, timeout=IO_TIMEOUT) as w:
        follower = get(hidden) * 3
        try:
            if split:
                w.send(first)
                time.sleep(0.05)
                w.send(follower)
            else:
                w.send(first + follower)
        except OSError:
            pass
        resp = w.read_response()
        assert resp.status in want, f"{resp.status} {resp.body[:200]!r}"
        try:
            rest = w.read_to_eof(IO_TIMEOUT)
        except TimeoutError:
            pytest.fail("connection left open after the error")
    assert rest == b"", f"answered after the {resp.status}: {rest[:200]!r}"
    assert_never_called(servers, hidden)


def _rst_close(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


STORM = 1500
HELD = 200


def test_cve_2024_49769_connect_and_reset_storm_leaves_server_idle(ferrule_server, tmp_path):
    """waitress CVE-2024-49769 (fixed in 3.0.1): a client that closed the connection
    before waitress called ``getpeername()`` left a dead socket in the poll loop: a busy
    loop on writes and an fd never released, so a few resets ran the server out of sockets
    and CPU.

    RFC 9293 §3.10.7.3 (a reset aborts the connection): whatever the moment of the reset
    (before accept, before any byte, mid-head, with a request in flight) the server must
    release the connection. After 1,500 connect-and-reset clients (and 200 more reset
    while the server is reading their heads or bodies) the worker's open fd count
    returns to its baseline, master and worker use under 0.5 s of CPU in the next 5 s,
    and a normal request is still answered.
    """
    server = ferrule_server(ECHO, env={"FERRULE_TEST_STATE": str(tmp_path)})
    with Wire(server.port, timeout=IO_TIMEOUT) as w:  # warm up lazily opened fds
        w.send(get("/warm"))
        assert w.read_response().status == 200
    time.sleep(0.3)
    (worker,) = worker_pids(server.proc.pid)
    baseline = fd_count(worker)

    storm_start = time.monotonic()
    partial = b"GET /storm HTTP/1.1\r\nHost: x\r\nX-A: "
    for i in range(STORM):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(IO_TIMEOUT)
        sock.connect(("127.0.0.1", server.port))
        try:
            if i % 4 == 1:
                sock.send(partial)
            elif i % 4 == 2:
                sock.send(get(f"/storm/{i}"))
            elif i % 4 == 3:
                sock.send(post([("Content-Length", "1000")], b"partial body"))
        except OSError:
            pass
        _rst_close(sock)
    # Then connections the server has surely accepted and is reading from: held open
    # mid-head (and mid-body) for a moment, then all reset at once.
    held = []
    for i in range(HELD):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT)
        sock.sendall(partial if i % 2 else post([("Content-Length", "1000")], b"partial"))
        held.append(sock)
    time.sleep(0.3)
    peak = fd_count(worker)
    for sock in held:
        _rst_close(sock)
    storm_seconds = time.monotonic() - storm_start

    deadline = time.monotonic() + 10
    while fd_count(worker) > baseline and time.monotonic() < deadline:
        time.sleep(0.1)
    after = fd_count(worker)
    assert peak >= baseline + HELD * 0.9, f"the held connections never reached the worker ({peak})"
    assert after <= baseline, f"worker fds: baseline {baseline}, {after} after the storm"
    assert worker_pids(server.proc.pid) == [worker], "the worker was replaced"

    pids = [server.proc.pid, worker]
    cpu_before = sum(cpu_seconds(p) for p in pids)
    time.sleep(5)
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    assert cpu < 0.5, f"{cpu:.2f} s of CPU in the 5 s after the storm (busy loop)"

    with Wire(server.port, timeout=IO_TIMEOUT) as w:
        w.send(get("/after-storm"))
        assert echoed(w.read_response())["environ"]["PATH_INFO"] == "/after-storm"
    served = sum(c["event"] == "begin" and "/storm" in c["path"] for c in calls(tmp_path))
    print(
        f"\nstorm: {STORM}+{HELD} resets in {storm_seconds:.2f}s; "
        f"worker fds {baseline}, peak {peak}, after {after}; "
        f"{served} requests reached the app; "
        f"cpu over next 5 s {cpu:.3f}s"
    )
