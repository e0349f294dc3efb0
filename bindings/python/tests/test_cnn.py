"""The CNN layers through Python: training vs evaluation behaviour and checkpoints with
batch-norm running statistics."""

from __future__ import annotations

import numpy as np

import deeplearning as dl

SPEC = {
    "input": {"size": 64},
    "layers": [
        {"type": "reshape", "shape": [1, 8, 8]},
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1},
        {"type": "batch_norm"},
        {"type": "relu"},
        {"type": "max_pool2d", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "dropout", "rate": 0.5},
        {"type": "linear", "units": 3},
    ],
    "loss": "cross_entropy",
    "optimizer": {"type": "adam", "lr": 0.01},
    "seed": 3,
}


def test_evaluation_mode_is_deterministic_and_training_mode_is_not(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 64)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    with dl.Model.from_spec(SPEC) as model:
        assert model.layer_types == ["reshape", "conv2d", "batch_norm", "relu", "max_pool2d",
                                     "flatten", "dropout", "linear"]
        for _ in range(5):
            model.train_step(x, y)
        # predict and evaluate use evaluation behaviour: no dropout, running statistics.
        first = model.predict(x)
        np.testing.assert_array_equal(model.predict(x), first)
        # Batch-independent (up to float32 rounding: GEMM kernels differ with the batch size).
        np.testing.assert_allclose(model.predict(x[:1]), first[:1], rtol=1e-5, atol=1e-6)
        assert model.evaluate(x, y).loss == model.evaluate(x, y).loss
        # Training behaviour draws a dropout mask per step: two clones with identical
        # parameters but generators in different states give different training losses.
        twin = model.clone()
        twin.train_step(x, y)               # advances only the twin's generator (and weights)
        same_weights = model.clone()
        assert same_weights.train_step(x, y) == model.clone().train_step(x, y)
        # ... and the training loss (dropout on, batch statistics) is not the evaluation loss.
        assert model.clone().train_step(x, y) != model.evaluate(x, y).loss
        np.testing.assert_array_equal(model.predict(x), first)
        twin.close()
        same_weights.close()
        model.save(tmp_path / "cnn.h5")
        with dl.Model.load(tmp_path / "cnn.h5") as loaded:
            np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_running_statistics_are_in_the_checkpoint(tmp_path):
    import h5py

    rng = np.random.default_rng(1)
    x = (rng.standard_normal((32, 64)) * 3 + 2).astype(np.float32)
    with dl.Model.from_spec(SPEC) as model:
        for _ in range(10):
            model.train_step(x, rng.integers(0, 3, 32))
        model.save(tmp_path / "bn.h5")
    with h5py.File(tmp_path / "bn.h5", "r") as f:
        mean = f["buffers/layers.2.running_mean"][()]
        var = f["buffers/layers.2.running_var"][()]
    assert mean.shape == var.shape == (4,)
    assert np.any(mean != 0) and np.any(var != 1)      # moved away from their initial values
