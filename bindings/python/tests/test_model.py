"""Model's numbers against NumPy references, and its introspection API."""

import json

import numpy as np
import pytest

import deeplearning as dl
from . import numpy_reference as ref

XOR = (np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32), np.array([0, 1, 1, 0]))

# A spec using every layer type and option the reference implements.
ALL_LAYERS_SPEC = {
    "name": "all_layers",
    "input_shape": [5],
    "layers": [
        {"type": "linear", "units": 7},
        {"type": "sigmoid"},
        {"type": "linear", "units": 6, "bias": False, "init": "xavier_uniform"},
        {"type": "leaky_relu", "alpha": 0.2},
        {"type": "linear", "units": 4},
        {"type": "tanh"},
        {"type": "linear", "units": 6},
        {"type": "gelu"},
        {"type": "linear", "units": 6},
        {"type": "gelu", "approximate": "tanh"},
        {"type": "linear", "units": 6},
        {"type": "silu"},
        {"type": "linear", "units": 6},
        {"type": "elu", "alpha": 0.5},
        {"type": "linear", "units": 6},
        {"type": "softplus", "beta": 2, "threshold": 1},
        {"type": "linear", "units": 3},
        {"type": "softmax"},
    ],
    "loss": "mse",
    "optimizer": {"type": "adam", "lr": 0.01},
    "seed": 7,
}


@pytest.mark.parametrize("name", ["xor", "mnist_mlp", "mnist_deep", "regression"])
def test_predict_matches_numpy_forward(spec_path, name):
    with dl.Model.from_spec(spec_path(name)) as model:
        x = np.random.default_rng(1).standard_normal((33, model.input_size), dtype=np.float32)
        out = model.predict(x)
        assert out.dtype == np.float32 and out.shape == (33, model.output_size)
        np.testing.assert_allclose(out, ref.forward(model, x), rtol=1e-5, atol=1e-5)


def test_predict_matches_numpy_forward_for_every_layer_type():
    with dl.Model.from_spec(ALL_LAYERS_SPEC) as model:
        assert model.layer_types == [layer["type"] for layer in ALL_LAYERS_SPEC["layers"]]
        assert "layers.2.bias" not in model.param_names
        x = np.random.default_rng(2).standard_normal((9, 5))
        np.testing.assert_allclose(model.predict(x), ref.forward(model, x), rtol=1e-5, atol=1e-6)


def test_predict_classes_is_argmax_of_predict(mnist_model, mnist_like):
    x, _ = mnist_like
    classes = mnist_model.predict_classes(x)
    assert classes.dtype == np.int32 and classes.shape == (64,)
    np.testing.assert_array_equal(classes, np.argmax(mnist_model.predict(x), axis=1))


def test_evaluate_matches_numpy_cross_entropy_and_accuracy(mnist_model, mnist_like):
    x, y = mnist_like
    logits = mnist_model.predict(x)
    result = mnist_model.evaluate(x, y)
    assert isinstance(result, dl.Evaluation)
    assert result.loss == pytest.approx(ref.cross_entropy(logits, y), rel=1e-5)
    assert result.accuracy == pytest.approx(ref.accuracy(logits, y))
    one_hot = np.eye(10)[y]
    assert mnist_model.evaluate(x, one_hot) == pytest.approx(result, rel=1e-6)


def test_evaluate_on_a_large_set_matches_numpy(xor_model):
    # More samples than any chunk the library may use internally.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10_001, 2))
    y = rng.integers(0, 2, 10_001)
    logits = ref.forward(xor_model, x)
    loss, accuracy = xor_model.evaluate(x, y)
    assert loss == pytest.approx(ref.cross_entropy(logits, y), rel=1e-5)
    assert accuracy == pytest.approx(ref.accuracy(logits, y))


def test_regression_evaluate_is_huber_and_has_no_accuracy(regression_model):
    x = np.linspace(-3, 3, 50).reshape(-1, 1)
    y = np.sin(x)
    result = regression_model.evaluate(x, y)
    assert result.accuracy is None
    assert result.loss == pytest.approx(ref.huber(regression_model.predict(x), y), rel=1e-5)
    # A 1-D float y is accepted for a model with a single output.
    assert regression_model.evaluate(x, y.ravel()) == result


def test_activation_options_survive_a_checkpoint(tmp_path):
    """alpha, approximate, beta and threshold come back with the spec a checkpoint stores,
    and the loaded model computes with them (the NumPy reference reads its spec)."""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((8, 5)), rng.random((8, 3))
    with dl.Model.from_spec(ALL_LAYERS_SPEC) as model:
        for _ in range(3):
            model.train_step(x, y)
        model.save(str(tmp_path / "all.h5"))
        with dl.load(str(tmp_path / "all.h5")) as loaded:
            assert loaded.spec["layers"] == ALL_LAYERS_SPEC["layers"]
            np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
            np.testing.assert_allclose(loaded.predict(x), ref.forward(loaded, x), rtol=1e-5, atol=1e-6)


def test_mse_loss_matches_numpy():
    with dl.Model.from_spec(ALL_LAYERS_SPEC) as model:
        rng = np.random.default_rng(4)
        x, y = rng.standard_normal((12, 5)), rng.random((12, 3))
        assert model.evaluate(x, y).loss == pytest.approx(ref.mse(model.predict(x), y), rel=1e-5)


def test_train_step_is_one_sgd_step_of_the_numpy_mlp(mnist_model, mnist_like):
    x, y = mnist_like
    w1, b1, w2, b2 = (mnist_model.get_param(i) for i in range(4))
    expected_loss, *expected = ref.mlp_sgd_step(w1, b1, w2, b2, x, y, lr=0.01)
    loss = mnist_model.train_step(x, y)
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert mnist_model.step_count == 1
    for i, want in enumerate(expected):
        np.testing.assert_allclose(mnist_model.get_param(i), want, rtol=1e-4, atol=1e-6)


def test_train_step_learns_xor(xor_model, xor_data):
    x, y = xor_data
    losses = [xor_model.train_step(x, y) for _ in range(200)]
    assert losses[-1] < losses[0] / 10
    assert xor_model.evaluate(x, y).accuracy == 1.0
    np.testing.assert_array_equal(xor_model.predict_classes(x), y)
    assert xor_model.step_count == 200


def test_train_step_with_targets_learns_regression(regression_model):
    x = np.linspace(-3, 3, 64, dtype=np.float32).reshape(-1, 1)
    y = np.sin(x)
    first = regression_model.train_step(x, y)
    for _ in range(300):
        last = regression_model.train_step(x, y)
    assert last < first / 10


def test_gradcheck_on_xor(xor_model, xor_data):
    result = xor_model.gradcheck(*xor_data)
    assert isinstance(result, dl.GradCheck)
    assert list(result.per_param) == xor_model.param_names
    assert result.max_rel_error == max(result.per_param.values())
    assert result.max_rel_error < 1e-6
    assert xor_model.step_count == 0


def test_gradcheck_through_every_activation():
    """The library's float64 finite differences (what `dl gradcheck` runs) through every
    activation of ALL_LAYERS_SPEC, options included."""
    with dl.Model.from_spec(ALL_LAYERS_SPEC) as model:
        rng = np.random.default_rng(7)
        result = model.gradcheck(rng.standard_normal((6, 5)), rng.random((6, 3)))
        assert len(result.per_param) == len(model.param_names)
        assert result.max_rel_error < 1e-6


def test_gradcheck_with_targets_and_max_entries(regression_model):
    x = np.linspace(-1, 1, 8).reshape(-1, 1)
    result = regression_model.gradcheck(x, np.sin(x), max_entries=3)
    # A bias whose gradient is almost zero here shows a relative error of noise over
    # noise (0.03); the verdict, and the absolute errors, say the gradients are right.
    assert result.passed and max(result.abs_error.values()) < 1e-8
    with pytest.raises(ValueError, match="max_entries"):
        regression_model.gradcheck(x, np.sin(x), max_entries=-1)


def test_introspection_of_the_tutorial_mlp(mnist_model, load_spec):
    assert mnist_model.input_size == 784
    assert mnist_model.output_size == 10
    assert mnist_model.param_count == 101_770
    assert mnist_model.param_names == ["layers.0.weight", "layers.0.bias",
                                       "layers.2.weight", "layers.2.bias"]
    assert mnist_model.layer_types == ["linear", "relu", "linear"]
    assert mnist_model.spec == load_spec("mnist_mlp")
    assert mnist_model.step_count == 0
    assert mnist_model.learning_rate == pytest.approx(0.01)
    shapes = [mnist_model.get_param(name).shape for name in mnist_model.param_names]
    assert shapes == [(128, 784), (128,), (10, 128), (10,)]
    assert sum(np.prod(s) for s in shapes) == mnist_model.param_count
    assert repr(mnist_model) == ("<deeplearning.Model 'mnist_mlp': 784 -> 10, 3 layers, "
                                 "101770 parameters, 0 steps>")


def test_model_from_dict_equals_model_from_file(spec_path, load_spec):
    with dl.Model(load_spec("xor")) as from_dict, dl.Model.from_spec(spec_path("xor")) as from_file:
        for name in from_file.param_names:
            np.testing.assert_array_equal(from_dict.get_param(name), from_file.get_param(name))
    with dl.Model.from_spec(str(spec_path("xor"))) as from_str:
        assert from_str.input_size == 2


def test_learning_rate_can_be_changed(xor_model):
    xor_model.learning_rate = 0.5
    assert xor_model.learning_rate == 0.5
    xor_model.learning_rate = 0
    before = xor_model.get_param(0)
    xor_model.train_step(*XOR)
    np.testing.assert_array_equal(xor_model.get_param(0), before)



def test_get_param_is_a_copy_and_set_param_round_trips(xor_model):
    weight = xor_model.get_param("layers.0.weight")
    weight[:] = 0
    assert np.any(xor_model.get_param("layers.0.weight") != 0)
    values = np.arange(16, dtype=np.float64).reshape(8, 2) / 10   # float64 is converted
    xor_model.set_param("layers.0.weight", values)
    np.testing.assert_array_equal(xor_model.get_param(0), values.astype(np.float32))
    xor_model.set_param(-1, [1, 2])                                  # lists work too
    np.testing.assert_array_equal(xor_model.get_param("layers.2.bias"), [1, 2])
    np.testing.assert_allclose(xor_model.predict(XOR[0]), ref.forward(xor_model, XOR[0]), rtol=1e-5)


def test_param_keys_are_checked(xor_model):
    with pytest.raises(KeyError, match="layers.9.weight"):
        xor_model.get_param("layers.9.weight")
    with pytest.raises(IndexError, match="out of range"):
        xor_model.get_param(4)
    with pytest.raises(IndexError):
        xor_model.get_param(-5)
    with pytest.raises(TypeError):
        xor_model.get_param(1.0)
    with pytest.raises(TypeError):
        xor_model.get_param(True)
    with pytest.raises(ValueError, match=r"\(8, 2\).*\(2, 8\)"):
        xor_model.set_param(0, np.zeros((2, 8)))
    with pytest.raises(TypeError):
        xor_model.set_param(0, np.full((8, 2), "a"))


def test_spec_is_a_fresh_dict(xor_model):
    spec = xor_model.spec
    spec["layers"].clear()
    assert len(xor_model.spec["layers"]) == 3
    assert json.loads(json.dumps(xor_model.spec)) == xor_model.spec


def test_preprocessing_is_applied_and_saved(spec_path, tmp_path):
    """Raw inputs through a model with a transform equal transformed inputs through the same
    model without it; the transform survives a checkpoint."""
    rng = np.random.default_rng(5)
    raw = rng.integers(0, 256, (8, 784)).astype(np.float32)
    p = dl.Preprocessing(scale=1 / 255, mean=0.1307, std=0.3081)
    with dl.Model.from_spec(spec_path("mnist_mlp")) as plain, dl.Model.from_spec(spec_path("mnist_mlp")) as model:
        assert model.preprocessing == dl.Preprocessing()
        model.preprocessing = p
        assert model.preprocessing == pytest.approx(p)
        expected = plain.predict((raw * p.scale - p.mean) / p.std)
        np.testing.assert_allclose(model.predict(raw), expected, rtol=1e-4, atol=1e-4)
        assert model.spec["preprocessing"] == pytest.approx(p._asdict())
        model.save(tmp_path / "p.h5")
        with pytest.raises(dl.DLError):
            model.preprocessing = (1.0, 0.0, 0.0)
    with dl.Model.load(tmp_path / "p.h5") as loaded:
        assert loaded.preprocessing == pytest.approx(p)
