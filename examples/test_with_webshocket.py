"""Testing a handler with ``webshocket.testing``: ``pytest examples/test_with_webshocket.py``.

Needs pytest and pytest-asyncio in ``auto`` mode (``asyncio_mode = "auto"`` in the pytest
configuration; this repository's pyproject.toml sets it). README, "Testing your handlers",
shows this file; tests/test_testing.py runs it as a user's project would.
"""

import webshocket
from webshocket.testing import assert_silent, serve

pytest_plugins = ["webshocket.testing"]  # the fixtures; in a project, once, in the top-level conftest.py


class Chat(webshocket.WebSocketHandler):
    @webshocket.rpc_method()
    async def join(self, connection: webshocket.ClientConnection, room: str, nick: str) -> None:
        connection.nick = nick
        connection.subscribe(room, literal=True)

    @webshocket.rpc_method()
    async def say(self, connection: webshocket.ClientConnection, room: str, text: str) -> None:
        self.publish(room, {"from": connection.nick, "text": text}, exclude=(connection,))


async def test_a_message_reaches_the_room_but_not_its_sender() -> None:
    async with serve(Chat) as server, server.client() as ann, server.client() as bob:
        await ann.send_rpc("join", "lobby", "ann")
        await bob.send_rpc("join", "lobby", "bob")
        await ann.send_rpc("say", "lobby", "hi")
        packet = await bob.next_push(channel="lobby")  # waits up to 5 s; fails the test if none comes
        assert packet.data == {"from": "ann", "text": "hi"}
        await assert_silent(ann)  # no echo: nothing reaches the sender within 0.3 s


async def test_a_browser_in_the_room(webshocket_server, webshocket_client, webshocket_json_client) -> None:
    server = await webshocket_server(Chat, max_connection=10)  # any server option
    ann = await webshocket_client(server)  # the package's (msgpack) client
    web = await webshocket_json_client(server)  # the JSON dialect, as a browser speaks it
    reply = await web.call("join", "lobby", "web")
    assert reply["error"] is None
    await ann.send_rpc("join", "lobby", "ann")
    await ann.send_rpc("say", "lobby", "hello")
    push = await web.next_push(channel="lobby")
    assert push["data"] == {"from": "ann", "text": "hello"}
    # the servers and clients the fixtures made are closed after the test
