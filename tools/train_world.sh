#!/usr/bin/env bash
# Trains the miniature world from scratch with the project's own Swift code,
# stage by stage, each stage resumable: run it again after an interruption
# and every stage continues from its last checkpoint (finished stages are
# skipped). Usage: tools/train_world.sh [WORK_DIR]   (default: runs/world)
#
# Near framings (the subject fills the frame, as a face fills a portrait), in
# which an individual's markings survive at 64 pixels, and a UNet trained on a
# zero-terminal-SNR schedule with v-prediction (the model folder's scheduler
# config, written by `nest world model`).
#   1. data:    nest world model + nest world dataset (base and adapter sets)
#   2. vae, clip (in parallel)   3. unet: the text-to-image UNet on the VAE's
#   latents, with an exponential moving average for sampling
#   4. adapters per domain: nested, then the IP-Adapter-style and single-token
#   baselines, each with its own trained copy of the image encoder; each lands
#   in WORK_DIR/model/adapters when done.
#   Pack it: nest world pack --model WORK_DIR/model
# UNET_STEPS (default 4000) sets the UNet's length; a run resumed with
# another value stretches its cosine schedule.
set -euo pipefail
WORK=${1:-runs/world}
NEST=${NEST:-.build/release/nest}
# Debian's OpenBLAS misdetects AVX-512 CPUs as Prescott (4x slower sgemm); on a CPU
# without AVX-512 the SkylakeX kernels would stop at an illegal instruction.
if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
    export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
fi
unset OPENBLAS_L2_SIZE
# No stage runs longer than this in one go (default 2.5 h); a paused stage
# continues from its last checkpoint when the script runs again.
STAGE_LIMIT=${STAGE_LIMIT:-9000}
mkdir -p "$WORK"
[ -x "$NEST" ] || swift build -c release --product nest
# RESUME_FROM=DIR: first copy in the stages that tools/world_stages.py saved
# there (finished ones in float16, an unfinished one as a compact checkpoint),
# e.g. RESUME_FROM=tools/world-stages to continue the committed run.
if [ -n "${RESUME_FROM:-}" ]; then python3 tools/world_stages.py restore "$RESUME_FROM" "$WORK"; fi

stage() { # NAME COMPONENT THREADS: run or resume `nest train COMPONENT`, for at most STAGE_LIMIT seconds
  local name=$1 component=$2 threads=$3
  if [ -e "$WORK/$name/done" ]; then return; fi
  local resume=() rc=0
  [ -e "$WORK/$name/checkpoint.safetensors" ] && resume=(--resume)
  NEST_THREADS=$threads timeout "$STAGE_LIMIT" "$NEST" train "$component" --config "$WORK/$name.json" "${resume[@]}" \
      >> "$WORK/$name.out" 2>&1 || rc=$?
  if [ $rc = 124 ]; then
    echo "$name: paused after ${STAGE_LIMIT} s (last log: $(tail -n 1 "$WORK/$name/log.jsonl")); run the script again to continue" >&2
    return 3
  elif [ $rc != 0 ]; then
    echo "$name failed (exit $rc): see $WORK/$name.out" >&2; return $rc
  fi
  touch "$WORK/$name/done"
}

# 1. Untrained model folder and data (deterministic from the seeds): near
#    framings only (portrait, half-body, close-up in equal parts; one scene
#    in four with a second subject), in which an individual's markings
#    survive the autoencoder at 64 pixels (docs/world.md, "Second edition").
#    `held` is a small set of other individuals for the UNet's held-out loss.
FRAMINGS=portrait,half-body,close-up
[ -d "$WORK/base" ] || "$NEST" world model -o "$WORK/base" --framings $FRAMINGS
[ -d "$WORK/data" ] || "$NEST" world dataset -o "$WORK/data" --identities 1000 --contexts 8 --seed 1 --describe 0.5 --masks \
    --framings $FRAMINGS
[ -d "$WORK/held" ] || "$NEST" world dataset -o "$WORK/held" --identities 16 --contexts 4 --seed 2 --describe 0.5 \
    --framings $FRAMINGS > /dev/null

# 2. Autoencoder and CLIP, side by side. The VAE's posterior is narrowed
#    from the start (log-variance - 6) under a KL weight of 1e-8: a wide
#    posterior (KL weight 1e-5 on a per-pixel mean loss, about 10^5 times
#    Stable Diffusion's) leaves a latent sample little more than a blurred
#    image (the first edition needed a second VAE stage to undo it).
cat > "$WORK/vae.json" <<JSON
{"model": "base", "data": "data/manifest.jsonl", "output": "vae", "resolution": 64, "batch_size": 8, "steps": 3000,
 "learning_rate": 5e-4, "warmup_steps": 50, "schedule": "cosine", "kl_weight": 1e-8, "logvar_shift": -6, "flip": false,
 "checkpoint_every": 100, "log_every": 10, "sample_every": 500, "seed": 1}
JSON
cat > "$WORK/clip.json" <<JSON
{"model": "base", "data": "data/manifest.jsonl", "output": "clip", "resolution": 64, "batch_size": 64, "steps": 600,
 "learning_rate": 5e-4, "warmup_steps": 30, "schedule": "cosine", "flip": false,
 "checkpoint_every": 50, "log_every": 10, "seed": 2}
JSON
if [ -e "$WORK/vae/done" ]; then stage clip clip 2  # resumed after the VAE finished
else
  stage vae vae 2 & VAE=$!
  stage clip clip 1 & CLIP=$!
  wait $VAE; wait $CLIP
fi

# 3. The text-to-image UNet from scratch on the VAE's latents and the trained
#    text encoder, sampled with its EMA weights. Its objective comes from the
#    skeleton's scheduler config: v-prediction on betas rescaled to zero
#    signal at the last timestep, sampled from that timestep ("trailing").
#    On Stable Diffusion 1.x's schedule (ε, the last timestep still holding
#    7% of the picture) the world's UNets learned to take the subject's
#    layout and colours from that trace of the truth instead of from the
#    words; at the same 1,200 steps the zero-SNR UNet's prompt fidelity was
#    0.71 against 0.52 (docs/world.md, "Third edition").
#    Nested Attention works through the model's attention to the subject's
#    noun at the subject's pixels; trained on the diffusion loss alone, the
#    world's UNets attended every word alike everywhere (inside / outside the
#    subject 0.9-1.1 in every layer, tools/probe_attention.py), so the
#    renderer's masks supervise the noun's cross-attention
#    (attention_localization, as FastComposer does with segmentation masks),
#    and half the captions name the subject's visible traits before its noun
#    (data step 1, --describe 0.5) so the noun carries looks, not only a
#    class. Adapters trained on an older UNet are stale: they are retrained.
#    (A finished UNet restored by RESUME_FROM still needs its model folder.)
#    The UNet and adapter stages ask for "precision": "bf16": bfloat16 products
#    where the CPU multiplies them faster than float32 (AMD Zen 4), float32
#    elsewhere (nest train says which); 1,000 steps of this UNet land within
#    0.2% of float32's held-out loss (tools/compare_precision.sh).
if [ ! -e "$WORK/unet/done" ] || [ ! -d "$WORK/model" ]; then
  unet_was_done=$([ -e "$WORK/unet/done" ] && echo yes || echo no)
  if [ ! -d "$WORK/model.partial" ]; then
    cp -r "$WORK/base" "$WORK/model.partial.tmp"
    cp "$WORK"/vae/vae/* "$WORK/model.partial.tmp/vae/"
    cp "$WORK"/clip/text_encoder/* "$WORK/model.partial.tmp/text_encoder/"
    cp "$WORK"/clip/image_encoder/* "$WORK/model.partial.tmp/image_encoder/"
    mv "$WORK/model.partial.tmp" "$WORK/model.partial"
  fi
  cat > "$WORK/unet.json" <<JSON
{"model": "model.partial", "data": "data/manifest.jsonl", "output": "unet", "resolution": 64, "batch_size": 32,
 "steps": ${UNET_STEPS:-4000}, "learning_rate": 3e-4, "warmup_steps": 100, "schedule": "cosine", "caption_dropout": 0.1,
 "flip": false, "checkpoint_every": 100, "log_every": 10, "sample_every": 500, "seed": 3,
 "ema": 0.999, "ema_warmup": true, "validation_data": "held/manifest.jsonl",
 "attention_localization": {"weight": 0.05, "words": ["critter", "bot"]}, "precision": "bf16"}
JSON
  stage unet unet 2
  cp "$WORK"/unet/unet/* "$WORK/model.partial/unet/"
  # A UNet finished just now makes any adapter stages stale; restored ones match their UNet.
  if [ "$unet_was_done" = no ]; then rm -rf "$WORK"/critter* "$WORK"/bot*; fi
  rm -rf "$WORK/model" && mv "$WORK/model.partial" "$WORK/model"
fi
MODEL=model

# 4. One Nested Attention adapter per domain, side by side; then the
#    baselines (IP-Adapter-style, then single-token). Every adapter sees its
#    subject through close-up references (centre, large, flat, the whole
#    subject: the world's aligned crops) and trains its own copy of the
#    image encoder: the world's CLIP learned from captions that never name
#    an individual's traits. The
#    subject's pixels count 8x in the loss (masks from the renderer): with a
#    plain loss the adapters' loss curves matched to four decimals and the
#    trained adapters changed generations by 2/255 on average.
#    NESTED_VALUE=add trains Nested Attention adapters that add their value to the
#    subject word's instead of replacing it (docs/world.md, "Adding the nested
#    value"); adapter stages already trained keep the form they were trained with.
adapter_config() { # DOMAIN KIND NAME
  local value=""
  if [ "$2" = nested ] && [ -n "${NESTED_VALUE:-}" ]; then value=" \"nested_value\": \"$NESTED_VALUE\","; fi
  cat > "$WORK/$3.json" <<JSON
{"model": "$MODEL", "data": "data-$1-pm/manifest.jsonl", "output": "$3",
 "adapter": {"placeholder_token": "<$1>", "class_word": "$1", "kind": "$2", "train_image_encoder": true,$value
             "resampler": {"width": 128, "depth": 2, "heads": 4, "head_dim": 32, "queries": 16, "ff_mult": 2}},
 "training": {"steps": 4000, "batch_size": 8, "learning_rate": 5e-4, "warmup_steps": 50, "schedule": "cosine",
              "flip_targets": false, "seed": 4, "subject_loss_weight": 8, "precision": "bf16"},
 "checkpoint_every": 100, "log_every": 10, "sample_every": 500}
JSON
}
install_adapter() { # RUN NAME
  mkdir -p "$WORK/$MODEL/adapters"
  cp "$WORK/$1/adapter.json" "$WORK/$MODEL/adapters/$2.json"
  cp "$WORK/$1/adapter.safetensors" "$WORK/$MODEL/adapters/$2.safetensors"
}
for domain in critter bot; do
  [ -d "$WORK/data-$domain-pm" ] || "$NEST" world dataset -o "$WORK/data-$domain-pm" --domain $domain \
      --identities 1000 --contexts 8 --seed 1 --placeholder "<$domain>" --portraits 4 --reference-framing close-up \
      --hold-out --masks --framings $FRAMINGS > /dev/null
done
for kind in nested ip-adapter single-token; do
  suffix=$([ $kind = nested ] && echo "" || echo "-$kind")
  for domain in critter bot; do adapter_config $domain $kind $domain$suffix; done
  stage critter$suffix adapter 1 & A=$!
  stage bot$suffix adapter 1 & B=$!
  wait $A; wait $B
  # The model folder gains each adapter as soon as it is trained.
  for domain in critter bot; do install_adapter $domain$suffix $domain$suffix; done
  echo "trained $kind adapters: $WORK/$MODEL/adapters"
done
echo "trained world: $WORK/$MODEL"
