"""``python -m benchmarks.e2e``: run the end-to-end suite (see :mod:`webshocket.bench.run`)."""

import sys

from webshocket.bench.run import main

sys.exit(main(prog="python -m benchmarks.e2e"))
