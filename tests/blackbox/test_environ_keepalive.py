"""A request's environ does not depend on the requests before it on its connection.

A connection's next request also reuses the last request's environ dict when the
application neither kept nor changed it, and puts back what the last request changed;
an environ the application kept stays as it was (the last tests).

A connection's first request leaves the fields a client repeats (``Host``,
``User-Agent``, ``Accept*``, ``Sec-Fetch-*``, ...) in the connection's copy of the
environ template, and a later request sets only those whose value differs and deletes
those it lacks (``src/py/environ.rs``). Each request of a sequence below is sent on one
keep-alive connection, then alone on a fresh connection: the two environs must be equal
as dicts (PEP 3333 says nothing of their order). ``REMOTE_PORT`` is each connection's
own: it is compared as ``<client port>`` (or as the ``0`` of a forwarded client).

A sequence runs on ferrule's exchange until a chunked request hands the connection to
hyper, which serves the rest of it; the environ is built the same way on either path.
"""

from __future__ import annotations

import json

import pytest
from apps.wire import Wire, chunked
from conftest import start_ferrule

TIMEOUT = 30.0

BROWSER = (
    (b"Host", b"example.test:8000"),
    (b"User-Agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    (b"Accept", b"text/html,application/xhtml+xml,*/*;q=0.8"),
    (b"Accept-Language", b"en-US,en;q=0.5"),
    (b"Accept-Encoding", b"gzip, deflate, br"),
    (b"Cookie", b"session=abc123"),
    (b"Upgrade-Insecure-Requests", b"1"),
    (b"Sec-Fetch-Dest", b"document"),
    (b"Sec-Fetch-Mode", b"navigate"),
    (b"Sec-Fetch-Site", b"none"),
    (b"X-Request-Id", b"7f3c9a"),
)


def get(*fields: tuple[bytes, bytes], version: bytes = b"HTTP/1.1", target: bytes = b"/") -> bytes:
    head = b"GET " + target + b" " + version + b"\r\n"
    return head + b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n"


def post_chunked(*fields: tuple[bytes, bytes], body: bytes = b"abc") -> bytes:
    """A request ferrule's exchange hands to hyper (its body is chunked)."""
    head = b"POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
    return head + b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n" + chunked(body)


HOST = (b"Host", b"example.test:8000")

# Each: the requests of one connection, in order.
SEQUENCES = {
    "browser": [
        get(*BROWSER),
        get(*BROWSER, target=b"/again?x=1"),
        # The same fields in another case and order, the cookie another.
        get(*reversed([(n.lower(), v) for n, v in BROWSER[:5]]), (b"Cookie", b"b=2")),
        get((b"Host", b"other.test"), *BROWSER[1:]),
        get(HOST),
        get(*BROWSER[:3], (b"Accept-Language", b"de"), *BROWSER[5:]),
        get(*BROWSER),
    ],
    "absent-then-other": [
        get(HOST, (b"Accept", b"*/*"), (b"DNT", b"1")),
        get(HOST),
        get(HOST, (b"DNT", b"0")),
        get(HOST, (b"Accept", b"*/*")),
        get(HOST, (b"Accept", b"text/plain"), (b"DNT", b"1")),
        get(HOST, (b"Accept", b"*/*"), (b"DNT", b"1")),
    ],
    "no-host": [
        get(HOST, (b"Connection", b"keep-alive"), (b"User-Agent", b"ua/1")),
        get((b"Connection", b"keep-alive"), version=b"HTTP/1.0"),
        get((b"User-Agent", b"ua/1"), (b"Connection", b"keep-alive"), version=b"HTTP/1.0"),
        get(HOST, (b"Connection", b"keep-alive"), (b"User-Agent", b"ua/1")),
        get(HOST),
    ],
    "joined-lines": [
        get(HOST, (b"Accept", b"text/html"), (b"Accept-Encoding", b"gzip, br")),
        # Two lines whose join is the kept value, then one that is not.
        get(
            HOST,
            (b"Accept", b"text/html"),
            (b"accept-encoding", b"gzip"),
            (b"ACCEPT-ENCODING", b" br"),
        ),
        get(
            HOST,
            (b"Accept-Encoding", b"gzip"),
            (b"accept-encoding", b"br"),
            (b"Accept", b"text/html"),
        ),
        get(HOST, (b"Accept", b"text/html"), (b"Accept", b"*/*")),
        get(HOST, (b"Accept", b"text/html"), (b"Accept-Encoding", b"gzip, br")),
        get(HOST, (b"Sec-Fetch-Site", b"none"), (b"Sec-Fetch-Site", b"same-origin")),
    ],
    "latin-1-and-empty": [
        get((b"Host", b"caf\xe9.test"), (b"User-Agent", b"\xff\xfe"), (b"Accept", b"")),
        get((b"Host", b"caf\xe9.test"), (b"User-Agent", b"\xff\xfe"), (b"Accept", b"")),
        get((b"Host", b"cafe.test"), (b"User-Agent", b"\xff"), (b"Accept", b" ")),
        get((b"Host", b"caf\xe9.test"), (b"Accept", b"")),
    ],
    "forwarded": [
        get(HOST, (b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-For", b"203.0.113.9")),
        get(HOST),
        get(HOST, (b"X-Forwarded-Proto", b"https")),
        get(HOST, (b"X-Forwarded-Proto", b"http"), (b"X-Forwarded-Host", b"a.test")),
        get(HOST, (b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-For", b"203.0.113.9")),
    ],
    "long-value": [
        get(HOST, (b"User-Agent", b"u" * 300)),
        get(HOST, (b"User-Agent", b"u" * 300)),
        get(HOST),
        get(HOST, (b"User-Agent", b"u" * 300)),
    ],
    "methods-and-bodies": [
        get(HOST, target=b"/a?x=1"),
        b"POST /form HTTP/1.1\r\nHost: example.test:8000\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=1",
        b"PUT /json?y=2 HTTP/1.1\r\nHost: example.test:8000\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        get(HOST, (b"X-Custom", b"1"), (b"X-Other", b"2")),
        b"DELETE /b HTTP/1.1\r\nHost: example.test:8000\r\nX-Custom: 3\r\n\r\n",
        get(HOST),
        get(HOST, (b"Connection", b"keep-alive"), version=b"HTTP/1.0", target=b"/c?z"),
        get((b"Connection", b"keep-alive"), version=b"HTTP/1.0", target=b"/d"),
        get(HOST),
    ],
    "onto-hyper": [
        get(*BROWSER),
        post_chunked(*BROWSER),
        get(*BROWSER),
        get(HOST, (b"Accept", b"*/*")),
        post_chunked((b"Host", b"other.test"), (b"Sec-Fetch-Mode", b"cors")),
        get(*BROWSER),
        get((b"Connection", b"keep-alive"), version=b"HTTP/1.0"),
        get(*BROWSER),
    ],
}


@pytest.fixture(scope="module")
def server():
    running = start_ferrule(
        "apps.environ_dump:app", "--root-path", "/app", "--forwarded-allow-ips", "127.0.0.1"
    )
    yield running
    running.stop()
    running.log_path.unlink(missing_ok=True)


def environ(wire: Wire) -> dict[str, object]:
    """The environ of the next response on ``wire``, ``REMOTE_PORT`` as the module says."""
    resp = wire.read_response()
    assert resp.status == 200, resp
    env = dict(json.loads(resp.body)["environ"])
    if env["REMOTE_PORT"] == str(wire.local_port):
        env["REMOTE_PORT"] = "<client port>"
    else:  # a trusted proxy's client: X-Forwarded-For
        assert env["REMOTE_PORT"] == "0"
    return env


def fresh(port: int, request: bytes) -> dict[str, object]:
    with Wire(port, timeout=TIMEOUT) as wire:
        wire.send(request)
        return environ(wire)


@pytest.mark.parametrize("name", SEQUENCES)
def test_a_kept_connections_request_has_a_fresh_connections_environ(server, name):
    requests = SEQUENCES[name]
    with Wire(server.port, timeout=TIMEOUT) as wire:
        kept = []
        for request in requests:
            wire.send(request)
            kept.append(environ(wire))
    for i, (request, env) in enumerate(zip(requests, kept, strict=True)):
        assert env == fresh(server.port, request), f"request {i}: {request!r}"


@pytest.fixture(scope="module")
def kept_server():
    running = start_ferrule("apps.environ_kept:app")
    yield running
    running.stop()
    running.log_path.unlink(missing_ok=True)


def report(wire: Wire, request: bytes) -> dict:
    wire.send(request)
    resp = wire.read_response()
    assert resp.status == 200, resp
    return json.loads(resp.body)


def test_an_environ_the_application_kept_stays_its_requests(kept_server):
    with Wire(kept_server.port, timeout=TIMEOUT) as wire:
        report(wire, get(HOST, (b"X-Tag", b"kept"), target=b"/keep?k=1"))
        for i in range(3):
            report(wire, get(HOST, (b"X-Tag", f"later-{i}".encode()), target=b"/later?n=2"))
        got = report(wire, get(HOST, target=b"/report"))
    assert got["kept"] == {"PATH_INFO": "/keep", "QUERY_STRING": "k=1", "HTTP_X_TAG": "kept"}
    assert got["own"] == {
        "PATH_INFO": "/report",
        "QUERY_STRING": "",
        "HTTP_X_TAG": None,
        "app.added": None,
    }


def test_what_the_application_changed_in_its_environ_reaches_no_later_request(kept_server):
    with Wire(kept_server.port, timeout=TIMEOUT) as wire:
        report(wire, get(HOST, (b"X-Tag", b"1"), target=b"/change?c=1"))
        got = report(wire, get(HOST, target=b"/report"))
        again = report(wire, get(HOST, target=b"/report?r=2"))
    assert got["own"] == {
        "PATH_INFO": "/report",
        "QUERY_STRING": "",
        "HTTP_X_TAG": None,
        "app.added": None,
    }
    assert again["own"]["QUERY_STRING"] == "r=2"
    assert again["own"]["app.added"] is None
