"""Choose, per hot module, the compiled implementation or its pure-Python twin.

Each hot module ``X`` exists twice with one API: ``webshocket._X_c`` (Cython, built
from ``_speedups/``) and ``webshocket._X_py``. The compiled one is used when it
imports, unless ``WEBSHOCKET_NO_EXTENSIONS`` is set to a non-empty value other
than ``0``. :data:`SPEEDUPS` records which implementation each module uses.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

NO_EXTENSIONS: bool = os.environ.get("WEBSHOCKET_NO_EXTENSIONS", "") not in ("", "0")
NO_MSGSPEC: bool = os.environ.get("WEBSHOCKET_NO_MSGSPEC", "") not in ("", "0")

SPEEDUPS: dict[str, bool] = {}
"""Hot module name -> True when its compiled implementation is in use (filled as the package imports them),
e.g. ``{'codec': True, 'channels': True, 'ratelimit': True, 'listener': True}``."""


def load(name: str) -> ModuleType:
    """Return the implementation of hot module ``name`` (``"codec"``, ``"channels"``, ...)."""
    if not NO_EXTENSIONS:
        try:
            module = importlib.import_module(f"webshocket._{name}_c")
        except ImportError:
            pass
        except Exception as exc:  # e.g. built against another picows: binary incompatibility
            logging.getLogger("webshocket").warning(
                "compiled module webshocket._%s_c failed to load (%s); using the pure-Python twin", name, exc
            )
        else:
            SPEEDUPS[name] = True
            return module
    SPEEDUPS[name] = False
    return importlib.import_module(f"webshocket._{name}_py")


def packet_classes(own: tuple[type, type, type]) -> tuple[type, type, type]:
    """The ``(Packet, RPCRequest, RPCResponse)`` classes a codec uses.

    msgspec's Structs (``webshocket._structs``) when msgspec imports, as 0.5.x's classes
    were, unless ``WEBSHOCKET_NO_MSGSPEC`` is set to a non-empty value other than ``0``;
    else ``own``, the codec's twin of our classes. Both codecs ask, so they use the same.
    """
    if not NO_MSGSPEC:
        try:
            from . import _structs
        except ModuleNotFoundError as exc:
            if exc.name != "msgspec":
                raise
        except Exception as exc:  # e.g. a msgspec release that cannot declare them
            logging.getLogger("webshocket").warning(
                "msgspec is installed but its packet Structs failed to load (%s); using webshocket's own classes", exc
            )
        else:
            return _structs.PACKET_CLASSES
    return own
