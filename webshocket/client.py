"""The Python client: RPC, streaming RPC, pushed packets, reconnect with backoff."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from picows import WSCloseCode, WSError, WSFrame, WSTransport, ws_connect

from ._codec import decode_packet, encode_packet, encode_push, encode_request
from ._framing import MessageListener, write_message
from .constant import DEFAULT_CLIENT_MAX_MESSAGE_SIZE, DEFAULT_WEBSHOCKET_SUBPROTOCOL
from .enum import ConnectionState, PacketSource, RPCErrorCode
from .exceptions import (
    ConnectionClosedError,
    ConnectionFailedError,
    InvalidURIError,
    RateLimitError,
    ReceiveTimeoutError,
    RPCTimeoutError,
    connection_failed,
)
from .packets import Packet, RPCResponse
from .utils import generate_uuid

__all__ = ["WebSocketClient"]

_logger = logging.getLogger("webshocket.client")
_CUSTOM = int(PacketSource.CUSTOM)
_RPC = PacketSource.RPC
_CLOSED = object()


class _ClientListener(MessageListener):
    """The client's side of one connection: checked messages in (the server's frame layer),
    the close code the server sent, and the transport once connected."""

    def __init__(
        self,
        max_message_size: int,
        on_message: Callable[[bytes], None],
        on_gone: Callable[[_ClientListener], None],
    ) -> None:
        super().__init__(max_message_size)
        self.deliver = on_message
        self.gone = on_gone
        self.transport: WSTransport | None = None
        self.close_code: WSCloseCode | int | None = None

    def on_message(self, payload: bytes) -> None:
        self.deliver(payload)

    def on_close_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.close_code = frame.get_close_code() if frame.payload_size else WSCloseCode.OK
        super().on_close_frame(transport, frame)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.gone(self)


class WebSocketClient:
    """Client for a Webshocket server (speaks the msgpack dialect).

    .. code-block:: python

        async with WebSocketClient("ws://localhost:5000") as client:
            result = await client.send_rpc("add", 10, 20)
            print(result.data)  # 30

    Args:
        uri: ``ws://`` or ``wss://`` URI of the server.
        on_receive: coroutine called, in order, with each pushed packet (custom,
            channel, broadcast). Without it, pushed packets are read with :meth:`recv`.
        ssl_context: client SSL context for ``wss://``.
        max_packet_qsize: pushed packets buffered for :meth:`recv` before reading pauses.
    """

    def __init__(
        self,
        uri: str,
        on_receive: Callable[[Packet[Any]], Awaitable[None]] | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_packet_qsize: int = 128,
        max_message_size: int = DEFAULT_CLIENT_MAX_MESSAGE_SIZE,
    ) -> None:
        parts = urlsplit(uri)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise InvalidURIError(f"Invalid WebSocket URI {uri!r}: expected ws://host[:port][/path] or wss://...")
        self.uri = uri
        self.on_receive_callback = on_receive
        self.ssl_context = ssl_context
        self.state = ConnectionState.DISCONNECTED
        self.logger = _logger
        self.max_packet_qsize = max_packet_qsize
        self.max_message_size = max_message_size
        self._transport: WSTransport | None = None
        self._packet_queue: asyncio.Queue[Any] = asyncio.Queue()
        self._paused = False
        self._pending: dict[str, asyncio.Future[RPCResponse]] = {}
        self._streams: dict[str, asyncio.Queue[Any]] = {}
        self._inbox: list[Packet[Any]] = []
        self._receiving = False
        self._receive_task: asyncio.Task[None] | None = None
        self._listener: _ClientListener | None = None  # the current connection's listener

    # ------------------------------------------------------------------ connecting

    async def _connect_once(self, **kwargs: Any) -> None:
        if self._transport is not None:
            await self.close()
        self.state = ConnectionState.CONNECTING
        # Fresh per-connection buffers, before the first frame can arrive.
        self._packet_queue = asyncio.Queue()
        self._paused = False
        headers = {"Sec-WebSocket-Protocol": DEFAULT_WEBSHOCKET_SUBPROTOCOL}
        headers.update(kwargs.pop("extra_headers", None) or {})
        kwargs.setdefault("max_frame_size", self.max_message_size)
        try:
            transport, listener = await ws_connect(
                lambda: _ClientListener(self.max_message_size, self._on_message, self._on_gone),
                self.uri,
                ssl_context=self.ssl_context,
                extra_headers=headers,
                enable_auto_ping=True,
                enable_auto_pong=False,  # the frame layer answers pings after checking them
                logger_name="webshocket.client.picows",
                **kwargs,
            )
        except (OSError, WSError, asyncio.TimeoutError, TimeoutError, EOFError) as exc:
            self.state = ConnectionState.DISCONNECTED
            raise connection_failed(f"Could not connect to {self.uri}: {exc}", exc) from exc
        except BaseException:
            self.state = ConnectionState.DISCONNECTED
            raise
        if transport.is_disconnected:  # the peer hung up during the handshake
            self.state = ConnectionState.DISCONNECTED
            raise ConnectionFailedError(f"Could not connect to {self.uri}: connection closed during the handshake")
        assert isinstance(listener, _ClientListener)
        self._transport = transport
        self._listener = listener
        self.state = ConnectionState.CONNECTED
        self.logger.info("Successfully connected to %s", self.uri)

    async def connect(
        self,
        retry: bool = False,
        max_retry_attempt: int = 3,
        retry_interval: float = 2,
        **kwargs: Any,
    ) -> WebSocketClient:
        """Connect to the server.

        With ``retry=True``, failed attempts are retried up to ``max_retry_attempt``
        times, waiting ``retry_interval * 2**attempt`` seconds plus up to one second
        of random jitter between attempts.

        Raises:
            ConnectionFailedError: the connection (every attempt of it) failed.
        """
        if not retry:
            await self._connect_once(**kwargs)
            return self
        attempts = max(1, max_retry_attempt)
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                await self._connect_once(**dict(kwargs))
                return self
            except ConnectionFailedError as exc:
                last = exc
                if attempt + 1 < attempts:
                    delay = retry_interval * (2**attempt) + random.uniform(0, 1)
                    self.logger.info("Connection attempt %d failed, retrying in %.2fs", attempt + 1, delay)
                    await asyncio.sleep(delay)
        self.state = ConnectionState.DISCONNECTED
        raise connection_failed(
            f"All connection attempts failed after multiple retries. ({attempts} attempts to {self.uri}; last: {last})",
            last,
        ) from last

    @property
    def close_code(self) -> WSCloseCode | int | None:
        """The close code the server sent when it closed the connection (None until then)."""
        listener = self._listener
        return None if listener is None else listener.close_code

    @property
    def is_connected(self) -> bool:
        """True while connected."""
        return self.state is ConnectionState.CONNECTED

    def _require_connection(self, what: str) -> WSTransport:
        transport = self._transport
        if transport is None or self.state is not ConnectionState.CONNECTED:
            raise ConnectionClosedError(f"Cannot {what}: client is not connected.")
        return transport

    # ------------------------------------------------------------------ incoming

    def _on_message(self, payload: bytes) -> None:
        packet = decode_packet(payload, False)
        rpc = packet.rpc
        if packet.source is _RPC and type(rpc) is RPCResponse:
            call_id = rpc.call_id
            queue = self._streams.get(call_id)
            if queue is not None:  # a stream's chunk, or an error answered before it started
                queue.put_nowait(rpc)
                return
            future = self._pending.pop(call_id, None)
            if future is not None and not future.done():
                future.set_result(rpc)
            return
        if self.on_receive_callback is not None:
            self._inbox.append(packet)
            if not self._receiving:
                self._receiving = True
                self._receive_task = asyncio.get_running_loop().create_task(self._drain())
            return
        self._packet_queue.put_nowait(packet)
        if not self._paused and self._packet_queue.qsize() >= self.max_packet_qsize and self._transport is not None:
            self._paused = True
            self._transport.underlying_transport.pause_reading()

    async def _drain(self) -> None:
        callback = self.on_receive_callback
        try:
            while self._inbox and callback is not None:
                packet = self._inbox.pop(0)
                try:
                    await callback(packet)
                except Exception:
                    self.logger.exception("on_receive callback raised")
        finally:
            self._receiving = False

    def _on_gone(self, listener: _ClientListener) -> None:
        if listener is not self._listener or self._transport is None:
            return
        self._transport = None
        if self.state is ConnectionState.CONNECTED:
            self.state = ConnectionState.DISCONNECTED
        error = ConnectionClosedError(f"Connection to {self.uri} closed (code {listener.close_code}).")
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        for queue in self._streams.values():
            queue.put_nowait(_CLOSED)
        self._packet_queue.put_nowait(_CLOSED)

    # ------------------------------------------------------------------ outgoing

    def send(self, data: Any) -> None:
        """Send ``data`` as a CUSTOM packet (or a :class:`Packet` as is)."""
        transport = self._require_connection("send data")
        payload = encode_packet(data, False) if isinstance(data, Packet) else encode_push(_CUSTOM, data, None, False)
        write_message(transport, payload)

    async def send_rpc(
        self,
        method_name: str,
        /,
        *args: Any,
        raise_on_rate_limit: bool = False,
        timeout: float | None = 30.0,
        **kwargs: Any,
    ) -> RPCResponse:
        """Call ``method_name(*args, **kwargs)`` on the server and wait for the reply.

        Returns the :class:`RPCResponse`: ``.data`` (or ``.response``) is the result;
        on failure ``.error`` holds the :class:`RPCErrorCode` and ``.response`` the
        message. ``raise_on_rate_limit`` and ``timeout`` are not sent to the server.

        Raises:
            ConnectionClosedError: not connected, or the connection dropped before the reply.
            RPCTimeoutError: no reply within ``timeout`` seconds.
            RateLimitError: rate limited and ``raise_on_rate_limit`` is True.
        """
        transport = self._require_connection("send RPC")
        call_id = generate_uuid()
        future: asyncio.Future[RPCResponse] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            write_message(transport, encode_request(method_name, args, kwargs, call_id, False))
            if timeout is None:
                response = await future
            else:
                response = await asyncio.wait_for(future, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise RPCTimeoutError(f"RPC '{method_name}' got no response within {timeout} seconds.") from None
        finally:
            self._pending.pop(call_id, None)
        if raise_on_rate_limit and response.error == RPCErrorCode.RATE_LIMIT_EXCEEDED:
            raise RateLimitError(f"Rate limit exceeded for method '{method_name}'")
        return response

    async def stream_rpc(
        self,
        method_name: str,
        /,
        *args: Any,
        raise_on_rate_limit: bool = True,
        **kwargs: Any,
    ) -> AsyncGenerator[RPCResponse, None]:
        """Call a streaming RPC method and iterate over its chunks.

        Each item is an :class:`RPCResponse` whose ``.data`` is one yielded value.
        An error reply is yielded once and ends the iteration. Leaving the loop
        early sends ``__abort__`` and the server cancels the generator.

        Raises:
            ConnectionClosedError: the connection dropped mid-stream.
            RateLimitError: rate limited (unless ``raise_on_rate_limit=False``).
        """
        transport = self._require_connection("send RPC")
        call_id = generate_uuid()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[call_id] = queue
        finished = False
        try:
            write_message(transport, encode_request(method_name, args, kwargs, call_id, False))
            while True:
                item = await queue.get()
                if item is _CLOSED:
                    finished = True
                    raise ConnectionClosedError(f"Connection closed during stream '{method_name}'.")
                if item.error is not None or not item.is_stream:
                    finished = True
                    if item.error == RPCErrorCode.RATE_LIMIT_EXCEEDED and raise_on_rate_limit:
                        raise RateLimitError(f"Rate limit exceeded for method '{method_name}'")
                    yield item
                    return
                if item.is_end:
                    finished = True
                    return
                yield item
        finally:
            self._streams.pop(call_id, None)
            if not finished and self._transport is not None and self.state is ConnectionState.CONNECTED:
                write_message(self._transport, encode_request("__abort__", (call_id,), {}, generate_uuid(), False))

    async def recv(self, timeout: float | None = 30) -> Packet[Any]:
        """Next pushed packet (custom, channel or broadcast).

        Raises:
            ConnectionClosedError: the connection is closed and nothing is buffered.
            ReceiveTimeoutError: nothing arrived within ``timeout`` seconds.
        """
        queue = self._packet_queue
        if queue.empty() and self.state is not ConnectionState.CONNECTED:
            raise ConnectionClosedError("Cannot receive data: client is not connected.")
        try:
            item = await (queue.get() if timeout is None else asyncio.wait_for(queue.get(), timeout))
        except (asyncio.TimeoutError, TimeoutError):
            raise ReceiveTimeoutError(f"Receive operation timed out after {timeout} seconds.") from None
        if item is _CLOSED:
            raise ConnectionClosedError("Connection closed.")
        if self._paused and queue.qsize() <= self.max_packet_qsize // 2 and self._transport is not None:
            self._paused = False
            self._transport.underlying_transport.resume_reading()
        return item  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Close the connection (code 1000) and wait until it is down."""
        transport = self._transport
        self.state = ConnectionState.CLOSED
        if transport is not None:
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK, b"Client is closing the connection.")
            transport.disconnect()
            try:
                await asyncio.wait_for(transport.wait_disconnected(), 5.0)
            except (asyncio.TimeoutError, TimeoutError):
                transport.disconnect(False)
            if self._listener is not None:
                self._on_gone(self._listener)
        task = self._receive_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            await asyncio.wait([task], timeout=5.0)

    async def __aenter__(self) -> WebSocketClient:
        if self.state is not ConnectionState.CONNECTED:
            await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
