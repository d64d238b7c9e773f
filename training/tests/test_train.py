"""Single-process training: every kind trains only the adapter and writes our
format; a resumed run (in process, and after a SIGKILL) equals an uninterrupted one."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import ROOT, make_run
from nest_torch.adapter import load_adapter
from nest_torch.train import Run

ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.path.join(ROOT, "training"))


def weights(run_dir):
    return load_file(os.path.join(run_dir, "adapter.safetensors"))


def max_relative(a, b):
    return max(((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-12)).item() for k in b)


@pytest.mark.parametrize("kind", ["nested", "ip-adapter", "single-token"])
def test_each_kind_trains_only_the_adapter(tmp, kind):
    run = Run(make_run(tmp, kind=kind, training={"steps": 2, "drop_image": 0.3, "drop_text": 0.3, "drop_both": 0.2}))
    unet_before = {k: v.clone() for k, v in run.base.unet.state_dict().items()}
    initial = {k: v.clone() for k, v in run.adapter.state_dict().items()}
    processors = dict(run.base.unet.attn_processors)
    run.run()
    assert all(torch.equal(v, run.base.unet.state_dict()[k]) for k, v in unet_before.items())
    assert dict(run.base.unet.attn_processors) == processors, "the step must leave the UNet's processors behind"
    out = os.path.join(tmp, "runs", kind)
    saved = load_adapter(os.path.join(out, "adapter.json"))
    assert saved.kind == kind and saved.config["placeholder_token"] == "<critter>"
    trained = weights(out)
    assert set(trained) == set(initial)
    assert all(not torch.equal(trained[k], initial[k]) for k in initial), "every adapter tensor must train"
    log = [json.loads(line) for line in open(os.path.join(out, "log.jsonl"))]
    assert [entry["step"] for entry in log] == [1, 2] and all(entry["loss"] > 0 for entry in log)


def test_an_adding_adapter_starts_at_zero_values_and_says_so(tmp):
    path = make_run(tmp, training={"steps": 2})
    config = json.load(open(path))
    config["adapter"]["nested_value"] = "add"
    json.dump(config, open(path, "w"))
    run = Run(path)
    assert all(torch.count_nonzero(p.to_v.weight) == 0 for p in run.adapter.layers)
    run.run()
    saved = load_adapter(os.path.join(tmp, "runs", "nested", "adapter.json"))
    assert saved.config["nested_value"] == "add"
    assert any(torch.count_nonzero(p.to_v.weight) > 0 for p in saved.layers), "training moved the values"
    config["adapter"]["kind"] = "ip-adapter"
    json.dump(config, open(path, "w"))
    with pytest.raises(ValueError, match='adapter.nested_value "add" applies to nested adapters only'):
        Run(path)


def test_gradient_checkpointing_and_bf16(tmp):
    plain = Run(make_run(tmp, training={"steps": 1}))
    plain.run()
    reference = weights(os.path.join(tmp, "runs", "nested"))
    config = make_run(tmp, training={"steps": 1}, output="runs/checkpointed")
    Run(config, gradient_checkpointing=True).run()
    assert max_relative(weights(os.path.join(tmp, "runs", "checkpointed")), reference) < 1e-5
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(True)
    try:
        config = make_run(tmp, training={"steps": 1}, output="runs/bf16")
        bf16 = Run(config, accelerator=Accelerator(mixed_precision="bf16", cpu=True))
        assert bf16.base.unet.dtype == torch.bfloat16 and next(bf16.adapter.parameters()).dtype == torch.float32
        bf16.run()
    finally:
        AcceleratorState._reset_state(True)
    loss = json.loads(open(os.path.join(tmp, "runs", "bf16", "log.jsonl")).readline())["loss"]
    assert 0 < loss < 10
    assert max_relative(weights(os.path.join(tmp, "runs", "bf16")), reference) < 0.2


def test_resume_continues_exactly(tmp):
    Run(make_run(tmp, training={"steps": 4}, output="runs/straight")).run()
    config = make_run(tmp, training={"steps": 4}, output="runs/halves")
    Run(config).run(stop_after=2)
    with pytest.raises(ValueError, match="--resume"):
        Run(config)
    resumed = Run(config, resume=True)
    assert resumed.step == 2
    resumed.run()
    assert max_relative(weights(os.path.join(tmp, "runs", "halves")), weights(os.path.join(tmp, "runs", "straight"))) < 1e-6


def test_killed_run_resumes_from_its_last_checkpoint(tmp):
    Run(make_run(tmp, training={"steps": 4}, output="runs/straight")).run()
    config = make_run(tmp, training={"steps": 4}, output="runs/killed")
    state = os.path.join(tmp, "runs", "killed", "checkpoint", "state.json")
    command = [sys.executable, "-m", "nest_torch.train", "--config", config]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not os.path.exists(state) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    step = json.load(open(state))["step"]
    assert step < 4, "the run ended before it could be killed; the test proves nothing"
    subprocess.run(command + ["--resume"], env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert json.load(open(state))["step"] == 4
    assert max_relative(weights(os.path.join(tmp, "runs", "killed")), weights(os.path.join(tmp, "runs", "straight"))) < 1e-5
