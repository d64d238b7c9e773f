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
# Two panels: top-1 identity (what the goals are stated in) and the true
# subject's mean rank among the candidates, which moves before top-1 does.
panels = [("identity", "identityStandardError", "identity (top-1 among truth and distractors)")]
if all("identityRank" in p for p in points):
    panels.append(("identityRank", "identityRankStandardError", "identity rank (1 nearest, 0.5 chance)"))
fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.8), dpi=120, squeeze=False)
curves = {}
for p in points:
    if p.get("knob") is not None:
        curves.setdefault((p["method"], p["knob"]), []).append(p)
markers = ["o", "s", "^", "D"]
for ax, (key, error, label) in zip(axes[0], panels):
    for p in points:
        if p.get("knob") is None:
            ax.errorbar(p["prompt"], p[key], xerr=p["promptStandardError"], yerr=p[error],
                        fmt="*", markersize=14, color="black", label=p["method"], capsize=2)
    for k, ((method, knob), curve) in enumerate(curves.items()):
        curve.sort(key=lambda p: p["value"])
        ax.errorbar([p["prompt"] for p in curve], [p[key] for p in curve],
                    xerr=[p["promptStandardError"] for p in curve], yerr=[p[error] for p in curve],
                    marker=markers[k % len(markers)], capsize=2, label=f"{method}: {knob}")
        for p in curve:
            ax.annotate(f"{p['value']:g}", (p["prompt"], p[key]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xlabel("prompt fidelity (fraction of prompt aspects recognized)")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
fig.suptitle(args.title, fontsize=10)
fig.tight_layout()
fig.savefig(args.output)
print(f"wrote {args.output}")
