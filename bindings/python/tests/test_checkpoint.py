"""HDF5 checkpoints exchanged with h5py and NumPy, in both directions, and damaged
checkpoints refused with a message. Only h5py and NumPy read and write the files
here; docs/checkpoint-format.md is the contract."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

import deeplearning as dl


def numpy_forward(spec: dict, params: dict, x: np.ndarray) -> np.ndarray:
    """The spec's network in plain NumPy (float64), from parameters by name."""
    h = x.astype(np.float64)
    for i, layer in enumerate(spec["layers"]):
        kind = layer["type"]
        if kind == "linear":
            h = h @ params[f"layers.{i}.weight"].T
            if f"layers.{i}.bias" in params:
                h = h + params[f"layers.{i}.bias"]
        elif kind == "relu":
            h = np.maximum(h, 0)
        elif kind == "tanh":
            h = np.tanh(h)
        elif kind == "sigmoid":
            h = 1 / (1 + np.exp(-h))
        elif kind == "leaky_relu":
            h = np.where(h > 0, h, layer.get("alpha", 0.01) * h)
        else:
            raise AssertionError(f"no NumPy reference for {kind}")
    return h


def read_checkpoint(path):
    with h5py.File(path, "r") as f:
        spec = json.loads(f["model_spec"][()])
        params = {name: ds[()] for name, ds in f["parameters"].items()}
    return spec, params


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def trained_mlp(spec_path, rng, tmp_path):
    """specs/mnist_mlp.json after a few steps, saved to tmp_path/mlp.h5."""
    model = dl.Model.from_spec(spec_path("mnist_mlp"))
    for _ in range(3):
        model.train_step(rng.standard_normal((64, 784)).astype(np.float32), rng.integers(0, 10, 64))
    path = tmp_path / "mlp.h5"
    model.save(path)
    yield model, path
    model.close()


def test_h5py_reads_a_checkpoint_and_numpy_reproduces_predictions(trained_mlp, rng):
    model, path = trained_mlp
    spec, params = read_checkpoint(path)
    assert params["layers.0.weight"].shape == (128, 784)
    assert params["layers.0.bias"].shape == (128,)
    assert params["layers.2.weight"].shape == (10, 128)
    assert params["layers.0.weight"].dtype == np.float32
    x = rng.standard_normal((100, 784)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), numpy_forward(spec, params, x), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(params["layers.2.bias"], model.get_param("layers.2.bias"))


def test_optimizer_state_is_stored_in_the_parameters_shape_order(spec_path, rng, tmp_path):
    """Momentum's velocity is what the step added to each weight (p += v), in (out, in) order:
    the library keeps the first layer's weight transposed in memory, the file must not show it."""
    spec = json.loads(open(spec_path("mnist_mlp")).read())
    spec["optimizer"] = {"type": "sgd", "lr": 0.05, "momentum": 0.9}
    with dl.Model(spec) as model:
        before = {name: model.get_param(name).copy() for name in model.param_names}
        x = np.where(rng.random((64, 784)) < 0.2, rng.standard_normal((64, 784)), 0).astype(np.float32)
        model.train_step(x, rng.integers(0, 10, 64))
        path = tmp_path / "momentum.h5"
        model.save(path)
        with h5py.File(path, "r") as f:
            for name in model.param_names:
                velocity = f[f"optimizer/velocity/{name}"][()]
                assert velocity.shape == before[name].shape
                np.testing.assert_allclose(velocity, model.get_param(name) - before[name], rtol=1e-5, atol=1e-7,
                                           err_msg=name)
                np.testing.assert_array_equal(f[f"parameters/{name}"][()], model.get_param(name))


def test_checkpoint_layout_is_as_documented(trained_mlp):
    model, path = trained_mlp
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "deeplearning-checkpoint"
        assert f.attrs["format_version"] == 1
        assert f.attrs["library_version"] == dl.__version__
        assert f.attrs["dtype"] == "float32"
        assert f["optimizer"].attrs["type"] == "sgd"
        assert f["optimizer"].attrs["step"] == 3
        assert f["optimizer"].attrs["learning_rate"] == pytest.approx(0.01)
        assert f["training"].attrs["samples_seen"] == 192
        assert f["training/rng_state"].shape == (4,)
        assert f["training/rng_state"].dtype == np.uint64
        assert sorted(f["parameters"]) == sorted(model.param_names)


def write_checkpoint(path, spec: dict, params: dict, optimizer_state: dict | None = None):
    """A checkpoint written from docs/checkpoint-format.md with h5py alone."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "deeplearning-checkpoint"
        f.attrs["format_version"] = np.int64(1)
        f["model_spec"] = json.dumps(spec)
        for name, value in params.items():
            f[f"parameters/{name}"] = value
        f.create_group("buffers")
        opt = f.create_group("optimizer")
        opt.attrs["type"] = spec["optimizer"]["type"]
        opt.attrs["learning_rate"] = float(spec["optimizer"]["lr"])
        opt.attrs["step"] = np.int64(0)
        for slot, tensors in (optimizer_state or {}).items():
            for name, value in tensors.items():
                f[f"optimizer/{slot}/{name}"] = value
        t = f.create_group("training")
        t.attrs["samples_seen"] = np.int64(0)
        t.attrs["epoch"] = np.int64(0)
        t["rng_state"] = np.array([1, 2, 3, 4], dtype=np.uint64)


def test_a_checkpoint_written_by_h5py_loads(tmp_path, load_spec, rng):
    spec = load_spec("mnist_deep")
    shapes = {"layers.0.weight": (256, 784), "layers.0.bias": (256,), "layers.2.weight": (128, 256),
              "layers.2.bias": (128,), "layers.4.weight": (10, 128), "layers.4.bias": (10,)}
    params = {name: (rng.standard_normal(shape) * 0.05).astype(np.float32) for name, shape in shapes.items()}
    velocity = {name: np.zeros(shape, np.float32) for name, shape in shapes.items()}
    path = tmp_path / "from_numpy.h5"
    write_checkpoint(path, spec, params, {"velocity": velocity} if spec["optimizer"].get("momentum") else None)
    with dl.Model.load(path) as model:
        x = rng.standard_normal((32, 784)).astype(np.float32)
        np.testing.assert_allclose(model.predict(x), numpy_forward(spec, params, x), rtol=1e-4, atol=1e-4)
        assert model.step_count == 0
        # It trains, and saves again in the documented layout.
        model.train_step(x, rng.integers(0, 10, 32))
        model.save(tmp_path / "again.h5")
    with h5py.File(tmp_path / "again.h5", "r") as f:
        assert f["optimizer"].attrs["step"] == 1


def test_float64_values_from_h5py_are_converted(tmp_path, load_spec, rng):
    spec = load_spec("xor")
    params = {"layers.0.weight": rng.standard_normal((8, 2)), "layers.0.bias": np.zeros(8),
              "layers.2.weight": rng.standard_normal((2, 8)), "layers.2.bias": np.zeros(2)}
    write_checkpoint(tmp_path / "f64.h5", spec, params, {"velocity": {k: np.zeros_like(v) for k, v in params.items()}})
    with dl.Model.load(tmp_path / "f64.h5") as model:
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
        np.testing.assert_allclose(model.predict(x), numpy_forward(spec, params, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("optimizer", [
    {"type": "sgd", "lr": 0.05},
    {"type": "sgd", "lr": 0.05, "momentum": 0.9},
    {"type": "adam", "lr": 0.01},
    {"type": "rmsprop", "lr": 0.01, "weight_decay": 0.001},
])
def test_resume_from_python_is_bit_identical(tmp_path, load_spec, rng, optimizer):
    spec = load_spec("xor")
    spec["optimizer"] = optimizer
    batches = [(rng.random((16, 2)).astype(np.float32), rng.integers(0, 2, 16)) for _ in range(10)]
    with dl.Model.from_spec(spec) as first:
        for x, y in batches[:5]:
            first.train_step(x, y)
        first.save(tmp_path / "half.h5")
    with dl.Model.from_spec(spec) as straight, dl.Model.load(tmp_path / "half.h5") as resumed:
        for x, y in batches:
            straight.train_step(x, y)
        for x, y in batches[5:]:
            resumed.train_step(x, y)
        assert resumed.step_count == straight.step_count == 10
        for name in straight.param_names:
            np.testing.assert_array_equal(resumed.get_param(name), straight.get_param(name))


# Each damage: (name, function(h5py.File), text the message must contain)
def _replace(f, name, value):
    del f[name]
    f[name] = value


DAMAGES = [
    ("missing parameter", lambda f: f.__delitem__("parameters/layers.0.weight"), "missing dataset parameters/layers.0.weight"),
    ("wrong shape", lambda f: _replace(f, "parameters/layers.0.weight", np.zeros((128, 783), np.float32)),
     "parameters/layers.0.weight has shape [128, 783], but the stored spec gives [128, 784]"),
    ("integer dtype", lambda f: _replace(f, "parameters/layers.2.bias", np.zeros(10, np.int32)),
     "parameters/layers.2.bias holds integer values, expected floating point"),
    ("string dataset", lambda f: _replace(f, "parameters/layers.2.bias", "hello"), "parameters/layers.2.bias"),
    ("extra parameter", lambda f: f.__setitem__("parameters/layers.9.weight", np.zeros(3, np.float32)),
     "parameters/layers.9.weight does not belong to the stored spec's model"),
    ("NaN weight", lambda f: f["parameters/layers.0.bias"].__setitem__(0, np.nan), "parameters/layers.0.bias contains NaN"),
    ("newer format", lambda f: f.attrs.__setitem__("format_version", np.int64(2)), "format_version 2 is newer"),
    ("other format", lambda f: f.attrs.__setitem__("format", "keras"), 'format is "keras"'),
    ("no format", lambda f: f.attrs.__delitem__("format"), "not a deeplearning checkpoint"),
    ("no spec", lambda f: f.__delitem__("model_spec"), "missing dataset model_spec"),
    ("bad spec json", lambda f: _replace(f, "model_spec", "{\"input\": 3"), "model_spec"),
    ("spec with other sizes", lambda f: _replace(f, "model_spec", f["model_spec"][()].decode().replace("128", "64")),
     "but the stored spec gives [64, 784]"),
    ("optimizer type", lambda f: f["optimizer"].attrs.__setitem__("type", "adam"), 'optimizer/type is "adam"'),
    ("no optimizer", lambda f: f.__delitem__("optimizer"), "optimizer"),
    ("no training group", lambda f: f.__delitem__("training"), "training"),
    ("zero rng", lambda f: _replace(f, "training/rng_state", np.zeros(4, np.uint64)), "rng_state is all zeros"),
    ("short rng", lambda f: _replace(f, "training/rng_state", np.ones(3, np.uint64)), "rng_state must be 4 unsigned"),
    ("negative step", lambda f: f["optimizer"].attrs.__setitem__("step", np.int64(-5)), "step -5"),
    ("no parameters group", lambda f: f.__delitem__("parameters"), "missing group parameters"),
]


@pytest.mark.parametrize("name,damage,expected", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_damaged_checkpoints_are_refused(trained_mlp, tmp_path, name, damage, expected):
    _, path = trained_mlp
    damaged = tmp_path / "damaged.h5"
    shutil.copy(path, damaged)
    with h5py.File(damaged, "r+") as f:
        damage(f)
    with pytest.raises(dl.DLError) as info:
        dl.Model.load(damaged)
    assert expected in str(info.value)
    assert str(damaged) in str(info.value)


def test_messages_differ_per_damage(trained_mlp, tmp_path):
    _, path = trained_mlp
    messages = set()
    for i, (_, damage, _) in enumerate(DAMAGES):
        damaged = tmp_path / f"d{i}.h5"
        shutil.copy(path, damaged)
        with h5py.File(damaged, "r+") as f:
            damage(f)
        with pytest.raises(dl.DLError) as info:
            dl.Model.load(damaged)
        messages.add(str(info.value).replace(str(damaged), ""))
    assert len(messages) >= len(DAMAGES) - 2


def test_a_failed_save_keeps_the_old_file(trained_mlp, tmp_path):
    model, path = trained_mlp
    before = path.read_bytes()
    with pytest.raises(dl.DLError):
        model.save(tmp_path / "missing-folder" / "x.h5")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.h5"]
