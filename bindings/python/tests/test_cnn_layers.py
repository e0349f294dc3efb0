"""Standalone Conv2D, MaxPool2D, AvgPool2D and BatchNorm against NumPy references written
here from their definitions, and their gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import deeplearning as dl
from deeplearning.gradcheck import gradient_check, gradient_check_weights


def conv_reference(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    y = np.empty((n, f, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = padded[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return y


def images(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_conv2d_matches_numpy_and_its_gradients_check():
    conv = dl.Conv2D(2, 3, 3, stride=2, padding=1, input_size=(5, 6), seed=1)
    assert conv.output_shape == (3, 3, 3) and conv._w.shape == (3, 2, 3, 3) and conv._b.shape == (3,)
    conv._b = np.array([0.5, -1.0, 2.0])
    x = images((4, 2, 5, 6))
    np.testing.assert_allclose(conv(x), conv_reference(x, conv._w, conv._b, 2, 1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv(x.reshape(4, -1)), conv(x))     # flat rows work too
    assert gradient_check(conv, x[:2]) and gradient_check_weights(conv, x[:2])
    with pytest.raises(ValueError, match=r"\(N, 2, 5, 6\)"):
        conv(images((4, 2, 6, 5)))
    assert repr(conv) == "Conv2D(2, 3, input_size=(5, 6), dtype=np.float64)"


def test_pooling_matches_numpy():
    x = images((3, 2, 4, 6), seed=2)
    blocks = x.reshape(3, 2, 2, 2, 3, 2)
    maxpool = dl.MaxPool2D(2, input_shape=(2, 4, 6))
    y = maxpool(x)
    np.testing.assert_array_equal(y, blocks.max(axis=(3, 5)))
    dx = maxpool.backward(np.ones_like(y))
    np.testing.assert_array_equal(dx, (x == np.repeat(np.repeat(y, 2, axis=2), 2, axis=3)).astype(float))
    avgpool = dl.AvgPool2D(2, input_shape=(2, 4, 6))
    np.testing.assert_allclose(avgpool(x), blocks.mean(axis=(3, 5)), rtol=1e-12)
    assert gradient_check(avgpool, x)
    assert dl.MaxPool2D(3, stride=1, input_shape=(2, 4, 6)).output_shape == (2, 2, 4)


def test_batch_norm_trains_on_batch_statistics_and_evaluates_on_running_ones():
    x = images((8, 3, 2, 2), seed=3) * 2 + 1
    bn = dl.BatchNorm((3, 2, 2), momentum=0.1, eps=1e-5)
    bn._w = np.array([1.0, 2.0, 0.5])
    bn._b = np.array([0.0, 1.0, -1.0])
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    scale, shift = bn._w.reshape(1, 3, 1, 1), bn._b.reshape(1, 3, 1, 1)
    np.testing.assert_allclose(bn(x), (x - mean) / np.sqrt(var + 1e-5) * scale + shift, rtol=1e-10, atol=1e-12)
    # Running statistics after that one step: momentum 0.1 of the batch's (unbiased variance).
    count = x.size // 3
    running_mean, running_var = 0.1 * mean, 0.9 + 0.1 * var * count / (count - 1)
    bn.eval()
    np.testing.assert_allclose(bn(x), (x - running_mean) / np.sqrt(running_var + 1e-5) * scale + shift,
                               rtol=1e-10, atol=1e-12)
    flat = dl.BatchNorm((4,))
    rows = images((6, 4), seed=4)
    np.testing.assert_allclose(flat(rows), (rows - rows.mean(0)) / np.sqrt(rows.var(0) + 1e-5), rtol=1e-9, atol=1e-12)


def test_batch_norm_running_statistics_are_views_like_pytorchs():
    x = images((8, 3, 2, 2), seed=5) * 3 - 1
    bn = dl.BatchNorm((3, 2, 2), momentum=0.2)
    assert set(bn.buffers) == {"running_mean", "running_var"}
    np.testing.assert_array_equal(bn.running_mean, np.zeros(3))
    np.testing.assert_array_equal(bn.running_var, np.ones(3))
    bn(x)
    bn(x + 1)
    # PyTorch's rule, twice: running = (1 - m) running + m batch, the variance unbiased.
    count = x.size // 3
    mean, var = np.zeros(3), np.ones(3)
    for batch in (x, x + 1):
        mean = 0.8 * mean + 0.2 * batch.mean(axis=(0, 2, 3))
        var = 0.8 * var + 0.2 * batch.var(axis=(0, 2, 3)) * count / (count - 1)
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-12)
    bn.eval()
    before = bn.running_mean.copy()
    bn(x)
    np.testing.assert_array_equal(bn.running_mean, before)     # evaluation leaves them alone
    # Setting them (as load_state_dict would) changes what evaluation computes.
    bn.running_mean = [1.0, 2.0, 3.0]
    bn.running_var = np.full(3, 4.0 - 1e-5)
    expected = (x - np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)) / 2
    np.testing.assert_allclose(bn(x), expected, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        bn.running_mean = np.zeros(2)
    with pytest.raises(ValueError, match=">= 0"):
        bn.running_var = [1.0, -1.0, 1.0]
    with pytest.raises(ValueError, match="finite"):
        bn.running_mean = [np.nan, 0.0, 0.0]
    assert dl.Linear(2, 3).buffers == {}
