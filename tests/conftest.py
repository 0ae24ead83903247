"""Fixtures shared by every pytest suite: starting ``ferrule`` as a real process.

``ferrule_server("apps.environ_echo:app", "--threads", "4")`` starts
``python -m ferrule --bind 127.0.0.1:0 ...`` with ``cwd=tests/blackbox`` (so the
test apps import as ``apps.*``), reads the bound port from the ``Listening at:``
log line, and stops the process (SIGTERM, then SIGKILL after 10 s) at teardown.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLACKBOX = ROOT / "tests" / "blackbox"
LISTENING = re.compile(rb"Listening at: https?://([^\s]+):(\d+)")


def shared_dir() -> Path | None:
    """Return ``FERRULE_SHARED`` (default ``../shared``) if it exists, else ``None``."""
    path = Path(os.environ.get("FERRULE_SHARED", ROOT.parent / "shared"))
    return path if path.is_dir() else None


def require_shared(sub: str) -> Path:
    """Return ``shared/<sub>``; skip visibly when absent, but fail under ``CI=true``."""
    base = shared_dir()
    if base is None or not (base / sub).exists():
        msg = f"shared material {sub!r} not found (set FERRULE_SHARED)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return base / sub


@dataclass
class RunningServer:
    """A ``ferrule`` process started by :func:`ferrule_server`."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    argv: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def wait_for_log(self, needle: str, timeout: float = 10.0) -> str:
        """Wait until ``needle`` appears in the log; return the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log()
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in log after {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait for exit; SIGKILL after ``timeout`` s. Returns the code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_ferrule(
    *args: str,
    cwd: Path = BLACKBOX,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> RunningServer:
    """Start ``python -m ferrule --bind 127.0.0.1:0 *args`` and wait until it listens."""
    fd, name = tempfile.mkstemp(prefix="ferrule-", suffix=".log")
    log_path = Path(name)
    full_env = dict(os.environ)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    if env:
        full_env.update(env)
    argv = [sys.executable, "-m", "ferrule", "--bind", "127.0.0.1:0", *args]
    proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=fd, stderr=fd)
    os.close(fd)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = LISTENING.search(log_path.read_bytes())
        if match:
            return RunningServer(
                proc, match.group(1).decode(), int(match.group(2)), log_path, argv
            )
        if proc.poll() is not None:
            raise AssertionError(
                f"ferrule exited with {proc.returncode} before listening:\n"
                + log_path.read_text(errors="replace")
            )
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("ferrule did not listen within 30 s:\n" + log_path.read_text())


class ServerPool:
    """One ``ferrule`` per argument list, started on first use (and again if it died).

    Every server gets ``FERRULE_TEST_STATE=state``, so the test apps share one call log;
    ``base_args`` go before each server's own arguments.
    """

    def __init__(self, state: Path, *base_args: str) -> None:
        self.state = state
        self.base_args = base_args
        self.running: dict[tuple[str, ...], RunningServer] = {}

    def get(self, *args: str) -> RunningServer:
        server = self.running.get(args)
        if server is None or server.proc.poll() is not None:
            env = {"FERRULE_TEST_STATE": str(self.state)}
            server = start_ferrule(*self.base_args, *args, env=env)
            self.running[args] = server
        return server

    def stop(self) -> None:
        for server in self.running.values():
            server.stop()
            server.log_path.unlink(missing_ok=True)


#: A worker's two ways to serve, as ``ferrule`` arguments: the event loop's thread calls
#: the application itself (``inline``), or four Python threads do (``threads4``).
THREAD_MODES = {"inline": ("--threads", "1"), "threads4": ("--threads", "4")}


@pytest.fixture(scope="module")
def state(request, tmp_path_factory) -> Path:
    """A test module's ``FERRULE_TEST_STATE`` directory (the test apps' call log)."""
    return tmp_path_factory.mktemp(f"{request.module.__name__}-state")


@pytest.fixture(scope="module")
def pool(state) -> Iterator[ServerPool]:
    """A test module's servers, one per argument list, all with its ``state``."""
    servers = ServerPool(state)
    yield servers
    servers.stop()


@pytest.fixture(params=sorted(THREAD_MODES))
def mode(request) -> tuple[str, ...]:
    """Each test once per entry of ``THREAD_MODES``: the arguments of that mode."""
    return THREAD_MODES[request.param]


@pytest.fixture
def ferrule_server() -> Iterator:
    """Factory fixture: ``ferrule_server(*args, cwd=..., env=...)`` → RunningServer."""
    started: list[RunningServer] = []

    def start(*args: str, **kwargs) -> RunningServer:
        server = start_ferrule(*args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        server.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def tls_pems(tmp_path_factory) -> dict[str, Path]:
    """A test CA and a certificate for 127.0.0.1 signed by it, as PEM files:
    ``{"ca": ..., "cert": ... (the chain), "key": ...}``."""
    import trustme

    ca = trustme.CA()
    folder = tmp_path_factory.mktemp("tls-pems")
    cert = ca.issue_cert("127.0.0.1")
    paths = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    ca.cert_pem.write_to_path(paths["ca"])
    cert.private_key_pem.write_to_path(paths["key"])
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(paths["cert"], append=i > 0)
    return paths
