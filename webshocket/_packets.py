"""The packet classes in use, and where they come from.

The codec in use brings them (``_codec.PACKET_CLASSES``): msgspec's Structs
(``_structs``) when msgspec is installed, else its twin of our own classes (compiled
``_packets_c`` or pure ``_packets_py``). ``_impl`` is that twin, built and usable either way.
"""

import sys
from types import ModuleType

from ._codec import Packet, RPCRequest, RPCResponse
from ._ext import SPEEDUPS

_impl: ModuleType = sys.modules["webshocket._packets_c" if SPEEDUPS["packets"] else "webshocket._packets_py"]

STRUCTS: bool = Packet.__class__.__module__.startswith("msgspec")
"""True when the classes in use are msgspec Structs (``webshocket._structs``)."""

origin: ModuleType = sys.modules["webshocket._structs"] if STRUCTS else _impl
"""The module that defines the classes in use."""

__all__ = ["Packet", "RPCRequest", "RPCResponse"]
