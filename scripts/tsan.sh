#!/usr/bin/env bash
# ThreadSanitizer over the thread tests: the C driver (bindings/c/test_driver.c, whose
# thread tests train, predict, save and load from several threads, hit DL_BUSY on a shared
# model and run the kernels' thread pool with 1 to 8 threads) against a
# libdeeplearning.so whose Swift and C code is built with -sanitize=thread.
#
#   scripts/tsan.sh
#
# The library is built by SwiftPM into .build-tsan/ (TSan must see the library's own
# memory accesses: a TSan build of the driver alone against the plain library would see
# none of them). Any race report fails the run (TSan's exit code 66). No suppressions:
# none has been needed; a verified false positive would go in scripts/tsan.supp with the
# reason beside it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
if ! command -v swift > /dev/null && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH=/opt/swift/usr/bin:$PATH
fi
scratch=${TSAN_SCRATCH:-$root/.build-tsan}
out=${TSAN_OUT:-$root/build-tsan}
mkdir -p "$out"

start=$SECONDS
swift build -c release --product deeplearning --scratch-path "$scratch" --sanitize=thread
lib=$scratch/release
# The toolchain's TSan runtime intercepts libdispatch, so the program links the
# toolchain's libdispatch and BlocksRuntime (the Swift runtime uses them anyway).
runtime=$(dirname "$(command -v swift)")/../lib/swift/linux
ldflags=(-L"$lib" -ldeeplearning -Wl,-rpath,"$lib" -L"$runtime" -ldispatch -lBlocksRuntime
         -Wl,-rpath,"$runtime" -lpthread -lm)
if command -v ld.lld > /dev/null; then ldflags+=(-fuse-ld=lld); fi
clang -g -O1 -std=c11 -fsanitize=thread -I"$root/Include" bindings/c/test_driver.c "${ldflags[@]}" \
    -o "$out/test_driver_tsan"
echo "tsan.sh: built in $((SECONDS - start)) s"

suppressions=""
if [ -f scripts/tsan.supp ]; then suppressions=":suppressions=$root/scripts/tsan.supp"; fi
start=$SECONDS
SWIFT_BACKTRACE=enable=no OPENBLAS_NUM_THREADS=1 \
TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1$suppressions" \
    "$out/test_driver_tsan" "$root/specs"
echo "tsan.sh: the C driver ran under ThreadSanitizer in $((SECONDS - start)) s, no race reported"
