#!/usr/bin/env bash
# Installs what the benchmarks in bench/ need beyond scripts/setup.sh (the build and
# test set-up), on Debian 12 as root (or with sudo). Not part of CI. Safe to run again:
# it installs only what is missing, so a second run takes a few seconds.
#   Debian: dataset-fashion-mnist (the second data set of bench/benchmark.py, in
#           /usr/share/datasets/fashion-mnist), BLIS (libblis-dev, libblis4-pthread:
#           the second backend of bench/gemm_bench.c)
#   PyPI:   jax[cpu] (the JAX worker of bench/benchmark.py) and torch, the CPU-only
#           wheel from PyTorch's own index (about 200 MB; PyPI's default wheel carries
#           CUDA and is about 5 GB)
set -euo pipefail

apt_packages=(dataset-fashion-mnist libblis-dev libblis4-pthread)
install_name=bench_setup
. "$(dirname "$0")/install_common.sh"

# MARK: Debian packages
apt_install_missing "${apt_packages[@]}"

# MARK: Python packages
if ! "$python" -c "import jax" 2> /dev/null; then
    echo "bench_setup: pip install jax[cpu]"
    pip_install "jax[cpu]"
fi
if ! "$python" -c "import torch" 2> /dev/null; then
    # Only a CPU build: PyPI's default torch wheel pulls in CUDA (gigabytes). First
    # PyTorch's CPU index (--no-deps: it holds torch itself; its few pure-Python
    # dependencies then come from the usual index); where that index cannot be
    # reached, a "+cpu" wheel in a folder of pip's find-links (PIP_FIND_LINKS or
    # pip.conf), as some machines carry one.
    if pip_install --no-deps --retries 0 --timeout 20 torch \
            --index-url https://download.pytorch.org/whl/cpu 2> /dev/null; then
        echo "bench_setup: torch installed (CPU index, or a CPU wheel in pip's find-links)"
    else
        links=$("$python" -m pip config list 2> /dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p" | tr ' ' '\n')
        wheel=$(for folder in ${PIP_FIND_LINKS:-} $links; do ls "$folder"/torch-*+cpu-*.whl 2> /dev/null; done | sort -V | tail -1)
        if [ -z "$wheel" ]; then
            echo "bench_setup: error: PyTorch's CPU index cannot be reached and no torch-*+cpu wheel is in pip's find-links" >&2
            exit 1
        fi
        echo "bench_setup: pip install $wheel (PyTorch's CPU index cannot be reached)"
        pip_install --no-deps "$wheel"
    fi
    # torch's own dependencies, pure Python, from the usual index (torch was installed
    # without them so that no CUDA package is ever resolved). Not setuptools, which
    # torch lists but needs only to compile extensions: the bindings' build uses the
    # installed one, and pip then warns of the mismatch.
    pip_install filelock typing-extensions sympy networkx jinja2 fsspec
fi

echo "bench_setup: $("$python" -c 'import jax, torch; print(f"jax {jax.__version__}, torch {torch.__version__}")'); $(dpkg-query -W -f='${Package} ${Version}\n' dataset-fashion-mnist libblis4-pthread | tr '\n' ';')"
echo "bench_setup: all benchmark prerequisites present"
