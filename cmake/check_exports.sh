#!/bin/sh
# ctest exports_match_header:
#   check_exports.sh LIBRARY HEADER [CC]
# The dl_* functions that LIBRARY exports must be exactly the dl_* functions
# that HEADER declares: the header is the whole API and nothing else leaks
# out. Internal C helpers (dlx_*) must not be exported at all.
# Exits 77 (ctest's SKIP_RETURN_CODE) while HEADER does not exist yet.
set -eu
lib=$1 header=$2 cc=${3:-cc}

if [ ! -f "$header" ]; then
    echo "skip: $header does not exist yet"
    exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Exported: defined dynamic symbols named dl_*.
nm -D --defined-only "$lib" | awk '{ print $NF }' | grep '^dl_' | sort -u > "$tmp/exported" || true

# Declared: run the preprocessor (drops comments, which may name functions,
# and expands the export macro), join everything onto one line, then take
# each dl_* identifier followed by "(": a function declaration. Function
# pointer typedefs, `(*dl_cb)(`, are followed by ")" and are not taken.
"$cc" -E -P -x c "$header" | tr '\n' ' ' \
    | grep -o 'dl_[A-Za-z0-9_]*[[:space:]]*(' | sed 's/[[:space:]]*($//' \
    | sort -u > "$tmp/declared" || true

status=0
if [ ! -s "$tmp/declared" ]; then
    echo "FAIL: found no dl_* function declared in $header"
    status=1
fi
missing=$(comm -13 "$tmp/exported" "$tmp/declared")
extra=$(comm -23 "$tmp/exported" "$tmp/declared")
if [ -n "$missing" ]; then
    echo "FAIL: declared in $(basename "$header") but not exported by $(basename "$lib"):"
    echo "$missing" | sed 's/^/  /'
    status=1
fi
if [ -n "$extra" ]; then
    echo "FAIL: exported by $(basename "$lib") but not declared in $(basename "$header"):"
    echo "$extra" | sed 's/^/  /'
    status=1
fi
internal=$(nm -D --defined-only "$lib" | awk '{ print $NF }' | grep '^dlx_' || true)
if [ -n "$internal" ]; then
    echo "FAIL: internal dlx_* symbols are exported (compile them hidden):"
    echo "$internal" | sed 's/^/  /'
    status=1
fi
[ "$status" -eq 0 ] && echo "ok: $(wc -l < "$tmp/declared") dl_* functions declared and exported"
exit "$status"
