"""The shared conformance corpus (``shared/conformance/regressions``) against ferrule.

The runner starts ``python -m ferrule --bind {host}:{port} {app}`` once per test app and
exits 0 when no case fails at MUST level; its result lines are printed (``pytest -s``
or ``-rA`` shows them) and quoted in the failure message.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import require_shared


@pytest.mark.timeout(1500)
def test_conformance_regressions_no_must_failure(tmp_path):
    corpus = require_shared("conformance/regressions")
    state = tmp_path / "state"
    report = tmp_path / "report.json"
    out = subprocess.run(
        [
            sys.executable,
            str(corpus / "run.py"),
            "--server",
            "{python} -m ferrule --bind {host}:{port} {app}",
            "--python",
            sys.executable,
            "--state-dir",
            str(state),
            "--timeout-scale",
            "2",
            "--json",
            str(report),
            "--label",
            "ferrule",
        ],
        capture_output=True,
        text=True,
        timeout=1400,
    )
    lines = out.stdout.splitlines()
    summary = [line for line in lines if "summary:" in line or " passed, " in line]
    print("\n".join(summary))
    failing = []
    if report.exists():
        results = json.loads(report.read_text())["results"]
        failing = [
            f"{r['result']} {r['id']} {r['name']}: {r['findings'] or r.get('error')}"
            for r in results
            if r["result"] != "PASS"
        ]
    detail = "\n".join(summary + failing) + "\n" + out.stderr[-2000:]
    assert out.returncode == 0, detail
