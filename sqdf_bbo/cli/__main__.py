"""``python -m sqdf_bbo.cli``: the ``sqdf-bbo`` console script."""

import sys

from sqdf_bbo.cli import main

if __name__ == "__main__":
    sys.exit(main())
