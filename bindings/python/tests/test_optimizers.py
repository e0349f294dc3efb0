"""The registry's losses, optimizers and learning-rate schedules through the C ABI,
against PyTorch's definitions written out in NumPy (tests/numpy_reference.py)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import deeplearning as dl

from . import numpy_reference as ref

TIGHT = dict(rtol=1e-12, atol=1e-14)


def test_the_registry_lists_every_component():
    registry = dl.registry()
    assert set(registry) == {"layer", "loss", "optimizer", "schedule", "initializer"}
    types = {noun: [k["type"] for k in kinds] for noun, kinds in registry.items()}
    assert {"cross_entropy", "binary_cross_entropy", "mse", "huber"} <= set(types["loss"])
    assert {"sgd", "adam", "adamw", "rmsprop"} <= set(types["optimizer"])
    assert {"constant", "step", "exponential", "cosine"} <= set(types["schedule"])
    for kind in registry["optimizer"]:
        names = [o["name"] for o in kind["options"]]
        assert {"lr", "clip_norm", "schedule"} <= set(names), kind["type"]
    adamw = next(k for k in registry["optimizer"] if k["type"] == "adamw")
    assert next(o for o in adamw["options"] if o["name"] == "weight_decay")["default"] == 0.01


def test_loss_options_come_from_the_library():
    assert dl.HuberLoss().delta == 1.0
    assert dl.CrossEntropyLoss().label_smoothing == 0
    assert repr(dl.CrossEntropyLoss(0.1)) == "CrossEntropyLoss(label_smoothing=0.1, dtype=np.float64)"


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.7])
@pytest.mark.parametrize("indices", [True, False], ids=["indices", "rows"])
def test_cross_entropy_with_label_smoothing(smoothing, indices):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 4)) * 3
    labels = rng.integers(0, 4, 5)
    target = labels if indices else rng.dirichlet(np.ones(4), 5)
    loss = dl.CrossEntropyLoss(label_smoothing=smoothing)
    value, grad = ref.cross_entropy_smoothed(logits, target, smoothing)
    assert loss.forward(logits, target) == pytest.approx(value, rel=1e-13)
    np.testing.assert_allclose(loss.backward(), grad, **TIGHT)


@pytest.mark.parametrize("shape", [(6, 1), (4, 3), (5,)], ids=["one-output", "multi-label", "1-d"])
def test_binary_cross_entropy_on_logits(shape):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=shape) * 4
    target = rng.random(shape)
    target[..., 0] = np.round(target[..., 0])       # hard and soft targets alike
    loss = dl.BCEWithLogitsLoss()
    assert loss.forward(logits, target) == pytest.approx(ref.binary_cross_entropy(logits, target), rel=1e-13)
    np.testing.assert_allclose(loss.backward(), ref.loss_gradient("binary_cross_entropy", logits, target), **TIGHT)


def test_binary_cross_entropy_is_stable_and_refuses_targets_outside_0_1():
    loss = dl.BinaryCrossEntropyLoss()
    assert loss.forward(np.array([[800.0, -800.0]]), np.array([[0.0, 1.0]])) == pytest.approx(800)
    with pytest.raises(dl.DLError, match=r"\[0, 1\]"):
        loss.forward(np.array([[0.0, 1.0]]), np.array([[0.5, 2.0]]))


# --- Optimizers: a float64 linear model with MSE, several steps, against torch.optim ---

def linear_model(optimizer: dict) -> dl.Model:
    return dl.Model.from_spec({"input_size": 3, "layers": [{"type": "linear", "units": 2}], "loss": "mse",
                               "optimizer": optimizer, "dtype": "float64", "seed": 3})


def reference_run(model: dl.Model, batches, step, clip_norm: float = 0.0):
    """The parameters after `step(p, g, state)` for each batch, from the model's own start."""
    params = [model.get_param(i).astype(np.float64) for i in range(2)]
    states = [{}, {}]
    for x, t in batches:
        w, b = params
        dpred = 2 * (x @ w.T + b - t) / t.size
        grads = [dpred.T @ x, dpred.sum(axis=0)]
        if clip_norm:
            grads = ref.clip_grad_norm(grads, clip_norm)
        params = [step(p, g, s) for p, g, s in zip(params, grads, states)]
    return params


OPTIMIZERS = [
    pytest.param({"type": "sgd", "lr": 0.2, "weight_decay": 0.05},
                 lambda p, g, s: ref.sgd_step(p, g, s, 0.2, weight_decay=0.05), id="sgd"),
    pytest.param({"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True},
                 lambda p, g, s: ref.sgd_step(p, g, s, 0.1, momentum=0.9, nesterov=True), id="sgd-nesterov"),
    pytest.param({"type": "sgd", "lr": 0.1, "momentum": 0.8},
                 lambda p, g, s: ref.sgd_step(p, g, s, 0.1, momentum=0.8), id="sgd-momentum"),
    pytest.param({"type": "adam", "lr": 0.05, "weight_decay": 0.1},
                 lambda p, g, s: ref.adam_step(p, g, s, 0.05, weight_decay=0.1), id="adam"),
    pytest.param({"type": "adamw", "lr": 0.05, "weight_decay": 0.5, "beta2": 0.99},
                 lambda p, g, s: ref.adam_step(p, g, s, 0.05, betas=(0.9, 0.99), weight_decay=0.5, decoupled=True),
                 id="adamw"),
    pytest.param({"type": "adamw", "lr": 0.05},
                 lambda p, g, s: ref.adam_step(p, g, s, 0.05, weight_decay=0.01, decoupled=True), id="adamw-defaults"),
    pytest.param({"type": "rmsprop", "lr": 0.01, "rho": 0.9},
                 lambda p, g, s: ref.rmsprop_step(p, g, s, 0.01, alpha=0.9), id="rmsprop"),
]


def batches(count: int = 5, seed: int = 4):
    rng = np.random.default_rng(seed)
    # float32-exact inputs (the C ABI takes float32), float64 targets of the model's dtype
    return [(rng.normal(size=(4, 3)).astype(np.float32).astype(np.float64), rng.normal(size=(4, 2)) * 3)
            for _ in range(count)]


@pytest.mark.parametrize("clip_norm", [0.0, 0.3], ids=["unclipped", "clip_norm"])
@pytest.mark.parametrize("optimizer, step", OPTIMIZERS)
def test_optimizer_matches_torch_optim(optimizer, step, clip_norm):
    data = batches()
    with linear_model({**optimizer, "clip_norm": clip_norm}) as model:
        expected = reference_run(model, data, step, clip_norm)
        start = [model.get_param(i) for i in range(2)]
        for x, t in data:
            model.train_step(x.astype(np.float32), t)
        for i, want in enumerate(expected):
            assert np.abs(want - start[i]).max() > 1e-3          # the parameters moved
            np.testing.assert_allclose(model.get_param(i), want.astype(np.float32), rtol=2e-7, atol=1e-7)


# --- Schedules ---

SCHEDULES = [
    pytest.param({"type": "step", "step_size": 2, "gamma": 0.5}, lambda t: ref.step_lr(0.1, t, 2, 0.5), id="step"),
    pytest.param({"type": "exponential", "gamma": 0.7}, lambda t: ref.exponential_lr(0.1, t, 0.7), id="exponential"),
    pytest.param({"type": "cosine", "t_max": 5, "eta_min": 0.001},
                 lambda t: ref.cosine_lr(0.1, t, 5, 0.001), id="cosine"),
    pytest.param({"type": "cosine", "t_max": 4, "warmup": 3, "warmup_start_factor": 0.1},
                 lambda t: ref.cosine_lr(0.1, t, 4, 0.0, 3, 0.1), id="cosine-warmup"),
]


@pytest.mark.parametrize("schedule, rate", SCHEDULES)
def test_per_epoch_schedules_follow_pytorch(schedule, rate, xor_data):
    x, y = xor_data
    spec = {"input_size": 2, "layers": [{"type": "linear", "units": 2}], "loss": "cross_entropy",
            "optimizer": {"type": "sgd", "lr": 0.1, "schedule": schedule}}
    with dl.Model.from_spec(spec) as model:
        seen = [model.learning_rate]
        for _ in range(9):
            model.fit(x, y, epochs=1, batch_size=3, verbose=False)
            seen.append(model.learning_rate)
    np.testing.assert_allclose(seen, [rate(t) for t in range(10)], rtol=1e-15, atol=0)


@pytest.mark.parametrize("schedule, rate", SCHEDULES)
def test_per_step_schedules_follow_pytorch(schedule, rate, xor_data):
    x, y = xor_data
    spec = {"input_size": 2, "layers": [{"type": "linear", "units": 2}], "loss": "cross_entropy",
            "optimizer": {"type": "adamw", "lr": 0.1, "schedule": {**schedule, "interval": "step"}}}
    with dl.Model.from_spec(spec) as model:
        seen = []
        for _ in range(9):
            seen.append(model.learning_rate)
            model.train_step(x, y)
        model.fit(x, y, epochs=1, batch_size=4, verbose=False)     # one more step; the epoch's end adds none
        seen.append(model.learning_rate)
    np.testing.assert_allclose(seen, [rate(t) for t in [*range(9), 10]], rtol=1e-15, atol=0)


def test_a_resumed_run_continues_the_schedule_exactly(tmp_path, xor_data):
    x, y = xor_data
    spec = {"input_size": 2, "layers": [{"type": "linear", "units": 4}, {"type": "tanh"}, {"type": "linear", "units": 2}],
            "loss": "cross_entropy", "seed": 5,
            "optimizer": {"type": "sgd", "lr": 0.3, "momentum": 0.9, "nesterov": True, "clip_norm": 1.0,
                          "schedule": {"type": "cosine", "t_max": 6, "warmup": 2, "interval": "step"}}}
    with dl.Model.from_spec(spec) as straight, dl.Model.from_spec(spec) as first:
        for _ in range(2):      # two calls, as the resumed run makes (each call draws its own orders)
            straight.fit(x, y, epochs=2, batch_size=3, verbose=False)
        first.fit(x, y, epochs=2, batch_size=3, verbose=False)
        first.save(tmp_path / "half.h5")
        with dl.Model.load(tmp_path / "half.h5") as resumed:
            assert resumed.learning_rate == first.learning_rate
            resumed.fit(x, y, epochs=2, batch_size=3, verbose=False)
            assert resumed.learning_rate == straight.learning_rate
            for i in range(len(straight.param_names)):
                np.testing.assert_array_equal(resumed.get_param(i), straight.get_param(i))


def test_checkpoints_without_a_base_rate_still_load(tmp_path, xor_data):
    """Files written before schedules (format 1, no optimizer@base_learning_rate)."""
    x, y = xor_data
    spec = {"input_size": 2, "layers": [{"type": "linear", "units": 2}], "loss": "cross_entropy",
            "optimizer": {"type": "adam", "lr": 0.08, "lr_decay": 0.5}}
    with dl.Model.from_spec(spec) as model:
        model.fit(x, y, epochs=1, batch_size=4, verbose=False)
        model.save(tmp_path / "decay.h5")
    constant = {**spec, "optimizer": {"type": "sgd", "lr": 0.1}}
    with dl.Model.from_spec(constant) as model:
        model.learning_rate = 0.25              # set by hand: older files kept it as the rate
        model.save(tmp_path / "constant.h5")
    for name in ("decay.h5", "constant.h5"):
        with h5py.File(tmp_path / name, "r+") as f:
            del f["optimizer"].attrs["base_learning_rate"]
    with dl.Model.load(tmp_path / "decay.h5") as model:
        assert model.learning_rate == 0.04
        model.fit(x, y, epochs=1, batch_size=4, verbose=False)
        assert model.learning_rate == 0.02
    with dl.Model.load(tmp_path / "constant.h5") as model:
        assert model.learning_rate == 0.25


def test_setting_the_rate_by_hand_moves_the_schedule_base(xor_data):
    x, y = xor_data
    spec = {"input_size": 2, "layers": [{"type": "linear", "units": 2}], "loss": "cross_entropy",
            "optimizer": {"type": "sgd", "lr": 0.1, "schedule": {"type": "exponential", "gamma": 0.5}}}
    with dl.Model.from_spec(spec) as model:
        model.fit(x, y, epochs=1, batch_size=4, verbose=False)
        assert model.learning_rate == 0.05
        model.learning_rate = 1.0
        assert model.learning_rate == 0.5
        assert json.loads(json.dumps(model.spec))["optimizer"]["schedule"]["gamma"] == 0.5
