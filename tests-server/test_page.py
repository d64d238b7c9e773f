"""The page at / in headless Chromium (Debian's package), driven through the DevTools
protocol: upload a subject photo, type a prompt, press Generate, watch the progress bar
move and the image appear. NEST_SCREENSHOT=PATH saves the screenshot there."""
import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
import websocket

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# A few steps of the world model: seconds each in a debug build, enough to see the bar move.
STEPS = int(os.environ.get("NEST_PAGE_STEPS", "4"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    def __init__(self, url: str, profile):
        port = free_port()
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             f"--remote-debugging-port={port}", "--remote-allow-origins=*", f"--user-data-dir={profile}",
             "--window-size=1280,1000", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2))
                page = next(t for t in targets if t["type"] == "page")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, seconds: float = 60):
        deadline = time.monotonic() + seconds
        # The page may still be loading: an expression that throws counts as not yet.
        guarded = f"(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()"
        while not self.eval(guarded):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.05)

    def close(self):
        self.ws.close()
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium package")
def test_page_generates_a_personalized_image(world_server, subject_photo, tmp_path):
    server = world_server
    browser = Browser(server.url + "/", tmp_path / "profile")
    try:
        browser.wait_for("document.getElementById('token').options.length > 0")
        browser.eval("document.getElementById('token').value = '<critter>'")
        browser.call("DOM.enable")
        root = browser.call("DOM.getDocument")["root"]["nodeId"]
        node = browser.call("DOM.querySelector", nodeId=root, selector="#files")["nodeId"]
        browser.call("DOM.setFileInputFiles", nodeId=node, files=[str(subject_photo)])
        browser.wait_for("document.querySelectorAll('#photos img').length === 1")
        browser.eval("""
            document.getElementById('prompt').value = 'a <critter> on a beach';
            document.getElementById('steps').value = '%d';
            document.getElementById('seed').value = '7';
            document.getElementById('maps').checked = true;
            document.getElementById('generate').click();""" % STEPS)
        widths = []
        deadline = time.monotonic() + 60 * STEPS + 120
        while not browser.eval("document.querySelectorAll('#images img').length > 0"):
            status = browser.eval("document.getElementById('status').textContent")
            assert time.monotonic() < deadline and browser.eval("document.getElementById('status').className") != "error", \
                f"no image appeared; the page says: {status}"
            widths.append(float(browser.eval("parseFloat(document.getElementById('fill').style.width) || 0")))
            time.sleep(0.05)
        moving = sorted(set(w for w in widths if 0 < w < 100))
        assert len(moving) >= 2, f"the progress bar did not move: {sorted(set(widths))}"
        browser.wait_for("document.querySelector('#images img').naturalWidth === 64")
        assert "Nested attention: <critter>" in browser.eval("document.getElementById('parameters').textContent")
        assert browser.eval("document.getElementById('status').textContent").startswith("done")
        browser.eval("document.getElementById('show-maps').click()")
        browser.wait_for("document.querySelectorAll('#attention img').length > 0")
        browser.wait_for("[...document.querySelectorAll('#attention img, #gallery img')].every(i => i.complete && i.naturalWidth > 0)")
        shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        assert shot[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("NEST_SCREENSHOT"):
            with open(os.environ["NEST_SCREENSHOT"], "wb") as f:
                f.write(shot)
    finally:
        browser.close()
