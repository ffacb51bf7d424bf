"""``python -m moleflow`` runs the command line."""

import sys

from moleflow.cli import main

sys.exit(main())
