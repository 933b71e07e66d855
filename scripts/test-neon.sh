#!/usr/bin/env bash
# Cross-compiles the engine and tests/test_kernels.c for aarch64 (static, no
# cmocka: test_kernels is a plain C driver) and runs it under qemu-aarch64
# with a CPU that has the dot-product extension, so the NEON kernels are
# checked against the scalar reference. Skips (exit 0) with a message when
# the cross tools are missing (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CROSS_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU:-qemu-aarch64}
if ! command -v "$CC" >/dev/null 2>&1 || ! command -v "$QEMU" >/dev/null 2>&1; then
  echo "test-neon: SKIPPED — $CC or $QEMU not found (apt-get install gcc-aarch64-linux-gnu qemu-user libc6-dev-arm64-cross)"
  exit 0
fi
out=build-neon
mkdir -p "$out"
flags="-std=c11 -O2 -D_GNU_SOURCE -DQUIRE_VERSION=\"neon-test\" -Wall -Wextra -Werror -Wno-unused-parameter -fno-strict-aliasing -ffp-contract=off -I."
objs=()
for src in engine/*.c tests/test_kernels.c; do
  obj="$out/$(basename "${src%.c}").o"
  extra=""
  [ "$(basename "$src")" = kern_neon.c ] && extra="-march=armv8.2-a+dotprod+fp16"
  # shellcheck disable=SC2086
  $CC $flags $extra -c "$src" -o "$obj"
  objs+=("$obj")
done
$CC -static -o "$out/test_kernels" "${objs[@]}" -lm -lpthread
echo "== NEON kernels under $QEMU (cpu max)"
"$QEMU" -cpu max "$out/test_kernels"
