"""Whole responses written by the end of the event loop's turn (``http::turn::Outbox``).

On the inline path a whole response after which the connection stays open is left for
the end of the turn, which writes it; the connection's task goes on to the next request
at once. When the end of the turn cannot write it all (the client is not reading), the
task writes the rest itself. These tests make that happen: many pipelined requests
whose responses overflow the socket buffers of a client that reads late, and a request
whose body the client sends only after it has read the response before it. And a
response the outbox holds goes out before the call of the request pipelined behind it
(found by an adversarial pass over the change: it waited for that call).
"""

from __future__ import annotations

import threading
import time

from apps.wire import Wire

APP = "apps.adv_apps:app"
TURN_APP = "apps.turn_apps:app"
REQUESTS = 5000
SIZE = 1000  # bytes of each response's body: 5 MB in all, more than the socket buffers hold


def get(i: int) -> bytes:
    return f"GET /pad?id={i}&size={SIZE} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def padded(i: int) -> bytes:
    head = f"pad:{i}:".encode()
    return head + b"." * (SIZE - len(head))


def test_pipelined_responses_to_a_client_that_reads_late_arrive_whole_and_in_order(
    ferrule_server, mode
):
    server = ferrule_server(APP, *mode)
    with Wire(server.port, rcvbuf=4096, timeout=60) as wire:
        # The client sends every request before it reads: the responses fill both
        # sockets' buffers meanwhile.
        sender = threading.Thread(target=wire.send, args=(b"".join(map(get, range(REQUESTS))),))
        sender.start()
        time.sleep(1.0)
        for i in range(REQUESTS):
            response = wire.read_response()
            assert (response.status, response.body) == (200, padded(i)), i
        sender.join(30)
        assert not sender.is_alive()
        # The connection still serves.
        wire.send(get(REQUESTS))
        assert wire.read_response().body == padded(REQUESTS)
    assert "panicked" not in server.log()


class SlowWire(Wire):
    """A client that takes at most its receive buffer (16 KiB) every 2 ms."""

    def _fill(self) -> bool:
        time.sleep(0.002)
        return super()._fill()


def test_a_body_sent_after_the_responses_before_it_were_read(ferrule_server, mode):
    """The client pipelines GETs and a POST's head, reads every response (slowly), and
    only then sends the POST's body: what the end of a turn could not write of the
    responses before must go out while the server waits for that body."""
    server = ferrule_server(APP, "--body-timeout", "30", *mode)
    count = REQUESTS
    body = b"0123456789"
    with SlowWire(server.port, rcvbuf=16384, timeout=20) as wire:
        post = f"POST /echo?id=last HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        sender = threading.Thread(
            target=wire.send, args=(b"".join(map(get, range(count))) + post.encode(),)
        )
        sender.start()
        time.sleep(1.0)
        for i in range(count):
            assert wire.read_response().body == padded(i), i
        sender.join(30)
        wire.send(body)
        response = wire.read_response()
        assert response.status == 200
        assert b'"id": "last"' in response.body and b'"body_len": 10' in response.body


def test_a_response_does_not_wait_for_the_call_of_the_request_pipelined_behind_it(
    ferrule_server, mode
):
    server = ferrule_server(TURN_APP, *mode)
    for second in (b"/sleep?s=3&id=b&size=10", b"/drip?max=1&pause=3"):
        with Wire(server.port, timeout=30) as wire:
            start = time.monotonic()
            wire.send(
                b"GET /list?id=a&size=10 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET " + second + b" HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            first = wire.read_response()
            took = time.monotonic() - start
            assert first.status == 200
            # At once (1 ms) with --threads 4; the 3 s call when it waited.
            assert took < 1.5, f"{second!r}: the first response waited {took:.2f} s"
            assert wire.read_response().status == 200
    assert "panicked" not in server.log()
