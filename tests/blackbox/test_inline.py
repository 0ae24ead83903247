"""The inline path (``--threads 1``): responses iterated on the event loop's thread.

With one thread, ferrule calls the application on the thread that runs the event loop
and iterates the returned iterable there too, one item per turn of the loop. These tests
pin down what that must not cost: a slow client parks only its own response, every block
reaches the client before the next one is asked for (PEP 3333 "must not delay the
transmission of any block"), and chunks written with ``write()`` during the call are all
delivered, with or without a Content-Length. Each runs inline and, for comparison, with
``--threads 4`` (worker threads, no inline path).
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from apps.wire import Wire, connect


@pytest.fixture
def server(pool, mode):
    return pool.get("apps.responses:app", *mode)


def expected_pattern(n: int, size: int) -> bytes:
    return b"".join(bytes([i % 256]) * size for i in range(n))


@pytest.mark.parametrize("declared", ["1", "0"])
def test_every_write_arrives_with_and_without_content_length(server, declared):
    # 40 write() calls during the application call: more than the 8 chunks the
    # connection's channel holds, so the inline path must keep the rest and deliver
    # them after the call, in order, before the body ends.
    resp = httpx.get(f"{server.url}/many-writes?n=40&cl={declared}", timeout=20)
    assert resp.status_code == 200
    assert resp.content == expected_pattern(40, 1024)
    if declared == "1":
        assert resp.headers["content-length"] == str(40 * 1024)
    else:
        assert resp.headers["transfer-encoding"] == "chunked"


def test_every_write_arrives_to_a_client_slow_to_read(server):
    # The client reads slowly throughout, so write() keeps finding the connection's
    # buffer full: with --threads N it waits for room with start_response let go, and
    # every block must arrive, the last one too, whose call completes the
    # Content-Length and so ends the body.
    n, size = 100, 65536
    expected = expected_pattern(n, size)
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        target = f"/many-writes?n={n}&size={size}&cl=1"
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while True:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0 and len(data) - head_end - 4 >= len(expected):
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            time.sleep(0.003)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert f"content-length: {n * size}".encode() in head.lower()
    assert body == expected, (len(body), len(expected))


@pytest.mark.parametrize("declared", ["1", "0"])
def test_a_list_of_many_blocks_arrives_whole(server, declared):
    # A list holds every block already, so the inline path hands them all to the
    # connection in one turn: more than the channel's 8, the rest from the overflow,
    # and the body must end only after the last of them.
    resp = httpx.get(f"{server.url}/list-blocks?n=40&cl={declared}", timeout=20)
    assert resp.status_code == 200
    assert resp.content == expected_pattern(40, 65536)
    # Keep-alive still works after it.
    again = httpx.get(f"{server.url}/ok", timeout=10)
    assert (again.status_code, again.content) == (200, b"ok")


def test_slow_client_parks_only_its_own_response(server):
    # A client asks for 16 MiB from a generator and reads nothing for a while: the
    # worker's one thread must go on serving others meanwhile.
    chunks = 256
    slow = connect(("127.0.0.1", server.port), 4096, timeout=None)
    slow.sendall(f"GET /big-generator?n={chunks} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        time.sleep(0.5)  # the server fills the socket buffers and must stop there
        served = []
        for _ in range(5):
            started = time.monotonic()
            resp = httpx.get(f"{server.url}/ok", timeout=10)
            served.append(time.monotonic() - started)
            assert resp.status_code == 200 and resp.content == b"ok"
        assert max(served) < 3.0, served
        # Now read the slow response: every byte, in order.
        slow.settimeout(30)
        data = b""
        want = chunks * 65536
        while True:
            block = slow.recv(1 << 20)
            if not block:
                break
            data += block
            if b"\r\n0\r\n\r\n" in data[-16:]:
                break
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"transfer-encoding: chunked" in head.lower()
        assert dechunk(body) == expected_pattern(chunks, 65536)
        assert len(dechunk(body)) == want
    finally:
        slow.close()


def dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, rest = out + rest[:size], rest[size + 2 :]


def test_each_block_is_sent_before_the_next_is_made(server):
    # The generator sleeps 1.5 s after its first block: that block must reach the
    # client long before the second one exists.
    with Wire(server.port) as wire:
        started = time.monotonic()
        wire.send(b"GET /paced?s=1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        # The head and the first block may come in separate segments.
        first = b""
        while b"first;" not in first and time.monotonic() - started < 1.4:
            first += wire.sock.recv(65536)
        waited = time.monotonic() - started
        wire.buf = first
        resp = wire.read_response()
    assert b"first;" in first, first
    assert b"second" not in first
    assert waited < 1.0, waited
    assert resp.status == 200 and resp.body == b"first;second"


def test_a_sleeping_generator_does_not_lose_other_requests(server):
    # Requests that arrive while an inline generator sleeps are answered once it is done
    # (inline) or at once (threads): none is lost or mixed up.
    with Wire(server.port) as paced:
        paced.send(b"GET /paced?s=0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        others = [httpx.get(f"{server.url}/ok", timeout=10) for _ in range(3)]
        resp = paced.read_response()
    assert [(r.status_code, r.content) for r in others] == [(200, b"ok")] * 3
    assert resp.status == 200 and resp.body == b"first;second"


def test_a_python_thread_of_the_application_keeps_running(server):
    # The inline loop's thread holds the GIL while it works and lets it go only while
    # it waits for the network: a thread the application started must still run, when
    # the server is idle and while it serves requests. The thread wakes every 5 ms;
    # the bounds are a tenth of what it does on an idle machine.
    def ticks() -> int:
        return int(httpx.get(f"{server.url}/ticks", timeout=20).text)

    ticks()  # starts the thread
    first = ticks()
    time.sleep(1.0)
    idle = ticks() - first
    assert idle >= 20, f"{idle} wake-ups in 1 s idle"

    stop = time.monotonic() + 1.5
    served = []

    def load():
        with Wire(server.port) as w:
            n = 0
            while time.monotonic() < stop:
                w.send(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
                assert w.read_response().status == 200
                n += 1
            served.append(n)

    first = ticks()
    clients = [threading.Thread(target=load) for _ in range(4)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=30)
    busy = ticks() - first
    assert len(served) == 4 and min(served) > 0
    assert busy >= 10, f"{busy} wake-ups in 1.5 s while {sum(served)} requests were served"
