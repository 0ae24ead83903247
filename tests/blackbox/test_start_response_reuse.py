"""A ``start_response`` is reused only when no one can tell (``src/py/start_response.rs``).

ferrule keeps the ``start_response`` of a finished request, with its bound ``write``,
for the next one when the application kept neither. These tests keep them in every
way an application can (a global, the environ, a generator, ``close()``, a weak
reference) and check in later requests that what was kept behaves as it did before
reuse existed: a second call is refused, a late ``write()`` reaches no one, a weak
reference dies with its request, and nobody else's response changes. Between them,
requests that fail, leave early, send files or take HEAD/204 answers must not leave
their state to the next request. Each runs inline (``--threads 1``) and with
``--threads 4``.
"""

from __future__ import annotations

import random
import socket
import ssl
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from apps.wire import Wire
from conftest import THREAD_MODES, ServerPool

TIMEOUT = 20
APP = "apps.reuse_apps:app"
FILE_SIZE = 300_000


@pytest.fixture(scope="module")
def served_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("reuse-file") / "blob.bin"
    data = random.Random(7).randbytes(FILE_SIZE)
    path.write_bytes(data)
    return path, data


@pytest.fixture(scope="module")
def pool(tmp_path_factory, served_file, monkeypatch_module):
    monkeypatch_module.setenv("REUSE_FILE", str(served_file[0]))
    servers = ServerPool(tmp_path_factory.mktemp("reuse-state"))
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(params=sorted(THREAD_MODES))
def server(pool, request):
    return pool.get(APP, *THREAD_MODES[request.param])


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        yield c


def key() -> str:
    return uuid.uuid4().hex


def plain_round(client, n: int = 20) -> None:
    """``n`` requests whose objects nobody keeps (so they go round the reuse pool)."""
    for _ in range(n):
        resp = client.get("/plain")
        assert (resp.status_code, resp.content) == (200, b"plain")


def test_a_kept_start_response_refuses_a_second_call_and_its_write_reaches_no_one(client):
    k = key()
    assert client.get(f"/keep-sr?k={k}").content == b"kept start_response"
    plain_round(client)
    report = client.get(f"/use-kept?k={k}").json()
    # As before reuse: the old request's own object, started once already; its write
    # finds its response over and sends nothing anywhere.
    assert report == {
        "sr_call": "RuntimeError",
        "sr_is_this": False,
        "sr_write": "ok",
        "sr_write_self": True,
    }
    plain_round(client, 5)


def test_a_kept_write_stays_bound_to_its_own_finished_request(client):
    k = key()
    assert client.get(f"/keep-write?k={k}").content == b"kept write"
    plain_round(client)
    report = client.get(f"/use-kept?k={k}").json()
    assert report == {"write": "ok", "write_self_is_this": False, "write_str": "TypeError"}
    plain_round(client, 5)


def test_a_start_response_kept_by_a_failed_request_is_not_reused(client):
    k = key()
    assert client.get(f"/keep-unstarted?k={k}").status_code == 500
    plain_round(client)
    report = client.get(f"/use-kept?k={k}").json()
    assert report["sr_is_this"] is False
    assert report["sr_call"] == "RuntimeError"  # the 500 was its response


def test_a_start_response_kept_in_a_kept_environ_is_not_reused(client):
    k = key()
    assert client.get(f"/kept-environ?k={k}").content == b"kept environ"
    plain_round(client)
    report = client.get(f"/use-kept-environ?k={k}").json()
    assert report == {"sr_call": "RuntimeError", "sr_is_this": False}


def test_a_start_response_kept_by_close_is_not_reused(client):
    k = key()
    assert client.get(f"/close-stash?k={k}").content == b"close stash"
    plain_round(client)
    report = client.get(f"/use-kept?k={k}").json()
    assert (report["sr_is_this"], report["sr_call"]) == (False, "RuntimeError")


def test_a_weak_reference_to_write_dies_with_its_request(client):
    # A weak reference counts for nothing in the reference count, so only a look at
    # the weak references tells that someone can still reach `write`: reused, it
    # would be the next request's write, and the old request's code could write
    # into another client's response.
    k = key()
    assert client.get(f"/weak-write?k={k}").content == b"weak write"
    plain_round(client)
    report = client.get(f"/check-weak?k={k}").json()
    assert report == {"alive": False, "finalized": True, "is_this_write": False}
    for _ in range(5):
        assert client.get(f"/inject?k={k}").content == b"own body"


def test_a_weakly_referenced_start_response_is_not_reused(client):
    # The callable an application gets is a bound method, which takes weak
    # references: one that is weakly referenced when its request ends is let go
    # (its finalizer runs), never handed to a later request.
    k = key()
    assert client.get(f"/weak-sr?k={k}").content == b"weak start_response"
    plain_round(client)
    report = client.get(f"/check-weak-sr?k={k}").json()
    assert report == {"alive": False, "finalized": True, "is_this": False, "call": None}


def test_write_from_a_generator_and_gc_in_odd_places(client):
    for _ in range(5):
        k = key()
        assert client.get(f"/closure?k={k}").content == b"w1 g1 w2 g2"
        assert client.get("/gc").content == b"gc everywhere"
        assert client.get(f"/forget?k={k}").content == b"forgotten"
    resp = client.get("/write-calls?n=5&tag=q")
    assert resp.content == b"q-0;q-1;q-2;q-3;q-4;end-q"


def test_failed_requests_leave_nothing_to_the_next(client, server):
    # Each failure leaves its start_response sent, failed or replaced; the next
    # request must start afresh on whatever object it gets.
    assert client.get("/exc-info").status_code == 503
    plain_round(client, 3)
    assert client.get("/raise-after").status_code == 500
    plain_round(client, 3)
    for path in ("/exc-info-late", "/raise-in-body"):
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(path)
        plain_round(client, 3)
    # HEAD and 204 send no body: the next GET must have one.
    assert client.head("/plain").content == b""
    assert client.get("/status?s=204").content == b""
    assert client.get("/status?s=304").content == b""
    plain_round(client, 3)
    assert server.proc.poll() is None


def test_a_client_that_leaves_mid_body_leaves_nothing_to_the_next(server):
    for _ in range(3):
        with Wire(server.port) as wire:
            wire.send(b"GET /stream?n=256 HTTP/1.1\r\nHost: x\r\n\r\n")
            wire._fill()  # the head and some body arrived: walk away
        time.sleep(0.05)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        plain_round(client)
        resp = client.get("/stream?n=4")
        assert resp.content == b"".join(bytes([i]) * 65536 for i in range(4))
    assert server.proc.poll() is None


def test_chunked_upload_and_http10_go_round_the_pool(server):
    with Wire(server.port) as wire:
        for i in range(5):
            body = b"%d-chunked" % i
            wire.send(
                b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            )
            assert wire.read_response().body == b"echo:" + body
            wire.send(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
            assert wire.read_response().body == b"plain"
    for _ in range(3):
        with Wire(server.port) as wire:
            wire.send(b"GET /write-calls?n=3&tag=h HTTP/1.0\r\n\r\n")
            resp = wire.read_response()
            assert (resp.version, resp.body) == ("HTTP/1.0", b"h-0;h-1;h-2;end-h")


def test_files_and_their_head_go_round_the_pool(client, served_file):
    _, data = served_file
    for _ in range(3):
        assert client.get("/file").content == data
        head = client.head("/file")
        assert (head.status_code, head.content) == (200, b"")
        plain_round(client, 3)


@pytest.mark.parametrize("mode", sorted(THREAD_MODES))
def test_files_over_tls_are_handed_over_and_back(pool, tls_pems, served_file, mode):
    # TLS cannot sendfile(2): inline, the response moves to a worker thread.
    server = pool.get(
        APP,
        *THREAD_MODES[mode],
        "--certfile",
        str(tls_pems["cert"]),
        "--keyfile",
        str(tls_pems["key"]),
    )
    _, data = served_file
    trusted = ssl.create_default_context(cafile=str(tls_pems["ca"]))
    with httpx.Client(
        base_url=f"https://127.0.0.1:{server.port}", verify=trusted, timeout=TIMEOUT
    ) as client:
        for _ in range(3):
            assert client.get("/file").content == data
            assert client.head("/file").content == b""
            plain_round(client, 3)
        k = key()
        client.get(f"/weak-write?k={k}")
        plain_round(client, 3)
        assert client.get(f"/check-weak?k={k}").json()["alive"] is False


def test_many_clients_mixing_kept_and_pooled_objects(server, served_file):
    # Clients on their own connections at once: requests that keep start_response
    # or write, and use the kept ones, among requests that stream, fail or send
    # files. Every response must be exactly its own.
    _, data = served_file

    def one(n: int) -> None:
        k = f"mix{n}"
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
            for i in range(12):
                tag = f"c{n}i{i}"
                resp = client.get(f"/write-calls?n=3&tag={tag}")
                assert resp.content == f"{tag}-0;{tag}-1;{tag}-2;end-{tag}".encode()
                if i % 4 == 0:
                    assert client.get(f"/keep-write?k={k}").content == b"kept write"
                    assert client.get(f"/keep-sr?k={k}").status_code == 200
                elif i % 4 == 1:
                    report = client.get(f"/use-kept?k={k}").json()
                    assert report["write"] == report["sr_write"] == "ok"
                    assert report["sr_call"] == "RuntimeError"
                elif i % 4 == 2:
                    assert client.get("/raise-after").status_code == 500
                    assert client.get("/stream?n=2").content == (
                        bytes([0]) * 65536 + bytes([1]) * 65536
                    )
                else:
                    assert client.get("/file").content == data
                    assert client.get("/gc").content == b"gc everywhere"

    with ThreadPoolExecutor(8) as executor:
        list(executor.map(one, range(8)))
    assert server.proc.poll() is None


def test_a_dead_connection_kept_write_raises_nothing_into_others(server):
    # A write kept from a request whose client has gone: a later call is a no-op,
    # and a request running at the same time gets exactly its own body.
    k = key()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    sock.sendall(f"GET /keep-write?k={k} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert b"kept write" in sock.recv(65536)
    sock.close()
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        plain_round(client, 5)
        assert client.get(f"/use-kept?k={k}").json()["write"] == "ok"
        plain_round(client, 5)


def fill_the_pool(url: str, executor: ThreadPoolExecutor) -> None:
    """Four requests at once on ``--threads 4``: four objects, all pooled when done."""
    slow = list(executor.map(lambda _: httpx.get(f"{url}/slow?s=0.3", timeout=TIMEOUT), range(4)))
    assert [r.content for r in slow] == [b"slow body"] * 4


def hunt(url: str, k: str) -> int:
    """Keep every start_response the garbage collector lists; how many were pooled."""
    found = httpx.get(f"{url}/hunt?k={k}", timeout=TIMEOUT).content
    assert found.startswith(b"found ")
    return int(found.split()[1]) - 1  # the hunting request's own is one


def test_an_object_found_through_the_garbage_collector_is_not_handed_out(ferrule_server):
    # The pooled objects are tracked by the garbage collector, so gc.get_objects()
    # lists them: one an application took from there must stay its own, not become
    # the start_response of a later request.
    server = ferrule_server(APP, *THREAD_MODES["threads4"])
    k = key()
    with ThreadPoolExecutor(4) as executor:
        fill_the_pool(server.url, executor)
        assert hunt(server.url, k) >= 2
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        for _ in range(10):
            assert client.get(f"/is-hunted?k={k}").json() == {"hunted": False}


def test_a_write_through_a_found_object_reaches_no_other_response(ferrule_server):
    server = ferrule_server(APP, *THREAD_MODES["threads4"])
    k = key()
    with ThreadPoolExecutor(4) as executor:
        fill_the_pool(server.url, executor)
        assert hunt(server.url, k) >= 2
        slow = [executor.submit(httpx.get, f"{server.url}/slow?s=1") for _ in range(3)]
        time.sleep(0.3)  # all three started, and sleep after start_response
        wrote = httpx.get(f"{server.url}/write-hunted?k={k}", timeout=TIMEOUT)
        assert wrote.content == b"wrote"
        assert [f.result().content for f in slow] == [b"slow body"] * 3


def test_write_from_a_thread_while_the_client_is_slow_to_read_breaks_nothing(server):
    """A thread the application started keeps calling ``write`` while the client
    reads nothing and the connection's buffer is full, and the application returns
    meanwhile. ``write`` used to wait for room holding the ``start_response`` object,
    so the worker thread that ends the response found it taken and panicked (and the
    request then ran until ``--timeout`` killed the worker). Now the response is
    whole: the application's last block once, and the thread's blocks sent before the
    response ended (those it writes after are the application's mistake, and dropped)."""
    with Wire(server.port) as wire:
        wire.send(b"GET /write-in-thread HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(1.5)  # read nothing while both sides fill the buffers
        resp = wire.read_response()
    assert resp.status == 200 and resp.complete
    assert resp.body.count(b"end") == 1
    assert (len(resp.body) - 3) % 65536 == 0
    assert "panicked" not in server.log()
