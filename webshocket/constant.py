"""Protocol constants."""

DEFAULT_CHUNK_SIZE = 64 * 1024
"""Messages above this size are written as fragmented messages of 64 KiB frames."""

DEFAULT_WEBSHOCKET_SUBPROTOCOL = "webshocket.v1"
"""Subprotocol that selects the msgpack dialect (framework clients)."""

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
"""Largest message (after reassembly) the server accepts; above it, close 1009."""

DEFAULT_MAX_MESSAGE_FRAMES = 1024
"""Frames one message may take (a fragmented message); above it, close 1009."""

DEFAULT_CLIENT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
"""Largest message (after reassembly) the client accepts; above it, close 1009."""

DEFAULT_MAX_SEND_BUFFER = 1024 * 1024
"""Outgoing bytes buffered per connection above which pushes count as going to a slow consumer."""

DEFAULT_MAX_INFLIGHT_RPCS = 256
"""RPCs of one connection running or queued before the server stops reading from it."""

DEFAULT_READ_BUFFER_SIZE = 2048
"""Initial size of a connection's read buffer (picows ``read_buffer_init_size``); it grows on
demand for larger reads. Small, because idle connections dominate memory in real deployments."""

DEFAULT_ENCODE_BUFFER_SIZE = 512
"""0.5.x name, kept for code that reads it: 0.5.x's encode buffer size (this package's codec
sizes its buffers per message)."""
