"""``ferrule.simple_server``: the wsgiref drop-in, used in-process as wsgiref programs do,
and ``ferrule.serve`` from Python code (in a child process, stopped with SIGINT).
"""

from __future__ import annotations

import http.client
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import ferrule
import pytest
from ferrule.simple_server import WSGIRequestHandler, WSGIServer, make_server

TIMEOUT = 20


def make_app(calls: list | None = None, tag: bytes = b"app"):
    def app(environ, start_response):
        if calls is not None:
            calls.append(environ["PATH_INFO"])
        if environ["PATH_INFO"] == "/raise":
            raise RuntimeError("simple-server-app-error")
        body = b"|".join(
            [
                tag,
                environ["PATH_INFO"].encode("latin-1"),
                environ["SERVER_PORT"].encode(),
                b"fw-ok" if environ["wsgi.file_wrapper"] is ferrule.FileWrapper else b"fw-bad",
            ]
        )
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


def get(port: int, path: str = "/") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def in_thread(target, *args) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def shutdown_bounded(httpd: WSGIServer) -> None:
    t = in_thread(httpd.shutdown)
    t.join(30)
    assert not t.is_alive(), "shutdown() did not return within 30 s"


def test_serve_forever_then_shutdown_from_another_thread():
    httpd = make_server("127.0.0.1", 0, make_app())
    try:
        host, port = httpd.server_address
        assert host == "127.0.0.1"
        assert port != 0 and httpd.server_port == port
        server = in_thread(httpd.serve_forever)
        for path in ("/a", "/b", "/caf%C3%A9"):
            status, body = get(port, path)
            assert status == 200
            assert body.split(b"|")[:3] == [
                b"app",
                path.replace("%C3%A9", "\xc3\xa9").encode("latin-1"),
                str(port).encode(),
            ]
            assert body.endswith(b"fw-ok")
        shutdown_bounded(httpd)
        server.join(10)
        assert not server.is_alive(), "serve_forever() still running after shutdown()"
    finally:
        httpd.server_close()


def test_handle_request_serves_exactly_one_request():
    calls: list[str] = []
    httpd = make_server("127.0.0.1", 0, make_app(calls))
    try:
        port = httpd.server_port
        worker = in_thread(httpd.handle_request)
        # two pipelined requests on one connection: only the first is served, then close
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
            s.sendall(
                b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.count(b"HTTP/1.1 200") == 1, data
        assert b"/first" in data and b"/second" not in data
        worker.join(TIMEOUT)
        assert not worker.is_alive(), "handle_request() did not return after one request"
        assert calls == ["/first"]

        # while nobody calls handle_request(), a new request waits...
        waiting = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        with waiting:
            waiting.sendall(b"GET /third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            waiting.settimeout(1.0)
            with pytest.raises(TimeoutError):
                waiting.recv(1)
            assert calls == ["/first"]
            # ...and the next handle_request() serves it
            waiting.settimeout(TIMEOUT)
            worker = in_thread(httpd.handle_request)
            data = b""
            while chunk := waiting.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b"/third" in data
        worker.join(TIMEOUT)
        assert not worker.is_alive()
        assert calls == ["/first", "/third"]
    finally:
        httpd.server_close()


def test_context_manager_closes_the_listener():
    with make_server("127.0.0.1", 0, make_app()) as httpd:
        assert isinstance(httpd, WSGIServer)
        port = httpd.server_port
        worker = in_thread(httpd.handle_request)
        assert get(port, "/cm")[0] == 200
        worker.join(TIMEOUT)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_server_close_without_serving():
    httpd = make_server("127.0.0.1", 0, make_app())
    port = httpd.server_port
    httpd.server_close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_set_app_and_get_app():
    first, second = make_app(tag=b"first"), make_app(tag=b"second")
    with make_server("127.0.0.1", 0, first) as httpd:
        assert httpd.get_app() is first
        httpd.set_app(second)
        assert httpd.get_app() is second
        server = in_thread(httpd.serve_forever)
        assert get(httpd.server_port, "/x")[1].startswith(b"second|/x|")
        shutdown_bounded(httpd)
        server.join(10)


def test_empty_host_means_all_interfaces():
    with make_server("", 0, make_app()) as httpd:
        port = httpd.server_port
        assert port != 0
        server = in_thread(httpd.serve_forever)
        assert get(port, "/any")[0] == 200
        shutdown_bounded(httpd)
        server.join(10)


def test_app_error_is_500_and_serving_continues():
    with make_server("127.0.0.1", 0, make_app()) as httpd:
        server = in_thread(httpd.serve_forever)
        assert get(httpd.server_port, "/raise")[0] == 500
        assert get(httpd.server_port, "/after")[0] == 200
        shutdown_bounded(httpd)
        server.join(10)


def test_server_and_handler_classes_are_accepted():
    class MyServer(WSGIServer):
        marker = "mine"

    class MyHandler(WSGIRequestHandler):
        pass

    with make_server("127.0.0.1", 0, make_app(), MyServer, MyHandler) as httpd:
        assert isinstance(httpd, MyServer) and httpd.marker == "mine"
        worker = in_thread(httpd.handle_request)
        assert get(httpd.server_port, "/cls")[0] == 200
        worker.join(TIMEOUT)


SERVE_SCRIPT = textwrap.dedent(
    """
    import sys
    import ferrule

    def app(environ, start_response):
        body = "|".join([environ["SCRIPT_NAME"], environ["PATH_INFO"],
                         str(environ["wsgi.multithread"])]).encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]

    try:
        ferrule.serve(app, "127.0.0.1", 0, threads=2, root_path="/api")
    except KeyboardInterrupt:
        print("serve() stopped", flush=True)
        sys.exit(0)
    """
)


def test_serve_from_python_code():
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-c", SERVE_SCRIPT], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 30
            match = None
            while match is None and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
                log.seek(0)
                match = re.search(rb"Listening at: http://127\.0\.0\.1:(\d+)", log.read())
            assert match, "serve() did not log its address"
            port = int(match.group(1))
            assert get(port, "/api/items") == (200, b"/api|/items|True")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        log.seek(0)
        assert b"serve() stopped" in log.read()


def test_serve_forever_shutdown_shortly_after_start():
    httpd = make_server("127.0.0.1", 0, make_app())
    try:
        server = in_thread(httpd.serve_forever)
        deadline = time.monotonic() + 10
        while get(httpd.server_port)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        shutdown_bounded(httpd)
        server.join(10)
        assert not server.is_alive()
    finally:
        httpd.server_close()
