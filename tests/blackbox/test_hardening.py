"""Issue 3, items 1, 2, 4 and 6, where gunicorn's corpus (test_gunicorn_corpus.py) does
not reach: request limits at their boundaries, 0 as unlimited, the body limit for
Content-Length and chunked bodies, framing rules the corpus has no case for, the Date
header, hop-by-hop response headers, and ``--forwarded-allow-ips``.

Limit boundaries follow gunicorn, whose option names and defaults ferrule adopts: the
request line is counted without its CRLF (``len(line) > limit`` fails), a field line *with*
its CRLF (gunicorn's ``len(line) + 2 > limit``), the field count as the number of field
lines. Every request goes over a raw socket to 127.0.0.1 (``apps.wire``) and is answered
by ``apps.hardening_apps``; its call log tells whether the application was reached.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from datetime import datetime, timezone

import pytest
from apps.hardening_apps import HOP_HEADERS, calls
from apps.wire import Response, Wire, chunked
from conftest import RunningServer
from conftest import ServerPool as Pool

IO_TIMEOUT = 5.0
ECHO, HOP = "apps.hardening_apps:echo", "apps.hardening_apps:hop"
SMALL = (
    "--limit-request-line", "64",
    "--limit-request-fields", "4",
    "--limit-request-field-size", "64",
    "--limit-request-body", "100",
)  # fmt: skip
ZERO = (
    "--limit-request-line", "0",
    "--limit-request-fields", "0",
    "--limit-request-field-size", "0",
    "--limit-request-body", "0",
)  # fmt: skip


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    p = Pool(tmp_path_factory.mktemp("hardening-state"), "--threads", "4")
    yield p
    p.stop()


class Conn(Wire):
    """A raw connection that can list the application calls it caused (by its port,
    from the moment it opened: ephemeral ports get reused)."""

    def __init__(self, pool: Pool, server: RunningServer) -> None:
        super().__init__(server.port, timeout=IO_TIMEOUT)
        self.state = pool.state
        self.mark = len(calls(self.state))
        self.port_str = str(self.local_port)

    def app_calls(self, event: str | None = None) -> list[dict]:
        port = self.port_str
        return [
            c
            for c in calls(self.state)[self.mark :]
            if c["port"] == port and event in (None, c["event"])
        ]


def head(
    target: str = "/",
    fields: list[tuple[str, str]] | None = None,
    method: str = "GET",
    version: str = "HTTP/1.1",
) -> bytes:
    lines = [f"{method} {target} {version}", *(f"{k}: {v}" for k, v in fields or [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def env_of(resp: Response) -> dict:
    assert resp.status == 200, f"{resp.status} {resp.body[:300]!r}"
    return json.loads(resp.body)


def served(pool: Pool, server: RunningServer, raw: bytes) -> dict:
    """Send ``raw`` and return the echoed ``{"environ": ..., "body": ...}``."""
    with Conn(pool, server) as w:
        w.send(raw)
        return env_of(w.read_response())


def refused(pool: Pool, server: RunningServer, raw: bytes, status: int | set[int]) -> Conn:
    """Send ``raw``: the answer is ``status``, then a close with nothing more. Returns the
    (closed) connection, whose ``app_calls()`` the caller checks."""
    want = {status} if isinstance(status, int) else status
    w = Conn(pool, server)
    try:
        try:
            w.send(raw)
        except OSError:
            pass  # the server may answer and close before it has read everything
        resp = w.read_response()
        assert resp.status in want, f"{resp.status} {resp.body[:300]!r}"
        assert w.read_to_eof(IO_TIMEOUT) == b"", "more after the error response"
    finally:
        w.close()
    return w


def line_of(length: int) -> str:
    """A request target making ``GET <target> HTTP/1.1`` exactly ``length`` bytes."""
    return "/" + "a" * (length - len("GET / HTTP/1.1"))


# =========================================================================== 1: limits


@pytest.mark.parametrize(("length", "status"), [(64, 200), (65, 414)], ids=["at", "over"])
def test_limit_request_line_boundary(pool, length, status):
    """--limit-request-line 64: a 64-byte request line (CRLF excluded) is served, 65 is 414."""
    server = pool.get(ECHO, *SMALL)
    raw = head(line_of(length), [("Host", "x")])
    assert len(raw.split(b"\r\n")[0]) == length
    if status == 200:
        assert served(pool, server, raw)["environ"]["PATH_INFO"] == line_of(length)
    else:
        assert refused(pool, server, raw, 414).app_calls() == []


def test_limit_request_line_counts_an_absolute_form_target_whole(pool):
    server = pool.get(ECHO, *SMALL)
    raw = head("http://" + "a" * 70 + ".example/", [("Host", "x")])
    assert len(raw.split(b"\r\n")[0]) > 64
    assert refused(pool, server, raw, 414).app_calls() == []


@pytest.mark.parametrize(("count", "status"), [(4, 200), (5, 431)], ids=["at", "over"])
def test_limit_request_fields_boundary(pool, count, status):
    """--limit-request-fields 4: four field lines (Host included) pass, five get 431."""
    server = pool.get(ECHO, *SMALL)
    fields = [("Host", "x")] + [(f"X-F{i}", "v") for i in range(count - 1)]
    raw = head("/f", fields)
    if status == 200:
        env = served(pool, server, raw)["environ"]
        assert sum(k.startswith("HTTP_") for k in env) == count
    else:
        assert refused(pool, server, raw, 431).app_calls() == []


def _field(total_with_crlf: int) -> tuple[str, str]:
    """A field whose line ``X-Long: vvv`` plus CRLF is ``total_with_crlf`` bytes."""
    return ("X-Long", "v" * (total_with_crlf - len("X-Long: ") - 2))


def test_limit_request_field_size_at_limit_passes(pool):
    """--limit-request-field-size 64: a field line of 64 bytes with its CRLF is served."""
    server = pool.get(ECHO, *SMALL)
    name, value = _field(64)
    env = served(pool, server, head("/s", [("Host", "x"), (name, value)]))["environ"]
    assert env["HTTP_X_LONG"] == value


def test_limit_request_field_size_one_over_is_431(pool):
    server = pool.get(ECHO, *SMALL)
    raw = head("/s", [("Host", "x"), _field(65)])
    assert refused(pool, server, raw, 431).app_calls() == []


def test_limit_request_field_size_well_over_is_431(pool):
    """A 70-byte field line is over the limit in any way of counting: 431, no app call."""
    server = pool.get(ECHO, *SMALL)
    raw = head("/s", [("Host", "x"), _field(72)])
    assert refused(pool, server, raw, 431).app_calls() == []


def test_limit_request_field_size_counts_whitespace_padding(pool):
    server = pool.get(ECHO, *SMALL)
    raw = b"GET /pad HTTP/1.1\r\nHost: x\r\nX:" + b" " * 100 + b"v\r\n\r\n"
    assert refused(pool, server, raw, 431).app_calls() == []


def test_limit_request_body_content_length_at_limit(pool):
    server = pool.get(ECHO, *SMALL)
    body = b"b" * 100
    got = served(pool, server, head("/b", [("Host", "x"), ("Content-Length", "100")]) + body)
    assert got["body"] == body.decode()


def test_limit_request_body_content_length_over_is_413_before_the_app(pool):
    """Content-Length 101 under a limit of 100: 413 and close without sending a single
    body byte, and the application records nothing (it was never called)."""
    server = pool.get(ECHO, *SMALL)
    w = refused(pool, server, head("/b", [("Host", "x"), ("Content-Length", "101")]), 413)
    assert w.app_calls() == []


def test_limit_request_body_chunked_at_limit(pool):
    server = pool.get(ECHO, *SMALL)
    body = b"c" * 100
    raw = head("/c", [("Host", "x"), ("Transfer-Encoding", "chunked")]) + chunked(body, 50)
    assert served(pool, server, raw)["body"] == body.decode()


def test_limit_request_body_chunked_over_is_413_while_reading(pool):
    """A chunked body of 50 + 51 bytes under a limit of 100: 413 and close; the
    application may have started, but its read never completes."""
    server = pool.get(ECHO, *SMALL)
    raw = head("/c", [("Host", "x"), ("Transfer-Encoding", "chunked")]) + chunked(b"c" * 101, 50)
    w = refused(pool, server, raw, 413)
    assert w.app_calls("done") == []


def test_default_limit_request_line_is_4094(pool):
    server = pool.get(ECHO)
    env = served(pool, server, head(line_of(4094), [("Host", "x")]))["environ"]
    assert env["PATH_INFO"] == line_of(4094)
    assert refused(pool, server, head(line_of(4095), [("Host", "x")]), 414).app_calls() == []


def test_default_limit_request_fields_is_100(pool):
    server = pool.get(ECHO)
    fields = [("Host", "x")] + [(f"X-F{i}", "v") for i in range(99)]
    env = served(pool, server, head("/", fields))["environ"]
    assert sum(k.startswith("HTTP_") for k in env) == 100
    fields.append(("X-Last", "v"))
    assert refused(pool, server, head("/", fields), 431).app_calls() == []


def _declared_body_reaches_app(pool: Pool, server: RunningServer, length: int) -> Conn:
    """Declare a ``length``-byte body, send 10 bytes of it, and return once the
    application has started reading (bounded); the caller's close ends the request."""
    w = Conn(pool, server)
    w.send(head("/big", [("Host", "x"), ("Content-Length", str(length))]) + b"0123456789")
    deadline = time.monotonic() + IO_TIMEOUT
    while not w.app_calls("begin") and time.monotonic() < deadline:
        time.sleep(0.02)
    return w


def test_default_limit_request_body_is_1_gib(pool):
    """A declared 1 GiB body reaches the application; 1 GiB + 1 is refused with 413."""
    server = pool.get(ECHO)
    with _declared_body_reaches_app(pool, server, 1 << 30) as w:
        assert w.app_calls("begin"), "a 1 GiB Content-Length did not reach the application"
    too_big = head("/big", [("Host", "x"), ("Content-Length", str((1 << 30) + 1))])
    assert refused(pool, server, too_big, 413).app_calls() == []


# ------------------------------------------------------------------ 0 means unlimited


def test_zero_limit_request_line_is_unlimited(pool):
    server = pool.get(ECHO, *ZERO)
    target = line_of(8000)
    assert served(pool, server, head(target, [("Host", "x")]))["environ"]["PATH_INFO"] == target


def test_zero_limit_request_fields_is_unlimited(pool):
    server = pool.get(ECHO, *ZERO)
    fields = [("Host", "x")] + [(f"X-F{i}", "v") for i in range(300)]
    env = served(pool, server, head("/", fields))["environ"]
    assert sum(k.startswith("HTTP_") for k in env) == 301


def test_zero_limit_request_field_size_is_unlimited(pool):
    server = pool.get(ECHO, *ZERO)
    env = served(pool, server, head("/", [("Host", "x"), _field(20000)]))["environ"]
    assert len(env["HTTP_X_LONG"]) == 20000 - len("X-Long: ") - 2


def test_zero_limit_request_body_is_unlimited(pool):
    """With --limit-request-body 0, a declared 2 GiB body is not refused up front."""
    server = pool.get(ECHO, *ZERO)
    with _declared_body_reaches_app(pool, server, 2 << 30) as w:
        assert w.app_calls("begin"), "a 2 GiB Content-Length did not reach the application"


# =========================================================================== 2: framing


def _chunked_head(te: str, target: str = "/te") -> bytes:
    return head(target, [("Host", "x"), ("Transfer-Encoding", te)], method="POST")


FRAMING_400 = {
    "te-gzip-alone": _chunked_head("gzip") + b"hello",
    "te-chunked-chunked": _chunked_head("chunked, chunked") + chunked(b"hello"),
    "cl-hex": head("/cl", [("Host", "x"), ("Content-Length", "0x5")], "POST") + b"hello",
    "cl-overflow": head("/cl", [("Host", "x"), ("Content-Length", "1" + "0" * 25)], "POST"),
    "chunk-size-0x": _chunked_head("chunked") + b"0x5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": _chunked_head("chunked") + b"1" + b"0" * 20 + b"\r\nhello\r\n0\r\n\r\n",
    "chunk-data-without-crlf": _chunked_head("chunked") + b"5\r\nhelloXX0\r\n\r\n",
    "bare-cr-in-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
    "bare-cr-line-end": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rX-B: b\r\n\r\n",
    "bare-lf-line-end": b"GET / HTTP/1.1\r\nHost: x\nX-A: a\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "tab-before-colon": b"GET / HTTP/1.1\r\nHost: x\r\nX-A\t: a\r\n\r\n",
    "lowercase-version": b"GET / http/1.1\r\nHost: x\r\n\r\n",
}
# Overflowing numbers are also fairly answered as "too large".
FRAMING_STATUS = {"cl-overflow": {400, 413}, "chunk-size-overflow": {400, 413}}
BODY_LEVEL = {"chunk-size-0x", "chunk-size-overflow", "chunk-data-without-crlf"}


@pytest.mark.parametrize("case", sorted(FRAMING_400))
def test_framing_violation_is_400_and_close(pool, case):
    """RFC 9112 rules the corpus has no case for: 400 and close, and the application
    never completes (for head errors: never starts) a request."""
    server = pool.get(ECHO)
    w = refused(pool, server, FRAMING_400[case], FRAMING_STATUS.get(case, 400))
    assert w.app_calls("done") == []
    if case not in BODY_LEVEL:
        assert w.app_calls() == []


def test_unknown_transfer_coding_is_501_and_close(pool):
    server = pool.get(ECHO)
    w = refused(pool, server, _chunked_head("x-custom, chunked") + chunked(b"hello"), 501)
    assert w.app_calls() == []


@pytest.mark.parametrize("coding", ["gzip", "deflate", "compress"])
def test_registered_coding_before_chunked_passes_undecoded(pool, coding):
    """``<coding>, chunked``: the chunked framing is removed, the inner coding is not,
    and HTTP_TRANSFER_ENCODING tells the application about it (as gunicorn does)."""
    server = pool.get(ECHO)
    payload = b"\x1f\x8b not really " + coding.encode()
    got = served(pool, server, _chunked_head(f"{coding}, chunked") + chunked(payload, 7))
    assert got["body"] == payload.decode("latin-1")
    assert got["environ"]["HTTP_TRANSFER_ENCODING"] == f"{coding}, chunked"


# =========================================================================== 4: response


def _imf_date(value: str | None) -> datetime:
    assert value is not None, "no Date header"
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", value)
    return email.utils.parsedate_to_datetime(value)


def test_date_header_on_success_and_error(pool):
    """RFC 9110 §6.6.1: an IMF-fixdate Date on responses, errors included."""
    server = pool.get(HOP)
    with Wire(server.port, timeout=IO_TIMEOUT) as w:
        w.send(head("/plain", [("Host", "x")]))
        ok = w.read_response()
    with Wire(server.port, timeout=IO_TIMEOUT) as w:
        w.send(b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400
        bad = w.read_response()
    assert (ok.status, bad.status) == (200, 400)
    now = datetime.now(timezone.utc)
    for resp in (ok, bad):
        assert len(resp.header_all("Date")) == 1
        assert abs((_imf_date(resp.header("Date")) - now).total_seconds()) < 10


@pytest.mark.parametrize("path", [p for p in HOP_HEADERS if p not in ("/close", "/plain")])
def test_hop_by_hop_header_from_app_is_dropped_with_a_warning(pool, path):
    """PEP 3333: the application must not send hop-by-hop headers. ferrule drops them,
    logs a warning naming the header, keeps its own framing and the connection."""
    server = pool.get(HOP)
    name = HOP_HEADERS[path][0][0]
    with Wire(server.port, timeout=IO_TIMEOUT) as w:
        w.send(head(path, [("Host", "x")]) + head("/plain", [("Host", "x")]))
        resp = w.read_response()
        assert resp.status == 200
        assert resp.header_all(name) == [], f"{name} reached the client"
        assert (resp.body, resp.framing, resp.header("X-App")) == (b"ok", "length", "hop")
        assert w.read_response().body == b"ok", "the connection was not kept"
    pattern = re.compile(rf"WARNING.*(?<![\w-]){re.escape(name)}(?![\w-])", re.IGNORECASE)
    deadline = time.monotonic() + IO_TIMEOUT
    while not pattern.search(server.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pattern.search(server.log()), f"no warning naming {name}:\n{server.log()[-2000:]}"


def test_connection_close_from_app_is_honoured(pool):
    """``Connection: close`` from the application: sent, and the connection closes after
    the response; a pipelined second request is not answered."""
    server = pool.get(HOP)
    with Wire(server.port, timeout=IO_TIMEOUT) as w:
        w.send(head("/close", [("Host", "x")]) + head("/plain", [("Host", "x")]))
        resp = w.read_response()
        assert (resp.status, resp.body) == (200, b"ok")
        assert (resp.header("Connection") or "").lower() == "close"
        assert w.read_to_eof(IO_TIMEOUT) == b""


# =========================================================================== 6: proxies

XFF = [
    ("Host", "x"),
    ("X-Forwarded-For", "198.51.100.1, 203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
]


def test_forwarded_headers_ignored_by_default(pool):
    """Default --forwarded-allow-ips: nobody is trusted, not even loopback."""
    env = served(pool, pool.get(ECHO), head("/fw", XFF))["environ"]
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("127.0.0.1", "http")


@pytest.mark.parametrize("trusted", ["127.0.0.1", "127.0.0.0/8", "10.0.0.1,127.0.0.1", "*"])
def test_forwarded_headers_from_a_trusted_peer(pool, trusted):
    """From a trusted peer: REMOTE_ADDR is the rightmost X-Forwarded-For entry (the one
    the trusted proxy saw), wsgi.url_scheme comes from X-Forwarded-Proto."""
    env = served(pool, pool.get(ECHO, "--forwarded-allow-ips", trusted), head("/fw", XFF))
    assert (env["environ"]["REMOTE_ADDR"], env["environ"]["wsgi.url_scheme"]) == (
        "203.0.113.7",
        "https",
    )


def test_forwarded_for_repeated_fields_rightmost_wins(pool):
    """Two X-Forwarded-For lines: the last is the trusted proxy's (a client's own line
    comes first), so REMOTE_ADDR is its rightmost entry."""
    server = pool.get(ECHO, "--forwarded-allow-ips", "127.0.0.1")
    fields = [("Host", "x"), ("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "192.0.2.2")]
    env = served(pool, server, head("/fw", fields))["environ"]
    assert (env["REMOTE_ADDR"], env["wsgi.url_scheme"]) == ("192.0.2.2", "http")


def test_forwarded_headers_from_an_untrusted_peer(pool):
    env = served(pool, pool.get(ECHO, "--forwarded-allow-ips", "10.0.0.0/8"), head("/fw", XFF))
    assert (env["environ"]["REMOTE_ADDR"], env["environ"]["wsgi.url_scheme"]) == (
        "127.0.0.1",
        "http",
    )


PATH_HEADERS = [
    ("X-Script-Name", "/evil"),
    ("Script-Name", "/evil"),
    ("X-Forwarded-Prefix", "/evil"),
    ("X-Forwarded-Path", "/evil/path"),
    ("X-Original-URL", "/evil/path"),
    ("X-Rewrite-URL", "/evil/path"),
    ("X-Forwarded-Host", "evil.example"),
    ("Forwarded", 'for=192.0.2.9;proto=https;host=evil.example;path="/evil"'),
]


@pytest.mark.parametrize(
    ("args", "target", "script"),
    [
        ((), "/real/thing", ""),
        (("--forwarded-allow-ips", "*"), "/real/thing", ""),
        (("--forwarded-allow-ips", "*", "--root-path", "/app"), "/app/real/thing", "/app"),
    ],
    ids=["untrusted", "trusted", "trusted-root-path"],
)
def test_no_header_rewrites_script_name_or_path_info(pool, args, target, script):
    server = pool.get(ECHO, *args)
    env = served(pool, server, head(target, [("Host", "x"), *PATH_HEADERS]))["environ"]
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (script, "/real/thing")
