"""Benchmark servers, each run as a script (``python servers/NAME.py PORT``) by the runner.

``webshocket_app.py`` serves ours (compiled or pure) and PyPI webshocket 0.5.2 with the same
handler, and ours scaled out (``--backplane redis://...``, ``--workers N``); ``raw_picows.py``
is the raw-picows yardstick. Both print ``READY PORT {info}``.
"""
