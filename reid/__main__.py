"""``python -m reid ...``: the command line (reid/cli.py), as ``python main.py ...``."""
import sys

from reid.cli import main

sys.exit(main())
