#!/usr/bin/env bash
# Loading measured as users meet it: whole processes, `nest generate` (release
# build) against diffusers on the same full-size folders with random weights.
#
#   tools/bench_load.sh [DIR]     (default /tmp/nest-load-bench; needs ~7 GB, ~14 GB with SDXL)
#   NEST_BENCH_SDXL=1 tools/bench_load.sh   also the float16 SDXL folder (slow on few cores;
#                                           NEST_BENCH_SDXL_SIZE picks its size, default 1024)
#   NEST_BIN=path/to/nest                   another build of nest (default .build/release/nest)
#
# Builds the folders once (tools/make_sd15_folder.py, tools/make_sdxl_folder.py),
# reads every file once so the page cache is warm, then runs each case once
# under /usr/bin/time -v and prints wall time and peak RSS per case.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/nest-load-bench}
mkdir -p "$dir"
export HF_HUB_OFFLINE=1
nest=${NEST_BIN:-.build/release/nest}
[ -x "$nest" ] || swift build -c release --product nest
[ -d "$dir/sd15-f32" ] || python3 tools/make_sd15_folder.py "$dir/sd15-f32"
[ -d "$dir/sd15-f16" ] || python3 tools/make_sd15_folder.py "$dir/sd15-f16" --float16
if [ "${NEST_BENCH_SDXL:-0}" = 1 ] && [ ! -d "$dir/sdxl-f16" ]; then python3 tools/make_sdxl_folder.py "$dir/sdxl-f16"; fi

# One case: LABEL then the command; prints "LABEL  wall S  peak MiB" and the tool's own last line.
measure() {
    local label=$1; shift
    local log="$dir/$label.time"
    /usr/bin/time -v "$@" > "$dir/$label.out" 2> "$log" || { echo "$label: failed (see $log)"; tail -3 "$log"; return 0; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s }' "$log")
    rss=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$log")
    printf '%-28s wall %7.1f s  peak %6d MiB   %s\n' "$label" "$wall" "$rss" \
        "$(grep -h -E '^(loaded|diffusers:)' "$dir/$label.out" "$log" | head -1)"
}

for folder in "$dir"/sd15-f32 "$dir"/sd15-f16 "$dir"/sdxl-f16; do
    [ -d "$folder" ] || continue
    find "$folder" -name '*.safetensors' -exec cat {} + > /dev/null
done

prompt="a photo of a cat on the beach"
# /usr/bin/time runs programs, not shell functions: each case is spelled out.
nest_args() { echo generate --model "$1" --steps "$2" --width "$3" --height "$3" --guidance 7.5 --seed 1 --overwrite; }
torch_args() { echo tools/bench_load_diffusers.py "$1" --steps "$2" --size "$3" --out "$dir/diffusers.png"; }

# shellcheck disable=SC2046  # the folder paths hold no spaces
{
measure nest-f32-1step-64 "$nest" $(nest_args "$dir/sd15-f32" 1 64) --prompt "$prompt" --output "$dir/nest.png"
measure diffusers-f32-1step-64 python3 $(torch_args "$dir/sd15-f32" 1 64)
measure nest-f32-4step-256 "$nest" $(nest_args "$dir/sd15-f32" 4 256) --prompt "$prompt" --output "$dir/nest.png"
measure diffusers-f32-4step-256 python3 $(torch_args "$dir/sd15-f32" 4 256)
measure nest-f16-half-4step-256 "$nest" $(nest_args "$dir/sd15-f16" 4 256) --prompt "$prompt" --output "$dir/nest.png" --half-weights
if [ -d "$dir/sdxl-f16" ]; then
    size=${NEST_BENCH_SDXL_SIZE:-1024}
    measure "nest-sdxl-f16-half-1step-$size" "$nest" $(nest_args "$dir/sdxl-f16" 1 "$size") --prompt "$prompt" \
        --output "$dir/nest.png" --half-weights
fi
}
