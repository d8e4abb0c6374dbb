"""``python -m webshocket.bench``: run the end-to-end suite (see :mod:`webshocket.bench.run`)."""

import sys

from .run import main

sys.exit(main(prog="python -m webshocket.bench"))
