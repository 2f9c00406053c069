"""Open an HTML file in real headless Chromium over the DevTools protocol and say what went wrong.

Used by the report tests (and by hand: ``python tests/chromium.py report.html shot.png``).
It starts Debian's ``/usr/bin/chromium`` with a fresh profile and no network
services, loads the file, waits for plotly to draw, and collects console errors,
uncaught exceptions and failed loads, then counts the plotly figures that rendered
(a ``.plotly-graph-div`` with a laid-out ``svg.main-svg``). Needs ``websocket-client``.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--window-size=1400,1000",
    "--remote-debugging-port=0",
]

# Per plotly div: did it lay out (has _fullLayout and an SVG with a size), and how many traces.
_FIGURES_JS = """
(() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(div => {
  const svg = div.querySelector('svg.main-svg');
  const box = svg ? svg.getBoundingClientRect() : null;
  return {id: div.id, rendered: !!(div._fullLayout && svg && box.width > 0 && box.height > 0),
          traces: div.data ? div.data.length : 0};
}))()
"""


@dataclass
class PageCheck:
    """What Chromium saw: console errors, exceptions, failed requests and each figure's state."""

    console_errors: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""
    script_result: Any = None

    @property
    def not_rendered(self) -> list[str]:
        return [f["id"] for f in self.figures if not f["rendered"]]

    @property
    def problems(self) -> list[str]:
        return (
            [f"console error: {m}" for m in self.console_errors]
            + [f"exception: {m}" for m in self.exceptions]
            + [f"failed request: {m}" for m in self.failed_requests]
            + [f"figure not rendered: {i}" for i in self.not_rendered]
        )


def available() -> bool:
    return Path(CHROMIUM).is_file()


class _DevTools:
    def __init__(self, url: str) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"Chromium sent no {method} within {timeout} s.")
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            self.events.append(json.loads(self.ws.recv()))

    def close(self) -> None:
        self.ws.close()


def check_page(
    path: str | Path, screenshot: str | Path | None = None, script: str | None = None, timeout: float = 60.0
) -> PageCheck:
    """Load ``path`` in headless Chromium; return what went wrong (and optionally a full-page PNG).

    ``script``, a JavaScript expression, runs after the figures render; its JSON value
    is ``script_result`` (errors it causes are collected like any other).
    """
    path = Path(path).resolve()
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if process.poll() is not None:
                raise RuntimeError(f"{CHROMIUM} exited with code {process.returncode} before it opened DevTools.")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{CHROMIUM} opened no DevTools port within {timeout} s.")
            time.sleep(0.05)
        port = port_file.read_text().splitlines()[0]
        page = _page_target(int(port), timeout)
        tools = _DevTools(page)
        try:
            return _inspect(tools, path, screenshot, script, timeout)
        finally:
            tools.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _page_target(port: int, timeout: float) -> str:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        pages = [t for t in targets if t.get("type") == "page"]
        if pages:
            return pages[0]["webSocketDebuggerUrl"]
        if time.monotonic() > deadline:
            raise TimeoutError("Chromium shows no page target.")
        time.sleep(0.05)


def _inspect(
    tools: _DevTools, path: Path, screenshot: str | Path | None, script: str | None, timeout: float
) -> PageCheck:
    for domain in ("Runtime", "Log", "Page", "Network"):
        tools.call(f"{domain}.enable")
    tools.events.clear()
    tools.call("Page.navigate", url=path.as_uri())
    tools.wait_for("Page.loadEventFired", timeout)
    # plotly draws synchronously on load; wait until every figure is laid out (or time runs out).
    deadline = time.monotonic() + min(timeout, 30.0)
    while True:
        figures = tools.call("Runtime.evaluate", expression=_FIGURES_JS, returnByValue=True)["result"]["value"]
        if all(f["rendered"] for f in figures) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    check = PageCheck(figures=figures)
    check.title = tools.call("Runtime.evaluate", expression="document.title", returnByValue=True)["result"]["value"]
    if script is not None:
        evaluated = tools.call("Runtime.evaluate", expression=script, returnByValue=True)
        if "exceptionDetails" in evaluated:
            check.exceptions.append(evaluated["exceptionDetails"].get("exception", {}).get("description", "script failed"))
        check.script_result = evaluated["result"].get("value")
    if screenshot is not None:
        metrics = tools.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = tools.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1},
        )
        Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
    for event in tools.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            check.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            check.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            check.console_errors.append(params["entry"].get("text", ""))
        elif method == "Network.loadingFailed":
            check.failed_requests.append(f"{params.get('errorText')} ({params.get('type')})")
    return check


if __name__ == "__main__":
    result = check_page(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    print(f"title: {result.title}; figures: {len(result.figures)}, not rendered: {result.not_rendered}")
    for problem in result.problems:
        print(problem)
    sys.exit(1 if result.problems else 0)
