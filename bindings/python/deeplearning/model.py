"""Model: a network built from a JSON spec or loaded from a checkpoint."""

from __future__ import annotations

import json
import math
import operator
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, SupportsIndex, Union

import numpy as np
from numpy.typing import ArrayLike

from . import _arrays, training
from ._native import spec_text
from .callbacks import History
from ._lib import (DOUBLE, INT, MODEL, SIZE, SIZE_T, STRING, UINT64, call, checked_integer, lib, param_shape,
                   predict_into, train_batch)


if TYPE_CHECKING:
    from ._interrupt import Progress
    from .callbacks import Callback
    from .data import Dataset

PathLike = Union[str, "os.PathLike[str]"]


class Preprocessing(NamedTuple):
    """A model's input transform: x' = (x * scale - mean) / std."""
    scale: float = 1.0
    mean: float = 0.0
    std: float = 1.0


class Evaluation(NamedTuple):
    """Mean loss and accuracy over a data set.

    ``accuracy`` is the fraction of samples whose largest output is the label
    (or the target row's largest entry), or None for regression losses.
    """

    loss: float
    accuracy: float | None


class GradCheck(NamedTuple):
    """Back-propagated gradients against finite differences.

    ``max_rel_error`` is the largest relative error over all parameters;
    ``per_param`` maps each parameter tensor's name to its own (below 1e-7 is
    excellent; where a true gradient is zero it divides noise by noise).
    ``passed`` is the verdict: every checked entry within PyTorch's
    ``|a - n| <= atol + rtol * |n|``; ``abs_error`` maps each tensor to its
    max ``|a - n|``, ``score`` to its largest ``|a - n| / (atol + rtol |n|)``
    (at most 1 passes).
    """

    max_rel_error: float
    per_param: dict[str, float]
    passed: bool = True
    abs_error: dict[str, float] = {}
    score: dict[str, float] = {}


def _path(path: PathLike) -> bytes:
    """A str or os.PathLike file name as the bytes the library takes."""
    encoded = os.fsencode(os.fspath(path))
    if b"\0" in encoded:
        raise ValueError(f"path contains a NUL character: {path!r}")
    return encoded


class Model:
    """A network with its loss, optimizer and their state, held by the library.

    Build one with ``Model(spec)`` / ``Model.from_spec(spec)`` or read one with
    ``Model.load(path)``. Inputs are NumPy arrays of shape (N, input_size) (see
    ``deeplearning._arrays`` for every conversion rule); ``y`` is integer class
    labels (N,) or float targets (N, output_size).

    The library's memory is released by :meth:`close`, which ``with`` blocks and
    garbage collection call for you. A Model must not be used by two threads at
    once (the library then raises DLError with status BUSY); give each thread
    its own :meth:`clone`.
    """

    _handle = None  # so that close() and __del__ work even if __init__ failed
    #: Set to True by a callback (EarlyStopping, ...) to end :meth:`fit` after this step or epoch.
    stop_training = False
    _warned_unscaled = False   # fit's warning about unscaled inputs, given once per model
    _reducer: Any = None       # (callback, rank, world_size) of data-parallel training (deeplearning.distributed)

    def __init__(self, spec: Mapping[str, Any] | PathLike):
        """Builds a model from `spec`: a dict (NumPy numbers allowed), JSON text (a str
        starting with "{"), or the path of a JSON spec file."""
        if isinstance(spec, Mapping):
            self._adopt(call(lib.dl_model_from_json, spec_text(spec), MODEL))
        elif isinstance(spec, str) and spec.lstrip().startswith("{"):
            self._adopt(call(lib.dl_model_from_json, spec.encode("utf-8"), MODEL))
        else:
            self._adopt(call(lib.dl_model_from_spec, _path(spec), MODEL))

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | PathLike) -> Model:
        """A new model from `spec`: a dict, JSON text, or a spec file's path."""
        return cls(spec)

    @classmethod
    def load(cls, path: PathLike) -> Model:
        """The model saved in the HDF5 checkpoint at `path`, ready to resume training."""
        return cls._wrap(call(lib.dl_model_load, _path(path), MODEL))

    @classmethod
    def _wrap(cls, handle: Any) -> Model:
        model = cls.__new__(cls)
        model._adopt(handle)
        return model

    def _adopt(self, handle: Any) -> None:
        self.close()  # in case __init__ is called again on a live model
        self._handle = handle
        # Fixed for the model's lifetime, and needed by every array check.
        self._input_size = call(lib.dl_model_input_size, handle, SIZE)
        self._output_size = call(lib.dl_model_output_size, handle, SIZE)

    # -- lifetime -------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._handle:
            raise ValueError("operation on a closed Model")

    @property
    def _h(self) -> Any:
        """The live handle, for passing to the library."""
        self._check_open()
        return self._handle

    @property
    def closed(self) -> bool:
        return not self._handle

    def close(self) -> None:
        """Releases the library's model. Safe to call more than once."""
        handle, self._handle = self._handle, None
        if handle:
            lib.dl_model_free(handle)

    def __enter__(self) -> Model:
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown may have torn down the module already
            pass

    def clone(self) -> Model:
        """An independent deep copy: parameters, optimizer state, generator, counters."""
        return self._wrap(call(lib.dl_model_clone, self._h, MODEL))

    __copy__ = clone

    def __deepcopy__(self, memo: object) -> Model:
        return self.clone()

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Model cannot be pickled: save() it to a checkpoint and load() it instead")

    def save(self, path: PathLike) -> None:
        """Writes the model to an HDF5 checkpoint at `path` (replaced atomically)."""
        call(lib.dl_model_save, self._h, _path(path))

    def to_onnx(self, path: PathLike) -> None:
        """Writes the model as an ONNX inference graph (see :mod:`deeplearning.onnx`)."""
        from .onnx import export
        export(self, path, "onnx")

    @classmethod
    def from_onnx(cls, path: PathLike, **options: Any) -> Model:
        """A trainable model from an ONNX file (see :func:`deeplearning.onnx.import_model`)."""
        from .onnx import import_model
        return import_model(path, "onnx", **options)

    def to_safetensors(self, path: PathLike) -> None:
        """Writes the parameters and buffers as a PyTorch state dict in a safetensors
        file, named as the ``torch.nn.Sequential`` of this network names them
        (``0.weight``, ``1.running_mean``, ...), and that ``nn.Sequential``'s Python
        source beside it (``model.safetensors`` -> ``model.py``; an existing ``.py``
        file that this library did not write is never replaced). See docs/interop.md."""
        from .onnx import export
        export(self, path, "safetensors")

    @classmethod
    def from_safetensors(cls, path: PathLike, spec: Mapping[str, Any] | PathLike | None = None) -> Model:
        """The model `spec` describes (a dict, or a spec file's path), with its parameters
        and buffers from the PyTorch state dict in the safetensors file at `path`. Every
        tensor must be there under its ``nn.Sequential`` name and shape, and nothing else
        (:class:`~deeplearning.FormatError` names the culprit). Without `spec`, a file
        this library exported brings back its own."""
        if spec is None:
            options = None
        elif isinstance(spec, Mapping):
            options = spec_text({"spec": dict(spec)})
        else:
            options = spec_text({"spec": os.fsdecode(os.fspath(spec))})
        return cls._wrap(call(lib.dl_model_import, _path(path), b"safetensors", options, MODEL))

    def to_keras(self, path: PathLike) -> None:
        """Writes the model for Keras 3: a ``.keras`` archive, or a legacy Keras ``.h5``
        when `path` ends in ``.h5`` (see docs/interop.md). ``keras.models.load_model``
        opens either, and the Keras model predicts what :meth:`predict` does on the
        same raw inputs (images channels_first, as here)."""
        from .onnx import export
        legacy = os.fspath(path).lower().endswith((".h5", ".hdf5"))
        export(self, path, "keras_h5" if legacy else "keras")

    @classmethod
    def from_keras(cls, path: PathLike, spec: Mapping[str, Any] | PathLike | None = None,
                   data_format: str | None = None, **options: Any) -> Model:
        """A trainable model from a Keras file (see docs/interop.md).

        ``.keras`` (Keras 3) and legacy ``.h5`` files carry their architecture; `options`
        (``loss``, ``optimizer``, ``name``, ``seed``, ``init``, ``dtype``, as in a spec)
        replace what the file says. A ``.weights.h5`` (``model.save_weights``) holds only
        weights: give `spec` (a spec dict or the path of a spec file) and, when the Keras
        model stored images channels_first, ``data_format="channels_first"``. Layers or
        options without an exact equivalent raise :class:`~deeplearning.UnsupportedError`
        naming the layer and the option.
        """
        name = os.fspath(path).lower()
        if spec is not None or name.endswith(".weights.h5"):
            if options:
                raise TypeError(f"from_keras() with a .weights.h5 takes spec and data_format only, not {sorted(options)}")
            if spec is None:
                raise TypeError("from_keras(): a .weights.h5 holds no architecture; give spec= (a dict or a spec file)")
            given: dict[str, Any] = {"spec": dict(spec) if isinstance(spec, Mapping) else os.fspath(spec)}
            if data_format is not None:
                given["data_format"] = data_format
            return cls._wrap(call(lib.dl_model_import, _path(path), b"keras_weights", spec_text(given), MODEL))
        if data_format is not None:
            raise TypeError("from_keras(): data_format is only for a .weights.h5 (a .keras or .h5 file says its own)")
        from .onnx import IMPORT_OPTIONS
        unknown = sorted(set(options) - set(IMPORT_OPTIONS))
        if unknown:
            raise TypeError(f"from_keras() got unknown options {unknown}; the options are {list(IMPORT_OPTIONS)}")
        fmt = b"keras_h5" if name.endswith((".h5", ".hdf5")) else b"keras"
        text = spec_text(options) if options else None
        return cls._wrap(call(lib.dl_model_import, _path(path), fmt, text, MODEL))

    def __repr__(self) -> str:
        if self.closed:
            return "<deeplearning.Model (closed)>"
        name = self.spec.get("name") or "unnamed"
        return (f"<deeplearning.Model {name!r}: {self.input_size} -> {self.output_size}, "
                f"{len(self.layer_types)} layers, {self.param_count} parameters, "
                f"{self.step_count} steps>")

    # -- training and inference -----------------------------------------------

    def _data(self, x: ArrayLike, y: ArrayLike, x_name: str = "x",
              y_name: str = "y") -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(x, labels, targets) checked and converted; labels or targets is None."""
        self._check_open()
        x = _arrays.inputs(x, self._input_size, x_name)
        labels, targets = _arrays.supervision(y, len(x), self._output_size, y_name)
        return x, labels, targets

    def _train_batch(self, x: np.ndarray, labels: np.ndarray | None, targets: np.ndarray | None) -> float:
        """One step on arrays that :meth:`_data` made (Model.fit passes slices of them)."""
        return train_batch(self._h, x, labels, targets)

    def _evaluate(self, x: np.ndarray, labels: np.ndarray | None, targets: np.ndarray | None) -> Evaluation:
        loss, accuracy = call(lib.dl_evaluate, self._h, x, len(x), labels, targets, DOUBLE, DOUBLE)
        return Evaluation(loss, None if math.isnan(accuracy) else accuracy)

    def train_step(self, x: ArrayLike, y: ArrayLike) -> float:
        """One optimisation step on the batch (x, y); returns its mean loss before the update."""
        return self._train_batch(*self._data(x, y))

    def predict(self, x: ArrayLike | Dataset, batch_size: int | None = None) -> np.ndarray:
        """The raw outputs (logits for cross-entropy), float32 of shape (N, output_size),
        for an array of samples or every sample of a :class:`~deeplearning.Dataset`.

        `batch_size` bounds the samples per library call (the library itself works in
        chunks that keep its buffers small); results agree up to float rounding, as
        matrix products may sum in another order for another number of rows.
        """
        x = _arrays.inputs(_samples(x), self.input_size, allow_empty=True)
        out = np.empty((len(x), self._output_size), np.float32)
        if batch_size is None:
            if len(x):
                predict_into(self._h, x, out)
            return out
        step = training.positive(batch_size, "batch_size")
        for start in range(0, len(x), step):
            predict_into(self._h, x[start:start + step], out[start:start + step])
        return out

    __call__ = predict

    def predict_classes(self, x: ArrayLike | Dataset) -> np.ndarray:
        """The index of the largest output of each sample, int32 of shape (N,)."""
        x = _arrays.inputs(_samples(x), self.input_size, allow_empty=True)
        out = np.empty(len(x), np.int32)
        if len(x):
            predict_into(self._h, x, out, classes=True)
        return out

    def evaluate(self, x: ArrayLike | Dataset, y: ArrayLike | None = None) -> Evaluation:
        """Mean loss and accuracy over (x, y), or over a labelled Dataset x (then run as
        :meth:`evaluate_dataset`), in evaluation mode; the model is unchanged."""
        from .data import Dataset
        if isinstance(x, Dataset):
            if y is not None:
                raise TypeError("evaluate(dataset) takes the targets from the Dataset; pass no y")
            return self.evaluate_dataset(x)
        targets: Any = y                 # None: refused by _data as by every array method
        return self._evaluate(*self._data(x, targets))

    def gradcheck(self, x: ArrayLike, y: ArrayLike, max_entries: int = 0, atol: float = 1e-5,
                  rtol: float = 1e-3) -> GradCheck:
        """Compares back-propagation with centred finite differences on the batch (x, y).

        `max_entries` limits the entries checked per parameter tensor (0 = all;
        each costs two forward passes). An entry passes when
        ``|a - n| <= atol + rtol * |n|`` (PyTorch's gradcheck defaults). The
        model is not changed.
        """
        max_entries = checked_integer(max_entries, SIZE_T, "max_entries")
        x, labels, targets = self._data(x, y)
        names = self.param_names
        absolute, relative, score = (np.empty(len(names), np.float64) for _ in range(3))
        passed = call(lib.dl_gradcheck_report, self._h, x, len(x), labels, targets, max_entries,
                      float(atol), float(rtol), absolute, relative, score, len(names), INT)
        return GradCheck(float(relative.max(initial=0.0)), dict(zip(names, relative.tolist())),
                         bool(passed), dict(zip(names, absolute.tolist())), dict(zip(names, score.tolist())))

    def fit(self, x: ArrayLike | Dataset, y: ArrayLike | None = None, *, batch_size: int = 64, epochs: int = 1,
            verbose: int | bool | str = "auto", callbacks: Sequence[Callback] | None = None,
            validation_split: float = 0.0,
            validation_data: tuple[ArrayLike, ArrayLike] | Dataset | None = None, shuffle: bool = True,
            initial_epoch: int = 0, seed: int | None = None) -> History:
        """Trains on arrays (x, y) or on a Dataset x, as Keras's fit does; returns a History.

        See :func:`deeplearning.training.fit` for what each option does.
        """
        return training.fit(self, x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                            validation_split=validation_split, validation_data=validation_data, shuffle=shuffle,
                            initial_epoch=initial_epoch, seed=seed)

    def set_gradient_reducer(self, reduce: Callable[[np.ndarray], None] | None, rank: int = 0,
                             world_size: int = 1) -> None:
        """Trains data-parallel as rank `rank` of `world_size`: `reduce(buffer)` must sum the
        NumPy buffer over every rank in place (None: one process again). See
        :mod:`deeplearning.distributed` (``use_mpi`` for mpi4py)."""
        from .distributed import set_gradient_reducer
        set_gradient_reducer(self, reduce, rank, world_size)

    # Data sets held by the library (deeplearning.data, which imports this module).

    def train_epoch(self, dataset: Dataset, batch_size: int = 64, shuffle: bool = True,
                    progress: Callable[[Progress], object] | None = None) -> float:
        """One epoch over a labelled :class:`~deeplearning.Dataset`, run in the library;
        returns its mean loss; Ctrl-C stops it after the step under way. See
        :func:`deeplearning.data.train_epoch`."""
        from .data import train_epoch
        return train_epoch(self, dataset, batch_size, shuffle, progress)

    def evaluate_dataset(self, dataset: Dataset,
                         progress: Callable[[Progress], object] | None = None) -> Evaluation:
        """Mean loss and accuracy over a labelled :class:`~deeplearning.Dataset`
        (Ctrl-C stops it)."""
        from .data import evaluate_dataset
        return evaluate_dataset(self, dataset, progress)

    # -- properties -----------------------------------------------------------

    @property
    def input_size(self) -> int:
        """Values per input sample (784 for MNIST)."""
        self._check_open()
        return int(self._input_size)

    @property
    def output_size(self) -> int:
        """Values per output sample (10 classes)."""
        self._check_open()
        return int(self._output_size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input sample's shape, as Keras gives it without the batch: (784,) for flat
        input, (1, 28, 28) for images (channels first)."""
        spec = self.spec
        given = spec.get("input")              # {"size": N} or {"shape": [...]}, or the shorthands
        shape = spec.get("input_shape") or (given.get("shape") if isinstance(given, dict) else None)
        return tuple(int(d) for d in shape) if shape else (self.input_size,)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """One output sample's shape: the last layer's output shape."""
        return self.layer_output_shapes()[-1]

    @property
    def param_count(self) -> int:
        """Total number of trainable scalars."""
        return int(call(lib.dl_model_param_count, self._h, SIZE))

    @property
    def param_names(self) -> list[str]:
        """Parameter tensor names in the library's order: ["layers.0.weight", ...]."""
        handle = self._h
        count = call(lib.dl_model_num_params, handle, SIZE)
        return [call(lib.dl_model_param_name, handle, i, STRING) for i in range(count)]

    @property
    def layer_types(self) -> list[str]:
        """Each layer's spec type, in order: ["linear", "relu", ...]."""
        handle = self._h
        count = call(lib.dl_model_num_layers, handle, SIZE)
        return [call(lib.dl_model_layer_type, handle, i, STRING) for i in range(count)]

    @property
    def spec(self) -> dict[str, Any]:
        """The spec the model was built from, parsed (a new dict on each access)."""
        spec: dict[str, Any] = json.loads(call(lib.dl_model_spec_json, self._h, STRING))
        return spec

    @property
    def step_count(self) -> int:
        """Number of optimisation steps applied so far."""
        return int(call(lib.dl_model_step_count, self._h, UINT64))

    def _end_epoch(self) -> None:
        """Counts an epoch as done: a per-epoch learning-rate schedule moves on."""
        call(lib.dl_model_end_epoch, self._h)

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next update. Settable between steps (a finite
        number >= 0): that sets the rate a spec's schedule starts from, so the
        schedule continues from it (with no schedule, the rate itself)."""
        return float(call(lib.dl_model_get_learning_rate, self._h, DOUBLE))

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        call(lib.dl_model_set_learning_rate, self._h, float(value))

    @property
    def preprocessing(self) -> Preprocessing:
        """The input transform x' = (x * scale - mean) / std the model applies before its first
        layer, in training and prediction alike (part of the spec; checkpoints keep it)."""
        return Preprocessing(*call(lib.dl_model_get_preprocessing, self._h, DOUBLE, DOUBLE, DOUBLE))

    @preprocessing.setter
    def preprocessing(self, value: tuple[float, float, float]) -> None:
        scale, mean, std = value
        call(lib.dl_model_set_preprocessing, self._h, float(scale), float(mean), float(std))

    # -- parameters -----------------------------------------------------------

    @property
    def buffer_names(self) -> list[str]:
        """Names of the non-trainable state tensors (batch norm's running statistics,
        "layers.1.running_mean", ...), in the library's order."""
        handle = self._h
        count = call(lib.dl_model_num_buffers, handle, SIZE)
        return [call(lib.dl_model_buffer_name, handle, i, STRING) for i in range(count)]

    def _tensors(self) -> list[tuple[str, int, bool]]:
        """(name, index, is_buffer) of every parameter and buffer, layer by layer, each
        layer's parameters before its buffers: Keras's get_weights order, PyTorch's
        state_dict order."""
        entries = [(name, i, False) for i, name in enumerate(self.param_names)]
        entries += [(name, i, True) for i, name in enumerate(self.buffer_names)]
        return sorted(entries, key=lambda e: (int(e[0].split(".")[1]), e[2]))

    def _read(self, index: int, is_buffer: bool) -> np.ndarray:
        shape_fn, get = ((lib.dl_model_buffer_shape, lib.dl_model_get_buffer) if is_buffer
                         else (lib.dl_model_param_shape, lib.dl_model_get_param))
        out = np.empty(param_shape(self._h, index, shape_fn), np.float32)
        call(get, self._h, index, out, out.size)
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        """{name: float32 copy} of every parameter and buffer (running_mean, running_var),
        PyTorch style: "layers.0.weight", "layers.0.bias", "layers.1.running_mean", ..."""
        return {name: self._read(index, is_buffer) for name, index, is_buffer in self._tensors()}

    def load_state_dict(self, state: Mapping[str, ArrayLike], strict: bool = True) -> None:
        """Overwrites parameters and buffers from a dict like :meth:`state_dict`'s. Every
        key and shape is checked before anything changes; with `strict`, the keys must be
        exactly the model's (missing or unexpected ones raise KeyError)."""
        tensors = {name: (index, is_buffer) for name, index, is_buffer in self._tensors()}
        unexpected = [k for k in state if k not in tensors]
        missing = [k for k in tensors if k not in state]
        if strict and (unexpected or missing):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        checked = []
        for name, values in state.items():
            if name not in tensors:
                continue
            index, is_buffer = tensors[name]
            shape_fn = lib.dl_model_buffer_shape if is_buffer else lib.dl_model_param_shape
            array = _arrays.parameter(values, param_shape(self._h, index, shape_fn), repr(name))
            checked.append((lib.dl_model_set_buffer if is_buffer else lib.dl_model_set_param, index, array))
        for function, index, array in checked:
            call(function, self._h, index, array, array.size)

    def get_weights(self) -> list[np.ndarray]:
        """Copies of every parameter and buffer as a list, in Keras's order (layer by layer,
        trainable weights first, then batch norm's running statistics); shapes are the
        library's (a linear weight is (out, in), as in PyTorch)."""
        return list(self.state_dict().values())

    def set_weights(self, weights: Iterable[ArrayLike]) -> None:
        """Overwrites every parameter and buffer from a list like :meth:`get_weights`'s;
        all shapes are checked before anything changes."""
        names = [name for name, _, _ in self._tensors()]
        weights = list(weights)
        if len(weights) != len(names):
            raise ValueError(f"set_weights needs {len(names)} arrays ({', '.join(names)}), got {len(weights)}")
        self.load_state_dict(dict(zip(names, weights)))

    def layer_output_shapes(self) -> list[tuple[int, ...]]:
        """One sample's output shape after each layer."""
        handle = self._h
        count = call(lib.dl_model_num_layers, handle, SIZE)
        return [param_shape(handle, i, lib.dl_model_layer_output_shape) for i in range(count)]

    def summary(self, print_fn: Callable[[str], object] = print) -> None:
        """Prints a table of the layers (type, output shape, parameters) with the totals,
        trainable and not (batch norm's running statistics), Keras style."""
        from .summary import summary
        print_fn(summary(self))

    def _param_index(self, key: str | SupportsIndex) -> int:
        """The index of parameter tensor `key`: its name, or an index (negative counts from the end)."""
        names = self.param_names
        if isinstance(key, str):
            try:
                return names.index(key)
            except ValueError:
                raise KeyError(f"no parameter named {key!r}; the model has {names}") from None
        if isinstance(key, bool):
            raise TypeError("a parameter is named by a str or an int index, not a bool")
        index = operator.index(key)
        if not -len(names) <= index < len(names):
            raise IndexError(f"parameter index {index} is out of range: the model has {len(names)}")
        return index % len(names)

    def get_param(self, key: str | SupportsIndex) -> np.ndarray:
        """A float32 copy of a parameter tensor, by name ("layers.0.weight") or index.

        A linear layer's weight has shape (out, in) and its bias (out,).
        """
        index = self._param_index(key)
        out = np.empty(param_shape(self._h, index), np.float32)
        call(lib.dl_model_get_param, self._h, index, out, out.size)
        return out

    def set_param(self, key: str | SupportsIndex, values: ArrayLike) -> None:
        """Overwrites a parameter tensor, by name or index, with `values` of its exact shape."""
        index = self._param_index(key)
        shape = param_shape(self._h, index)
        values = _arrays.parameter(values, shape, f"parameter {self.param_names[index]!r}")
        call(lib.dl_model_set_param, self._h, index, values, values.size)


def _samples(x: ArrayLike | Dataset) -> ArrayLike:
    """The samples of `x`: a Dataset's features (a view, no copy), or x itself."""
    if type(x) is np.ndarray:   # the common case, without the import below
        return x
    from .data import Dataset
    return x.x if isinstance(x, Dataset) else x
