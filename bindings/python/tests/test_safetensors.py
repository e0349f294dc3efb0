"""PyTorch state dicts in safetensors files, checked against the real ``safetensors``
package and a NumPy forward pass with PyTorch's module semantics.

Each network below is written twice, independently: as our spec, and as the
``torch.nn.Sequential`` PyTorch users write for it, with the state dict names, dtypes
and shapes PyTorch gives that Sequential (module i's ``weight``, ``bias``; batch norm's
``running_mean``, ``running_var`` and int64 scalar ``num_batches_tracked``; Linear
(out, in), Conv2d (out, in, kh, kw)). torch itself is not needed: the Sequential's source
runs against a small NumPy stand-in of ``torch.nn`` (``numpy_nn``), which records the
modules and computes their evaluation-mode forward pass. When torch is installed, the
generated source is also loaded into real torch and compared.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import deeplearning as dl
from .numpy_reference import ACTIVATIONS

safetensors_numpy = pytest.importorskip("safetensors.numpy")

# -- a NumPy stand-in for torch.nn: modules recorded, forward in float64 -------------------


class Module:
    def __init__(self, kind: str, args: tuple, kwargs: dict) -> None:
        self.kind, self.args, self.kwargs = kind, args, kwargs
        self.dtype = None

    def to(self, dtype):  # nn.Sequential(...).to(torch.float64)
        self.dtype = dtype
        return self


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _windows(x, kernel, stride, padding, fill):
    """x (N, C, H, W) padded with `fill`: an array (N, C, OH, OW, kh, kw) of its windows."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    out = np.empty(x.shape[:2] + (oh, ow, kh, kw))
    for i in range(kh):
        for j in range(kw):
            out[..., i, j] = x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
    return out


def run(module: Module, x: np.ndarray, state: dict, prefix: str) -> np.ndarray:
    """The evaluation-mode output of `module` (PyTorch's semantics) for x."""
    k, a, kw = module.kind, module.args, module.kwargs
    p = lambda name: np.asarray(state[prefix + name], np.float64)  # noqa: E731
    if k == "Linear":
        y = x @ p("weight").T
        return y + p("bias") if kw.get("bias", True) else y
    if k == "Conv2d":
        w = _windows(x, kw.get("kernel_size", a[2] if len(a) > 2 else None), kw.get("stride", 1), kw.get("padding", 0), 0.0)
        y = np.einsum("nchwij,ocij->nohw", w, p("weight"))
        return y + p("bias")[None, :, None, None] if kw.get("bias", True) else y
    if k in ("MaxPool2d", "AvgPool2d"):
        kernel = kw.get("kernel_size", a[0] if a else None)
        stride = kw.get("stride") or kernel
        if k == "MaxPool2d":
            return _windows(x, kernel, stride, kw.get("padding", 0), -np.inf).max(axis=(4, 5))
        assert kw.get("count_include_pad", True)
        return _windows(x, kernel, stride, kw.get("padding", 0), 0.0).mean(axis=(4, 5))
    if k in ("BatchNorm1d", "BatchNorm2d"):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = (x - p("running_mean").reshape(shape)) / np.sqrt(p("running_var").reshape(shape) + kw.get("eps", 1e-5))
        if kw.get("affine", True):
            y = y * p("weight").reshape(shape) + p("bias").reshape(shape)
        return y
    if k == "Flatten":
        return x.reshape(len(x), -1)
    if k == "Unflatten":
        return x.reshape((len(x),) + tuple(a[1]))
    if k == "Dropout":
        return x
    if k == "Sequential":
        for i, m in enumerate(a):
            x = run(m, x, state, f"{prefix}{i}.")
        return x
    if k == "Softmax":
        assert kw.get("dim", a[0] if a else None) == 1 and x.ndim == 2
        return ACTIVATIONS["softmax"][0](x)
    names = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "SiLU": "silu", "GELU": "gelu",
             "LeakyReLU": "leaky_relu", "ELU": "elu", "Softplus": "softplus"}
    positional = {"LeakyReLU": ["negative_slope"], "ELU": ["alpha"], "Softplus": ["beta", "threshold"], "GELU": ["approximate"]}
    options = dict(zip(positional.get(k, []), a), **kw)
    if "negative_slope" in options:
        options["alpha"] = options.pop("negative_slope")
    return ACTIVATIONS[names[k]][0](x, **options)


def forward(net: Module, state: dict, x: np.ndarray, input_shape) -> np.ndarray:
    """The Sequential `net` with the state dict `state` on x (N, features), in float64."""
    y = np.asarray(x, np.float64).reshape((len(x),) + tuple(input_shape))
    for i, m in enumerate(net.args):
        y = run(m, y, state, f"{i}.")
    return y.reshape(len(x), -1)


def numpy_nn() -> dict:
    """Modules standing in for `torch` and `torch.nn` while a Sequential's source runs."""
    nn = types.ModuleType("torch.nn")
    nn.__getattr__ = lambda kind: (lambda *args, **kwargs: Module(kind, args, kwargs))  # type: ignore[attr-defined]
    torch = types.ModuleType("torch")
    torch.nn = nn  # type: ignore[attr-defined]
    torch.Tensor = np.ndarray  # type: ignore[attr-defined]
    torch.float64 = "float64"  # type: ignore[attr-defined]
    return {"torch": torch, "torch.nn": nn}


def sequential(source: str, monkeypatch) -> dict:
    """The globals of `source` (a Sequential's Python file) run against numpy_nn."""
    for name, module in numpy_nn().items():
        monkeypatch.setitem(sys.modules, name, module)
    scope: dict = {}
    exec(compile(source, "<sequential>", "exec"), scope)
    return scope


# -- the networks: our spec, the nn.Sequential a PyTorch user writes, its state dict ------

NETWORKS = {
    "mlp": dict(
        spec={"name": "mlp", "input_size": 6, "layers": [
            {"type": "linear", "units": 5}, {"type": "leaky_relu", "alpha": 0.2},
            {"type": "linear", "units": 4, "bias": False}, {"type": "gelu", "approximate": "tanh"},
            {"type": "linear", "units": 4}, {"type": "elu", "alpha": 0.5}, {"type": "softplus", "beta": 2.0},
            {"type": "silu"}, {"type": "linear", "units": 3}],
            "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 1},
        input_shape=(6,),
        torch="""
net = nn.Sequential(nn.Linear(6, 5), nn.LeakyReLU(0.2), nn.Linear(5, 4, bias=False), nn.GELU(approximate="tanh"),
                    nn.Linear(4, 4), nn.ELU(alpha=0.5), nn.Softplus(beta=2.0), nn.SiLU(), nn.Linear(4, 3))
""",
        state={"0.weight": ("F32", (5, 6)), "0.bias": ("F32", (5,)), "2.weight": ("F32", (4, 5)),
               "4.weight": ("F32", (4, 4)), "4.bias": ("F32", (4,)), "8.weight": ("F32", (3, 4)), "8.bias": ("F32", (3,))},
    ),
    "cnn": dict(
        spec={"name": "cnn", "input_size": 49, "layers": [
            {"type": "reshape", "shape": [1, 7, 7]},
            {"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": 1},
            {"type": "batch_norm", "eps": 1e-3}, {"type": "relu"},
            {"type": "max_pool2d", "kernel_size": 2, "padding": 1},
            {"type": "conv2d", "filters": 4, "kernel_size": [2, 3], "stride": [1, 2], "padding": [1, 1], "bias": False},
            {"type": "avg_pool2d", "kernel_size": 2, "stride": 1},
            {"type": "flatten"}, {"type": "dropout", "rate": 0.3},
            {"type": "linear", "units": 5}, {"type": "batch_norm", "momentum": 0.2}, {"type": "tanh"},
            {"type": "linear", "units": 3}, {"type": "softmax"}],
            "loss": "mse", "optimizer": {"type": "adam", "lr": 0.01}, "seed": 2},
        input_shape=(49,),
        torch="""
net = nn.Sequential(
    nn.Unflatten(1, (1, 7, 7)),
    nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3, eps=1e-3), nn.ReLU(), nn.MaxPool2d(2, padding=1),
    nn.Conv2d(3, 4, (2, 3), stride=(1, 2), padding=(1, 1), bias=False), nn.AvgPool2d(2, stride=1),
    nn.Flatten(), nn.Dropout(0.3),
    nn.Linear(16, 5), nn.BatchNorm1d(5, momentum=0.2), nn.Tanh(), nn.Linear(5, 3), nn.Softmax(dim=1))
""",
        state={"1.weight": ("F32", (3, 1, 3, 3)), "1.bias": ("F32", (3,)),
               "2.weight": ("F32", (3,)), "2.bias": ("F32", (3,)), "2.running_mean": ("F32", (3,)),
               "2.running_var": ("F32", (3,)), "2.num_batches_tracked": ("I64", ()),
               "5.weight": ("F32", (4, 3, 2, 3)),
               "9.weight": ("F32", (5, 16)), "9.bias": ("F32", (5,)),
               "10.weight": ("F32", (5,)), "10.bias": ("F32", (5,)), "10.running_mean": ("F32", (5,)),
               "10.running_var": ("F32", (5,)), "10.num_batches_tracked": ("I64", ()),
               "12.weight": ("F32", (3, 5)), "12.bias": ("F32", (3,))},
    ),
    "image_reshape_softmax": dict(
        spec={"name": "shapes", "input": {"shape": [2, 4, 4]}, "layers": [
            {"type": "reshape", "shape": [1, 8, 4]}, {"type": "softmax"},
            {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": 1}, {"type": "flatten"},
            {"type": "linear", "units": 3}],
            "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 4},
        input_shape=(2, 4, 4),
        torch="""
net = nn.Sequential(nn.Sequential(nn.Flatten(), nn.Unflatten(1, (1, 8, 4))),
                    nn.Sequential(nn.Flatten(), nn.Softmax(dim=1), nn.Unflatten(1, (1, 8, 4))),
                    nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(64, 3))
""",
        state={"2.weight": ("F32", (2, 1, 3, 3)), "2.bias": ("F32", (2,)), "4.weight": ("F32", (3, 64)), "4.bias": ("F32", (3,))},
    ),
    "float64": dict(
        spec={"name": "f64", "input": {"shape": [2, 3, 3]}, "dtype": "float64", "layers": [
            {"type": "batch_norm", "affine": False}, {"type": "flatten"}, {"type": "linear", "units": 4},
            {"type": "sigmoid"}, {"type": "linear", "units": 2}],
            "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 3},
        input_shape=(2, 3, 3),
        torch="""
net = nn.Sequential(nn.BatchNorm2d(2, affine=False), nn.Flatten(), nn.Linear(18, 4), nn.Sigmoid(),
                    nn.Linear(4, 2)).to(torch.float64)
""",
        state={"0.running_mean": ("F64", (2,)), "0.running_var": ("F64", (2,)), "0.num_batches_tracked": ("I64", ()),
               "2.weight": ("F64", (4, 18)), "2.bias": ("F64", (4,)), "4.weight": ("F64", (2, 4)), "4.bias": ("F64", (2,))},
    ),
}
NUMPY_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
#: Largest |reference - predict|: predict returns float32 whatever the model computes in,
#: so the float64 model is checked to float32's rounding here and exactly, value for value,
#: through the files (test_ours_loads_in_the_package_with_the_sequentials_names).
TOLERANCE = {"mlp": 1e-5, "cnn": 1e-5, "image_reshape_softmax": 1e-5, "float64": 1e-6}


def hand_written(name: str, monkeypatch) -> Module:
    return sequential("import torch\nfrom torch import nn\n" + NETWORKS[name]["torch"], monkeypatch)["net"]


def random_state(name: str, rng: np.random.Generator) -> dict:
    state = {}
    for key, (dtype, shape) in NETWORKS[name]["state"].items():
        if dtype == "I64":
            state[key] = np.array(17, np.int64)
        elif key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, shape).astype(NUMPY_DTYPES[dtype])
        else:
            state[key] = rng.normal(0, 0.7, shape).astype(NUMPY_DTYPES[dtype])
    return state


def inputs(name: str, rng: np.random.Generator, n: int = 9) -> np.ndarray:
    size = int(np.prod(NETWORKS[name]["input_shape"]))
    dtype = np.float64 if name == "float64" else np.float32
    return rng.normal(0, 1, (n, size)).astype(dtype)


@pytest.mark.parametrize("name", NETWORKS)
def test_a_file_written_by_the_package_loads_and_predicts_the_numpy_forward(name, tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    state = random_state(name, rng)
    path = tmp_path / "net.safetensors"
    safetensors_numpy.save_file(state, str(path), metadata={"format": "pt"})
    model = dl.Model.from_safetensors(path, NETWORKS[name]["spec"])
    x = inputs(name, rng)
    want = forward(hand_written(name, monkeypatch), state, x, NETWORKS[name]["input_shape"])
    got = model.predict(x)
    assert np.max(np.abs(got - want)) <= TOLERANCE[name]
    # The spec may also be a file.
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(NETWORKS[name]["spec"]))
    assert np.array_equal(dl.Model.from_safetensors(path, spec_file).predict(x), got)


@pytest.mark.parametrize("name", NETWORKS)
def test_ours_loads_in_the_package_with_the_sequentials_names(name, tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    model = dl.Model(NETWORKS[name]["spec"])
    x = inputs(name, rng, 16)
    for _ in range(3):     # moves the running statistics away from 0 and 1
        model.train_step(x, rng.normal(0, 1, (16, model.output_size)) if NETWORKS[name]["spec"]["loss"] == "mse"
                         else rng.integers(0, model.output_size, 16).astype(np.int32))
    path = tmp_path / f"{name}.safetensors"
    model.to_safetensors(path)
    state = safetensors_numpy.load_file(str(path))
    # Every tensor is aligned to its element size (as the reference writer lays them out):
    # torch.frombuffer can use the bytes in place.
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    assert (8 + length) % 8 == 0
    for key, entry in header.items():
        if key != "__metadata__":
            assert entry["data_offsets"][0] % {"F32": 4, "F64": 8, "I64": 8}[entry["dtype"]] == 0, key
    want = {key: (NUMPY_DTYPES[dtype], shape) for key, (dtype, shape) in NETWORKS[name]["state"].items()}
    assert {key: (v.dtype.type, v.shape) for key, v in state.items()} == want
    for key, v in state.items():
        if key.endswith("num_batches_tracked"):
            assert int(v) == 3          # the training steps taken
        elif key.endswith("running_var"):
            assert not np.allclose(v, 1)
    # The hand-written Sequential with our state dict predicts what we predict ...
    y = model.predict(x)
    assert np.max(np.abs(forward(hand_written(name, monkeypatch), state, x, NETWORKS[name]["input_shape"]) - y)) <= TOLERANCE[name]
    # ... and so does the generated one, which is valid Python.
    source = (tmp_path / f"{name}.py").read_text()
    compile(source, f"{name}.py", "exec")
    scope = sequential(source, monkeypatch)
    generated = scope["net"]
    assert len(generated.args) == len(model.layer_types)
    assert (generated.dtype == "float64") == (name == "float64")
    assert np.max(np.abs(forward(generated, state, scope["preprocess"](x), NETWORKS[name]["input_shape"]) - y)) <= TOLERANCE[name]
    # And back: the same model, through its own metadata or a spec.
    for i, back in enumerate((dl.Model.from_safetensors(path), dl.Model.from_safetensors(path, NETWORKS[name]["spec"]))):
        assert np.array_equal(back.predict(x), y)
        # Every value, float64 ones included, comes back bit for bit (the counter excepted:
        # a model that has not trained counts no batches).
        back.to_safetensors(tmp_path / f"again{i}.safetensors")
        again = safetensors_numpy.load_file(str(tmp_path / f"again{i}.safetensors"))
        assert again.keys() == state.keys()
        for key in state:
            if not key.endswith("num_batches_tracked"):
                assert again[key].dtype == state[key].dtype and np.array_equal(again[key], state[key]), key


def test_preprocessing_is_the_generated_preprocess(tmp_path, monkeypatch):
    spec = dict(NETWORKS["mlp"]["spec"], preprocessing={"scale": 0.5, "mean": 0.25, "std": 2.0})
    model = dl.Model(spec)
    model.to_safetensors(tmp_path / "p.safetensors")
    scope = sequential((tmp_path / "p.py").read_text(), monkeypatch)
    x = np.random.default_rng(1).normal(0, 1, (4, 6)).astype(np.float32)
    np.testing.assert_allclose(scope["preprocess"](x), (x * 0.5 - 0.25) / 2.0)
    state = safetensors_numpy.load_file(str(tmp_path / "p.safetensors"))
    got = forward(scope["net"], state, scope["preprocess"](x.astype(np.float64)), (6,))
    assert np.max(np.abs(got - model.predict(x))) <= 1e-5


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed (not required)")
@pytest.mark.parametrize("name", NETWORKS)
def test_real_torch_loads_the_state_dict(name, tmp_path):
    import torch
    import safetensors.torch
    model = dl.Model(NETWORKS[name]["spec"])
    path = tmp_path / f"{name}.safetensors"
    model.to_safetensors(path)
    scope: dict = {}
    exec(compile((tmp_path / f"{name}.py").read_text(), "net.py", "exec"), scope)
    net = scope["net"]
    net.load_state_dict(safetensors.torch.load_file(str(path)))
    net.eval()
    x = inputs(name, np.random.default_rng(2))
    assert model.input_shape == NETWORKS[name]["input_shape"]
    shape = (len(x),) + model.input_shape
    with torch.no_grad():
        y = net(scope["preprocess"](torch.from_numpy(x.reshape(shape)))).numpy().reshape(len(x), -1)
    assert np.max(np.abs(y - model.predict(x))) <= TOLERANCE[name]


# -- what is refused, and how -----------------------------------------------------------

def raw_file(header: bytes, data: bytes = b"", length: int | None = None) -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header + data


@pytest.mark.parametrize("content, message", [
    (b"\x01\x02", "too short for a safetensors file"),
    (raw_file(b"{}", length=1 << 62), "beyond the file's"),
    (raw_file(b"{}", length=2 ** 64 - 1), "beyond the file's"),
    (raw_file(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}', b"\0" * 4), "outside the 4 bytes of data"),
    (raw_file(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
              b'"b": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}}', b"\0" * 6), "overlap"),
    (raw_file(b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}', b"\0" * 4), "needs 8"),
    (raw_file(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}', b"\0" * 4), "JSON syntax error"),
    (raw_file(b'{"__metadata__": {"format": 1}}'), "must be a string"),
    (b"{\"spec\": 1}", "not a safetensors file"),
])
def test_malformed_files_get_clear_errors(content, message, tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(dl.FormatError, match=message):
        dl.Model.from_safetensors(path, NETWORKS["mlp"]["spec"])


def mutated(name: str, change) -> dict:
    state = random_state(name, np.random.default_rng(3))
    change(state)
    return state


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("0.bias"), r'missing "0\.bias"'),
    (lambda s: s.update({"9.weight": np.zeros((3, 4), np.float32)}), r'unexpected "9\.weight"'),
    (lambda s: s.update({"0.weight": np.zeros((6, 5), np.float32)}), r'"0\.weight" has shape \[6, 5\], but the spec\'s model has \[5, 6\]'),
    (lambda s: s.update({"0.bias": np.zeros(5, np.int32)}), r'"0\.bias" has dtype I32'),
    (lambda s: s.update({"0.bias": np.full(5, np.nan, np.float32)}), "NaN or infinite"),
    (lambda s: s.update({"0.bias": np.full(5, 1e300)}), "beyond float32's range"),
])
def test_state_dicts_that_do_not_fit_the_spec_are_refused(change, message, tmp_path):
    path = tmp_path / "x.safetensors"
    safetensors_numpy.save_file(mutated("mlp", change), str(path))
    with pytest.raises(dl.FormatError, match=message):
        dl.Model.from_safetensors(path, NETWORKS["mlp"]["spec"])


def test_batch_norm_counter_must_be_an_int64_scalar(tmp_path):
    state = random_state("float64", np.random.default_rng(4))
    state["0.num_batches_tracked"] = np.array([1.0])
    path = tmp_path / "c.safetensors"
    safetensors_numpy.save_file(state, str(path))
    with pytest.raises(dl.FormatError, match="I64 scalar"):
        dl.Model.from_safetensors(path, NETWORKS["float64"]["spec"])


def test_half_precision_is_converted(tmp_path):
    state = random_state("mlp", np.random.default_rng(8))
    half = {k: v.astype(np.float16) for k, v in state.items()}
    path = tmp_path / "h.safetensors"
    safetensors_numpy.save_file(half, str(path))
    model = dl.Model.from_safetensors(path, NETWORKS["mlp"]["spec"])
    assert np.array_equal(model.get_param("layers.0.weight"), half["0.weight"].astype(np.float32))


def test_a_file_without_a_spec_needs_one(tmp_path):
    path = tmp_path / "n.safetensors"
    safetensors_numpy.save_file(random_state("mlp", np.random.default_rng(0)), str(path))
    with pytest.raises(dl.InvalidArgumentError, match="spec"):
        dl.Model.from_safetensors(path)


def test_a_users_python_file_is_never_replaced(tmp_path):
    mine = tmp_path / "net.py"
    mine.write_text("print('mine')\n")
    with pytest.raises(dl.FileError, match="not written by deeplearning"):
        dl.Model(NETWORKS["mlp"]["spec"]).to_safetensors(tmp_path / "net.safetensors")
    assert mine.read_text() == "print('mine')\n"
    assert not (tmp_path / "net.safetensors").exists()
