#!/usr/bin/env bash
# The test command: bash scripts/test.sh (from any folder; CI runs it too).
#   setup        scripts/setup.sh installs whatever is missing
#   swift test   the Swift core's own tests (SwiftPM, debug)
#   cmake build  build/libdeeplearning.so (Release, Swift runtime inside)
#   ctest        checks of the library and the C drivers under bindings/c
#   pytest       bindings/python/tests against build/libdeeplearning.so
#   cli          Tests/cli: the dl command on every data format (SwiftPM debug build),
#                and the tutorial's C and Swift programs under examples/ (the Swift one
#                built as a package that depends on a tagged copy of this repository)
#   specs        specs/check_schema.py
# pytest and specs run once their files exist. A failing stage does not stop
# the stages that do not need it (ctest and pytest need the CMake build); the
# script then exits 1 and names every failed stage. pytest finding no test in
# a tests folder that exists (its exit code 5) is a failure too.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
build=$root/build
jobs=$(nproc 2> /dev/null || echo 2)
python=${PYTHON:-python3}   # the interpreter setup.sh installed packages for

if ! command -v swift > /dev/null && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH=/opt/swift/usr/bin:$PATH
fi

timings=""
failed=()

# stage NAME COMMAND...: runs COMMAND under a header, records time and result.
stage() {
    local name=$1 start=$SECONDS result=passed
    shift
    printf '\n===== %s =====\n' "$name"
    if ! "$@"; then
        result=FAILED
        failed+=("$name")
    fi
    timings+=$(printf '  %-24s %5ds  %s' "$name" $((SECONDS - start)) "$result")$'\n'
    [ "$result" = passed ]
}

cmake_build() {
    local generator=()
    # A build folder keeps the generator it was configured with.
    if [ ! -f "$build/CMakeCache.txt" ]; then generator=(-G Ninja); fi
    cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release &&
        cmake --build "$build" --parallel "$jobs"
}

pytest_bindings() {
    # The tests run against the package as pip installs it (into the build folder,
    # so the machine's site-packages stay untouched); --import-mode=append keeps
    # pytest from putting the source copy in bindings/python ahead of it.
    rm -rf "$build/python-site"
    "$python" -m pip install --quiet --no-deps --no-build-isolation --root-user-action=ignore \
        --target "$build/python-site" "$root/bindings/python" || return 1
    # One BLAS thread: two-thread OpenBLAS runs stall on these 2-core VMs, and NumPy
    # references in the tests would then take seconds per call.
    OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} \
    DEEPLEARNING_LIBRARY=$build/libdeeplearning.so \
    PYTHONPATH=$build/python-site${PYTHONPATH:+:$PYTHONPATH} \
        "$python" -m pytest -q --import-mode=append bindings/python/tests
}

cli_tests() {
    swift build --product dl || return 1
    DL_COMMAND=$(swift build --show-bin-path)/dl \
    OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} \
        "$python" -m pytest -q -s Tests/cli
}

stage setup bash scripts/setup.sh || exit 1
stage "swift test" swift test || true
if stage "cmake build" cmake_build; then
    stage ctest ctest --test-dir "$build" --output-on-failure --parallel "$jobs" || true
    if [ -d bindings/python/tests ]; then
        stage pytest pytest_bindings || true
    fi
    stage cli cli_tests || true
fi
if [ -f specs/check_schema.py ]; then
    stage specs "$python" specs/check_schema.py || true
fi

printf '\n===== summary =====\n%s' "$timings"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "scripts/test.sh: FAILED: ${failed[*]} (${SECONDS}s)"
    exit 1
fi
echo "scripts/test.sh: every stage passed (${SECONDS}s)"
