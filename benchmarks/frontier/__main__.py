"""``python -m benchmarks.frontier``: see :mod:`benchmarks.frontier`."""

from benchmarks.frontier.run import main

if __name__ == "__main__":
    raise SystemExit(main())
