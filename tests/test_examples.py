"""The examples in examples/ run as a user runs them (``python examples/<name>.py``) and do what they say."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> list[str]:
    """Run ``examples/<name>``; check it exits 0 by itself, cleanly; return its stdout lines."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines, f"{name} printed nothing"
    assert re.fullmatch(r"\w+ server on ws://127\.0\.0\.1:\d+", lines[0]), lines[0]
    return lines


def assert_in_order(lines: list[str], expected: list[str]) -> None:
    """Each expected line appears in ``lines``, in this order."""
    position = 0
    for line in expected:
        try:
            position = lines.index(line, position) + 1
        except ValueError:
            pytest.fail(f"missing (or out of order): {line!r}\n--- output:\n" + "\n".join(lines))


def matching(pattern: str, lines: list[str]) -> list[re.Match[str]]:
    """The lines that match ``pattern`` whole."""
    return [match for match in map(re.compile(pattern).fullmatch, lines) if match]


def test_chat_example() -> None:
    lines = run_example("chat.py")
    assert_in_order(
        lines,
        [
            "alice says before joining -> ACCESS_DENIED",  # requires=Has("nick")
            "mod   -> watching chat.*",
            "alice -> welcome to lobby, alice",
            "mod   <- [chat.lobby] *: alice joined",  # the pattern subscriber sees the concrete channel
            "alice <- [chat.lobby] *: bob joined",
            "mod   <- [chat.lobby] *: bob joined",
            "carol joins '*' -> APPLICATION_ERROR | invalid room name '*'",  # client input never widens
            "mod   <- [chat.games] *: carol joined",
            "bob   <- [chat.lobby] alice: hi bob!",
            "mod   <- [chat.lobby] alice: hi bob!",
            "mod   <- [chat.games] carol: anyone for chess?",
            "carol <- [chat.games] mod: keep it friendly",
            "nothing else for: alice, bob, carol, mod",  # exclude=(sender,): no echoes, no other rooms
            "rooms and members: {'chat.games': 1, 'chat.lobby': 2}",
            "who is in bob's room: ['alice', 'bob']",  # presence, with each member's nickname
            "chat demo finished",
        ],
    )
    assert not any("unexpected" in line for line in lines), lines
    assert lines[-1] == "chat demo finished"


def test_streaming_example() -> None:
    lines = run_example("streaming.py")
    answer = "WebSockets keep one connection open , so the server can push every token the moment it exists ."
    assert_in_order(
        [line.rstrip() for line in lines],
        [
            f"answer: {answer}",
            "server: completed after 18 tokens",
            "aborted answer: WebSockets keep one connection open <stop>",
            f"next stream: {answer}",
            "server: completed after 18 tokens",
            "streaming demo finished",
        ],
    )
    [timing] = matching(r"(\d+) tokens, first after ([\d.]+)s, all after ([\d.]+)s", lines)
    count, first, total = int(timing.group(1)), float(timing.group(2)), float(timing.group(3))
    assert count == 18
    assert total >= 18 * 0.02 * 0.9, "the server sleeps 20 ms per token"
    assert first < total / 3, f"tokens did not arrive one by one: first after {first}s, all after {total}s"
    cancelled = matching(r"server: cancelled by the client after (\d+) tokens", lines)
    assert len(cancelled) == 1, lines  # the abort reached the server and cancelled the generator
    assert 5 <= int(cancelled[0].group(1)) < 18


def test_admin_example() -> None:
    lines = run_example("admin.py")
    denied = "ACCESS_DENIED: Access denied for RPC method"
    assert_in_order(
        lines,
        [
            f"anonymous online()      -> {denied} 'online'.",
            f"anonymous whoami()      -> {denied} 'whoami'.",
            "bob, wrong password     -> APPLICATION_ERROR: wrong user name or password",
            "bob login               -> 'user'",
            "bob whoami()            -> 'bob (user)'",
            f"bob online()            -> {denied} 'online'.",  # logged in, but not an admin
            f"bob announce()          -> {denied} 'announce'.",
            "alice login             -> 'admin'",
            "dave login              -> 'admin'",
            "alice online()          -> {'alice': 'admin', 'bob': 'user', 'dave': 'admin'}",
            "alice announce()        -> None",
            "alice got broadcast     -> alice: deploy at 17:00",
            "dave  got broadcast     -> alice: deploy at 17:00",
            "bob       got nothing    -> not an admin",  # broadcast(predicate=IsEqual("role", "admin"))
            "anonymous got nothing    -> not an admin",
            "dave kick('bob')        -> True",
            "bob still connected     -> False",
            "alice online()          -> {'alice': 'admin', 'dave': 'admin'}",
            "admin demo finished",
        ],
    )
    assert not any("got the admin broadcast" in line for line in lines), lines


def test_auth_example() -> None:
    pytest.importorskip("jwt", reason="examples/auth.py needs PyJWT: pip install 'webshocket[jwt]'")
    lines = run_example("auth.py")
    assert_in_order(
        lines,
        [
            "no token               -> refused: HTTP 401 A token is required: ?token=, a bearer.<token> subprotocol "
            "or Authorization.",
            "forged token           -> refused: HTTP 401 Invalid token.",
            "expired token          -> refused: HTTP 401 Token expired.",
            "token in query string  -> accepted as alice",
            "token as subprotocol   -> accepted as bob",
            "token in Authorization -> accepted as carol",
            "dave whoami()          -> dave",
            "erin refresh()         -> renewed",
            "erin refresh(mallory)  -> APPLICATION_ERROR: refresh refused: the token is for another user",
            "dave's token expired   -> closed by the server with 4401",
            "dave whoami() after    -> ConnectionClosedError (reconnect with a new token)",
            "erin whoami() after    -> erin (refreshed, still connected)",
            "auth demo finished",
        ],
    )


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


async def test_browser_serve_example() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "browser" / "serve.py"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        second = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        assert re.fullmatch(r"websocket server on ws://127\.0\.0\.1:\d+\n", first), first
        match = re.fullmatch(r"open (http://127\.0\.0\.1:\d+/)\?ws=(ws://[\d.:]+) \(Ctrl-C to stop\)\n", second)
        assert match is not None, second
        site, ws_url = match.groups()
        assert ws_url in first

        status, page = await asyncio.to_thread(http_get, f"{site}?ws={ws_url}")
        assert status == 200
        assert page == (EXAMPLES / "browser" / "index.html").read_text(encoding="utf-8")
        assert 'from "./webshocket-client/index.js"' in page  # the page uses the JavaScript client
        status, module = await asyncio.to_thread(http_get, f"{site}webshocket-client/index.js")
        assert status == 200 and "WebshocketClient" in module
        assert (await asyncio.to_thread(http_get, f"{site}serve.py"))[0] == 404  # only the page is served

        # what the page does, from a generic (JSON) client: add, join the lobby, say something
        async with ws_connect(ws_url, proxy=None, open_timeout=5) as ws:
            for call_id, method, args in [("1", "add", [10, 20]), ("2", "join", ["tester"]), ("3", "say", ["hi"])]:
                request = {"type": "request", "method": method, "args": args, "kwargs": {}, "call_id": call_id}
                await ws.send(json.dumps({"source": 5, "rpc": request}))
            packets = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(4)]
            replies = {p["rpc"]["call_id"]: p["rpc"] for p in packets if p["source"] == 5}
            assert replies["1"]["response"] == 30
            assert replies["2"]["error"] is None and replies["3"]["error"] is None
            assert [p for p in packets if p["source"] != 5] == [
                {"source": 2, "data": {"from": "tester", "text": "hi"}, "channel": "lobby"}
            ]

        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, stderr.decode()
        assert stdout.decode().strip() == "stopped"
        assert "Traceback" not in stderr.decode(), stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_recovery_example() -> None:
    lines = run_example("recovery.py")
    assert_in_order(
        lines,
        [
            "server: on_connect (a new session)",
            "client: watching eurusd",
            "network: cut",
            "client: connection lost",
            "client: reconnected, session recovered: True",
            "client: got 30 prices, in order and once each: True",
            "client: still eurusd (session state kept)",
        ],
    )
    assert lines.count("server: on_connect (a new session)") == 1  # the resume runs no application code
