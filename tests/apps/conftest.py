"""Fixtures of the apps tests: a headless Chromium driven over the DevTools protocol, and label/decal inputs.

`chromium` yields `open_page(url) -> Page`; a Page waits (`page.wait_until(js_condition)`), evaluates JS
(`page.evaluate`) and takes screenshots (`page.screenshot() -> uint8 [H,W,3]`). Tests that need it skip with the
reason when Debian's `chromium` (or the `websockets` client viser brings) is missing.
"""
import base64
import io
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator, List

import numpy as np
import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1000,700",
                  "--remote-debugging-port=0", "--remote-allow-origins=*"]


def chromium_binary():
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One browser tab, driven over the Chrome DevTools protocol."""

    def __init__(self, ws_url: str):
        from websockets.sync.client import connect

        self._ws = connect(ws_url, max_size=None, open_timeout=30)
        self._id = 0

    def call(self, method: str, **params: Any) -> Any:
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=60))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_until(self, expression: str, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.evaluate(expression):
                return True
            time.sleep(0.5)
        return False

    def screenshot(self) -> np.ndarray:
        from PIL import Image

        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def close(self) -> None:
        self._ws.close()


@pytest.fixture
def chromium(tmp_path) -> Iterator:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("the browser tests need Debian's `chromium` (apt-get install -y chromium)")
    pytest.importorskip("websockets.sync.client", reason="the browser tests drive Chromium with `websockets`")
    profile = tmp_path / "chromium-profile"
    procs: List[subprocess.Popen] = []
    pages: List[Page] = []

    def open_page(url: str, offline: bool = False) -> Page:
        flags = CHROMIUM_FLAGS + [f"--user-data-dir={profile}-{len(procs)}"]
        if offline:  # no name resolves: anything the page fetched from the network would fail
            flags.append("--host-resolver-rules=MAP * ~NOTFOUND")
        proc = subprocess.Popen([binary, *flags, url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        active = Path(f"{profile}-{len(procs) - 1}") / "DevToolsActivePort"
        end = time.monotonic() + 60
        while not active.is_file() or len(active.read_text().split()) < 1:
            if time.monotonic() > end or proc.poll() is not None:
                pytest.fail("chromium did not start its DevTools endpoint")
            time.sleep(0.2)
        port = int(active.read_text().split()[0])
        targets = []
        while time.monotonic() < end and not targets:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
                    targets = [t for t in json.loads(answer.read()) if t.get("type") == "page"]
            except OSError:
                pass
            time.sleep(0.2)
        if not targets:
            pytest.fail("chromium opened no page")
        for attempt in range(40):  # the DevTools socket may lag behind its port file
            try:
                page = Page(targets[0]["webSocketDebuggerUrl"])
                break
            except Exception:
                if attempt == 39:
                    raise
                time.sleep(0.5)
        page.call("Page.enable")
        pages.append(page)
        return page

    yield open_page
    for page in pages:
        page.close()
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def _not_blank(image: np.ndarray) -> float:
    """Fraction of pixels that differ clearly from the picture's most common colour."""
    flat = image.reshape(-1, 3).astype(np.int32)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    background = colours[np.argmax(counts)]
    return float((np.abs(flat - background).sum(axis=1) > 60).mean())


@pytest.fixture
def not_blank():
    """`not_blank(screenshot)`: the fraction of pixels that differ clearly from the most common colour."""
    return _not_blank


@pytest.fixture(scope="session")
def disc_decal(tmp_path_factory) -> Path:
    """A 64×64 RGBA magenta disc (transparent corners): easy to find in an edited photo."""
    from PIL import Image

    yy, xx = np.mgrid[0:64, 0:64]
    disc = (xx - 31.5) ** 2 + (yy - 31.5) ** 2 <= 31.0 ** 2
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[disc] = (255, 0, 255, 255)
    path = tmp_path_factory.mktemp("decal") / "disc.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return path
