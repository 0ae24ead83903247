"""HTTP/1.1 connection handling, checked with raw bytes on a socket (``apps.wire``).

Persistent connections, pipelining, HTTP/1.0 clients, HEAD, 204/304, Expect:
100-continue, the Host rule, chunked trailers, and request bodies the application
never read (which must never be parsed as the next request).
"""

from __future__ import annotations

import http.client
import json
import threading

import pytest
import requests
from apps import events, wait_events
from apps.wire import Wire, chunked, request

TIMEOUT = 20


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    return d


@pytest.fixture
def echo(ferrule_server):
    return ferrule_server("apps.environ_echo:app")


@pytest.fixture
def responses_app(ferrule_server, state):
    return ferrule_server("apps.responses:app", env={"FERRULE_TEST_STATE": str(state)})


@pytest.fixture
def body_app(ferrule_server, state):
    return ferrule_server("apps.body:app", env={"FERRULE_TEST_STATE": str(state)})


def env_of(resp) -> dict:
    assert resp.status == 200, resp
    return json.loads(resp.body)["environ"]


# --------------------------------------------------------------------------- keep-alive


def test_keep_alive_reuses_one_connection_http_client(echo):
    conn = http.client.HTTPConnection(echo.host, echo.port, timeout=TIMEOUT)
    try:
        ports = set()
        for i in range(5):
            method, body = ("POST", b"x" * i) if i % 2 else ("GET", None)
            conn.request(method, f"/ka/{i}", body=body)
            sock = conn.sock
            resp = conn.getresponse()
            env = json.loads(resp.read())["environ"]
            assert resp.status == 200 and env["PATH_INFO"] == f"/ka/{i}"
            assert not resp.will_close
            assert conn.sock is sock, "server closed a persistent connection"
            ports.add(env["REMOTE_PORT"])
        assert ports == {str(conn.sock.getsockname()[1])}
    finally:
        conn.close()


def test_keep_alive_reuses_one_connection_requests_session(echo):
    with requests.Session() as s:
        ports = {
            s.get(f"{echo.url}/s/{i}", timeout=TIMEOUT).json()["environ"]["REMOTE_PORT"]
            for i in range(4)
        }
    assert len(ports) == 1


def test_keep_alive_raw_after_chunked_response(responses_app):
    with Wire(responses_app.port) as w:
        for _ in range(3):
            w.send(request("GET", "/generator"))
            resp = w.read_response()
            assert (resp.status, resp.body, resp.complete) == (200, b"gen-a;gen-b;gen-c", True)
        assert not w.eof


def test_connection_close_is_honoured(echo):
    with Wire(echo.port) as w:
        w.send(request("GET", "/bye", [("Connection", "close")]))
        resp = w.read_response()
        assert env_of(resp)["PATH_INFO"] == "/bye"
        assert (resp.header("Connection") or "").lower() == "close"
        assert w.closed_by_server()


# --------------------------------------------------------------------------- pipelining


def test_three_pipelined_requests_answered_in_order(echo):
    with Wire(echo.port) as w:
        w.send(
            request("GET", "/p1?read=1")
            + request("POST", "/p2?read=1", body=b"second body")
            + request("GET", "/p3?read=1")
        )
        first, second, third = (env_of(w.read_response()) for _ in range(3))
    assert [e["PATH_INFO"] for e in (first, second, third)] == ["/p1", "/p2", "/p3"]
    assert second["REQUEST_METHOD"] == "POST" and second["CONTENT_LENGTH"] == "11"


def test_pipelined_bodies_and_framings_stay_in_order(body_app, responses_app):
    with Wire(body_app.port) as w:
        w.send(
            request("POST", "/echo", body=b"A" * 10)
            + request("POST", "/echo", [("Transfer-Encoding", "chunked")])
            + chunked(b"B" * 100_000, size=7777)
            + request("POST", "/echo", body=b"C")
        )
        bodies = [w.read_response().body for _ in range(3)]
    assert bodies == [b"A" * 10, b"B" * 100_000, b"C"]
    with Wire(responses_app.port) as w:
        w.send(request("GET", "/generator") + request("GET", "/one") + request("GET", "/write"))
        got = [w.read_response().body for _ in range(3)]
    assert got == [b"gen-a;gen-b;gen-c", b"one element body", b"write-1;write-2;iter-1;iter-2"]


# --------------------------------------------------------------------------- HTTP/1.0


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/generator", b"gen-a;gen-b;gen-c"),
        ("/one", b"one element body"),
        ("/write", b"write-1;write-2;iter-1;iter-2"),
    ],
)
def test_http10_response_is_never_chunked(responses_app, path, expected):
    with Wire(responses_app.port) as w:
        w.send(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        resp = w.read_response()
        assert resp.status == 200
        assert resp.version == "HTTP/1.0"
        assert resp.header("Transfer-Encoding") is None
        assert resp.framing in ("length", "close")
        assert resp.body == expected
        if resp.framing == "close":
            assert w.eof
        else:  # HTTP/1.0 without keep-alive: the server closes after the response
            assert w.closed_by_server()


def test_http10_one_element_body_gets_content_length(responses_app):
    with Wire(responses_app.port) as w:
        w.send(b"GET /one HTTP/1.0\r\n\r\n")
        resp = w.read_response()
    assert resp.header("Content-Length") == str(len(b"one element body"))


def test_http10_keep_alive_is_kept_when_asked(echo):
    """ab without -k and nginx's default upstream send HTTP/1.0: the connection
    persists only with ``Connection: keep-alive``, and the environ says HTTP/1.0."""
    keep = request("GET", "/ka", [("Connection", "keep-alive")], version="HTTP/1.0")
    with Wire(echo.port) as w:
        for _ in range(2):
            w.send(keep)
            resp = w.read_response()
            assert (resp.version, resp.header("Connection")) == ("HTTP/1.0", "keep-alive")
            assert env_of(resp)["SERVER_PROTOCOL"] == "HTTP/1.0"
        w.send(request("GET", "/last", version="HTTP/1.0", host=None))
        resp = w.read_response()
        assert (resp.version, resp.header("Connection")) == ("HTTP/1.0", None)
        assert env_of(resp)["SERVER_PROTOCOL"] == "HTTP/1.0"
        assert w.closed_by_server()


def test_http10_keep_alive_ends_with_a_body_of_unknown_length(responses_app):
    keep = request("GET", "/generator", [("Connection", "keep-alive")], version="HTTP/1.0")
    with Wire(responses_app.port) as w:
        w.send(keep + keep)
        resp = w.read_response()
        assert (resp.version, resp.framing) == ("HTTP/1.0", "close")
        assert resp.body == b"gen-a;gen-b;gen-c"
        assert w.eof


def test_http10_request_body(body_app):
    with Wire(body_app.port) as w:
        w.send(b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello")
        resp = w.read_response()
    assert (resp.status, resp.body) == (200, b"hello")


# --------------------------------------------------------------------------- HEAD, 204, 304


@pytest.mark.parametrize("path", ["/generator", "/one", "/write", "/closing"])
def test_head_has_no_body(responses_app, path):
    with Wire(responses_app.port) as w:
        w.send(request("HEAD", path) + request("GET", "/ok"))
        head = w.read_response(head=True)
        assert head.status == 200
        nxt = w.read_response()  # parses only if HEAD wrote no body bytes
        assert (nxt.status, nxt.body) == (200, b"ok")
    if head.header("Content-Length") is not None and path == "/one":
        assert head.header("Content-Length") == str(len(b"one element body"))


def test_head_with_http_client(responses_app):
    conn = http.client.HTTPConnection(responses_app.host, responses_app.port, timeout=TIMEOUT)
    try:
        conn.request("HEAD", "/generator")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        conn.request("GET", "/ok")
        assert conn.getresponse().read() == b"ok"
    finally:
        conn.close()


@pytest.mark.parametrize("code", ["204", "304"])
@pytest.mark.parametrize("app_body", ["", "oops"])
def test_204_and_304_have_no_body(responses_app, code, app_body):
    with Wire(responses_app.port) as w:
        w.send(request("GET", f"/status?code={code}&body={app_body}") + request("GET", "/ok"))
        resp = w.read_response()
        assert resp.status == int(code)
        assert resp.header("Transfer-Encoding") is None
        if code == "204":
            assert resp.header("Content-Length") in (None, "0")
        try:
            nxt = w.read_response()
            assert (nxt.status, nxt.body) == (200, b"ok")
        except EOFError:
            pass  # closing instead of keeping the connection is allowed
        assert b"oops" not in w.buf


# --------------------------------------------------------------------------- 100-continue


def test_expect_100_continue_sent_when_app_reads(body_app):
    with Wire(body_app.port) as w:
        w.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = w.read_response()
        assert interim.status == 100, interim
        w.send(b"hello world")
        interim2, final = w.read_final()
        assert interim2 == []
        assert (final.status, final.body) == (200, b"hello world")


def test_expect_100_continue_chunked(body_app):
    with Wire(body_app.port) as w:
        w.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert w.read_response().status == 100
        w.send(chunked(b"c" * 200_000, size=10_000))
        _, final = w.read_final()
        assert final.body == b"c" * 200_000


def test_expect_100_continue_not_sent_when_app_rejects(body_app, state):
    with Wire(body_app.port) as w:
        w.send(
            b"POST /reject?t=rej HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        resp = w.read_response()  # never uploaded: the final status must come anyway
        assert resp.status == 403, f"expected the app's 403 first, got {resp}"
        assert resp.body == b"nope"
    assert events(state, "rej") == ["rejected"]


# --------------------------------------------------------------------------- Host rule


@pytest.mark.parametrize(
    "head",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n",
    ],
    ids=["no-host", "two-hosts", "two-equal-hosts"],
)
def test_http11_host_rule_400(echo, head):
    with Wire(echo.port) as w:
        w.send(head)
        resp = w.read_response()
    assert resp.status == 400


def test_http10_without_host_is_fine(echo):
    with Wire(echo.port) as w:
        w.send(b"GET /nohost HTTP/1.0\r\n\r\n")
        assert env_of(w.read_response())["PATH_INFO"] == "/nohost"


# --------------------------------------------------------------------------- request bodies


def test_chunked_trailers_are_discarded(echo):
    with Wire(echo.port) as w:
        w.send(
            request("POST", "/t?read=1", [("Transfer-Encoding", "chunked")])
            + chunked(b"hello world", size=4, trailers=b"X-Trailer: secret\r\nX-Other: 1\r\n")
            + request("GET", "/next")
        )
        first = w.read_response()
        info = json.loads(first.body)
        assert info["body"] == "hello world"
        assert not any("TRAILER" in k or "OTHER" in k for k in info["environ"])
        assert "secret" not in json.dumps(info["environ"])
        assert env_of(w.read_response())["PATH_INFO"] == "/next"


SMUGGLE = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
@pytest.mark.parametrize("size", ["small", "1MiB"])
def test_unread_body_is_never_parsed_as_next_request(body_app, transfer, size):
    body = SMUGGLE if size == "small" else SMUGGLE * ((1 << 20) // len(SMUGGLE))
    if transfer == "chunked":
        req = request("POST", "/ignore", [("Transfer-Encoding", "chunked")]) + chunked(
            body, size=len(SMUGGLE) * 100
        )
    else:
        req = request("POST", "/ignore", body=body)
    with Wire(body_app.port) as w:
        # send from a thread: a server that stops reading must not block the test
        sender = threading.Thread(target=_send_quietly, args=(w, req + request("GET", "/ignore")))
        sender.start()
        responses = []
        try:
            while len(responses) < 2:
                responses.append(w.read_response())
        except (EOFError, ConnectionResetError):
            pass
        sender.join(TIMEOUT)
    if size == "small":
        assert len(responses) >= 1, "no response to the first request"
    for resp in responses:
        assert (resp.status, resp.body) == (200, b"ignored"), resp
    assert b"no such path" not in w.buf


def _send_quietly(w: Wire, data: bytes) -> None:
    try:
        w.send(data)
    except OSError:
        pass


def test_unread_small_body_keeps_connection_usable(body_app, state):
    with Wire(body_app.port) as w:
        w.send(
            request("POST", "/ignore?t=i1", body=b"unread") + request("POST", "/echo", body=b"x")
        )
        first, second = w.read_response(), w.read_response()
    assert first.body == b"ignored" and second.body == b"x"
    assert wait_events(state, "i1", "ignored") == ["ignored"]
