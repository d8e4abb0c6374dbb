"""Alias of :mod:`webshocket.bench.venv052` (the suite ships in the package; this name stays for clones)."""

import sys

from webshocket.bench import venv052

sys.modules[__name__] = venv052
