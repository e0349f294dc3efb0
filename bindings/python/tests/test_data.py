"""Dataset: files written with NumPy and h5py, loaded by the library, compared with what
was written; errors with the library's message; view lifetime; train_epoch and
evaluate_dataset against train_step and evaluate."""

import gc
import gzip

import h5py
import numpy as np
import pytest

import deeplearning as dl
from deeplearning.errors import Status


def write_idx(path, array: np.ndarray, compress: bool = False):
    """An IDX file of unsigned bytes: magic 0x000008RR, big-endian dimensions, the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    data = header + np.ascontiguousarray(array, np.uint8).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)
    return path


@pytest.fixture
def images():
    """(images (N, H, W) uint8, labels (N,) uint8) of 5 images of 3 x 4 pixels."""
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (5, 3, 4), dtype=np.uint8), rng.integers(0, 10, 5, dtype=np.uint8)


def separable(count: int, seed: int):
    """Two Gaussian blobs in 4 dimensions, class 0 centred at +1.5 and class 1 at -1.5 on
    every axis (the way round that CLASSIFIER's initial weights get mostly wrong)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, count).astype(np.int32)
    x = (rng.standard_normal((count, 4)) + np.where(y[:, None] == 1, -1.5, 1.5)).astype(np.float32)
    return x, y


CLASSIFIER = {"input": {"size": 4}, "layers": [{"type": "linear", "units": 2}], "loss": "cross_entropy",
              "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 3}


# -- loading ---------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, images, compress):
    x, y = images
    suffix = ".gz" if compress else ""
    path_x = write_idx(tmp_path / f"images{suffix}", x, compress)
    path_y = write_idx(tmp_path / f"labels{suffix}", y, compress)
    with dl.Dataset.load_idx(path_x, path_y) as data:
        assert len(data) == data.count == 5
        assert data.sample_shape == (1, 3, 4) and data.feature_size == 12 and data.has_labels
        assert data.x.dtype == np.float32 and data.x.shape == (5, 1, 3, 4)
        np.testing.assert_array_equal(data.x[:, 0], x.astype(np.float32))
        assert data.y.dtype == np.int32
        np.testing.assert_array_equal(data.y, y)

    unlabelled = dl.Dataset.load_idx(str(path_x))   # str paths as well as Path
    assert unlabelled.y is None and not unlabelled.has_labels and len(unlabelled) == 5
    np.testing.assert_array_equal(unlabelled.x.reshape(5, -1), x.reshape(5, -1))
    assert repr(unlabelled) == "<deeplearning.Dataset: 5 samples of shape (1, 3, 4), unlabelled>"


def test_mnist_folder(tmp_path, images):
    x, y = images
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x, compress=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y, compress=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x[:2])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y[:2])
    train = dl.Dataset.load_mnist(tmp_path, "train")
    test = dl.Dataset.load_mnist(tmp_path, split="test")
    assert len(train) == 5 and len(test) == 2
    np.testing.assert_array_equal(test.x[:, 0], x[:2])
    np.testing.assert_array_equal(test.y, y[:2])
    assert repr(train) == "<deeplearning.Dataset: 5 samples of shape (1, 3, 4), labelled>"
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        dl.Dataset.load_mnist(tmp_path, "validation")
    with pytest.raises(dl.DLError) as caught:
        dl.Dataset.load_mnist(tmp_path / "nowhere", "train")
    assert caught.value.status == Status.IO_ERROR
    assert "train-images-idx3-ubyte" in caught.value.message


def test_csv_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    y = rng.integers(0, 4, 6)
    labelled = tmp_path / "labelled.csv"
    np.savetxt(labelled, np.column_stack([y, x]), fmt=["%d"] + ["%.9g"] * 3, delimiter=",",
               header="label,a,b,c", comments="")
    for feature_count in (None, 3):
        data = dl.Dataset.load_csv(labelled, feature_count)
        assert data.sample_shape == (3,) and data.x.shape == (6, 3)
        np.testing.assert_array_equal(data.x, np.loadtxt(labelled, delimiter=",", skiprows=1)[:, 1:].astype(np.float32))
        np.testing.assert_array_equal(data.y, y)

    # Rows of exactly feature_count columns have no label.
    unlabelled = tmp_path / "unlabelled.csv"
    np.savetxt(unlabelled, x, fmt="%.9g", delimiter=",")
    data = dl.Dataset.load_csv(unlabelled, feature_count=3)
    assert data.y is None and data.x.shape == (6, 3)
    np.testing.assert_array_equal(data.x, x)
    with pytest.raises(ValueError, match="feature_count"):
        dl.Dataset.load_csv(unlabelled, feature_count=0)


def test_hdf5_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    y = np.array([3, 0, 2, 1], np.int64)
    with h5py.File(tmp_path / "floats.h5", "w") as f:
        f["x"], f["y"] = x, y
    data = dl.Dataset.load_hdf5(tmp_path / "floats.h5")
    assert data.sample_shape == (2, 3) and data.feature_size == 6
    np.testing.assert_array_equal(data.x, x)
    np.testing.assert_array_equal(data.y, y)

    pixels = rng.integers(0, 256, (3, 5), dtype=np.uint8)
    with h5py.File(tmp_path / "bytes.h5", "w") as f:
        f["x"] = pixels                               # no y: unlabelled
    data = dl.Dataset.load_hdf5(tmp_path / "bytes.h5")
    assert data.y is None
    np.testing.assert_array_equal(data.x, pixels.astype(np.float32))

    with h5py.File(tmp_path / "no-x.h5", "w") as f:
        f["y"] = y
    with pytest.raises(dl.DLError) as caught:
        dl.Dataset.load_hdf5(tmp_path / "no-x.h5")
    assert caught.value.status == Status.FORMAT_ERROR
    assert "no-x.h5: missing dataset x" in caught.value.message


def test_errors_carry_the_librarys_message(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(dl.DLError) as caught:
        dl.Dataset.load_idx(missing)
    assert caught.value.status == Status.IO_ERROR and str(missing) in caught.value.message

    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3\n0,4,x\n")
    with pytest.raises(dl.DLError) as caught:
        dl.Dataset.load_csv(bad)
    assert caught.value.status == Status.FORMAT_ERROR
    assert caught.value.message == f'{bad}:2:5: "x" is not a number'

    with pytest.raises(dl.DLError, match="images need 3"):
        dl.Dataset.load_idx(write_idx(tmp_path / "labels", np.zeros(3, np.uint8)))
    with pytest.raises(ValueError, match="NUL"):
        dl.Dataset.load_hdf5("a\0b")
    with pytest.raises(TypeError, match="load_idx"):
        dl.Dataset()


# -- views and lifetime ----------------------------------------------------------


def test_views_are_read_only_and_outlive_the_dataset(tmp_path, images):
    x, y = images
    data = dl.Dataset.load_idx(write_idx(tmp_path / "images", x), write_idx(tmp_path / "labels", y))
    view_x, view_y = data.x, data.y
    assert data.x is view_x                            # the same view each time, no copies
    with pytest.raises(ValueError):
        view_x[0, 0, 0, 0] = 1
    with pytest.raises(ValueError):
        view_y[0] = 1

    del data
    gc.collect()
    np.testing.assert_array_equal(view_x[:, 0], x)     # the memory lives while a view does
    np.testing.assert_array_equal(view_y, y)

    again = dl.Dataset.load_idx(tmp_path / "images", tmp_path / "labels")
    sliced = again.x[1:3]
    again.close()
    again.close()                                      # twice is fine
    assert again.closed and repr(again) == "<deeplearning.Dataset (closed)>"
    np.testing.assert_array_equal(sliced[:, 0], x[1:3])
    for use in (lambda: again.x, lambda: again.y, lambda: len(again), lambda: again.sample_shape,
                lambda: again.standardizer(), lambda: again.__enter__()):
        with pytest.raises(ValueError, match="closed Dataset"):
            use()


def test_with_block_closes(tmp_path, images):
    with dl.Dataset.load_idx(write_idx(tmp_path / "images", images[0])) as data:
        assert len(data) == 5
    assert data.closed


def test_standardizer_matches_numpy(tmp_path, images):
    x, _ = images
    data = dl.Dataset.load_idx(write_idx(tmp_path / "images", x))
    scaled = x.astype(np.float64) / 255
    mean, std = data.standardizer()
    assert abs(mean - scaled.mean()) < 1e-12 and abs(std - scaled.std()) < 1e-12
    mean, std = data.standardizer(scale=1.0)
    assert abs(mean - x.mean()) < 1e-9 and abs(std - x.std()) < 1e-9
    with pytest.raises(dl.DLError, match=r"scale: expected a number in \[1e-12, ") as caught:
        data.standardizer(scale=0)
    assert caught.value.status == Status.INVALID_ARGUMENT


# -- training and evaluation -----------------------------------------------------


def write_hdf5(path, x, y=None):
    with h5py.File(path, "w") as f:
        f["x"] = x
        if y is not None:
            f["y"] = y
    return dl.Dataset.load_hdf5(path)


def test_train_epoch_learns_a_separable_problem(tmp_path):
    train = write_hdf5(tmp_path / "train.h5", *separable(256, seed=4))
    test = write_hdf5(tmp_path / "test.h5", *separable(128, seed=5))
    with dl.Model(CLASSIFIER) as model:
        model.preprocessing = (1.0, *train.standardizer(scale=1.0))
        before = model.evaluate_dataset(test)
        losses = [model.train_epoch(train, batch_size=16) for _ in range(5)]
        after = model.evaluate_dataset(test)
        assert model.step_count == 5 * 16
    assert before.accuracy < 0.5 and after.accuracy >= 0.95, (before, after)
    assert losses[-1] < losses[0]


def test_unshuffled_epoch_equals_train_step_on_consecutive_batches(tmp_path):
    x, y = separable(70, seed=6)
    data = write_hdf5(tmp_path / "data.h5", x, y)
    with dl.Model(CLASSIFIER) as a, dl.Model(CLASSIFIER) as b:
        loss = a.train_epoch(data, batch_size=16, shuffle=False)
        step_losses = [b.train_step(x[i:i + 16], y[i:i + 16]) * len(x[i:i + 16]) for i in range(0, 70, 16)]
        for name in a.param_names:
            np.testing.assert_array_equal(a.get_param(name), b.get_param(name))
        assert loss == sum(step_losses) / 70
        # evaluate_dataset is evaluate on the same arrays.
        assert a.evaluate_dataset(data) == a.evaluate(data.x, data.y)

        # Shuffled epochs follow the model's own generator: a clone repeats them.
        c = a.clone()
        a.train_epoch(data, batch_size=16)
        c.train_epoch(data, batch_size=16)
        for name in a.param_names:
            np.testing.assert_array_equal(a.get_param(name), c.get_param(name))
        c.close()


REGRESSION = {"input": {"size": 3}, "layers": [{"type": "linear", "units": 2}], "loss": "mse",
              "optimizer": {"type": "sgd", "lr": 0.05}, "seed": 4}


def regression_data(count: int = 23):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((count, 3)).astype(np.float32)
    t = np.column_stack([x @ [1.0, -2.0, 0.5] + 0.3, np.sin(x[:, 0])]).astype(np.float32)
    return x, t


def test_target_values_load_from_csv_and_hdf5(tmp_path):
    x, t = regression_data()
    path = tmp_path / "regression.csv"
    np.savetxt(path, np.column_stack([t, x]), fmt="%.9g", delimiter=",", header="t0,t1,a,b,c", comments="")
    from_csv = dl.Dataset.load_csv(path, target_count=2)
    from_hdf5 = write_hdf5(tmp_path / "regression.h5", x, t.astype(np.float64))
    for data in (from_csv, from_hdf5):
        assert data.target_size == 2 and not data.has_labels and data.y.dtype == np.float32
        np.testing.assert_array_equal(data.x, x)
        np.testing.assert_array_equal(data.y, t)
        assert "2 target values each" in repr(data)
    assert dl.Dataset.load_csv(path, feature_count=3, target_count=2).target_size == 2
    one = write_hdf5(tmp_path / "one.h5", x, t[:, 0])
    assert one.y.shape == (23, 1)
    with pytest.raises(ValueError, match="target_count"):
        dl.Dataset.load_csv(path, target_count=0)
    with pytest.raises(dl.DLError, match="the header has 5 columns, expected 4 \\(2 targets and 2 features\\)"):
        dl.Dataset.load_csv(path, feature_count=2, target_count=2)


def test_train_epoch_on_target_values_matches_numpy(tmp_path):
    """An epoch in order of a linear model under MSE and plain SGD, against the same
    steps in float64 NumPy: dL/dpred = 2 (pred - t) / (B * outputs)."""
    x, t = regression_data()
    data = write_hdf5(tmp_path / "regression.h5", x, t)
    with dl.Model(REGRESSION) as model:
        w, b = model.get_param(0).astype(np.float64), model.get_param(1).astype(np.float64)
        losses = []
        for start in range(0, len(x), 8):
            xb, tb = x[start:start + 8].astype(np.float64), t[start:start + 8].astype(np.float64)
            d = xb @ w.T + b - tb
            losses.append(np.mean(d * d) * len(xb))
            grad = 2 * d / d.size
            w -= 0.05 * grad.T @ xb
            b -= 0.05 * grad.sum(axis=0)
        loss = model.train_epoch(data, batch_size=8, shuffle=False)
        assert loss == pytest.approx(sum(losses) / len(x), rel=1e-5)
        np.testing.assert_allclose(model.get_param(0), w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model.get_param(1), b, rtol=1e-5, atol=1e-6)
        evaluation = model.evaluate_dataset(data)
        d = x.astype(np.float64) @ w.T + b - t
        assert evaluation.loss == pytest.approx(np.mean(d * d), rel=1e-5) and evaluation.accuracy is None
        model.train_epoch(data, batch_size=8)   # shuffled, too
        with pytest.raises(dl.DLError, match="holds class labels, but the model's mse loss"):
            model.train_epoch(write_hdf5(tmp_path / "labels.h5", x, np.zeros(23, np.int32)))
        with pytest.raises(dl.DLError, match="holds 1 target value per sample, but the model outputs 2"):
            model.evaluate_dataset(write_hdf5(tmp_path / "one.h5", x, t[:, 0]))


def test_train_epoch_refusals(tmp_path):
    x, y = separable(20, seed=7)
    labelled = write_hdf5(tmp_path / "labelled.h5", x, y)
    unlabelled = write_hdf5(tmp_path / "unlabelled.h5", x)
    wide = write_hdf5(tmp_path / "wide.h5", np.zeros((20, 5), np.float32), y)
    with dl.Model(CLASSIFIER) as model:
        before = model.get_param(0)
        for call in (lambda: model.train_epoch(unlabelled), lambda: model.evaluate_dataset(unlabelled)):
            with pytest.raises(dl.DLError, match="unlabelled") as caught:
                call()
            assert caught.value.status == Status.INVALID_ARGUMENT
        with pytest.raises(dl.DLError) as caught:
            model.train_epoch(wide)
        assert "samples hold 5 values" in caught.value.message and "input takes 4" in caught.value.message
        with pytest.raises(TypeError, match="expected a deeplearning.Dataset"):
            model.train_epoch((x, y))
        with pytest.raises(TypeError, match="expected a deeplearning.Dataset"):
            model.evaluate_dataset(x)
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            model.train_epoch(labelled, batch_size=0)
        labelled.close()
        with pytest.raises(ValueError, match="closed Dataset"):
            model.train_epoch(labelled)
        np.testing.assert_array_equal(model.get_param(0), before)
        assert model.step_count == 0
    with pytest.raises(ValueError, match="closed Model"):
        model.train_epoch(unlabelled)


def test_models_train_on_one_dataset_from_several_threads(tmp_path, run_threads):
    data = write_hdf5(tmp_path / "data.h5", *separable(200, seed=8))
    with dl.Model(CLASSIFIER) as serial:
        for _ in range(3):
            serial.train_epoch(data, batch_size=4)
        expected = serial.get_param(0)
    results, errors = [], []

    def train(_):
        try:
            with dl.Model(CLASSIFIER) as model:
                for _ in range(3):
                    model.train_epoch(data, batch_size=4)
                results.append(model.get_param(0))
        except Exception as error:  # reported below, in the test's thread
            errors.append(error)

    run_threads(train, 4)
    assert not errors
    for result in results:
        np.testing.assert_array_equal(result, expected)


# -- Dataset.from_arrays and split ---------------------------------------------


def test_from_arrays_reads_float32_in_place_and_trains_like_a_loaded_file(tmp_path):
    x, y = separable(70, seed=8)
    x = x.astype(np.float32)
    data = dl.Dataset.from_arrays(x, y)
    loaded = write_hdf5(tmp_path / "same.h5", x, y)
    assert (len(data), data.sample_shape, data.has_labels) == (70, loaded.sample_shape, True)
    np.testing.assert_array_equal(data.x, x)
    np.testing.assert_array_equal(data.y, y)
    assert np.shares_memory(data.x, x)              # no copy: the library reads x itself
    with dl.Model(CLASSIFIER) as a, dl.Model(CLASSIFIER) as b:
        assert a.train_epoch(data, batch_size=16) == b.train_epoch(loaded, batch_size=16)
        for name in a.param_names:
            np.testing.assert_array_equal(a.get_param(name), b.get_param(name))
    assert not data.x.flags.writeable and x.flags.writeable


def test_from_arrays_in_place_sees_later_changes_and_keeps_x_alive():
    x, y = separable(40, seed=4)
    x = x.astype(np.float32)
    data = dl.Dataset.from_arrays(x, y)
    copied = dl.Dataset.from_arrays(x, y, copy=True)
    assert not np.shares_memory(copied.x, x)
    x *= -1                                          # a change between calls shows in place
    with dl.Model(CLASSIFIER) as model:
        np.testing.assert_array_equal(data.x, x)
        assert model.evaluate_dataset(data).loss == model.evaluate(x, y).loss
        assert model.evaluate_dataset(copied).loss == model.evaluate(-x, y).loss
    # The Dataset holds the only reference left to its memory: still valid, also after
    # the Dataset itself is gone, through a view of it.
    data = dl.Dataset.from_arrays(np.arange(12, dtype=np.float32).reshape(6, 2) * 2, np.arange(6) % 2)
    view = data.x
    del data
    gc.collect()
    np.testing.assert_array_equal(view, np.arange(12).reshape(6, 2) * 2)
    # Other dtypes and layouts are converted once, into memory only the Dataset holds.
    strided = np.arange(24, dtype=np.float32).reshape(6, 4)[:, ::2]
    converted = dl.Dataset.from_arrays(strided, np.arange(6) % 2)
    np.testing.assert_array_equal(converted.x, strided)
    assert not np.shares_memory(converted.x, strided)
    # A NaN put in later is refused by the step that meets it; the model keeps its values.
    first = dl.Dataset.from_arrays(x[:8], y[:8])    # a C-contiguous slice: read in place too
    assert np.shares_memory(first.x, x)
    x[5, 0] = np.nan
    with dl.Model(CLASSIFIER) as model:
        before = {name: model.get_param(name) for name in model.param_names}
        with pytest.raises(dl.NumericError):
            model.train_epoch(first, batch_size=8, shuffle=False)
        for name in model.param_names:
            np.testing.assert_array_equal(model.get_param(name), before[name])


def test_from_arrays_shapes_targets_and_refusals():
    images = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 1, 3, 4)
    data = dl.Dataset.from_arrays(images, np.array([1, 0], np.uint8))
    assert data.sample_shape == (1, 3, 4) and data.feature_size == 12 and data.y.dtype == np.int32
    values = dl.Dataset.from_arrays(images.reshape(2, -1), np.array([[0.5, 1.0], [2.0, -1.0]]))
    assert values.target_size == 2 and not values.has_labels
    np.testing.assert_array_equal(values.y, [[0.5, 1.0], [2.0, -1.0]])
    assert dl.Dataset.from_arrays(np.zeros(5), np.zeros(5)).target_size == 1   # (N,) -> (N, 1)
    assert dl.Dataset.from_arrays(np.zeros((3, 2))).y is None
    with pytest.raises(ValueError, match="entries"):
        dl.Dataset.from_arrays(np.zeros((3, 2)), [0, 1])
    with pytest.raises(ValueError, match="labels"):
        dl.Dataset.from_arrays(np.zeros((2, 2)), [0, -1])
    with pytest.raises(ValueError, match="at least one sample"):
        dl.Dataset.from_arrays(np.zeros((0, 2)))
    with pytest.raises(TypeError, match="dtype"):
        dl.Dataset.from_arrays(np.zeros((2, 2)), np.array(["a", "b"]))
    with pytest.raises(dl.NumericError):
        dl.Dataset.from_arrays(np.array([[0.0, np.nan]]))


def test_split_takes_the_last_fraction(tmp_path):
    x, y = separable(50, seed=9)
    data = dl.Dataset.from_arrays(x, y)
    first, last = data.split(0.2)
    assert (len(first), len(last)) == (40, 10)
    assert np.shares_memory(first.x, data.x) and np.shares_memory(last.x, data.x)   # no copies
    np.testing.assert_array_equal(first.x, data.x[:40])
    np.testing.assert_array_equal(last.y, data.y[40:])
    with pytest.raises(ValueError):
        data.split(0)
    with pytest.raises(ValueError):
        dl.Dataset.from_arrays(x[:2], y[:2]).split(0.1)
    # fit(dataset, validation_split=) trains on the first part and validates on the last.
    with dl.Model(CLASSIFIER) as a, dl.Model(CLASSIFIER) as b:
        history = a.fit(data, epochs=2, batch_size=8, validation_split=0.2, verbose=0)
        expected = b.fit(first, epochs=2, batch_size=8, validation_data=last, verbose=0)
        assert history == expected


def test_a_dataset_goes_wherever_arrays_go():
    x, y = separable(60, seed=12)
    x = x.astype(np.float32)
    data = dl.Dataset.from_arrays(x, y)
    with dl.Model(CLASSIFIER) as model:
        model.fit(data, epochs=1, batch_size=16, verbose=0)
        np.testing.assert_array_equal(model.predict(data), model.predict(x))
        np.testing.assert_array_equal(model(data), model.predict(x, batch_size=7))
        np.testing.assert_array_equal(model.predict_classes(data), model.predict_classes(x))
        assert model.evaluate(data) == model.evaluate_dataset(data) == model.evaluate(x, y)
        with pytest.raises(TypeError, match="no y"):
            model.evaluate(data, y)
        with pytest.raises(TypeError, match="object"):     # as train_step(x, None) says
            model.evaluate(x)
    # NumPy takes it as its features, without a copy unless one is asked for.
    assert np.shares_memory(np.asarray(data), x)
    assert np.asarray(data, np.float64).dtype == np.float64
    assert not np.shares_memory(np.array(data, copy=True), x)
    np.testing.assert_allclose(np.mean(data), x.mean(), rtol=1e-6)
