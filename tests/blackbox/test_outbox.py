"""Whole responses written by the end of the event loop's turn (``http::turn::Outbox``).

On the inline path a whole response after which the connection stays open is left for
the end of the turn, which writes it; the connection's task goes on to the next request
at once. When the end of the turn cannot write it all (the client is not reading), the
task writes the rest itself. These tests make that happen: many pipelined requests
whose responses overflow the socket buffers of a client that reads late, and a request
whose body the client sends only after it has read the response before it.
"""

from __future__ import annotations

import threading
import time

from apps.wire import Wire

APP = "apps.adv_apps:app"
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
