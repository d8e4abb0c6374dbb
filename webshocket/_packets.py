"""The packet classes in use: those of the codec in use (compiled ``_packets_c`` or pure ``_packets_py``).

They are not chosen on their own: each codec reads and writes its own twin's classes.
"""

import sys
from types import ModuleType

from ._codec import Packet, RPCRequest, RPCResponse

_impl: ModuleType = sys.modules[Packet.__module__]

__all__ = ["Packet", "RPCRequest", "RPCResponse"]
