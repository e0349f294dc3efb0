"""A typed user program: what a Keras or PyTorch user writes with this package.

tests/test_typing.py checks it with ``mypy --strict`` (so the package's hints serve
users, not only its own code) and runs it, so every line here is real use.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

import deeplearning as dl
from deeplearning.callbacks import EarlyStopping, History


def blobs(n: int, seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Three Gaussian blobs in 4 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.standard_normal((n, 4)) + 3 * np.eye(3, 4)[y]).astype(np.float32)
    return x, y


def keras_style(folder: Path) -> float:
    spec: dict[str, object] = {
        "input": {"size": 4}, "layers": [{"type": "linear", "units": 16}, {"type": "relu"},
                                         {"type": "linear", "units": 3}],
        "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.01}, "seed": 1}
    model = dl.Model(spec)
    x, y = blobs(300, 0)
    x_val, y_val = blobs(100, 1)
    history: History = model.fit(x, y, epochs=5, batch_size=32, validation_data=(x_val, y_val), verbose=0,
                                 callbacks=[EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)])
    losses: list[float] = history.history["loss"]
    assert len(losses) >= 1
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    evaluation: dl.Evaluation = model.evaluate(x_val, y_val)
    logits: npt.NDArray[np.float32] = model.predict(x_val, batch_size=64)
    classes = model.predict_classes(x_val)
    assert logits.shape == (100, 3) and classes.shape == (100,)
    weights: list[np.ndarray] = model.get_weights()
    state: dict[str, np.ndarray] = model.state_dict()
    model.set_weights(weights)
    model.load_state_dict(state)
    path = folder / "blobs.h5"
    model.save(path)
    again = dl.load(path)
    assert np.array_equal(again.predict(x_val), logits)
    train = dl.Dataset.from_arrays(x, y)
    part, held_out = train.split(0.2)
    model.fit(part, validation_data=held_out, epochs=1, verbose=0)
    accuracy = evaluation.accuracy
    assert accuracy is not None
    return accuracy


def tutorial_style() -> float:
    """The tutorial's hand-written loop on standalone layers and an optimizer class."""
    x, y = blobs(64, 2)
    layers = [dl.Linear(4, 8, seed=0), dl.ReLU(), dl.Linear(8, 3, seed=1)]
    loss_fn = dl.CrossEntropyLoss()
    optimizer = dl.optim.SGD([layers[0], layers[2]], lr=0.1, momentum=0.9)
    loss = 0.0
    for _ in range(5):
        h: np.ndarray = x.astype(np.float64)
        for layer in layers:
            h = layer.forward(h)
        loss = loss_fn.forward(h, y)
        g = loss_fn.backward()
        for layer in reversed(layers):
            g = layer.backward(g)
        optimizer.step()
    return loss


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        accuracy = keras_style(Path(folder))
    loss = tutorial_style()
    out = io.StringIO()
    print(f"accuracy {accuracy:.3f}, tutorial loss {loss:.4f}", file=out)
    assert 0 <= accuracy <= 1 and np.isfinite(loss)


if __name__ == "__main__":
    main()
