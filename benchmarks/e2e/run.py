"""Alias of :mod:`webshocket.bench.run` (the suite ships in the package; this name stays for clones)."""

import sys

from webshocket.bench import run

sys.modules[__name__] = run
