"""The JavaScript client (``clients/js``) in headless Chromium, against our server.

The page imports the package's ES modules as they are (``clients/js/src``, no build step),
served over http from 127.0.0.1 with a page that exposes them as ``window.webshocket``; each
test drives a client in the page with ``page.evaluate`` and checks, from Python, what the
page and the server saw. Chromium and Playwright as in ``test_browser``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import REPO, running_server, uri_of
from test_browser import TIMEOUT_MS, Browser, chromium, static_site
from test_js_client import App, DropProxy, auth_example, auth_handler

from webshocket import Recovery

JS_SRC = REPO / "clients" / "js" / "src"  # loaded as they are: no node_modules, no build step
PAGE = b"""<!doctype html><link rel="icon" href="data:,">
<script type="module">
import * as webshocket from "/webshocket-client/index.js";
window.webshocket = webshocket;
</script>"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as session:
        yield session


def site_files() -> dict[str, tuple[str, bytes]]:
    files = {"/": ("text/html; charset=utf-8", PAGE)}
    for module in JS_SRC.glob("*.js"):
        files[f"/webshocket-client/{module.name}"] = ("text/javascript; charset=utf-8", module.read_bytes())
    return files


async def open_page(browser: Browser, site: str) -> None:
    await browser.page.goto(f"{site}/")
    await browser.page.wait_for_function("() => window.webshocket !== undefined", timeout=TIMEOUT_MS)


async def test_call_stream_abort_errors_and_pushes_in_chromium(browser: Browser) -> None:
    async with running_server(App) as server:
        with static_site(site_files()) as site:
            await open_page(browser, site)
            result: dict[str, Any] = await browser.page.evaluate(
                """async (url) => {
                  const { WebshocketClient, RPCError, TimeoutError } = window.webshocket;
                  const c = new WebshocketClient(url);  // the browser's own WebSocket
                  const out = { states: [] };
                  c.on("state", (state) => out.states.push(state));
                  await c.connect();
                  out.protocol = c.protocol;
                  out.recovered = c.recovered;
                  out.sum = await c.call("add", 10, 20);
                  out.kwargs = await c.callWith("echo", { args: ["é€😀"], kwargs: { k: [1, null] } });
                  out.chunks = await c.stream("ticks", 5).toArray();
                  try { await c.call("fail", "not here"); } catch (e) {
                    out.error = [e.name, e.code, e.codeName, e instanceof RPCError, String(e.response)];
                  }
                  try { await c.callWith("slow", { args: [5], timeout: 100 }); } catch (e) {
                    out.timeout = e instanceof TimeoutError;
                  }
                  const seen = [];
                  for await (const chunk of c.stream("forever", "in-chromium")) {
                    seen.push(chunk);
                    if (seen.length === 3) break;
                  }
                  out.seen = seen;
                  window.news = [];
                  c.onChannel("news", (data, packet) => window.news.push([packet.channel, data]));
                  window.broadcasts = [];
                  c.on("broadcast", (data) => window.broadcasts.push(data));
                  out.joined = await c.call("join", "news");
                  await c.call("publish", "news", { from: "page" });
                  window.client = c;
                  return out;
                }""",
                uri_of(server),
            )
            assert result["protocol"] == "webshocket.json"  # offered webshocket.json+session too; no recovery
            assert result["recovered"] is None
            assert result["states"] == ["connecting", "connected"]
            assert result["sum"] == 30
            assert result["kwargs"] == {"args": ["é€😀"], "kwargs": {"k": [1, None]}}
            assert result["chunks"] == [0, 1, 2, 3, 4]
            assert result["error"] == ["RPCError", -32001, "APPLICATION_ERROR", True, "not here"]
            assert result["timeout"] is True
            assert result["seen"] == [0, 1, 2]
            assert result["joined"] == ["news"]
            handler = server.handler
            assert isinstance(handler, App)
            for _ in range(200):  # the break sent __abort__: the server cancelled the generator
                if "cancelled in-chromium" in handler.events:
                    break
                await asyncio.sleep(0.02)
            assert "cancelled in-chromium" in handler.events

            server.publish("news", {"from": "python"})
            server.broadcast(["to", "all"])
            await browser.page.wait_for_function("() => window.news.length === 2 && window.broadcasts.length === 1")
            assert await browser.page.evaluate("window.news") == [
                ["news", {"from": "page"}],
                ["news", {"from": "python"}],
            ]
            assert await browser.page.evaluate("window.broadcasts") == [["to", "all"]]
            assert await browser.page.evaluate("window.client.close().then(() => window.client.state)") == "closed"
    assert browser.errors == []


async def test_session_resumes_in_chromium_every_message_once_in_order(browser: Browser) -> None:
    async with running_server(App, recovery=Recovery()) as server:
        proxy = DropProxy(server.port)
        port = await proxy.start()
        try:
            with static_site(site_files()) as site:
                await open_page(browser, site)
                await browser.page.evaluate(
                    """async (url) => {
                      const { WebshocketClient } = window.webshocket;
                      const fast = { retryInterval: 50, maxRetryInterval: 200, maxRetryAttempt: 50 };
                      const c = new WebshocketClient(url, fast);
                      window.got = [];
                      window.events = [];
                      c.onChannel("news", (data) => window.got.push(data));
                      c.on("disconnect", (code) => window.events.push(["disconnect", code]));
                      c.on("reconnect", (recovered) => window.events.push(["reconnect", recovered]));
                      await c.connect();
                      window.events.push(["connected", c.protocol, c.recovered]);
                      await c.call("join", "news");
                      window.client = c;
                    }""",
                    f"ws://127.0.0.1:{port}",
                )
                for value in range(1, 201):
                    if value == 80:
                        assert proxy.drop() == 1  # the page's link, cut without a close frame
                    server.publish("news", value)
                    await asyncio.sleep(0.003)
                await browser.page.wait_for_function("() => window.got.length >= 200", timeout=TIMEOUT_MS)
                await asyncio.sleep(0.2)  # nothing arrives twice
                assert await browser.page.evaluate("window.got") == list(range(1, 201))
                assert await browser.page.evaluate("window.events") == [
                    ["connected", "webshocket.json+session", False],
                    ["disconnect", 1006],
                    ["reconnect", True],
                ]
                assert await browser.page.evaluate("window.client.call('whoami')") == "user-1"  # same session
                assert server.handler.connects == 1
                await browser.page.evaluate("window.client.close()")
        finally:
            await proxy.close()
    assert browser.errors == []


async def test_token_auth_in_chromium(browser: Browser) -> None:
    auth = auth_example()
    async with running_server(auth_handler(), recovery=True) as server:
        with static_site(site_files()) as site:
            await open_page(browser, site)
            script = """async ([url, token, tokenIn]) => {
              const { WebshocketClient } = window.webshocket;
              const c = new WebshocketClient(url, { token, tokenIn, maxRetryAttempt: 1 });
              try {
                await c.connect();
              } catch (e) {
                return [e.name];
              }
              const who = await c.call("whoami");
              await c.close();
              return [c.protocol, who];
            }"""
            url = uri_of(server)
            # a bearer.<token> subprotocol: Chromium accepts the answer (a subprotocol it offered)
            assert await browser.page.evaluate(script, [url, auth.issue_token("alice", 60), "subprotocol"]) == [
                "webshocket.json+session",
                "alice",
            ]
            assert await browser.page.evaluate(script, [url, auth.issue_token("bob", 60), "query"]) == [
                "webshocket.json+session",
                "bob",
            ]
            for bad in (None, auth.issue_token("carol", -5)):
                assert await browser.page.evaluate(script, [url, bad, "subprotocol"]) == ["ConnectionFailedError"]
    assert browser.errors == []
