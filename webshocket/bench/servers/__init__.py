"""Benchmark servers, each run as a script (``python servers/NAME.py PORT``) by the runner.

``webshocket_app.py`` serves ours (compiled or pure) and PyPI webshocket 0.5.2 with the same
handler, and ours scaled out (``--backplane redis://...``, ``--workers N``); ``raw_picows.py``
is the raw-picows yardstick. Both print ``READY PORT {info}``. Run as scripts, they import
``common.py`` from beside them and nothing of this package but ``webshocket`` itself, so the
0.5.2 virtualenv's python (whose ``webshocket`` is 0.5.2) runs them too.
"""
