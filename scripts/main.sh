#!/usr/bin/env bash
# The main job: bash scripts/main.sh (from any folder).
# Installs what is missing, builds the release `dl` command, learns XOR with
# specs/xor.json, saves the checkpoint to out/xor.h5, shows it, and checks every
# gradient of the tutorial's MNIST MLP against finite differences.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v swift > /dev/null && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH=/opt/swift/usr/bin:$PATH
fi
bash scripts/setup.sh
swift build -c release --product dl
dl=$(swift build -c release --show-bin-path)/dl
mkdir -p out
"$dl" xor specs/xor.json --out out/xor.h5
echo
"$dl" info out/xor.h5
echo
"$dl" gradcheck specs/mnist_mlp.json
