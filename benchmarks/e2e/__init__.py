"""End-to-end benchmark suite: servers under test vs a picows + uvloop load generator.

Run everything with ``python -m benchmarks.e2e`` (``--quick`` for a smoke run); see
:mod:`benchmarks.e2e.run` for the options and outputs, :mod:`benchmarks.e2e.loadgen` for
what is measured and verified, :mod:`benchmarks.e2e.report` for medians and ratios.
"""
