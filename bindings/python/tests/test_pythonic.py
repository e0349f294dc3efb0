"""Python users' habits: NumPy numbers in spec dicts, JSON text as a spec, and library
failures raised as the built-in exceptions Python code catches (still DLError)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import deeplearning as dl
from deeplearning.errors import Status, error_for

SPEC = {"input": {"size": 16}, "layers": [{"type": "reshape", "shape": [1, 4, 4]}, {"type": "flatten"},
                                           {"type": "linear", "units": 3}],
        "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.5}, "seed": 3}


def assert_same_model(a: dl.Model, b: dl.Model) -> None:
    assert a.spec == b.spec
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_spec_dicts_may_hold_numpy_scalars_and_arrays():
    spec = json.loads(json.dumps(SPEC))
    spec["input"]["size"] = np.int64(16)
    spec["layers"][0]["shape"] = np.array([1, 4, 4])
    spec["layers"][2]["units"] = np.int32(3)
    spec["optimizer"]["lr"] = np.float32(0.5)
    spec["seed"] = np.uint64(3)
    with dl.Model(spec) as from_numpy, dl.Model(SPEC) as plain:
        assert_same_model(from_numpy, plain)
    spec["optimizer"]["lr"] = np.float64("nan")
    with pytest.raises(ValueError):
        dl.Model(spec)


def test_a_json_string_is_a_spec_and_other_strings_are_paths(tmp_path):
    text = json.dumps(SPEC, indent=2)
    with dl.Model(text) as from_text, dl.Model("\n  " + text) as indented, dl.Model(SPEC) as plain:
        assert_same_model(from_text, plain)
        assert_same_model(indented, plain)
    path = tmp_path / "spec.json"
    path.write_text(text)
    with dl.Model(str(path)) as from_file, dl.Model(SPEC) as plain:
        assert_same_model(from_file, plain)
    with pytest.raises(dl.SpecError):
        dl.Model("{not json")
    with pytest.raises(dl.FileError):
        dl.Model(str(tmp_path / "no-such-spec.json"))


def test_library_failures_are_the_builtin_exceptions_python_code_catches(tmp_path, xor_model):
    x = np.zeros((2, 2), np.float32)
    cases = [
        (lambda: dl.Model({**SPEC, "loss": "nonsense"}), dl.SpecError, ValueError, Status.SPEC_ERROR),
        (lambda: dl.load(tmp_path / "missing.h5"), dl.FileError, OSError, Status.IO_ERROR),
        (lambda: xor_model.train_step(x, np.array([0, 5])), dl.InvalidArgumentError, ValueError,
         Status.INVALID_ARGUMENT),
        (lambda: xor_model.set_param(0, np.full(xor_model.get_param(0).shape, np.inf)), dl.NumericError,
         ArithmeticError, Status.NUMERIC),
    ]
    (tmp_path / "bad.h5").write_bytes(b"not an HDF5 file")
    cases.append((lambda: dl.load(tmp_path / "bad.h5"), dl.FormatError, ValueError, Status.FORMAT_ERROR))
    for action, kind, builtin, status in cases:
        with pytest.raises(builtin) as caught:
            action()
        error = caught.value
        assert type(error) is kind and isinstance(error, dl.DLError) and error.status == status
        assert error.message and error.message in str(error)
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is kind and (copy.message, copy.status) == (error.message, error.status)


def test_every_status_has_its_class():
    for status in Status:
        if status == Status.OK:
            continue
        error = error_for("text", status)
        assert isinstance(error, dl.DLError) and error.status == status
        assert type(error).__doc__.startswith("DL_" + status.name)
    unknown = error_for("text", 99)
    assert type(unknown) is dl.DLError and unknown.status_name == "unknown status 99"
    # OSError keeps the message whole (not read as errno, strerror).
    assert str(error_for("a file", Status.IO_ERROR)) == "a file [DL_IO_ERROR]"
