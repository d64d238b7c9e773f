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

from conftest import TINY_MODEL, nest

SETTINGS = dict(prompt="a critter on a beach", seed=1234, steps=3, cfg_scale=7.5, width=32, height=32)
# The world model is slow in a debug build: few steps.
WORLD = dict(SETTINGS, steps=2, width=64, height=64)


def client(server) -> webuiapi.WebUIApi:
    return webuiapi.WebUIApi(host="127.0.0.1", port=server.port, sampler="Euler a")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def generate_cli(tmp_path, name, settings, model=(), extra=()) -> Image.Image:
    """The same settings through `nest generate`."""
    out = tmp_path / name
    nest("generate", *model, "--prompt", settings["prompt"], "--seed", str(settings["seed"]),
         "--steps", str(settings["steps"]), "--guidance", str(settings["cfg_scale"]), "--width", str(settings["width"]),
         "--height", str(settings["height"]), "--scheduler", "euler-a", "--output", str(out), *extra)
    return Image.open(out)


def test_txt2img_equals_nest_generate(tiny_server, tmp_path):
    server = tiny_server
    result = client(server).txt2img(**SETTINGS, sampler_name="Euler a")
    assert len(result.images) == 1
    assert result.info["all_seeds"] == [1234]
    assert result.info["sampler_name"] == "Euler a"
    served = result.images[0]
    assert served.info["parameters"].startswith("a critter on a beach\nSteps: 3, Sampler: Euler a, ")
    assert "Seed: 1234" in served.info["parameters"]
    expected = generate_cli(tmp_path, "cli.png", SETTINGS, ["--model", str(TINY_MODEL)])
    assert np.array_equal(pixels(served), pixels(expected))

    # The same request as plain JSON over HTTP gives the same bytes of pixels.
    body = dict(SETTINGS, sampler_name="Euler a")
    reply = requests.post(server.url + "/sdapi/v1/txt2img", json=body, timeout=300)
    assert reply.status_code == 200
    plain = Image.open(io.BytesIO(base64.b64decode(reply.json()["images"][0])))
    assert np.array_equal(pixels(plain), pixels(expected))
    assert json.loads(reply.json()["info"])["infotexts"][0] == plain.info["parameters"]


def test_client_helpers(tiny_server):
    server = tiny_server
    api = client(server)
    assert api.util_get_model_names() == ["sd1"]
    assert "Euler a" in api.util_get_sampler_names()
    assert api.util_get_current_model() == "sd1"
    api.util_wait_for_ready(check_interval=0.1)


def test_progress_moves_and_interrupt_stops_the_job(tiny_server):
    server = tiny_server
    api = client(server)
    done = {}
    started = time.monotonic()
    worker = threading.Thread(target=lambda: done.update(result=api.txt2img(**dict(SETTINGS, steps=1000))))
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
    # It stopped at the next step, long before 1000 steps.
    assert api.get_progress()["state"]["sampling_step"] < 1000


def test_personalized_request_equals_nest_generate_with_subject(world_server, subject_photo, tmp_path):
    server = world_server
    photo = base64.b64encode(subject_photo.read_bytes()).decode()
    script = {"nested attention": {"args": [{"subjects": [{"token": "<critter>", "images": [photo]}]}]}}
    prompt = "a <critter> on a beach"
    settings = dict(WORLD, prompt=prompt)
    result = client(server).txt2img(**settings, sampler_name="Euler a", alwayson_scripts=script)
    assert len(result.images) == 1
    assert "Nested attention: <critter>" in result.images[0].info["parameters"]
    expected = generate_cli(tmp_path, "subject.png", settings, extra=["--subject", f"<critter>={subject_photo}"])
    assert np.array_equal(pixels(result.images[0]), pixels(expected))
    plain = client(server).txt2img(**WORLD, sampler_name="Euler a")
    assert not np.array_equal(pixels(result.images[0]), pixels(plain.images[0]))


def test_each_bad_field_is_named(tiny_server):
    server = tiny_server
    cases = [({"steps": 0}, "steps"), ({"cfg_scale": "x"}, "cfg_scale"), ({"width": 33}, "width"),
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
    no_image = requests.post(server.url + "/sdapi/v1/img2img", json=SETTINGS, timeout=10)
    assert no_image.status_code == 422 and no_image.json()["field"] == "init_images"


def test_img2img_equals_nest_generate_with_init_image(tiny_server, subject_photo, tmp_path):
    api = client(tiny_server)
    start = Image.open(subject_photo)
    result = api.img2img(images=[start], denoising_strength=0.7, **SETTINGS, sampler_name="Euler a")
    assert len(result.images) == 1
    assert "Denoising strength: 0.7" in result.images[0].info["parameters"]
    expected = generate_cli(tmp_path, "img2img.png", SETTINGS, ["--model", str(TINY_MODEL)],
                            ["--init-image", str(subject_photo), "--strength", "0.7"])
    assert np.array_equal(pixels(result.images[0]), pixels(expected))
