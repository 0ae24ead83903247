"""Memory soak: does one ferrule worker's RSS grow over a million requests?

Issue 5's goal: the peak RSS of one worker serving ``hello`` grows by no more than 5%
over 1,000,000 requests after warm-up. This script starts ``ferrule -w 1 --threads 1`` on
an app from ``apps/``, loads it with ``wrk`` in rounds of a few seconds, and after each
round reads the worker's ``VmRSS`` and ``VmHWM`` from ``/proc/PID/status``. The warm-up
is the first ``--warmup`` requests; growth is the last RSS against the RSS at the end of
the warm-up. It prints a table and exits 1 if the growth is over ``--max-growth``.

Usage (after ``make build-dev``)::

    .venv/bin/python benchmarks/soak.py                      # hello, 1,000,000 requests
    .venv/bin/python benchmarks/soak.py --app flask_app:app --path /api/items \\
        --requests 200000

It is a measurement, not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
APPS = BENCH / "apps"
FERRULE = BENCH.parent / ".venv" / "bin" / "ferrule"
LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+) \((\d+)\)")
REQUESTS = re.compile(r"(\d+) requests in")


def status_kib(pid: int, field: str) -> int:
    """``field`` (``VmRSS``, ``VmHWM``) of ``/proc/PID/status``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def start(app: str, ferrule: Path) -> tuple[subprocess.Popen[bytes], int, int, Path]:
    """Start one worker on a free port; returns the master, port, worker PID and log."""
    log = Path(f"/tmp/ferrule-soak-{os.getpid()}.log")
    out = log.open("wb")
    env = {**os.environ, "PYTHONPATH": str(APPS)}
    argv = [str(ferrule), "-w", "1", "--threads", "1", "-b", "127.0.0.1:0", app]
    master = subprocess.Popen(argv, cwd=APPS, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = LISTENING.search(log.read_bytes())
        children = Path(f"/proc/{master.pid}/task/{master.pid}/children")
        kids = children.read_text().split() if children.exists() else []
        if found and kids:
            return master, int(found.group(1)), int(kids[0]), log
        if master.poll() is not None:
            sys.exit(f"ferrule exited early:\n{log.read_text()}")
        time.sleep(0.1)
    master.kill()
    sys.exit(f"ferrule did not start:\n{log.read_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", default="hello:app", help="MODULE:APP in benchmarks/apps")
    parser.add_argument("--path", default="/", help="request path")
    parser.add_argument("--requests", type=int, default=1_000_000, help="total requests")
    parser.add_argument("--warmup", type=int, default=100_000, help="requests of warm-up")
    parser.add_argument("--round", type=int, default=3, help="seconds of wrk per round")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--max-growth", type=float, default=5.0, help="allowed growth, %%")
    parser.add_argument("--ferrule", type=Path, default=FERRULE)
    args = parser.parse_args()

    master, port, worker, log = start(args.app, args.ferrule)
    url = f"http://127.0.0.1:{port}{args.path}"
    served, warm_rss = 0, None
    print(f"{'requests':>12} {'VmRSS KiB':>10} {'VmHWM KiB':>10}")
    print(f"{0:>12,} {status_kib(worker, 'VmRSS'):>10,} {status_kib(worker, 'VmHWM'):>10,}")
    try:
        while served < args.requests:
            done = subprocess.run(
                ["wrk", "-t1", f"-c{args.connections}", f"-d{args.round}s", url],
                capture_output=True,
                text=True,
                check=True,
            )
            served += int(REQUESTS.search(done.stdout).group(1))
            rss, hwm = status_kib(worker, "VmRSS"), status_kib(worker, "VmHWM")
            print(f"{served:>12,} {rss:>10,} {hwm:>10,}", flush=True)
            if warm_rss is None and served >= args.warmup:
                warm_rss = rss
    finally:
        master.terminate()
        master.wait(15)
        log.unlink(missing_ok=True)
    if warm_rss is None:
        sys.exit("the run ended before the warm-up did: raise --requests")
    growth = (rss - warm_rss) * 100 / warm_rss
    print(
        f"{args.app}: {served:,} requests; RSS after warm-up {warm_rss:,} KiB, "
        f"at the end {rss:,} KiB ({growth:+.1f}%), peak {hwm:,} KiB"
    )
    sys.exit(0 if growth <= args.max_growth else 1)


if __name__ == "__main__":
    main()
