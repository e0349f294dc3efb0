"""What scripts/test_wheel.sh runs inside the minimal Debian, in a fresh virtual
environment that holds only the wheel and NumPy:

    python wheel_check.py VERSION

The package must load the library it carries (no DEEPLEARNING_LIBRARY, no source
tree), every library that one needs beyond the manylinux baseline (glibc, libstdc++,
libgcc_s, zlib) must come from the wheel as well, and a model must train, save and
load with the same predictions.
"""

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

# What a manylinux wheel may take from the system (auditwheel's policy), by SONAME.
BASELINE = {"linux-vdso.so.1", "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libdl.so.2",
            "libpthread.so.0", "librt.so.1", "libresolv.so.2", "libstdc++.so.6",
            "libgcc_s.so.1", "libz.so.1"}
# The libraries of the build machine that the wheel must carry: were one of them on
# this system, a copy missing from the wheel would go unnoticed.
BUNDLED = ("libjson-c", "libhdf5", "libopenblas", "libgfortran", "libquadmath", "libsz",
           "libaec", "libcurl", "libswift", "libprotobuf-c")


def main(version: str) -> None:
    assert "DEEPLEARNING_LIBRARY" not in os.environ
    present = sorted(str(p) for folder in ("/lib", "/usr/lib", "/usr/local/lib")
                     for name in BUNDLED for p in Path(folder).rglob(name + "*"))
    assert not present, f"the system has its own copies: {present}"

    import deeplearning as dl

    site = Path(sysconfig.get_paths()["platlib"])
    library = Path(dl.library_path)
    print(f"deeplearning {dl.__version__} loaded {library}")
    assert dl.__version__ == importlib.metadata.version("deeplearning") == version
    assert library == site / "deeplearning" / "libdeeplearning.so", library

    # The dynamic loader's own answer for every library it needs.
    ldd = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=True).stdout
    print(ldd, end="")
    for line in ldd.splitlines():
        name, _, found = line.strip().partition(" => ")
        found = found.split(" (")[0]
        assert found != "not found", line
        if Path(name.split()[0]).name in BASELINE:
            continue
        assert Path(found).resolve().parent == site / "deeplearning.libs", f"not from the wheel: {line}"

    # XOR: trains to 100%, and a saved checkpoint (HDF5) predicts the same.
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0], dtype=np.int32)
    spec = {"input": {"size": 2},
            "layers": [{"type": "linear", "units": 8}, {"type": "tanh"},
                       {"type": "linear", "units": 2}],
            "loss": "cross_entropy",
            "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9},
            "seed": 1}
    with dl.Model.from_spec(spec) as model, tempfile.TemporaryDirectory() as folder:
        history = model.fit(x, y, epochs=300, batch_size=4, verbose=False)
        assert (model.predict_classes(x) == y).all(), model.predict(x)
        path = Path(folder) / "xor.h5"
        model.save(path)
        with dl.load(path) as loaded:
            assert loaded.step_count == model.step_count
            assert np.array_equal(loaded.predict(x), model.predict(x))
        steps = model.step_count
        # ONNX through the bundled protobuf-c: exported and read back, the same predictions.
        onnx_path = Path(folder) / "xor.onnx"
        model.to_onnx(onnx_path)
        with dl.Model.from_onnx(onnx_path) as imported:
            assert np.allclose(imported.predict(x), model.predict(x), atol=1e-6)
    print(f"ok: XOR trained in {steps} steps (loss {history.loss[0]:.3f} -> "
          f"{history.loss[-1]:.5f}, accuracy {history.accuracy[-1]:.0%}), saved as HDF5 and ONNX and "
          "loaded with the same predictions")


if __name__ == "__main__":
    main(sys.argv[1])
