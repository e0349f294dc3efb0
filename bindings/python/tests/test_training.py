"""Model.fit against a hand-written loop of train_step, and its progress bar."""

import io

import numpy as np
import pytest

import deeplearning as dl
from deeplearning._progress import ProgressBar, format_number, format_seconds

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([0, 1, 1, 0])


def xor_dataset(repeats=25):
    return np.repeat(XOR_X, repeats, axis=0), np.repeat(XOR_Y, repeats)


def manual_epoch(model, x, y, batch_size, order):
    """The tutorial's loop, keeping the final partial batch; returns the mean loss."""
    total = 0.0
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        total += len(index) * model.train_step(x[index], y[index])
    return total / len(x)


@pytest.mark.parametrize("shuffle", [False, True])
def test_fit_equals_a_manual_train_step_loop(spec_path, shuffle):
    x, y = xor_dataset()
    seed = 123
    with dl.Model(spec_path("xor")) as fitted, dl.Model(spec_path("xor")) as manual:
        history = fitted.fit(x, y, epochs=3, batch_size=16, shuffle=shuffle, seed=seed, verbose=False)
        rng = np.random.default_rng(seed)
        losses, accuracies = [], []
        for _ in range(3):
            order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
            losses.append(manual_epoch(manual, x, y, 16, order))
            accuracies.append(manual.evaluate(x, y).accuracy)
        assert history.loss == pytest.approx(losses, rel=1e-12)
        assert history.accuracy == accuracies
        assert fitted.step_count == manual.step_count == 3 * 7
        for name in fitted.param_names:
            np.testing.assert_array_equal(fitted.get_param(name), manual.get_param(name))


def test_fit_learns_xor_and_reports_validation(xor_model):
    x, y = xor_dataset()
    history = xor_model.fit(x, y, epochs=4, batch_size=8, validation_data=(XOR_X, XOR_Y),
                            verbose=False)
    assert isinstance(history, dl.History) and history.epochs == 4
    assert history.loss[-1] < history.loss[0]
    assert history.accuracy[-1] == 1.0
    assert len(history.val_loss) == len(history.val_accuracy) == 4
    assert (history.val_loss[-1], history.val_accuracy[-1]) == tuple(xor_model.evaluate(XOR_X, XOR_Y))


def test_fit_without_validation_and_for_regression(regression_model):
    x = np.linspace(-3, 3, 100).reshape(-1, 1)
    history = regression_model.fit(x, np.sin(x), epochs=2, batch_size=10, verbose=False)
    assert sorted(history.history) == ["learning_rate", "loss"] and len(history.loss) == 2
    assert history.accuracy == [] and history.val_loss == [] and history.val_accuracy == []


def test_fit_default_seed_comes_from_spec_seed_and_step_count(spec_path):
    """seed=None draws orders from default_rng([spec seed, step count]): the same
    run every time, and a second call does not repeat the first one's orders."""
    x, y = xor_dataset()
    with dl.Model(spec_path("xor")) as fitted, dl.Model(spec_path("xor")) as manual:
        spec_seed = fitted.spec["seed"]
        for _ in range(2):
            rng = np.random.default_rng([spec_seed, manual.step_count])
            expected = manual_epoch(manual, x, y, 8, rng.permutation(len(x)))
            history = fitted.fit(x, y, epochs=1, batch_size=8, verbose=False)
            assert history.loss == [pytest.approx(expected, rel=1e-12)]
        np.testing.assert_array_equal(fitted.get_param(0), manual.get_param(0))


def test_fit_seeds_change_the_order(spec_path):
    x, y = xor_dataset()
    with dl.Model(spec_path("xor")) as a, dl.Model(spec_path("xor")) as b:
        a.fit(x, y, batch_size=8, seed=1, verbose=False)
        b.fit(x, y, batch_size=8, seed=2, verbose=False)
        assert np.any(a.get_param(0) != b.get_param(0))


def test_fit_argument_checks(xor_model):
    x, y = xor_dataset()
    assert xor_model.fit(x, y, epochs=0, verbose=False) == dl.History()
    with pytest.raises(ValueError, match="batch_size"):
        xor_model.fit(x, y, batch_size=0)
    with pytest.raises(ValueError, match="epochs"):
        xor_model.fit(x, y, epochs=-1)
    with pytest.raises(TypeError):
        xor_model.fit(x, y, batch_size=2.5)
    with pytest.raises(TypeError, match="pair"):
        xor_model.fit(x, y, validation_data=XOR_X)
    with pytest.raises(ValueError, match="validation y"):
        xor_model.fit(x, y, validation_data=(XOR_X, XOR_Y[:3]))
    assert xor_model.step_count == 0


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_is_drawn_on_stderr_one_line_per_epoch(xor_model, capsys):
    x, y = xor_dataset()
    xor_model.fit(x, y, epochs=2, batch_size=10, validation_data=(XOR_X, XOR_Y))
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.split("\n")
    assert lines[-1] == "" and len(lines) == 3              # one line per epoch, no redraws
    for epoch, line in enumerate(lines[:2], start=1):
        assert "\r" not in line and line.startswith(f"epoch {epoch}/2 10/10 [")
        for field in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert f" {field} " in line


def test_progress_bar_is_live_on_a_terminal(xor_model, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    xor_model.fit(*xor_dataset(), epochs=1, batch_size=10)
    lines = terminal.getvalue().split("\n")
    assert len(lines) == 2 and lines[0].startswith("\r")
    assert "ETA" in lines[0].split("\r")[1] and "batch/s" in lines[0].split("\r")[1]   # the first redraw
    assert lines[0].split("\r")[-1].startswith("epoch 1/1 10/10 [")


def test_verbose_2_is_one_line_per_epoch_even_on_a_terminal(xor_model, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    xor_model.fit(*xor_dataset(), epochs=3, batch_size=10, verbose=2)
    text = terminal.getvalue()
    assert "\r" not in text and text.count("\n") == 3


def test_verbose_false_is_silent(xor_model, capsys):
    xor_model.fit(*xor_dataset(), verbose=False)
    assert capsys.readouterr().err == ""


def test_progress_bar_redraws_at_most_ten_times_a_second():
    now = [0.0]
    stream = io.StringIO()
    bar = ProgressBar("epoch 1/1", 1000, stream, clock=lambda: now[0], live=True)
    for done in range(1, 1001):
        now[0] = done * 0.001                                  # 1 ms per batch
        bar.update(done, loss=1.0 / done)
    bar.finish(loss=0.001, acc=0.5)
    text = stream.getvalue()
    assert text.count("\r") == 11                              # 10 in one second + final
    final = text.split("\r")[-1]
    assert final.startswith("epoch 1/1 1000/1000 [" + "=" * 24 + "] loss 0.0010 acc 0.5000 1.0s")
    assert text.endswith("\n")
    draws = text.split("\r")[1:-1]
    assert draws[0].startswith("epoch 1/1    1/1000 [>") and "1000 batch/s ETA 1.0s" in draws[0]
    assert all(len(d) >= len(p.rstrip()) for p, d in zip(draws, draws[1:]))


def test_progress_bar_ends_an_interrupted_line():
    stream = io.StringIO()
    bar = ProgressBar("epoch", 10, stream, live=True)
    bar.update(1, loss=0.5)
    bar.close()
    assert stream.getvalue().endswith("\n")
    ProgressBar("silent", 10, None).update(1)


@pytest.mark.parametrize("seconds, text", [(0.04, "0.0s"), (12.34, "12.3s"), (65, "1m05s"),
                                           (3600 * 2 + 7 * 60, "2h07m")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


@pytest.mark.parametrize("value, text", [(0.0, "0.0000"), (0.01234567, "0.0123"), (1.5, "1.5000"),
                                         (-12345.678, "-12345.6780"), (2.5e37, "2.500e+37"),
                                         (3e-7, "3.000e-07"), (float("nan"), "nan"), (float("inf"), "inf")])
def test_format_number_is_readable_at_any_magnitude(value, text):
    assert format_number(value) == text


def test_fit_on_mnist_shaped_images(mnist_model):
    rng = np.random.default_rng(0)
    images = rng.random((100, 28, 28))                       # float64, (N, 28, 28)
    labels = rng.integers(0, 10, 100).astype(np.uint8)
    history = mnist_model.fit(images, labels, epochs=1, batch_size=64, verbose=False)
    assert mnist_model.step_count == 2 and history.epochs == 1


def test_fit_follows_the_specs_learning_rate_decay(load_spec, xor_data):
    spec = load_spec("xor")
    spec["optimizer"]["lr_decay"] = 0.5
    x, y = xor_data
    with dl.Model.from_spec(spec) as model:
        model.fit(x, y, epochs=2, batch_size=2, verbose=False)
        assert model.learning_rate == pytest.approx(spec["optimizer"]["lr"] * 0.25)
