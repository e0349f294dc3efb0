#!/usr/bin/env bash
# Regenerates Sources/CONNXProto (the protobuf-c code for ONNX's model format) from the
# official onnx.proto, as shipped in the `onnx` wheel from PyPI. Run once per onnx.proto
# update; the generated files are committed so that a build needs protobuf-c's library
# (libprotobuf-c-dev) but neither protoc-c nor Python.
#   bash scripts/gen_onnx_proto.sh            uses the installed `onnx` Python package
# Needs protoc-c (Debian: protobuf-c-compiler) and `pip install onnx`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3}
proto_dir=$("$python" -c 'import onnx, os; print(os.path.dirname(onnx.__file__))')
version=$("$python" -c 'import onnx; print(onnx.__version__)')
out=Sources/CONNXProto

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# onnx.proto says `package onnx;`; protoc-c names the C types Onnx__ModelProto and so on.
cp "$proto_dir/onnx.proto" "$work/onnx.proto"
(cd "$work" && protoc-c --c_out=. onnx.proto)

cp "$work/onnx.proto" "$out/onnx.proto"
cp "$work/onnx.pb-c.c" "$out/onnx.pb-c.c"
cp "$work/onnx.pb-c.h" "$out/include/onnx.pb-c.h"
# The .c file includes its header by its plain name, which is in include/.
echo "gen_onnx_proto: generated $out from onnx $version's onnx.proto with $(protoc-c --version | head -1)"
