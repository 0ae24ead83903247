"""The ``ferrule`` command: hands ``sys.argv`` to the clap parser in Rust.

Exit codes follow gunicorn: 0 after a clean stop, 2 for bad usage, 4 when the
application cannot be loaded.
"""

import sys

from ferrule import _ferrule


def main() -> None:
    """Run the command line in ``sys.argv`` and exit with its status."""
    # `python -m ferrule` puts the path of __main__.py in argv[0]; the usage
    # line should name the command either way.
    sys.exit(_ferrule.run_cli(["ferrule", *sys.argv[1:]]))
