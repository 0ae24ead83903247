"""A worker gives back the memory of a burst of connections once the burst is over.

Thousands of concurrent connections, each pipelining a few requests and then closing (some
with a reset, some without reading a byte), took a ``hello`` worker from 14 to 160 MiB and
left it there: glibc kept the freed memory (3 MiB of it in use; ``benchmarks/README.md``,
"Memory after connection bursts"). The worker now calls ``malloc_trim`` once its open
connections are down to a quarter of their peak (``src/http/trim.rs``).

The burst here is 30,000 connections, 4,000 at a time, from one asyncio client (the
connections of `benchmarks/bursts.py`, the load script the figures came from); it raises
the worker's RSS by about 100 MiB, and the test wants the RSS back within 40 MiB of where it
was before, within 10 s of the burst's end.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from pathlib import Path

from apps.procs import get, raise_fd_limit, wait_workers

# The connections of `benchmarks/bursts.py`, the load script the figures came from.
_SPEC = importlib.util.spec_from_file_location(
    "bursts", Path(__file__).resolve().parents[2] / "benchmarks" / "bursts.py"
)
bursts = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bursts)

APP = "apps.fixed_body:app"
TOTAL = 30_000
CONCURRENCY = 4_000
#: RSS growth, in KiB, a worker may keep 10 s after the burst (the burst adds ~100 MiB).
KEPT_KIB = 40 * 1024
SETTLE = 10.0


def rss_kib(pid: int) -> int:
    return bursts.memory(pid)["VmRSS"]


def test_rss_returns_near_its_level_before_a_burst_of_connections(ferrule_server, mode):
    # The client's sockets, and the worker's (it inherits the limit).
    raise_fd_limit(2 * CONCURRENCY + 512)
    server = ferrule_server(APP, "--backlog", "4096", *mode)
    (worker,) = wait_workers(server.proc.pid, 1)
    for _ in range(20):
        assert get(server)[0] == 200
    before = rss_kib(worker)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(worker))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        asyncio.run(bursts.connections(server.port, TOTAL, CONCURRENCY))
    finally:
        done.set()
        sampler.join()
    took = time.monotonic() - started
    deadline = time.monotonic() + SETTLE
    while True:
        after = rss_kib(worker)
        if after - before <= KEPT_KIB or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    figures = (
        f"RSS before {before // 1024} MiB, peak {peak // 1024} MiB, "
        f"after {after // 1024} MiB (burst of {TOTAL} in {took:.1f} s)"
    )
    print(figures)
    # The burst took hold (a client out of descriptors or ports would prove nothing).
    assert peak - before >= KEPT_KIB + 20 * 1024, figures
    assert after - before <= KEPT_KIB, figures
    assert get(server)[0] == 200, "the worker still serves"
