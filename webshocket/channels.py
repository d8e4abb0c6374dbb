"""Channel names and the channel index in use (compiled ``_channels_c`` or pure ``_channels_py``).

Public helpers for names that come from clients:

- :func:`escape` (``escape("room[1]")`` is ``"room[[]1]"``): the glob pattern that
  matches one name and nothing else, to subscribe to it literally (what
  ``subscribe(name, literal=True)`` does) or to build a pattern around client input
  (``escape(user) + ".*"``);
- :func:`literal_name`: the one channel a subscription receives (None for a pattern
  that can match several);
- :func:`is_pattern`: whether a name is read as a glob pattern (it holds ``*``, ``?`` or ``[``).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # both implementations have the pure twin's API
    from ._channels_py import (
        ChannelIndex,
        escape,
        is_pattern,
        literal_name,
    )
else:
    from ._ext import load

    _impl = load("channels")
    ChannelIndex = _impl.ChannelIndex
    escape = _impl.escape
    is_pattern = _impl.is_pattern
    literal_name = _impl.literal_name

__all__ = ["ChannelIndex", "escape", "is_pattern", "literal_name"]
