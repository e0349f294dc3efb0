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
        # Format 2 writes fixed-length strings, which h5py returns as bytes.
        assert f.attrs["format"] == b"deeplearning-checkpoint"
        assert f.attrs["format_version"] == 2
        assert f.attrs["library_version"] == dl.__version__.encode()
        assert f.attrs["dtype"] == b"float32"
        assert f["optimizer"].attrs["type"] == b"sgd"
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
    ("newer format", lambda f: f.attrs.__setitem__("format_version", np.int64(3)), "format_version 3 is newer"),
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
    ("negative step", lambda f: f["optimizer"].attrs.__setitem__("step", np.int64(-5)), "optimizer@step is -5"),
    # Counters a train step could not increment without overflow (issue #13).
    ("INT64_MAX step", lambda f: f["optimizer"].attrs.__setitem__("step", np.int64(2**63 - 1)),
     "optimizer@step is 9223372036854775807, outside 0...9007199254740992"),
    ("INT64_MAX samples_seen", lambda f: f["training"].attrs.__setitem__("samples_seen", np.int64(2**63 - 1)),
     "training@samples_seen is 9223372036854775807"),
    ("INT64_MAX epoch", lambda f: f["training"].attrs.__setitem__("epoch", np.int64(2**63 - 1)),
     "training@epoch is 9223372036854775807"),
    ("learning rate above the spec's range", lambda f: f["optimizer"].attrs.__setitem__("learning_rate", 1e300),
     "outside 0...1000000"),
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


# Crafted files that crash or hang libhdf5 1.10 (issue #13). h5py writes variable-length
# strings into a global heap collection ("GCOL"); damaging it reaches the broken code
# (H5HG_read segfaults, H5HG__protect loops). The library reads files in a child
# process, so this interpreter survives and gets an error.

def _heap_objects(data: bytes):
    """Offset of the first global heap collection and its objects' (offset, index, size)."""
    gcol = data.find(b"GCOL")
    assert gcol >= 0, "the checkpoint has a global heap"
    size = int.from_bytes(data[gcol + 8:gcol + 16], "little")
    objects, p = [], gcol + 16
    while p < gcol + size:
        index = int.from_bytes(data[p:p + 2], "little")
        length = int.from_bytes(data[p + 8:p + 16], "little")
        objects.append((p - gcol, index, length))
        if index == 0:
            break
        p += 16 + (length + 7) // 8 * 8
    return gcol, size, objects


def _crafted(tmp_path, load_spec, rng, patch):
    spec = load_spec("xor")
    params = {"layers.0.weight": rng.standard_normal((8, 2)).astype(np.float32), "layers.0.bias": np.zeros(8, np.float32),
              "layers.2.weight": rng.standard_normal((2, 8)).astype(np.float32), "layers.2.bias": np.zeros(2, np.float32)}
    path = tmp_path / "crafted.h5"
    write_checkpoint(path, spec, params, {"velocity": {k: np.zeros_like(v) for k, v in params.items()}})
    data = bytearray(path.read_bytes())
    gcol, size, objects = _heap_objects(bytes(data))
    for offset, value in patch(size, objects).items():
        data[gcol + offset:gcol + offset + 8] = value.to_bytes(8, "little")
    path.write_bytes(bytes(data))
    return path


def test_a_global_heap_that_crashes_libhdf5_is_refused(tmp_path, load_spec, rng):
    # A collection size smaller than its own header: libhdf5 1.10 reads wild memory.
    path = _crafted(tmp_path, load_spec, rng, lambda size, objects: {8: 16})
    with pytest.raises(dl.DLError) as info:
        dl.Model.load(path)
    assert str(path) in str(info.value)
    # What libhdf5 does with the wild read depends on the memory it lands in: usually a
    # crash of the reader process ("libhdf5 crashed reading the file (signal 11 ..."),
    # sometimes garbage that the checks refuse. Either way this interpreter lives on.
    assert isinstance(info.value, dl.FormatError)


def test_a_load_that_hangs_libhdf5_ends_at_its_deadline(tmp_path, load_spec, rng, monkeypatch):
    import time
    # The first object's size runs into the collection's free space: libhdf5 1.10 loops.
    def patch(size, objects):
        free = next(offset for offset, index, _ in objects if index == 0)
        return {objects[0][0] + 8: free + 64}
    path = _crafted(tmp_path, load_spec, rng, patch)
    monkeypatch.setenv("DL_HDF5_TIMEOUT_MS", "1000")
    start = time.monotonic()
    with pytest.raises(dl.DLError) as info:
        dl.Model.load(path)
    took = time.monotonic() - start
    assert isinstance(info.value, dl.FormatError)
    assert "did not finish within 1" in str(info.value)   # 1000 ms plus 1 ms per 8 KiB of file
    assert 0.9 <= took < 10


def test_an_hdf5_label_of_2_to_64_minus_1_is_refused(tmp_path):
    path = tmp_path / "labels.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros((2, 3), np.float32)
        f["y"] = np.array([1, 2**64 - 1], np.uint64)
    with pytest.raises(dl.DLError) as info:
        dl.Dataset.load_hdf5(path)
    assert "label above 9223372036854775807 of sample 1" in str(info.value)


def test_an_hdf5_data_set_claiming_2_to_40_samples_without_data_is_refused(tmp_path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", shape=(2**40, 1), dtype=np.float32)   # never written: no storage
        f.create_dataset("y", shape=(2**40,), dtype=np.uint8)
    with pytest.raises(dl.DLError) as info:
        dl.Dataset.load_hdf5(path)
    assert "the file holds 0 bytes" in str(info.value)


def test_saves_leave_no_temporary_files(trained_mlp, tmp_path):
    model, _ = trained_mlp
    dead = tmp_path / "m.h5.dltmp-1073741808-1a2b"   # a pid above any pid_max: no such process
    dead.write_bytes(b"left by a killed save")
    for _ in range(3):
        model.save(tmp_path / "m.h5")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("m.h5")) == ["m.h5"]


def test_links_to_other_files_are_not_followed(tmp_path):
    # An external link would read another file into the data set; a soft link could loop.
    with h5py.File(tmp_path / "elsewhere.h5", "w") as f:
        f["x"] = np.ones((2, 3), np.float32)
    with h5py.File(tmp_path / "links.h5", "w") as f:
        f["x"] = h5py.ExternalLink(str(tmp_path / "elsewhere.h5"), "/x")
    with pytest.raises(dl.DLError) as info:
        dl.Dataset.load_hdf5(tmp_path / "links.h5")
    assert "missing dataset x" in str(info.value)


KILLED_SAVER = """
import json, sys, deeplearning as dl
spec = json.loads(sys.argv[1])
with dl.Model.from_spec(spec) as m:
    print("ready", flush=True)
    while True:
        m.save(sys.argv[2])
"""


def test_the_next_save_removes_what_killed_saves_left(tmp_path, load_spec):
    import os, signal, subprocess, sys, time
    spec = load_spec("mnist_deep")   # 0.9 MB checkpoints: a kill often lands mid-write
    target = tmp_path / "m.h5"
    litter = set()
    for _ in range(6):
        p = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, json.dumps(spec), str(target)],
                             stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.2 + 0.05 * len(litter))
        p.send_signal(signal.SIGKILL)
        p.wait()
        litter |= {q.name for q in tmp_path.iterdir() if ".dltmp-" in q.name}
    with dl.Model.from_spec(spec) as m:
        m.save(target)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["m.h5"], litter
    with dl.Model.load(target):
        pass
