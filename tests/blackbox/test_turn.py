"""Black-box tests of the end-of-turn writes (``src/http/turn.rs``; app: ``apps/turn_apps.py``).

With ``--threads 1`` the event loop's thread calls the application, and a whole response
(a one-element list, a framework iterable whose one item is the declared Content-Length,
an empty body) waits for the end of the loop's turn, when the runtime parks; a request
that arrives 500 µs or more after the turn's first is held for the next turn. Streamed
bodies go out at once. These tests try to break that with many connections, pipelining,
a slow call, disconnects, a stop and ``--max-requests``: every response must be
byte-exact, in order, answered once, and every ``close()`` called once. Each runs inline
and with ``--threads 4`` (no turns), which must behave the same.
"""

from __future__ import annotations

import random
import signal
import socket
import struct
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from apps import events
from apps.turn_apps import body_for, chunks_for
from apps.wire import Response, Wire, chunked
from conftest import THREAD_MODES

TIMEOUT = 30.0
APP = "apps.turn_apps:app"


@pytest.fixture
def server(pool, mode):
    return pool.get(APP, *mode)


def start(ferrule_server, state, *args: str):
    """A server of its own (for tests that stop or starve it)."""
    return ferrule_server(APP, *args, env={"FERRULE_TEST_STATE": str(state)})


# --- cases ------------------------------------------------------------------------------


@dataclass
class Case:
    """One request and everything its response must be."""

    raw: bytes
    status: int
    body: bytes
    head: bool = False
    closes: bool = False  # records ``close:<id>`` once
    length: int | None = None  # the Content-Length a HEAD must announce
    header: tuple[str, str] | None = None


def req(method: str, target: str, body: bytes = b"", *fields: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: turn.test", *fields]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


KINDS = [
    "list",
    "list-large",
    "flask",
    "flask-large",
    "chunks",
    "gen",
    "write",
    "head-list",
    "head-flask",
    "head-chunks",
    "204",
    "304",
    "empty",
    "echo",
    "echo-large",
    "echo-chunked",
]


def case(kind: str, token: str, rid: int) -> Case:
    """The request of ``kind`` tagged ``<token>-<rid>``, and its expected response."""
    tag = f"{token}-{rid}"
    q = f"tag={tag}&t={token}&id={rid}"
    size = 20 + rid % 300
    if kind == "list":
        return Case(req("GET", f"/list?size={size}&{q}"), 200, body_for(tag, size))
    if kind == "list-large":  # over 4 KiB: shared, not copied
        return Case(req("GET", f"/list?size=70001&{q}"), 200, body_for(tag, 70001))
    if kind == "flask":
        return Case(req("GET", f"/flask?size={size}&{q}"), 200, body_for(tag, size), closes=True)
    if kind == "flask-large":
        return Case(req("GET", f"/flask?size=9000&{q}"), 200, body_for(tag, 9000), closes=True)
    if kind == "chunks":
        body = b"".join(chunks_for(tag, 4, size))
        return Case(req("GET", f"/chunks?n=4&size={size}&{q}"), 200, body, closes=True)
    if kind == "gen":
        body = b"".join(chunks_for(tag, 3, size))
        return Case(req("GET", f"/gen?n=3&size={size}&{q}"), 200, body, closes=True)
    if kind == "write":
        body = b"".join(chunks_for(tag, 3, size))
        return Case(req("GET", f"/write?n=3&size={size}&{q}"), 200, body)
    if kind == "head-list":
        return Case(req("HEAD", f"/list?size={size}&{q}"), 200, b"", head=True, length=size)
    if kind == "head-flask":
        target = f"/flask?size={size}&{q}"
        return Case(req("HEAD", target), 200, b"", head=True, closes=True, length=size)
    if kind == "head-chunks":
        target = f"/chunks?n=4&size={size}&{q}"
        return Case(req("HEAD", target), 200, b"", head=True, closes=True, length=4 * size)
    if kind in ("204", "304"):
        target = f"/status?code={kind}&{q}"
        return Case(req("GET", target), int(kind), b"", header=("X-Tag", tag))
    if kind == "empty":
        return Case(req("GET", f"/empty?{q}"), 200, b"", length=0)
    if kind == "echo":
        data = body_for("in-" + tag, size)
        return Case(req("POST", f"/echo?{q}", data), 200, b"echo:" + data)
    if kind == "echo-large":  # a body too large to read before an inline call
        data = body_for("in-" + tag, 300_000 + rid)
        return Case(req("POST", f"/echo?{q}", data), 200, b"echo:" + data)
    if kind == "echo-chunked":  # hyper's connection from here on
        data = body_for("in-" + tag, size)
        raw = req("POST", f"/echo-chunked?{q}", b"", "Transfer-Encoding: chunked")
        return Case(raw + chunked(data, 37), 200, b"echo:" + data)
    raise AssertionError(kind)


def check(resp: Response, want: Case, where: str) -> None:
    assert resp.status == want.status, (where, resp.status, resp.body[:200])
    assert resp.complete, where
    assert resp.body == want.body, (where, len(resp.body), len(want.body))
    if want.length is not None:
        assert resp.header("Content-Length") == str(want.length), (where, resp.headers)
    if want.header is not None:
        assert resp.header(want.header[0]) == want.header[1], (where, resp.headers)


def read_in_order_until_closed(wire: Wire, wants: list[Case], k: int) -> int:
    """Read the responses to pipelined `wants` (connection `k`) until the server closes:
    each whole and in order, nothing partial left. Returns how many came."""
    for i, want in enumerate(wants):
        try:
            resp = wire.read_response()
        except EOFError:
            assert wire.buf == b"", (k, i, wire.buf[:200])
            return i
        check(resp, want, f"connection {k} request {i}")
    return len(wants)


def token() -> str:
    return uuid.uuid4().hex[:16]


def closes_of(state, tok: str) -> list[str]:
    return sorted(e for e in events(state, tok) if e.startswith("close:"))


def wait_closes(state, expected: dict[str, list[str]], timeout: float = TIMEOUT) -> None:
    """Wait (bounded) until every token has its expected closes; then assert exactly."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(closes_of(state, tok)) >= len(ids) for tok, ids in expected.items()):
            break
        time.sleep(0.05)
    time.sleep(0.2)  # a second close() would be recorded by now
    for tok, ids in expected.items():
        assert closes_of(state, tok) == sorted(ids), tok


def reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --- many connections -------------------------------------------------------------------


def test_many_keep_alive_clients_mixed_bodies_byte_exact_and_closed_once(server, state):
    # 200 keep-alive connections at once, 6 requests each, every kind of body: the whole
    # ones wait for their turn, the streamed ones do not, and none may be mixed up with
    # another connection's, lost, or have its close() called twice.
    clients, per = 200, 6
    barrier = threading.Barrier(clients, timeout=TIMEOUT)

    def client(k: int) -> tuple[str, list[str]]:
        tok = token()
        rng = random.Random(k)
        closing = []
        with Wire(server.port, timeout=TIMEOUT) as wire:
            barrier.wait()
            for i in range(per):
                want = case(rng.choice(KINDS), tok, i)
                wire.send(want.raw)
                check(wire.read_response(head=want.head), want, f"client {k} request {i}")
                if want.closes:
                    closing.append(f"close:{i}")
        return tok, closing

    with ThreadPoolExecutor(clients) as ex:
        results = list(ex.map(client, range(clients)))
    wait_closes(state, dict(results))


def test_pipelined_whole_and_streamed_bodies_answered_in_order(server, state):
    # Every kind twice, shuffled, sent in one write on each of 20 connections at once:
    # the whole responses wait for the end of the turn, the streamed ones go at once,
    # and still each connection's responses come in its requests' order.
    def client(k: int) -> tuple[str, list[str]]:
        tok = token()
        kinds = KINDS * 2
        random.Random(k).shuffle(kinds)
        wants = [case(kind, tok, i) for i, kind in enumerate(kinds)]
        with Wire(server.port, timeout=TIMEOUT) as wire:
            wire.send(b"".join(w.raw for w in wants))
            for i, want in enumerate(wants):
                check(wire.read_response(head=want.head), want, f"client {k} request {i}")
            # Nothing more: no response was sent twice.
            wire.sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                wire.sock.recv(1)
        return tok, [f"close:{i}" for i, w in enumerate(wants) if w.closes]

    with ThreadPoolExecutor(20) as ex:
        results = list(ex.map(client, range(20)))
    wait_closes(state, dict(results))


def test_fast_requests_are_answered_around_slow_calls(server):
    # One connection makes 0.3 s calls (inline, the loop's thread sleeps in them) while
    # 30 others make fast ones: each fast request gets its own answer once, in far less
    # than the whole run.
    stop = threading.Event()
    slow_done = []

    def slow() -> None:
        with Wire(server.port, timeout=TIMEOUT) as wire:
            for i in range(4):
                wire.send(req("GET", f"/sleep?s=0.3&tag=slow-{i}"))
                resp = wire.read_response()
                assert (resp.status, resp.body) == (200, f"slept:slow-{i}".encode())
                slow_done.append(i)
        stop.set()

    def fast(k: int) -> tuple[int, float]:
        tok = token()
        worst, i = 0.0, 0
        with Wire(server.port, timeout=TIMEOUT) as wire:
            while not stop.is_set() or i < 3:
                want = case(["list", "flask", "gen", "empty"][i % 4], tok, i)
                began = time.monotonic()
                wire.send(want.raw)
                check(wire.read_response(), want, f"fast {k} request {i}")
                worst = max(worst, time.monotonic() - began)
                i += 1
        return i, worst

    with ThreadPoolExecutor(31) as ex:
        slow_future = ex.submit(slow)
        fast_futures = [ex.submit(fast, k) for k in range(30)]
        slow_future.result()
        outcomes = [f.result() for f in fast_futures]
    assert slow_done == [0, 1, 2, 3]
    for count, worst in outcomes:
        assert count >= 3
        assert worst < 5.0, worst


# --- streamed blocks are not held -------------------------------------------------------


def test_a_streamed_block_reaches_the_client_before_the_next_is_asked_for(server, tmp_path):
    # The generator yields b"first", then polls (at most 5 s) for a file the client
    # creates once it has read b"first". Inline, the generator runs on the loop's thread:
    # were b"first" held until the end of the turn, it would reach the client only after
    # the poll gave up, and the body would say so.
    marker = tmp_path / f"marker-{token()}"
    with Wire(server.port, timeout=TIMEOUT) as wire:
        wire.send(req("GET", f"/first-then-poll?marker={marker}&wait=5"))
        while b"first" not in wire.buf:
            assert wire._fill(), wire.buf
        marker.touch()
        resp = wire.read_response()
    assert resp.status == 200
    assert resp.body == b"first+seen"


@pytest.mark.parametrize("mode_name", ["inline", "threads4"])
def test_whole_responses_are_not_held_while_another_connection_streams(
    ferrule_server, state, mode_name
):
    # A generator streams small rows (a CSV export: 1 ms a row) for up to 20 s to a client
    # that reads them all at once. Meanwhile other connections ask for one-element lists:
    # each must be answered in a few seconds, not when the export ends.
    server = start(ferrule_server, state, *THREAD_MODES[mode_name])
    streamer = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    streamer.sendall(req("GET", "/drip?max=20&pause=0.001"))
    received = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                data = streamer.recv(65536)
            except OSError:
                return
            if not data:
                return
            received.append(len(data))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while sum(received) < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sum(received) >= 1000, "the stream did not start"
        for i in range(3):
            want = case("list", token(), i)
            began = time.monotonic()
            with Wire(server.port, timeout=5.0) as wire:
                wire.send(want.raw)
                check(wire.read_response(), want, f"request {i} while streaming")
            assert time.monotonic() - began < 5.0
    finally:
        done.set()
        reset(streamer)
        reader.join(10)


# --- disconnects, stop, recycling, closing ----------------------------------------------


def test_clients_gone_while_their_responses_wait_for_the_turn(server, state):
    # A 0.3 s call holds the loop; meanwhile 40 clients send a request and reset their
    # connection, so their responses are made (or held) in the turns after it, for peers
    # that are gone. close() still runs once for each, and the server answers on.
    tok = token()
    wants = [case(["flask", "list", "chunks", "gen"][i % 4], tok, i) for i in range(40)]
    with Wire(server.port, timeout=TIMEOUT) as slow:
        slow.send(req("GET", "/sleep?s=0.3&tag=hold"))
        time.sleep(0.05)
        for want in wants:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
            sock.sendall(want.raw)
            reset(sock)
        assert slow.read_response().body == b"slept:hold"
    # A gone client's request may never be read; one that was must be closed once.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(closes_of(state, tok)) < 30:
        time.sleep(0.05)
    time.sleep(0.3)
    closes = closes_of(state, tok)
    assert len(closes) == len(set(closes)), closes
    assert set(closes) <= {f"close:{i}" for i, w in enumerate(wants) if w.closes}
    after = token()
    with Wire(server.port, timeout=TIMEOUT) as wire:
        for i, kind in enumerate(KINDS):
            want = case(kind, after, i)
            wire.send(want.raw)
            check(wire.read_response(head=want.head), want, kind)


def test_sigterm_while_pipelined_responses_wait(ferrule_server, state, mode):
    # 20 connections each pipeline 10 requests behind a 0.5 s call, and the server is
    # stopped during it: what each connection gets is its responses in order, each whole
    # (no torn body), the call in flight is answered, and the server exits 0.
    server = start(ferrule_server, state, *mode, "--graceful-timeout", "20")
    tok = token()
    conns = []
    slow = Wire(server.port, timeout=TIMEOUT)
    slow.send(req("GET", "/sleep?s=0.5&tag=stop"))
    for k in range(20):
        wants = [
            case(["list", "flask", "gen", "empty", "echo"][i % 5], tok, k * 100 + i)
            for i in range(10)
        ]
        wire = Wire(server.port, timeout=TIMEOUT)
        wire.send(b"".join(w.raw for w in wants))
        conns.append((wire, wants))
    time.sleep(0.1)
    server.proc.send_signal(signal.SIGTERM)
    try:
        assert slow.read_response().body == b"slept:stop"
        for k, (wire, wants) in enumerate(conns):
            read_in_order_until_closed(wire, wants, k)
        assert server.proc.wait(TIMEOUT) == 0, server.log()
    finally:
        slow.close()
        for wire, _ in conns:
            wire.close()
    assert "panicked" not in server.log()


def test_max_requests_recycles_with_whole_responses_waiting(ferrule_server, state, mode):
    # The worker stops after 40 requests while 20 connections pipeline 8 each: every
    # response that comes is whole and in order, and the new worker answers on.
    server = start(ferrule_server, state, *mode, "--max-requests", "40")
    tok = token()

    def client(k: int) -> int:
        wants = [
            case(["list", "flask", "chunks", "empty"][i % 4], tok, k * 100 + i) for i in range(8)
        ]
        with Wire(server.port, timeout=TIMEOUT) as wire:
            wire.send(b"".join(w.raw for w in wants))
            return read_in_order_until_closed(wire, wants, k)

    with ThreadPoolExecutor(20) as ex:
        got = list(ex.map(client, range(20)))
    assert sum(got) >= 40, got
    server.wait_for_log("Booting worker", timeout=TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while True:  # the replacement worker answers
        try:
            want = case("flask", token(), 0)
            with Wire(server.port, timeout=TIMEOUT) as wire:
                wire.send(want.raw)
                check(wire.read_response(), want, "after recycling")
            break
        except (EOFError, ConnectionError):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert "panicked" not in server.log()


@pytest.mark.parametrize(
    ("version", "field", "closes"),
    [
        ("HTTP/1.1", "Connection: close", True),
        ("HTTP/1.0", None, True),
        ("HTTP/1.0", "Connection: keep-alive", False),
    ],
)
def test_closing_requests_among_many(server, version, field, closes):
    # 30 connections at once send a whole or streamed request that ends (or keeps) the
    # connection: the response is whole, and the connection closes after it or stays.
    def framed(raw: bytes) -> bytes:
        raw = raw.replace(b"HTTP/1.1", version.encode(), 1)
        if field:
            raw = raw.replace(b"\r\n\r\n", f"\r\n{field}\r\n\r\n".encode(), 1)
        return raw

    def client(k: int) -> None:
        kind = ["list", "flask", "gen", "empty", "list-large"][k % 5]
        want = case(kind, token(), k)
        with Wire(server.port, timeout=TIMEOUT) as wire:
            wire.send(framed(want.raw))
            resp = wire.read_response()
            check(resp, want, f"client {k}")
            # HTTP/1.0 has no chunked coding: a streamed body ends with the connection.
            if closes or resp.framing == "close":
                assert wire.closed_by_server(10), f"client {k}"
            else:
                again = case("list", token(), k)
                wire.send(framed(again.raw))
                check(wire.read_response(), again, f"client {k} again")

    with ThreadPoolExecutor(30) as ex:
        list(ex.map(client, range(30)))
