"""Gradient checks of every layer and loss, in float64.

The tutorial imports the helpers from here (``from tests.test_gradients import
gradient_check, gradient_check_weights``, run from bindings/python); they live in
``deeplearning.gradcheck``.
"""

import numpy as np
import pytest

import deeplearning as dl
from deeplearning import (ELU, GELU, CrossEntropyLoss, HuberLoss, LeakyReLU, Linear, MSELoss, ReLU,
                          Sigmoid, SiLU, Softmax, Softplus, Tanh)
from deeplearning.gradcheck import (gradient_check, gradient_check_loss, gradient_check_weights,
                                    numerical_gradient, relative_error, within_tolerance)

__all__ = ["gradient_check", "gradient_check_loss", "gradient_check_weights",
           "numerical_gradient"]

EXCELLENT = 1e-7   # the tutorial's "implementation is correct"


def max_error(capsys) -> float:
    """The error the last check printed."""
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("Max Relative Error: ")
    return float(line.removeprefix("Max Relative Error: ").split()[0])


def test_numerical_gradient_of_a_known_function_restores_x():
    x = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    before = x.copy()
    grad = numerical_gradient(lambda v: float(np.sum(np.sin(v) * v)), x)
    np.testing.assert_allclose(grad, np.cos(before) * before + np.sin(before), rtol=1e-9)
    assert np.array_equal(x, before)
    with pytest.raises(TypeError, match="float ndarray"):
        numerical_gradient(np.sum, np.arange(3))          # 1 + 1e-5 would not fit an int


def test_relative_error():
    assert relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert relative_error([1.0, 2.0], [1.0, 2.2]) == pytest.approx(0.2 / 2.2)
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0          # no division by zero
    assert relative_error([0.0], [1e-20]) < 1e-11                   # noise around zero


LAYERS = [
    pytest.param(lambda: Linear(6, 4, seed=1), id="linear"),
    pytest.param(lambda: Linear(6, 4, seed=2, init="xavier_uniform"), id="linear-xavier"),
    pytest.param(ReLU, id="relu"),
    pytest.param(lambda: LeakyReLU(0.2), id="leaky_relu"),
    pytest.param(Sigmoid, id="sigmoid"),
    pytest.param(Tanh, id="tanh"),
    pytest.param(GELU, id="gelu"),
    pytest.param(lambda: GELU("tanh"), id="gelu-tanh"),
    pytest.param(SiLU, id="silu"),
    pytest.param(lambda: ELU(0.5), id="elu"),
    pytest.param(lambda: Softplus(2), id="softplus"),
    pytest.param(Softmax, id="softmax"),
]


@pytest.mark.parametrize("make", LAYERS)
def test_input_gradient_of_every_layer(make, capsys):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 6)) + 0.01     # no input exactly at ReLU's kink
    assert gradient_check(make(), x)
    assert max_error(capsys) < EXCELLENT


@pytest.mark.parametrize("dtype_input", [np.float64, np.int64])
def test_weight_gradients_of_linear_and_weights_restored(dtype_input, capsys):
    layer = Linear(7, 3, seed=5)
    layer._b[:] = [0.1, -0.2, 0.3]                    # a non-zero bias is checked too
    weight = layer._w.copy()
    x = (np.random.default_rng(4).standard_normal((6, 7)) * 3).astype(dtype_input)
    assert gradient_check_weights(layer, x)
    assert max_error(capsys) < EXCELLENT
    assert np.array_equal(layer._w, weight) and np.array_equal(layer._b, [0.1, -0.2, 0.3])


LOSSES = [
    pytest.param(MSELoss, lambda rng: rng.standard_normal((4, 3)), id="mse"),
    pytest.param(lambda: HuberLoss(0.5), lambda rng: 2 * rng.standard_normal((4, 3)), id="huber"),
    pytest.param(CrossEntropyLoss, lambda rng: np.array([2, 0, 1, 2]), id="cross_entropy-labels"),
    pytest.param(CrossEntropyLoss, lambda rng: rng.dirichlet(np.ones(3), 4), id="cross_entropy-rows"),
]


@pytest.mark.parametrize("make, target", LOSSES)
def test_gradient_of_every_loss(make, target, capsys):
    rng = np.random.default_rng(6)
    pred = rng.standard_normal((4, 3))
    assert gradient_check_loss(make(), pred, target(rng))
    assert max_error(capsys) < EXCELLENT


def test_a_wrong_backward_is_caught(capsys):
    class Doubled(Tanh):
        def backward(self, dL_dy):
            return 2 * super().backward(dL_dy)

    assert not gradient_check(Doubled(), np.linspace(-2, 2, 12).reshape(3, 4))
    assert max_error(capsys) > 0.4


def test_the_helpers_work_on_a_pure_numpy_layer(capsys):
    """The tutorial's own Linear, in NumPy, passes the same checks."""
    class NumpyLinear:
        def __init__(self, w, b):
            self._w, self._b = w, b

        def forward(self, x):
            self._x = x
            return x @ self._w.T + self._b

        def backward(self, dL_dy):
            self.dL_dW, self.dL_db = dL_dy.T @ self._x, dL_dy.sum(axis=0)
            return dL_dy @ self._w

    rng = np.random.default_rng(7)
    layer = NumpyLinear(rng.standard_normal((3, 5)), rng.standard_normal(3))
    x = rng.standard_normal((4, 5))
    assert gradient_check(layer, x) and gradient_check_weights(layer, x)
    assert max_error(capsys) < EXCELLENT


def test_the_verdict_holds_where_the_true_gradient_is_zero():
    """Where the true gradient is zero, a and n are rounding noise: the relative
    error divides noise by noise ("a bug" by its bands), the verdict
    |a - n| <= atol + rtol |n| passes it."""
    analytic, numeric = np.array([1e-9, -2e-9, 0.0]), np.array([-2e-9, 1e-9, 5e-10])
    assert relative_error(analytic, numeric) > 1e-2
    assert within_tolerance(analytic, numeric)
    assert not within_tolerance([1e-4], [0.0])               # beyond atol where n is 0
    assert not within_tolerance([1.01], [1.0]) and within_tolerance([1.0005], [1.0])
    assert not within_tolerance([np.nan], [1.0])


def test_a_wrong_backward_fails_the_verdict(capsys):
    class Off(Tanh):
        def backward(self, dL_dy):
            return super().backward(dL_dy) * 1.01

    assert not gradient_check(Off(), np.linspace(-2, 2, 12).reshape(3, 4))
    assert "FAILED" in capsys.readouterr().out


CONV_BIAS_BATCH_NORM = {
    "input": {"shape": [1, 5, 5]},
    "layers": [{"type": "conv2d", "filters": 3, "kernel_size": 3, "bias": True}, {"type": "batch_norm"},
               {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "units": 4}],
    "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 9,
}


def test_model_gradcheck_passes_a_bias_before_batch_norm():
    """The library's check of a model whose conv bias has a true gradient of zero:
    the verdict passes, with the absolute error of that bias at rounding level."""
    rng = np.random.default_rng(4)
    with dl.Model.from_spec(CONV_BIAS_BATCH_NORM) as model:
        result = model.gradcheck(rng.standard_normal((6, 25)), rng.integers(0, 4, 6).astype(np.int32))
        assert result.passed, result
        assert result.abs_error["layers.0.bias"] < 1e-8
        assert all(s <= 1 for s in result.score.values())
        assert result.max_rel_error == max(result.per_param.values())
        # Tolerances far below rounding noise fail the same gradients.
        assert not model.gradcheck(rng.standard_normal((6, 25)), rng.integers(0, 4, 6).astype(np.int32),
                                   atol=1e-30, rtol=1e-30).passed


def test_a_learning_rate_no_checkpoint_could_hold_is_refused(tmp_path):
    """Learning rate 1e300 is outside the spec's range (0 to 1e6): refused, so the
    model never holds a value its checkpoint could not load. (The refusal of a step
    that would make weights non-finite is tested in Swift, NonFiniteStepTests.)"""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((8, 25)), rng.integers(0, 4, 8).astype(np.int32)
    with dl.Model.from_spec(CONV_BIAS_BATCH_NORM) as model:
        model.train_step(x, y)
        before, steps, rate = model.state_dict(), model.step_count, model.learning_rate
        with pytest.raises(dl.InvalidArgumentError, match="learning rate"):
            model.learning_rate = 1e300
        assert model.learning_rate == rate
        for name, values in model.state_dict().items():
            assert np.array_equal(values, before[name]), name
        assert np.isfinite(model.train_step(x, y)) and model.step_count == steps + 1
        model.save(tmp_path / "m.h5")
        assert dl.load(tmp_path / "m.h5").step_count == steps + 1
