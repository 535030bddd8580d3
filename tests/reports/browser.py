"""A real headless Chromium (Debian's `chromium` package) driven over the Chrome DevTools protocol.

No npm, no downloads: the browser is started with a fresh profile and `--remote-debugging-port=0`, the port is
read from the profile's DevToolsActivePort file, and CDP commands go over aiohttp's websocket client.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--disable-extensions", "--remote-debugging-port=0")
INSTALL_HINT = "Debian's chromium is needed for the dashboard test: apt-get update && apt-get install -y chromium"


def chromium_path() -> str:
    """The browser binary, or an error that says how to install it (the test must not skip silently)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError(f"chromium is not installed. {INSTALL_HINT}")
    return found


class Chromium:
    """The browser process; `async with Chromium() as browser: page = await browser.page()`."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="vbp-chromium-")
        self.process: subprocess.Popen[bytes] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.port = 0

    async def __aenter__(self) -> Chromium:
        self.process = subprocess.Popen([chromium_path(), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        active = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not active.exists() or not active.read_text().strip():
            if self.process.poll() is not None:
                errors = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"chromium exited with {self.process.returncode}: {errors[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port within 30 s")
            await asyncio.sleep(0.05)
        self.port = int(active.read_text().split()[0])
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self.http is not None:
            await self.http.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            if self.process.stderr is not None:
                self.process.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    async def page(self) -> Page:
        """A new tab in a fresh browser context (its own cookies), connected."""
        assert self.http is not None
        async with self.http.get(f"http://127.0.0.1:{self.port}/json/version") as reply:
            browser_ws = (await reply.json())["webSocketDebuggerUrl"]
        browser = Page(await self.http.ws_connect(browser_ws, max_msg_size=0))
        context = (await browser.call("Target.createBrowserContext"))["browserContextId"]
        target = (await browser.call("Target.createTarget", url="about:blank", browserContextId=context))["targetId"]
        await browser.close()
        page = Page(await self.http.ws_connect(f"ws://127.0.0.1:{self.port}/devtools/page/{target}", max_msg_size=0))
        await page.call("Page.enable")
        await page.call("DOM.enable")
        return page


class Page:
    """One CDP connection: commands in order, events kept until someone waits for them."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._next = 0
        self.events: list[dict[str, Any]] = []

    async def close(self) -> None:
        await self.ws.close()

    async def _receive(self, timeout: float) -> dict[str, Any]:
        message = await asyncio.wait_for(self.ws.receive_json(), timeout)
        assert isinstance(message, dict)
        return message

    async def call(self, method: str, timeout: float = 30, **params: Any) -> dict[str, Any]:
        self._next += 1
        await self.ws.send_json({"id": self._next, "method": method, "params": params})
        while True:
            message = await self._receive(timeout)
            if message.get("id") == self._next:
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return dict(message.get("result", {}))
            if "method" in message:
                self.events.append(message)

    async def wait_for(self, event: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for i, message in enumerate(self.events):
                if message["method"] == event:
                    return dict(self.events.pop(i).get("params", {}))
            message = await self._receive(max(deadline - time.monotonic(), 0.01))
            if "method" in message:
                self.events.append(message)

    async def navigate(self, url: str) -> None:
        """Open `url` and wait until it has loaded."""
        self.events.clear()
        result = await self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise RuntimeError(f"navigation to {url} failed: {result['errorText']}")
        await self.wait_for("Page.loadEventFired")

    async def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type `text` as a person would (no script on the page needed)."""
        root = (await self.call("DOM.getDocument"))["root"]["nodeId"]
        node = (await self.call("DOM.querySelector", nodeId=root, selector=selector))["nodeId"]
        if not node:
            raise AssertionError(f"no {selector} on the page")
        await self.call("DOM.focus", nodeId=node)
        await self.call("Input.insertText", text=text)

    async def press_enter(self) -> None:
        """Press Enter (submits the focused form) and wait for the next page to load."""
        self.events.clear()
        for kind in ("keyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter",
                            windowsVirtualKeyCode=13, nativeVirtualKeyCode=13,
                            **({"text": "\r"} if kind == "keyDown" else {}))
        await self.wait_for("Page.loadEventFired")

    async def html(self) -> str:
        root = (await self.call("DOM.getDocument", depth=-1))["root"]["nodeId"]
        return str((await self.call("DOM.getOuterHTML", nodeId=root))["outerHTML"])

    async def url(self) -> str:
        history = await self.call("Page.getNavigationHistory")
        return str(history["entries"][history["currentIndex"]]["url"])

    async def screenshot(self, path: Path) -> bytes:
        """A PNG of the whole page, written to `path`."""
        data = base64.b64decode((await self.call("Page.captureScreenshot", format="png",
                                                 captureBeyondViewport=True))["data"])
        path.write_bytes(data)
        return data
