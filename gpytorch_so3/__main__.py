"""``python -m gpytorch_so3 ...``: the same command line as ``gpytorch-so3 ...``."""

import sys

from gpytorch_so3.cli import main

if __name__ == "__main__":
    sys.exit(main())
