"""Alias of :mod:`webshocket.bench.servers.common` (the suite ships in the package; this name stays for clones)."""

import sys

from webshocket.bench.servers import common

sys.modules[__name__] = common
