"""Helpers that run the PyPI ``webshocket`` 0.5.x releases in their own virtualenvs.

The scripts in this folder are run with a venv's python as subprocesses; they import
*that* venv's ``webshocket`` and must never be imported by the test process
(except :mod:`samples` and :mod:`venvs`, which only use the standard library).
"""
