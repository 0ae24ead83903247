"""The environ is the same whether ferrule's exchange or hyper parsed the request.

ferrule serves a *plain* request (HTTP/1.1 or 1.0, no Transfer-Encoding, no Expect,
at most one small Content-Length, at most 64 fields, ...) with its own exchange
(``src/http/h1.rs``) and hands any other to hyper; the two keep a head in different
shapes (the bytes as sent, or hyper's lower-cased ``HeaderMap``) and the environ is
built from either. Each case of the corpus below is sent twice, each time on a fresh
connection: once plain, once forced onto hyper's path by its framing alone.

- HTTP/1.1: the ``Content-Length`` line (if any) becomes ``Transfer-Encoding:
  chunked`` (appended when there is none) and the same body goes chunked. The two
  environs may differ in ``HTTP_TRANSFER_ENCODING`` and ``CONTENT_LENGTH`` only.
- HTTP/1.0 (hyper refuses Transfer-Encoding there): an ``Expect: 100-continue`` line
  is appended, which hyper ignores in HTTP/1.0. The environs may differ in
  ``HTTP_EXPECT`` only.

Everything else — every key, its value and the dict's order — must be equal, and so
must the body the application read, the status (a refused head is refused both ways)
and the access log line. ``REMOTE_PORT`` is each connection's own: it is checked
against the client's port, then compared as ``<client port>``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from apps.wire import Wire, chunked
from conftest import RunningServer, start_ferrule

TIMEOUT = 30.0
ROOT_PATH = "/app"
ACCESS_FORMAT = "ACCESS %({X-A}i)s|%({user-agent}i)s|%(f)s|%(a)s|%({cookie}i)s|%(h)s|%(r)s|%(s)s"
SEED = 20240917
# The most fields a head the exchange serves may have (h1.rs MAX_FIELDS).
EXCHANGE_MAX_FIELDS = 64
# The largest Content-Length body the exchange reads (dispatch.rs INLINE_BODY_MAX).
EXCHANGE_MAX_BODY = 64 * 1024

Field = tuple[bytes, bytes]


@dataclass(frozen=True)
class Case:
    """One request: its fields in the order sent, names and values as raw bytes."""

    name: str
    fields: tuple[Field, ...]
    method: str = "GET"
    target: str = "/"
    version: str = "HTTP/1.1"
    body: bytes = b""
    status: int = 200

    def head(self, fields: list[Field]) -> bytes:
        line = f"{self.method} {self.target} {self.version}\r\n".encode("latin-1")
        return line + b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n"

    def plain(self) -> bytes:
        return self.head(list(self.fields)) + self.body

    def forced(self) -> bytes:
        """The same request, framed so that hyper parses it (module docs)."""
        fields = list(self.fields)
        if self.version == "HTTP/1.0":
            return self.head([*fields, (b"Expect", b"100-continue")]) + self.body
        te = (b"Transfer-Encoding", b"chunked")
        at = next((i for i, (n, _) in enumerate(fields) if is_length(n)), None)
        if at is None:
            fields.append(te)
        else:
            fields[at] = te
        return self.head(fields) + chunked(self.body, size=7)

    def content_length(self) -> str | None:
        values = [v for n, v in self.fields if is_length(n)]
        return values[0].decode("latin-1") if values else None


def is_length(name: bytes) -> bool:
    return name.lower() == b"content-length"


def assert_plain(case: Case) -> None:
    """The plain copy is one the exchange serves (h1.rs, module docs point 2)."""
    names = [n.lower() for n, _ in case.fields]
    assert case.version in ("HTTP/1.1", "HTTP/1.0") and case.method != "CONNECT"
    assert b"transfer-encoding" not in names and b"expect" not in names
    assert names.count(b"content-length") <= 1
    assert len(case.fields) <= EXCHANGE_MAX_FIELDS
    assert len(case.body) <= EXCHANGE_MAX_BODY
    assert int(case.content_length() or 0) == len(case.body)


def host(value: bytes = b"example.test") -> Field:
    return (b"Host", value)


def length(body: bytes, name: bytes = b"Content-Length") -> Field:
    return (name, str(len(body)).encode())


# --------------------------------------------------------------------------- corpus


def fixed_cases() -> list[Case]:
    form = b"a=1&b=caf\xe9"
    many = tuple(
        (f"X-Field-{i:02d}".encode() if i % 3 else f"x-FIELD-{i:02d}".encode(), b"v%d" % i)
        for i in range(61)
    )
    return [
        Case("bare-get", (host(),)),
        Case("mixed-case-names", (host(), (b"X-Request-ID", b"r1"), (b"uSeR-aGeNt", b"ua/1"))),
        Case("upper-case-names", (host(), (b"ACCEPT", b"*/*"), (b"X-TENANT-ID", b"t1"))),
        Case("lower-case-names", ((b"host", b"example.test"), (b"accept-language", b"en"))),
        Case(
            "repeats-different-case",
            (host(), (b"X-A", b"1"), (b"x-a", b"2"), (b"X-B", b"b"), (b"X-A", b"3")),
        ),
        Case(
            "repeated-cookie",
            (host(), (b"Cookie", b"a=1"), (b"X-A", b"x"), (b"cookie", b"b=2"), (b"COOKIE", b"c")),
        ),
        Case("repeated-host", (host(), (b"X-A", b"1"), (b"host", b"other.test")), status=400),
        Case("no-host-http11", ((b"X-A", b"1"),), status=400),
        Case(
            "two-content-types",
            (host(), (b"Content-Type", b"a/b"), (b"content-type", b"c/d")),
            status=400,
        ),
        Case(
            "sec-fetch-dest-mode-site",
            (
                host(),
                (b"Sec-Fetch-Dest", b"document"),
                (b"Sec-Fetch-Mode", b"navigate"),
                (b"sec-fetch-site", b"none"),
                (b"SEC-FETCH-DEST", b"iframe"),
                (b"Sec-Fetch-User", b"?1"),
            ),
        ),
        Case(
            "same-sketch-names",
            (host(), (b"X-Aa-Dz", b"1"), (b"x-ba-dZ", b"2"), (b"X-AA-DZ", b"3")),
        ),
        Case(
            "underscore-names-dropped",
            (host(), (b"X_Under", b"1"), (b"X-Under", b"2"), (b"x_under", b"3"), (b"A_B", b"")),
        ),
        Case(
            "underscore-content-names",
            (host(), (b"Content_Type", b"x/y"), (b"CONTENT_LENGTH", b"9")),
        ),
        Case(
            "latin1-values",
            (
                host(),
                (b"X-Name", b"caf\xe9"),
                (b"X-Raw", b"\x80\xff\xfe end"),
                (b"x-name", b"\xe9"),
            ),
        ),
        Case("empty-values", (host(), (b"X-Empty", b""), (b"x-empty", b""), (b"Accept", b""))),
        Case(
            "empty-then-value",
            (host(), (b"X-A", b""), (b"x-a", b"1"), (b"Cookie", b""), (b"cookie", b"b=2")),
        ),
        Case(
            "inner-and-trailing-whitespace",
            (
                host(),
                (b"X-Ws", b"a \t b"),
                (b"X-Trail", b"v \t "),
                (b"X-Lead", b" \t v"),
                (b"x-ws", b"\tq"),
            ),
        ),
        Case(
            "odd-case-content-fields",
            (
                host(),
                (b"cOnTeNt-TyPe", b"text/plain; charset=latin-1"),
                length(form, b"CONTENT-length"),
            ),
            method="POST",
            body=form,
        ),
        Case(
            "content-length-zero",
            (host(), (b"Content-Length", b"0"), (b"Content-Type", b"")),
            method="POST",
        ),
        Case(
            "body-with-crlf",
            (host(), length(b"x\r\n\r\nGET / HTTP/1.1\r\n\r\n")),
            method="PUT",
            target="/app/put",
            body=b"x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ),
        Case("percent-path", (host(),), target="/caf%C3%A9/a%2Fb%20c/%7e"),
        Case("percent-malformed", (host(),), target="/a%zz/%4/%"),
        Case("latin1-escape", (host(),), target="/%E9t%E9?q=%E9"),
        Case("query-strings", (host(),), target="/q?a=1&b=%20&c&&d=%2F#"),
        Case("empty-query", (host(),), target="/q?"),
        Case("root-path-stripped", (host(),), target="/app/x/y?z=1"),
        Case("root-path-exact", (host(),), target="/app"),
        Case("root-path-trailing", (host(),), target="/app/"),
        Case("root-path-lookalike", (host(),), target="/apple/x"),
        Case("root-path-encoded", (host(),), target="/ap%70/x"),
        Case("absolute-form", (host(b"h"),), target="http://h/p?q"),
        Case("absolute-form-root", (host(b"h:8080"),), target="http://h:8080/app/x?y=1"),
        Case("absolute-form-other-host", (host(b"h"),), target="https://other.test/p"),
        Case("asterisk-options", (host(),), method="OPTIONS", target="*"),
        Case("asterisk-get", (host(),), target="*", status=400),
        Case("lower-case-method", (host(),), method="get", target="/m"),
        Case("extension-method", (host(),), method="PURGE", target="/m"),
        Case(
            "forwarded-for",
            (host(), (b"X-Forwarded-For", b"203.0.113.9")),
        ),
        Case(
            "forwarded-several-lines",
            (
                host(),
                (b"x-forwarded-for", b"198.51.100.1"),
                (b"X-Forwarded-Proto", b"http"),
                (b"X-FORWARDED-FOR", b"198.51.100.2, 198.51.100.3"),
                (b"x-forwarded-proto", b"HTTPS"),
            ),
        ),
        Case(
            "forwarded-proto-list",
            (host(), (b"X-Forwarded-Proto", b"http, https"), (b"X-Forwarded-For", b"bogus")),
        ),
        Case(
            "forwarded-underscore",
            (host(), (b"X_Forwarded_For", b"192.0.2.1"), (b"X_Forwarded_Proto", b"https")),
        ),
        Case("forwarded-ipv6", (host(), (b"X-Forwarded-For", b"2001:db8::7"))),
        Case("sixty-one-fields", (host(), *many)),
        Case(
            "access-log-atoms",
            (
                host(),
                (b"Referer", b"http://r/\xe9"),
                (b"X-A", b"one"),
                (b"x-a", b"two"),
                (b"User-Agent", b"UA \xff"),
                (b"user-agent", b"second"),
            ),
        ),
        Case("http10-no-host", ((b"X-A", b"1"), (b"x-a", b"2")), version="HTTP/1.0"),
        Case(
            "http10-post",
            ((b"content-type", b"text/plain"), length(form, b"content-LENGTH"), (b"Cookie", b"a")),
            method="POST",
            version="HTTP/1.0",
            body=form,
        ),
        Case(
            "http10-keep-alive",
            (host(), (b"Connection", b"keep-alive"), (b"x-forwarded-for", b"192.0.2.7")),
            version="HTTP/1.0",
            target="/app/ten?x",
        ),
        Case("http10-absolute", (host(b"h"),), version="HTTP/1.0", target="http://h/app"),
        # Heads both parsers refuse (httparse): the status is compared.
        Case("obs-fold", (host(), (b"X-A", b"a\r\n folded")), status=400),
        Case("space-before-colon", (host(), (b"X-A ", b"1")), status=400),
        Case("name-not-a-token", (host(), (b"X(A)", b"1")), status=400),
        Case("connection-fields", (host(), (b"Connection", b"keep-alive, X-A"), (b"X-A", b"1"))),
        Case("upgrade-field", (host(), (b"Connection", b"upgrade"), (b"Upgrade", b"websocket"))),
    ]


# Names the generator draws from: sketch look-alikes, common names, underscores.
NAMES = [
    b"X-A",
    b"X-Multi",
    b"Accept",
    b"Accept-Encoding",
    b"Cookie",
    b"Sec-Fetch-Dest",
    b"Sec-Fetch-Mode",
    b"Sec-Fetch-Site",
    b"X-Aa-Dz",
    b"X-Ba-Dz",
    b"X_Under",
    b"Referer",
    b"User-Agent",
    b"X-Forwarded-For",
    b"X-Forwarded-Proto",
    b"Traceparent",
    b"If-None-Match",
    b"X-A-Rather-Long-Custom-Field-Name",
    b"DNT",
    b"Content-Type",
]
VALUES = [
    b"",
    b"1",
    b"a b\tc",
    b"caf\xe9",
    b"\xff\xfe\x80",
    b"x=1; y=2",
    b"text/html, */*;q=0.8",
    b"v \t",
    b"https",
    b"HTTP",
    b"192.0.2.33, 10.0.0.1",
    b'W/"etag"',
]
TARGETS = ["/", "/r/%41%2f?x=1", "/app/r?y", "/app", "/caf%C3%A9", "http://example.test/app/z?q"]


def random_case(rng: random.Random, i: int) -> Case:
    def spelled(name: bytes) -> bytes:
        how = rng.randrange(4)
        if how == 0:
            return name.lower()
        if how == 1:
            return name.upper()
        if how == 2:
            return bytes(c ^ 0x20 if chr(c).isalpha() and rng.random() < 0.5 else c for c in name)
        return name

    fields = [
        (spelled(rng.choice(NAMES)), rng.choice(VALUES)) for _ in range(rng.randrange(3, 25))
    ]
    version = "HTTP/1.0" if rng.random() < 0.25 else "HTTP/1.1"
    if version == "HTTP/1.1" or rng.random() < 0.5:
        fields.insert(rng.randrange(len(fields) + 1), (spelled(b"Host"), b"example.test"))
    method, body = "GET", b""
    if rng.random() < 0.5:
        method = rng.choice(["POST", "PUT", "PATCH"])
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        if body:
            cl = (spelled(b"Content-Length"), str(len(body)).encode())
            fields.insert(rng.randrange(len(fields) + 1), cl)
    content_types = sum(n.lower() == b"content-type" for n, _ in fields)
    return Case(
        f"random-{i}",
        tuple(fields),
        method=method,
        target=rng.choice(TARGETS),
        version=version,
        body=body,
        status=400 if content_types > 1 else 200,
    )


def corpus() -> list[Case]:
    rng = random.Random(SEED)
    return fixed_cases() + [random_case(rng, i) for i in range(12)]


CASES = corpus()


# --------------------------------------------------------------------------- server


class Server:
    """One ferrule with --root-path, --forwarded-allow-ips and an access log file."""

    def __init__(self, running: RunningServer, access: Path) -> None:
        self.running = running
        self.access = access
        self.seen = 0

    def next_access_line(self) -> str:
        """The access log line after the last one taken (waits for it)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            lines = [
                line
                for line in self.access.read_text(encoding="latin-1").splitlines()
                if line.startswith("ACCESS ")
            ]
            if len(lines) > self.seen:
                self.seen += 1
                return lines[self.seen - 1]
            time.sleep(0.02)
        raise AssertionError(f"no access log line {self.seen + 1}:\n{self.running.log()}")


def serve(directory: Path, *args: str) -> Server:
    access = directory / "access.log"
    access.touch()
    running = start_ferrule(
        "apps.environ_dump:app",
        "--root-path",
        ROOT_PATH,
        "--forwarded-allow-ips",
        "127.0.0.1",
        "--access-logfile",
        str(access),
        "--access-logformat",
        ACCESS_FORMAT,
        *args,
    )
    return Server(running, access)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    served = serve(tmp_path_factory.mktemp("envdiff"))
    yield served
    served.running.stop()
    served.running.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def unlimited(tmp_path_factory):
    """A server with no --limit-request-field-size: a plain head's names may be long."""
    served = serve(tmp_path_factory.mktemp("envdiff-unlimited"), "--limit-request-field-size", "0")
    yield served
    served.running.stop()
    served.running.log_path.unlink(missing_ok=True)


@dataclass
class Served:
    status: int
    environ: list[tuple[str, object]]
    body: str
    thread: str
    access: str | None


def send(server: Server, data: bytes) -> Served:
    """``data`` on a fresh connection; the dumped environ, ``REMOTE_PORT`` checked."""
    with Wire(server.running.port, timeout=TIMEOUT) as wire:
        wire.send(data)
        resp = wire.read_response()
        client_port = str(wire.local_port)
    if resp.status != 200:
        return Served(resp.status, [], "", "", None)
    dump = json.loads(resp.body)
    environ = []
    for key, value in dump["environ"]:
        if key == "REMOTE_PORT" and value == client_port:
            value = "<client port>"
        environ.append((key, value))
    return Served(200, environ, dump["body"], dump["thread"], server.next_access_line())


def without(environ: list[tuple[str, object]], keys: set[str]) -> list[tuple[str, object]]:
    return [(k, v) for k, v in environ if k not in keys]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_environ_is_the_same_on_both_paths(server, case):
    compare(server, case)


def big_fields(count: int) -> tuple[Field, ...]:
    return tuple((b"X-Big-%d" % i, b"v" * 50_000) for i in range(count))


# With no field-size limit a plain head may be large. The http crate's HeaderName
# holds at most 65,535 bytes (hyper answers a longer name with 431), and the framer
# in front of hyper refuses a head over 1 MiB (431).
LARGE_HEADS = [
    Case("name-of-65535-bytes", (host(), (b"X-" + b"n" * 65_533, b"v"))),
    Case("name-of-65536-bytes", (host(), (b"X-" + b"n" * 65_534, b"v")), status=431),
    Case("head-of-900-kb", (host(), *big_fields(18))),
    Case("head-of-1500-kb", (host(), *big_fields(30)), status=431),
]


@pytest.mark.parametrize("case", LARGE_HEADS, ids=[c.name for c in LARGE_HEADS])
def test_a_large_head_is_the_same_on_both_paths(unlimited, case):
    compare(unlimited, case)


def compare(server: Server, case: Case) -> None:
    assert_plain(case)
    plain = send(server, case.plain())
    forced = send(server, case.forced())
    assert (plain.status, forced.status) == (case.status, case.status)
    if case.status != 200:
        return
    p, f = dict(plain.environ), dict(forced.environ)
    if case.version == "HTTP/1.0":
        framing = {"HTTP_EXPECT"}
        assert "HTTP_EXPECT" not in p and f["HTTP_EXPECT"] == "100-continue"
    else:
        framing = {"HTTP_TRANSFER_ENCODING", "CONTENT_LENGTH"}
        assert "HTTP_TRANSFER_ENCODING" not in p and f["HTTP_TRANSFER_ENCODING"] == "chunked"
        assert p.get("CONTENT_LENGTH") == case.content_length()
        assert "CONTENT_LENGTH" not in f
    assert without(plain.environ, framing) == without(forced.environ, framing)
    # The forced copy's body streams from hyper, so it runs on a worker thread; the
    # plain copy's was read whole and runs inline on the event loop's thread.
    assert plain.thread != forced.thread
    assert plain.body == forced.body == case.body.decode("latin-1")
    assert plain.access == forced.access
