"""``python -m benchmarks.e2e``: run the end-to-end suite (see :mod:`benchmarks.e2e.run`)."""

import sys

from .run import main

sys.exit(main())
