"""A real browser as a client: Debian's headless Chromium, driven by Playwright for Python.

Pages are served over http from 127.0.0.1 (a real origin: Chromium blocks ``ws://127.0.0.1``
from ``about:blank`` by its local-network-access checks) and connect to live servers on
ephemeral ports. Playwright's own browser downloads are never used: ``chromium`` comes from
apt (``apt-get install chromium``), ``playwright`` from PyPI. Without either, the tests fail.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import HOST, running_server, uri_of

from webshocket import ClientConnection, ClientType, Request, WebSocketClient, WebSocketHandler, rpc_method

try:
    from playwright.async_api import BrowserContext, ConsoleMessage, Page, async_playwright, expect
except ImportError as exc:  # reported by the fixture, as a failure
    PLAYWRIGHT_IMPORT_ERROR: str | None = str(exc)
else:
    PLAYWRIGHT_IMPORT_ERROR = None

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SERVE_PY = ROOT / "examples" / "browser" / "serve.py"
README_URL_PLACEHOLDER = "ws://your-tunnel.url"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls home: this machine's network is closed
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000


def chromium_executable() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "Chromium is not installed: run `apt-get install -y chromium` (scripts/install.sh does). "
        "The browser tests drive Debian's chromium, never a `playwright install` download.",
        pytrace=False,
    )


@dataclass
class Browser:
    """One Chromium page, with everything it logged."""

    page: Page
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        self.console.append(message.text)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A page of a fresh headless Chromium (its own profile), closed afterwards."""
    if PLAYWRIGHT_IMPORT_ERROR is not None:
        pytest.fail(
            f"Playwright for Python is not installed ({PLAYWRIGHT_IMPORT_ERROR}): run `pip install playwright` "
            "(or `pip install -e '.[test]'`); do not run `playwright install`, the tests use Debian's chromium.",
            pytrace=False,
        )
    executable = chromium_executable()
    with tempfile.TemporaryDirectory(prefix="webshocket-chromium-") as profile:
        async with async_playwright() as playwright:
            context: BrowserContext = await playwright.chromium.launch_persistent_context(
                profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS, timeout=30_000
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                session = Browser(page)
                page.on("console", session.on_console)
                page.on("pageerror", lambda error: session.errors.append(str(error)))
                yield session
            finally:
                await context.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as session:
        yield session


@contextmanager
def static_site(files: dict[str, tuple[str, bytes]]) -> Iterator[str]:
    """Serve ``{path: (content type, body)}`` over http on 127.0.0.1; yields the base URL."""

    class Site(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = files.get(self.path.split("?")[0])
            if found is None:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            content_type, body = found
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer((HOST, 0), Site)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def readme_javascript() -> str:
    """The README's JavaScript example, exactly as the README has it."""
    blocks = re.findall(r"^```javascript\n(.*?)^```", README.read_text(encoding="utf-8"), re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1, f"expected one ```javascript block in README.md, found {len(blocks)}"
    script: str = blocks[0]
    assert f'new WebSocket("{README_URL_PLACEHOLDER}")' in script, "the README example no longer uses the placeholder"
    return script


class AddHandler(WebSocketHandler[Any]):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, int]] = []
        self.client_types: list[ClientType] = []

    async def on_connect(self, connection: ClientConnection[Any]) -> None:
        self.client_types.append(connection.client_type)

    @rpc_method(alias_name="add")
    async def add(self, connection: ClientConnection[Any], a: int, b: int) -> int:
        self.calls.append((a, b))
        return a + b


# ---------------------------------------------------------------------------- README JavaScript example


async def test_readme_javascript_example_in_chromium(browser: Browser) -> None:
    script = readme_javascript()
    async with running_server(AddHandler) as server:
        handler = server.handler
        assert isinstance(handler, AddHandler)
        page = b'<!doctype html><link rel="icon" href="data:,"><script src="/readme.js"></script>'
        files = {
            "/": ("text/html; charset=utf-8", page),
            "/readme.js": ("text/javascript", script.replace(README_URL_PLACEHOLDER, uri_of(server)).encode()),
        }
        with static_site(files) as site:
            async with browser.page.expect_console_message(
                lambda message: message.text.startswith("Result:"), timeout=TIMEOUT_MS
            ) as result:
                await browser.page.goto(f"{site}/")
            assert (await result.value).text == "Result: 30", browser.console
        assert handler.calls == [(10, 20)]
        assert handler.client_types == [ClientType.GENERIC]  # no subprotocol asked: the JSON dialect
    assert browser.console == ["Result: 30"]
    assert browser.errors == []


# ---------------------------------------------------------------------------- examples/browser/index.html


@asynccontextmanager
async def serve_py() -> AsyncIterator[tuple[str, str, asyncio.subprocess.Process]]:
    """Run examples/browser/serve.py; yields (page URL, websocket URL, process)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVE_PY), "--port", "0", "--ws-port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("open "):
            line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
            if not line:
                stderr = await proc.stderr.read() if proc.stderr else b""
                pytest.fail(f"serve.py exited early: {''.join(lines)}{stderr.decode()}")
            lines.append(line)
        match = re.match(r"open (http://\S+/\?ws=(ws://\S+)) ", lines[-1])
        assert match is not None, lines
        yield match.group(1), match.group(2), proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_browser_example_page_rpc_subscribe_and_pushes(browser: Browser) -> None:
    page = browser.page
    async with serve_py() as (page_url, ws_url, proc):
        await page.goto(page_url)
        await expect(page.locator("#url")).to_have_text(ws_url)
        await expect(page.locator("#sum")).to_have_text("30", timeout=TIMEOUT_MS)  # RPC add(10, 20)
        await expect(page.locator("#status")).to_have_text("connected")
        send = page.locator("#send")
        await expect(send).to_be_enabled(timeout=TIMEOUT_MS)  # join done: subscribed to "lobby"
        messages = page.locator("#messages li")
        await expect(messages).to_have_count(0)

        # the button: an RPC whose publish comes back to the page through its subscription
        await send.click()
        await expect(messages).to_have_text(["[lobby] browser: hello from the browser"], timeout=TIMEOUT_MS)

        # a Python client in the same lobby: its lines appear in the page, the page's lines reach it
        async with WebSocketClient(ws_url) as python:
            assert (await python.send_rpc("join", "python")).error is None
            assert (await python.send_rpc("say", "<b>hi</b> from python")).error is None
            await expect(messages).to_have_text(
                ["[lobby] browser: hello from the browser", "[lobby] python: <b>hi</b> from python"],
                timeout=TIMEOUT_MS,
            )
            assert await page.locator("#messages b").count() == 0  # rendered as text, not as HTML
            assert (await python.recv(timeout=5)).data == {"from": "python", "text": "<b>hi</b> from python"}
            await page.locator("#text").fill("second line")
            await send.click()
            packet = await python.recv(timeout=5)
            assert (packet.channel, packet.data) == ("lobby", {"from": "browser", "text": "second line"})
            await expect(messages).to_have_count(3, timeout=TIMEOUT_MS)

        # stopping the server closes the page's socket with 1001 (going away): the client reconnects
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, stderr.decode()
        assert "stopped" in stdout.decode()
        await expect(page.locator("#status")).to_have_text("reconnecting (closed with 1001)…", timeout=TIMEOUT_MS)
        await expect(send).to_be_disabled()
    assert browser.errors == []


# ---------------------------------------------------------------------------- the handshake: origins and tokens

PROBE_PAGE = b"""<!doctype html><link rel="icon" href="data:,"><script>
window.probe = (url, protocols) => new Promise((resolve) => {
  const ws = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols);
  const log = [];
  ws.onopen = () => {
    log.push("open " + ws.protocol);
    const rpc = {type: "request", method: "whoami", args: [], kwargs: {}, call_id: "1"};
    ws.send(JSON.stringify({source: 5, rpc: rpc}));
  };
  ws.onmessage = async (event) => {
    log.push("reply " + JSON.parse(await event.data.text()).rpc.response);
    ws.close();
  };
  ws.onerror = () => log.push("error");
  ws.onclose = (event) => { log.push("close " + event.code); resolve(log); };
});
</script>"""


class CookieSession(WebSocketHandler[Any]):
    """Trusts the browser's cookie, as a cookie-authenticated application does."""

    def __init__(self) -> None:
        super().__init__()
        self.handshakes: list[str | None] = []
        self.connected: list[tuple[str | None, dict[str, str]]] = []

    def on_handshake(self, request: Request) -> dict[str, Any]:
        self.handshakes.append(request.origin)
        return {"user": request.cookies.get("session", "anonymous")}

    async def on_connect(self, connection: ClientConnection[Any]) -> None:
        self.connected.append((connection.request.origin, dict(connection.request.cookies)))

    @rpc_method()
    async def whoami(self, connection: ClientConnection[Any]) -> str:
        return str(connection.user)


async def probe(page: Page, url: str, protocols: list[str] | None = None) -> list[str]:
    """Open ``new WebSocket(url[, protocols])`` in ``page``, call ``whoami``; what the page saw."""
    result: list[str] = await page.evaluate(
        "([url, protocols]) => probe(url, protocols ?? undefined)", [url, protocols]
    )
    return result


async def test_cross_site_websocket_hijacking_is_refused_by_allowed_origins(browser: Browser) -> None:
    page = browser.page
    with static_site({"/": ("text/html", PROBE_PAGE)}) as good, static_site({"/": ("text/html", PROBE_PAGE)}) as evil:
        # the victim's session cookie for 127.0.0.1: cookies ignore ports, so the attacker's page
        # (another origin: another port) makes the browser send it with its WebSocket too
        await page.context.add_cookies([{"name": "session", "value": "victim", "url": good}])

        async with running_server(CookieSession) as server:  # the default, as 0.5.x: every origin
            await page.goto(f"{evil}/")
            assert await probe(page, uri_of(server)) == ["open ", "reply victim", "close 1000"]  # hijacked
            assert server.handler.connected == [(evil, {"session": "victim"})]  # Chromium's Origin: the page's

        async with running_server(CookieSession, allowed_origins=[good]) as server:
            await page.goto(f"{evil}/")
            assert await probe(page, uri_of(server)) == ["error", "close 1006"]
            assert server.handler.handshakes == [] and server.handler.connected == []  # refused before the hook
            await page.goto(f"{good}/")
            assert await probe(page, uri_of(server)) == ["open ", "reply victim", "close 1000"]
            assert server.handler.connected == [(good, {"session": "victim"})]
    assert browser.errors == []


async def test_browser_token_in_query_string_or_subprotocol(browser: Browser) -> None:
    pytest.importorskip("jwt", reason="PyJWT is the jwt extra: pip install 'webshocket[jwt]'")
    spec = importlib.util.spec_from_file_location("examples_auth", ROOT / "examples" / "auth.py")
    assert spec is not None and spec.loader is not None
    auth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(auth)
    page = browser.page
    with static_site({"/": ("text/html", PROBE_PAGE)}) as site:
        async with running_server(auth.AuthHandler, allowed_origins=[site]) as server:
            await page.goto(f"{site}/")
            url = uri_of(server)
            alice, bob = auth.issue_token("alice", 60), auth.issue_token("bob", 60)
            assert await probe(page, f"{url}/?token={alice}") == ["open ", "reply alice", "close 1000"]
            # the token as a second subprotocol: the server answers webshocket.json, never the token
            assert await probe(page, url, ["webshocket.json", f"bearer.{bob}"]) == [
                "open webshocket.json",
                "reply bob",
                "close 1000",
            ]
            # alone, the token entry cannot work: Chromium fails a handshake whose answer names no subprotocol
            assert await probe(page, url, [f"bearer.{bob}"]) == ["error", "close 1006"]
            expired = auth.issue_token("carol", -5)
            assert await probe(page, f"{url}/?token={expired}") == ["error", "close 1006"]  # HTTP 401
            assert await probe(page, url) == ["error", "close 1006"]  # no token
    assert browser.errors == []
