"""Worker processes sharing one port (SO_REUSEPORT), joined by the Redis backplane."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import AsyncExitStack

import pytest
from redis_server import NodeProcess, RedisServer, free_port, redis_available

from webshocket import ReceiveTimeoutError, WebSocketClient
from webshocket.workers import current_worker, serve_workers

pytestmark = pytest.mark.skipif(not redis_available(), reason="redis-server is not installed")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone (reaped between open and read: ESRCH)
        return False


async def wait_gone(*pids: int, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(alive(pid) for pid in pids):
        assert loop.time() < deadline, f"processes {pids} still running"
        await asyncio.sleep(0.05)


async def clients_by_worker(
    stack: AsyncExitStack,
    uri: str,
    *,
    wanted: int = 2,
    avoid: frozenset[int] | set[int] = frozenset(),
    attempts: int = 60,
) -> dict[int, WebSocketClient]:
    """Connect until clients sit on ``wanted`` distinct worker pids not in ``avoid``; one client per pid."""
    found: dict[int, WebSocketClient] = {}
    for _ in range(attempts):
        client = WebSocketClient(uri)
        await client.connect()
        stack.push_async_callback(client.close)
        pid = (await client.send_rpc("pid")).data
        if pid not in avoid:
            found.setdefault(pid, client)
        if len(found) >= wanted:
            return found
        await asyncio.sleep(0.01)
    raise AssertionError(f"connections landed on {sorted(found)} only")


async def test_workers_share_one_port_and_pubsub_crosses_them(redis_server: RedisServer) -> None:
    port = free_port()
    node = NodeProcess("--redis", redis_server.url, "--prefix", "w:", "--workers", "2", "--port", str(port))
    node.start()
    try:
        assert node.port == port
        async with AsyncExitStack() as stack:
            by_pid = await clients_by_worker(stack, node.uri)
            (pid_a, on_a), (pid_b, on_b) = by_pid.items()
            assert node.process is not None and node.process.pid not in by_pid
            assert (await on_a.send_rpc("loop")).data == (await on_b.send_rpc("loop")).data == "uvloop.Loop"
            assert (await on_a.send_rpc("join", "w.1")).data is True
            await on_b.send_rpc("say", "w.1", "across")
            packet = await on_a.recv(timeout=3)
            assert (packet.channel, packet.data) == ("w.1", "across")
            await on_a.send_rpc("shout", "to all")
            assert (await on_b.recv(timeout=3)).data == "to all"
            assert (await on_a.recv(timeout=3)).data == "to all"
            with pytest.raises(ReceiveTimeoutError):
                await on_a.recv(timeout=0.3)
        assert node.stop(signal.SIGTERM) == 0
        await wait_gone(pid_a, pid_b)
        with socket.socket() as sock:  # the port is free again
            sock.bind(("127.0.0.1", port))
    finally:
        node.stop()


async def test_a_dead_worker_is_restarted_and_port_zero_works() -> None:
    node = NodeProcess("--workers", "2")
    node.start()
    try:
        assert node.port != 0
        async with AsyncExitStack() as stack:
            first = set(await clients_by_worker(stack, node.uri))
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        await wait_gone(victim)
        async with AsyncExitStack() as stack:  # a new worker serves next to the survivor
            replacement = await clients_by_worker(stack, node.uri, wanted=1, avoid=first, attempts=300)
        assert set(replacement) - first
        assert node.stop(signal.SIGINT) == 0
        await wait_gone(*first, *replacement)
    finally:
        node.stop()


async def test_workers_die_with_their_parent() -> None:
    node = NodeProcess("--workers", "2")
    node.start()
    try:
        async with AsyncExitStack() as stack:
            pids = set(await clients_by_worker(stack, node.uri))
        node.stop(signal.SIGKILL)
        await wait_gone(*pids)
    finally:
        node.stop()


def test_worker_start_failure_is_reported() -> None:
    node = NodeProcess("--redis", f"redis://127.0.0.1:{free_port()}/0", "--workers", "2")
    with pytest.raises(RuntimeError, match=r"worker \d failed to start: ConnectionFailedError: cannot reach Redis"):
        node.start()


async def test_serve_workers_needs_no_running_loop_and_a_worker() -> None:
    with pytest.raises(RuntimeError, match="outside of a running event loop"):
        serve_workers(lambda: None, 2, host="127.0.0.1", port=0)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="at least 1"):
        serve_workers(lambda: None, 0, host="127.0.0.1", port=0)  # type: ignore[arg-type,return-value]
    assert current_worker() is None
