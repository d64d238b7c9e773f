#!/usr/bin/env python3
"""Draws the identity-against-prompt figure from `nest eval --tradeoff`'s
tradeoff.json: one line per method and knob, each point labelled with its
setting, ± one standard error both ways, the base model as a star.

    pip install matplotlib
    python3 tools/plot_tradeoff.py RUN/tradeoff.json docs/world-tradeoff.png [--title TEXT]
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("points", help="tradeoff.json written by nest eval --tradeoff")
parser.add_argument("output", help="PNG to write")
parser.add_argument("--title", default="Identity against prompt fidelity, held-out individuals")
args = parser.parse_args()

points = json.load(open(args.points))
fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
curves = {}
for p in points:
    if p.get("knob") is None:
        ax.errorbar(p["prompt"], p["identity"], xerr=p["promptStandardError"], yerr=p["identityStandardError"],
                    fmt="*", markersize=14, color="black", label=p["method"], capsize=2)
    else:
        curves.setdefault((p["method"], p["knob"]), []).append(p)
markers = ["o", "s", "^", "D"]
for k, ((method, knob), curve) in enumerate(curves.items()):
    curve.sort(key=lambda p: p["value"])
    xs = [p["prompt"] for p in curve]
    ys = [p["identity"] for p in curve]
    ax.errorbar(xs, ys, xerr=[p["promptStandardError"] for p in curve], yerr=[p["identityStandardError"] for p in curve],
                marker=markers[k % len(markers)], capsize=2, label=f"{method}: {knob}")
    for p in curve:
        ax.annotate(f"{p['value']:g}", (p["prompt"], p["identity"]), textcoords="offset points", xytext=(5, 4), fontsize=7)
ax.set_xlabel("prompt fidelity (fraction of prompt aspects recognized)")
ax.set_ylabel("identity (top-1 among truth and distractors)")
ax.set_title(args.title, fontsize=10)
ax.grid(alpha=0.3)
ax.legend(fontsize=7, loc="best")
fig.tight_layout()
fig.savefig(args.output)
print(f"wrote {args.output}")
