"""The command line, ``python main.py --mode unsup --dataset market1501`` (the code is reidlab/cli.py; after
``pip install -e .`` the same command is ``reid --mode unsup ...`` from any folder). ``python main.py --help``."""
import sys

import reidlab  # noqa: F401  (first: OpenMP's wait policy, before torch loads; reidlab/__init__.py)
from reidlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
