"""The sparse path of a model's first linear layer, on MNIST-like batches (mostly one
background value), against the NumPy MLP; and the kernel thread setting."""

import numpy as np
import pytest

import deeplearning as dl
from . import numpy_reference as ref

BACKGROUND = -0.1307 / 0.3081   # a standardized MNIST background pixel


def sparse_batch(rng, rows=64, density=0.19, background=BACKGROUND):
    """`rows` flat 'images': each pixel is background except with probability `density`."""
    x = np.full((rows, 784), background, np.float32)
    mask = rng.random((rows, 784)) < density
    x[mask] = rng.uniform(-0.4, 2.8, mask.sum()).astype(np.float32)
    return x, rng.integers(0, 10, rows)


@pytest.mark.parametrize("background", [BACKGROUND, 0.0])
def test_train_steps_follow_the_numpy_mlp(spec_path, background):
    rng = np.random.default_rng(3)
    with dl.Model.from_spec(spec_path("mnist_mlp")) as model:
        params = [model.get_param(i).astype(np.float64) for i in range(4)]
        for _ in range(5):
            x, y = sparse_batch(rng, background=background)
            expected_loss, *params = ref.mlp_sgd_step(*params, x, y, lr=0.01)
            assert model.train_step(x, y) == pytest.approx(expected_loss, rel=1e-5)
        for i, want in enumerate(params):
            np.testing.assert_allclose(model.get_param(i), want, rtol=1e-4, atol=1e-6)


def test_predict_matches_numpy_forward_on_sparse_batches(spec_path):
    rng = np.random.default_rng(4)
    with dl.Model.from_spec(spec_path("mnist_mlp")) as model:
        for rows in (8, 64, 1000, 5000):   # 5000 spans two inference chunks
            x, _ = sparse_batch(rng, rows)
            np.testing.assert_allclose(model.predict(x), ref.forward(model, x), rtol=1e-5, atol=1e-5)


def test_single_samples_follow_every_change_of_the_weights(spec_path):
    """One sample at a time (the path that keeps the first layer's base terms between
    calls), against the NumPy forward after train steps, set_weights and a change of
    background."""
    rng = np.random.default_rng(6)
    with dl.Model.from_spec(spec_path("mnist_mlp")) as model:
        samples, _ = sparse_batch(rng, rows=4)
        def check():
            for x in samples:
                np.testing.assert_allclose(model.predict(x[None]), ref.forward(model, x[None]), rtol=1e-5, atol=1e-5)
        check()
        check()
        for _ in range(3):
            model.train_step(*sparse_batch(rng))
            check()
        model.set_weights([w * 0.5 for w in model.get_weights()])
        check()
        samples, _ = sparse_batch(rng, rows=4, background=0.75)
        check()


def test_thread_setting_round_trips_and_does_not_change_results(spec_path):
    saved = dl.get_num_threads()
    try:
        rng = np.random.default_rng(5)
        batches = [sparse_batch(rng) for _ in range(3)]
        results = []
        for threads in (1, 2):
            dl.set_num_threads(threads)
            assert dl.get_num_threads() == threads
            with dl.Model.from_spec(spec_path("mnist_mlp")) as model:
                losses = [model.train_step(x, y) for x, y in batches]
                results.append((losses, [model.get_param(i) for i in range(4)]))
        assert results[0][0] == results[1][0]
        for a, b in zip(results[0][1], results[1][1]):
            np.testing.assert_array_equal(a, b)
        dl.set_num_threads(0)
        assert dl.get_num_threads() == 1
        dl.set_num_threads(99)
        assert dl.get_num_threads() == 8
    finally:
        dl.set_num_threads(saved)
