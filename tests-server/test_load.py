"""A bounded load test on loopback: 8 clients × 5 requests against one server, bad
requests mixed in. Every good request must come back with the image its seed gives
alone, every bad one with its 4xx, the server must stay up, and its memory must come
back to where it stood after the first job."""
import base64
import io
import threading
import time

import numpy as np
import requests
from PIL import Image

CLIENTS, REQUESTS = 8, 5
GOOD = dict(prompt="a bot in a city", steps=1, cfg_scale=7, width=32, height=32, sampler_name="Euler a")
BAD = [  # (body change, expected status)
    ({"steps": 0}, 422), ({"sampler_name": "LMS"}, 422), ({"width": 9999}, 422),
    ({"prompt": "q" * (3 << 20)}, 413),
]


def image_of(reply) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(reply.json()["images"][0]))).convert("RGB"))


def test_eight_clients_five_requests_each(tiny_server):
    server = tiny_server
    url = server.url + "/sdapi/v1/txt2img"
    seeds = list(range(100, 104))
    # Reference images, one request at a time; the first job sets the memory baseline.
    reference = {}
    for seed in seeds:
        reply = requests.post(url, json=dict(GOOD, seed=seed), timeout=300)
        assert reply.status_code == 200
        reference[seed] = image_of(reply)
        if seed == seeds[0]:
            baseline = server.rss_mib()

    failures, statuses, latencies = [], [], []
    lock = threading.Lock()

    def client(k: int):
        for r in range(REQUESTS):
            bad = (k + r) % 3 == 0
            change, expected = BAD[(k + r) % len(BAD)] if bad else ({"seed": seeds[(k + r) % len(seeds)]}, 200)
            start = time.monotonic()
            reply = requests.post(url, json=dict(GOOD, **change), timeout=600)
            with lock:
                latencies.append(time.monotonic() - start)
                statuses.append(reply.status_code)
                if reply.status_code != expected:
                    failures.append((k, r, change.keys(), reply.status_code, reply.text[:200]))
                elif not bad and not np.array_equal(image_of(reply), reference[change["seed"]]):
                    failures.append((k, r, "wrong image for seed", change["seed"]))

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    wall = time.monotonic() - start
    after = server.rss_mib()
    good = sum(1 for s in statuses if s == 200)
    print(f"\nload: {CLIENTS}x{REQUESTS} requests in {wall:.1f} s: {good} good (200), {len(statuses) - good} bad "
          f"({sorted(set(statuses))}); latency median {np.median(latencies):.2f} s, max {max(latencies):.2f} s; "
          f"RSS after first job {baseline:.0f} MiB, after the load {after:.0f} MiB")
    assert not failures, failures
    assert len(statuses) == CLIENTS * REQUESTS
    assert server.alive()
    assert after <= baseline * 1.2 + 40, (baseline, after)
