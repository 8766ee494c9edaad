"""``python -m benchmarks.reliability`` (the probes) and ``... --child ROLE`` (their children)."""

import sys

from benchmarks.reliability.command import main

if __name__ == "__main__":
    sys.exit(main())
