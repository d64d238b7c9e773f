#!/bin/sh
# Installs the Debian packages that building nest needs (OpenBLAS, libpng,
# libjpeg-turbo, pkg-config): directly as root, through sudo otherwise.
# Safe to run again: packages already installed are left as they are.
set -eu
packages="libopenblas-dev libpng-dev libjpeg62-turbo-dev pkg-config"
missing=""
for p in $packages; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_root apt-get update -qq
# shellcheck disable=SC2086 # one word per package
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
