"""Failures: the library's own become DLError with its message; the binding's
own (shapes, dtypes) are raised in Python before anything reaches C."""

import ctypes

import numpy as np
import pytest

import deeplearning as dl
import deeplearning.model
from deeplearning import _lib
from deeplearning.errors import Status

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
Y = np.array([0, 1, 1, 0])


def library_message(function, *args) -> str:
    """The library's own dl_last_error() text after calling it directly."""
    out = _lib.MODEL_P()
    assert function(*args, ctypes.byref(out)) != 0
    return _lib.lib.dl_last_error().decode()


@pytest.fixture
def no_c_calls(monkeypatch):
    """Any use of the library from deeplearning.model fails the test."""
    class Forbidden:
        def __getattr__(self, name):
            raise AssertionError(f"{name} was called")
    monkeypatch.setattr(deeplearning.model, "lib", Forbidden())


def test_bad_spec_dict_raises_the_librarys_message():
    spec = {"input_size": 2, "layers": [{"type": "lienar", "units": 3}], "loss": "mse",
            "optimizer": {"type": "sgd", "lr": 0.1}}
    with pytest.raises(dl.DLError) as caught:
        dl.Model.from_spec(spec)
    error = caught.value
    assert isinstance(error, dl.SpecError) and isinstance(error, ValueError)
    assert error.status == Status.SPEC_ERROR and error.status_name == "DL_SPEC_ERROR"
    assert error.message == ('<string>: layers[0].type: unknown layer type "lienar"; '
                             'did you mean "linear"?')
    import json
    assert error.message == library_message(_lib.lib.dl_model_from_json, json.dumps(spec).encode())
    assert error.message in str(error) and "DL_SPEC_ERROR" in str(error)


def test_spec_dict_that_is_not_json_is_refused_in_python():
    with pytest.raises(ValueError):
        dl.Model({"input_size": 2, "seed": float("nan")})
    with pytest.raises(TypeError):
        dl.Model({"input_size": object()})


def test_missing_files_raise_io_errors(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(dl.DLError, match="missing.json") as caught:
        dl.Model.from_spec(missing)
    assert caught.value.status == Status.IO_ERROR
    with pytest.raises(dl.DLError, match="missing.h5") as caught:
        dl.load(tmp_path / "missing.h5")
    assert caught.value.status == Status.IO_ERROR


def test_bad_path_types(tmp_path):
    with pytest.raises(TypeError):
        dl.Model.from_spec(42)
    with pytest.raises(ValueError, match="NUL"):
        dl.Model.from_spec("specs/x\0.json")


def test_label_out_of_range_leaves_the_model_unchanged(xor_model):
    before = xor_model.get_param(0)
    with pytest.raises(dl.DLError, match="label 2 of sample 2 is out of range") as caught:
        xor_model.train_step(X, np.array([0, 1, 2, 0]))
    assert caught.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(dl.DLError, match="out of range"):
        xor_model.evaluate(X, np.array([0, -1, 1, 0]))
    assert xor_model.step_count == 0
    np.testing.assert_array_equal(xor_model.get_param(0), before)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_refused(xor_model, bad):
    x = X.copy()
    x[1, 0] = bad
    for call in (lambda: xor_model.train_step(x, Y), lambda: xor_model.predict(x),
                 lambda: xor_model.evaluate(x, Y)):
        with pytest.raises(dl.DLError, match="NaN or infinite") as caught:
            call()
        assert caught.value.status == Status.NUMERIC
    assert xor_model.step_count == 0


def test_non_finite_targets_and_parameters_are_refused(regression_model, xor_model):
    with pytest.raises(dl.DLError) as caught:
        regression_model.train_step(np.zeros((2, 1)), np.array([[0.0], [np.nan]]))
    assert caught.value.status == Status.NUMERIC
    with pytest.raises(dl.DLError, match="layers.0.weight") as caught:
        xor_model.set_param(0, np.full((8, 2), np.inf))
    assert caught.value.status == Status.NUMERIC


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_float64_overflow_to_float32_infinity_is_refused(xor_model):
    with pytest.raises(dl.DLError) as caught:
        xor_model.predict(np.array([[1e300, 0.0]]))
    assert caught.value.status == Status.NUMERIC


def test_labels_for_a_regression_loss_are_unsupported(regression_model):
    with pytest.raises(dl.DLError, match="not class labels") as caught:
        regression_model.train_step(np.zeros((2, 1)), np.array([0, 1]))
    assert caught.value.status == Status.UNSUPPORTED


@pytest.mark.parametrize("lr", [-1.0, float("nan"), float("inf")])
def test_bad_learning_rates_are_refused(xor_model, lr):
    with pytest.raises(dl.DLError, match="learning rate") as caught:
        xor_model.learning_rate = lr
    assert caught.value.status == Status.INVALID_ARGUMENT
    assert xor_model.learning_rate == pytest.approx(0.1)


def test_save_to_a_missing_folder(xor_model, tmp_path):
    with pytest.raises(dl.DLError) as caught:
        xor_model.save(tmp_path / "no" / "such" / "model.h5")
    assert caught.value.status == Status.IO_ERROR


def test_unknown_status_codes_are_kept():
    error = dl.DLError("odd", 42)
    assert error.status == 42 and error.status_name == "unknown status 42"


# -- mistakes caught in Python, before the library ----------------------------

@pytest.mark.parametrize("x, expected", [
    (np.zeros((4, 3)), r"\(N, 2\).*\(4, 3\)"),
    (np.zeros(2), r"\(N, 2\).*\(2,\)"),
    (np.zeros((4, 1, 3)), r"\(4, 1, 3\)"),
    (np.float32(1.0), r"\(\)"),
])
def test_wrong_input_shapes_raise_value_error(xor_model, no_c_calls, x, expected):
    for call in (xor_model.predict, xor_model.predict_classes,
                 lambda x: xor_model.train_step(x, Y), lambda x: xor_model.evaluate(x, Y),
                 lambda x: xor_model.gradcheck(x, Y)):
        with pytest.raises(ValueError, match=expected):
            call(x)


@pytest.mark.parametrize("y, error, expected", [
    (np.array([0, 1, 1]), ValueError, r"expected 4 labels.*\(3,\)"),
    (np.array([[0], [1], [1], [0]]), ValueError, r"\(4, 1\)"),
    (np.array([0.0, 1.0, 1.0, 0.0]), TypeError, "integer"),
    (np.array([True, False, True, False]), TypeError, "astype"),
    (np.zeros((4, 3)), ValueError, r"\(4, 2\).*\(4, 3\)"),
    (np.zeros((3, 2)), ValueError, r"\(4, 2\).*\(3, 2\)"),
    (np.array(["0", "1", "1", "0"]), TypeError, "dtype"),
    (np.array([0, 1, 2**40, 0]), ValueError, "int32"),
    (np.array([0, 1, -2**40, 0]), ValueError, "int32"),
    (np.array([0, 1, 2**32 + 1, 0]), ValueError, "int32"),          # would wrap to label 1
    (np.array([0, 1, 2**31, 0], np.uint32), ValueError, "int32"),
    (np.array([0, 1, 2**64 - 1, 0], np.uint64), ValueError, "int32"),
    (np.array([0, 1, 1, 0], dtype=np.complex64), TypeError, "complex"),
    (None, TypeError, "object"),
])
def test_wrong_labels_and_targets(xor_model, no_c_calls, y, error, expected):
    for call in (xor_model.train_step, xor_model.evaluate, xor_model.gradcheck):
        with pytest.raises(error, match=expected):
            call(X, y)


@pytest.mark.parametrize("x", [
    np.array([["a", "b"]]), np.array([[object(), 1]], dtype=object), None,
    np.zeros((1, 2), np.complex128),
])
def test_non_numeric_inputs_raise_type_error(xor_model, no_c_calls, x):
    with pytest.raises(TypeError, match="numeric"):
        xor_model.predict(x)


def test_empty_batches(xor_model):
    assert xor_model.predict(np.zeros((0, 2))).shape == (0, 2)
    assert xor_model.predict_classes(np.zeros((0, 2))).shape == (0,)
    with pytest.raises(ValueError, match="no samples"):
        xor_model.train_step(np.zeros((0, 2)), np.zeros(0, np.int32))
    with pytest.raises(ValueError, match="no samples"):
        xor_model.evaluate(np.zeros((0, 2)), np.zeros(0, np.int32))


def test_the_library_checks_lengths_too():
    """The binding's last line of defence: a short buffer is refused by the library."""
    with dl.Model.from_spec({"input_size": 2, "layers": [{"type": "linear", "units": 2}],
                             "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.1}}) as model:
        out = np.empty(3, np.float32)
        with pytest.raises(dl.DLError, match="room for 3") as caught:
            _lib.call(_lib.lib.dl_predict, model._handle, X, 4, out, out.size)
        assert caught.value.status == Status.INVALID_ARGUMENT


def test_ctypes_declarations_refuse_wrong_arrays(xor_model):
    """Even a direct call cannot pass a float64 or non-contiguous array."""
    out = np.empty((4, 2), np.float32)
    with pytest.raises(ctypes.ArgumentError):
        _lib.lib.dl_predict(xor_model._handle, X.astype(np.float64), 4, out, out.size)
    with pytest.raises(ctypes.ArgumentError):
        _lib.lib.dl_predict(xor_model._handle, np.zeros((4, 4), np.float32)[:, ::2], 4, out, out.size)
    with pytest.raises(ctypes.ArgumentError):
        _lib.lib.dl_train_step(xor_model._handle, X, 4, Y.astype(np.int64), None, None)
