"""Process hygiene options: --name, --chdir, --umask, --env, --user/--group."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest
import requests
from conftest import BLACKBOX

TIMEOUT = 20
APP = "apps.hygiene_apps:app"


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(c) for c in text)
    return found


def test_name_sets_the_process_titles(ferrule_server):
    srv = ferrule_server("--name", "shop", "-w", "2", APP)
    info = requests.get(srv.url, timeout=TIMEOUT).json()
    master = srv.proc.pid
    assert Path(f"/proc/{master}/comm").read_text().strip() == "ferrule: master"
    worker_comms = {Path(f"/proc/{c}/comm").read_text().strip() for c in children(master)}
    assert worker_comms == {"ferrule: worker"}
    cmdline = Path(f"/proc/{info['pid']}/cmdline").read_bytes().replace(b"\0", b" ")
    assert b"ferrule: worker [shop]" in cmdline, cmdline
    assert b"ferrule: master [shop]" in Path(f"/proc/{master}/cmdline").read_bytes()


def test_chdir_umask_and_env(ferrule_server, tmp_path):
    srv = ferrule_server(
        "--chdir",
        str(BLACKBOX),
        "--umask",
        "027",
        "-e",
        "HYGIENE_MARKER=set-by-env",
        APP,
        cwd=tmp_path,
    )
    info = requests.get(srv.url, timeout=TIMEOUT).json()
    assert info["cwd"] == str(BLACKBOX)
    assert info["umask"] == 0o027
    assert info["env"] == "set-by-env"


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_user_and_group_apply_to_workers_only(ferrule_server):
    nobody = pwd.getpwnam("nobody")
    srv = ferrule_server("--preload", "--user", "nobody", "--group", str(nobody.pw_gid), APP)
    info = requests.get(srv.url, timeout=TIMEOUT).json()
    assert (info["uid"], info["gid"]) == (nobody.pw_uid, nobody.pw_gid)
    assert Path(f"/proc/{srv.proc.pid}/status").read_text().count("Uid:\t0\t") == 1


def test_unknown_user_is_a_one_line_error():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "ferrule", "--user", "no-such-user-xyz", APP],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BLACKBOX,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == 'Error: --user "no-such-user-xyz": no such user'
