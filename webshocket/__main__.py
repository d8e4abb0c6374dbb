"""``python -m webshocket``: the command line (see :mod:`webshocket.cli`)."""

import sys

from .cli import main

sys.exit(main())
