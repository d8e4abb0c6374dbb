"""Per-connection session state, connection identity, pushes and lifecycle hooks over real sockets."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from helpers import connected_client, raw_connect, running_server, uri_of, wait_until

import webshocket
from webshocket import (
    ClientConnection,
    ConnectionState,
    Packet,
    PacketSource,
    WebSocketClient,
    WebSocketHandler,
    WebSocketServer,
    rpc_method,
)

Conn = ClientConnection[Any]


class SessionHandler(WebSocketHandler[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.received: dict[str, list[Any]] = {}
        self.disconnected: list[dict[str, Any]] = []

    async def on_connect(self, connection: Conn) -> None:
        await asyncio.sleep(0.2)
        connection.ready = "yes"
        connection.send("welcome")

    async def on_receive(self, connection: Conn, packet: Packet[Any]) -> None:
        if isinstance(packet.data, int) and packet.data % 3 == 0:
            await asyncio.sleep(0.002)  # a slow packet must not let later ones overtake it
        self.received.setdefault(connection.uid.hex, []).append((packet.source, packet.data))

    async def on_disconnect(self, connection: Conn) -> None:
        self.disconnected.append(
            {
                "uid": connection.uid.hex,
                "state": dict(connection.session_state),
                "subscribed": connection.subscribed_channel,
                "connected": connection.is_connected,
                "in_clients": connection in self.clients,
            }
        )

    @rpc_method()
    async def whoami(self, connection: Conn) -> str:
        return connection.uid.hex

    @rpc_method()
    async def read_ready(self, connection: Conn) -> Any:
        return connection.session_state.get("ready")

    @rpc_method()
    async def set_name(self, connection: Conn, name: str) -> list[Any]:
        connection.username = name
        connection["visits"] = connection.session_state.get("visits", 0) + 1
        return [connection["username"], connection.visits, dict(connection.session_state)]

    @rpc_method()
    async def get_state(self, connection: Conn) -> dict[str, Any]:
        return dict(connection.session_state)

    @rpc_method()
    async def join(self, connection: Conn, channel: str) -> None:
        connection.subscribe(channel)


async def server_conn(server: WebSocketServer[Any], client: WebSocketClient) -> Conn:
    uid = (await client.send_rpc("whoami")).data
    matches = [c for c in server.clients if c.uid.hex == uid]
    assert len(matches) == 1
    return matches[0]


async def welcomed(client: WebSocketClient) -> None:
    packet = await client.recv(timeout=2)
    assert (packet.source, packet.data) == (PacketSource.CUSTOM, "welcome")


# ---------------------------------------------------------------------------- session state


async def test_attribute_and_item_access_share_the_session_state() -> None:
    async with running_server(SessionHandler) as server, connected_client(server) as client:
        name, visits, state = (await client.send_rpc("set_name", "x")).data
        assert (name, visits) == ("x", 1)
        assert state == {"ready": "yes", "username": "x", "visits": 1}
        conn = await server_conn(server, client)
        assert conn.username == "x"
        assert conn["username"] == "x"
        conn["k"] = [1, 2]
        assert conn.k == [1, 2]
        assert "k" in conn
        assert conn.session_state == {"ready": "yes", "username": "x", "visits": 1, "k": [1, 2]}
        del conn.username
        del conn["k"]
        assert conn.session_state == {"ready": "yes", "visits": 1}
        assert "k" not in conn
        with pytest.raises(KeyError):
            conn["username"]
        with pytest.raises(AttributeError):
            _ = conn.username
        with pytest.raises(AttributeError):
            del conn.username
        with pytest.raises(KeyError):
            del conn["username"]
        assert (await client.send_rpc("get_state")).data == {"ready": "yes", "visits": 1}


async def test_state_is_per_connection_and_gone_with_it() -> None:
    async with running_server(SessionHandler) as server:
        alice = WebSocketClient(uri_of(server))
        await alice.connect()
        async with connected_client(server) as bob:
            await alice.send_rpc("set_name", "alice")
            await alice.send_rpc("set_name", "alice")
            await bob.send_rpc("set_name", "bob")
            assert (await alice.send_rpc("get_state")).data == {"ready": "yes", "username": "alice", "visits": 2}
            assert (await bob.send_rpc("get_state")).data == {"ready": "yes", "username": "bob", "visits": 1}
            old_uid = (await alice.send_rpc("whoami")).data
            await alice.close()
            await wait_until(lambda: len(server.clients) == 1, timeout=2.0)
            await alice.connect()  # the same client object reconnects: a new connection, empty state
            try:
                assert (await alice.send_rpc("whoami")).data != old_uid
                assert (await alice.send_rpc("get_state")).data == {"ready": "yes"}
                assert (await bob.send_rpc("get_state")).data == {"ready": "yes", "username": "bob", "visits": 1}
            finally:
                await alice.close()


async def test_uid_and_remote_address() -> None:
    async with running_server() as server:
        async with raw_connect(uri_of(server)) as first:
            conn1 = await asyncio.wait_for(server.accept(), 2)
            async with raw_connect(uri_of(server)) as second:
                conn2 = await asyncio.wait_for(server.accept(), 2)
                assert isinstance(conn1.uid, uuid.UUID)
                assert isinstance(conn2.uid, uuid.UUID)
                assert conn1.uid != conn2.uid
                assert tuple(conn1.remote_address) == ("127.0.0.1", first.local_address[1])
                assert tuple(conn2.remote_address) == ("127.0.0.1", second.local_address[1])
                assert conn1.is_connected
                assert conn1.connection_state is ConnectionState.CONNECTED


# ---------------------------------------------------------------------------- pushes and on_receive


async def test_connection_send_delivers_custom_packets() -> None:
    async with running_server(SessionHandler) as server, connected_client(server) as client:
        await welcomed(client)
        conn = await server_conn(server, client)
        payloads: list[Any] = [{"a": 1}, [1, "two", 3.5], "text", b"\x00\xffbytes", 42, True]
        for payload in payloads:
            conn.send(payload)
        for payload in payloads:
            packet = await client.recv(timeout=2)
            assert packet.source is PacketSource.CUSTOM
            assert int(packet.source) == 4
            assert packet.data == payload
            assert packet.channel is None
            assert packet.rpc is None
        with pytest.raises(webshocket.ReceiveTimeoutError):
            await client.recv(timeout=0.2)
        await client.close()
        await wait_until(lambda: not conn.is_connected, timeout=2.0)
        with pytest.raises(webshocket.ConnectionClosedError):
            conn.send("too late")


async def test_on_receive_gets_non_rpc_packets_in_order() -> None:
    async with running_server(SessionHandler) as server, connected_client(server) as client:
        handler = server.handler
        assert isinstance(handler, SessionHandler)
        uid = (await client.send_rpc("whoami")).data
        for i in range(50):
            client.send(i)
        await wait_until(lambda: len(handler.received.get(uid, [])) >= 50, timeout=3.0)
        await asyncio.sleep(0.05)
        assert handler.received[uid] == [(PacketSource.CUSTOM, i) for i in range(50)]
        # RPC requests never reach on_receive
        await client.send_rpc("get_state")
        client.send(Packet(PacketSource.BROADCAST, data="as-is"))
        await wait_until(lambda: len(handler.received[uid]) == 51, timeout=2.0)
        assert handler.received[uid][-1] == (PacketSource.BROADCAST, "as-is")


async def test_on_connect_finishes_before_the_first_message_is_handled() -> None:
    async with running_server(SessionHandler) as server:
        client = WebSocketClient(uri_of(server))
        await client.connect()
        try:
            client.send(-1)  # sent at once, before on_connect (sleeping 0.2 s) is done
            assert (await client.send_rpc("read_ready", wait_timeout=2)).data == "yes"
            await welcomed(client)
            handler = server.handler
            assert isinstance(handler, SessionHandler)
            uid = (await client.send_rpc("whoami")).data
            await wait_until(lambda: handler.received.get(uid) == [(PacketSource.CUSTOM, -1)], timeout=2.0)
        finally:
            await client.close()


async def test_on_disconnect_sees_state_after_subscriptions_are_removed() -> None:
    async with running_server(SessionHandler) as server:
        handler = server.handler
        assert isinstance(handler, SessionHandler)
        async with connected_client(server) as client:
            await client.send_rpc("set_name", "carol")
            await client.send_rpc("join", "room")
            uid = (await client.send_rpc("whoami")).data
        await wait_until(lambda: len(handler.disconnected) == 1, timeout=2.0)
        record = handler.disconnected[0]
        assert record["uid"] == uid
        assert record["state"] == {"ready": "yes", "username": "carol", "visits": 1}
        assert record["subscribed"] == set()
        assert record["connected"] is False
        assert record["in_clients"] is False
        assert "room" not in server.channels


# ---------------------------------------------------------------------------- failing hooks


class FaultyHandler(WebSocketHandler[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.calls = {"connect": 0, "receive": 0, "disconnect": 0}

    async def on_connect(self, connection: Conn) -> None:
        self.calls["connect"] += 1
        raise RuntimeError("on_connect exploded")

    async def on_receive(self, connection: Conn, packet: Packet[Any]) -> None:
        self.calls["receive"] += 1
        raise RuntimeError("on_receive exploded")

    async def on_disconnect(self, connection: Conn) -> None:
        self.calls["disconnect"] += 1
        raise RuntimeError("on_disconnect exploded")

    @rpc_method()
    async def ping(self, connection: Conn) -> str:
        return "pong"


async def test_exceptions_in_hooks_are_logged_and_do_not_crash(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="webshocket")
    async with running_server(FaultyHandler) as server:
        handler = server.handler
        assert isinstance(handler, FaultyHandler)
        async with connected_client(server) as survivor:
            async with connected_client(server) as victim:
                assert (await victim.send_rpc("ping", wait_timeout=2)).data == "pong"
                victim.send("first")
                victim.send("second")
                await wait_until(lambda: handler.calls["receive"] == 2, timeout=2.0)
                assert (await victim.send_rpc("ping", wait_timeout=2)).data == "pong"
                assert victim.is_connected
            await wait_until(lambda: handler.calls["disconnect"] == 1, timeout=2.0)
            assert (await survivor.send_rpc("ping", wait_timeout=2)).data == "pong"
            async with connected_client(server) as newcomer:
                assert (await newcomer.send_rpc("ping", wait_timeout=2)).data == "pong"
            assert handler.calls["connect"] == 3
            assert server.state is webshocket.ServerState.SERVING
    logged = [str(r.exc_info[1]) for r in caplog.records if r.exc_info is not None and r.exc_info[1] is not None]
    assert logged.count("on_connect exploded") == 3
    assert logged.count("on_receive exploded") == 2
    assert logged.count("on_disconnect exploded") == 3


@pytest.mark.parametrize(
    ("first", "listed", "raises"),
    [
        ("server", False, False),  # the server closed it: dropped, as in 0.5.x
        ("server", True, False),
        ("client", True, False),  # closing, still in clients: a loop over clients goes on
        ("client", False, True),  # gone: code that kept it across an await learns it
        (None, False, True),  # dropped without a close frame
        (None, True, False),
    ],
)
def test_send_on_a_closed_connection_drops_the_data_or_raises(first: str | None, listed: bool, raises: bool) -> None:
    """docs/migration.md 3.12, on the facade alone (an engine that says closed)."""
    from types import SimpleNamespace

    from webshocket._fanout import Sink

    handshake = None
    if first is not None:
        handshake = SimpleNamespace(recv=object(), sent=object(), recv_then_sent=first == "client")
    transport = SimpleNamespace(close_handshake=handshake, underlying_transport=None)
    engine = SimpleNamespace(is_open=False, transport=transport, hub=SimpleNamespace(clients=set()))
    conn = ClientConnection(engine, Sink(transport, False))  # type: ignore[arg-type]
    if listed:
        engine.hub.clients.add(conn)
    if raises:
        with pytest.raises(webshocket.ConnectionClosedError):
            conn.send("x")
    else:
        assert conn.send("x") is None
