"""Alias of :mod:`webshocket.bench.procs` (the suite ships in the package; this name stays for clones)."""

import sys

from webshocket.bench import procs

sys.modules[__name__] = procs
