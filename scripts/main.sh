#!/usr/bin/env bash
# The main job: bash scripts/main.sh (from any folder).
# The tutorial's MNIST recipe with the release `dl` command: installs what is
# missing, builds `dl`, fetches MNIST into data/mnist (skipped when already
# there), trains specs/mnist_mlp.json (784-128-10, SGD lr 0.01, batch 64,
# 5 epochs; raw pixels standardized as the tutorial does, inside the model),
# saves out/mnist_mlp.h5 with its history and learning curve beside it, then
# evaluates the checkpoint on the test set. Fails unless the test accuracy
# reaches the tutorial's promise of 95%.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v swift > /dev/null && [ -x /opt/swift/usr/bin/swift ]; then
    export PATH=/opt/swift/usr/bin:$PATH
fi
python=${PYTHON:-python3}
promise=95.0

bash scripts/setup.sh
swift build -c release --product dl
dl=$(swift build -c release --show-bin-path)/dl
"$python" scripts/fetch_mnist.py data/mnist
mkdir -p out
echo
"$dl" train specs/mnist_mlp.json --data data/mnist --epochs 5 --batch-size 64 --lr 0.01 --out out/mnist_mlp.h5
echo
evaluation=$("$dl" eval out/mnist_mlp.h5 --data data/mnist)
echo "$evaluation"
accuracy=$(echo "$evaluation" | sed -n 's/^accuracy \([0-9.]*\)%$/\1/p')
if awk -v a="$accuracy" -v p="$promise" 'BEGIN { exit !(a >= p) }'; then
    echo "main: test accuracy $accuracy% (the tutorial promises above $promise%)"
else
    echo "main: test accuracy ${accuracy:-unknown}% is below the tutorial's $promise%" >&2
    exit 1
fi
