#!/usr/bin/env bash
# The test command: builds and runs the whole suite twice, as Release and
# under AddressSanitizer + UndefinedBehaviorSanitizer. Test data comes from
# ../shared beside the project.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -d ../shared ] || { echo "test: ../shared (the test data) is missing beside the project" >&2; exit 2; }
jobs=$(nproc 2>/dev/null || echo 2)
echo "== Release build: test suite"
(cd build && ctest --output-on-failure -j"$jobs")
echo "== NEON kernels (aarch64 cross build under qemu)"
scripts/test-neon.sh
echo "== ASan+UBSan build: test suite"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DQUIRE_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   QUIRE_TEST_SANITIZED=1 ctest --output-on-failure -j"$jobs")
