"""The tutorial's code, run exactly as a user types it, with its stated results.

Each code block of the tutorial (docs: ../shared/reference/tutorial.md from the
repository root) is copied below verbatim and executed unchanged, in the order
a reader runs them; the tests then check the outputs the tutorial promises and
compare the numbers with independent NumPy implementations (float64).
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deeplearning as dl

from . import numpy_reference as ref

PACKAGE_ROOT = Path(__file__).resolve().parents[1]            # bindings/python
TUTORIAL = PACKAGE_ROOT.parents[2] / "shared" / "reference" / "tutorial.md"

# -- the tutorial's code blocks, verbatim ---------------------------------------------

LINEAR = r'''
import numpy as np
from deeplearning import Linear

# Create a layer: 784 inputs → 128 outputs
layer = Linear(in_features=784, out_features=128)

# Forward pass
x = np.random.randn(32, 784)  # Batch of 32 samples
y = layer.forward(x)          # Shape: (32, 128)

# Backward pass (given upstream gradient)
dL_dy = np.random.randn(32, 128)  # Gradient from next layer
dL_dx = layer.backward(dL_dy)     # Shape: (32, 784)

# After backward, gradients are stored
print(f"Weight gradient: {layer.dL_dW.shape}")  # (128, 784)
print(f"Bias gradient: {layer.dL_db.shape}")    # (128,)
'''

RELU = r'''
from deeplearning import ReLU

relu = ReLU()

# Forward: y = max(0, x)
x = np.array([[-2, -1, 0, 1, 2]])
y = relu.forward(x)  # [[0, 0, 0, 1, 2]]

# Backward: gradient is 1 where x > 0, else 0
dL_dy = np.array([[1, 1, 1, 1, 1]])
dL_dx = relu.backward(dL_dy)  # [[0, 0, 0, 1, 1]]
'''

SIGMOID = r'''
from deeplearning import Sigmoid

sigmoid = Sigmoid()

# Forward: y = 1 / (1 + exp(-x))
# Maps any value to (0, 1)
x = np.array([[-2, 0, 2]])
y = sigmoid.forward(x)  # [[0.12, 0.5, 0.88]]

# Backward: dL/dx = dL/dy * y * (1 - y)
'''

TANH = r'''
from deeplearning import Tanh

tanh = Tanh()

# Forward: y = tanh(x)
# Maps any value to (-1, 1)
x = np.array([[-2, 0, 2]])
y = tanh.forward(x)  # [[-0.96, 0, 0.96]]

# Backward: dL/dx = dL/dy * (1 - y^2)
'''

MSE = r'''
from deeplearning import MSELoss

mse = MSELoss()

# Predictions and targets
y_pred = np.array([[2.5, 3.0]])
y_true = np.array([[2.0, 3.5]])

# Forward: L = mean((y_pred - y_true)^2)
loss = mse.forward(y_pred, y_true)  # 0.25

# Backward: dL/dy_pred = 2 * (y_pred - y_true) / N
grad = mse.backward()
'''

CROSS_ENTROPY = r'''
from deeplearning import CrossEntropyLoss

ce = CrossEntropyLoss()

# Raw scores (logits) for 3 classes, batch of 2
logits = np.array([[2.0, 1.0, 0.1],
                   [0.5, 2.5, 0.3]])
targets = np.array([0, 1])  # Correct classes

# Forward: softmax + negative log likelihood
loss = ce.forward(logits, targets)

# Backward: elegant gradient = softmax - one_hot
grad = ce.backward()
'''

NETWORK = r'''
import numpy as np
from deeplearning import Linear, ReLU, CrossEntropyLoss

# Architecture: 784 → 128 → 10
layer1 = Linear(784, 128)
relu = ReLU()
layer2 = Linear(128, 10)
loss_fn = CrossEntropyLoss()

def forward(x):
    h = layer1.forward(x)
    h = relu.forward(h)
    return layer2.forward(h)

def backward(grad):
    grad = layer2.backward(grad)
    grad = relu.backward(grad)
    grad = layer1.backward(grad)
    return grad

def update(lr):
    layer1._w -= lr * layer1.dL_dW
    layer1._b -= lr * layer1.dL_db
    layer2._w -= lr * layer2.dL_dW
    layer2._b -= lr * layer2.dL_db
'''

TRAINING_LOOP = r'''
# Hyperparameters
learning_rate = 0.01
num_epochs = 10
batch_size = 64

# Training data (placeholder)
X_train = np.random.randn(1000, 784)
y_train = np.random.randint(0, 10, 1000)

for epoch in range(num_epochs):
    epoch_loss = 0
    num_batches = len(X_train) // batch_size

    for i in range(num_batches):
        # Get batch
        start = i * batch_size
        end = start + batch_size
        x_batch = X_train[start:end]
        y_batch = y_train[start:end]

        # Forward pass
        logits = forward(x_batch)

        # Compute loss
        loss = loss_fn.forward(logits, y_batch)
        epoch_loss += loss

        # Backward pass
        grad = loss_fn.backward()
        backward(grad)

        # Update parameters
        update(learning_rate)

    print(f"Epoch {epoch + 1}: Loss = {epoch_loss / num_batches:.4f}")
'''

TWO_LAYER_MLP = r'''
from deeplearning import TwoLayerMLP

model = TwoLayerMLP()

# Single training step
loss = model.train_step(x_batch, y_batch, lr=0.01)

# Predictions
predictions = model.predict(x_batch)

# Evaluation
accuracy = model.evaluate(x_test, y_test)
print(f"Accuracy: {accuracy * 100:.2f}%")
'''

LOAD_MNIST = r'''
import numpy as np

def load_mnist():
    """Load MNIST dataset from a local source or download."""
    # Using keras datasets (if available)
    try:
        from tensorflow.keras.datasets import mnist
        (X_train, y_train), (X_test, y_test) = mnist.load_data()
    except ImportError:
        # Alternative: download manually
        raise ImportError("Please install tensorflow or download MNIST manually")

    # Preprocessing
    # 1. Flatten: (N, 28, 28) → (N, 784)
    X_train = X_train.reshape(-1, 784).astype(np.float32)
    X_test = X_test.reshape(-1, 784).astype(np.float32)

    # 2. Normalize to [0, 1]
    X_train = X_train / 255.0
    X_test = X_test / 255.0

    # 3. Standardize (zero mean, unit variance)
    mean = X_train.mean()
    std = X_train.std()
    X_train = (X_train - mean) / std
    X_test = (X_test - mean) / std

    return (X_train, y_train), (X_test, y_test)
'''

TRAIN_MNIST = r'''
from deeplearning import TwoLayerMLP
import numpy as np

# Load data
(X_train, y_train), (X_test, y_test) = load_mnist()

# Create model
model = TwoLayerMLP()

# Hyperparameters
epochs = 5
batch_size = 64
learning_rate = 0.01

# Training loop
for epoch in range(epochs):
    # Shuffle training data
    indices = np.random.permutation(len(X_train))
    X_train = X_train[indices]
    y_train = y_train[indices]

    # Train on batches
    total_loss = 0
    num_batches = len(X_train) // batch_size

    for i in range(num_batches):
        start = i * batch_size
        end = start + batch_size
        x_batch = X_train[start:end]
        y_batch = y_train[start:end]

        loss = model.train_step(x_batch, y_batch, lr=learning_rate)
        total_loss += loss

    # Evaluate
    train_acc = model.evaluate(X_train[:1000], y_train[:1000])
    test_acc = model.evaluate(X_test, y_test)

    print(f"Epoch {epoch + 1}/{epochs}")
    print(f"  Loss: {total_loss / num_batches:.4f}")
    print(f"  Train Acc: {train_acc * 100:.2f}%")
    print(f"  Test Acc: {test_acc * 100:.2f}%")
'''

GRADIENT_CHECKING = r'''
from deeplearning import Linear, ReLU
from tests.test_gradients import gradient_check, gradient_check_weights
import numpy as np

np.random.seed(42)

# Test Linear layer input gradients
layer = Linear(10, 5)
x = np.random.randn(4, 10)

print("Checking Linear layer input gradient:")
if gradient_check(layer, x):
    print("✓ PASSED")
else:
    print("✗ FAILED")

# Test Linear layer weight gradients
print("\nChecking Linear layer weight gradients:")
if gradient_check_weights(layer, x):
    print("✓ PASSED")
else:
    print("✗ FAILED")
'''

LEAKY_RELU = r'''
import numpy as np

class LeakyReLU:
    """Leaky ReLU: y = max(alpha * x, x)"""

    def __init__(self, alpha=0.01):
        self.alpha = alpha
        self._x = None

    def forward(self, x):
        self._x = x
        return np.where(x > 0, x, self.alpha * x)

    def backward(self, dL_dy):
        return np.where(self._x > 0, dL_dy, self.alpha * dL_dy)
'''

HUBER_LOSS = r'''
class HuberLoss:
    """Huber loss: combines MSE and MAE"""

    def __init__(self, delta=1.0):
        self.delta = delta

    def forward(self, y_pred, y_true):
        self._y_pred = y_pred
        self._y_true = y_true

        diff = y_pred - y_true
        abs_diff = np.abs(diff)

        # Quadratic for small errors, linear for large
        loss = np.where(
            abs_diff <= self.delta,
            0.5 * diff ** 2,
            self.delta * (abs_diff - 0.5 * self.delta)
        )
        return np.mean(loss)

    def backward(self):
        diff = self._y_pred - self._y_true
        abs_diff = np.abs(diff)

        grad = np.where(
            abs_diff <= self.delta,
            diff,
            self.delta * np.sign(diff)
        )
        return grad / self._y_true.size
'''

SGD_MOMENTUM = r'''
class SGDMomentum:
    """SGD with momentum"""

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.velocities = {}

    def update(self, params, grads, layer_id):
        if layer_id not in self.velocities:
            self.velocities[layer_id] = {
                'w': np.zeros_like(params['w']),
                'b': np.zeros_like(params['b'])
            }

        v = self.velocities[layer_id]

        # Update velocities
        v['w'] = self.momentum * v['w'] - self.lr * grads['dw']
        v['b'] = self.momentum * v['b'] - self.lr * grads['db']

        # Update parameters
        params['w'] += v['w']
        params['b'] += v['b']
'''


BLOCKS = dict(LINEAR=LINEAR, RELU=RELU, SIGMOID=SIGMOID, TANH=TANH, MSE=MSE,
              CROSS_ENTROPY=CROSS_ENTROPY, NETWORK=NETWORK, TRAINING_LOOP=TRAINING_LOOP,
              TWO_LAYER_MLP=TWO_LAYER_MLP, LOAD_MNIST=LOAD_MNIST, TRAIN_MNIST=TRAIN_MNIST,
              GRADIENT_CHECKING=GRADIENT_CHECKING, LEAKY_RELU=LEAKY_RELU, HUBER_LOSS=HUBER_LOSS,
              SGD_MOMENTUM=SGD_MOMENTUM)


def run(*blocks: str, **names) -> dict:
    """Executes the blocks one after the other in one namespace (as a reader's
    session), which starts with `names`; returns the namespace."""
    namespace = dict(names)
    for block in blocks:
        exec(compile(block, "<tutorial>", "exec"), namespace)
    return namespace


def printed_losses(text: str, pattern: str) -> list[float]:
    return [float(v) for v in re.findall(pattern, text)]


@pytest.mark.skipif(not TUTORIAL.is_file(), reason="the tutorial is not beside the repository")
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_blocks_are_the_tutorials_own_text(name):
    assert f"```python{BLOCKS[name]}```" in TUTORIAL.read_text(encoding="utf-8")


# -- Building Blocks -----------------------------------------------------------------

def test_linear_block(capsys):
    ns = run(LINEAR)
    layer, x, dL_dy = ns["layer"], ns["x"], ns["dL_dy"]
    assert ns["y"].shape == (32, 128) and ns["dL_dx"].shape == (32, 784)
    assert capsys.readouterr().out == "Weight gradient: (128, 784)\nBias gradient: (128,)\n"
    # y = x @ W.T + b; dL/dx = dL/dy @ W; dL/dW = dL/dy.T @ x; dL/db = sum(dL/dy)
    w, b = layer._w, layer._b
    np.testing.assert_allclose(ns["y"], x @ w.T + b, rtol=1e-12, atol=1e-12)
    dx, dw, db = ref.linear_backward(x, w, dL_dy)
    np.testing.assert_allclose(ns["dL_dx"], dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.dL_dW, dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.dL_db, db, rtol=1e-12, atol=1e-12)
    # He normal initialisation: standard deviation sqrt(2 / 784)
    assert np.std(w) == pytest.approx(np.sqrt(2 / 784), rel=0.03)


def test_relu_block():
    ns = run(RELU, np=np)
    assert ns["y"].tolist() == [[0, 0, 0, 1, 2]]
    assert ns["dL_dx"].tolist() == [[0, 0, 0, 1, 1]]        # zero at exactly 0
    assert ns["y"].dtype == np.float64                       # integer input computed in float64


def test_sigmoid_block():
    ns = run(SIGMOID, np=np)
    assert np.round(ns["y"], 2).tolist() == [[0.12, 0.5, 0.88]]
    np.testing.assert_allclose(ns["y"], 1 / (1 + np.exp(-ns["x"])), rtol=1e-12)
    dy = np.array([[0.3, -1.0, 2.0]])
    np.testing.assert_allclose(ns["sigmoid"].backward(dy), dy * ns["y"] * (1 - ns["y"]), rtol=1e-12)


def test_tanh_block():
    ns = run(TANH, np=np)
    assert np.round(ns["y"], 2).tolist() == [[-0.96, 0, 0.96]]
    np.testing.assert_allclose(ns["y"], np.tanh(ns["x"]), rtol=1e-12)
    dy = np.array([[0.3, -1.0, 2.0]])
    np.testing.assert_allclose(ns["tanh"].backward(dy), dy * (1 - ns["y"] ** 2), rtol=1e-12)


def test_mse_block():
    ns = run(MSE, np=np)
    assert ns["loss"] == pytest.approx(0.25, rel=1e-12)
    np.testing.assert_allclose(ns["grad"], 2 * (ns["y_pred"] - ns["y_true"]) / 2, rtol=1e-12)


def test_cross_entropy_block():
    ns = run(CROSS_ENTROPY, np=np)
    logits, targets = ns["logits"], ns["targets"]
    assert ns["loss"] == pytest.approx(ref.cross_entropy(logits, targets), rel=1e-12)
    assert ns["loss"] == pytest.approx(0.3185, abs=1e-4)
    np.testing.assert_allclose(ns["grad"], ref.loss_gradient("cross_entropy", logits, targets),
                               rtol=1e-12, atol=1e-15)


# -- Training a Neural Network -------------------------------------------------------

def test_training_loop_learns_and_is_plain_sgd(capsys):
    np.random.seed(0)
    network = run(NETWORK)
    start = [p.copy() for layer in ("layer1", "layer2") for p in (network[layer]._w, network[layer]._b)]
    ns = run(TRAINING_LOOP, **network)
    losses = printed_losses(capsys.readouterr().out, r"Epoch \d+: Loss = ([\d.]+)")
    assert len(losses) == 10
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    # The same 150 steps by hand in NumPy end at the same parameters.
    w1, b1, w2, b2 = start
    for epoch in range(10):
        for i in range(1000 // 64):
            batch = slice(i * 64, i * 64 + 64)
            _, w1, b1, w2, b2 = ref.mlp_sgd_step(w1, b1, w2, b2, ns["X_train"][batch],
                                                 ns["y_train"][batch], 0.01)
    for actual, expected in zip((ns["layer1"]._w, ns["layer1"]._b, ns["layer2"]._w, ns["layer2"]._b),
                                (w1, b1, w2, b2)):
        np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-12)


def test_two_layer_mlp_block(capsys):
    # The block continues the training section (x_batch, y_batch) and needs a test set.
    np.random.seed(1)
    ns = run(TWO_LAYER_MLP, np=np, x_batch=np.random.randn(64, 784),
             y_batch=np.random.randint(0, 10, 64), x_test=np.random.randn(200, 784),
             y_test=np.random.randint(0, 10, 200))
    model = ns["model"]
    assert model.param_count == 101_770
    assert [type(layer) for layer in model.layers] == [dl.Linear, dl.ReLU, dl.Linear]
    assert isinstance(model.loss_fn, dl.CrossEntropyLoss)
    assert isinstance(ns["loss"], float) and ns["loss"] > 0
    assert ns["predictions"].shape == (64,) and set(ns["predictions"]) <= set(range(10))
    assert 0 <= ns["accuracy"] <= 1
    assert re.fullmatch(r"Accuracy: \d+\.\d\d%\n", capsys.readouterr().out)


# -- MNIST Digit Classification ------------------------------------------------------

def fake_mnist(train=1280, test=320, seed=0):
    """Separable stand-ins for MNIST, prepared as load_mnist() returns it:
    flattened float32 images, standardized, and integer labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((10, 784))

    def split(n):
        y = rng.integers(0, 10, n)
        return (centres[y] + 2 * rng.standard_normal((n, 784))).astype(np.float32), y

    return split(train), split(test)


def test_mnist_training_block_runs_unchanged(capsys):
    """The MNIST recipe, with load_mnist (which needs TensorFlow) replaced by
    a small separable stand-in; real MNIST is trained in the data tests."""
    namespace = run(LOAD_MNIST)
    assert callable(namespace["load_mnist"])
    np.random.seed(2)
    ns = run(TRAIN_MNIST, load_mnist=fake_mnist)
    out = capsys.readouterr().out
    losses = printed_losses(out, r"Loss: ([\d.]+)")
    test_acc = printed_losses(out, r"Test Acc: ([\d.]+)%")
    assert len(losses) == 5 and losses[-1] < losses[0]
    assert test_acc[-1] > 90
    assert ns["test_acc"] == pytest.approx(test_acc[-1] / 100, abs=5e-5)


# -- Gradient Checking ---------------------------------------------------------------

def test_gradient_checking_block(capsys):
    run(GRADIENT_CHECKING)
    out = capsys.readouterr().out
    assert out.count("✓ PASSED") == 2 and "✗ FAILED" not in out
    errors = printed_losses(out, r"Max Relative Error: (\S+)")
    assert len(errors) == 2 and max(errors) < 1e-7                 # "excellent"
    assert out.startswith("Checking Linear layer input gradient:\nMax Relative Error: ")


def test_gradient_checking_block_as_a_script_from_bindings_python():
    """`from tests.test_gradients import ...` works where the tutorial runs it."""
    result = subprocess.run([sys.executable, "-c", GRADIENT_CHECKING], cwd=PACKAGE_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("✓ PASSED") == 2


# -- Extending the Library -----------------------------------------------------------

def user_classes() -> dict:
    """The reader's own LeakyReLU, HuberLoss and SGDMomentum, as the tutorial writes them."""
    return run(LEAKY_RELU, HUBER_LOSS, SGD_MOMENTUM)


def test_user_layer_and_loss_agree_with_the_librarys():
    user = user_classes()
    rng = np.random.default_rng(3)
    x, dy = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    mine, theirs = user["LeakyReLU"](alpha=0.1), dl.LeakyReLU(alpha=0.1)
    np.testing.assert_allclose(theirs.forward(x), mine.forward(x), rtol=1e-12)
    np.testing.assert_allclose(theirs.backward(dy), mine.backward(dy), rtol=1e-12)
    pred, target = 2 * rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    mine, theirs = user["HuberLoss"](delta=0.7), dl.HuberLoss(delta=0.7)
    assert theirs.forward(pred, target) == pytest.approx(mine.forward(pred, target), rel=1e-12)
    np.testing.assert_allclose(theirs.backward(), mine.backward(), rtol=1e-12)


def test_user_layer_passes_the_gradient_check(capsys):
    user = user_classes()
    x = np.random.default_rng(4).standard_normal((4, 6)) + 0.01
    assert dl.gradient_check(user["LeakyReLU"](), x)


def test_user_components_train_library_layers():
    """A hand-written loop: library Linear layers, the reader's LeakyReLU, HuberLoss
    and SGDMomentum (updating the layers through their parameter views), checked
    step by step against the same loop in plain NumPy."""
    user = user_classes()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, 4))
    y = np.sin(x.sum(axis=1, keepdims=True))
    layers = [dl.Linear(4, 16, seed=1), dl.Linear(16, 1, seed=2)]
    activation, loss_fn = user["LeakyReLU"](), user["HuberLoss"](delta=0.5)
    optimizer = user["SGDMomentum"](lr=0.05, momentum=0.9)
    params = [[layer._w.copy(), layer._b.copy()] for layer in layers]     # the NumPy twin
    velocities = [[0.0, 0.0], [0.0, 0.0]]
    losses = []
    for step in range(60):
        pred = layers[1].forward(activation.forward(layers[0].forward(x)))
        losses.append(loss_fn.forward(pred, y))
        layers[0].backward(activation.backward(layers[1].backward(loss_fn.backward())))
        for i, layer in enumerate(layers):
            optimizer.update({"w": layer._w, "b": layer._b},
                             {"dw": layer.dL_dW, "db": layer.dL_db}, layer_id=i)

        (w1, b1), (w2, b2) = params
        h_pre = x @ w1.T + b1
        h = np.where(h_pre > 0, h_pre, 0.01 * h_pre)
        d = h @ w2.T + b2 - y
        dpred = np.where(np.abs(d) <= 0.5, d, 0.5 * np.sign(d)) / d.size
        dh = (dpred @ w2) * np.where(h_pre > 0, 1.0, 0.01)
        grads = [[dh.T @ x, dh.sum(axis=0)], [dpred.T @ h, dpred.sum(axis=0)]]
        for i in range(2):
            for j in range(2):
                velocities[i][j] = 0.9 * velocities[i][j] - 0.05 * grads[i][j]
                params[i][j] = params[i][j] + velocities[i][j]
    assert losses[-1] < 0.5 * losses[0]
    for layer, (w, b) in zip(layers, params):
        np.testing.assert_allclose(layer._w, w, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(layer._b, b, rtol=1e-9, atol=1e-12)


def test_in_place_update_changes_what_forward_computes():
    layer = dl.Linear(3, 2, seed=6)
    x = np.array([[1.0, -2.0, 0.5]])
    before = layer.forward(x)
    layer.backward(np.ones((1, 2)))
    w, b = layer._w.copy(), layer._b.copy()
    lr = 0.1
    layer._w -= lr * layer.dL_dW
    layer._b -= lr * layer.dL_db
    np.testing.assert_allclose(layer._w, w - lr * np.ones((2, 1)) @ x, rtol=1e-15)
    np.testing.assert_allclose(layer._b, b - lr, rtol=1e-15)
    after = layer.forward(x)
    np.testing.assert_allclose(after, x @ layer._w.T + layer._b, rtol=1e-12)
    assert not np.allclose(after, before)
