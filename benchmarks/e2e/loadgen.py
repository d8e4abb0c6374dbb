"""Alias of :mod:`webshocket.bench.loadgen` (the suite ships in the package; this name stays for clones).

``python -m benchmarks.e2e.loadgen '<json spec>'`` still runs it.
"""

import sys

from webshocket.bench import loadgen

if __name__ == "__main__":
    sys.exit(loadgen.main())
sys.modules[__name__] = loadgen
