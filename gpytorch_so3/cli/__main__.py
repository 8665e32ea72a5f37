"""``python -m gpytorch_so3.cli ...``: the ``gpytorch-so3`` command line."""

import sys

from gpytorch_so3.cli import main

if __name__ == "__main__":
    sys.exit(main())
