"""The `dl` command driven as a user drives it: small data files written here in every
format the library loads (an MNIST folder, IDX, CSV, HDF5), a classifier and a
regression spec trained, evaluated and predicted through each; the results checked
against a NumPy forward pass of the checkpoint's parameters; `--resume` against one
uninterrupted run, bit for bit; the data options' errors.

The command is $DL_COMMAND (scripts/test.sh builds it), else .build/debug/dl.
"""

import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest


CLASSIFIER = {"input": {"size": 16}, "layers": [{"type": "linear", "units": 12}, {"type": "relu"},
                                                {"type": "linear", "units": 3}],
              "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9}, "seed": 1}
# Two outputs, so CSV has two target columns; dropout and Adam so that resuming needs the
# generator and the optimizer's moments; lr_decay so that it needs the learning rate.
REGRESSION = {"input": {"size": 4}, "layers": [{"type": "linear", "units": 16}, {"type": "tanh"},
                                               {"type": "dropout", "rate": 0.1}, {"type": "linear", "units": 2}],
              "loss": "mse", "optimizer": {"type": "adam", "lr": 0.02, "lr_decay": 0.9}, "seed": 2}


def run(dl, *args, ok=True):
    process = subprocess.run([dl, *map(str, args)], capture_output=True, text=True, timeout=300)
    if ok and process.returncode != 0:
        raise AssertionError(f"dl {' '.join(map(str, args))} failed:\n{process.stderr}")
    return process


def fails(dl, *args) -> str:
    """Runs a command that must fail; its error message."""
    process = run(dl, *args, ok=False)
    assert process.returncode == 1, process.stderr
    assert process.stderr.startswith("dl: error: "), process.stderr
    return process.stderr


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    Path(path).write_bytes(header + np.ascontiguousarray(array, np.uint8).tobytes())
    return path


def images(count, seed):
    """4 x 4 byte images of 3 classes: class c brightens row c."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, count).astype(np.uint8)
    x = rng.integers(0, 80, (count, 4, 4))
    x[np.arange(count), y, :] += 150
    return x.astype(np.uint8), y


def regression(count, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, 4)).astype(np.float32)
    t = np.column_stack([x @ [1.0, -2.0, 0.5, 0.0], np.sin(2 * x[:, 0])]).astype(np.float32)
    return x, t


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same samples in every format: the classifier's images as an MNIST folder, IDX
    files, CSV and HDF5; the regression set as CSV (two target columns) and HDF5."""
    d = tmp_path_factory.mktemp("data")
    x, y = images(240, seed=1)
    xt, yt = images(60, seed=2)
    mnist = d / "mnist"
    mnist.mkdir()
    for prefix, (images_, labels) in (("train", (x, y)), ("t10k", (xt, yt))):
        write_idx(mnist / f"{prefix}-images-idx3-ubyte", images_)
        write_idx(mnist / f"{prefix}-labels-idx1-ubyte", labels)
    write_idx(d / "digits.idx", x)                      # an IDX name without MNIST's pattern
    write_idx(d / "digit-labels.idx", y)
    np.savetxt(d / "train.csv", np.column_stack([y, x.reshape(len(x), -1)]), fmt="%d", delimiter=",")
    np.savetxt(d / "test.csv", np.column_stack([yt, xt.reshape(len(xt), -1)]), fmt="%d", delimiter=",")
    with h5py.File(d / "train.h5", "w") as f:
        f["x"], f["y"] = x, y.astype(np.int64)
    with h5py.File(d / "test.h5", "w") as f:
        f["x"], f["y"] = xt, yt.astype(np.int64)

    r, t = regression(200, seed=3)
    rt, tt = regression(50, seed=4)
    for name, (features, targets) in (("reg", (r, t)), ("reg-test", (rt, tt))):
        np.savetxt(d / f"{name}.csv", np.column_stack([targets, features]), fmt="%.9g", delimiter=",",
                   header="t0,t1,a,b,c,d", comments="")
        with h5py.File(d / f"{name}.h5", "w") as f:
            f["x"], f["y"] = features, targets
    (d / "classifier.json").write_text(json.dumps(CLASSIFIER))
    (d / "regression.json").write_text(json.dumps(REGRESSION))
    return {"dir": d, "x": x, "y": y, "xt": xt, "yt": yt, "r": r, "t": t, "rt": rt, "tt": tt}


def numpy_forward(checkpoint, x):
    """The checkpoint's model run in float64 NumPy: its preprocessing, then linear, relu
    and tanh layers from its spec (dropout is the identity outside training)."""
    with h5py.File(checkpoint) as f:
        spec = json.loads(f["model_spec"][()])
        params = {name: f["parameters"][name][()].astype(np.float64) for name in f["parameters"]}
    p = spec.get("preprocessing", {})
    h = (x.reshape(len(x), -1).astype(np.float64) * p.get("scale", 1) - p.get("mean", 0)) / p.get("std", 1)
    for i, layer in enumerate(spec["layers"]):
        if layer["type"] == "linear":
            h = h @ params[f"layers.{i}.weight"].T + params[f"layers.{i}.bias"]
        elif layer["type"] == "relu":
            h = np.maximum(h, 0)
        elif layer["type"] == "tanh":
            h = np.tanh(h)
    return h


def cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels].mean()


def printed(stdout, key):
    """The number after `key` on its line of dl eval's output."""
    line = next(line for line in stdout.splitlines() if line.startswith(key + " "))
    return float(line.split()[1].rstrip("%"))


def parameters(checkpoint):
    with h5py.File(checkpoint) as f:
        return {name: f["parameters"][name][()] for name in f["parameters"]}


# Each way of giving the classifier's data: the training arguments, then the test data
# dl eval reads (PATH and options).
CLASSIFIER_SOURCES = {
    "mnist": (["--data", "mnist"], ["mnist"]),
    "idx": (["--data", "mnist/train-images-idx3-ubyte", "--test", "mnist/t10k-images-idx3-ubyte"],
            ["mnist/t10k-images-idx3-ubyte"]),
    "idx-named": (["--data", "digits.idx", "--labels", "digit-labels.idx", "--test", "test.h5"], ["test.h5"]),
    "csv": (["--data", "train.csv", "--test", "test.csv"], ["test.csv"]),
    "hdf5": (["--data", "train.h5", "--test", "test.h5"], ["test.h5"]),
    "csv-by-format": (["--data", "train.csv", "--format", "csv", "--test", "test.csv"], ["test.csv", "--format", "csv"]),
}


@pytest.fixture(scope="module")
def classifiers(dl, files):
    """The classifier trained for 3 epochs from each source: source -> checkpoint."""
    d = files["dir"]
    out = {}
    for name, (train_args, _) in CLASSIFIER_SOURCES.items():
        checkpoint = d / f"classifier-{name}.h5"
        args = [a if a.startswith("--") else str(d / a) if (d / a).exists() else a for a in train_args]
        result = run(dl, "train", d / "classifier.json", *args, "--epochs", 3, "--batch-size", 16, "--out", checkpoint)
        assert "epoch 3/3" in result.stdout
        out[name] = checkpoint
    return out


@pytest.mark.parametrize("source", CLASSIFIER_SOURCES)
def test_classifier_through_every_format(dl, files, classifiers, source):
    d, checkpoint = files["dir"], classifiers[source]
    # The same samples in every format train the same bits.
    reference = parameters(classifiers["mnist"])
    for name, value in parameters(checkpoint).items():
        np.testing.assert_array_equal(value, reference[name], err_msg=f"{source}: {name}")

    # dl eval's loss and accuracy against the checkpoint's parameters in NumPy.
    logits = numpy_forward(checkpoint, files["xt"])
    _, eval_args = CLASSIFIER_SOURCES[source]
    evaluation = run(dl, "eval", checkpoint, "--data", d / eval_args[0], *eval_args[1:]).stdout
    assert printed(evaluation, "loss") == pytest.approx(cross_entropy(logits, files["yt"]), abs=1e-4)
    accuracy = (logits.argmax(axis=1) == files["yt"]).mean()
    assert printed(evaluation, "accuracy") == pytest.approx(100 * accuracy, abs=0.01)
    assert accuracy > 0.9   # it learned

    # dl predict: classes and logits of every sample.
    output = d / f"predictions-{source}.csv"
    predicted = run(dl, "predict", checkpoint, d / eval_args[0], *eval_args[1:], "--output", output)
    table = np.loadtxt(output, delimiter=",", skiprows=1)
    assert output.read_text().startswith("index,predicted_class,output_0,output_1,output_2\n")
    np.testing.assert_array_equal(table[:, 0], np.arange(len(logits)))
    np.testing.assert_array_equal(table[:, 1], logits.argmax(axis=1))
    np.testing.assert_allclose(table[:, 2:], logits, rtol=1e-4, atol=1e-4)
    assert f"accuracy {100 * accuracy:.2f}%" in predicted.stderr


def test_classifier_history_and_curve(files, classifiers):
    d = files["dir"]
    rows = (d / "classifier-csv.history.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,train_accuracy,test_loss,test_accuracy,seconds"
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3"]
    assert all(field != "" for row in rows[1:] for field in row.split(","))
    assert "Accuracy" in (d / "classifier-csv.curve.svg").read_text()


def test_predict_without_labels(dl, files, classifiers):
    """IDX images with no labels file beside them, and CSV rows of the features alone."""
    d = files["dir"]
    write_idx(d / "lonely-images-idx3-ubyte", files["xt"])
    np.savetxt(d / "features.csv", files["xt"].reshape(len(files["xt"]), -1), fmt="%d", delimiter=",")
    expected = numpy_forward(classifiers["hdf5"], files["xt"]).argmax(axis=1)
    for data in ("lonely-images-idx3-ubyte", "features.csv"):
        result = run(dl, "predict", classifiers["hdf5"], d / data)
        table = np.loadtxt(result.stdout.splitlines()[1:], delimiter=",")
        np.testing.assert_array_equal(table[:, 1], expected)
        assert "accuracy" not in result.stderr


@pytest.mark.parametrize("train,test", [("reg.csv", "reg-test.csv"), ("reg.h5", "reg-test.h5"),
                                        ("reg.csv", "reg-test.h5")])
def test_regression_through_csv_and_hdf5(dl, files, train, test):
    d = files["dir"]
    checkpoint = d / f"regression-{train}-{test}.h5"
    result = run(dl, "train", d / "regression.json", "--data", d / train, "--test", d / test,
                 "--epochs", 4, "--batch-size", 16, "--out", checkpoint)
    assert "test loss" in result.stdout and "%" not in result.stdout.split("training ")[-1]
    # CSV and HDF5 hold the same values: the same bits whichever was read.
    if (train, test) != ("reg.csv", "reg-test.csv"):
        reference = parameters(d / "regression-reg.csv-reg-test.csv.h5")
        for name, value in parameters(checkpoint).items():
            np.testing.assert_array_equal(value, reference[name], err_msg=name)

    outputs = numpy_forward(checkpoint, files["rt"])
    mse = np.mean((outputs - files["tt"]) ** 2)
    evaluation = run(dl, "eval", checkpoint, "--data", d / test).stdout
    assert printed(evaluation, "loss") == pytest.approx(mse, abs=1e-4)
    assert "accuracy" not in evaluation
    history = [row.split(",") for row in (checkpoint.with_suffix(".history.csv")).read_text().splitlines()[1:]]
    assert float(history[-1][3]) == pytest.approx(mse, abs=1e-5)
    assert float(history[-1][1]) < float(history[0][1])   # it learned
    assert all(row[2] == "" and row[4] == "" for row in history)   # no accuracies for regression

    predicted = run(dl, "predict", checkpoint, d / test)
    lines = predicted.stdout.splitlines()
    assert lines[0] == "index,output_0,output_1"
    np.testing.assert_allclose(np.loadtxt(lines[1:], delimiter=",")[:, 1:], outputs, rtol=1e-4, atol=1e-5)
    assert "accuracy" not in predicted.stderr and "loss" in predicted.stderr


def test_resume_is_bit_identical(dl, files):
    """4 epochs in one run against 2 epochs, then --resume to 4: the same parameters,
    optimizer moments, buffers, counters and generator, and the history continued."""
    d = files["dir"]
    common = ["--data", d / "reg.h5", "--test", d / "reg-test.h5", "--batch-size", 16]
    run(dl, "train", d / "regression.json", *common, "--epochs", 4, "--out", d / "whole.h5")
    run(dl, "train", d / "regression.json", *common, "--epochs", 2, "--out", d / "part.h5")
    run(dl, "train", "--resume", d / "part.h5", *common, "--epochs", 4, "--out", d / "resumed.h5")
    with h5py.File(d / "whole.h5") as whole, h5py.File(d / "resumed.h5") as resumed:
        names = []
        whole.visit(lambda name: names.append(name) if isinstance(whole[name], h5py.Dataset) else None)
        assert any(n.startswith("optimizer/m/") for n in names) and "training/rng_state" in names
        for name in names:
            np.testing.assert_array_equal(whole[name][()], resumed[name][()], err_msg=name)
        for group in ("optimizer", "training"):
            assert dict(whole[group].attrs) == dict(resumed[group].attrs), group
    whole_rows = (d / "whole.history.csv").read_text().splitlines()
    resumed_rows = (d / "resumed.history.csv").read_text().splitlines()
    strip = lambda rows: [row.rsplit(",", 1)[0] for row in rows]   # all but the seconds
    assert strip(resumed_rows) == strip(whole_rows) and len(whole_rows) == 5

    # Resuming in place continues the same file; a finished run has nothing left to do.
    run(dl, "train", "--resume", d / "part.h5", *common, "--epochs", 3)
    with h5py.File(d / "part.h5") as f:
        assert f["training"].attrs["epoch"] == 3
    assert "already trained 4 epochs" in fails(dl, "train", "--resume", d / "whole.h5", *common, "--epochs", 4)


def test_data_option_errors(dl, files, classifiers):
    d = files["dir"]
    spec, reg_spec = d / "classifier.json", d / "regression.json"
    out = ["--out", d / "never.h5"]
    (d / "data.txt").write_text("1,2\n")
    assert "cannot tell the data format from the name; give --format mnist|idx|csv|hdf5" in \
        fails(dl, "train", spec, "--data", d / "data.txt", *out)
    assert "--labels is for IDX images" in fails(dl, "train", spec, "--data", d / "train.csv", "--labels", d / "x", *out)
    assert "--targets is for CSV files" in fails(dl, "train", reg_spec, "--data", d / "reg.h5", "--targets", 2, *out)
    assert "--targets must be at least 1" in fails(dl, "train", reg_spec, "--data", d / "reg.csv", "--targets", 0, *out)
    # Class labels for a regression model, and values for a classifier.
    with h5py.File(d / "reg-labels.h5", "w") as f:
        f["x"], f["y"] = files["r"], np.zeros(len(files["r"]), np.int32)
    assert "reg-labels.h5: the data set holds class labels, but the model's mse loss needs target values" in \
        fails(dl, "train", reg_spec, "--data", d / "reg-labels.h5", *out)
    message = fails(dl, "eval", classifiers["csv"], "--data", d / "reg.h5")
    assert "reg.h5: the data set's samples hold 4 values" in message and "input takes 16" in message
    assert "reg.csv:1:1: the header has 6 columns, expected 17 (a label and 16 features)" in \
        fails(dl, "eval", classifiers["csv"], "--data", d / "reg.csv")
    message = fails(dl, "train", reg_spec, "--data", d / "reg.csv", "--targets", 1, *out)
    assert "reg.csv:1:1: the header has 6 columns, expected 5 (a target and 4 features)" in message
    # IDX images without labels (none beside them) predict, but do not train.
    assert "training needs class labels or target values" in fails(dl, "train", spec, "--data", d / "digits.idx", *out)
    # The spec, --resume and their options.
    assert "give a spec to train, or --resume" in fails(dl, "train", "--data", d / "train.csv", *out)
    assert "not both" in fails(dl, "train", spec, "--resume", classifiers["csv"], "--data", d / "train.csv")
    assert "--seed and --lr are for a new run" in \
        fails(dl, "train", "--resume", classifiers["csv"], "--data", d / "train.csv", "--seed", 3)
    assert not (d / "never.h5").exists()
