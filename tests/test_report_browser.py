"""The report opened in a real headless Chromium, driven over the DevTools protocol.

The protocol runs over --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-separated JSON), so the
test needs no websocket client, no driver and no browser download: only Debian's chromium.
"""

import base64
import csv
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import needs
from test_report import (
    ALL,
    SECTIONS,
    fabricate_results,
    heatmap_pairs,
    report_inputs,
    report_settings,
)

from smallcnn.report import write_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]
# Guards against a hung browser; not a speed requirement.
PROTOCOL_TIMEOUT = 120

pytestmark = needs(
    None if os.access(CHROMIUM, os.X_OK) else f"{CHROMIUM} is missing (Debian package chromium)"
)


class Browser:
    """A minimal Chrome DevTools protocol client over the debugging pipe."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="smallcnn-chromium-")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def wire_pipes():
            # Chromium expects its command pipe on fd 3 and its reply pipe on fd 4.
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=wire_pipes,
            pass_fds=(3, 4),
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events = []

    def close(self):
        try:
            if self.process.poll() is None:
                self.send("Browser.close")
                self.process.wait(timeout=30)
        except (OSError, TimeoutError, subprocess.TimeoutExpired, RuntimeError):
            self.process.kill()
            self.process.wait()
        finally:
            self.process.stderr.close()
            os.close(self._to_browser)
            os.close(self._from_browser)
            shutil.rmtree(self.profile, ignore_errors=True)

    def _read_message(self, deadline):
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self._from_browser], [], [], remaining)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the debugging pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method, session=None, **params):
        """Send a command and return its result; events met on the way are kept in .events."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + PROTOCOL_TIMEOUT
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method):
        deadline = time.monotonic() + PROTOCOL_TIMEOUT
        while not any(event.get("method") == method for event in self.events):
            self.events.append(self._read_message(deadline))


def open_in_browser(html_path, screenshot_path, width=1280):
    """Load the report and return what the browser saw; write a full-page screenshot."""
    browser = Browser()
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.send("Page.navigate", session, url=Path(html_path).resolve().as_uri())
        browser.wait_for("Page.loadEventFired")

        def evaluate(expression):
            result = browser.send(
                "Runtime.evaluate", session, expression=expression, returnByValue=True
            )
            return result["result"].get("value")

        seen = evaluate(
            """({
              sections: [...document.querySelectorAll('section')].map(s => s.id),
              images: [...document.images].map(i => ({alt: i.alt, complete: i.complete,
                  width: i.naturalWidth, scheme: i.src.split(':')[0]})),
              tables: document.querySelectorAll('table').length,
              scripts: document.scripts.length,
              height: document.documentElement.scrollHeight,
              overflowing: document.documentElement.scrollWidth > window.innerWidth,
              scrolling: [...document.querySelectorAll('.wide')]
                  .filter(d => d.scrollWidth > d.clientWidth).map(d => d.firstElementChild.id),
            })"""
        )
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=seen["height"],
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = browser.send("Page.captureScreenshot", session, format="png")
        Path(screenshot_path).write_bytes(base64.b64decode(shot["data"]))
        events = browser.events
    finally:
        browser.close()

    errors = [
        event["params"]["entry"]["text"]
        for event in events
        if event.get("method") == "Log.entryAdded" and event["params"]["entry"]["level"] == "error"
    ]
    errors += [
        str(event["params"]["args"])
        for event in events
        if event.get("method") == "Runtime.consoleAPICalled"
        and event["params"]["type"] in ("error", "assert")
    ]
    errors += [
        event["params"]["exceptionDetails"].get("text", "exception")
        for event in events
        if event.get("method") == "Runtime.exceptionThrown"
    ]
    requests = [
        event["params"]["request"]["url"]
        for event in events
        if event.get("method") == "Network.requestWillBeSent"
    ]
    return {**seen, "errors": errors, "requests": requests}


def assert_report_reads_well(html_path, sections=SECTIONS):
    """The checks of issue 4 on a report file; leaves report.screenshot.png beside it."""
    html_path = Path(html_path)
    screenshot = html_path.with_name(html_path.stem + ".screenshot.png")
    seen = open_in_browser(html_path, screenshot)
    assert seen["sections"] == sections
    broken = [
        image["alt"][:80] for image in seen["images"] if not image["complete"] or not image["width"]
    ]
    assert not broken, f"broken images: {broken}"
    assert {image["scheme"] for image in seen["images"]} == {"data"}
    assert seen["scripts"] == 0
    assert seen["errors"] == []
    # Only the file itself is fetched: nothing from the network, no other local file.
    fetched = [url for url in seen["requests"] if not url.startswith("data:")]
    assert fetched == [html_path.resolve().as_uri()], fetched
    assert not seen["overflowing"], "the page is wider than a 1280 px window"
    assert not seen["scrolling"], f"tables wider than the page at 1280 px: {seen['scrolling']}"
    assert screenshot.stat().st_size > 10_000
    return seen


def test_fabricated_report_in_chromium(tmp_path):
    record = fabricate_results(tmp_path)
    out = tmp_path / "results" / "report.html"
    write_report(report_inputs(tmp_path, ALL), report_settings(ALL), out)
    seen = assert_report_reads_well(out)
    # Accuracy, curves, the best's wrong images in the gallery and in its confusion cells, image
    # and heatmap pairs of the four experiments trained on images, a near-duplicate pair.
    pairs = sum(heatmap_pairs(record, name) for name in ALL if name != "features")
    assert len(seen["images"]) == 1 + 5 + 3 + 3 + 2 * pairs + 2
    # Summary, McNemar, five confusion matrices, most confused pairs, splits, near-duplicate
    # pairs, rejections, settings, training, jobs, versions.
    assert seen["tables"] == 15


@pytest.mark.slow
def test_demo_report_in_chromium(demo_run):
    # The demo exports its scratch model (config/demo.yaml): the Exports section comes after
    # Where the model looks and before Data.
    sections = [*SECTIONS[:6], "exports", *SECTIONS[6:]]
    seen = assert_report_reads_well(demo_run / "results" / "report.html", sections)
    alts = [image["alt"] for image in seen["images"]]
    # Real Grad-CAM overlays.
    assert any(alt.startswith("Heatmap of ") for alt in alts)
    # The first-ranked model's confusion cells open to its images. The demo's convnets usually
    # classify every test image after their 4 epochs: then there is no cell, and the report says so.
    with open(demo_run / "results" / "summary.csv", newline="") as stream:
        accuracy = {
            row["experiment"]: float(row["test_accuracy_mean"]) for row in csv.DictReader(stream)
        }
    html = (demo_run / "results" / "report.html").read_text()
    if max(accuracy.values()) == 1.0:
        perfect = [name for name, value in accuracy.items() if value == 1.0]
        assert any(f"{name} confused no test image." in html for name in perfect)
        assert '<details class="cell">' not in html
    else:
        assert any(" taken for " in alt and ": test image " in alt for alt in alts)
