"""Lingering close (RFC 9112 §9.6): a connection the server ends is not reset.

When a server closes a connection while bytes the client sent are still unread in its
socket, the kernel answers with a reset (RST) instead of an end (FIN), and drops
whatever of the last response it had not sent yet: a client reading late loses the end
of that response. So the server half-closes first (its FIN after the response), reads
and discards what the client still sends, and closes only when the client has ended
its side, or after a bound.

Each case makes the reset likely: a client with a small receive buffer that reads
late, so most of the last response is still in the server's socket when it closes,
with bytes the server never reads behind the request (pipelined requests, or the rest
of a refused body). The client must get the whole last response, then a clean end.
Cases run with ``--threads 1`` (the inline mode) and ``--threads 4``, on ferrule's own
exchange and on hyper's (a chunked request body hands the connection to hyper), and one
over TLS. Deadlines are generous bounds for a loaded two-core machine, never speed
claims.
"""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
from apps.linger_apps import body
from apps.wire import Wire, chunked, request

APP = "apps.linger_apps:app"
TIMEOUT = 30.0
BIG = 1 << 20  # bytes of the last response: far more than the client's window


class Client(Wire):
    """A :class:`Wire` that tells a reset from an end.

    ``ended`` is ``"eof"`` once the server ended the connection cleanly, else the name
    of the error that ended it (``ConnectionResetError``; over TLS, an end without
    close_notify is an ``SSLEOFError``).
    """

    def __init__(self, port: int, rcvbuf: int | None = None, tls: ssl.SSLContext | None = None):
        super().__init__(port, timeout=TIMEOUT, rcvbuf=rcvbuf)
        if tls is not None:
            self.sock = tls.wrap_socket(
                self.sock, server_hostname="127.0.0.1", suppress_ragged_eofs=False
            )
        self.ended: str | None = None

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise
        except OSError as exc:
            self.ended, self.eof = type(exc).__name__, True
            return False
        if not data:
            self.ended, self.eof = "eof", True
            return False
        self.buf += data
        return True


class Sender(threading.Thread):
    """Send ``data`` on ``client`` in a thread (while the test reads); ``error`` is the
    name of the error that stopped it, if any.

    With ``pieces``, ``data`` goes out in that many parts, 0.1 s apart: a client still
    sending when the server has answered.
    """

    def __init__(self, client: Client, data: bytes, pieces: int = 1) -> None:
        super().__init__(daemon=True)
        self.client, self.data, self.pieces = client, data, pieces
        self.error: str | None = None
        self.start()

    def run(self) -> None:
        step = -(-len(self.data) // self.pieces)
        try:
            for at in range(0, len(self.data), step):
                if at:
                    time.sleep(0.1)
                self.client.send(self.data[at : at + step])
        except OSError as exc:
            self.error = type(exc).__name__


def get(tag: str, size: int) -> bytes:
    return request("GET", f"/big?id={tag}&size={size}")


def pipelined(count: int = 2000) -> bytes:
    """``count`` small requests (about 90 KB): more than the server reads at once."""
    return b"".join(get(f"p{i}", 10) for i in range(count))


def first_request(how: str) -> bytes:
    """A request whose response (:data:`BIG` bytes) ends the connection, ``how``."""
    target = f"/big?id=last&size={BIG}"
    if how == "app-close":  # the application sends Connection: close
        return request("GET", target + "&close=1")
    if how == "http10":  # HTTP/1.0 without keep-alive
        return request("GET", target, version="HTTP/1.0")
    # A chunked body: hyper serves the connection from here on.
    assert how == "hyper"
    headers = [("Transfer-Encoding", "chunked")]
    return request("POST", target + "&close=1", headers, chunked(b"a body"))


def assert_whole_then_eof(client: Client, tag: str, size: int) -> None:
    try:
        response = client.read_response()
    except EOFError:
        pytest.fail(f"no whole head: {client.buf[:100]!r}, then {client.ended}")
    assert response.status == 200
    assert response.complete, f"{len(response.body)} of {size} bytes, then {client.ended}"
    assert response.body == body(tag, size)
    assert client.read_to_eof(TIMEOUT) == b""
    assert client.ended == "eof"


# --------------------------------------------------------------------------- Connection: close


@pytest.mark.parametrize("how", ["app-close", "http10", "hyper"])
def test_a_closing_response_with_requests_pipelined_behind_it_arrives_whole(
    ferrule_server, mode, how
):
    server = ferrule_server(APP, *mode)
    with Client(server.port, rcvbuf=8192) as client:
        sender = Sender(client, first_request(how) + pipelined())
        time.sleep(0.5)  # the client reads late: the response waits in the server's socket
        assert_whole_then_eof(client, "last", BIG)
        sender.join(TIMEOUT)
        assert sender.error is None
    assert "panicked" not in server.log()


def test_a_closing_response_over_tls_arrives_whole(ferrule_server, mode, tls_pems):
    server = ferrule_server(
        APP, *mode, "--certfile", str(tls_pems["cert"]), "--keyfile", str(tls_pems["key"])
    )
    trusted = ssl.create_default_context(cafile=str(tls_pems["ca"]))
    with Client(server.port, rcvbuf=8192, tls=trusted) as client:
        # Sent before reading (an SSL socket is not shared between threads): the
        # server's receive buffer holds it.
        client.send(first_request("app-close") + pipelined(400))
        time.sleep(0.5)
        assert_whole_then_eof(client, "last", BIG)
    assert "panicked" not in server.log()


# --------------------------------------------------------------------------- graceful stop


def exit_code(server, within: float) -> int:
    try:
        return server.proc.wait(within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the master still ran {within} s after the signal:\n{server.log()}")


@pytest.mark.parametrize("path", ["h1", "hyper"])
def test_pipelined_responses_cut_by_a_graceful_stop_arrive_whole(ferrule_server, mode, path):
    """TERM while a client that reads late has many requests pipelined: the server
    answers some (those started within the drain window), then closes, and each
    arrives whole before a clean end."""
    server = ferrule_server(APP, *mode)
    size, count = 256 * 1024, 400
    first = b""
    if path == "hyper":
        first = request("POST", "/big?id=first&size=10", [("Transfer-Encoding", "chunked")])
        first += chunked(b"a body")
    requests = first + b"".join(get(f"r{i}", size) for i in range(count))
    with Client(server.port, rcvbuf=8192) as client:
        sender = Sender(client, requests)
        time.sleep(0.5)
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(2.0)  # past the drain window (1 s): the next response is the last
        if path == "hyper":
            assert client.read_response().body == body("first", 10)
        answered = 0
        while True:
            try:
                response = client.read_response()
            except EOFError:
                break  # the end, after a whole response
            assert response.status == 200
            tag = f"r{answered}"
            assert response.complete, f"{tag}: {len(response.body)} of {size}, {client.ended}"
            assert response.body == body(tag, size), tag
            answered += 1
        assert client.buf == b""
        assert client.ended == "eof"
        assert 0 < answered < count
        sender.join(TIMEOUT)
    assert exit_code(server, TIMEOUT) == 0, server.log()


# --------------------------------------------------------------------------- refusals


REFUSALS = {
    # Over --limit-request-body, a body ferrule's own exchange would read (64 KiB at most).
    "413-inline": (("--limit-request-body", "1000"), 413, 60_000, True),
    # Over it, a body hyper would stream.
    "413-hyper": (("--limit-request-body", "1000000"), 413, 8_000_000, True),
    # No Host in an HTTP/1.1 request: refused before its body is read.
    "400-no-host": ((), 400, 60_000, False),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refusal_while_the_client_still_sends_its_body_is_read(ferrule_server, mode, case):
    args, status, length, host = REFUSALS[case]
    server = ferrule_server(APP, *mode, *args)
    head = request(
        "POST", "/big?id=x&size=1", [("Content-Length", str(length))], host="x" if host else None
    )
    with Client(server.port) as client:
        sender = Sender(client, head + bytes(length), pieces=8)
        response = client.read_response()
        assert response.status == status, response.body
        assert response.header("Connection") == "close"
        sender.join(TIMEOUT)
        assert sender.error is None, "the server reset the connection under the body"
        assert client.read_to_eof(TIMEOUT) == b""
        assert client.ended == "eof"
    assert "panicked" not in server.log()


# --------------------------------------------------------------------------- the bound


class Dripper(threading.Thread):
    """Send one byte every 0.2 s until a send fails; ``took`` is how long that took."""

    def __init__(self, client: Client) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.took: float | None = None
        self.start()

    def run(self) -> None:
        start = time.monotonic()
        while time.monotonic() - start < 60:
            try:
                self.client.sock.send(b"x")
            except OSError:
                self.took = time.monotonic() - start
                return
            time.sleep(0.2)


def refused_then_dripping(server) -> tuple[Client, Dripper]:
    """A 413, after which the client keeps its side open and keeps sending slowly."""
    client = Client(server.port)
    client.send(request("POST", "/big", [("Content-Length", "60000")]) + b"x" * 1000)
    assert client.read_response().status == 413
    return client, Dripper(client)


def test_lingering_ends_while_the_client_keeps_sending(ferrule_server, mode):
    server = ferrule_server(APP, *mode, "--limit-request-body", "1000")
    client, dripper = refused_then_dripping(server)
    with client:
        dripper.join(TIMEOUT)
        assert dripper.took is not None, "the server never closed the connection"
        assert dripper.took < 15, dripper.took
        # The connection still serves nothing, and the server still serves others.
        with Client(server.port) as other:
            other.send(get("other", 10))
            assert other.read_response().body == body("other", 10)


def test_a_lingering_connection_does_not_hold_up_a_graceful_stop(ferrule_server, mode):
    server = ferrule_server(APP, *mode, "--limit-request-body", "1000")
    client, dripper = refused_then_dripping(server)
    with client:
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert exit_code(server, TIMEOUT) == 0, server.log()
        took = time.monotonic() - start
        assert took < 15, took
        dripper.join(TIMEOUT)
        assert dripper.took is not None


def test_an_idle_connection_closed_by_the_client_first_is_not_held(ferrule_server, mode):
    """A client that ends its side first gets its responses and the end at once."""
    server = ferrule_server(APP, *mode)
    with Client(server.port) as client:
        client.send(get("a", 10) + get("b", 10))
        client.sock.shutdown(socket.SHUT_WR)
        assert client.read_response().body == body("a", 10)
        assert client.read_response().body == body("b", 10)
        start = time.monotonic()
        assert client.read_to_eof(TIMEOUT) == b""
        assert client.ended == "eof"
        assert time.monotonic() - start < 1.5
