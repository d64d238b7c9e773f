"""The UNet stage (`nest_torch.unet_train`): the same run config as `nest train unet`,
the UNet trained alone, a diffusers `unet/` written, a resumed run equal to an
uninterrupted one, the moving average and the localization term as the Swift trainer
defines them, and bad configs refused in one line."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import PIPELINES, image
from nest_torch.unet_config import load_unet_config
from nest_torch.unet_train import UNetRun, localization_loss, snr_weights


def model(tmp, weights=True, velocity=False):
    """The tiny SD 1 pipeline as a model folder; without `weights` its unet/ holds only config.json."""
    folder = os.path.join(tmp, f"model-{weights}-{velocity}")
    if not os.path.isdir(folder):
        shutil.copytree(os.path.join(PIPELINES, "sd1"), folder)
        if not weights:
            os.remove(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))
        if velocity:
            path = os.path.join(folder, "scheduler", "scheduler_config.json")
            config = json.load(open(path))
            config.update(prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing")
            json.dump(config, open(path, "w"))
    return folder


def run_config(tmp, name="run", count=6, masks=False, **keys):
    data = os.path.join(tmp, "data")
    os.makedirs(data, exist_ok=True)
    lines = []
    for i in range(count):
        image(os.path.join(data, f"t{i}.png"), i)
        record = {"image": f"t{i}.png", "caption": f"a photo of a cat number {i}"}
        if masks:
            m = np.zeros((32, 32, 3), np.uint8)
            m[8:24, 4 + i:20 + i] = 255
            Image.fromarray(m).save(os.path.join(data, f"m{i}.png"))
            record["mask"] = f"m{i}.png"
        lines.append(json.dumps(record))
    open(os.path.join(data, "train.jsonl"), "w").write("\n".join(lines) + "\n")
    config = {"model": keys.pop("model", None) or model(tmp), "data": "data/train.jsonl", "output": f"runs/{name}",
              "resolution": 32, "batch_size": 2, "steps": 4, "learning_rate": 1e-3, "seed": 3,
              "checkpoint_every": 2, "log_every": 1}
    config.update(keys)
    path = os.path.join(tmp, f"{name}.json")
    json.dump(config, open(path, "w"), indent=1)
    return path


def written(tmp, name):
    return load_file(os.path.join(tmp, "runs", name, "unet", "diffusion_pytorch_model.safetensors"))


def test_the_stage_trains_the_unet_and_writes_it_in_the_models_layout(tmp):
    folder = model(tmp)
    before = load_file(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))
    run = UNetRun(run_config(tmp, model=folder))
    vae = {k: v.clone() for k, v in run.base.vae.state_dict().items()}
    run.run()
    after = written(tmp, "run")
    assert set(after) == set(before), "the written UNet has the model's weight names"
    changed = sum(not torch.equal(after[k], before[k]) for k in before)
    assert changed > len(before) // 2, f"only {changed} of {len(before)} tensors trained"
    assert all(torch.equal(v, run.base.vae.state_dict()[k]) for k, v in vae.items()), "the VAE stays frozen"
    assert json.load(open(os.path.join(tmp, "runs", "run", "unet", "config.json"))) == \
        json.load(open(os.path.join(folder, "unet", "config.json")))
    assert torch.equal(load_file(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))["conv_in.weight"],
                       before["conv_in.weight"]), "the model's own UNet is not overwritten"
    log = [json.loads(line) for line in open(os.path.join(tmp, "runs", "run", "log.jsonl"))]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4]


def test_a_config_only_unet_starts_from_random_weights_reproducibly(tmp):
    folder = model(tmp, weights=False, velocity=True)
    UNetRun(run_config(tmp, name="a", model=folder, steps=2)).run()
    UNetRun(run_config(tmp, name="b", model=folder, steps=2)).run()
    a, b = written(tmp, "a"), written(tmp, "b")
    assert all(torch.equal(a[k], b[k]) for k in a), "the same seed gives the same weights"
    UNetRun(run_config(tmp, name="c", model=folder, steps=2, seed=4)).run()
    c = written(tmp, "c")
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_a_resumed_run_equals_an_uninterrupted_one(tmp):
    folder = model(tmp, velocity=True)
    keys = dict(model=folder, ema=0.9, ema_warmup=True, loss_weighting="min_snr", schedule="cosine", warmup_steps=1)
    UNetRun(run_config(tmp, name="whole", **keys)).run()
    path = run_config(tmp, name="split", **keys)
    UNetRun(path).run(stop_after=2)
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        UNetRun(path)
    resumed = UNetRun(path, resume=True)
    assert resumed.step == 2
    resumed.run()
    whole, split = written(tmp, "whole"), written(tmp, "split")
    worst = max(((whole[k] - split[k]).abs().max() / whole[k].abs().max().clamp_min(1e-12)).item() for k in whole)
    assert worst < 1e-5, worst


def test_the_written_weights_are_the_moving_average(tmp):
    folder = model(tmp)
    initial = load_file(os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))
    run = UNetRun(run_config(tmp, model=folder, steps=1, ema=0.75))
    run.run()
    live = {k: v.detach() for k, v in run.unet.state_dict().items()}
    out = written(tmp, "run")
    for k in ("conv_in.weight", "conv_out.bias"):
        assert torch.allclose(out[k], 0.75 * initial[k] + 0.25 * live[k], atol=1e-6)
        assert not torch.allclose(out[k], live[k])
    assert torch.equal(run.unet.state_dict()["conv_in.weight"], live["conv_in.weight"]), "training weights are put back"


def test_localization_is_minus_one_when_the_noun_is_attended_only_on_the_subject():
    # Maps hold each query's attention to the noun: 1 on the subject's cells, 0 elsewhere.
    masks = torch.zeros(2, 8, 8)
    masks[:, 2:6, 2:6] = 1
    focused = torch.nn.functional.avg_pool2d(masks[:, None], 2)[:, 0].reshape(2, 16)
    assert abs(float(localization_loss([focused], [5, 5], masks)) + 1) < 1e-6
    assert abs(float(localization_loss([1 - focused], [5, 5], masks)) - 1) < 1e-6
    assert abs(float(localization_loss([torch.full((2, 16), 0.3)], [5, 5], masks))) < 1e-6
    assert localization_loss([focused], [None, None], masks) is None, "items without the noun do not count"


def test_min_snr_weights():
    alphas = torch.tensor([0.0, 0.5, 0.99])
    snr = alphas / (1 - alphas)
    assert torch.allclose(snr_weights(alphas, True, 5.0), torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))
    eps = snr_weights(alphas, False, 5.0)
    assert eps[0] == 1 and torch.allclose(eps[1:], torch.minimum(snr[1:], torch.tensor(5.0)) / snr[1:])


def test_a_localizing_run_logs_its_term(tmp):
    path = run_config(tmp, masks=True, steps=2, flip=False, caption_dropout=0,
                      attention_localization={"weight": 0.05, "words": ["cat"]})
    run = UNetRun(path)
    run.run()
    log = [json.loads(line) for line in open(os.path.join(tmp, "runs", "run", "log.jsonl"))]
    assert all("localization" in e and -1 <= e["localization"] <= 1 for e in log if "loss" in e)
    assert set(run.recorders) and all(r.maps for r in run.recorders.values())


def test_validation_records_are_scored_at_each_checkpoint(tmp):
    path = run_config(tmp, steps=2, validation_data="data/train.jsonl", ema=0.5)
    UNetRun(path).run()
    log = [json.loads(line) for line in open(os.path.join(tmp, "runs", "run", "log.jsonl"))]
    held = [e for e in log if "validation_loss" in e]
    assert [e["step"] for e in held] == [2] and 0 < held[0]["validation_loss"] < 10


@pytest.mark.parametrize("keys, message", [
    ({"kl_weight": 1e-6}, "kl_weight is a `nest train vae` key"),
    ({"lerning_rate": 1e-4}, 'unknown key "lerning_rate" \\(did you mean "learning_rate"\\?\\)'),
    ({"attention_localization": {"weight": 0.1, "words": ["cat"]}}, 'needs "flip": false'),
    ({"ema_warmup": True}, 'ema_warmup needs "ema"'),
    ({"ema": 1.0}, "ema must be at least 0 and below 1"),
    ({"snr_gamma": 5}, "snr_gamma \\(5\\) is for"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"schedule": "linear"}, "schedule must be constant or cosine"),
])
def test_bad_configs_are_refused_in_one_line(tmp, keys, message):
    with pytest.raises(ValueError, match=message) as error:
        load_unet_config(run_config(tmp, **keys))
    assert "\n" not in str(error.value)


def test_a_word_of_several_tokens_is_refused(tmp):
    path = run_config(tmp, masks=True, flip=False, attention_localization={"weight": 0.05, "words": ["catdogfish"]})
    with pytest.raises(ValueError, match="'catdogfish' is [0-9]+ tokens"):
        UNetRun(path)


def test_unusable_records_are_reported_by_line_and_skipped(tmp, capsys):
    path = run_config(tmp, steps=1)
    manifest = os.path.join(tmp, "data", "train.jsonl")
    good = open(manifest).read()
    open(manifest, "w").write('{"image": "t0.png"}\n' + good + '{"image": "gone.png", "caption": "a cat"}\nnot json\n')
    run = UNetRun(path)
    assert len(run.records) == 6
    err = capsys.readouterr().err
    assert 'line 1: missing "caption" (skipped)' in err and "line 8: missing file" in err and "line 9: not a JSON object" in err
    empty = run_config(tmp, name="none")
    open(manifest, "w").write("not json\n")
    with pytest.raises(ValueError, match="no usable samples \\(1 bad records, first: line 1: not a JSON object\\)"):
        UNetRun(empty)
