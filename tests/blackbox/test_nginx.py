"""nginx (Debian's package) in front of two ferrule instances over Unix sockets.

Each test starts two ferrule instances with ``--bind unix:<tmp>/{a,b}.sock
--forwarded-allow-ips unix --env INSTANCE=a|b`` (plus the fixture's own
``127.0.0.1:0`` listener) and one nginx process of its own: generated config,
``daemon off; master_process off``, every path (prefix, pid, temp dirs, logs) in a
temporary directory, listening on a free ``127.0.0.1`` port, with an ``upstream`` block
naming both sockets (round-robin). nginx sets ``X-Forwarded-For
$proxy_add_x_forwarded_for`` and ``X-Forwarded-Proto https``, so the application must
see the client's address in REMOTE_ADDR and ``https`` in ``wsgi.url_scheme``; the same
headers sent straight to ferrule's TCP listener (an untrusted peer) must change nothing.

Without an ``nginx`` binary the tests skip with a visible reason, but fail under
``CI=true`` (``.ci/run`` installs Debian's ``nginx-light``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from apps.procs import free_port

APP = "apps.nginx_apps:app"
CLIENT_TIMEOUT = 20.0
BODY = bytes(range(256)) * 400  # 100 KiB (102 400 bytes), every byte value


def nginx_binary() -> str:
    """The nginx executable; skip visibly when absent, but fail under ``CI=true``."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        msg = "nginx not installed (apt-get install -y nginx-light)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def wait_for_path(path: Path, server, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if server.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout}s:\n{server.log()}")


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 8m;

    upstream ferrule {{
        server unix:{sock_a} max_fails=0;
        server unix:{sock_b} max_fails=0;
        keepalive 4;
        # Below ferrule's idle keep-alive limit (--header-timeout, 10 s), so nginx
        # never reuses a connection that ferrule is closing.
        keepalive_timeout 5s;
    }}

    server {{
        listen 127.0.0.1:{port};
        server_name localhost;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;
        proxy_set_header Host $host;
        proxy_next_upstream off;
        proxy_connect_timeout 10s;
        proxy_read_timeout 30s;
        proxy_send_timeout 30s;

        location / {{
            proxy_pass http://ferrule;
        }}

        # The request body is passed on as it arrives: chunked to ferrule.
        location /stream/ {{
            proxy_request_buffering off;
            proxy_pass http://ferrule;
        }}
    }}
}}
"""


@dataclass
class Nginx:
    proc: subprocess.Popen[bytes]
    port: int
    tmp: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.tmp / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)


def start_nginx(binary: str, tmp: Path, sock_a: Path, sock_b: Path) -> Nginx:
    """Start nginx in the foreground on a free port; retry if the port was taken."""
    for _attempt in range(3):
        port = free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, sock_a=sock_a, sock_b=sock_b, port=port))
        out = open(tmp / "nginx.out", "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [binary, "-p", f"{tmp}/", "-c", str(conf), "-e", str(tmp / "error.log")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        nginx = Nginx(proc, port, tmp)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return nginx
            except OSError:
                time.sleep(0.05)
        nginx.stop()
        output = (tmp / "nginx.out").read_text(errors="replace") + nginx.error_log()
        if "Address already in use" not in output:
            raise AssertionError(f"nginx did not start (exit {proc.returncode}):\n{output}")
    raise AssertionError(f"nginx could not bind a free port:\n{output}")


@dataclass
class Stack:
    nginx: Nginx
    a: object  # RunningServer
    b: object
    sock_a: Path
    sock_b: Path

    def logs(self) -> str:
        return (
            f"--- ferrule a ---\n{self.a.log()}\n--- ferrule b ---\n{self.b.log()}\n"
            f"--- nginx error.log ---\n{self.nginx.error_log()}"
        )


@pytest.fixture
def stack(ferrule_server) -> Iterator[Stack]:
    binary = nginx_binary()
    # A short path: Unix socket paths are limited to about 108 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="ferrule-nginx-"))
    sock_a, sock_b = tmp / "a.sock", tmp / "b.sock"
    nginx = None
    try:
        servers = []
        for name, sock in (("a", sock_a), ("b", sock_b)):
            server = ferrule_server(
                APP,
                "--bind",
                f"unix:{sock}",
                "--forwarded-allow-ips",
                "unix",
                "--env",
                f"INSTANCE={name}",
            )
            wait_for_path(sock, server)
            servers.append(server)
        nginx = start_nginx(binary, tmp, sock_a, sock_b)
        yield Stack(nginx, servers[0], servers[1], sock_a, sock_b)
    finally:
        if nginx is not None:
            nginx.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def assert_no_proxy_errors(stack: Stack) -> None:
    """nginx logged no upstream error (reset, premature close, timeout...)."""
    bad = [
        line
        for line in stack.nginx.error_log().splitlines()
        if any(f"[{level}]" in line for level in ("error", "crit", "alert", "emerg"))
    ]
    assert not bad, "\n".join(bad) + "\n" + stack.logs()


def get_json(client: httpx.Client, url: str, stack: Stack, **kwargs) -> dict:
    response = client.request(kwargs.pop("method", "GET"), url, **kwargs)
    assert response.status_code == 200, (
        f"{response.status_code} {response.text[:500]}\n{stack.logs()}"
    )
    return response.json()


def test_client_address_and_https_reach_the_app(stack: Stack) -> None:
    with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
        for _ in range(4):
            data = get_json(client, f"{stack.nginx.url}/hello?x=1", stack)
            env = data["environ"]
            assert env["REMOTE_ADDR"] == "127.0.0.1", (env, stack.logs())
            assert env["wsgi.url_scheme"] == "https", env
            assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1", env
            assert env["HTTP_X_FORWARDED_PROTO"] == "https", env
            assert env["HTTP_HOST"] == "127.0.0.1", env  # $host: no port
            assert env["PATH_INFO"] == "/hello", env
            assert env["QUERY_STRING"] == "x=1", env
            assert data["instance"] in ("a", "b"), data
    assert_no_proxy_errors(stack)


def test_client_supplied_forwarded_headers_do_not_spoof_through_nginx(stack: Stack) -> None:
    """nginx appends the real peer to X-Forwarded-For; ferrule takes the rightmost entry."""
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "http"}
    with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
        for _ in range(4):
            env = get_json(client, stack.nginx.url + "/", stack, headers=headers)["environ"]
            assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7, 127.0.0.1", env
            assert env["REMOTE_ADDR"] == "127.0.0.1", env
            assert env["wsgi.url_scheme"] == "https", env
    assert_no_proxy_errors(stack)


def test_round_robin_reaches_both_instances(stack: Stack) -> None:
    seen: dict[str, set[int]] = {}
    with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
        for i in range(12):
            data = get_json(client, f"{stack.nginx.url}/rr?i={i}", stack)
            seen.setdefault(data["instance"], set()).add(data["pid"])
    assert set(seen) == {"a", "b"}, (seen, stack.logs())
    assert not (seen["a"] & seen["b"]), f"the two instances share a pid: {seen}"
    # Both instances also answer over their own sockets, each under its own name.
    for name, sock in (("a", stack.sock_a), ("b", stack.sock_b)):
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), timeout=10) as c:
            assert c.get("http://localhost/").json()["instance"] == name
    assert_no_proxy_errors(stack)


def test_untrusted_tcp_peer_cannot_set_address_or_scheme(stack: Stack) -> None:
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}
    with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
        for server in (stack.a, stack.b):
            env = get_json(client, server.url + "/direct", stack, headers=headers)["environ"]
            assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7", env  # header still visible
            assert env["REMOTE_ADDR"] == "127.0.0.1", (env, server.log())
            assert env["wsgi.url_scheme"] == "http", (env, server.log())


def test_trusted_unix_peer_sets_address_and_scheme(stack: Stack) -> None:
    """The same headers over the Unix socket (trusted by ``unix``) do apply; without them
    a Unix-socket peer has an empty REMOTE_ADDR."""
    transport = httpx.HTTPTransport(uds=str(stack.sock_a))
    with httpx.Client(transport=transport, timeout=CLIENT_TIMEOUT) as client:
        headers = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7", "X-Forwarded-Proto": "https"}
        env = client.get("http://localhost/", headers=headers).json()["environ"]
        assert env["REMOTE_ADDR"] == "203.0.113.7", env
        assert env["wsgi.url_scheme"] == "https", env
        env = client.get("http://localhost/").json()["environ"]
        assert env["REMOTE_ADDR"] == "", env
        assert env["wsgi.url_scheme"] == "http", env


def chunks(data: bytes, size: int = 7000) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("path", ["/buffered", "/stream/upload"])
def test_chunked_body_round_trips(stack: Stack, path: str) -> None:
    """A 100 KiB chunked POST through nginx arrives whole, on both instances.

    ``/buffered``: nginx reads the whole body and sends it with Content-Length.
    ``/stream/...``: ``proxy_request_buffering off``, so nginx forwards it chunked.
    """
    expected = hashlib.sha256(BODY).hexdigest()
    seen = set()
    with httpx.Client(timeout=CLIENT_TIMEOUT) as client:
        for _ in range(4):
            # A generator body makes httpx send Transfer-Encoding: chunked.
            data = get_json(
                client, stack.nginx.url + path, stack, method="POST", content=chunks(BODY)
            )
            env = data["environ"]
            assert data["body_len"] == len(BODY), (data, stack.logs())
            assert data["body_sha256"] == expected, data
            assert env["REMOTE_ADDR"] == "127.0.0.1", env
            assert env["wsgi.url_scheme"] == "https", env
            if path.startswith("/stream/"):
                assert (env["HTTP_TRANSFER_ENCODING"] or "").lower() == "chunked", env
            else:
                assert env["CONTENT_LENGTH"] == str(len(BODY)), env
            seen.add(data["instance"])
    assert seen == {"a", "b"}, seen
    assert_no_proxy_errors(stack)


def test_trusted_peer_repeated_forwarded_lines_use_the_last(stack: Stack) -> None:
    """A proxy that adds its own field line (HAProxy's ``option forwardfor`` does) after a
    client-supplied one: the rightmost entry of the combined value is the one the proxy
    saw; the first line is whatever the client chose."""
    transport = httpx.HTTPTransport(uds=str(stack.sock_a))
    headers = [
        ("X-Forwarded-For", "203.0.113.7"),  # forged by the client
        ("X-Forwarded-For", "198.51.100.1"),  # appended by the proxy
        ("X-Forwarded-Proto", "https"),  # forged by the client
        ("X-Forwarded-Proto", "http"),  # appended by the proxy
    ]
    with httpx.Client(transport=transport, timeout=CLIENT_TIMEOUT) as client:
        env = client.get("http://localhost/", headers=headers).json()["environ"]
    assert env["REMOTE_ADDR"] == "198.51.100.1", env
    assert env["wsgi.url_scheme"] == "http", env
