"""Channel index in use (compiled ``_channels_c`` or pure ``_channels_py``)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # both implementations have the pure twin's API
    from ._channels_py import (
        ChannelIndex,
        is_pattern,
    )
else:
    from ._ext import load

    _impl = load("channels")
    ChannelIndex = _impl.ChannelIndex
    is_pattern = _impl.is_pattern

__all__ = ["ChannelIndex", "is_pattern"]
