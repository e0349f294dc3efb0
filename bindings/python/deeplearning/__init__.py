"""deeplearning: neural networks described by JSON specs, trained by a native library.

    import deeplearning as dl
    model = dl.Model.from_spec("specs/mnist_mlp.json")
    history = model.fit(x_train, y_train, epochs=5, validation_data=(x_test, y_test))
    model.save("mnist.h5")
    same = dl.load("mnist.h5")

The tutorial's building blocks, one layer at a time, computed by the same library:

    from deeplearning import Linear, ReLU, CrossEntropyLoss, TwoLayerMLP
    layer = Linear(784, 128)                    # y = layer.forward(x); layer.backward(dL_dy)
    layer._w -= 0.01 * layer.dL_dW              # parameters are views of the layer's memory

Data files (IDX, MNIST, CSV, HDF5) load into the library and train there:

    train = dl.Dataset.load_mnist("data/mnist", "train")
    loss = model.train_epoch(train, batch_size=64)

The shared library is found through $DEEPLEARNING_LIBRARY, a copy in this
package (the wheel's), or the source tree's build folders (see ``deeplearning._lib``).
"""

from ._interrupt import Progress
from ._lib import get_num_threads, library_path, registry, set_num_threads
from ._version import __version__
from .data import Dataset
from .errors import (BusyError, CancelledError, DLError, FileError, FormatError, IntegerRangeError, InternalError,
                     InvalidArgumentError, NumericError, OutOfMemoryError, SpecError, Status, UnsupportedError)
from .gradcheck import gradient_check, gradient_check_loss, gradient_check_weights, numerical_gradient
from . import layers
from .layers import *  # noqa: F403 (the layer classes, listed in layers.__all__)
from .losses import BCEWithLogitsLoss, BinaryCrossEntropyLoss, CrossEntropyLoss, HuberLoss, Loss, MSELoss
from .mlp import TwoLayerMLP
from .model import Evaluation, GradCheck, Model, Preprocessing
from . import callbacks, optim
from .callbacks import History

load = Model.load

__all__ = ["BCEWithLogitsLoss", "BinaryCrossEntropyLoss", "BusyError", "CancelledError", "CrossEntropyLoss",
           "DLError", "FileError", "FormatError", "IntegerRangeError", "InternalError", "InvalidArgumentError", "NumericError",
           "OutOfMemoryError", "SpecError", "UnsupportedError", "Dataset", "Evaluation", "GradCheck", "History",
           "HuberLoss", "Preprocessing", "Progress", "Loss", "MSELoss", "Model", "Status", "TwoLayerMLP",
           "__version__", "callbacks", "optim", "gradient_check", "get_num_threads", "gradient_check_loss",
           "gradient_check_weights", "library_path", "load", "set_num_threads", "numerical_gradient", "registry",
           *layers.__all__]
