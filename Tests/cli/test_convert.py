"""`dl convert`: an ONNX graph in the shape torch.onnx.export writes, converted to a
checkpoint and back, checked in ONNX Runtime; refusals and errors as messages.

The command is $DL_COMMAND (scripts/test.sh builds it), else .build/debug/dl.
"""

import subprocess

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def run(dl, *args):
    return subprocess.run([dl, *map(str, args)], capture_output=True, text=True, timeout=300)


def torch_style_mlp(path, rng, op="Relu"):
    inits = [numpy_helper.from_array((rng.normal(size=(16, 6)) * 0.4).astype(np.float32), "fc1.weight"),
             numpy_helper.from_array((rng.normal(size=16) * 0.1).astype(np.float32), "fc1.bias"),
             numpy_helper.from_array((rng.normal(size=(3, 16)) * 0.4).astype(np.float32), "fc2.weight"),
             numpy_helper.from_array((rng.normal(size=3) * 0.1).astype(np.float32), "fc2.bias")]
    nodes = [helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["h"], name="/fc1/Gemm", transB=1),
             helper.make_node(op, ["h"], ["a"], name=f"/act/{op}"),
             helper.make_node("Gemm", ["a", "fc2.weight", "fc2.bias"], ["output"], name="/fc2/Gemm", transB=1)]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def ort_run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_onnx_to_checkpoint_and_back(dl, tmp_path):
    rng = np.random.default_rng(0)
    source = torch_style_mlp(tmp_path / "torch.onnx", rng)
    result = run(dl, "convert", source, tmp_path / "model.h5", "--options", '{"loss": "cross_entropy", "name": "from_torch"}')
    assert result.returncode == 0, result.stderr
    info = run(dl, "info", tmp_path / "model.h5")
    assert info.returncode == 0 and "from_torch" in info.stdout and "linear" in info.stdout
    result = run(dl, "convert", tmp_path / "model.h5", tmp_path / "back.onnx")
    assert result.returncode == 0, result.stderr
    onnx.checker.check_model(onnx.load(str(tmp_path / "back.onnx")), full_check=True)
    x = rng.normal(size=(37, 6)).astype(np.float32)
    np.testing.assert_allclose(ort_run(tmp_path / "back.onnx", x), ort_run(source, x), rtol=0, atol=1e-5)


def test_convert_errors(dl, tmp_path):
    rng = np.random.default_rng(1)
    source = torch_style_mlp(tmp_path / "selu.onnx", rng, op="Selu")
    result = run(dl, "convert", source, tmp_path / "x.h5")
    assert result.returncode == 1 and result.stderr.startswith("dl: error: ")
    assert '"/act/Selu" (Selu)' in result.stderr
    result = run(dl, "convert", tmp_path / "absent.onnx", tmp_path / "x.h5")
    assert result.returncode == 1 and "absent.onnx" in result.stderr
    good = torch_style_mlp(tmp_path / "good.onnx", rng)
    result = run(dl, "convert", good, tmp_path / "x.tflite")
    assert result.returncode == 1 and "cannot tell the model format" in result.stderr
    assert not (tmp_path / "x.tflite").exists()
    result = run(dl, "convert", good, tmp_path / "x.out", "--to", "tflite")
    assert result.returncode == 1 and 'unknown model format "tflite"' in result.stderr
