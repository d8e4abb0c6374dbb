"""The benchmark servers are in :mod:`webshocket.bench.servers`; :mod:`.common` is an alias of its ``common``."""
