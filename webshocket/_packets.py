"""The packet classes in use: those of the codec in use (compiled ``_packets_c`` or pure ``_packets_py``).

They are not chosen on their own: each codec reads and writes its own twin's classes.
"""

import sys
from types import ModuleType

from ._codec import Packet, RPCRequest, RPCResponse
from ._ext import SPEEDUPS

_impl: ModuleType = sys.modules["webshocket._packets_c" if SPEEDUPS["packets"] else "webshocket._packets_py"]

__all__ = ["Packet", "RPCRequest", "RPCResponse"]
