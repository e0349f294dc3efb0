"""Looking inside a model: summary(), reprs, model(x), predict(batch_size=), get/set_weights,
state_dict/load_state_dict with batch norm's running statistics (checked against the
checkpoint file read with h5py)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import deeplearning as dl

BN_SPEC = {"name": "tiny_cnn", "input": {"size": 16},
           "layers": [{"type": "reshape", "shape": [1, 4, 4]},
                      {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": 1},
                      {"type": "batch_norm"}, {"type": "relu"}, {"type": "max_pool2d", "kernel_size": 2},
                      {"type": "flatten"}, {"type": "linear", "units": 3}],
           "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 2}


def batch(count: int = 12):
    rng = np.random.default_rng(1)
    return rng.standard_normal((count, 16)).astype(np.float32), rng.integers(0, 3, count)


@pytest.fixture
def trained():
    with dl.Model(BN_SPEC) as model:
        x, y = batch()
        for _ in range(3):
            model.train_step(x, y)
        yield model


def test_summary_lists_layers_shapes_and_counts(trained, capsys):
    trained.summary()
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0] == 'Model: "tiny_cnn"'
    assert lines[1].split() == ["Layer", "(type)", "Output", "Shape", "Param", "#"]
    rows = [line.split("   ") for line in lines[3:10]]
    table = [(r[0].strip(), [c.strip() for c in r if c.strip()][1:]) for r in rows]
    assert table == [("layers.0 (reshape)", ["(1, 4, 4)", "0"]),
                     ("layers.1 (conv2d)", ["(2, 4, 4)", "20"]),          # 2*1*3*3 + 2
                     ("layers.2 (batch_norm)", ["(2, 4, 4)", "8"]),       # weight, bias, 2 statistics
                     ("layers.3 (relu)", ["(2, 4, 4)", "0"]),
                     ("layers.4 (max_pool2d)", ["(2, 2, 2)", "0"]),
                     ("layers.5 (flatten)", ["(8,)", "0"]),
                     ("layers.6 (linear)", ["(3,)", "27"])]
    assert "Total params: 55" in text and "Trainable params: 51" in text and "Non-trainable params: 4" in text
    assert trained.param_count == 51
    assert "3 steps trained" in text
    # Keras's input_shape and output_shape, without the batch dimension.
    assert (trained.input_shape, trained.output_shape) == ((16,), (3,))
    assert "Input: (16,)" in text
    for given, shape in [({"input_size": 6}, (6,)), ({"input_shape": [1, 2, 3]}, (1, 2, 3)),
                         ({"input": {"shape": [6]}}, (6,))]:
        spec = {**given, "layers": [{"type": "flatten"}, {"type": "linear", "units": 2}], "loss": "mse",
                "optimizer": {"type": "sgd", "lr": 0.1}}
        with dl.Model(spec) as model:
            assert (model.input_shape, model.output_shape) == (shape, (2,))
            model.summary(print_fn=lambda text: None)      # the shorthands summarize too
    lines_out = []
    trained.summary(print_fn=lines_out.append)
    assert lines_out == [text.rstrip("\n")]


def test_reprs_say_what_the_object_is():
    with dl.Model(BN_SPEC) as model:
        assert repr(model) == "<deeplearning.Model 'tiny_cnn': 16 -> 3, 7 layers, 51 parameters, 0 steps>"
    mlp = dl.TwoLayerMLP(6, 5, 4, seed=1)
    assert repr(mlp) == "<deeplearning.TwoLayerMLP 6 -> 5 -> 4: 59 parameters>"
    assert repr(mlp.layers[0]).startswith("Linear(6, 5")
    mlp.close()
    assert repr(mlp) == "<deeplearning.TwoLayerMLP (closed)>"


def test_models_and_layers_are_callable(trained):
    x, _ = batch(30)
    np.testing.assert_array_equal(trained(x), trained.predict(x))
    for size in (1, 7, 30, 100):   # equal up to float32 rounding: products block by batch size
        np.testing.assert_allclose(trained.predict(x, batch_size=size), trained.predict(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        trained.predict(x, batch_size=0)
    mlp = dl.TwoLayerMLP(16, 5, 3, seed=1)
    np.testing.assert_array_equal(mlp(x), mlp.forward(x))
    np.testing.assert_array_equal(mlp.layers[0](x), mlp.layers[0].forward(x))
    mlp.close()


def test_state_dict_holds_parameters_and_running_statistics_as_the_checkpoint_does(trained, tmp_path):
    state = trained.state_dict()
    assert list(state) == ["layers.1.weight", "layers.1.bias", "layers.2.weight", "layers.2.bias",
                           "layers.2.running_mean", "layers.2.running_var", "layers.6.weight", "layers.6.bias"]
    assert trained.buffer_names == ["layers.2.running_mean", "layers.2.running_var"]
    trained.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as f:
        stored = {}
        f.visititems(lambda name, item: stored.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    for name, value in state.items():
        matches = [k for k in stored if k.endswith("/" + name)]
        assert len(matches) == 1, (name, sorted(stored))
        np.testing.assert_array_equal(value, stored[matches[0]].reshape(value.shape))
    # The statistics have moved from their start (0 and 1) by training.
    assert np.any(state["layers.2.running_mean"] != 0) and np.any(state["layers.2.running_var"] != 1)
    assert [w.shape for w in trained.get_weights()] == [v.shape for v in state.values()]


def test_set_weights_makes_a_fresh_model_predict_the_same(trained):
    x, _ = batch(20)
    with dl.Model(BN_SPEC) as fresh:
        assert not np.array_equal(fresh.predict(x), trained.predict(x))
        fresh.set_weights(trained.get_weights())
        np.testing.assert_array_equal(fresh.predict(x), trained.predict(x))
    with dl.Model(BN_SPEC) as fresh:
        fresh.load_state_dict(trained.state_dict())
        np.testing.assert_array_equal(fresh.predict(x), trained.predict(x))


def test_bad_weights_change_nothing(trained):
    before = trained.state_dict()
    weights = trained.get_weights()
    with pytest.raises(ValueError, match="needs 8 arrays"):
        trained.set_weights(weights[:-1])
    wrong = dict(before)
    wrong["layers.6.bias"] = np.zeros(4, np.float32)
    wrong["layers.1.bias"] = np.ones(2, np.float32)
    with pytest.raises(ValueError):
        trained.load_state_dict(wrong)
    with pytest.raises(KeyError, match="missing.*layers.6.bias"):
        trained.load_state_dict({k: v for k, v in before.items() if k != "layers.6.bias"})
    with pytest.raises(KeyError, match="unexpected.*extra"):
        trained.load_state_dict({**before, "extra": np.zeros(1)})
    with pytest.raises(dl.DLError):
        trained.load_state_dict({**before, "layers.2.running_var": np.array([np.nan, 1], np.float32)})
    for name, value in trained.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    # strict=False loads what matches.
    trained.load_state_dict({"layers.6.bias": np.arange(3, dtype=np.float32), "extra": 1}, strict=False)
    np.testing.assert_array_equal(trained.state_dict()["layers.6.bias"], [0, 1, 2])
