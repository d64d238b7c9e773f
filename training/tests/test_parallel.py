"""Data parallel: `accelerate launch` with 2 CPU processes (gloo), each taking
half of the global batch, gives the weights of one process with the whole batch."""
import json
import os
import socket
import subprocess

from conftest import ROOT, make_run
from nest_torch.train import Run
from test_train import ENV, max_relative, weights

# With this seed and dropout, step 2's first process slice drops both images (no subject token
# there: its nested projections still need a gradient for the all-reduce), the second keeps one.
TRAINING = {"batch_size": 4, "steps": 2, "drop_image": 0.3, "drop_text": 0.2, "drop_both": 0.2, "seed": 1}


def test_two_processes_equal_one_with_the_summed_batch(tmp):
    from nest_torch.config import TrainingOptions
    from nest_torch.data import sample_rng
    from nest_torch.step import dropout
    options = TrainingOptions.from_dict(TRAINING)
    dropped = [dropout(sample_rng(options.seed, 1, p).random(), options)[0] for p in range(4)]
    assert dropped[:2] == [True, True] and not all(dropped[2:]), dropped
    Run(make_run(tmp, training=TRAINING, output="runs/one", count=5)).run()
    config = make_run(tmp, training=TRAINING, output="runs/two", count=5)
    with socket.socket() as probe:  # a free rendezvous port: other jobs on the machine may hold 29500
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--main_process_port", port,
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "nest_torch.train", "--cpu", "--config", config]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, cwd=os.path.join(ROOT, "training"))
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in open(os.path.join(tmp, "runs", "two", "log.jsonl"))]
    assert log[-1]["processes"] == 2 and log[-1]["step"] == 2, log
    one = [json.loads(line) for line in open(os.path.join(tmp, "runs", "one", "log.jsonl"))]
    assert all(abs(a["loss"] - b["loss"]) <= 1e-5 * b["loss"] for a, b in zip(log, one)), (log, one)
    difference = max_relative(weights(os.path.join(tmp, "runs", "two")), weights(os.path.join(tmp, "runs", "one")))
    print(f"data parallel: 2 processes vs 1, largest relative weight difference {difference:.2e}")
    assert difference < 1e-5


def test_the_unet_stage_on_two_processes_equals_one(tmp):
    from nest_torch.unet_train import UNetRun
    from test_unet_train import model, run_config, written
    keys = dict(batch_size=4, steps=2, model=model(tmp, velocity=True), ema=0.9, loss_weighting="min_snr", caption_dropout=0.3)
    UNetRun(run_config(tmp, name="one", count=5, **keys)).run()
    config = run_config(tmp, name="two", count=5, **keys)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--main_process_port", port,
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "nest_torch.unet_train", "--cpu", "--config", config]
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, cwd=os.path.join(ROOT, "training"))
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in open(os.path.join(tmp, "runs", "two", "log.jsonl")) if '"loss"' in line]
    assert log[-1]["processes"] == 2 and log[-1]["step"] == 2, log
    one_log = [json.loads(line) for line in open(os.path.join(tmp, "runs", "one", "log.jsonl")) if '"loss"' in line]
    assert all(abs(a["loss"] - b["loss"]) <= 1e-5 * b["loss"] for a, b in zip(log, one_log)), (log, one_log)
    one, two = written(tmp, "one"), written(tmp, "two")
    # AdamW turns the all-reduce's summation-order noise in near-zero gradients into steps of up to
    # the learning rate (1e-3 here): 1e-4 of a tensor's largest weight separates that from a wrong
    # split of the batch, which moves weights by the learning rate itself.
    difference = max(((one[k] - two[k]).abs().max() / one[k].abs().max().clamp_min(1e-12)).item() for k in one)
    assert difference < 1e-4, difference
