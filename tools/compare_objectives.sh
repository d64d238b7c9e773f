#!/usr/bin/env bash
# A short same-budget comparison of the UNet's training objectives on the
# miniature world: plain ε-prediction, v-prediction, and ε with min-SNR-γ
# weighting (γ = 5), each training a fresh UNet (the world model's config,
# random weights) on the world's frozen VAE and text encoder, with the same
# data order, seed, learning rate and steps. Every checkpoint logs the
# held-out denoising error in ε-units (validation_loss in log.jsonl): noise
# and timesteps fixed across the three runs, individuals no training record
# shows. Usage: tools/compare_objectives.sh [WORK_DIR] (default runs/objectives)
# STEPS (default 300), BATCH (default 8), SEED (training seed, default 3), MODEL
# (default: the shipped world).
set -euo pipefail
WORK=${1:-runs/objectives}
NEST=${NEST:-.build/release/nest}
MODEL=${MODEL:-Sources/nest/Resources/world}
STEPS=${STEPS:-300}
BATCH=${BATCH:-8}
SEED=${SEED:-3}
mkdir -p "$WORK"
[ -x "$NEST" ] || swift build -c release --product nest

# Model folders: the world with its UNet weights removed (trained from
# scratch), once with ε- and once with v-prediction in the scheduler config.
for kind in epsilon v_prediction; do
  if [ ! -d "$WORK/model-$kind" ]; then
    cp -r "$MODEL" "$WORK/model-$kind.partial"
    rm -rf "$WORK/model-$kind.partial/adapters" "$WORK/model-$kind.partial"/unet/*.safetensors
    sed -i "s/\"prediction_type\" *: *\"[a-z_]*\"/\"prediction_type\" : \"$kind\"/" \
      "$WORK/model-$kind.partial/scheduler/scheduler_config.json"
    mv "$WORK/model-$kind.partial" "$WORK/model-$kind"
  fi
done
# Training data as the world's base training set; held-out individuals from another seed.
[ -d "$WORK/data" ] || "$NEST" world dataset -o "$WORK/data" --identities 200 --contexts 8 --seed 1 --describe 0.5 > /dev/null
[ -d "$WORK/held" ] || "$NEST" world dataset -o "$WORK/held" --identities 8 --contexts 4 --seed 77 --describe 0.5 > /dev/null

run() { # NAME MODEL EXTRA_JSON
  [ -e "$WORK/$1/done" ] && return
  cat > "$WORK/$1.json" <<JSON
{"model": "$2", "data": "data/manifest.jsonl", "output": "$1", "resolution": 64, "batch_size": $BATCH,
 "steps": $STEPS, "learning_rate": 3e-4, "warmup_steps": 20, "schedule": "cosine", "caption_dropout": 0.1,
 "flip": false, "checkpoint_every": 50, "log_every": 10, "seed": $SEED, "validation_data": "held/manifest.jsonl"$3}
JSON
  local resume=()
  [ -e "$WORK/$1/checkpoint.safetensors" ] && resume=(--resume)
  NEST_THREADS=1 "$NEST" train unet --config "$WORK/$1.json" "${resume[@]}" > "$WORK/$1.out" 2>&1
  touch "$WORK/$1/done"
}
run epsilon model-epsilon "" & A=$!
run v_prediction model-v_prediction "" & B=$!
run min_snr model-epsilon ', "loss_weighting": "min_snr", "snr_gamma": 5' & C=$!
wait $A; wait $B; wait $C
for name in epsilon v_prediction min_snr; do
  echo "$name: $(grep validation_loss "$WORK/$name/log.jsonl" | tr '\n' ' ')"
done
