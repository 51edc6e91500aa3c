"""``python -m reidlab ...``: the command line (reidlab/cli.py), as ``python main.py ...``."""
import sys

from reidlab.cli import main

sys.exit(main())
