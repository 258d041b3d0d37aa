"""Allows `python -m minigpt ...` as well as the `minigpt` console script."""

from minigpt.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
