"""`nest serve` driven by the web UI's own Python client (webuiapi) and by plain HTTP."""
import base64
import io
import json
import threading
import time

import numpy as np
import requests
import webuiapi
from PIL import Image

from conftest import nest

SETTINGS = dict(prompt="a critter on a beach", seed=1234, steps=6, cfg_scale=7.5, width=64, height=64)


def client(server) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler a", steps=6)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def generate_cli(tmp_path, name, prompt=SETTINGS["prompt"], extra=()) -> Image.Image:
    """The same settings through `nest generate`."""
    out = tmp_path / name
    nest("generate", "--prompt", prompt, "--seed", str(SETTINGS["seed"]), "--steps", str(SETTINGS["steps"]),
         "--guidance", str(SETTINGS["cfg_scale"]), "--width", "64", "--height", "64", "--scheduler", "euler-a",
         "--output", str(out), *extra)
    return Image.open(out)


def test_txt2img_equals_nest_generate(server, tmp_path):
    result = client(server).txt2img(**SETTINGS, sampler_name="Euler a")
    assert len(result.images) == 1
    assert result.info["all_seeds"] == [1234]
    assert result.info["sampler_name"] == "Euler a"
    served = result.images[0]
    assert served.info["parameters"].startswith("a critter on a beach\nSteps: 6, Sampler: Euler a, ")
    assert "Seed: 1234" in served.info["parameters"]
    expected = generate_cli(tmp_path, "cli.png")
    assert np.array_equal(pixels(served), pixels(expected))

    # The same request as plain JSON over HTTP gives the same bytes of pixels.
    body = dict(SETTINGS, sampler_name="Euler a")
    reply = requests.post(server.url + "/sdapi/v1/txt2img", json=body, timeout=300)
    assert reply.status_code == 200
    plain = Image.open(io.BytesIO(base64.b64decode(reply.json()["images"][0])))
    assert np.array_equal(pixels(plain), pixels(expected))
    assert json.loads(reply.json()["info"])["infotexts"][0] == plain.info["parameters"]


def test_client_helpers(server):
    api = client(server)
    assert api.util_get_model_names() == ["world"]
    assert "Euler a" in api.util_get_sampler_names()
    assert api.util_get_current_model() == "world"
    api.util_wait_for_ready(check_interval=0.1)


def test_progress_moves_and_interrupt_stops_the_job(server):
    api = client(server)
    done = {}
    started = time.monotonic()
    worker = threading.Thread(target=lambda: done.update(result=api.txt2img(**dict(SETTINGS, steps=150))))
    worker.start()
    seen = []
    while len(set(seen)) < 3 and time.monotonic() - started < 120:
        p = api.get_progress()
        if p["state"]["job"] and p["state"]["sampling_step"] > 0:
            seen.append(p["state"]["sampling_step"])
            assert 0 < p["progress"] < 1 and p["eta_relative"] > 0
        time.sleep(0.05)
    assert len(set(seen)) >= 3, f"progress did not move: {seen}"
    api.interrupt()
    worker.join(timeout=120)
    result = done["result"]
    assert result.info["interrupted"] is True
    assert result.images == []
    # It stopped at the next step, long before 150 steps.
    assert api.get_progress()["state"]["sampling_step"] < 150


def test_personalized_request_equals_nest_generate_with_subject(server, subject_photo, tmp_path):
    photo = base64.b64encode(subject_photo.read_bytes()).decode()
    script = {"nested attention": {"args": [{"subjects": [{"token": "<critter>", "images": [photo]}]}]}}
    prompt = "a <critter> on a beach"
    result = client(server).txt2img(**dict(SETTINGS, prompt=prompt), sampler_name="Euler a", alwayson_scripts=script)
    assert len(result.images) == 1
    assert "Nested attention: <critter>" in result.images[0].info["parameters"]
    expected = generate_cli(tmp_path, "subject.png", prompt, ["--subject", f"<critter>={subject_photo}"])
    assert np.array_equal(pixels(result.images[0]), pixels(expected))
    plain = client(server).txt2img(**dict(SETTINGS, prompt="a critter on a beach"), sampler_name="Euler a")
    assert not np.array_equal(pixels(result.images[0]), pixels(plain.images[0]))


def test_each_bad_field_is_named(server):
    cases = [({"steps": 0}, "steps"), ({"cfg_scale": "x"}, "cfg_scale"), ({"width": 65}, "width"),
             ({"sampler_name": "Heun"}, "sampler_name"), ({"seed": -3}, "seed"), ({"prompt": "y" * 5000}, "prompt"),
             ({"alwayson_scripts": {"nested attention": {"args": [{"subjects": [{"token": "<critter>", "images": ["!!"]}]}]}}},
              "alwayson_scripts.nested attention.args[0].subjects[0].images[0]")]
    for change, field in cases:
        reply = requests.post(server.url + "/sdapi/v1/txt2img", json=dict(SETTINGS, **change), timeout=60)
        assert reply.status_code == 422, (change, reply.text)
        assert reply.json()["field"] == field
        assert reply.json()["detail"][0]["loc"] == ["body", field]
    big = requests.post(server.url + "/sdapi/v1/txt2img", json=dict(SETTINGS, prompt="z" * (3 << 20)), timeout=60)
    assert big.status_code == 413 and "2 MiB" in big.json()["error"]
    assert requests.post(server.url + "/sdapi/v1/img2img", json={}, timeout=10).status_code == 404
