"""``--send-timeout``: a client that takes no response bytes for that long is cut off.

nginx's ``send_timeout``: the timeout runs between two writes, not over the whole
response. Real ferrule processes and real sockets: clients that stop reading a streamed
response (``--threads 2``, where each holds a worker thread, and the inline
``--threads 1``) or a ``wsgi.file_wrapper`` file sent with sendfile(2) are cut off, their
iterables closed, and the server answers others; a client that reads a little every 0.3 s
is never cut off, however long the whole response takes. The option comes from the
command line, ``FERRULE_SEND_TIMEOUT`` or a TOML file alike (each test sets it another
way), and a bad value is a one-line usage error.

Deadlines are generous (the machine may have two loaded cores): a 2 s timeout is
asserted to cut within 15 s, never faster.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apps import events, wait_events
from apps.send_timeout_apps import BLOCK, block
from apps.wire import Wire, connect, request

BLACKBOX = Path(__file__).resolve().parent
APP = "apps.send_timeout_apps:app"
THREADS = pytest.mark.parametrize("threads", ["2", "1"])
#: How long a cut-off may take, in seconds, for a 2 s timeout (generous: loaded cores).
CUT_OFF = 15
#: A stalled client's receive buffer, in bytes (``apps.wire.connect``).
SMALL_WINDOW = 8192
#: 64 KiB blocks of a response nobody reads: 256 MiB, far beyond every buffer between.
BLOCKS = 4096
LOG_LINE = "(--send-timeout): closing the connection"


def drain(sock: socket.socket, timeout: float = CUT_OFF) -> int:
    """Read until EOF or a reset (bounded by ``timeout``); the bytes read."""
    sock.settimeout(timeout)
    got = 0
    try:
        while piece := sock.recv(1 << 20):
            got += len(piece)
    except ConnectionResetError:
        pass
    return got


def small(server) -> bytes:
    """``GET /small`` from a fresh connection; a bounded wait, never a speed assertion."""
    with Wire(server.port, timeout=CUT_OFF) as wire:
        wire.send(request("GET", "/small", [("Connection", "close")]))
        return wire.read_response().body


def start(ferrule_server, tmp_path, threads: str, source: str, seconds: str, **env):
    """A server with ``--send-timeout seconds`` given by ``source``: cli, env or file."""
    args = ["-w", "1", "--threads", threads]
    env = {"FERRULE_TEST_STATE": str(tmp_path), **env}
    if source == "cli":
        args += ["--send-timeout", seconds]
    elif source == "env":
        env["FERRULE_SEND_TIMEOUT"] = seconds
    else:
        config = tmp_path / "ferrule.toml"
        config.write_text(f"send-timeout = {seconds}\n")
        # FERRULE_CONFIG, not -c: the fixture puts --bind first, and -c is only
        # seen as the first argument (src/config/sources.rs, its lenient first pass).
        env["FERRULE_CONFIG"] = str(config)
    return ferrule_server(APP, *args, env=env)


# --------------------------------------------------------------------------- cut off


@THREADS
def test_clients_that_stop_reading_are_cut_off_and_the_server_answers_others(
    ferrule_server, tmp_path, threads
):
    # --threads 2: two such clients held both threads, and /small went unanswered.
    source = "cli" if threads == "2" else "env"
    server = start(ferrule_server, tmp_path, threads, source, "2", FERRULE_TIMEOUT="3")
    tokens = ["stalled0", "stalled1"]
    socks = [connect((server.host, server.port), SMALL_WINDOW) for _ in tokens]
    try:
        for sock, token in zip(socks, tokens, strict=True):
            sock.sendall(request("GET", f"/stream?blocks={BLOCKS}&t={token}"))
        for token in tokens:
            assert "started" in wait_events(tmp_path, token, "started", CUT_OFF), server.log()
        # Cut off, and each iterable's close() called (PEP 3333), within the bound.
        for token in tokens:
            assert "closed" in wait_events(tmp_path, token, "closed", CUT_OFF), server.log()
        assert small(server) == b"small"
        for sock in socks:
            assert drain(sock) < BLOCKS * BLOCK  # EOF or reset before the whole body
    finally:
        for sock in socks:
            sock.close()
    log = server.wait_for_log(LOG_LINE)
    assert log.count(LOG_LINE) == 2, log
    assert "took no response bytes for 2 s" in log
    # The threads went back to work: the scoreboard never saw them run past --timeout.
    assert small(server) == b"small"
    assert "WORKER TIMEOUT" not in server.log()


@THREADS
def test_a_file_sent_with_sendfile_to_a_client_that_stops_reading_is_cut_off(
    ferrule_server, tmp_path, threads
):
    size = 64 << 20
    path = tmp_path / "big"
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: no 64 MiB written to disk
    server = start(ferrule_server, tmp_path, threads, "file", "2", FERRULE_TEST_FILE=str(path))
    with connect((server.host, server.port), SMALL_WINDOW) as sock:
        sock.sendall(request("GET", "/file?t=file"))
        server.wait_for_log(LOG_LINE, timeout=CUT_OFF)
        assert drain(sock) < size
    assert small(server) == b"small"


def test_a_tls_client_that_stops_reading_is_cut_off(ferrule_server, tmp_path, tls_pems):
    # The timer sits under rustls: it sees the socket's writes, not rustls' buffer.
    server = ferrule_server(
        APP,
        "--send-timeout",
        "2",
        "--certfile",
        str(tls_pems["cert"]),
        "--keyfile",
        str(tls_pems["key"]),
        env={"FERRULE_TEST_STATE": str(tmp_path)},
    )
    context = ssl.create_default_context(cafile=str(tls_pems["ca"]))
    raw = connect((server.host, server.port), SMALL_WINDOW)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(request("GET", f"/stream?blocks={BLOCKS}&t=tls"))
        assert "closed" in wait_events(tmp_path, "tls", "closed", CUT_OFF), server.log()
        got = 0
        sock.settimeout(CUT_OFF)
        try:
            while piece := sock.recv(1 << 20):
                got += len(piece)
        except (ssl.SSLError, ConnectionResetError):
            pass  # no close_notify from a connection that was cut off
        assert got < BLOCKS * BLOCK
    assert LOG_LINE in server.log()


# --------------------------------------------------------------------------- not cut off


@THREADS
def test_a_slow_steady_reader_is_never_cut_off(ferrule_server, tmp_path, threads):
    # A little every 0.3 s against a 3 s timeout; the whole response takes several
    # timeouts. The socket is writable again only once a third of its send buffer is
    # free, seconds apart at this pace: the client's progress keeps the connection.
    source = "file" if threads == "2" else "cli"
    server = start(ferrule_server, tmp_path, threads, source, "3")
    blocks = 24
    start_at = time.monotonic()
    with connect((server.host, server.port), 65536) as sock:
        close = [("Connection", "close")]
        sock.sendall(request("GET", f"/stream?blocks={blocks}&t=steady", close))
        data = bytearray()
        while piece := sock.recv(65536):
            data += piece
            time.sleep(0.3)
    took = time.monotonic() - start_at
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert len(body) == blocks * BLOCK, (len(body), took, server.log())
    assert body == b"".join(block(i) for i in range(blocks))
    assert took > 3, took  # the response outlasted the timeout
    assert LOG_LINE not in server.log()
    assert events(tmp_path, "steady") == ["started", "closed"]


# --------------------------------------------------------------------------- config


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = BLACKBOX):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FERRULE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ferrule", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_option_comes_from_the_command_line_the_environment_or_a_file(tmp_path):
    config = tmp_path / "ferrule.toml"
    config.write_text("send-timeout = 0\n")
    cases = [
        ((APP, "--send-timeout", "2.5"), {}, "send-timeout = 2.5  # command line"),
        ((APP,), {"FERRULE_SEND_TIMEOUT": "7"}, "send-timeout = 7  # $FERRULE_SEND_TIMEOUT"),
        (("-c", str(config), APP), {}, f"send-timeout = 0  # file {config}"),
        ((APP,), {}, "send-timeout = 60  # default"),
    ]
    for args, env, line in cases:
        proc = run_cli(*args, "--print-config", env=env)
        assert proc.returncode == 0, proc.stderr
        assert line in proc.stdout.splitlines(), (args, env, proc.stdout)


@pytest.mark.parametrize(
    "how",
    ["cli-negative", "cli-word", "cli-huge", "env", "file"],
)
def test_a_bad_value_is_a_one_line_usage_error(tmp_path, how):
    args, env = [APP], {}
    if how == "cli-negative":
        args += ["--send-timeout=-1"]
    elif how == "cli-word":
        args += ["--send-timeout", "soon"]
    elif how == "cli-huge":
        args += ["--send-timeout", "1e300"]
    elif how == "env":
        env["FERRULE_SEND_TIMEOUT"] = "soon"
    else:
        config = tmp_path / "ferrule.toml"
        config.write_text('send-timeout = "soon"\n')
        args = ["-c", str(config), *args]
    proc = run_cli(*args, env=env)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "--send-timeout" in errors[0], proc.stderr
    assert "seconds" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
