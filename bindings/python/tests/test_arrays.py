"""How arrays are converted: dtypes, layouts, shapes; zero-copy when possible."""

import numpy as np
import pytest

from deeplearning import _arrays

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
Y = np.array([0, 1, 1, 0])


def test_float32_c_contiguous_inputs_are_not_copied():
    x = np.random.default_rng(0).standard_normal((5, 784), dtype=np.float32)
    assert np.shares_memory(_arrays.inputs(x, 784), x)
    images = x.reshape(5, 28, 28)
    flat = _arrays.inputs(images, 784)
    assert flat.shape == (5, 784) and np.shares_memory(flat, x)
    read_only = x.copy()
    read_only.flags.writeable = False
    assert np.shares_memory(_arrays.inputs(read_only, 784), read_only)


def test_other_inputs_are_converted_to_float32_c_contiguous():
    x = np.arange(12.0).reshape(3, 4)
    for variant in (x, x.astype(np.int64), x.astype(np.uint8), x.astype(np.float16),
                    np.asfortranarray(x), x.tolist(), x > 5):
        converted = _arrays.inputs(variant, 4)
        assert converted.dtype == np.float32 and converted.flags.c_contiguous
        np.testing.assert_array_equal(converted, np.asarray(variant, np.float32))


def test_labels_and_targets():
    labels, targets = _arrays.supervision(Y, 4, 2)
    assert targets is None and labels.dtype == np.int32 and labels.flags.c_contiguous
    labels, _ = _arrays.supervision(np.array([0, 1, 1, 0, 9, 9], np.uint16)[:4], 4, 2)
    np.testing.assert_array_equal(labels, Y)
    labels, _ = _arrays.supervision(np.array([5, 0, 5, 1, 5, 1, 5, 0])[1::2], 4, 2)
    np.testing.assert_array_equal(labels, Y)
    labels, targets = _arrays.supervision(np.eye(2)[Y], 4, 2)
    assert labels is None and targets.dtype == np.float32 and targets.shape == (4, 2)
    _, column = _arrays.supervision(np.arange(4.0), 4, 1)
    assert column.shape == (4, 1)


def test_predictions_do_not_depend_on_dtype_or_layout(xor_model):
    expected = xor_model.predict(X)
    big = np.zeros((8, 6), np.float64)
    big[::2, 1:5:2] = X                                   # a strided, float64 view
    variants = [X.astype(np.float64), X.astype(np.int64), X.tolist(), big[::2, 1:5:2],
                np.asfortranarray(X), X.reshape(4, 1, 2), X.reshape(4, 2, 1)]
    for x in variants:
        np.testing.assert_array_equal(xor_model.predict(x), expected)
        np.testing.assert_array_equal(xor_model.predict_classes(x), expected.argmax(axis=1))


def test_arrays_reach_the_library_by_address_however_they_are_flagged(xor_model):
    """Writeable arrays go by the buffer protocol, read-only ones by .ctypes: the same
    address, so the same predictions; an empty batch makes no call."""
    expected = xor_model.predict(X.copy())
    read_only = X.copy()
    read_only.flags.writeable = False
    np.testing.assert_array_equal(xor_model.predict(read_only), expected)
    one = X[1:2].copy()
    np.testing.assert_allclose(xor_model.predict(one), expected[1:2], rtol=1e-6, atol=1e-6)
    assert xor_model.predict(np.zeros((0, 2), np.float32)).shape == (0, 2)
    np.testing.assert_allclose(xor_model.predict(X, batch_size=3), expected, rtol=1e-6, atol=1e-6)


def test_training_does_not_depend_on_dtype_or_layout(spec_path):
    import deeplearning as dl
    with dl.Model(spec_path("xor")) as a, dl.Model(spec_path("xor")) as b:
        loss_a = a.train_step(X, Y.astype(np.int32))
        loss_b = b.train_step(np.asfortranarray(X.astype(np.float64)), Y.astype(np.uint8).tolist())
        assert loss_a == loss_b
        np.testing.assert_array_equal(a.get_param(0), b.get_param(0))
