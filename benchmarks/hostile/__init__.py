"""Hostile-client suite: every attack against a server in its own process while well-behaved clients call.

Run it with ``python -m benchmarks.hostile`` (``--quick`` for a smoke run); see
:mod:`benchmarks.hostile.run` for the options and outputs, :mod:`benchmarks.hostile.catalog`
for the attacks and their RSS bounds, :mod:`benchmarks.hostile.attacks` for what each attacker
does and expects, :mod:`benchmarks.hostile.good` for the well-behaved clients.
"""
