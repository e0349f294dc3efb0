"""Standalone layers, losses and TwoLayerMLP against NumPy, their parameter views,
shapes, dtypes, errors and lifetime."""

import copy
import ctypes
import gc
import pickle

import numpy as np
import pytest

import deeplearning as dl
from deeplearning import _lib
from deeplearning.errors import Status

from . import numpy_reference as ref

EXACT = dict(rtol=1e-12, atol=1e-12)          # float64 against float64
rng = np.random.default_rng


# -- numbers against NumPy --------------------------------------------------------------

ACTIVATIONS = [
    pytest.param(dl.ReLU, "relu", {}, id="relu"),
    pytest.param(lambda: dl.LeakyReLU(0.2), "leaky_relu", {"alpha": 0.2}, id="leaky_relu"),
    pytest.param(dl.Sigmoid, "sigmoid", {}, id="sigmoid"),
    pytest.param(dl.Tanh, "tanh", {}, id="tanh"),
    pytest.param(dl.GELU, "gelu", {}, id="gelu"),
    pytest.param(lambda: dl.GELU("tanh"), "gelu", {"approximate": "tanh"}, id="gelu-tanh"),
    pytest.param(dl.SiLU, "silu", {}, id="silu"),
    pytest.param(dl.ELU, "elu", {}, id="elu"),
    pytest.param(lambda: dl.ELU(alpha=0.5), "elu", {"alpha": 0.5}, id="elu-0.5"),
    pytest.param(dl.Softplus, "softplus", {}, id="softplus"),
    # beta x passes the threshold for x > 0.75: both of PyTorch's branches
    pytest.param(lambda: dl.Softplus(2, 1.5), "softplus", {"beta": 2, "threshold": 1.5}, id="softplus-2-1.5"),
    pytest.param(lambda: dl.Activation("gelu", approximate="tanh"), "gelu", {"approximate": "tanh"},
                 id="generic-gelu-tanh"),
    pytest.param(dl.Softmax, "softmax", {}, id="softmax"),
]
SHAPES = [(5, 7), (7,), (2, 3, 4), (1, 1), ()]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("make, kind, options", ACTIVATIONS)
def test_activations_match_numpy_for_any_shape(make, kind, options, shape):
    x = 3 * rng(0).standard_normal(shape)
    dy = rng(1).standard_normal(shape)
    layer = make()
    y = layer.forward(x)
    assert y.shape == np.shape(x) and y.dtype == np.float64
    np.testing.assert_allclose(y, ref.activation(kind, x, **options), **EXACT)
    dx = layer.backward(dy)
    assert dx.shape == np.shape(x)
    np.testing.assert_allclose(dx, ref.activation_backward(kind, x, dy, **options), **EXACT)


@pytest.mark.parametrize("x_shape", [(5, 6), (6,), (2, 3, 6)], ids=str)
def test_linear_matches_numpy(x_shape):
    layer = dl.Linear(6, 4, seed=3)
    layer._b[:] = rng(2).standard_normal(4)
    x = rng(0).standard_normal(x_shape)
    y = layer.forward(x)
    assert y.shape == x_shape[:-1] + (4,)
    np.testing.assert_allclose(y, x @ layer._w.T + layer._b, **EXACT)
    dy = rng(1).standard_normal(y.shape)
    dx = layer.backward(dy)
    expected = ref.linear_backward(x.reshape(-1, 6), layer._w, dy.reshape(-1, 4))
    np.testing.assert_allclose(dx, expected[0].reshape(x_shape), **EXACT)
    np.testing.assert_allclose(layer.dL_dW, expected[1], **EXACT)
    np.testing.assert_allclose(layer.dL_db, expected[2], **EXACT)


def test_new_activations_at_known_points():
    """Values from mpmath at 30 digits, and PyTorch's option names and defaults."""
    x = np.array([1.0, -0.5])
    np.testing.assert_allclose(dl.GELU().forward(x), [0.84134474606854295, -0.15426876936299345], rtol=1e-15)
    assert dl.GELU(approximate="tanh").forward([1.0])[0] == pytest.approx(0.8411919906082767, rel=1e-15)
    assert dl.SiLU().forward([1.0])[0] == pytest.approx(0.73105857863000488, rel=1e-15)
    assert dl.ELU().forward([-1.0])[0] == pytest.approx(-0.63212055882855768, rel=1e-15)
    assert dl.Softplus().forward([1.0])[0] == pytest.approx(1.3132616875182228, rel=1e-15)
    assert dl.Softplus(beta=2).forward([-3.0])[0] == pytest.approx(0.0012378425688652248, rel=1e-14)
    assert dl.Softplus(threshold=1).forward([1.5])[0] == 1.5                 # linear above it
    with pytest.raises(dl.DLError, match="approximate"):
        dl.GELU(approximate="erf")
    with pytest.raises(dl.DLError, match="beta"):
        dl.Softplus(beta=0)
    with pytest.raises(TypeError, match="by position"):
        dl.ELU(1.0, 2.0)
    with pytest.raises(TypeError, match="'alpha' both"):
        dl.ELU(1.0, alpha=2.0)


def test_integer_and_bool_inputs_are_computed_in_float64():
    layer = dl.Linear(3, 2, seed=0)
    x = np.array([[1, 0, 2]])
    np.testing.assert_allclose(layer.forward(x), x @ layer._w.T, **EXACT)
    assert layer.forward(x).dtype == np.float64
    assert dl.ReLU().forward(np.array([True, False])).tolist() == [1.0, 0.0]
    assert dl.Sigmoid().forward([[0, 0]]).tolist() == [[0.5, 0.5]]       # lists too


def test_float32_layers_compute_in_float32():
    x = rng(0).standard_normal((4, 5))
    layer = dl.Linear(5, 3, dtype=np.float32, seed=1)
    assert layer._w.dtype == np.float32 and layer.dL_dW.dtype == np.float32
    y = layer.forward(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x.astype(np.float32) @ layer._w.T, rtol=1e-5, atol=1e-6)
    # the same seed draws the same weights in either dtype
    np.testing.assert_allclose(layer._w, dl.Linear(5, 3, seed=1)._w, rtol=1e-6)
    tanh = dl.Tanh(dtype="float32")
    assert tanh.forward(x).dtype == np.float32 and tanh.backward(x).dtype == np.float32
    loss = dl.MSELoss(dtype=np.float32)
    assert loss.forward(x, np.zeros_like(x)) == pytest.approx(np.mean(x ** 2), rel=1e-6)
    assert loss.backward().dtype == np.float32


LOSS_CASES = [
    pytest.param(dl.MSELoss, "mse", (4, 3), id="mse"),
    pytest.param(dl.MSELoss, "mse", (5,), id="mse-1d"),
    pytest.param(dl.MSELoss, "mse", (2, 3, 2), id="mse-3d"),
    pytest.param(lambda: dl.HuberLoss(0.5), "huber", (4, 3), id="huber"),
    pytest.param(dl.HuberLoss, "huber", (6,), id="huber-1d"),
]


@pytest.mark.parametrize("make, kind, shape", LOSS_CASES)
def test_regression_losses_match_numpy(make, kind, shape):
    pred, target = 2 * rng(0).standard_normal(shape), rng(1).standard_normal(shape)
    loss = make()
    delta = getattr(loss, "delta", 1.0)
    expected = ref.mse(pred, target) if kind == "mse" else ref.huber(pred, target, delta)
    assert loss.forward(pred, target) == pytest.approx(expected, rel=1e-12)
    grad = loss.backward()
    assert grad.shape == shape
    np.testing.assert_allclose(grad, ref.loss_gradient(kind, pred, target, delta), **EXACT)


def test_behaviour_reference_mse_example():
    loss = dl.MSELoss()
    assert loss.forward([[1, 2], [3, 4]], [[1.5, 2.5], [2.5, 3.5]]) == pytest.approx(0.25)


def test_cross_entropy_with_labels_rows_and_one_sample():
    logits = 3 * rng(0).standard_normal((6, 4))
    labels = np.array([0, 3, 1, 2, 2, 0])
    loss = dl.CrossEntropyLoss()
    assert loss.forward(logits, labels) == pytest.approx(ref.cross_entropy(logits, labels), rel=1e-12)
    expected_grad = ref.loss_gradient("cross_entropy", logits, labels)
    np.testing.assert_allclose(loss.backward(), expected_grad, **EXACT)
    # one-hot rows, as floats or integers, give the same
    for one_hot in (np.eye(4)[labels], np.eye(4, dtype=int)[labels]):
        assert loss.forward(logits, one_hot) == pytest.approx(ref.cross_entropy(logits, labels), rel=1e-12)
        np.testing.assert_allclose(loss.backward(), expected_grad, **EXACT)
    # soft targets: mean of -sum(t * log softmax)
    soft = rng(1).dirichlet(np.ones(4), 6)
    log_p = np.log(ref.softmax(logits))
    assert loss.forward(logits, soft) == pytest.approx(-np.mean(np.sum(soft * log_p, axis=1)), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), (ref.softmax(logits) - soft) / 6, **EXACT)
    # a 1-D logit vector is one sample; its label a plain int
    assert loss.forward(logits[1], 3) == pytest.approx(ref.cross_entropy(logits[1:2], [3]), rel=1e-12)
    assert loss.backward().shape == (4,)


# -- parameter views ------------------------------------------------------------------

def test_parameters_are_views_of_the_layers_memory():
    layer = dl.Linear(4, 3, seed=0)
    assert layer._w is layer.weight is layer.parameters["weight"]
    assert layer._b is layer.bias and layer.dL_dW is layer.gradients["weight"]
    assert layer._w.shape == (3, 4) and layer._b.shape == (3,)
    assert layer.dL_dW.shape == (3, 4) and layer.dL_db.shape == (3,)
    assert not layer.dL_dW.any() and not layer._b.any()        # before any backward; zero bias
    x = np.ones((1, 4))
    layer._w[...] = 0
    layer._b[:] = [1, 2, 3]
    assert layer.forward(x).tolist() == [[1, 2, 3]]
    # gradients are refreshed in place by each backward
    grad = layer.dL_dW
    layer.backward(np.array([[1.0, 0.0, 2.0]]))
    assert grad.tolist() == [[1] * 4, [0] * 4, [2] * 4] and layer.dL_db.tolist() == [1, 0, 2]


def test_assigning_parameters_copies_into_the_layer():
    layer = dl.Linear(2, 2, seed=0)
    view = layer._w
    layer._w = [[1, 2], [3, 4]]                   # integers: converted as copyto does
    assert view.tolist() == [[1, 2], [3, 4]] and layer._w is view
    layer.bias = np.array([0.5, -0.5])
    assert layer.forward([[1.0, 1.0]]).tolist() == [[3.5, 6.5]]
    layer._w = layer._w.T                         # overlapping memory is fine
    assert view.tolist() == [[1, 3], [2, 4]]
    with pytest.raises(ValueError, match=r"_w has shape \(2, 2\), got values of shape \(2,\)"):
        layer._w = np.zeros(2)
    with pytest.raises(TypeError):
        layer._b = np.array([1j, 2j])
    assert view.tolist() == [[1, 3], [2, 4]]


def test_gradient_views_accept_in_place_arithmetic():
    layer = dl.Linear(2, 1, seed=0)
    layer.forward([[1.0, 2.0]])
    layer.backward([[1.0]])
    layer.dL_dW *= 0.5                              # e.g. clipping or scaling gradients
    assert layer.dL_dW.tolist() == [[0.5, 1.0]]


# -- seeds and initialisation ---------------------------------------------------------

def test_seeds():
    np.random.seed(42)
    first = dl.Linear(10, 5)._w.copy()
    np.random.seed(42)
    assert np.array_equal(dl.Linear(10, 5)._w, first)          # np.random.seed reproduces
    assert not np.array_equal(dl.Linear(10, 5)._w, first)      # and the next draw differs
    assert np.array_equal(dl.Linear(10, 5, seed=7)._w, dl.Linear(10, 5, seed=7)._w)
    assert not np.array_equal(dl.Linear(10, 5, seed=7)._w, dl.Linear(10, 5, seed=8)._w)
    assert dl.Linear(2, 2, seed=2**64 - 1)._w.shape == (2, 2)
    with pytest.raises(ValueError, match="seed"):
        dl.Linear(2, 2, seed=-1)


@pytest.mark.parametrize("init, std", [("he_normal", np.sqrt(2 / 400)),
                                       ("xavier_uniform", np.sqrt(2 / 600)),
                                       ("zeros", 0.0)])
def test_initialisers(init, std):
    layer = dl.Linear(400, 200, seed=1, init=init)
    assert np.std(layer._w) == pytest.approx(std, rel=0.03)
    assert not layer._b.any()


# -- errors ------------------------------------------------------------------------

def test_shape_and_dtype_mistakes_are_python_errors():
    layer = dl.Linear(784, 10, seed=0)
    with pytest.raises(ValueError, match=r"\(N, 784\), got \(4, 28, 28\); flatten"):
        layer.forward(np.zeros((4, 28, 28)))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((4, 10)))
    layer.forward(np.zeros((4, 784)))
    with pytest.raises(ValueError, match=r"shape of the last output, \(4, 10\), got \(4, 9\)"):
        layer.backward(np.zeros((4, 9)))
    with pytest.raises(TypeError, match="numeric"):
        dl.ReLU().forward(np.array([1j]))
    with pytest.raises(ValueError, match="no values"):
        dl.ReLU().forward(np.zeros((0, 3)))
    with pytest.raises(TypeError, match="float32 or np.float64"):
        dl.ReLU(dtype=np.int32)
    with pytest.raises(ValueError, match="out_features"):
        dl.Linear(3, 0)
    with pytest.raises(RuntimeError, match="before forward"):
        dl.MSELoss().backward()


def test_loss_target_mistakes():
    ce = dl.CrossEntropyLoss()
    logits = np.zeros((3, 4))
    with pytest.raises(TypeError, match="integers"):
        ce.forward(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"class indices of shape \(3,\) or rows of shape \(3, 4\)"):
        ce.forward(logits, np.array([0, 1]))
    with pytest.raises(dl.DLError, match="label 4 of sample 1 is out of range") as caught:
        ce.forward(logits, np.array([0, 4, 1]))
    assert caught.value.status == Status.INVALID_ARGUMENT
    with pytest.raises(ValueError, match=r"shape of the predictions, \(3, 1\), got \(3,\)"):
        dl.MSELoss().forward(np.zeros((3, 1)), np.zeros(3))     # no silent (3, 3) broadcast
    with pytest.raises(dl.DLError) as caught:
        dl.MSELoss().forward([np.nan], [0.0])
    assert caught.value.status == Status.NUMERIC


def test_non_finite_inputs_are_refused_by_the_library():
    for bad in (np.nan, np.inf):
        with pytest.raises(dl.DLError) as caught:
            dl.ReLU().forward([[1.0, bad]])
        assert caught.value.status == Status.NUMERIC


def test_bad_options_are_reported_by_the_library():
    with pytest.raises(dl.DLError, match="alpha") as caught:
        dl.LeakyReLU(alpha=2)
    assert caught.value.status == Status.SPEC_ERROR
    with pytest.raises(dl.DLError, match="delta"):
        dl.HuberLoss(delta=0)
    with pytest.raises(dl.DLError, match="init"):
        dl.Linear(2, 2, init="lecun")
    with pytest.raises(ValueError):
        dl.LeakyReLU(alpha=float("nan"))          # not valid JSON


def test_ctypes_declarations_refuse_wrong_buffers():
    """Even a direct call cannot pass another dtype, a strided or read-only array."""
    layer = dl.ReLU()
    y = np.empty(4)
    with pytest.raises(ctypes.ArgumentError):
        _lib.lib.dl_layer_forward(layer._h, np.zeros(4, np.int64), 1, 4, 1, y, 4)
    with pytest.raises(ctypes.ArgumentError):
        _lib.lib.dl_layer_forward(layer._h, np.zeros(8)[::2], 1, 4, 1, y, 4)
    read_only = np.zeros(4)
    read_only.flags.writeable = False
    with pytest.raises(ctypes.ArgumentError):
        _lib.lib.dl_layer_forward(layer._h, np.zeros(4), 1, 4, 1, read_only, 4)
    with pytest.raises(ctypes.ArgumentError):                   # a layer is not a loss
        _lib.lib.dl_loss_backward(layer._h, y, 4)


# -- lifetime -------------------------------------------------------------------------

def layer_is_alive(pointer) -> bool:
    name = ctypes.c_char_p()
    return _lib.lib.dl_layer_type(pointer, ctypes.byref(name)) == Status.OK


def test_close_frees_the_layer_unless_a_view_keeps_it():
    layer = dl.Linear(3, 2, seed=0)
    pointer = layer._h
    weight = layer._w
    layer.close()
    layer.close()
    assert layer.closed and layer_is_alive(pointer)
    weight += 1                                   # still valid memory
    with pytest.raises(ValueError, match="closed Linear"):
        layer.forward(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="closed Linear"):
        layer._w  # noqa: B018
    del weight
    gc.collect()
    assert not layer_is_alive(pointer)


def test_views_outlive_their_layer():
    weight = dl.Linear(3, 2, seed=0)._w           # the layer itself is gone at once
    gc.collect()
    weight[...] = 2.0
    assert weight.sum() == 12.0


def test_with_blocks_and_garbage_collection_free_layers_and_losses():
    with dl.Tanh() as tanh:
        pointer = tanh._h
    assert tanh.closed and not layer_is_alive(pointer)
    layer = dl.Sigmoid()
    pointer = layer._h
    del layer
    gc.collect()
    assert not layer_is_alive(pointer)
    with dl.MSELoss() as loss:
        loss.forward([1.0], [0.0])
    with pytest.raises(ValueError, match="closed MSELoss"):
        loss.forward([1.0], [0.0])


def test_layers_cannot_be_copied_or_pickled():
    for thing in (dl.Linear(2, 2, seed=0), dl.ReLU(), dl.MSELoss()):
        for action in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError, match="cannot be copied or pickled"):
                action(thing)


def test_reprs():
    assert repr(dl.Linear(784, 128, seed=0)) == "Linear(784, 128, dtype=np.float64)"
    assert repr(dl.LeakyReLU(0.1)) == "LeakyReLU(alpha=0.1, dtype=np.float64)"
    assert repr(dl.ReLU(dtype=np.float32)) == "ReLU(dtype=np.float32)"
    assert repr(dl.Softplus(2, threshold=np.float32(5))) == "Softplus(beta=2, threshold=5.0, dtype=np.float64)"
    assert repr(dl.Activation("gelu", approximate="tanh")) == "Activation('gelu', approximate='tanh', dtype=np.float64)"
    assert repr(dl.HuberLoss()) == "HuberLoss(delta=1.0, dtype=np.float64)"
    closed = dl.CrossEntropyLoss()
    closed.close()
    assert repr(closed) == "CrossEntropyLoss(dtype=np.float64) (closed)"


# -- TwoLayerMLP ----------------------------------------------------------------------

def test_two_layer_mlp_structure():
    model = dl.TwoLayerMLP(seed=0)
    assert model.param_count == 101_770
    assert [type(layer) for layer in model.layers] == [dl.Linear, dl.ReLU, dl.Linear]
    assert model.layers[0]._w.shape == (128, 784) and model.layers[2]._w.shape == (10, 128)
    assert isinstance(model.loss_fn, dl.CrossEntropyLoss)
    small = dl.TwoLayerMLP(4, 8, 3, seed=0)
    assert small.param_count == 4 * 8 + 8 + 8 * 3 + 3


def test_two_layer_mlp_train_step_is_one_numpy_sgd_step():
    model = dl.TwoLayerMLP(20, 16, 5, seed=3)
    w1, b1, w2, b2 = (p.copy() for i in (0, 2) for p in (model.layers[i]._w, model.layers[i]._b))
    x, y = rng(0).standard_normal((8, 20)), rng(1).integers(0, 5, 8)
    loss = model.train_step(x, y, lr=0.1)
    expected = ref.mlp_sgd_step(w1, b1, w2, b2, x, y, 0.1)
    assert loss == pytest.approx(expected[0], rel=1e-12)
    for actual, wanted in zip((model.layers[0]._w, model.layers[0]._b, model.layers[2]._w,
                               model.layers[2]._b), expected[1:]):
        np.testing.assert_allclose(actual, wanted, **EXACT)


def test_two_layer_mlp_predict_evaluate_and_seeds():
    model = dl.TwoLayerMLP(6, 8, 3, seed=1)
    x = rng(2).standard_normal((10, 6))
    logits = model.forward(x)
    assert model.predict(x).tolist() == np.argmax(logits, axis=1).tolist()
    labels = model.predict(x)
    labels[:3] = (labels[:3] + 1) % 3
    assert model.evaluate(x, labels) == pytest.approx(0.7)
    assert model.evaluate(x, np.eye(3)[labels]) == pytest.approx(0.7)     # one-hot rows
    with pytest.raises(ValueError, match="class indices or one-hot"):
        model.evaluate(x, labels[:5])
    assert np.array_equal(dl.TwoLayerMLP(6, 8, 3, seed=1).forward(x), logits)
    assert not np.array_equal(dl.TwoLayerMLP(6, 8, 3, seed=2).forward(x), logits)
    np.random.seed(5)
    first = dl.TwoLayerMLP(6, 8, 3).forward(x)
    np.random.seed(5)
    assert np.array_equal(dl.TwoLayerMLP(6, 8, 3).forward(x), first)


def test_two_layer_mlp_learns_a_separable_problem():
    generator = rng(4)
    centres = 3 * generator.standard_normal((3, 10))
    y = generator.integers(0, 3, 300)
    x = centres[y] + generator.standard_normal((300, 10))
    with dl.TwoLayerMLP(10, 32, 3, seed=0) as model:
        first = model.train_step(x[:64], y[:64], lr=0.1)
        for epoch in range(20):
            for start in range(0, 300, 50):
                loss = model.train_step(x[start:start + 50], y[start:start + 50], lr=0.1)
        assert loss < 0.2 * first and model.evaluate(x, y) > 0.95
    assert all(layer.closed for layer in model.layers) and model.loss_fn.closed
