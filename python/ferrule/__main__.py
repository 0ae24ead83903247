"""``python -m ferrule``: the same command line as ``ferrule``."""

from ferrule.cli import main

if __name__ == "__main__":
    main()
