"""Channel index in use (compiled ``_channels_c`` or pure ``_channels_py``)."""

from ._ext import load

_impl = load("channels")

ChannelIndex = _impl.ChannelIndex
is_pattern = _impl.is_pattern

__all__ = ["ChannelIndex", "is_pattern"]
