"""A ``wsgi.input`` is reused only when no one can tell (``src/py/pool.rs``).

ferrule keeps the ``wsgi.input`` of a finished request for the next request with a
body when nothing but the server holds it once the environ is let go. These tests
keep it in every way an application can (itself, the environ, a bound method, its
iterator, a closure) and check in later requests that what was kept reads what was
left of its own body, never another request's; that a body read in part, line by
line, streamed, chunked or refused leaves nothing of itself (bytes, position, end,
failure) to the next request; and that the garbage collector cannot hand one out.
Each runs inline (``--threads 1``) and with ``--threads 4``.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from apps.wire import Wire
from conftest import THREAD_MODES

TIMEOUT = 20
APP = "apps.reuse_apps:app"
WAYS = ("object", "environ", "read", "iter", "closure")


@pytest.fixture
def server(pool, mode):
    return pool.get(APP, *mode)


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        yield c


def key() -> str:
    return uuid.uuid4().hex


def echo_round(client, n: int = 20) -> None:
    """``n`` POSTs whose ``wsgi.input`` nobody keeps (so it goes round the pool)."""
    for i in range(n):
        body = f"round {i} {key()}".encode()
        resp = client.post("/echo", content=body)
        assert (resp.status_code, resp.content) == (200, b"echo:" + body)


@pytest.mark.parametrize("how", WAYS)
def test_a_kept_wsgi_input_reads_what_was_left_of_its_own_body(client, how):
    k = key()
    resp = client.post(f"/keep-input?k={k}&how={how}", content=f"first {k}\nrest {k}".encode())
    assert resp.content == f"first {k}\n".encode()
    echo_round(client)
    report = client.post(f"/use-kept-input?k={k}", content=b"the checker's body").json()
    # As before reuse: the old request's own object, with its unread line.
    assert report == {"is_this": False, "rest": f"rest {k}", "own": "the checker's body"}
    echo_round(client, 5)


@pytest.mark.parametrize("how", ["read", "readline"])
def test_a_body_read_in_part_leaves_nothing_to_the_next_request(client, how):
    for n in (0, 1, 3, 9):
        body = b"line one\nline two\n" + key().encode()
        resp = client.post(f"/read-some?n={n}&how={how}", content=body)
        assert resp.content == body[:n]
        echo_round(client, 2)


@pytest.mark.parametrize("how", ["iter", "readlines", "read1"])
def test_every_way_of_reading_starts_at_the_start_of_its_own_body(client, how):
    for i in range(6):
        body = b"".join(b"%d-%d %s\n" % (i, j, key().encode()) for j in range(i))
        resp = client.post(f"/read-lines?how={how}", content=body)
        assert resp.content == body
        resp = client.post(f"/read-some?n=5&how={'readline' if i % 2 else 'read'}", content=body)
        assert resp.content == body[:5]


def test_large_chunked_and_empty_bodies_go_round_the_pool(client, server):
    large = bytes(range(256)) * 800  # over the 64 KiB read whole: streamed
    for _ in range(3):
        assert client.post("/echo", content=large).content == b"echo:" + large
        echo_round(client, 3)
        assert client.post("/echo", content=b"").content == b"echo:"
    with Wire(server.port) as wire:
        for i in range(5):
            body = b"%d-chunked %s" % (i, key().encode())
            wire.send(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            )
            assert wire.read_response().body == b"echo:" + body
            plain = b"plain %d" % i
            wire.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(plain))
            wire.send(plain)
            assert wire.read_response().body == b"echo:" + plain
    echo_round(client, 3)


@pytest.mark.parametrize("mode", sorted(THREAD_MODES))
def test_a_refused_body_leaves_its_failure_to_no_other_request(pool, mode):
    # A body over --limit-request-body is answered 413 from its wsgi.input's failure;
    # the next request that fails after reading its own body in full is a 500.
    server = pool.get(APP, *THREAD_MODES[mode], "--limit-request-body", "1000")
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        for _ in range(3):
            with Wire(server.port) as wire:
                big = b"x" * 3000
                wire.send(
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big)
                )
                assert wire.read_response().status == 413
            assert client.post("/raise-after-read", content=b"fine").status_code == 500
            echo_round(client, 3)


def test_wsgi_input_takes_no_weak_reference_and_the_collector_does_not_list_it(client):
    # So an application reaches a wsgi.input only through a strong reference, which
    # keeps it out of the pool; the pool checks for weak references and looks again
    # when it hands one out all the same (src/py/pool.rs, its unit tests).
    report = client.post("/input-traits", content=b"a body").json()
    assert report == {"weakref": "TypeError", "tracked": False}


@pytest.mark.parametrize("mode", sorted(THREAD_MODES))
def test_an_input_found_through_the_garbage_collector_is_never_another_requests(
    ferrule_server, mode
):
    server = ferrule_server(APP, *THREAD_MODES[mode])
    k = key()
    with ThreadPoolExecutor(4) as executor:
        # Four at once (with --threads 4): four objects, all pooled when done.
        slow = executor.map(
            lambda i: httpx.post(f"{server.url}/slow?s=0.3", content=b"%d" % i, timeout=TIMEOUT),
            range(4),
        )
        assert [r.content for r in slow] == [b"slow body"] * 4
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        # No pooled one, nor even its own: inputs are found only through the objects
        # that hold them, and environs are not listed (src/py/environ.rs `template`).
        assert client.post(f"/hunt-input?k={k}", content=b"hunter").content == b"found 0"
        for i in range(10):
            body = f"body {i}"
            report = client.post(f"/is-hunted-input?k={k}", content=body.encode()).json()
            assert report == {"hunted": False, "own": body, "late": ""}


def test_many_clients_each_read_their_own_bodies(server):
    # Clients on their own connections at once: requests that keep wsgi.input and use
    # the kept one, among requests that read in part, stream, fail or send nothing.
    def one(n: int) -> None:
        k = f"in{n}-{key()}"
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
            kept = b""
            for i in range(12):
                body = f"c{n}i{i} {key()}".encode()
                assert client.post("/echo", content=body).content == b"echo:" + body
                if i % 4 == 0:
                    resp = client.post(f"/keep-input?k={k}&how=object", content=b"a\n" + body)
                    assert resp.content == b"a\n"
                    kept = body
                elif i % 4 == 1:
                    report = client.post(f"/use-kept-input?k={k}", content=body).json()
                    own = body.decode()
                    assert report == {"is_this": False, "rest": kept.decode(), "own": own}
                elif i % 4 == 2:
                    assert client.post("/read-some?n=2", content=body).content == body[:2]
                    assert client.post("/raise-after-read", content=body).status_code == 500
                else:
                    large = body * 5000
                    assert client.post("/echo", content=large).content == b"echo:" + large
                    assert client.get("/plain").content == b"plain"

    with ThreadPoolExecutor(8) as executor:
        list(executor.map(one, range(8)))
    time.sleep(0.05)
    assert server.proc.poll() is None


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fails", [False, True], ids=["answers", "raises"])
def test_a_thread_still_reading_the_body_after_the_response_breaks_nothing(
    server, client, fails, threads
):
    """The application hands ``wsgi.input`` to a thread (or two) and answers (or raises)
    while the client still holds the body back. Reading it after the response is the
    application's mistake (PEP 3333 ends the request there): the thread's ``read()``
    returns what arrived before, as at the end of the body, when the request ends, not
    when the client sends more or ``--body-timeout`` passes (a second thread, waiting
    its turn behind the first, then reads nothing); and the server stays
    whole: the end of the request once took the body back from under the thread inside
    ``read()``, and asked it for its failure after the application raised, and the
    worker thread panicked."""
    k = key()
    size = 200_000
    with Wire(server.port) as wire:
        wire.send(
            f"POST /read-in-thread?k={k}&raise={int(fails)}&threads={threads} HTTP/1.1\r\n"
            "Host: x\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
            + b"a" * 1000
        )
        first = wire.read_response()
        if fails:
            assert first.status == 500
        else:
            assert (first.status, first.body) == (200, b"answered")
        deadline = time.monotonic() + 5  # --body-timeout is 60 s
        while (read := client.get(f"/thread-read?k={k}").json()["read"]) is None:
            assert time.monotonic() < deadline, "the thread's read() did not return"
            time.sleep(0.05)
        assert read == [0, 1000][-threads:]
        try:
            wire.send(b"a" * (size - 1000))
        except OSError:
            pass  # the server may have closed the connection after its response
    assert "panicked" not in server.log()
    echo_round(client)


def test_a_read_while_another_thread_waits_in_read_waits_its_turn(server, client):
    """A thread of the application waits in ``wsgi.input.read(n)`` for the client while
    the application calls ``read()``: the second read waits for the first, then reads
    what follows, as with a buffered file; each byte is read once, in order. It raised
    RuntimeError ("Already borrowed") while the first read held the object."""
    n, size = 150_000, 200_000  # over the 64 KiB read whole: streamed in both modes
    body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    for _ in range(2):
        with Wire(server.port) as wire:
            wire.send(
                f"POST /read-alongside?n={n} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Length: {size}\r\n\r\n".encode()
                + body[:1000]
            )
            time.sleep(0.5)  # both reads are waiting for the client now
            wire.send(body[1000:])
            resp = wire.read_response()
        assert (resp.status, resp.header("X-Thread"), resp.header("X-Main")) == (
            200,
            str(n),
            str(size - n),
        )
        assert resp.body == body
        echo_round(client, 3)
    assert "panicked" not in server.log()
