"""Bursts of short connections against a ferrule worker, and its RSS before, at peak, after.

Each connection pipelines a few ``GET /`` requests, reads some or all of the answers, and
closes: plainly, or with a reset (``SO_LINGER`` 0), or without reading anything at all.
Connections come from 127.0.0.2..127.0.0.41 so that 250,000 of them do not run out of
ephemeral ports. The worker's ``VmRSS``/``RssAnon``/``RssFile`` are read from ``/proc``
every 0.1 s during the burst.

    python benchmarks/bursts.py --port 24100 --threads 1 --total 250000 --concurrency 5000

starts ``ferrule --threads N --bind 127.0.0.1:PORT examples.hello:app`` itself (run it
from the repository root, with the virtualenv's ``python``) and prints one line per
burst: RSS before, peak, 1 s and ``--settle`` s after. ``--attach MASTER_PID`` measures a
server started by hand instead.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: bursts\r\n\r\n"
SOURCES = [f"127.0.0.{n}" for n in range(2, 42)]


def memory(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of ``pid``, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


async def _one(loop, port: int, seed: int) -> None:
    rnd = random.Random(seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.bind((SOURCES[seed % len(SOURCES)], 0))
        await loop.sock_connect(sock, ("127.0.0.1", port))
        pipelined = rnd.randint(1, 4)
        await loop.sock_sendall(sock, REQUEST * pipelined)
        mode = rnd.random()
        if mode < 0.6:  # read every answer
            seen = 0
            while seen < pipelined:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
                if not data:
                    break
                seen += data.count(b"HTTP/1.1 ")
        elif mode < 0.8:  # read one piece
            await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        # else: read nothing
        if rnd.random() < 0.4:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        sock.close()


async def connections(port: int, total: int, concurrency: int, offset: int = 0) -> None:
    """Open ``total`` connections to ``port``, at most ``concurrency`` at a time, each
    as ``_one`` does with seed ``offset + n`` (``tests/blackbox/test_memory_bursts.py``
    runs this too)."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)

    async def run(seed: int) -> None:
        try:
            await _one(loop, port, seed)
        finally:
            gate.release()

    tasks = set()
    for n in range(total):
        await gate.acquire()
        task = asyncio.ensure_future(run(offset + n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


def _client_process(port: int, total: int, concurrency: int, offset: int) -> None:
    asyncio.run(connections(port, total, concurrency, offset))


def burst(port: int, total: int, concurrency: int, clients: int = 2) -> float:
    """Run ``total`` connections from ``clients`` processes; return the seconds taken."""
    start = time.monotonic()
    procs = [
        multiprocessing.Process(
            target=_client_process,
            args=(port, total // clients, concurrency // clients, n * total),
        )
        for n in range(clients)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return time.monotonic() - start


def worker_of(master: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise SystemExit("no worker")


def measure(worker: int, port: int, total: int, concurrency: int, settle: float) -> dict:
    before = memory(worker)
    peak = dict(before)
    done = threading.Event()

    def sample():
        while not done.is_set():
            now = memory(worker)
            if now["VmRSS"] > peak["VmRSS"]:
                peak.update(now)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    seconds = burst(port, total, concurrency)
    done.set()
    sampler.join()
    time.sleep(1)
    one = memory(worker)
    time.sleep(max(settle - 1, 0))
    after = memory(worker)
    return {
        "seconds": seconds,
        "before": before,
        "peak": peak,
        "after_1s": one,
        "after": after,
    }


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=24100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--total", type=int, default=250_000)
    parser.add_argument("--concurrency", type=int, default=5000)
    parser.add_argument("--bursts", type=int, default=1)
    parser.add_argument("--settle", type=float, default=8.0)
    parser.add_argument("--attach", type=int, help="the master pid of a running server")
    args = parser.parse_args()
    proc = None
    if args.attach:
        master = args.attach
    else:
        argv = [sys.executable, "-m", "ferrule", "--threads", str(args.threads)]
        argv += ["--bind", f"127.0.0.1:{args.port}", "--log-level", "warning"]
        argv += ["--backlog", "4096", "examples.hello:app"]
        proc = subprocess.Popen(argv, env=os.environ.copy())
        master = proc.pid
    try:
        worker = worker_of(master)
        time.sleep(1.5)
        for n in range(args.bursts):
            m = measure(worker, args.port, args.total, args.concurrency, args.settle)
            b, p, o, a = m["before"], m["peak"], m["after_1s"], m["after"]
            print(
                f"burst {n + 1}: {args.total} conns c{args.concurrency} in {m['seconds']:.1f} s;"
                f" VmRSS MiB before {mib(b['VmRSS'])} peak {mib(p['VmRSS'])}"
                f" +1s {mib(o['VmRSS'])} +{args.settle:g}s {mib(a['VmRSS'])}"
                f" (anon {mib(a['RssAnon'])}, file {mib(a['RssFile'])})",
                flush=True,
            )
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)


if __name__ == "__main__":
    main()
