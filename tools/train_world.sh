#!/usr/bin/env bash
# Trains the miniature world from scratch with the project's own Swift code,
# stage by stage, each stage resumable: run it again after an interruption
# and every stage continues from its last checkpoint (finished stages are
# skipped). Usage: tools/train_world.sh [WORK_DIR]   (default: runs/world)
#
#   1. data:    nest world model + nest world dataset (base and adapter sets)
#   2. vae, clip (in parallel)   3. unet   4. adapters per domain: nested,
#   then the single-token and IP-Adapter-style baselines; each lands in
#   WORK_DIR/model/adapters when done. Pack it: nest world pack --model WORK_DIR/model
set -euo pipefail
WORK=${1:-runs/world}
NEST=${NEST:-.build/release/nest}
# Debian's OpenBLAS misdetects AVX-512 CPUs as Prescott (4x slower sgemm).
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
unset OPENBLAS_L2_SIZE
mkdir -p "$WORK"
[ -x "$NEST" ] || swift build -c release --product nest

stage() { # NAME COMPONENT THREADS: run or resume `nest train COMPONENT`
  local name=$1 component=$2 threads=$3
  if [ -e "$WORK/$name/done" ]; then return; fi
  local resume=()
  [ -e "$WORK/$name/checkpoint.safetensors" ] && resume=(--resume)
  NEST_THREADS=$threads "$NEST" train "$component" --config "$WORK/$name.json" "${resume[@]}" > "$WORK/$name.out" 2>&1
  touch "$WORK/$name/done"
}

# 1. Untrained model folder and data (deterministic from the seeds).
[ -d "$WORK/base" ] || "$NEST" world model -o "$WORK/base"
[ -d "$WORK/data" ] || "$NEST" world dataset -o "$WORK/data" --identities 1000 --contexts 8 --seed 1

# 2. Autoencoder and CLIP, side by side.
cat > "$WORK/vae.json" <<JSON
{"model": "base", "data": "data/manifest.jsonl", "output": "vae", "resolution": 64, "batch_size": 8, "steps": 1800,
 "learning_rate": 5e-4, "warmup_steps": 50, "schedule": "cosine", "kl_weight": 1e-5, "flip": false,
 "checkpoint_every": 100, "log_every": 10, "seed": 1}
JSON
cat > "$WORK/clip.json" <<JSON
{"model": "base", "data": "data/manifest.jsonl", "output": "clip", "resolution": 64, "batch_size": 64, "steps": 600,
 "learning_rate": 5e-4, "warmup_steps": 30, "schedule": "cosine", "flip": false,
 "checkpoint_every": 50, "log_every": 10, "seed": 2}
JSON
stage vae vae 2 & VAE=$!
stage clip clip 1 & CLIP=$!
wait $VAE; wait $CLIP

# 3. The text-to-image UNet on the trained VAE and text encoder: 2,400 steps,
#    then the same run resumed with its cosine schedule stretched to 4,400
#    (a warm restart; the second half gave visibly sharper subjects).
#    Adapters trained on an older UNet are stale: they are retrained.
if [ ! -e "$WORK/unet/done-4400" ]; then
  rm -rf "$WORK/model.partial" && cp -r "$WORK/base" "$WORK/model.partial"
  cp "$WORK"/vae/vae/* "$WORK/model.partial/vae/"
  cp "$WORK"/clip/text_encoder/* "$WORK/model.partial/text_encoder/"
  cp "$WORK"/clip/image_encoder/* "$WORK/model.partial/image_encoder/"
  [ -e "$WORK/unet.json" ] || cat > "$WORK/unet.json" <<JSON
{"model": "model.partial", "data": "data/manifest.jsonl", "output": "unet", "resolution": 64, "batch_size": 32,
 "steps": 2400, "learning_rate": 3e-4, "warmup_steps": 100, "schedule": "cosine", "caption_dropout": 0.1,
 "flip": false, "checkpoint_every": 100, "log_every": 10, "sample_every": 400, "seed": 3}
JSON
  stage unet unet 2
  sed -i 's/"steps": 2400/"steps": 4400/' "$WORK/unet.json"
  rm -f "$WORK/unet/done"
  stage unet unet 2 && touch "$WORK/unet/done-4400"
  cp "$WORK"/unet/unet/* "$WORK/model.partial/unet/"
  rm -rf "$WORK/model" "$WORK"/adapter-* && mv "$WORK/model.partial" "$WORK/model"
fi

# 4. One Nested Attention adapter per domain, side by side; then the
#    baselines on the same encoder (single-token, IP-Adapter-style).
adapter_config() { # DOMAIN KIND NAME
  cat > "$WORK/$3.json" <<JSON
{"model": "model", "data": "data-$1/manifest.jsonl", "output": "$3",
 "adapter": {"placeholder_token": "<$1>", "class_word": "$1", "kind": "$2",
             "resampler": {"width": 128, "depth": 2, "heads": 4, "head_dim": 32, "queries": 16, "ff_mult": 2}},
 "training": {"steps": 1500, "batch_size": 8, "learning_rate": 3e-4, "warmup_steps": 50, "schedule": "cosine",
              "flip_targets": false, "seed": 4},
 "checkpoint_every": 100, "log_every": 10, "sample_every": 500}
JSON
}
install_adapter() { # RUN NAME
  mkdir -p "$WORK/model/adapters"
  cp "$WORK/$1/adapter.json" "$WORK/model/adapters/$2.json"
  cp "$WORK/$1/adapter.safetensors" "$WORK/model/adapters/$2.safetensors"
}
for domain in critter bot; do
  [ -d "$WORK/data-$domain" ] || "$NEST" world dataset -o "$WORK/data-$domain" --domain $domain \
      --identities 1000 --contexts 8 --seed 1 --placeholder "<$domain>" > /dev/null
done
for kind in nested single-token ip-adapter; do
  suffix=$([ $kind = nested ] && echo "" || echo "-$kind")
  for domain in critter bot; do adapter_config $domain $kind adapter-$domain$suffix; done
  stage adapter-critter$suffix adapter 1 & A=$!
  stage adapter-bot$suffix adapter 1 & B=$!
  wait $A; wait $B
  # 5. The model folder gains each adapter as soon as it is trained.
  for domain in critter bot; do install_adapter adapter-$domain$suffix $domain$suffix; done
  echo "trained $kind adapters: $WORK/model/adapters"
done
echo "trained world: $WORK/model"
