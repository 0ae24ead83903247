"""The README's option table is the one generated from the CLI definition."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_option_table_is_current():
    spec = importlib.util.spec_from_file_location(
        "update_readme_options", ROOT / "scripts" / "update_readme_options.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert module.splice(readme) == readme, "README option table is stale: run `make docs`"
    assert "`FERRULE_WORKERS`" in readme and "`--max-requests`" in readme
