"""End-to-end benchmark suite, from a clone: ``python -m benchmarks.e2e`` (``--quick`` for a smoke run).

The code lives in the package, :mod:`webshocket.bench`, so that it ships in the wheel and runs
from an installed package too (``webshocket bench``). The modules of this directory are aliases
of it: ``benchmarks.e2e.run`` *is* ``webshocket.bench.run`` (the same module object), and so on
for ``loadgen``, ``procs``, ``report``, ``venv052`` and ``servers.common``.
"""
