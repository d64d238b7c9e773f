#!/usr/bin/env python3
"""Checks tools/bench_openvino.py on the tiny fixture UNet (tools/model_fixtures, 16² latents):

    HF_HUB_OFFLINE=1 python3 tools/test_bench_openvino.py

The conversion tests need openvino (pip install openvino) besides torch and
diffusers and are skipped, saying so, without it; the argument checks run
everywhere. About a minute on two busy cores.
"""
import importlib.util
import json
import os
import subprocess
import sys
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_openvino.py")
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
FIELDS = {"case": str, "seconds": float, "peak_rss_mib": float, "rss_after_mib": float, "precision": str,
          "rel_l2_vs_torch": float, "compile_seconds": float, "convert_peak_rss_mib": float}


def run(*arguments):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, SCRIPT, *arguments], capture_output=True, text=True, env=env)


def native_bfloat16():
    """Whether /proc/cpuinfo lists an instruction set OpenVINO's CPU plugin runs bfloat16 with."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set(next(line for line in f if line.startswith("flags")).split())
    except (OSError, StopIteration):
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16", "avx_ne_convert"})


class ConversionTests(unittest.TestCase):
    def json_line(self, *arguments):
        child = run(*arguments)
        self.assertEqual(child.returncode, 0, child.stderr[-2000:])
        lines = child.stdout.strip().splitlines()
        self.assertEqual(len(lines), 1, child.stdout)
        return json.loads(lines[0])

    @unittest.skipUnless(HAS_OPENVINO, "openvino is not installed (pip install openvino): conversion not checked")
    def test_float32_matches_pytorch(self):
        result = self.json_line("tiny-unet-16", "--repeats", "1", "--threads", "2")
        self.assertEqual(set(result), set(FIELDS))
        for key, kind in FIELDS.items():
            self.assertIsInstance(result[key], kind, key)
        self.assertEqual(result["case"], "tiny-unet-16")
        self.assertEqual(result["precision"], "f32")
        self.assertGreater(result["seconds"], 0)
        self.assertGreater(result["peak_rss_mib"], 0)
        self.assertLess(result["rel_l2_vs_torch"], 1e-3)

    @unittest.skipUnless(HAS_OPENVINO, "openvino is not installed (pip install openvino): conversion not checked")
    def test_bfloat16_reports_what_ran(self):
        result = self.json_line("tiny-unet-16-bf16", "--repeats", "0")
        self.assertEqual(result["case"], "tiny-unet-16-bf16")
        self.assertIn(result["precision"], ("f32", "bf16"))
        if native_bfloat16() is False:
            self.assertEqual(result["precision"], "f32")  # the plugin falls back without native bfloat16
        # bfloat16 keeps about 3 significant digits; float32 matches to ~1e-6.
        self.assertLess(result["rel_l2_vs_torch"], 5e-2 if result["precision"] == "bf16" else 1e-3)


class ArgumentTests(unittest.TestCase):
    def test_training_step_is_not_applicable(self):
        child = run("train-step")
        self.assertEqual(child.returncode, 0, child.stderr)
        result = json.loads(child.stdout)
        self.assertEqual(result["case"], "train-step")
        self.assertIn("inference only", result["not_applicable"])
        self.assertNotIn("seconds", result)

    def test_contradicting_precision_is_one_line(self):
        child = run("tiny-unet-16-bf16", "--precision", "f32")
        self.assertEqual(child.returncode, 1)
        self.assertEqual(child.stdout, "")
        self.assertEqual(child.stderr.strip().count("\n"), 0, child.stderr)
        self.assertIn("--precision is f32", child.stderr)


if __name__ == "__main__":
    unittest.main()
