"""`dl info` on Keras files (what would be imported) and `dl convert` between Keras and
the other formats, checked against Keras 3 itself (JAX backend).

The command is $DL_COMMAND (scripts/test.sh builds it), else .build/debug/dl.
"""

import os
import subprocess

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras")


def run(dl, *args):
    return subprocess.run([dl, *map(str, args)], capture_output=True, text=True, timeout=300)


def keras_cnn(path):
    model = keras.Sequential([
        keras.Input((12, 12, 1)),
        keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(4),
    ])
    model.compile(optimizer=keras.optimizers.RMSprop(0.01), loss="mse")
    model.save(path)
    return model


def test_info_shows_what_a_keras_file_imports_as(dl, tmp_path):
    keras_cnn(tmp_path / "cnn.keras")
    done = run(dl, "info", tmp_path / "cnn.keras")
    assert done.returncode == 0, done.stderr
    assert "Keras 3 archive" in done.stdout
    assert "conv2d (Conv2D) -> conv2d, relu" in done.stdout
    assert "dense (Dense) -> linear" in done.stdout
    assert "rmsprop" in done.stdout and "loss          mse" in done.stdout


def test_convert_keras_to_checkpoint_and_back_to_keras(dl, tmp_path):
    model = keras_cnn(tmp_path / "cnn.keras")
    done = run(dl, "convert", tmp_path / "cnn.keras", tmp_path / "ours.h5")
    assert done.returncode == 0, done.stderr
    done = run(dl, "convert", tmp_path / "ours.h5", tmp_path / "back.h5", "--to", "keras_h5")
    assert done.returncode == 0, done.stderr
    back = keras.models.load_model(tmp_path / "back.h5")
    x = np.random.default_rng(0).normal(size=(5, 12, 12, 1)).astype(np.float32)
    # One channel: (N, 12, 12, 1) and (N, 1, 12, 12) hold the same values in the same order.
    got = back.predict(x.reshape(5, 1, 12, 12), verbose=0)
    assert np.max(np.abs(got - model.predict(x, verbose=0))) < 1e-5


def test_convert_refuses_with_the_layer_named(dl, tmp_path):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.LayerNormalization()])
    model.save(tmp_path / "ln.keras")
    done = run(dl, "convert", tmp_path / "ln.keras", tmp_path / "out.onnx")
    assert done.returncode != 0
    assert "layer_normalization" in done.stderr and "LayerNormalization" in done.stderr
    assert not (tmp_path / "out.onnx").exists()
