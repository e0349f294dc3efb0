"""`dl convert` with PyTorch state dicts: a safetensors file written by the safetensors
package, with the spec of its network, becomes a checkpoint and comes back out as a
safetensors file with the same tensors (and its nn.Sequential source beside it).

The command is $DL_COMMAND (scripts/test.sh builds it), else .build/debug/dl.
"""

import json
import subprocess

import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy")

SPEC = {"name": "from_torch", "input_size": 6,
        "layers": [{"type": "linear", "units": 8}, {"type": "batch_norm"}, {"type": "relu"},
                   {"type": "linear", "units": 3}],
        "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}}


def run(dl, *args):
    return subprocess.run([dl, *map(str, args)], capture_output=True, text=True, timeout=300)


def torch_state(rng):
    """The state dict of nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))."""
    return {"0.weight": rng.normal(size=(8, 6)).astype(np.float32), "0.bias": rng.normal(size=8).astype(np.float32),
            "1.weight": rng.normal(size=8).astype(np.float32), "1.bias": rng.normal(size=8).astype(np.float32),
            "1.running_mean": rng.normal(size=8).astype(np.float32),
            "1.running_var": rng.uniform(0.5, 2, size=8).astype(np.float32),
            "1.num_batches_tracked": np.array(12, np.int64),
            "3.weight": rng.normal(size=(3, 8)).astype(np.float32), "3.bias": rng.normal(size=3).astype(np.float32)}


def test_safetensors_to_checkpoint_and_back(dl, tmp_path):
    state = torch_state(np.random.default_rng(0))
    safetensors_numpy.save_file(state, str(tmp_path / "torch.safetensors"))
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    result = run(dl, "convert", tmp_path / "torch.safetensors", "--spec", tmp_path / "spec.json", tmp_path / "model.h5")
    assert result.returncode == 0, result.stderr
    info = run(dl, "info", tmp_path / "model.h5")
    assert info.returncode == 0 and "from_torch" in info.stdout
    result = run(dl, "convert", tmp_path / "model.h5", tmp_path / "back.safetensors")
    assert result.returncode == 0, result.stderr
    back = safetensors_numpy.load_file(str(tmp_path / "back.safetensors"))
    assert back.keys() == state.keys()
    for key, value in state.items():
        if key != "1.num_batches_tracked":
            assert back[key].dtype == value.dtype and np.array_equal(back[key], value), key
    source = (tmp_path / "back.py").read_text()
    compile(source, "back.py", "exec")
    assert "nn.BatchNorm1d(8, eps=1e-05, momentum=0.1)" in source


def test_safetensors_convert_errors(dl, tmp_path):
    state = torch_state(np.random.default_rng(1))
    del state["3.bias"]
    safetensors_numpy.save_file(state, str(tmp_path / "t.safetensors"))
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    result = run(dl, "convert", tmp_path / "t.safetensors", "--spec", tmp_path / "spec.json", tmp_path / "x.h5")
    assert result.returncode == 1 and 'missing "3.bias"' in result.stderr
    result = run(dl, "convert", tmp_path / "t.safetensors", tmp_path / "x.h5")
    assert result.returncode == 1 and "--spec" in result.stderr
    result = run(dl, "convert", tmp_path / "t.safetensors", "--spec", "s", "--options", "{}", tmp_path / "x.h5")
    assert result.returncode == 1 and "cannot be combined" in result.stderr
    assert not (tmp_path / "x.h5").exists()
