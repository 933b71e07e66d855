#!/usr/bin/env bash
# Installs the Debian packages Quire builds with (if missing), then configures
# and builds the Release binary build/quire.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs="build-essential cmake pkg-config clang libclang-rt-14-dev libuv1-dev libcmocka-dev libutf8proc-dev libstemmer-dev libopenblas-dev zlib1g-dev"
# cross tools for the NEON kernel test (scripts/test-neon.sh)
pkgs="$pkgs gcc-aarch64-linux-gnu qemu-user libc6-dev-arm64-cross"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "setup: installing$missing" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs" >/dev/null
echo "setup: built build/quire ($(build/quire --version))" >&2
