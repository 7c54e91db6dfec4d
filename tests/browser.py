"""A headless Chromium driven through the DevTools protocol, for the tests of the HTML pages.

:func:`open_page` loads a file and returns what the page did: console errors and uncaught exceptions,
every network request other than the file itself and ``data:`` URIs, how many images there are and how many
decoded, and a PNG screenshot. The tests skip (with the reason) where Chromium or ``websocket-client`` is
missing; ``.ci/run`` installs Debian's ``chromium``.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium here (Debian: apt-get install chromium)")


@dataclass
class PageResult:
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: int = 0
    decoded: int = 0
    title: str = ""
    script_ran: bool = False
    scroll_width: int = 0
    text: str = ""
    screenshot: bytes = b""


class _Session:
    def __init__(self, url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params):
        self.next_id += 1
        me = self.next_id
        self.ws.send(json.dumps({"id": me, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == me:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        end = time.monotonic() + timeout
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while time.monotonic() < end:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == method:
                return msg
            self.events.append(msg)
        raise TimeoutError(method)

    def drain(self, seconds: float) -> None:
        self.ws.settimeout(seconds)
        try:
            while True:
                self.events.append(json.loads(self.ws.recv()))
        except Exception:  # the socket's timeout ends the drain
            pass
        self.ws.settimeout(30)


def open_page(
    path: Path,
    *,
    width: int = 1000,
    height: int = 1400,
    mobile: bool = False,
    full_page: bool = True,
    local: str | None = None,
) -> PageResult:
    """Load ``path`` in headless Chromium; see the module documentation. The screenshot is the whole page
    (up to 6000 px) or, with ``full_page=False``, the first ``width`` x ``height`` of it. Requests under the
    URL prefix ``local`` (a built site's own folder) are not reported."""
    pytest.importorskip("websocket", reason="websocket-client is needed to drive Chromium")
    exe = chromium()
    profile = tempfile.mkdtemp(prefix="nnatlas-chromium-")
    proc = subprocess.Popen(
        [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "--remote-allow-origins=*", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = None
        end = time.monotonic() + 60
        port_file = Path(profile) / "DevToolsActivePort"
        while time.monotonic() < end and port is None:
            if port_file.is_file() and port_file.read_text().strip():
                port = int(port_file.read_text().split()[0])
            elif proc.poll() is not None:
                pytest.skip(f"Chromium did not start: {proc.stderr.read()[-300:]}")
            else:
                time.sleep(0.1)
        if port is None:
            pytest.skip("Chromium did not open its DevTools port within 60 s")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        s = _Session(pages[0]["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            s.call(f"{domain}.enable")
        s.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )
        url = path.resolve().as_uri()
        s.call("Page.navigate", url=url)
        s.wait_for("Page.loadEventFired")
        s.drain(0.5)
        out = PageResult()
        for e in s.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
            elif m == "Runtime.exceptionThrown":
                out.errors.append(p["exceptionDetails"].get("text", "exception"))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.errors.append(p["entry"]["text"])
            elif m == "Network.requestWillBeSent":
                req = p["request"]["url"]
                if req != url and not req.startswith("data:") and not (local and req.startswith(local)):
                    out.requests.append(req)
        check = (
            "JSON.stringify({images: document.images.length, "
            "decoded: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length, "
            "title: document.title, script_ran: !!window.__nnatlas_injected, "
            "scroll_width: document.documentElement.scrollWidth, text: document.body.innerText})"
        )
        value = json.loads(
            s.call("Runtime.evaluate", expression=check, returnByValue=True)["result"]["value"]
        )
        for key in ("images", "decoded", "title", "script_ran", "scroll_width", "text"):
            setattr(out, key, value[key])
        metrics = s.call("Page.getLayoutMetrics")
        content = metrics.get("cssContentSize") or metrics["contentSize"]
        shot = s.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={
                "x": 0,
                "y": 0,
                "width": width,
                "height": min(content["height"], 6000 if full_page else height),
                "scale": 1,
            },
        )
        out.screenshot = base64.b64decode(shot["data"])
        s.ws.close()
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
