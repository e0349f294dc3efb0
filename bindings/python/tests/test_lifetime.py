"""Handles: close, with, garbage collection, clones, threads, memory."""

import copy
import gc
import os
import subprocess
import sys

import numpy as np
import pytest

import deeplearning as dl

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
Y = np.array([0, 1, 1, 0])


def test_close_is_idempotent(spec_path):
    model = dl.Model(spec_path("xor"))
    assert not model.closed
    model.close()
    model.close()
    assert model.closed
    assert repr(model) == "<deeplearning.Model (closed)>"


def test_use_after_close_raises_a_clear_error(spec_path, tmp_path):
    model = dl.Model(spec_path("xor"))
    model.close()
    uses = [lambda: model.predict(X), lambda: model.predict_classes(X),
            lambda: model.train_step(X, Y), lambda: model.evaluate(X, Y),
            lambda: model.gradcheck(X, Y), lambda: model.fit(X, Y, verbose=False),
            lambda: model.clone(), lambda: model.save(tmp_path / "m.h5"),
            lambda: model.get_param(0), lambda: model.set_param(0, np.zeros((8, 2))),
            lambda: model.input_size, lambda: model.output_size, lambda: model.param_count,
            lambda: model.param_names, lambda: model.layer_types, lambda: model.spec,
            lambda: model.step_count, lambda: model.learning_rate,
            lambda: setattr(model, "learning_rate", 0.1), lambda: model.__enter__()]
    for use in uses:
        with pytest.raises(ValueError, match="closed Model"):
            use()


def test_with_statement_closes_even_on_error(spec_path):
    with dl.Model(spec_path("xor")) as model:
        assert model.predict(X).shape == (4, 2)
    assert model.closed
    with pytest.raises(ZeroDivisionError):
        with dl.Model(spec_path("xor")) as model:
            1 / 0
    assert model.closed


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_garbage_collection_frees_models_quietly(spec_path):
    model = dl.Model(spec_path("xor"))
    cycle = [model]
    cycle.append(cycle)
    del model, cycle
    gc.collect()
    with pytest.raises(dl.DLError):
        dl.Model({"layers": []})              # __init__ fails: __del__ must cope
    gc.collect()


def test_models_alive_at_interpreter_exit_are_harmless(spec_path):
    script = f"""
import deeplearning as dl
a = dl.Model({str(spec_path("xor"))!r})
b = a.clone()
b.me = b                          # kept alive by a cycle until shutdown
class Holder:
    pass
Holder.model = dl.Model({str(spec_path("mnist_mlp"))!r})
print("done")
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n" and result.stderr == ""


def test_clones_are_independent(xor_model):
    xor_model.train_step(X, Y)
    clone = xor_model.clone()
    assert clone.step_count == 1
    weights = xor_model.get_param(0)
    np.testing.assert_array_equal(clone.get_param(0), weights)
    for _ in range(5):
        clone.train_step(X, Y)
    clone.learning_rate = 0.5
    assert clone.step_count == 6 and xor_model.step_count == 1
    assert xor_model.learning_rate == pytest.approx(0.1)
    np.testing.assert_array_equal(xor_model.get_param(0), weights)
    assert np.any(clone.get_param(0) != weights)
    xor_model.close()
    assert clone.predict(X).shape == (4, 2)
    clone.close()


def test_clones_continue_training_identically(xor_model):
    """A clone copies optimizer state too: momentum makes that visible."""
    for _ in range(3):
        xor_model.train_step(X, Y)
    with xor_model.clone() as clone:
        for _ in range(3):
            assert clone.train_step(X, Y) == xor_model.train_step(X, Y)
        np.testing.assert_array_equal(clone.get_param(0), xor_model.get_param(0))


def test_copy_module_makes_clones(xor_model):
    for duplicate in (copy.copy(xor_model), copy.deepcopy(xor_model)):
        assert duplicate is not xor_model and duplicate._handle != xor_model._handle
        duplicate.train_step(X, Y)
        assert xor_model.step_count == 0
        duplicate.close()


def test_models_cannot_be_pickled_but_errors_can(xor_model):
    import pickle
    with pytest.raises(TypeError, match="save"):
        pickle.dumps(xor_model)
    error = pickle.loads(pickle.dumps(dl.DLError("bad spec", 3)))
    assert (error.message, error.status, error.status_name) == ("bad spec", 3, "DL_SPEC_ERROR")


def test_reinitialising_a_model_frees_the_old_handle(spec_path):
    model = dl.Model(spec_path("xor"))
    old = model._handle
    model.__init__(spec_path("mnist_mlp"))
    assert model.input_size == 784 and model._handle is not old
    model.close()


def test_same_model_from_two_threads_is_busy_or_correct(mnist_model, run_threads):
    """ctypes releases the GIL, so threads do overlap in the library: predictions
    share the model (test_robust_abi.py checks that none is refused); whatever
    happens, never a crash or a wrong answer, and any refusal is BUSY."""
    x = np.random.default_rng(0).standard_normal((256, 784), dtype=np.float32)
    expected = mnist_model.predict(x)
    errors, wrong = [], []

    def work(_):
        for _ in range(15):
            try:
                if not np.array_equal(mnist_model.predict(x), expected):
                    wrong.append(1)
            except dl.DLError as error:
                errors.append(error)

    run_threads(work, 4)
    assert not wrong
    assert all(e.status == dl.Status.BUSY for e in errors)


def test_clones_predict_from_threads_at_once(mnist_model, run_threads):
    x = np.random.default_rng(0).standard_normal((256, 784), dtype=np.float32)
    expected = mnist_model.predict(x)
    clones = [mnist_model.clone() for _ in range(4)]
    results = [None] * 4

    def work(i):
        results[i] = all(np.array_equal(clones[i].predict(x), expected) for _ in range(8))

    run_threads(work, 4)
    assert results == [True] * 4
    for clone in clones:
        clone.close()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_no_memory_growth_over_create_free_cycles(load_spec):
    spec = load_spec("xor")

    def cycle(n):
        for _ in range(n):
            model = dl.Model(spec)
            model.param_names                     # strings the model owns
            model.close()

    cycle(500)                                    # warm-up: allocator pools, caches
    gc.collect()
    before = _rss_bytes()
    cycle(10_000)
    gc.collect()
    growth = _rss_bytes() - before
    # A leak of the smallest object a model owns (its ~350-byte spec string)
    # would grow 3.5 MB; the slack is for allocator noise.
    assert growth < 1_000_000, f"RSS grew by {growth} bytes over 10,000 models"
