"""A module whose import fails with an exception (the CLI must exit 4, no traceback)."""

raise RuntimeError("broken_import fails on purpose")
