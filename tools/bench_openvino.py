#!/usr/bin/env python3
"""OpenVINO side of `nest-bench compare`: one case and one precision per process.

    HF_HUB_OFFLINE=1 python3 tools/bench_openvino.py CASE [--repeats N] [--threads T] [--precision f32|bf16]

The model and its inputs come from tools/bench_torch.py's builders (same configs,
seeds and random weights as the PyTorch column). A separate converter process
builds them, runs PyTorch once in float32 for a reference output, converts the
model with `openvino.convert_model` (example inputs: the case's own; their
shapes made static) and saves the IR with float32 weights, the inputs and the
reference to a temporary folder.
This process then reads the IR, compiles it for the CPU plugin (LATENCY hint,
INFERENCE_NUM_THREADS = T, INFERENCE_PRECISION_HINT = the precision), runs one
warm-up and the best of N timed calls, and prints one JSON line:

    {"case", "seconds", "peak_rss_mib", "rss_after_mib", "precision",
     "rel_l2_vs_torch", "compile_seconds", "convert_peak_rss_mib"}

"precision" is what the compiled model reports it runs, read back after
compiling: a bf16 hint on a CPU without native bfloat16 (no AVX512_BF16 or AMX)
runs float32. "peak_rss_mib" is this process's getrusage peak (reading,
compiling and running; conversion happens in the converter, whose peak is
"convert_peak_rss_mib"); "rss_after_mib", VmRSS after the timed calls, tells
what the compiled model keeps from what compiling needed. "rel_l2_vs_torch"
compares the warm-up's output with PyTorch's float32 output. A case name
ending in "-bf16" is the same model with bf16 as the default precision. Cases
that are not one model call print {"case", "not_applicable": why}. Needs
openvino (pip), torch, diffusers and transformers.
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

TOOLS = os.path.dirname(os.path.abspath(__file__))

# Cases OpenVINO cannot express as one compiled model, and why.
NOT_APPLICABLE = {
    "train-step": "a training step needs gradients and an optimizer; OpenVINO runs inference only",
    "generate-20": "a whole diffusers pipeline (tokenizer, scheduler loop, three models), not one model call",
    "generate-20-bf16": "a whole diffusers pipeline (tokenizer, scheduler loop, three models), not one model call",
}


def fail(message):
    print(f"bench_openvino.py: {message}", file=sys.stderr)
    sys.exit(1)


def parse_arguments(argv):
    p = argparse.ArgumentParser(description="OpenVINO side of `nest-bench compare`: one case and precision.")
    p.add_argument("case")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=["f32", "bf16"])
    p.add_argument("--convert-into", help=argparse.SUPPRESS)  # the converter child's mode
    args = p.parse_args(argv)
    if args.repeats < 0 or args.threads < 1:
        fail(f"--repeats must be >= 0 and --threads >= 1 (got {args.repeats} and {args.threads})")
    named_bf16 = args.case.endswith("-bf16")
    if args.precision is None:
        args.precision = "bf16" if named_bf16 else "f32"
    elif named_bf16 and args.precision != "bf16":
        fail(f"case {args.case} names bfloat16 but --precision is {args.precision}")
    # The OpenVINO model is always converted from the float32 one; bf16 is a compile hint.
    args.model = args.case[:-len("-bf16")] if named_bf16 else args.case
    return args


def convert(model_name, folder, threads):
    """The converter child: PyTorch model -> IR, inputs and reference in `folder`."""
    import warnings

    import numpy as np
    import openvino as ov
    import torch

    sys.path.insert(0, TOOLS)
    import bench_torch

    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    call = bench_torch.model_call(model_name)
    if call is None:
        fail(f"unknown case {model_name} (OpenVINO runs the UNet, VAE decode and CLIP text cases)")
    module, inputs = call
    with torch.no_grad():
        reference = module(*inputs).float().numpy()
        # Traced here rather than by convert_model: torch.jit.trace's default check
        # would run the model twice more, and once is all the conversion needs.
        traced = torch.jit.trace(module, inputs, check_trace=False)
        model = ov.convert_model(traced, example_input=inputs)
    # The trace leaves batch and spatial sizes dynamic; the case's shapes are fixed,
    # and static shapes let the CPU plugin plan its memory and kernels once.
    model.reshape({port: ov.PartialShape(list(tensor.shape)) for port, tensor in zip(model.inputs, inputs)})
    ov.save_model(model, os.path.join(folder, "model.xml"), compress_to_fp16=False)
    arrays = {f"input{i}": tensor.numpy() for i, tensor in enumerate(inputs)}
    np.savez(os.path.join(folder, "io.npz"), reference=reference, **arrays)


def run_converter(args, folder):
    """Runs the converter in its own process; returns its peak RSS in MiB."""
    command = [sys.executable, os.path.abspath(__file__), args.model, "--threads", str(args.threads),
               "--convert-into", folder]
    child = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if child.returncode != 0:
        lines = [line.removeprefix("bench_openvino.py: ") for line in child.stderr.splitlines() if line.strip()]
        fail(f"converting {args.model} failed: {lines[-1] if lines else f'exit status {child.returncode}'}")
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def relative_l2(output, reference):
    import numpy as np
    output, reference = output.astype(np.float64), reference.astype(np.float64)
    return float(np.linalg.norm(output - reference) / np.linalg.norm(reference))


def current_rss_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def measure(args, folder):
    """Compiles the IR in `folder` and times it: the JSON line's fields."""
    import numpy as np
    import openvino as ov

    io = np.load(os.path.join(folder, "io.npz"))
    inputs = [io[f"input{i}"] for i in range(len(io.files) - 1)]
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": args.threads,
              "INFERENCE_PRECISION_HINT": args.precision}
    start = time.perf_counter()
    compiled = ov.Core().compile_model(os.path.join(folder, "model.xml"), "CPU", config)
    compile_seconds = time.perf_counter() - start
    request = compiled.create_infer_request()

    def call():
        return request.infer(inputs, share_inputs=True)[compiled.output(0)]

    start = time.perf_counter()
    output = call()
    best = time.perf_counter() - start  # with --repeats 0 the warm-up is the measurement
    if args.repeats > 0:
        best = math.inf
    for _ in range(args.repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return {"seconds": best, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_after_mib": current_rss_mib(),
            "precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            "rel_l2_vs_torch": relative_l2(output, io["reference"]), "compile_seconds": compile_seconds}


def main(argv):
    args = parse_arguments(argv)
    if args.convert_into:
        convert(args.model, args.convert_into, args.threads)
        return
    if args.case in NOT_APPLICABLE:
        print(json.dumps({"case": args.case, "not_applicable": NOT_APPLICABLE[args.case]}))
        return
    try:
        import openvino  # noqa: F401  (only to fail early with a clear line)
    except ImportError:
        fail("cannot import openvino (pip install openvino)")
    with tempfile.TemporaryDirectory(prefix="bench_openvino_") as folder:
        convert_peak = run_converter(args, folder)
        result = measure(args, folder)
    print(json.dumps({"case": args.case, **result, "convert_peak_rss_mib": convert_peak}))


if __name__ == "__main__":
    main(sys.argv[1:])
