"""Starts `nest serve` on free loopback ports, once per test session: over the tiny SD1
pipeline fixture (32×32 images, the cheapest model there is) for the API and the load, and over
the embedded world model, which has subject adapters, for personalization and the page."""
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEST = Path(os.environ.get("NEST", ROOT / ".build" / "debug" / "nest"))
TINY_MODEL = ROOT / "Tests" / "NestDiffusionTests" / "Fixtures" / "pipelines" / "sd1"


class Server:
    def __init__(self, tmp: Path, *extra: str):
        self.output = tmp / "served"
        self.log = tmp / "server.log"
        self.process = subprocess.Popen(
            [str(NEST), "serve", "--port", "0", "--output", str(self.output), "--max-body-mb", "2",
             "--queue-length", "32", *extra],
            stdout=subprocess.PIPE, stderr=open(self.log, "w"), text=True)
        line = self.process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            self.process.kill()
            raise RuntimeError(f"nest serve did not start: {line!r}\n{self.log.read_text()}")
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        # Keep reading stdout so the pipe never fills.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def serve(tmp_path_factory, *extra):
    s = Server(tmp_path_factory.mktemp("server"), *extra)
    yield s
    assert s.alive(), "the server died during the tests:\n" + s.log.read_text()[-2000:]
    s.stop()


@pytest.fixture(scope="session")
def tiny_server(tmp_path_factory):
    yield from serve(tmp_path_factory, "--model", str(TINY_MODEL), "--max-steps", "1000")


@pytest.fixture(scope="session")
def world_server(tmp_path_factory):
    yield from serve(tmp_path_factory)


def nest(*args: str, cwd=None) -> str:
    """Runs the `nest` command line; fails the test with its stderr when it fails."""
    r = subprocess.run([str(NEST), *args], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert r.returncode == 0, f"nest {' '.join(args)}: {r.stderr}"
    return r.stdout


@pytest.fixture(scope="session")
def subject_photo(tmp_path_factory) -> Path:
    """A critter of the miniature world, rendered as a subject photo."""
    path = tmp_path_factory.mktemp("subject") / "critter.png"
    nest("world", "subject", "--domain", "critter", "--seed", "7", "--output", str(path))
    return path
