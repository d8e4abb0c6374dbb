"""Alias of :mod:`webshocket.bench.report` (the suite ships in the package; this name stays for clones)."""

import sys

from webshocket.bench import report

sys.modules[__name__] = report
