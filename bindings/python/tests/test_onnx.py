"""ONNX export and import, checked against the real runtime.

Every shipped spec is exported, passes onnx.checker's full check, and ONNX Runtime's
outputs equal predict's on real inputs; graphs built with onnx.helper in the shapes
torch.onnx.export and Keras/tf2onnx produce are imported and predict what ONNX Runtime
predicts; an imported model trains further; malformed files get clear errors.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

import deeplearning as dl

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[3]
MNIST = REPO_ROOT / "data" / "mnist"
TOLERANCE = 1e-5
#: The largest |ORT - predict| seen per model, printed at the end (pytest -s) for the record.
LARGEST: dict[str, float] = {}


def mnist_images(count: int) -> np.ndarray:
    """The first `count` MNIST test images as raw 0..255 float32 rows (real inputs)."""
    path = MNIST / "t10k-images-idx3-ubyte.gz"
    if not path.exists():
        pytest.skip(f"MNIST not found at {MNIST} (scripts/fetch_mnist.py)")
    with gzip.open(path, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    return data[: count * 784].reshape(count, 784).astype(np.float32)


def mnist_labels(count: int) -> np.ndarray:
    with gzip.open(MNIST / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:count].astype(np.int32)


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    shape = [d if isinstance(d, int) else x.shape[0] for d in inp.shape]
    (out,) = session.run(None, {inp.name: x.reshape(shape)})
    return np.asarray(out).reshape(x.shape[0], -1)


def compare(name: str, model: dl.Model, path: Path, x: np.ndarray) -> None:
    """ORT on the exported file equals predict at batch 1 and 37, to 1e-5."""
    for batch in (1, 37):
        xb = np.ascontiguousarray(x[:batch])
        want = model.predict(xb).reshape(batch, -1)
        got = run_ort(path, xb)
        diff = float(np.max(np.abs(got - want)))
        LARGEST[name] = max(LARGEST.get(name, 0.0), diff)
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, err_msg=f"{name}, batch {batch}")


def export_checked(model: dl.Model, path: Path) -> onnx.ModelProto:
    model.to_onnx(path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    return proto


# -- export: every shipped spec ----------------------------------------------

def real_inputs(spec: dict, count: int) -> np.ndarray:
    size = spec["input"]["size"] if "size" in spec["input"] else int(np.prod(spec["input"]["shape"]))
    if size == 784:
        return mnist_images(count)
    if spec["name"] == "sine_regression":
        return np.linspace(-np.pi, np.pi, count, dtype=np.float32).reshape(count, 1)
    rng = np.random.default_rng(3)
    return rng.integers(0, 2, size=(count, size)).astype(np.float32)   # xor's corners


SHIPPED = sorted(p.stem for p in (REPO_ROOT / "specs").glob("*.json") if p.stem != "schema")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_spec_runs_in_onnx_runtime(name, tmp_path):
    spec = json.loads((REPO_ROOT / "specs" / f"{name}.json").read_text())
    model = dl.Model(spec)
    x = real_inputs(spec, 64)
    if x.shape[1] == 784:
        model.preprocessing = (1 / 255, 0.1307, 0.3081)     # raw bytes in, as Mul/Sub/Div nodes
        y = mnist_labels(64)
    elif spec["name"] == "sine_regression":
        y = np.sin(x).astype(np.float32)
    else:
        y = (x[:, 0] != x[:, 1]).astype(np.int32)
    for _ in range(3):   # trained a little: batch norm's running statistics move off 0 and 1
        model.train_step(x, y)
    proto = export_checked(model, tmp_path / f"{name}.onnx")
    assert proto.opset_import[0].version == 20
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["deeplearning.version"] == dl.__version__
    assert json.loads(meta["deeplearning.spec"])["name"] == spec["name"]
    assert proto.doc_string == spec["name"]
    ops = [n.op_type for n in proto.graph.node]
    assert "Dropout" not in ops
    if x.shape[1] == 784:
        assert ops[:3] == ["Mul", "Sub", "Div"]
    compare(name, model, tmp_path / f"{name}.onnx", x)


ALL_LAYERS = {
    "format_version": 1, "name": "every_layer", "input": {"shape": [2, 9, 9]},
    "layers": [
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": 1},
        {"type": "batch_norm", "affine": False, "eps": 1e-3, "momentum": 0.3},
        {"type": "leaky_relu", "alpha": 0.2},
        {"type": "max_pool2d", "kernel_size": 2, "stride": 1, "padding": 1},
        {"type": "conv2d", "filters": 3, "kernel_size": [3, 2], "bias": False},
        {"type": "elu", "alpha": 0.7},
        {"type": "avg_pool2d", "kernel_size": 2, "padding": 1},
        {"type": "gelu", "approximate": "tanh"},
        {"type": "reshape", "shape": [1, 3, 9]},
        {"type": "silu"},
        {"type": "flatten"},
        {"type": "dropout", "rate": 0.3},
        {"type": "linear", "units": 12},
        {"type": "batch_norm"},
        {"type": "gelu"},
        {"type": "linear", "units": 8},
        {"type": "softplus", "beta": 2.0, "threshold": 1.5},
        {"type": "linear", "units": 6},
        {"type": "softplus"},
        {"type": "sigmoid"},
        {"type": "tanh"},
        {"type": "relu"},
        {"type": "linear", "units": 5, "bias": False},
        {"type": "softmax"},
    ],
    "loss": "mse", "optimizer": {"type": "adam", "lr": 0.01}, "seed": 4,
}


def test_every_layer_type_exports(tmp_path):
    model = dl.Model(ALL_LAYERS)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 162)).astype(np.float32) * 2
    for _ in range(3):
        model.train_step(x, rng.random((64, 5)).astype(np.float32))
    proto = export_checked(model, tmp_path / "all.onnx")
    ops = {n.op_type for n in proto.graph.node}
    assert {"Conv", "BatchNormalization", "LeakyRelu", "MaxPool", "Elu", "AveragePool", "Gelu", "Reshape",
            "Sigmoid", "Mul", "Flatten", "Gemm", "Softplus", "Where", "Greater", "Tanh", "Relu", "Softmax"} <= ops
    compare("every_layer", model, tmp_path / "all.onnx", x)


def test_float64_model_exports_float32_weights(tmp_path):
    spec = json.loads((REPO_ROOT / "specs" / "regression.json").read_text())
    model = dl.Model({**spec, "dtype": "float64"})
    x = np.linspace(-3, 3, 37, dtype=np.float32).reshape(37, 1)
    export_checked(model, tmp_path / "r.onnx")
    compare("regression_float64", model, tmp_path / "r.onnx", x)


def test_round_trip_keeps_everything(tmp_path):
    spec = json.loads((REPO_ROOT / "specs" / "mnist_cnn.json").read_text())
    model = dl.Model(spec)
    model.preprocessing = (1 / 255, 0.1307, 0.3081)
    x, y = mnist_images(32), mnist_labels(32)
    model.train_step(x, y)
    model.to_onnx(tmp_path / "cnn.onnx")
    back = dl.Model.from_onnx(tmp_path / "cnn.onnx")
    assert back.layer_types == [t for t in model.layer_types if t != "dropout"]
    assert back.spec["loss"] == spec["loss"] and back.spec["optimizer"] == spec["optimizer"]
    assert tuple(back.preprocessing) == pytest.approx(tuple(model.preprocessing))
    np.testing.assert_allclose(back.predict(x), model.predict(x), atol=1e-5)
    # Options replace what the file says.
    other = dl.Model.from_onnx(tmp_path / "cnn.onnx", loss="mse", optimizer={"type": "sgd", "lr": 0.5}, name="x")
    assert other.spec["loss"] == "mse" and other.spec["optimizer"]["type"] == "sgd" and other.spec["name"] == "x"


# -- import: graphs in the shapes of PyTorch's and Keras's exporters ----------

def f32(rng, *shape, scale=0.3):
    return (rng.normal(size=shape) * scale).astype(np.float32)


def save(tmp_path, name, nodes, inits, in_shape, out_shape, opset=17):
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", *out_shape])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def check_import(name, path, x, **options):
    model = dl.Model.from_onnx(path, **options)
    want = run_ort(path, x)
    got = model.predict(x).reshape(x.shape[0], -1)
    diff = float(np.max(np.abs(got - want)))
    LARGEST[name] = max(LARGEST.get(name, 0.0), diff)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE, err_msg=name)
    return model


def torch_mlp(tmp_path, rng):
    """torch.onnx.export of nn.Sequential(Flatten, Linear, ReLU, Dropout, Linear): Gemm transB=1."""
    inits = {"fc1.weight": f32(rng, 32, 20), "fc1.bias": f32(rng, 32), "fc2.weight": f32(rng, 4, 32), "fc2.bias": f32(rng, 4)}
    nodes = [
        helper.make_node("Flatten", ["input"], ["/Flatten_output_0"], name="/Flatten", axis=1),
        helper.make_node("Gemm", ["/Flatten_output_0", "fc1.weight", "fc1.bias"], ["/fc1/Gemm_output_0"],
                         name="/fc1/Gemm", alpha=1.0, beta=1.0, transB=1),
        helper.make_node("Relu", ["/fc1/Gemm_output_0"], ["/relu/Relu_output_0"], name="/relu/Relu"),
        helper.make_node("Dropout", ["/relu/Relu_output_0"], ["/drop/Dropout_output_0"], name="/drop/Dropout"),
        helper.make_node("Gemm", ["/drop/Dropout_output_0", "fc2.weight", "fc2.bias"], ["output"],
                         name="/fc2/Gemm", alpha=1.0, beta=1.0, transB=1),
    ]
    return save(tmp_path, "torch_mlp", nodes, inits, [20], [4])


def test_import_torch_mlp(tmp_path):
    rng = np.random.default_rng(1)
    path = torch_mlp(tmp_path, rng)
    model = check_import("torch_mlp", path, f32(rng, 37, 20, scale=1))
    assert model.layer_types == ["linear", "relu", "linear"]
    assert model.spec["loss"] == "cross_entropy" and model.spec["optimizer"] == {"type": "adam", "lr": 0.001}
    check_import("torch_mlp", path, f32(rng, 1, 20, scale=1))


def test_import_keras_mlp(tmp_path):
    """tf2onnx of a Keras Sequential: MatMul + Add (kernel (in, out)), Identity, Softmax."""
    rng = np.random.default_rng(2)
    inits = {"dense/MatMul/ReadVariableOp:0": f32(rng, 12, 16), "dense/BiasAdd/ReadVariableOp:0": f32(rng, 16),
             "dense_1/MatMul/ReadVariableOp:0": f32(rng, 16, 3), "dense_1/BiasAdd/ReadVariableOp:0": f32(rng, 3)}
    nodes = [
        helper.make_node("MatMul", ["input", "dense/MatMul/ReadVariableOp:0"], ["dense/MatMul:0"], name="dense/MatMul"),
        helper.make_node("Add", ["dense/BiasAdd/ReadVariableOp:0", "dense/MatMul:0"], ["dense/BiasAdd:0"], name="dense/BiasAdd"),
        helper.make_node("Elu", ["dense/BiasAdd:0"], ["dense/Elu:0"], name="dense/Elu", alpha=1.0),
        helper.make_node("Identity", ["dense/Elu:0"], ["dropout/Identity:0"], name="dropout/Identity"),
        helper.make_node("MatMul", ["dropout/Identity:0", "dense_1/MatMul/ReadVariableOp:0"], ["dense_1/MatMul:0"], name="dense_1/MatMul"),
        helper.make_node("Add", ["dense_1/MatMul:0", "dense_1/BiasAdd/ReadVariableOp:0"], ["dense_1/BiasAdd:0"], name="dense_1/BiasAdd"),
        helper.make_node("Softmax", ["dense_1/BiasAdd:0"], ["output"], name="dense_1/Softmax", axis=-1),
    ]
    path = save(tmp_path, "keras_mlp", nodes, inits, [12], [3], opset=13)
    model = check_import("keras_mlp", path, f32(rng, 37, 12, scale=1))
    assert model.layer_types == ["linear", "elu", "linear", "softmax"]


def torch_cnn(tmp_path, rng, name="torch_cnn"):
    """torch.onnx.export of a small CNN: Conv+BatchNorm (not folded, as with training=TrainingMode.PRESERVE
    or a model exported in eval mode with do_constant_folding=False), ReLU, MaxPool, Conv without bias,
    SiLU as Sigmoid*Mul, AveragePool, Reshape by a Constant, Gemm, GELU."""
    inits = {
        "conv1.weight": f32(rng, 6, 1, 3, 3), "conv1.bias": f32(rng, 6),
        "bn.weight": (1 + f32(rng, 6)).astype(np.float32), "bn.bias": f32(rng, 6),
        "bn.running_mean": f32(rng, 6), "bn.running_var": (0.5 + rng.random(6)).astype(np.float32),
        "conv2.weight": f32(rng, 4, 6, 3, 3),
        "fc.weight": f32(rng, 10, 4 * 3 * 3), "fc.bias": f32(rng, 10),
        "fc2.weight": f32(rng, 3, 10),
    }
    nodes = [
        helper.make_node("Conv", ["input", "conv1.weight", "conv1.bias"], ["/conv1/Conv_output_0"], name="/conv1/Conv",
                         dilations=[1, 1], group=1, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("BatchNormalization", ["/conv1/Conv_output_0", "bn.weight", "bn.bias", "bn.running_mean",
                                                "bn.running_var"], ["/bn/BatchNormalization_output_0"],
                         name="/bn/BatchNormalization", epsilon=1e-5, momentum=0.9),
        helper.make_node("Relu", ["/bn/BatchNormalization_output_0"], ["/Relu_output_0"], name="/Relu"),
        helper.make_node("MaxPool", ["/Relu_output_0"], ["/pool/MaxPool_output_0"], name="/pool/MaxPool",
                         ceil_mode=0, dilations=[1, 1], kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2]),
        helper.make_node("Conv", ["/pool/MaxPool_output_0", "conv2.weight"], ["/conv2/Conv_output_0"], name="/conv2/Conv",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Sigmoid", ["/conv2/Conv_output_0"], ["/act/Sigmoid_output_0"], name="/act/Sigmoid"),
        helper.make_node("Mul", ["/conv2/Conv_output_0", "/act/Sigmoid_output_0"], ["/act/Mul_output_0"], name="/act/Mul"),
        helper.make_node("AveragePool", ["/act/Mul_output_0"], ["/avg/AveragePool_output_0"], name="/avg/AveragePool",
                         kernel_shape=[2, 2], strides=[2, 2], ceil_mode=0, count_include_pad=0),
        helper.make_node("Constant", [], ["/Constant_output_0"], name="/Constant",
                         value=numpy_helper.from_array(np.array([-1, 36], dtype=np.int64))),
        helper.make_node("Reshape", ["/avg/AveragePool_output_0", "/Constant_output_0"], ["/Reshape_output_0"], name="/Reshape"),
        helper.make_node("Gemm", ["/Reshape_output_0", "fc.weight", "fc.bias"], ["/fc/Gemm_output_0"], name="/fc/Gemm",
                         alpha=1.0, beta=1.0, transB=1),
        helper.make_node("Gelu", ["/fc/Gemm_output_0"], ["/gelu/Gelu_output_0"], name="/gelu/Gelu"),
        helper.make_node("Gemm", ["/gelu/Gelu_output_0", "fc2.weight"], ["output"], name="/fc2/Gemm", transB=1),
    ]
    return save(tmp_path, name, nodes, inits, [1, 12, 12], [3], opset=20)


def test_import_torch_cnn(tmp_path):
    rng = np.random.default_rng(3)
    path = torch_cnn(tmp_path, rng)
    x = rng.random((37, 144)).astype(np.float32)
    model = check_import("torch_cnn", path, x)
    assert model.layer_types == ["conv2d", "batch_norm", "relu", "max_pool2d", "conv2d", "silu", "avg_pool2d",
                                 "flatten", "linear", "gelu", "linear"]
    check_import("torch_cnn", path, x[:1])


def test_import_keras_style_cnn_with_transb0_and_preprocessing(tmp_path):
    """A scaled input (Mul, Sub, Div by scalars) and tf2onnx's forms: Gemm transB=0 with alpha/beta,
    Conv with auto_pad SAME_UPPER, LeakyRelu, Reshape with 0 (copy) and -1, Softplus, Tanh."""
    rng = np.random.default_rng(4)
    inits = {"scale": np.array(1 / 255, np.float32), "mean": np.array(0.5, np.float32), "std": np.array(0.25, np.float32),
             "k": f32(rng, 3, 2, 3, 3), "kb": f32(rng, 3), "shape": np.array([0, -1], np.int64),
             "w": f32(rng, 3 * 5 * 5, 7), "b": f32(rng, 7), "w2": f32(rng, 7, 2)}
    nodes = [
        helper.make_node("Mul", ["scale", "input"], ["s"], name="rescale"),
        helper.make_node("Sub", ["s", "mean"], ["c"], name="center"),
        helper.make_node("Div", ["c", "std"], ["n"], name="normalize"),
        helper.make_node("Conv", ["n", "k", "kb"], ["conv"], name="conv", auto_pad="SAME_UPPER", kernel_shape=[3, 3]),
        helper.make_node("LeakyRelu", ["conv"], ["lr"], name="leaky", alpha=0.1),
        helper.make_node("Reshape", ["lr", "shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w", "b"], ["g"], name="dense", alpha=0.5, beta=2.0),
        helper.make_node("Softplus", ["g"], ["sp"], name="softplus"),
        helper.make_node("Tanh", ["sp"], ["t"], name="tanh"),
        helper.make_node("MatMul", ["t", "w2"], ["output"], name="out"),
    ]
    path = save(tmp_path, "keras_cnn", nodes, inits, [2, 5, 5], [2])
    x = rng.integers(0, 256, size=(37, 50)).astype(np.float32)
    model = check_import("keras_cnn", path, x)
    assert model.preprocessing == pytest.approx((1 / 255, 0.5, 0.25))
    assert model.spec["loss"] == "cross_entropy"


def test_import_keras_cnn_flattening_channels_last(tmp_path):
    """tf2onnx of a Keras CNN converted with --inputs-as-nchw: Conv (NCHW), then a Transpose
    back to channels-last before Flatten, as Keras flattens (H, W, C); MatMul + Add; Softmax."""
    rng = np.random.default_rng(17)
    inits = {"conv/kernel": f32(rng, 4, 3, 3, 3), "conv/bias": f32(rng, 4),
             "flat_shape": np.array([-1, 4 * 6 * 5], np.int64),
             "dense/kernel": f32(rng, 4 * 6 * 5, 5), "dense/bias": f32(rng, 5)}
    nodes = [
        helper.make_node("Conv", ["input", "conv/kernel", "conv/bias"], ["conv:0"], name="sequential/conv2d/BiasAdd",
                         kernel_shape=[3, 3], strides=[1, 1], auto_pad="VALID", dilations=[1, 1], group=1),
        helper.make_node("Relu", ["conv:0"], ["relu:0"], name="sequential/conv2d/Relu"),
        helper.make_node("Transpose", ["relu:0"], ["nhwc:0"], name="sequential/conv2d/Relu__6", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["nhwc:0", "flat_shape"], ["flat:0"], name="sequential/flatten/Reshape"),
        helper.make_node("MatMul", ["flat:0", "dense/kernel"], ["mm:0"], name="sequential/dense/MatMul"),
        helper.make_node("Add", ["mm:0", "dense/bias"], ["logits:0"], name="sequential/dense/BiasAdd"),
        helper.make_node("Softmax", ["logits:0"], ["output"], name="sequential/dense/Softmax", axis=-1),
    ]
    path = save(tmp_path, "keras_nhwc_cnn", nodes, inits, [3, 8, 7], [5], opset=15)
    x = rng.random((37, 3 * 8 * 7)).astype(np.float32)
    model = check_import("keras_nhwc_cnn", path, x)
    assert model.layer_types == ["conv2d", "relu", "flatten", "linear", "softmax"]

    # The channels-last input itself (without --inputs-as-nchw) is refused, with the way out.
    nodes = [helper.make_node("Transpose", ["input"], ["nchw"], name="input_transpose", perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "conv/kernel"], ["output"], name="conv", kernel_shape=[3, 3])]
    path = save(tmp_path, "nhwc_input", nodes, {"conv/kernel": inits["conv/kernel"]}, [8, 7, 3], [4, 6, 5])
    with pytest.raises(dl.UnsupportedError, match=r'"input_transpose" \(Transpose\).*inputs-as-nchw'):
        dl.Model.from_onnx(path)


def test_imported_model_trains_further(tmp_path):
    rng = np.random.default_rng(5)
    path = torch_cnn(tmp_path, rng, "trainable")
    model = dl.Model.from_onnx(path, optimizer={"type": "adam", "lr": 0.01}, seed=3)
    x = rng.random((64, 144)).astype(np.float32)
    # Learnable labels: which third of the image (top, middle, bottom rows) is brightest.
    thirds = x.reshape(64, 3, 48).sum(axis=2)
    y = thirds.argmax(axis=1).astype(np.int32)
    before = model.evaluate(x, y).loss
    for _ in range(80):
        model.train_step(x, y)
    after = model.evaluate(x, y).loss
    assert after < 0.2 * before, (before, after)
    # Saved and exported again, the trained weights travel.
    model.save(tmp_path / "trained.h5")
    model.to_onnx(tmp_path / "trained.onnx")
    # Trained to confidence, the logits reach 15 or so, where float32's spacing is 1e-6 and
    # the two runtimes' different orders of summation leave differences past TOLERANCE
    # absolute (1.2e-5 at 14.52, 13 units of the last place, after a last-bit change in the
    # softmax's exp): relative to the outputs as well.
    np.testing.assert_allclose(run_ort(tmp_path / "trained.onnx", x), model.predict(x), rtol=2e-6, atol=TOLERANCE)


def test_regression_import_defaults_to_mse(tmp_path):
    rng = np.random.default_rng(6)
    inits = {"w": f32(rng, 1, 4), "b": f32(rng, 1)}
    nodes = [helper.make_node("Gemm", ["input", "w", "b"], ["output"], name="fc", transB=1)]
    path = save(tmp_path, "reg", nodes, inits, [4], [1])
    model = check_import("reg", path, f32(rng, 37, 4, scale=1))
    assert model.spec["loss"] == "mse"


# -- refused and malformed files ---------------------------------------------

def test_unsupported_operator_names_node_and_op(tmp_path):
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("Gemm", ["input", "w"], ["h"], name="fc", transB=1),
             helper.make_node("HardSwish", ["h"], ["output"], name="my_hardswish")]
    path = save(tmp_path, "hs", nodes, {"w": f32(rng, 3, 4)}, [4], [3], opset=17)
    with pytest.raises(dl.UnsupportedError, match=r'"my_hardswish" \(HardSwish\)'):
        dl.Model.from_onnx(path)


def test_branches_are_refused(tmp_path):
    rng = np.random.default_rng(8)
    nodes = [helper.make_node("Gemm", ["input", "w"], ["h"], name="fc", transB=1),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Add", ["h", "r"], ["output"], name="residual")]
    path = save(tmp_path, "branch", nodes, {"w": f32(rng, 4, 4)}, [4], [4])
    with pytest.raises(dl.UnsupportedError, match=r'"residual" \(Add\)'):
        dl.Model.from_onnx(path)


def test_unsupported_attribute_is_refused(tmp_path):
    rng = np.random.default_rng(9)
    nodes = [helper.make_node("Conv", ["input", "w"], ["output"], name="grouped", group=2, kernel_shape=[1, 1])]
    path = save(tmp_path, "group", nodes, {"w": f32(rng, 2, 1, 1, 1)}, [2, 3, 3], [2, 3, 3])
    with pytest.raises(dl.UnsupportedError, match=r'"grouped" \(Conv\).*group'):
        dl.Model.from_onnx(path)


def test_outputs_beyond_the_limits_are_refused(tmp_path):
    """Pads from the file that would make a feature map of more than 2^31 values per sample."""
    rng = np.random.default_rng(18)
    nodes = [helper.make_node("Conv", ["input", "w"], ["output"], name="padded", kernel_shape=[1, 1],
                              pads=[1 << 30, 1 << 30, 1 << 30, 1 << 30])]
    path = save(tmp_path, "pads", nodes, {"w": f32(rng, 4, 1, 1, 1)}, [1, 2, 2], [4, "H", "W"])
    with pytest.raises(dl.OutOfMemoryError, match='"padded" \\(Conv\\)'):
        dl.Model.from_onnx(path)
    nodes = [helper.make_node("MaxPool", ["input"], ["output"], name="pool", kernel_shape=[2, 2], pads=[2, 2, 2, 2])]
    graph = helper.make_graph(nodes, "p", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 4, 4])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)])
    path = tmp_path / "pool.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(dl.UnsupportedError, match="not smaller than the kernel"):
        dl.Model.from_onnx(path)


def test_dynamic_reshape_is_refused(tmp_path):
    """x.view(x.size(0), -1) with dynamic axes: Shape -> Gather -> ... -> Reshape."""
    rng = np.random.default_rng(10)
    nodes = [helper.make_node("Shape", ["input"], ["s"], name="/Shape"),
             helper.make_node("Reshape", ["input", "s"], ["r"], name="/Reshape"),
             helper.make_node("Gemm", ["r", "w"], ["output"], name="fc", transB=1)]
    path = save(tmp_path, "dyn", nodes, {"w": f32(rng, 2, 4)}, [4], [2])
    with pytest.raises(dl.UnsupportedError, match=r"/Shape|Shape"):
        dl.Model.from_onnx(path)


def test_dynamic_input_size_is_refused(tmp_path):
    rng = np.random.default_rng(11)
    graph = helper.make_graph([helper.make_node("Gemm", ["input", "w"], ["output"], name="fc", transB=1)], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", "F"])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 2])],
                              [numpy_helper.from_array(f32(rng, 2, 4), "w")])
    path = tmp_path / "dynin.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(dl.UnsupportedError, match="only the batch dimension may vary"):
        dl.Model.from_onnx(path)


def test_missing_initializer(tmp_path):
    rng = np.random.default_rng(12)
    path = torch_mlp(tmp_path, rng)
    proto = onnx.load(str(path))
    del proto.graph.initializer[2]           # fc2.weight
    broken = tmp_path / "missing.onnx"
    onnx.save(proto, str(broken))
    with pytest.raises(dl.UnsupportedError, match=r'"/fc2/Gemm" \(Gemm\).*fc2.weight'):
        dl.Model.from_onnx(broken)


def test_weights_that_do_not_match_their_dims(tmp_path):
    rng = np.random.default_rng(13)
    path = torch_mlp(tmp_path, rng)
    proto = onnx.load(str(path))
    proto.graph.initializer[0].raw_data = proto.graph.initializer[0].raw_data[:-4]   # one float short
    short = tmp_path / "short.onnx"
    onnx.save(proto, str(short))
    with pytest.raises(dl.FormatError, match="raw_data holds 2556 bytes, but dims \\[32, 20\\] need 2560"):
        dl.Model.from_onnx(short)

    proto = onnx.load(str(path))
    proto.graph.initializer[0].dims[:] = [1 << 30, 1 << 30]    # huge dims, checked before allocating
    huge = tmp_path / "huge.onnx"
    onnx.save(proto, str(huge))
    with pytest.raises(dl.DLError, match="exceeds the limit|claim|expected"):
        dl.Model.from_onnx(huge)

    proto = onnx.load(str(path))
    weight = proto.graph.initializer[0]
    weight.data_type = TensorProto.INT32
    wrong = tmp_path / "int32.onnx"
    onnx.save(proto, str(wrong))
    with pytest.raises(dl.UnsupportedError, match="element type 6"):
        dl.Model.from_onnx(wrong)


def test_truncated_and_garbage_files(tmp_path):
    rng = np.random.default_rng(14)
    data = torch_mlp(tmp_path, rng).read_bytes()
    for cut in (1, 10, len(data) // 2, len(data) - 3):
        path = tmp_path / f"cut{cut}.onnx"
        path.write_bytes(data[:cut])
        with pytest.raises(dl.DLError) as info:
            dl.Model.from_onnx(path)
        assert str(path) in str(info.value)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(bytes(rng.integers(0, 256, size=4096, dtype=np.uint8)))
    with pytest.raises(dl.DLError):
        dl.Model.from_onnx(garbage)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(dl.FormatError, match="empty"):
        dl.Model.from_onnx(empty)
    with pytest.raises(dl.FileError):
        dl.Model.from_onnx(tmp_path / "absent.onnx")


def test_external_data_is_refused(tmp_path):
    rng = np.random.default_rng(15)
    proto = onnx.load(str(torch_mlp(tmp_path, rng)))
    onnx.save(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.data", size_threshold=0)
    with pytest.raises(dl.UnsupportedError, match="external file"):
        dl.Model.from_onnx(tmp_path / "ext.onnx")


def test_bad_options_and_formats(tmp_path, xor_model):
    rng = np.random.default_rng(16)
    path = torch_mlp(tmp_path, rng)
    with pytest.raises(TypeError, match="unknown options"):
        dl.Model.from_onnx(path, lr=0.1)
    with pytest.raises(dl.SpecError, match="loss"):
        dl.Model.from_onnx(path, loss="no_such_loss")
    from deeplearning import onnx as dl_onnx
    with pytest.raises(dl.UnsupportedError, match='unknown model format "tflite"'):
        dl_onnx.import_model(path, "tflite")
    with pytest.raises(dl.UnsupportedError, match='unknown model format "tflite"'):
        dl_onnx.export(xor_model, tmp_path / "x.tflite", "tflite")
    with pytest.raises(dl.InvalidArgumentError, match="cannot tell the model format"):
        dl_onnx.export(xor_model, tmp_path / "x.bin")
    # "h5" through the same functions is the checkpoint.
    dl_onnx.export(xor_model, tmp_path / "x.h5")
    again = dl_onnx.import_model(tmp_path / "x.h5")
    assert again.layer_types == xor_model.layer_types


def test_largest_differences_reported():
    """Prints the largest |ONNX Runtime - predict| per model seen in this run (pytest -s)."""
    for name, diff in sorted(LARGEST.items()):
        print(f"onnx: largest difference {name}: {diff:.3g}")
        assert diff <= TOLERANCE
