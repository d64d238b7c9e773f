"""The run config and manifest schema shared with `nest train adapter`."""
import json
import os

import pytest

from conftest import make_run
from nest_torch.config import TrainingOptions, load_run_config, read_manifest


def test_defaults_are_the_swift_trainers():
    o = TrainingOptions.from_dict({})
    assert (o.resolution, o.batch_size, o.learning_rate, o.weight_decay, o.gradient_clip) == (64, 4, 1e-4, 1e-2, 1.0)
    assert (o.drop_image, o.drop_text, o.drop_both, o.flip_targets, o.ema, o.timestep_range) == (0.05, 0.05, 0.05, True, None, None)
    assert TrainingOptions.from_dict({"gradient_clip": None}).gradient_clip == 1.0  # null keeps the default, as in Swift


@pytest.mark.parametrize("bad", [{"timestep_range": [300, 300]}, {"timestep_range": [1]}, {"batch_size": 0},
                                 {"subject_loss_weight": 0}, {"schedule": "linear"}])
def test_refused_options(bad):
    with pytest.raises(ValueError):
        TrainingOptions.from_dict(bad)


def test_a_trained_unet_is_refused_by_name():
    with pytest.raises(ValueError, match="unet_learning_rate: this recipe trains the adapter on a frozen UNet"):
        TrainingOptions.from_dict({"unet_learning_rate": 1e-4})
    assert TrainingOptions.from_dict({"unet_learning_rate": None}).learning_rate == 1e-4  # null: off, as in Swift


def test_learning_rate_schedule():
    o = TrainingOptions.from_dict({"learning_rate": 1.0, "warmup_steps": 4, "steps": 14, "schedule": "cosine"})
    assert [o.rate(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert o.rate(9) == pytest.approx(0.5) and o.rate(14) == pytest.approx(0.0)


def test_run_config_paths_and_manifest_problems(tmp):
    path = make_run(tmp, count=3)
    config = load_run_config(path)
    assert config.resolve(config.data) == os.path.join(tmp, "data", "train.jsonl")
    assert config.checkpoint_every == 2 and config.training.batch_size == 2
    manifest = os.path.join(tmp, "data", "train.jsonl")
    with open(manifest, "a") as f:
        f.write('not json\n{"image": "t0.png", "caption": "no placeholder", "references": ["r0.png"]}\n'
                '{"image": "t0.png", "caption": "<critter>", "references": ["t0.png"]}\n'
                '{"image": "gone.png", "caption": "<critter>", "references": ["r0.png"]}\n# a comment\n')
    samples, problems = read_manifest(manifest, "<critter>")
    assert len(samples) == 3 and [line for line, _ in problems] == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="line 4"):
        read_manifest(manifest, "<critter>", policy="fail")


def test_missing_adapter_keys_are_refused(tmp):
    path = make_run(tmp)
    config = json.load(open(path))
    del config["adapter"]["resampler"]["queries"]
    json.dump(config, open(path, "w"))
    with pytest.raises(ValueError, match="queries"):
        load_run_config(path)


def test_unknown_keys_are_refused_by_name_as_in_swift(tmp):
    with pytest.raises(ValueError, match='training: unknown key "lerning_rate" \\(did you mean "learning_rate"\\?\\)'):
        TrainingOptions.from_dict({"lerning_rate": 1e-4})
    path = make_run(tmp)
    config = json.load(open(path))
    config["chekpoint_every"] = 5
    json.dump(config, open(path, "w"))
    with pytest.raises(ValueError, match='unknown key "chekpoint_every" \\(did you mean "checkpoint_every"\\?\\)'):
        load_run_config(path)
