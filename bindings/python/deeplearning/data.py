"""Dataset: data files loaded by the library (IDX, MNIST, CSV, HDF5), seen from NumPy.

    train = dl.Dataset.load_mnist("data/mnist", "train")
    test = dl.Dataset.load_mnist("data/mnist", "test")
    mean, std = train.standardizer(scale=1 / 255)
    model.preprocessing = (1 / 255, mean, std)          # the model standardizes raw pixels
    for epoch in range(5):
        loss = model.train_epoch(train, batch_size=64)  # the whole loop runs in the library
    print(model.evaluate_dataset(test))

The samples stay in the library's memory (or, for ``from_arrays``, in the
array it was given): ``x`` and ``y`` are read-only NumPy views of it, not
copies. A view keeps that memory alive for as long as it exists, so it stays
valid after ``close()`` or ``del`` of the Dataset.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

from typing import Any, SupportsIndex

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ._interrupt import Progress, long_call
from ._lib import ADDRESS, DATASET, DOUBLE, INT, SIZE, call, lib, memory_view, sample_shape, size_array
from ._native import Handle, NativeObject
from .model import Evaluation, Model, PathLike, _path

_SPLITS = {"train": 0, "test": 1}   # DL_SPLIT_TRAIN, DL_SPLIT_TEST


class Dataset(NativeObject):
    """Samples loaded by the library: features, and targets when the file has them:
    class labels (a classifier's) or target values (a regression model's).

    Make one with :meth:`load_idx`, :meth:`load_mnist`, :meth:`load_csv` or
    :meth:`load_hdf5`. Values are kept as stored (MNIST pixels stay 0..255).

    - ``x``: float32, shape ``(len(dataset), *sample_shape)``: ``(N, 1, 28, 28)``
      for MNIST images, ``(N, features)`` for CSV rows, x's own shape for HDF5.
      ``x.reshape(len(x), -1)`` gives one row of ``feature_size`` values per sample.
    - ``y``: the targets: class labels, int32 of shape ``(N,)``; target values,
      float32 of shape ``(N, target_size)``; or None for a data set without them.

    Both are read-only views of the library's memory (see the module docs).
    ``close()`` (also run by ``with`` blocks and garbage collection) releases
    the Dataset; using it afterwards raises ValueError. Several threads may use
    one Dataset at once.
    """

    _x: np.ndarray | None
    _y: np.ndarray | None
    _feature_size: int
    _sample_shape: tuple[int, ...]
    _target_size: int

    def __init__(self, *args: Any, **kwargs: Any):
        raise TypeError("use Dataset.from_arrays(), load_idx(), load_mnist(), load_csv() or load_hdf5()")

    @classmethod
    def _load(cls, function: Any, *args: Any, keep: object = None) -> Dataset:
        """A Dataset made by the library's `function`; `keep` is memory it reads in place,
        kept alive for as long as the library's data set is."""
        data = cls.__new__(cls)
        NativeObject.__init__(data, np.float32)
        pointer = call(function, *args, DATASET)
        data._handle = Handle(pointer, lib.dl_dataset_free, keep)
        count, data._feature_size, has_labels = call(lib.dl_dataset_info, pointer, SIZE, SIZE, INT)
        data._sample_shape = sample_shape(pointer)
        data._x = data._view(lib.dl_dataset_features, (count, *data._sample_shape), np.float32)
        data._target_size = call(lib.dl_dataset_targets, pointer, None, SIZE)
        if has_labels:
            data._y = data._view(lib.dl_dataset_labels, (count,), np.int32)
        elif data._target_size:
            data._y = data._view(_target_values, (count, data._target_size), np.float32)
        else:
            data._y = None
        return data

    def _view(self, function: Any, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
        """A read-only view of the array `function` points to, keeping the memory alive."""
        handle = _held(self)
        view = memory_view(call(function, handle.pointer, ADDRESS), shape, dtype, handle)
        view.flags.writeable = False
        return view

    # -- loaders --------------------------------------------------------------

    @classmethod
    def load_idx(cls, images: PathLike, labels: PathLike | None = None) -> Dataset:
        """IDX files of unsigned bytes (MNIST's format, gzipped or not): images (N, H, W)
        and, unless `labels` is None, labels (N,). ``sample_shape`` is (1, H, W)."""
        return cls._load(lib.dl_dataset_load_idx, _path(images), None if labels is None else _path(labels))

    @classmethod
    def load_mnist(cls, directory: PathLike, split: str = "train") -> Dataset:
        """One split of MNIST, "train" or "test", from a folder holding its four IDX files
        under their usual names (train-images-idx3-ubyte[.gz], ...)."""
        if split not in _SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return cls._load(lib.dl_dataset_load_mnist, _path(directory), _SPLITS[split])

    @classmethod
    def load_csv(cls, path: PathLike, feature_count: int | None = None, target_count: int | None = None) -> Dataset:
        """A CSV file of numbers (gzipped or not), one sample per row, the label first
        (or, with `target_count`, that many target values first: regression); a first
        row that does not start with a number is a header.

        Without `feature_count`, the first column (or `target_count` columns) always
        holds the targets. With it, rows of ``feature_count + 1`` (or ``feature_count
        + target_count``) columns have targets and rows of exactly `feature_count`
        columns have none: the Dataset is then unlabelled.
        """
        features = 0 if feature_count is None else _positive(feature_count, "feature_count")
        if target_count is None:
            return cls._load(lib.dl_dataset_load_csv, _path(path), features)
        targets = _positive(target_count, "target_count")
        return cls._load(lib.dl_dataset_load_csv_targets, _path(path), features, targets)

    @classmethod
    def from_arrays(cls, x: ArrayLike, y: ArrayLike | None = None, *, copy: bool = False) -> Dataset:
        """A Dataset of arrays in memory: `x` of shape (N, *sample_shape) (a 1-d `x` is N
        samples of one value), and `y` class labels (integers >= 0, shape (N,)), target
        values (floats, (N,) or (N, k)) or None.

        A C-contiguous float32 `x` is not copied: the Dataset reads it in place, as
        ``torch.from_numpy`` does, and keeps it alive. Changes you make to `x` later show in
        the Dataset (do not change it while ``fit`` or ``train_epoch`` runs); the library
        itself never writes to it. Another dtype or layout is converted once, into an
        array only the Dataset holds. ``copy=True`` gives the Dataset its own copy in every
        case. `y` (one label or row per sample) is always copied. Non-finite values are
        refused (NumericError), as when loading files.
        """
        x = np.ascontiguousarray(x, np.float32)
        if x.ndim == 1:
            x = x.reshape(-1, 1)
        if x.ndim < 2 or not len(x) or 0 in x.shape:
            raise ValueError(f"x must hold at least one sample: an array of shape (N, ...), got shape {x.shape}")
        labels = targets = None
        width = 0
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(x):
                raise ValueError(f"y holds {len(y)} entries for {len(x)} samples of x")
            if y.dtype.kind in "iub":
                if y.ndim != 1:
                    raise ValueError(f"class labels must have shape (N,), got {y.shape}")
                if len(y) and (y.min() < 0 or y.max() > np.iinfo(np.int32).max):
                    raise ValueError("class labels must be integers from 0 to 2**31 - 1")
                labels = np.ascontiguousarray(y, np.int32)
            elif y.dtype.kind == "f":
                targets = np.ascontiguousarray(y.reshape(len(y), -1), np.float32)
                width = targets.shape[1]
            else:
                raise TypeError(f"y must hold integer class labels or float target values, got dtype {y.dtype}")
        shape = size_array(x.shape[1:])
        if copy:
            return cls._load(lib.dl_dataset_from_arrays, x, len(x), shape, x.ndim - 1, labels, targets, width)
        # No release callback: the Handle keeps x alive and frees the data set before it.
        return cls._load(lib.dl_dataset_borrow_arrays, x, len(x), shape, x.ndim - 1, labels, targets, width,
                         None, None, keep=x)

    def split(self, fraction: float) -> tuple[Dataset, Dataset]:
        """(the first samples, the last `fraction` of them) as two new Datasets, as Keras's
        validation_split takes a validation part off the end (before any shuffling). Both
        read this Dataset's samples in place (no copy of x) and keep them alive."""
        fraction = float(fraction)
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
        cut = len(self) - int(len(self) * fraction)
        if not 0 < cut < len(self):
            raise ValueError(f"a fraction {fraction} of {len(self)} samples leaves one part empty")
        x, y = self.x, self.y
        return (Dataset.from_arrays(x[:cut], None if y is None else y[:cut]),
                Dataset.from_arrays(x[cut:], None if y is None else y[cut:]))

    @classmethod
    def load_hdf5(cls, path: PathLike) -> Dataset:
        """An HDF5 file with dataset ``x`` (N, ...), floats or uint8, and optionally ``y``:
        integer labels (N,), or float target values (N,) or (N, k); without ``y`` the
        Dataset is unlabelled. h5py writes it with ``f["x"] = x; f["y"] = y``."""
        return cls._load(lib.dl_dataset_load_hdf5, _path(path))

    # -- contents -------------------------------------------------------------

    @property
    def x(self) -> np.ndarray:
        """The features, float32 (N, *sample_shape), a read-only view."""
        if self._x is None:
            raise ValueError("operation on a closed Dataset")
        return self._x

    @property
    def y(self) -> np.ndarray | None:
        """The targets, a read-only view: labels, int32 (N,), or target values, float32
        (N, target_size); None for an unlabelled Dataset."""
        self._check_open()
        return self._y

    @property
    def target_size(self) -> int:
        """Target values per sample; 0 for class labels or no targets."""
        self._check_open()
        return int(self._target_size)

    @property
    def count(self) -> int:
        """Number of samples."""
        return len(self.x)

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        """The features, so that NumPy functions take a Dataset as they take ``x``."""
        x = self.x
        if dtype is not None and np.dtype(dtype) != x.dtype:
            if copy is False:
                raise ValueError(f"the features are float32; converting them to {np.dtype(dtype)} needs a copy")
            return x.astype(dtype)
        return np.array(x, copy=True) if copy else x

    def __len__(self) -> int:
        return self.count

    @property
    def feature_size(self) -> int:
        """Values per sample, the product of ``sample_shape`` (784 for MNIST)."""
        self._check_open()
        return int(self._feature_size)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: (1, 28, 28) for MNIST, (features,) for CSV."""
        self._check_open()
        return tuple(self._sample_shape)

    @property
    def has_labels(self) -> bool:
        """Whether every sample has a class label (``y`` holds int32 labels)."""
        return self.y is not None and self.target_size == 0

    def standardizer(self, scale: float = 1 / 255) -> tuple[float, float]:
        """(mean, std) of all feature values after multiplying them by `scale`: the
        tutorial's standardization, one pair for the whole set. ``model.preprocessing =
        (scale, mean, std)`` then makes the model standardize raw inputs itself."""
        handle = _held(self)
        mean, std = call(lib.dl_dataset_standardizer, handle.pointer, float(scale), DOUBLE, DOUBLE)
        return float(mean), float(std)

    def close(self) -> None:
        """Releases the Dataset; its memory goes with the last view of ``x`` or ``y``.
        Safe to call more than once."""
        self._x = self._y = None
        super().close()

    def __repr__(self) -> str:
        if self.closed:
            return "<deeplearning.Dataset (closed)>"
        labels = ("labelled" if self.has_labels else f"{self.target_size} target values each" if self.target_size
                  else "unlabelled")
        return f"<deeplearning.Dataset: {self.count} samples of shape {self.sample_shape}, {labels}>"


def _positive(value: SupportsIndex, name: str) -> int:
    count = operator.index(value)
    if count < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {count}")
    return count


def _target_values(dataset: Any, out: Any) -> int:
    """dl_dataset_targets as a one-pointer accessor, for Dataset._view."""
    return int(lib.dl_dataset_targets(dataset, out, None))


# -- Model methods (attached in model.py) -------------------------------------

def _held(dataset: object) -> Handle:
    """The open `dataset`'s Handle. The caller keeps it for the length of its library
    call, so that a close() from another thread meanwhile frees nothing until then."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"expected a deeplearning.Dataset, got {type(dataset).__name__}")
    if dataset._handle is None:
        raise ValueError("operation on a closed Dataset")
    return dataset._handle


def train_epoch(model: Model, dataset: Dataset, batch_size: int = 64, shuffle: bool = True,
                progress: Callable[[Progress], object] | None = None) -> float:
    """One epoch over every sample of a `dataset` with targets (class labels for a
    classifier, target values of the model's output size for any model), in the library.

    Batches of `batch_size`, the last one holding the remainder. With `shuffle`
    the order is drawn from the model's own seeded generator (checkpoints save
    it); without, batches are taken in order, exactly as ``train_step`` on
    consecutive slices would. Afterwards a per-epoch learning-rate schedule moves on.
    Returns the epoch's mean loss (each batch's loss before its update,
    weighted by its size).

    `progress`, if given, is called with a :class:`~deeplearning.Progress` after
    every step. Ctrl-C (or an exception from `progress`) stops the epoch after
    the step under way: the steps done stay applied, the epoch does not count
    and the per-epoch schedule does not move on; KeyboardInterrupt (or that exception) is
    raised.
    """
    handle = _held(dataset)
    batch_size = operator.index(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    loss: float = long_call(model._h, lib.dl_train_epoch, handle.pointer, batch_size, 1 if shuffle else 0,
                            DOUBLE, on_progress=progress)
    return loss


def evaluate_dataset(model: Model, dataset: Dataset,
                     progress: Callable[[Progress], object] | None = None) -> Evaluation:
    """Mean loss and accuracy (None for regression) over every sample of a `dataset`
    with targets, in evaluation mode; the model is not changed. `progress` and Ctrl-C
    work as in :func:`train_epoch`, per chunk of samples the model predicts at once."""
    handle = _held(dataset)
    loss, accuracy = long_call(model._h, lib.dl_evaluate_dataset, handle.pointer, DOUBLE, DOUBLE,
                               on_progress=progress)
    return Evaluation(loss, None if math.isnan(accuracy) else accuracy)
