"""The command line, ``python main.py --mode unsup --dataset market1501`` (the code is reid/cli.py; after
``pip install -e .`` the same command is ``reid --mode unsup ...`` from any folder). ``python main.py --help``."""
import sys

import reid  # noqa: F401  (first: OpenMP's wait policy, before torch loads; reid/__init__.py)
from reid.cli import main

if __name__ == "__main__":
    sys.exit(main())
