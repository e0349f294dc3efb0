"""deeplearning: neural networks described by JSON specs, trained by a native library.

    import deeplearning as dl
    model = dl.Model.from_spec("specs/mnist_mlp.json")
    history = model.fit(x_train, y_train, epochs=5, validation_data=(x_test, y_test))
    model.save("mnist.h5")
    same = dl.load("mnist.h5")

The shared library is found through $DEEPLEARNING_LIBRARY, the source tree's
build folders, or a copy in this package (see ``deeplearning._lib``).
"""

from ._lib import library_path
from ._version import __version__
from .errors import DLError, Status
from .model import Evaluation, GradCheck, Model
from .training import History

load = Model.load

__all__ = ["DLError", "Evaluation", "GradCheck", "History", "Model", "Status",
           "__version__", "library_path", "load"]
