"""The end-to-end benchmark suite: servers under test vs a picows + uvloop load generator.

Shipped in the package, so it runs from an installed wheel: ``webshocket bench --quick``
(or ``python -m webshocket.bench``); from a clone ``python -m benchmarks.e2e`` runs the
same code. See :mod:`webshocket.bench.run` for the options and outputs,
:mod:`webshocket.bench.loadgen` for what is measured and verified,
:mod:`webshocket.bench.report` for medians and ratios. Nothing here is imported by
``import webshocket``.
"""
