"""Fixtures, and the session check of the compiled run. Shared helpers live in ``helpers``."""

from __future__ import annotations

import pytest
from helpers import REQUIRE_EXTENSIONS, Twins, compiled_problem, extension_problems, twin


def pytest_sessionstart(session: pytest.Session) -> None:
    """With WEBSHOCKET_REQUIRE_EXTENSIONS=1 (``make test``'s compiled run), stop unless every hot module is compiled."""
    if not REQUIRE_EXTENSIONS:
        return
    problems = extension_problems()
    if problems:
        pytest.exit(
            "WEBSHOCKET_REQUIRE_EXTENSIONS=1, but not every hot module runs compiled:\n  "
            + "\n  ".join(problems)
            + "\n(build them with `python setup.py build_ext --inplace`, or run the pure suite with"
            " WEBSHOCKET_NO_EXTENSIONS=1)",
            returncode=pytest.ExitCode.TESTS_FAILED,
        )


def _twin_name(request: pytest.FixtureRequest) -> str:
    name = getattr(request.module, "TWIN", None)
    if not isinstance(name, str):
        raise TypeError(f"{request.module.__name__} uses a twin fixture: set TWIN to its hot module's name")
    return name


@pytest.fixture(scope="module", params=["c", "py"])
def impl(request: pytest.FixtureRequest) -> str:
    """Each implementation of the test module's hot module ``TWIN``: "c" (compiled) and "py" (pure).

    "c" skips, saying why, when the compiled twin is disabled (WEBSHOCKET_NO_EXTENSIONS) or
    not built; in the compiled run (WEBSHOCKET_REQUIRE_EXTENSIONS=1) the session check has
    already stopped a run where it is not built. Module scope: Hypothesis tests can use it.
    """
    if request.param == "c":
        reason = compiled_problem(_twin_name(request))
        if reason is not None:
            pytest.skip(reason)
    return str(request.param)


@pytest.fixture(scope="module")
def twins(request: pytest.FixtureRequest) -> Twins:
    """Both implementations of the test module's hot module ``TWIN``, for tests comparing them.

    Skips, saying why, where the compiled twin cannot be tested (e.g. in the pure run).
    """
    name = _twin_name(request)
    reason = compiled_problem(name)
    if reason is not None:
        pytest.skip(reason)
    return Twins(py=twin(name, "py"), c=twin(name, "c"))
