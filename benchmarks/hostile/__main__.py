"""``python -m benchmarks.hostile``: run the hostile-client suite (see :mod:`benchmarks.hostile.run`)."""

import sys

from .run import main

sys.exit(main())
