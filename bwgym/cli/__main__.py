"""``python -m bwgym.cli``: the same entry point as the ``bwgym`` command."""

from bwgym.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
