"""Hand-written loops with standalone layers: optimizer classes against the library's own
optimizers (a float64 model trained by train_step is the reference), Dropout's modes,
Flatten."""

from __future__ import annotations

import numpy as np
import pytest

import deeplearning as dl
from deeplearning import optim


def model_and_layer(optimizer: dict):
    spec = {"input": {"size": 3}, "layers": [{"type": "linear", "units": 2}], "loss": "mse",
            "optimizer": optimizer, "dtype": "float64", "seed": 4}
    model = dl.Model(spec)
    layer = dl.Linear(3, 2, seed=0)
    layer._w = model.get_param("layers.0.weight")
    layer._b = model.get_param("layers.0.bias")
    return model, layer


@pytest.mark.parametrize("spec, make", [
    ({"type": "sgd", "lr": 0.1}, lambda layers: optim.SGD(layers, lr=0.1)),
    ({"type": "sgd", "lr": 0.1, "momentum": 0.9}, lambda layers: optim.SGD(layers, lr=0.1, momentum=0.9)),
    ({"type": "adam", "lr": 0.05, "beta1": 0.8, "beta2": 0.99},
     lambda layers: optim.Adam(layers, lr=0.05, betas=(0.8, 0.99))),
    ({"type": "rmsprop", "lr": 0.02, "rho": 0.9}, lambda layers: optim.RMSprop(layers, lr=0.02, rho=0.9)),
])
def test_optimizers_match_the_librarys(spec, make):
    rng = np.random.default_rng(3)
    model, layer = model_and_layer(spec)
    loss_fn = dl.MSELoss()
    optimizer = make([layer])
    for _ in range(6):
        x = rng.standard_normal((5, 3))
        t = rng.standard_normal((5, 2))
        expected = model.train_step(x, t)
        loss = loss_fn.forward(layer.forward(x), t)
        layer.backward(loss_fn.backward())
        optimizer.step()
        assert loss == pytest.approx(expected, rel=1e-5)
    # The model stores float32 parameters; the float64 layer follows them to that precision.
    np.testing.assert_allclose(layer._w, model.get_param("layers.0.weight"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer._b, model.get_param("layers.0.bias"), rtol=1e-5, atol=1e-6)
    assert optimizer.steps == 6 and "6 steps" in repr(optimizer)
    model.close()


def test_optimizer_arguments():
    layer = dl.Linear(2, 2, seed=1)
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD([layer], momentum=1.0)
    with pytest.raises(ValueError, match="lr"):
        optim.Adam([layer], lr=-1)
    assert len(optim.SGD([layer, dl.ReLU()]).pairs) == 2     # activations have no parameters


def test_dropout_trains_with_a_mask_and_evaluates_as_identity():
    drop = dl.Dropout(0.25, seed=7)
    x = np.random.default_rng(0).standard_normal((200, 50)) + 3.0
    y = drop.forward(x)
    kept = y != 0
    assert 0.2 < 1 - kept.mean() < 0.3
    np.testing.assert_allclose(y[kept], x[kept] / 0.75)
    dy = np.ones_like(y)
    np.testing.assert_allclose(drop.backward(dy), np.where(kept, 1 / 0.75, 0.0))
    assert drop.eval() is drop and not drop.training
    np.testing.assert_array_equal(drop(x), x)
    drop.train()
    assert np.any(drop(x) == 0)
    assert repr(drop) == "Dropout(p=0.25, dtype=np.float64)"


def test_flatten_reshapes_both_ways():
    flat = dl.Flatten()
    x = np.arange(24.0).reshape(2, 3, 4)
    y = flat(x)
    assert y.shape == (2, 12)
    np.testing.assert_array_equal(flat.backward(y), x)
