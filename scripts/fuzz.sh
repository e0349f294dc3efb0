#!/usr/bin/env bash
# Runs the libFuzzer harnesses under fuzz/ against an instrumented libdeeplearning.so.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#   scripts/fuzz.sh --total SECONDS [TARGET...]         SECONDS shared equally by the targets
#   scripts/fuzz.sh --runs N [TARGET...]                N inputs per target, however long
#   scripts/fuzz.sh --list                              the targets
#   scripts/fuzz.sh --make-seeds                        rewrite fuzz/corpus (see fuzz/README.md)
#
# It builds the library with SwiftPM, coverage and AddressSanitizer in every Swift and C
# file (.build-fuzz/), compiles each fuzz/fuzz_<target>.c with clang -fsanitize=fuzzer,address
# (build-fuzz/bin/), then runs the targets one after the other, one process at a time.
# Each target starts from its committed seeds (fuzz/corpus/<target>) and the regression
# inputs that pass (fuzz/regressions/<target>), plus the corpus of earlier runs kept in
# build-fuzz/corpus/<target> (new inputs go there, never into the source tree).
#
# It prints each target's executions and executions per second, and the totals, and
# exits 1 when any target found a crash, a leak, a timeout (a hang) or an OOM: its
# input is then in build-fuzz/crashes/<target>/ (see fuzz/README.md for turning it into
# a regression input). Environment:
#   FUZZ_OUT         folder for binaries, corpora, crashes and logs (default build-fuzz)
#   FUZZ_KEEP_GOING  1: keep fuzzing after a crash (libFuzzer -fork=1 -ignore_crashes=1),
#                    collecting every crash input, for long exploratory runs
#   FUZZ_NO_BUILD    1: use the instrumented library already built
#   FUZZ_SCRATCH     SwiftPM's scratch folder for that library (default .build-fuzz)
#   FUZZ_FLAGS       extra libFuzzer flags for every target
#   FUZZ_KNOWN_FAILING  targets whose failure is reported but does not fail the run: those
#                    with inputs in fuzz/regressions/<target>/EXPECTED_FAILURES whose fix
#                    has not landed yet (scripts/test.sh sets it; empty it when they land)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
if ! command -v swift > /dev/null && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH=/opt/swift/usr/bin:$PATH
fi

all_targets=(spec checkpoint idx idx_gz csv hdf5_dataset abi onnx safetensors keras_config)
# Largest input per target: room for the seeds and their growth, small enough to stay fast.
declare -A max_len=([spec]=4096 [checkpoint]=65536 [idx]=4096 [idx_gz]=4096 [csv]=4096
                    [hdf5_dataset]=16384 [abi]=1024 [onnx]=16384 [safetensors]=8192 [keras_config]=16384)

seconds=60 total="" runs=""
case "${1:-}" in
    --list) printf '%s\n' "${all_targets[@]}"; exit 0 ;;
    --total) total=${2:?--total needs seconds}; shift 2 ;;
    --runs) runs=${2:?--runs needs a count}; shift 2 ;;
    --make-seeds) ;;
    '' | *[!0-9]*) ;;
    *) seconds=$1; shift ;;
esac
targets=("$@")
if [ "${targets[0]:-}" = --make-seeds ]; then targets=(); make_seeds=1; else make_seeds=0; fi
if [ "${#targets[@]}" -eq 0 ]; then targets=("${all_targets[@]}"); fi
for t in "${targets[@]}"; do
    [ -f "fuzz/fuzz_$t.c" ] || { echo "fuzz.sh: no target '$t' (fuzz/fuzz_$t.c); targets: ${all_targets[*]}" >&2; exit 2; }
done
if [ -n "$total" ]; then seconds=$(( total / ${#targets[@]} )); [ "$seconds" -ge 1 ] || seconds=1; fi

out=${FUZZ_OUT:-$root/build-fuzz}
mkdir -p "$out/bin" "$out/logs"
scratch=${FUZZ_SCRATCH:-$root/.build-fuzz}
lib=$scratch/release

# MARK: Build
start=$SECONDS
if [ "${FUZZ_NO_BUILD:-0}" != 1 ] || [ ! -f "$lib/libdeeplearning.so" ]; then
    echo "fuzz.sh: building the instrumented library (swift build -c release, fuzzer + address)"
    # swiftc keeps only the last -sanitize= option, so SwiftPM's --sanitize=fuzzer
    # --sanitize=address would leave the Swift code without coverage: the combined
    # option is passed to swiftc itself (the C targets take both from --sanitize).
    swift build -c release --product deeplearning --scratch-path "$scratch" \
        --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address
fi
build_seconds=$((SECONDS - start))
cflags=(-g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror -Wno-unused-function -I"$root/Include")
ldflags=(-L"$lib" -ldeeplearning -Wl,-rpath,"$lib" -lz -lm)
if command -v ld.lld > /dev/null; then ldflags+=(-fuse-ld=lld); fi   # GNU ld warns about ASan's symbols
for t in "${targets[@]}"; do
    clang "${cflags[@]}" -fsanitize=fuzzer,address "fuzz/fuzz_$t.c" "${ldflags[@]}" -o "$out/bin/fuzz_$t"
done
echo "fuzz.sh: built in $((SECONDS - start)) s (library $build_seconds s)"

export SWIFT_BACKTRACE=enable=no       # the Swift runtime's backtracer would hide libFuzzer's report
export OPENBLAS_NUM_THREADS=1 DL_NUM_THREADS=1   # one process at a time, one thread each
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}

if [ "$make_seeds" = 1 ]; then
    clang -g -fsanitize=address "${cflags[@]}" fuzz/make_checkpoints.c "${ldflags[@]}" -o "$out/bin/make_checkpoints"
    rm -rf fuzz/corpus && mkdir -p fuzz/corpus/checkpoint
    "$out/bin/make_checkpoints" fuzz/corpus/checkpoint
    python3 fuzz/make_corpus.py
    exit 0
fi

# MARK: Run
keep_going=()
if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
    keep_going=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
fi
read -r -a extra <<< "${FUZZ_FLAGS:-}"
failed=() total_execs=0 total_seconds=0 report=""
for t in "${targets[@]}"; do
    corpus=$out/corpus/$t crashes=$out/crashes/$t seeds=$out/seeds/$t
    mkdir -p "$corpus" "$crashes"
    # Seeds: the committed corpus and the regression inputs expected to pass.
    rm -rf "$seeds" && mkdir -p "$seeds"
    cp fuzz/corpus/"$t"/* "$seeds"/ 2> /dev/null || true
    if [ -d "fuzz/regressions/$t" ]; then
        for f in fuzz/regressions/"$t"/*; do
            name=${f##*/}
            case "$name" in README* | EXPECTED_FAILURES) continue ;; esac
            if ! awk '!/^#/ { print $1 }' "fuzz/regressions/$t/EXPECTED_FAILURES" 2> /dev/null | grep -qxF "$name"; then
                cp "$f" "$seeds/"
            fi
        done
    fi
    limit=(-max_total_time="$seconds")
    if [ -n "$runs" ]; then limit=(-runs="$runs"); fi
    dict=()
    if [ -f "fuzz/$t.dict" ]; then dict=(-dict="fuzz/$t.dict"); fi
    log=$out/logs/$t.log
    echo "fuzz.sh: $t (${limit[*]}, log $log)"
    # libFuzzer also writes slow-unit-* files (inputs over 10 s): reported, not failures.
    # A crafted HDF5 file that makes libhdf5 loop is one, answered at the isolated
    # reader's deadline (10 s plus 1 ms per 8 KiB) with DL_FORMAT_ERROR, as designed;
    # a real hang is a timeout (-timeout=20) and fails.
    before=$(ls "$crashes" | grep -vc '^slow-unit-' || true)
    slow_before=$(ls "$crashes" | grep -c '^slow-unit-' || true)
    t0=$SECONDS
    set +e
    "$out/bin/fuzz_$t" "${limit[@]}" -max_len="${max_len[$t]}" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -timeout=20 -print_final_stats=1 -artifact_prefix="$crashes/" "${dict[@]}" "${keep_going[@]}" \
        "${extra[@]}" "$corpus" "$seeds" > "$log" 2>&1
    status=$?
    set -e
    elapsed=$((SECONDS - t0))
    # Temporary files of harness processes that crashed (their exit handlers did not run):
    # dlfuzz-<pid>-* of processes that no longer exist.
    for f in /dev/shm/dlfuzz-* "${TMPDIR:-/tmp}"/dlfuzz-*; do
        [ -e "$f" ] || continue
        pid=${f##*/dlfuzz-}; pid=${pid%%-*}
        if ! kill -0 "$pid" 2> /dev/null; then rm -f "$f"; fi
    done
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    if [ -z "$execs" ]; then   # fork mode and early crashes print no final stats
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    fi
    execs=${execs:-0}
    after=$(ls "$crashes" | grep -vc '^slow-unit-' || true)
    slow=$(( $(ls "$crashes" | grep -c '^slow-unit-' || true) - slow_before ))
    # Sanitizer reports of the HDF5 reader's child are contained (fuzz/README.md) when
    # libhdf5 is where the error is (the first frame outside the sanitizer's own
    # interceptors); any other is a bug in code of ours, and fails the target like a crash.
    read -r contained foreign < <(awk '/ERROR: AddressSanitizer/ { reports++; open = 1; next }
        open && /^ *#[0-9]+ / && !/compiler-rt|sanitizer_common/ { if ($0 !~ /libhdf5/) n++; open = 0 }
        END { print reports + 0, n + 0 }' "$log")
    result=ok
    if [ "$slow" -gt 0 ]; then result="ok ($slow slow input(s) over 10 s in $crashes)"; fi
    if [ "$contained" -gt 0 ] && [ "$foreign" -eq 0 ]; then result+=" ($contained libhdf5 error(s) contained in the reader's child)"; fi
    if [ "$foreign" -gt 0 ]; then
        status=1
        echo "fuzz.sh: $t: $foreign sanitizer report(s) outside libhdf5 in $log"
    fi
    if [ "$status" -ne 0 ] || [ "$after" -gt "$before" ]; then
        result="FAILED ($((after - before)) new input(s) in $crashes)"
        if [[ " ${FUZZ_KNOWN_FAILING:-} " == *" $t "* ]]; then
            result+=", known: see fuzz/regressions/$t/EXPECTED_FAILURES"
        else
            failed+=("$t")
        fi
        # (nothing may match: in fork mode the jobs' output is not in the log)
        grep -E "ERROR: |SUMMARY: |Fatal error|invariant broken|Test unit written" "$log" | head -8 | sed 's/^/    /' || true
    fi
    total_execs=$((total_execs + execs))
    total_seconds=$((total_seconds + elapsed))
    report+=$(printf '  %-14s %10d execs %6ds %8d exec/s  %s' "$t" "$execs" "$elapsed" \
        $((execs / (elapsed > 0 ? elapsed : 1))) "$result")$'\n'
done

printf '\n===== fuzz summary =====\n%s' "$report"
printf '  %-14s %10d execs %6ds %8d exec/s\n' total "$total_execs" "$total_seconds" \
    $((total_execs / (total_seconds > 0 ? total_seconds : 1)))
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: FAILED: ${failed[*]}: crash, leak, hang or OOM inputs under $out/crashes/"
    exit 1
fi
if [[ "$report" == *"known: see"* ]]; then
    echo "fuzz.sh: failures only in FUZZ_KNOWN_FAILING targets (${FUZZ_KNOWN_FAILING:-}): inputs under $out/crashes/"
else
    echo "fuzz.sh: no crash, leak, hang or OOM"
fi
