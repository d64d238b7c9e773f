#!/usr/bin/env bash
# The world UNet trained twice on the same data, seed and noise: once in
# float32, once with "precision": "bf16" (bfloat16 GEMM operands, float32
# sums, weights and optimizer state), one after the other on both cores, so
# the log's samples/s compare. NEST_BF16_PRODUCTS=1 makes the bf16 run
# multiply in bfloat16 wherever the CPU has AVX512_BF16, even where that is
# slower than float32 (which "auto" would refuse): this measures the numbers,
# not the choice. Prints both runs' held-out loss (validation_loss) at each
# checkpoint, the mean training loss over the last 10 logged steps, and the
# throughput. Usage: tools/compare_precision.sh [WORK_DIR] (default
# runs/precision); STEPS (default 1000), BATCH (default 8).
set -euo pipefail
WORK=${1:-runs/precision}
NEST=${NEST:-.build/release/nest}
STEPS=${STEPS:-1000}
BATCH=${BATCH:-8}
STAGES=tools/world-stages
mkdir -p "$WORK"
[ -x "$NEST" ] || swift build -c release --product nest
FRAMINGS=portrait,half-body,close-up

# The third edition's world: its trained VAE and text encoder, a UNet from scratch.
if [ ! -d "$WORK/model" ]; then
  "$NEST" world model -o "$WORK/model.partial" --framings $FRAMINGS > /dev/null
  cp "$STAGES"/vae/vae/* "$WORK/model.partial/vae/"
  cp "$STAGES"/clip/text_encoder/* "$WORK/model.partial/text_encoder/"
  mv "$WORK/model.partial" "$WORK/model"
fi
[ -d "$WORK/data" ] || "$NEST" world dataset -o "$WORK/data" --identities 120 --contexts 8 --seed 1 --describe 0.5 \
    --masks --framings $FRAMINGS > /dev/null
[ -d "$WORK/held" ] || "$NEST" world dataset -o "$WORK/held" --identities 16 --contexts 4 --seed 2 --describe 0.5 \
    --framings $FRAMINGS > /dev/null

for precision in float32 bf16; do
  [ -e "$WORK/unet-$precision/done" ] && continue
  rm -rf "$WORK/unet-$precision"
  cat > "$WORK/$precision.json" <<JSON
{"model": "model", "data": "data/manifest.jsonl", "output": "unet-$precision", "resolution": 64, "batch_size": $BATCH,
 "steps": $STEPS, "learning_rate": 3e-4, "warmup_steps": 100, "schedule": "cosine", "caption_dropout": 0.1,
 "flip": false, "checkpoint_every": $((STEPS / 2)), "log_every": 10, "seed": 3, "validation_data": "held/manifest.jsonl",
 "precision": "$precision"}
JSON
  NEST_BF16_PRODUCTS=1 "$NEST" train unet --config "$WORK/$precision.json" > "$WORK/$precision.out" 2>&1
  touch "$WORK/unet-$precision/done"
done

python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
runs = {p: [json.loads(l) for l in open(f"{work}/unet-{p}/log.jsonl")] for p in ("float32", "bf16")}
for p, rows in runs.items():
    val = [(r["step"], r["validation_loss"]) for r in rows if "validation_loss" in r]
    steps = [r for r in rows if "loss" in r]
    tail = steps[-10:]
    print(f"{p:8s} validation loss " + ", ".join(f"step {s}: {v:.5f}" for s, v in val)
          + f"; mean training loss over steps {tail[0]['step']}-{tail[-1]['step']}: {sum(r['loss'] for r in tail) / len(tail):.5f}"
          + f"; {steps[-1]['samples_per_s']:.1f} samples/s")
a, b = ([r["validation_loss"] for r in runs[p] if "validation_loss" in r][-1] for p in ("float32", "bf16"))
print(f"bf16 against float32: held-out loss {100 * (b - a) / a:+.2f}%")
PY
